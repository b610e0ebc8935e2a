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


# ---------------------------------------------------------------------- tiny models (tests)
def tiny_sam(seed: int = 0):
    """A tiny random SAM (``sam``) and its processor, for tests."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    from ..tiny import seeded

    with seeded(seed):
        cfg = SamConfig(
            vision_config={
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 64,
                "patch_size": 16,
                "output_channels": 32,
                "window_size": 2,
                "global_attn_indexes": [0],
                "mlp_dim": 64,
                "num_pos_feats": 16,
            },
            prompt_encoder_config={
                "hidden_size": 32,
                "image_size": 64,
                "patch_size": 16,
                "mask_input_channels": 4,
            },
            mask_decoder_config={
                "hidden_size": 32,
                "mlp_dim": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "iou_head_hidden_dim": 32,
            },
        )
        model = SamModel(cfg).eval()
    ip = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    return model, SamProcessor(image_processor=ip)


def tiny_sam2(seed: int = 0):
    """A tiny random SAM 2 (``sam2``) and its processor, for tests."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    from ..tiny import seeded

    with seeded(seed):
        backbone = Sam2HieraDetConfig(
            hidden_size=12,
            image_size=128,
            patch_stride=4,
            patch_kernel_size=7,
            patch_padding=3,
            blocks_per_stage=[1, 1, 2, 1],
            embed_dim_per_stage=[12, 24, 48, 96],
            global_attention_blocks=[3],
        )
        vision = Sam2VisionConfig(
            backbone_config=backbone,
            backbone_channel_list=[96, 48, 24, 12],
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
            fpn_hidden_size=32,
        )
        cfg = Sam2Config(
            vision_config=vision,
            prompt_encoder_config=Sam2PromptEncoderConfig(
                hidden_size=32, image_size=128, patch_size=16, mask_input_channels=8
            ),
            mask_decoder_config=Sam2MaskDecoderConfig(
                hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
            ),
        )
        model = Sam2Model(cfg).eval()
    return model, Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": 128, "width": 128}))


def tiny_sam3_tracker(seed: int = 0):
    """A tiny random SAM 3 tracker (box/point prompts, SAM 2 interface) with its processor."""
    from transformers import (
        Sam2ImageProcessor,
        Sam3TrackerConfig,
        Sam3TrackerModel,
        Sam3TrackerProcessor,
    )
    from transformers.models.sam3_tracker.configuration_sam3_tracker import (
        Sam3TrackerMaskDecoderConfig,
        Sam3TrackerPromptEncoderConfig,
    )

    from ..tiny import seeded, tiny_sam3_vision

    with seeded(seed):
        cfg = Sam3TrackerConfig(
            vision_config=tiny_sam3_vision(),
            prompt_encoder_config=Sam3TrackerPromptEncoderConfig(
                hidden_size=32, image_size=112, patch_size=14, mask_input_channels=8
            ),
            mask_decoder_config=Sam3TrackerMaskDecoderConfig(
                hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
            ),
        )
        model = Sam3TrackerModel(cfg).eval()
    return model, Sam3TrackerProcessor(image_processor=Sam2ImageProcessor(size={"height": 112, "width": 112}))


@register
class SamSegmenter(Segmenter):
    family = "sam"
    model_types = ("sam", "sam2", "sam3_tracker")
    tiny_builders = {"sam": tiny_sam, "sam2": tiny_sam2, "sam3_tracker": tiny_sam3_tracker}

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        if not hasattr(processor, "post_process_masks"):
            raise TypeError(
                f"segmenter: {type(processor).__name__} has no post_process_masks; use the model's own processor "
                "(Sam2Processor for Sam2Model, SamProcessor for SamModel)."
            )
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
