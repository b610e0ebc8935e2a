"""Stage 5 -- segmentation: SAM 2 (``Sam2Model``), prompted with boxes, gives one mask per box.

All the boxes of an image go into **one** call, so the image is encoded once. ``SamModel``
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

    def __init__(self, model, processor, *, mask_threshold: float = 0.0, multimask: bool = False):
        super().__init__(model, processor)
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
        return {"mask_threshold": self.mask_threshold, "multimask": self.multimask}

    @torch.no_grad()
    def segment(self, image, boxes: Sequence[Sequence[float]]) -> list[np.ndarray]:
        """One boolean ``(H, W)`` mask per box (pixel xyxy), from a single model call."""
        if not boxes:
            return []
        w, h = image.size
        enc = self.processor(
            images=image, input_boxes=[[list(map(float, b)) for b in boxes]], return_tensors="pt"
        )
        sizes = {k: enc.pop(k) for k in ("original_sizes", "reshaped_input_sizes") if k in enc}
        out = self.model(**self._inputs(enc), multimask_output=self.multimask)
        pred = out.pred_masks.float().cpu()  # (1, num_boxes, num_masks, h', w')
        kwargs: dict[str, Any] = {"binarize": False} if "binarize" in self._post_params else {}
        args = [pred, sizes["original_sizes"]]
        if "reshaped_input_sizes" in sizes:  # SAM 1 needs it, SAM 2's processor does not produce it
            args.append(sizes["reshaped_input_sizes"])
        logits = self.processor.post_process_masks(*args, **kwargs)[0]  # (num_boxes, num_masks, H, W)
        if logits.dtype == torch.bool:  # a processor that always binarises
            logits = logits.float() * 2 - 1
        scores = out.iou_scores[0].float().cpu()  # (num_boxes, num_masks)
        best = scores.argmax(dim=-1) if logits.shape[1] > 1 else torch.zeros(len(boxes), dtype=torch.long)
        masks = []
        for i in range(len(boxes)):
            m = logits[i, int(best[i])] > self.mask_threshold
            masks.append(m.numpy().astype(bool).reshape(h, w))
        return masks
