"""Reading what a vision-language model answers when asked for boxes, and putting each box on its entity.

Real Qwen-VL answers (the Qwen2.5-VL / Qwen3-VL cookbooks and blog, Qwen2-VL's box tokens, issue threads; the
fixtures ``tests/fixtures/real_vlm_answers*.json`` cite each) come in many shapes, and the matching must never
put a box on the wrong entity. Two functions, used by the in-process VLM grounder, the served one and the GRPO
reward alike:

:func:`parse_objects` -- every object of an answer, in order, **never raising**:

* JSON first: a real decoder is tried from each ``[`` / ``{`` (so nested values such as
  ``"names": {"zh": ..., "en": ...}`` are fine); trailing commas (Qwen2.5-VL's OCR answers) are
  tolerated; prose, code fences (also ```` ``` ```` then ``json`` on the next line) around it are
  skipped. A **truncated** answer (cut by ``max_new_tokens``) is closed after its last complete value, so
  its complete objects keep their names; an object cut before its name is dropped (only position could
  place it), one cut inside its box keeps its name with a malformed box. An object that repeats its keys
  (``{"object_name": "monitor", "bbox": [...], "object_name": "laptop", ...}``, a real Qwen3-VL answer) is
  one object per repetition;
* the box under any key real models use (``bbox_2d``, ``bbox``, ``box_2d``, ``box``), as four numbers,
  ``[[x1, y1, x2, y2]]`` or ``{"x1", ...}``; a list of boxes under a plural key (``"bboxes": [[...], ...]``,
  with a parallel ``"labels"`` list or one name for all) is one object per box; ``null`` or ``[]`` mean
  "none" (not visible), anything else that is not four finite numbers is *malformed* -- ``true`` is not a
  coordinate, neither is ``"12"``, a 400-digit integer, nor ``NaN``; a point (``point_2d``) or a 3D box
  (``bbox_3d``, Qwen3-VL's 3D grounding) is an object with its names and no 2D box ("missing");
* the names: **every string-valued field** that is not a geometry / coordinate key is a name candidate,
  known keys first (``label``, ``entity``, ``name``, ``name_en``, ``text``, ``text_content``, ...), then keys
  that say "name" / "label" / "text" / ... (``name_english``, ``label_en``, ``object_name``, ``sub_label``),
  then the others in order; a nested ``names`` object gives all its values. A type key (``type``,
  ``entity_type``) whose value is an entity type (PER, LOC, ORG, OTHER and their usual spellings) and a
  trailing "(ORG)" give the object's **types** instead;
* Qwen2-VL's box tokens ``<|object_ref_start|>name<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)
  <|box_end|>`` (a box right after another one has the same name), also with the special tokens stripped
  (``name(x1,y1),(x2,y2)``, as decoding with ``skip_special_tokens`` or a server leaves it), and plain
  ``x1,y1,x2,y2 name`` lines (one line each: whitespace never runs across lines);
* bounded and **linear in the answer**: at most :data:`MAX_ANSWER_CHARS` characters, :data:`MAX_OBJECTS`
  objects, :data:`MAX_NAMES_PER_OBJECT` names of :data:`MAX_NAME_CHARS` characters are read; every regular
  expression starts its attempts on a literal character or a line start and scans the answer once (the JSON
  tokens twice when a value is cut off: to find it, to close it); deep nesting and huge numbers end as
  "malformed", never as ``RecursionError`` / ``OverflowError``. Matching does a bounded number of difflib
  comparisons, whatever the number of names.

:func:`match_objects` -- one object (or none) per entity asked. One rule for names (:func:`normalize_name`:
Unicode NFKC + casefold, punctuation and a trailing "(TYPE)" removed, every script and symbol kept, so "C++",
"C#" and an emoji stay themselves), passes from strict to loose: exact, normalised, normalised without spaces,
then containment / similarity against the entity's name **and its description**; a name that normalises to
nothing ("—") never matches. Where the request carries entity types (``types=``), an object whose types say
otherwise is never that entity's, and two entities with the same name but different types (Apple ORG, apple
OTHER) are not twins: neither takes an object that fits both equally. Objects are taken in answer order; an
entity repeated in the tweet (same name, same type) receives the same object as its twin. **Position**
decides only when the answer has exactly as many objects as entities were asked, nothing contradicts it (no
object is matched to another entity's place, no named object is left unmatched), and only for an object that
carries no text at all. An entity the answer does not mention is "not visible" -- Qwen3-VL is trained to skip
what it does not see -- and its caller says so in a note, distinct from a malformed answer.
"""

