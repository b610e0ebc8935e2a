"""Reading and validating metric inputs (predictions, references, spans, types, boxes, masks): shared by the
project's scorer (:mod:`riveg_hf.metrics.core`) and the published systems' (:mod:`riveg_hf.metrics.protocols`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ..boxes import BoxError, as_xyxy
from ..masks import MaskError, rle_from_any

__all__ = ["METRICS", "MetricInputError", "prf"]

_GOLD_SPAN = ("start", "end")


class MetricInputError(ValueError):
    """Predictions or references in the wrong shape; the message names the example and the field."""


def prf(correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1 as fractions (0.0 for empty denominators)."""
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


class _Ent(NamedTuple):
    span: tuple[int, int]
    type: str
    regions: list[Any]  # boxes or masks
    groundable: bool


def _type_name(value: Any, type_names: Sequence[str]) -> str:
    if isinstance(value, str):
        if value in type_names:
            return value
        if value.isdigit():
            value = int(value)  # a ClassLabel index that went through a string column
        else:
            folded = [t for t in type_names if t.casefold() == value.strip().casefold()]
            if len(folded) == 1:
                return folded[0]  # "per" -> "PER": case-insensitive, documented
            raise MetricInputError(
                f"type {value!r} is not one of the dataset's types {list(type_names)} (matched without regard "
                "to case); map your labels first (e.g. MISC -> OTHER) or pass type_names=[...]."
            )
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(type_names):
            return type_names[value]
        raise MetricInputError(f"type index {value} is outside type_names {list(type_names)}.")
    raise MetricInputError(f"'type' must be a string or a ClassLabel index, got {value!r}.")


