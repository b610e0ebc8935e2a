"""What real vision-language models answer (tests/fixtures/real_vlm_answers.json: 30 answers of Qwen2-VL,
Qwen2.5-VL, Qwen3-VL and Florence-2 copied from their cookbooks, test fixtures and issue threads, each cited
there, with the expected boxes hand-computed with each family's published formula), then constructed variants
of every class of defect seen: every box lands on its own entity, or nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from riveg_hf.stages.grounders.florence2 import assign_phrases
from riveg_hf.stages.vlm_answers import match_objects, normalize_name, parse_objects
from riveg_hf.stages.vlm_grounding import (
    NOTE_MALFORMED,
    NOTE_NOT_MENTIONED,
    NOTE_UNPARSABLE,
    VLM_FAMILIES,
    read_grounding_answer,
    to_original_xyxy,
)

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "real_vlm_answers.json").read_text(encoding="utf-8")
)
QWEN = [e for e in FIXTURE if e["family"] != "florence2"]
SIZED = [
    e for e in QWEN if e["image"]["width"] and e["resize"] and e["resize"]["resized_width"] and e["expected"]
]
FLORENCE = [e for e in FIXTURE if e["family"] == "florence2"]


def _sizes(e):
    return (e["image"]["width"], e["image"]["height"]), (
        e["resize"]["resized_width"],
        e["resize"]["resized_height"],
    )


def test_the_fixture_covers_every_family():
    families = {e["family"] for e in FIXTURE}
    assert families == {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "florence2"} and len(FIXTURE) >= 20
    assert all(e["source"]["url"] and e["answer"] is not None for e in FIXTURE)


@pytest.mark.parametrize("entry", SIZED, ids=lambda e: e["id"])
def test_every_object_of_a_real_answer_is_read_with_its_box_in_original_pixels(entry):
    objects = [o for o in parse_objects(entry["answer"]) if o.status == "box"]
    assert len(objects) == len(entry["expected"]), [o.names for o in objects]
    original, resized = _sizes(entry)
    convention = VLM_FAMILIES[entry["family"]]
    for obj, want in zip(objects, entry["expected"]):
        assert want["name"] in obj.names, (obj.names, want["name"])
        got = to_original_xyxy(obj.box, convention, original, resized)
        assert got == pytest.approx(want["box_original_xyxy"], abs=0.01)
        assert obj.span is not None and entry["answer"][obj.span[0] : obj.span[1]].count(",") >= 3


@pytest.mark.parametrize("entry", SIZED, ids=lambda e: e["id"])
def test_entities_asked_in_any_order_get_their_own_box_and_an_absent_one_none(entry):
    """The entities are the answer's distinct names, asked in reverse order, plus one the answer never mentions:
    each named entity receives the first object with its name; the absent one is "not visible"."""
    original, resized = _sizes(entry)
    names = list(dict.fromkeys(w["name"] for w in entry["expected"]))[::-1]
    entities = [(n, "OTHER", n) for n in names] + [("Lionel Messi", "PER", "an Argentine footballer")]
    read = read_grounding_answer(entry["answer"], entities, VLM_FAMILIES[entry["family"]], original, resized)
    for name, box in zip(names, read.boxes):
        first = next(w for w in entry["expected"] if w["name"] == name)
        assert box == pytest.approx(first["box_original_xyxy"], abs=0.01), name
    assert read.boxes[-1] is None and read.notes[-1] == NOTE_NOT_MENTIONED


@pytest.mark.parametrize(
    ("entry_id", "asked", "expected_index"),
    [
        ("q25_brave_person", "person who act bravely", 0),  # the model wrote "person who acts bravely"
        ("q25_cakes_top_right_brown", "top right brown cake", 0),
        ("q2_os_atlas_language_switch", "language switch", 0),
        ("q2_issue_highfive_zh", "击掌", 0),  # Chinese label, Qwen2-VL's box tokens
        ("q3_issue_watch_odd_fence", "watch", 0),
    ],
)
def test_the_entity_the_prompt_asked_for_gets_the_answers_box(entry_id, asked, expected_index):
    entry = next(e for e in FIXTURE if e["id"] == entry_id)
    original, resized = _sizes(entry)
    read = read_grounding_answer(entry["answer"], [(asked, "OTHER", asked)], VLM_FAMILIES[entry["family"]],
                                 original, resized)  # fmt: skip
    assert read.boxes[0] == pytest.approx(entry["expected"][expected_index]["box_original_xyxy"], abs=0.01)


def test_categories_qwen3_vl_skips_are_not_visible_and_take_no_other_box():
    """Qwen3-VL's trained behaviour: categories it does not see are left out (tv, air conditioner, person)."""
    entry = next(e for e in FIXTURE if e["id"] == "q3_dining_table_categories")
    entities = [(c, "OTHER", c) for c in entry["asked"]]
    read = read_grounding_answer(entry["answer"], entities, "relative-1000", (1000, 1000), (1000, 1000))
    labels = {w["name"] for w in entry["expected"]}
    for (name, _, _), box, note in zip(entities, read.boxes, read.notes):
        if name in labels:
            first = next(w for w in entry["expected"] if w["name"] == name)
            assert box == pytest.approx([float(v) for v in first["box_model"]]), name
        else:
            assert box is None and note == NOTE_NOT_MENTIONED, name


