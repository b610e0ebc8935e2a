"""`riveg reproduce --recipe joint`: data -> SFT of a joint reader -> GRPO -> composite with SAM -> predict ->
evaluate under every protocol. The plan and its estimates, the settings' errors and results.md run in a second;
the round trips run on the first tweets of the real Twitter-GMNER text with images the test draws and tiny random
bases (a Qwen2.5-VL reader, a SAM)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from riveg_hf.cli import main as cli
from riveg_hf.data import load_built_dataset
from riveg_hf.metrics import PROTOCOLS, compute_gmner
from riveg_hf.predict import read_jsonl
from riveg_hf.reproduce import (
    EST_SECONDS_PER_EXAMPLE,
    NOT_CITED,
    PUBLISHED,
    RECIPES,
    ReproduceArguments,
    StepFailed,
    _results_md,
    plan,
    reproduce,
)
from riveg_hf.testing import tiny_qwen2_5_vl, tiny_sam

from .helpers import real_gmner_subset

LIMIT = 3


def _args(**kw) -> ReproduceArguments:
    return ReproduceArguments(**{"raw": "raw", "out": "out", "recipe": "joint", **kw})


# ---------------------------------------------------------------------- the plan
def test_the_joint_plan_trains_a_reader_then_grpo_from_it_and_composes_it_with_sam(tmp_path):
    out = tmp_path / "run"
    steps = plan(_args(out=str(out)))
    assert [s.name for s in steps] == ["data", "reader", "grpo", "compose", "predict", "evaluate"]
    by = {s.name: s for s in steps}
    sft, grpo = by["reader"].command, by["grpo"].command
    assert sft[:2] == ["train", "reader"] and grpo[:2] == ["train", "reader"]

    def flag(argv, name):
        return argv[argv.index(name) + 1]

    assert flag(sft, "--base-model") == "Qwen/Qwen2.5-VL-7B-Instruct" and flag(sft, "--method") == "sft"
    assert flag(sft, "--format") == "qwen-vl" and flag(sft, "--save") == "merged"
    assert flag(sft, "--dataset") == str(out / "data") and flag(sft, "--output") == str(out / "reader")
    # GRPO starts from the SFT output, for at most one epoch
    assert flag(grpo, "--base-model") == str(out / "reader") and flag(grpo, "--method") == "grpo"
    assert flag(grpo, "--output") == str(out / "reader-grpo") and flag(grpo, "--epochs") == "1"
    assert flag(sft, "--epochs") == "3.0"
    # the composite takes the last reader and the preset's SAM; visibility is the reader's
    assert "reader-grpo/" in by["compose"].what and "facebook/sam2.1-hiera-tiny" in by["compose"].what
    assert by["compose"].settings["family"] == "qwen-vl"
    assert by["evaluate"].command[by["evaluate"].command.index("--protocol") + 1] == "all"
    # training and prediction run on every process; each step owns its folder
    assert [s.name for s in steps if s.distributed] == ["reader", "grpo", "predict"]
    assert by["reader"].owns == ["reader"] and by["grpo"].owns == ["reader-grpo"]
    assert not out.exists()


def _e2e_checkout(root: Path) -> Path:
    """Stand-ins for the two files of an E2E-GMNER checkout that hold its prompt texts."""
    for rel in ("scripts/gmner_to_sft_data.py", "src/e2egmner/data/collator.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("INSTRUCTION = '...'\n")
    return root


def test_grpo_off_format_reasoning_and_jitter_reach_the_sft_command(tmp_path):
    reasoning = tmp_path / "teacher_cot_train.jsonl"
    reasoning.write_text('{"image_path": "1.jpg", "think": "..."}\n')
    repo = _e2e_checkout(tmp_path / "E2E-GMNER")
    e2e = {"reader_format": "e2e-gmner", "e2e_gmner_repo": str(repo), "grpo": False}
    steps = plan(_args(**e2e, reasoning=str(reasoning), box_jitter=0.1,
                       base_models="reader=./my-qwen,segmenter=./my-sam", max_steps=2, batch_size=1))  # fmt: skip
    assert [s.name for s in steps] == ["data", "reader", "compose", "predict", "evaluate"]
    sft = steps[1].command
    assert sft[sft.index("--base-model") + 1] == "./my-qwen"
    for name, value in (("--format", "e2e-gmner"), ("--reasoning", str(reasoning)), ("--box-jitter", "0.1"),
                        ("--max-steps", "2"), ("--batch-size", "1"),
                        ("--instruction-file", str(repo / "scripts/gmner_to_sft_data.py")),
                        ("--system-prompt-file", str(repo / "src/e2egmner/data/collator.py"))):  # fmt: skip
        assert sft[sft.index(name) + 1] == value
    compose = steps[2]
    assert compose.settings["family"] == "e2e-gmner" and compose.settings["reader"] == "reader"
    assert compose.settings["untrained"] == {"segmenter": "./my-sam"}
    # the reasoning file's and the prompt files' contents are part of what the SFT step was run with: an edit
    # reruns it
    before = {k: v.value() for k, v in steps[1].settings.items()}
    reasoning.write_text('{"image_path": "1.jpg", "think": "other"}\n')
    (repo / "scripts/gmner_to_sft_data.py").write_text("INSTRUCTION = 'other'\n")
    after = {k: v.value() for k, v in plan(_args(**e2e, reasoning=str(reasoning)))[1].settings.items()}
    assert (
        after["reasoning"] != before["reasoning"] and after["instruction_file"] != before["instruction_file"]
    )
    assert after["system_prompt_file"] == before["system_prompt_file"]


def test_the_dry_run_prints_labelled_estimates_that_follow_the_data_and_epochs(tmp_path, capsys):
    out = tmp_path / "run"
    reproduce(_args(out=str(out), dry_run=True))
    text = capsys.readouterr().out
    for k, name in enumerate(["data", "reader", "grpo", "compose", "predict", "evaluate"], 1):
        assert f"{k}. {name} [to run]" in text
    assert "riveg train reader --dataset" in text and "--method grpo" in text
    assert text.count("derived, not measured") == 2 and "estimates, not measured" in text
    assert not out.exists()
    # the estimates: seconds per example x examples x epochs (7000 training tweets, 1500 test tweets)
    full = {s.name: s.est_seconds for s in plan(_args())}
    assert full["reader"] == pytest.approx(EST_SECONDS_PER_EXAMPLE["reader-sft"] * 7000 * 3)
    assert full["grpo"] == pytest.approx(EST_SECONDS_PER_EXAMPLE["reader-grpo"] * 7000 * 1)
    assert full["predict"] == pytest.approx(EST_SECONDS_PER_EXAMPLE["predict-reader"] * 1500)
    small = {s.name: s.est_seconds for s in plan(_args(limit=10, epochs=1.0))}
    assert small["reader"] == pytest.approx(full["reader"] * 10 / 7000 / 3)
    # a smaller base: the per-example estimates scale with its parameters
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"\0" * 4000)  # 1,000 fp32 parameters
    tiny = {s.name: s for s in plan(_args(base_models=f"reader={base}"))}
    assert tiny["reader"].est_seconds == pytest.approx(full["reader"] * 1000 / 8.29e9)
    assert "derived, not measured" in tiny["reader"].est_note


def test_the_command_line_runs_the_joint_recipe_with_its_settings(tmp_path, capsys):
    """``riveg reproduce --recipe joint`` and its flags reach the recipe (the CLI lists every recipe it knows)."""
    import riveg_cli

    assert sorted(riveg_cli.RECIPES) == sorted(RECIPES)
    out = tmp_path / "run"
    argv = ["reproduce", "--raw", "raw", "--out", str(out), "--recipe", "joint", "--dry-run", "--no-grpo",
            "--box-jitter", "0.1"]  # fmt: skip
    assert cli(argv) == 0
    text = capsys.readouterr().out
    assert "riveg train reader --dataset" in text and "--box-jitter 0.1" in text
    assert "grpo [to run]" not in text and "--method grpo" not in text and not out.exists()
    assert cli([*argv[:-2], "--box-jitter", "1.5"]) == 2  # the recipe's own check, as a bad-input exit
    assert "box_jitter must be a number in [0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"reader_format": "json"}, "reader_format must be one of"),
        ({"box_jitter": 1.5}, r"box_jitter must be a number in \[0, 1\]"),
        ({"reasoning": "cot.jsonl"}, "use them with reader_format='e2e-gmner'"),
        ({"reader_format": "e2e-gmner"}, "needs E2E-GMNER's prompt texts"),
        ({"e2e_gmner_repo": "E2E-GMNER"}, "not of 'qwen-vl'"),
        ({"base_models": "mner=bert-base-cased"}, "recipe 'joint' has no stage mner"),
        ({"base_models": "grounder=x"}, "its stages: reader, segmenter"),
        ({"recipe": "riveg-2024", "grpo": True}, "grpo: settings of the joint recipe"),
        ({"recipe": "vlm", "reader_format": "qwen-vl"}, "reader_format: settings of the joint recipe"),
        ({"recipe": "riveg-2024", "base_models": "reader=x"}, "recipe 'riveg-2024' has no stage reader"),
    ],
)
def test_wrong_settings_are_refused_with_a_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        plan(_args(**kw))


def test_a_joint_run_without_images_or_with_a_missing_input_file_is_refused_before_anything_is_written(
    tmp_path,
):
    out, images = tmp_path / "run", str(tmp_path / "images")
    with pytest.raises(ValueError, match="--images .* is needed"):
        reproduce(_args(out=str(out)), runner=cli)
    e2e = {"reader_format": "e2e-gmner", "images": images}
    with pytest.raises(FileNotFoundError, match="no .*collator.py"):
        reproduce(_args(out=str(out), **e2e, e2e_gmner_repo=str(tmp_path / "empty")), runner=cli)
    repo = str(_e2e_checkout(tmp_path / "E2E-GMNER"))
    with pytest.raises(FileNotFoundError, match="reasoning: no file"):
        reproduce(
            _args(out=str(out), **e2e, e2e_gmner_repo=repo, reasoning=str(tmp_path / "no.jsonl")), runner=cli
        )
    assert not out.exists()


def test_results_md_shows_ours_under_every_protocol_and_only_cited_numbers():
    protocols = {
        name: {"mner_f1": 0.5, "eeg_f1": 0.4, "gmner_f1": 0.3 + k / 100} for k, name in enumerate(PROTOCOLS)
    }
    r = {"recipe": "joint", "limit": None, "riveg_hf_version": "0", "ours": {"gmner_f1": 0.3},
         "ours_by_protocol": protocols, "published": PUBLISHED, "published_not_cited": NOT_CITED,
         "steps": [], "total_wall_time_s": 0.0, "predictions": "p", "model": "m",
         "joint": {"grpo": True, "format": "qwen-vl", "reasoning": None, "box_jitter": None}}  # fmt: skip
    md = _results_md(r)
    assert "One joint reader (SFT, then GRPO; `qwen-vl` answers) finds" in md
    sft_only = _results_md({**r, "joint": {"grpo": False, "format": "e2e-gmner", "reasoning": "c.jsonl",
                                           "box_jitter": 0.1}})  # fmt: skip
    assert "One joint reader (SFT; `e2e-gmner` answers; reasoning targets; box jitter 0.1) finds" in sft_only
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "` |" in ln]
    # one row per published system under its protocol, one per other protocol with ours alone
    assert sorted({ln.split("`")[1] for ln in rows}) == sorted(PROTOCOLS)
    for name in ("e2e-gmner", "sake"):
        (row,) = [ln for ln in rows if f"`{name}`" in ln]
        assert "not cited" in row and "| -- |" in row
        assert f"{100 * protocols[name]['gmner_f1']:.2f}" in row
        assert f"- `{name}`: " in md  # why it is left out
    assert "| MCR (Qwen2.5-VL-7B, SFT + GRPO) | `riveg-hf` | 70.60 |" in md
    assert "arXiv 2602.04486" in md and "Sources of the published numbers" in md
    # nothing is printed for a system without a citable number
    assert all(p["gmner_f1"] is not None and p.get("source") for p in PUBLISHED)


# ---------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def joint_subset(tmp_path_factory):
    return real_gmner_subset(tmp_path_factory.mktemp("joint"), LIMIT,
                             {"reader": tiny_qwen2_5_vl(), "segmenter": tiny_sam()})  # fmt: skip


def _joint_args(s, out: Path, **kw) -> ReproduceArguments:
    b = s["bases"]
    return ReproduceArguments(raw=s["raw"], images=s["images"], out=str(out), recipe="joint",
                              base_models=f"reader={b['reader']},segmenter={b['segmenter']}", limit=LIMIT,
                              max_steps=1, batch_size=1, local_files_only=True, **kw)  # fmt: skip


class _StandInTrainer:
    """Runs every step's `riveg` command for real except `riveg train reader`, which it records and answers by
    saving its --base-model as its --output (the orchestration round trip, without training)."""

    def __init__(self):
        self.trained: list[list[str]] = []

    def __call__(self, argv: list[str]) -> int:
        if argv[:2] != ["train", "reader"]:
            return cli(argv)
        self.trained.append(argv)
        base, output = Path(argv[argv.index("--base-model") + 1]), Path(argv[argv.index("--output") + 1])
        shutil.copytree(base, output, dirs_exist_ok=True)
        (output / "riveg_run.json").write_text(json.dumps({"arguments": argv}))
        return 0


def _check_results(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    ours = results["ours"]
    for k in ("mner_f1", "eeg_f1", "gmner_f1"):
        assert math.isfinite(ours[k]) and 0.0 <= ours[k] <= 1.0
    preds = {r["id"]: r["entities"] for _, r in read_jsonl(out / "predictions.jsonl")}
    test = load_built_dataset(str(out / "data"), "gmner", split="test")
    assert len(preds) == len(test) == LIMIT
    again = compute_gmner(preds, dict(zip(test["id"], test["entities"])))
    assert again["gmner_f1"] == ours["gmner_f1"] and again["mner_f1"] == ours["mner_f1"]
    assert set(results["ours_by_protocol"]) == set(PROTOCOLS)  # every protocol riveg evaluate knows
    assert results["published"] == PUBLISHED and results["published_not_cited"] == NOT_CITED
    md = (out / "results.md").read_text()
    assert "recipe `joint`" in md and "smoke run" in md and "`e2e-gmner`" in md and "`sake`" in md
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert set(cfg["components"]) == {"reader", "segmenter"} and cfg["task"] == "segmented-mner"
    assert cfg["components"]["reader"]["options"]["family"] == results["joint"]["format"]
    return results


def test_joint_steps_to_the_composite_with_a_stand_in_trainer_then_a_rerun_skips_them(
    joint_subset, tmp_path, capsys
):
    """The orchestration up to the composite, in seconds: `riveg train reader` answered by a stand-in, the
    prediction made to fail (the real round trip is the slow test below)."""
    out = tmp_path / "run"
    trainer = _StandInTrainer()

    def no_predict(argv):
        return 1 if argv[0] == "predict" else trainer(argv)

    with pytest.raises(StepFailed, match="step 'predict' failed"):
        reproduce(_joint_args(joint_subset, out), runner=no_predict)
    assert sorted(p.stem for p in (out / ".steps").glob("*.json")) == ["compose", "data", "grpo", "reader"]
    assert [a[a.index("--method") + 1] for a in trainer.trained] == ["sft", "grpo"]
    assert trainer.trained[1][trainer.trained[1].index("--base-model") + 1] == str(out / "reader")
    # the composite: the GRPO output as the reader (qwen-vl family), the given SAM as the segmenter
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert set(cfg["components"]) == {"reader", "segmenter"} and cfg["task"] == "segmented-mner"
    assert cfg["components"]["reader"]["options"]["family"] == "qwen-vl"
    from riveg_hf.modeling_riveg import RiVEGModel

    loaded = RiVEGModel.from_pretrained(
        out / "model"
    )  # what pipeline("segmented-mner", model=OUT/model) loads
    assert type(loaded.stages["reader"].model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert loaded.stages["reader"].family == "qwen-vl"
    # a rerun skips what is done (nothing is trained again) and runs the failed step again
    capsys.readouterr()
    with pytest.raises(StepFailed, match="step 'predict' failed"):
        reproduce(_joint_args(joint_subset, out), runner=no_predict)
    assert len(trainer.trained) == 2 and capsys.readouterr().out.count("done earlier") == 4
    # GRPO turned off: the SFT step is kept; the composite is made again from the SFT output
    reproduce(_joint_args(joint_subset, out, grpo=False, dry_run=True))
    text = capsys.readouterr().out
    assert "1. data [done, skipped]" in text and "2. reader [done, skipped]" in text
    assert "3. compose [to run again: it was run with other settings" in text
    # a failed training step ends in one line naming it, and keeps the steps before it
    with pytest.raises(StepFailed, match="step 'reader' failed"):
        reproduce(_joint_args(joint_subset, tmp_path / "fail"),
                  runner=lambda argv: 1 if argv[:2] == ["train", "reader"] else cli(argv))  # fmt: skip
    assert sorted(p.stem for p in (tmp_path / "fail" / ".steps").glob("*.json")) == ["data"]


@pytest.mark.slow  # tiny models, but SFT + GRPO + prediction on 2 shared cores: minutes
def test_joint_round_trip_with_riveg_train_reader_then_a_rerun_skips_every_step(
    joint_subset, tmp_path, capsys
):
    """`--limit` smoke run of the joint recipe with the real `riveg train reader` (SFT, then GRPO from it)."""
    out = tmp_path / "run"
    reproduce(_joint_args(joint_subset, out), runner=cli)
    results = _check_results(out)
    assert [s["step"] for s in results["steps"]] == [
        "data",
        "reader",
        "grpo",
        "compose",
        "predict",
        "evaluate",
    ]
    sft = json.loads((out / "reader" / "riveg_run.json").read_text())
    grpo = json.loads((out / "reader-grpo" / "riveg_run.json").read_text())
    assert sft["arguments"]["method"] == "sft" and grpo["arguments"]["method"] == "grpo"
    assert grpo["arguments"]["base_model"] == str(out / "reader")  # GRPO continued the SFT output
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / ".steps").glob("*.json")}
    capsys.readouterr()
    reproduce(
        _joint_args(joint_subset, out), runner=cli
    )  # a rerun: every step done, only the results rewritten
    assert capsys.readouterr().out.count("done earlier") == 6
    assert {p.name: p.stat().st_mtime_ns for p in (out / ".steps").glob("*.json")} == stamps
    assert json.loads((out / "results.json").read_text())["ours"] == results["ours"]
