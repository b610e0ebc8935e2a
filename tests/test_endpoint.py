"""The expander on an LLM server: a real HTTP server on 127.0.0.1 speaking OpenAI chat-completions, with a
429, a 500, a garbage answer, slow answers (concurrency), and the on-disk cache across runs."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from riveg_hf import RiVEGPipeline
from riveg_hf.stages import Expander
from riveg_hf.stages.expander import ExpansionRequest


class ChatServer:
    def __init__(self):
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = self.max_in_flight = 0
        self.failed_once: set[str] = set()
        lock = threading.Lock()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with lock:
                    srv.requests.append(body)
                    srv.auth.append(self.headers.get("Authorization"))
                    srv.in_flight += 1
                    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
                try:
                    time.sleep(0.05)
                    entity = prompt.rsplit("Entity: ", 1)[-1].split(" (")[0]
                    if entity in ("Obama", "Paris") and entity not in srv.failed_once:
                        srv.failed_once.add(entity)
                        status = 429 if entity == "Obama" else 500
                        return self._send(status, b'{"error": "try again"}')
                    if entity == "Garbage":
                        return self._send(200, b"<html>not json</html>")
                    answer = {"choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": f"a photo of {entity}"}}],
                              "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model")}  # fmt: skip
                    self._send(200, json.dumps(answer).encode())
                finally:
                    with lock:
                        srv.in_flight -= 1

            def _send(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path):
    # the Hub's offline variables govern the Hub, not the user's own server: they stay set here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("RIVEG_LLM_CACHE", str(tmp_path / "cache.sqlite"))
    monkeypatch.setenv("RIVEG_ENDPOINT_MODEL", "llama-test")
    monkeypatch.setenv("RIVEG_ENDPOINT_TOKEN", "secret-token")
    srv = ChatServer()
    yield srv
    srv.close()


def _requests(names):
    return [ExpansionRequest(n, "PER", f"{n} today") for n in names]


def test_endpoint_expander_retries_falls_back_caches_and_limits_concurrency(server):
    exp = Expander(endpoint={"url": server.url, "concurrency": 2, "backoff": 0.01})
    names = ["Obama", "Paris", "Garbage", "NASA", "Rome", "Oslo"]
    got = exp.describe(_requests(names))
    assert got[0] == ("a photo of Obama", "llm") and got[1] == (
        "a photo of Paris",
        "llm",
    )  # after a 429 / a 500
    assert got[2] == ("Garbage, a person", "fallback")  # not a chat completion: the template, nothing cached
    assert [d for d, _ in got[3:]] == ["a photo of NASA", "a photo of Rome", "a photo of Oslo"]
    assert server.max_in_flight <= 2
    assert {r["model"] for r in server.requests} == {"llama-test"}
    assert set(server.auth) == {"Bearer secret-token"}
    assert len(server.requests) == 8  # six prompts, the 429 and the 500 each retried once
    assert exp.endpoint.stats["retries"] == 2 and exp.endpoint.stats["failed"] == 1
    # a new expander (a rerun of the dataset) asks nothing again except the garbage one
    again = Expander(endpoint={"url": server.url, "concurrency": 2, "backoff": 0.01})
    before = len(server.requests)
    got2 = again.describe(_requests(names))
    assert [d for d, _ in got2] == [d for d, _ in got]
    assert len(server.requests) - before == 1 and again.endpoint.stats["cached"] == 5


def test_endpoint_expander_in_a_saved_composite_without_the_token(server, dummy_dir, tmp_path):
    pipe = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"], expander=f"endpoint:{server.url}"
    )
    assert pipe.stages["expander"].has_llm
    pipe.save_pretrained(tmp_path / "c")
    text = (tmp_path / "c" / "config.json").read_text()
    assert server.url in text and "secret-token" not in text
    from transformers import pipeline

    # a URL from a checkpoint is contacted only with the user's opt-in for that load
    before = len(server.requests)
    with pytest.raises(PermissionError, match="trust_endpoints=True"):
        pipeline("grounded-mner", model=str(tmp_path / "c"))
    assert len(server.requests) == before
    again = pipeline("grounded-mner", model=str(tmp_path / "c"), trust_endpoints=True)
    assert again.stages["expander"].endpoint.url == server.url
    assert again.stages["expander"].describe(_requests(["Rome"])) == [("a photo of Rome", "llm")]
    with pytest.raises(ValueError, match="for the expander, the grounder and the entailment"):
        RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"], segmenter=f"endpoint:{server.url}")
    with pytest.raises(ValueError, match="endpoint_family"):  # "llama-test" names no vision-language family
        RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"], grounder=f"endpoint:{server.url}")
