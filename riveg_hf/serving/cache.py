"""The persistent answer cache of the served stages: SQLite, keyed by endpoint + model + request.

A cache must never stop a run, never be trusted blindly, and never touch what is not its own:

* it is **private**: a new cache file is created ``0600`` (and a new folder for it ``0700``): the answers
  hold the users' tweets;
* a file at the cache path that is not a readable cache is **set aside** -- renamed to
  ``<name>.unreadable-<time>`` -- with one warning, and the run goes on with a fresh cache at the same path,
  **only when it is a damaged cache** (empty, an SQLite database, or binary that starts with a NUL byte, as a
  truncated or zeroed file does). A folder, a link to one, a device, or a file of the user's (text, a PDF, a
  zip ...) is **never moved nor written**: the run goes on without a cache and one warning says why and what
  to set (``RIVEG_LLM_CACHE``);
* every wait on SQLite's lock is bounded (:data:`LOCK_TIMEOUT_S`); a cache locked by another process
  for longer is skipped for that read or write (warned once), never waited on;
* every value read back is validated like a server's answer (:func:`checked_value`: a JSON object with a
  string ``text``, ``logprobs`` that are log-probabilities); anything else is a miss, and the row is dropped;
* where the file lives is the user's choice only (``RIVEG_LLM_CACHE`` or an argument): a path recorded
  in a checkpoint is ignored (see :mod:`riveg_hf.serving.client`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

from ..paths import cache_path

__all__ = ["LOCK_TIMEOUT_S", "AnswerCache", "checked_value", "clean_logprobs", "default_cache_path"]

logger = logging.getLogger(__name__)

#: the longest any cache operation waits for SQLite's lock
LOCK_TIMEOUT_S = 2.0
#: the largest value read back (a few answers' worth; an answer itself is capped by ``max_answer_bytes``)
MAX_VALUE_CHARS = 4 << 20
#: a log-probability above this is not one (float rounding gives tiny positive values: clamped to 0)
LOGPROB_TOLERANCE = 1e-4
_SCHEMA = "CREATE TABLE IF NOT EXISTS riveg_answers_v2 (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def default_cache_path() -> Path:
    """``$RIVEG_LLM_CACHE``, else ``~/.cache/riveg-hf/llm-cache.sqlite``."""
    return cache_path("RIVEG_LLM_CACHE", "llm-cache.sqlite")


def _logprob(value: Any) -> float | None:
    """A log-probability (a real number <= 0, -inf allowed), clamped to <= 0; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    if math.isnan(v) or v > LOGPROB_TOLERANCE:
        return None
    return min(v, 0.0)


def clean_logprobs(content: Any, *, strict: bool = False) -> list[dict[str, Any]] | None:
    """``logprobs.content`` (a server's answer or a cached row) with only well-formed entries: a string
    ``token`` and a ``logprob`` that is a log-probability (a real number <= 0; +1000 or NaN is not one).
    None when any generated token's entry is malformed (the caller then has no log-probabilities); a malformed
    ``top_logprobs`` alternative is dropped (``strict``: None too, for a cached row, which this package wrote).

    >>> clean_logprobs([{"token": "yes", "logprob": -0.1, "top_logprobs": [{"token": "no", "logprob": 5}]}])
    [{'token': 'yes', 'logprob': -0.1, 'top_logprobs': []}]
    >>> clean_logprobs([{"token": "yes", "logprob": 1000.0}]) is None
    True
    """
    if not isinstance(content, list):
        return None
    out = []
    for item in content:
        if not isinstance(item, dict) or not isinstance(item.get("token"), str):
            return None
        lp = _logprob(item.get("logprob"))
        if lp is None:
            return None
        tops = []
        raw_tops = item.get("top_logprobs")
        if strict and raw_tops is not None and not isinstance(raw_tops, list):
            return None
        for t in raw_tops if isinstance(raw_tops, list) else []:
            v = (
                _logprob(t.get("logprob"))
                if isinstance(t, dict) and isinstance(t.get("token"), str)
                else None
            )
            if v is not None:
                tops.append({"token": t["token"], "logprob": v})
            elif strict:
                return None
        out.append({"token": item["token"], "logprob": lp, "top_logprobs": tops})
    return out


def checked_value(value: Any) -> dict[str, Any] | None:
    """A cached answer as this package writes it (``text``, ``logprobs``, ``finish_reason``, ``model``),
    validated as a server's answer is, or None."""
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    out: dict[str, Any] = {"text": value["text"], "logprobs": None, "finish_reason": None, "model": None}
    if value.get("logprobs") is not None:
        out["logprobs"] = clean_logprobs(value["logprobs"], strict=True)
        if out["logprobs"] is None:
            return None
    for name in ("finish_reason", "model"):
        v = value.get(name)
        if v is not None and not isinstance(v, str):
            return None
        out[name] = v
    return out


