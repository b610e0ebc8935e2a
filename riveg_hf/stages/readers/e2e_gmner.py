"""E2E-GMNER (Findings of ACL 2026; ``Finch-coder/E2E-GMNER``): Qwen2.5-VL-7B-Instruct fine-tuned (LoRA on the
language model) to answer, after a short reasoning, ``entity|type|box`` triples::

    <think>...</think><answer>Kevin Durant|PER|[201,81,396,225]; Warriors|ORG|None</answer>

with ``[[x1,y1,x2,y2],[x1,y1,x2,y2]]`` for an entity with several boxes and ``None`` for an answer without
entity. The repository publishes code, no checkpoint: a user trains one (``scripts/train_lora.sh``) and gives
riveg-hf the merged model (or the base model with the adapter) as a Qwen2.5-VL. Everything here follows its
code at commit ``d90c1ebfebe18dcb00380b692a657f66ac19d551`` (cited by file and line):

* **Prompt texts are not shipped** (E2E-GMNER's repository has no license). ``instruction_file=`` is the
  instruction the SFT data were built with (``INSTRUCTION``, ``scripts/gmner_to_sft_data.py`` L26-33) and
  ``system_prompt_file=`` the system prompt its collator adds at training and evaluation
  (``DEFAULT_SYSTEM_PROMPT``, ``src/e2egmner/data/collator.py`` L9-18; used when ``--system_prompt`` is not
  given, L45). Each may be a text file holding the text (read as UTF-8; one final line break is not part of
  it) or the Python file of a checkout that defines it, whose constant is read with :mod:`ast` (never
  executed)::

      JointReader(model, processor, family="e2e-gmner",
                  instruction_file="E2E-GMNER/scripts/gmner_to_sft_data.py",
                  system_prompt_file="E2E-GMNER/src/e2egmner/data/collator.py")

  Their SHA-256 are pinned in :data:`PROMPT_SHA256`: the UTF-8 bytes of each constant's value as Python
  builds it (the implicit concatenation of its string literals; ``INSTRUCTION`` ends with ``"Text: "``, a
  space included), i.e. ``hashlib.sha256(ast.literal_eval(<the assignment's value>).encode()).hexdigest()``.
  A text that differs is used, with a warning that the checkpoints were trained with another one. An empty
  system prompt means no system turn (the collator's ``if self.system_prompt``, L72).
* **Messages** (collator ``build_messages`` L70-86): the system turn, then one user turn: the image, then the
  text ``INSTRUCTION + tweet``; the tweet is its words joined by single spaces and HTML-unescaped
  (``tokens_to_text`` L153-154, ``convert_record`` L403-406), and the user text goes through the dataset's
  ``strip_image_token_and_prefix`` (``src/e2egmner/data/dataset.py`` L11-19, L52: ``<image>`` removed,
  stripped). Line breaks an unescaped tweet would bring become spaces (a tweet never starts a line of the
  prompt). A tweet without an image is sent as the text alone (E2E-GMNER never trained on one).
* **Image**: RGB (dataset L58), resized by the processor with E2E-GMNER's pixel bounds, ``min_pixels`` =
  256*28*28 = 200704 and ``max_pixels`` = 1024*28*28 = 802816 (``src/e2egmner/cli/train.py`` L94-96, passed to
  ``AutoProcessor.from_pretrained`` L241-246 and saved with the checkpoint, L564-565; ``eval.py`` L79-88 reads
  them back). The reader works on a copy of the processor whose image processor has those bounds (the
  processor given is left as it is), so any Qwen2.5-VL processor resizes as the checkpoints were trained:
  Qwen's ``smart_resize``, sides multiples of 28 within [min_pixels, max_pixels] (``geometry.py`` L226-267;
  e.g. 640x480 -> 644x476, 2000x1000 -> 1260x616, 300x200 -> 560x392). Served, the image is resized here to
  the same size.
* **Boxes** are in the pixels of that resized image (the collator rescales the gold boxes into it,
  ``geometry.py`` L330-421, and scores in it, ``engine/evaluator.py`` L340-342). They are mapped to the
  original image by original / resized per axis (``image_grid_thw`` gives the size the model saw), kept as
  floats (E2E-GMNER's ``inverse_scale_box_xyxy``, L304-328, rounds to integers), corners sorted and clipped to
  the image.
* **Decoding**: greedy; ``max_new_tokens`` 512 by default (``--eval_max_new_tokens``, ``eval.py`` L44).
* **Types**: the dataset's own, PER / LOC / ORG / OTHER (``bio_to_entities`` L157-186 keeps the BIO tags of
  Twitter10000_v2.0, which say OTHER).

**Reading the answer** (:func:`answer_block`, :func:`read_triples`, :func:`read_regions`) re-expresses
``src/e2egmner/evaluation/parsing.py`` (``extract_answer_text`` L38-54, ``normalize_separators`` L8-9 +
L23-28, ``parse_triples`` L183-199, ``parse_triple_segment`` L136-180, ``parse_bbox_regions`` L89-133,
``_boxes_from_numbers`` L76-86): the first ``<answer>...</answer>`` (any case), else what follows the first
``</think>``, else the whole answer; the bar variants ``｜ │ 丨 ￨ ∣`` read as ``|``; entities separated by runs
of ``;``, ``；`` or line breaks; ``None`` (any case) as the whole answer or as a part: no entity; a part needs
three non-empty ``|`` fields (the last two are the type and the box, the ones before are the entity, joined by
``" | "``); a box field ``None`` / ``n/a`` is "not visible"; JSON ``[x1,y1,x2,y2]`` or a non-empty list of
such lists; ``[]`` is invalid; else every number in the field, four by four (``(1, 2, 3, 4)``,
``1 2 3 4 5 6 7 8``); no numbers, or a count that is not a multiple of four, is invalid. Where riveg-hf differs, on purpose:

* **Several boxes** for one entity: riveg-hf keeps one box per entity, the first of the answer that is a box
  inside the image; the others are named in the entity's note. (E2E-GMNER's scorer counts an entity right when
  any of its boxes matches any gold box, ``evaluation/geometry.py`` L42-85; the gold's multiple boxes are the
  same name boxed several times, so one of them is an exact answer, where their union is not.)
* **An invalid box** (``[]``, ``[1,2,3]``, no number): the entity and its type are kept, not visible, with a
  note (E2E-GMNER's scorer keeps the triple and counts its region wrong, ``geometry.py`` L74-75; riveg-hf has
  no "wrong region" value, and never invents one). A box with no area inside the image (past its edges, NaN, a
  corner of 1e999) is likewise not visible, with a note.
* **A type** other than PER / LOC / ORG / OTHER (exactly, as the scorer compares them): the entity is left
  out, with a note (E2E-GMNER's scorer keeps it, a false positive).
* **A ``<think>`` never closed** (the answer was cut while reasoning): no entity (E2E-GMNER reads the whole
  answer, the reasoning included, as triples).
* **An ``<answer>`` never closed** (cut while answering): the parts written before the last separator are
  read, the one being written when the answer stopped is left out with a note (E2E-GMNER keeps ``<answer>`` in
  the first entity's name and reads the cut part).
* Parts that are not ``entity|type|box`` are named in a note (E2E-GMNER drops them silently).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import html
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...boxes import box_in_image
from ...serving.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, check_pixels, smart_resize
from ...text import prompt_field
from ...types import ENTITY_TYPES
from ..reader import FoundEntity, JointReader, ReadRequest, register
from ..registry import Option
from ..tiny import tiny_qwen2_5_vl

#: the commit of Finch-coder/E2E-GMNER this family follows
COMMIT = "d90c1ebfebe18dcb00380b692a657f66ac19d551"
#: option -> (where the text is defined in an E2E-GMNER checkout, the constant's name, its SHA-256 at COMMIT)
PROMPTS = {
    "instruction_file": (
        "scripts/gmner_to_sft_data.py",
        "INSTRUCTION",
        "63d2a98154aceabe3bf92ad2fd743841a299541e8e9222092a5b5f1224894095",
    ),
    "system_prompt_file": (
        "src/e2egmner/data/collator.py",
        "DEFAULT_SYSTEM_PROMPT",
        "15b374936a291d3e52eb0d1dc7dfc16b8a4a6dbeb8d9365a38dce05abab70330",
    ),
}
PROMPT_SHA256 = {key: sha for key, (_, _, sha) in PROMPTS.items()}
#: E2E-GMNER's image bounds (train.py L94-96): Qwen2.5-VL's smart_resize, sides multiples of FACTOR
MIN_PIXELS = 256 * 28 * 28
MAX_PIXELS = 1024 * 28 * 28
FACTOR = 28
#: the bar variants read as "|" (parsing.py L8-9)
BARS = "\uff5c\u2502\u4e28\uffe8\u2223"
_BARS = str.maketrans(dict.fromkeys(BARS, "|"))
_SEPARATORS = re.compile(r"[;\uff1b\n]+")
_NUMBER = re.compile(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_AFTER_THINK = re.compile(r"</think>\s*(.*)$", re.S | re.I)
_OPEN = {tag: re.compile(f"<{tag}>", re.I) for tag in ("think", "answer")}
_NOT_VISIBLE = ("none", "n/a")
#: how many of the parts left out a note quotes (the rest are counted)
_QUOTED = 3

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Triple:
    """One ``entity|type|box`` part of an answer, as E2E-GMNER reads it: ``regions`` None = not visible (when
    ``valid``) or an invalid box (when not)."""

    name: str
    type: str
    regions: list[Box] | None
    valid: bool
    box_text: str


# ---------------------------------------------------------------------- reading an answer
def answer_block(answer: str) -> tuple[str | None, bool, str | None]:
    """(the text holding the triples, whether it was cut before ``</answer>``, a note): the first closed
    ``<answer>`` block, else what follows the first ``</think>``, else the whole answer. None when the answer
    stopped inside its ``<think>`` block.

    >>> answer_block("<think>two people</think><answer>Obama|PER|None</answer>")
    ('Obama|PER|None', False, None)
    >>> answer_block("<think>Obama|PER|None is")[0] is None
    True
    """
    text = (answer or "").strip()
    closed = _ANSWER.search(text)
    if closed:
        return closed.group(1).strip(), False, None
    after = _AFTER_THINK.search(text)
    if after:
        text = after.group(1).strip()
    elif _OPEN["think"].search(text):
        return (
            None,
            False,
            "the answer stopped inside its <think> block (no </think>, no <answer>): no entity read",
        )
    opened = _OPEN["answer"].search(text)
    if opened:
        return text[opened.end() :].strip(), True, None
    return text, False, None


def read_regions(field: str) -> tuple[list[Box] | None, bool]:
    """A box field -> (boxes or None, valid), as ``parse_bbox_regions`` (parsing.py L89-133) reads it.

    >>> read_regions("[[1,2,3,4],[5,6,7,8]]")
    ([(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)], True)
    >>> read_regions("None"), read_regions("[]"), read_regions("[1,2,3]")
    ((None, True), (None, False), (None, False))
    """
    s = field.strip()
    if not s:
        return None, False
    if s.lower() in _NOT_VISIBLE:
        return None, True
    try:
        value = json.loads(s)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, list):

        def four(v: Any) -> bool:
            return isinstance(v, list) and len(v) == 4 and all(isinstance(x, (int, float)) for x in v)

        try:
            if four(value):
                return [tuple(float(x) for x in value)], True  # type: ignore[list-item]
            if value and all(isinstance(b, list) for b in value) and all(four(b) for b in value):
                return [tuple(float(x) for x in b) for b in value], True  # type: ignore[misc]
        except OverflowError:  # an integer too large for a float: read as text below
            pass
        else:
            if not value:
                return None, False
    numbers = [float(n) for n in _NUMBER.findall(s)]
    if not numbers or len(numbers) % 4:
        return None, False
    return [tuple(numbers[i : i + 4]) for i in range(0, len(numbers), 4)], True  # type: ignore[misc]


def read_triples(block: str, *, cut: bool = False) -> tuple[list[Triple], list[str]]:
    """The triples of an answer block, and the parts that are not one (``parse_triples``, parsing.py L183-199,
    and ``parse_triple_segment`` L136-180). ``cut``: the block stopped mid-way; its last part (after the last
    separator) is left out.

    >>> [(t.name, t.type, t.regions) for t in read_triples("AT|T｜ORG|None；Obama|PER|[1,2,3,4]\\nnone")[0]]
    [('AT | T', 'ORG', None), ('Obama', 'PER', [(1.0, 2.0, 3.0, 4.0)])]
    """
    text = block.translate(_BARS).strip()
    if not text or text.lower() == "none":
        return [], []
    parts = _SEPARATORS.split(text)
    dropped = []
    tail = parts.pop().strip() if cut and parts and parts[-1].strip() else None
    triples = []
    for part in parts:
        part = part.strip()
        if not part or part.lower() == "none":
            continue
        fields = [f.strip() for f in part.split("|") if f.strip()]
        if len(fields) < 3:
            dropped.append(part)
            continue
        regions, valid = read_regions(fields[-1])
        triples.append(Triple(" | ".join(fields[:-2]), fields[-2], regions, valid, fields[-1]))
    if tail:
        dropped.append(tail)
    return triples, dropped


def trained_size(width: int, height: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """(width, height) of the image E2E-GMNER's checkpoints see for a ``width`` x ``height`` image.

    >>> trained_size(640, 480), trained_size(2000, 1000), trained_size(300, 200)
    ((644, 476), (1260, 616), (560, 392))
    """
    h, w = smart_resize(height, width, FACTOR, min_pixels, max_pixels)
    return w, h


# ---------------------------------------------------------------------- the prompt files
def read_prompt(path: str | Path, option: str) -> str:
    """The text of a prompt file (see the module doc): a text file, or E2E-GMNER's Python file defining it."""
    where, constant, _ = PROMPTS[option]
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"e2e-gmner reader: {option}={str(path)!r} is not a file; give the text file holding "
            f"E2E-GMNER's {constant}, or {where} of a checkout (https://github.com/Finch-coder/E2E-GMNER)"
        )
    source = p.read_text(encoding="utf-8-sig")
    if p.suffix == ".py":
        try:
            tree = ast.parse(source, filename=str(p))
            node = next(
                n.value
                for n in tree.body
                if (isinstance(n, ast.Assign) and any(getattr(t, "id", None) == constant for t in n.targets))
                or (isinstance(n, ast.AnnAssign) and getattr(n.target, "id", None) == constant and n.value)
            )
            text = ast.literal_eval(node)
        except (SyntaxError, StopIteration, ValueError, TypeError, RecursionError) as err:
            raise ValueError(
                f"e2e-gmner reader: {p} defines no string {constant} = ... that can be read without running it "
                f"({type(err).__name__}); give {where} of an E2E-GMNER checkout, or a text file holding it"
            ) from None
        if not isinstance(text, str):
            raise ValueError(f"e2e-gmner reader: {constant} in {p} is not a string")
        return text
    if source.endswith("\r\n"):
        return source[:-2]
    return source[:-1] if source.endswith("\n") else source


