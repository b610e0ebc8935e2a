"""MNER / EEG / GMNER / SMNER scores: hand-computed cases for every rule, self-scores, properties, errors."""

import json

import evaluate
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riveg_hf.cli import main as cli
from riveg_hf.masks import encode_rle
from riveg_hf.metrics import (
    GMNER_MODULE,
    SMNER_MODULE,
    MetricInputError,
    compute_gmner,
    compute_smner,
)

B = [0, 0, 10, 10]


def g(s, e, t, boxes=()):
    return {"start": s, "end": e, "type": t, "boxes": [list(b) for b in boxes]}


def p(s, e, t, box=None, **kw):
    return {"start": s, "end": e, "type": t, "box": box, **kw}


def scores(preds, golds):
    r = compute_gmner(preds, golds)
    return {k: round(r[f"{k}_f1"], 6) for k in ("mner", "eeg", "gmner")}, r


def test_all_correct_and_region_rules():
    gold = [[g(0, 1, "PER", [B]), g(2, 3, "LOC")]]
    s, r = scores([[p(0, 1, "PER", B), p(2, 3, "LOC", None)]], gold)
    assert s == {"mner": 1.0, "eeg": 1.0, "gmner": 1.0}
    # None against a groundable gold, and a box against an ungroundable gold, are wrong regions
    s, r = scores([[p(0, 1, "PER", None), p(2, 3, "LOC", B)]], gold)
    assert r["mner_f1"] == 1.0 and r["eeg_f1"] == 0.0 and r["gmner_f1"] == 0.0


def test_wrong_type_counts_for_eeg_only():
    gold = [[g(0, 1, "PER", [B])]]
    _, r = scores([[p(0, 1, "ORG", B)]], gold)
    assert (r["mner_f1"], r["eeg_f1"], r["gmner_f1"]) == (0.0, 1.0, 0.0)


def test_iou_exactly_half_counts_and_below_does_not():
    gold = [[g(0, 1, "PER", [[0, 0, 10, 10]])]]
    _, r = scores([[p(0, 1, "PER", [0, 0, 10, 5])]], gold)  # IoU = 0.5
    assert r["gmner_f1"] == 1.0
    _, r = scores([[p(0, 1, "PER", [0, 0, 10, 4.9])]], gold)  # IoU = 0.49
    assert r["gmner_f1"] == 0.0 and r["mner_f1"] == 1.0


def test_any_one_of_several_gold_boxes():
    gold = [[g(0, 1, "PER", [[0, 0, 10, 10], [100, 100, 120, 120]])]]
    _, r = scores([[p(0, 1, "PER", [101, 101, 120, 120])]], gold)
    assert r["gmner_f1"] == 1.0


def test_duplicate_prediction_is_a_false_positive():
    gold = [[g(0, 1, "PER", [B])]]
    _, r = scores([[p(0, 1, "PER", B), p(0, 1, "PER", B)]], gold)
    assert r["gmner_precision"] == 0.5 and r["gmner_recall"] == 1.0
    assert r["gmner_f1"] == pytest.approx(2 * 0.5 / 1.5)


