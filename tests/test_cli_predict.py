"""`riveg predict` / `riveg segment` and the README's main job, on a tiny composite."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from riveg_hf.cli import main as cli
from riveg_hf.masks import decode_rle

from .helpers import REPO, save_composite, skimage_photo


@pytest.fixture(scope="module")
def composite(dummy_dir, tmp_path_factory):
    return save_composite(
        dummy_dir,
        tmp_path_factory.mktemp("composite") / "riveg-tiny",
        ("recognizer", "grounder", "entailment"),
        box_threshold=0.0,
        entailment_threshold=0.0,
    )


def test_predict_examples_file(composite, tmp_path, capsys):
    images = skimage_photo("astronaut.png").parent
    out = tmp_path / "preds.jsonl"
    draw = tmp_path / "draw"
    rc = cli(
        [
            "predict",
            "--input",
            str(REPO / "examples" / "tweets.jsonl"),
            "--images",
            str(images),
            "--model",
            str(composite),
            "--output",
            str(out),
            "--draw",
            str(draw),
            "--batch-size",
            "3",
        ]
    )
    assert rc == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    src = [json.loads(x) for x in (REPO / "examples" / "tweets.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [x["id"] for x in src]
    assert all("entities" in x for x in lines)
    assert len(list(draw.glob("*.png"))) == 6  # every tweet with an image
    # resume: nothing is done twice
    assert (
        cli(
            [
                "predict",
                "--input",
                str(REPO / "examples" / "tweets.jsonl"),
                "--images",
                str(images),
                "--model",
                str(composite),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert "0 new line(s), 7 already done" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 7


def test_predict_single_text_to_stdout(composite, capsys):
    assert cli(["predict", "--text", "Obama in Paris", "--model", str(composite)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["text"] == "Obama in Paris" and isinstance(line["entities"], list)


def test_predict_without_hub_says_how_to_use_local_folders(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli(["predict", "--text", "x", "--local-files-only"]) == 2
    err = capsys.readouterr().err
    assert "dslim/bert-base-NER" in err and "--model at a local composite folder" in err


def test_predict_bad_image_is_an_error_line(composite, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        json.dumps({"id": "a", "text": "Obama", "image": "missing.jpg"})
        + "\n"
        + json.dumps({"id": "b", "text": "Paris"})
        + "\n"
    )
    out = tmp_path / "o.jsonl"
    assert cli(["predict", "--input", str(inp), "--model", str(composite), "--output", str(out)]) == 0
    a, b = (json.loads(x) for x in out.read_text().splitlines())
    assert "image file not found" in a["error"] and "entities" in b


def test_segment_adds_masks(dummy_dir, tmp_path):
    shutil.copy(skimage_photo("coffee.png"), tmp_path / "c1.png")
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        json.dumps(
            {
                "id": "c1",
                "image": "c1.png",
                "entities": [
                    {
                        "entity": "cup",
                        "type": "OTHER",
                        "start": 0,
                        "end": 3,
                        "box": {"xmin": 50, "ymin": 20, "xmax": 400, "ymax": 300},
                    },
                    {"entity": "Blue Bottle", "type": "ORG", "start": 4, "end": 15, "box": None},
                ],
            }
        )
        + "\n"
    )
    out = tmp_path / "s.jsonl"
    assert (
        cli(
            [
                "segment",
                "--predictions",
                str(preds),
                "--images",
                str(tmp_path),
                "--segmenter",
                dummy_dir["segmenter"],
                "--output",
                str(out),
            ]
        )
        == 0
    )
    row = json.loads(out.read_text())
    assert decode_rle(row["entities"][0]["mask"]).shape == (400, 600)
    assert row["entities"][1]["mask"] is None


def test_riveg_help_lists_the_subcommands():
    res = subprocess.run(
        [sys.executable, "-m", "riveg_hf.cli", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("data", "predict", "segment", "evaluate"):
        assert cmd in res.stdout
    assert Path(REPO / "examples" / "run.sh").is_file()
