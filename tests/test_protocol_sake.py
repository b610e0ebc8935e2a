"""The ``sake`` scoring protocol (riveg_hf.metrics.protocols): SAKE's evaluator, tangjielong928/SAKE@71417df
``sake_rl/evaluate/evaluate.py`` + ``sake_rl/evaluate/utils.py``.

Two kinds of test:

* a differential test: :func:`sake_reference` restates that evaluator's scoring in the test (SAKE's input
  format, its tuples, its region numbering, ``collect``, sklearn's micro P / R / F1, torchvision's IoU), and
  random small datasets are scored by it and by ``compute_gmner(..., protocol="sake")``;
* hand-computed cases, one per quirk, with the counts worked out from the code in the comments.
"""

from __future__ import annotations

import json
import random
import warnings

import pytest

from riveg_hf.metrics import PROTOCOLS, MetricInputError, compute_gmner

A = [10.0, 10.0, 100.0, 100.0]
A2 = [12.0, 10.0, 100.0, 100.0]  # IoU(A2, A) ~ 0.98
B = [200.0, 200.0, 300.0, 300.0]
FAR = [400.0, 400.0, 500.0, 500.0]
HALF = [10.0, 10.0, 100.0, 55.0]  # IoU(HALF, A) = 0.5 exactly (also in float32)
BELOW = [10.0, 10.0, 100.0, 54.9]  # IoU < 0.5


def g(text, boxes, type_="PER", start=0, end=1):
    return {"start": start, "end": end, "type": type_, "text": text, "boxes": boxes}


def p(text, box, type_="PER", start=0, end=1):
    return {"start": start, "end": end, "type": type_, "entity": text, "box": box}


def sake(preds, golds, **kw):
    return compute_gmner(preds, golds, protocol="sake", **kw)


def counts(s, metric="gmner"):
    """(correct, #predicted, #gold) of ``metric`` from a score dict (GMNER's counts are the returned ones)."""
    prec, rec = s[f"{metric}_precision"], s[f"{metric}_recall"]
    if metric == "gmner":
        n_p, n_g = s["n_predictions"], s["n_references"]
        c = round(prec * n_p) if n_p else round(rec * n_g)
        return c, n_p, n_g
    return prec, rec


# --------------------------------------------------------------------------------------------- the reference
# tangjielong928/SAKE@71417df, re-expressed step by step (not copied): the evaluator its inference script runs,
# EntityEvaluator(label_dict, gt_path).evaluate(load_cot_prediction(predictions)).
SAKE_GMNER_LABELS = {"LOC": 1, "PER": 2, "ORG": 3, "MISC": 4, "None-type": 5}  # evaluate.py L280


def _torchvision_iou(box1, box2):
    """utils.py L76-93 (calculate_iou): empty/empty 100, one empty or not 4 numbers 0, else torchvision's IoU."""
    if not box1 and not box2:
        return 100.0
    if not box1 or not box2 or len(box1) != 4 or len(box2) != 4:
        return 0.0
    import torch
    from torchvision.ops import box_iou

    return box_iou(torch.tensor([box1], dtype=torch.float), torch.tensor([box2], dtype=torch.float))[
        0, 0
    ].item()


def _sake_load_predictions(records):
    """utils.py L198-210 (load_cot_prediction): prediction -> pre_entities; entity/type/box2d -> phrase/
    entity_type/region_box; an entity lacking one of them becomes an empty one (dropped later)."""
    out = []
    for rec in records:
        ents = []
        for e in rec["prediction"]:
            try:
                ents.append({"phrase": e["entity"], "entity_type": e["type"], "region_box": e["box2d"]})
            except (KeyError, TypeError):
                ents.append({"phrase": "", "entity_type": "", "region_box": []})
        out.append({"img_id": rec["img_id"], "pre_entities": ents})
    return out