def test_hand_computed_micro_average_and_per_type():
    gold = [
        [g(0, 2, "PER", [B]), g(3, 4, "LOC"), g(5, 6, "ORG", [[0, 0, 4, 4]])],
        [g(0, 1, "OTHER")],
    ]
    preds = [
        [
            p(0, 2, "PER", [0, 0, 10, 9]),  # all right
            p(3, 4, "ORG", None),  # wrong type, right region (not visible)
            p(5, 6, "ORG", [50, 50, 60, 60]),
        ],  # right type, wrong box
        [p(0, 1, "OTHER", None), p(2, 3, "PER", None)],  # right; spurious
    ]
    r = compute_gmner(preds, gold)
    # 5 predictions, 4 gold. MNER correct: PER, ORG, OTHER = 3. EEG: PER, (3,4), OTHER = 3. GMNER: PER, OTHER = 2
    assert r["mner_precision"] == pytest.approx(3 / 5) and r["mner_recall"] == pytest.approx(3 / 4)
    assert r["eeg_precision"] == pytest.approx(3 / 5) and r["eeg_recall"] == pytest.approx(3 / 4)
    assert r["gmner_precision"] == pytest.approx(2 / 5) and r["gmner_recall"] == pytest.approx(2 / 4)
    assert r["gmner_f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    pt = r["per_type"]
    assert pt["ORG"]["n_pred"] == 2 and pt["ORG"]["n_gold"] == 1
    assert pt["ORG"]["mner_precision"] == 0.5 and pt["ORG"]["gmner_recall"] == 0.0
    assert pt["LOC"]["mner_recall"] == 0.0 and pt["PER"]["n_pred"] == 2
    d = r["diagnostics"]
    # correctly recognised: PER (box vs groundable), ORG (box vs groundable), OTHER (None vs not visible)
    assert d["recognised_entities"] == 3 and d["entailment_accuracy"] == 1.0
    assert d["grounding_evaluated"] == 2 and d["grounding_accuracy"] == 0.5


def test_entailment_diagnostic_uses_explicit_groundable_flag():
    gold = [[g(0, 1, "PER", [B]), g(1, 2, "LOC")]]
    preds = [[p(0, 1, "PER", None, groundable=False), p(1, 2, "LOC", None, groundable=True)]]
    d = compute_gmner(preds, gold)["diagnostics"]
    assert d["entailment_confusion"] == {"tp": 0, "fp": 1, "fn": 1, "tn": 0}


def test_empty_predictions_are_valid():
    r = compute_gmner([[], []], [[g(0, 1, "PER")], []])
    assert r["mner_recall"] == 0.0 and r["gmner_f1"] == 0.0 and r["n_predictions"] == 0


def test_pipeline_output_format_is_accepted():
    gold = [[g(1, 2, "PER", [B])]]
    pipe_out = [
        [
            {
                "entity": "Obama",
                "type": "PER",
                "start": 5,
                "end": 10,
                "token_start": 1,
                "token_end": 2,
                "box": {"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10},
                "groundable": True,
            }
        ]
    ]
    assert compute_gmner(pipe_out, gold)["gmner_f1"] == 1.0


def test_dict_inputs_and_classlabel_types():
    refs = {"a": [g(0, 1, 0, [B])], "b": [g(0, 1, 3)]}  # ClassLabel ints: PER, OTHER
    preds = {"a": [p(0, 1, "PER", B)]}  # b missing: no predicted entity
    r = compute_gmner(preds, refs)
    assert r["gmner_precision"] == 1.0 and r["gmner_recall"] == 0.5


@pytest.mark.parametrize(
    ("preds", "refs", "message"),
    [
        ({"zz": []}, {"a": []}, r"example id\(s\) \['zz'\] that are not in the references"),
        ([[]], [[], []], "mismatched lengths: 1 prediction lists but 2 reference lists"),
        (
            [[p(0, 1, "PER", [5, 0, 1, 10])]],
            [[g(0, 1, "PER")]],
            r"example '0' prediction 0: field 'box'.*xmax < xmin",
        ),
        ([[p(0, 1, "PER", [0, 0, float("nan"), 1])]], [[g(0, 1, "PER")]], "prediction 0: field 'box'.*NaN"),
        (
            [[{"start": 0, "end": 1, "box": None}]],
            [[g(0, 1, "PER")]],
            "example '0' prediction 0: missing key 'type'",
        ),
        ([[{"start": 0, "type": "PER", "box": None}]], [[g(0, 1, "PER")]], "prediction 0: missing key 'end'"),
        ([[{"start": 0, "end": 1, "type": "PER"}]], [[g(0, 1, "PER")]], "missing key 'box'"),
        ([[]], [[{"start": 0, "end": 1, "type": "PER"}]], "example '0' reference 0: missing key 'boxes'"),
    ],
)
def test_bad_input_names_example_and_field(preds, refs, message):
    with pytest.raises(MetricInputError, match=message):
        compute_gmner(preds, refs)


def test_smner_masks():
    m = np.zeros((20, 20), bool)
    m[2:10, 2:10] = True
    other = np.zeros((20, 20), bool)
    other[12:18, 12:18] = True
    gold = [
        [
            {"start": 0, "end": 1, "type": "PER", "masks": [encode_rle(other), encode_rle(m)]},
            {"start": 1, "end": 2, "type": "LOC", "masks": []},
        ]
    ]
    half = m.copy()
    half[2:6, :] = False  # IoU 0.5
    r = compute_smner(
        [
            [
                {"start": 0, "end": 1, "type": "PER", "mask": half},
                {"start": 1, "end": 2, "type": "LOC", "mask": None},
            ]
        ],
        gold,
    )
    assert r["smner_f1"] == 1.0 and r["diagnostics"]["mask_mean_iou"] == pytest.approx(0.5)
    r = compute_smner(
        [
            [
                {"start": 0, "end": 1, "type": "PER", "mask": encode_rle(other[::1])},
                {"start": 1, "end": 2, "type": "LOC", "mask": encode_rle(m)},
            ]
        ],
        gold,
    )
    assert r["smner_precision"] == 0.5 and r["mner_f1"] == 1.0


# ---------------------------------------------------------------------- property test
ent = st.tuples(
    st.integers(0, 6),
    st.integers(1, 3),
    st.sampled_from(["PER", "LOC"]),
    st.one_of(
        st.none(), st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 20), st.integers(1, 20))
    ),
)


