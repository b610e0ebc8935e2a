"""The grounded-mner / segmented-mner pipeline on tiny random components (offline, fast)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import riveg_hf
from riveg_hf import RiVEGConfig, RiVEGInputError, RiVEGModel, RiVEGPipeline, add_masks
from riveg_hf.masks import decode_rle
from riveg_hf.stages import Recognizer, Segmenter
from riveg_hf.testing import NER_LABELS, tiny_recognizer
from riveg_hf.types import OUTPUT_KEYS

TEXT = "Obama visits Paris with NASA people"


def biased(model, label="B-PER"):
    """Make a random recognizer tag every word ``label`` (so every word is an entity)."""
    with torch.no_grad():
        model.classifier.bias.fill_(-20.0)
        model.classifier.bias[NER_LABELS.index(label)] = 20.0
    return model


@pytest.fixture
def pipe(dummy_dir):
    return RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"],
        grounder=dummy_dir["grounder"],
        entailment=dummy_dir["entailment"],
        segmenter=dummy_dir["segmenter"],
        entailment_threshold=0.0,
        box_threshold=0.0,
    )


@pytest.fixture
def every_word_pipe(dummy_dir):
    model, tok = tiny_recognizer()
    return RiVEGPipeline.from_components(
        recognizer=(biased(model), tok),
        grounder=dummy_dir["grounder"],
        entailment=dummy_dir["entailment"],
        segmenter=dummy_dir["segmenter"],
        entailment_threshold=0.0,
        box_threshold=0.0,
    )


def test_tasks_and_auto_classes_are_registered():
    tasks = PIPELINE_REGISTRY.get_supported_tasks()
    assert "grounded-mner" in tasks and "segmented-mner" in tasks
    assert AutoConfig.for_model("riveg").__class__ is RiVEGConfig
    assert riveg_hf.RiVEGPipeline is RiVEGPipeline


def test_output_schema_exactly(every_word_pipe, photo):
    out = every_word_pipe({"text": TEXT, "image": photo})
    assert len(out) == 6
    for e in out:
        assert list(e) == list(OUTPUT_KEYS)
        assert TEXT[e["start"] : e["end"]] == e["entity"]
        assert e["type"] in riveg_hf.ENTITY_TYPES and 0.0 <= e["score"] <= 1.0
        assert isinstance(e["description"], str) and e["description"]
        assert e["groundable"] is True and set(e["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert (
            0 <= e["box"]["xmin"] <= e["box"]["xmax"] <= 128
            and 0 <= e["box"]["ymin"] <= e["box"]["ymax"] <= 128
        )
        assert 0.0 <= e["groundable_score"] <= 1.0 and 0.0 <= e["box_score"] <= 1.0
        m = decode_rle(e["mask"])  # segmented-mner: masks decode to the image size
        assert m.shape == (128, 128)
    json.dumps(out)  # JSON-safe
    toks = every_word_pipe({"tokens": TEXT.split(), "image": photo})
    assert [list(e) for e in toks] == [[*OUTPUT_KEYS, "token_start", "token_end"]] * 6
    assert [(e["token_start"], e["token_end"]) for e in toks] == [(i, i + 1) for i in range(6)]


def test_grounded_mner_task_has_no_masks(dummy_dir, photo):
    model, tok = tiny_recognizer()
    pipe = RiVEGPipeline.from_components(
        recognizer=(biased(model), tok),
        grounder=dummy_dir["grounder"],
        segmenter=dummy_dir["segmenter"],
        task="grounded-mner",
        box_threshold=0.0,
    )
    out = pipe(text=TEXT, image=photo)
    assert all(e["mask"] is None and e["box"] is not None for e in out)
    arr = pipe(text=TEXT, image=photo, return_masks=True, mask_format="array")
    assert all(isinstance(e["mask"], np.ndarray) and e["mask"].shape == (128, 128) for e in arr)


def test_save_and_reload_through_pipeline_gives_identical_outputs(dummy_dir, photo, tmp_path):
    pipe = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"],
        grounder=dummy_dir["grounder"],
        entailment=dummy_dir["entailment"],
        segmenter=dummy_dir["segmenter"],
        expander=dummy_dir["expander"],
        captioner=dummy_dir["captioner"],
        entailment_threshold=0.0,
        box_threshold=0.0,
        label_map={"OTHER": "ORG"},
    )
    inputs = [{"text": TEXT, "image": photo}, {"tokens": ["NASA", "rocket"], "image": None}]
    before = pipe(inputs)
    pipe.save_pretrained(tmp_path / "riveg")
    cfg = json.loads((tmp_path / "riveg" / "config.json").read_text())
    assert cfg["model_type"] == "riveg" and cfg["task"] == "segmented-mner"
    assert {k: v["model_class"] for k, v in cfg["components"].items()} == {
        "recognizer": "BertForTokenClassification",
        "captioner": "BlipForConditionalGeneration",
        "expander": "LlamaForCausalLM",
        "entailment": "BlipForImageTextRetrieval",
        "grounder": "GroundingDinoForObjectDetection",
        "segmenter": "Sam2Model",
    }
    assert all(v["path"] == k for k, v in cfg["components"].items())
    assert cfg["components"]["recognizer"]["options"]["label_map"] == {"OTHER": "ORG"}
    assert list((tmp_path / "riveg" / "recognizer").glob("*.safetensors"))
    reloaded = pipeline("segmented-mner", model=str(tmp_path / "riveg"))  # no trust_remote_code
    assert isinstance(reloaded, RiVEGPipeline)
    assert reloaded(inputs) == before
    auto = AutoModel.from_pretrained(str(tmp_path / "riveg"))
    assert isinstance(auto, RiVEGModel) and set(auto.stages) == set(cfg["components"])


def test_hub_components_recorded_as_pinned_references(dummy_dir, tmp_path):
    pipe = RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"], grounder=dummy_dir["grounder"])
    # pretend the grounder came from the Hub at a given commit
    pipe.stages["grounder"].source = {"location": "IDEA-Research/grounding-dino-tiny", "revision": "a" * 40}
    pipe.save_pretrained(tmp_path / "ref", reference_hub_components=True)
    cfg = json.loads((tmp_path / "ref" / "config.json").read_text())
    assert cfg["components"]["grounder"]["repo_id"] == "IDEA-Research/grounding-dino-tiny"
    assert cfg["components"]["grounder"]["revision"] == "a" * 40
    assert not (tmp_path / "ref" / "grounder").exists() and (tmp_path / "ref" / "recognizer").is_dir()


def test_batch_of_8_equals_8_single_calls(pipe, photo):
    small = photo.resize((96, 64))
    inputs = [{"text": f"{TEXT} number {i}", "image": photo if i % 2 else small} for i in range(7)]
    inputs.append({"text": "nobody here", "image": None})
    batched = pipe(inputs, batch_size=8)
    assert batched == [pipe(x) for x in inputs]
    assert pipe((x for x in inputs), batch_size=3) is not None
    assert list(pipe((x for x in inputs), batch_size=3)) == batched  # generators stream lazily


def test_datasets_input(pipe, photo):
    from datasets import Dataset, Features, List, Value
    from datasets import Image as HFImage

    ds = Dataset.from_dict(
        {"id": ["a", "b"], "tokens": [["Obama", "in", "Paris"], ["NASA"]], "image": [photo, None]},
        features=Features({"id": Value("string"), "tokens": List(Value("string")), "image": HFImage()}),
    )
    out = list(pipe(ds, batch_size=2))
    assert out == [pipe({"tokens": ["Obama", "in", "Paris"], "image": photo}), pipe({"tokens": ["NASA"]})]


def _count_calls(module):
    calls = {"n": 0}
    module.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    return calls


def test_each_vision_encoder_runs_once_per_image(every_word_pipe, photo):
    st = every_word_pipe.stages
    counts = {
        "entailment": _count_calls(st["entailment"].model.vision_model),
        "grounder": _count_calls(st["grounder"].model.model.backbone),
        "segmenter": _count_calls(st["segmenter"].model.vision_encoder),
    }
    text = "one two three four five six seven eight"
    inputs = [{"text": text, "image": photo}, {"text": "a b", "image": photo}]
    out = every_word_pipe(inputs, batch_size=2, vision_batch_size=8)  # (the default on accelerators)
    assert [len(o) for o in out] == [8, 2]
    # both images in one forward of each vision model (same-size photos: Grounding DINO batches them too)
    assert {k: c["n"] for k, c in counts.items()} == {"entailment": 1, "grounder": 1, "segmenter": 1}
    for c in counts.values():
        c["n"] = 0
    assert every_word_pipe(inputs, batch_size=2) == out  # CPU default: one image per vision forward
    assert {k: c["n"] for k, c in counts.items()} == {"entailment": 2, "grounder": 2, "segmenter": 2}


def test_owlv2_clip_and_sam1_components(dummy_dir, photo):
    model, tok = tiny_recognizer()
    pipe = RiVEGPipeline.from_components(
        recognizer=(biased(model, "B-LOC"), tok),
        grounder=dummy_dir["grounder_alt"],
        entailment=dummy_dir["entailment_alt"],
        segmenter=dummy_dir["segmenter_alt"],
        entailment_threshold=0.0,
    )
    counts = {
        "entailment": _count_calls(pipe.stages["entailment"].model.vision_model),
        "grounder": _count_calls(pipe.stages["grounder"].model.owlv2.vision_model),
    }
    out = pipe(text="Paris Rome Oslo", image=photo)
    assert [e["type"] for e in out] == ["LOC"] * 3 and all(e["mask"] is not None for e in out)
    assert counts["entailment"]["n"] == 1 and counts["grounder"]["n"] == 1
    assert type(pipe.stages["segmenter"].model).__name__ == "SamModel"


def test_label_map(dummy_dir):
    labels = ["O", "B-MISC", "I-MISC", "B-PERSON", "I-PERSON", "B-GPE", "I-GPE", "B-FOOD", "I-FOOD"]
    model, tok = tiny_recognizer(labels)
    with pytest.raises(ValueError, match=r"types \['FOOD'\] .*label_map=\{'FOOD': 'OTHER'\}"):
        Recognizer(model, tok)
    rec = Recognizer(model, tok, label_map={"FOOD": None})
    assert {t for _, t in rec._labels} == {None, "OTHER", "PER", "LOC"}  # MISC->OTHER, PERSON->PER, GPE->LOC
    biased_model = model
    with torch.no_grad():
        biased_model.classifier.bias.fill_(-20.0)
        biased_model.classifier.bias[labels.index("B-MISC")] = 20.0
    rec = Recognizer(biased_model, tok, label_map={"FOOD": "ORG", "MISC": "ORG"})
    assert [s.type for s in rec([["Nike", "shoes"]])[0]] == ["ORG", "ORG"]


def test_long_text_is_windowed_not_truncated(every_word_pipe):
    rec = every_word_pipe.stages["recognizer"]
    assert rec.max_length == 128
    words = [f"w{i}" for i in range(400)]  # ~ 800 sub-tokens: several windows
    spans = rec([words])[0]
    assert [(s.start, s.end) for s in spans] == [(i, i + 1) for i in range(400)]
    out = every_word_pipe({"text": " ".join(words), "image": None})
    assert len(out) == 400 and out[-1]["entity"] == "w399"


def test_empty_text_calls_no_model(every_word_pipe, photo, monkeypatch):
    calls = []
    monkeypatch.setattr(Recognizer, "__call__", lambda self, *a, **k: calls.append(1) or [])
    assert every_word_pipe({"text": "   \n\t", "image": photo}) == []
    assert every_word_pipe({"tokens": [], "image": photo}) == []
    assert every_word_pipe([]) == [] and list(every_word_pipe(x for x in [])) == []
    assert calls == []


def test_tokens_without_subwords_are_outside_entities(every_word_pipe):
    out = every_word_pipe({"tokens": ["", "\xa0", "Obama", "  "]})
    assert [(e["entity"], e["token_start"]) for e in out] == [("Obama", 2)]


def test_emoji_urls_handles(every_word_pipe):
    text = "@NASA 🚀 launch https://t.co/abc #Artemis ❤️"
    out = every_word_pipe(text)
    assert [e["entity"] for e in out] == [
        "@",
        "NASA",
        "🚀",
        "launch",
        "https://t.co/abc",
        "#",
        "Artemis",
        "❤️",
    ]
    assert all(text[e["start"] : e["end"]] == e["entity"] for e in out)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "1"])
def test_image_modes_are_converted(pipe, photo, mode):
    img = (
        photo.convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    )
    out = pipe({"text": TEXT, "image": img})
    assert isinstance(out, list)


def test_tiny_and_huge_images(pipe, tmp_path):
    out = pipe({"text": TEXT, "image": Image.new("RGB", (4, 4), (9, 9, 9))})  # the smallest accepted
    assert isinstance(out, list)
    with pytest.raises(RiVEGInputError, match="short side must be at least 4"):
        pipe({"text": TEXT, "image": Image.new("RGB", (1, 1), (9, 9, 9))})
    from .test_utils import _huge_png_bytes

    huge = tmp_path / "huge.png"
    huge.write_bytes(_huge_png_bytes(20000, 20000))
    with pytest.raises(RiVEGInputError, match="above the limit"):
        pipe({"text": TEXT, "image": str(huge)})
    with pytest.raises(RiVEGInputError, match="above the limit of 100 pixels"):
        pipe({"text": TEXT, "image": Image.new("RGB", (20, 20))}, max_image_pixels=100)


def test_bad_items_in_a_batch_do_not_lose_the_others(pipe, photo, tmp_path):
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    inputs = [
        {"text": TEXT, "image": photo},
        {"text": TEXT, "image": str(tmp_path / "missing.jpg")},
        {"text": TEXT, "image": str(corrupt)},
        {"texte": "typo"},
        {"text": "NASA", "image": photo},
    ]
    out = pipe(inputs, batch_size=2)
    assert out[0] == pipe(inputs[0]) and out[4] == pipe(inputs[4])
    assert out[1]["index"] == 1 and "image file not found" in out[1]["error"]
    assert out[2]["index"] == 2 and "not an image file" in out[2]["error"]
    assert out[3]["index"] == 3 and "needs 'text'" in out[3]["error"]
    with pytest.raises(RiVEGInputError, match="input 1: .*image file not found"):
        pipe(inputs, batch_size=2, errors="raise")
    with pytest.raises(RiVEGInputError, match="not found"):
        pipe(inputs[1])  # a single input raises


def test_no_image_warns_once(pipe, caplog):
    import logging

    pipe._warned_no_image = False
    with caplog.at_level(logging.WARNING):
        out = pipe([{"text": TEXT}, {"text": TEXT, "image": None}, TEXT])
    assert all(e["box"] is None and e["groundable"] is False for o in out for e in o)
    assert sum("has no image" in r.message for r in caplog.records) == 1


def test_detector_boxes_outside_the_image_are_clipped_and_nan_scores_ignored(pipe, photo, monkeypatch):
    grounder = pipe.stages["grounder"]
    fake_scores = np.array([[np.nan, 0.9]])
    fake_boxes = np.array([[0.5, 0.5, 0.2, 0.2], [1.2, -0.3, 1.0, 0.8]])  # cxcywh, the 2nd far outside
    from riveg_hf.stages.grounders._detector import best_per_query  # per query its best box, NaN scores as 0

    def fake(scores, boxes):
        return lambda items, vbs: [best_per_query(scores, boxes) for _ in items]

    monkeypatch.setattr(grounder, "_many", fake(fake_scores, fake_boxes))
    [(box, score)] = grounder.ground(photo, ["a thing"])
    assert score == pytest.approx(0.9)
    assert box == [pytest.approx(0.7 * 128), 0.0, 128.0, pytest.approx(0.1 * 128)]
    monkeypatch.setattr(grounder, "_many", fake(np.array([[np.nan]]), fake_boxes[:1]))
    assert grounder.ground(photo, ["x"])[0][1] == 0.0


def test_nan_entailment_scores_are_not_visible(pipe, photo, monkeypatch):
    monkeypatch.setattr(pipe.stages["entailment"], "score", lambda image, hyps: np.full(len(hyps), np.nan))
    out = pipe({"text": TEXT, "image": photo}, entailment_threshold=0.5)
    assert all(e["groundable"] is False and e["box"] is None for e in out)


def test_options_are_validated(pipe):
    with pytest.raises(TypeError, match="unknown option 'box_treshold'.*box_threshold"):
        pipe(TEXT, box_treshold=0.2)
    with pytest.raises(ValueError, match="mask_format"):
        pipe(TEXT, mask_format="png")
    with pytest.raises(TypeError, match="unknown option"):
        RiVEGPipeline.from_components(recognizer=tiny_recognizer(), bogus=1)


def test_add_masks_works_on_any_gmner_output(dummy_dir, photo):
    seg = Segmenter.from_pretrained(dummy_dir["segmenter"])
    ents = [
        {"entity": "Obama", "type": "PER", "start": 0, "end": 5, "box": [10, 10, 60, 90]},
        {"entity": "Paris", "type": "LOC", "start": 13, "end": 18, "box": None},
        {
            "entity": "NASA",
            "type": "ORG",
            "start": 20,
            "end": 24,
            "box": {"xmin": 0, "ymin": 0, "xmax": 9, "ymax": 9},
        },
    ]
    counts = _count_calls(seg.model.vision_encoder)
    out = add_masks(ents, photo, seg)
    assert counts["n"] == 1
    assert out[1]["mask"] is None and decode_rle(out[0]["mask"]).shape == (128, 128)
    assert out[2]["box"] == {"xmin": 0.0, "ymin": 0.0, "xmax": 9.0, "ymax": 9.0}
    assert "mask" not in ents[0]  # inputs are not modified
    with pytest.raises(ValueError, match="no 'box' key"):
        add_masks([{"entity": "x"}], photo, seg)


def test_dtype_and_loading_options_reach_every_component(dummy_dir, monkeypatch):
    from riveg_hf.stages import base

    seen = []
    orig = base.Stage.load_model_and_processor.__func__

    def spy(cls, location, **kw):
        seen.append((cls.name, kw))
        return orig(cls, location, **kw)

    monkeypatch.setattr(base.Stage, "load_model_and_processor", classmethod(spy))
    pipe = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"],
        grounder=dummy_dir["grounder"],
        entailment=dummy_dir["entailment"],
        segmenter=dummy_dir["segmenter"],
        dtype=torch.bfloat16,
        local_files_only=True,
        revision="main",
    )
    assert sorted(n for n, _ in seen) == ["entailment", "grounder", "recognizer", "segmenter"]
    assert all(kw["dtype"] is torch.bfloat16 and kw["local_files_only"] is True for _, kw in seen)
    assert all(st.model.dtype == torch.bfloat16 for st in pipe.stages.values() if st.model is not None)


def test_default_composites_are_documented_public_checkpoints():
    from pathlib import Path

    root = Path(riveg_hf.__file__).parent / "defaults"
    g = json.loads((root / "grounded-mner" / "config.json").read_text())
    s = json.loads((root / "segmented-mner" / "config.json").read_text())
    assert {k: v["model_class"] for k, v in s["components"].items()} == {
        "recognizer": "BertForTokenClassification",
        "expander": "Qwen2ForCausalLM",
        "entailment": "BlipForImageTextRetrieval",
        "grounder": "GroundingDinoForObjectDetection",
        "segmenter": "Sam2Model",
    }
    assert "segmenter" not in g["components"]
    assert PIPELINE_REGISTRY.supported_tasks["grounded-mner"]["default"]["model"][0] == str(
        root / "grounded-mner"
    )


def test_default_composite_structure_with_tiny_models_of_the_same_architectures(tmp_path, photo):
    """The default's classes and options, with tiny random weights saved in the same layout."""
    from pathlib import Path

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from riveg_hf.testing import tiny_blip_itm, tiny_grounding_dino, tiny_llm, tiny_sam2

    cfg = json.loads(
        (Path(riveg_hf.__file__).parent / "defaults" / "segmented-mner" / "config.json").read_text()
    )
    labels = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]  # CoNLL-03 order
    parts = {
        "recognizer": tiny_recognizer(labels),
        "expander": tiny_llm(config_class=Qwen2Config, model_class=Qwen2ForCausalLM),
        "entailment": tiny_blip_itm(),
        "grounder": tiny_grounding_dino(),
        "segmenter": tiny_sam2(),
    }
    for name, spec in cfg["components"].items():
        model, proc = parts[name]
        assert type(model).__name__ == spec["model_class"]
        model.save_pretrained(tmp_path / name)
        proc.save_pretrained(tmp_path / name)
        spec.pop("repo_id")
        spec.pop("revision")
        spec["path"] = name
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    pipe = pipeline("segmented-mner", model=str(tmp_path))
    out = pipe({"text": TEXT, "image": photo}, entailment_threshold=0.0)
    assert isinstance(out, list) and all(list(e) == list(OUTPUT_KEYS) for e in out)
    assert pipe.stages["recognizer"].label_map == {"MISC": "OTHER"}


