"""Visual grounding with a vision-language model (Qwen2.5-VL, Qwen3-VL): prompt, answer format, parser.

**One generation per image for all of that image's entities.** The prompt gives the tweet and, per
entity, its name, type and description, and asks for a JSON list with one object per entity, in the
same order::

    [{"entity": "Golden Gate Bridge", "bbox_2d": [x1, y1, x2, y2]}, {"entity": "Obama", "bbox_2d": null}]

``null`` means "not visible" (the end-to-end style of visibility, see the pipeline's ``visibility``).

**Coordinates** differ by family, and :func:`to_original_xyxy` maps them back to pixel ``xyxy`` of the
original image:

* ``qwen2_5_vl``: absolute pixels of the image *as the processor resized it* (``image_grid_thw`` x the
  patch size), so a box is scaled by ``original / resized`` on each axis;
* ``qwen3_vl``: relative coordinates in ``0..1000`` on each axis.

**The parser** (:func:`parse_grounding_answer`) never raises: prose or code fences around the JSON,
truncated JSON (the objects that are complete are kept), missing, extra or repeated entities (first
answer wins), boxes with inverted corners (swapped), outside the image (clipped; nothing left -> None),
or not four numbers (None). Each entity gets a box or None, and the entities for which the answer had
no usable object are counted (``unparsable``) and noted in the output.

**box_score** is the mean probability the model gave to the generated tokens of that entity's
``bbox_2d`` value (the numbers of its box): a confidence in the coordinates, 1.0 for a perfectly
certain answer; None for "not visible".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "VLM_FAMILIES",
    "ParsedAnswer",
    "build_grounding_prompt",
    "format_grounding_answer",
    "from_original_xyxy",
    "grounding_messages",
    "max_new_tokens_for",
    "parse_grounding_answer",
    "to_original_xyxy",
]

#: model_type -> coordinate convention
VLM_FAMILIES = {"qwen2_5_vl": "absolute", "qwen2_vl": "absolute", "qwen3_vl": "relative-1000"}

_CONVENTION_TEXT = {
    "absolute": "pixel coordinates of the image",
    "relative-1000": "coordinates relative to the image, from 0 to 1000 on each axis",
}


def build_grounding_prompt(text: str, entities: Sequence[tuple[str, str, str]], convention: str) -> str:
    """The user turn that asks for every entity's box in one answer (the image goes before it).

    >>> print(build_grounding_prompt("Obama in Paris", [("Obama", "PER", "a man in a suit")], "absolute"))
    ... # doctest: +NORMALIZE_WHITESPACE
    Tweet: Obama in Paris
    Entities:
    1. Obama (PER): a man in a suit
    For each entity, give the bounding box [x1, y1, x2, y2] of the region of the image that shows it, in pixel
    coordinates of the image, or null if the image does not show it. Answer with a JSON list only, one object
    per entity in the same order: [{"entity": "...", "bbox_2d": [x1, y1, x2, y2] or null}].
    """
    lines = [f"Tweet: {text}", "Entities:"]
    lines += [f"{i}. {e} ({t}): {d}" for i, (e, t, d) in enumerate(entities, 1)]
    lines.append(
        "For each entity, give the bounding box [x1, y1, x2, y2] of the region of the image that shows it, in "
        f"{_CONVENTION_TEXT[convention]}, or null if the image does not show it. Answer with a JSON list only, "
        'one object per entity in the same order: [{"entity": "...", "bbox_2d": [x1, y1, x2, y2] or null}].'
    )
    return "\n".join(lines)


def grounding_messages(text: str, entities: Sequence[tuple[str, str, str]], convention: str) -> list[dict]:
    """The chat the grounder sends (and ``riveg train grounder`` trains on): one user turn, image first."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": build_grounding_prompt(text, entities, convention)},
            ],
        }
    ]


def format_grounding_answer(names: Sequence[str], boxes: Sequence[Sequence[float] | None]) -> str:
    """The answer the grounder expects (and training targets): a JSON list, integer coordinates.

    >>> format_grounding_answer(["Obama", "NASA"], [[10.4, 20, 30, 40.6], None])
    '[{"entity": "Obama", "bbox_2d": [10, 20, 30, 41]}, {"entity": "NASA", "bbox_2d": null}]'
    """
    return json.dumps(
        [
            {"entity": str(n), "bbox_2d": None if b is None else [round(float(v)) for v in b]}
            for n, b in zip(names, boxes)
        ],
        ensure_ascii=False,
    )


def max_new_tokens_for(n_entities: int, per_entity: int = 48, base: int = 16) -> int:
    """The generation budget grows with the entities: about 48 tokens per ``{"entity", "bbox_2d"}`` object."""
    return base + per_entity * max(1, n_entities)


@dataclass
class ParsedAnswer:
    """Boxes in the model's coordinates (None = not visible or unusable), per entity, in order."""

    boxes: list[list[float] | None]
    #: per entity, the character span of its ``bbox_2d`` value in the answer (for box_score), or None
    spans: list[tuple[int, int] | None] = field(default_factory=list)
    #: entities for which the answer had no usable object (missing, truncated, or a bbox_2d that is neither
    #: null nor four finite numbers)
    unparsable: list[int] = field(default_factory=list)


_OBJECT_RE = re.compile(r"\{[^{}]*\}")
_BBOX_VALUE_RE = re.compile(r'"bbox_2d"\s*:\s*(null|\[[^\]]*\])')


