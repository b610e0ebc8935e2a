"""Training a joint reader (`riveg train reader`): targets in each family's coordinates and answer format, answer-only
labels, reasoning chains and box jitter as E2E-GMNER builds them, the reward table, SFT that overfits, GRPO that logs
each reward, the CLI round trip into the pipeline, and two processes under torchrun."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys

import pytest

from datasets_scripts import twitter_gmner
from riveg_hf import RiVEGPipeline
from riveg_hf.boxes import iou_xyxy
from riveg_hf.cli import main as cli
from riveg_hf.data import load_built_dataset
from riveg_hf.stages import JointReader
from riveg_hf.stages.reader import ReadRequest
from riveg_hf.testing import tiny_qwen2_5_vl, tiny_qwen3_vl, tiny_sam
from riveg_hf.training import train
from riveg_hf.training.reader import (
    ReaderTrainingArguments,
    _ReaderEncoder,
    completion_answer,
    grpo_dataset,
    jitter_box,
    load_reasoning,
    reader_examples,
    train_reader,
)
from riveg_hf.training.rewards import answer_rewards, total_reward

from .helpers import make_image, save_pair, write_release

BOX = [10, 8, 40, 30]  # Ferrari's gold box in the 64x48 image; Paris is not visible
# (visible entity, its type, its box, its colour; the tweet's second entity is not visible)
VISIBLE = [
    ("Ferrari", "ORG", [10, 8, 40, 30], (220, 20, 20)),
    ("Obama", "PER", [2, 2, 30, 44], (230, 200, 20)),
    ("Nike", "ORG", [30, 10, 62, 40], (20, 20, 220)),
    ("Messi", "PER", [20, 4, 50, 46], (20, 200, 20)),
    ("Rome", "LOC", [0, 24, 64, 48], (200, 20, 200)),
    ("Tesla", "ORG", [4, 4, 24, 24], (20, 200, 200)),
    ("Oscars", "OTHER", [24, 16, 56, 40], (120, 60, 20)),
    ("Madonna", "PER", [8, 12, 36, 44], (250, 250, 250)),
]
HIDDEN = [("Paris", "LOC"), ("NASA", "ORG"), ("Kenya", "LOC"), ("Apple", "ORG")]
TAG = {"PER": "PER", "ORG": "ORG", "LOC": "LOC", "OTHER": "OTHER"}


def _tweet(i: int, split: str) -> dict:
    name, typ, box, color = VISIBLE[i % len(VISIBLE)]
    other, otype = HIDDEN[i % len(HIDDEN)]
    return {
        "id": f"{split}{i}",
        "tokens": [name, "meets", other],
        "tags": [f"B-{TAG[typ]}", "O", f"B-{TAG[otype]}"],
        "objects": [(name, box)],
        "size": (64, 48),
        "box": box,
        "color": color,
    }


def _build(root, splits):
    raw = write_release(root / "raw", splits)
    (root / "img").mkdir()
    for rows in splits.values():
        for r in rows:
            make_image((64, 48), color=(128, 128, 128), box=r["box"], box_color=r["color"]).save(
                root / "img" / f"{r['id']}.jpg"
            )
    twitter_gmner.build(raw, root / "ds", images=root / "img")
    return root / "ds"


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """8 training tweets (one visible entity each, one not visible), 2 validation, 2 test."""
    root = tmp_path_factory.mktemp("readertrain")
    splits = {"train": [_tweet(i, "t") for i in range(8)], "dev": [_tweet(i, "d") for i in range(2)],
              "test": [_tweet(i, "x") for i in range(2)]}  # fmt: skip
    return _build(root, splits)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_pair(tiny_qwen2_5_vl(), tmp_path_factory.mktemp("readerbase") / "base")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    """Stand-ins for E2E-GMNER's prompt texts (not shipped: its repository has no license)."""
    root = tmp_path_factory.mktemp("e2eprompts")
    (root / "instruction.txt").write_text("List the entities with type and box.\nText: ")
    (root / "system.txt").write_text("You extract grounded entities.")
    return {"instruction_file": str(root / "instruction.txt"), "system_prompt_file": str(root / "system.txt")}


