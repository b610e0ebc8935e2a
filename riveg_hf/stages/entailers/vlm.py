"""A vision-language model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL: ``AutoModelForImageTextToText``): asked "Does the
image show {hypothesis}? Answer yes or no.", ``P(yes) = p(yes) / (p(yes) + p(no))`` from the next-token
distribution ("yes"/"Yes" against "no"/"No"); all the hypotheses of ``vision_batch_size`` images in one batched
forward pass (no generation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...text import prompt_field
from ..entailment import VLM_QUESTION, Entailment, register
from ..tiny import TINY_VLMS
from ..vlm_grounding import VLM_FAMILIES


@register
class VlmEntailment(Entailment):
    """A vision-language model asked "Does the image show ...?": P(yes) from the next-token distribution.

    Breaks the role's "image encoded once" promise (``encodes_image_once = False``): the image is part of each
    question, so each (image, hypothesis) pair encodes its image; the pairs of a batch share one forward pass."""

    family = "vlm"
    model_types = tuple(VLM_FAMILIES)
    compile_modules = ()
    encodes_image_once = False
    vision_module = "model.model.visual"
    tiny_builders = TINY_VLMS

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        tok = processor.tokenizer
        tok.padding_side = "left"  # the answer's first token is predicted at the last position
        self._yes = sorted({tok.encode(w, add_special_tokens=False)[0] for w in ("yes", "Yes")})
        self._no = sorted({tok.encode(w, add_special_tokens=False)[0] for w in ("no", "No")})

    def vlm_encode(self, pairs: Sequence[tuple[Any, str]]) -> dict[str, Any]:
        """The processor's batch for (image, hypothesis) pairs: the question as the user turn, left-padded,
        ending where the answer's first token is predicted (used by scoring and by training)."""
        proc = self.processor
        texts = [
            proc.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"},
                                              {"type": "text", "text": VLM_QUESTION.format(hypothesis=prompt_field(h))}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for _, h in pairs
        ]  # fmt: skip
        return proc(text=texts, images=[img for img, _ in pairs], return_tensors="pt", padding=True)

    def vlm_yes_no_logits(self, model, enc) -> torch.Tensor:
        """``(batch, 2)`` logits of answering [no, yes] (log-sum-exp over each word's first tokens)."""
        logits = model(**self._inputs(enc)).logits[:, -1, :].float()
        return torch.stack(
            [torch.logsumexp(logits[:, self._no], dim=-1), torch.logsumexp(logits[:, self._yes], dim=-1)],
            dim=-1,
        )

    def _score_chunk(self, items: Sequence[tuple[Any, Sequence[str]]]) -> np.ndarray:
        """P(yes) for each (image, hypothesis), from one batched forward of the next-token logits."""
        pairs = [(img, h) for img, hyps in items for h in hyps]
        two = self.vlm_yes_no_logits(self.model, self.vlm_encode(pairs))
        prob = torch.softmax(two, dim=-1)[:, 1].cpu().numpy().astype(np.float64)
        return np.nan_to_num(prob, nan=0.0)
