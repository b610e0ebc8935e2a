"""Builders end to end on a small release the tests write: images, masks, bad files, the CLI."""

import json

import numpy as np
import pytest
from datasets import load_dataset

from datasets_scripts import twitter_gmner, twitter_smner
from riveg_hf.cli import main as cli
from riveg_hf.masks import decode_rle

from .helpers import make_image, write_labelme, write_release

TWEETS = {
    "train": [
        {
            "id": "1",
            "tokens": ["Obama", "visits", "Paris"],
            "tags": ["B-PER", "O", "B-LOC"],
            "objects": [("Obama", [4, 4, 20, 30])],
            "size": (64, 48),
        },
        {"id": "2", "tokens": ["Go", "Lakers", "!"], "tags": ["O", "B-ORG", "O"], "objects": None},
        {
            "id": "3",
            "tokens": ["Messi", "scores"],
            "tags": ["B-PER", "O"],
            "objects": [("Messi", [10, 10, 30, 40]), ("Ronaldo", [1, 1, 5, 5])],
            "size": (64, 48),
        },
    ],
    "dev": [
        {
            "id": "4",
            "tokens": ["Hi", "Rome"],
            "tags": ["O", "B-LOC"],
            "objects": [("Rome", [0, 0, 70, 20])],
            "size": (64, 48),
        }
    ],
    "test": [{"id": "5", "tokens": ["NASA", "launch"], "tags": ["B-ORG", "O"], "objects": None}],
}


@pytest.fixture
def release(tmp_path):
    root = write_release(tmp_path / "raw", TWEETS)
    images = tmp_path / "images"
    images.mkdir()
    make_image((64, 48), box=(4, 4, 20, 30)).save(images / "1.jpg")
    (images / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # corrupt
    make_image((64, 48)).save(images / "4.jpg")
    # 2.jpg and 5.jpg are missing
    return root, images


def test_gmner_build_with_images(release, tmp_path):
    root, images = release
    res = twitter_gmner.build(root, tmp_path / "out", images=images)
    rep = res.report
    assert rep["missing_image"] == 2 and rep["corrupt_image"] == 1
    assert any("3" in m for m in rep.messages["corrupt_image"])
    assert rep["unmatched_object"] == 1 and "Ronaldo" in rep.messages["unmatched_object"][0]
    assert rep["box_repaired"] == 1  # Rome's box is clipped to the 64 px width
    ds = load_dataset(str(tmp_path / "out"), "gmner")
    train = ds["train"]
    assert train["id"] == ["1", "2", "3"]
    assert train[0]["image"].size == (64, 48)
    assert train[1]["image"] is None and train[2]["image"] is None  # missing and corrupt kept with None
    ents = train[0]["entities"]
    assert [(e["text"], e["groundable"], e["boxes"]) for e in ents] == [
        ("Obama", True, [[4.0, 4.0, 20.0, 30.0]]),
        ("Paris", False, []),
    ]
    assert ds["validation"][0]["entities"][0]["boxes"] == [[0.0, 0.0, 64.0, 20.0]]
    report_file = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report_file["counts"]["missing_image"] == 2 and report_file["sources"]["images"] == str(images)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "config_name: gmner" in card and "default: true" in card and "Twitter's" in card
    assert not list((tmp_path / "out").glob("*.py"))
    mner = load_dataset(str(tmp_path / "out"), "mner")
    assert set(mner["train"].column_names) == {"id", "tokens", "ner_tags", "entities"}


def test_smner_build_pairs_masks_with_boxes(release, tmp_path):
    root, _ = release
    masks = tmp_path / "masks"
    masks.mkdir()
    write_labelme(
        masks / "1.json",
        64,
        48,
        [("Obama", "rectangle", [[4, 4], [20, 30]]), ("Nobody", "polygon", [[0, 0], [3, 0], [0, 3]])],
    )
    (masks / "4.json").write_text(
        json.dumps(
            {
                "images": [{"height": 48, "width": 64}],
                "categories": [{"id": 1, "name": "Rome"}],
                "annotations": [{"category_id": 1, "segmentation": [[0, 0, 60, 0, 60, 20, 0, 20]]}],
            }
        )
    )
    (masks / "3.json").write_text(json.dumps({"weird": True}))
    res = twitter_smner.build(root, tmp_path / "sm", masks=masks)
    rep = res.report
    assert rep["bad_mask_file"] == 1 and "3.json" in rep.messages["bad_mask_file"][0]
    assert rep["unmatched_mask"] == 1 and "Nobody" in rep.messages["unmatched_mask"][0]
    ds = load_dataset(str(tmp_path / "sm"), "smner")
    obama = ds["train"][0]["entities"][0]
    assert len(obama["masks"]) == len(obama["boxes"]) == 1
    m = decode_rle(obama["masks"][0])
    assert m.shape == (48, 64) and m[10, 10] and not m[40, 60]
    assert ds["train"][2]["entities"][0]["masks"] == [None]  # Messi's box: the mask file was unreadable
    assert np.asarray(decode_rle(ds["validation"][0]["entities"][0]["masks"][0])).sum() > 0


def test_smner_needs_masks(release, tmp_path):
    root, _ = release
    assert cli(["data", "build", "twitter-smner", "--raw", str(root), "--out", str(tmp_path / "x")]) == 2


def test_cli_build_and_strict(release, tmp_path, capsys):
    root, _images = release
    out = tmp_path / "cli"
    assert cli(["data", "build", "twitter-gmner", "--raw", str(root), "--out", str(out)]) == 0
    assert "unmatched_object: 1" in capsys.readouterr().out
    assert load_dataset(str(out), "gmner")["test"].num_rows == 1
    # an existing folder is not overwritten silently
    assert cli(["data", "build", "twitter-gmner", "--raw", str(root), "--out", str(out)]) == 2  # bad input
    assert "--overwrite" in capsys.readouterr().err
    assert (
        cli(
            [
                "data",
                "build",
                "twitter-gmner",
                "--raw",
                str(root),
                "--out",
                str(out),
                "--overwrite",
                "--strict",
            ]
        )
        == 2
    )


def test_bad_xml_does_not_stop_the_build(release, tmp_path):
    root, _ = release
    (root / "xml" / "1.xml").write_text("<annotation><object>")
    res = twitter_gmner.build(root, tmp_path / "out")
    assert res.report["bad_xml"] == 1 and "1.xml" in res.report.messages["bad_xml"][0]
    ds = load_dataset(str(tmp_path / "out"), "gmner")
    assert ds["train"][0]["entities"][0]["groundable"] is False and ds["train"].num_rows == 3


def test_raw_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Twitter-GMNER release"):
        twitter_gmner.build(tmp_path, tmp_path / "out")


def test_data_push_uploads_the_folder_through_hfapi(release, tmp_path, monkeypatch):
    root, _ = release
    twitter_gmner.build(root, tmp_path / "out")
    seen = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, repo_type, private, exist_ok):
            seen["create"] = (repo_id, repo_type)

        def upload_folder(self, folder_path, repo_id, repo_type, allow_patterns):
            seen["upload"] = (folder_path, repo_id, repo_type, allow_patterns)
            return "commit"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    assert cli(["data", "push", str(tmp_path / "out"), "org/twitter-gmner"]) == 0
    assert seen["create"] == ("org/twitter-gmner", "dataset")
    assert seen["upload"] == (
        str(tmp_path / "out"),
        "org/twitter-gmner",
        "dataset",
        ["README.md", "*/*.parquet"],
    )
    assert cli(["data", "push", str(tmp_path), "org/x"]) == 2  # no README.md: a clear error