def _examples(ds, **kw):
    exs, counts = reader_examples(load_built_dataset(str(ds), "gmner")["train"], **kw)
    return exs, counts


def _e2e_reader(prompts, pair=None):
    with pytest.warns(UserWarning, match="SHA-256 differs"):  # stand-ins, not E2E-GMNER's own texts
        return JointReader(*(pair or tiny_qwen2_5_vl()), family="e2e-gmner", **prompts)


def _input_size(enc, x):
    image = enc.image(x)
    grid = enc.proc.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
    return image, enc.input_size(grid)


# ------------------------------------------------------------------------------------------- targets
def test_examples_are_every_gold_entity_in_text_order(eight):
    exs, counts = _examples(eight)
    assert counts["tweets"] == 8 and counts["entities"] == 16 and counts["visible_entities"] == 8
    x = exs[0]
    assert x["text"] == "Ferrari meets Paris"
    assert x["entities"] == [("Ferrari", "ORG", [[10.0, 8.0, 40.0, 30.0]]), ("Paris", "LOC", [])]
    assert [r["boxes"] for r in x["references"]] == [[[10.0, 8.0, 40.0, 30.0]], []]


def test_targets_in_each_family_coordinates_by_hand(eight, prompts):
    x = _examples(eight)[0][0]
    # Qwen2.5-VL (qwen-vl format): pixels of the processor's resized image. 64x48 -> 56x56 (min_pixels 4*28*28):
    # [10, 8, 40, 30] * (56/64, 56/48) = [8.75, 9.33, 35, 35] -> [9, 9, 35, 35]
    q25 = _ReaderEncoder(JointReader(*tiny_qwen2_5_vl()), "qwen-vl")
    image, size = _input_size(q25, x)
    assert size == (56, 56)
    assert q25.target(x, image, size) == (
        '[{"entity": "Ferrari", "type": "ORG", "bbox_2d": [9, 9, 35, 35]}, '
        '{"entity": "Paris", "type": "LOC", "bbox_2d": null}]'
    )
    # Qwen3-VL: 0..1000 on each axis whatever the resize: 10/64, 8/48, 40/64, 30/48 -> 156, 167, 625, 625
    q3 = _ReaderEncoder(JointReader(*tiny_qwen3_vl()), "qwen-vl")
    image3, size3 = _input_size(q3, x)
    assert q3.target(x, image3, size3).startswith(
        '[{"entity": "Ferrari", "type": "ORG", "bbox_2d": [156, 167, 625, 625]}'
    )
    # E2E-GMNER: pixels of the image resized within 200704..802816 pixels (its smart_resize, factor 28):
    # 64x48 -> beta = sqrt(200704 / 3072) = 8.083; w = ceil(64 * 8.083 / 28) * 28 = 532, h = ceil(48 * 8.083 / 28) * 28
    # = 392; [10, 8, 40, 30] * (532/64, 392/48) = [83.1, 65.3, 332.5, 245] -> [83, 65, 332, 245] (round half to even,
    # as E2E-GMNER's int(round(...)))
    e2e = _ReaderEncoder(_e2e_reader(prompts), "e2e-gmner")
    image_e, size_e = _input_size(e2e, x)
    assert size_e == (532, 392)
    assert e2e.target(x, image_e, size_e) == "Ferrari|ORG|[83,65,332,245]; Paris|LOC|None"
    # each target reads back, through the reader's own parser, to the gold entities, types and boxes
    for enc, im, sz in ((q25, image, size), (q3, image3, size3), (e2e, image_e, size_e)):
        answer = enc.target(x, im, sz)
        reading = enc.reader.reading(answer, ReadRequest(x["image"].get(), x["text"]), im.size, sz)
        got = [(e.entity, e.type, e.start, e.end) for e in reading.entities]
        assert got == [("Ferrari", "ORG", 0, 7), ("Paris", "LOC", 14, 19)], answer
        assert iou_xyxy(reading.entities[0].box, BOX) > 0.9 and reading.entities[1].box is None
        assert not reading.notes