def _check_pinned(text: str, path: str | Path, option: str) -> None:
    where, constant, sha = PROMPTS[option]
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha:
        warnings.warn(
            f"{path} is not E2E-GMNER's {constant} ({where} at commit {COMMIT[:7]}; SHA-256 differs): its "
            "checkpoints were trained with that one; answers and scores may differ",
            stacklevel=3,
        )


def with_pixels(processor: Any, min_pixels: int, max_pixels: int) -> Any:
    """A copy of ``processor`` whose image processor resizes within ``[min_pixels, max_pixels]`` (``processor`` and
    its image processor are left unchanged; the tokenizer is shared)."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return processor
    proc = copy.copy(processor)
    ip = copy.deepcopy(image_processor)
    size = getattr(ip, "size", None)
    if dataclasses.is_dataclass(size):  # transformers 5: a SizeDict
        updates = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        updates.update({k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels))
                        if getattr(size, k, None) is not None})  # fmt: skip
        ip.size = dataclasses.replace(size, **updates)
    else:
        ip.size = {**dict(size or {}), "shortest_edge": min_pixels, "longest_edge": max_pixels}
    for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if getattr(ip, key, None) is not None:  # transformers 4 read these attributes
            setattr(ip, key, value)
    proc.image_processor = ip
    return proc


def user_text(instruction: str, tweet: str) -> str:
    """The user turn's text: the instruction, then the tweet as the SFT data give it (see the module doc)."""
    text = prompt_field(html.unescape(" ".join(tweet.split())))
    text = (instruction + text).replace("<image> Text:", "<image>\nText:")
    return text.replace("<image>", "").strip()