def test_default_without_hub_gives_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # transformers' pipeline() wraps the loading error in a ValueError that carries our message
    with pytest.raises((OSError, ValueError), match="pass the local folder instead"):
        pipeline("grounded-mner", local_files_only=True)
    with pytest.raises(OSError, match=r"(?s)recognizer: could not load 'dslim/bert-base-NER'.*local folder"):
        RiVEGModel.from_pretrained(
            str(riveg_hf.pipeline.default_model_path("grounded-mner")), local_files_only=True
        )


def test_score_is_finite_json(every_word_pipe, photo):
    out = every_word_pipe({"text": TEXT, "image": photo})
    for e in out:
        for k in ("score", "groundable_score", "box_score"):
            assert e[k] is None or math.isfinite(e[k])


def test_siglip_entailment_uses_its_own_bias(photo):
    from riveg_hf.stages import Entailment
    from riveg_hf.testing import tiny_siglip

    model, proc = tiny_siglip()
    ent = Entailment(model, proc)
    assert ent.kind == "contrastive"
    hyps = ["a person", "a red car", "a cat"]
    probs = ent.score(photo, hyps)
    with torch.no_grad():
        inputs = proc(images=photo, text=hyps, padding="max_length", max_length=16, return_tensors="pt")
        expected = torch.sigmoid(model(**inputs).logits_per_text[:, 0]).numpy()
    assert np.allclose(probs, expected, atol=1e-5)  # the same probabilities SigLIP itself gives


