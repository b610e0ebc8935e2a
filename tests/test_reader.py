"""The joint reader (one model writes every entity, its type and its box): entities placed back on the text, the
zero-shot Qwen-VL family and SAKE's (prompt layout, resize, agent loop over an offline search cache), the pipeline
with a reader (save / reload, batched = one by one, one generation per tweet, masks of its boxes), hostile answers.

Wiring with tiny random Qwen2.5-VL / Qwen3-VL; answers made to come out of the model's own ``generate`` (the real
decode path). SAKE's formats follow tangjielong928/SAKE@71417df:sake_rl/scripts/inference_twitter_gmner.py."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from PIL import Image

from riveg_hf import RiVEGModel, RiVEGPipeline
from riveg_hf.stages import JointReader, ReadRequest
from riveg_hf.stages.reader import MAX_ENTITIES, FoundEntity, place_entities
from riveg_hf.testing import tiny_qwen2_5_vl, tiny_qwen3_vl, tiny_sam2

from .helpers import sake_prompt_dir, script_generate

TWEET = "Obama visits Paris with NASA"


# ---------------------------------------------------------------------- entities back onto the text
@pytest.mark.parametrize(
    ("text", "names", "spans"),
    [
        ("Obama visits Paris", ["Obama", "Paris"], [(0, 5), (13, 18)]),
        ("RT @ManUtd: Man Utd win", ["man utd"], [(12, 19)]),  # case-insensitive, the first free occurrence
        ("Lionel Messi scores", ["LionelMessi"], [(0, 12)]),  # spaces ignored
        ("ＮＡＳＡ launches", ["NASA"], [(0, 4)]),  # NFKC: fullwidth letters
        ("Messi and Messi", ["Messi", "Messi"], [(0, 5), (10, 15)]),  # each occurrence once, in order
        ("New York City", ["New York City", "York"], [(0, 13)]),  # never overlapping: York has no free place
    ],
)
def test_answer_strings_are_placed_on_the_text(text, names, spans):
    placed, notes = place_entities(text, [FoundEntity(n, "LOC", None) for n in names])
    assert [(e.start, e.end) for e in placed] == spans
    assert len(notes) == len(names) - len(spans)
    assert all(text[e.start : e.end] == e.entity for e in placed)


def test_an_entity_not_in_the_tweet_is_never_invented():
    placed, notes = place_entities("Obama visits Paris", [FoundEntity("Rome", "LOC", None)])
    assert placed == [] and notes == ["'Rome' (LOC) is not in the tweet: left out"]


# ---------------------------------------------------------------------- answers through the model's generate
def _script(monkeypatch, reader, answers):
    """The model's generate, made to answer ``answers`` in order; records the rows of each call."""
    return script_generate(monkeypatch, reader, answers)


@pytest.fixture(scope="module")
def qwen25():
    return tiny_qwen2_5_vl()


def test_the_zero_shot_reader_reads_entities_types_and_boxes_in_original_pixels(qwen25, monkeypatch):
    reader = JointReader(*qwen25)
    assert reader.family == "qwen-vl" and reader.convention == "absolute"
    answer = (
        '```json\n[{"entity": "Obama", "type": "PER", "bbox_2d": [0, 0, 56, 42]}, '
        '{"entity": "Paris", "type": "LOC", "bbox_2d": null}, {"entity": "NASA", "type": "MISC", "bbox_2d": []}]\n```'
    )
    _script(monkeypatch, reader, [answer])
    [reading] = reader.read_many([ReadRequest(Image.new("RGB", (120, 80)), TWEET)])
    got = [(e.entity, e.type, e.start, e.box) for e in reading.entities]
    # Qwen2.5-VL answers in the pixels of its 112x84 input: [0, 0, 56, 42] is [0, 0, 60, 40] of the 120x80 image
    assert got == [
        ("Obama", "PER", 0, [0.0, 0.0, 60.0, 40.0]),
        ("Paris", "LOC", 13, None),
        ("NASA", "OTHER", 24, None),
    ]


