"""Image-text matching (``BlipForImageTextRetrieval``; what ``riveg train entailment`` fine-tunes): the ITM head's
"match" probability. The image is encoded once per batch; each hypothesis cross-attends to its image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import BlipForImageTextRetrieval

from ..entailment import Entailment, register


def tiny_blip_itm(seed: int = 0):
    """A tiny random BLIP image-text matching model with its processor."""
    from ..tiny import blip_config, blip_processor, seeded

    proc = blip_processor()
    with seeded(seed):
        model = BlipForImageTextRetrieval(blip_config(proc.tokenizer)).eval()
    return model, proc


@register
class ItmEntailment(Entailment):
    """Image-text matching: the ITM head's "match" probability (BlipForImageTextRetrieval)."""

    family = "itm"
    known_model_types = ("blip",)
    accepts_doc = "BlipForImageTextRetrieval (image-text matching)"
    tiny_builders = {"blip": tiny_blip_itm}

    @classmethod
    def accepts(cls, model) -> bool:
        return isinstance(model, BlipForImageTextRetrieval)

    def _score_pairs(self, pixels: torch.Tensor, pairs: Sequence[tuple[int, str]]) -> np.ndarray:
        out = []
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
        return torch.cat(out).numpy().astype(np.float64)