def test_answers_without_boxes_give_none_with_a_note():
    point = next(e for e in FIXTURE if e["id"] == "q3_point_only_no_box")
    read = read_grounding_answer(point["answer"], [("free space", "OTHER", "free space")], "relative-1000",
                                 (480, 640), (480, 640))  # fmt: skip
    assert read.boxes == [None] and read.notes[0] in (NOTE_NOT_MENTIONED, NOTE_MALFORMED)
    prose = read_grounding_answer(
        "I cannot see any of them.", [("Obama", "PER", "a man")], "absolute", (10, 10), (10, 10)
    )
    assert prose.boxes == [None] and prose.notes == [NOTE_UNPARSABLE]


# ---------------------------------------------------------------------- Florence-2
@pytest.fixture(scope="module")
def florence_processor():
    from riveg_hf.testing import tiny_florence2

    return tiny_florence2()[1]


@pytest.mark.parametrize("entry", [e for e in FLORENCE if e["expected"] and e["expected"][0]["name"]],
                         ids=lambda e: e["id"])  # fmt: skip
def test_florence2_answers_post_processed_as_transformers_does(entry, florence_processor):
    task = entry.get("task") or "<OD>"
    size = (entry["image"]["width"], entry["image"]["height"])
    if task not in (
        "<OD>",
        "<CAPTION_TO_PHRASE_GROUNDING>",
        "<OPEN_VOCABULARY_DETECTION>",
        "<DENSE_REGION_CAPTION>",
    ):
        pytest.skip(f"task {task} is not a box task")
    parsed = florence_processor.post_process_generation(text=entry["answer"], task=task, image_size=size)[
        task
    ]
    boxes = parsed.get("bboxes") or []
    labels = parsed.get("labels") or parsed.get("bboxes_labels") or []
    got = [float(v) for b in boxes for v in b]
    assert got == pytest.approx(
        [float(v) for w in entry["expected"] for v in w["box_original_xyxy"]], abs=1.0
    )
    # each phrase goes to the query that contains it (the rule of riveg_hf.stages.grounders.florence2); a label
    # repeated for several boxes ("wheel", "wheel") goes to the next query that contains it
    queries = [f"{w['name']} in the photo" for w in entry["expected"]]
    assert assign_phrases([str(x) for x in labels], queries) == list(range(len(queries)))


