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
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from ..types import TYPE_WORDS
from .base import Stage, token_limit

__all__ = [
    "DEFAULT_PROMPT",
    "Captioner",
    "Expander",
    "ExpansionRequest",
    "clean_description",
    "template_description",
    "with_article",
]

DEFAULT_TEMPLATE = "{entity}, {a_type_word}"

#: RiVEG's entity-expansion prompt (few-shot), with {text}, {caption}, {entity}, {type}, {type_word}.
DEFAULT_PROMPT = (
    "Turn a named entity from a social-media post into a short visual description (one noun phrase, at most "
    "12 words) that an object detector could find in the post's image. Use the post and the image description "
    "as background. Answer with the description only.\n\n"
    "Post: Sunset over the Golden Gate Bridge tonight, San Francisco never disappoints\n"
    "Image: a large red bridge over water at dusk\n"
    "Entity: Golden Gate Bridge (LOC)\n"
    "Description: an iconic red suspension bridge in San Francisco\n\n"
    "Post: Lionel Messi lifts the trophy in Miami\n"
    "Image: a soccer player in a pink jersey holding a golden cup\n"
    "Entity: Lionel Messi (PER)\n"
    "Description: an Argentine footballer with a beard\n\n"
    "Post: New store opening today! Starbucks on 5th Avenue\n"
    "Image: a coffee shop with a green round logo\n"
    "Entity: Starbucks (ORG)\n"
    "Description: a coffee chain with a green mermaid logo\n\n"
    "Post: {text}\n"
    "Image: {caption}\n"
    "Entity: {entity} ({type})\n"
    "Description:"
)

#: PGIM-style prompt for auxiliary knowledge appended to the tweet (the format RiVEG's MNER stage trains on).
DEFAULT_KNOWLEDGE_PROMPT = (
    "Here is a social-media post and a description of its image. List the named entities the post mentions "
    "(people, locations, organizations, other) with a short note on each, then explain your reasoning in two "
    "sentences.\n\nPost: {text}\nImage: {caption}\nAnswer:"
)


@dataclass(frozen=True)
class ExpansionRequest:
    entity: str
    type: str
    text: str
    caption: str | None = None


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
    word = TYPE_WORDS.get(type_, "named entity")
    template = template.replace("a {type_word}", "{a_type_word}")
    return template.format(entity=entity, type=type_, type_word=word, a_type_word=with_article(word))


_PREFIX_RE = re.compile(r"^\s*(?:description|answer|output)\s*[:\-]\s*", re.I)


_ODD_WORD_RE = re.compile(r"[a-z][A-Z]|[A-Za-z]\d|\d[A-Za-z]")


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

    def _render(self, prompt: str) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[str]:
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
        self.prompt = prompt
        self.template = template
        self.knowledge_prompt = knowledge_prompt
        self.knowledge_max_new_tokens = int(knowledge_max_new_tokens)
        self.max_chars = int(max_chars)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.stats = {"llm": 0, "template": 0, "cache": 0, "fallback": 0}
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

    @property
    def has_llm(self) -> bool:
        return self.model is not None or self.endpoint is not None

    def generate(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[str]:
        if self.endpoint is not None:
            return self.endpoint.complete(prompts, max_tokens=max_new_tokens or self.max_new_tokens)
        return super().generate(prompts, max_new_tokens)

    def options(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
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

    def describe(self, requests: Sequence[ExpansionRequest]) -> list[tuple[str, str]]:
        """-> ``[(description, source)]`` with source ``"llm"``, ``"cache"``, ``"template"`` or ``"fallback"``."""
        out: list[tuple[str, str] | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            fallback = template_description(r.entity, r.type, self.template)
            if not self.has_llm:
                out[i] = (fallback, "template")
                continue
            prompt = self.prompt.format(
                text=r.text,
                caption=r.caption or "not available",
                entity=r.entity,
                type=r.type,
                type_word=TYPE_WORDS.get(r.type, "named entity"),
                a_type_word=with_article(TYPE_WORDS.get(r.type, "named entity")),
            )
            key = (self._model_key(), prompt)
            if key in self._cache:
                self._cache.move_to_end(key)
                out[i] = (self._cache[key], "cache")
            else:
                todo.setdefault(prompt, []).append(i)
        if todo:
            prompts = list(todo)
            answers = self.generate(prompts)
            for prompt, answer in zip(prompts, answers):
                first = requests[todo[prompt][0]]
                desc = clean_description(
                    answer, max_chars=self.max_chars, context=f"{first.entity} {first.text}"
                )
                for i in todo[prompt]:
                    r = requests[i]
                    if desc is None:
                        out[i] = (template_description(r.entity, r.type, self.template), "fallback")
                    else:
                        out[i] = (desc, "llm")
                if desc is not None:
                    self._cache_put((self._model_key(), prompt), desc)
        for _, src in out:
            self.stats[src] += 1
        return out  # type: ignore[return-value]

    def knowledge(self, texts: Sequence[str], captions: Sequence[str | None]) -> list[str]:
        """PGIM-style auxiliary knowledge per text ("" without an LLM)."""
        if not self.has_llm:
            return ["" for _ in texts]
        prompts = [
            self.knowledge_prompt.format(text=t, caption=c or "not available")
            for t, c in zip(texts, captions)
        ]
        return [a.strip() for a in self.generate(prompts, max_new_tokens=self.knowledge_max_new_tokens)]


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