def _sake_regions(gold, pred):
    """evaluate.py L73-111 (convert_for_bbox, region settings): gold boxes -> their 1-based position (0 without
    a box); a predicted box -> the first gold position whose box has IoU >= 0.5 and whose phrase is the same,
    else -100; a predicted [] -> 0. A tweet with no gold or no prediction -> nothing at all (L76-77)."""
    if not gold or not pred:
        return [], []
    if not (len(gold[-1]) > 3 and len(pred[-1]) > 3) or not (
        isinstance(gold[-1][3], list) and isinstance(pred[-1][3], list)
    ):  # L78-81: left as they are when the last tuples have no list region (never here)
        return gold, pred
    gold = [list(t) for t in gold]
    pred = [list(t) for t in pred]
    lookup = [([], 0)]
    for pos, t in enumerate(gold, 1):
        if t[3]:
            lookup.append((t[3], pos))
            t[3] = pos
        else:
            t[3] = 0
    for t in pred:
        found = False
        for box, pos in lookup:
            if isinstance(t[3], list) and not t[3]:
                t[3] = 0
            if (isinstance(t[3], list) and t[3] and _torchvision_iou(t[3], box) >= 0.5
                    and gold[pos - 1][0] == t[0] and gold[pos - 1][1] == t[1]):  # fmt: skip
                t[3] = pos
                found = True
                break
        if not found and isinstance(t[3], list):
            t[3] = -100
    return [tuple(t) for t in gold], [tuple(t) for t in pred]


def _sake_convert(gt, pred, setting):
    """evaluate.py L51-120 (_convert_by_setting) for the three settings compute_scores uses (L242-276)."""
    out_gt, out_pred = [], []
    for sample_gt, sample_pred in zip(gt, pred):
        if setting == "mner":  # (phrase, phrase, type); the region step returns at once (L74-75)
            cg = [tuple(t[:3]) for t in sample_gt]
            cp = [tuple(t[:3]) for t in sample_pred]
        else:  # gmner keeps the type, eeg replaces it with "None-type" (L58-60); then the regions
            conv = (lambda t: tuple(t)) if setting == "gmner" else (lambda t: (t[0], t[1], "None-type", t[3]))
            cg, cp = _sake_regions([conv(t) for t in sample_gt], [conv(t) for t in sample_pred])
        out_gt.append(cg)
        out_pred.append(cp)
    return out_gt, out_pred


def _sake_collect(union, sample_pred, sample_gt):
    """utils.py L95-105 (collect): for each predicted tuple outside the gold, one (phrase, phrase, type, 0) per
    gold tuple with the same first three fields and another region, added to the union and the predictions."""
    outside = [x for x in union if x not in sample_gt]
    extra = []
    for t in sample_pred:
        if t in outside:
            extra += [(t[0], t[1], t[2], 0) for gt in sample_gt if t[:3] == gt[:3] and t[3] != gt[3]]
    union.update(extra)
    return sample_pred + extra, union


