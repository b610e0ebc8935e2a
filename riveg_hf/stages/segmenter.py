"""Stage 5 -- segmentation: SAM 2 (``Sam2Model``), prompted with boxes, gives one mask per box.

All the boxes of an image go into **one** call, so the image is encoded once, and
:meth:`Segmenter.segment_many` puts several images (with their boxes) into one call. ``SamModel``
(SAM 1) and the other ``AutoModelForMaskGeneration`` models with the same box-prompt interface
are accepted too. SAM 2 comes through transformers rather than the PyPI package ``sam2``
(a third-party repackaging with a CUDA build), so it runs wherever transformers runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForMaskGeneration

from .base import Stage

__all__ = ["Segmenter"]


class Segmenter(Stage):
    """Image + xyxy boxes -> one boolean mask (original image size) per box."""

    name = "segmenter"
    auto_classes = (AutoModelForMaskGeneration,)

    def __init__(
        self,
        model,
        processor,
        *,
        mask_threshold: float = 0.0,
        multimask: bool = False,
        box_threshold: float = 0.3,
    ):
        super().__init__(model, processor)
        #: SAM 3 (``Sam3Model``) finds objects from a text prompt: it grounds *and* segments (see ground_many)
        self.text_prompted = model.config.model_type == "sam3"
        self.box_threshold = float(box_threshold)
        if self.text_prompted:
            self.mask_threshold = float(mask_threshold) if mask_threshold else 0.5
            self.multimask = False
            return
        if not hasattr(processor, "post_process_masks"):
            raise TypeError(
                f"segmenter: {type(processor).__name__} has no post_process_masks; use the model's own processor "
                "(Sam2Processor for Sam2Model, SamProcessor for SamModel)."
            )
        self.mask_threshold = float(mask_threshold)
        self.multimask = bool(multimask)
        target = getattr(processor, "image_processor", processor)  # the processor often just forwards *args
        target = target if hasattr(target, "post_process_masks") else processor
        self._post_params = set(inspect.signature(target.post_process_masks).parameters)

    def options(self) -> dict[str, Any]:
        opts = {"mask_threshold": self.mask_threshold, "multimask": self.multimask}
        if self.text_prompted:
            opts["box_threshold"] = self.box_threshold
        return opts

    @torch.no_grad()
    def ground_many(
        self,
        items: Sequence[tuple[Any, Sequence[str]]],
        *,
        vision_batch_size: int = 8,
        contexts: Any = None,
        diagnostics: list[dict[str, Any]] | None = None,
    ) -> list[list[tuple[list[float] | None, float | None, np.ndarray | None]]]:
        """SAM 3 only: ``[(image, text prompts)]`` -> per prompt ``(box, score, mask)`` of its best instance.

        The image is encoded once (``get_vision_features``) and reused for each of its prompts; the instance
        with the highest score is kept, its mask at ``mask_threshold`` and its box derived from the mask
        (pixel xyxy of the original image); no instance or an empty mask gives ``(None, 0.0, None)``.
        """
        if not self.text_prompted:
            raise TypeError(
                f"segmenter: {type(self.model).__name__} takes box prompts; only SAM 3 grounds from text."
            )
        from ..masks import mask_to_xyxy

        out: list[list] = [[] for _ in items]
        for i, (image, prompts) in enumerate(items):
            if not prompts:
                continue
            w, h = image.size
            pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
            vision = self.model.get_vision_features(pixel_values=self._floating(pixels))
            row = []
            for prompt in prompts:
                enc = self.processor(text=prompt, return_tensors="pt")
                res = self.model(
                    vision_embeds=vision,
                    input_ids=enc["input_ids"].to(self.device),
                    attention_mask=enc["attention_mask"].to(self.device),
                )
                found = self.processor.post_process_instance_segmentation(
                    res, threshold=0.0, mask_threshold=self.mask_threshold, target_sizes=[(h, w)]
                )[0]
                if len(found["scores"]) == 0:
                    row.append((None, 0.0, None))
                    continue
                k = int(found["scores"].argmax())
                mask = found["masks"][k].cpu().numpy().astype(bool)
                box = mask_to_xyxy(mask) if mask.any() else None
                row.append((box, float(found["scores"][k]), mask if box is not None else None))
            out[i] = row
        if diagnostics is not None:
            diagnostics.extend({"unparsable": []} for _ in items)
        return out

    @torch.no_grad()
    def segment(self, image, boxes: Sequence[Sequence[float]]) -> list[np.ndarray]:
        """One boolean ``(H, W)`` mask per box (pixel xyxy), from a single model call."""
        return self.segment_many([(image, boxes)])[0]

    @torch.no_grad()
    def segment_many(
        self, items: Sequence[tuple[Any, Sequence[Sequence[float]]]], *, vision_batch_size: int = 8
    ) -> list[list[np.ndarray]]:
        """``[(image, boxes)]`` -> per image, one boolean ``(H, W)`` mask per box.

        ``vision_batch_size`` images go into one model call: SAM and SAM 2 resize every image to the
        same input size, so the batch needs no image padding; the box lists are padded to the longest
        one by repeating a box (SAM decodes each box prompt independently) and the copies dropped.
        """
        out: list[list[np.ndarray]] = [[] for _ in items]
        todo = [i for i, (_, boxes) in enumerate(items) if len(boxes)]
        step = max(1, int(vision_batch_size))
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            for i, masks in zip(chunk, self._segment_batch([items[i] for i in chunk])):
                out[i] = masks
        return out

    def _segment_batch(
        self, items: Sequence[tuple[Any, Sequence[Sequence[float]]]]
    ) -> list[list[np.ndarray]]:
        n_max = max(len(boxes) for _, boxes in items)
        padded = [[list(map(float, b)) for b in boxes] for _, boxes in items]
        padded = [b + [b[-1]] * (n_max - len(b)) for b in padded]
        enc = self.processor(images=[img for img, _ in items], input_boxes=padded, return_tensors="pt")
        sizes = {k: enc.pop(k) for k in ("original_sizes", "reshaped_input_sizes") if k in enc}
        out = self.model(**self._inputs(enc), multimask_output=self.multimask)
        pred = out.pred_masks.float().cpu()  # (images, boxes, num_masks, h', w')
        kwargs: dict[str, Any] = {"binarize": False} if "binarize" in self._post_params else {}
        args = [pred, sizes["original_sizes"]]
        if "reshaped_input_sizes" in sizes:  # SAM 1 needs it, SAM 2's processor does not produce it
            args.append(sizes["reshaped_input_sizes"])
        per_image = self.processor.post_process_masks(*args, **kwargs)  # [(boxes, num_masks, H, W)]
        all_scores = out.iou_scores.float().cpu()  # (images, boxes, num_masks)
        results = []
        for k, (image, boxes) in enumerate(items):
            w, h = image.size
            logits = per_image[k]
            if logits.dtype == torch.bool:  # a processor that always binarises
                logits = logits.float() * 2 - 1
            scores = all_scores[k]
            best = scores.argmax(dim=-1) if logits.shape[1] > 1 else torch.zeros(n_max, dtype=torch.long)
            results.append(
                [
                    (logits[i, int(best[i])] > self.mask_threshold).numpy().astype(bool).reshape(h, w)
                    for i in range(len(boxes))
                ]
            )
        return results
