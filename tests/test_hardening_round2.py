"""Round 2 of the hardening (inputs): each test fails on the code before it. Invalid Unicode at the input
boundary, the endpoint handler's parameters / base64 / image bounds, tokenization capped at what the model
reads, one writer per predictions file, built folders' permissions and signals, unusable boxes, metric
inputs."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from riveg_hf import RiVEGPipeline
from riveg_hf.cli import main as cli
from riveg_hf.metrics import MetricInputError, compute_gmner
from riveg_hf.testing import every_word_recognizer, tiny_blip_itm, tiny_llm

from .helpers import REPO, make_image, write_release

SURROGATE = "Obama in Paris \ud800 today"


@pytest.fixture(scope="module")
def pipe():
    return RiVEGPipeline.from_components(recognizer=every_word_recognizer())


# ---------------------------------------------------------------------- invalid Unicode
def test_a_lone_surrogate_is_refused_at_the_input_boundary_and_the_others_are_kept(pipe):
    out = pipe([{"text": "Obama in Paris"}, {"text": SURROGATE}, {"tokens": ["NASA", "\udfff"]}])
    assert out[0] and "entity" in out[0][0]
    assert "lone surrogate" in out[1]["error"] and out[1]["index"] == 1
    assert "tokens[1]" in out[2]["error"]


def test_riveg_predict_writes_every_line_when_one_tweet_has_a_lone_surrogate(tmp_path, dummy_dir):
    inp = tmp_path / "in.jsonl"
    # json.dumps escapes the surrogate: a valid JSON line, as a client would send it
    inp.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                           for i, t in enumerate(["Obama in Paris", SURROGATE, "NASA"])))  # fmt: skip
    out = tmp_path / "out.jsonl"
    assert cli(["predict", "--input", str(inp), "--output", str(out), "--model", _composite(dummy_dir, tmp_path),
                "--device", "cpu"]) == 0  # fmt: skip
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == ["0", "1", "2"]
    assert "error" in lines[1] and "entities" in lines[0] and "entities" in lines[2]


def _composite(dummy_dir, tmp_path):
    path = tmp_path / "composite"
    if not path.exists():
        RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"]).save_pretrained(path)
    return str(path)


# ---------------------------------------------------------------------- the endpoint handler
@pytest.fixture(scope="module")
def handler(tmp_path_factory, dummy_dir):
    from riveg_hf.templates.handler import EndpointHandler

    path = tmp_path_factory.mktemp("h") / "composite"
    RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"], grounder=dummy_dir["grounder"]
    ).save_pretrained(path)
    return EndpointHandler(str(path))


@pytest.mark.parametrize("params", [[], 0, "box_threshold=0.3", [["box_threshold", 0.3]], False])
def test_handler_refuses_parameters_that_are_not_an_object(handler, params):
    out = handler({"inputs": {"text": "Obama"}, "parameters": params})
    assert out["status"] == 400 and "'parameters' must be an object" in out["error"]


def test_handler_accepts_base64_with_line_breaks(handler):
    buf = io.BytesIO()
    make_image((64, 48)).save(buf, format="PNG")
    mime = base64.encodebytes(buf.getvalue()).decode()  # a line break every 76 characters
    assert "\n" in mime
    out = handler({"inputs": {"text": "Obama in Paris", "image": mime}})
    assert isinstance(out, list)


def test_handler_refuses_a_huge_strip_before_decoding_it(handler):
    img = Image.new("L", (4, 10_000_000 // 4 * 4 // 4))  # 4 x 2.5M: small file, absurd shape
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000
    t0 = time.monotonic()
    out = handler({"inputs": {"text": "Obama", "image": base64.b64encode(buf.getvalue()).decode()}})
    assert out["status"] in (400, 413) and time.monotonic() - t0 < 2.0
    assert "long side" in out["error"] or "aspect ratio" in out["error"]


def test_handler_answers_400_for_a_lone_surrogate(handler):
    out = handler({"inputs": {"text": SURROGATE}})
    assert out["status"] == 400 and "surrogate" in out["error"]


# ---------------------------------------------------------------------- tokenization caps
def test_entailment_truncates_at_the_text_model_positions_not_the_tokenizer_length():
    from riveg_hf.stages import Entailment

    model, proc = tiny_blip_itm()
    assert proc.tokenizer.model_max_length == 128 and model.config.text_config.max_position_embeddings == 64
    ent = Entailment(model, proc)
    long = " ".join(["obama"] * 120)  # 120 tokens: above the model's 64 positions
    p = ent.score(make_image((64, 48)), [long, "obama"])
    assert p.shape == (2,) and np.isfinite(p).all()
    proc.tokenizer.model_max_length = int(1e30)  # a community checkpoint that never set it
    assert np.isfinite(Entailment(model, proc).score(make_image((64, 48)), [long])).all()


def test_recognizer_and_expander_cap_what_they_tokenize():
    from riveg_hf.stages import Expander, Recognizer
    from riveg_hf.stages.expander import ExpansionRequest

    model, tok = every_word_recognizer()
    tok.model_max_length = int(1e30)
    rec = Recognizer(model, tok)
    assert rec.max_length <= model.config.max_position_embeddings
    spans = rec([["word"] * 600], [None])[0]
    assert len(spans) == 600  # every word found, in windows the model can read
    llm, ltok = tiny_llm()
    llm.config.max_position_embeddings = 96
    ltok.model_max_length = int(1e30)
    exp = Expander(llm, ltok, max_new_tokens=8)
    out = exp.describe([ExpansionRequest("Obama", "PER", "Obama " * 400)])
    assert len(out) == 1 and out[0][1] in ("llm", "fallback")


def test_train_entailment_on_hypotheses_longer_than_the_text_model(tmp_path):
    """The crash of round 2: `riveg train entailment` with the tiny BLIP ITM (tokenizer 128, text model 64)
    on long hypotheses."""
    from riveg_hf.testing import tiny_blip_itm as blip

    model, proc = blip()
    base = tmp_path / "blip"
    model.save_pretrained(base)
    proc.save_pretrained(base)
    long_name = " ".join(["Golden", "State", "Warriors"] * 12)
    ex = {"id": "1", "tokens": long_name.split(), "tags": ["B-ORG"] + ["I-ORG"] * 35,
          "objects": [(long_name, [1, 1, 30, 30])], "size": (64, 48)}  # fmt: skip
    raw = write_release(tmp_path / "raw", {"train": [ex], "dev": [ex], "test": [ex]})
    images = tmp_path / "images"
    images.mkdir()
    make_image((64, 48)).save(images / "1.jpg")
    ds = tmp_path / "ds"
    assert (
        cli(["data", "build", "twitter-gmner", "--raw", str(raw), "--images", str(images), "--out", str(ds)])
        == 0
    )
    code = cli(["train", "entailment", "--dataset", str(ds), "--base-model", str(base), "--output",
                str(tmp_path / "out"), "--max-steps", "2", "--batch-size", "2"])  # fmt: skip
    assert code == 0


# ---------------------------------------------------------------------- one writer per output
def test_a_second_predict_on_the_same_output_refuses(tmp_path):
    from riveg_hf.predict import OutputLockedError, _exclusive, predict_to_jsonl

    out = tmp_path / "p.jsonl"
    with _exclusive(out), pytest.raises(OutputLockedError, match="another process"):
        predict_to_jsonl(lambda *a, **k: iter(()), [{"id": "1", "text": "x"}], out, progress=False)
    # a lock held by a process that died is free again (an OS lock, released with the process)
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from riveg_hf.predict import _exclusive
        from pathlib import Path
        with _exclusive(Path({str(out)!r})):
            print("locked", flush=True)
            os.kill(os.getpid(), 9)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "locked" in p.stdout
    with _exclusive(out):
        pass


# ---------------------------------------------------------------------- built folders
def test_a_built_folder_gets_the_umask_not_mode_700(tmp_path):
    from datasets import Features, Value

    from riveg_hf.data import ConfigSpec, write_dataset_folder

    old = os.umask(0o022)
    try:
        spec = ConfigSpec("c", Features({"x": Value("int32")}), {"train": lambda: [{"x": 1}]}, default=True)
        write_dataset_folder(tmp_path / "out", [spec], card_body="b")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "out").stat().st_mode)
    assert mode == 0o755, oct(mode)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_build_stopped_by_a_signal_leaves_no_staging_folder(tmp_path, sig):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from datasets import Features, Value
        from riveg_hf.data import ConfigSpec, write_dataset_folder
        def rows():
            yield {{"x": 1}}
            print("writing", flush=True)
            time.sleep(60)
            yield {{"x": 2}}
        spec = ConfigSpec("c", Features({{"x": Value("int32")}}), {{"train": rows}}, default=True, rows_per_shard=1)
        write_dataset_folder({str(tmp_path / "out")!r}, [spec], card_body="b")
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(sig)
    p.wait(timeout=60)
    assert p.returncode != 0
    assert [x.name for x in tmp_path.iterdir()] == []  # no folder, no hidden staging folder


# ---------------------------------------------------------------------- unusable boxes
def test_a_zero_area_box_is_unusable_and_its_entity_not_groundable(tmp_path):
    from riveg_hf.data.gmner import gmner_records
    from riveg_hf.data.report import Report

    ex = {"id": "1", "tokens": ["Obama", "and", "Rome"], "tags": ["B-PER", "O", "B-LOC"],
          "objects": [("Obama", [10, 10, 10, 10]), ("Rome", [5, 5, 5, 30])], "size": (64, 48)}  # fmt: skip
    raw = write_release(tmp_path / "raw", {"train": [ex]})
    rep = Report()
    rec = gmner_records(raw, "train", report=rep)[0]
    assert [e["groundable"] for e in rec["entities"]] == [False, False]
    assert rep.counts.get("empty_box") == 2


def test_boxes_are_checked_against_the_real_image_when_the_xml_size_disagrees(tmp_path):
    from riveg_hf.data.gmner import gmner_records
    from riveg_hf.data.report import Report

    ex = {"id": "1", "tokens": ["Obama", "and", "Rome"], "tags": ["B-PER", "O", "B-LOC"],
          "objects": [("Obama", [10, 10, 200, 150]), ("Rome", [150, 120, 190, 140])], "size": (200, 160)}  # fmt: skip
    raw = write_release(tmp_path / "raw", {"train": [ex]})
    images = tmp_path / "images"
    images.mkdir()
    make_image((64, 48)).save(images / "1.jpg")  # the real image is smaller than the XML says
    rep = Report()
    rec = gmner_records(raw, "train", images=images, report=rep)[0]
    assert (rec["width"], rec["height"]) == (64, 48)
    obama, rome = rec["entities"]
    assert obama["boxes"] == [[10.0, 10.0, 64.0, 48.0]]  # clipped to the image
    assert rome["boxes"] == [] and not rome["groundable"]  # entirely outside the real image
    assert rep.counts.get("size_mismatch") == 1 and rep.counts.get("box_outside_image") == 1


# ---------------------------------------------------------------------- metric inputs
@pytest.mark.parametrize(
    ("pred", "match"),
    [
        ({"start": -5, "end": 2, "type": "PER", "box": None}, "non-negative"),
        ({"start": 2, "end": 0, "type": "PER", "box": None}, "start <= end"),
        ({"start": 0, "end": 1, "type": "PER", "box": ["10", "10", "20", "20"]}, "numbers"),
        ({"start": 0, "end": 1, "type": "PER", "box": [True, 0, 5, 5]}, "numbers"),
    ],
)
def test_metrics_refuse_negative_spans_and_non_numeric_boxes_naming_the_example(pred, match):
    gold = [[{"start": 0, "end": 1, "type": "PER", "boxes": [[10, 10, 20, 20]]}]]
    with pytest.raises(MetricInputError, match=match) as err:
        compute_gmner([[pred]], gold, ids=["tweet-7"])
    assert "tweet-7" in str(err.value)
    with pytest.raises(MetricInputError, match="numbers"):
        compute_gmner([[]], [[{"start": 0, "end": 1, "type": "PER", "boxes": [["1", "2", "3", "4"]]}]])