def test_florence2_phrase_grounding_of_a_sentence_and_non_ascii_names():
    """ "A green car parked in front of a yellow building." is grounded as "A green car" and "a yellow
    building" (transformers.js' test): each belongs to the query that contains it; the processor drops
    non-ASCII letters ("Beyoncé" -> "Beyonc"), so both sides are folded the same way."""
    entry = next(e for e in FIXTURE if e["id"] == "fl2_tjs_phrase_grounding")
    phrases = [w["name"] for w in entry["expected"]]
    assert assign_phrases(phrases, ["a green car parked in front of the house", "a yellow building"]) == [
        0,
        1,
    ]
    assert assign_phrases(phrases, ["a yellow building", "a green car"]) == [1, 0]  # any order
    assert assign_phrases(["Beyonc"], ["Beyoncé on stage"]) == [0]
    assert assign_phrases(["a man", "a man"], ["a man in a suit", "a man with a beard"]) == [0, 1]
    assert assign_phrases(["a dog"], ["Obama, a person"]) == [None]


# ---------------------------------------------------------------------- constructed variants
ENTS = [("Lionel Messi", "PER", "an Argentine footballer"), ("Paris", "LOC", "a city with a tall iron tower"),
        ("NASA", "ORG", "a space agency logo")]  # fmt: skip


def _read(answer, ents=ENTS, size=(1000, 1000)):
    return read_grounding_answer(answer, ents, "relative-1000", size, size)


@pytest.mark.parametrize(
    ("answer", "boxes"),
    [
        # extra and repeated objects keyed "label" never fill an entity the answer does not name
        ('[{"bbox_2d": [1, 1, 5, 5], "label": "cake"}, {"bbox_2d": [6, 6, 9, 9], "label": "cake"}, '
         '{"bbox_2d": [10, 10, 20, 20], "label": "Paris"}]', [None, [10, 10, 20, 20], None]),
        # omitted entity + another order
        ('[{"bbox_2d": [30, 30, 40, 40], "label": "NASA"}, {"bbox_2d": [10, 10, 20, 20], "label": "Paris"}]',
         [None, [10, 10, 20, 20], [30, 30, 40, 40]]),
        # name variants: case, a type tag, no space, a hashtag, a description instead of the name
        ('[{"bbox_2d": [1, 1, 9, 9], "label": "LIONEL MESSI (PER)"}, {"bbox_2d": [10, 10, 20, 20], "label": "#Paris"}, '
         '{"bbox_2d": [30, 30, 40, 40], "label": "a space agency logo"}]',
         [[1, 1, 9, 9], [10, 10, 20, 20], [30, 30, 40, 40]]),
        ('[{"bbox_2d": [1, 1, 9, 9], "entity": "LionelMessi"}]', [[1, 1, 9, 9], None, None]),
        # the keys real models use
        ('[{"bbox": [1, 1, 9, 9], "name": "Lionel Messi"}, {"box_2d": [10, 10, 20, 20], "text": "Paris"}, '
         '{"bbox_2d": [], "label": "NASA"}]', [[1, 1, 9, 9], [10, 10, 20, 20], None]),
        ('[{"bbox_2d": [1, 1, 9, 9], "names": {"zh": "梅西", "en": "Lionel Messi"}}]', [[1, 1, 9, 9], None, None]),
        ('{"Lionel Messi": [1, 1, 9, 9], "Paris": null}', [[1, 1, 9, 9], None, None]),
        # position only when the counts agree and nothing contradicts it
        ('[[1, 1, 9, 9], null, [30, 30, 40, 40]]', [[1, 1, 9, 9], None, [30, 30, 40, 40]]),
        ('[{"bbox_2d": [1, 1, 9, 9], "label": "Paris"}, {"bbox_2d": [10, 10, 20, 20]}, {"bbox_2d": [30, 30, 40, 40]}]',
         [None, [1, 1, 9, 9], None]),
        # Qwen2-VL's box tokens, kept or stripped by the decoder
        ("<|object_ref_start|>Paris<|object_ref_end|><|box_start|>(10,10),(20,20)<|box_end|><|im_end|>",
         [None, [10, 10, 20, 20], None]),
        ("Paris(10,10),(20,20)", [None, [10, 10, 20, 20], None]),
    ],
)  # fmt: skip
def test_constructed_variants_put_each_box_on_its_own_entity(answer, boxes):
    read = _read(answer)
    assert read.boxes == [None if b is None else [float(v) for v in b] for b in boxes]