def test_several_boxes_and_no_entity(prompts):
    from riveg_hf.training.reader import e2e_gmner_target, qwen_vl_target

    ents = [("Messi", "PER", [[0, 0, 8, 8], [10, 10, 40, 40]]), ("Miami", "LOC", [])]
    # qwen-vl: one box per entity, the largest; e2e-gmner: all of them, as E2E-GMNER's format_bboxes
    assert '"bbox_2d": [10, 10, 40, 40]' in qwen_vl_target(ents, "absolute", (64, 48), (64, 48))
    assert e2e_gmner_target(ents, (64, 48), (64, 48)) == "Messi|PER|[[0,0,8,8],[10,10,40,40]]; Miami|LOC|None"
    assert qwen_vl_target([], "absolute", (64, 48), (64, 48)) == "[]"
    assert e2e_gmner_target([], (64, 48), (64, 48)) == "None"


def test_loss_is_on_the_answer_tokens_only(eight):
    exs, _ = _examples(eight)
    enc = _ReaderEncoder(JointReader(*tiny_qwen2_5_vl()), "qwen-vl")
    batch = enc.collate(exs[:2])
    tok = enc.tok
    for x, ids, labels in zip(exs[:2], batch["input_ids"], batch["labels"]):
        kept = labels[labels != -100].tolist()
        image, size = _input_size(enc, x)
        assert tok.decode(kept) == enc.target(x, image, size) + "<|im_end|>"
        assert tok.convert_tokens_to_ids("<|image_pad|>") not in kept
        n_prompt = int((labels[: len(labels) - len(kept)] == -100).sum())
        assert labels[:n_prompt].eq(-100).all() and ids[n_prompt : n_prompt + len(kept)].tolist() == kept
        prompt = tok.decode(ids[:n_prompt])
        assert x["text"] in prompt and "Find every named entity" in prompt  # the reader's own prompt
    assert enc.seen == 2


# ------------------------------------------------------------------------------------------- reasoning, jitter
def test_reasoning_chains_in_e2e_gmner_layout(eight, prompts, tmp_path):
    chains = tmp_path / "teacher_cot_train.jsonl"
    chains.write_text(
        json.dumps({"image_path": "data/raw/twitter2017_images/t0.jpg", "think": "a red car: Ferrari"}) + "\n"
        + json.dumps({"image_path": "imgs/t1.png", "cot": "a man: Obama"}) + "\n\n"
        + json.dumps({"image_path": "imgs/zz.jpg", "reasoning": ""}) + "\n"
    )  # fmt: skip
    table = load_reasoning(str(chains))
    assert table == {"t0": "a red car: Ferrari", "t1": "a man: Obama"}
    exs, counts = _examples(eight, reasoning=table)
    assert counts["without_reasoning"] == 6
    enc = _ReaderEncoder(_e2e_reader(prompts), "e2e-gmner")
    image, size = _input_size(enc, exs[0])
    assert enc.target(exs[0], image, size) == (
        "<think>a red car: Ferrari</think><answer>Ferrari|ORG|[83,65,332,245]; Paris|LOC|None</answer>"
    )
    assert enc.target(exs[2], *_input_size(enc, exs[2])).startswith("<think></think><answer>Nike|ORG|")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image_path": "a.jpg", "think": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        load_reasoning(str(bad))
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"path": "a.jpg"}\n')
    with pytest.raises(ValueError, match="image_path and a non-empty think"):
        load_reasoning(str(empty))