def test_qwen3_vl_reads_relative_coordinates(monkeypatch):
    reader = JointReader(*tiny_qwen3_vl())
    assert reader.convention == "relative-1000"
    _script(monkeypatch, reader, ['[{"entity": "Paris", "type": "LOC", "bbox_2d": [500, 0, 1000, 1000]}]'])
    [reading] = reader.read_many([ReadRequest(Image.new("RGB", (200, 100)), TWEET)])
    assert [(e.entity, e.box) for e in reading.entities] == [("Paris", [100.0, 0.0, 200.0, 100.0])]


@pytest.mark.parametrize(
    ("answer", "entities", "note"),
    [
        ("I cannot help with that.", [], None),  # no JSON: nothing read, nothing invented
        ('[{"entity": "Rome", "type": "LOC", "bbox_2d": [0, 0, 5, 5]}]', [], "not in the tweet"),
        (
            '[{"entity": "Obama", "type": "PER", "bbox_2d": [0, 0, 500, 900]}]',
            [("Obama", [0.0, 0.0, 120.0, 80.0])],
            None,
        ),  # past the edge: clipped
        ('[{"entity": "Obama", "type": "PER", "bbox_2d": ["a", "b", 1, 2]}]', [("Obama", None)], "not a box"),
        ('[{"entity": "Obama", "type": "SPORTS", "bbox_2d": null}]', [], "not one of"),
        (
            '[{"entity": "Obama", "type": "PER", "bbox_2d": null}, {"entity": "Obama", "type": "PER", "bbox_2d": null}]',
            [("Obama", None)],
            "not in the tweet",
        ),  # one mention in the tweet: the second is not invented
        ('[{"entity": "Obama", "type": "PER", "bbox_2d": [1e999, 0, 5, 5]}]', [("Obama", None)], "not a box"),
    ],
)
def test_hostile_answers_never_raise_and_never_invent(qwen25, answer, entities, note):
    reader = JointReader(*qwen25)
    request = ReadRequest(Image.new("RGB", (120, 80)), TWEET)
    reading = reader.reading(answer, request, (120, 80), (112, 84))
    assert [(e.entity, e.box) for e in reading.entities] == entities
    assert (note is None and not reading.notes) or any(note in n for n in reading.notes)


def test_a_thousand_entities_are_capped_with_a_note(qwen25):
    reader = JointReader(*qwen25)
    text = " ".join(f"w{i}" for i in range(1000))
    answer = json.dumps([{"entity": f"w{i}", "type": "PER", "bbox_2d": None} for i in range(1000)])
    reading = reader.reading(answer, ReadRequest(None, text), None, None)
    assert len(reading.entities) == MAX_ENTITIES and any("first 256" in n for n in reading.notes)


def test_a_degenerate_answer_is_cut_and_reported(qwen25, monkeypatch):
    reader = JointReader(*qwen25, max_new_tokens=4)
    real = reader.model.generate

    def forever(**kw):  # never an end-of-sequence token: the budget cuts it
        out = real(**{**kw, "max_new_tokens": 4})
        out.sequences = torch.cat([kw["input_ids"], torch.full((kw["input_ids"].shape[0], 4), 11)], dim=1)
        return out

    monkeypatch.setattr(reader.model, "generate", forever)
    [reading] = reader.read_many([ReadRequest(Image.new("RGB", (120, 80)), TWEET)])
    assert reading.entities == [] and any("cut at max_new_tokens=4" in n for n in reading.notes)


def test_bad_reader_settings_are_refused_with_the_choices(qwen25):
    with pytest.raises(ValueError, match=r"unknown reader family 'sak'; valid: \[.*'qwen-vl', 'sake'\]"):
        JointReader(*qwen25, family="sak")
    with pytest.raises(ValueError, match="max_new_tokens"):
        JointReader(*qwen25, max_new_tokens=10**9)
    with pytest.raises(TypeError, match="unknown option"):
        JointReader(*qwen25, prompt_dir="x")  # a SAKE option on the zero-shot family
    from riveg_hf.testing import tiny_florence2

    with pytest.raises(ValueError, match="model types"):
        JointReader(*tiny_florence2())


