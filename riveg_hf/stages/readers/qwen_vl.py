"""The zero-shot joint reader: any instruct Qwen2-VL / Qwen2.5-VL / Qwen3-VL (dense or MoE) asked for every entity,
its type and its box in one JSON answer, in the format these models are trained on for grounding (``bbox_2d``)::

    [{"entity": "Golden Gate Bridge", "type": "LOC", "bbox_2d": [x1, y1, x2, y2]},
     {"entity": "NASA", "type": "ORG", "bbox_2d": null}]

Coordinates are each family's own (:data:`~riveg_hf.stages.vlm_grounding.VLM_FAMILIES`: Qwen2.5-VL absolute
pixels of the resized input, the others relative 0..1000), mapped to original pixels as the grounders do.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...text import prompt_field
from ...types import ENTITY_TYPES
from ..reader import FoundEntity, JointReader, ReadRequest, register
from ..registry import Option
from ..tiny import TINY_VLMS
from ..vlm_answers import parse_objects
from ..vlm_grounding import VLM_FAMILIES, to_original_xyxy

_FENCE = re.compile(r"```(?:json)?", re.I)
#: the usual spellings of the four types of Twitter-GMNER
ALIASES = {"MISC": "OTHER", "PERSON": "PER", "LOCATION": "LOC", "ORGANIZATION": "ORG", "ORGANISATION": "ORG"}
_BOX_KEYS = ("bbox_2d", "box2d", "bbox", "box")
_NAME_KEYS = ("entity", "name", "label", "text")


def build_reader_prompt(text: str, types: tuple[str, ...]) -> str:
    """The user turn (the image goes before it).

    >>> print(build_reader_prompt("Obama in Paris", ("PER", "LOC")))  # doctest: +NORMALIZE_WHITESPACE
    Tweet: Obama in Paris
    Find every named entity of the tweet (types: PER, LOC), written exactly as in the tweet, and locate each one
    the image shows. Output a JSON list: [{"entity": "<as in the tweet>", "type": "<type>", "bbox_2d": [x1, y1,
    x2, y2]}]; "bbox_2d": null for an entity the image does not show.
    """
    return (
        f"Tweet: {prompt_field(text)}\n"
        f"Find every named entity of the tweet (types: {', '.join(types)}), written exactly as in the tweet, and "
        "locate each one the image shows. Output a JSON list: "
        '[{"entity": "<as in the tweet>", "type": "<type>", "bbox_2d": [x1, y1, x2, y2]}]; '
        '"bbox_2d": null for an entity the image does not show.'
    )


def json_entities(answer: str) -> list[dict] | None:
    """The answer's JSON list of objects (code fences allowed), or None when it is not one (then the tolerant
    parser of :mod:`riveg_hf.stages.vlm_answers` reads it)."""
    body = _FENCE.sub(" ", answer)
    start, end = body.find("["), body.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(body[start : end + 1])
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return None
    return value


def read_entity_objects(answer: str) -> list[tuple[str, str, Any]]:
    """``(name, type, box value)`` per object of a JSON answer (any of the usual keys), else read tolerantly."""
    objects = json_entities(answer)
    if objects is not None:
        out = []
        for o in objects:
            name = next((o[k] for k in _NAME_KEYS if isinstance(o.get(k), str)), "")
            box = next((o[k] for k in _BOX_KEYS if k in o), None)
            out.append((name, str(o.get("type", "")), box))
        return out
    return [
        (obj.name or "", obj.types[0] if obj.types else "", obj.box if obj.status == "box" else None)
        for obj in parse_objects(answer)
    ]


def typed(name: str, type_: str, types: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(the canonical type, None) or (None, a note): a type outside ``types`` is refused, never guessed."""
    t = type_.strip()
    t = t if t in types else ALIASES.get(t.upper(), t.upper() if t.upper() in types else t)
    if t in types:
        return t, None
    return None, f"{name!r} has the type {type_!r}, not one of {list(types)}: left out"


@register
class QwenVLReader(JointReader):
    family = "qwen-vl"
    model_types = tuple(VLM_FAMILIES)
    tiny_builders = TINY_VLMS
    family_options = (
        Option("entity_types", tuple(ENTITY_TYPES), "str-list", "the types the answer may give"),
    )

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        self.convention = VLM_FAMILIES[self.model_type]

    def messages(self, request: ReadRequest, image: Any) -> list[dict[str, Any]]:
        content = [{"type": "image"}] if image is not None else []
        content.append({"type": "text", "text": build_reader_prompt(request.text, self.entity_types)})
        return [{"role": "user", "content": content}]

    def parse(self, answer, request, sent_size, input_size):
        found, notes = [], []
        for name, type_, value in read_entity_objects(answer):
            t, note = typed(name, type_, self.entity_types)
            if t is None:
                notes.append(note)
                continue
            box = None
            if value not in (None, [], "") and request.image is not None:
                try:
                    box = to_original_xyxy(value, self.convention, request.image.size, input_size)
                except (TypeError, ValueError):
                    box = None
                if box is None:
                    notes.append(f"{name!r}: the box {value!r} is not a box inside the image: not visible")
            found.append(FoundEntity(name, t, box))
        return found, notes
