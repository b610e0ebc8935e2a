"""Visual grounding with a vision-language model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): prompt, answer format,
coordinates -- shared by the in-process grounder, the served one and ``riveg train grounder``.

**One generation per image for all of that image's entities.** The prompt gives the tweet and, per entity,
its name, type and description, and asks for the format the Qwen-VL models are trained on (their cookbooks'
grounding prompts: "... output all the coordinates in JSON format", answered with ``bbox_2d`` + ``label``)::

    [{"bbox_2d": [x1, y1, x2, y2], "label": "Golden Gate Bridge"}]

with the entity's name as the label, and an entity the image does not show **left out** (Qwen3-VL's trained
behaviour: it skips the categories it does not see). Reading the answer (any of the shapes real models emit,
names matched to entities) is :mod:`riveg_hf.stages.vlm_answers`; an entity the answer does not mention is
"not visible" (the end-to-end style of visibility, see the pipeline's ``visibility``).

**Coordinates** differ by family (:data:`VLM_FAMILIES`), and :func:`to_original_xyxy` maps them back to pixel
``xyxy`` of the original image; :func:`from_original_xyxy` is its inverse, for training targets:

* ``qwen2_5_vl``: **absolute pixels of the image as the processor resized it** (``image_grid_thw`` x the
  patch size: ``smart_resize`` to multiples of 28 within min/max pixels), so a box is scaled by
  ``original / resized`` on each axis (the Qwen2.5-VL cookbook's ``plot_bounding_boxes`` divides by
  ``input_width`` / ``input_height``);
* ``qwen2_vl``, ``qwen3_vl``, ``qwen3_vl_moe``: **relative coordinates in 0..1000** on each axis, whatever
  the resize (Qwen2-VL's paper and its ``process_bbox`` notebook; the Qwen3-VL cookbook divides by 1000).
  Qwen2-VL's own answers use its box tokens ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, which the parser reads.

**box_score** is the mean probability the model gave to the generated tokens of that entity's box (the
numbers of its box): a confidence in the coordinates; None for "not visible".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..boxes import box_in_image
from ..text import prompt_field
from .vlm_answers import match_objects, parse_objects

__all__ = [
    "VLM_FAMILIES",
    "GroundingRead",
    "ParsedAnswer",
    "build_grounding_prompt",
    "format_grounding_answer",
    "from_original_xyxy",
    "grounding_messages",
    "max_new_tokens_for",
    "parse_grounding_answer",
    "read_grounding_answer",
    "to_original_xyxy",
]

#: model_type -> coordinate convention
VLM_FAMILIES = {
    "qwen2_vl": "relative-1000",
    "qwen2_5_vl": "absolute",
    "qwen3_vl": "relative-1000",
    "qwen3_vl_moe": "relative-1000",
}
CONVENTIONS = ("absolute", "relative-1000")

NOTE_NOT_MENTIONED = "not mentioned in the grounder's answer: reported as not visible"
NOTE_MALFORMED = "the grounder's answer had no usable entry for this entity (its box is malformed): reported as not visible"
NOTE_UNPARSABLE = (
    "the grounder's answer had no usable entry for this entity (malformed, truncated or not an answer): reported "
    "as not visible"
)
NOTE_OUTSIDE = "the grounder's box lies outside the image: reported as not visible"


def build_grounding_prompt(
    text: str, entities: Sequence[tuple[str, str, str]], convention: str | None = None
) -> str:
    """The user turn that asks for every entity's box in one answer (the image goes before it).

    ``convention`` is accepted for compatibility and not used: each family answers in its own trained
    coordinates, which the prompt does not try to change.

    >>> print(build_grounding_prompt("Obama in Paris", [("Obama", "PER", "a man in a suit")]))
    ... # doctest: +NORMALIZE_WHITESPACE
    Tweet: Obama in Paris
    Entities:
    1. Obama (PER): a man in a suit
    Locate every entity above that the image shows, and output all the bbox coordinates in JSON format:
    [{"bbox_2d": [x1, y1, x2, y2], "label": "<the entity's name>"}]. Leave out an entity the image does not show.
    """
    f = prompt_field  # each value on its line: a line break in a name never starts an instruction of its own
    lines = [f"Tweet: {f(text)}", "Entities:"]
    lines += [f"{i}. {f(e)} ({f(t)}): {f(d)}" for i, (e, t, d) in enumerate(entities, 1)]
    lines.append(
        "Locate every entity above that the image shows, and output all the bbox coordinates in JSON format: "
        '[{"bbox_2d": [x1, y1, x2, y2], "label": "<the entity\'s name>"}]. Leave out an entity the image does '
        "not show."
    )
    return "\n".join(lines)


def grounding_messages(
    text: str, entities: Sequence[tuple[str, str, str]], convention: str | None = None
) -> list[dict]:
    """The chat the grounder sends (and ``riveg train grounder`` trains on): one user turn, image first."""
    return [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": build_grounding_prompt(text, entities)}],
        }
    ]


def format_grounding_answer(names: Sequence[str], boxes: Sequence[Sequence[float] | None]) -> str:
    """The answer the grounder expects (and training targets): the visible entities only, integer coordinates.

    >>> format_grounding_answer(["Obama", "NASA"], [[10.4, 20, 30, 40.6], None])
    '[{"bbox_2d": [10, 20, 30, 41], "label": "Obama"}]'
    """
    return json.dumps(
        [
            {"bbox_2d": [round(float(v)) for v in b], "label": str(n)}
            for n, b in zip(names, boxes)
            if b is not None
        ],
        ensure_ascii=False,
    )


def max_new_tokens_for(n_entities: int, per_entity: int = 48, base: int = 16) -> int:
    """The generation budget grows with the entities: about 48 tokens per ``{"bbox_2d", "label"}`` object."""
    return base + per_entity * max(1, n_entities)


@dataclass
class GroundingRead:
    """An answer read for the entities asked: per entity its box in original pixels (or None), the
    character span of that box in the answer (for box_score), and a note when it has no box."""

    boxes: list[list[float] | None]
    spans: list[tuple[int, int] | None]
    notes: list[str | None]
    #: per entity, how it was matched ("name", "description", "position", "not-mentioned")
    how: list[str] = field(default_factory=list)


def read_grounding_answer(
    answer: str | None,
    entities: Sequence[tuple[str, str, str]],
    convention: str,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
) -> GroundingRead:
    """Parse ``answer``, give each entity ``(name, type, description)`` its object, map its box to original
    pixels. Never raises; every entity gets a box or None (with a note saying why)."""
    objects = parse_objects(answer)
    n = len(entities)
    if not objects:
        return GroundingRead([None] * n, [None] * n, [NOTE_UNPARSABLE] * n, ["not-mentioned"] * n)
    match = match_objects(objects, [(e, d) for e, _, d in entities], types=[t for _, t, _ in entities])
    boxes, spans, notes = [], [], []
    for k in match.index:
        if k is None:
            boxes.append(None), spans.append(None), notes.append(NOTE_NOT_MENTIONED)
            continue
        obj = objects[k]
        if obj.status == "none":
            boxes.append(None), spans.append(None), notes.append(None)  # the model said: not visible
            continue
        if obj.status != "box":
            boxes.append(None), spans.append(None), notes.append(NOTE_MALFORMED)
            continue
        xyxy = to_original_xyxy(obj.box, convention, original_size, input_size)
        boxes.append(xyxy)
        spans.append(obj.span if xyxy is not None else None)
        notes.append(None if xyxy is not None else NOTE_OUTSIDE)
    return GroundingRead(boxes, spans, notes, match.how)


# ---------------------------------------------------------------------- the earlier interface
@dataclass
class ParsedAnswer:
    """Boxes in the model's coordinates (None = not visible or unusable), per entity, in order."""

    boxes: list[list[float] | None]
    spans: list[tuple[int, int] | None] = field(default_factory=list)
    #: entities for which the answer had no usable object (not mentioned, truncated, or a malformed box)
    unparsable: list[int] = field(default_factory=list)