def test_non_latin_names_never_collide():
    ents = [("Москва", "LOC", "Москва"), ("Милан", "LOC", "Милан"), ("北京", "LOC", "北京"), ("上海", "LOC", "上海"),
            ("Zürich", "LOC", "Zürich"), ("Zurich Airport", "LOC", "an airport")]  # fmt: skip
    answer = json.dumps([{"bbox_2d": [300, 300, 400, 400], "label": "上海"}, {"bbox_2d": [1, 1, 9, 9], "label": "Милан"},
                         {"bbox_2d": [500, 500, 600, 600], "label": "Zürich"}], ensure_ascii=False)  # fmt: skip
    read = _read(answer, ents)
    assert read.boxes == [None, [1.0, 1.0, 9.0, 9.0], None, [300.0, 300.0, 400.0, 400.0], [500.0, 500.0, 600.0, 600.0],
                          None]  # fmt: skip
    assert len({normalize_name(e) for e, _, _ in ents}) == len(ents)


def test_a_repeated_mention_shares_its_object_and_two_entities_never_share_one_otherwise():
    ents = [("Messi", "PER", "a footballer"), ("Paris", "LOC", "a city"), ("Messi", "PER", "a footballer")]
    read = _read('[{"bbox_2d": [1, 1, 9, 9], "label": "Messi"}]', ents)
    assert read.boxes[0] == read.boxes[2] == [1.0, 1.0, 9.0, 9.0] and read.boxes[1] is None
    # "a man" fits two descriptions: the answer does not say which, so neither gets it
    ents = [("Obama", "PER", "a man in a suit"), ("Biden", "PER", "a man with white hair")]
    read = _read('[{"bbox_2d": [1, 1, 9, 9], "label": "a man"}]', ents)
    assert read.boxes == [None, None]


@pytest.mark.parametrize(
    "answer",
    [
        '[{"bbox_2d": [' + "9" * 400 + ', 1, 2, 3], "label": "Paris"}]',  # OverflowError as a float
        '[{"bbox_2d": [' + "9" * 5000 + ', 1, 2, 3], "label": "Paris"}]',  # Python's digit limit
        "[" * 200_000 + "]" * 200_000,  # RecursionError in a decoder
        '[{"bbox_2d": [true, 1, 2, 3], "label": "Paris"}]',  # true is not a coordinate
        '[{"bbox_2d": ["10", "10", "20", "20"], "label": "Paris"}]',  # neither is a string
        '[{"bbox_2d": [NaN, 1, 2, 3], "label": "Paris"}]',
        '[{"bbox_2d": [1, 1, Infinity, 3], "label": "Paris"}]',
        '[{"bbox_2d": {"x1": 1}, "label": "Paris"}]',
        "{" * 10_000,
    ],
)
def test_hostile_answers_never_raise_and_never_become_coordinates(answer):
    read = _read(
        answer
    )  # bounded work (at most MAX_ANSWER_CHARS read, 256 decode attempts): no hang, no raise
    assert read.boxes == [None, None, None]
    assert all(n is not None for n in read.notes)


def test_a_null_entity_name_is_not_the_entity_named_none():
    ents = [("None", "PER", "a band"), ("Paris", "LOC", "a city")]
    read = _read(
        '[{"bbox_2d": [1, 1, 9, 9], "entity": null}, {"bbox_2d": [10, 10, 20, 20], "label": "Paris"}]', ents
    )
    assert read.boxes[1] == [10.0, 10.0, 20.0, 20.0]
    assert read.boxes[0] == [1.0, 1.0, 9.0, 9.0]  # by position (2 objects, 2 entities, nothing contradicts)
    objects = parse_objects('[{"bbox_2d": [1, 1, 9, 9], "entity": null}]')
    assert objects[0].names == []
    assert match_objects(objects, [("None", None), ("x", None)]).index == [None, None]


