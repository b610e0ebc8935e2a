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

===============  =================================  ==========================================================
family           model types                        what (module)
===============  =================================  ==========================================================
``itm``          blip                               BlipForImageTextRetrieval's match probability
                                                    (``entailers.itm``)
``vlm``          qwen2_vl, qwen2_5_vl, qwen3_vl,    P(yes) of a vision-language model (``entailers.vlm``);
                 qwen3_vl_moe                       encodes the image once per hypothesis
``contrastive``  clip, siglip                       any dual encoder (``entailers.contrastive``)
===============  =================================  ==========================================================

One base class (:class:`Entailment`), one module per family in :mod:`riveg_hf.stages.entailers` (``itm``,
``contrastive``, ``vlm``), registered in :data:`FAMILIES` and tried in that order (a family serves its
``model_types``, else the first whose ``accepts(model)`` is true); ``Entailment(model, processor)`` and
``Entailment.from_pretrained(...)`` give the family that serves the model. A family that does not encode each
image once (the VLM family: the image is part of each question) says so (``encodes_image_once = False``).
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
from .registry import FamilyRegistry, Option, resolve_path

__all__ = [
    "DEFAULT_HYPOTHESIS",
    "FAMILIES",
    "FAMILY_MODULES",
    "Entailment",
    "calibrate_threshold",
    "family_class",
    "register",
]

#: the library's entailment families, ``riveg_hf.stages.entailers.<name>``, tried in this order; each registers its
#: class on import
FAMILY_MODULES = ("itm", "vlm", "contrastive")

#: the entailment families (see :mod:`riveg_hf.stages.registry`)
FAMILIES = FamilyRegistry(
    "entailment",
    f"{__package__}.entailers",
    FAMILY_MODULES,
    hint="E.g. Salesforce/blip-itm-base-coco, openai/clip-vit-base-patch32, google/siglip-base-patch16-224, "
    "Qwen/Qwen2.5-VL-3B-Instruct.",
)
register = FAMILIES.register


def family_class(model) -> type:
    """The entailment family serving ``model``; the error lists the supported ones."""
    return FAMILIES.for_model(model)


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
    family: ClassVar[str] = ""
    #: the model types the family serves by type (the others by :meth:`accepts`)
    model_types: ClassVar[tuple[str, ...]] = ()
    #: the model types the family is known to serve through :meth:`accepts` (docs and tiny models)
    known_model_types: ClassVar[tuple[str, ...]] = ()
    #: what :meth:`accepts` accepts, in words (errors and docs)
    accepts_doc: ClassVar[str] = ""
    #: the role's promise: each image goes through the vision encoder once per call, however many hypotheses;
    #: a family that cannot keep it says False (and why, in its doc)
    encodes_image_once: ClassVar[bool] = True
    #: the vision encoder (attribute path from the stage): what "encoded once" counts
    vision_module: ClassVar[str] = "model.vision_model"
    role_options = (
        Option("threshold", None, "unit", "P(visible) at or above which an entity is visible (None: the "
               "checkpoint's calibrated riveg_entailment_threshold, else 0.5)", nullable=True,
               why="P(yes) is a probability"),
        Option("hypothesis", DEFAULT_HYPOTHESIS, "str", "the hypothesis per entity; fields {entity}, {type}, "
               "{type_word}, {description}"),
        Option("logit_bias", None, "number", "a dual encoder's bias of sigmoid(scale * cos + bias) (None: the "
               "model's or the checkpoint's)", nullable=True),
        Option("batch_size", 32, "positive-int", "hypotheses per text forward"),
    )  # fmt: skip

    def __new__(cls, model=None, processor=None, **options):
        if cls is Entailment and model is not None:
            cls = family_class(model)
        return super().__new__(cls)

    @property
    def kind(self) -> str:
        """The former name of :attr:`family` (code written against it keeps working)."""
        return self.family

    @classmethod
    def accepts(cls, model) -> bool:
        """Whether this family serves ``model`` beyond its ``model_types``."""
        return False

    @classmethod
    def served(cls, endpoint, **options):
        """A vision-language entailment model on a server (:mod:`riveg_hf.stages.entailers.served`)."""
        served = importlib.import_module(
            f"{__package__}.entailers.served"
        )  # a family module, like the others
        return served.ServedEntailment(endpoint, **options)

    def __init__(self, model, processor, **options: Any):
        super().__init__(model, processor)
        self._init_options(options)

    def vision_encoder(self) -> torch.nn.Module:
        """The module every image goes through (:attr:`vision_module`)."""
        return resolve_path(self, self.vision_module)

    def _options_changed(self, names: set[str]) -> None:
        config = getattr(self.model, "config", None)
        if self.threshold is None:
            saved = getattr(config, "riveg_entailment_threshold", None)
            self.threshold = float(saved) if saved is not None else 0.5
        if self.logit_bias is None and "logit_bias" in names:
            self.logit_bias = getattr(config, "riveg_logit_bias", None)
        try:
            self.hypothesis.format(entity="e", type="t", type_word="w", description="d")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"{self._where}: hypothesis {self.hypothesis!r} does not format ({type(err).__name__}: {err}); "
                "use only the fields {entity}, {type}, {type_word} and {description} (double a literal brace: {{ }})"
            ) from None

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