from __future__ import annotations

import bisect
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
    "MAX_NAMES_PER_OBJECT",
    "MAX_NAME_CHARS",
    "MAX_OBJECTS",
    "AnswerObject",
    "Match",
    "match_objects",
    "normalize_name",
    "parse_objects",
]

#: characters of an answer that are read (the rest is cut, with a note): parsing stays linear and bounded
MAX_ANSWER_CHARS = 65_536
#: objects read from one answer (a degenerate answer repeating itself stops here)
MAX_OBJECTS = 1_000
#: names kept per object, and characters kept per name
MAX_NAMES_PER_OBJECT = 8
#: characters kept per name (see :data:`MAX_NAMES_PER_OBJECT`)
MAX_NAME_CHARS = 256
#: names kept over a whole answer; past it each object keeps its first name only
_MAX_NAMES_TOTAL = 2_048
#: the loose (difflib) comparison: names up to this length, and per match at most this many
#: SequenceMatcher checks / full ratios (past them: "not similar", so the entity gets its note)
_MAX_SIMILAR_CHARS = 100
_MAX_SIMILARITY_CHECKS = 8_192
_MAX_RATIOS = 512
_MAX_DECODE_TRIES = 256
_MAX_WALK_DEPTH = 6
BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box", "bbox2d")
#: a list of boxes (one object per box)
PLURAL_BOX_KEYS = ("bboxes", "boxes", "bboxes_2d", "bbox_2d_list", "bbox_list")
#: labels parallel to a plural box list
_PLURAL_LABEL_KEYS = ("labels", "bboxes_labels", "names", "label_list")
#: objects with geometry that is not a 2D box: their names are read, their box is "missing"
OTHER_GEOMETRY_KEYS = ("point_2d", "point", "points", "bbox_3d", "box_3d", "bbox3d", "point_3d", "polygon")
NAME_KEYS = ("label", "entity", "name", "name_en", "text", "text_content", "category", "object", "phrase",
             "caption", "ref", "names", "name_zh")  # fmt: skip
#: coordinate keys: never names, even when their values are strings ("x1": "12")
_COORD_KEYS = frozenset({"x", "y", "z", "x1", "y1", "x2", "y2", "xmin", "ymin", "xmax", "ymax", "left", "top",
                         "right", "bottom", "width", "height", "w", "h", "cx", "cy", "coordinate",
                         "coordinates", "coords", "center", "size"})  # fmt: skip
_GEOMETRY_KEYS = frozenset(BOX_KEYS + PLURAL_BOX_KEYS + OTHER_GEOMETRY_KEYS)
_NAMEISH_KEY_RE = re.compile(r"name|label|text|caption|title|entity|object|categor|class|phrase|desc", re.I)
_TYPE_KEYS = ("type", "entity_type", "ner_type", "ner", "ner_tag", "tag", "entity_class")
#: entity types (and their usual spellings) -> the canonical type
_TYPES = {"PER": "PER", "PERSON": "PER", "PEOPLE": "PER", "LOC": "LOC", "LOCATION": "LOC", "GPE": "LOC",
          "PLACE": "LOC", "ORG": "ORG", "ORGANIZATION": "ORG", "ORGANISATION": "ORG", "OTHER": "OTHER",
          "MISC": "OTHER", "OTH": "OTHER"}  # fmt: skip
#: a key the parser adds to an object that a truncated answer cut off
_CUT_KEY = "\x00cut"


@dataclass
class AnswerObject:
    """One object of an answer. ``box`` is in the model's coordinates (None: none or malformed)."""

    names: list[str]
    box: list[float] | None
    #: "box" (four numbers), "none" (null / [] : not visible), "malformed" (a box value that is not a box),
    #: "missing" (no 2D box key at all, e.g. a point or a 3D box)
    status: str
    #: character span of the box's value in the answer (for ``box_score``), or None
    span: tuple[int, int] | None = None
    #: entity types the object states ("type": "ORG", a trailing "(ORG)"), canonical (PER/LOC/ORG/OTHER)
    types: list[str] = field(default_factory=list)
    #: the answer was cut off inside this object (its box and names are those written before the cut)
    truncated: bool = False

    @property
    def name(self) -> str | None:
        return self.names[0] if self.names else None


