"""Grounding DINO and MM Grounding DINO: all the queries of one image in one prompt ``"q1. q2. q3."``.

Its text attention keeps the phrases apart; the score of a box for query *q* is the best token probability
over *q*'s tokens. Only if the queries of one image overflow the text window (256 tokens, some 20
descriptions) are they split over several calls. Several images go into one call only when their processed
size is the same: Grounding DINO pads images of different sizes to a common size, and that padding goes
through its Swin backbone and changes every feature (measured on a tiny model: logits off by up to 8, boxes
by 0.9 of the image); prompts of one call are padded with an attention mask (scores within 1e-4).
Cost is linear in the number of queries: each call keeps, per query, only its best box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..grounder import Grounder, Localization, LocateRequest, register
from ..registry import Option
from ._detector import best_per_query, clean_query, to_localization


# ---------------------------------------------------------------------- tiny models (tests)
def tiny_grounding_dino(seed: int = 0, mm: bool = False):
    """A tiny random Grounding DINO; ``mm=True``: MM-Grounding-DINO (``MMGroundingDinoForObjectDetection``)."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    from ..tiny import seeded, tiny_bert_tokenizer

    tok = tiny_bert_tokenizer(lowercase=True, bert_base_ids=True)
    if mm:
        from transformers import MMGroundingDinoConfig as config_class
        from transformers import MMGroundingDinoForObjectDetection as model_class
    else:
        config_class, model_class = GroundingDinoConfig, GroundingDinoForObjectDetection
    with seeded(seed):
        swin = SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=64,
            out_indices=[2, 3, 4],
        )
        cfg = config_class(
            backbone_config=swin,
            use_timm_backbone=False,
            use_pretrained_backbone=False,
            text_config=BertConfig(
                vocab_size=len(tok),
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=37,
            ),
            d_model=32,
            encoder_layers=1,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_queries=20,
            num_feature_levels=4,
            encoder_n_points=2,
            decoder_n_points=2,
            max_text_len=256,
        )
        model = model_class(cfg).eval()
    proc = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=tok,
    )
    return model, proc


def tiny_mm_grounding_dino(seed: int = 0):
    """A tiny random MM Grounding DINO (``mm-grounding-dino``) and its processor, for tests."""
    return tiny_grounding_dino(seed, mm=True)


@register
class GroundingDinoGrounder(Grounder):
    family = "grounding-dino"
    model_types = ("grounding-dino", "mm-grounding-dino")
    default_box_threshold = 0.3
    compile_modules = ("model.model.backbone",)
    tiny_builders = {"grounding-dino": tiny_grounding_dino, "mm-grounding-dino": tiny_mm_grounding_dino}
    family_options = (
        Option("max_text_tokens", None, "positive-int", "tokens per text prompt (None: the model's limit)",
               nullable=True),
    )  # fmt: skip

    def _options_changed(self, names: set[str]) -> None:
        if self.max_text_tokens is None:  # the model's own window
            cfg = self.model.config
            text_cfg = getattr(cfg, "text_config", None)
            self.max_text_tokens = int(
                getattr(cfg, "max_text_len", None) or getattr(text_cfg, "max_position_embeddings", 256) or 256
            )

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        cleaned = [[clean_query(q) for q in r.queries] for r in requests]
        best = self._many([(r.image, qs) for r, qs in zip(requests, cleaned)], vision_batch_size)
        return [to_localization(r.image, best[k]) for k, r in enumerate(requests)]

    def _windows(self, queries: Sequence[str]) -> list[list[int]]:
        """Split the queries into as few prompts as fit the text encoder; almost always one."""
        tok = self.processor.tokenizer
        groups: list[list[int]] = [[]]
        length = 2
        for i, q in enumerate(queries):
            n = len(tok(q + ".", add_special_tokens=False)["input_ids"]) + 1
            if groups[-1] and length + n > self.max_text_tokens:
                groups.append([])
                length = 2
            groups[-1].append(i)
            length += n
        return groups

    def _query_best(self, probs, boxes, offsets, queries: Sequence[str], group: list[int]):
        """Per query of ``group``: the best box, scored by the best token probability over its tokens."""
        spans, pos = [], 0
        for i in group:  # character span of each query inside the prompt -> its token positions
            spans.append((pos, pos + len(queries[i])))
            pos += len(queries[i]) + 2  # ". "
        toks: list[list[int]] = [[] for _ in group]
        q = 0
        for t, (a, b) in enumerate(offsets):
            if b <= a or t >= probs.shape[1]:
                continue
            while q < len(spans) and a >= spans[q][1]:
                q += 1
            if q == len(spans):
                break
            if a >= spans[q][0] and b <= spans[q][1]:
                toks[q].append(t)
        scores = np.zeros((len(group), probs.shape[0]))
        for g, tk in enumerate(toks):
            if tk:
                scores[g] = probs[:, tk].max(axis=1)
        return best_per_query(scores, boxes)

    def _call(self, pixel_inputs: dict, prompts: list[str]):
        tok = self.processor.tokenizer
        enc = tok(prompts, return_tensors="pt", return_offsets_mapping=True, truncation=True, padding=True,
                  max_length=self.max_text_tokens)  # fmt: skip
        offsets = enc.pop("offset_mapping").tolist()
        out = self.model(**pixel_inputs, **{k: v.to(self.device) for k, v in enc.items()})
        probs = torch.sigmoid(out.logits.float()).cpu().numpy()  # (batch, num_boxes, max_text_len)
        return probs, out.pred_boxes.float().cpu().numpy(), offsets

    def _one(self, image, queries: Sequence[str]):
        """One image, its queries over as many text windows as they need."""
        best: list = [None] * len(queries)
        pixel_inputs = self._inputs(self.processor.image_processor(images=image, return_tensors="pt"))
        for group in self._windows(queries):
            probs, boxes, offsets = self._call(pixel_inputs, [". ".join(queries[i] for i in group) + "."])
            for i, found in zip(group, self._query_best(probs[0], boxes[0], offsets[0], queries, group)):
                best[i] = found
        return best

    def _many(self, items, vision_batch_size: int) -> list[list]:
        ip = self.processor.image_processor
        best: dict[int, list] = {}
        by_shape: dict[tuple, list] = {}
        for key, (image, queries) in enumerate(items):
            if len(self._windows(queries)) > 1:
                best[key] = self._one(image, queries)
                continue
            enc = ip(images=image, return_tensors="pt")
            by_shape.setdefault(tuple(enc["pixel_values"].shape), []).append((key, queries, enc))
        for group in by_shape.values():
            for start in range(0, len(group), vision_batch_size):
                chunk = group[start : start + vision_batch_size]
                pixel_inputs = self._inputs(
                    {k: torch.cat([enc[k] for _, _, enc in chunk]) for k in chunk[0][2]
                     if k in ("pixel_values", "pixel_mask")}
                )  # fmt: skip
                probs, boxes, offsets = self._call(pixel_inputs, [". ".join(q) + "." for _, q, _ in chunk])
                for k, (key, queries, _) in enumerate(chunk):
                    best[key] = self._query_best(
                        probs[k], boxes[k], offsets[k], queries, list(range(len(queries)))
                    )
        return [best[k] for k in range(len(items))]