def test_blip_itm_encode_once_equals_the_models_own_forward(photo):
    from riveg_hf.stages import Entailment
    from riveg_hf.testing import tiny_blip_itm

    model, proc = tiny_blip_itm()
    ent = Entailment(model, proc)
    hyps = ["obama(PER)-a person", "paris(LOC)-a city with a tower", "nasa"]
    probs = ent.score(photo, hyps)
    with torch.no_grad():
        expected = []
        for h in hyps:  # the model's own forward: one image encoding per hypothesis
            inputs = proc(images=photo, text=h, return_tensors="pt")
            expected.append(torch.softmax(model(**inputs).itm_score, dim=-1)[0, 1].item())
    assert np.allclose(probs, expected, atol=1e-5)


@pytest.mark.parametrize("family", ["grounding-dino", "mm-grounding-dino", "owlv2"])
def test_grounder_boxes_match_transformers_post_processing(family, photo):
    from riveg_hf.stages import Grounder
    from riveg_hf.testing import tiny_grounding_dino, tiny_mm_grounding_dino, tiny_owlv2

    builders = {
        "grounding-dino": tiny_grounding_dino,
        "mm-grounding-dino": tiny_mm_grounding_dino,
        "owlv2": tiny_owlv2,
    }
    model, proc = builders[family]()
    assert family == "owlv2" or model.config.model_type == family
    img = photo.resize((128, 96))  # not square: OWLv2 pads to a square, Grounding DINO does not
    [(box, score)] = Grounder(model, proc).ground(img, ["a red cat"])
    with torch.no_grad():
        if family != "owlv2":
            inputs = proc(images=img, text="a red cat.", return_tensors="pt")
            res = proc.post_process_grounded_object_detection(
                model(**inputs),
                inputs["input_ids"],
                threshold=0.0,
                text_threshold=0.0,
                target_sizes=[(96, 128)],
            )[0]
        else:
            inputs = proc(images=img, text=[["a red cat"]], return_tensors="pt")
            res = proc.image_processor.post_process_object_detection(
                model(**inputs), threshold=-1.0, target_sizes=[(96, 128)]
            )[0]
    k = int(res["scores"].argmax())
    expected = [min(max(v, 0.0), lim) for v, lim in zip(res["boxes"][k].tolist(), (128, 96, 128, 96))]
    assert score == pytest.approx(float(res["scores"][k]), abs=1e-5)
    assert box == pytest.approx(expected, abs=1e-3)
