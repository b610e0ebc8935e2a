"""Example ids from data files: validated so that an id never becomes a path outside its folder."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["InvalidIdError", "is_safe_id", "safe_child", "validate_id"]

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class InvalidIdError(ValueError):
    """An id that could escape its folder or is not a plain file-name stem."""


def is_safe_id(example_id: str) -> bool:
    """Whether an example id can name a file inside its folder: 1-128 letters, digits, ``_``, ``.``, ``-``,
    starting with a letter or digit, without ``..``; ids never become paths outside their folder.

    >>> is_safe_id("16_05_01_1"), is_safe_id("../etc")
    (True, False)
    """
    return bool(_ID_RE.match(example_id)) and ".." not in example_id


def validate_id(example_id: str, where: str = "") -> str:
    """Return ``example_id`` if it is a plain name (letters, digits, ``_ . -``; no ``..``), else raise."""
    if not isinstance(example_id, str) or not is_safe_id(example_id):
        loc = f"{where}: " if where else ""
        raise InvalidIdError(
            f"{loc}rejected id {example_id!r}: ids must be plain names of letters, digits, '_', '.' or '-' "
            "(no '/', '\\' or '..'), because they name files such as <id>.jpg and <id>.xml."
        )
    return example_id


def safe_child(folder: str | Path, example_id: str, suffix: str) -> Path:
    """``folder / (example_id + suffix)``, guaranteed to stay inside ``folder``."""
    validate_id(example_id)
    if "/" in suffix or "\\" in suffix:
        raise InvalidIdError(f"suffix {suffix!r} must not contain a path separator.")
    # The id is a plain name (no separator, no '..'), so the child is a direct entry of ``folder``.
    return Path(folder) / f"{example_id}{suffix}"
