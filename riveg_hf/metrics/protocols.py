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

``sake`` -- SAKE, tangjielong928/SAKE ``sake_rl/evaluate/evaluate.py`` + ``utils.py`` (commit 71417dfd; the
scorer ``sake_rl/scripts/inference_twitter_gmner.py`` runs: ``EntityEvaluator.evaluate`` L21-48,
``_convert_by_setting`` L51-120, ``_score`` / ``_compute_metrics`` L123-169, ``compute_scores`` L242-276;
``utils.calculate_iou`` L76-93, ``utils.collect`` L95-105):
    every entity is a tuple **(entity string, type, region)** compared by **exact, case-sensitive equality** of
    the string (no span, no whitespace normalisation: ``"adam"`` is not ``"Adam"``) and of the type.

    *Types*: the dataset's, with riveg-hf's ``OTHER`` named ``MISC`` as in SAKE's gold file (for Twitter-GMNER
    exactly SAKE's ``{LOC, PER, ORG, MISC}``; for Twitter-FMNERG's fine / coarse types exactly its
    ``fine_to_label_dict`` / ``coarse_to_label_dict``), plus ``"None-type"``, which is in every SAKE label_dict.
    A predicted type outside that set, compared exactly (``"per"``, ``"EVENT"``, ``""``), is **dropped** before
    scoring (L35-36): it is neither right nor wrong. ``OTHER`` and ``MISC`` both stand for MISC, and a
    prediction typed ``"None-type"`` is kept.

    *Gold*: **one entry per gold box**, since SAKE's gold file lists an entity with two boxes twice; an entity
    with no box is one entry with ``[]``.

    *Regions* (``convert_for_bbox``, L73-111): the k-th gold entry (1-based) with a box gets region ``k``, and
    one without a box gets ``0``. A predicted "not visible" gets ``0``. A predicted box gets the number of the
    **first** gold entry with the **same string** (the type is not checked) and IoU **>= 0.5** (float32, as in
    ``torchvision.ops.box_iou``); with no such entry it gets ``-100``.

    *Counting*: per tweet, over **sets** of tuples, so duplicates collapse on both sides: two not-visible gold
    mentions with the same string and type count as one, and two predicted boxes matching the same gold entry
    count as one. ``collect`` then looks at each predicted tuple that is not in the gold; if a gold tuple has the
    same string and type, it adds (string, type, ``0``) to the predictions. The outcomes:

    * a **wrong box** on a groundable entity: **2 FP + 1 FN** (its ``-100`` plus the added ``0``);
    * "not visible" on a groundable entity: 1 FP + 1 FN;
    * a **box on a not-visible entity**: **1 TP + 1 FP** (the added ``0`` is that gold), and the same for a wrong
      box when the tweet also has a not-visible mention with that string and type;
    * an entity with **two boxes** needs one prediction per box.

    *Skipped tweets*: **a tweet whose gold list or type-filtered prediction list is empty is skipped** for GMNER
    and EEG (L76-77). False positives on tweets without entities, and misses on tweets without predictions, are
    not counted.

    *Settings*: EEG is the same with every type replaced by ``"None-type"``. MNER uses (string, type) sets,
    ignores the region and counts every tweet.

    *Scores*: P / R / F1 are sklearn's micro averages over these tuples (L159-169): correct / #predicted tuples
    and correct / #gold tuples. ``n_predictions`` / ``n_references`` are GMNER's tuple counts, after the added
    tuples and the skipped tweets.

    *Not reproduced*:

    * when every tweet is skipped, SAKE crashes (sklearn ``ValueError``); here the score is 0;
    * SAKE drops a predicted entity that lacks a key (``load_cot_prediction``) and counts a box that is not 4
      numbers as wrong; here both are input errors, as in every protocol;
    * SAKE's macro-averaged row is not returned.

