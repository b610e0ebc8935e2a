"""SAM, SAM 2 and the SAM 3 tracker (and any box-prompted ``AutoModelForMaskGeneration`` model).

All the boxes of an image go into **one** call, so the image is encoded once, and several images (with their
boxes) go into one call: SAM and SAM 2 resize every image to the same input size, so the batch needs no image
padding; the box lists are padded to the longest one by repeating a box (SAM decodes each box prompt
independently) and the copies dropped.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..segmenter import Segmenter, register


@register
class SamSegmenter(Segmenter):
    family = "sam"
    model_types = ("sam", "sam2", "sam3_tracker", "sam_hq", "edgetam")

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        if not hasattr(processor, "post_process_masks"):
            raise TypeError(
                f"segmenter: {type(processor).__name__} has no post_process_masks; use the model's own processor "
                "(Sam2Processor for Sam2Model, SamProcessor for SamModel)."
            )
        self.mask_threshold = float(self.mask_threshold)
        self.multimask = bool(self.multimask)
        target = getattr(processor, "image_processor", processor)  # the processor often just forwards *args
        target = target if hasattr(target, "post_process_masks") else processor
        self._post_params = set(inspect.signature(target.post_process_masks).parameters)

    @torch.no_grad()
    def segment_many(
        self, items: Sequence[tuple[Any, Sequence[Sequence[float]]]], *, vision_batch_size: int = 8
    ) -> list[list[np.ndarray]]:
        """``[(image, boxes)]`` -> per image, one boolean ``(H, W)`` mask per box (see the module doc)."""
        out: list[list[np.ndarray]] = [[] for _ in items]
        todo = [i for i, (_, boxes) in enumerate(items) if len(boxes)]
        step = max(1, int(vision_batch_size))
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            for i, masks in zip(chunk, self._batch([items[i] for i in chunk])):
                out[i] = masks
        return out

    def _batch(self, items: Sequence[tuple[Any, Sequence[Sequence[float]]]]) -> list[list[np.ndarray]]:
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
                [(logits[i, int(best[i])] > self.mask_threshold).numpy().astype(bool).reshape(h, w)
                 for i in range(len(boxes))]
            )  # fmt: skip
        return results
