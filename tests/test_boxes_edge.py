"""A box a few pixels past the image edge -- which real VLMs answer often -- is clipped and kept; ints, numpy
numbers, relative boxes over 1000 and 1e308 never turn a tweet into an error line (hardening round 3)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from riveg_hf.boxes import box_in_image, clip_xyxy
from riveg_hf.stages.grounder import Localization
from riveg_hf.stages.vlm_grounding import NOTE_OUTSIDE, read_grounding_answer

from .test_real_vlm_answers import _answer_with

ENTS = [("Obama", "PER", "a man"), ("Paris", "LOC", "a city")]


def test_clipping_returns_floats_whatever_numbers_came_in():
    assert clip_xyxy([-3, 2, 70, 50], 64, 48) == [0.0, 2.0, 64.0, 48.0]
    assert all(type(v) is float for v in clip_xyxy([1, 1, 100, 100], 64, 48))
    assert all(type(v) is float for v in box_in_image(np.array([1, 1, 100, 100], dtype=np.int64), 64, 48))


@pytest.mark.parametrize(
    ("convention", "box", "expected"),
    [
        # Qwen2.5-VL answers pixels of the resized input (112x84 for a 120x80 image): past the right/bottom edge
        ("absolute", [1, 1, 120, 90], [1 * 120 / 112, 1 * 80 / 84, 120.0, 80.0]),
        ("absolute", [-4, -2, 56, 42], [0.0, 0.0, 60.0, 40.0]),
        # Qwen2-VL / Qwen3-VL answer 0-1000: a box over 1000 is past the edge too
        ("relative-1000", [500, 0, 1040, 1003], [60.0, 0.0, 120.0, 80.0]),
        ("relative-1000", [500, 0, 1e308, 1000], [60.0, 0.0, 120.0, 80.0]),  # 1e308 * 0.12: finite, clipped
    ],
)
def test_a_box_past_the_edge_is_clipped_and_the_other_entity_keeps_its_box(convention, box, expected):
    answer = f'[{{"bbox_2d": {box}, "label": "Obama"}}, {{"bbox_2d": [0, 0, 10, 10], "label": "Paris"}}]'
    read = read_grounding_answer(answer, ENTS, convention, (120, 80), (112, 84))
    assert read.boxes[0] == pytest.approx(expected) and read.notes[0] is None
    assert read.boxes[1] is not None
    loc = Localization(read.boxes, [0.5, 0.5], None, read.notes)  # what every grounder returns: accepted
    assert loc.boxes[0] == pytest.approx(expected)


def test_an_infinite_box_is_not_visible_with_a_note_and_costs_only_its_entity():
    answer = '[{"bbox_2d": [0, 0, 1.7e308, 1.7e308], "label": "Obama"}, {"bbox_2d": [0, 0, 56, 42], "label": "Paris"}]'
    read = read_grounding_answer(answer, ENTS, "absolute", (120, 80), (112, 84))  # 1.7e308 * 120/112 = inf
    assert read.boxes[0] is None and read.notes[0] == NOTE_OUTSIDE
    assert read.boxes[1] == [0.0, 0.0, 60.0, 40.0]


def test_localization_takes_int_and_numpy_coordinates_and_notes_an_unusable_box():
    loc = Localization(
        [
            [1, 2, 64, 48],
            np.array([0, 0, 5, 5], dtype=np.float32),
            [float("nan"), 0, 1, 1],
            [5, 5, 1, 1],
            None,
        ],
        [0.9, 0.8, 0.7, 0.6, None],
    )
    assert loc.boxes[0] == [1.0, 2.0, 64.0, 48.0] and all(type(v) is float for v in loc.boxes[0])
    assert loc.boxes[1] == [0.0, 0.0, 5.0, 5.0]
    assert loc.boxes[2] is None and "NaN" in loc.notes[2]
    assert loc.boxes[3] is None and "xmax < xmin" in loc.notes[3]
    assert loc.boxes[4] is None and loc.notes[4] is None


def test_the_in_process_qwen_grounder_keeps_a_box_past_the_edge(monkeypatch):
    from riveg_hf.stages import Grounder
    from riveg_hf.testing import tiny_qwen2_5_vl

    g = Grounder(*tiny_qwen2_5_vl())
    tok = g.processor.tokenizer
    answer = '[{"bbox_2d": [1, 1, 120, 90], "label": "Obama"}]'
    _answer_with(monkeypatch, g, tok(answer, add_special_tokens=False)["input_ids"])
    [[(box, score)]] = g.ground_many(
        [(Image.new("RGB", (120, 80)), ["a man"])], contexts=[{"text": "t", "entities": [ENTS[0]]}]
    )
    assert box == pytest.approx([120 / 112, 80 / 84, 120.0, 80.0]) and score is not None