def _canon_type(t: Any) -> str | None:
    if not isinstance(t, str):
        return None
    return _TYPES.get(t.strip().upper().replace("-", "_"))


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


def _is_box_value(value: Any) -> bool:
    """A value that is a box or says "none" (for the ``{name: box}`` form)."""
    return _box(value)[1] in ("box", "none")


# ---------------------------------------------------------------------- names
class _NameBudget:
    """Names left over a whole answer (past it, each object keeps its first name)."""

    def __init__(self) -> None:
        self.left = _MAX_NAMES_TOTAL


def _names_and_types(obj: dict, budget: _NameBudget | None = None) -> tuple[list[str], list[str]]:
    """The object's name candidates (see the module doc for the order) and the types it states."""
    out: list[str] = []
    seen: set[str] = set()
    types: list[str] = []
    limit = MAX_NAMES_PER_OBJECT if budget is None or budget.left > 0 else 1

    def add(v: Any, depth: int = 0) -> None:
        if len(out) >= limit:
            return
        if isinstance(v, str):
            s = v.strip()[:MAX_NAME_CHARS].strip()
            if s and s not in seen:
                seen.add(s)
                out.append(s)
        elif isinstance(v, dict) and depth < 2:
            for x in list(v.values())[:MAX_NAMES_PER_OBJECT]:
                add(x, depth + 1)
        elif isinstance(v, list) and depth < 2:
            for x in v[:8]:
                add(x, depth + 1)

    keys = [k for k in obj if isinstance(k, str) and not k.startswith("\x00")]
    rest: list[str] = []
    for key in keys:
        low = key.lower()
        if low in _GEOMETRY_KEYS or low in _COORD_KEYS:
            continue
        if low in _TYPE_KEYS and _canon_type(obj[key]):
            types.append(_canon_type(obj[key]))
            continue
        rest.append(key)
    known = [k for k in NAME_KEYS if k in rest]
    nameish = [k for k in rest if k not in known and _NAMEISH_KEY_RE.search(k)]
    others = [k for k in rest if k not in known and k not in nameish]
    for key in known + nameish:
        add(obj[key])  # nested values (a "names" object, a list of names) only under name keys
    for key in others:
        if isinstance(obj[key], str):
            add(obj[key])
    types += [t for t in _tag_types(out) if t not in types]
    if budget is not None:
        budget.left -= len(out)
    return out, types


def _tag_types(names: list[str]) -> list[str]:
    """The types of trailing "(ORG)" tags."""
    out = []
    for s in names:
        m = _TYPE_TAG_RE.search(s)
        t = _canon_type(m.group(0).strip().strip("()[]").strip()) if m else None
        if t and t not in out:
            out.append(t)
    return out


