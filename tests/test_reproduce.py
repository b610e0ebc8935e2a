"""`riveg reproduce` end to end on the first tweets of the real Twitter-GMNER text, with images the test draws
(shapes inside the gold boxes) and tiny random models for every stage: every step runs, a killed run
resumes, and results.json holds the metric's scores of the predictions file it wrote."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from riveg_hf.cli import main as cli
from riveg_hf.data import load_built_dataset
from riveg_hf.metrics import compute_gmner
from riveg_hf.predict import read_jsonl
from riveg_hf.reproduce import PUBLISHED, ReproduceArguments, plan
from riveg_hf.testing import tiny_blip_itm, tiny_grounding_dino, tiny_qwen2_5_vl, tiny_recognizer

from .helpers import real_gmner_subset

LIMIT = 3


@pytest.fixture(scope="module")
def real_subset(tmp_path_factory):
    s = real_gmner_subset(tmp_path_factory.mktemp("repro"), LIMIT,
                          {"mner": tiny_recognizer(), "entailment": tiny_blip_itm(),
                           "grounder": tiny_grounding_dino(), "vlm": tiny_qwen2_5_vl()})  # fmt: skip
    knowledge = s["data"] / "riveg-aux" / "llm-knowledge"
    return {**s, "knowledge": str(knowledge) if knowledge.is_dir() else None}


def _argv(s, out, recipe="riveg-2024"):
    b = s["bases"]
    bases = f"mner={b['mner']},entailment={b['entailment']},grounder={b['grounder']}"
    if recipe == "vlm":
        bases = f"mner={b['mner']},grounder={b['vlm']}"
    argv = ["reproduce", "--raw", s["raw"], "--images", s["images"], "--out", str(out), "--recipe", recipe,
            "--base-models", bases, "--limit", str(LIMIT), "--max-steps", "2", "--batch-size", "2",
            "--local-files-only"]  # fmt: skip
    if s["knowledge"]:
        argv += ["--knowledge", s["knowledge"]]
    return argv


def _check_results(out: Path):
    results = json.loads((out / "results.json").read_text())
    ours = results["ours"]
    for k in ("mner_f1", "eeg_f1", "gmner_f1", "gmner_precision", "gmner_recall"):
        assert math.isfinite(ours[k]) and 0.0 <= ours[k] <= 1.0
    # the scores are the project's metric over the predictions file it wrote, against the built test split
    preds = {r["id"]: r["entities"] for _, r in read_jsonl(out / "predictions.jsonl")}
    test = load_built_dataset(str(out / "data"), "gmner", split="test")
    assert len(preds) == len(test) == LIMIT
    again = compute_gmner(preds, dict(zip(test["id"], test["entities"])))
    assert again["gmner_f1"] == ours["gmner_f1"] and again["mner_f1"] == ours["mner_f1"]
    assert results["published"] == PUBLISHED
    assert {s["step"] for s in results["steps"]} >= {
        "data",
        "mner",
        "grounder",
        "compose",
        "predict",
        "evaluate",
    }
    assert all(s["wall_time_s"] >= 0 and s["peak_rss_mb"] > 0 for s in results["steps"])
    md = (out / "results.md").read_text()
    assert "67.06" in md and "| **ours**" in md and "smoke run" in md
    # each published target next to ours under the protocol it was measured with
    assert "| RiVEG† (Li et al., ACL 2024 Findings) | `riveg` | 67.06 |" in md
    from riveg_hf.metrics import PROTOCOLS

    assert set(results["ours_by_protocol"]) == set(PROTOCOLS)  # every protocol riveg evaluate knows
    return results


def test_dry_run_prints_the_plan_and_writes_nothing(real_subset, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli([*_argv(real_subset, out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    for step in ("data", "mner", "entailment", "grounder", "compose", "predict", "evaluate"):
        assert f". {step} [to run]" in text
    assert "riveg train grounder --dataset" in text and "expected: ~" in text and "GB disk" in text
    assert not out.exists()
    vlm = [s.name for s in plan(ReproduceArguments(raw="r", out="o", recipe="vlm"))]
    assert vlm == ["data", "mner", "grounder", "compose", "predict", "evaluate"]  # visibility from the VLM
    with pytest.raises(ValueError, match="STAGE=MODEL"):
        plan(ReproduceArguments(raw="r", out="o", base_models="grounder"))


_KILLER = """
import os, signal, sys
import riveg_hf.reproduce as r
real = r._cli
def cli(argv):
    if argv[:2] == ["train", "grounder"]:
        k = argv.index("--max-steps")
        real([*argv[: k + 1], "1", *argv[k + 2 :]])  # one step: leaves a checkpoint
        os.kill(os.getpid(), signal.SIGKILL)
    real(argv)
