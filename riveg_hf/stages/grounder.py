"""Stage 4 -- visual grounding: an open-vocabulary detector finds the box of each entity's description.

Any ``AutoModelForZeroShotObjectDetection`` of the Grounding DINO family (Grounding DINO,
MM Grounding DINO) or the OWL family (OWL-ViT, OWLv2). All the queries of one image go into
**one** detector call:

* Grounding DINO reads one prompt ``"q1. q2. q3."`` (its text attention keeps the phrases
  apart); the score of a box for query *q* is the best token probability over *q*'s tokens.
  Only if the queries of one image overflow the text window (256 tokens, some 20 descriptions)
  are they split over several calls;
* OWL reads the queries as a batch of texts against one image; the logits are per query.

For each query the best box is returned with its score; the caller decides "no box" with
``box_threshold``. Boxes are pixel ``xyxy`` in original-image coordinates, clipped to the
image; NaN scores count as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForZeroShotObjectDetection

from .base import Stage

__all__ = ["Grounder"]

_GDINO = ("grounding-dino", "mm-grounding-dino")
_OWL = ("owlvit", "owlv2")
#: default box_threshold per family (Grounding DINO and OWL calibrate their scores differently)
DEFAULT_BOX_THRESHOLD = {"grounding-dino": 0.3, "owl": 0.1}


class Grounder(Stage):
    """Image + text queries -> best box and score per query (one detector call per image)."""

    name = "grounder"
    auto_classes = (AutoModelForZeroShotObjectDetection,)

    def __init__(
        self, model, processor, *, box_threshold: float | None = None, max_text_tokens: int | None = None
    ):
        super().__init__(model, processor)
        model_type = model.config.model_type
        if model_type in _GDINO:
            self.family = "grounding-dino"
        elif model_type in _OWL:
            self.family = "owl"
        else:
            raise TypeError(
                f"grounder: model type {model_type!r} is not supported; supported: {list(_GDINO + _OWL)} "
                "(e.g. IDEA-Research/grounding-dino-tiny, google/owlv2-base-patch16-ensemble)."
            )
        self.pad_to_square = model_type == "owlv2"  # OWLv2 pads the image to a square before predicting
        self.box_threshold = float(
            box_threshold if box_threshold is not None else DEFAULT_BOX_THRESHOLD[self.family]
        )
        text_cfg = getattr(model.config, "text_config", None)
        self.max_text_tokens = int(
            max_text_tokens
            or getattr(model.config, "max_text_len", None)
            or getattr(text_cfg, "max_position_embeddings", 256)
            or 256
        )

    def options(self) -> dict[str, Any]:
        return {"box_threshold": self.box_threshold, "max_text_tokens": self.max_text_tokens}

    @staticmethod
    def clean_query(query: str) -> str:
        """Lower-case, one line, no '.' (Grounding DINO separates phrases with '.')."""
        q = " ".join(query.replace(".", " ").split()).lower()
        return q or "object"

    @torch.no_grad()
    def ground(self, image, queries: Sequence[str]) -> list[tuple[list[float] | None, float]]:
        """-> ``[(box xyxy or None, score)]`` per query, the best box of the image for it.

        Cost is linear in the number of queries: each detector call keeps, per query, only its best
        box (never a queries x all-boxes matrix across calls).
        """
        if not queries:
            return []
        queries = [self.clean_query(q) for q in queries]
        w, h = image.size
        if self.family == "grounding-dino":
            best = self._gdino(image, queries)
        else:
            best = self._owl(image, queries)
        scale = [max(w, h)] * 2 if self.pad_to_square else [w, h]
        out = []
        for found in best:
            if found is None:
                out.append((None, 0.0))
                continue
            score, (cx, cy, bw, bh) = found
            x0, y0 = (cx - bw / 2) * scale[0], (cy - bh / 2) * scale[1]
            x1, y1 = (cx + bw / 2) * scale[0], (cy + bh / 2) * scale[1]
            box = [min(max(float(v), 0.0), lim) for v, lim in zip((x0, y0, x1, y1), (w, h, w, h))]
            if not all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
                out.append((None, 0.0))
                continue
            out.append((box, score))
        return out

    @staticmethod
    def _best(scores: np.ndarray, boxes: np.ndarray) -> list[tuple[float, np.ndarray] | None]:
        """``scores`` (queries, boxes), ``boxes`` (boxes, 4) cxcywh -> per query (best score, its box)."""
        scores = np.nan_to_num(scores.astype(np.float64), nan=0.0)
        if scores.shape[1] == 0:
            return [None] * scores.shape[0]
        ks = scores.argmax(axis=1)
        return [(float(scores[q, k]), boxes[k]) for q, k in enumerate(ks)]

    def _gdino(self, image, queries: Sequence[str]) -> list[tuple[float, np.ndarray] | None]:
        tok = self.processor.tokenizer
        # Split the queries into as few prompts as fit the text encoder; almost always one.
        groups: list[list[int]] = [[]]
        length = 2
        for i, q in enumerate(queries):
            n = len(tok(q + ".", add_special_tokens=False)["input_ids"]) + 1
            if groups[-1] and length + n > self.max_text_tokens:
                groups.append([])
                length = 2
            groups[-1].append(i)
            length += n
        best: list[tuple[float, np.ndarray] | None] = [None] * len(queries)
        pixel_inputs = None
        for group in groups:
            prompt = ". ".join(queries[i] for i in group) + "."
            enc = tok(
                prompt,
                return_tensors="pt",
                return_offsets_mapping=True,
                truncation=True,
                max_length=self.max_text_tokens,
            )
            offsets = enc.pop("offset_mapping")[0].tolist()
            if pixel_inputs is None:
                pixel_inputs = self._inputs(self.processor.image_processor(images=image, return_tensors="pt"))
            inputs = {**pixel_inputs, **{k: v.to(self.device) for k, v in enc.items()}}
            out = self.model(**inputs)
            probs = torch.sigmoid(out.logits[0].float()).cpu().numpy()  # (num_boxes, max_text_len)
            boxes = out.pred_boxes[0].float().cpu().numpy()
            # character span of each query inside the prompt -> its token positions (one pass over tokens)
            spans, pos = [], 0
            for i in group:
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
            for i, found in zip(group, self._best(scores, boxes)):
                best[i] = found
        return best

    def _owl(self, image, queries: Sequence[str]) -> list[tuple[float, np.ndarray] | None]:
        tok = self.processor.tokenizer
        enc = tok(
            list(queries),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=min(self.max_text_tokens, getattr(tok, "model_max_length", 16) or 16),
        )
        pixels = self._inputs(self.processor.image_processor(images=image, return_tensors="pt"))
        out = self.model(
            input_ids=enc["input_ids"].to(self.device),
            attention_mask=enc["attention_mask"].to(self.device),
            pixel_values=pixels["pixel_values"],
        )
        logits = out.logits[0].float()  # (num_boxes, num_queries)
        scores = torch.sigmoid(logits).T.cpu().numpy()
        return self._best(scores, out.pred_boxes[0].float().cpu().numpy())
