"""A chat LLM behind a server as the expander's (and the knowledge writer's) language model.

RiVEG wrote its entity expansions with ChatGPT; users run large LLMs behind TGI, vLLM, any
OpenAI-compatible server or Inference Providers. :class:`ChatEndpoint` talks to them through
``huggingface_hub.InferenceClient`` (``chat_completion``), with:

* **concurrency** limited to ``concurrency`` requests in flight;
* **retries** with exponential backoff on 429 and 5xx answers and on connection errors (``max_retries``);
* a per-request **timeout**;
* a persistent **on-disk cache** (SQLite, atomic writes) keyed by the SHA-256 of (model, messages,
  request parameters), so a rerun over a dataset never asks twice; ``RIVEG_LLM_CACHE`` or ``cache_path``
  choose the file (default ``~/.cache/riveg-hf/llm-cache.sqlite``);
* answers that are not a chat completion (garbage, empty) give ``""``, which the expander replaces
  with its template description; nothing is cached for them.

Configuration: ``RiVEGPipeline.from_components(..., expander="endpoint:http://host:8080/v1")``; the model
name comes from ``RIVEG_ENDPOINT_MODEL`` (or ``endpoint_model=``) and the token from ``RIVEG_ENDPOINT_TOKEN``
or ``HF_TOKEN`` -- the token is never written into a saved composite.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .paths import cache_path

__all__ = ["ChatEndpoint", "default_cache_path"]

RETRY_STATUSES = {429, 500, 502, 503, 504}


def default_cache_path() -> Path:
    """``$RIVEG_LLM_CACHE``, else ``~/.cache/riveg-hf/llm-cache.sqlite``."""
    return cache_path("RIVEG_LLM_CACHE", "llm-cache.sqlite")


class _DiskCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")

    def _connect(self):
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> str | None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, answer: str) -> None:
        with self._lock, self._connect() as db:  # one transaction: the row is either there or not
            db.execute("INSERT OR REPLACE INTO answers (key, answer) VALUES (?, ?)", (key, answer))


class ChatEndpoint:
    """``complete(prompts)`` -> one answer per prompt from a chat-completions server (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
        concurrency: int = 4,
        max_retries: int = 4,
        backoff: float = 0.5,
        temperature: float = 0.0,
        cache_path: str | os.PathLike | None = None,
    ):
        from huggingface_hub import InferenceClient

        self.url = url
        self.model = model or os.environ.get("RIVEG_ENDPOINT_MODEL") or None
        self.timeout = float(timeout)
        self.concurrency = max(1, int(concurrency))
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.temperature = float(temperature)
        token = token or os.environ.get("RIVEG_ENDPOINT_TOKEN") or os.environ.get("HF_TOKEN")
        self.client = InferenceClient(base_url=url, api_key=token, timeout=self.timeout)
        self.cache = _DiskCache(Path(cache_path) if cache_path else default_cache_path())
        self.stats = {"requests": 0, "retries": 0, "cached": 0, "failed": 0}

    def config(self) -> dict[str, Any]:
        """What a saved composite records (never the token)."""
        return {
            "url": self.url,
            "model": self.model,
            "timeout": self.timeout,
            "concurrency": self.concurrency,
        }

    def _key(self, messages: list[dict], max_tokens: int) -> str:
        request = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode("utf-8")).hexdigest()

    def _ask(self, prompt: str, max_tokens: int) -> str:
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        messages = [{"role": "user", "content": prompt}]
        key = self._key(messages, max_tokens)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats["cached"] += 1
            return cached
        for attempt in range(self.max_retries + 1):
            self.stats["requests"] += 1
            try:
                out = self.client.chat_completion(
                    messages=messages, model=self.model, max_tokens=max_tokens, temperature=self.temperature
                )
                answer = out.choices[0].message.content
                if not isinstance(answer, str) or not answer.strip():
                    raise ValueError("empty answer")
            except OfflineModeIsEnabled:
                raise OSError(
                    f"the expander's endpoint {self.url} cannot be reached with HF_HUB_OFFLINE=1; unset it to use an "
                    "LLM server (or use a local expander model)."
                ) from None
            except HfHubHTTPError as err:
                status = getattr(getattr(err, "response", None), "status_code", None)
                if status in RETRY_STATUSES and attempt < self.max_retries:
                    self.stats["retries"] += 1
                    time.sleep(self.backoff * (2**attempt))
                    continue
                self.stats["failed"] += 1
                return ""
            except (OSError, TimeoutError) as err:  # connection refused, reset, timed out
                if attempt < self.max_retries and not isinstance(err, sqlite3.Error):
                    self.stats["retries"] += 1
                    time.sleep(self.backoff * (2**attempt))
                    continue
                self.stats["failed"] += 1
                return ""
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):  # not a chat completion
                self.stats["failed"] += 1
                return ""
            self.cache.put(key, answer)
            return answer
        self.stats["failed"] += 1
        return ""

    def complete(self, prompts: Sequence[str], max_tokens: int = 64) -> list[str]:
        """Answers in the order of ``prompts``, at most ``concurrency`` requests in flight."""
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._ask(p, max_tokens), prompts))