def test_box_jitter_as_e2e_gmner_grbp():
    gold = [100.0, 80.0, 300.0, 240.0]
    draws = [jitter_box(gold, (532, 392), 0.1, random.Random(s)) for s in range(200)]
    assert all(iou_xyxy(d, gold) >= 0.6 for d in draws)  # the IoU guard
    assert sum(d != gold for d in draws) > 190  # almost every draw moves the box
    # centre shifts are at most beta * w (truncated Gaussian, cap = min(beta, 2 sigma)) = 0.1 * 200 = 20 px
    assert all(abs((d[0] + d[2]) / 2 - 200) <= 20 + 1e-9 for d in draws)
    assert jitter_box(gold, (532, 392), 0.1, random.Random(7)) == jitter_box(
        gold, (532, 392), 0.1, random.Random(7)
    )
    # a box under 32x32 px is jittered at half strength: shifts within 0.05 * w
    small = [10.0, 10.0, 30.0, 30.0]
    assert all(abs((d[0] + d[2]) / 2 - 20) <= 1.0 + 1e-9
               for d in (jitter_box(small, (100, 100), 0.1, random.Random(s)) for s in range(100)))  # fmt: skip
    assert jitter_box([5, 5, 6, 6], (100, 100), 0.1, random.Random(0)) == [
        5,
        5,
        6,
        6,
    ]  # under 2 px: unchanged


def test_jittered_targets_change_between_epochs(eight):
    exs, _ = _examples(eight)
    enc = _ReaderEncoder(JointReader(*tiny_qwen2_5_vl()), "qwen-vl", jitter=0.3, seed=1)
    image, size = _input_size(enc, exs[3])
    plain = enc.target(exs[3], image, size, jitter=0.0)
    drawn = [enc.target(exs[3], image, size) for _ in range(10)]
    assert len(set(drawn)) > 2 and plain not in drawn  # a new box each time the target is built
    for answer in drawn:  # the entities and types never change, the box stays on the object
        objs = json.loads(answer)
        assert [(o["entity"], o["type"]) for o in objs] == [("Messi", "PER"), ("Apple", "ORG")]
        assert objs[1]["bbox_2d"] is None
        assert iou_xyxy(objs[0]["bbox_2d"], json.loads(plain)[0]["bbox_2d"]) >= 0.5
    again = _ReaderEncoder(JointReader(*tiny_qwen2_5_vl()), "qwen-vl", jitter=0.3, seed=1)
    assert [again.target(exs[3], image, size) for _ in range(10)] == drawn  # seeded: the same run twice


# ------------------------------------------------------------------------------------------- rewards
GOLD = [
    {"start": 0, "end": 1, "type": "ORG", "boxes": [BOX]},
    {"start": 2, "end": 3, "type": "LOC", "boxes": []},
]
RIGHT = '{"entity": "Ferrari", "type": "ORG", "bbox_2d": [9, 9, 35, 35]}'
PARIS = '{"entity": "Paris", "type": "LOC", "bbox_2d": null}'


@pytest.mark.parametrize(
    ("case", "answer", "expected"),
    [
        ("right", f"[{RIGHT}, {PARIS}]", dict(format=1, count=1, span=1, type=1, region=1, gmner=1)),
        # Ferrari typed PER: the span and the region are right, the type (MNER) and GMNER get 1 of 2
        ("wrong type", f'[{RIGHT.replace("ORG", "PER")}, {PARIS}]',
         dict(format=1, count=1, span=1, type=0.5, region=1, gmner=0.5)),
        # Ferrari's box off the car (IoU 0): region 1 of 2 span-matched entities, GMNER 1 of 2
        ("wrong box", f'[{RIGHT.replace("[9, 9, 35, 35]", "[40, 40, 56, 56]")}, {PARIS}]',
         dict(format=1, count=1, span=1, type=1, region=0.5, gmner=0.5)),
        # Paris missing: 1 of 2 entities -> count 1/2, F1 = 2 * 1 / (1 + 2)
        ("missing", f"[{RIGHT}]", dict(format=1, count=0.5, span=2 / 3, type=2 / 3, region=1, gmner=2 / 3)),
        # a spurious "meets": 3 predicted for 2 gold -> count 2/3, F1 = 2 * 2 / (3 + 2)
        ("spurious", f'[{RIGHT}, {PARIS}, {{"entity": "meets", "type": "OTHER", "bbox_2d": null}}]',
         dict(format=1, count=2 / 3, span=0.8, type=0.8, region=1, gmner=0.8)),
        # a box of three numbers: out of format; the reader keeps Ferrari as not visible (region wrong)
        ("malformed box", f'[{RIGHT.replace("[9, 9, 35, 35]", "[9, 9, 35]")}, {PARIS}]',
         dict(format=0, count=1, span=1, type=1, region=0.5, gmner=0.5)),
        ("not an answer", "I cannot tell.", dict(format=0, count=0, span=0, type=0, region=0, gmner=0)),
    ],
)  # fmt: skip
def test_reward_table(case, answer, expected):
    reader = JointReader(*tiny_qwen2_5_vl())
    got = answer_rewards(reader, answer, ["Ferrari", "meets", "Paris"], GOLD, (64, 48), (56, 56))
    assert got == pytest.approx(expected), case
    assert total_reward(got) == pytest.approx(expected["gmner"])
    assert total_reward(got, "sake") == pytest.approx(0.9 * expected["gmner"] + 0.1 * expected["format"])
    assert total_reward(got, "mean") == pytest.approx(
        sum(expected[k] for k in ("format", "count", "span", "type", "region")) / 5
    )