def _mk(e, gold):
    s, ln, t, b = e
    box = None if b is None else [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    return g(s, s + ln, t, [box] if box else []) if gold else p(s, s + ln, t, box)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(ent, max_size=5), min_size=1, max_size=4), st.data())
def test_removing_a_correct_prediction_never_raises_both_p_and_r(golds_raw, data):
    golds = [[_mk(e, True) for e in ex] for ex in golds_raw]
    preds = [[_mk(e, False) for e in data.draw(st.lists(ent, max_size=5))] for _ in golds_raw]
    # add the gold entities as correct predictions, so there is something to remove
    for ex_p, ex_g in zip(preds, golds):
        for gg in ex_g:
            ex_p.append(p(gg["start"], gg["end"], gg["type"], gg["boxes"][0] if gg["boxes"] else None))
    base = compute_gmner(preds, golds)
    for ei, ex_p in enumerate(preds):
        for pi in range(len(ex_p)):
            single = compute_gmner([[ex_p[pi]]], [golds[ei]])
            if single["gmner_precision"] != 1.0:
                continue  # not a correct prediction on its own
            reduced = [list(x) for x in preds]
            del reduced[ei][pi]
            r = compute_gmner(reduced, golds)
            assert not (
                r["gmner_precision"] > base["gmner_precision"] and r["gmner_recall"] > base["gmner_recall"]
            )
            assert r["gmner_recall"] <= base["gmner_recall"]


# ---------------------------------------------------------------------- real gold, modules, CLI
def test_real_gold_scored_against_itself(shared_data):
    from riveg_hf.data import gmner_records

    recs = gmner_records(shared_data / "twitter-gmner" / "v2.0", "test")
    golds = [r["entities"] for r in recs]
    preds = [[{**e, "box": e["boxes"][0] if e["boxes"] else None} for e in ex] for ex in golds]
    r = compute_gmner(preds, golds)
    for k in ("mner", "eeg", "gmner"):
        assert r[f"{k}_precision"] == r[f"{k}_recall"] == r[f"{k}_f1"] == 1.0
    assert r["n_references"] == 2543
    assert r["diagnostics"]["grounding_accuracy"] == 1.0 and r["diagnostics"]["entailment_accuracy"] == 1.0