Settings: ``iou_threshold`` is honoured by ``riveg-hf`` and ``e2e-gmner`` (whose scorer takes it as a parameter,
``miou >= iou_threshold``); ``riveg``, ``h-index``, ``fmnerg`` and ``sake`` fix it in their code (0.5; ``>=``
for RiVEG and SAKE, ``>`` for H-Index and FMNERG), so another value is refused rather than silently ignored.
``candidates`` are read by ``h-index`` and ``fmnerg`` only (refused elsewhere); their keys are the example ids,
compared as strings (``{0: [...]}`` and ``{"0": [...]}`` are the same example), and a key that names no example
is an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .inputs import (
    METRICS,
    MetricInputError,
    _box,
    _box_iou,
    _entity,
    _gold_boxes,
    _pairs,
    _pred_box,
    _type_name,
    prf,
)

__all__ = ["PROTOCOLS", "score_protocol"]

#: the IoU threshold every published protocol was run with
PUBLISHED_IOU = 0.5
#: protocols whose scorer takes the IoU threshold as a setting (the others fix it in their code)
IOU_SETTABLE = ("riveg-hf", "e2e-gmner")
#: protocols that read detector candidate boxes
USES_CANDIDATES = ("h-index", "fmnerg")
#: how each protocol that fixes the IoU threshold compares with it
_FIXED_IOU_RULE = {
    "riveg": "IoU >= 0.5",
    "h-index": "IoU > 0.5",
    "fmnerg": "IoU > 0.5 (H-Index's rule)",
    "sake": "IoU >= 0.5, IoU_threshold = 0.5 in convert_for_bbox",
}

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
    "sake": (
        "SAKE (Tang et al., arXiv 2604.20146)",
        "tangjielong928/SAKE sake_rl/evaluate/evaluate.py @ 71417dfd",
    ),
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
    return candidates.get(ex_id) or []


def _read_candidates(candidates, example_ids: Sequence[str], protocol: str) -> dict[str, list] | None:
    """``{example id (str): [xyxy boxes]}`` from the user's ``candidates``, keys compared as strings.

    Refused: not a dict, two keys that are the same id (``0`` and ``"0"``), keys that name no example, a value
    that is not a list of boxes. Warned: examples without an entry (their boxes can never be right)."""
    if candidates is None:
        return None
    if not isinstance(candidates, Mapping):
        raise MetricInputError(
            f"candidates must be a dict {{example id: [[xmin, ymin, xmax, ymax], ...]}} (the detector proposals "
            f"of each example), got {type(candidates).__name__}."
        )
    out: dict[str, list] = {}
    original: dict[str, Any] = {}
    for key, boxes in candidates.items():
        k = str(key)
        if k in out:
            raise MetricInputError(
                f"candidates has both {original[k]!r} and {key!r}: example ids are compared as strings, so these "
                "are the same example; keep one."
            )
        if boxes is None:
            boxes = []
        if not isinstance(boxes, (list, tuple)):
            raise MetricInputError(
                f"candidates[{key!r}] must be a list of [xmin, ymin, xmax, ymax] boxes, got {type(boxes).__name__}."
            )
        parsed = []
        for n, c in enumerate(boxes):
            try:
                box = _box(c, "candidates")
            except MetricInputError as err:
                raise MetricInputError(f"candidates[{key!r}][{n}]: {err}") from None
            if box is None:
                raise MetricInputError(
                    f"candidates[{key!r}][{n}] is None: a candidate is a box [xmin, ymin, xmax, ymax]; leave it out."
                )
            parsed.append(box)
        out[k], original[k] = parsed, key
    known = set(example_ids)
    unknown = [original[k] for k in out if k not in known]
    if unknown:
        sample = list(example_ids)[:5]
        raise MetricInputError(
            f"candidates has example id(s) {unknown[:5]} ({len(unknown)} in all) that are not among the "
            f"references' ids (e.g. {sample}); key candidates by the same ids as the references -- for lists "
            "without ids=, the position of the example (0, 1, ...)."
        )
    missing = [i for i in example_ids if i not in out]
    if missing:
        warnings.warn(
            f"{protocol}: candidates has no entry for {len(missing)} of {len(example_ids)} example(s) (e.g. "
            f"{missing[:5]}): no predicted box of theirs can be right. Give [] for an example without proposals "
            "to say so.",
            UserWarning,
            stacklevel=4,
        )
    return out


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
def _max_matching(left: int, right: int, edges: Mapping[int, Sequence[int]]) -> int:
    """Size of a maximum-cardinality bipartite matching (Hopcroft-Karp, iterative: no recursion, so a tweet with
    thousands of identical mentions neither overflows the stack nor takes cubic time; O(E sqrt(V)))."""
    adj = [list(edges.get(u, ())) for u in range(left)]
    match_l = [-1] * left
    match_r = [-1] * right
    for u in range(left):  # greedy start: most vertices are matched here already
        for v in adj[u]:
            if match_r[v] == -1:
                match_l[u], match_r[v] = v, u
                break
    while True:
        # BFS: layers of left vertices from the free ones, along alternating paths
        dist = [-1] * left
        queue = [u for u in range(left) if match_l[u] == -1]
        for u in queue:
            dist[u] = 0
        found = False
        for u in queue:  # the list grows while it is read: a FIFO
            for v in adj[u]:
                w = match_r[v]
                if w == -1:
                    found = True
                elif dist[w] == -1:
                    dist[w] = dist[u] + 1
                    queue.append(w)
        if not found:
            return sum(m != -1 for m in match_l)
        # DFS along the layers, with an explicit stack; each edge is tried at most once per phase
        nxt = [0] * left
        for s in range(left):
            if match_l[s] != -1:
                continue
            stack, via = [s], []  # left vertices on the path; via[i] is the right vertex from stack[i]
            while stack:
                u = stack[-1]
                moved = False
                while nxt[u] < len(adj[u]):
                    v = adj[u][nxt[u]]
                    nxt[u] += 1
                    w = match_r[v]
                    if w == -1:  # a free right vertex: flip the path
                        via.append(v)
                        for a, b in zip(stack, via):
                            match_l[a], match_r[b] = b, a
                        stack = []
                        moved = True
                        break
                    if dist[w] == dist[u] + 1:
                        via.append(v)
                        stack.append(w)
                        moved = True
                        break
                if not moved:  # dead end: out of this phase's layered graph
                    dist[u] = -2
                    stack.pop()
                    if via:
                        via.pop()


