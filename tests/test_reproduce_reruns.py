"""`riveg reproduce` reruns (hardening round 3), on synthetic steps so they run in a second: a step that runs
again with other settings starts from nothing of the old run (a resumed predictions file would pass for new
results); an interrupted step with the same settings continues; two runs into one --out refuse; an input
changed in place with the same size counts as changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from accelerate.utils import gather_object

from riveg_hf.distributed import partial_state
from riveg_hf.reproduce import ReproduceArguments, Step, StepFailed, _InputDigest, _one_run, _run_steps


def _predict_step(out: Path, tweets: list[str], *, crash_after: int | None = None) -> Step:
    """Like `riveg predict`: resumes over an existing predictions file, writing only the ids it lacks."""

    def run():
        path = out / "predictions.jsonl"
        done = set(path.read_text().split()) if path.is_file() else set()
        with path.open("a") as fh:
            for k, t in enumerate(tweets):
                if crash_after is not None and k == crash_after:
                    raise RuntimeError("killed")
                if t not in done:
                    fh.write(t + "\n")

    return Step("predict", "predict", None, run, outputs=["predictions.jsonl"], settings={"tweets": tweets})


def _run(out: Path, step: Step, args: ReproduceArguments) -> None:
    _run_steps(args, [step], partial_state(), out, out / ".steps", gather_object)


def test_a_step_run_again_with_other_settings_starts_from_nothing(tmp_path):
    out, args = tmp_path, ReproduceArguments(raw="r", out=str(tmp_path))
    _run(out, _predict_step(out, ["old-1", "old-2"]), args)
    _run(out, _predict_step(out, ["new-1", "new-2"]), args)  # the model changed: new predictions, only them
    assert (out / "predictions.jsonl").read_text().split() == ["new-1", "new-2"]


def test_an_interrupted_step_with_the_same_settings_continues(tmp_path):
    out, args = tmp_path, ReproduceArguments(raw="r", out=str(tmp_path))
    tweets = ["t1", "t2", "t3"]
    with pytest.raises(StepFailed, match="killed"):
        _run(out, _predict_step(out, tweets, crash_after=2), args)
    assert (out / "predictions.jsonl").read_text().split() == ["t1", "t2"]
    (out / "predictions.jsonl").write_text("t1\nt2\n")  # what the interrupted run left: kept, not redone
    stamp = (out / "predictions.jsonl").stat().st_ino
    _run(out, _predict_step(out, tweets), args)
    assert (out / "predictions.jsonl").read_text().split() == tweets
    assert (out / "predictions.jsonl").stat().st_ino == stamp
    # ... but an interrupted run of other settings is not continued
    with pytest.raises(StepFailed):
        _run(out, _predict_step(out, ["a", "b"], crash_after=1), args)
    _run(out, _predict_step(out, ["x", "y"]), args)
    assert (out / "predictions.jsonl").read_text().split() == ["x", "y"]


def test_force_starts_the_step_afresh(tmp_path):
    out = tmp_path
    _run(out, _predict_step(out, ["t1"]), ReproduceArguments(raw="r", out=str(out)))
    (out / "predictions.jsonl").write_text("stale\n")
    _run(out, _predict_step(out, ["t1"]), ReproduceArguments(raw="r", out=str(out), force="predict"))
    assert (out / "predictions.jsonl").read_text().split() == ["t1"]


def test_two_runs_into_one_out_folder_refuse(tmp_path):
    with (
        _one_run(tmp_path, True),
        pytest.raises(StepFailed, match="another riveg reproduce is running"),
        _one_run(tmp_path, True),
    ):
        pass
    with _one_run(tmp_path, True):  # released when the first ended
        pass


def test_an_image_changed_in_place_with_the_same_size_changes_the_inputs_digest(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "1.jpg").write_bytes(b"A" * 100)
    args = ReproduceArguments(raw=str(tmp_path / "raw"), out="o", images=str(images))
    before = _InputDigest(args).value()
    st = (images / "1.jpg").stat()
    (images / "1.jpg").write_bytes(b"B" * 100)
    os.utime(images / "1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _InputDigest(args).value()["images"] != before["images"]


def test_steps_own_what_they_write():
    from riveg_hf.reproduce import plan

    owns = {s.name: s.owns for s in plan(ReproduceArguments(raw="r", out="o", limit=2))}
    assert owns["predict"] == ["test_inputs.jsonl", "predictions.jsonl"]  # the inputs of --limit 2 too
    assert owns["mner"] == ["mner"] and owns["grounder"] == ["grounder"] and owns["compose"] == ["model"]
    assert json.dumps(owns)  # plain data
