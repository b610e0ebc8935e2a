"""Stage 1 -- the recognizer: any ``AutoModelForTokenClassification`` finds the entities of a tweet.

Works on words (the unit of the datasets): labels are read on the first sub-token of each
word, as the models are trained. Long inputs are split into overlapping windows (``stride``
tokens of overlap) and each word is read from the window where it is farthest from an edge,
so nothing is silently truncated. A ``label_map`` maps the model's entity types to PER / LOC /
ORG / OTHER (a CoNLL model's MISC -> OTHER by default).

PGIM-style knowledge: a recognizer trained on ``mner_llm_knowledge`` reads the LLM-written
knowledge as a second segment (``tokenizer(words, knowledge_words)``), never labelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForTokenClassification

from ..types import ENTITY_TYPES
from .base import Stage, token_limit
from .registry import FamilyRegistry, Option

__all__ = ["DEFAULT_LABEL_MAP", "FAMILIES", "NER_LABELS", "Recognizer", "WordSpan", "tiny_recognizer"]

#: Type names of common NER label sets -> the GMNER types. ``None`` drops a type.
DEFAULT_LABEL_MAP: dict[str, str | None] = {
    "PER": "PER",
    "PERSON": "PER",
    "LOC": "LOC",
    "LOCATION": "LOC",
    "GPE": "LOC",
    "ORG": "ORG",
    "ORGANIZATION": "ORG",
    "ORGANISATION": "ORG",
    "CORPORATION": "ORG",
    "GROUP": "ORG",
    "MISC": "OTHER",
    "OTHER": "OTHER",
    "OTH": "OTHER",
}


@dataclass
class WordSpan:
    """An entity over words ``[start, end)`` with its GMNER type and a confidence in [0, 1]."""

    start: int
    end: int
    type: str
    score: float


def _parse_label(label: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``; ``"PER"`` (IO scheme) -> ``("I", "PER")``."""
    if label in ("O", "0", "X"):
        return "O", None
    for sep in ("-", "_"):
        head, s, tail = label.partition(sep)
        if s and head in ("B", "I", "E", "S", "U", "L"):
            return {"E": "I", "L": "I", "U": "B", "S": "B"}.get(head, head), tail
    return "I", label


#: the BIO labels of Twitter-GMNER's four types, in the order of the tiny test recognizers
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"]


def tiny_recognizer(labels: list[str] = NER_LABELS, seed: int = 0, hidden_size: int = 32):
    """A tiny random BERT token classifier (``labels``) with its tokenizer."""
    from transformers import BertConfig, BertForTokenClassification

    from .tiny import seeded, tiny_bert_tokenizer

    tok = tiny_bert_tokenizer()
    with seeded(seed):
        cfg = BertConfig(
            vocab_size=len(tok),
            hidden_size=hidden_size,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=128,
            id2label=dict(enumerate(labels)),
            label2id={l: i for i, l in enumerate(labels)},
        )
        model = BertForTokenClassification(cfg).eval()
    return model, tok


#: the recognizer's families (one: token classification), declared like every role's
FAMILIES = FamilyRegistry(
    "recognizer", __package__, (),
    hint="E.g. dslim/bert-base-NER, or a riveg-hf-trained MNER checkpoint (riveg train mner).",
)  # fmt: skip
register = FAMILIES.register