def test_e2e_gmner_rewards_read_its_own_format(prompts):
    reader = _e2e_reader(prompts)
    kw = dict(original_size=(64, 48), input_size=(532, 392), reasoning=True)
    tokens = ["Ferrari", "meets", "Paris"]
    right = "<think>red car</think><answer>Ferrari|ORG|[83,65,332,245]; Paris|LOC|None</answer>"
    assert answer_rewards(reader, right, tokens, GOLD, **kw) == pytest.approx(
        dict(format=1, count=1, span=1, type=1, region=1, gmner=1)
    )
    no_think = "<answer>Ferrari|ORG|[83,65,332,245]; Paris|LOC|None</answer>"
    assert (
        answer_rewards(reader, no_think, tokens, GOLD, **kw)["format"] == 0
    )  # trained with reasoning: needs it
    assert answer_rewards(reader, no_think, tokens, GOLD, **kw)["gmner"] == 1
    assert answer_rewards(reader, "Ferrari|ORG|[83,65,332,245]; Paris|LOC|None", tokens, GOLD,
                          original_size=(64, 48), input_size=(532, 392))["format"] == 1  # fmt: skip


def test_nothing_to_find_and_nothing_found_is_right():
    reader = JointReader(*tiny_qwen2_5_vl())
    got = answer_rewards(reader, "[]", ["good", "morning"], [], (64, 48), (56, 56))
    assert got == dict(format=1, count=1, span=1, type=1, region=1, gmner=1)
    spurious = answer_rewards(reader, f"[{PARIS}]", ["morning", "in", "Paris"], [], (64, 48), (56, 56))
    assert spurious == dict(format=1, count=0, span=0, type=0, region=0, gmner=0)
    # an entity the tweet does not contain is never invented: nothing predicted, nothing gold
    assert answer_rewards(reader, f"[{PARIS}]", ["good", "morning"], [], (64, 48), (56, 56))["gmner"] == 1


# ------------------------------------------------------------------------------------------- GRPO inputs
def test_grpo_samples_from_what_the_reader_reads(eight):
    exs, _ = _examples(eight)
    reader = JointReader(*tiny_qwen2_5_vl())
    enc = _ReaderEncoder(reader, "qwen-vl")
    data = grpo_dataset(reader, enc, exs)
    assert len(data) == len(exs)
    for k in (0, 3):
        row, x = data[k], exs[k]
        sent = enc.image(x)
        # the very pixels the reader sends (a dataset-stored image would be re-encoded as a lossy JPEG)
        assert row["image"].size == sent.size and row["image"].tobytes() == sent.tobytes()
        assert row["prompt"] == reader.messages(ReadRequest(sent, x["text"], x["id"]), sent)
        assert json.loads(row["tokens"]) == x["tokens"] and json.loads(row["references"]) == x["references"]
        assert tuple(row["input_size"]) == _input_size(enc, x)[1]
    # a sampled completion is read as the reader reads its answers: up to its first end (EOS or padding) token,
    # special tokens kept in the text, not TRL's skip_special_tokens decoding
    tok = enc.tok
    answer = '[{"entity": "Ferrari", "type": "ORG", "bbox_2d": null}]'
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    assert completion_answer(tok, [*ids, tok.eos_token_id]) == answer
    assert completion_answer(tok, [*ids, tok.pad_token_id, *ids]) == answer
    assert completion_answer(tok, ids[:5]) == tok.decode(ids[:5])  # cut by the budget: what was written
    vision = tok.convert_tokens_to_ids("<|vision_start|>")
    assert completion_answer(tok, [*ids, vision], answer) == answer + "<|vision_start|>"
    assert completion_answer(tok, None, answer) == answer


