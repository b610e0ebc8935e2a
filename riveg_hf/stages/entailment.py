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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForZeroShotImageClassification,
    BlipForImageTextRetrieval,
)

from ..types import TYPE_WORDS
from .base import Stage, token_limit

__all__ = ["DEFAULT_HYPOTHESIS", "Entailment", "calibrate_threshold"]

_VLM_TYPES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")
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
    """Image + hypotheses -> probability that the image shows each entity."""

    name = "entailment"
    compile_modules = ("model.vision_model",)
    auto_classes = (
        AutoModelForZeroShotImageClassification,
        BlipForImageTextRetrieval,
        AutoModelForImageTextToText,
        AutoModel,
    )

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
        if isinstance(model, BlipForImageTextRetrieval):
            self.kind = "itm"
        elif model.config.model_type in _VLM_TYPES:
            self.kind = "vlm"
            processor.tokenizer.padding_side = (
                "left"  # the answer's first token is predicted at the last position
            )
            tok = processor.tokenizer
            self._yes = sorted({tok.encode(w, add_special_tokens=False)[0] for w in ("yes", "Yes")})
            self._no = sorted({tok.encode(w, add_special_tokens=False)[0] for w in ("no", "No")})
        elif hasattr(model, "get_image_features") and hasattr(model, "get_text_features"):
            self.kind = "contrastive"
        else:
            raise TypeError(
                f"entailment: {type(model).__name__} is neither an image-text matching model "
                "(BlipForImageTextRetrieval) nor a dual encoder with get_image_features/get_text_features "
                "(CLIPModel, SiglipModel, ...)."
            )
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
            self.hypothesis.format(entity=e, type=t, type_word=TYPE_WORDS.get(t, t), description=d)
            for e, t, d in entities
        ]

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = getattr(self.processor, "tokenizer", self.processor)
        kwargs: dict[str, Any] = {"return_tensors": "pt", "truncation": True}
        limit = token_limit(self.model.config, tok, default=64)
        if self.kind == "contrastive" and "siglip" in type(self.model).__name__.lower():
            kwargs.update(padding="max_length", max_length=min(64, limit))
        else:
            kwargs.update(padding=True, max_length=limit)
        enc = tok(list(texts), **kwargs)
        return {
            k: v.to(self.device)
            for k, v in enc.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }

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
        if self.kind == "vlm":
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                probs = self._vlm_yes([(items[i][0], h) for i in chunk for h in items[i][1]])
                pos = 0
                for i in chunk:
                    out[i] = probs[pos : pos + len(items[i][1])]
                    pos += len(items[i][1])
            return out
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            pixels = self._pixels([items[i][0] for i in chunk])
            pairs = [(k, h) for k, i in enumerate(chunk) for h in items[i][1]]
            probs = self._score_pairs(pixels, pairs)
            pos = 0
            for i in chunk:
                n = len(items[i][1])
                out[i] = probs[pos : pos + n]
                pos += n
        return out

    def vlm_encode(self, pairs: Sequence[tuple[Any, str]]) -> dict[str, Any]:
        """The processor's batch for (image, hypothesis) pairs: the question as the user turn, left-padded,
        ending where the answer's first token is predicted (used by scoring and by training)."""
        proc = self.processor
        texts = [
            proc.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": VLM_QUESTION.format(hypothesis=h)},
                        ],
                    }
                ],
                add_generation_prompt=True,
                tokenize=False,
            )
            for _, h in pairs
        ]
        return proc(text=texts, images=[img for img, _ in pairs], return_tensors="pt", padding=True)

    def vlm_yes_no_logits(self, model, enc) -> torch.Tensor:
        """``(batch, 2)`` logits of answering [no, yes] (log-sum-exp over each word's first tokens)."""
        logits = model(**self._inputs(enc)).logits[:, -1, :].float()
        return torch.stack(
            [torch.logsumexp(logits[:, self._no], dim=-1), torch.logsumexp(logits[:, self._yes], dim=-1)],
            dim=-1,
        )

    def _vlm_yes(self, pairs: Sequence[tuple[Any, str]]) -> np.ndarray:
        """P(yes) for each (image, hypothesis), from one batched forward of the next-token logits."""
        two = self.vlm_yes_no_logits(self.model, self.vlm_encode(pairs))
        prob = torch.softmax(two, dim=-1)[:, 1].cpu().numpy().astype(np.float64)
        return np.nan_to_num(prob, nan=0.0)

    def _score_pairs(self, pixels: torch.Tensor, pairs: Sequence[tuple[int, str]]) -> np.ndarray:
        """``pairs`` of (index of the image in ``pixels``, hypothesis) -> probabilities."""
        out = []
        if self.kind == "itm":
            image_embeds = self.model.vision_model(pixel_values=pixels).last_hidden_state  # once per image
            for start in range(0, len(pairs), self.batch_size):
                part = pairs[start : start + self.batch_size]
                enc = self._tokenize([h for _, h in part])
                idx = torch.tensor([k for k, _ in part], device=image_embeds.device)
                emb = image_embeds.index_select(0, idx)
                att = torch.ones(emb.shape[:-1], dtype=torch.long, device=emb.device)
                text = self.model.text_encoder(
                    input_ids=enc["input_ids"],
                    attention_mask=enc.get("attention_mask"),
                    encoder_hidden_states=emb,
                    encoder_attention_mask=att,
                ).last_hidden_state
                logits = self.model.itm_head(text[:, 0, :]).float()
                out.append(torch.softmax(logits, dim=-1)[:, 1].cpu())
        else:
            img = _features(self.model.get_image_features(pixel_values=pixels))  # once per image
            img = img / img.norm(dim=-1, keepdim=True)
            scale = (
                self.model.logit_scale.exp().float()
                if hasattr(self.model, "logit_scale")
                else torch.tensor(100.0)
            )
            if self.logit_bias is not None:
                bias = torch.tensor(float(self.logit_bias))
            elif hasattr(self.model, "logit_bias"):
                bias = self.model.logit_bias.float().reshape(())
            else:
                bias = -0.25 * scale
            for start in range(0, len(pairs), self.batch_size):
                part = pairs[start : start + self.batch_size]
                enc = self._tokenize([h for _, h in part])
                enc.pop("token_type_ids", None)
                txt = _features(self.model.get_text_features(**enc))
                txt = txt / txt.norm(dim=-1, keepdim=True)
                idx = torch.tensor([k for k, _ in part], device=img.device)
                cos = (txt.float() * img.float().index_select(0, idx)).sum(dim=-1)
                logits = cos * scale.to(txt.device) + bias.to(txt.device)
                out.append(torch.sigmoid(logits).cpu())
        probs = torch.cat(out).numpy().astype(np.float64)
        return np.nan_to_num(probs, nan=0.0)


def _features(out: Any) -> torch.Tensor:
    """get_*_features returns a tensor in most models, a model output with pooler_output in some."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"entailment: cannot read features from {type(out).__name__}")
