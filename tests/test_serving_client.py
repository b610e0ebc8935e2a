"""The one client of every served stage (riveg_hf.serving.ChatClient), against real HTTP servers on 127.0.0.1
that misbehave in every way a server can: drips, resets, garbage, redirects, floods, and broken caches.
The suite runs with HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 set: the user's own server must still work."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time

import pytest

from riveg_hf.serving import ChatClient, UntrustedEndpointError, endpoint_token
from riveg_hf.serving.cache import AnswerCache

from .servers import ChatServer, Reply, completion

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("RIVEG_LLM_CACHE", str(tmp_path / "cache.sqlite"))
    for var in ("RIVEG_ENDPOINT_TOKEN", "RIVEG_ENDPOINT_MODEL", "RIVEG_TRUST_ENDPOINTS", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def _req(text="hello", **kw):
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 8, **kw}


def _client(url, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("use_cache", False)
    return ChatClient(url, **kw)


def test_works_with_the_hub_offline_and_sends_the_openai_request():
    with ChatServer(lambda req, h: Reply(200, completion("an answer"))) as srv:
        c = _client(srv.url, model="Qwen/Qwen2.5-7B-Instruct")
        res = c.chat(_req())
        assert res.ok and res.text == "an answer" and res.finish_reason == "stop"
        assert srv.paths == ["/v1/chat/completions"]
        body = srv.requests[0]
        assert body["model"] == "Qwen/Qwen2.5-7B-Instruct" and body["messages"] == MSG
        assert body["max_tokens"] == 8 and body["stream"] is False and body["temperature"] == 0.0


@pytest.mark.parametrize("fault", ["drip-headers", "drip-body"])
def test_a_server_that_drips_bytes_is_cut_at_the_total_deadline(fault):
    # one byte every 0.3 s: every read is quick, so a per-read timeout would wait for minutes
    with ChatServer(lambda req, h: Reply(200, completion("x" * 200), fault=fault, drip=0.3)) as srv:
        c = _client(srv.url, timeout=2.0, max_retries=3)
        t0 = time.monotonic()
        res = c.chat(_req())
        took = time.monotonic() - t0
    assert not res.ok and "deadline" in res.error
    assert took < 4.0, took


@pytest.mark.parametrize("fault", ["reset", "close-mid-body", "garbage-status", "close"])
def test_transport_faults_are_retried_then_fail_that_item_only(fault):
    def handler(req, h):
        if req["messages"][0]["content"] == "bad":
            return Reply(200, completion("never seen"), fault=fault)
        return Reply(200, completion("fine"))

    with ChatServer(handler) as srv:
        c = _client(srv.url, max_retries=2, timeout=10)
        res = c.chat_many([_req("good"), _req("bad"), _req("good too")])
        bad = [r for r in srv.requests if r["messages"][0]["content"] == "bad"]
    assert [r.text for r in (res[0], res[2])] == ["fine", "fine"]
    assert not res[1].ok and res[1].attempts == 3
    assert len(bad) == 3  # the first try and two retries
    assert c.stats["retries"] == 2 and c.stats["failed"] == 1


def test_connection_refused_is_retried_and_bounded():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = _client(f"http://127.0.0.1:{port}/v1", max_retries=3, timeout=5)
    res = c.chat(_req())
    assert not res.ok and res.attempts == 4 and "Connect" in res.error


def test_redirects_are_not_followed_neither_to_file_urls_nor_to_other_hosts():
    with ChatServer(lambda req, h: Reply(200, completion("private"))) as other:
        targets = iter(["file:///etc/passwd", other.url + "/chat/completions", "/v1/chat/completions"])

        def handler(req, h):
            return Reply(302, {}, headers={"Location": next(targets)})

        with ChatServer(handler) as srv:
            c = _client(srv.url, max_retries=2)
            results = [c.chat(_req(str(i))) for i in range(3)]
        assert all(not r.ok and "redirect" in r.error for r in results)
        assert len(srv.requests) == 3 and other.requests == []  # one request each, no retry, no hop


def test_429_forever_ends_at_the_deadline_and_honours_retry_after():
    with ChatServer(lambda req, h: Reply(429, {"error": "slow down"}, headers={"Retry-After": "0.4"})) as srv:
        c = _client(srv.url, timeout=1.5, max_retries=10)
        t0 = time.monotonic()
        res = c.chat(_req())
        took = time.monotonic() - t0
        n = len(srv.requests)
    assert not res.ok and "429" in res.error
    assert took < 2.5 and 2 <= n <= 4  # Retry-After 0.4 s between tries, within the 1.5 s deadline


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, raw=b"<html><body>502 Bad Gateway</body></html>", headers={"Content-Type": "text/html"}),
        Reply(200, raw=b"not json at all"),
        Reply(200, {"id": "x", "object": "chat.completion", "choices": []}),
        Reply(200, {"choices": [{"message": {"role": "assistant", "content": None}}]}),
        Reply(200, raw=b"[" * 200_000 + b"]" * 200_000),
        Reply(200, raw=b'{"choices": [{"message": {"content": "' + b"a" * (50 << 20) + b'"}}]}'),
        Reply(200, raw=b"", fault="endless"),
    ],
    ids=["html", "non-json", "no-choices", "null-content", "deep-nesting", "50MB", "endless"],
)
def test_answers_that_are_not_a_chat_completion_fail_that_item_without_raising(reply):
    def handler(req, h):
        return reply if req["messages"][0]["content"] == "bad" else Reply(200, completion("fine"))

    with ChatServer(handler) as srv:
        c = _client(srv.url, max_retries=0, timeout=20)
        t0 = time.monotonic()
        res = c.chat_many([_req("bad"), _req("good")])
        took = time.monotonic() - t0
    assert not res[0].ok and res[1].text == "fine"
    assert took < 15


def test_concurrency_limit_holds_across_the_batch():
    with ChatServer(lambda req, h: Reply(200, completion("ok"), delay=0.1)) as srv:
        c = _client(srv.url, concurrency=3)
        res = c.chat_many([_req(str(i)) for i in range(12)])
        assert all(r.ok for r in res) and srv.max_in_flight == 3


def test_replicas_share_the_requests():
    with (
        ChatServer(lambda r, h: Reply(200, completion("a"))) as a,
        ChatServer(lambda r, h: Reply(200, completion("b"))) as b,
    ):
        c = _client([a.url, b.url], concurrency=2)
        res = c.chat_many([_req(str(i)) for i in range(6)])
        assert all(r.ok for r in res) and len(a.requests) == 3 and len(b.requests) == 3
        # a replica that is down: its requests go to the other on retry
        b.close()
        c2 = _client([a.url, b.url], max_retries=2)
        assert all(r.ok for r in c2.chat_many([_req(f"x{i}") for i in range(4)]))


def test_batch_deadline_fails_what_has_not_finished():
    with ChatServer(lambda req, h: Reply(200, completion("ok"), delay=0.5)) as srv:
        c = _client(srv.url, concurrency=1, batch_timeout=1.2, timeout=30)
        t0 = time.monotonic()
        res = c.chat_many([_req(str(i)) for i in range(6)])
        took = time.monotonic() - t0
    assert sum(r.ok for r in res) == 2 and all("deadline" in r.error for r in res if not r.ok)
    assert took < 2.5


# ---------------------------------------------------------------------- tokens
def test_tokens_go_only_where_the_user_sent_them(monkeypatch, tmp_path):
    token_file = tmp_path / "hf" / "token"
    token_file.parent.mkdir()
    token_file.write_text("hf_stored_login_token")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(token_file))  # `hf auth login`'s file
    monkeypatch.setenv("HF_TOKEN", "hf_env_token")
    with ChatServer() as srv:
        _client(srv.url).chat(_req())
        monkeypatch.setenv("RIVEG_ENDPOINT_TOKEN", "endpoint-secret")
        _client(srv.url).chat(_req())
        c = _client(srv.url, token="explicit")
        c.chat(_req())
        auth = [h.get("authorization") for h in srv.headers]
    assert auth == [None, "Bearer endpoint-secret", "Bearer explicit"]  # never a Hub token to 127.0.0.1
    assert "explicit" not in repr(c) and "explicit" not in json.dumps(c.config())
    monkeypatch.delenv("RIVEG_ENDPOINT_TOKEN")
    assert endpoint_token(["https://router.huggingface.co/v1"]) == "hf_env_token"
    assert endpoint_token(["https://x.us-east-1.aws.endpoints.huggingface.cloud/v1"]) == "hf_env_token"
    assert endpoint_token(["https://huggingface.co.evil.example/v1"]) is None
    monkeypatch.delenv("HF_TOKEN")
    assert endpoint_token(["https://router.huggingface.co/v1"]) == "hf_stored_login_token"
    assert endpoint_token(["http://127.0.0.1:8000/v1"]) is None


def test_an_untrusted_client_sends_nothing():
    with ChatServer() as srv:
        c = _client(srv.url, trusted=False)
        with pytest.raises(UntrustedEndpointError, match=srv.url.replace(".", r"\.")):
            c.chat(_req())
        assert srv.requests == []


# ---------------------------------------------------------------------- cache
def test_the_cache_is_keyed_by_endpoint(tmp_path):
    path = tmp_path / "shared.sqlite"
    with (
        ChatServer(lambda r, h: Reply(200, completion("from A"))) as a,
        ChatServer(lambda r, h: Reply(200, completion("from B"))) as b,
    ):
        assert ChatClient(a.url, cache_path=path).chat(_req()).text == "from A"
        assert ChatClient(b.url, cache_path=path).chat(_req()).text == "from B"
        again = ChatClient(a.url, cache_path=path).chat(_req())
        assert again.text == "from A" and again.cached
        assert len(a.requests) == 1 and len(b.requests) == 1


@pytest.mark.parametrize("damage", ["truncated", "foreign-db", "foreign-schema", "not-sqlite", "directory"])
def test_an_unreadable_cache_is_set_aside_with_a_warning_and_the_run_goes_on(tmp_path, damage, caplog):
    path = tmp_path / "cache.sqlite"
    with ChatServer(lambda r, h: Reply(200, completion("answer"))) as srv:
        ChatClient(srv.url, cache_path=path).chat(_req())
        if damage == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        elif damage == "foreign-db":
            path.unlink()
            with sqlite3.connect(path) as db:
                db.execute("CREATE TABLE riveg_answers_v2 (a INTEGER)")
        elif damage == "foreign-schema":
            path.unlink()
            with sqlite3.connect(path) as db:
                db.execute("CREATE TABLE riveg_answers_v2 (key TEXT, other BLOB)")
        elif damage == "not-sqlite":
            path.write_bytes(b"\x00garbage" * 1000)
        else:
            path.unlink()
            path.mkdir()
        with caplog.at_level(logging.WARNING):
            res = ChatClient(srv.url, cache_path=path).chat(_req())
    assert res.ok and res.text == "answer"
    assert any("answer cache" in r.getMessage() for r in caplog.records)
    if damage != "directory":
        assert list(tmp_path.glob("cache.sqlite.unreadable-*"))


def test_wrong_typed_cache_values_are_ignored(tmp_path):
    path = tmp_path / "cache.sqlite"
    with ChatServer(lambda r, h: Reply(200, completion("fresh"))) as srv:
        c = ChatClient(srv.url, cache_path=path)
        key = c.key(_req())
        for bad in ['{"text": 5}', "[1, 2]", '{"text": "x", "logprobs": "no"}', "not json", "[" * 100_000]:
            with sqlite3.connect(path) as db:
                db.execute("INSERT OR REPLACE INTO riveg_answers_v2 VALUES (?, ?)", (key, bad))
            res = ChatClient(srv.url, cache_path=path).chat(_req())
            assert res.text == "fresh" and not res.cached


def test_a_locked_cache_is_skipped_not_waited_on(tmp_path):
    path = tmp_path / "cache.sqlite"
    AnswerCache(path)
    holder = sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with ChatServer(lambda r, h: Reply(200, completion("answer"))) as srv:
            t0 = time.monotonic()
            res = ChatClient(srv.url, cache_path=path).chat(_req())
            took = time.monotonic() - t0
    finally:
        holder.rollback()
        holder.close()
    assert res.ok and res.text == "answer" and took < 10


def test_many_threads_share_one_client():
    with ChatServer(lambda r, h: Reply(200, completion(r["messages"][0]["content"].upper()))) as srv:
        c = _client(srv.url, concurrency=2)
        out: dict[int, list] = {}

        def work(k):
            out[k] = [r.text for r in c.chat_many([_req(f"t{k}-{i}") for i in range(3)])]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out == {k: [f"T{k}-{i}" for i in range(3)] for k in range(4)}
        assert srv.max_in_flight <= 2


def test_an_exhausted_quota_is_not_retried():
    """OpenAI answers 429 both for a rate limit (retry) and for an exhausted quota (not): the body says which."""
    body = {
        "error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": None}
    }
    with ChatServer(lambda r, h: Reply(429, body)) as srv:
        res = _client(srv.url, max_retries=5).chat(_req())
        assert not res.ok and "insufficient_quota" in res.error and len(srv.requests) == 1