def test_the_grpo_reward_survives_hostile_answers():
    from riveg_hf.training.vlm import grounding_reward

    refs = [{"start": 0, "end": 1, "type": "PER", "boxes": [[0, 0, 50, 50]]}]
    kw = dict(names=["Obama"], spans=[[0, 1, "PER"]], references=refs, convention="relative-1000",
              original_size=(100, 100), input_size=(112, 112))  # fmt: skip
    for answer in ('[{"bbox_2d": [' + "9" * 5000 + ', 1, 2, 3], "label": "Obama"}]', "[" * 200_000, None, ""):
        assert grounding_reward(answer, **kw) <= 0.0


# ---------------------------------------------------------------------- through the model
def _answer_with(monkeypatch, g, ids):
    """The model's generate, made to answer ``ids`` (uniform token scores): a real answer through the grounder."""
    real, tok = g.model.generate, g.processor.tokenizer

    def canned(**kw):
        out = real(**{**kw, "max_new_tokens": 1})
        new = torch.tensor([[*ids, tok.eos_token_id]])
        out.sequences = torch.cat([kw["input_ids"], new], dim=1)
        out.scores = tuple(torch.zeros(1, len(tok)) for _ in range(new.shape[1]))
        return out

    monkeypatch.setattr(g.model, "generate", canned)


def test_a_chinese_label_split_across_tokens_decodes_whole_and_matches(monkeypatch):
    """Byte-level tokens split "击掌" into several tokens; decoding each alone gives U+FFFD and the label never
    matched. The grounder decodes the whole sequence and keeps each token's span for box_score."""
    from riveg_hf.stages import Grounder
    from riveg_hf.testing import tiny_qwen2_5_vl

    g = Grounder(*tiny_qwen2_5_vl())
    tok = g.processor.tokenizer
    answer = '[{"bbox_2d": [0, 0, 56, 42], "label": "击掌"}]'
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    assert "\ufffd" in "".join(tok.decode([i]) for i in ids)  # the old per-token decoding broke it
    _answer_with(monkeypatch, g, ids)
    [[(box, score)]] = g.ground_many([(Image.new("RGB", (120, 80)), ["击掌"])],
                                     contexts=[{"text": "t", "entities": [("击掌", "OTHER", "high five")]}])  # fmt: skip
    assert box == pytest.approx([0.0, 0.0, 60.0, 40.0]) and score == pytest.approx(1 / len(tok))


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl_moe"])
def test_qwen2_vl_and_qwen3_vl_moe_answer_in_relative_coordinates(family, monkeypatch):
    from riveg_hf.stages import Grounder
    from riveg_hf.testing import tiny_qwen2_vl, tiny_qwen3_vl_moe

    g = Grounder(*{"qwen2_vl": tiny_qwen2_vl, "qwen3_vl_moe": tiny_qwen3_vl_moe}[family]())
    assert g.convention == "relative-1000"
    tok = g.processor.tokenizer
    answer = "<|object_ref_start|>Obama<|object_ref_end|><|box_start|>(250,500),(750,1000)<|box_end|>"
    if family == "qwen3_vl_moe":
        answer = '[{"bbox_2d": [250, 500, 750, 1000], "label": "Obama"}]'
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    _answer_with(monkeypatch, g, ids)
    [[(box, _)]] = g.ground_many([(Image.new("RGB", (200, 100)), ["a man"])],
                                 contexts=[{"text": "t", "entities": [("Obama", "PER", "a man")]}])  # fmt: skip
    assert box == [50.0, 50.0, 150.0, 100.0]
