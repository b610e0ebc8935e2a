"""The scoring protocols of the published systems (riveg_hf.metrics.protocols) on hand-built cases where they
disagree. The expected numbers are worked out from each original scoring code by hand in the comments
(RiVEG statistic/statistic.py, H-Index model/metrics.py + data_pipe.py, E2E-GMNER evaluation/metrics.py,
FMNERG more_eval.py; repositories and commits in the module doc)."""

from __future__ import annotations

import json

import pytest

from riveg_hf.metrics import MetricInputError, compute_gmner

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
FAR = [50.0, 50.0, 60.0, 60.0]
HALF = [0.0, 0.0, 10.0, 5.0]  # IoU(HALF, A) = 50 / 100 = 0.5 exactly
PROTOCOLS = ("riveg-hf", "riveg", "h-index", "e2e-gmner", "fmnerg")


def g(start, end, text, boxes, type_="PER"):
    return {"start": start, "end": end, "type": type_, "text": text, "boxes": boxes}


def p(start, end, text, box, type_="PER"):
    return {"start": start, "end": end, "type": type_, "entity": text, "box": box}


def counts(preds, golds, protocol, **kw):
    """(correct, predicted, gold) of GMNER under ``protocol``, from the returned P and R."""
    s = compute_gmner([preds], [golds], protocol=protocol, **kw)
    n_p, n_g = s["n_predictions"], s["n_references"]
    c = round(s["gmner_precision"] * n_p) if n_p else round(s["gmner_recall"] * n_g)
    return c, n_p, n_g


def table(preds, golds, **kw):
    return {pr: counts(preds, golds, pr, **kw) for pr in PROTOCOLS}


def test_a_repeated_string_with_its_regions_swapped_between_the_spans():
    # "Messi ... Messi": the first mention is in the picture (box A), the second is not; the predictions put
    # the box on the second mention and "not visible" on the first.
    golds = [g(0, 1, "Messi", [A]), g(5, 6, "Messi", [])]
    preds = [p(0, 1, "Messi", None), p(5, 6, "Messi", A)]
    assert table(preds, golds) == {
        # spans: span 0-1 says none against a box, span 5-6 a box against none -> 0 of 2
        "riveg-hf": (0, 2, 2),
        # RiVEG keys by image + "Messi(PER)": pred 1 (none) meets gold line 1 (box) -> no break, goes on to gold
        # line 2 (none) -> right, removed; pred 2 (box A) meets gold line 1 (box A), IoU 1 >= 0.5 -> right.
        "riveg": (2, 2, 2),
        # H-Index keys by span, like riveg-hf: both wrong
        "h-index": (0, 2, 2),
        # E2E-GMNER matches (string, type) with agreeing regions, maximum matching: pred1-gold2, pred2-gold1
        "e2e-gmner": (2, 2, 2),
        # FMNERG keys "Messi PER True" and "Messi PER False": both predicted keys exist in gold; the True one's
        # region (A) is right
        "fmnerg": (2, 2, 2),
    }


def test_iou_exactly_one_half():
    golds, preds = [g(0, 1, "Messi", [A])], [p(0, 1, "Messi", HALF)]
    assert table(preds, golds) == {
        "riveg-hf": (1, 1, 1),  # >= 0.5
        "riveg": (1, 1, 1),  # statistic.py L133: if Iouresult >= 0.5
        "h-index": (
            0,
            1,
            1,
        ),  # keeped_ious: iou > 0.5 (strict); no candidates: the box itself is the candidate
        "e2e-gmner": (1, 1, 1),  # geometry.py: miou >= iou_threshold
        "fmnerg": (0, 1, 1),  # H-Index's region rule
    }


def test_two_predictions_for_one_gold_entity():
    golds = [g(0, 1, "Messi", [A])]
    preds = [p(0, 1, "Messi", A), p(0, 1, "Messi", FAR)]  # the same span twice: right box, then a wrong one
    assert table(preds, golds) == {
        "riveg-hf": (1, 2, 1),  # one-to-one: the second is a false positive
        "riveg": (1, 2, 1),  # pred 1 takes the gold line (removed); pred 2 finds none; 2 predicted lines
        "h-index": (0, 1, 1),  # all_pairs[span] = ...: the last prediction of the span wins, and it is wrong
        "e2e-gmner": (1, 2, 1),  # maximum one-to-one matching: 1
        "fmnerg": (0, 1, 1),  # both are key "Messi PER True": collapsed, last (wrong) region kept
    }


def test_a_gold_entity_with_several_boxes():
    golds, preds = [g(0, 1, "Messi", [A, B])], [p(0, 1, "Messi", B)]
    assert set(table(preds, golds).values()) == {(1, 1, 1)}  # every protocol: any gold box


def test_a_box_where_the_gold_says_not_visible_and_the_reverse():
    for golds, preds in (([g(0, 1, "Messi", [])], [p(0, 1, "Messi", A)]),
                         ([g(0, 1, "Messi", [A])], [p(0, 1, "Messi", None)])):  # fmt: skip
        assert set(table(preds, golds).values()) == {(0, 1, 1)}