def test_a_trained_reader_keeps_the_family_and_types_its_config_records(tmp_path):
    """``riveg train reader`` records ``riveg_reader_family`` / ``riveg_entity_types`` in the checkpoint's config:
    loading it with no options reads them (a fine-type reader keeps its 51 types); an explicit option wins."""
    from riveg_hf.data.fmnerg import FINE_TYPES

    model, processor = tiny_qwen2_5_vl()
    model.config.riveg_entity_types = list(FINE_TYPES)
    model.config.riveg_reader_family = "qwen-vl"
    JointReader(model, processor).save_pretrained(tmp_path / "r")
    reader = JointReader.from_pretrained(tmp_path / "r")
    assert reader.family == "qwen-vl" and list(reader.entity_types) == list(FINE_TYPES)
    assert list(JointReader(model, processor, entity_types=["PER", "LOC"]).entity_types) == ["PER", "LOC"]
    model.config.riveg_reader_family = (
        "sake"  # a family that needs its files: asked for, not silently qwen-vl
    )
    model.config.riveg_entity_types = None
    with pytest.raises(ValueError, match="prompt_dir=<SAKE checkout>"):
        JointReader(model, processor)


# ---------------------------------------------------------------------- the pipeline with a reader
def test_reader_pipeline_round_trip_batched_equals_one_by_one(qwen25, tmp_path, monkeypatch):
    pipe = RiVEGPipeline.from_components(reader=qwen25, reader_max_new_tokens=12)
    assert set(pipe.stages) == {"reader"}
    inputs = [{"text": TWEET, "image": Image.new("RGB", (120, 80), (i * 40, 0, 0))} for i in range(3)]
    inputs.append({"tokens": ["NASA", "launches"], "image": None})
    together = pipe(inputs, batch_size=4)
    alone = [pipe(x) for x in inputs]
    assert together == alone
    pipe.save_pretrained(tmp_path / "reader")
    cfg = json.loads((tmp_path / "reader" / "config.json").read_text())
    assert cfg["components"]["reader"]["options"]["family"] == "qwen-vl"
    again = RiVEGPipeline(model=RiVEGModel.from_pretrained(str(tmp_path / "reader")), task="grounded-mner")
    assert again(inputs, batch_size=4) == together
    # one generation per batch of tweets (those with an image; the one without goes alone)
    calls = _script(monkeypatch, again.stages["reader"], ["[]"] * 4)
    again(inputs, batch_size=4, vision_batch_size=8)
    assert calls == [3, 1]


def test_a_reader_with_a_stage_it_replaces_is_refused_never_silently_unused():
    for stage in ("recognizer", "grounder", "entailment"):
        with pytest.raises(ValueError, match=rf"\['{stage}'\] would never run beside it"):
            RiVEGPipeline.from_components(reader="y", **{stage: "x"})


def test_segmented_mner_with_a_reader_gives_masks_for_its_boxes(qwen25, monkeypatch):
    pipe = RiVEGPipeline.from_components(reader=qwen25, segmenter=tiny_sam2())
    assert pipe.task == "segmented-mner"
    _script(
        monkeypatch,
        pipe.stages["reader"],
        [
            '[{"entity": "Obama", "type": "PER", "bbox_2d": [0, 0, 56, 42]}, {"entity": "NASA", "type": "ORG"}]'
        ],
    )
    out = pipe({"text": TWEET, "image": Image.new("RGB", (120, 80))})
    obama, nasa = out
    assert obama["box"] == {"xmin": 0.0, "ymin": 0.0, "xmax": 60.0, "ymax": 40.0} and obama["groundable"]
    assert obama["mask"]["size"] == [80, 120] and obama["mask"]["counts"]  # COCO RLE of the image's size
    assert nasa["box"] is None and nasa["mask"] is None and not nasa["groundable"]
    assert (obama["start"], obama["end"], nasa["start"], nasa["end"]) == (0, 5, 24, 28)


# ---------------------------------------------------------------------- SAKE
@pytest.fixture
def sake_prompts(tmp_path):
    return sake_prompt_dir(tmp_path)


def test_sake_resize_is_sakes_formula():
    from riveg_hf.stages.readers.sake import sake_resize

    # 2000x1000 > 672*672*2: f = sqrt(903168 / 2e6) = 0.672 -> 1344x672; 100x50 < 512*512: f = 7.2408 -> 724x362
    assert sake_resize(Image.new("RGB", (2000, 1000))).size == (1344, 672)
    assert sake_resize(Image.new("RGB", (100, 50))).size == (724, 362)
    assert sake_resize(Image.new("L", (700, 700))).mode == "RGB"


