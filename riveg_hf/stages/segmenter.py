"""Stage 5 -- segmentation, the "its mask" role: one base class, one module per model family.

Every segmenter answers ``segment_many([(image, boxes)], vision_batch_size=8) -> [[mask per box]]``: boolean
``(H, W)`` masks in the original image's size, one per pixel ``xyxy`` box prompt. The families
(:mod:`riveg_hf.stages.segmenters`, registered by model type):

========================  ====================================  ==========================================
module                    model types                           how
========================  ====================================  ==========================================
``segmenters.sam``        sam, sam2, sam3_tracker, (any other   box prompts: all the boxes of an image in one
                          ``AutoModelForMaskGeneration``)       call, several images per call
``segmenters.sam3``       sam3                                  text prompts: SAM 3 *locates* each
                                                                description (box and mask) -- it is then
                                                                the pipeline's grounder (:meth:`locator`)
========================  ====================================  ==========================================

``Segmenter(model, processor)`` and ``Segmenter.from_pretrained(...)`` give the family's class. A segmenter
that finds objects from text returns its grounder from :meth:`Segmenter.locator`; the pipeline asks every
segmenter the same question and never looks at its class. SAM 2 comes through transformers rather than the
PyPI package ``sam2`` (a third-party repackaging with a CUDA build), so it runs wherever transformers runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import AutoModelForMaskGeneration

from .base import Stage

__all__ = ["FAMILY_MODULES", "Segmenter", "family_class", "register"]

#: the segmenter families: ``riveg_hf.stages.segmenters.<name>``, each registers its class on import
FAMILY_MODULES = ("sam", "sam3")
#: the family of a model type no family names (any box-prompted ``AutoModelForMaskGeneration`` model)
DEFAULT_FAMILY = "sam"

_REGISTRY: dict[str, type[Segmenter]] = {}


def register(cls: type[Segmenter]) -> type[Segmenter]:
    for model_type in cls.model_types:
        _REGISTRY[model_type] = cls
    return cls


def family_class(model_type: str) -> type[Segmenter]:
    for name in FAMILY_MODULES:
        importlib.import_module(f"{__package__}.segmenters.{name}")
    if model_type in _REGISTRY:
        return _REGISTRY[model_type]
    return next(c for c in _REGISTRY.values() if c.family == DEFAULT_FAMILY)


class Segmenter(Stage):
    """The base class of every segmenter family (see the module doc)."""

    name = "segmenter"
    auto_classes = (AutoModelForMaskGeneration,)
    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    #: modules worth ``torch.compile`` on a GPU (attribute paths from the stage)
    compile_modules: ClassVar[tuple[str, ...]] = ("model.vision_encoder",)
    #: the options this family takes, with their defaults
    family_options: ClassVar[dict[str, Any]] = {"mask_threshold": 0.0, "multimask": False}

    def __new__(cls, model=None, processor=None, **options):
        if cls is Segmenter and model is not None:
            cls = family_class(getattr(model.config, "model_type", ""))
        return super().__new__(cls)

    def __init__(self, model, processor, **options: Any):
        super().__init__(model, processor)
        unknown = sorted(set(options) - set(self.family_options))
        if unknown:
            raise TypeError(
                f"segmenter ({self.family}): unknown option(s) {unknown}; valid: {sorted(self.family_options)}"
            )
        for key, default in self.family_options.items():
            setattr(self, key, options.get(key, default))

    def options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.family_options}

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
