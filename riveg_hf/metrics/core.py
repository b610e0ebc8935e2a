"""MNER / EEG / GMNER / SMNER scores, linear in the number of entities.

Definitions (Yu et al., ACL 2023; RiVEG, Findings of ACL 2024; their released scorers):

* an entity is identified within its example by its span ``(start, end)`` -- the same unit on
  both sides (token offsets for the riveg-hf datasets) -- and has a ``type``;
* **MNER**: a prediction is correct when a not-yet-matched gold entity of the same example
  has the same span and type;
* **EEG** (entity extraction & grounding): same span and a correct region, type ignored;
* **GMNER**: same span, same type and a correct region;
* **region correct**: both say "not visible" (prediction ``box`` is None, gold ``boxes`` is
  empty), or the predicted box has IoU >= 0.5 with *any one* gold box of the entity. A box
  against an ungroundable gold, or None against a groundable gold, is wrong;
* **SMNER**: as GMNER with mask IoU >= 0.5 against any gold mask as the region criterion;
* types are the dataset's (``type_names``, default PER, LOC, ORG, OTHER), matched without regard to
  case (``"per"`` counts as ``"PER"``); any other type raises :class:`MetricInputError` listing them;
* masks are validated before any IoU (well-formed RLE whose runs sum to height x width, same size
  as the gold mask), so a corrupt mask is an error naming its example, never an unbounded loop;
* matching is one-to-one per metric (a duplicated prediction is a false positive);
  precision = correct / #predictions, recall = correct / #gold, F1 = 2PR / (P + R) (0 when
  P + R = 0); micro-averaged over the split, with a per-type breakdown.

Gold entities are indexed by span in a dict per example, so each prediction is matched in
O(1): the whole computation is linear in #predictions + #gold.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ..boxes import BoxError, as_xyxy
from ..masks import MaskError, mask_iou, rle_from_any
from ..types import ENTITY_TYPES

__all__ = ["MetricInputError", "compute_gmner", "compute_smner", "prf"]

IOU_THRESHOLD = 0.5
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


METRICS = ("mner", "eeg", "gmner")


def _score(
    predictions, references, *, regions: str, ids, type_names, span_keys, iou_threshold
) -> dict[str, Any]:
    is_mask = regions == "mask"
    iou_fn = mask_iou if is_mask else _box_iou
    n_pred = n_gold = 0
    correct = dict.fromkeys(METRICS, 0)
    gold_by_type: dict[str, int] = defaultdict(int)
    pred_by_type: dict[str, int] = defaultdict(int)
    correct_by_type = {k: defaultdict(int) for k in METRICS}
    diag = {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "ground_ok": 0, "ground_n": 0, "iou_sum": 0.0, "iou_n": 0}

    for ex_id, preds, golds in _pairs(predictions, references, ids):
        if preds is None:
            preds = []
        if not isinstance(preds, (list, tuple)) or not isinstance(golds, (list, tuple)):
            raise MetricInputError(
                f"example {ex_id!r}: expected lists of entity dicts, got "
                f"{type(preds).__name__} / {type(golds).__name__}."
            )
        index: dict[tuple[int, int], list[int]] = {}
        gold: list[_Ent] = []
        for j, g in enumerate(golds):
            try:
                span, typ = _entity(g, type_names, _GOLD_SPAN)
                if is_mask:
                    regs, groundable = _gold_masks(g)
                else:
                    regs = _gold_boxes(g)
                    groundable = bool(regs)
            except MetricInputError as err:
                raise MetricInputError(f"example {ex_id!r} reference {j}: {err}") from None
            gold.append(_Ent(span, typ, regs, groundable))
            index.setdefault(span, []).append(j)
            gold_by_type[typ] += 1
        n_gold += len(gold)
        used_mner: set[int] = set()
        used_eeg: set[int] = set()
        used_gmner: set[int] = set()
        for i, p in enumerate(preds):
            try:
                span, typ = _entity(p, type_names, span_keys)
                region = _pred_mask(p) if is_mask else _pred_box(p)
            except MetricInputError as err:
                raise MetricInputError(f"example {ex_id!r} prediction {i}: {err}") from None
            pred_by_type[typ] += 1
            n_pred += 1
            cands = index.get(span)
            if not cands:
                continue
            # region correctness and best IoU of this prediction against each candidate gold entity
            try:
                ok_iou = [_region_ok(region, gold[j], iou_fn, iou_threshold) for j in cands]
            except MaskError as err:
                raise MetricInputError(f"example {ex_id!r} prediction {i}: {err}") from None
            if len(cands) == 1:  # the common case: one gold entity with this span
                j = cands[0]
                same_type = gold[j].type == typ
                ok = ok_iou[0][0]
                if same_type and j not in used_mner:
                    used_mner.add(j)
                    correct["mner"] += 1
                    correct_by_type["mner"][typ] += 1
                if ok and j not in used_eeg:
                    used_eeg.add(j)
                    correct["eeg"] += 1
                    correct_by_type["eeg"][typ] += 1
                if same_type and ok and j not in used_gmner:
                    used_gmner.add(j)
                    correct["gmner"] += 1
                    correct_by_type["gmner"][typ] += 1
            else:
                for metric, used, need_type, need_region in (
                    ("mner", used_mner, True, False),
                    ("eeg", used_eeg, False, True),
                    ("gmner", used_gmner, True, True),
                ):
                    for k, j in enumerate(cands):
                        if (
                            j not in used
                            and (not need_type or gold[j].type == typ)
                            and (not need_region or ok_iou[k][0])
                        ):
                            used.add(j)
                            correct[metric] += 1
                            correct_by_type[metric][typ] += 1
                            break
            # stage diagnostics on correctly recognised entities (span and type right)
            match = next((k for k, j in enumerate(cands) if gold[j].type == typ), None)
            if match is not None:
                g = gold[cands[match]]
                explicit = p.get("groundable")
                pred_groundable = bool(explicit) if explicit is not None else region is not None
                if pred_groundable and g.groundable:
                    diag["tp"] += 1
                elif pred_groundable:
                    diag["fp"] += 1
                elif g.groundable:
                    diag["fn"] += 1
                else:
                    diag["tn"] += 1
                if region is not None and g.groundable:
                    ok, best = ok_iou[match]
                    diag["ground_n"] += 1
                    diag["ground_ok"] += int(ok)
                    if best is not None:
                        diag["iou_sum"] += best
                        diag["iou_n"] += 1

    out: dict[str, Any] = {}
    for metric in METRICS:
        p, r, f = prf(correct[metric], n_pred, n_gold)
        out.update({f"{metric}_precision": p, f"{metric}_recall": r, f"{metric}_f1": f})
    per_type = {}
    for t in sorted(set(gold_by_type) | set(pred_by_type)):
        per_type[t] = {"n_gold": gold_by_type[t], "n_pred": pred_by_type[t]}
        for metric in METRICS:
            # precision over predictions of type t, recall over gold of type t (EEG: by the predicted type)
            p, r, f = prf(correct_by_type[metric][t], pred_by_type[t], gold_by_type[t])
            per_type[t].update({f"{metric}_precision": p, f"{metric}_recall": r, f"{metric}_f1": f})
    out["per_type"] = per_type
    tp, fp, fn, tn = diag["tp"], diag["fp"], diag["fn"], diag["tn"]
    n_rec = tp + fp + fn + tn
    ep, er, ef = prf(tp, tp + fp, tp + fn)
    name = "mask" if is_mask else "grounding"
    out["diagnostics"] = {
        "recognised_entities": n_rec,
        "entailment_accuracy": (tp + tn) / n_rec if n_rec else 0.0,
        "entailment_precision": ep,
        "entailment_recall": er,
        "entailment_f1": ef,
        "entailment_confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        f"{name}_evaluated": diag["ground_n"],
        f"{name}_accuracy": diag["ground_ok"] / diag["ground_n"] if diag["ground_n"] else 0.0,
        f"{name}_mean_iou": diag["iou_sum"] / diag["iou_n"] if diag["iou_n"] else 0.0,
    }
    out["n_predictions"] = n_pred
    out["n_references"] = n_gold
    return out


def compute_gmner(
    predictions: Sequence[Sequence[Mapping[str, Any]]] | Mapping[str, Sequence[Mapping[str, Any]]],
    references: Sequence[Sequence[Mapping[str, Any]]] | Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    ids: Sequence[str] | None = None,
    type_names: Sequence[str] = ENTITY_TYPES,
    span_keys: tuple[str, str] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[str, Any]:
    """MNER, EEG and GMNER precision / recall / F1 (fractions), ``per_type`` and ``diagnostics``.

    Args:
        predictions: one list of entity dicts per example ``{"start", "end", "type", "box"}``,
            ``box`` as ``[xmin, ymin, xmax, ymax]`` pixels, the pipeline's ``{"xmin", ...}`` dict,
            or ``None`` (not visible). Or a dict ``{example_id: [entities]}``.
        references: one list per example ``{"start", "end", "type", "boxes"}`` (``boxes`` a list of
            xyxy boxes, ``[]`` = not visible) -- a dataset's ``entities`` column works as is.
        ids: example ids for lists (used in error messages, and to key list references when the
            predictions are a dict).
        type_names: names for integer (ClassLabel) types; default PER, LOC, ORG, OTHER.
        span_keys: keys of the prediction span; default: ``token_start``/``token_end`` when a
            prediction has them (pipeline output on tokens), else ``start``/``end``.
        iou_threshold: IoU for a correct box (0.5, inclusive).

    >>> gold = [[{"start": 0, "end": 2, "type": "PER", "boxes": [[0, 0, 10, 10]]}]]
    >>> pred = [[{"start": 0, "end": 2, "type": "PER", "box": [0, 0, 10, 9]}]]
    >>> compute_gmner(pred, gold)["gmner_f1"]
    1.0
    """
    return _score(
        predictions,
        references,
        regions="box",
        ids=ids,
        type_names=type_names,
        span_keys=span_keys,
        iou_threshold=iou_threshold,
    )


def compute_smner(
    predictions,
    references,
    *,
    ids: Sequence[str] | None = None,
    type_names: Sequence[str] = ENTITY_TYPES,
    span_keys: tuple[str, str] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[str, Any]:
    """MNER, EEG and SMNER scores with masks as the region (keys ``mner_*``, ``eeg_*``, ``smner_*``).

    Predictions carry ``mask`` (COCO RLE or boolean array, None = not visible), references
    ``masks`` (a list, one per gold box; ``[]`` = not visible). A gold entity is groundable when
    it has boxes or masks. ``diagnostics["mask_mean_iou"]`` is the mean mask IoU over entities
    whose span and type are right and that are groundable in both.
    """
    out = _score(
        predictions,
        references,
        regions="mask",
        ids=ids,
        type_names=type_names,
        span_keys=span_keys,
        iou_threshold=iou_threshold,
    )
    renamed = {}
    for k, v in out.items():
        if k.startswith("gmner_"):
            k = "smner_" + k[len("gmner_") :]
        renamed[k] = v
    for t, d in renamed["per_type"].items():
        renamed["per_type"][t] = {
            ("smner_" + k[6:] if k.startswith("gmner_") else k): v for k, v in d.items()
        }
    return renamed