def _e2e_region(p: _Item, g: _Item, iou_threshold: float = PUBLISHED_IOU) -> bool:
    if p.box is None and not g.boxes:
        return True
    if p.box is None or not g.boxes:
        return False
    return max(_box_iou(p.box, b) for b in g.boxes) >= iou_threshold


def _e2e(examples, iou_threshold: float = PUBLISHED_IOU) -> dict:
    correct = dict.fromkeys(METRICS, 0)
    n_pred = dict.fromkeys(METRICS, 0)
    n_gold = dict.fromkeys(METRICS, 0)
    for _, ps, gs in examples:
        by_text: dict[str, list[int]] = {}
        regions: dict[tuple, int] = {}  # each distinct gold region (its boxes) -> a number
        g_region = []
        for j, g in enumerate(gs):
            by_text.setdefault(g.text, []).append(j)
            g_region.append(regions.setdefault(tuple(map(tuple, g.boxes)), len(regions)))
        agree: dict[tuple, bool] = {}  # (predicted box, gold region) -> do they agree: each computed once
        edges = {m: {} for m in METRICS}
        for i, p in enumerate(ps):  # only golds with the same string can match
            same = by_text.get(p.text, ())
            box = None if p.box is None else tuple(p.box)
            region = []
            for j in same:
                key = (box, g_region[j])
                ok = agree.get(key)
                if ok is None:
                    ok = agree[key] = _e2e_region(p, gs[j], iou_threshold)
                if ok:
                    region.append(j)
            typed = {j for j in same if gs[j].type == p.type}
            edges["mner"][i] = [j for j in same if j in typed]
            edges["eeg"][i] = region
            edges["gmner"][i] = [j for j in region if j in typed]
        for metric in METRICS:
            correct[metric] += _max_matching(len(ps), len(gs), edges[metric])
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


# ---------------------------------------------------------------------- SAKE
#: SAKE's name for riveg-hf's OTHER (its gold file and prompts say MISC; the raw Twitter-GMNER data says OTHER)
_SAKE_OTHER = {"OTHER": "MISC"}
#: a type in every SAKE label_dict (evaluate.py L280, fg_label_evaluate.py L63): a prediction may carry it
_SAKE_NONE_TYPE = "None-type"
#: the region of a predicted box that matches no gold entry (convert_for_bbox L107-108)
_SAKE_NO_MATCH = -100


