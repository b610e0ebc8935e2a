"""Stage 3 -- visual entailment: does the image show this entity?

Most entities of a tweet are not in its picture (Twitter-GMNER: 60% are not), so RiVEG asks an
image-text model before grounding. Supported models, each giving a probability in [0, 1]:

* **image-text matching** (``BlipForImageTextRetrieval``; also what ``riveg train entailment``
  fine-tunes): the ITM head's "match" probability;
* **contrastive** (CLIP, SigLIP and other ``AutoModelForZeroShotImageClassification`` dual
  encoders): ``sigmoid(scale * cos + bias)``; SigLIP has its own learned bias, CLIP uses
  ``logit_bias`` (default ``-0.25 * scale``, i.e. probability 0.5 at cosine 0.25);
* **vision-language model** (Qwen2.5-VL, Qwen3-VL: ``AutoModelForImageTextToText``): asked "Does the image
  show {hypothesis}? Answer yes or no.", ``P(yes) = p(yes) / (p(yes) + p(no))`` from the next-token
  distribution ("yes"/"Yes" against "no"/"No"); all the hypotheses of ``vision_batch_size`` images in one
  batched forward pass (no generation).

``threshold`` (the pipeline's ``entailment_threshold``) turns the probability into the
decision; a fine-tuned checkpoint carries its calibrated threshold in its config
(``riveg_entailment_threshold``), and :func:`calibrate_threshold` picks one on labelled data.

The image is encoded **once** per call, however many hypotheses the tweet has, and
:meth:`Entailment.score_many` encodes several images in one vision forward.

One base class (:class:`Entailment`), one module per family in :mod:`riveg_hf.stages.entailers` (``itm``,
``contrastive``, ``vlm``), tried in :data:`FAMILY_MODULES` order; ``Entailment(model, processor)`` and
``Entailment.from_pretrained(...)`` give the family that accepts the model.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForZeroShotImageClassification,
    BlipForImageTextRetrieval,
)

from ..types import type_word
from .base import Stage, token_limit

__all__ = ["DEFAULT_HYPOTHESIS", "FAMILY_MODULES", "Entailment", "calibrate_threshold", "register"]

#: the entailment families, ``riveg_hf.stages.entailers.<name>``, tried in this order (the first that accepts
#: the model serves it); each registers its class on import
FAMILY_MODULES = ("itm", "vlm", "contrastive")
_FAMILIES: list[type] = []


def register(cls):
    _FAMILIES.append(cls)
    return cls


def family_class(model) -> type:
    for name in FAMILY_MODULES:
        importlib.import_module(f"{__package__}.entailers.{name}")
    by_module = {c.__module__.rsplit(".", 1)[-1]: c for c in _FAMILIES}
    for name in FAMILY_MODULES:
        cls = by_module.get(name)
        if cls is not None and cls.accepts(model):
            return cls
    raise TypeError(
        f"entailment: {type(model).__name__} is neither an image-text matching model "
        "(BlipForImageTextRetrieval), a vision-language model (Qwen-VL), nor a dual encoder with "
        "get_image_features/get_text_features (CLIPModel, SiglipModel, ...)."
    )


def _vlm_types() -> tuple[str, ...]:
    from .vlm_grounding import VLM_FAMILIES

    return tuple(VLM_FAMILIES)


#: The question a vision-language entailment model answers, per hypothesis.
VLM_QUESTION = "Does the image show {hypothesis}? Answer yes or no."

#: RiVEG's hypothesis format: ``Entity(TYPE)-description``.
DEFAULT_HYPOTHESIS = "{entity}({type})-{description}"


def calibrate_threshold(scores: Sequence[float], labels: Sequence[bool], metric: str = "f1") -> float:
    """The threshold on ``scores`` that maximises F1 (or ``"accuracy"``) of ``score >= t`` against ``labels``."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if len(s) == 0:
        raise ValueError("calibrate_threshold needs at least one scored example.")
    cands = np.unique(np.concatenate([s, [0.5]]))
    best_t, best_v = 0.5, -1.0
    for t in cands:
        pred = s >= t
        tp = float((pred & y).sum())
        if metric == "accuracy":
            v = float((pred == y).mean())
        else:
            p = tp / pred.sum() if pred.sum() else 0.0
            r = tp / y.sum() if y.sum() else 0.0
            v = 2 * p * r / (p + r) if p + r else 0.0
        if v > best_v:
            best_t, best_v = float(t), v
    return best_t


