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
from ..registry import Option
from ._detector import best_per_query, clean_query, to_localization


def tiny_owl(seed: int = 0, v2: bool = True):
    """A tiny random OWLv2 (``v2=False``: OWL-ViT) with its processor."""
    import transformers

    from ..tiny import dual_encoder_configs, seeded, tiny_clip_tokenizer

    name = "Owlv2" if v2 else "OwlViT"
    config_class, model_class, ip_class, proc_class = (
        getattr(transformers, name + s)
        for s in ("Config", "ForObjectDetection", "ImageProcessor", "Processor")
    )
    tok = tiny_clip_tokenizer()
    with seeded(seed):
        cfg = config_class(**dual_encoder_configs(tok, 64), projection_dim=32)
        model = model_class(cfg).eval()
    return model, proc_class(image_processor=ip_class(size={"height": 64, "width": 64}), tokenizer=tok)


def tiny_owlv2(seed: int = 0):
    """A tiny random OWLv2 and its processor, for tests."""
    return tiny_owl(seed, v2=True)


def tiny_owlvit(seed: int = 0):
    """A tiny random OWL-ViT and its processor, for tests."""
    return tiny_owl(seed, v2=False)


@register
class OwlGrounder(Grounder):
    family = "owl"
    model_types = ("owlvit", "owlv2")
    default_box_threshold = 0.1
    tiny_builders = {"owlvit": tiny_owlvit, "owlv2": tiny_owlv2}
    family_options = (
        Option("max_text_tokens", None, "positive-int", "tokens per text prompt (None: the model's limit)",
               nullable=True),
    )  # fmt: skip

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        self.pad_to_square = model.config.model_type == "owlv2"

    def _options_changed(self, names: set[str]) -> None:
        if self.max_text_tokens is None:  # the text model's window
            text_cfg = getattr(self.model.config, "text_config", None)
            self.max_text_tokens = int(getattr(text_cfg, "max_position_embeddings", 16) or 16)

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
