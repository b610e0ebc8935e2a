"""The persistent answer cache of the served stages: SQLite, keyed by endpoint + model + request.

A cache must never stop a run nor be trusted blindly:

* a file that is not a readable cache (truncated, another program's database, another schema, a
  directory) is **set aside** -- renamed to ``<name>.unreadable-<time>`` -- with one warning, and the run
  goes on with a fresh cache at the same path (or none, if the file cannot even be moved);
* every wait on SQLite's lock is bounded (:data:`LOCK_TIMEOUT_S`); a cache locked by another process
  for longer is skipped for that read or write (warned once), never waited on;
* every value read back is type-checked (a JSON object with a string ``text``); anything else is a
  miss, and the row is dropped;
* where the file lives is the user's choice only (``RIVEG_LLM_CACHE`` or an argument): a path recorded
  in a checkpoint is ignored (see :mod:`riveg_hf.serving.client`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..paths import cache_path

__all__ = ["LOCK_TIMEOUT_S", "AnswerCache", "default_cache_path"]

logger = logging.getLogger(__name__)

#: the longest any cache operation waits for SQLite's lock
LOCK_TIMEOUT_S = 2.0
_SCHEMA = "CREATE TABLE IF NOT EXISTS riveg_answers_v2 (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def default_cache_path() -> Path:
    """``$RIVEG_LLM_CACHE``, else ``~/.cache/riveg-hf/llm-cache.sqlite``."""
    return cache_path("RIVEG_LLM_CACHE", "llm-cache.sqlite")


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

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
            self._delete(key)
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

    def _delete(self, key: str) -> None:
        try:
            with self._lock, self._connect() as db:
                db.execute("DELETE FROM riveg_answers_v2 WHERE key = ?", (key,))
        except (sqlite3.DatabaseError, OSError):
            pass


def _checked(raw: Any) -> dict[str, Any] | None:
    """A cached value, or None when it is not what this package wrote."""
    if not isinstance(raw, str) or len(raw) > (4 << 20):
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    lp = value.get("logprobs")
    if lp is not None and not (isinstance(lp, list) and all(isinstance(t, dict) for t in lp)):
        return None
    fr = value.get("finish_reason")
    if fr is not None and not isinstance(fr, str):
        return None
    return value
