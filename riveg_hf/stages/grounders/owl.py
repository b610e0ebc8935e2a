"""OWL-ViT and OWLv2: the queries of an image as a batch of texts against it; logits are per query.

Several images go into one call (OWL resizes every image to one square size); each image's queries are
padded to the longest list with blank queries (queries are independent) and the padding dropped. OWLv2 pads
the image to a square before predicting, so its boxes are scaled by the long side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..base import token_limit
from ..grounder import Grounder, Localization, LocateRequest, register
from ._detector import best_per_query, clean_query, to_localization


@register
class OwlGrounder(Grounder):
    family = "owl"
    model_types = ("owlvit", "owlv2")
    default_box_threshold = 0.1
    family_options = {"max_text_tokens": None}

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        text_cfg = getattr(model.config, "text_config", None)
        self.max_text_tokens = int(
            self.max_text_tokens or getattr(text_cfg, "max_position_embeddings", 16) or 16
        )
        self.pad_to_square = model.config.model_type == "owlv2"

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        out = []
        for start in range(0, len(requests), vision_batch_size):
            chunk = requests[start : start + vision_batch_size]
            found = self._batch(
                [r.image for r in chunk], [[clean_query(q) for q in r.queries] for r in chunk]
            )
            out += [
                to_localization(r.image, f, pad_to_square=self.pad_to_square) for r, f in zip(chunk, found)
            ]
        return out

    def _batch(self, images: list, queries: list[Sequence[str]]):
        tok = self.processor.tokenizer
        n_max = max(len(q) for q in queries)
        flat = [q for qs in queries for q in [*qs, *([" "] * (n_max - len(qs)))]]
        enc = tok(flat, return_tensors="pt", padding=True, truncation=True,
                  max_length=min(self.max_text_tokens, token_limit(self.model.config, tok, default=16)))  # fmt: skip
        pixels = self._inputs(self.processor.image_processor(images=images, return_tensors="pt"))
        out = self.model(
            input_ids=enc["input_ids"].to(self.device),
            attention_mask=enc["attention_mask"].to(self.device),
            pixel_values=pixels["pixel_values"],
        )
        scores = torch.sigmoid(out.logits.float()).cpu().numpy()  # (images, num_boxes, n_max)
        boxes = out.pred_boxes.float().cpu().numpy()
        return [best_per_query(scores[k].T[: len(qs)], boxes[k]) for k, qs in enumerate(queries)]
