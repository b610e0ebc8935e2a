"""Dual encoders (CLIP, SigLIP and other ``AutoModelForZeroShotImageClassification`` models):
``sigmoid(scale * cos + bias)``; SigLIP has its own learned bias, CLIP uses ``logit_bias`` (default
``-0.25 * scale``, i.e. probability 0.5 at cosine 0.25). Each image is encoded once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..base import token_limit
from ..entailment import Entailment, _features, register


def tiny_clip(seed: int = 0):
    """A tiny random CLIP with its processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from ..tiny import dual_encoder_configs, seeded, tiny_clip_tokenizer

    tok = tiny_clip_tokenizer()
    with seeded(seed):
        cfg = CLIPConfig(**dual_encoder_configs(tok, 32), projection_dim=16)
        model = CLIPModel(cfg).eval()
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, CLIPProcessor(image_processor=ip, tokenizer=tok)


def tiny_siglip(seed: int = 0):
    """A tiny random SigLIP with its processor."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    from ..tiny import dual_encoder_configs, seeded, tiny_clip_tokenizer

    tok = tiny_clip_tokenizer()
    with seeded(seed):
        model = SiglipModel(SiglipConfig(**dual_encoder_configs(tok, 32))).eval()
    ip = SiglipImageProcessor(size={"height": 32, "width": 32})
    return model, SiglipProcessor(image_processor=ip, tokenizer=tok)


@register
class ContrastiveEntailment(Entailment):
    """Dual encoders: sigmoid(scale * cos + bias) of the image and hypothesis embeddings (CLIP, SigLIP ...)."""

    family = "contrastive"
    known_model_types = ("clip", "siglip")
    accepts_doc = "any dual encoder with get_image_features / get_text_features (CLIPModel, SiglipModel ...)"
    tiny_builders = {"clip": tiny_clip, "siglip": tiny_siglip}

    @classmethod
    def accepts(cls, model) -> bool:
        return hasattr(model, "get_image_features") and hasattr(model, "get_text_features")

    def _text_padding(self, tok) -> dict[str, Any]:
        limit = token_limit(self.model.config, tok, default=64)
        if "siglip" in type(self.model).__name__.lower():  # SigLIP was trained on max-length padding
            return {"padding": "max_length", "max_length": min(64, limit)}
        return {"padding": True, "max_length": limit}

    def _score_pairs(self, pixels: torch.Tensor, pairs: Sequence[tuple[int, str]]) -> np.ndarray:
        out = []
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
        return torch.cat(out).numpy().astype(np.float64)
