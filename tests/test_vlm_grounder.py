"""A vision-language model as the grounder (Qwen2.5-VL / Qwen3-VL): answer parser, coordinates, one
generation per image, joint visibility, and a tiny random Qwen2.5-VL end to end."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import pipeline

from riveg_hf import RiVEGPipeline
from riveg_hf.stages import Grounder
from riveg_hf.stages.vlm_grounding import parse_grounding_answer, to_original_xyxy
from riveg_hf.testing import every_word_recognizer, tiny_qwen2_5_vl, tiny_qwen3_vl

NAMES = ["Obama", "Paris", "NASA"]


@pytest.mark.parametrize(
    ("answer", "boxes", "unparsable"),
    [
        ('[{"entity": "Obama", "bbox_2d": [1, 2, 30, 40]}, {"entity": "Paris", "bbox_2d": null}, '
         '{"entity": "NASA", "bbox_2d": [5, 5, 9, 9]}]', [[1, 2, 30, 40], None, [5, 5, 9, 9]], []),
        # prose and a code fence around the JSON
        ('Here you go:\n```json\n[{"entity": "Obama", "bbox_2d": [1, 2, 3, 4]}]\n```\nAnything else?',
         [[1, 2, 3, 4], None, None], [1, 2]),
        # truncated: the complete objects are kept
        ('[{"entity": "Obama", "bbox_2d": [1, 2, 3, 4]}, {"entity": "Paris", "bbox_2d": [7, 8,',
         [[1, 2, 3, 4], None, None], [1, 2]),
        # inverted corners swapped; a box that is not 4 numbers is unusable
        ('[{"entity": "Obama", "bbox_2d": [30, 40, 1, 2]}, {"entity": "Paris", "bbox_2d": [1, 2, 3]}, '
         '{"entity": "NASA", "bbox_2d": ["a", 1, 2, 3]}]', [[1, 2, 30, 40], None, None], [1, 2]),
        # repeated entity: the first answer wins; extra entities are ignored; order does not matter
        ('[{"entity": "NASA", "bbox_2d": [1, 1, 2, 2]}, {"entity": "NASA", "bbox_2d": [9, 9, 10, 10]}, '
         '{"entity": "Berlin", "bbox_2d": [0, 0, 1, 1]}, {"entity": "obama", "bbox_2d": null}]',
         [None, None, [1, 1, 2, 2]], [1]),
        # a misspelt name takes the entity at its position
        ('[{"entity": "Obamma", "bbox_2d": [1, 2, 3, 4]}]', [[1, 2, 3, 4], None, None], [1, 2]),
        ("I cannot see anything.", [None, None, None], [0, 1, 2]),
        ("", [None, None, None], [0, 1, 2]),
        ('[{"entity": "Obama", "bbox_2d": [NaN, 1, 2, 3]}]', [None, None, None], [0, 1, 2]),
    ],
)  # fmt: skip
def test_parser_table(answer, boxes, unparsable):
    p = parse_grounding_answer(answer, NAMES)
    assert p.boxes == [None if b is None else [float(v) for v in b] for b in boxes]
    assert p.unparsable == unparsable
    assert all((s is None) == (b is None) for s, b in zip(p.spans, p.boxes))


def test_coordinates_back_to_original_pixels_by_hand():
    # Qwen2.5-VL: absolute pixels of the processor's resized image (here 640x480 resized to 616x462)
    assert to_original_xyxy([0, 0, 308, 231], "absolute", (640, 480), (616, 462)) == pytest.approx(
        [0, 0, 320, 240]
    )
    assert to_original_xyxy([154, 0, 616, 462], "absolute", (300, 900), (308, 896)) == pytest.approx(
        [150.0, 0.0, 300.0, 900.0 * 462 / 896]
    )
    # Qwen3-VL: 0..1000 relative on each axis, whatever the resize
    assert to_original_xyxy([250, 500, 750, 1000], "relative-1000", (800, 200), (812, 196)) == [
        200.0,
        100.0,
        600.0,
        200.0,
    ]
    # outside the image: clipped; nothing left: None
    assert to_original_xyxy([-50, -50, 2000, 2000], "relative-1000", (100, 50), (0, 0)) == [
        0.0,
        0.0,
        100.0,
        50.0,
    ]
    assert to_original_xyxy([1100, 0, 1200, 10], "relative-1000", (100, 50), (0, 0)) is None
    with pytest.raises(ValueError, match="unknown coordinate convention"):
        to_original_xyxy([0, 0, 1, 1], "cxcywh", (1, 1), (1, 1))


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    model, proc = tiny_qwen2_5_vl()
    d = tmp_path_factory.mktemp("qwen") / "qwen2_5_vl"
    model.save_pretrained(d)
    proc.save_pretrained(d)
    return str(d)


def test_one_generation_per_image_equal_to_the_models_own_generate(vlm_dir):
    g = Grounder.from_pretrained(vlm_dir)
    assert g.family == "vlm" and g.convention == "absolute" and g.box_threshold == 0.0
    calls, seqs = [], []
    real = g.model.generate

    def spy(**kw):
        out = real(**kw)
        calls.append(kw["input_ids"].shape[0])
        seqs.append(out.sequences)
        return out

    g.model.generate = spy
    img = Image.new("RGB", (120, 80), (200, 30, 30))
    ents = [(f"Entity{i}", "PER", f"a person number {i}") for i in range(8)]
    diag = []
    [res] = g.ground_many(
        [(img, [d for _, _, d in ents])], contexts=[{"text": "a tweet", "entities": ents}], diagnostics=diag
    )
    assert calls == [1]  # eight entities, one generation
    assert len(res) == 8 and len(diag[0]["unparsable"]) + sum(b is not None for b, _ in res) <= 8
    # the same inputs through transformers' own generate give the same tokens
    from riveg_hf.stages.vlm_grounding import build_grounding_prompt, max_new_tokens_for

    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": build_grounding_prompt("a tweet", ents, "absolute")},
            ],
        }
    ]
    text = g.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = g.processor(text=[text], images=[img], return_tensors="pt", padding=True)
    own = real(**enc, max_new_tokens=max_new_tokens_for(8), do_sample=False)
    assert torch.equal(own, seqs[0])


def test_canned_answers_map_to_original_pixels_and_never_lose_entities(vlm_dir, monkeypatch):
    """The tiny model answers garbage; replace its decoding with canned answers per image."""
    pipe = RiVEGPipeline.from_components(recognizer=every_word_recognizer(), grounder=vlm_dir)
    g = pipe.stages["grounder"]
    answers = iter(
        [
            '[{"entity": "Obama", "bbox_2d": [0, 0, 56, 42]}, {"entity": "Paris", "bbox_2d": null}]',
            'Sorry, [{"entity": "Rome", "bbox_2d": [0, 0, 1000',  # truncated: nothing usable
        ]
    )
    tok = g.processor.tokenizer
    real_generate = g.model.generate

    def fake_generate(**kw):
        out = real_generate(**{**kw, "max_new_tokens": 1})
        rows = [
            tok(next(answers), add_special_tokens=False)["input_ids"] for _ in range(kw["input_ids"].shape[0])
        ]
        width = max(len(r) for r in rows) + 1
        pad = tok.pad_token_id
        new = torch.tensor([r + [tok.eos_token_id] + [pad] * (width - len(r) - 1) for r in rows])
        out.sequences = torch.cat([kw["input_ids"], new], dim=1)
        out.scores = tuple(torch.full((len(rows), len(tok)), 0.0) for _ in range(width))
        return out

    monkeypatch.setattr(g.model, "generate", fake_generate)
    a = Image.new("RGB", (120, 80))  # resized by the processor to 112x84
    b = Image.new("RGB", (90, 60))
    out = pipe(
        [{"text": "Obama Paris", "image": a}, {"text": "Rome", "image": b}], batch_size=2, vision_batch_size=1
    )
    (obama, paris), (rome,) = out
    assert obama["box"] == {"xmin": 0.0, "ymin": 0.0, "xmax": 60.0, "ymax": 40.0} and obama["groundable"]
    assert obama["box_score"] == pytest.approx(1 / len(tok))  # uniform canned scores: mean token probability
    assert paris["box"] is None and not paris["groundable"] and "grounding" not in paris
    assert rome["box"] is None and "no usable entry" in rome["grounding"]


def test_vlm_composite_round_trip_and_joint_visibility(vlm_dir, dummy_dir, tmp_path):
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer(),
        grounder=vlm_dir,
        entailment=dummy_dir["entailment"],
        entailment_threshold=1.0,
    )
    img = Image.new("RGB", (120, 80), (10, 200, 10))
    gated = pipe({"text": "Obama", "image": img})
    assert gated[0]["box"] is None and gated[0]["groundable_score"] is not None  # entailment said no
    calls = []
    g = pipe.stages["grounder"]
    real = g.model.generate
    g.model.generate = lambda **kw: calls.append(1) or real(**kw)
    joint = pipe({"text": "Obama", "image": img}, visibility="grounder")  # the VLM decides: one generation
    assert calls == [1] and len(joint) == 1
    with pytest.raises(ValueError, match="visibility must be one of"):
        pipe({"text": "Obama", "image": img}, visibility="both")
    g.model.generate = real
    pipe.save_pretrained(tmp_path / "c")
    again = pipeline("grounded-mner", model=str(tmp_path / "c"))
    assert type(again.stages["grounder"].model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert again({"text": "Obama", "image": img}, visibility="grounder") == joint


def test_qwen3_vl_relative_coordinates_end_to_end(tmp_path, monkeypatch):
    model, proc = tiny_qwen3_vl()
    model.save_pretrained(tmp_path / "q3")
    proc.save_pretrained(tmp_path / "q3")
    pipe = RiVEGPipeline.from_components(recognizer=every_word_recognizer(), grounder=str(tmp_path / "q3"))
    g = pipe.stages["grounder"]
    assert g.family == "vlm" and g.convention == "relative-1000"
    tok = g.processor.tokenizer
    real_generate = g.model.generate
    answer = '[{"entity": "Obama", "bbox_2d": [250, 500, 750, 1000]}]'

    def fake_generate(**kw):
        out = real_generate(**{**kw, "max_new_tokens": 1})
        new = torch.tensor([tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
        out.sequences = torch.cat([kw["input_ids"], new], dim=1)
        out.scores = tuple(torch.zeros(1, len(tok)) for _ in range(new.shape[1]))
        return out

    monkeypatch.setattr(g.model, "generate", fake_generate)
    (obama,) = pipe({"text": "Obama", "image": Image.new("RGB", (200, 100))})
    assert obama["box"] == {"xmin": 50.0, "ymin": 50.0, "xmax": 150.0, "ymax": 100.0}
    monkeypatch.setattr(g.model, "generate", real_generate)
    assert (
        len(pipe({"text": "Obama Paris", "image": Image.new("RGB", (64, 64))})) == 2
    )  # real generate: no crash


def test_vlm_entailment_p_yes_in_one_forward_per_image_batch(vlm_dir):
    from riveg_hf.stages import Entailment
    from riveg_hf.stages.entailment import VLM_QUESTION

    ent = Entailment.from_pretrained(vlm_dir)
    assert ent.kind == "vlm"
    calls = []
    handle = ent.model.register_forward_hook(lambda *a: calls.append(1))
    a, b = Image.new("RGB", (120, 80), (200, 0, 0)), Image.new("RGB", (64, 96), (0, 0, 200))
    hyps = [["Obama(PER)-a man", "Paris(LOC)-a city", "NASA(ORG)-a logo"], ["Rome(LOC)-a city"]]
    try:
        pa, pb = ent.score_many([(a, hyps[0]), (b, hyps[1])])
    finally:
        handle.remove()
    assert calls == [1] and len(pa) == 3 and len(pb) == 1  # both images, four questions: one forward
    assert all(0.0 <= p <= 1.0 for p in [*pa, *pb])
    # each question alone through the model's own forward: the same P(yes)
    proc, tok = ent.processor, ent.processor.tokenizer
    yes = {tok.encode(w, add_special_tokens=False)[0] for w in ("yes", "Yes")}
    no = {tok.encode(w, add_special_tokens=False)[0] for w in ("no", "No")}
    for img, hs, got in ((a, hyps[0], pa), (b, hyps[1], pb)):
        for h, p in zip(hs, got):
            msg = [
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "text", "text": VLM_QUESTION.format(hypothesis=h)},
                    ],
                }
            ]
            enc = proc(text=[proc.apply_chat_template(msg, add_generation_prompt=True, tokenize=False)], images=[img],
                       return_tensors="pt")  # fmt: skip
            with torch.no_grad():
                probs = torch.softmax(ent.model(**enc).logits[0, -1].float(), dim=-1)
            y, n = probs[sorted(yes)].sum(), probs[sorted(no)].sum()
            assert p == pytest.approx(float(y / (y + n)), abs=1e-4)


def test_florence2_phrase_grounding_one_generation_per_image(tmp_path, monkeypatch):
    from riveg_hf.testing import tiny_florence2

    model, proc = tiny_florence2()
    model.save_pretrained(tmp_path / "f2")
    proc.save_pretrained(tmp_path / "f2")
    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer(), grounder=str(tmp_path / "f2"), use_descriptions=False
    )
    g = pipe.stages["grounder"]
    assert g.family == "florence2"
    tok = proc.tokenizer
    calls = []
    real = g.model.generate

    def canned(**kw):
        calls.append(kw["input_ids"].shape[0])
        text = "</s>obama<loc_0><loc_0><loc_500><loc_999>nasa<loc_100><loc_200><loc_300><loc_400></s>"
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids] * kw["input_ids"].shape[0])

    monkeypatch.setattr(g.model, "generate", canned)
    out = pipe({"text": "Obama Paris NASA", "image": Image.new("RGB", (200, 100))})
    assert calls == [1]  # three entities, one generation
    expected = proc.post_process_generation(
        text="obama<loc_0><loc_0><loc_500><loc_999>nasa<loc_100><loc_200><loc_300><loc_400>",
        task="<CAPTION_TO_PHRASE_GROUNDING>",
        image_size=(200, 100),
    )["<CAPTION_TO_PHRASE_GROUNDING>"]["bboxes"]
    obama, paris, nasa = out
    assert [obama["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] == pytest.approx(expected[0])
    assert [nasa["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] == pytest.approx(expected[1])
    assert paris["box"] is None and not paris["groundable"] and obama["box_score"] is None
    monkeypatch.setattr(g.model, "generate", real)
    assert (
        len(pipe({"text": "Obama Paris", "image": Image.new("RGB", (64, 48))})) == 2
    )  # real generate: no crash
    pipe.save_pretrained(tmp_path / "c")
    again = pipeline("grounded-mner", model=str(tmp_path / "c"))
    assert type(again.stages["grounder"].model).__name__ == "Florence2ForConditionalGeneration"
