"""The joint reader on an OpenAI-compatible server (``reader="endpoint:URL"``): a loopback server plays a scripted
SAKE conversation (text search, image search, answer) and each request's messages are checked; the zero-shot
reader reads the same boxes served as in process; a server that fails leaves that tweet unknown (an error line),
never "no entity", and the other tweets keep theirs; a composite naming a server needs the user's opt-in."""

from __future__ import annotations

import base64
import io
import json
import warnings

import pytest
from PIL import Image

from riveg_hf import RiVEGPipeline
from riveg_hf.stages import JointReader, ReadRequest

from .helpers import sake_prompt_dir
from .servers import ChatServer, Reply, completion

TWEET = "The geometry of plants . Garfield Park Conservatory"


def _images(req) -> list[Image.Image]:
    out = []
    for m in req["messages"]:
        if isinstance(m["content"], list):
            for c in m["content"]:
                if c["type"] == "image_url":
                    out.append(
                        Image.open(io.BytesIO(base64.b64decode(c["image_url"]["url"].split(",", 1)[1])))
                    )
    return out


@pytest.fixture
def sake_prompts(tmp_path):
    return sake_prompt_dir(tmp_path)


def test_a_served_sake_conversation_over_its_cache(sake_prompts, tmp_path):
    cache = tmp_path / "cache"
    for kind in ("text", "image"):
        (cache / f"{kind}_search").mkdir(parents=True)
    (cache / "images" / "71044").mkdir(parents=True)
    Image.new("RGB", (64, 64), (0, 200, 0)).save(cache / "images" / "71044" / "ref.jpg")
    (cache / "text_search" / "71044_text_search.json").write_text(json.dumps(
        [{"query": "Garfield Park Conservatory", "result": {"summary": "A greenhouse in Chicago."}}]))  # fmt: skip
    (cache / "image_search" / "71044_image_search.json").write_text(json.dumps(
        [{"query": "Garfield Park Conservatory", "result": {"images": [{"path": "ref.jpg"}]}}]))  # fmt: skip
    script = [
        '<text_search>[{"query": "Garfield Park Conservatory"}]</text_search>',
        '<image_search>[{"query": "Garfield Park Conservatory"}]</image_search>',
        '<answer>[{"entity": "Garfield Park Conservatory", "type": "LOC", "box2d": [362, 0, 724, 362]}]</answer>',
    ]
    with ChatServer(lambda req, hdr: Reply(200, completion(script[len(srv.requests) - 1]))) as srv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = JointReader.served(srv.url, endpoint_model="SAKE", endpoint_family="qwen2_5_vl", family="sake",
                                        prompt_dir=str(sake_prompts), search="cache", search_cache=str(cache))  # fmt: skip
        [reading] = reader.read_many([ReadRequest(Image.new("RGB", (100, 50)), TWEET, "71044")])
    assert [(e.entity, e.type, e.box) for e in reading.entities] == [
        ("Garfield Park Conservatory", "LOC", [50.0, 0.0, 100.0, 50.0])
    ]
    first, second, third = srv.requests
    assert [m["role"] for m in first["messages"]] == ["user"]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert [m["role"] for m in third["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert second["messages"][1]["content"] == script[0]  # the model's own turn, as plain text
    # SAKE's image (100x50 -> 724x362, JPEG) each time the post is shown; in turn 3 the reference (64x64 ->
    # 512x512, SAKE resizes search images the same way) before it
    assert [im.size for im in _images(first)] == [(724, 362)]
    assert [im.size for im in _images(second)] == [(724, 362)] * 2
    assert [im.size for im in _images(third)] == [(724, 362), (724, 362), (512, 512), (724, 362)]
    text3 = "".join(c.get("text", "") for c in third["messages"][4]["content"])
    assert "[Image Search Results]" in text3 and text3.endswith("AFTER IMAGE")
    assert all(r["temperature"] == 0.0 and r["max_tokens"] == reader.max_new_tokens for r in srv.requests)


def test_the_served_zero_shot_reader_reads_what_the_in_process_one_reads(monkeypatch):
    from riveg_hf.testing import tiny_qwen2_5_vl

    from .test_reader import _script

    answer = '[{"entity": "Garfield Park Conservatory", "type": "LOC", "bbox_2d": [28, 0, 56, 28]}]'
    model, proc = tiny_qwen2_5_vl()
    ip = proc.image_processor
    pixels = {"min_pixels": getattr(ip, "min_pixels", None) or ip.size["shortest_edge"],
              "max_pixels": getattr(ip, "max_pixels", None) or ip.size["longest_edge"]}  # fmt: skip
    local = JointReader(model, proc)
    _script(monkeypatch, local, [answer])
    image = Image.new("RGB", (120, 80))
    [want] = local.read_many([ReadRequest(image, TWEET)])
    with ChatServer(lambda req, hdr: Reply(200, completion(answer))) as srv:
        reader = JointReader.served(srv.url, endpoint_model="Qwen/Qwen2.5-VL-7B-Instruct", **pixels)
        [got] = reader.read_many([ReadRequest(image, TWEET)])
    assert got.entities == want.entities and want.entities[0].box is not None  # the same pixels, the same box
    assert reader.family == "qwen-vl" and reader.endpoint_family == "qwen2_5_vl"


def test_a_failed_server_leaves_that_tweet_unknown_and_the_others_read():
    def handler(req, hdr):
        text = json.dumps(req["messages"])
        if "FAIL" in text:
            return Reply(500, {"error": {"message": "boom"}})
        return Reply(200, completion('[{"entity": "Obama", "type": "PER", "bbox_2d": null}]'))

    with ChatServer(handler) as srv:
        pipe = RiVEGPipeline.from_components(
            reader=f"endpoint:{srv.url}", endpoint_model="Qwen/Qwen2.5-VL-7B-Instruct"
        )
        pipe.stages["reader"].client.max_retries = 0
        out = pipe([{"text": "Obama FAIL", "image": Image.new("RGB", (56, 28))},
                    {"text": "Obama smiles", "image": Image.new("RGB", (56, 28))}], batch_size=2)  # fmt: skip
    assert "error" in out[0] and "gave no answer" in out[0]["error"] and out[0]["index"] == 0
    assert [e["entity"] for e in out[1]] == ["Obama"]


def test_a_composite_naming_a_server_needs_the_users_opt_in(tmp_path):
    from transformers import pipeline

    with ChatServer(lambda req, hdr: Reply(200, completion("[]"))) as srv:
        pipe = RiVEGPipeline.from_components(
            reader=f"endpoint:{srv.url}", endpoint_model="Qwen/Qwen2.5-VL-7B-Instruct"
        )
        pipe.save_pretrained(tmp_path / "served-reader")
        cfg = json.loads((tmp_path / "served-reader" / "config.json").read_text())
        assert cfg["components"]["reader"]["options"]["endpoint"]["url"] == srv.url
        with pytest.raises(Exception, match="trust"):
            pipeline("grounded-mner", model=str(tmp_path / "served-reader"))
        assert srv.requests == []
        again = pipeline("grounded-mner", model=str(tmp_path / "served-reader"), trust_endpoints=True)
        assert again({"text": "Obama", "image": Image.new("RGB", (56, 28))}) == []
        assert len(srv.requests) == 1


def test_riveg_predict_with_the_sake_preset_against_a_served_sake(
    sake_prompts, tmp_path, monkeypatch, capsys
):
    """`riveg predict --preset sake-7b` with the reader served (no weights here, HF_HUB_OFFLINE=1): the SAKE
    conversation runs through the CLI; masks are not asked for, so the segmenter is not loaded either."""
    from riveg_hf.cli import main as cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Image.new("RGB", (100, 50)).save(tmp_path / "71044.jpg")
    # tokens, as `riveg predict --dataset` reads them
    line = {"id": "71044", "tokens": TWEET.split(), "image": "71044.jpg"}
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    script = [
        '<text_search>[{"query": "Garfield Park Conservatory"}]</text_search>',
        '<answer>[{"entity": "Garfield Park Conservatory", "type": "LOC", "box2d": [362, 0, 724, 362]},'
        ' {"entity": "plants", "type": "MISC", "box2d": []}]</answer>',
    ]
    with (
        ChatServer(lambda req, hdr: Reply(200, completion(script[len(srv.requests) - 1]))) as srv,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        code = cli(["predict", "--preset", "sake-7b", "--reader-endpoint", srv.url, "--endpoint-model", "SAKE",
                    "--sake-prompts", str(sake_prompts), "--input", str(tmp_path / "in.jsonl"),
                    "--images", str(tmp_path), "--output", str(tmp_path / "preds.jsonl")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert len(srv.requests) == 2 and all(r["model"] == "SAKE" for r in srv.requests)
    [line] = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    got = [(e["entity"], e["type"], e["box"]) for e in line["entities"]]
    assert got == [("plants", "OTHER", None),
                   ("Garfield Park Conservatory", "LOC", {"xmin": 50.0, "ymin": 0.0, "xmax": 100.0, "ymax": 50.0})]  # fmt: skip
    # ... and its predictions score under SAKE's evaluator and E2E-GMNER's, against the same tweet's gold
    from datasets_scripts import twitter_gmner

    from .helpers import write_release

    words = TWEET.split()
    tags = ["O", "O", "O", "B-OTHER", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert words[3] == "plants" and words[5:] == ["Garfield", "Park", "Conservatory"]
    ex = {"id": "71044", "tokens": words, "tags": tags, "objects": [("Garfield Park Conservatory", [50, 0, 100, 50])],
          "size": (100, 50)}  # fmt: skip
    twitter_gmner.build(
        write_release(tmp_path / "raw", {"train": [ex], "dev": [ex], "test": [ex]}), tmp_path / "ds"
    )
    for protocol in ("sake", "e2e-gmner"):
        out = tmp_path / f"scores-{protocol}.json"
        assert cli(["evaluate", "--predictions", str(tmp_path / "preds.jsonl"), "--dataset", str(tmp_path / "ds"),
                    "--protocol", protocol, "--output", str(out)]) == 0  # fmt: skip
        scores = json.loads(out.read_text())
        assert scores["gmner_f1"] == 1.0 and scores["protocols"][protocol]["gmner_f1"] == 1.0, protocol
