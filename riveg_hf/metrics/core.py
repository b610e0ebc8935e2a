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

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..masks import MaskError, mask_iou
from ..types import ENTITY_TYPES
from .inputs import (
    _GOLD_SPAN,
    METRICS,
    MetricInputError,
    _box_iou,
    _check_iou_threshold,
    _check_type_map,
    _Ent,
    _entity,
    _gold_boxes,
    _gold_masks,
    _pairs,
    _pred_box,
    _pred_mask,
    _region_ok,
    _type_name,
    prf,
)
from .protocols import score_protocol

__all__ = ["MetricInputError", "compute_gmner", "compute_smner", "prf"]

IOU_THRESHOLD = 0.5


@dataclass
class MatchedPrediction:
    """One prediction as the metric reads and matches it (see :func:`match_examples`)."""

    index: int
    entity: Mapping[str, Any]
    span: tuple[int, int]
    type: str
    region: Any  # xyxy box or RLE mask (None: not visible)
    #: the gold entities with this span, and per each (region right?, best IoU or None)
    cands: list[int]
    ok_iou: list[tuple[bool, float | None]]
    #: metric ("mner", "eeg", "gmner") -> the gold entity this prediction matched, or None
    matched: dict[str, int | None] = field(default_factory=dict)


def match_examples(predictions, references, *, regions: str, ids, type_names, span_keys, iou_threshold):
    """The metric's reading, validation and one-to-one matching, per example: yields ``(example id, the gold
    dicts, the gold entities read, [MatchedPrediction])``. The scores (:func:`compute_gmner`) and the report's
    error classes (:mod:`riveg_hf.report`) both count from it, so they never disagree."""
    is_mask = regions == "mask"
    iou_fn = mask_iou if is_mask else _box_iou
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
        used: dict[str, set[int]] = {m: set() for m in METRICS}
        matched_preds = []
        for i, p in enumerate(preds):
            try:
                span, typ = _entity(p, type_names, span_keys)
                region = _pred_mask(p) if is_mask else _pred_box(p)
            except MetricInputError as err:
                raise MetricInputError(f"example {ex_id!r} prediction {i}: {err}") from None
            cands = index.get(span) or []
            # region correctness and best IoU of this prediction against each candidate gold entity
            try:
                ok_iou = [_region_ok(region, gold[j], iou_fn, iou_threshold) for j in cands]
            except MaskError as err:
                raise MetricInputError(f"example {ex_id!r} prediction {i}: {err}") from None
            mp = MatchedPrediction(i, p, span, typ, region, list(cands), ok_iou)
            for metric, need_type, need_region in (
                ("mner", True, False),
                ("eeg", False, True),
                ("gmner", True, True),
            ):
                mp.matched[metric] = next(
                    (
                        j
                        for k, j in enumerate(cands)
                        if j not in used[metric]
                        and (not need_type or gold[j].type == typ)
                        and (not need_region or ok_iou[k][0])
                    ),
                    None,
                )
                if mp.matched[metric] is not None:
                    used[metric].add(mp.matched[metric])
            matched_preds.append(mp)
        yield ex_id, golds, gold, matched_preds