def test_sake_refuses_without_its_prompts_and_warns_on_other_files(qwen25, sake_prompts):
    with pytest.raises(ValueError, match="prompt_dir=<SAKE checkout>"):
        JointReader(*qwen25, family="sake")
    with pytest.warns(UserWarning, match="not SAKE's file"):
        JointReader(*qwen25, family="sake", prompt_dir=str(sake_prompts))


def test_sake_agent_loop_over_its_offline_cache(qwen25, sake_prompts, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "text_search").mkdir(parents=True)
    (cache / "image_search").mkdir()
    (cache / "images" / "71044").mkdir(parents=True)
    Image.new("RGB", (64, 64), (0, 200, 0)).save(cache / "images" / "71044" / "ref.jpg")
    (cache / "text_search" / "71044_text_search.json").write_text(json.dumps(
        [{"query": "Garfield Park Conservatory", "status": "success", "result": {"summary": "A greenhouse in Chicago."}}]
    ))  # fmt: skip
    (cache / "image_search" / "71044_image_search.json").write_text(json.dumps(
        [{"query": "Garfield Park Conservatory", "status": "success", "result": {"images": [{"path": "ref.jpg"}]}}]
    ))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = JointReader(*qwen25, family="sake", prompt_dir=str(sake_prompts), search="cache",
                             search_cache=str(cache), return_trace=True)  # fmt: skip
    calls = _script(monkeypatch, reader, [
        '<reason>unsure</reason><text_search>[{"query": "garfield park conservatory"}]</text_search>',
        '<reason>need a look</reason><image_search>[{"query": "Garfield Park"}]</image_search>',
        '<answer>[{"entity": "Garfield Park Conservatory", "type": "LOC", "box2d": [362, 0, 724, 362]},'
        ' {"entity": "plants", "type": "MISC", "box2d": []}]</answer>',
    ])  # fmt: skip
    image = Image.new("RGB", (100, 50))  # sent as 724x362 (SAKE's resize)
    [reading] = reader.read_many(
        [ReadRequest(image, "The geometry of plants . Garfield Park Conservatory", "71044")]
    )
    assert calls == [1, 1, 1]  # three turns
    got = [(e.entity, e.type, e.box) for e in reading.entities]
    # box2d in the 724x362 sent image -> the 100x50 original; MISC is Twitter-GMNER's OTHER
    assert got == [("plants", "OTHER", None), ("Garfield Park Conservatory", "LOC", [50.0, 0.0, 100.0, 50.0])]
    trace = json.loads(next(n for n in reading.notes if n.startswith("trace: "))[7:])
    assert [t["role"] for t in trace] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    first, after_text, after_image = trace[0]["text"], trace[2]["text"], trace[4]["text"]
    assert first.endswith(
        "---\n\n---\n\n**Input Data:** Here are the image and original social media post for your task:\n<image>"
        "\n**Original social media post:**\nThe geometry of plants . Garfield Park Conservatory"
    )
    assert after_text == (
        "<information>[Text Search Results] Below are the search results for each query:\n"
        "\nQuery: Garfield Park Conservatory\nSummary: A greenhouse in Chicago.\n</information>\n"
        "Here are the image and original social media post for your task:\n<image>\n"
        "The geometry of plants . Garfield Park Conservatory\nAFTER TEXT"
    )
    assert "Found 1 reference image(s):\n  Image 1: <image>\n</information>" in after_image
    assert after_image.endswith("Garfield Park Conservatory\nAFTER IMAGE")


