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
from transformers import AutoModelForImageTextToText, AutoModelForZeroShotObjectDetection

from .base import Stage, token_limit
from .vlm_grounding import (
    VLM_FAMILIES,
    grounding_messages,
    max_new_tokens_for,
    parse_grounding_answer,
    to_original_xyxy,
)

__all__ = ["Grounder"]

_GDINO = ("grounding-dino", "mm-grounding-dino")
_OWL = ("owlvit", "owlv2")
#: default box_threshold per family (Grounding DINO and OWL calibrate their scores differently)
DEFAULT_BOX_THRESHOLD = {"grounding-dino": 0.3, "owl": 0.1, "vlm": 0.0, "florence2": 0.0}
#: Florence-2's task for grounding phrases of a caption
FLORENCE2_TASK = "<CAPTION_TO_PHRASE_GROUNDING>"


class Grounder(Stage):
    """Image + text queries -> best box and score per query (one detector call per image)."""

    name = "grounder"
    auto_classes = (AutoModelForZeroShotObjectDetection, AutoModelForImageTextToText)

    def __init__(
        self, model, processor, *, box_threshold: float | None = None, max_text_tokens: int | None = None
    ):
        super().__init__(model, processor)
        model_type = model.config.model_type
        if model_type in _GDINO:
            self.family = "grounding-dino"
        elif model_type in _OWL:
            self.family = "owl"
        elif model_type == "florence2":
            self.family = (
                "florence2"  # <CAPTION_TO_PHRASE_GROUNDING> on the descriptions, one generation per image
            )
        elif model_type in VLM_FAMILIES:
            self.family = "vlm"  # a vision-language model answering in JSON (see vlm_grounding)
            self.convention = VLM_FAMILIES[model_type]
            processor.tokenizer.padding_side = "left"  # batched generation
            self.batches_on_cpu = True  # decoding several images together costs about one (see pipeline)
        else:
            raise TypeError(
                f"grounder: model type {model_type!r} is not supported; supported: {[*_GDINO, *_OWL, *VLM_FAMILIES, 'florence2']} "
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
        return self.ground_many([(image, queries)])[0]

    @torch.no_grad()
    def ground_many(
        self,
        items: Sequence[tuple[Any, Sequence[str]]],
        *,
        vision_batch_size: int = 8,
        contexts: Sequence[dict[str, Any]] | None = None,
        diagnostics: list[dict[str, Any]] | None = None,
    ) -> list[list[tuple[list[float] | None, float | None]]]:
        """``[(image, queries)]`` -> per image, ``[(box xyxy or None, score)]`` per query.

        Several images go into one detector call (at most ``vision_batch_size``):

        * OWL resizes every image to one square size: any images batch; each image's queries are
          padded to the longest list with blank queries (queries are independent) and dropped;
        * Grounding DINO pads images of different sizes to a common size, and that padding goes
          through its Swin backbone and changes every feature (measured on a tiny model: logits
          off by up to 8, boxes by 0.9 of the image). So only images whose processed size is the
          same are batched (their prompts padded with an attention mask: scores within 1e-4);
          others, and images whose queries need several text windows, get their own call;
        * Florence-2 grounds the phrases of one caption, the image's descriptions joined by ". "
          (``<CAPTION_TO_PHRASE_GROUNDING>``, the processor's own post-processing maps its location tokens to
          pixels): one generation per image; each description takes the first box whose phrase is it, and a
          description without one is not visible. Florence-2 gives no score: ``box_score`` is None;
        * a vision-language model (Qwen2.5-VL, Qwen3-VL) generates one JSON answer per image for all its
          entities, ``vision_batch_size`` images per batched (left-padded) generation. ``contexts`` (one
          ``{"text", "entities": [(name, type, description)]}`` per item) give it the tweet and the entities;
          ``diagnostics``, when a list, receives one ``{"unparsable": [entity indices]}`` per item.
        """
        out: list[list[tuple[list[float] | None, float]]] = [[] for _ in items]
        todo = [i for i, (_, qs) in enumerate(items) if len(qs)]
        cleaned = {i: [self.clean_query(q) for q in items[i][1]] for i in todo}
        best: dict[int, list] = {}
        if self.family == "vlm":
            return self._vlm_many(items, contexts, diagnostics, vision_batch_size)
        if self.family == "florence2":
            if diagnostics is not None:
                diagnostics.extend({"unparsable": []} for _ in items)
            return self._florence2_many(items, cleaned, vision_batch_size)
        if diagnostics is not None:
            diagnostics.extend({"unparsable": []} for _ in items)
        if self.family == "grounding-dino":
            best = self._gdino_many([(items[i][0], cleaned[i]) for i in todo], todo, vision_batch_size)
        else:
            step = max(1, int(vision_batch_size))
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                for i, found in zip(
                    chunk, self._owl([items[i][0] for i in chunk], [cleaned[i] for i in chunk])
                ):
                    best[i] = found
        for i in todo:
            out[i] = self._to_boxes(items[i][0], best[i])
        return out

    def _to_boxes(self, image, best) -> list[tuple[list[float] | None, float]]:
        w, h = image.size
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

    def _query_best(
        self, probs: np.ndarray, boxes: np.ndarray, offsets: list, queries: Sequence[str], group: list[int]
    ) -> list[tuple[float, np.ndarray] | None]:
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
        return self._best(scores, boxes)

    def _gdino_call(self, pixel_inputs: dict, prompts: list[str]):
        tok = self.processor.tokenizer
        enc = tok(
            prompts,
            return_tensors="pt",
            return_offsets_mapping=True,
            truncation=True,
            padding=True,
            max_length=self.max_text_tokens,
        )
        offsets = enc.pop("offset_mapping").tolist()
        out = self.model(**pixel_inputs, **{k: v.to(self.device) for k, v in enc.items()})
        probs = torch.sigmoid(out.logits.float()).cpu().numpy()  # (batch, num_boxes, max_text_len)
        return probs, out.pred_boxes.float().cpu().numpy(), offsets

    def _gdino(self, image, queries: Sequence[str]) -> list[tuple[float, np.ndarray] | None]:
        """One image, its queries over as many text windows as they need."""
        best: list[tuple[float, np.ndarray] | None] = [None] * len(queries)
        pixel_inputs = self._inputs(self.processor.image_processor(images=image, return_tensors="pt"))
        for group in self._windows(queries):
            probs, boxes, offsets = self._gdino_call(
                pixel_inputs, [". ".join(queries[i] for i in group) + "."]
            )
            for i, found in zip(group, self._query_best(probs[0], boxes[0], offsets[0], queries, group)):
                best[i] = found
        return best

    def _gdino_many(self, items, keys, vision_batch_size) -> dict[int, list]:
        ip = self.processor.image_processor
        best: dict[int, list] = {}
        by_shape: dict[tuple, list] = {}
        for key, (image, queries) in zip(keys, items):
            windows = self._windows(queries)
            if len(windows) > 1:
                best[key] = self._gdino(image, queries)
                continue
            enc = ip(images=image, return_tensors="pt")
            by_shape.setdefault(tuple(enc["pixel_values"].shape), []).append((key, queries, enc))
        step = max(1, int(vision_batch_size))
        for group in by_shape.values():
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                pixel_inputs = self._inputs(
                    {
                        k: torch.cat([enc[k] for _, _, enc in chunk])
                        for k in chunk[0][2]
                        if k in ("pixel_values", "pixel_mask")
                    }
                )
                prompts = [". ".join(queries) + "." for _, queries, _ in chunk]
                probs, boxes, offsets = self._gdino_call(pixel_inputs, prompts)
                for k, (key, queries, _) in enumerate(chunk):
                    best[key] = self._query_best(
                        probs[k], boxes[k], offsets[k], queries, list(range(len(queries)))
                    )
        return best

    def _owl(self, images: list, queries: list[Sequence[str]]) -> list[list[tuple[float, np.ndarray] | None]]:
        """Several images, each with its queries (padded with blank queries to the longest list)."""
        tok = self.processor.tokenizer
        n_max = max(len(q) for q in queries)
        flat = [q for qs in queries for q in [*qs, *([" "] * (n_max - len(qs)))]]
        enc = tok(
            flat,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=min(self.max_text_tokens, token_limit(self.model.config, tok, default=16)),
        )
        pixels = self._inputs(self.processor.image_processor(images=images, return_tensors="pt"))
        out = self.model(
            input_ids=enc["input_ids"].to(self.device),
            attention_mask=enc["attention_mask"].to(self.device),
            pixel_values=pixels["pixel_values"],
        )
        scores = torch.sigmoid(out.logits.float()).cpu().numpy()  # (images, num_boxes, n_max)
        boxes = out.pred_boxes.float().cpu().numpy()
        return [self._best(scores[k].T[: len(qs)], boxes[k]) for k, qs in enumerate(queries)]

    def _vlm_many(self, items, contexts, diagnostics, vision_batch_size):
        """One greedy generation per image (``vision_batch_size`` images per batch) -> boxes per entity."""
        proc, tok = self.processor, self.processor.tokenizer
        out: list[list[tuple[list[float] | None, float | None]]] = [[] for _ in items]
        diag: list[dict[str, Any]] = [{"unparsable": []} for _ in items]
        todo = [i for i, (_, qs) in enumerate(items) if len(qs)]
        patch = int(getattr(proc.image_processor, "patch_size", 14) or 14)
        step = max(1, int(vision_batch_size))
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            prompts, names = [], []
            for i in chunk:
                ctx = (contexts[i] if contexts is not None else None) or {}
                ents = ctx.get("entities") or [(q, "", q) for q in items[i][1]]
                names.append([e for e, _, _ in ents])
                messages = grounding_messages(ctx.get("text", ""), ents, self.convention)
                prompts.append(proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
            enc = proc(text=prompts, images=[items[i][0] for i in chunk], return_tensors="pt", padding=True)
            grids = enc["image_grid_thw"].tolist()
            gen = self.model.generate(
                **self._inputs(enc),
                max_new_tokens=max_new_tokens_for(max(len(n) for n in names)),
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
            new = gen.sequences[:, enc["input_ids"].shape[1] :].cpu()
            probs = torch.stack(
                [torch.softmax(s.float(), dim=-1).gather(1, new[:, t : t + 1].to(s.device)).squeeze(1).cpu()
                 for t, s in enumerate(gen.scores)],
                dim=1,
            )  # fmt: skip
            stop = {tok.eos_token_id, tok.pad_token_id} - {None}
            for k, i in enumerate(chunk):
                ids = new[k].tolist()
                n_tok = next((t for t, x in enumerate(ids) if x in stop), len(ids))
                pieces = [tok.decode([x], skip_special_tokens=True) for x in ids[:n_tok]]
                answer = "".join(pieces)
                parsed = parse_grounding_answer(answer, names[k])
                ends, pos = [], 0
                for piece in pieces:  # character span of each generated token in the answer
                    ends.append((pos, pos + len(piece)))
                    pos += len(piece)
                _, gh, gw = grids[k]
                input_size = (gw * patch, gh * patch)
                row = []
                for box, span in zip(parsed.boxes, parsed.spans):
                    xyxy = (
                        None
                        if box is None
                        else to_original_xyxy(box, self.convention, items[i][0].size, input_size)
                    )
                    if xyxy is None or span is None:
                        row.append((None, None))
                        continue
                    toks = [t for t, (a, b) in enumerate(ends) if a < span[1] and b > span[0]]
                    score = float(probs[k, toks].mean()) if toks else None
                    row.append((xyxy, score))
                out[i] = row
                diag[i] = {"unparsable": parsed.unparsable}
        if diagnostics is not None:
            diagnostics.extend(diag)
        return out

    def _florence2_many(self, items, cleaned, vision_batch_size):
        proc = self.processor
        out: list[list[tuple[list[float] | None, float | None]]] = [[] for _ in items]
        todo = [i for i, (_, qs) in enumerate(items) if len(qs)]
        step = max(1, int(vision_batch_size))
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            prompts = [FLORENCE2_TASK + ". ".join(cleaned[i]) for i in chunk]
            enc = proc(text=prompts, images=[items[i][0] for i in chunk], return_tensors="pt", padding=True)
            n_max = max(len(cleaned[i]) for i in chunk)
            gen = self.model.generate(
                **self._inputs(enc), max_new_tokens=16 + 16 * n_max, do_sample=False, num_beams=1
            )
            texts = proc.batch_decode(gen, skip_special_tokens=False)
            for i, text in zip(chunk, texts):
                image = items[i][0]
                w, h = image.size
                parsed = proc.post_process_generation(text=text, task=FLORENCE2_TASK, image_size=(w, h))
                found = parsed.get(FLORENCE2_TASK) or {}
                pairs = list(zip(found.get("labels") or [], found.get("bboxes") or []))
                used: set[int] = set()
                row = []
                for q in cleaned[i]:
                    key = " ".join(q.split()).lower()
                    k = next(
                        (
                            k
                            for k, (lab, _) in enumerate(pairs)
                            if k not in used and " ".join(str(lab).split()).lower() == key
                        ),
                        None,
                    )
                    if k is None:
                        row.append((None, None))
                        continue
                    used.add(k)
                    x0, y0, x1, y1 = (float(v) for v in pairs[k][1])
                    box = [
                        min(max(x0, 0.0), w),
                        min(max(y0, 0.0), h),
                        min(max(x1, 0.0), w),
                        min(max(y1, 0.0), h),
                    ]
                    row.append((box, None) if box[2] > box[0] and box[3] > box[1] else (None, None))
                out[i] = row
        return out
