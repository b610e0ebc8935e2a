"""Reading what a vision-language model answers when asked for boxes, and putting each box on its entity.

Real Qwen-VL answers (the Qwen2.5-VL / Qwen3-VL cookbooks, Qwen2-VL's box tokens, issue threads; the
fixture ``tests/fixtures/real_vlm_answers.json`` cites each) come in many shapes, and the matching must
never put a box on the wrong entity. Two functions, used by the in-process VLM grounder, the served one
and the GRPO reward alike:

:func:`parse_objects` -- every object of an answer, in order, **never raising**:

* JSON first: a real decoder is tried from each ``[`` / ``{`` (so nested values such as
  ``"names": {"zh": ..., "en": ...}`` are fine); trailing commas (Qwen2.5-VL's OCR answers) are
  tolerated; prose, code fences (also ```` ``` ```` then ``json`` on the next line) around it are
  skipped; a truncated list keeps its complete objects;
* the box under any key real models use (``bbox_2d``, ``bbox``, ``box_2d``, ``box``), as four numbers,
  ``[[x1, y1, x2, y2]]`` or ``{"x1", ...}``; ``null`` or ``[]`` mean "none" (not visible), anything else
  that is not four finite numbers is *malformed* -- ``true`` is not a coordinate, neither is ``"12"``,
  a 400-digit integer, nor ``NaN``;
* the name under any key real models use (``label``, ``entity``, ``name``, ``name_en``, ``text``,
  ``text_content``, ``category``, ...; a nested ``names`` object gives all its values);
* Qwen2-VL's box tokens ``<|object_ref_start|>name<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)
  <|box_end|>``, also with the special tokens stripped (``name(x1,y1),(x2,y2)``, as decoding with
  ``skip_special_tokens`` or a server leaves it), and plain ``x1,y1,x2,y2 name`` lines;
* bounded: at most :data:`MAX_ANSWER_CHARS` characters and :data:`MAX_OBJECTS` objects are read; deep
  nesting and huge numbers end as "malformed", never as ``RecursionError`` / ``OverflowError``.

:func:`match_objects` -- one object (or none) per entity asked. One rule for names (:func:`normalize_name`:
Unicode NFKC + casefold, punctuation and a trailing "(TYPE)" removed, every script kept), passes from
strict to loose: exact, normalised, normalised without spaces, then containment / similarity against the
entity's name **and its description**. Objects are taken in answer order; an entity repeated in the tweet
receives the same object as its twin (the answer names both). **Position** decides only when the answer
has exactly as many objects as entities were asked and nothing contradicts it (no object names another
entity). An entity the answer does not mention is "not visible" -- Qwen3-VL is trained to skip what it does
not see -- and says so in its note, distinct from a malformed answer.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_OBJECTS",
    "AnswerObject",
    "Match",
    "match_objects",
    "normalize_name",
    "parse_objects",
]

MAX_ANSWER_CHARS = 65_536
MAX_OBJECTS = 1_000
_MAX_DECODE_TRIES = 256
_MAX_WALK_DEPTH = 6
BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box", "bbox2d")
NAME_KEYS = ("label", "entity", "name", "name_en", "text", "text_content", "category", "object", "phrase",
             "caption", "ref", "names", "name_zh")  # fmt: skip


@dataclass
class AnswerObject:
    """One object of an answer. ``box`` is in the model's coordinates (None: none or malformed)."""

    names: list[str]
    box: list[float] | None
    #: "box" (four numbers), "none" (null / [] : not visible), "malformed" (a box value that is not a box),
    #: "missing" (no box key at all, e.g. a point)
    status: str
    #: character span of the box's value in the answer (for ``box_score``), or None
    span: tuple[int, int] | None = None

    @property
    def name(self) -> str | None:
        return self.names[0] if self.names else None


