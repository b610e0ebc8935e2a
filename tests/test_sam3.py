"""SAM 3 as a stage: the tracker (box prompts, SAM 2 interface) as segmenter, through transformers' own classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from riveg_hf import RiVEGPipeline
from riveg_hf.stages import Segmenter
from riveg_hf.testing import every_word_recognizer, tiny_sam3_tracker

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
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer(),
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


def test_sam3_grounds_and_segments_from_the_descriptions(photo, tmp_path):
    """segmented-mner with grounder=None and segmenter=SAM 3: the description finds mask and box in one model."""
    from transformers import pipeline

    from riveg_hf.masks import decode_rle, mask_to_xyxy
    from riveg_hf.testing import tiny_sam3

    model, proc = tiny_sam3()
    seg = Segmenter(model, proc)
    assert seg.text_prompted
    img = photo.resize((96, 72))
    calls = []
    handle = model.vision_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        [(first, _second)] = seg.ground_many([(img, ["a woman in a space suit", "a flag"])])
    finally:
        handle.remove()
    assert calls == [1]  # the image is encoded once for both prompts
    with torch.no_grad():  # the model's own forward and post-processing for the first prompt
        enc = proc(images=img, text="a woman in a space suit", return_tensors="pt")
        res = proc.post_process_instance_segmentation(
            model(pixel_values=enc["pixel_values"], input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]),
            threshold=0.0, mask_threshold=0.5, target_sizes=[(72, 96)],
        )[0]  # fmt: skip
    k = int(res["scores"].argmax())
    box, score, mask = first
    assert score == pytest.approx(float(res["scores"][k]), abs=1e-5)
    if mask is not None:
        assert (mask == res["masks"][k].numpy().astype(bool)).all() and box == mask_to_xyxy(mask)
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer(), segmenter=(model, proc), box_threshold=0.0
    )
    assert pipe.task == "segmented-mner" and "grounder" not in pipe.stages
    out = pipe({"text": "Obama visits Paris", "image": photo})
    assert len(out) == 3
    for e in out:
        if e["box"] is not None:
            m = decode_rle(e["mask"])
            assert [e["box"][c] for c in ("xmin", "ymin", "xmax", "ymax")] == mask_to_xyxy(m)
    pipe.save_pretrained(tmp_path / "s3")
    again = pipeline("segmented-mner", model=str(tmp_path / "s3"))
    assert type(again.stages["segmenter"].model).__name__ == "Sam3Model"
    assert_outputs_close([again({"text": "Obama visits Paris", "image": photo})], [out])
