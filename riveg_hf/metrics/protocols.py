"""The scoring protocols of the published GMNER systems, reimplemented from their public scoring code, so a
number of ours can be put next to a paper's **measured the same way** (``compute_gmner(..., protocol=NAME)``,
``riveg evaluate --protocol NAME | all``).

The systems do not score alike, and the differences are not cosmetic. Each protocol below says what its
original code does; our code is written from that description (read in each repository at the commit given),
quirks included. All return MNER / EEG / GMNER precision, recall, F1 (fractions), ``n_predictions`` and
``n_references`` as that protocol counts them.

``riveg-hf`` (:func:`riveg_hf.metrics.compute_gmner`, the default)
    Span keys (``start``, ``end`` in the same unit on both sides), one-to-one, region right when both say "not
    visible" or IoU >= 0.5 with any gold box.

``riveg`` -- RiVEG, JinYuanLi0012/RiVEG ``statistic/statistic.py`` (commit 6af00fff, file last changed in
8aad5ef7), GMNER lines 92-151:
    a prediction and a gold line match on **image + entity string + type** (no span); predictions in order,
    each searched against the gold lines still unmatched, in order: both "not visible" -> right; a predicted
    box with IoU **>= 0.5** against any gold box -> right; a matched gold line is removed (one-to-one,
    greedy first fit), and a prediction that fails a line goes on to the next line with the same key.
    Precision over every predicted line (not-visible lines and duplicates included), recall over the gold
    lines. EEG is the same script with the type dropped (its L106 in place of L103). MNER is not in that
    script: RiVEG's MNER stage (AdaSeq) reports seqeval's micro scores, span-based with set semantics, which
    is what ``mner_*`` is here. (RiVEG's released gold file lacks one test mention, 15772 "Selena
    Quintanilla": its published recall is over 2542 mentions, ours over the dataset's 2543.)

``h-index`` -- H-Index, NUSTM/GMNER ``model/metrics.py`` and ``model/data_pipe.py`` (commit c5679560):
    predictions and gold are dicts **keyed by span**: a span predicted twice counts once, **the last one
    wins**. A region is right when the chosen detector candidate is one of the candidates with IoU **> 0.5**
    (strict) with a gold box of the entity; a gold entity whose boxes no candidate covers (best IoU < 0.5) can
    never be right but stays in the gold count. riveg-hf predicts boxes, not candidate indices, so: with
    ``candidates={example id: [boxes]}`` (the detector proposals H-Index used, e.g. its VinVL top 16), the
    predicted box is first snapped to its best-IoU candidate and the original rule applies exactly
    (covered: best IoU >= 0.5; right candidates: IoU > 0.5; when the only covering candidate is at exactly
    0.5 the original divides 0 by 0 and every candidate counts, reproduced); **without** candidates the
    approximation is that every gold box is covered and the predicted box itself is the candidate: right when
    its IoU with a gold box is > 0.5. MNER is the original's ``tc`` (right span and type) over the unique
    predicted / gold spans. EEG is not in the original code: here, the same rule with the type ignored.

``e2e-gmner`` -- E2E-GMNER, Finch-coder/E2E-GMNER ``src/e2egmner/evaluation/metrics.py`` and ``geometry.py``
(commit d90c1ebf):
    per tweet, a **maximum-cardinality one-to-one matching** between predictions and gold entities with the
    same **entity string and type** (no span) whose regions agree: both "not visible", or the **maximum IoU
    over predicted x gold boxes >= 0.5**. EEG: the same with the string only; MNER: one-to-one on (string,
    type). The original computes IoU in the Qwen2.5-VL resized coordinates with gold boxes rounded to
    integers, and drops tweets whose image is too small to resize; here IoU is in original pixels and nothing
    is dropped (a difference of rounding at IoU ~ 0.5 only).

``fmnerg`` -- TIGER / Twitter-FMNERG, NUSTM/FMNERG ``more_eval.py`` (commit 554dbfb3; ``elaluate_all`` and
``calculate_coarse``):
    per tweet a dict keyed by **"entity type in-image?"**: repeated mentions with the same string, type and
    visibility collapse into one key (last region wins). A predicted key is right when the gold has it and it
    is "not in the image", or its region is right (the H-Index rule above). Precision over the predicted keys,
    recall over the gold keys. (``main.py``'s printed number has a counting bug -- each tweet with an empty
    prediction adds one to the predictions and takes one from the gold -- which ``more_eval.py``, used here,
    does not have.) With fine types this is FMNERG's fine GMNER F1; map the types to their coarse type
    (``type_map``) for its coarse GMNER F1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .inputs import METRICS, MetricInputError, _box, _box_iou, _entity, _gold_boxes, _pairs, _pred_box, prf

__all__ = ["PROTOCOLS", "score_protocol"]

#: protocol -> (system, where its scoring code is)
PROTOCOLS = {
    "riveg-hf": ("riveg-hf", "riveg_hf.metrics.core"),
    "riveg": (
        "RiVEG (Li et al., ACL 2024 Findings)",
        "JinYuanLi0012/RiVEG statistic/statistic.py @ 6af00fff",
    ),
    "h-index": ("H-Index (Yu et al., ACL 2023)", "NUSTM/GMNER model/metrics.py @ c5679560"),
    "e2e-gmner": ("E2E-GMNER (ACL 2026 Findings)", "Finch-coder/E2E-GMNER evaluation/metrics.py @ d90c1ebf"),
    "fmnerg": ("TIGER / Twitter-FMNERG (Wang et al., ACM MM 2023)", "NUSTM/FMNERG more_eval.py @ 554dbfb3"),
}


class _Item:
    __slots__ = ("box", "boxes", "span", "text", "type")

    def __init__(self, span, type_, text, box=None, boxes=None):
        self.span, self.type, self.text, self.box, self.boxes = span, type_, text, box, boxes or []


def _text(ent: Mapping[str, Any], side: str, where: str) -> str:
    for key in ("entity", "text"):
        value = ent.get(key)
        if isinstance(value, str):
            return " ".join(value.split())
    raise MetricInputError(
        f"{where}: this protocol matches entities by their string: the {side} needs 'entity' or 'text' "
        f"(keys: {sorted(ent)})."
    )


def _read(predictions, references, ids, type_names, span_keys, type_map, need_text: bool):
    out = []
    for ex_id, preds, golds in _pairs(predictions, references, ids):
        preds = preds or []
        ps, gs = [], []
        for j, g in enumerate(golds):
            where = f"example {ex_id!r} reference {j}"
            try:
                span, typ = _entity(g, type_names, ("start", "end"))
                gs.append(_Item(span, type_map.get(typ, typ), _text(g, "reference", where) if need_text else "",
                                boxes=_gold_boxes(g)))  # fmt: skip
            except MetricInputError as err:
                raise MetricInputError(f"{where}: {err}") from None
        for i, p in enumerate(preds):
            where = f"example {ex_id!r} prediction {i}"
            try:
                span, typ = _entity(p, type_names, span_keys)
                ps.append(_Item(span, type_map.get(typ, typ), _text(p, "prediction", where) if need_text else "",
                                box=_pred_box(p)))  # fmt: skip
            except MetricInputError as err:
                raise MetricInputError(f"{where}: {err}") from None
        out.append((str(ex_id), ps, gs))
    return out


def _result(correct: dict[str, int], n_pred: dict[str, int], n_gold: dict[str, int], protocol: str) -> dict:
    out: dict[str, Any] = {"protocol": protocol, "scored_by": PROTOCOLS[protocol][1]}
    for m in METRICS:
        p, r, f = prf(correct[m], n_pred[m], n_gold[m])
        out.update({f"{m}_precision": p, f"{m}_recall": r, f"{m}_f1": f})
    out["n_predictions"], out["n_references"] = n_pred["gmner"], n_gold["gmner"]
    return out


# ---------------------------------------------------------------------- RiVEG
def _riveg_region(p: _Item, g: _Item) -> bool:
    if p.box is None and not g.boxes:
        return True
    if p.box is None or not g.boxes:
        return False
    return max(_box_iou(p.box, b) for b in g.boxes) >= 0.5  # >= (statistic.py L133)


def _riveg(examples) -> dict:
    correct = dict.fromkeys(METRICS, 0)
    n_pred = dict.fromkeys(METRICS, 0)
    n_gold = dict.fromkeys(METRICS, 0)
    for _, ps, gs in examples:
        for metric, key in (("gmner", lambda e: (e.text, e.type)), ("eeg", lambda e: e.text)):
            remaining = list(gs)
            for p in ps:  # in file order; the gold lines still unmatched, in order
                for g in remaining:
                    if key(p) == key(g) and _riveg_region(p, g):
                        remaining.remove(g)
                        correct[metric] += 1
                        break
            n_pred[metric] += len(ps)
            n_gold[metric] += len(gs)
        # MNER: seqeval's micro scores over (type, start, end), set semantics
        pset = {(p.span, p.type) for p in ps}
        gset = {(g.span, g.type) for g in gs}
        correct["mner"] += len(pset & gset)
        n_pred["mner"] += len(pset)
        n_gold["mner"] += len(gset)
    return _result(correct, n_pred, n_gold, "riveg")


# ---------------------------------------------------------------------- H-Index (and FMNERG's region rule)


def _candidate_boxes(candidates, ex_id):
    """The detector candidate boxes for one example, or None when no candidates were given."""
    if candidates is None:
        return None
    return [_box(c, "candidates") for c in (candidates.get(ex_id) or [])]


def _hindex_region(p_box, g: _Item, candidates: Sequence[Sequence[float]] | None) -> bool:
    """Is the predicted region right by H-Index's rule (see the module doc)?"""
    if not g.boxes:
        return p_box is None  # <<no region>> against a gold without boxes
    if p_box is None:
        return False
    if candidates is None:  # approximation: every gold box covered, the predicted box is the candidate
        return any(_box_iou(p_box, b) > 0.5 for b in g.boxes)
    if not candidates:
        return False
    best = [max(_box_iou(c, b) for b in g.boxes) for c in candidates]  # per candidate, vs the entity's boxes
    per_box = [max(_box_iou(c, b) for c in candidates) for b in g.boxes]
    if max(per_box) < 0.5:
        return False  # no candidate covers any gold box: unattainable (data_pipe: cover_flag 0)
    kept = [v if v > 0.5 else 0.0 for v in best]
    chosen = max(range(len(candidates)), key=lambda k: _box_iou(p_box, candidates[k]))  # snap to a candidate
    if sum(kept) == 0:  # only 0.5-exact candidates: 0 / 0 -> NaN, which nonzero() counts for every candidate
        return True
    return kept[chosen] > 0