# ---------------------------------------------------------------------- numbers and boxes
def _number(v: Any) -> float | None:
    """A finite float from a JSON number; None for anything else (bool, str, NaN, inf, 400-digit ints)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except (OverflowError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _box(value: Any) -> tuple[list[float] | None, str]:
    if value is None or (isinstance(value, (list, tuple, dict)) and len(value) == 0):
        return None, "none"
    if isinstance(value, dict):
        for keys in (
            ("x1", "y1", "x2", "y2"),
            ("xmin", "ymin", "xmax", "ymax"),
            ("left", "top", "right", "bottom"),
        ):
            if all(k in value for k in keys):
                value = [value[k] for k in keys]
                break
        else:
            return None, "malformed"
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple)):
        value = value[0]  # [[x1, y1, x2, y2]]
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None, "malformed"
    nums = [_number(v) for v in value]
    if any(n is None for n in nums):
        return None, "malformed"
    x0, x1 = sorted((nums[0], nums[2]))
    y0, y1 = sorted((nums[1], nums[3]))
    return [x0, y0, x1, y1], "box"


def _names(obj: dict) -> list[str]:
    out: list[str] = []

    def add(v: Any) -> None:
        if isinstance(v, str) and v.strip() and v.strip() not in out:
            out.append(v.strip())
        elif isinstance(v, dict):
            for x in v.values():
                add(x)
        elif isinstance(v, list):
            for x in v[:8]:
                add(x)

    for key in NAME_KEYS:
        if key in obj:
            add(obj[key])
    return out


# ---------------------------------------------------------------------- parsing
_FENCE_RE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(?:json[ \t]*\n)?", re.I)
_TRAILING_COMMA_RE = re.compile(r",(\s*[}\]])")
_QWEN2_RE = re.compile(
    r"(?:<\|object_ref_start\|>(?P<name>.*?)<\|object_ref_end\|>)?\s*<\|box_start\|>\s*"
    r"\(\s*(?P<x0>-?\d+(?:\.\d+)?)\s*,\s*(?P<y0>-?\d+(?:\.\d+)?)\s*\)\s*,\s*"
    r"\(\s*(?P<x1>-?\d+(?:\.\d+)?)\s*,\s*(?P<y1>-?\d+(?:\.\d+)?)\s*\)\s*<\|box_end\|>",
    re.S,
)
_QWEN2_STRIPPED_RE = re.compile(
    r"(?P<name>[^()\n\[\]{}]{0,200}?)\s*\(\s*(?P<x0>-?\d{1,6}(?:\.\d+)?)\s*,\s*(?P<y0>-?\d{1,6}(?:\.\d+)?)\s*\)"
    r"\s*,\s*\(\s*(?P<x1>-?\d{1,6}(?:\.\d+)?)\s*,\s*(?P<y1>-?\d{1,6}(?:\.\d+)?)\s*\)"
)
_PLAIN_RE = re.compile(
    r"^\s*(?P<x0>\d{1,6}(?:\.\d+)?)\s*,\s*(?P<y0>\d{1,6}(?:\.\d+)?)\s*,\s*(?P<x1>\d{1,6}(?:\.\d+)?)\s*,\s*"
    r"(?P<y1>\d{1,6}(?:\.\d+)?)\s+(?P<name>\S.{0,200}?)\s*$",
    re.M,
)


def _safe_int(s: str) -> float:
    return float(s) if len(s) < 40 else math.inf  # float("1" * 5000) would be inf; int() would raise


def _loads_at(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[Any, int] | None:
    try:
        return decoder.raw_decode(text, pos)
    except (ValueError, RecursionError, OverflowError):
        return None


def _walk(value: Any, out: list[dict], depth: int = 0) -> None:
    """Collect every dict that has a box key (or looks like an object), in order, up to a bounded depth."""
    if depth > _MAX_WALK_DEPTH or len(out) >= MAX_OBJECTS:
        return
    if isinstance(value, dict):
        if any(k in value for k in BOX_KEYS) or "point_2d" in value:
            out.append(value)
            return
        if value and all(v is None or (isinstance(v, list) and len(v) in (0, 4)) for v in value.values()):
            out.extend(
                {"label": k, "bbox_2d": v} for k, v in list(value.items())[:MAX_OBJECTS]
            )  # {name: box}
            return
        for v in value.values():
            if isinstance(v, (dict, list)):
                _walk(v, out, depth + 1)
    elif isinstance(value, list):
        if len(value) == 4 and all(_number(v) is not None for v in value) and depth <= 1:
            out.append({"bbox_2d": value})  # a bare box
            return
        for v in value[:MAX_OBJECTS]:
            if isinstance(v, (dict, list)) or v is None:
                if v is None:
                    out.append({"bbox_2d": None})  # [null, [..]]: one answer per entity, by position
                else:
                    _walk(v, out, depth + 1)


def _json_objects(text: str) -> list[dict]:
    decoder = json.JSONDecoder(parse_int=_safe_int, parse_constant=lambda c: None)
    found: list[dict] = []
    pos, tries = 0, 0
    while pos < len(text) and tries < _MAX_DECODE_TRIES and len(found) < MAX_OBJECTS:
        starts = [i for i in (text.find("[", pos), text.find("{", pos)) if i >= 0]
        if not starts:
            break
        i = min(starts)
        tries += 1
        got = _loads_at(decoder, text, i)
        if got is None:
            pos = i + 1  # not a complete value here: look inside it (a truncated list's complete objects)
            continue
        value, end = got
        before = len(found)
        _walk(value, found)
        pos = end if len(found) > before or isinstance(value, dict) else i + 1
    return found


def parse_objects(answer: str | None) -> list[AnswerObject]:
    """Every object of ``answer``, in order (see the module doc); never raises."""
    if not isinstance(answer, str) or not answer.strip():
        return []
    text = answer[:MAX_ANSWER_CHARS]
    objects: list[AnswerObject] = []
    # 1. Qwen2-VL box tokens (special tokens kept)
    for m in _QWEN2_RE.finditer(text):
        objects.append(_coords_object(m, text))
    if objects:
        return objects[:MAX_OBJECTS]
    # 2. JSON (fences and trailing commas tolerated); each box's span found again in the original text
    body = _FENCE_RE.sub("\n", text)
    body = _TRAILING_COMMA_RE.sub(r"\1", body)
    cursor = 0
    for obj in _json_objects(body):
        key = next((key for key in BOX_KEYS if key in obj), None)
        if key is None:
            objects.append(AnswerObject(_names(obj), None, "missing"))
            continue
        box, status = _box(obj[key])
        span = None
        if status == "box":
            span = _find_numbers(text, obj[key], cursor)
            cursor = span[1] if span else cursor
        objects.append(AnswerObject(_names(obj), box, status, span))
    if objects:
        return objects
    # 3. Qwen2-VL's form with the special tokens stripped, then plain "x1,y1,x2,y2 name" lines
    for rx in (_QWEN2_STRIPPED_RE, _PLAIN_RE):
        for m in rx.finditer(text):
            objects.append(_coords_object(m, text))
            if len(objects) >= MAX_OBJECTS:
                break
        if objects:
            break
    return objects


def _find_numbers(text: str, value: Any, start: int) -> tuple[int, int] | None:
    """The span of a box's four numbers in the original answer, searched from ``start`` (for box_score)."""
    flat = value[0] if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list) else value
    if isinstance(flat, dict):
        flat = [v for v in flat.values() if _number(v) is not None][:4]
    if not isinstance(flat, list) or len(flat) != 4:
        return None
    parts = []
    for v in flat:
        f = float(v)
        parts.append(re.escape(str(int(f))) + r"(?:\.0+)?" if f.is_integer() else re.escape(repr(f)))
    m = re.compile(r"\D*?".join(parts)).search(text, start)
    return (m.start(), m.end()) if m else None


