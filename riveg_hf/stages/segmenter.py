"""Stage 5 -- segmentation, the "its mask" role: one base class, one module per model family.

Every segmenter answers ``segment_many([(image, boxes)], vision_batch_size=8) -> [[mask per box]]``: boolean
``(H, W)`` masks in the original image's size, one per pixel ``xyxy`` box prompt. The families
(:mod:`riveg_hf.stages.segmenters`, registered in :data:`FAMILIES` by model type):

==========  ==============================  ==================================================================
family      model types                     how (module)
==========  ==============================  ==================================================================
``sam``     sam, sam2, sam3_tracker         box prompts: all the boxes of an image in one call, several images
                                            per call (``segmenters.sam``)
``sam3``    sam3                            text prompts: SAM 3 *locates* each description (box and mask) -- it
                                            is then the pipeline's grounder (:meth:`locator`;
                                            ``segmenters.sam3``)
==========  ==============================  ==================================================================

A model type no family serves is an error listing the supported ones (a SAM-like checkpoint of another family
is never run as if it were SAM); a new family is one module (see :mod:`riveg_hf.stages.registry`).
``tests/test_families.py`` checks this table against :data:`FAMILIES`.

``Segmenter(model, processor)`` and ``Segmenter.from_pretrained(...)`` give the family's class. A segmenter
that finds objects from text returns its grounder from :meth:`Segmenter.locator`; the pipeline asks every
segmenter the same question and never looks at its class. SAM 2 comes through transformers rather than the
PyPI package ``sam2`` (a third-party repackaging with a CUDA build), so it runs wherever transformers runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import AutoModelForMaskGeneration

from .base import Stage
from .registry import FamilyRegistry, Option

__all__ = ["FAMILIES", "FAMILY_MODULES", "Segmenter", "family_class", "register"]

#: the library's segmenter families: ``riveg_hf.stages.segmenters.<name>``, each registers its class on import
FAMILY_MODULES = ("sam", "sam3")

#: the segmenter families (see :mod:`riveg_hf.stages.registry`); an unknown model type is an error
FAMILIES = FamilyRegistry(
    "segmenter",
    f"{__package__}.segmenters",
    FAMILY_MODULES,
    hint="E.g. facebook/sam2.1-hiera-tiny, facebook/sam-vit-base, facebook/sam3 (Sam3TrackerModel for box "
    "prompts, Sam3Model to find objects from text).",
)
register = FAMILIES.register


def family_class(model_type: str) -> type[Segmenter]:
    """The segmenter class for a model type; an unknown one is an error listing the supported types."""
    return FAMILIES.for_model_type(model_type)


class Segmenter(Stage):
    """The base class of every segmenter family (see the module doc)."""

    name = "segmenter"
    auto_classes = (AutoModelForMaskGeneration,)
    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    compile_modules: ClassVar[tuple[str, ...]] = ("model.vision_encoder",)
    #: whether the family finds objects from text (then :meth:`locator` is its grounder)
    locates: ClassVar[bool] = False
    role_options = (
        Option("mask_threshold", 0.0, "number", "the mask logit above which a pixel is in the mask"),
        Option("multimask", False, "bool", "predict three masks per box and keep the best"),
    )

    def __new__(cls, model=None, processor=None, **options):
        if cls is Segmenter and model is not None:
            cls = family_class(getattr(model.config, "model_type", ""))
        return super().__new__(cls)

    def __init__(self, model, processor, **options: Any):
        super().__init__(model, processor)
        self._init_options(options)

    # ------------------------------------------------------------------ the protocol
    def locator(self):
        """The grounder this segmenter *is*, for a family that finds objects from text (SAM 3); else None."""
        return None

    @property
    def text_prompted(self) -> bool:
        return self.locator() is not None

    @torch.no_grad()
    def segment(self, image, boxes: Sequence[Sequence[float]]) -> list[np.ndarray]:
        """One boolean ``(H, W)`` mask per box (pixel xyxy), from a single model call."""
        return self.segment_many([(image, boxes)])[0]

    def segment_many(
        self, items: Sequence[tuple[Any, Sequence[Sequence[float]]]], *, vision_batch_size: int = 8
    ) -> list[list[np.ndarray]]:
        raise NotImplementedError