def _sake_labels(type_names: Sequence[str], type_map: Mapping[str, str]) -> dict[str, str]:
    """The data's types (after ``type_map``) -> SAKE's name for them (OTHER -> MISC, unless MISC is a type too)."""
    mapped = [type_map.get(t, t) for t in type_names]
    rename = {} if "MISC" in mapped else _SAKE_OTHER
    return {t: rename.get(t, t) for t in mapped}


def _sake_type(value: Any, type_names: Sequence[str], type_map: Mapping[str, str], labels: Mapping[str, str],
               known: set[str]) -> str | None:  # fmt: skip
    """SAKE's label for a type, or None when SAKE's ``label_dict`` lacks it (evaluate.py L35: compared exactly,
    case included). A ClassLabel index is the data's type of that number."""
    if isinstance(value, str):
        if value in type_names:
            name = type_map.get(value, value)
            return labels.get(name, name)
        return value if value in known else None  # already SAKE's name (MISC, a coarse type, None-type)
    name = _type_name(value, type_names)  # an index; anything else is refused there
    name = type_map.get(name, name)
    return labels.get(name, name)


def _sake_text(ent: Mapping[str, Any], side: str, where: str) -> str:
    """The entity string, exactly as given: SAKE compares phrases with ``==`` (evaluate.py L103, set equality)."""
    for key in ("entity", "text"):
        value = ent.get(key)
        if isinstance(value, str):
            return value
    raise MetricInputError(
        f"{where}: the sake protocol matches entities by their string: the {side} needs 'entity' or 'text' "
        f"(keys: {sorted(ent) if isinstance(ent, Mapping) else type(ent).__name__})."
    )


def _sake_read(predictions, references, ids, type_names, type_map):
    """[(example id, predictions [(string, type, box or None)], gold entries [(string, type, box or None)])].

    Predictions whose type SAKE does not know are left out (evaluate.py L35-36); a gold entity becomes one entry
    per box, or one entry without a box (SAKE's ``twitter_gmner_gt.json``). Spans are not read."""
    labels = _sake_labels(type_names, type_map)
    known = set(labels.values()) | {_SAKE_NONE_TYPE}
    out = []
    for ex_id, preds, golds in _pairs(predictions, references, ids):
        ps, gs = [], []
        for j, g in enumerate(golds):
            where = f"example {ex_id!r} reference {j}"
            if not isinstance(g, Mapping) or "type" not in g:
                raise MetricInputError(f"{where}: expected an entity dict with 'type', got {g!r:.200}.")
            try:
                typ = _sake_type(g["type"], type_names, type_map, labels, known)
                if typ is None or typ == _SAKE_NONE_TYPE:  # SAKE: a KeyError (L145); here riveg-hf's check
                    typ = _sake_type(_type_name(g["type"], type_names), type_names, type_map, labels, known)
                text = _sake_text(g, "reference", where)
                boxes = _gold_boxes(g)
            except MetricInputError as err:
                raise MetricInputError(f"{where}: {err}") from None
            gs.extend([(text, typ, b) for b in boxes] or [(text, typ, None)])
        for i, p in enumerate(preds or []):
            where = f"example {ex_id!r} prediction {i}"
            if not isinstance(p, Mapping) or "type" not in p:
                raise MetricInputError(f"{where}: expected an entity dict with 'type', got {p!r:.200}.")
            try:
                typ = _sake_type(p["type"], type_names, type_map, labels, known)
                text = _sake_text(p, "prediction", where)
                box = _pred_box(p)
            except MetricInputError as err:
                raise MetricInputError(f"{where}: {err}") from None
            if typ is not None:
                ps.append((text, typ, box))
        out.append((str(ex_id), ps, gs))
    return out