def _score(
    predictions, references, *, regions: str, ids, type_names, span_keys, iou_threshold
) -> dict[str, Any]:
    is_mask = regions == "mask"
    n_pred = n_gold = 0
    correct = dict.fromkeys(METRICS, 0)
    gold_by_type: dict[str, int] = defaultdict(int)
    pred_by_type: dict[str, int] = defaultdict(int)
    correct_by_type = {k: defaultdict(int) for k in METRICS}
    diag = {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "ground_ok": 0, "ground_n": 0, "iou_sum": 0.0, "iou_n": 0}

    for _, _, gold, preds in match_examples(
        predictions, references, regions=regions, ids=ids, type_names=type_names, span_keys=span_keys,
        iou_threshold=iou_threshold,
    ):  # fmt: skip
        n_gold += len(gold)
        for g in gold:
            gold_by_type[g.type] += 1
        for mp in preds:
            typ, region = mp.type, mp.region
            pred_by_type[typ] += 1
            n_pred += 1
            for metric in METRICS:
                if mp.matched[metric] is not None:
                    correct[metric] += 1
                    correct_by_type[metric][typ] += 1
            # stage diagnostics on correctly recognised entities (span and type right)
            match = next((k for k, j in enumerate(mp.cands) if gold[j].type == typ), None)
            if match is not None:
                g = gold[mp.cands[match]]
                explicit = mp.entity.get("groundable")
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
                    ok, best = mp.ok_iou[match]
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
    protocol: str = "riveg-hf",
    type_map: Mapping[str, str] | None = None,
    candidates: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """MNER, EEG and GMNER precision / recall / F1 (fractions), ``per_type`` and ``diagnostics``.

    ``protocol``: ``"riveg-hf"`` (this project's: span keys, one-to-one), or the scoring of a published system
    -- ``"riveg"``, ``"h-index"``, ``"e2e-gmner"``, ``"fmnerg"``, ``"sake"`` -- reimplemented from its public code,
    quirks included (:mod:`riveg_hf.metrics.protocols` says what each does and where it comes from); those return the
    P / R / F1 and counts only. ``type_map`` renames types on both sides before scoring (e.g. FMNERG's fine types
    to their coarse type); ``candidates`` (``{example id: [boxes]}``, detector proposals) for ``h-index`` /
    ``fmnerg``.

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
        iou_threshold: IoU for a correct box (0.5, inclusive), a number in (0, 1]. ``riveg-hf`` and ``e2e-gmner``
            take it; the other protocols fix it in their code, so a value other than 0.5 is refused there.
        type_map: rename types before scoring; it must rename at least one of ``type_names`` (a map that
            renames none -- e.g. FMNERG's fine -> coarse map on Twitter-GMNER's PER/LOC/ORG/OTHER, which have no
            fine types -- is refused rather than scoring the data unchanged).
        candidates: for ``h-index`` / ``fmnerg`` only, keyed by the example ids (as strings: ``0`` and ``"0"``
            are the same example).

    >>> gold = [[{"start": 0, "end": 2, "type": "PER", "boxes": [[0, 0, 10, 10]]}]]
    >>> pred = [[{"start": 0, "end": 2, "type": "PER", "box": [0, 0, 10, 9]}]]
    >>> compute_gmner(pred, gold)["gmner_f1"]
    1.0
    """
    iou_threshold = _check_iou_threshold(iou_threshold)
    if type_map is not None:
        type_map = _check_type_map(type_map, type_names)
    if protocol != "riveg-hf":
        return score_protocol(protocol, predictions, references, ids=ids, type_names=type_names,
                              span_keys=span_keys, type_map=type_map, candidates=candidates,
                              iou_threshold=iou_threshold)  # fmt: skip
    if candidates is not None:
        raise MetricInputError(
            "the riveg-hf protocol scores the predicted boxes themselves and does not read detector candidates; "
            "drop candidates=, or pass protocol='h-index' / 'fmnerg' (the protocols that use them)."
        )
    if type_map:
        predictions, references, type_names = _mapped(predictions, references, type_names, type_map)
    return _score(
        predictions,
        references,
        regions="box",
        ids=ids,
        type_names=type_names,
        span_keys=span_keys,
        iou_threshold=iou_threshold,
    )


def _mapped(predictions, references, type_names, type_map):
    """Both sides with their types renamed by ``type_map`` (validated against ``type_names`` first)."""
    names = list(dict.fromkeys(type_map.get(t, t) for t in type_names))

    def conv(ents):
        if ents is None:
            return ents
        out = []
        for e in ents:
            if isinstance(e, Mapping) and "type" in e:
                e = {
                    **e,
                    "type": type_map.get(
                        _type_name(e["type"], type_names), _type_name(e["type"], type_names)
                    ),
                }
            out.append(e)
        return out

    if isinstance(predictions, Mapping):
        predictions = {k: conv(v) for k, v in predictions.items()}
    else:
        predictions = [conv(v) for v in predictions]
    if isinstance(references, Mapping):
        references = {k: conv(v) for k, v in references.items()}
    else:
        references = [conv(v) for v in references]
    return predictions, references, names


def compute_smner(
    predictions,
    references,
    *,
    ids: Sequence[str] | None = None,
    type_names: Sequence[str] = ENTITY_TYPES,
    span_keys: tuple[str, str] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
    type_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """MNER, EEG and SMNER scores with masks as the region (keys ``mner_*``, ``eeg_*``, ``smner_*``).

    Predictions carry ``mask`` (COCO RLE or boolean array, None = not visible), references
    ``masks`` (a list, one per gold box; ``[]`` = not visible). A gold entity is groundable when
    it has boxes or masks. ``diagnostics["mask_mean_iou"]`` is the mean mask IoU over entities
    whose span and type are right and that are groundable in both. ``iou_threshold`` and ``type_map`` as in
    :func:`compute_gmner`.
    """
    iou_threshold = _check_iou_threshold(iou_threshold)
    if type_map is not None:
        type_map = _check_type_map(type_map, type_names)
        predictions, references, type_names = _mapped(predictions, references, type_names, type_map)
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
