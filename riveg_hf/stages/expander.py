"""Stage 2 -- entity expansion: an LLM turns each entity into a short referring expression.

"Golden Gate Bridge" (LOC) -> "an iconic red suspension bridge in San Francisco". The
expression is what the entailment and grounding models read, which is RiVEG's central idea:
detectors know "a red suspension bridge", not proper names.

* any ``AutoModelForCausalLM`` (its chat template is used when the tokenizer has one);
* RiVEG-style few-shot prompt, kept in the config and overridable (``prompt``), with the
  tweet and, when a :class:`Captioner` is configured, the image caption as background;
* batched, greedy by default, capped at ``max_new_tokens``; an empty or garbage answer falls
  back to the template ``"{entity}, a {type_word}"``; answers are cached per (model, prompt);
* without an LLM the template alone is used.

The same LLM can write PGIM-style auxiliary knowledge for a recognizer trained with it
(:meth:`Expander.knowledge`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from ..text import prompt_field
from ..types import type_word
from .base import Stage, token_limit

__all__ = [
    "DEFAULT_EXAMPLES",
    "DEFAULT_INSTRUCTION",
    "DEFAULT_PROMPT",
    "PROMPT_STYLES",
    "Captioner",
    "Description",
    "Expander",
    "ExpansionRequest",
    "clean_description",
    "copied_example",
    "knowledge_rejection_reason",
    "prompt_examples",
    "rejection_reason",
    "template_description",
    "with_article",
]

DEFAULT_TEMPLATE = "{entity}, {a_type_word}"

#: The expansion instruction and its few-shot examples (RiVEG's ChatGPT prompt in spirit).
DEFAULT_INSTRUCTION = (
    "Turn a named entity from a social-media post into a short visual description (one noun phrase, at most "
    "12 words) that an object detector could find in the post's image. Use the post and the image description "
    "as background. Answer with the description only."
)
#: the few-shot examples of the expander's prompt: post, image caption, entity and type -> its description
DEFAULT_EXAMPLES: tuple[dict[str, str], ...] = (
    {"post": "Sunset over the Golden Gate Bridge tonight, San Francisco never disappoints",
     "image": "a large red bridge over water at dusk", "entity": "Golden Gate Bridge", "type": "LOC",
     "description": "an iconic red suspension bridge in San Francisco"},
    {"post": "Lionel Messi lifts the trophy in Miami", "image": "a soccer player in a pink jersey holding a golden cup",
     "entity": "Lionel Messi", "type": "PER", "description": "an Argentine footballer with a beard"},
    {"post": "New store opening today! Starbucks on 5th Avenue", "image": "a coffee shop with a green round logo",
     "entity": "Starbucks", "type": "ORG", "description": "a coffee chain with a green mermaid logo"},
)  # fmt: skip
_QUERY = "Post: {text}\nImage: {caption}\nEntity: {entity} ({type})\nDescription:"


def _example_block(ex: dict[str, str]) -> str:
    return (f"Post: {ex['post']}\nImage: {ex['image']}\nEntity: {ex['entity']} ({ex['type']})\n"
            f"Description: {ex['description']}\n\n")  # fmt: skip


#: RiVEG's entity-expansion prompt (few-shot, one text), with {text}, {caption}, {entity}, {type}, {type_word}.
DEFAULT_PROMPT = DEFAULT_INSTRUCTION + "\n\n" + "".join(_example_block(e) for e in DEFAULT_EXAMPLES) + _QUERY
#: How the prompt is sent: ``"chat"`` (default: the instruction as the system turn, each example as a user / assistant
#: pair, then the entity -- SmolLM2-135M-Instruct on real tweets: 12/20 descriptions accepted, none copying an
#: example, against 4/20 as one text; benchmarks/expander_real.py) or ``"text"`` (one user turn with the examples,
#: RiVEG's ChatGPT style; the default when a custom ``prompt`` is given).
PROMPT_STYLES = ("text", "chat")

#: PGIM-style prompt for auxiliary knowledge appended to the tweet (the format RiVEG's MNER stage trains on).
DEFAULT_KNOWLEDGE_PROMPT = (
    "Here is a social-media post and a description of its image. List the named entities the post mentions "
    "(people, locations, organizations, other) with a short note on each, then explain your reasoning in two "
    "sentences.\n\nPost: {text}\nImage: {caption}\nAnswer:"
)


@dataclass(frozen=True)
class ExpansionRequest:
    """One entity to describe: its name, type, the tweet, the image caption, and the tweet's other entities."""

    entity: str
    type: str
    text: str
    caption: str | None = None
    #: the other entities of the same tweet (a description that names one of them is rejected)
    others: tuple[str, ...] = ()


