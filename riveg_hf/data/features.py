"""``datasets.Features`` of the riveg-hf datasets (one place, used by builders, training and tests)."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import ClassLabel, Features, Image, List, Value

from ..types import ENTITY_TYPES
from .conll import bio_tags

__all__ = [
    "NER_TAGS",
    "entity_features",
    "gmner_features",
    "knowledge_features",
    "mner_features",
    "smner_features",
]

#: BIO tag set over the four GMNER types, in ClassLabel order.
NER_TAGS = bio_tags(ENTITY_TYPES)

BOX = List(Value("float32"), length=4)  # pixel xyxy: [xmin, ymin, xmax, ymax]
RLE = {"size": List(Value("int32"), length=2), "counts": Value("string")}  # COCO RLE, size = [h, w]


def entity_features(
    types: Sequence[str] = ENTITY_TYPES, *, grounded: bool = True, masks: bool = False
) -> dict:
    """The ``datasets`` feature of one entity: text, type, token span, and (``grounded``) the groundable flag
    and boxes, (``masks``) one COCO RLE per box."""
    f = {
        "text": Value("string"),
        "type": ClassLabel(names=list(types)),
        "start": Value("int32"),  # token offset, inclusive
        "end": Value("int32"),  # token offset, exclusive
    }
    if grounded:
        f["groundable"] = Value("bool")
        f["boxes"] = List(BOX)
    if masks:
        f["masks"] = List(RLE)  # one per box, same order; None when the mask file lacks it
    return f


def mner_features(types: Sequence[str] = ENTITY_TYPES) -> Features:
    """Features of the text-only MNER configs (Twitter-2015/2017, Twitter-GMNER's ``mner``)."""
    return Features(
        {
            "id": Value("string"),
            "tokens": List(Value("string")),
            "ner_tags": List(ClassLabel(names=bio_tags(types))),
            "entities": List(entity_features(types, grounded=False)),
        }
    )


def knowledge_features(types: Sequence[str] = ENTITY_TYPES) -> Features:
    """:func:`mner_features` plus RiVEG's LLM knowledge words (the ``mner_llm_knowledge`` config)."""
    f = mner_features(types)
    f["knowledge"] = List(
        Value("string")
    )  # LLM-written words appended after the tweet (PGIM); never labelled
    return f


def gmner_features(types: Sequence[str] = ENTITY_TYPES) -> Features:
    """Features of the grounded configs: tokens, tags, the image with its size, caption and grounded entities."""
    return Features(
        {
            "id": Value("string"),
            "tokens": List(Value("string")),
            "ner_tags": List(ClassLabel(names=bio_tags(types))),
            "image": Image(),
            "width": Value("int32"),
            "height": Value("int32"),
            "caption": Value("string"),
            "entities": List(entity_features(types)),
        }
    )


def smner_features(types: Sequence[str] = ENTITY_TYPES) -> Features:
    """:func:`gmner_features` with one COCO RLE mask per box (Twitter-SMNER)."""
    f = gmner_features(types)
    f["entities"] = List(entity_features(types, masks=True))
    return f
