"""SAM 3 as a stage: the tracker (box prompts, SAM 2 interface) as segmenter, through transformers' own classes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from riveg_hf import RiVEGPipeline
from riveg_hf.stages import Segmenter
from riveg_hf.testing import tiny_sam3_tracker

from .helpers import assert_outputs_close


def test_sam3_tracker_masks_equal_its_own_forward_and_post_processing(photo):
    model, proc = tiny_sam3_tracker()
    seg = Segmenter(model, proc)
    img = photo.resize((96, 72))
    boxes = [[4.0, 4.0, 50.0, 60.0], [30.0, 10.0, 90.0, 70.0]]
    masks = seg.segment(img, boxes)
    with torch.no_grad():
        enc = proc(images=img, input_boxes=[boxes], return_tensors="pt")
        sizes = enc.pop("original_sizes")
        out = model(**enc, multimask_output=False)
        logits = proc.post_process_masks(out.pred_masks, sizes, binarize=False)[0]
    expected = [(logits[i, 0] > 0).numpy() for i in range(2)]
    assert all(m.shape == (72, 96) and (m == e).all() for m, e in zip(masks, expected))
    # several images with different box counts in one call: the same masks
    other = Image.fromarray((np.random.default_rng(0).random((50, 80, 3)) * 255).astype(np.uint8))
    batched = seg.segment_many([(img, boxes), (other, [[0.0, 0.0, 40.0, 40.0]])])
    assert all((a == b).all() for a, b in zip(batched[0], masks))
    assert (batched[1][0] == seg.segment(other, [[0.0, 0.0, 40.0, 40.0]])[0]).all()


def test_sam3_tracker_in_the_pipeline_round_trip(dummy_dir, photo, tmp_path):
    from .test_batching import _every_word

    pipe = RiVEGPipeline.from_components(
        recognizer=_every_word(),
        grounder=dummy_dir["grounder"],
        segmenter=tiny_sam3_tracker(),
        box_threshold=0.0,
    )
    assert pipe.task == "segmented-mner"
    out = pipe({"text": "Obama visits Paris with NASA people", "image": photo})
    assert len(out) == 6 and all(e["box"] is not None and e["mask"] is not None for e in out)
    pipe.save_pretrained(tmp_path / "c")
    from transformers import pipeline

    again = pipeline("segmented-mner", model=str(tmp_path / "c"))
    assert type(again.stages["segmenter"].model).__name__ == "Sam3TrackerModel"
    assert_outputs_close([again({"text": "Obama visits Paris with NASA people", "image": photo})], [out])