def test_evaluate_modules_match_functions():
    gm = evaluate.load(GMNER_MODULE)
    preds = [[p(0, 2, "PER", [0, 0, 10, 9]), p(3, 4, "ORG", None)], [p(0, 1, "LOC", None)]]
    refs = [[g(0, 2, 0, [B]), g(3, 4, 1)], [g(0, 1, 1)]]
    out = gm.compute(predictions=preds, references=refs)
    ref = compute_gmner(preds, refs)
    assert {k: out[k] for k in ref if k.endswith("_f1")} == {k: ref[k] for k in ref if k.endswith("_f1")}
    assert out["gmner_f1"] == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    sm = evaluate.load(SMNER_MODULE)
    m = np.zeros((8, 8), bool)
    m[1:4, 1:4] = True
    out = sm.compute(
        predictions=[[{"start": 0, "end": 1, "type": "PER", "mask": encode_rle(m)}]],
        references=[[{"start": 0, "end": 1, "type": "PER", "masks": [encode_rle(m)]}]],
    )
    assert out["smner_f1"] == 1.0


def test_module_files_are_thin():
    import pathlib
    import re

    for path in (GMNER_MODULE, SMNER_MODULE):
        src = (pathlib.Path(path) / f"{pathlib.Path(path).name}.py").read_text()
        assert re.search(r"return compute_[gs]mner\(predictions, references(, protocol=protocol)?\)", src)
        assert not re.search(r"^import .*,", src, re.M)  # one import per line (evaluate's scanner)
        assert len([ln for ln in src.splitlines() if ln.strip()]) < 25


def test_cli_evaluate(tmp_path, capsys):
    from datasets_scripts import twitter_gmner

    from .helpers import write_release

    root = write_release(
        tmp_path / "raw",
        {
            "test": [
                {
                    "id": "1",
                    "tokens": ["Obama", "in", "Paris"],
                    "tags": ["B-PER", "O", "B-LOC"],
                    "objects": [("Obama", [0, 0, 10, 10])],
                },
                {"id": "2", "tokens": ["NASA"], "tags": ["B-ORG"], "objects": None},
            ]
        },
    )
    twitter_gmner.build(root, tmp_path / "ds")
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "id": "1",
                    "entities": [
                        {"start": 0, "end": 1, "type": "PER", "box": [0, 0, 10, 10]},
                        {"start": 2, "end": 3, "type": "LOC", "box": None},
                    ],
                },
                {"id": "2", "entities": [{"start": 0, "end": 1, "type": "PER", "box": None}]},
            ]
        )
    )
    out = tmp_path / "s.json"
    assert (
        cli(
            ["evaluate", "--predictions", str(preds), "--dataset", str(tmp_path / "ds"), "--output", str(out)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "GMNER" in text and "entailment" in text
    s = json.loads(out.read_text())
    assert s["gmner_precision"] == pytest.approx(2 / 3) and s["gmner_recall"] == pytest.approx(2 / 3)
    preds.write_text(json.dumps({"id": "99", "entities": []}))
    assert cli(["evaluate", "--predictions", str(preds), "--dataset", str(tmp_path / "ds")]) == 2
    assert "'99'" in capsys.readouterr().err


def test_the_evaluate_module_takes_the_protocol():
    gm = evaluate.load(GMNER_MODULE)
    a = [0.0, 0.0, 10.0, 10.0]
    refs = [[{"text": "Messi", "groundable": True, "start": 0, "end": 1, "type": "PER", "boxes": [a]},
             {"text": "Messi", "groundable": False, "start": 5, "end": 6, "type": "PER", "boxes": []}]]  # fmt: skip
    preds = [[{"entity": "Messi", "start": 0, "end": 1, "type": "PER", "box": None},
              {"entity": "Messi", "start": 5, "end": 6, "type": "PER", "box": a}]]  # fmt: skip
    for protocol, want in (("riveg-hf", 0.0), ("riveg", 1.0), ("h-index", 0.0), ("e2e-gmner", 1.0)):
        out = gm.compute(predictions=preds, references=refs, protocol=protocol)
        assert out["gmner_f1"] == want == compute_gmner(preds, refs, protocol=protocol)["gmner_f1"], protocol
