"""Hostile and careless inputs: interrupted builds, bad mask files, out-of-image boxes, EXIF photos,
degenerate images, long inputs, odd text files, unknown types, failed prediction lines."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from datasets_scripts import twitter_gmner, twitter_smner
from riveg_hf import RiVEGPipeline
from riveg_hf.cli import main as cli
from riveg_hf.data import BUILD_MARKER, IncompleteDatasetError, load_built_dataset, read_conll
from riveg_hf.data.conll import CoNLLFormatError
from riveg_hf.images import ImageLoadError, load_image
from riveg_hf.masks import MaskError, _decode_counts, decode_rle, encode_rle, polygons_to_rle
from riveg_hf.metrics import MetricInputError, compute_gmner, compute_smner
from riveg_hf.testing import every_word_recognizer

from .helpers import REPO, make_image, write_labelme, write_release

SMALL = {
    "train": [
        {"id": "1", "tokens": ["Obama", "visits", "Paris"], "tags": ["B-PER", "O", "B-LOC"],
         "objects": [("Obama", [4, 4, 20, 30])], "size": (64, 48)},
        {"id": "2", "tokens": ["Go", "Lakers"], "tags": ["O", "B-ORG"], "objects": None},
    ],
    "dev": [{"id": "3", "tokens": ["Hi", "Rome"], "tags": ["O", "B-LOC"], "objects": None}],
    "test": [
        {"id": "4", "tokens": ["NASA", "launch"], "tags": ["B-ORG", "O"], "objects": None},
        {"id": "5", "tokens": ["Messi", "scores"], "tags": ["B-PER", "O"],
         "objects": [("Messi", [10, 10, 30, 40])], "size": (64, 48)},
    ],
}  # fmt: skip


# ---------------------------------------------------------------------- atomic builds
KILLER = r"""
import os, signal, sys
import datasets
import riveg_hf.data.folder as folder
from datasets_scripts import twitter_gmner

raw, out, point, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
calls = {"n": 0}

