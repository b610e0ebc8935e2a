"""Vision stages batched across images give the results of one image at a time (every family)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from riveg_hf import RiVEGPipeline
from riveg_hf.testing import every_word_recognizer, tiny_siglip

from .helpers import assert_outputs_close


def _inputs(photo):
    rng = np.random.default_rng(0)
    noise = lambda w, h: Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))  # noqa: E731
    return [
        {"text": "Paris", "image": photo},
        {"text": "Rome Oslo Lima", "image": noise(96, 64)},
        {"text": "a b c d e", "image": noise(64, 96)},
        {"text": "Nile Alps", "image": photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)},  # same size as 1st
        {"text": "no image here", "image": None},
    ]


@pytest.mark.parametrize("family", ["gdino-blip-sam2", "owlv2-clip-sam", "gdino-siglip"])
def test_batched_vision_stages_equal_one_image_at_a_time(dummy_dir, photo, family, tmp_path):
    if family == "gdino-blip-sam2":
        parts = {k: dummy_dir[k] for k in ("grounder", "entailment", "segmenter")}
    elif family == "owlv2-clip-sam":
        parts = {k: dummy_dir[f"{k}_alt"] for k in ("grounder", "entailment", "segmenter")}
    else:
        parts = {"grounder": dummy_dir["grounder"], "entailment": tiny_siglip()}
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer("B-LOC"), **parts, entailment_threshold=0.0, box_threshold=0.0
    )
    inputs = _inputs(photo)
    calls = {"n": 0}
    enc = pipe.stages["entailment"].model
    vision = getattr(enc, "vision_model", None) or enc
    handle = vision.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    try:
        one = pipe(inputs, batch_size=5, vision_batch_size=1)
        n_one = calls["n"]
        calls["n"] = 0
        batched = pipe(inputs, batch_size=5, vision_batch_size=8)
        n_batched = calls["n"]
    finally:
        handle.remove()
    assert [len(o) for o in batched] == [1, 3, 5, 2, 3]
    assert sum(e["box"] is not None for o in batched[:4] for e in o) == 11
    assert_outputs_close(batched, one)
    if "siglip" not in family:  # SigLIP's get_image_features has no separate vision_model to count
        assert n_one == 4 and n_batched == 1  # four images: four entailment vision forwards, then one
    if "sam" in family:
        assert all(e["mask"] is not None for o in batched[:4] for e in o)


def test_grounding_dino_batches_only_images_of_one_processed_size(dummy_dir, photo):
    """Padding an image changes Grounding DINO's features (Swin sees the padding), so differently sized
    images get their own call; same-size images share one, with scores within 1e-4 of one-by-one."""
    from riveg_hf.stages import Grounder

    g = Grounder.from_pretrained(dummy_dir["grounder"])
    calls = []
    handle = g.model.model.backbone.register_forward_hook(lambda *a: calls.append(1))
    rng = np.random.default_rng(1)
    other = Image.fromarray((rng.random((40, 90, 3)) * 255).astype(np.uint8))
    items = [
        (photo, ["a woman", "a flag"]),
        (photo.rotate(90), ["the big red thing over the water"]),
        (other, ["a dog"]),
    ]
    try:
        batched = g.ground_many(items, vision_batch_size=8)
        assert len(calls) == 2  # the two 128x128 photos together, the 90x40 image alone
        single = [g.ground(img, qs) for img, qs in items]
    finally:
        handle.remove()
    for b, s in zip(batched, single):
        for (bb, bs), (sb, ss) in zip(b, s):
            assert abs(bs - ss) <= 1e-4 and max(abs(x - y) for x, y in zip(bb, sb)) <= 1e-3


def test_one_bad_image_in_a_batch_does_not_lose_the_others(dummy_dir, photo, monkeypatch):
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer("B-LOC"), grounder=dummy_dir["grounder"], box_threshold=0.0
    )
    g = pipe.stages["grounder"]
    real = g.locate_many

    def flaky(requests, **kw):
        if any(r.image.size == (90, 40) for r in requests):
            raise RuntimeError("the detector failed on this image")
        return real(requests, **kw)

    monkeypatch.setattr(g, "locate_many", flaky)
    bad = Image.new("RGB", (90, 40))
    out = pipe(
        [{"text": "Paris", "image": photo}, {"text": "Rome", "image": bad}, {"text": "Oslo", "image": photo}]
    )
    assert "the detector failed" in out[1]["error"]
    assert out[0][0]["box"] is not None and out[2][0]["box"] is not None


def test_compiled_vision_encoders_give_the_same_results(dummy_dir, photo):
    """Opt-in torch.compile of the vision encoders (the eager backend here, to keep the test fast)."""
    parts = {k: dummy_dir[k] for k in ("grounder", "entailment", "segmenter")}
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer("B-LOC"), **parts, entailment_threshold=0.0, box_threshold=0.0
    )
    inputs = _inputs(photo)[:2]
    ref = pipe(inputs, batch_size=2)
    names = pipe.compile_vision_encoders(("entailment", "segmenter"), backend="eager")
    assert names == ["entailment.vision_model", "segmenter.vision_encoder"]
    assert pipe.compile_vision_encoders(("entailment",), backend="eager") == []  # never wrapped twice
    assert_outputs_close(pipe(inputs, batch_size=2), ref)
    assert torch.get_default_dtype() == torch.float32


def test_default_vision_batch_is_one_image_on_cpu_and_eight_on_accelerators(dummy_dir, photo, monkeypatch):
    from riveg_hf.pipeline import DEFAULT_VISION_BATCH_SIZE

    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer("B-LOC"), entailment=dummy_dir["entailment"], box_threshold=0.0,
        grounder=dummy_dir["grounder"], entailment_threshold=0.0,
    )  # fmt: skip
    seen = []
    real = type(pipe.stages["entailment"]).score_many

    def spy(self, items, **kw):
        seen.append(kw.get("vision_batch_size"))
        return real(self, items, **kw)

    monkeypatch.setattr(type(pipe.stages["entailment"]), "score_many", spy)
    same_size = [{"text": "Paris Rome", "image": photo}] * 3
    default = pipe(same_size, batch_size=3)
    explicit = pipe(same_size, batch_size=3, vision_batch_size=8)
    assert seen == [1, 8]  # CPU: one image per vision forward unless asked (measured faster on CPU)
    assert_outputs_close(default, explicit)
    assert pipe.default_vision_batch_size() == 1  # every model on the CPU here
    monkeypatch.setattr(
        type(pipe), "default_vision_batch_size", lambda self, stage=None: DEFAULT_VISION_BATCH_SIZE
    )
    pipe(same_size, batch_size=3)  # as on an accelerator
    assert seen[-1] == DEFAULT_VISION_BATCH_SIZE == 8


def test_a_vlm_grounder_batches_images_on_cpu_by_default(dummy_dir, photo, monkeypatch):
    """Decoding reads every weight once per token whatever the batch, so on CPU a VLM grounder keeps the
    accelerator default (8 images per generation) while the encoder stages run one image per forward."""
    from riveg_hf.pipeline import CPU_VISION_BATCH_SIZE, DEFAULT_VISION_BATCH_SIZE
    from riveg_hf.testing import tiny_qwen2_5_vl

    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer("B-LOC"), entailment=dummy_dir["entailment"],
        grounder=tiny_qwen2_5_vl(), entailment_threshold=0.0,
    )  # fmt: skip
    seen: dict[str, list] = {"entailment": [], "grounder": []}
    for name in seen:
        cls = type(pipe.stages[name])
        method = "score_many" if name == "entailment" else "locate_many"
        real = getattr(cls, method)

        def spy(self, items, _real=real, _name=name, **kw):
            seen[_name].append(kw.get("vision_batch_size"))
            return _real(self, items, **kw)

        monkeypatch.setattr(cls, method, spy)
    inputs = [{"text": "Paris Rome", "image": photo}, {"text": "Oslo", "image": photo}]
    default = pipe(inputs, batch_size=2)
    one_by_one = pipe(inputs, batch_size=2, vision_batch_size=1)
    assert seen == {"entailment": [CPU_VISION_BATCH_SIZE, 1], "grounder": [DEFAULT_VISION_BATCH_SIZE, 1]}
    assert pipe.default_vision_batch_size(pipe.stages["grounder"]) == 8
    assert pipe.default_vision_batch_size(pipe.stages["entailment"]) == 1
    assert_outputs_close(default, one_by_one)  # batched (left-padded) generation: the same answers


def _family(name: str):
    from riveg_hf.testing import (
        tiny_clip,
        tiny_florence2,
        tiny_mm_grounding_dino,
        tiny_owlv2,
        tiny_preset,
        tiny_qwen3_vl,
        tiny_sam,
        tiny_sam3_tracker,
    )

    if name in ("riveg-2024", "vlm", "sam3"):
        return tiny_preset(
            name, box_threshold=0.0, **({"entailment_threshold": 0.0} if name == "riveg-2024" else {})
        )
    parts = {
        "owlv2-clip-sam": lambda: {
            "grounder": tiny_owlv2(),
            "entailment": tiny_clip(),
            "segmenter": tiny_sam(),
        },
        "mmgdino-siglip-sam3tracker": lambda: {
            "grounder": tiny_mm_grounding_dino(),
            "entailment": tiny_siglip(),
            "segmenter": tiny_sam3_tracker(),
        },
        "florence2": lambda: {"grounder": tiny_florence2()},
        "qwen3vl": lambda: {"grounder": tiny_qwen3_vl(), "visibility": "grounder"},
    }[name]()
    gate = (
        {"entailment_threshold": 0.0} if "entailment" in parts else {}
    )  # an option of a stage that is there
    return RiVEGPipeline.from_components(
        recognizer=every_word_recognizer("B-LOC"), **parts, box_threshold=0.0, **gate
    )


@pytest.mark.parametrize(
    "family",
    ["riveg-2024", "vlm", "sam3", "owlv2-clip-sam", "mmgdino-siglip-sam3tracker", "florence2", "qwen3vl"],
)
def test_every_family_runs_in_reduced_precision(family, photo):
    """``dtype=bfloat16 / float16`` (what a GPU run uses): every stage of every family runs in it end to end
    (inputs follow the model's dtype, no bf16 tensor reaches numpy), the output is JSON-safe with finite scores,
    the same entities as fp32, boxes inside the image and masks of the image's size; global torch state kept."""
    import json

    import numpy as np

    inputs = [{"text": "Paris Rome Oslo", "image": photo}, {"text": "Nile", "image": photo.resize((96, 64))}]
    pipe = _family(family)
    reference = pipe(inputs, batch_size=2, errors="raise")
    for dtype in (torch.bfloat16, torch.float16):
        pipe.model.to(dtype)
        assert {st.model.dtype for st in pipe.stages.values() if st.model is not None} == {dtype}
        out = pipe(inputs, batch_size=2, errors="raise", mask_format="array")
        assert [[(e["entity"], e["type"]) for e in o] for o in out] == [
            [(e["entity"], e["type"]) for e in o] for o in reference
        ]
        for o, item in zip(out, inputs):
            w, h = item["image"].size
            for e in o:
                for k in ("score", "groundable_score", "box_score"):
                    assert e[k] is None or np.isfinite(e[k]), (dtype, k, e[k])
                if e["box"] is not None:
                    b = e["box"]
                    assert 0 <= b["xmin"] <= b["xmax"] <= w and 0 <= b["ymin"] <= b["ymax"] <= h, b
                if e.get("mask") is not None:
                    assert np.asarray(e["mask"]).shape == (h, w)
        json.dumps(pipe(inputs, batch_size=2, errors="raise"), allow_nan=False)
        assert torch.get_default_dtype() == torch.float32
    if family in (
        "riveg-2024",
        "owlv2-clip-sam",
        "mmgdino-siglip-sam3tracker",
    ):  # boxes found with threshold 0
        assert all(e["box"] is not None for o in out for e in o)
        if pipe.task == "segmented-mner" or "segmenter" in pipe.stages:
            assert all(e.get("mask") is not None for o in out for e in o)