class Entailment(Stage):
    """Image + hypotheses -> probability that the image shows each entity (the base of every family)."""

    name = "entailment"
    compile_modules = ("model.vision_model",)
    auto_classes = (
        AutoModelForZeroShotImageClassification,
        BlipForImageTextRetrieval,
        AutoModelForImageTextToText,
        AutoModel,
    )
    #: the family's name: "itm", "contrastive", "vlm"
    kind: ClassVar[str] = ""

    def __new__(cls, model=None, processor=None, **options):
        if cls is Entailment and model is not None:
            cls = family_class(model)
        return super().__new__(cls)

    @classmethod
    def accepts(cls, model) -> bool:
        """Whether this family serves ``model``."""
        return False

    @classmethod
    def served(cls, endpoint, **options):
        """A vision-language entailment model on a server (:mod:`riveg_hf.stages.entailers.served`)."""
        served = importlib.import_module(
            f"{__package__}.entailers.served"
        )  # a family module, like the others
        return served.ServedEntailment(endpoint, **options)

    def __init__(
        self,
        model,
        processor,
        *,
        threshold: float | None = None,
        hypothesis: str = DEFAULT_HYPOTHESIS,
        logit_bias: float | None = None,
        batch_size: int = 32,
    ):
        super().__init__(model, processor)
        cfg_threshold = getattr(model.config, "riveg_entailment_threshold", None)
        self.threshold = float(
            threshold if threshold is not None else (cfg_threshold if cfg_threshold is not None else 0.5)
        )
        if logit_bias is None:
            logit_bias = getattr(model.config, "riveg_logit_bias", None)
        self.logit_bias = logit_bias
        self.hypothesis = hypothesis
        self.batch_size = int(batch_size)

    def options(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "hypothesis": self.hypothesis,
            "logit_bias": self.logit_bias,
            "batch_size": self.batch_size,
        }

    def hypotheses(self, entities: Sequence[tuple[str, str, str]]) -> list[str]:
        """[(entity, type, description)] -> hypothesis texts."""
        return [
            self.hypothesis.format(entity=e, type=t, type_word=type_word(t), description=d)
            for e, t, d in entities
        ]

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = getattr(self.processor, "tokenizer", self.processor)
        enc = tok(list(texts), return_tensors="pt", truncation=True, **self._text_padding(tok))
        return {
            k: v.to(self.device)
            for k, v in enc.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }

    def _text_padding(self, tok) -> dict[str, Any]:
        return {"padding": True, "max_length": token_limit(self.model.config, tok, default=64)}

    def _pixels(self, image) -> torch.Tensor:
        ip = getattr(self.processor, "image_processor", self.processor)
        return self._floating(ip(images=image, return_tensors="pt")["pixel_values"])

    @torch.no_grad()
    def score(self, image, hypotheses: Sequence[str]) -> np.ndarray:
        """Probabilities in [0, 1], one per hypothesis; the image goes through the vision encoder once."""
        return self.score_many([(image, hypotheses)])[0]

    @torch.no_grad()
    def score_many(
        self, items: Sequence[tuple[Any, Sequence[str]]], *, vision_batch_size: int = 8
    ) -> list[np.ndarray]:
        """``[(image, hypotheses)]`` -> one probability array per image.

        The images go through the vision encoder ``vision_batch_size`` at a time (every image is
        resized to the model's fixed input size, so batching needs no padding and changes no result),
        then all (image, hypothesis) pairs of the batch through the text side in chunks of
        ``batch_size``: one vision forward per image batch, not one per image.
        """
        out: list[np.ndarray] = [np.zeros(0) for _ in items]
        todo = [i for i, (_, hyps) in enumerate(items) if len(hyps)]
        step = max(1, int(vision_batch_size))
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            probs = self._score_chunk([items[i] for i in chunk])
            pos = 0
            for i in chunk:
                n = len(items[i][1])
                out[i] = probs[pos : pos + n]
                pos += n
        return out

    def _score_chunk(self, items: Sequence[tuple[Any, Sequence[str]]]) -> np.ndarray:
        """One batch of images with their hypotheses -> every hypothesis's probability, flat (image order)."""
        pixels = self._pixels([img for img, _ in items])
        pairs = [(k, h) for k, (_, hyps) in enumerate(items) for h in hyps]
        return np.nan_to_num(self._score_pairs(pixels, pairs), nan=0.0)

    def _score_pairs(self, pixels: torch.Tensor, pairs: Sequence[tuple[int, str]]) -> np.ndarray:
        raise NotImplementedError


def _features(out: Any) -> torch.Tensor:
    """get_*_features returns a tensor in most models, a model output with pooler_output in some."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"entailment: cannot read features from {type(out).__name__}")