class Description(NamedTuple):
    """An entity's description, where it came from (``"llm"``, ``"cache"``, ``"template"`` without an LLM,
    ``"fallback"`` when the LLM's answer was rejected) and, for a fallback, why."""

    description: str
    source: str
    rejected: str | None = None


def with_article(word: str) -> str:
    """``word`` with its indefinite article, chosen by sound: ``"an organization"``, ``"a person"``.

    >>> [with_article(w) for w in ("organization", "location", "named entity", "university", "hour")]
    ['an organization', 'a location', 'a named entity', 'a university', 'an hour']
    """
    w = word.strip().lower()
    vowel_sound = w[:1] in ("a", "e", "i", "o", "u") and not w.startswith(
        ("uni", "use", "usu", "eu", "one", "once")
    )
    vowel_sound = vowel_sound or w.startswith(("hour", "honest", "honor", "honour", "heir"))
    return f"{'an' if vowel_sound else 'a'} {word.strip()}"


def template_description(entity: str, type_: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The fallback description: ``"Golden Gate Bridge, a location"``, ``"NASA, an organization"``.

    Placeholders: ``{entity}``, ``{type}``, ``{type_word}`` and ``{a_type_word}`` (the type word with its
    article by sound). Templates saved by older versions (``"... a {type_word}"``) get the right article too.

    >>> template_description("NASA", "ORG")
    'NASA, an organization'
    >>> template_description("NASA", "ORG", "{entity}, a {type_word}")
    'NASA, an organization'
    """
    word = type_word(type_)
    template = template.replace("a {type_word}", "{a_type_word}")
    return template.format(entity=entity, type=type_, type_word=word, a_type_word=with_article(word))


_PREFIX_RE = re.compile(r"^\s*(?:description|answer|output)\s*[:\-]\s*", re.I)


_ODD_WORD_RE = re.compile(r"[a-z][A-Z]|[A-Za-z]\d|\d[A-Za-z]")


_STOPWORDS = frozenset(
    "a an the of in on at to for with and or by from over under into near its it is are was were be this that "
    "these those his her their our your my as up down out off new today tonight".split()
)
_TYPE_TAG_RE = re.compile(
    r"\(\s*(?:PER|LOC|ORG|OTHER|MISC|person|location|organization|named entity)\s*\)", re.I
)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def _content(text: str) -> set[str]:
    return {w for w in _words(text) if len(w) > 2 and w not in _STOPWORDS}


def prompt_examples(prompt: str) -> list[dict[str, str]]:
    """The few-shot examples inside a text prompt (``Post:`` / ``Image:`` / ``Entity:`` / ``Description:``
    blocks whose description is filled in), so a custom prompt's examples are known too."""
    out = []
    for block in prompt.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("post", "image", "entity", "description"):
                fields[key.strip().lower()] = value.strip()
        if fields.get("description") and "{" not in block:
            ent = fields.get("entity", "")
            fields["entity"] = re.sub(r"\s*\([^)]*\)\s*$", "", ent)
            out.append(fields)
    return out


def rejection_reason(
    description: str,
    request: ExpansionRequest,
    examples: Sequence[dict[str, str]] = DEFAULT_EXAMPLES,
) -> str | None:
    """Why an LLM's (cleaned) description is not a description of *this* entity, or None if it is one.

    Small models parrot their prompt: they copy a few-shot example ("SUNSET over the Golden Gate Bridge tonight"
    for "Instagram"), the tweet, or answer "Lionel Messi (PER)". Rejected: a copy of an example's post, entity,
    image or description (content words the current tweet does not contain; an example about this very entity
    is not an echo), a copy of the tweet, a type tag, and a description that names another entity of the tweet
    instead of this one.

    >>> r = ExpansionRequest("Bella Hadid", "PER", "Bella Hadid at the Met Gala")
    >>> rejection_reason("Lionel Messi (PER)", r), rejection_reason("a model in a long white dress", r)
    ('is a type tag', None)
    >>> rejection_reason("an Argentine footballer with a beard", r)
    "copies the prompt's example (Lionel Messi)"
    """
    if _TYPE_TAG_RE.search(description):
        return "is a type tag"
    copied = copied_example(description, request, examples)
    if copied is not None:
        return f"copies the prompt's example ({copied})"
    words = _content(description)
    tweet = " ".join(_words(request.text))
    desc = " ".join(_words(description))
    if len(_words(description)) >= 4 and desc and (desc in tweet or tweet in desc):
        return "copies the tweet"
    tweet_words = _content(request.text) - _content(request.entity)
    if len(words) >= 4 and words and len(words & tweet_words) / len(words) >= 0.8:
        return "copies the tweet"
    own_name = " ".join(_words(request.entity))
    for other in request.others:
        name = " ".join(_words(other))
        if name and name != own_name and f" {name} " in f" {desc} " and f" {own_name} " not in f" {desc} ":
            return f"names another entity ({other})"
    return None


def copied_example(
    description: str, request: ExpansionRequest, examples: Sequence[dict[str, str]] = DEFAULT_EXAMPLES
) -> str | None:
    """The entity of the prompt's example that ``description`` copies, or None: two or more content words of one
    example's post, image or description, or an example's entity name, that the tweet, its caption and the entity
    do not contain (an example about this very entity is never a copy)."""
    own = _content(f"{request.entity} {request.text} {request.caption or ''}")
    words = _content(description)
    for ex in examples:
        if _words(ex.get("entity", "")) == _words(request.entity):
            continue  # the example *is* this entity: its description may well be the right one
        for key in ("entity", "post", "description", "image"):
            ex_words = _content(ex.get(key, "")) - own
            need = len(ex_words) if key == "entity" else 2
            if ex_words and len(words & ex_words) >= max(1, min(need, 2)):
                return ex.get("entity") or key
    return None


def knowledge_rejection_reason(answer: str, text: str, prompt: str) -> str | None:
    """Why an LLM's knowledge answer is not knowledge about the tweet: an echo of the prompt's instruction, a
    copy of the tweet, or too little text. None if it is usable."""
    words = _words(answer)
    if len(words) < 4:
        return "is too short"
    instruction = _content(prompt.split("{text}")[0])
    if instruction and len(_content(answer) & instruction) / max(1, len(_content(answer))) >= 0.6:
        return "echoes the prompt"
    if " ".join(words) == " ".join(_words(text)):
        return "copies the tweet"
    return None


def clean_description(raw: str, *, max_chars: int = 160, context: str = "") -> str | None:
    """The first line of an LLM answer, stripped of labels and quotes; ``None`` if it is empty or garbage.

    Garbage: no letters, mostly symbols, a word repeated over and over, an echo of the prompt,
    replacement or control characters, or words that mix case or digits oddly ("upauranM7")
    unless they appear in ``context`` (the entity and the tweet: "iPhone7" may be real).

    >>> clean_description('Description: "an iconic red suspension bridge."\\nPost: ...')
    'an iconic red suspension bridge'
    >>> clean_description("!!!???") is None
    True
    """
    text = raw.strip()
    if not text:
        return None
    text = text.splitlines()[0].strip()
    text = _PREFIX_RE.sub("", text).strip().strip("\"'`“”‘’").strip()
    text = text.rstrip(".;:,").strip()
    if not text or len(text) > max_chars:
        return None
    letters = sum(ch.isalpha() for ch in text)
    if letters < 3 or letters / len(text) < 0.6:
        return None
    words = text.lower().split()
    if len(words) >= 4 and len(set(words)) / len(words) < 0.5:  # "the the the the"
        return None
    if any(marker in text for marker in ("Post:", "Entity:", "Image:")):
        return None
    if any(ch == "\ufffd" or (ord(ch) < 32 and ch != "\t") for ch in text):
        return None
    if any(_ODD_WORD_RE.search(w) and w not in context for w in re.findall(r"\w+", text)):
        return None
    return text


class _Generator(Stage):
    """Shared batched greedy generation for causal LMs, with the chat template when there is one."""

    auto_classes = (AutoModelForCausalLM,)
    processor_kind = "tokenizer"

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_new_tokens: int = 32,
        batch_size: int = 8,
        do_sample: bool = False,
        generation_kwargs: dict | None = None,
    ):
        super().__init__(model, tokenizer)
        self.tokenizer = tokenizer
        if tokenizer is not None:
            tokenizer.padding_side = (
                "left"  # the stage owns its tokenizer: decoder-only models pad on the left
            )
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.do_sample = bool(do_sample)
        self.generation_kwargs = dict(generation_kwargs or {})

    def _render(self, prompt: str | list[dict]) -> str:
        """A prompt (one user turn) or a list of chat messages -> the model's input text."""
        tok = self.tokenizer
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str | list[dict]], max_new_tokens: int | None = None) -> list[str]:
        outs: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [self._render(p) for p in prompts[start : start + self.batch_size]]
            budget = max_new_tokens or self.max_new_tokens
            # never longer than the model reads: keep the prompt's end (the entity, "Description:")
            limit = max(8, token_limit(self.model.config, self.tokenizer, default=4096) - budget)
            side, self.tokenizer.truncation_side = self.tokenizer.truncation_side, "left"
            try:
                enc = self.tokenizer(
                    chunk, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True,
                    max_length=limit,
                )  # fmt: skip
            finally:
                self.tokenizer.truncation_side = side
            enc = {k: v.to(self.device) for k, v in enc.items()}
            gen = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens or self.max_new_tokens,
                do_sample=self.do_sample,
                pad_token_id=self.tokenizer.pad_token_id,
                **self.generation_kwargs,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            outs += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return outs