def _coords_object(m: re.Match, text: str) -> AnswerObject:
    nums = [_number(float(m.group(g))) for g in ("x0", "y0", "x1", "y1")]
    name = (m.group("name") or "").strip().strip(",;:").strip()
    box, status = _box(nums) if all(n is not None for n in nums) else (None, "malformed")
    return AnswerObject([name] if name else [], box, status, (m.start("x0"), m.end("y1")))


# ---------------------------------------------------------------------- names
_TYPE_TAG_RE = re.compile(r"\s*[\(\[]\s*[A-Za-z][A-Za-z_ -]{1,24}\s*[\)\]]\s*$")


def normalize_name(name: Any) -> str:
    """One rule for every name comparison: NFKC + casefold, a trailing "(TYPE)" and punctuation removed,
    whitespace collapsed; letters of every script kept (Cyrillic, Chinese, accents never collide).

    >>> normalize_name("Lionel Messi (PER)"), normalize_name("«Москва»"), normalize_name("Beyoncé!")
    ('lionel messi', 'москва', 'beyoncé')
    """
    s = unicodedata.normalize("NFKC", str(name or "")).casefold().strip()
    s = _TYPE_TAG_RE.sub("", s)
    s = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in s)
    return " ".join(s.split())


def _similar(a: str, b: str) -> bool:
    if not a or not b:
        return False
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 3 and (f" {short} " in f" {long_} "):  # whole-word containment
        return True
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.85