def test_riveg_is_greedy_first_fit_where_e2e_gmner_matches_optimally():
    # two gold "Messi" with boxes A and [0,0,10,12]; P1 = [0,0,10,11] fits both (IoU 110/110... >= 0.5),
    # P2 = [0,0,10,5.5] fits only A (IoU 0.55; with [0,0,10,12] 55/120 = 0.458)
    golds = [g(0, 1, "Messi", [A]), g(3, 4, "Messi", [[0.0, 0.0, 10.0, 12.0]])]
    preds = [p(3, 4, "Messi", [0.0, 0.0, 10.0, 11.0]), p(0, 1, "Messi", [0.0, 0.0, 10.0, 5.5])]
    assert counts(preds, golds, "riveg") == (1, 2, 2)  # P1 takes gold line 1 first, P2 then fails line 2
    assert counts(preds, golds, "e2e-gmner") == (2, 2, 2)  # P1-gold 2, P2-gold 1
    assert counts(preds, golds, "riveg-hf") == (2, 2, 2)  # by span: each meets its own


def test_h_index_with_the_detector_candidates_it_used():
    golds, preds = [g(0, 1, "Messi", [A])], [p(0, 1, "Messi", [0.0, 0.0, 9.0, 9.0])]
    # the predicted box snaps to its best candidate, A itself: IoU 1 > 0.5 -> right
    assert counts(preds, golds, "h-index", candidates={"0": [FAR, A]}) == (1, 1, 1)
    # no candidate covers the gold box (best IoU < 0.5): data_pipe's cover_flag 0, never right, still counted
    assert counts(preds, golds, "h-index", candidates={"0": [FAR]}) == (0, 1, 1)
    # the only covering candidate is at IoU exactly 0.5: covered (>= 0.5) but kept needs > 0.5 -> 0/0 = NaN,
    # which nonzero() counts for every candidate: any chosen candidate is right, even a far one
    assert counts([p(0, 1, "Messi", FAR)], golds, "h-index", candidates={"0": [HALF, FAR]}) == (1, 1, 1)


def test_fmnerg_coarse_and_fine_levels():
    fine = ["athlete", "politician", "city"]
    coarse = {"athlete": "person", "politician": "person", "city": "location"}
    golds = [g(0, 1, "Messi", [A], "athlete")]
    preds = [p(0, 1, "Messi", A, "politician")]  # right coarse type, wrong fine type
    assert counts(preds, golds, "fmnerg", type_names=fine) == (0, 1, 1)
    assert counts(preds, golds, "fmnerg", type_names=fine, type_map=coarse) == (1, 1, 1)
    s = compute_gmner([preds], [golds], type_names=fine, type_map=coarse)
    assert s["gmner_f1"] == 1.0 and set(s["per_type"]) == {"person"}


def test_string_protocols_need_the_entity_string():
    with pytest.raises(MetricInputError, match="needs 'entity' or 'text'"):
        compute_gmner(
            [[{"start": 0, "end": 1, "type": "PER", "box": None}]], [[g(0, 1, "x", [])]], protocol="riveg"
        )
    with pytest.raises(ValueError, match="unknown protocol"):
        compute_gmner([[]], [[]], protocol="mine")


def test_riveg_evaluate_protocol_all_prints_one_row_per_protocol(tmp_path, capsys):
    from datasets_scripts import twitter_gmner
    from riveg_hf.cli import main as cli

    from .helpers import write_release

    ex = {"id": "1", "tokens": ["Messi", "and", "Messi"], "tags": ["B-PER", "O", "B-PER"],
          "objects": [("Messi", A)], "size": (64, 48)}  # fmt: skip
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
    text = capsys.readouterr().out
    for name in (*PROTOCOLS, "sake"):  # SAKE's own tests: tests/test_protocol_sake.py
        assert f"| {name} |" in text
    scores = json.loads(out.read_text())
    assert set(scores["protocols"]) == {*PROTOCOLS, "sake"}
    # the builder gives both "Messi" mentions the XML's box (name-keyed, as every release does): the prediction
    # with "not visible" on the first is wrong, the boxed one right -> 1 of 2 (F1 0.5), except FMNERG's key
    # collapse; the table's numbers are the functions' own
    from riveg_hf.data import load_built_dataset

    test = load_built_dataset(tmp_path / "ds", "gmner", split="test")
    rows = [json.loads(line)["entities"] for line in preds.read_text().splitlines()]
    for name in (*PROTOCOLS, "sake"):
        want = compute_gmner(rows, test["entities"], protocol=name)["gmner_f1"]
        # FMNERG collapses the two gold mentions into one key "Messi PER True": P 1/2, R 1/1 -> F1 2/3
        expected = 2 / 3 if name == "fmnerg" else 0.5
        assert scores["protocols"][name]["gmner_f1"] == pytest.approx(want) == pytest.approx(expected), name