def die(*a, **kw):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "shard":  # the k-th parquet shard being written
    orig = datasets.Dataset.to_parquet
    def to_parquet(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == k:
            die()
        return orig(self, *a, **kw)
    datasets.Dataset.to_parquet = to_parquet
elif point == "report":  # every shard and the card written, the build report not yet
    orig_w = folder._write_configs
    def w(*a, **kw):
        orig_w(*a, **kw)
        die()
    folder._write_configs = w
elif point == "commit":  # complete and marked, not yet swapped in
    folder._commit = die
elif point == "exchange":  # inside the swap
    folder._exchange = die
twitter_gmner.build(raw, out, overwrite=True)
"""


def _ids(out, split="test"):
    return load_built_dataset(out, "gmner", split=split)["id"]


@pytest.mark.parametrize(
    ("point", "k"), [("shard", 1), ("shard", 4), ("report", 0), ("commit", 0), ("exchange", 0)]
)
def test_killed_build_leaves_the_previous_build_intact(tmp_path, point, k):
    old = write_release(tmp_path / "old", {"test": SMALL["test"][:1], "train": SMALL["train"]})
    new = write_release(tmp_path / "new", SMALL)
    out = tmp_path / "ds"
    twitter_gmner.build(old, out)
    assert _ids(out) == ["4"]
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(new), str(out), point, str(k)], cwd=REPO, capture_output=True
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    # the previous complete build, untouched: same rows, marker present, nothing half-written inside
    assert _ids(out) == ["4"] and (out / BUILD_MARKER).is_file()
    assert not list(out.rglob("*-tmp-*"))
    # the next build removes the killed build's staging folder and completes
    twitter_gmner.build(new, out, overwrite=True)
    assert _ids(out) == ["4", "5"]
    assert not [p.name for p in tmp_path.iterdir() if ".building-" in p.name]


def test_killed_first_build_leaves_no_folder_and_unmarked_folders_are_refused(tmp_path, capsys):
    raw = write_release(tmp_path / "raw", SMALL)
    out = tmp_path / "ds"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(raw), str(out), "shard", "3"], cwd=REPO, capture_output=True
    )
    assert proc.returncode == -9
    assert not out.exists()
    # a folder without the marker (an interrupted build of an older version, a partial copy) is refused
    twitter_gmner.build(raw, out)
    (out / BUILD_MARKER).unlink()
    with pytest.raises(IncompleteDatasetError, match="Rebuild it"):
        load_built_dataset(out, "gmner")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "4", "entities": []}) + "\n")
    assert cli(["evaluate", "--predictions", str(preds), "--dataset", str(out)]) == 2  # bad input
    assert "riveg data build" in capsys.readouterr().err
    assert cli(["predict", "--dataset", str(out), "--model", str(tmp_path / "none")]) == 2
    assert "not a complete riveg-hf dataset build" in capsys.readouterr().err


def test_overwrite_keeps_the_old_build_until_the_new_one_is_complete(tmp_path):
    old = write_release(tmp_path / "old", {"test": SMALL["test"][:1]})
    out = tmp_path / "ds"
    twitter_gmner.build(old, out)
    with pytest.raises(FileNotFoundError):  # the new build fails early (no such release) ...
        twitter_gmner.build(tmp_path / "missing", out, overwrite=True)
    assert _ids(out) == ["4"]  # ... and the old build is still there


# ---------------------------------------------------------------------- hostile mask files
def test_hostile_mask_shapes_are_reported_and_skipped_keeping_good_ones(tmp_path):
    raw = write_release(
        tmp_path / "raw",
        {
            "train": [
                {"id": "1", "tokens": ["Obama", "and", "Biden"], "tags": ["B-PER", "O", "B-PER"],
                 "objects": [("Obama", [4, 4, 20, 30]), ("Biden", [30, 4, 50, 30])], "size": (64, 48)},
                {"id": "2", "tokens": ["Rome"], "tags": ["B-LOC"],
                 "objects": [("Rome", [0, 0, 60, 20])], "size": (64, 48)},
                {"id": "3", "tokens": ["Paris"], "tags": ["B-LOC"],
                 "objects": [("Paris", [0, 0, 10, 10])], "size": (64, 48)},
            ]
        },
    )  # fmt: skip
    masks = tmp_path / "masks"
    masks.mkdir()
    good = [[4, 4], [20, 4], [20, 30], [4, 30]]
    write_labelme(
        masks / "1.json",
        64,
        48,
        [
            ("Obama", "polygon", good),
            ("Obama", "polygon", [[float("nan"), 1], [2, 3], [4, 5]]),
            ("Obama", "polygon", [[1e12, 1], [2, 3], [4, 5]]),
            ("Obama", "polygon", [[float("inf"), 1], [2, 3], [4, 5]]),
            ("Obama", "polygon", [[1, 1], [2, 3]]),
            ("Biden", "polygon", [[30, 4], [50, 4], [50, 30], [30, 30]]),
        ],
    )
    good_rle = encode_rle(np.pad(np.ones((20, 60), bool), ((0, 28), (0, 4))))
    (masks / "2.json").write_text(
        json.dumps(
            {
                "images": [{"height": 48, "width": 64}],
                "annotations": [
                    {"label": "Rome", "segmentation": {"size": [48, 64], "counts": "0" * 40}},  # sum != h*w
                    {"label": "Rome", "segmentation": {"size": [48, 64], "counts": "é9"}},  # non-ASCII
                    {"label": "Rome", "segmentation": {"size": [48, 64], "counts": [5, 5]}},  # short runs
                    {"label": "Rome", "segmentation": {"size": [10, 10], "counts": [100]}},  # wrong size
                    {"label": "Rome", "segmentation": good_rle},
                ],
            }
        ),
        encoding="utf-8",
    )
    write_labelme(masks / "3.json", 640, 480, [("Paris", "polygon", good)])  # not the image's size
    t0 = time.perf_counter()
    res = twitter_smner.build(raw, tmp_path / "sm", masks=masks)
    assert time.perf_counter() - t0 < 120  # a guard against an unbounded loop, not a speed claim
    rep = json.loads((tmp_path / "sm" / "build_report.json").read_text())
    bad = rep["messages"]["bad_mask_shape"]
    assert rep["counts"]["bad_mask_shape"] == 7 and sum("1.json" in m for m in bad) == 4
    assert sum("2.json" in m for m in bad) == 3
    assert any("NaN or infinite" in m for m in bad) and any("outside the 64x48" in m for m in bad)
    assert any("non-ASCII" in m for m in bad) and any("sum to" in m for m in bad)
    assert rep["counts"]["mask_size_mismatch"] == 2  # the 10x10 RLE, and 3.json (640x480) as a whole
    assert any("3:" in m and "640x480" in m for m in rep["messages"]["mask_size_mismatch"])
    ds = load_built_dataset(tmp_path / "sm", "smner", split="train")
    obama, biden = ds[0]["entities"]
    assert decode_rle(obama["masks"][0])[10, 10] and decode_rle(biden["masks"][0])[10, 40]
    assert decode_rle(ds[1]["entities"][0]["masks"][0]).sum() == 20 * 60
    assert ds[2]["entities"][0]["masks"] == [None]
    assert res.counts["smner"]["train"] == 3
    code = cli(["data", "build", "twitter-smner", "--raw", str(raw), "--masks", str(masks),
                "--out", str(tmp_path / "strict"), "--strict"])  # fmt: skip
    assert code == 2


def test_rle_validation_matches_pycocotools_and_refuses_corrupt_counts():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((17, 23)) < rng.random()
        rle = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
        runs = _decode_counts(rle["counts"])
        assert sum(runs) == 17 * 23
        assert (decode_rle({"size": [17, 23], "counts": rle["counts"].decode()}) == m).all()
    for counts, message in [
        ("0" * 5, "sum to"),
        ("é", "non-ASCII"),
        ("\x7f", "character"),
        ("P", "truncated"),
    ]:
        with pytest.raises(MaskError, match=message):
            decode_rle({"size": [4, 4], "counts": counts})
    with pytest.raises(MaskError, match="positive integers"):
        decode_rle({"size": [0, 4], "counts": []})
    with pytest.raises(MaskError, match="NaN"):
        polygons_to_rle([[float("nan"), 0, 1, 1, 2, 2]], 4, 4)


def test_compute_smner_refuses_corrupt_masks_up_front():
    gold_mask = encode_rle(np.ones((8, 8), bool))
    gold = {"x": [{"start": 0, "end": 1, "type": "PER", "boxes": [[0, 0, 8, 8]], "masks": [gold_mask]}]}
    corrupt = {"size": [100000, 100000], "counts": "0" * 10}
    t0 = time.perf_counter()
    with pytest.raises(MetricInputError, match="example 'x' prediction 0"):
        compute_smner({"x": [{"start": 0, "end": 1, "type": "PER", "mask": corrupt}]}, gold)
    other_size = encode_rle(np.ones((4, 4), bool))
    with pytest.raises(MetricInputError, match="different sizes"):
        compute_smner({"x": [{"start": 0, "end": 1, "type": "PER", "mask": other_size}]}, gold)
    assert time.perf_counter() - t0 < 30  # a guard against an unbounded loop, not a speed claim


# ---------------------------------------------------------------------- boxes outside the image
def test_box_entirely_outside_the_image_is_reported_and_unusable(tmp_path, capsys):
    raw = write_release(
        tmp_path / "raw",
        {"test": [{"id": "9", "tokens": ["Obama", "in", "Rome"], "tags": ["B-PER", "O", "B-LOC"],
                   "objects": [("Obama", [100, 10, 140, 30]), ("Rome", [0, 0, 10, 10])], "size": (64, 48)}]},
    )  # fmt: skip
    res = twitter_gmner.build(raw, tmp_path / "out")
    assert res.report["box_outside_image"] == 1 and "Obama" in res.report.messages["box_outside_image"][0]
    ents = load_built_dataset(tmp_path / "out", "gmner", split="test")[0]["entities"]
    assert [(e["text"], e["groundable"], e["boxes"]) for e in ents] == [
        ("Obama", False, []),
        ("Rome", True, [[0.0, 0.0, 10.0, 10.0]]),
    ]
    args = ["data", "build", "twitter-gmner", "--raw", str(raw), "--out", str(tmp_path / "s"), "--strict"]
    assert cli(args) == 2 and "box_outside_image" in capsys.readouterr().err


# ---------------------------------------------------------------------- evaluate: failed prediction lines
def test_evaluate_scores_failed_prediction_lines_as_empty(tmp_path, capsys):
    raw = write_release(tmp_path / "raw", SMALL)
    twitter_gmner.build(raw, tmp_path / "ds")
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        json.dumps({"id": "4", "text": "NASA launch", "error": "ImageLoadError: broken"})
        + "\n"
        + json.dumps(
            {"id": "5", "entities": [{"start": 0, "end": 1, "type": "PER", "box": [10, 10, 30, 40]}]}
        )
        + "\n"
    )
    out = tmp_path / "s.json"
    assert (
        cli(
            ["evaluate", "--predictions", str(preds), "--dataset", str(tmp_path / "ds"), "--output", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "1 input(s) failed" in printed and "'4'" in printed
    scores = json.loads(out.read_text())
    assert scores["failed_inputs"] == 1
    assert scores["gmner_precision"] == 1.0 and scores["gmner_recall"] == 0.5


# ---------------------------------------------------------------------- metrics: entity types
def test_metric_types_are_checked_and_matched_without_case():
    gold = [[{"start": 0, "end": 1, "type": "PER", "boxes": []}]]
    assert compute_gmner([[{"start": 0, "end": 1, "type": "per", "box": None}]], gold)["gmner_f1"] == 1.0
    with pytest.raises(MetricInputError, match=r"'FOO' is not one of the dataset's types \['PER', 'LOC'"):
        compute_gmner([[{"start": 0, "end": 1, "type": "FOO", "box": None}]], gold)
    with pytest.raises(MetricInputError, match="reference 0"):
        compute_gmner([[]], [[{"start": 0, "end": 1, "type": "MISC", "boxes": []}]])


# ---------------------------------------------------------------------- CoNLL readers
def test_conll_bom_trailing_spaces_and_undecodable_bytes(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("\ufeffIMGID:1\nNew York \tB-LOC \nCity\tI-LOC\r\n\n".encode())
    (s,) = read_conll(p, allowed_tags=["O", "B-LOC", "I-LOC"])
    assert s.id == "1" and s.tokens == ["New York", "City"] and s.tags == ["B-LOC", "I-LOC"]
    bad = tmp_path / "b.txt"
    bad.write_bytes(b"IMGID:1\nfoo\tO\nba\xffr\tO\n")
    with pytest.raises(CoNLLFormatError, match=r"b\.txt:3: not UTF-8 .*0xff"):
        read_conll(bad)
    raw = write_release(tmp_path / "raw", SMALL)
    txt = raw / "txt" / "train.txt"
    txt.write_bytes(b"\xef\xbb\xbf" + txt.read_bytes().replace(b"\tB-PER", b" \tB-PER  "))
    ds_rows = twitter_gmner.build(raw, tmp_path / "out").counts["gmner"]
    assert ds_rows == {"train": 2, "validation": 1, "test": 2}
    ents = load_built_dataset(tmp_path / "out", "gmner", split="train")[0]["entities"]
    assert ents[0]["text"] == "Obama" and ents[0]["groundable"]
    txt.write_bytes(txt.read_bytes() + b"caf\xe9\tO\n")
    with pytest.raises(CoNLLFormatError, match=r"train\.txt:\d+: not UTF-8"):
        twitter_gmner.build(raw, tmp_path / "out2")


# ---------------------------------------------------------------------- images: EXIF, degenerate sizes
def _exif_jpeg(path, orientation=6):
    """A 60x40 JPEG whose EXIF says 'rotate 90 degrees clockwise to display' (displayed: 40x60)."""
    img = Image.new("RGB", (60, 40), (200, 30, 30))
    img.paste((20, 200, 20), (0, 0, 20, 10))  # a green patch at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    return path


def test_exif_orientation_is_applied_everywhere(tmp_path, dummy_dir, capsys):
    path = _exif_jpeg(tmp_path / "rot.jpg")
    upright = load_image(path)
    assert upright.size == (40, 60)
    assert load_image(path.read_bytes()).size == (40, 60)
    assert load_image(Image.open(path)).size == (40, 60)
    assert (np.asarray(load_image(upright)) == np.asarray(upright)).all()  # no double rotation
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer(), grounder=dummy_dir["grounder"], box_threshold=0.0
    )
    text = "Obama visits Paris"
    ref = pipe({"text": text, "image": upright.copy()})  # a plain upright image: the reference
    assert ref and all(
        e["box"] is not None and e["box"]["xmax"] <= 40 and e["box"]["ymax"] <= 60 for e in ref
    )
    assert pipe({"text": text, "image": str(path)}) == ref  # API, from the file
    # CLI
    comp = tmp_path / "comp"
    pipe.save_pretrained(comp)
    assert (
        cli(["predict", "--text", text, "--image", str(path), "--model", str(comp), "--box-threshold", "0"])
        == 0
    )
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line)["entities"] == ref
    # handler (base64 of the file as uploaded)
    import importlib.util

    from riveg_hf.hub import prepare_for_push

    prepare_for_push(comp, "org/x")
    spec = importlib.util.spec_from_file_location("handler_exif", comp / "handler.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    h = mod.EndpointHandler(str(comp))
    out = h({"inputs": {"text": text, "image": base64.b64encode(path.read_bytes()).decode()},
             "parameters": {"box_threshold": 0.0}})  # fmt: skip
    assert out == ref
    # demo: Gradio's own image preprocessing, then the demo's predict function
    import gradio as gr
    from gradio.data_classes import FileData

    from riveg_hf.demo import predict_for_demo

    gr_img = gr.Image(type="pil").preprocess(FileData(path=str(path), orig_name="rot.jpg"))
    assert gr_img.size == (40, 60)
    _spans, _ann, demo_ents, _cmap = predict_for_demo(pipe, gr_img, text, 0.0, 0.5)
    assert demo_ents == ref
    # builder: width/height are the displayed size
    raw = write_release(tmp_path / "raw", {"test": [{"id": "rot", "tokens": ["Obama"], "tags": ["B-PER"],
                                                      "objects": [("Obama", [1, 1, 30, 50])], "size": (40, 60)}]})  # fmt: skip
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "rot.jpg").write_bytes(path.read_bytes())
    res = twitter_gmner.build(raw, tmp_path / "ds", images=images)
    assert res.report["size_mismatch"] == 0
    row = load_built_dataset(tmp_path / "ds", "gmner", split="test")[0]
    assert (row["width"], row["height"]) == (40, 60)
    assert pipe({"text": text, "image": row["image"]}) == ref


def test_degenerate_images_are_refused_with_a_clear_error(dummy_dir):
    with pytest.raises(ImageLoadError, match=r"8000x1 pixels; its short side must be at least"):
        load_image(Image.new("RGB", (8000, 1)))
    pipe = RiVEGPipeline.from_components(recognizer=every_word_recognizer(), grounder=dummy_dir["grounder"])
    out = pipe([{"text": "Obama", "image": Image.new("RGB", (8000, 1))}, {"text": "Obama", "image": None}])
    assert "short side" in out[0]["error"] and isinstance(out[1], list) and len(out[1]) == 1


# ---------------------------------------------------------------------- bounded cost on long inputs
def test_entities_past_the_cap_are_kept_and_say_why(dummy_dir):
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer(), grounder=dummy_dir["grounder"], box_threshold=0.0
    )
    image = make_image((64, 48))
    text = " ".join(f"w{i}" for i in range(30))
    out = pipe({"text": text, "image": image}, max_entities_per_image=5)
    assert len(out) == 30  # nothing dropped
    assert all(e["box"] is not None and "grounding" not in e for e in out[:5])
    assert all(e["box"] is None and "max_entities_per_image=5" in e["grounding"] for e in out[5:])
    with pytest.raises(ValueError, match="positive integer"):
        pipe({"text": text, "image": image}, max_entities_per_image=0)
    with pytest.raises(ValueError, match="not a boolean"):
        pipe({"text": text, "image": image}, box_threshold=True)


def test_grounding_dino_calls_grow_linearly_with_the_entities(dummy_dir):
    """One detector call per text window (~20 queries), each keeping only its own queries' best boxes."""
    from riveg_hf.stages import Grounder

    g = Grounder.from_pretrained(dummy_dir["grounder"])
    calls = []
    handle = g.model.register_forward_hook(lambda m, i, o: calls.append(1))
    image = make_image((64, 48))
    try:
        counts = {}
        for n in (10, 40, 160):
            calls.clear()
            res = g.ground(image, [f"the thing number {i}" for i in range(n)])
            assert len(res) == n and all(s >= 0 for _, s in res)
            counts[n] = len(calls)
    finally:
        handle.remove()
    assert counts[160] <= 16 * counts[10] + 1 and counts[160] >= counts[40] >= counts[10] >= 1
    print("detector calls per 10/40/160 queries:", counts)


def test_bad_items_in_a_batch_never_lose_the_others(dummy_dir, tmp_path):
    pipe = RiVEGPipeline.from_components(recognizer=every_word_recognizer(), grounder=dummy_dir["grounder"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = pipe(
        [
            {"text": "Obama", "image": make_image()},
            {"text": "Obama", "image": str(bad)},
            {"text": "Obama", "image": "http://169.254.169.254/latest/meta-data"},
            {"text": "Obama", "image": Image.new("RGB", (1, 900))},
            {"text": "Paris", "image": make_image()},
        ]
    )
    assert [("error" in o) for o in out] == [False, True, True, True, False]
    assert out[0][0]["entity"] == "Obama" and out[4][0]["entity"] == "Paris"
