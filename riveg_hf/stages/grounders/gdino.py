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
from ._detector import best_per_query, clean_query, to_localization


@register
class GroundingDinoGrounder(Grounder):
    family = "grounding-dino"
    model_types = ("grounding-dino", "mm-grounding-dino")
    default_box_threshold = 0.3
    compile_modules = ("model.model.backbone",)
    family_options = {"max_text_tokens": None}

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        text_cfg = getattr(model.config, "text_config", None)
        self.max_text_tokens = int(
            self.max_text_tokens
            or getattr(model.config, "max_text_len", None)
            or getattr(text_cfg, "max_position_embeddings", 256)
            or 256
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