def _sake_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU as ``torchvision.ops.box_iou`` computes it for SAKE (utils.py L89-93): float32 throughout."""
    f = np.float32
    ax0, ay0, ax1, ay1 = (f(v) for v in a)
    bx0, by0, bx1, by1 = (f(v) for v in b)
    w = max(min(ax1, bx1) - max(ax0, bx0), f(0))
    h = max(min(ay1, by1) - max(ay0, by0), f(0))
    inter = w * h
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0  # 0 / 0 is NaN there: never >= 0.5 either


def _sake_counts(ps, gs, typed: bool) -> tuple[int, int, int]:
    """(correct, #predicted, #gold) tuples of one tweet in SAKE's GMNER (``typed``) or EEG setting."""
    regions = []  # convert_for_bbox L86-92: the k-th gold entry (1-based) with a box is region k, without one 0
    for k, (_, _, box) in enumerate(gs, 1):
        regions.append(k if box is not None else 0)

    def key(typ):
        return typ if typed else _SAKE_NONE_TYPE  # only_eeg: every type is "None-type" (L58-60)

    gold = {(text, key(typ), r) for (text, typ, _), r in zip(gs, regions)}
    pred = set()
    # L94-108: a predicted box takes the first gold entry with the same string and IoU >= 0.5; type unchecked
    for text, typ, box in ps:
        if box is None:
            r = 0
        else:
            r = next((k for (t, _, b), k in zip(gs, regions)
                      if k and t == text and _sake_iou(box, b) >= PUBLISHED_IOU), _SAKE_NO_MATCH)  # fmt: skip
        pred.add((text, key(typ), r))
    # utils.collect: a predicted tuple not in the gold, with a gold tuple of the same string and type, brings
    # (string, type, 0) into the predictions
    gold_keys = {(t, ty) for t, ty, _ in gold}
    pred |= {(t, ty, 0) for t, ty, r in pred - gold if (t, ty) in gold_keys}
    return len(pred & gold), len(pred), len(gold)


def _sake(examples) -> dict:
    correct = dict.fromkeys(METRICS, 0)
    n_pred = dict.fromkeys(METRICS, 0)
    n_gold = dict.fromkeys(METRICS, 0)
    for _, ps, gs in examples:
        if ps and gs:  # convert_for_bbox L76-77: a tweet without gold or without predictions drops out
            for metric, typed in (("gmner", True), ("eeg", False)):
                c, n_p, n_g = _sake_counts(ps, gs, typed)
                correct[metric] += c
                n_pred[metric] += n_p
                n_gold[metric] += n_g
        pk = {(t, ty) for t, ty, _ in ps}  # MNER: (string, type) sets, every tweet
        gk = {(t, ty) for t, ty, _ in gs}
        correct["mner"] += len(pk & gk)
        n_pred["mner"] += len(pk)
        n_gold["mner"] += len(gk)
    return _result(correct, n_pred, n_gold, "sake")


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
    iou_threshold: float = PUBLISHED_IOU,
) -> dict[str, Any]:
    """MNER / EEG / GMNER scores under ``protocol`` (see the module doc)."""
    if protocol not in PROTOCOLS or protocol == "riveg-hf":
        raise ValueError(f"unknown protocol {protocol!r}; valid: {sorted(PROTOCOLS)}")
    if protocol not in IOU_SETTABLE and iou_threshold != PUBLISHED_IOU:
        raise MetricInputError(
            f"protocol {protocol!r} fixes the IoU threshold at its published value ({_FIXED_IOU_RULE[protocol]}, "
            f"in {PROTOCOLS[protocol][1]}), so iou_threshold={iou_threshold!r} cannot apply; drop iou_threshold, "
            f"or use a protocol that takes it: {list(IOU_SETTABLE)}."
        )
    if candidates is not None and protocol not in USES_CANDIDATES:
        raise MetricInputError(
            f"protocol {protocol!r} does not read detector candidates (only {list(USES_CANDIDATES)} do); drop "
            "candidates=, or score with one of those."
        )
    type_map = dict(type_map or {})
    if protocol == "sake":
        return _sake(_sake_read(predictions, references, ids, type_names, type_map))
    examples = _read(predictions, references, ids, type_names, span_keys, type_map,
                     need_text=protocol in ("riveg", "e2e-gmner", "fmnerg"))  # fmt: skip
    if protocol == "riveg":
        return _riveg(examples)
    if protocol == "e2e-gmner":
        return _e2e(examples, iou_threshold)
    cands = _read_candidates(candidates, [ex_id for ex_id, _, _ in examples], protocol)
    if protocol == "h-index":
        return _hindex(examples, cands)
    return _fmnerg(examples, cands)
