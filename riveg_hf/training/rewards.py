"""Rewards of a joint reader's answer (GRPO, ``riveg train reader --method grpo``), each one on its own.

One answer of one tweet is read **by the reader itself** (:meth:`riveg_hf.stages.JointReader.reading`: the
family's parser, the entities placed back onto the tweet) and compared with the gold entities of the tweet:

==========  ==========================================================================================
``format``  1.0 when the answer is exactly the family's format (below), else 0.0 (MAKAR's and SAKE's
            format reward: all or nothing)
``count``   1 - |#predicted - #gold| / max(#predicted, #gold); 1.0 when both are 0 (MCR's entity-count
            reward)
``span``    F1 of the predicted entity spans against the gold spans, types and boxes ignored (MCR's span
            reward)
``type``    F1 of span + type: the MNER F1 of the tweet (MCR's type reward)
``region``  among the predicted entities whose span is a gold span (one-to-one), the fraction whose region
            is right: IoU >= 0.5 with any gold box, or "not visible" for an entity the image does not show
            (MAKAR's IoU >= 0.5 reward, with not-visible counted as in the metric); 1.0 when nothing is
            predicted and nothing is gold, 0.0 when no span matches otherwise
``gmner``   the GMNER F1 of the tweet (span, type and region: :func:`riveg_hf.metrics.compute_gmner`), 1.0 when
            nothing is predicted and nothing is gold -- the **default total**, as SAKE's ``EM`` reward mode
            (``tangjielong928/SAKE@71417df:sake_rl/utils/reward_score_mm/twitter_gmner_score.py``,
            ``calculate_f1_score`` and ``compute_score``)
==========  ==========================================================================================

The total the policy is trained on (``reward=``): ``"gmner"`` (default), ``"sake"`` -- SAKE's final score
``(1 - 0.1) * gmner + 0.1 * format`` (``compute_score``, its default ``format_penalty`` of 0.1; SAKE's search
penalty does not apply: the reader trained here does not search) -- or ``"mean"``: the mean of the five
components (an MCR-style sum of separate rewards, equally weighted). Every component is logged, whichever the
total.

The format of each family (what its parser reads without a note):

* ``qwen-vl``: a JSON list (code fences allowed) of objects, each with a string ``entity``, a string ``type``
  and ``bbox_2d`` = ``null`` or four finite numbers;
* ``e2e-gmner``: an ``<answer>...</answer>`` block (after a ``<think>...</think>`` one when the reader was trained
  with reasoning), or the bare answer when it was not, holding ``None`` or ``entity|type|box`` parts separated by
  ``;`` with every box ``None`` or four numbers (or a list of such boxes) -- E2E-GMNER's
  ``parse_triples`` without a dropped part or an invalid box (``Finch-coder/E2E-GMNER@d90c1eb:
  src/e2egmner/evaluation/parsing.py``).

>>> gold = [{"start": 0, "end": 1, "type": "ORG", "boxes": [[10, 8, 40, 30]]},
...         {"start": 2, "end": 3, "type": "LOC", "boxes": []}]
>>> pred = [{"start": 0, "end": 1, "type": "ORG", "box": [10, 8, 40, 30]},
...         {"start": 2, "end": 3, "type": "PER", "box": None}]
>>> s = entity_scores(pred, gold)
>>> s["count"], s["span"], s["type"], s["region"], s["gmner"]
(1.0, 1.0, 0.5, 1.0, 0.5)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..boxes import iou_xyxy
from ..metrics.core import compute_gmner
from ..types import ENTITY_TYPES

__all__ = [
    "COMPONENTS",
    "IOU_THRESHOLD",
    "SAKE_FORMAT_WEIGHT",
    "TOTALS",
    "answer_predictions",
    "answer_rewards",
    "entity_scores",
    "format_reward",
    "total_reward",
    "word_offsets",
]

#: the rewards logged on their own (the total is one of :data:`TOTALS`)
COMPONENTS = ("format", "count", "span", "type", "region")
#: the totals GRPO can train on: ``gmner`` (per-tweet GMNER F1), ``sake`` (SAKE's 0.9 F1 + 0.1 format), ``mean``
#: (the mean of the components)
TOTALS = ("gmner", "sake", "mean")
#: the IoU at which a predicted box matches a gold box (the GMNER metric's)
IOU_THRESHOLD = 0.5
#: SAKE's ``format_penalty`` default (twitter_gmner_score.py ``compute_score``)
SAKE_FORMAT_WEIGHT = 0.1
_FENCE = re.compile(r"```(?:json)?", re.I)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.S | re.I)


# ---------------------------------------------------------------------- format
def _four_numbers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _qwen_vl_format(answer: str) -> bool:
    body = _FENCE.sub(" ", answer).strip()
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, list):
        return False
    for o in value:
        if not isinstance(o, dict) or set(o) != {"entity", "type", "bbox_2d"}:
            return False
        if not isinstance(o["entity"], str) or not o["entity"].strip() or not isinstance(o["type"], str):
            return False
        if o["bbox_2d"] is not None and not _four_numbers(o["bbox_2d"]):
            return False
    return True


def _e2e_gmner_format(answer: str, reasoning: bool) -> bool:
    from ..stages.readers.e2e_gmner import read_triples

    text = answer.strip()
    if reasoning:
        think = _THINK.match(text)
        if think is None:
            return False
        text = text[think.end() :]
        block = _ANSWER.fullmatch(text.strip())
        if block is None:
            return False
        text = block.group(1)
    elif "<answer>" in text.lower() or "<think>" in text.lower():
        return False
    triples, dropped = read_triples(text)
    return not dropped and all(t.valid for t in triples)


def format_reward(answer: str, family: str, *, reasoning: bool = False) -> float:
    """1.0 when ``answer`` is exactly the reader family's format (see the module doc), else 0.0.

    >>> format_reward('[{"entity": "Paris", "type": "LOC", "bbox_2d": null}]', "qwen-vl")
    1.0
    >>> format_reward('[{"entity": "Paris", "type": "LOC", "bbox_2d": [1, 2, 3]}]', "qwen-vl")
    0.0
    >>> format_reward("<think>a city</think><answer>Paris|LOC|None</answer>", "e2e-gmner", reasoning=True)
    1.0
    """
    if family == "qwen-vl":
        return float(_qwen_vl_format(answer))
    if family == "e2e-gmner":
        return float(_e2e_gmner_format(answer, reasoning))
    raise ValueError(f"no format reward for reader family {family!r}; valid: qwen-vl, e2e-gmner")


# ---------------------------------------------------------------------- entities
def word_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character offsets of each word in ``" ".join(tokens)`` (the text the reader reads).

    >>> word_offsets(["Obama", "in", "Paris"])
    [(0, 5), (6, 8), (9, 14)]
    """
    out, at = [], 0
    for t in tokens:
        out.append((at, at + len(t)))
        at += len(t) + 1
    return out