def _create_private(path: Path) -> None:
    """The cache's folder (``0700`` where created) and an empty file ``0600`` (an empty file is an empty
    SQLite database), unless something is already there."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _looks_like_a_damaged_cache(path: Path) -> bool:
    """Whether a regular file at the cache path is (what is left of) a cache: empty, an SQLite database, or
    binary starting with a NUL byte (truncated, zeroed). A user's file (text, a document) is not."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError:
        return False
    return not head or head.startswith(_SQLITE_MAGIC) or head[:1] == b"\x00"


class AnswerCache:
    """``get(key) -> dict | None`` and ``put(key, dict)``; never raises (see the module doc)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.enabled = True
        self._open()

    # ------------------------------------------------------------------ setup
    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)

    def _refuse(self, what: str) -> None:
        self.enabled = False
        self._warn("refused", f"riveg-hf: the answer cache path {self.path} is {what}, not an answer cache: "
                   "riveg-hf does not move nor write it, and runs without a cache; set RIVEG_LLM_CACHE (or "
                   "cache_path=) to a file path of its own")  # fmt: skip

    def _not_a_file(self) -> str | None:
        """What the cache path is when it is not a regular file (nor absent), else None."""
        try:
            st = self.path.stat()  # follows a link: a link to a folder is a folder
        except FileNotFoundError:
            return "a broken link" if self.path.is_symlink() else None
        except OSError as err:
            return f"unreadable ({type(err).__name__})"
        if stat.S_ISDIR(st.st_mode):
            return "a folder" + (" (through a link)" if self.path.is_symlink() else "")
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        return None

    def _open(self) -> None:
        what = self._not_a_file()
        if what is not None:
            self._refuse(what)
            return
        try:
            _create_private(self.path)
            with self._connect() as db:
                db.execute(_SCHEMA)
                db.execute("SELECT key, value FROM riveg_answers_v2 LIMIT 1").fetchall()
            return
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                self._warn("locked", f"riveg-hf: the answer cache {self.path} is locked by another process; "
                           "running without it until it is free")  # fmt: skip
                return
            reason = err
        except (sqlite3.DatabaseError, OSError) as err:
            reason = err
        self._set_aside(reason)

    def _set_aside(self, reason: BaseException) -> None:
        what = self._not_a_file()
        if what is not None:
            self._refuse(what)
            return
        if not self.path.exists():  # nothing there to set aside: it could not be created
            self.enabled = False
            self._warn(
                "disabled", f"riveg-hf: cannot create the answer cache {self.path} ({reason}); no cache"
            )
            return
        if not _looks_like_a_damaged_cache(self.path):
            self._refuse("a file that is not an SQLite database (a file of yours?)")
            return
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            self.path.rename(aside)
        except OSError:
            self.enabled = False
            self._warn("disabled", f"riveg-hf: the answer cache {self.path} cannot be read ({reason}) nor moved "
                       "aside; running without a cache")  # fmt: skip
            return
        self._warn("aside", f"riveg-hf: the answer cache {self.path} could not be read ({reason}); it was moved "
                   f"to {aside} and a new cache is used")  # fmt: skip
        try:
            _create_private(self.path)
            with self._connect() as db:
                db.execute(_SCHEMA)
        except (sqlite3.DatabaseError, OSError) as err:
            self.enabled = False
            self._warn("disabled", f"riveg-hf: cannot create the answer cache {self.path} ({err}); no cache")

    # ------------------------------------------------------------------ use
    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        try:
            with self._lock, self._connect() as db:
                row = db.execute("SELECT value FROM riveg_answers_v2 WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                self._warn("locked", f"riveg-hf: the answer cache {self.path} is locked; skipped")
                return None
            self._set_aside(err)
            return None
        except (sqlite3.DatabaseError, OSError) as err:
            self._set_aside(err)
            return None
        if row is None:
            return None
        value = _checked(row[0])
        if value is None:
            self._warn(
                "bad-row", f"riveg-hf: a value in the answer cache {self.path} has the wrong type; ignored"
            )
            self.delete(key)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            payload = json.dumps(value, ensure_ascii=True, allow_nan=False)
            with self._lock, self._connect() as db:  # one transaction: the row is either there or not
                db.execute(
                    "INSERT OR REPLACE INTO riveg_answers_v2 (key, value) VALUES (?, ?)", (key, payload)
                )
        except (TypeError, ValueError):
            return
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                self._warn("locked", f"riveg-hf: the answer cache {self.path} is locked; skipped")
                return
            self._set_aside(err)
        except (sqlite3.DatabaseError, OSError) as err:
            self._set_aside(err)

    def delete(self, key: str) -> None:
        """Drop one row (a value that did not validate); never raises."""
        if not self.enabled:
            return
        try:
            with self._lock, self._connect() as db:
                db.execute("DELETE FROM riveg_answers_v2 WHERE key = ?", (key,))
        except (sqlite3.DatabaseError, OSError):
            pass

    _delete = delete


def _checked(raw: Any) -> dict[str, Any] | None:
    """A cached value, or None when it is not what this package wrote (see :func:`checked_value`)."""
    if not isinstance(raw, str) or len(raw) > MAX_VALUE_CHARS:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return checked_value(value)