@register
class Recognizer(Stage):
    """Token classification: any ``AutoModelForTokenClassification`` + a fast tokenizer -> entity spans over words."""

    name = "recognizer"
    family = "token-classification"
    model_types: tuple[str, ...] = ()
    known_model_types = ("bert", "roberta", "xlm-roberta", "deberta-v2")
    accepts_doc = "any *ForTokenClassification model with a fast tokenizer"
    auto_classes = (AutoModelForTokenClassification,)
    processor_kind = "tokenizer"
    tiny_builders = {"bert": tiny_recognizer}
    role_options = (
        Option("label_map", None, "mapping", "the model's type names -> the GMNER types (None drops a type)",
               nullable=True),
        Option("max_length", None, "positive-int", "tokens per window (None: the model's limit, at most 512)",
               nullable=True),
        Option("stride", 32, "int", "tokens shared by two windows of a long tweet", low=0),
        Option("batch_size", 16, "positive-int", "windows per forward"),
        Option("uses_knowledge", None, "bool", "read LLM knowledge as a second segment (None: the checkpoint's "
               "riveg_knowledge)", nullable=True),
        Option("entity_types", None, "str-list", "the types reported (None: the checkpoint's "
               "riveg_entity_types, else Twitter-GMNER's four)", nullable=True, saved=False),
    )  # fmt: skip

    @classmethod
    def accepts(cls, model) -> bool:
        return type(model).__name__.endswith("ForTokenClassification")

    def __init__(self, model, tokenizer, **options: Any):
        super().__init__(model, tokenizer)
        if not getattr(tokenizer, "is_fast", False) and not hasattr(tokenizer, "word_ids"):
            raise TypeError(
                "recognizer: a fast tokenizer (with word_ids) is needed; load it with AutoTokenizer."
            )
        self.tokenizer = tokenizer
        self._init_options(options)

    def _options_changed(self, names: set[str]) -> None:
        config = self.model.config
        #: the types the pipeline reports: the ones a riveg-hf-trained model was trained on (its config's
        #: riveg_entity_types, e.g. Twitter-FMNERG's 51), else Twitter-GMNER's four
        self.entity_types = tuple(
            self.entity_types or getattr(config, "riveg_entity_types", None) or ENTITY_TYPES
        )
        self.label_map = dict(self.label_map) if self.label_map is not None else {}
        if "max_length" in names:
            limit = token_limit(config, self.tokenizer)
            self.max_length = int(min(self.max_length, limit) if self.max_length else min(limit, 512))
        if not 0 <= self.stride < self.max_length // 2:
            raise ValueError(
                f"recognizer: stride must be in [0, max_length/2), got {self.stride} (max_length={self.max_length}); "
                "pass a smaller stride"
            )
        if self.uses_knowledge is None:
            self.uses_knowledge = bool(getattr(config, "riveg_knowledge", False))
        self._labels = self._build_labels()

    def _build_labels(self) -> list[tuple[str, str | None]]:
        id2label = self.model.config.id2label
        out, unknown = [], set()
        for i in range(len(id2label)):
            prefix, typ = _parse_label(str(id2label[i]))
            if typ is not None:
                if typ in self.label_map:
                    typ = self.label_map[typ]
                elif typ in self.entity_types:
                    pass
                elif typ.upper() in DEFAULT_LABEL_MAP:
                    typ = DEFAULT_LABEL_MAP[typ.upper()]
                else:
                    unknown.add(typ)
                if typ is not None and typ not in self.entity_types:
                    unknown.add(typ)
            out.append(("O", None) if typ is None else (prefix, typ))
        if unknown:
            labels = sorted({str(v) for v in id2label.values()})
            raise ValueError(
                f"recognizer: the model's labels {labels} have types {sorted(unknown)} that do not map to "
                f"{list(self.entity_types)}. Pass label_map, e.g. label_map={{{next(iter(sorted(unknown)))!r}: 'OTHER'}} "
                "(or None to drop the type)."
            )
        return out

    # ------------------------------------------------------------------ encoding
    def _encode(self, words: Sequence[str], knowledge: Sequence[str] | None):
        """-> list of windows (input dict for one row, [(word index, token position)])."""
        tok = self.tokenizer
        if knowledge:
            enc = tok(
                list(words),
                list(knowledge),
                is_split_into_words=True,
                truncation="only_second",
                max_length=self.max_length,
            )
            n_first = sum(1 for s in enc.sequence_ids() if s == 0)
            if n_first + 3 <= self.max_length and len(enc["input_ids"]) <= self.max_length:
                seq = enc.sequence_ids()
                firsts = _first_subtokens(enc.word_ids(), seq)
                return [({k: enc[k] for k in enc}, firsts, 0, len(enc["input_ids"]))]
            # the tweet alone fills the window: read it without knowledge, in windows
        enc = tok(
            list(words),
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
        )
        windows = []
        for row in range(len(enc["input_ids"])):
            ids = enc["input_ids"][row]
            seq = enc.sequence_ids(row)
            firsts = _first_subtokens(enc.word_ids(row), seq)
            inner = [p for p, s in enumerate(seq) if s is not None]
            lo, hi = (inner[0], inner[-1] + 1) if inner else (0, len(ids))
            windows.append(
                ({k: enc[k][row] for k in enc if k not in ("overflow_to_sample_mapping",)}, firsts, lo, hi)
            )
        return windows

    @torch.no_grad()
    def __call__(
        self, batch: Sequence[Sequence[str]], knowledge: Sequence[Sequence[str] | None] | None = None
    ) -> list[list[WordSpan]]:
        """Entities of each word list in ``batch`` (optionally with knowledge words per item)."""
        knowledge = knowledge if knowledge is not None else [None] * len(batch)
        rows: list[tuple[int, dict, list, int, int]] = []
        for i, (words, know) in enumerate(zip(batch, knowledge)):
            if not words:
                continue
            for enc, firsts, lo, hi in self._encode(words, know if self.uses_knowledge else None):
                rows.append((i, enc, firsts, lo, hi))
        # per word: (distance to the window edge, probabilities)
        best: list[dict[int, tuple[int, torch.Tensor]]] = [{} for _ in batch]
        order = sorted(range(len(rows)), key=lambda r: len(rows[r][1]["input_ids"]))
        for start in range(0, len(order), self.batch_size):
            chunk = [rows[r] for r in order[start : start + self.batch_size]]
            feats = [c[1] for c in chunk]
            padded = self.tokenizer.pad(feats, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in padded.items()}
            logits = self.model(**inputs).logits.float()
            probs = torch.softmax(logits, dim=-1).cpu()
            for (i, _enc, firsts, lo, hi), p in zip(chunk, probs):
                for word, pos in firsts:
                    dist = min(pos - lo, hi - 1 - pos)
                    prev = best[i].get(word)
                    if prev is None or dist > prev[0]:
                        best[i][word] = (dist, p[pos])
        return [self._decode(len(words), best[i]) for i, words in enumerate(batch)]

    def _decode(self, n_words: int, per_word: Mapping[int, tuple[int, torch.Tensor]]) -> list[WordSpan]:
        spans: list[WordSpan] = []
        cur: list[Any] | None = None  # [start, type, scores]
        for w in range(n_words):
            if w in per_word:
                p = per_word[w][1]
                k = int(p.argmax())
                prefix, typ = self._labels[k]
                score = float(p[k])
            else:  # a word with no sub-token (e.g. a lone control character) is outside any entity
                prefix, typ, score = "O", None, 1.0
            if typ is None:
                if cur:
                    spans.append(WordSpan(cur[0], w, cur[1], sum(cur[2]) / len(cur[2])))
                cur = None
            elif prefix == "B" or cur is None or cur[1] != typ:
                if cur:
                    spans.append(WordSpan(cur[0], w, cur[1], sum(cur[2]) / len(cur[2])))
                cur = [w, typ, [score]]
            else:
                cur[2].append(score)
        if cur:
            spans.append(WordSpan(cur[0], n_words, cur[1], sum(cur[2]) / len(cur[2])))
        return spans


def _first_subtokens(
    word_ids: Sequence[int | None], sequence_ids: Sequence[int | None]
) -> list[tuple[int, int]]:
    """[(word index, position of its first sub-token)] for the first segment of one encoded row."""
    out, seen = [], set()
    for pos, (w, s) in enumerate(zip(word_ids, sequence_ids)):
        if w is None or s != 0 or w in seen:
            continue
        seen.add(w)
        out.append((w, pos))
    return out