def test_a_completion_budget_under_the_gold_answers_is_warned_about(eight, base, tmp_path):
    from riveg_hf.training.reader import _budget

    exs, _ = _examples(eight)
    enc = _ReaderEncoder(JointReader(*tiny_qwen2_5_vl()), "qwen-vl")
    longest = max(enc.answer_tokens(x) for x in exs)
    args = ReaderTrainingArguments(dataset=str(eight), base_model=base, output=str(tmp_path / "o"),
                                   max_new_tokens=longest - 1)  # fmt: skip
    with pytest.warns(UserWarning, match=rf"--max-new-tokens {longest - 1} is under the longest gold answer"):
        assert _budget(args, enc, exs) == longest - 1
    args.max_new_tokens = None
    assert _budget(args, enc, exs) == 2 * longest + 16


# ------------------------------------------------------------------------------------------- refusals
def test_arguments_refused_clearly(eight, base, tmp_path):
    common = dict(dataset=str(eight), base_model=base, output=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="multi-turn agent trajectories.*--format qwen-vl"):
        ReaderTrainingArguments(**common, format="sake")
    with pytest.raises(ValueError, match="--reasoning trains E2E-GMNER's"):
        ReaderTrainingArguments(**common, reasoning="chains.jsonl")
    with pytest.raises(ValueError, match=r"--box-jitter 2\.0: expected a number in \[0, 1\]"):
        ReaderTrainingArguments(**common, box_jitter=2.0)
    with pytest.raises(ValueError, match="--level fine needs a Twitter-FMNERG dataset.*'gmner'"):
        train_reader(ReaderTrainingArguments(**common, level="fine"))
    with pytest.raises(ValueError, match=r"does not take \['entities'\]"):
        train("reader", **common, entities="gold")
    assert not (tmp_path / "o").exists()


def test_e2e_gmner_format_refuses_fine_types(tmp_path, base, prompts):
    from datasets_scripts import twitter_fmnerg

    from .helpers import voc_xml
    from .test_fmnerg import TWEETS, _conll

    raw = tmp_path / "raw"
    (raw / "txt_fine").mkdir(parents=True)
    for s in ("train", "dev", "test"):
        (raw / "txt_fine" / f"{s}.txt").write_text(_conll(TWEETS[:4]))
    (raw / "xml").mkdir()
    (tmp_path / "img").mkdir()
    for tid, _, objects in TWEETS[:4]:
        if objects:
            (raw / "xml" / f"{tid}.xml").write_text(voc_xml(64, 48, objects))
        make_image((64, 48)).save(tmp_path / "img" / f"{tid}.jpg")
    twitter_fmnerg.build(raw, tmp_path / "ds", images=tmp_path / "img")
    args = ReaderTrainingArguments(dataset=str(tmp_path / "ds"), base_model=base, output=str(tmp_path / "o"),
                                   level="fine", format="e2e-gmner", **prompts)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"--format e2e-gmner reads the types \['PER', 'LOC', 'ORG', 'OTHER'\]"
    ):
        train_reader(args)
    assert args.config == "fine"
    exs, _ = reader_examples(load_built_dataset(str(tmp_path / "ds"), "fine")["train"])
    assert exs[0]["entities"][0][:2] == ("Messi", "athlete")  # fine types, as the qwen-vl reader is trained


