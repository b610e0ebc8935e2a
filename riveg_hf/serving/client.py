"""One client for OpenAI-compatible chat-completions servers, used by every served stage.

vLLM, SGLang, TGI (Messages API), lmdeploy, llama.cpp's ``llama-server``, Ollama and OpenAI itself all
answer ``POST <base>/v1/chat/completions``. :class:`ChatClient` talks to them for the expander (and the
knowledge writer), the served VLM grounder and the served VLM entailment.

**Why httpx, not the ``openai`` client nor ``huggingface_hub.InferenceClient``.** ``InferenceClient``
treats every request as a Hub request, so ``HF_HUB_OFFLINE=1`` -- the usual setting of an air-gapped
cluster, which governs the Hub and not the user's own server -- refused every URL, loopback included. The
``openai`` client is what the servers document, but its timeout, like every httpx timeout, bounds each
read, not the request: a server that drips one byte a second holds it forever; it reads a whole body
with no size cap; and it validates answers against OpenAI's own schema, which the servers' ``logprobs``
do not always follow. So the client speaks the (small) protocol itself over ``httpx`` (already a
dependency of ``huggingface_hub``), asynchronously on one background event loop, which gives:

* a **total deadline per request** (``timeout``, default 60 s, covering connection, every retry and
  backoff, headers and body, however slowly they drip), and an optional one per batch
  (``batch_timeout``): a request still unfinished then is failed, never waited on;
* a **cap on the answer's size** (``max_answer_bytes``, default 1 MiB, counted while the body streams);
* at most ``concurrency`` requests in flight (default 4), spread round-robin over one or several URLs
  (replicas of one model: ``url`` may be a list);
* **retries** with exponential backoff (and ``Retry-After``) on 429 / 5xx answers and on every
  transport failure (refused, reset, closed mid-body, garbage status line, timeouts), until the request's
  deadline; redirects are not followed (an LLM server does not redirect; ``file://`` and other hosts are
  never reached that way);
* answers that are not a chat completion (HTML, non-JSON, nested 200k deep, an empty choice list, no
  text) are failures: the stage uses its documented fallback for that item, the others are untouched;
* the persistent cache (:mod:`riveg_hf.serving.cache`) keyed by endpoint + model + request.

**Where tokens go.** The bearer token is the ``token`` argument, else ``RIVEG_ENDPOINT_TOKEN``; a
Hugging Face token (``HF_TOKEN`` or the stored ``hf auth login``) is sent **only** to Hugging Face hosts
(``huggingface.co``, ``*.huggingface.co``, ``*.huggingface.cloud``: Inference Providers and Endpoints).
The token is never written into a saved composite, the cache key, a log line nor ``repr``.

**URLs from a checkpoint.** A composite's ``config.json`` can name servers. Loading someone else's
composite must not send your tweets (or a token) to their server, so a client built from a checkpoint
is *untrusted*: it refuses every request (:class:`UntrustedEndpointError`, naming the URL) until the
user opts in for that load -- ``pipeline(..., trust_endpoints=True)`` /
``RiVEGModel.from_pretrained(..., trust_endpoints=True)`` / ``riveg predict --trust-endpoints``, or
``RIVEG_TRUST_ENDPOINTS=1`` (or a comma-separated list of the URLs trusted). A cache path recorded in a
checkpoint is ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .cache import AnswerCache

__all__ = [
    "TRUST_ENV",
    "ChatClient",
    "ChatResult",
    "UntrustedEndpointError",
    "chat_completions_url",
    "checkpoint_endpoint_config",
    "endpoint_token",
    "trusted_by_env",
]

logger = logging.getLogger(__name__)

#: environment variable that trusts servers named by a checkpoint: ``1`` (all) or a comma-separated URL list
TRUST_ENV = "RIVEG_TRUST_ENDPOINTS"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_MAX_ANSWER_BYTES = 1 << 20
_HUB_SUFFIXES = ("huggingface.co", "huggingface.cloud")


class UntrustedEndpointError(PermissionError):
    """A server named by a checkpoint, which the user did not opt in to contact."""


@dataclass
class ChatResult:
    """One answer. ``error`` is None on success, else why it failed (the stage then uses its fallback)."""

    text: str | None = None
    #: ``choices[0].logprobs.content``: one ``{"token", "logprob", "top_logprobs": [...]}`` per generated token
    logprobs: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def chat_completions_url(url: str) -> str:
    """The chat-completions address of a server's base URL.

    >>> chat_completions_url("http://gpu-1:8000/v1"), chat_completions_url("http://gpu-1:8000")
    ('http://gpu-1:8000/v1/chat/completions', 'http://gpu-1:8000/v1/chat/completions')
    """
    u = url.rstrip("/")
    parts = urlsplit(u)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"endpoint URL {url!r} must be http(s)://host[:port][/v1], e.g. http://127.0.0.1:8000/v1 "
            "(the base URL a vLLM / SGLang / TGI server prints when it starts)"
        )
    if parts.username or parts.password:
        raise ValueError(f"endpoint URL {url!r}: put credentials in RIVEG_ENDPOINT_TOKEN, not in the URL")
    if u.endswith("/chat/completions"):
        return u
    if u.endswith("/v1"):
        return u + "/chat/completions"
    return u + "/v1/chat/completions"


def _is_hub_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return any(host == s or host.endswith("." + s) for s in _HUB_SUFFIXES)


def endpoint_token(urls: Sequence[str], token: str | None = None) -> str | None:
    """The bearer token for ``urls`` (see the module doc: a Hub token only ever goes to Hub hosts)."""
    if token:
        return token
    env = os.environ.get("RIVEG_ENDPOINT_TOKEN")
    if env:
        return env
    if urls and all(_is_hub_host(u) for u in urls):
        from huggingface_hub import get_token

        return get_token()
    return None


def trusted_by_env(urls: Sequence[str]) -> bool:
    """Whether ``RIVEG_TRUST_ENDPOINTS`` trusts every one of ``urls``."""
    value = os.environ.get(TRUST_ENV, "").strip()
    if value.lower() in ("1", "true", "yes", "all"):
        return True
    listed = {v.strip().rstrip("/") for v in value.split(",") if v.strip()}
    return bool(urls) and all(u.rstrip("/") in listed for u in urls)


#: the settings a checkpoint may record for a served stage; anything else in its config (a token, a cache
#: path, ``trusted``) is dropped on load
CHECKPOINT_KEYS = ("url", "model", "timeout", "batch_timeout", "concurrency", "max_retries", "backoff",
                   "temperature", "max_answer_bytes")  # fmt: skip


def checkpoint_endpoint_config(cfg: Any, *, trusted: bool) -> dict[str, Any]:
    """A served stage's settings as read from a checkpoint: only :data:`CHECKPOINT_KEYS`, ``trusted`` as the
    user said for this load (never as the checkpoint says), no cache path (the user's cache folder)."""
    if isinstance(cfg, str):
        cfg = {"url": cfg}
    if not isinstance(cfg, dict) or not cfg.get("url"):
        raise ValueError(f"a served stage's 'endpoint' in config.json must be {{'url': ...}}, got {cfg!r}")
    out = {k: cfg[k] for k in CHECKPOINT_KEYS if cfg.get(k) is not None}
    out["trusted"] = bool(trusted)
    return out


# ---------------------------------------------------------------------- the event loop
class _Loop:
    """One background asyncio loop per process, shared by every client (sync callers submit to it)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():  # a forked child needs its own thread
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="riveg-http", daemon=True).start()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop

    @classmethod
    def run(cls, coro):
        return asyncio.run_coroutine_threadsafe(coro, cls.get()).result()


class _Failure(Exception):
    def __init__(self, reason: str, retry: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry, self.retry_after = reason, retry, retry_after


# ---------------------------------------------------------------------- the client
@dataclass
class ChatClient:
    """Chat completions from one server (or several replicas); see the module doc.

    ``chat_many(requests)`` -> one :class:`ChatResult` per request, in order, never raising for what a
    server does (only :class:`UntrustedEndpointError` for a server the user did not opt in to).
    A request is ``{"messages": [...], "max_tokens": N, "logprobs": bool, "top_logprobs": K, ...}``.
    """

    url: str | Sequence[str]
    model: str | None = None
    token: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    batch_timeout: float | None = None
    concurrency: int = 4
    max_retries: int = 4
    backoff: float = 0.5
    temperature: float = 0.0
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    cache_path: str | os.PathLike | None = None
    use_cache: bool = True
    #: False for a client built from a checkpoint's URL: it refuses every request until :meth:`trust`
    trusted: bool = True

    def __post_init__(self):
        urls = [self.url] if isinstance(self.url, str) else list(self.url)
        urls = [u.strip() for part in urls for u in str(part).split(",") if u.strip()]
        if not urls:
            raise ValueError("ChatClient needs at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.url = self.urls[0] if len(self.urls) == 1 else list(self.urls)
        self._posts = [chat_completions_url(u) for u in self.urls]
        self.model = self.model or os.environ.get("RIVEG_ENDPOINT_MODEL") or None
        self._token = endpoint_token(self.urls, self.token)
        self.token = None  # kept only privately, never in repr / config
        self.timeout = float(self.timeout)
        self.concurrency = max(1, int(self.concurrency))
        self.max_retries = max(0, int(self.max_retries))
        self.trusted = bool(self.trusted) or trusted_by_env(self.urls)
        self.cache = AnswerCache(self.cache_path) if self.use_cache else None
        self.stats = {"requests": 0, "retries": 0, "cached": 0, "failed": 0}
        self._rr = itertools.count()
        self._clients: dict[int, tuple[Any, asyncio.Semaphore]] = {}

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        """What a saved composite records: URL(s), model and limits -- never the token nor the cache path."""
        return {
            "url": self.urls[0] if len(self.urls) == 1 else list(self.urls),
            "model": self.model,
            "timeout": self.timeout,
            "concurrency": self.concurrency,
        }

    def trust(self) -> None:
        """The user opted in to contact these URLs (see the module doc)."""
        self.trusted = True

    def check_trusted(self) -> None:
        if not self.trusted:
            raise UntrustedEndpointError(
                f"the checkpoint names the server {', '.join(self.urls)}; riveg-hf does not send your inputs (or "
                "a token) to a server named by a checkpoint unless you opt in for this load: pass "
                "trust_endpoints=True (pipeline(...) / RiVEGModel.from_pretrained / riveg predict "
                f"--trust-endpoints) or set {TRUST_ENV}=1 (or to a comma-separated list of the URLs you trust)."
            )

    def key(self, request: dict[str, Any]) -> str:
        """Cache key: the endpoint (sorted URLs), the model and the request (never the token)."""
        body = {"endpoint": sorted(self.urls), "model": self.model, "request": self._body(request)}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode("utf-8")).hexdigest()

    def _body(self, request: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in request.items() if v is not None}
        body.setdefault("temperature", self.temperature)
        if self.model:
            body["model"] = self.model
        body["stream"] = False
        return body

    # ------------------------------------------------------------------ calling
    def chat(self, request: dict[str, Any]) -> ChatResult:
        return self.chat_many([request])[0]

    def chat_many(self, requests: Sequence[dict[str, Any]]) -> list[ChatResult]:
        self.check_trusted()
        if not requests:
            return []
        results: list[ChatResult | None] = [None] * len(requests)
        todo = []
        for i, req in enumerate(requests):
            hit = self.cache.get(self.key(req)) if self.cache is not None else None
            if hit is not None:
                self.stats["cached"] += 1
                results[i] = ChatResult(
                    text=hit["text"], logprobs=hit.get("logprobs"), finish_reason=hit.get("finish_reason"),
                    cached=True,
                )  # fmt: skip
            else:
                todo.append(i)
        if todo:
            answers = _Loop.run(self._run_batch([requests[i] for i in todo]))
            for i, res in zip(todo, answers):
                results[i] = res
                if res.ok and res.text and res.text.strip() and self.cache is not None:
                    self.cache.put(
                        self.key(requests[i]),
                        {"text": res.text, "logprobs": res.logprobs, "finish_reason": res.finish_reason},
                    )
        return results  # type: ignore[return-value]

    async def _run_batch(self, requests: list[dict[str, Any]]) -> list[ChatResult]:
        import httpx

        pid = os.getpid()
        if pid not in self._clients:  # one connection pool and one in-flight limit per client and process
            limits = httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            )
            client = httpx.AsyncClient(
                limits=limits, follow_redirects=False, trust_env=False,
                timeout=httpx.Timeout(self.timeout),
            )  # fmt: skip
            self._clients = {pid: (client, asyncio.Semaphore(self.concurrency))}
        client, sem = self._clients[pid]
        batch_deadline = time.monotonic() + self.batch_timeout if self.batch_timeout else None

        async def one(req):
            async with sem:
                if batch_deadline is not None and time.monotonic() >= batch_deadline:
                    return ChatResult(
                        error=f"batch deadline of {self.batch_timeout:g} s passed before it ran"
                    )
                return await self._request(client, req, batch_deadline)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _request(self, client, req: dict[str, Any], batch_deadline: float | None) -> ChatResult:
        deadline = time.monotonic() + self.timeout
        if batch_deadline is not None:
            deadline = min(deadline, batch_deadline)
        body = self._body(req)
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "riveg-hf"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        last = "no attempt"
        attempt = 0
        for attempt in range(1, self.max_retries + 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            post = self._posts[next(self._rr) % len(self._posts)]
            self.stats["requests"] += 1
            try:
                status, raw = await asyncio.wait_for(self._post(client, post, body, headers), remaining)
                result = _parse_completion(status, raw, attempt)
                if not result.ok:
                    self.stats["failed"] += 1
                return result
            except asyncio.TimeoutError:
                last = f"no complete answer within the {self.timeout:g} s deadline"
                break
            except _Failure as f:
                last = f.reason
                if not f.retry or attempt > self.max_retries:
                    break
                pause = self.backoff * (2 ** (attempt - 1)) * (0.75 + 0.5 * random.random())
                if f.retry_after is not None:
                    pause = max(pause, f.retry_after)
                if time.monotonic() + pause >= deadline:
                    break
                self.stats["retries"] += 1
                await asyncio.sleep(pause)
        self.stats["failed"] += 1
        logger.warning("riveg-hf: %s: %s (after %d attempt(s))", self.urls[0], last, attempt)
        return ChatResult(error=last, attempts=attempt)

    async def _post(self, client, url: str, body: dict, headers: dict) -> tuple[int, bytes]:
        import httpx

        try:
            async with client.stream("POST", url, json=body, headers=headers) as resp:
                if 300 <= resp.status_code < 400:
                    raise _Failure(
                        f"HTTP {resp.status_code}: the server redirected (not followed)", retry=False
                    )
                if resp.status_code in RETRY_STATUSES or resp.status_code >= 500:
                    after = _retry_after(resp.headers.get("Retry-After"))
                    head = b""
                    async for chunk in resp.aiter_bytes():
                        head += chunk
                        if len(head) >= 4096:
                            break
                    if (
                        b"insufficient_quota" in head
                    ):  # OpenAI's 429 for an exhausted quota: waiting won't help
                        raise _Failure("HTTP 429 insufficient_quota (not retried)", retry=False)
                    raise _Failure(f"HTTP {resp.status_code}", retry=True, retry_after=after)
                chunks, n = [], 0
                async for chunk in resp.aiter_bytes():
                    n += len(chunk)
                    if n > self.max_answer_bytes:
                        raise _Failure(
                            f"the answer is larger than {self.max_answer_bytes:,} bytes", retry=False
                        )
                    chunks.append(chunk)
                return resp.status_code, b"".join(chunks)
        except httpx.TransportError as err:  # refused, reset, closed mid-body, bad status line, timeouts
            raise _Failure(f"{type(err).__name__}: {err or 'transport error'}", retry=True) from None
        except httpx.HTTPError as err:  # anything else httpx raises (decoding, invalid URL ...)
            raise _Failure(f"{type(err).__name__}: {err}", retry=False) from None

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        entry = clients.get(os.getpid())
        if entry is not None:
            _Loop.run(entry[0].aclose())

    def __repr__(self) -> str:
        return f"ChatClient(url={self.urls!r}, model={self.model!r}, trusted={self.trusted})"


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), 60.0) if value is not None else None
    except ValueError:
        return None


def _parse_completion(status: int, raw: bytes, attempt: int) -> ChatResult:
    """A chat-completion body -> ChatResult; anything else -> a failed ChatResult (never raises)."""
    if status != 200:
        return ChatResult(error=f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}", attempts=attempt)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ChatResult(error=f"the answer is not JSON: {raw[:80]!r}", attempts=attempt)
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content")
        if isinstance(text, list):  # content parts (some servers)
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if not isinstance(text, str):
            return ChatResult(error="the answer has no text content", attempts=attempt)
        lp = choice.get("logprobs")
        content = lp.get("content") if isinstance(lp, dict) else None
        logprobs = _clean_logprobs(content)
        fr = choice.get("finish_reason")
        return ChatResult(
            text=text, logprobs=logprobs, finish_reason=fr if isinstance(fr, str) else None, attempts=attempt
        )
    except (KeyError, IndexError, TypeError, AttributeError):
        return ChatResult(
            error="the answer is not a chat completion (no choices[0].message)", attempts=attempt
        )


def _clean_logprobs(content: Any) -> list[dict[str, Any]] | None:
    """``logprobs.content`` with only well-typed entries (token: str, logprob: finite number)."""
    import math

    if not isinstance(content, list):
        return None
    out = []
    for item in content:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            return None
        lp = item.get("logprob")
        if not isinstance(lp, (int, float)) or isinstance(lp, bool) or math.isnan(lp):
            return None
        tops = []
        for t in item.get("top_logprobs") or []:
            if isinstance(t, dict) and isinstance(t.get("token"), str):
                v = t.get("logprob")
                if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
                    tops.append({"token": t["token"], "logprob": float(v)})
        out.append({"token": item["token"], "logprob": float(lp), "top_logprobs": tops})
    return out
