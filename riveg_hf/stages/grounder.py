"""Stage 4 -- visual grounding, the "where is it?" role: one base class, one module per model family.

Every grounder answers the same question through one method::

    grounder.locate_many([LocateRequest(image, queries, text=..., entities=...)], vision_batch_size=8)
    -> [Localization(boxes=[...], scores=[...] | None, masks=[...] | None, notes=[...])]

one :class:`Localization` per image, one entry per query: a box in **pixel ``xyxy`` of the original
image** (clipped to it) or None, its score (or None for a family without scores), its mask for a family
that segments as it locates (SAM 3), and a note saying why an entity has no box when the answer said so
(not mentioned, malformed ...). The caller decides "no box" with ``box_threshold``.

The families (each a module of :mod:`riveg_hf.stages.grounders`, registered in :data:`FAMILIES` by model type;
``tests/test_families.py`` checks this table against the registry):

====================  ====================================  ===================================================
family                model types                           how (module)
====================  ====================================  ===================================================
``grounding-dino``    grounding-dino, mm-grounding-dino     one prompt ``"q1. q2."`` per image, best box per
                                                            query (``grounders.gdino``)
``owl``               owlvit, owlv2                         the queries as a batch of texts against one image
                                                            (``grounders.owl``)
``florence2``         florence2                             caption-to-phrase grounding of the joined queries
                                                            (``grounders.florence2``)
``vlm``               qwen2_vl, qwen2_5_vl, qwen3_vl,       one JSON answer per image for all its entities
                      qwen3_vl_moe                          (``grounders.qwen_vl``)
====================  ====================================  ===================================================

SAM 3 locates too, as the segmenter (``segmenters.sam3``: box and mask from each description; its
:meth:`~riveg_hf.stages.Segmenter.locator` is the pipeline's grounder).

``Grounder(model, processor)`` and ``Grounder.from_pretrained(...)`` give the family's class for the
model's type. **A new family is one module** (a subclass declaring ``family``, ``model_types``, its options
and ``tiny_builders``, with ``@register``; see :mod:`riveg_hf.stages.registry`): importing it registers it, and
the generated conformance tests run it. The library's own families are listed in :data:`FAMILY_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, AutoModelForZeroShotObjectDetection

from ..boxes import BoxError, as_xyxy, box_in_image
from .base import Stage
from .registry import FamilyRegistry, Option

__all__ = [
    "FAMILIES",
    "FAMILY_MODULES",
    "Grounder",
    "Localization",
    "LocateRequest",
    "Locator",
    "family_class",
    "register",
]

#: the library's grounder families: ``riveg_hf.stages.grounders.<name>``, each registers its class on import
FAMILY_MODULES = ("gdino", "owl", "florence2", "qwen_vl")

#: the grounder families (see :mod:`riveg_hf.stages.registry`)
FAMILIES = FamilyRegistry(
    "grounder",
    f"{__package__}.grounders",
    FAMILY_MODULES,
    hint="E.g. IDEA-Research/grounding-dino-tiny, google/owlv2-base-patch16-ensemble, Qwen/Qwen2.5-VL-3B-Instruct, "
    "microsoft/Florence-2-base; SAM 3 locates as the segmenter (grounder=None, segmenter=facebook/sam3).",
)
#: class decorator: the family serves every model type in ``cls.model_types``
register = FAMILIES.register


def family_class(model_type: str) -> type[Grounder]:
    """The grounder class for a model type; the error lists the supported ones."""
    return FAMILIES.for_model_type(model_type)


# ---------------------------------------------------------------------- the role's types
@dataclass
class LocateRequest:
    """One image and what to find in it: ``queries`` (one per entity: its description or name), with the
    tweet ``text`` and ``entities`` ``[(name, type, description)]`` for the families that read them."""

    image: Any
    queries: list[str]
    text: str = ""
    entities: list[tuple[str, str, str]] | None = None

    def __post_init__(self):
        self.queries = [str(q) for q in self.queries]
        if self.entities is not None and len(self.entities) != len(self.queries):
            raise ValueError(f"LocateRequest: {len(self.entities)} entities for {len(self.queries)} queries")

    @property
    def named_entities(self) -> list[tuple[str, str, str]]:
        return self.entities if self.entities is not None else [(q, "", q) for q in self.queries]


@dataclass
class Localization:
    """One image's answer, one entry per query (validated on construction).

    ``boxes``: pixel ``xyxy`` of the original image or None; ``scores``: per box, or None when the family
    gives none (Florence-2); ``masks``: boolean ``(H, W)`` per box for a family that segments (SAM 3), else
    None; ``notes``: per entity, why it has no box when that is worth saying (else None).
    """

    boxes: list[list[float] | None]
    scores: list[float | None] | None = None
    masks: list[np.ndarray | None] | None = None
    notes: list[str | None] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.boxes)
        if not self.notes:
            self.notes = [None] * n
        for name in ("scores", "masks", "notes"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Localization: {len(value)} {name} for {n} boxes")
        for k, box in enumerate(self.boxes):
            if box is None:
                continue
            try:  # ints and numpy numbers are coordinates too; one unusable box costs its entity only
                self.boxes[k] = as_xyxy(box, what=f"box {k}")
            except BoxError as err:
                self.boxes[k] = None
                self.notes[k] = f"the grounder returned an unusable box, reported as not visible ({err})"
        if self.scores is not None:
            self.scores = [None if s is None else float(s) for s in self.scores]

    @classmethod
    def empty(cls, n: int, *, scores: bool = True, note: str | None = None) -> Localization:
        return cls([None] * n, [None] * n if scores else None, None, [note] * n)

    def score(self, k: int) -> float | None:
        return self.scores[k] if self.scores is not None else None

    def mask(self, k: int) -> np.ndarray | None:
        return self.masks[k] if self.masks is not None else None


def clip_box(box: Sequence[float], size: tuple[int, int]) -> list[float] | None:
    """A box clipped to the image of ``size`` ``(width, height)`` (see :func:`riveg_hf.boxes.box_in_image`)."""
    return box_in_image(box, *size)


# ---------------------------------------------------------------------- the base class
class Grounder(Stage):
    """The base class of every grounder family (see the module doc). ``Grounder(model, processor)`` builds
    the family's class for ``model.config.model_type``."""

    name = "grounder"
    auto_classes = (AutoModelForZeroShotObjectDetection, AutoModelForImageTextToText)
    #: the family's name (recorded in training runs and cards)
    family: ClassVar[str] = ""
    #: the model types (``config.model_type``) this family serves
    model_types: ClassVar[tuple[str, ...]] = ()
    #: the default ``box_threshold`` (the families calibrate their scores differently)
    default_box_threshold: ClassVar[float] = 0.0
    #: whether boxes come with scores (Florence-2: no; then the entailment stage or the answer decides)
    has_scores: ClassVar[bool] = True
    #: whether a mask comes with each box (SAM 3 from text); the segmenter then has nothing to do
    returns_masks: ClassVar[bool] = False
    #: whether the family reads the tweet and the entities (``LocateRequest.text`` / ``entities``)
    uses_context: ClassVar[bool] = False
    role_options = (
        Option("box_threshold", 0.0, "unit", "the locator's score below which a box is dropped",
               why="a box score is a probability"),
    )  # fmt: skip

    def __new__(cls, model=None, processor=None, **options):
        if cls is Grounder and model is not None:
            cls = family_class(getattr(model.config, "model_type", ""))
        return super().__new__(cls)

    def __init__(self, model, processor, **options: Any):
        super().__init__(model, processor)
        self._init_options(options)

    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        out = super().declared_options()
        out["box_threshold"] = out["box_threshold"].with_default(float(cls.default_box_threshold))
        return out

    @classmethod
    def served(cls, endpoint, **options):
        """A vision-language grounder on a server (:mod:`riveg_hf.stages.grounders.served`)."""
        served = importlib.import_module(
            f"{__package__}.grounders.served"
        )  # a family module, like the others
        return served.ServedGrounder(endpoint, **options)

    # ------------------------------------------------------------------ the protocol
    @torch.no_grad()
    def locate_many(
        self, requests: Sequence[LocateRequest], *, vision_batch_size: int = 8
    ) -> list[Localization]:
        """One :class:`Localization` per request (see the module doc); requests without queries get an empty
        one and cost nothing."""
        out: list[Localization | None] = [None] * len(requests)
        todo = [i for i, r in enumerate(requests) if r.queries]
        for i, r in enumerate(requests):
            if not r.queries:
                out[i] = Localization.empty(0, scores=self.has_scores)
        if todo:
            found = self._locate([requests[i] for i in todo], max(1, int(vision_batch_size)))
            for i, loc in zip(todo, found):
                if len(loc.boxes) != len(requests[i].queries):
                    raise RuntimeError(f"{type(self).__name__}: {len(loc.boxes)} boxes for "
                                       f"{len(requests[i].queries)} queries")  # fmt: skip
                out[i] = loc
        return out  # type: ignore[return-value]

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        """The family's work: every request has at least one query."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the earlier interface
    def ground(self, image, queries: Sequence[str]) -> list[tuple[list[float] | None, float | None]]:
        """``[(box xyxy or None, score)]`` per query (one image); see :meth:`locate_many`."""
        return self.ground_many([(image, queries)])[0]

    def ground_many(
        self,
        items: Sequence[tuple[Any, Sequence[str]]],
        *,
        vision_batch_size: int = 8,
        contexts: Sequence[dict[str, Any]] | None = None,
        diagnostics: list[dict[str, Any]] | None = None,
    ) -> list[list[tuple[list[float] | None, float | None]]]:
        """``[(image, queries)]`` -> per image ``[(box, score)]`` (:meth:`locate_many` with tuples);
        ``contexts``: ``{"text", "entities"}`` per item; ``diagnostics`` receives the entities with a note."""
        requests = [
            LocateRequest(
                img, list(qs), text=(ctx or {}).get("text", ""), entities=(ctx or {}).get("entities")
            )
            for (img, qs), ctx in zip(items, contexts if contexts is not None else [None] * len(items))
        ]
        locs = self.locate_many(requests, vision_batch_size=vision_batch_size)
        if diagnostics is not None:
            diagnostics.extend({"unparsable": [k for k, n in enumerate(loc.notes) if n]} for loc in locs)
        return [[(loc.boxes[k], loc.score(k)) for k in range(len(loc.boxes))] for loc in locs]


#: the role's name in the protocol ("locate"): the same class
Locator = Grounder
