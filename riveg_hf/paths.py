"""Where riveg-hf keeps what it downloads or caches: one rule for every such path."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_path"]


def cache_path(env_var: str, name: str) -> Path:
    """``$env_var`` when set, else ``$XDG_CACHE_HOME/riveg-hf/<name>`` (``~/.cache/riveg-hf/<name>``)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "riveg-hf" / name
