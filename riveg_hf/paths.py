"""Where riveg-hf keeps what it downloads or caches: one rule for every such path."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

__all__ = ["cache_path", "os_lock"]


def cache_path(env_var: str, name: str) -> Path:
    """``$env_var`` when set, else ``$XDG_CACHE_HOME/riveg-hf/<name>`` (``~/.cache/riveg-hf/<name>``)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "riveg-hf" / name


@contextlib.contextmanager
def os_lock(path: str | os.PathLike, *, wait_until: float | None = None, on_wait=None, mode: int = 0o644):
    """Hold an exclusive OS lock on ``path`` (created if missing) while the block runs; released when the process
    dies, however it dies. Without ``wait_until`` a lock held elsewhere raises ``BlockingIOError`` at once; with
    it (a ``time.monotonic()`` deadline) this waits, calling ``on_wait()`` once, then raises ``TimeoutError``."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, mode)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait_until is None:
                    raise
                if time.monotonic() > wait_until:
                    raise TimeoutError(f"{path} stayed locked") from None
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)