# ---------------------------------------------------------------------- matching
@dataclass
class Match:
    """The object given to each entity (index into the parsed objects, or None) and why."""

    index: list[int | None]
    #: per entity: "name" / "description" / "position" (how it was matched), or "not-mentioned"
    how: list[str] = field(default_factory=list)


def match_objects(objects: Sequence[AnswerObject], entities: Sequence[tuple[str, str | None]]) -> Match:
    """``entities = [(name, description)]`` -> the object of each (see the module doc)."""
    n = len(entities)
    index: list[int | None] = [None] * n
    how = ["not-mentioned"] * n
    if not objects or not n:
        return Match(index, how)
    ent_norm = [normalize_name(e) for e, _ in entities]
    desc_norm = [normalize_name(d) if d else "" for _, d in entities]
    obj_norm = [[normalize_name(x) for x in o.names] for o in objects]
    used: set[int] = set()

    passes = [  # (how, test, loose): a loose match must be unambiguous
        ("name", lambda i, k: any(x == entities[i][0].strip() for x in objects[k].names), False),
        ("name", lambda i, k: ent_norm[i] in obj_norm[k], False),
        (
            "name",
            lambda i, k: ent_norm[i].replace(" ", "") in [x.replace(" ", "") for x in obj_norm[k]],
            False,
        ),
        ("description", lambda i, k: bool(desc_norm[i]) and desc_norm[i] in obj_norm[k], False),
        ("name", lambda i, k: any(_similar(ent_norm[i], x) for x in obj_norm[k]), True),
        ("description", lambda i, k: any(_similar(desc_norm[i], x) for x in obj_norm[k]), True),
    ]
    for label, test, loose in passes:
        for i in range(n):
            if index[i] is not None:
                continue
            k = next((k for k in range(len(objects)) if k not in used and test(i, k)), None)
            if k is None:
                continue
            if loose:
                rivals = [j for j in range(n) if j != i and index[j] is None and ent_norm[j] != ent_norm[i]
                          and test(j, k)]  # fmt: skip
                if rivals:
                    continue  # "a man" would fit two descriptions: the answer does not say which
            index[i], how[i] = k, label
            used.add(k)
    # repeated mentions: an entity with the same name as a matched one receives its object
    for i in range(n):
        if index[i] is None:
            twin = next((j for j in range(n) if index[j] is not None and ent_norm[j] == ent_norm[i]), None)
            if twin is not None:
                index[i], how[i] = index[twin], how[twin]
    # position, only when the counts agree and nothing contradicts it
    if len(objects) == n and any(x is None for x in index):
        contradiction = False
        for k in range(len(objects)):
            holders = [i for i in range(n) if index[i] == k]
            if holders and holders != [k] and not all(ent_norm[h] == ent_norm[k] for h in holders):
                contradiction = True  # object k was matched by name to another entity than the k-th
            if (
                not holders
                and obj_norm[k]
                and any(j != k and any(_similar(ent_norm[j], x) for x in obj_norm[k]) for j in range(n))
            ):
                contradiction = True
        if not contradiction:
            for i in range(n):
                if index[i] is None and i not in used:
                    index[i], how[i] = i, "position"
                    used.add(i)
    return Match(index, how)