def answer_predictions(entities: Sequence[Any], offsets: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """The reader's entities (character offsets) as metric predictions on words: the words an entity overlaps,
    the pipeline's own rule (``RiVEGPipeline._read``), so training scores what ``riveg predict`` would."""
    preds = []
    for e in entities:
        words = [w for w, (a, z) in enumerate(offsets) if a < e.end and z > e.start]
        if words:
            preds.append({"start": words[0], "end": words[-1] + 1, "type": e.type, "box": e.box})
    return preds


def _f1(correct: int, n_pred: int, n_gold: int) -> float:
    if n_pred == 0 and n_gold == 0:
        return 1.0
    return 2 * correct / (n_pred + n_gold) if n_pred + n_gold else 0.0


def _region_right(box, gold_boxes) -> bool:
    if box is None:
        return not gold_boxes
    return any(iou_xyxy(box, g) >= IOU_THRESHOLD for g in gold_boxes)


def entity_scores(
    predictions: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    type_names: Sequence[str] = ENTITY_TYPES,
) -> dict[str, float]:
    """``count``, ``span``, ``type``, ``region`` and ``gmner`` of one tweet (see the module doc). Predictions
    ``{"start", "end", "type", "box"}`` and references ``{"start", "end", "type", "boxes"}`` on words."""
    n_pred, n_gold = len(predictions), len(references)
    count = 1.0 if max(n_pred, n_gold) == 0 else 1.0 - abs(n_pred - n_gold) / max(n_pred, n_gold)
    gold_spans: dict[tuple[int, int], list[int]] = {}
    for k, g in enumerate(references):
        gold_spans.setdefault((int(g["start"]), int(g["end"])), []).append(k)
    taken: set[int] = set()
    span_hits, region_hits = 0, 0
    for p in predictions:
        free = [k for k in gold_spans.get((int(p["start"]), int(p["end"])), []) if k not in taken]
        if not free:
            continue
        # among gold entities with this span, the one of the same type first
        k = next((k for k in free if str(references[k]["type"]).lower() == str(p["type"]).lower()), free[0])
        taken.add(k)
        span_hits += 1
        region_hits += _region_right(p.get("box"), [list(b) for b in references[k].get("boxes") or []])
    if n_pred == 0 and n_gold == 0:
        region = 1.0
    else:
        region = region_hits / span_hits if span_hits else 0.0
    if n_pred == 0 and n_gold == 0:
        mner = gmner = 1.0
    else:
        scores = compute_gmner([list(predictions)], [list(references)], type_names=type_names)
        mner, gmner = float(scores["mner_f1"]), float(scores["gmner_f1"])
    return {"count": count, "span": _f1(span_hits, n_pred, n_gold), "type": mner, "region": region,
            "gmner": gmner}  # fmt: skip


def answer_rewards(
    reader,
    answer: str,
    tokens: Sequence[str],
    references: Sequence[Mapping[str, Any]],
    original_size: tuple[int, int],
    input_size: tuple[int, int] | None,
    *,
    type_names: Sequence[str] | None = None,
    reasoning: bool = False,
) -> dict[str, float]:
    """Every reward of one answer (``format`` and the :func:`entity_scores`): the answer read by ``reader``
    (its family's parser, boxes to original pixels, entities placed on ``" ".join(tokens)``) against the tweet's
    gold ``references`` (on words, boxes in original pixels). ``original_size`` is the image's (width, height),
    ``input_size`` the image as the processor resized it."""
    from types import SimpleNamespace

    from ..stages.reader import ReadRequest

    text = " ".join(tokens)
    request = ReadRequest(SimpleNamespace(size=tuple(original_size)), text)  # the parsers read the size only
    reading = reader.reading(answer, request, tuple(original_size), tuple(input_size) if input_size else None)
    preds = answer_predictions(reading.entities, word_offsets(tokens))
    scores = entity_scores(
        preds, references, list(type_names or getattr(reader, "entity_types", None) or ENTITY_TYPES)
    )
    scores["format"] = format_reward(answer, reader.family, reasoning=reasoning)
    return scores


def total_reward(scores: Mapping[str, float], total: str = "gmner") -> float:
    """The reward the policy is trained on, from the components (see the module doc).

    >>> total_reward({"format": 0.0, "count": 1.0, "span": 1.0, "type": 1.0, "region": 0.5, "gmner": 0.5}, "sake")
    0.45
    """
    if total == "gmner":
        return float(scores["gmner"])
    if total == "sake":
        return round((1 - SAKE_FORMAT_WEIGHT) * scores["gmner"] + SAKE_FORMAT_WEIGHT * scores["format"], 12)
    if total == "mean":
        return sum(float(scores[k]) for k in COMPONENTS) / len(COMPONENTS)
    raise ValueError(f"reward {total!r}: expected one of {list(TOTALS)}")