def _hindex(examples, candidates: Mapping[str, Any] | None) -> dict:
    correct = dict.fromkeys(METRICS, 0)
    n_pred = dict.fromkeys(METRICS, 0)
    n_gold = dict.fromkeys(METRICS, 0)
    for ex_id, ps, gs in examples:
        cands = _candidate_boxes(candidates, ex_id)
        pred = {}
        for p in ps:  # a dict keyed by span: the last prediction of a span wins
            pred[p.span] = p
        gold = {g.span: g for g in gs}
        for p in pred.values():
            g = gold.get(p.span)
            if g is None:
                continue
            region = _hindex_region(p.box, g, cands)
            correct["mner"] += p.type == g.type
            correct["gmner"] += p.type == g.type and region
            correct["eeg"] += region
        for m in METRICS:
            n_pred[m] += len(pred)
            n_gold[m] += len(gold)
    return _result(correct, n_pred, n_gold, "h-index")


# ---------------------------------------------------------------------- E2E-GMNER
def _max_matching(left: int, right: int, edges: dict[int, list[int]]) -> int:
    """Maximum-cardinality bipartite matching (augmenting paths)."""
    match_r: dict[int, int] = {}

    def augment(u: int, seen: set[int]) -> bool:
        for v in edges.get(u, []):
            if v in seen:
                continue
            seen.add(v)
            if v not in match_r or augment(match_r[v], seen):
                match_r[v] = u
                return True
        return False

    return sum(augment(u, set()) for u in range(left))


