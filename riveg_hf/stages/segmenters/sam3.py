"""SAM 3 (``Sam3Model``) from text: it finds each description's object -- box *and* mask -- so with no
grounder it is the pipeline's grounder too (:meth:`Sam3Segmenter.locator`).

The image is encoded once (``get_vision_features``) and reused for each of its prompts; the instance with
the highest score is kept, its mask at ``mask_threshold`` and its box derived from the mask (pixel xyxy of the
original image); no instance or an empty mask gives no box (score 0.0). ``box_threshold`` (SAM 3's score)
decides visibility when there is no entailment stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..grounder import Grounder, Localization, LocateRequest
from ..segmenter import Segmenter, register


class Sam3Locator(Grounder):
    """SAM 3 as a grounder: shares the segmenter's model; returns boxes, scores and masks."""

    family = "sam3"
    model_types = ()  # not loaded on its own: reached through the SAM 3 segmenter
    returns_masks = True

    def __init__(self, segmenter: Sam3Segmenter):
        super().__init__(segmenter.model, segmenter.processor, box_threshold=segmenter.box_threshold)
        self.segmenter = segmenter

    @property
    def box_threshold(self) -> float:  # one source: the segmenter's option
        return self.segmenter.box_threshold

    @box_threshold.setter
    def box_threshold(self, value: float) -> None:
        if hasattr(self, "segmenter"):
            self.segmenter.box_threshold = float(value)

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        from ...masks import mask_to_xyxy

        seg, out = self.segmenter, []
        for r in requests:
            w, h = r.image.size
            pixels = seg.processor(images=r.image, return_tensors="pt")["pixel_values"]
            vision = seg.model.get_vision_features(pixel_values=seg._floating(pixels))
            boxes, scores, masks = [], [], []
            for prompt in r.queries:
                enc = seg.processor(text=prompt, return_tensors="pt")
                res = seg.model(vision_embeds=vision, input_ids=enc["input_ids"].to(seg.device),
                                attention_mask=enc["attention_mask"].to(seg.device))  # fmt: skip
                found = seg.processor.post_process_instance_segmentation(
                    res, threshold=0.0, mask_threshold=seg.mask_threshold, target_sizes=[(h, w)]
                )[0]
                if len(found["scores"]) == 0:
                    boxes.append(None), scores.append(0.0), masks.append(None)
                    continue
                k = int(found["scores"].argmax())
                mask = found["masks"][k].cpu().numpy().astype(bool)
                box = mask_to_xyxy(mask) if mask.any() else None
                boxes.append([float(v) for v in box] if box is not None else None)
                scores.append(float(found["scores"][k]))
                masks.append(mask if box is not None else None)
            out.append(Localization(boxes, scores, masks))
        return out


@register
class Sam3Segmenter(Segmenter):
    family = "sam3"
    model_types = ("sam3",)
    family_options = {"mask_threshold": 0.5, "multimask": False, "box_threshold": 0.3}

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        self.mask_threshold = float(self.mask_threshold) if self.mask_threshold else 0.5
        self.multimask = False
        self.box_threshold = float(self.box_threshold)
        self._locator = Sam3Locator(self)

    def locator(self) -> Sam3Locator:
        return self._locator

    def segment_many(self, items, *, vision_batch_size: int = 8) -> list[list[np.ndarray]]:
        if any(len(boxes) for _, boxes in items):
            raise TypeError(
                "segmenter: Sam3Model finds objects from text (it is the grounder here); for box prompts use "
                "Sam3TrackerModel (e.g. facebook/sam3 loaded as Sam3TrackerModel), SAM 2 or SAM."
            )
        return [[] for _ in items]

    @torch.no_grad()
    def ground_many(self, items: Sequence[tuple[Any, Sequence[str]]], *, vision_batch_size: int = 8,
                    contexts: Any = None, diagnostics: list | None = None):  # fmt: skip
        """``[(image, text prompts)]`` -> per prompt ``(box, score, mask)`` (the earlier interface)."""
        locs = self._locator.locate_many([LocateRequest(img, list(qs)) for img, qs in items],
                                         vision_batch_size=vision_batch_size)  # fmt: skip
        if diagnostics is not None:
            diagnostics.extend({"unparsable": []} for _ in items)
        return [[(loc.boxes[k], loc.score(k), loc.mask(k)) for k in range(len(loc.boxes))] for loc in locs]