def parse_grounding_answer(answer: str, names: Sequence[str]) -> ParsedAnswer:
    """Boxes per entity name, in the model's coordinates (:func:`read_grounding_answer` without the mapping).

    >>> p = parse_grounding_answer('Sure! [{"label": "Obama", "bbox_2d": [10, 20, 5, 40]}, {"label": "NASA", '
    ...                            '"bbox_2d": null}]', ["Obama", "NASA", "Paris"])
    >>> p.boxes, p.unparsable
    ([[5.0, 20.0, 10.0, 40.0], None, None], [2])
    """
    objects = parse_objects(answer)
    match = match_objects(objects, [(n, None) for n in names])
    boxes, spans, bad = [], [], []
    for i, k in enumerate(match.index):
        obj = objects[k] if k is not None else None
        if obj is None or obj.status in ("malformed", "missing"):
            bad.append(i)
        ok = obj is not None and obj.status == "box"
        boxes.append(list(obj.box) if ok else None)
        spans.append(obj.span if ok else None)
    return ParsedAnswer(boxes, spans, bad)


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
        raise ValueError(f"unknown coordinate convention {convention!r}; valid: {list(CONVENTIONS)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    return box_in_image([x0 * sx, y0 * sy, x1 * sx, y1 * sy], w, h)  # 1e308 * scale = inf: None


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
        raise ValueError(f"unknown coordinate convention {convention!r}; valid: {list(CONVENTIONS)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    return [
        min(max(round(x0 * sx), 0), lim_x),
        min(max(round(y0 * sy), 0), lim_y),
        min(max(round(x1 * sx), 0), lim_x),
        min(max(round(y1 * sy), 0), lim_y),
    ]