def _e2e_region(p: _Item, g: _Item) -> bool:
    if p.box is None and not g.boxes:
        return True
    if p.box is None or not g.boxes:
        return False
    return max(_box_iou(p.box, b) for b in g.boxes) >= 0.5


def _e2e(examples) -> dict:
    correct = dict.fromkeys(METRICS, 0)
    n_pred = dict.fromkeys(METRICS, 0)
    n_gold = dict.fromkeys(METRICS, 0)
    for _, ps, gs in examples:
        for metric, same in (
            ("gmner", lambda p, g: p.text == g.text and p.type == g.type and _e2e_region(p, g)),
            ("eeg", lambda p, g: p.text == g.text and _e2e_region(p, g)),
            ("mner", lambda p, g: p.text == g.text and p.type == g.type),
        ):
            edges = {i: [j for j, g in enumerate(gs) if same(p, g)] for i, p in enumerate(ps)}
            correct[metric] += _max_matching(len(ps), len(gs), edges)
            n_pred[metric] += len(ps)
            n_gold[metric] += len(gs)
    return _result(correct, n_pred, n_gold, "e2e-gmner")


# ---------------------------------------------------------------------- FMNERG (TIGER)
def _fmnerg(examples, candidates) -> dict:
    correct = dict.fromkeys(METRICS, 0)
    n_pred = dict.fromkeys(METRICS, 0)
    n_gold = dict.fromkeys(METRICS, 0)
    for ex_id, ps, gs in examples:
        cands = _candidate_boxes(candidates, ex_id)
        gold = {(g.text, g.type, bool(g.boxes)): g for g in gs}  # "entity type True/False", last wins
        pred = {(p.text, p.type, p.box is not None): p for p in ps}
        for key, p in pred.items():
            g = gold.get(key)
            if g is not None and (not key[2] or _hindex_region(p.box, g, cands)):
                correct["gmner"] += 1
        # EEG (more_eval.elaluate_EEG): the first gold key with the same string and visibility; not one-to-one
        for (text, _, vis), p in pred.items():
            g = next((g for (t, _, v), g in gold.items() if t == text and v == vis), None)
            if g is not None and (not vis or _hindex_region(p.box, g, cands)):
                correct["eeg"] += 1
        # MNER (eval_ouput_file_FMNER): keys "entity type", collapsed further
        pk, gk = {(p.text, p.type) for p in ps}, {(g.text, g.type) for g in gs}
        correct["mner"] += len(pk & gk)
        n_pred["mner"] += len(pk)
        n_gold["mner"] += len(gk)
        for m in ("gmner", "eeg"):
            n_pred[m] += len(pred)
            n_gold[m] += len(gold)
    return _result(correct, n_pred, n_gold, "fmnerg")


def score_protocol(
    protocol: str,
    predictions,
    references,
    *,
    ids=None,
    type_names,
    span_keys=None,
    type_map: Mapping[str, str] | None = None,
    candidates: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """MNER / EEG / GMNER scores under ``protocol`` (see the module doc)."""
    if protocol not in PROTOCOLS or protocol == "riveg-hf":
        raise ValueError(f"unknown protocol {protocol!r}; valid: {sorted(PROTOCOLS)}")
    type_map = dict(type_map or {})
    examples = _read(predictions, references, ids, type_names, span_keys, type_map,
                     need_text=protocol in ("riveg", "e2e-gmner", "fmnerg"))  # fmt: skip
    if protocol == "riveg":
        return _riveg(examples)
    if protocol == "h-index":
        return _hindex(examples, candidates)
    if protocol == "e2e-gmner":
        return _e2e(examples)
    return _fmnerg(examples, candidates)