# ------------------------------------------------------------------------------------------- CLI
def test_cli_round_trip_loads_in_the_pipeline(eight, base, tmp_path, capsys):
    out = tmp_path / "reader"
    argv = ["train", "reader", "--dataset", str(eight), "--base-model", base, "--output", str(out),
            "--max-steps", "1", "--batch-size", "4", "--max-eval-samples", "1", "--max-new-tokens", "8",
            "--seed", "3", "--save", "merged"]  # fmt: skip
    assert cli(argv) == 0
    run = json.loads((out / "riveg_run.json").read_text())
    assert run["task"] == "reader" and run["format"] == "qwen-vl" and run["method"] == "sft"
    assert run["fine_tuning"] == "lora" and run["arguments"]["lora_r"] == 32 and run["arguments"]["seed"] == 3
    assert isinstance(run["command"], str) and run["command"]  # the process's own command line
    assert run["data"]["dataset"] == str(eight) and run["data"]["config"] == "gmner"
    assert 0.0 <= run["best_validation_gmner_f1"] <= 1.0 and "gmner_f1" in run["validation"]
    assert run["wall_time_s"] > 0 and run["peak_rss_mb"] > 0 and run["train_examples"]["tweets"] == 8
    assert len(run["loss_history"]) == 1 and math.isfinite(run["loss_history"][0]["loss"])
    cfg = json.loads((out / "config.json").read_text())
    assert (
        cfg["riveg_entity_types"] == ["PER", "LOC", "ORG", "OTHER"]
        and cfg["riveg_reader_family"] == "qwen-vl"
    )
    card = (out / "README.md").read_text()
    assert f"`{base}` (a local folder)" in card and "SFT, lora" in card
    assert "Twitter-GMNER (config `gmner`" in card and "**Answer format**: `qwen-vl`" in card
    assert "gmner_f1:" in card and "GMNER F1" in card  # scores, and the model-index metadata
    reader = JointReader.from_pretrained(out)
    assert reader.family == "qwen-vl"
    pipe = RiVEGPipeline.from_components(reader=str(out), segmenter=tiny_sam(), reader_max_new_tokens=8)
    image = make_image((64, 48), color=(128, 128, 128), box=BOX, box_color=(220, 20, 20))
    result = pipe({"text": "Ferrari meets Paris", "image": image})
    assert isinstance(result, list)
    pipe.save_pretrained(tmp_path / "composite")
    comp = json.loads((tmp_path / "composite" / "config.json").read_text())
    assert "reader" in comp["components"] and "segmenter" in comp["components"]
    # a flag of the reader on another stage is refused, and so is the sake format, with exit code 2
    assert cli(["train", "grounder", "--dataset", str(eight), "--base-model", base, "--output", str(tmp_path / "g"),
                "--format", "e2e-gmner"]) == 2  # fmt: skip
    assert cli(["train", "reader", "--dataset", str(eight), "--base-model", base, "--output", str(tmp_path / "s"),
                "--format", "sake"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--format: flags of `riveg train reader`" in err and "SYSU-AI/SAKE-7B_gmner is a Qwen2.5-VL" in err


# ------------------------------------------------------------------------------------------- SFT overfits
@pytest.fixture(scope="module")
def overfit(eight, base, tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit") / "reader"
    rec = train_reader(
        ReaderTrainingArguments(
            dataset=str(eight),
            base_model=base,
            output=str(out),
            epochs=150,
            batch_size=8,
            learning_rate=1e-2,
            warmup_ratio=0.0,
            weight_decay=0.0,
            lora=False,
            validate_every=1000,
            max_eval_samples=2,
            gradient_checkpointing=False,  # a tiny model: recomputing activations only costs time
        )
    )
    return out, rec


@pytest.mark.slow  # minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
@pytest.mark.timeout(2400)
def test_sft_overfits_eight_tweets_to_their_gold_entities_types_and_boxes(overfit, eight):
    out, rec = overfit
    losses = [h["loss"] for h in rec["loss_history"]]
    assert losses[-1] < losses[0] / 20  # the loss falls
    reader = JointReader.from_pretrained(out)
    exs, _ = _examples(eight)
    readings = reader.read_many([ReadRequest(x["image"].get(), x["text"]) for x in exs])
    for x, reading in zip(exs, readings):
        got = [(e.entity, e.type) for e in reading.entities]
        assert got == [(n, t) for n, t, _ in x["entities"]], (x["text"], reading.answer)
        (visible, hidden) = reading.entities
        assert iou_xyxy(visible.box, x["entities"][0][2][0]) >= 0.5 and hidden.box is None, reading.answer
    # validation only on the last epoch (validate_every), by generation, recorded as the best
    assert len(rec["validation_history"]) == 1 and rec["best_epoch"] == 150
    assert rec["best_validation_gmner_f1"] == rec["validation"]["gmner_f1"] == 1.0


@pytest.mark.slow  # builds on the overfit run
@pytest.mark.timeout(2400)
def test_grpo_after_sft_logs_each_reward(overfit, eight, tmp_path):
    out, _ = overfit
    rec = train_reader(
        ReaderTrainingArguments(
            dataset=str(eight),
            base_model=str(out),
            output=str(tmp_path / "grpo"),
            method="grpo",
            max_steps=2,
            batch_size=2,
            num_generations=2,
            learning_rate=1e-5,
            lora=False,
            # the tiny model's vocabulary is nearly character level: a gold answer is 105-111 tokens, and a
            # budget under it (96) clips every sampled answer before it ends (all rewarded 0)
            max_new_tokens=128,
            # GRPO's default (1.0, real 7B readers) makes this 400k-parameter overfit model err once in its ~110
            # sampled tokens about every other answer (mean gmner reward ~0.3); the assertion below is on GRPO's
            # plumbing (what it samples from, how answers are read and rewarded), so sample colder
            temperature=0.3,
            max_eval_samples=2,
        )
    )
    hist = rec["reward_history"]
    assert len(hist) == 2
    for h in hist:
        assert set(h) == {"step", "total_gmner", "format", "count", "span", "type", "region"}
        assert all(0.0 <= h[k] <= 1.0 for k in h if k != "step")
        assert h["total_gmner"] > 0.5  # the SFT reader's sampled answers are mostly right
    logged = [h for h in rec["log_history"] if "completions/clipped_ratio" in h]
    assert len(logged) == 2 and all(h["completions/clipped_ratio"] < 1 for h in logged)  # answers end
    assert rec["method"] == "grpo" and 0.0 <= rec["best_validation_gmner_f1"] <= 1.0
    assert JointReader.from_pretrained(tmp_path / "grpo").family == "qwen-vl"
    assert "GRPO" in (tmp_path / "grpo" / "README.md").read_text()


# ------------------------------------------------------------------------------------------- torchrun
@pytest.mark.slow  # two processes starting torch + a training run: minutes on 2 cores
@pytest.mark.timeout(1200)
def test_two_processes_each_train_and_validate_their_share(eight, base, tmp_path):
    out = tmp_path / "reader"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "riveg_hf.cli", "train", "reader", "--dataset", str(eight), "--base-model", base, "--output", str(out),
           "--epochs", "1", "--batch-size", "2", "--max-new-tokens", "8"]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    shares = {int(m[1]): (int(m[2]), int(m[3])) for m in re.finditer(
        r"\[process (\d) of 2\] trained on (\d+) examples, read (\d+) validation tweets", res.stderr)}  # fmt: skip
    assert sorted(shares) == [0, 1], res.stderr[-3000:]
    assert (
        sum(t for t, _ in shares.values()) == 8 and min(t for t, _ in shares.values()) > 0
    )  # 8 tweets, 1 epoch
    assert (
        sum(r for _, r in shares.values()) == 2 and min(r for _, r in shares.values()) > 0
    )  # 2 validation tweets
    run = json.loads((out / "riveg_run.json").read_text())
    assert run["processes"] == 2 and sorted(run["examples_per_process"]) == sorted(
        t for t, _ in shares.values()
    )
    assert run["validation"]["examples"] == 2
    assert JointReader.from_pretrained(out).family == "qwen-vl"