r._cli = cli
from riveg_hf.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_reproduce_end_to_end_resumes_after_a_kill(real_subset, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _argv(real_subset, out)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.run([sys.executable, "-c", _KILLER, *argv], env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = sorted(p.stem for p in (out / ".steps").glob("*.json"))
    assert done == ["data", "entailment", "mner"]  # completed before the kill; grounder not marked
    assert not (out / "model").exists() and not (out / "results.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / ".steps").glob("*.json")}
    assert cli(argv) == 0
    assert {
        p.name: p.stat().st_mtime_ns for p in (out / ".steps").glob("*.json") if p.name in stamps
    } == stamps
    run = json.loads((out / "grounder" / "riveg_run.json").read_text())
    assert run["arguments"]["resume_from_checkpoint"] == "auto"  # continued from the killed run's checkpoint
    results = _check_results(out)
    assert [s["step"] for s in results["steps"]] == ["data", "mner", "entailment", "grounder", "compose",
                                                     "predict", "evaluate"]  # fmt: skip
    # the composite is a normal checkpoint with its card's ingredients
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert set(cfg["components"]) >= {"recognizer", "entailment", "grounder"}
    # a rerun does nothing but rewrite the results
    assert cli(argv) == 0
    assert json.loads((out / "results.json").read_text())["ours"] == results["ours"]
    # the same folder asked for another recipe (or limit): nothing of the smoke run counts as done
    capsys.readouterr()
    assert cli([*_argv(real_subset, out, recipe="vlm"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "done, skipped" not in text and "to run again: it was run with other settings (" in text
    assert "recipe" in text.split("1. data", 1)[1].splitlines()[0]
    # an output removed (or changed) since its step ran: that step and the ones after it run again
    (out / "model" / "config.json").unlink()
    assert cli([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4. grounder [done, skipped]" in text
    assert "5. compose [to run again: its output model/config.json is missing or changed" in text
    assert "6. predict [to run" in text


def test_forged_markers_and_scores_count_for_nothing(real_subset, tmp_path, capsys):
    out = tmp_path / "forged"
    (out / ".steps").mkdir(parents=True)
    for step in ("data", "mner", "entailment", "grounder", "compose", "predict", "evaluate"):
        (out / ".steps" / f"{step}.json").write_text(json.dumps({"step": step, "wall_time_s": 1}))
    (out / "scores.json").write_text(json.dumps({"gmner_f1": 0.97, "mner_f1": 0.99, "eeg_f1": 0.98}))
    assert cli([*_argv(real_subset, out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "done, skipped" not in text and text.count("does not record what it was run with") == 7


def test_a_failed_step_ends_in_one_line(real_subset, tmp_path, capsys):
    out = tmp_path / "fail"
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    argv = _argv(real_subset, out)
    argv[argv.index("--base-models") + 1] = f"mner={empty}"
    assert cli(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("riveg reproduce: error: step 'mner' failed") and "Traceback" not in "".join(
        err
    )
    assert (out / ".steps" / "data.json").is_file() and not (out / ".steps" / "mner.json").exists()


def test_an_out_folder_overlapping_an_input_is_refused_before_anything_is_deleted(tmp_path, capsys):
    from .helpers import write_release

    run = tmp_path / "run"
    raw = write_release(run / "data" / "twitter-gmner" / "v2.0", {})
    images = run / "data" / "images"
    images.mkdir(parents=True)
    (images / "1.jpg").write_bytes(b"jpg")
    for flags in (["--raw", str(raw)], ["--raw", str(tmp_path / "elsewhere"), "--images", str(images)],
                  ["--raw", str(tmp_path)]):  # fmt: skip
        assert cli(["reproduce", *flags, "--out", str(run)]) == 2
        assert "overlaps" in capsys.readouterr().err
    assert (raw / "txt" / "train.txt").is_file() and (images / "1.jpg").read_bytes() == b"jpg"


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_reproduce_vlm_recipe(real_subset, tmp_path):
    out = tmp_path / "vlm"
    assert cli(_argv(real_subset, out, recipe="vlm")) == 0
    results = _check_results(out)
    assert results["recipe"] == "vlm" and "entailment" not in {s["step"] for s in results["steps"]}
    assert all(s["processes"] == [0] for s in results["steps"])  # one process: it ran every step
    run = json.loads((out / "grounder" / "riveg_run.json").read_text())
    assert run["family"] == "vlm" and run["fine_tuning"] == "lora"


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_reproduce_runs_unchanged_in_two_processes(real_subset, tmp_path):
    """Two CPU processes (torchrun; training and prediction on both, the other steps on the main one only):
    every step completes, each marker records the processes that ran it, and the results are the metric's over
    the merged predictions file."""
    out = tmp_path / "acc"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    # torchrun: two processes on this CPU-only machine (accelerate launch --cpu would start only one)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "riveg_hf.cli", *_argv(real_subset, out)]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    _check_results(out)
    markers = {p.stem: json.loads(p.read_text()) for p in (out / ".steps").glob("*.json")}
    assert sorted(markers) == sorted(
        ["data", "mner", "entailment", "grounder", "compose", "predict", "evaluate"]
    )
    # training and prediction on both processes; building, composing and scoring on the main one only, once
    assert {k: m["processes"] for k, m in markers.items()} == {
        "data": [0], "mner": [0, 1], "entailment": [0, 1], "grounder": [0, 1], "compose": [0],
        "predict": [0, 1], "evaluate": [0],
    }  # fmt: skip
    # each model trained data-parallel over the two processes
    for stage in ("mner", "entailment", "grounder"):
        assert json.loads((out / stage / "riveg_run.json").read_text())["processes"] == 2, stage