def _sake_score(gt, pred, labels, with_collect):
    """evaluate.py L123-169 (_score + _compute_metrics): per tweet the union of the gold and predicted tuples,
    flattened to label ids (0 where a side lacks the tuple), then sklearn's micro P / R / F1 over the ids of the
    types seen; x 100."""
    from sklearn.metrics import precision_recall_fscore_support

    gt_flat, pred_flat, types = [], [], set()
    for sample_gt, sample_pred in zip(gt, pred):
        union = set(sample_gt) | set(sample_pred)
        if with_collect:
            sample_pred, union = _sake_collect(union, sample_pred, sample_gt)
        for s in union:
            gt_flat.append(labels[s[2]] if s in sample_gt else 0)
            pred_flat.append(labels[s[2]] if s in sample_pred else 0)
            types.add(s[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        micro = precision_recall_fscore_support(
            gt_flat, pred_flat, labels=[labels[t] for t in types], average="micro"
        )[:-1]
    return [100 * m for m in micro]


def sake_reference(gt_records, pred_records, labels=SAKE_GMNER_LABELS):
    """SAKE's EntityEvaluator.evaluate (evaluate.py L21-48) + compute_scores (L242-276) on SAKE's own formats:
    gold ``[{"img_id", "gt_entities": [{"phrase", "entity_type", "region_box"}]}]`` (one entry per box), the
    inference script's ``[{"img_id", "prediction": [{"entity", "type", "box2d"}]}]``. Returns
    ``{"gmner" | "eeg" | "mner": [micro P, R, F1] x 100}``; a setting in which every tweet drops out raises
    sklearn's ValueError, as in SAKE."""
    preds = _sake_load_predictions(pred_records)
    assert len(preds) == len(gt_records)
    pred_entities, gt_entities = [], []
    for pr, gr in zip(preds, gt_records):
        assert pr["img_id"] == gr["img_id"]
        pred_entities.append([(e["phrase"], e["phrase"], e["entity_type"], e["region_box"])
                              for e in pr["pre_entities"] if e["entity_type"] in labels])  # fmt: skip
        gt_entities.append(
            [(e["phrase"], e["phrase"], e["entity_type"], e["region_box"]) for e in gr["gt_entities"]]
        )
    out = {}
    for setting in ("gmner", "eeg", "mner"):
        gt, pred = _sake_convert(gt_entities, pred_entities, setting)
        try:
            out[setting] = _sake_score(gt, pred, labels, with_collect=setting != "mner")
        except ValueError as err:  # every tweet dropped out: sklearn refuses empty input
            out[setting] = err
    return out


# ------------------------------------------------------------------------------- riveg-hf -> SAKE formats
def _sake_type(t):
    return "MISC" if t == "OTHER" else t  # SAKE's gold says MISC where Twitter-GMNER says OTHER


def to_sake(preds, golds):
    """riveg-hf lists of entities -> SAKE's gold file and the inference script's predictions."""
    gt_records, pred_records = [], []
    for k, (ps, gs) in enumerate(zip(preds, golds)):
        entries = []
        for e in gs:  # one gold entry per box, [] when not visible (sake_rl/data/twitter_gmner_gt.json)
            entries += [{"phrase": e["text"], "entity_type": _sake_type(e["type"]), "region_box": list(b)}
                        for b in e["boxes"]] or [{"phrase": e["text"], "entity_type": _sake_type(e["type"]),
                                                  "region_box": []}]  # fmt: skip
        gt_records.append({"img_id": f"{k}.jpg", "gt_entities": entries})
        pred_records.append({"img_id": f"{k}.jpg", "prediction": [
            {"entity": e["entity"], "type": _sake_type(e["type"]), "box2d": [] if e["box"] is None else list(e["box"])}
            for e in ps]})  # fmt: skip
    return gt_records, pred_records


# ------------------------------------------------------------------------------------ the differential test
STRINGS = ["Messi", "messi", "Real Madrid", "Real  Madrid", "NBA", "Paris", "Warriors"]
GOLD_TYPES = ["PER", "LOC", "ORG", "OTHER"]
PRED_TYPES = GOLD_TYPES * 3 + ["MISC", "per", "EVENT", "None-type", ""]
BOXES = [A, A2, B, FAR, HALF, BELOW, [0.0, 0.0, 60.0, 60.0], [50.0, 50.0, 120.0, 120.0], [0.0, 0.0, 3310.0, 3499.0],
         [0.0, 0.0, 3310.0, 1749.5]]  # fmt: skip


def _random_case(rng):
    preds, golds = [], []
    for _ in range(rng.randint(1, 5)):
        gs = []
        for _ in range(rng.choice([0, 0, 1, 2, 3, 4])):  # empty gold tweets included
            nb = rng.choice([0, 0, 1, 1, 1, 2, 3])  # not visible, one box, several boxes
            boxes = [list(b) for b in rng.sample(BOXES, nb)]
            s = rng.randint(0, 6)
            gs.append(g(rng.choice(STRINGS), boxes, rng.choice(GOLD_TYPES), s, s + rng.randint(1, 2)))
        ps = []
        for _ in range(rng.choice([0, 1, 2, 3, 4, 5])):  # empty predictions included
            if gs and rng.random() < 0.7:  # mostly about a gold entity: its string, often its type and a box
                e = rng.choice(gs)
                text = e["text"] if rng.random() < 0.9 else rng.choice(STRINGS)
                typ = e["type"] if rng.random() < 0.7 else rng.choice(PRED_TYPES)
                pool = e["boxes"] + [None] + BOXES if rng.random() < 0.6 else [None, *BOXES]
                box = rng.choice(pool)
            else:
                text, typ, box = rng.choice(STRINGS), rng.choice(PRED_TYPES), rng.choice([None, *BOXES])
            s = rng.randint(0, 6)
            ps.append(p(text, None if box is None else list(box), typ, s, s + 1))
        if ps and rng.random() < 0.2:
            ps.append(dict(rng.choice(ps)))  # a duplicated prediction
        preds.append(ps)
        golds.append(gs)
    return preds, golds


def test_sake_matches_a_restatement_of_its_evaluator_on_random_cases():
    pytest.importorskip("sklearn")
    pytest.importorskip("torchvision")
    rng = random.Random(20260730)
    n_compared = n_dropped_out = 0
    for case in range(300):
        preds, golds = _random_case(rng)
        ref = sake_reference(*to_sake(preds, golds))
        ours = sake(preds, golds)
        for metric in ("gmner", "eeg", "mner"):
            got = [ours[f"{metric}_{k}"] for k in ("precision", "recall", "f1")]
            if isinstance(ref[metric], ValueError):  # SAKE crashes; here 0 (documented)
                assert got == [0.0, 0.0, 0.0], (case, metric, preds, golds)
                n_dropped_out += 1
                continue
            assert got == pytest.approx([v / 100 for v in ref[metric]], abs=1e-9), (
                case,
                metric,
                preds,
                golds,
            )
            n_compared += 1
    assert n_compared > 700 and n_dropped_out > 0  # the cases reach both paths


def test_the_reference_reproduces_the_behaviour_check_of_the_notes():
    """The reference itself, on the toy datasets of the research notes' run of the unmodified evaluator."""
    pytest.importorskip("sklearn")
    pytest.importorskip("torchvision")
    box = [10, 10, 100, 100]
    wrong = [300, 300, 400, 400]

    def run(gold, pred):
        gt = [{"img_id": f"{k}", "gt_entities": [{"phrase": ph, "entity_type": t, "region_box": b} for ph, t, b in s]}
              for k, s in enumerate(gold)]  # fmt: skip
        pr = [{"img_id": f"{k}", "prediction": [{"entity": ph, "type": t, "box2d": b} for ph, t, b in s]}
              for k, s in enumerate(pred)]  # fmt: skip
        return {m: [round(v, 1) for v in r] for m, r in sake_reference(gt, pr).items()}

    assert run([[("M", "PER", box)]], [[("M", "PER", wrong)]])["gmner"] == [0, 0, 0]
    assert run([[("M", "PER", [])]], [[("M", "PER", box)]])["gmner"] == [50, 100, 66.7]
    assert run([[("M", "PER", box), ("N", "PER", box)]], [[("M", "PER", box), ("N", "PER", wrong)]])["gmner"] == [
        33.3, 50, 40]  # fmt: skip
    assert run([[("M", "PER", box)], [("N", "PER", [])]], [[("M", "PER", box)], []]) == {
        "gmner": [100, 100, 100], "eeg": [100, 100, 100], "mner": [100, 50, 66.7]}  # fmt: skip


# ------------------------------------------------------------------------------------- hand-computed quirks
def test_strings_are_compared_exactly_case_and_spaces_included():
    # "adam" vs "Adam": not the same entity anywhere (no span, no case folding); "Real  Madrid" vs "Real Madrid"
    s = sake(
        [[p("adam", A), p("Real  Madrid", None, "ORG")]], [[g("Adam", [A]), g("Real Madrid", [], "ORG")]]
    )
    assert s["mner_f1"] == s["eeg_f1"] == s["gmner_f1"] == 0.0
    # the span plays no part: a prediction with another span but the same string is right
    s = sake([[p("Adam", A, start=7, end=9)]], [[g("Adam", [A], start=0, end=1)]])
    assert s["mner_f1"] == s["eeg_f1"] == s["gmner_f1"] == 1.0


def test_types_sake_does_not_know_are_dropped_and_other_is_misc():
    gold = [[g("Messi", [A]), g("NBA", [], "OTHER")]]
    # "EVENT", "per" and "" are not in SAKE's label_dict: dropped, neither right nor wrong (L35-36)
    s = sake([[p("Messi", A), p("NBA", None, "OTHER"), p("X", B, "EVENT"), p("Messi", B, "per"),
               p("Y", None, "")]], gold)  # fmt: skip
    assert counts(s) == (2, 2, 2)
    assert s["mner_precision"] == s["eeg_precision"] == 1.0
    # OTHER and MISC are the same type (SAKE's gold says MISC)
    assert counts(sake([[p("Messi", A), p("NBA", None, "MISC")]], gold)) == (2, 2, 2)
    # "None-type" is in SAKE's label_dict: kept; a wrong type in GMNER and MNER, but EEG ignores types
    s = sake([[p("Messi", A, "None-type")]], [[g("Messi", [A])]])
    assert (s["gmner_f1"], s["mner_f1"], s["eeg_f1"]) == (0.0, 0.0, 1.0)
    # ClassLabel indices are the data's types
    assert counts(sake([[p("Messi", A, 0)]], [[g("Messi", [A], 0)]])) == (1, 1, 1)


def test_an_unknown_gold_type_is_an_error():
    with pytest.raises(MetricInputError, match="reference 0"):
        sake([[p("Messi", A)]], [[g("Messi", [A], "EVENT")]])


def test_tweets_with_no_gold_or_no_prediction_drop_out_of_gmner_and_eeg_only():
    right = ([p("Messi", A)], [g("Messi", [A])])
    # tweet 2 has gold but no prediction: its miss is not counted in GMNER / EEG; MNER counts it
    s = sake([right[0], []], [right[1], [g("NBA", [], "ORG")]])
    assert counts(s) == (1, 1, 1) and s["eeg_f1"] == 1.0
    assert counts(s, "mner") == (1.0, 0.5)
    # tweet 2 has no gold and a prediction: its false positive is not counted in GMNER / EEG; MNER counts it
    s = sake([right[0], [p("NBA", None, "ORG")]], [right[1], []])
    assert counts(s) == (1, 1, 1) and s["eeg_f1"] == 1.0
    assert counts(s, "mner") == (0.5, 1.0)
    # a tweet whose predictions all have unknown types has no prediction left: it drops out too
    s = sake([right[0], [p("NBA", None, "EVENT")]], [right[1], [g("NBA", [], "ORG")]])
    assert counts(s) == (1, 1, 1)
    # dict predictions: an example without an entry predicts nothing
    s = sake({"a": right[0]}, {"a": right[1], "b": [g("NBA", [], "ORG")]})
    assert counts(s) == (1, 1, 1)
    # every tweet dropped out: SAKE's sklearn call raises; here 0
    s = sake([[]], [[g("Messi", [A])]])
    assert (s["gmner_f1"], s["n_predictions"], s["n_references"]) == (0.0, 0, 0)


def test_a_gold_entity_with_several_boxes_is_several_gold_entries():
    gold = [[g("Warriors", [A, B], "ORG")]]
    s = sake([[p("Warriors", A, "ORG")]], gold)
    assert counts(s) == (1, 1, 2)  # one box of two: recall 1/2
    assert counts(sake([[p("Warriors", A, "ORG"), p("Warriors", B, "ORG")]], gold)) == (2, 2, 2)
    assert sake([[p("Warriors", A, "ORG")]], gold)["mner_f1"] == 1.0  # MNER: (string, type) sets


def test_a_wrong_box_is_two_false_positives_and_a_miss():
    # pred -100 plus collect's (Messi, PER, 0): 0 of 2 predicted, 0 of 1 gold
    assert counts(sake([[p("Messi", FAR)]], [[g("Messi", [A])]])) == (0, 2, 1)
    # two gold entities, one right and one wrong box: P 1/3, R 1/2 (the notes' 33.3 / 50 / 40)
    s = sake([[p("Messi", A), p("NBA", FAR, "ORG")]], [[g("Messi", [A]), g("NBA", [B], "ORG")]])
    assert counts(s) == (1, 3, 2)
    assert s["gmner_f1"] == pytest.approx(0.4)


def test_not_visible_for_a_groundable_entity_is_one_false_positive_and_a_miss():
    assert counts(sake([[p("Messi", None)]], [[g("Messi", [A])]])) == (0, 1, 1)


def test_a_box_for_a_not_visible_entity_is_right_once_and_wrong_once():
    # pred -100 is wrong, collect's (Messi, PER, 0) is the gold: 1 of 2, 1 of 1
    assert counts(sake([[p("Messi", A)]], [[g("Messi", [])]])) == (1, 2, 1)
    # the same for a wrong box when the tweet also has a not-visible mention with that string and type
    s = sake([[p("Messi", FAR)]], [[g("Messi", [A], start=0, end=1), g("Messi", [], start=5, end=6)]])
    assert counts(s) == (1, 2, 2)


def test_a_wrong_type_with_the_right_box_is_wrong_in_gmner_and_right_in_eeg():
    s = sake([[p("Messi", A, "LOC")]], [[g("Messi", [A])]])
    assert counts(s) == (0, 1, 1)
    assert (s["eeg_f1"], s["mner_f1"]) == (1.0, 0.0)


def test_a_predicted_box_takes_the_first_gold_entry_of_its_string_whatever_the_type():
    # two gold entities "M" with the same box, PER first: the LOC prediction's box becomes region 1 (PER's), so
    # (M, LOC, 1) is not gold; collect adds (M, LOC, 0): 0 right of 2 predicted
    assert counts(sake([[p("M", A, "LOC")]], [[g("M", [A], "PER"), g("M", [A], "LOC", 4, 5)]])) == (0, 2, 2)
    # ... but a box on the other gold's own box is right
    assert counts(sake([[p("M", B, "LOC")]], [[g("M", [A], "PER"), g("M", [B], "LOC", 4, 5)]])) == (1, 1, 2)
    # a box that overlaps a gold box of another string does not take its number: -100
    assert counts(sake([[p("M", A)]], [[g("N", [A]), g("M", [B])]])) == (0, 2, 2)


def test_tuples_are_sets_duplicates_collapse():
    # two "Messi" mentions with the same box (the builder gives every mention of a name the XML's box): both
    # predicted boxes take region 1, one tuple: 1 of 1 predicted, 1 of 2 gold
    golds = [[g("Messi", [A], start=0, end=1), g("Messi", [A], start=2, end=3)]]
    assert counts(sake([[p("Messi", A, start=0, end=1), p("Messi", A2, start=2, end=3)]], golds)) == (1, 1, 2)
    # two not-visible gold mentions with the same string and type are one gold tuple
    golds = [[g("Messi", [], start=0, end=1), g("Messi", [], start=2, end=3)]]
    assert counts(sake([[p("Messi", None)]], golds)) == (1, 1, 1)
    # a prediction repeated is one
    assert counts(sake([[p("Messi", A), p("Messi", A)]], [[g("Messi", [A])]])) == (1, 1, 1)


def test_iou_is_at_least_half_in_float32():
    assert counts(sake([[p("Messi", HALF)]], [[g("Messi", [A])]])) == (1, 1, 1)  # IoU 0.5: right
    assert counts(sake([[p("Messi", BELOW)]], [[g("Messi", [A])]])) == (0, 2, 1)  # IoU < 0.5: a wrong box
    # IoU exactly 0.5 in float64 but 0.49999997 in float32 (torchvision's box_iou): SAKE says wrong
    gold, pred = [0.0, 0.0, 3310.0, 3499.0], [0.0, 0.0, 3310.0, 1749.5]
    assert compute_gmner([[p("M", pred)]], [[g("M", [gold])]])["gmner_f1"] == 1.0  # riveg-hf: float64
    assert counts(sake([[p("M", pred)]], [[g("M", [gold])]])) == (0, 2, 1)


def test_the_iou_threshold_is_fixed_and_candidates_are_refused():
    preds, golds = [[p("Messi", A)]], [[g("Messi", [A])]]
    with pytest.raises(MetricInputError, match="fixes the IoU threshold"):
        sake(preds, golds, iou_threshold=0.7)
    assert sake(preds, golds, iou_threshold=0.5)["gmner_f1"] == 1.0
    with pytest.raises(MetricInputError, match="does not read detector candidates"):
        sake(preds, golds, candidates={0: [A]})


def test_entity_strings_are_required():
    with pytest.raises(MetricInputError, match="needs 'entity' or 'text'"):
        sake([[{"start": 0, "end": 1, "type": "PER", "box": None}]], [[g("x", [])]])


def test_fmnerg_types_are_its_fine_labels_and_the_coarse_map_applies():
    from riveg_hf.data.fmnerg import FINE_TO_COARSE, FINE_TYPES

    golds = [[g("Messi", [A], "athlete"), g("Paris", [], "city")]]
    s = sake([[p("Messi", A, "athlete"), p("Paris", None, "LOC")]], golds, type_names=FINE_TYPES)
    assert counts(s) == (1, 1, 2)  # "LOC" is not one of SAKE's fine labels: dropped
    # coarse: both sides mapped; a prediction may also say the coarse type itself
    s = sake([[p("Messi", A, "person"), p("Paris", None, "city")]], golds, type_names=FINE_TYPES,
             type_map=FINE_TO_COARSE)  # fmt: skip
    assert counts(s) == (2, 2, 2)


def test_sake_is_a_protocol_and_riveg_evaluate_protocol_all_prints_it(tmp_path, capsys):
    from datasets_scripts import twitter_gmner
    from riveg_hf.cli import main as cli

    from .helpers import write_release

    assert PROTOCOLS["sake"][1] == "tangjielong928/SAKE sake_rl/evaluate/evaluate.py @ 71417dfd"
    ex = {"id": "1", "tokens": ["Messi", "and", "Messi"], "tags": ["B-PER", "O", "B-PER"],
          "objects": [("Messi", [0, 0, 10, 10])], "size": (64, 48)}  # fmt: skip
    raw = write_release(tmp_path / "raw", {"train": [ex], "dev": [ex], "test": [ex]})
    twitter_gmner.build(raw, tmp_path / "ds")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "1", "entities": [
        {"entity": "Messi", "type": "PER", "start": 0, "end": 5, "token_start": 0, "token_end": 1, "box": None},
        {"entity": "Messi", "type": "PER", "start": 10, "end": 15, "token_start": 2, "token_end": 3,
         "box": {"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10}}]}) + "\n")  # fmt: skip
    out = tmp_path / "scores.json"
    assert cli(["evaluate", "--predictions", str(preds), "--dataset", str(tmp_path / "ds"), "--protocol", "all",
                "--output", str(out)]) == 0  # fmt: skip
    assert "| sake |" in capsys.readouterr().out
    scores = json.loads(out.read_text())
    assert set(scores["protocols"]) == set(PROTOCOLS) and "sake" in scores["protocols"]
    # both gold mentions carry the box: regions 1 and 2; the box prediction takes region 1, "not visible" is
    # region 0, which collect adds again: 1 of 2 predicted, 1 of 2 gold
    assert scores["protocols"]["sake"]["gmner_f1"] == pytest.approx(0.5)
    assert scores["protocols"]["sake"]["scored_by"] == PROTOCOLS["sake"][1]
