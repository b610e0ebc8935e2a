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
from ..registry import Option
from ..segmenter import Segmenter, register


# ---------------------------------------------------------------------- tiny model (tests)
def tiny_sam3(seed: int = 0):
    """A tiny random SAM 3 (text-prompted detection + segmentation) with its processor."""
    from transformers import (
        Sam3Config,
        Sam3ImageProcessor,
        Sam3Model,
        Sam3Processor,
    )

    from ..tiny import seeded, tiny_clip_tokenizer, tiny_sam3_vision

    tok = tiny_clip_tokenizer(max_length=32)
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    with seeded(seed):
        cfg = Sam3Config(
            vision_config=tiny_sam3_vision(),
            text_config={
                "vocab_size": len(tok),
                "hidden_size": 32,
                "intermediate_size": 64,
                "projection_dim": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 32,
                "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            geometry_encoder_config={"num_layers": 1, **small},
            detr_encoder_config={"num_layers": 1, **small},
            detr_decoder_config={"num_layers": 1, "num_queries": 10, **small},
            mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2, "num_upsampling_stages": 3},
        )
        model = Sam3Model(cfg).eval()
    proc = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": 112, "width": 112}), tokenizer=tok
    )
    return model, proc


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
    locates = True
    tiny_builders = {"sam3": tiny_sam3}
    family_options = (
        Option("mask_threshold", 0.5, "unit", "the mask probability above which a pixel is in the mask",
               why="SAM 3's mask is a probability"),
        Option("multimask", False, "choice", "SAM 3 keeps its best instance: one mask per prompt",
               choices=(False,)),
        Option("box_threshold", 0.3, "unit", "SAM 3's score below which a found object is dropped",
               why="SAM 3's score is a probability"),
    )  # fmt: skip

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
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