# ---------------------------------------------------------------------- parsing
_FENCE_RE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(?:json[ \t]*\n)?", re.I)
_TRAILING_COMMA_RE = re.compile(r",(\s*[}\]])")
_NUM = r"-?\d{1,6}(?:\.\d{1,12})?"
#: Qwen2-VL's box, special tokens kept: attempts start only at "<"
_QWEN2_BOX_RE = re.compile(
    rf"<\|box_start\|>[ \t]*\([ \t]*(?P<x0>{_NUM})[ \t]*,[ \t]*(?P<y0>{_NUM})[ \t]*\)[ \t]*,[ \t]*"
    rf"\([ \t]*(?P<x1>{_NUM})[ \t]*,[ \t]*(?P<y1>{_NUM})[ \t]*\)[ \t]*<\|box_end\|>"
)
_REF_START, _REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
#: Qwen2-VL's box with the special tokens stripped, "(x1,y1),(x2,y2)" on one line: attempts start at "("
_COORD_PAIR_RE = re.compile(
    rf"\([ \t]*(?P<x0>{_NUM})[ \t]*,[ \t]*(?P<y0>{_NUM})[ \t]*\)[ \t]*,[ \t]*"
    rf"\([ \t]*(?P<x1>{_NUM})[ \t]*,[ \t]*(?P<y1>{_NUM})[ \t]*\)"
)
#: a plain "x1,y1,x2,y2 name" line: attempts start at line starts, the name is the rest of that line
_PLAIN_RE = re.compile(
    rf"^[ \t]*(?P<x0>{_NUM})[ \t]*,[ \t]*(?P<y0>{_NUM})[ \t]*,[ \t]*(?P<x1>{_NUM})[ \t]*,[ \t]*"
    rf"(?P<y1>{_NUM})[ \t]+(?=\S)",
    re.M,
)
_NAME_STOP = "()[]{}\n"
#: a JSON token for the bracket scan: a string (also one cut off at the end), a bracket, a comma, a colon
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.?)*(?:"|\Z)|[\[\]{},:]')
#: four numbers in brackets: the span of a box's value in the answer
_QUAD_RE = re.compile(
    r"\[\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*,\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*,\s*"
    r"(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*,\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*\]"
)


def _safe_int(s: str) -> float:
    return float(s) if len(s) < 40 else math.inf  # float("1" * 5000) would be inf; int() would raise


class _Split(list):
    """The objects of one JSON object whose keys repeat (one per repetition)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict | _Split:
    groups: list[dict] = [{}]
    for k, v in pairs:
        if k in groups[-1]:
            groups.append({})
        groups[-1][k] = v
    return groups[0] if len(groups) == 1 else _Split(groups)


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(parse_int=_safe_int, parse_constant=lambda c: None, object_pairs_hook=_pairs)


def _loads_at(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[Any, int] | None:
    try:
        return decoder.raw_decode(text, pos)
    except (ValueError, RecursionError, OverflowError):
        return None


def _is_object(d: dict) -> bool:
    return any(k in d for k in BOX_KEYS) or any(k in d for k in PLURAL_BOX_KEYS + OTHER_GEOMETRY_KEYS)


def _walk(value: Any, out: list[dict], depth: int = 0) -> None:
    """Collect every dict that is an object (a box, a list of boxes, a point, a 3D box), in order, up to a
    bounded depth; ``{name: box}`` mappings and bare boxes too."""
    if depth > _MAX_WALK_DEPTH or len(out) >= MAX_OBJECTS:
        return
    if isinstance(value, _Split):
        for v in value[:MAX_OBJECTS]:
            _walk(v, out, depth)
    elif isinstance(value, dict):
        if _is_object(value):
            out.append(value)
            return
        items = [(k, v) for k, v in value.items() if k != _CUT_KEY]
        cut = _CUT_KEY in value
        complete = items[:-1] if cut else items  # a cut mapping's last value may be unfinished
        if items and all(_is_box_value(v) for _, v in complete):
            for k, v in items[:MAX_OBJECTS]:  # {name: box}
                obj = {"label": k, "bbox_2d": v}
                if cut and (k, v) == items[-1]:
                    obj[_CUT_KEY] = True
                out.append(obj)
            return
        for v in value.values():
            if isinstance(v, (dict, list)):
                _walk(v, out, depth + 1)
    elif isinstance(value, list):
        if len(value) == 4 and all(_number(v) is not None for v in value) and depth <= 1:
            out.append({"bbox_2d": value})  # a bare box
            return
        for v in value[:MAX_OBJECTS]:
            if v is None:
                out.append({"bbox_2d": None})  # [null, [..]]: one answer per entity, by position
            elif isinstance(v, (dict, list)):
                _walk(v, out, depth + 1)


class _Brackets:
    """One scan of the JSON tokens from a position: which ``[`` / ``{`` are still open at the end."""

    def __init__(self, text: str, start: int) -> None:
        stack: list[tuple[str, int]] = []
        self.open_at_end: set[int] = set()
        self.start = start
        for m in _TOKEN_RE.finditer(text, start):
            ch = m.group()
            if ch in "[{":
                stack.append((ch, m.start()))
            elif ch in "]}" and stack and stack[-1][0] == ("[" if ch == "]" else "{"):
                stack.pop()
        self.open_at_end = {p for _, p in stack}


def _repair(text: str, start: int) -> str | None:
    """The value starting at ``start`` (cut off by the end of the answer) closed after its last complete
    value; each object closed here gets the :data:`_CUT_KEY` mark. None when nothing complete is there.

    The last cut point is kept as (position, depth): the frames below it cannot change afterwards without a
    closing bracket, which is itself a later cut point."""
    chars: list[str] = []  # the open brackets
    states: list[str] = []  # per open "{": "key", "colon", "value" or "after"
    cut: tuple[int, int] | None = None
    for m in _TOKEN_RE.finditer(text, start):
        tok = m.group()
        if tok in "[{":
            chars.append(tok)
            states.append("key")
        elif tok in "]}":
            if not chars or chars[-1] != ("[" if tok == "]" else "{"):
                return None  # not JSON: nothing to repair
            chars.pop()
            states.pop()
            if not chars:
                return None  # it closes: not cut off
            cut = (m.end(), len(chars))
            states[-1] = "after"
        elif not chars:
            return None
        elif tok == ",":
            cut = (m.start(), len(chars))
            states[-1] = "key"
        elif tok == ":":
            states[-1] = "value"
        elif chars[-1] == "{" and states[-1] == "key":
            states[-1] = "colon"  # a key
        elif len(tok) >= 2 and tok.endswith('"'):  # a complete string value
            cut = (m.end(), len(chars))
            states[-1] = "after"
    if cut is None:
        return None
    end, depth = cut
    closers = ("]" if ch == "[" else ', "\\u0000cut": true}' for ch in reversed(chars[:depth]))
    return text[start:end] + "".join(closers)


def _json_objects(text: str) -> list[dict]:
    decoder = _decoder()
    found: list[dict] = []
    pos, tries = 0, 0
    nxt = {"[": -1, "{": -1}
    brackets: _Brackets | None = None
    repaired = False
    while pos < len(text) and tries < _MAX_DECODE_TRIES and len(found) < MAX_OBJECTS:
        for ch in "[{":  # the next "[" and "{", each searched again only once passed
            if nxt[ch] != len(text) and nxt[ch] < pos:
                i = text.find(ch, pos)
                nxt[ch] = len(text) if i < 0 else i
        i = min(nxt.values())
        if i >= len(text):
            break
        if brackets is not None and i in brackets.open_at_end and repaired:
            pos = i + 1  # never closed, so it cannot decode: look inside it without trying
            continue
        tries += 1
        got = _loads_at(decoder, text, i) if brackets is None or i not in brackets.open_at_end else None
        if got is None:
            if brackets is None:
                brackets = _Brackets(text, i)  # once, from the first value that does not decode
            if i in brackets.open_at_end and not repaired:  # cut off by the end of the answer: close it, once
                repaired = True
                fixed = _repair(text, i)
                got2 = _loads_at(decoder, fixed, 0) if fixed else None
                if got2 is not None:
                    _walk(got2[0], found)
                    break
            pos = i + 1  # not a complete value here: look inside it
            continue
        value, end = got
        before = len(found)
        _walk(value, found)
        pos = end if len(found) > before or isinstance(value, (dict, _Split)) else i + 1
    return found


class _Spans:
    """Where each box's four numbers are in the answer: one scan, then a lookup per box."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.by_value: dict[tuple[float, ...], list[tuple[int, int]]] = {}
        for m in _QUAD_RE.finditer(text):
            try:
                key = tuple(float(g) for g in m.groups())
            except (OverflowError, ValueError):
                continue
            self.by_value.setdefault(key, []).append((m.start(1), m.end(4)))

    def find(self, value: Any, start: int) -> tuple[int, int] | None:
        flat = (
            value[0] if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list) else value
        )
        if isinstance(flat, list) and len(flat) == 4:
            nums = [_number(v) for v in flat]
            if any(n is None for n in nums):
                return None
            spans = self.by_value.get(tuple(nums), [])
            j = bisect.bisect_left(spans, (start, -1))
            return spans[j] if j < len(spans) else None
        if isinstance(flat, dict):  # {"x1": ..}: its numbers in order, near the previous box
            nums = [v for v in flat.values() if _number(v) is not None][:4]
            if len(nums) != 4:
                return None
            parts = []
            for v in nums:
                f = float(v)
                parts.append(re.escape(str(int(f))) + r"(?:\.0+)?" if f.is_integer() else re.escape(repr(f)))
            m = re.compile(r"\D{0,64}?".join(parts)).search(self.text, start, start + 4096)
            return (m.start(), m.end()) if m else None
        return None


def _to_objects(raw: list[dict], text: str) -> list[AnswerObject]:
    spans: _Spans | None = None
    cursor = 0
    budget = _NameBudget()
    objects: list[AnswerObject] = []

    def boxed(names, types, value, truncated):
        nonlocal spans, cursor
        box, status = _box(value)
        span = None
        if status == "box":
            spans = spans or _Spans(text)
            span = spans.find(value, cursor)
            cursor = span[1] if span else cursor
        return AnswerObject(list(names), box, status, span, list(types), truncated)

    for obj in raw:
        if len(objects) >= MAX_OBJECTS:
            break
        names, types = _names_and_types(obj, budget)
        truncated = _CUT_KEY in obj
        if truncated and not names:
            continue  # cut off before its name: only position could place it, which is a guess
        key = next((k for k in BOX_KEYS if k in obj), None)
        if key is not None:
            objects.append(boxed(names, types, obj[key], truncated))
            continue
        plural = next((k for k in PLURAL_BOX_KEYS if k in obj), None)
        if plural is None:
            objects.append(AnswerObject(names, None, "missing", None, types, truncated))  # a point, a 3D box
            continue
        value = obj[plural]
        if not isinstance(value, list) or _box(value)[1] in ("box", "none"):
            objects.append(boxed(names, types, value, truncated))  # one box (or none) under a plural key
            continue
        labels = next((obj[k] for k in _PLURAL_LABEL_KEYS if isinstance(obj.get(k), list) and k != plural
                       and len(obj[k]) == len(value)), None)  # fmt: skip
        if labels is not None:
            rest = {k: v for k, v in obj.items() if k not in _PLURAL_LABEL_KEYS}
            names = _names_and_types(rest)[0]
        for j, item in enumerate(value[: MAX_OBJECTS - len(objects)]):
            item_names = names
            if labels is not None:
                label = labels[j].strip()[:MAX_NAME_CHARS] if isinstance(labels[j], str) else ""
                item_names = ([label] if label else []) + [x for x in names if x != label]
            objects.append(boxed(item_names, types, item, truncated))
    return objects


def parse_objects(answer: str | None) -> list[AnswerObject]:
    """Every object of ``answer``, in order (see the module doc); never raises."""
    if not isinstance(answer, str) or not answer.strip():
        return []
    text = answer[:MAX_ANSWER_CHARS]
    # 1. Qwen2-VL box tokens (special tokens kept)
    if "<|box_start|>" in text:
        objects = _qwen2_token_objects(text)
        if objects:
            return objects
    # 2. JSON (fences and trailing commas blanked out, so that positions stay those of the answer)
    body = _FENCE_RE.sub(lambda m: " " * len(m.group()), text)
    body = _TRAILING_COMMA_RE.sub(lambda m: " " + m.group(1), body)
    objects = _to_objects(_json_objects(body), text)
    if objects:
        return objects
    # 3. Qwen2-VL's form with the special tokens stripped, then plain "x1,y1,x2,y2 name" lines
    objects = _stripped_qwen2_objects(text)
    return objects or _plain_objects(text)


def _coords_object(m: re.Match, name: str) -> AnswerObject:
    nums = [_number(float(m.group(g))) for g in ("x0", "y0", "x1", "y1")]
    name = name.strip().strip(",;:").strip()[:MAX_NAME_CHARS]
    box, status = _box(nums) if all(n is not None for n in nums) else (None, "malformed")
    names = [name] if name else []
    return AnswerObject(names, box, status, (m.start("x0"), m.end("y1")), _tag_types(names))


def _qwen2_token_objects(text: str) -> list[AnswerObject]:
    objects: list[AnswerObject] = []
    prev_end, prev_name = 0, ""
    for m in _QWEN2_BOX_RE.finditer(text):
        seg = text[prev_end : m.start()]  # each segment is read once: linear
        before = seg.rstrip()
        if before.endswith(_REF_END):
            head = before[: -len(_REF_END)]
            i = head.rfind(_REF_START)
            name = head[i + len(_REF_START) :] if i >= 0 else ""
        elif not before and objects:
            name = prev_name  # "<ref>sheep</ref><box>..</box><box>..</box>": both boxes are the sheep
        else:
            name = ""
        objects.append(_coords_object(m, name))
        prev_end, prev_name = m.end(), name
        if len(objects) >= MAX_OBJECTS:
            break
    return objects


def _stripped_qwen2_objects(text: str) -> list[AnswerObject]:
    objects: list[AnswerObject] = []
    prev_end = 0
    for m in _COORD_PAIR_RE.finditer(text):
        lo = max(prev_end, m.start() - 200)
        seg = text[lo : m.start()]  # the name: up to 200 characters before, on the same line
        cut = max(seg.rfind(ch) for ch in _NAME_STOP)
        objects.append(_coords_object(m, seg[cut + 1 :]))
        prev_end = m.end()
        if len(objects) >= MAX_OBJECTS:
            break
    return objects


def _plain_objects(text: str) -> list[AnswerObject]:
    objects: list[AnswerObject] = []
    for m in _PLAIN_RE.finditer(text):
        end = text.find("\n", m.end(), m.end() + MAX_NAME_CHARS)
        name = text[m.end() : end if end >= 0 else m.end() + MAX_NAME_CHARS]
        objects.append(_coords_object(m, name))
        if len(objects) >= MAX_OBJECTS:
            break
    return objects


# ---------------------------------------------------------------------- names
_TYPE_TAG_RE = re.compile(r"\s*[\(\[]\s*[A-Za-z][A-Za-z_ -]{1,24}\s*[\)\]]\s*$")
_VARIATION_SELECTORS = dict.fromkeys(range(0xFE00, 0xFE10))


def normalize_name(name: Any) -> str:
    """One rule for every name comparison: NFKC + casefold, a trailing "(TYPE)" and punctuation removed,
    whitespace collapsed; letters of every script and symbols kept (Cyrillic, Chinese, accents, "C++", "C#"
    and emoji never collide; a hashtag's "#" goes, a "#" after a letter stays).

    >>> normalize_name("Lionel Messi (PER)"), normalize_name("«Москва»"), normalize_name("Beyoncé!")
    ('lionel messi', 'москва', 'beyoncé')
    >>> normalize_name("C++"), normalize_name("C#"), normalize_name("#Paris"), normalize_name("🍎"), normalize_name("—")
    ('c++', 'c#', 'paris', '🍎', '')
    """
    s = unicodedata.normalize("NFKC", str(name or "")).casefold().strip().translate(_VARIATION_SELECTORS)
    s = _TYPE_TAG_RE.sub("", s)
    out = []
    prev = " "
    for ch in s:
        cat = unicodedata.category(ch)[0]
        keep = cat not in "PZC" or (ch == "#" and (prev.isalnum() or prev == "#"))
        prev = ch if keep else " "
        out.append(ch if keep else " ")
    return " ".join("".join(out).split())


# ---------------------------------------------------------------------- matching
@dataclass
class Match:
    """The object given to each entity (index into the parsed objects, or None) and why."""

    index: list[int | None]
    #: per entity: "name" / "description" / "position" (how it was matched), or "not-mentioned"
    how: list[str] = field(default_factory=list)


class _Similar:
    """Whole-word containment or a difflib ratio >= 0.85 (names up to :data:`_MAX_SIMILAR_CHARS`), cached,
    with a bounded number of difflib computations per match."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], bool] = {}
        self.checks_left = _MAX_SIMILARITY_CHECKS
        self.ratios_left = _MAX_RATIOS

    def __call__(self, a: str, b: str) -> bool:
        if not a or not b:
            return False
        got = self.cache.get((a, b))
        if got is not None:
            return got
        short, long_ = sorted((a, b), key=len)
        res = len(short) >= 3 and f" {short} " in f" {long_} "  # whole-word containment
        if (
            not res
            and len(long_) <= _MAX_SIMILAR_CHARS
            and 2 * len(short) >= 0.85 * (len(a) + len(b))  # difflib's real_quick_ratio, an upper bound
            and self.checks_left > 0
        ):
            self.checks_left -= 1
            sm = difflib.SequenceMatcher(None, a, b)
            if sm.quick_ratio() >= 0.85 and self.ratios_left > 0:  # another upper bound
                self.ratios_left -= 1
                res = sm.ratio() >= 0.85
        self.cache[(a, b)] = res
        return res


def match_objects(
    objects: Sequence[AnswerObject],
    entities: Sequence[tuple[str, str | None]],
    *,
    types: Sequence[str | None] | None = None,
) -> Match:
    """``entities = [(name, description)]`` (``types``: each entity's type, where the request has them) ->
    the object of each (see the module doc).

    >>> objs = parse_objects('[{"bbox_2d": [1, 1, 9, 9], "label": "Apple"}]')
    >>> match_objects(objs, [("Apple", None), ("apple", None)]).index  # a repeated mention: its twin's
    [0, 0]
    >>> match_objects(objs, [("Apple", None), ("apple", None)], types=["ORG", "OTHER"]).index  # not a twin
    [0, None]
    """
    n = len(entities)
    index: list[int | None] = [None] * n
    how = ["not-mentioned"] * n
    if not objects or not n:
        return Match(index, how)
    raw = [str(e[0] or "").strip() for e in entities]
    ent_norm = [normalize_name(e) for e in raw]
    desc_norm = [normalize_name(e[1]) if len(e) > 1 and e[1] else "" for e in entities]
    ent_type = [_canon_type(t) for t in (list(types) + [None] * n)[:n]] if types is not None else [None] * n
    obj_raw = [set(o.names) for o in objects]
    obj_norm = [[y for y in dict.fromkeys(normalize_name(x) for x in o.names) if y] for o in objects]
    obj_set = [set(x) for x in obj_norm]
    obj_nospace = [{x.replace(" ", "") for x in xs} for xs in obj_norm]
    obj_types = [{t for t in (_canon_type(x) for x in getattr(o, "types", []) or []) if t} for o in objects]
    similar = _Similar()
    used: set[int] = set()

    def compatible(i: int, k: int) -> bool:
        return not (ent_type[i] and obj_types[k] and ent_type[i] not in obj_types[k])

    def types_differ(i: int, j: int) -> bool:
        return bool(ent_type[i] and ent_type[j] and ent_type[i] != ent_type[j])

    passes = [  # (how, test, loose): a loose match must be unambiguous
        ("name", lambda i, k: bool(ent_norm[i]) and raw[i] in obj_raw[k], False),
        ("name", lambda i, k: bool(ent_norm[i]) and ent_norm[i] in obj_set[k], False),
        ("name", lambda i, k: bool(ent_norm[i]) and ent_norm[i].replace(" ", "") in obj_nospace[k], False),
        ("description", lambda i, k: bool(desc_norm[i]) and desc_norm[i] in obj_set[k], False),
        ("name", lambda i, k: any(similar(ent_norm[i], x) for x in obj_norm[k]), True),
        ("description", lambda i, k: any(similar(desc_norm[i], x) for x in obj_norm[k]), True),
    ]
    for label, test, loose in passes:
        for i in range(n):
            if index[i] is not None:
                continue
            k = next(
                (k for k in range(len(objects)) if k not in used and compatible(i, k) and test(i, k)), None
            )
            if k is None:
                continue
            rivals = [
                j
                for j in range(n)
                if j != i
                and index[j] is None
                and ((loose and ent_norm[j] != ent_norm[i]) or types_differ(i, j))
                and compatible(j, k)
                and test(j, k)
            ]
            if rivals:
                continue  # "a man" fits two descriptions, "APPLE" both Apple ORG and apple OTHER: not said which
            index[i], how[i] = k, label
            used.add(k)
    # repeated mentions: an entity with the same name (and type) as a matched one receives its object
    for i in range(n):
        if index[i] is None and ent_norm[i]:
            twin = next(
                (j for j in range(n) if index[j] is not None and ent_norm[j] == ent_norm[i]
                 and not types_differ(i, j) and compatible(i, index[j])),
                None,
            )  # fmt: skip
            if twin is not None:
                index[i], how[i] = index[twin], how[twin]
    # position: counts agree, nothing contradicts it, and only for an object that carries no text at all
    if len(objects) == n and any(x is None for x in index):
        contradiction = False
        for k in range(len(objects)):
            holders = [i for i in range(n) if index[i] == k]
            if holders and holders != [k] and not all(ent_norm[h] == ent_norm[k] for h in holders):
                contradiction = True  # object k was matched by name to another entity than the k-th
            if not holders and objects[k].names:
                contradiction = True  # a named object that is no entity's: the answer is not in entity order
        if not contradiction:
            for i in range(n):
                o = objects[i]
                if (
                    index[i] is None
                    and i not in used
                    and not o.names
                    and not o.truncated
                    and compatible(i, i)
                ):
                    index[i], how[i] = i, "position"
                    used.add(i)
    return Match(index, how)
