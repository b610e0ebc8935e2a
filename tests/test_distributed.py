"""`riveg predict --dataset` over a whole split: resumable, and sharded across processes by accelerate."""

import json
import os
import re
import subprocess
import sys

import pytest

from datasets_scripts import twitter_gmner
from riveg_hf.cli import main as cli

from .helpers import assert_outputs_close, make_image, save_composite, write_release


@pytest.fixture(scope="module")
def setup(dummy_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    rows = [
        {
            "id": f"t{i}",
            "tokens": ["Obama", "visits", "Paris", "number", str(i)],
            "tags": ["B-PER", "O", "B-LOC", "O", "O"],
            "objects": [("Obama", [4, 4, 30, 40])],
        }
        for i in range(7)
    ]
    raw = write_release(root / "raw", {"test": rows})
    images = root / "images"
    images.mkdir()
    for i in range(6):  # t6 has no image
        make_image((64, 48), color=(10 * i, 100, 200)).save(images / f"t{i}.jpg")
    twitter_gmner.build(raw, root / "ds", images=images)
    model = save_composite(
        dummy_dir,
        root / "riveg",
        ("recognizer", "grounder", "entailment"),
        box_threshold=0.0,
        entailment_threshold=0.0,
    )
    return root, model


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_dataset_prediction_resumes_after_an_interruption(setup, tmp_path):
    root, model = setup
    out = tmp_path / "p.jsonl"
    args = [
        "predict",
        "--dataset",
        str(root / "ds"),
        "--split",
        "test",
        "--model",
        str(model),
        "--output",
        str(out),
    ]
    assert cli(args) == 0
    full = _lines(out)
    assert [x["id"] for x in full] == [f"t{i}" for i in range(7)]
    assert all(
        e.get("token_start") is not None for x in full for e in x["entities"]
    )  # token offsets for scoring
    # simulate an interruption: 3 complete lines and half of the 4th
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:3]) + text[3][: len(text[3]) // 2])
    assert cli(args) == 0
    assert_outputs_close(_lines(out), full)  # another batch composition: equal up to float noise
    # predictions score directly against the dataset
    assert cli(["evaluate", "--predictions", str(out), "--dataset", str(root / "ds"), "--split", "test"]) == 0


def test_two_processes_equal_one(setup, tmp_path):
    root, model = setup
    single = tmp_path / "single.jsonl"
    assert (
        cli(
            [
                "predict",
                "--dataset",
                str(root / "ds"),
                "--split",
                "test",
                "--model",
                str(model),
                "--output",
                str(single),
            ]
        )
        == 0
    )
    multi = tmp_path / "multi.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # torchrun: two processes on this CPU-only machine (accelerate launch --cpu would start only one)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "riveg_hf.cli",
        "predict",
        "--dataset",
        str(root / "ds"),
        "--split",
        "test",
        "--model",
        str(model),
        "--output",
        str(multi),
        "--batch-size",
        "2",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    # two processes really shared the work: each wrote its own part (merged by the main one)
    written = {
        int(m[1]): int(m[2]) for m in re.finditer(r"\[process (\d) of 2\] wrote .*?: (\d+) new", res.stderr)
    }
    assert sorted(written) == [0, 1] and sum(written.values()) == len(_lines(single)), res.stderr[-3000:]
    assert min(written.values()) > 0
    assert_outputs_close(_lines(multi), _lines(single))
    assert not list(tmp_path.glob("multi.jsonl.part-*"))  # parts merged and removed


def test_num_workers_output_is_byte_identical(setup, tmp_path):
    """Images read and decoded in DataLoader workers: same bytes out, in the same order, resumable."""
    root, model = setup
    base = ["predict", "--model", str(model), "--batch-size", "3"]
    for source in (["--dataset", str(root / "ds"), "--split", "test"], None):
        if source is None:  # a jsonl file with paths, a missing file and a corrupt one
            (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
            lines = [{"id": f"j{i}", "text": f"Obama in Paris {i}", "image": str(root / "images" / f"t{i}.jpg")}
                     for i in range(5)]  # fmt: skip
            lines += [{"id": "missing", "text": "Obama", "image": str(tmp_path / "nope.jpg")},
                      {"id": "corrupt", "text": "Obama", "image": str(tmp_path / "bad.jpg")}]  # fmt: skip
            inp = tmp_path / "in.jsonl"
            inp.write_text("".join(json.dumps(x) + "\n" for x in lines))
            source = ["--input", str(inp)]
        outs = {}
        for workers in ("0", "2"):
            out = tmp_path / f"{source[0][2:]}-{workers}.jsonl"
            assert cli([*base, *source, "--output", str(out), "--num-workers", workers]) == 0
            outs[workers] = out.read_bytes()
        assert outs["0"] == outs["2"] and outs["0"].count(b"\n") == 7
        # resume with workers after an interruption: the same lines (other batches: up to float noise)
        out = tmp_path / f"{source[0][2:]}-resume.jsonl"
        out.write_bytes(outs["0"][: len(outs["0"]) // 2])
        assert cli([*base, *source, "--output", str(out), "--num-workers", "2"]) == 0
        full = [json.loads(x) for x in outs["0"].decode().splitlines()]
        assert_outputs_close(_lines(out), full)