# ---------------------------------------------------------------------- the family
@register
class E2EGmnerReader(JointReader):
    family = "e2e-gmner"
    model_types = ("qwen2_5_vl",)
    tiny_builders = {"qwen2_5_vl": tiny_qwen2_5_vl}
    family_options = (
        Option("instruction_file", None, "path", "E2E-GMNER's instruction (its script, or a text file holding "
               "it)", nullable=True),
        Option("system_prompt_file", None, "path", "E2E-GMNER's system prompt (its collator, or a text file)",
               nullable=True),
        Option("min_pixels", MIN_PIXELS, "positive-int", "the fewest pixels of the resized image"),
        Option("max_pixels", MAX_PIXELS, "positive-int", "the most pixels of the resized image"),
    )  # fmt: skip
    default_max_new_tokens = 512  # eval.py L44 (--eval_max_new_tokens)

    def _options_changed(self, names: set[str]) -> None:
        super()._options_changed(names)
        processor = self.__dict__.setdefault("_given_processor", self.processor)
        missing = [k for k in PROMPTS if not getattr(self, k)]
        if missing:
            where = "; ".join(
                f"{k}=<checkout>/{PROMPTS[k][0]} (its {PROMPTS[k][1]}) or a text file holding it"
                for k in missing
            )
            raise ValueError(
                "e2e-gmner reader: E2E-GMNER's prompt texts are not shipped with riveg-hf (its repository has no "
                f"license). Pass {where}; git clone https://github.com/Finch-coder/E2E-GMNER"
            )
        texts = {}
        for key in PROMPTS:
            texts[key] = read_prompt(getattr(self, key), key)
            _check_pinned(texts[key], getattr(self, key), key)
        self.instruction = texts["instruction_file"]
        self.system_prompt = texts["system_prompt_file"].strip()  # collator L45
        if self.client is not None:  # served: min_pixels / max_pixels are served()'s, its defaults are Qwen's
            lo, hi = self.pixels
            self.min_pixels = self.min_pixels if lo == DEFAULT_MIN_PIXELS else lo
            self.max_pixels = self.max_pixels if hi == DEFAULT_MAX_PIXELS else hi
        self.min_pixels, self.max_pixels = check_pixels(self.min_pixels, self.max_pixels, "e2e-gmner reader")
        if self.client is not None:
            self.pixels = (self.min_pixels, self.max_pixels)  # the image is resized here before it is sent
        elif processor is not None:
            self.processor = with_pixels(processor, self.min_pixels, self.max_pixels)

    # ------------------------------------------------------------------ the hooks
    def sent_image(self, image):
        return image.convert("RGB") if image.mode != "RGB" else image

    def messages(self, request: ReadRequest, image: Any) -> list[dict[str, Any]]:
        chat = []
        if self.system_prompt:
            chat.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        content = [{"type": "image"}] if image is not None else []
        content.append({"type": "text", "text": user_text(self.instruction, request.text)})
        chat.append({"role": "user", "content": content})
        return chat

    def parse(self, answer, request, sent_size, input_size):
        block, cut, note = answer_block(answer)
        notes = [note] if note else []
        if block is None:
            return [], notes
        triples, dropped = read_triples(block, cut=cut)
        if dropped:
            quoted = ", ".join(repr(_short(d)) for d in dropped[:_QUOTED])
            more = f" and {len(dropped) - _QUOTED} more" if len(dropped) > _QUOTED else ""
            last = " (the last one was cut: the answer stopped before </answer>)" if cut else ""
            notes.append(
                f"{len(dropped)} part(s) of the answer are not entity|type|box and are left out: {quoted}{more}{last}"
            )
        image = request.image
        frame = None
        if image is not None:
            trained = trained_size(*image.size, self.min_pixels, self.max_pixels)
            frame = tuple(input_size) if input_size else trained
            if frame != trained:
                notes.append(
                    f"the model saw the image at {frame[0]}x{frame[1]}, not the {trained[0]}x{trained[1]} of "
                    f"E2E-GMNER's resize ({self.min_pixels}..{self.max_pixels} pixels): boxes are read in the former"
                )
        found = []
        for t in triples:
            if t.type not in ENTITY_TYPES:
                notes.append(
                    f"{t.name!r} has the type {t.type!r}, not one of {list(ENTITY_TYPES)} (E2E-GMNER's): left out"
                )
                continue
            box, entity_note = None, None
            if not t.valid:
                notes.append(
                    f"{t.name!r}: the box {_short(t.box_text)!r} is not a box (E2E-GMNER counts its region wrong): "
                    "not visible"
                )
            elif t.regions is not None and frame is not None:
                mapped = [_to_original(r, image.size, frame) for r in t.regions]
                kept = next((k for k, b in enumerate(mapped) if b is not None), None)
                if kept is None:
                    notes.append(
                        f"{t.name!r}: the box {_short(t.box_text)!r} is not a box inside the image: not visible"
                    )
                else:
                    box = mapped[kept]
                    others = [b for k, b in enumerate(mapped) if k != kept]
                    if others:
                        shown = [
                            [round(v, 1) for v in b] if b is not None else "outside the image" for b in others
                        ]
                        entity_note = (
                            f"the answer gives {len(mapped)} boxes; riveg-hf keeps one, the first inside the image "
                            f"(E2E-GMNER's scorer counts any box that matches); the others, in original pixels: "
                            f"{_short(json.dumps(shown), 300)}"
                        )
            found.append(FoundEntity(t.name, t.type, box, None, entity_note))
        return found, notes


def _to_original(region: Box, original: tuple[int, int], frame: tuple[int, int]) -> list[float] | None:
    """A box in the pixels of the image the model saw -> pixel xyxy of the original, clipped; None if empty."""
    (w, h), (fw, fh) = original, frame
    sx, sy = w / fw, h / fh
    x0, y0, x1, y1 = region
    return box_in_image([x0 * sx, y0 * sy, x1 * sx, y1 * sy], w, h)  # NaN / inf -> None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