def _norm(name: Any) -> str:
    return re.sub(r"[^0-9a-z]+", "", str(name).casefold())


def _box_value(value: Any) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in box):
        return None
    x0, x1 = sorted((box[0], box[2]))
    y0, y1 = sorted((box[1], box[3]))
    return [x0, y0, x1, y1]


def parse_grounding_answer(answer: str, names: Sequence[str]) -> ParsedAnswer:
    """Read an answer in the format of the module doc; never raises (see the module doc).

    >>> p = parse_grounding_answer('Sure! [{"entity": "Obama", "bbox_2d": [10, 20, 5, 40]}, {"entity": "NASA", '
    ...                            '"bbox_2d": null}]', ["Obama", "NASA", "Paris"])
    >>> p.boxes, p.unparsable
    ([[5.0, 20.0, 10.0, 40.0], None, None], [2])
    """
    n = len(names)
    boxes: list[list[float] | None] = [None] * n
    spans: list[tuple[int, int] | None] = [None] * n
    answered = [False] * n
    malformed = [False] * n
    # every complete {...} object, in order (survives prose, code fences and a truncated list)
    objects = []
    for m in _OBJECT_RE.finditer(answer or ""):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "bbox_2d" in obj:
            vm = _BBOX_VALUE_RE.search(m.group(0))
            span = (m.start() + vm.start(1), m.start() + vm.end(1)) if vm else None
            objects.append((obj, span))
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_name.setdefault(_norm(name), []).append(i)
    unnamed = []
    for k, (obj, span) in enumerate(objects):
        target = None
        for i in by_name.get(_norm(obj.get("entity", obj.get("label", ""))), []):
            if not answered[i]:
                target = i
                break
        if target is None:
            unnamed.append((k, obj, span))
            continue
        answered[target] = True
        boxes[target], spans[target] = _box_value(obj["bbox_2d"]), span
        malformed[target] = obj["bbox_2d"] is not None and boxes[target] is None
    # objects whose name matches no entity fill the unanswered entities by position (a model that misspells)
    for k, obj, span in unnamed:
        if k < n and not answered[k] and _norm(obj.get("entity", "")) not in by_name:
            answered[k] = True
            boxes[k], spans[k] = _box_value(obj["bbox_2d"]), span
            malformed[k] = obj["bbox_2d"] is not None and boxes[k] is None
    spans = [sp if b is not None else None for b, sp in zip(boxes, spans)]
    return ParsedAnswer(
        boxes=boxes, spans=spans, unparsable=[i for i in range(n) if not answered[i] or malformed[i]]
    )


def to_original_xyxy(
    box: Sequence[float], convention: str, original_size: tuple[int, int], input_size: tuple[int, int]
) -> list[float] | None:
    """A box in the model's coordinates -> pixel ``xyxy`` of the original image, clipped; None if empty.

    ``original_size`` and ``input_size`` are ``(width, height)``; ``input_size`` is the image as the
    processor resized it (used by the ``absolute`` convention).

    >>> to_original_xyxy([0, 0, 56, 42], "absolute", (120, 80), (112, 84))
    [0.0, 0.0, 60.0, 40.0]
    >>> to_original_xyxy([500, 0, 1000, 1000], "relative-1000", (120, 80), (112, 84))
    [60.0, 0.0, 120.0, 80.0]
    """
    w, h = original_size
    if convention == "absolute":
        sx, sy = w / input_size[0], h / input_size[1]
    elif convention == "relative-1000":
        sx, sy = w / 1000.0, h / 1000.0
    else:
        raise ValueError(
            f"unknown coordinate convention {convention!r}; valid: {sorted(set(VLM_FAMILIES.values()))}"
        )
    x0, y0, x1, y1 = (float(v) for v in box)
    out = [
        min(max(x0 * sx, 0.0), w),
        min(max(y0 * sy, 0.0), h),
        min(max(x1 * sx, 0.0), w),
        min(max(y1 * sy, 0.0), h),
    ]
    if out[2] <= out[0] or out[3] <= out[1]:
        return None
    return out


def from_original_xyxy(
    box: Sequence[float], convention: str, original_size: tuple[int, int], input_size: tuple[int, int]
) -> list[int]:
    """Pixel ``xyxy`` of the original image -> the model's integer coordinates (the inverse of
    :func:`to_original_xyxy`, up to rounding), for training targets.

    >>> from_original_xyxy([0, 0, 60, 40], "absolute", (120, 80), (112, 84))
    [0, 0, 56, 42]
    >>> from_original_xyxy([60, 0, 120, 80], "relative-1000", (120, 80), (112, 84))
    [500, 0, 1000, 1000]
    """
    w, h = original_size
    if convention == "absolute":
        sx, sy = input_size[0] / w, input_size[1] / h
        lim_x, lim_y = input_size
    elif convention == "relative-1000":
        sx, sy = 1000.0 / w, 1000.0 / h
        lim_x = lim_y = 1000
    else:
        raise ValueError(
            f"unknown coordinate convention {convention!r}; valid: {sorted(set(VLM_FAMILIES.values()))}"
        )
    x0, y0, x1, y1 = (float(v) for v in box)
    return [
        min(max(round(x0 * sx), 0), lim_x),
        min(max(round(y0 * sy), 0), lim_y),
        min(max(round(x1 * sx), 0), lim_x),
        min(max(round(y1 * sy), 0), lim_y),
    ]