class Expander(_Generator):
    """Entity -> referring expression, with an LLM or the template alone (``model=None``)."""

    name = "expander"

    def __init__(
        self,
        model=None,
        tokenizer=None,
        *,
        prompt: str = DEFAULT_PROMPT,
        prompt_style: str | None = None,
        instruction: str = DEFAULT_INSTRUCTION,
        examples: Sequence[dict[str, str]] | None = None,
        template: str = DEFAULT_TEMPLATE,
        knowledge_prompt: str = DEFAULT_KNOWLEDGE_PROMPT,
        max_new_tokens: int = 32,
        knowledge_max_new_tokens: int = 160,
        max_chars: int = 160,
        batch_size: int = 8,
        do_sample: bool = False,
        cache_size: int = 10_000,
        generation_kwargs: dict | None = None,
        endpoint: str | dict | None = None,
        endpoint_model: str | None = None,
    ):
        super().__init__(
            model,
            tokenizer,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            do_sample=do_sample,
            generation_kwargs=generation_kwargs,
        )
        for name, text in (("prompt", prompt), ("knowledge_prompt", knowledge_prompt)):
            missing = [k for k in ("{text}", "{caption}") if k not in text]
            if missing:
                raise ValueError(
                    f"expander: {name} must contain {missing} placeholders; got {text[:80]!r}..."
                )
        if (
            prompt_style is None
        ):  # chat turns (measured better: docs/guides/descriptions.md) unless a custom text prompt was given
            prompt_style = "chat" if prompt == DEFAULT_PROMPT else "text"
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"expander: prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        self.prompt = prompt
        self.prompt_style = prompt_style
        self.instruction = instruction
        self.examples = [dict(e) for e in (examples if examples is not None else DEFAULT_EXAMPLES)]
        for e in self.examples:
            missing = [k for k in ("post", "entity", "type", "description") if not e.get(k)]
            if missing:
                raise ValueError(
                    f"expander: each example needs post, entity, type, description; {e} lacks {missing}"
                )
        self.template = template
        self.knowledge_prompt = knowledge_prompt
        self.knowledge_max_new_tokens = int(knowledge_max_new_tokens)
        self.max_chars = int(max_chars)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.stats = {"llm": 0, "template": 0, "cache": 0, "fallback": 0, "rejected": 0}
        #: an LLM behind a chat-completions server instead of a local model (riveg_hf.endpoint)
        self.endpoint = None
        if endpoint is not None:
            if model is not None:
                raise ValueError("expander: give a local model or an endpoint, not both.")
            from ..endpoint import ChatEndpoint

            cfg = {"url": endpoint} if isinstance(endpoint, str) else dict(endpoint)
            if endpoint_model:
                cfg["model"] = endpoint_model
            self.endpoint = ChatEndpoint(**cfg)

    def clients(self) -> list:
        return [self.endpoint] if self.endpoint is not None else []

    @classmethod
    def served(cls, endpoint, *, endpoint_family: str | None = None, **options) -> Expander:
        """The expander's LLM on a server (``endpoint_family`` is for vision-language stages: ignored)."""
        return cls(None, None, endpoint=endpoint, **options)

    @property
    def has_llm(self) -> bool:
        return self.model is not None or self.endpoint is not None

    def generate(self, prompts: Sequence[str | list[dict]], max_new_tokens: int | None = None) -> list[str]:
        if self.endpoint is not None:
            return self.endpoint.complete(prompts, max_tokens=max_new_tokens or self.max_new_tokens)
        return super().generate(prompts, max_new_tokens)

    def options(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "prompt_style": self.prompt_style,
            "instruction": self.instruction,
            "examples": self.examples,
            "template": self.template,
            "knowledge_prompt": self.knowledge_prompt,
            "max_new_tokens": self.max_new_tokens,
            "knowledge_max_new_tokens": self.knowledge_max_new_tokens,
            "max_chars": self.max_chars,
            "batch_size": self.batch_size,
            "do_sample": self.do_sample,
            "cache_size": self.cache_size,
            "generation_kwargs": self.generation_kwargs,
            **({"endpoint": self.endpoint.config()} if self.endpoint is not None else {}),
        }

    def save_pretrained(self, directory) -> None:
        if self.model is not None:
            super().save_pretrained(directory)

    def to(self, device):
        if self.model is not None:
            self.model.to(device)
        return self

    def _model_key(self) -> str:
        if self.endpoint is not None:
            return f"endpoint:{self.endpoint.url}:{self.endpoint.model}"
        return getattr(self.model, "name_or_path", "") or type(self.model).__name__

    def _cache_put(self, key, value) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _prompt_for(self, r: ExpansionRequest) -> str | list[dict]:
        """The text prompt, or (``prompt_style="chat"``) the instruction as the system turn, each example as a
        user / assistant pair, then the entity."""
        # each value on one line: a line break in a tweet or a name never starts an instruction of its own
        fields = {"text": prompt_field(r.text), "caption": prompt_field(r.caption or "not available"),
                  "entity": prompt_field(r.entity), "type": prompt_field(r.type),
                  "type_word": type_word(r.type), "a_type_word": with_article(type_word(r.type))}  # fmt: skip
        if self.prompt_style == "text":
            return self.prompt.format(**fields)
        messages = [{"role": "system", "content": self.instruction}]
        for ex in self.examples:
            query = _QUERY.format(text=ex["post"], caption=ex.get("image") or "not available", entity=ex["entity"],
                                  type=ex["type"])  # fmt: skip
            messages += [{"role": "user", "content": query.removesuffix("\nDescription:")},
                         {"role": "assistant", "content": ex["description"]}]  # fmt: skip
        messages.append({"role": "user", "content": _QUERY.format(**fields).removesuffix("\nDescription:")})
        return messages

    def _examples_in_prompt(self) -> list[dict[str, str]]:
        return self.examples if self.prompt_style == "chat" else prompt_examples(self.prompt)

    def describe(self, requests: Sequence[ExpansionRequest]) -> list[tuple[str, str]]:
        """-> ``[(description, source)]`` with source ``"llm"``, ``"cache"``, ``"template"`` or ``"fallback"``
        (see :meth:`describe_detailed`, which also says why an answer was rejected)."""
        return [(d.description, d.source) for d in self.describe_detailed(requests)]

    def describe_detailed(self, requests: Sequence[ExpansionRequest]) -> list[Description]:
        """One :class:`Description` per request. An LLM answer is kept only when it is a description of this
        entity (:func:`clean_description`, then :func:`rejection_reason`: not an echo of the prompt's examples,
        not the tweet, not a type tag, not another entity); otherwise the template, saying why."""
        import json

        out: list[Description | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        prompts: dict[str, str | list[dict]] = {}
        examples = self._examples_in_prompt()
        for i, r in enumerate(requests):
            if not self.has_llm:
                out[i] = Description(template_description(r.entity, r.type, self.template), "template")
                continue
            prompt = self._prompt_for(r)
            key = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
            cached = self._cache.get((self._model_key(), key))
            if cached is not None:
                self._cache.move_to_end((self._model_key(), key))
                out[i] = self._judge(cached, r, examples, "cache")
            else:
                todo.setdefault(key, []).append(i)
                prompts[key] = prompt
        if todo:
            keys = list(todo)
            answers = self.generate([prompts[k] for k in keys])
            for key, answer in zip(keys, answers):
                first = requests[todo[key][0]]
                desc = clean_description(
                    answer, max_chars=self.max_chars, context=f"{first.entity} {first.text}"
                )
                for i in todo[key]:
                    out[i] = self._judge(desc, requests[i], examples, "llm")
                if desc is not None:
                    self._cache_put((self._model_key(), key), desc)
        for d in out:
            self.stats[d.source] += 1
            self.stats["rejected"] += d.rejected is not None
        return out  # type: ignore[return-value]

    def _judge(self, desc: str | None, r: ExpansionRequest, examples, source: str) -> Description:
        reason = "is empty or not a description" if desc is None else rejection_reason(desc, r, examples)
        if reason is None:
            return Description(desc, source)
        return Description(template_description(r.entity, r.type, self.template), "fallback",
                           f"the LLM's answer {reason}: the template was used")  # fmt: skip

    def knowledge(self, texts: Sequence[str], captions: Sequence[str | None]) -> list[str]:
        """PGIM-style auxiliary knowledge per text ("" without an LLM)."""
        if not self.has_llm:
            return ["" for _ in texts]
        prompts = [
            self.knowledge_prompt.format(text=prompt_field(t), caption=prompt_field(c or "not available"))
            for t, c in zip(texts, captions)
        ]
        answers = self.generate(prompts, max_new_tokens=self.knowledge_max_new_tokens)
        out = []
        for text, answer in zip(texts, answers):
            answer = answer.strip()
            ok = knowledge_rejection_reason(answer, text, self.knowledge_prompt) is None
            self.stats["rejected"] += not ok
            out.append(
                answer if ok else ""
            )  # a rejected answer is no knowledge, never the prompt's own words
        return out


class Captioner(_Generator):
    """Optional helper of the expander: any image-to-text model captions the image (once per image)."""

    name = "captioner"
    auto_classes = (AutoModelForImageTextToText,)
    processor_kind = "processor"

    def __init__(
        self, model, processor, *, prompt: str | None = None, max_new_tokens: int = 30, batch_size: int = 8
    ):
        Stage.__init__(self, model, processor)
        self.prompt = prompt
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.tokenizer = getattr(processor, "tokenizer", None)

    def options(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size}

    @torch.no_grad()
    def caption(self, images: Sequence[Any]) -> list[str]:
        outs: list[str] = []
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start : start + self.batch_size])
            if self.prompt:
                enc = self.processor(
                    images=chunk, text=[self.prompt] * len(chunk), return_tensors="pt", padding=True
                )
            else:
                enc = self.processor(images=chunk, return_tensors="pt")
            enc = self._inputs(enc)
            gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
            if "input_ids" in enc and not self.model.config.is_encoder_decoder and self.prompt:
                gen = gen[:, enc["input_ids"].shape[1] :]
            outs += [t.strip() for t in self.processor.batch_decode(gen, skip_special_tokens=True)]
        return outs
