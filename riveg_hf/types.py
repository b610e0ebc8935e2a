"""The result type shared by every stage and output: :class:`GroundedEntity`.

One validated dataclass, JSON-safe through :meth:`GroundedEntity.to_dict`. Offsets:

* ``start`` / ``end`` -- **character** offsets into the input text, ``end`` exclusive;
* ``token_start`` / ``token_end`` -- word offsets when the input was given as ``tokens``
  (the unit of the datasets and of :mod:`riveg_hf.metrics`), ``end`` exclusive;
* ``box`` -- ``{"xmin","ymin","xmax","ymax"}`` in pixels of the original image, or ``None``
  for "not visible";
* ``mask`` -- COCO RLE ``{"size": [h, w], "counts": str}`` (or an array when asked), or ``None``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .boxes import as_xyxy, xyxy_to_dict

__all__ = ["ENTITY_TYPES", "OUTPUT_KEYS", "TYPE_WORDS", "GroundedEntity", "type_word"]

#: The entity types of Twitter-GMNER / Twitter-SMNER.
ENTITY_TYPES = ("PER", "LOC", "ORG", "OTHER")
#: Words used in prompts and template descriptions.
TYPE_WORDS = {"PER": "person", "LOC": "location", "ORG": "organization", "OTHER": "named entity"}


def type_word(type_: str) -> str:
    """The words for a type in prompts and templates: ``"PER"`` -> ``"person"``, ``"sports_team"`` -> ``"sports
    team"`` (any dataset's type set, e.g. Twitter-FMNERG's).

    >>> type_word("ORG"), type_word("sports_team"), type_word("")
    ('organization', 'sports team', 'named entity')
    """
    return TYPE_WORDS.get(type_) or " ".join(str(type_).replace("_", " ").split()).lower() or "named entity"


#: Keys of one pipeline output, in order.
OUTPUT_KEYS = (
    "entity",
    "type",
    "start",
    "end",
    "score",
    "description",
    "description_source",
    "groundable",
    "groundable_score",
    "box",
    "box_score",
    "mask",
)


def _finite_or_none(v: float | None) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass
class GroundedEntity:
    """One entity of a tweet, its type, description, visibility, box and mask."""

    entity: str
    type: str
    start: int
    end: int
    score: float = 1.0
    description: str | None = None
    #: "llm", "cache", "template" (no LLM) or "fallback" (the LLM's answer was rejected; see description_rejected)
    description_source: str | None = None
    groundable: bool = False
    groundable_score: float | None = None
    box: dict[str, float] | None = None
    box_score: float | None = None
    mask: Any = None
    token_start: int | None = None
    token_end: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.entity, str):
            raise TypeError(f"entity must be a string, got {type(self.entity).__name__}")
        if self.start < 0 or self.end < self.start:
            raise ValueError(
                f"entity {self.entity!r}: invalid character span start={self.start}, end={self.end}"
            )
        if self.box is not None:
            self.box = xyxy_to_dict(as_xyxy(self.box, what=f"box of entity {self.entity!r}"))
        # NaN scores become None: JSON has no NaN, and a NaN must never pass a threshold.
        score = _finite_or_none(self.score)
        self.score = 0.0 if score is None else score
        self.groundable_score = _finite_or_none(self.groundable_score)
        self.box_score = _finite_or_none(self.box_score)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with :data:`OUTPUT_KEYS` (+ token offsets when known)."""
        d = asdict(self)
        extra = d.pop("extra")
        out = {k: d[k] for k in OUTPUT_KEYS}
        if self.token_start is not None:
            out["token_start"] = self.token_start
            out["token_end"] = self.token_end
        out.update(extra)
        return out
