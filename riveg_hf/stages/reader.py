"""The joint reader -- the "read jointly" role: one multimodal LLM reads a tweet and its image and writes every
entity, its type and its box (or "not visible") in one answer, the shape of the current best GMNER systems
(E2E-GMNER, SAKE, MCR, MAKAR). With a reader the pipeline skips recognize / describe / decide visibility /
locate, and still segments the reader's boxes (segmented-mner = the reader's boxes + a box-prompted SAM).

Every family answers one protocol::

    read_many([ReadRequest(image, text)], vision_batch_size=8) -> [Reading(entities, notes, answer)]

``Reading.entities`` are :class:`ReadEntity`: the entity as written in the tweet with its **character offsets**
(the answer's strings placed back onto the text, see :func:`place_entities`), its type, its box in **pixel xyxy of
the original image** or None (not visible), ``box_score`` or None, and a note when something is worth saying.
An entity string the tweet does not contain is never invented: it is left out of the spans and named in
``Reading.notes``.

The families (``family=``: one architecture, Qwen2.5-VL, serves several trained answer formats, so the family
is chosen by name and recorded in the composite; each module checks the model types it accepts):

==============  ====================================  ====================================================
family          model types                           what (module)
==============  ====================================  ====================================================
``qwen-vl``     qwen2_vl, qwen2_5_vl, qwen3_vl,       zero-shot default for any instruct Qwen-VL: a JSON
                qwen3_vl_moe                          list of ``{"entity", "type", "bbox_2d"}`` in the
                                                      family's trained coordinates (``readers.qwen_vl``)
``sake``        qwen2_5_vl                            SAKE (tangjielong928/SAKE; ``SYSU-AI/SAKE-7B_gmner``
                                                      / ``_fmnerg``): its prompt files, its resize,
                                                      ``<answer>[{"entity", "type", "box2d"}]</answer>``
                                                      (``readers.sake``)
``e2e-gmner``   qwen2_5_vl                            E2E-GMNER (Finch-coder/E2E-GMNER; a fine-tuned
                                                      Qwen2.5-VL): its prompt files, its resize,
                                                      ``<answer>entity|type|[x1,y1,x2,y2];...</answer>``
                                                      (``readers.e2e_gmner``)
==============  ====================================  ====================================================

A new family is one module: a subclass with ``family``, ``model_types``, ``family_options``, ``tiny_builders``
and the three hooks :meth:`JointReader.messages`, :meth:`JointReader.sent_image` and :meth:`JointReader.parse`,
registered with ``@register`` (see :mod:`riveg_hf.stages.registry`); ``tests/test_families.py`` checks this
table against :data:`FAMILIES`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from transformers import AutoModelForImageTextToText

from ..boxes import as_xyxy
from .base import Stage
from .registry import FamilyRegistry, Option

__all__ = [
    "FAMILIES",
    "FAMILY_MODULES",
    "MAX_NEW_TOKENS",
    "FoundEntity",
    "JointReader",
    "ReadEntity",
    "ReadRequest",
    "Reading",
    "family_class",
    "place_entities",
    "register",
]

#: the library's reader families: family name -> its module ``riveg_hf.stages.readers.<module>`` (each registers
#: its class on import)
FAMILY_MODULES = {"qwen-vl": "qwen_vl", "sake": "sake", "e2e-gmner": "e2e_gmner"}
DEFAULT_FAMILY = "qwen-vl"
#: the most tokens one answer may take (a checkpoint's setting is bounded by it): SAKE's own runs use 8192
MAX_NEW_TOKENS = 8192
#: the most entities one answer may give (the rest are noted, not kept): bounds the work per tweet
MAX_ENTITIES = 256

#: the reader families (see :mod:`riveg_hf.stages.registry`), chosen by name (``family=``)
FAMILIES = FamilyRegistry(
    "reader", f"{__package__}.readers", tuple(FAMILY_MODULES.values()), by_name=True,
    hint="Pass family=... to the reader, e.g. reader_family='sake' in RiVEGPipeline.from_components.",
)  # fmt: skip
register = FAMILIES.register


def family_class(family: str) -> type[JointReader]:
    """The reader class of ``family`` (a registered family's name)."""
    try:
        return FAMILIES.by_name(family)
    except TypeError as err:
        raise ValueError(
            f"unknown reader family {family!r}; valid: {sorted(FAMILIES.names())} (pass family=... to the reader, "
            "e.g. reader_family='sake' in RiVEGPipeline.from_components)"
        ) from err


# ---------------------------------------------------------------------- the records
@dataclass
class ReadRequest:
    """One tweet to read: its image (PIL, or None: the text alone, every entity not visible), its text, and its
    id (a family that looks things up by tweet, SAKE's search cache, uses it)."""

    image: Any
    text: str
    id: str | None = None


@dataclass
class FoundEntity:
    """An entity as a family's parser read it from the answer, before it is placed onto the text."""

    name: str
    type: str
    #: pixel xyxy of the original image, or None (not visible)
    box: list[float] | None
    box_score: float | None = None
    note: str | None = None


@dataclass
class ReadEntity:
    """One entity of a :class:`Reading`: placed in the tweet (character offsets), typed, with its box."""

    entity: str
    type: str
    start: int
    end: int
    box: list[float] | None
    box_score: float | None = None
    note: str | None = None

    def __post_init__(self):
        if not (0 <= self.start < self.end):
            raise ValueError(f"ReadEntity: span [{self.start}, {self.end}) is empty or negative")
        self.box = as_xyxy(self.box, what=f"box of {self.entity!r}") if self.box is not None else None
        if self.box_score is not None:
            self.box_score = min(1.0, max(0.0, float(self.box_score)))


@dataclass
class Reading:
    """A reader's answer for one tweet: its entities in text order, notes on what was not kept, the raw answer."""

    entities: list[ReadEntity]
    notes: list[str] = field(default_factory=list)
    answer: str | None = None
    #: why there is no answer at all (a served reader's request failed): the tweet's entities are unknown, not none
    error: str | None = None


# ---------------------------------------------------------------------- entities back onto the text
def _fold(text: str, mode: str) -> tuple[str, list[int]]:
    """``text`` folded, with, per folded character, the index of the original character it came from.
    ``"case"``: casefold, white space runs as one space; ``"nospace"``: casefold without white space;
    ``"nfkc"``: NFKC + casefold without white space, format characters and combining marks, dashes unified."""
    out, origin = [], []
    for i, ch in enumerate(text):
        piece = unicodedata.normalize("NFKC", ch) if mode == "nfkc" else ch
        for c in piece.casefold():
            if c.isspace():
                if mode == "case" and out and out[-1] != " ":
                    out.append(" ")
                    origin.append(i)
                continue
            if mode == "nfkc" and unicodedata.category(c) in ("Cf", "Mn"):
                continue
            if mode == "nfkc" and unicodedata.category(c) == "Pd":
                c = "-"
            out.append(c)
            origin.append(i)
    return "".join(out), origin


def place_entities(text: str, found: Sequence[FoundEntity]) -> tuple[list[ReadEntity], list[str]]:
    """Put the answer's entity strings back onto the tweet: exact, then case-insensitive, then also space-insensitive,
    then Unicode (NFKC) normalised; each occurrence of the text is used once, in order, and two entities never overlap. An
    entity that is not in the text is not invented: it is left out, with a note.

    >>> ents, notes = place_entities("Messi and messi in Miami", [FoundEntity("Messi", "PER", None),
    ...     FoundEntity("Messi", "PER", None), FoundEntity("Paris", "LOC", None)])
    >>> [(e.entity, e.start, e.end) for e in ents], notes
    ([('Messi', 0, 5), ('messi', 10, 15)], ["'Paris' (LOC) is not in the tweet: left out"])
    """
    taken: list[tuple[int, int]] = []
    folded = {mode: _fold(text, mode) for mode in ("case", "nospace", "nfkc")}
    placed, notes = [], []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    def find(name: str) -> tuple[int, int] | None:
        if not name:
            return None
        at = text.find(name)
        while at >= 0:
            if free(at, at + len(name)):
                return at, at + len(name)
            at = text.find(name, at + 1)
        for mode, (hay, origin) in folded.items():
            needle = _fold(name, mode)[0].strip()
            if not needle:
                continue
            at = hay.find(needle)
            while at >= 0:
                a, b = origin[at], origin[at + len(needle) - 1] + 1
                if free(a, b):
                    return a, b
                at = hay.find(needle, at + 1)
        return None

    for f in found:
        span = find(f.name.strip())
        if span is None:
            notes.append(f"{f.name!r} ({f.type}) is not in the tweet: left out")
            continue
        taken.append(span)
        placed.append(
            ReadEntity(text[span[0] : span[1]], f.type, span[0], span[1], f.box, f.box_score, f.note)
        )
    placed.sort(key=lambda e: e.start)
    return placed, notes


# ---------------------------------------------------------------------- the base class
def _saved(model: Any, key: str) -> Any:
    """What ``riveg train reader`` recorded in the checkpoint's config (``riveg_reader_family``,
    ``riveg_entity_types``), else None."""
    return getattr(getattr(model, "config", None), key, None) or None


class JointReader(Stage):
    """The base class of every reader family (see the module doc). ``JointReader(model, processor,
    family="sake")`` builds that family's class; the default family is ``qwen-vl``."""

    name = "reader"
    auto_classes = (AutoModelForImageTextToText,)
    batches_on_cpu = True  # decoding several tweets together costs about one
    #: the family's name (``family=``)
    family: ClassVar[str] = ""
    #: the model types (``config.model_type``) the family's checkpoints have
    model_types: ClassVar[tuple[str, ...]] = ()
    default_max_new_tokens: ClassVar[int] = 1024
    role_options = (
        Option("max_new_tokens", None, "positive-int", "the most tokens of one answer (None: the family's "
               "default)", high=MAX_NEW_TOKENS),
    )  # fmt: skip

    def __new__(cls, model=None, processor=None, *, family: str | None = None, **options):
        if cls is JointReader:  # the family asked for, else the one a trained reader recorded, else qwen-vl
            cls = family_class(family or _saved(model, "riveg_reader_family") or DEFAULT_FAMILY)
        elif family is not None and family != cls.family:
            raise ValueError(f"{cls.__name__} is the {cls.family!r} reader family, not {family!r}")
        return super().__new__(cls)

    def __init__(self, model, processor, *, family: str | None = None, **options: Any):
        super().__init__(model, processor)
        if not hasattr(self, "client"):  # in process (served() sets the client and the architecture first)
            self.client, self.endpoint_family = None, None
        model_type = getattr(getattr(model, "config", None), "model_type", None) or self.endpoint_family
        #: the architecture answering: the model's type in process, the served model's family on a server
        self.model_type = model_type
        if model_type not in self.model_types:
            raise ValueError(
                f"reader family {self.family!r} reads checkpoints of model types {list(self.model_types)}, got "
                f"{model_type!r} ({type(model).__name__}); valid families: {sorted(FAMILIES.names())}"
            )
        saved_types = _saved(model, "riveg_entity_types")  # a trained reader's types (riveg train reader)
        if saved_types and options.get("entity_types") is None and "entity_types" in self.declared_options():
            options["entity_types"] = tuple(saved_types)
        self._init_options(options, extra=("family",))
        if processor is not None:
            getattr(processor, "tokenizer", processor).padding_side = "left"  # batched generation

    def configure(self, **options: Any) -> JointReader:
        family = options.pop("family", self.family)
        if family != self.family:
            raise ValueError(
                f"reader: family is {self.family!r}, got {family!r}: the family is chosen when the reader is built "
                f"(JointReader(model, processor, family={family!r}))"
            )
        return super().configure(**options)  # type: ignore[return-value]

    def _options_changed(self, names: set[str]) -> None:
        if self.max_new_tokens is None:
            self.max_new_tokens = self.default_max_new_tokens

    def options(self) -> dict[str, Any]:
        out = {"family": self.family, **super().options()}
        if self.client is not None:  # settings only: never the token (the composite records URL and model)
            out.update(endpoint=self.client.config(), endpoint_family=self.endpoint_family,
                       min_pixels=self.pixels[0], max_pixels=self.pixels[1])  # fmt: skip
        return out

    def save_pretrained(self, directory) -> None:
        if self.client is None:
            super().save_pretrained(directory)  # a served reader has no weights here: its options say it all

    def to(self, device):
        return self if self.model is None else super().to(device)

    # ------------------------------------------------------------------ the family's hooks
    def messages(self, request: ReadRequest, image: Any) -> list[dict[str, Any]]:
        """The chat sent for ``request``: ``{"type": "image"}`` where the image goes (``image`` is None: none)."""
        raise NotImplementedError

    def sent_image(self, image: Any) -> Any:
        """The image as the family's checkpoints were trained to see it (default: as given)."""
        return image

    def parse(
        self,
        answer: str,
        request: ReadRequest,
        sent_size: tuple[int, int] | None,
        input_size: tuple[int, int] | None,
    ) -> tuple[list[FoundEntity], list[str]]:
        """The entities of ``answer`` with boxes in original pixels, and notes. ``sent_size``: the image as sent
        (:meth:`sent_image`); ``input_size``: as the processor resized it (None without an image)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the protocol
    @torch.no_grad()
    def read_many(self, requests: Sequence[ReadRequest], *, vision_batch_size: int = 8) -> list[Reading]:
        """One :class:`Reading` per request: one generation per tweet, ``vision_batch_size`` tweets per batched
        (left-padded) greedy generation; tweets with and without an image go in separate batches."""
        out: list[Reading | None] = [None] * len(requests)
        with_image = [i for i, r in enumerate(requests) if r.image is not None]
        without = [i for i, r in enumerate(requests) if r.image is None]
        size = max(1, int(vision_batch_size))
        for group in (with_image, without):
            for start in range(0, len(group), size):
                idx = group[start : start + size]
                for i, reading in zip(idx, self._read([requests[i] for i in idx])):
                    out[i] = reading
        return out  # type: ignore[return-value]

    def _read(self, chunk: list[ReadRequest]) -> list[Reading]:
        """One turn: the chats of ``chunk`` generated together, each answer read."""
        images = [self.sent_image(r.image) if r.image is not None else None for r in chunk]
        chats = [self.messages(r, im) for r, im in zip(chunk, images)]
        answers = self._generate(chats, [[im] if im is not None else [] for im in images])
        return [
            self.reading(text, r, im.size if im is not None else None, seen, [note] if note else [])
            if text is not None
            else Reading([], [], None, error=note)
            for (text, note, seen), r, im in zip(answers, chunk, images)
        ]

    # ------------------------------------------------------------------ generation: in process or served
    def _generate(
        self, chats: list[list[dict]], images: list[list[Any]]
    ) -> list[tuple[str, str | None, tuple[int, int] | None]]:
        """Greedy answers of the chats (``{"type": "image"}`` items taking ``images`` in order), batched:
        per chat (answer or None when there is none, a note when it was cut or why it failed, the first image's
        size as the model saw it)."""
        if self.client is not None:
            return self._generate_served(chats, images)
        from .grounders.qwen_vl import decode_with_offsets, strip_end

        proc = self.processor
        tok = getattr(proc, "tokenizer", proc)
        prompts = [proc.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
        flat = [im for ims in images for im in ims]
        enc = proc(text=prompts, images=flat or None, return_tensors="pt", padding=True)
        grids = enc["image_grid_thw"].tolist() if flat else []
        first, at = [], 0  # the row of image_grid_thw of each chat's first image
        for ims in images:
            first.append(self.input_size(grids[at]) if ims else None)
            at += len(ims)
        gen = self.model.generate(
            **{k: v.to(self.model.device) if hasattr(v, "to") else v for k, v in enc.items()},
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            return_dict_in_generate=True,
        )
        new = gen.sequences[:, enc["input_ids"].shape[1] :].cpu()
        stop = {tok.eos_token_id, tok.pad_token_id} - {None}
        out = []
        for k in range(len(chats)):
            ids = new[k].tolist()
            n = next((t for t, x in enumerate(ids) if x in stop), None)
            text, _ = decode_with_offsets(tok, ids[: n if n is not None else len(ids)])
            out.append((strip_end(text), None if n is not None else self._cut_note(), first[k]))
        return out

    def _cut_note(self) -> str:
        return (
            f"the answer was cut at max_new_tokens={self.max_new_tokens} (too long or degenerate); the entities "
            "complete before the cut are kept"
        )

    def _generate_served(self, chats, images):
        """The chats as OpenAI chat-completions requests, all in flight together; a failed request is that
        tweet's note (credentials redacted), never the batch's."""
        self.client.check_trusted()  # before any image work
        bodies, sizes, out = [], [], [None] * len(chats)
        for k, (chat, ims) in enumerate(zip(chats, images)):
            try:
                sent = [self.served_image(im) for im in ims]
            except Exception as err:  # this tweet's failure only
                out[k] = (
                    None,
                    f"the image could not be sent to the reader's server ({self._reason(err)})",
                    None,
                )
                continue
            urls = iter(u for u, _ in sent)
            messages = []
            for m in chat:
                content = m["content"]
                if isinstance(content, list):
                    content = [
                        {"type": "image_url", "image_url": {"url": next(urls)}} if c["type"] == "image"
                        else {"type": "text", "text": c["text"]}
                        for c in content
                    ]  # fmt: skip
                    if m["role"] == "assistant":
                        content = "".join(c.get("text", "") for c in content)
                messages.append({"role": m["role"], "content": content})
            bodies.append((k, {"messages": messages, "max_tokens": self.max_new_tokens, "temperature": 0.0}))
            sizes.append(sent[0][1] if sent else None)
        results = self.client.chat_many([b for _, b in bodies]) if bodies else []
        for (k, _), res, size in zip(bodies, results, sizes):
            if not res.ok:
                out[k] = (None, f"the reader's server gave no answer ({self.client.redact(res.error)})", size)
            else:
                cut = self._cut_note() if res.finish_reason == "length" else None
                out[k] = (res.text or "", cut, size)
        return out  # type: ignore[return-value]

    def _reason(self, err: BaseException) -> str:
        return self.client.redact(f"{type(err).__name__}: {err}")

    def served_image(self, image: Any) -> tuple[str, tuple[int, int]]:
        """(data URL, size sent) of an image for the server: resized here as the family's processor would, so
        the model answers in pixels of the image sent (the served grounder's rule)."""
        from ..serving.images import to_data_url

        return to_data_url(image, self.endpoint_family, *self.pixels)

    # ------------------------------------------------------------------ served
    @classmethod
    def served(
        cls,
        endpoint: str | dict,
        *,
        endpoint_model: str | None = None,
        endpoint_family: str | None = None,
        family: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        **options: Any,
    ) -> JointReader:
        """The reader on an OpenAI-compatible server (vLLM, SGLang ...): ``reader="endpoint:URL"``. The same
        family, prompts and answer reading as in process; ``endpoint_family`` (``qwen2_5_vl`` ...) is the served
        model's architecture (inferred from its name when it can be)."""
        from ..serving.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, check_pixels, served_vlm_client

        klass = family_class(family or (cls.family if cls is not JointReader else DEFAULT_FAMILY))
        pixels = check_pixels(min_pixels or DEFAULT_MIN_PIXELS, max_pixels or DEFAULT_MAX_PIXELS, "reader")
        client, arch = served_vlm_client(endpoint, endpoint_model, endpoint_family, "reader")
        reader = klass.__new__(klass)
        reader.client, reader.endpoint_family, reader.pixels = client, arch, pixels
        klass.__init__(reader, None, None, **options)
        return reader

    def clients(self) -> list[Any]:
        return [self.client] if self.client is not None else []

    def input_size(self, grid_thw) -> tuple[int, int] | None:
        """(width, height) of the image as the processor resized it, from its ``image_grid_thw`` row."""
        if grid_thw is None:
            return None
        patch = int(getattr(self.processor.image_processor, "patch_size", 14) or 14)
        _, gh, gw = (int(v) for v in grid_thw)
        return gw * patch, gh * patch

    def reading(
        self,
        answer: str,
        request: ReadRequest,
        sent_size: tuple[int, int] | None,
        input_size: tuple[int, int] | None,
        notes: list[str] | None = None,
    ) -> Reading:
        """An answer -> a :class:`Reading` (parse, cap, place onto the text); never raises on the answer."""
        notes = list(notes or [])
        try:
            found, parse_notes = self.parse(answer, request, sent_size, input_size)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as err:
            found, parse_notes = [], [f"the answer could not be read ({type(err).__name__}); no entity kept"]
        notes += parse_notes
        if len(found) > MAX_ENTITIES:
            notes.append(f"the answer gave {len(found)} entities; the first {MAX_ENTITIES} are kept")
            found = found[:MAX_ENTITIES]
        if request.image is None:
            found = [FoundEntity(f.name, f.type, None, None, f.note) for f in found]
        entities, place_notes = place_entities(request.text, found)
        return Reading(entities, notes + place_notes, answer)
