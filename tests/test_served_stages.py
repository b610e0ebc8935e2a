"""Served stages: the VLM grounder and the VLM entailment on an OpenAI-compatible server (a local one here, on
127.0.0.1, that checks what it receives), with HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 set. The server
answers with real answers (tests/fixtures/real_vlm_answers.json) and real response shapes
(tests/fixtures/served/real_responses.json), then with every fault."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from riveg_hf import RiVEGPipeline
from riveg_hf.serving.images import infer_family, smart_resize
from riveg_hf.stages import Grounder, LocateRequest
from riveg_hf.stages.entailers.served import p_yes
from riveg_hf.stages.grounders.served import ServedGrounder
from riveg_hf.testing import every_word_recognizer, tiny_qwen2_5_vl

from .servers import ChatServer, Reply, completion

FIXTURES = Path(__file__).parent / "fixtures"
REAL = {e["id"]: e for e in json.loads((FIXTURES / "real_vlm_answers.json").read_text(encoding="utf-8"))}
SERVED = {
    e["id"]: e for e in json.loads((FIXTURES / "served" / "real_responses.json").read_text(encoding="utf-8"))
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("RIVEG_LLM_CACHE", str(tmp_path / "cache.sqlite"))
    monkeypatch.delenv("RIVEG_ENDPOINT_MODEL", raising=False)
    monkeypatch.delenv("RIVEG_TRUST_ENDPOINTS", raising=False)


def _image_of(req) -> Image.Image:
    content = req["messages"][0]["content"]
    url = next(c["image_url"]["url"] for c in content if c["type"] == "image_url")
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def _text_of(req) -> str:
    return next(c["text"] for c in req["messages"][0]["content"] if c["type"] == "text")


def test_the_family_is_inferred_from_the_served_models_name_or_required():
    assert infer_family("Qwen/Qwen2.5-VL-7B-Instruct") == "qwen2_5_vl"
    assert infer_family("Qwen/Qwen3-VL-8B-Instruct") == "qwen3_vl"
    assert infer_family("Qwen/Qwen3-VL-235B-A22B-Instruct") == "qwen3_vl_moe"
    assert infer_family("Qwen/Qwen2-VL-7B-Instruct") == "qwen2_vl"
    with pytest.raises(ValueError, match="endpoint_family= one of"):
        ServedGrounder("http://127.0.0.1:1/v1", endpoint_model="my-finetune")
    assert ServedGrounder(
        "http://127.0.0.1:1/v1", endpoint_model="my-finetune", endpoint_family="qwen3_vl"
    ).convention == ("relative-1000")


def test_a_real_qwen2_5_vl_answer_comes_back_in_original_pixels_and_the_server_sees_the_promised_image():
    """The Qwen2.5-VL cookbook's answer for the 1024x1024 cakes image (resized by the processor to 1036x1036):
    the client sends the image at 1036x1036 itself, so the server's pixels are the sent image's."""
    entry = REAL["q25_cakes_top_right_brown"]
    seen = []

    def handler(req, headers):
        seen.append((req, _image_of(req).size, _text_of(req)))
        return Reply(200, completion(entry["answer"]))

    with ChatServer(handler) as srv:
        g = ServedGrounder(srv.url, endpoint_model="Qwen/Qwen2.5-VL-7B-Instruct")
        [loc] = g.locate_many([LocateRequest(Image.new("RGB", (1024, 1024)), ["a brown cake on the top right"],
                                             text="cake day", entities=[("top right brown cake", "OTHER",
                                                                         "a brown cake on the top right")])])  # fmt: skip
    req, size, text = seen[0]
    assert size == (1036, 1036) == (entry["resize"]["resized_width"], entry["resize"]["resized_height"])
    assert req["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and req["messages"][0]["role"] == "user"
    assert [c["type"] for c in req["messages"][0]["content"]] == ["image_url", "text"]
    assert "top right brown cake (OTHER)" in text and "bbox_2d" in text
    assert loc.boxes[0] == pytest.approx(entry["expected"][0]["box_original_xyxy"], abs=0.01)


def test_a_real_qwen3_vl_answer_with_skipped_categories(monkeypatch):
    entry = REAL["q3_food_zh_en_names"]
    with ChatServer(lambda r, h: Reply(200, completion(entry["answer"]))) as srv:
        g = ServedGrounder(srv.url, endpoint_model="Qwen/Qwen3-VL-235B-A22B-Instruct")
        size = (entry["image"]["width"], entry["image"]["height"])
        ents = [("Rice", "OTHER", "rice"), ("Lionel Messi", "PER", "a footballer")]
        [loc] = g.locate_many([LocateRequest(Image.new("RGB", size), [d for _, _, d in ents], entities=ents)])
    assert loc.boxes[0] == pytest.approx(entry["expected"][0]["box_original_xyxy"], abs=0.01)
    assert loc.boxes[1] is None and "not mentioned" in loc.notes[1]


def test_served_boxes_equal_the_in_process_grounders_for_the_same_answer(monkeypatch):
    model, proc = tiny_qwen2_5_vl()
    local = Grounder(model, proc)
    ip = proc.image_processor
    min_p = getattr(ip, "min_pixels", None) or ip.size["shortest_edge"]
    max_p = getattr(ip, "max_pixels", None) or ip.size["longest_edge"]
    answer = '[{"bbox_2d": [10, 12, 50, 40], "label": "Obama"}, {"bbox_2d": [0, 0, 30, 20], "label": "NASA"}]'
    tok = proc.tokenizer
    real = model.generate

    def canned(**kw):
        out = real(**{**kw, "max_new_tokens": 1})
        ids = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.sequences = torch.cat([kw["input_ids"], torch.tensor([ids])], dim=1)
        out.scores = tuple(torch.zeros(1, len(tok)) for _ in ids)
        return out

    monkeypatch.setattr(model, "generate", canned)
    ents = [("Obama", "PER", "a man"), ("Paris", "LOC", "a city"), ("NASA", "ORG", "a logo")]
    for size in ((120, 80), (90, 150), (64, 64)):
        req = LocateRequest(
            Image.new("RGB", size, (90, 30, 30)), [d for _, _, d in ents], text="t", entities=ents
        )
        [want] = local.locate_many([req])
        with ChatServer(lambda r, h: Reply(200, completion(answer))) as srv:
            g = ServedGrounder(srv.url, endpoint_model="Qwen/Qwen2.5-VL-3B-Instruct", min_pixels=min_p,
                               max_pixels=max_p, logprobs=False)  # fmt: skip
            [got] = g.locate_many([req])
            sent = _image_of(srv.requests[0]).size
        h, w = smart_resize(size[1], size[0], 28, min_p, max_p)
        assert sent == (w, h)
        assert got.boxes == want.boxes and got.notes == want.notes and want.boxes[0] is not None


def test_box_score_from_the_servers_log_probabilities():
    answer = '[{"bbox_2d": [0, 0, 500, 500], "label": "Obama"}]'
    pieces = ['[{"', "bbox", '_2d": [', "0", ", ", "0", ", ", "500", ", ", "500", '], "label": "Obama"}]']
    assert "".join(pieces) == answer
    lp = [
        {"token": t, "logprob": math.log(0.5 if t in ("0", "500") else 0.9), "top_logprobs": []}
        for t in pieces
    ]
    with ChatServer(lambda r, h: Reply(200, completion(answer, logprobs=lp))) as srv:
        g = ServedGrounder(srv.url, endpoint_model="Qwen/Qwen3-VL-8B-Instruct")
        [loc] = g.locate_many(
            [LocateRequest(Image.new("RGB", (100, 100)), ["a man"], entities=[("Obama", "PER", "a man")])]
        )
        assert srv.requests[0]["logprobs"] is True
    assert loc.boxes[0] == [0.0, 0.0, 50.0, 50.0]
    assert 0.5 < loc.scores[0] < 0.9  # the box's four numbers (0.5) and the separators inside it (0.9)


@pytest.mark.parametrize(
    "fault",
    [Reply(200, raw=b"<html>bad gateway</html>", headers={"Content-Type": "text/html"}),
     Reply(200, raw=b"not json"), Reply(200, {"choices": []}), Reply(429, {"error": "slow down"}),
     Reply(200, raw=b'{"choices": [{"message": {"content": "' + b"x" * (3 << 20) + b'"}}]}'),
     Reply(200, completion("x" * 50), fault="close-mid-body"), Reply(200, raw=b"", fault="endless"),
     Reply(200, completion("x"), fault="drip-body", drip=0.3)],
    ids=["html", "non-json", "no-choices", "429-forever", "3MB", "closed-mid-answer", "endless", "drip"],
)  # fmt: skip
def test_a_server_fault_on_one_image_leaves_the_others_untouched(fault):
    good = '[{"bbox_2d": [0, 0, 500, 500], "label": "Obama"}]'

    def handler(req, headers):
        return fault if _image_of(req).size[0] == 224 else Reply(200, completion(good))

    with ChatServer(handler) as srv:
        g = ServedGrounder({"url": srv.url, "timeout": 3.0, "max_retries": 2, "backoff": 0.01},
                           endpoint_model="Qwen/Qwen3-VL-8B-Instruct")  # fmt: skip
        ents = [("Obama", "PER", "a man")]
        reqs = [LocateRequest(Image.new("RGB", size), ["a man"], entities=ents) for size in ((100, 100), (224, 224),
                                                                                           (120, 120))]  # fmt: skip
        locs = g.locate_many(reqs)
    assert locs[0].boxes[0] == [0.0, 0.0, 50.0, 50.0] and locs[2].boxes[0] == [0.0, 0.0, 60.0, 60.0]
    assert locs[1].boxes == [None] and "gave no answer" in locs[1].notes[0]


# ---------------------------------------------------------------------- entailment
def _logprob_reply(tokens_probs: dict[str, float], chosen: str):
    tops = [{"token": t, "logprob": math.log(p)} for t, p in tokens_probs.items()]
    return completion(chosen, logprobs=[{"token": chosen, "logprob": math.log(tokens_probs.get(chosen, 1e-3)),
                                         "top_logprobs": tops}])  # fmt: skip


def test_p_yes_from_real_logprob_shapes():
    from riveg_hf.serving.client import _parse_completion

    # OpenAI's documented logprobs response (bytes present) and TGI's (no bytes): both read
    for sid in ("openai-apiref-logprobs",):
        body = SERVED[sid]["body"]
        res = _parse_completion(200, json.dumps(body).encode(), 1)
        assert res.ok and res.logprobs and "top_logprobs" in res.logprobs[0]
    mk = lambda toks: _parse_completion(200, json.dumps(_logprob_reply(toks, next(iter(toks)))).encode(), 1)  # noqa: E731
    p, calibrated = p_yes(mk({"Yes": 0.6, " yes": 0.1, "No": 0.2, "Ġno": 0.05}))
    assert calibrated and p == pytest.approx(0.7 / 0.95)
    p, _ = p_yes(mk({"▁No": 0.8, "▁Yes": 0.2}))  # SentencePiece pieces
    assert p == pytest.approx(0.2)
    text_only = _parse_completion(200, json.dumps(completion("Yes.")).encode(), 1)
    assert p_yes(text_only) == (1.0, False)  # no log-probabilities: the answer's word, uncalibrated


def test_served_entailment_scores_every_hypothesis_and_round_trips_in_a_composite(tmp_path, monkeypatch):
    def handler(req, headers):
        text = _text_of(req)
        probs = {"yes": 0.9, "no": 0.1} if "Obama" in text else {"yes": 0.2, "no": 0.8}
        return Reply(200, _logprob_reply(probs, "yes" if probs["yes"] > 0.5 else "no"))

    with ChatServer(handler) as srv:
        pipe = RiVEGPipeline.from_components(recognizer=every_word_recognizer(), entailment=f"endpoint:{srv.url}",
                                             grounder=f"endpoint:{srv.url}", endpoint_model="Qwen/Qwen2.5-VL-7B-Instruct",
                                             entailment_threshold=0.5)  # fmt: skip
        ent = pipe.stages["entailment"]
        [probs] = ent.score_many([(Image.new("RGB", (64, 48)), ["Obama(PER)-a man", "Paris(LOC)-a city"])])
        assert probs[0] == pytest.approx(0.9) and probs[1] == pytest.approx(0.2)
        assert {r["max_tokens"] for r in srv.requests} == {1} and all(r["top_logprobs"] for r in srv.requests)
        monkeypatch.setenv("RIVEG_ENDPOINT_TOKEN", "never-saved")
        pipe.save_pretrained(tmp_path / "c")
        cfg = (tmp_path / "c" / "config.json").read_text()
        assert "never-saved" not in cfg and srv.url in cfg and "qwen2_5_vl" in cfg
        from transformers import pipeline

        again = pipeline("grounded-mner", model=str(tmp_path / "c"), trust_endpoints=True)
        assert type(again.stages["grounder"]).__name__ == "ServedGrounder"
        assert again.stages["entailment"].score(Image.new("RGB", (64, 48)), ["Obama(PER)-x"])[
            0
        ] == pytest.approx(0.9)
        from riveg_hf.cards import composite_card

        assert "**served**" in composite_card(tmp_path / "c", repo_id="me/x").content