def test_sake_without_search_is_told_nothing_was_found_and_stops_at_the_turn_limit(
    qwen25, sake_prompts, monkeypatch
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = JointReader(*qwen25, family="sake", prompt_dir=str(sake_prompts), return_trace=True)
    search = '<text_search>[{"query": "x"}]</text_search><image_search>[{"query": "x"}]</image_search>'
    calls = _script(monkeypatch, reader, [search] * 3)
    [reading] = reader.read_many([ReadRequest(Image.new("RGB", (600, 600)), TWEET)])
    assert calls == [1, 1, 1]  # text search, image search, then the last turn: never a fourth
    assert reading.entities == [] and any("no <answer> block" in n for n in reading.notes)
    trace = json.loads(next(n for n in reading.notes if n.startswith("trace: "))[7:])
    assert (
        "[No Cache] No search information found for 'x'. Please reason with your own knowledge."
        in trace[2]["text"]
    )
    assert "\nQuery: x\nNo images found.\n" in trace[4]["text"]


# ---------------------------------------------------------------------- SAKE's answer reading, differential
def _sake_reference(answer: str, original, sent):
    """SAKE's own reading of a final answer, restated from tangjielong928/SAKE@71417df:
    sake_rl/scripts/inference_twitter_gmner.py ``extract_answer`` (L678-687: the FIRST <answer> block, json.loads,
    [] on a JSON error or without the tag), ``restore_box2d_to_original_size`` / ``unscale_box2d`` (L238-269,
    L690-720: a 4-number box scaled by original / processed and truncated to ints) and
    sake_rl/evaluate/utils.py ``load_cot_prediction`` (L198-210: entity / type / box2d; an entry lacking one
    becomes an empty phrase)."""
    import re as _re

    m = _re.search(r"<answer>(.*?)</answer>", answer, _re.DOTALL)
    if not m:
        return []
    try:
        pred = json.loads(m.group(1).strip())
    except json.JSONDecodeError:
        return []
    out = []
    for e in pred:
        box = e.get("box2d")
        if box and len(box) == 4:
            sx, sy = original[0] / sent[0], original[1] / sent[1]
            box = [int(box[0] * sx), int(box[1] * sy), int(box[2] * sx), int(box[3] * sy)]
        try:
            out.append((e["entity"], e["type"], box))
        except KeyError:
            out.append(("", "", []))
    return out


SAKE_ANSWERS = [
    '<reason>r</reason><answer>[{"entity": "Obama", "type": "PER", "box2d": [10, 20, 300, 200]}]</answer>',
    '<answer>\n[\n  {"entity": "Obama", "type": "PER", "box2d": []},\n  {"entity": "NASA", "type": "ORG", '
    '"box2d": [0, 0, 724, 362]}\n]\n</answer>',
    '<answer>[{"entity": "Paris", "type": "LOC", "box2d": [1, 2, 3, 4]}]</answer><answer>[{"entity": "NASA", '
    '"type": "ORG", "box2d": []}]</answer>',  # the first block is the answer
    '<answer>[{"entity": "NASA", "type": "MISC", "box2d": [100, 100, 200, 200]}]</answer>',
    "<answer>[]</answer>",
    '<text_search>[{"query": "x"}]</text_search>',  # no answer: nothing
    "<answer>[{'entity': 'Obama'}]</answer>",  # not JSON: SAKE reads nothing (riveg-hf reads it tolerantly)
]


@pytest.mark.parametrize("answer", SAKE_ANSWERS)
def test_sakes_answers_read_as_sakes_own_code_reads_them(qwen25, sake_prompts, answer):
    from riveg_hf.stages.readers.sake import GMNER_TYPES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = JointReader(*qwen25, family="sake", prompt_dir=str(sake_prompts))
    original, sent = (100, 50), (724, 362)
    want = _sake_reference(answer, original, sent)
    if answer.startswith("<answer>[{'entity'"):
        assert (
            want == []
        )  # SAKE's json.loads fails on single quotes; riveg-hf's tolerant reader is not compared
        return
    reading = reader.reading(answer, ReadRequest(Image.new("RGB", original), TWEET), sent, None)
    got = [(e.entity, e.type, e.box) for e in reading.entities]
    want_placed = sorted(
        [(n, GMNER_TYPES[t], b or None) for n, t, b in want], key=lambda x: TWEET.index(x[0])
    )
    assert [(n, t) for n, t, _ in got] == [(n, t) for n, t, _ in want_placed]
    for (_, _, ours), (_, _, theirs) in zip(got, want_placed):
        if theirs is None:
            assert ours is None
        else:  # SAKE truncates to ints; riveg-hf keeps floats, clipped to the image
            clipped = [min(max(v, 0), lim) for v, lim in zip(theirs, (*original, *original))]
            assert ours == pytest.approx(clipped, abs=1.0)