def _check_iou_threshold(value: Any) -> float:
    """``iou_threshold`` as a float in (0, 1], or a MetricInputError saying what was received."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) <= 1:
        raise MetricInputError(
            f"iou_threshold must be a number in (0, 1] (the IoU a region needs to count as right; 0.5 in every "
            f"published protocol), got {value!r}."
        )
    return float(value)


def _check_type_map(type_map: Any, type_names: Sequence[str]) -> dict[str, str]:
    """``type_map`` as a dict of type names; refused when it renames none of ``type_names`` (a silent no-op)."""
    if not isinstance(type_map, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in type_map.items()
    ):
        raise MetricInputError(
            f"type_map must be a dict {{type name: new type name}} of strings (e.g. FMNERG's fine -> coarse types), "
            f"got {type_map!r:.200}."
        )
    canonical = {t.casefold(): t for t in type_names}
    out = {
        canonical.get(k.casefold(), k): v for k, v in type_map.items()
    }  # keys matched like types: any case
    renames = [k for k, v in out.items() if k in type_names and v != k]
    if type_map and not renames:
        keys = sorted(type_map)
        raise MetricInputError(
            f"type_map renames none of the data's types {list(type_names)} (it maps {keys[:6]}"
            f"{' ...' if len(keys) > 6 else ''}): these types are already at the level it maps to, e.g. coarse "
            "types, which have no fine types to map from. Drop the type_map (`riveg evaluate`: drop --level "
            "coarse, which applies to Twitter-FMNERG's fine config only)."
        )
    return out


def _entity(
    ent: Any, type_names: Sequence[str], span_keys: tuple[str, str] | None
) -> tuple[tuple[int, int], str]:
    """-> ((start, end), type name). ``span_keys`` None: token_start/token_end when present, else start/end."""
    if type(ent) is dict and (
        span_keys is _GOLD_SPAN or (span_keys is None and ent.get("token_start") is None)
    ):
        s, e, t = ent.get("start"), ent.get("end"), ent.get("type")
        if type(s) is int and type(e) is int and 0 <= s <= e and type(t) is str and t in type_names:
            return (s, e), t  # the common case, validated without the general path
    if not isinstance(ent, Mapping):
        raise MetricInputError(f"expected an entity dict, got {type(ent).__name__}.")
    if span_keys is None:
        span_keys = ("token_start", "token_end") if ent.get("token_start") is not None else _GOLD_SPAN
    for key in (*span_keys, "type"):
        if key not in ent:
            raise MetricInputError(f"missing key {key!r} (entity keys: {sorted(ent)}).")
    s, e = ent[span_keys[0]], ent[span_keys[1]]
    if not (isinstance(s, int) and isinstance(e, int)) or isinstance(s, bool) or isinstance(e, bool) or e < s:
        raise MetricInputError(f"span ({s!r}, {e!r}) must be two integers with start <= end.")
    if s < 0:
        raise MetricInputError(f"span ({s!r}, {e!r}) must be non-negative offsets (start >= 0).")
    return (s, e), _type_name(ent["type"], type_names)


def _fast_box(box: Any) -> list[float] | None:
    """A plain list of 4 finite, ordered numbers -> floats; anything else -> None (take the general path)."""
    if type(box) is list and len(box) == 4:
        x0, y0, x1, y1 = box
        if not all(type(v) in (int, float) for v in box):  # strings, booleans, None: the general path refuses
            return None
        try:
            x0, y0, x1, y1 = float(x0), float(y0), float(x1), float(y1)
        except (TypeError, ValueError):
            return None
        if -math.inf < x0 <= x1 < math.inf and -math.inf < y0 <= y1 < math.inf:
            return [x0, y0, x1, y1]
    return None


def _box(box: Any, field_name: str) -> list[float] | None:
    if box is None:
        return None
    fast = _fast_box(box)
    if fast is not None:
        return fast
    try:
        return as_xyxy(box, what=f"field {field_name!r}")
    except BoxError as err:
        raise MetricInputError(str(err)) from None


def _pred_box(ent: Mapping[str, Any]):
    if "box" not in ent:
        raise MetricInputError(f"missing key 'box' (use None for 'not visible'; keys: {sorted(ent)}).")
    return _box(ent["box"], "box")


def _gold_boxes(ent: Mapping[str, Any]) -> list[list[float]]:
    if "boxes" not in ent:
        raise MetricInputError("missing key 'boxes' (a list of [xmin, ymin, xmax, ymax]; [] = not visible).")
    boxes = ent["boxes"] or []
    if type(boxes) is list:
        out = [_fast_box(b) for b in boxes]
        if None not in out:
            return out
    if not isinstance(boxes, (list, tuple)):
        raise MetricInputError(f"field 'boxes' must be a list of [xmin, ymin, xmax, ymax], got {boxes!r}.")
    out = [_box(b, "boxes") for b in boxes]
    if None in out:
        raise MetricInputError("field 'boxes' holds None; use [] for an entity that is not visible.")
    return out


def _pred_mask(ent: Mapping[str, Any]):
    if "mask" not in ent:
        raise MetricInputError("missing key 'mask' (COCO RLE or boolean array; None = not visible).")
    if ent["mask"] is None:
        return None
    try:
        return rle_from_any(ent["mask"])
    except MaskError as err:
        raise MetricInputError(f"field 'mask': {err}") from None


def _gold_masks(ent: Mapping[str, Any]) -> tuple[list[Any], bool]:
    if "masks" not in ent:
        raise MetricInputError("missing key 'masks' (a list of COCO RLEs; [] = not visible).")
    masks = [m for m in (ent["masks"] or []) if m is not None]
    try:
        rles = [rle_from_any(m) for m in masks]
    except MaskError as err:
        raise MetricInputError(f"field 'masks': {err}") from None
    groundable = bool(ent["masks"]) or bool(ent.get("boxes"))
    return rles, groundable


def _box_iou(a: list[float], b: list[float]) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _region_ok(region: Any, g: _Ent, iou_fn, threshold: float) -> tuple[bool, float | None]:
    """Is the predicted region right for gold ``g``, and its best IoU (None when not computed)."""
    if region is None:
        return not g.groundable, None
    if not g.groundable or not g.regions:
        return False, None
    best = max(iou_fn(region, r) for r in g.regions)
    return best >= threshold, best


def _pairs(predictions, references, ids) -> list[tuple[str, Sequence, Sequence]]:
    """Align predictions with references -> [(example id, predicted entities, gold entities)]."""
    if isinstance(predictions, Mapping):
        if isinstance(references, Mapping):
            ref_map = references
        elif ids is not None:
            if len(ids) != len(references):
                raise MetricInputError(f"ids has {len(ids)} items but references has {len(references)}.")
            ref_map = dict(zip(ids, references))
        else:
            raise MetricInputError(
                "predictions is a dict keyed by example id, so references must be a dict too, or pass ids=[...] "
                "(e.g. ids=dataset['id'])."
            )
        unknown = [k for k in predictions if k not in ref_map]
        if unknown:
            raise MetricInputError(
                f"predictions for example id(s) {unknown[:5]} that are not in the references "
                f"({len(unknown)} in all); check that predictions and references come from the same split."
            )
        return [(str(k), predictions.get(k) or [], ref_map[k]) for k in ref_map]
    if isinstance(references, Mapping):
        raise MetricInputError(
            "references is a dict keyed by id: pass predictions as a dict with the same ids."
        )
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise MetricInputError(
            f"mismatched lengths: {len(predictions)} prediction lists but {len(references)} reference lists; "
            "pass one list of entities per example, in the same order (an empty list for no entity)."
        )
    names = list(ids) if ids is not None else [str(i) for i in range(len(references))]
    return list(zip(names, predictions, references))


#: the three scores every protocol gives: MNER (span + type), EEG (+ groundable), GMNER (+ box or "not visible")
METRICS = ("mner", "eeg", "gmner")
