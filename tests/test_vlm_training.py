"""Fine-tuning vision-language stages: SFT of the VLM grounder (Qwen2.5-VL, Qwen3-VL targets, Florence-2),
LoRA adapter vs merged outputs, GRPO with the project's metric as reward, VLM entailment training."""

from __future__ import annotations

import json
import math

import pytest
import torch

from datasets_scripts import twitter_gmner
from riveg_hf import RiVEGPipeline
from riveg_hf.cli import main as cli
from riveg_hf.data import load_built_dataset
from riveg_hf.stages import Entailment, Grounder
from riveg_hf.stages.vlm_grounding import to_original_xyxy
from riveg_hf.testing import (
    every_word_recognizer,
    tiny_florence2,
    tiny_qwen2_5_vl,
    tiny_qwen2_vl,
    tiny_qwen3_vl,
    tiny_qwen3_vl_moe,
)
from riveg_hf.training.vision import VisionTrainingArguments, train_entailment
from riveg_hf.training.vlm import (
    VLMGrounderArguments,
    _Encoder,
    grounding_examples,
    grounding_reward,
    target_box,
    train_vlm_grounder,
)

from .helpers import make_image, save_pair, write_release

BOX = [10, 8, 40, 30]  # Ferrari's gold box in the 64x48 image; Paris is not visible


@pytest.fixture(scope="module")
def one_image(tmp_path_factory):
    """One generated image per split (the same picture): Ferrari (ORG) visible, Paris (LOC) not."""
    root = tmp_path_factory.mktemp("vlmtrain")
    ex = {
        "tokens": ["Ferrari", "meets", "Paris"],
        "tags": ["B-ORG", "O", "B-LOC"],
        "objects": [("Ferrari", BOX)],
    }
    splits = {s: [{**ex, "id": f"{s}0", "size": (64, 48)}] for s in ("train", "dev", "test")}
    raw = write_release(root / "raw", splits)
    (root / "img").mkdir()
    for s in splits:
        make_image((64, 48), color=(128, 128, 128), box=BOX, box_color=(220, 20, 20)).save(
            root / "img" / f"{s}0.jpg"
        )
    twitter_gmner.build(raw, root / "ds", images=root / "img")
    return root / "ds"


def _example(ds_dir):
    exs, counts = grounding_examples(load_built_dataset(str(ds_dir), "gmner")["train"])
    assert counts["images"] == 1 and counts["entities"] == 2
    return exs[0]


def _greedy_answer(grounder, x):
    enc = _Encoder(grounder)
    image = x["image"].get()
    inputs = grounder.processor(text=[enc.prompt(x)], images=[image], return_tensors="pt")
    target = enc.target(x, image, enc.input_size(inputs["image_grid_thw"][0]))
    out = grounder.model.generate(**inputs, max_new_tokens=120, do_sample=False)
    answer = grounder.processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    return answer, target


# ------------------------------------------------------------------------------------------- targets
def test_targets_in_each_family_coordinates_by_hand(one_image):
    x = _example(one_image)
    assert x["entities"] == [
        ("Ferrari", "ORG", "Ferrari, an organization"),
        ("Paris", "LOC", "Paris, a location"),
    ]
    image = x["image"].get()
    # Qwen2.5-VL: pixels of the processor's resized image; 64x48 -> 56x56 (min_pixels), so
    # x * 56/64, y * 56/48: [10, 8, 40, 30] -> [8.75, 9.33, 35, 35] -> rounded
    q25 = _Encoder(Grounder(*tiny_qwen2_5_vl()))
    # the cookbooks' trained format: bbox_2d + label, an entity the image does not show left out
    assert q25.target(x, image, (56, 56)) == '[{"bbox_2d": [9, 9, 35, 35], "label": "Ferrari"}]'
    # Qwen3-VL (dense and MoE) and Qwen2-VL: 0..1000 on each axis, whatever the resize: 10/64, 8/48, 40/64, 30/48
    for build in (tiny_qwen3_vl, tiny_qwen3_vl_moe, tiny_qwen2_vl):
        rel = _Encoder(Grounder(*build()))
        assert rel.target(x, image, (64, 64)) == '[{"bbox_2d": [156, 167, 625, 625], "label": "Ferrari"}]', (
            build
        )
    # Florence-2: its processor's own quantization into 1000 bins (floor); invisible entities left out
    fl = _Encoder(Grounder(*tiny_florence2()))
    assert fl.target(x, image, None) == "ferrari, an organization<loc_156><loc_166><loc_625><loc_625>"
    # several gold boxes: the largest (the metric accepts any)
    assert target_box([[0, 0, 5, 5], [0, 0, 20, 10], [1, 1, 2, 2]]) == [0, 0, 20, 10]
    assert target_box([]) is None


def test_loss_is_on_the_answer_tokens_only(one_image):
    x = _example(one_image)
    grounder = Grounder(*tiny_qwen2_5_vl())
    enc = _Encoder(grounder)
    batch = enc.collate([x, x])
    tok = grounder.processor.tokenizer
    for row_ids, row_labels in zip(batch["input_ids"], batch["labels"]):
        kept = row_labels[row_labels != -100].tolist()
        # the answer followed by the end-of-turn token, nothing from the prompt or the image
        assert tok.decode(kept) == enc.target(x, x["image"].get(), (56, 56)) + "<|im_end|>"
        assert tok.convert_tokens_to_ids("<|image_pad|>") not in kept
        n_prompt = int((row_labels == -100).sum())
        assert row_ids[n_prompt:].tolist() == kept
    # the per-token inputs generation uses (Qwen's mm_token_type_ids set the rotary positions) are there
    assert batch["mm_token_type_ids"].shape == batch["input_ids"].shape
    assert int(batch["image_grid_thw"].shape[0]) == 2


# ------------------------------------------------------------------------------------------- SFT
@pytest.fixture(scope="module")
def overfit(one_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("overfit")
    base = save_pair(tiny_qwen2_5_vl(), root / "base")
    args = VLMGrounderArguments(
        dataset=str(one_image),
        base_model=base,
        output=str(root / "out"),
        epochs=100,
        batch_size=1,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        weight_decay=0.0,
        lora=False,
    )
    return root / "out", train_vlm_grounder(args)


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_sft_overfits_one_example_to_the_exact_target(overfit, one_image):
    out, rec = overfit
    grounder = Grounder.from_pretrained(out)
    answer, target = _greedy_answer(grounder, _example(one_image))
    assert answer == target  # fails if labels, masking, positions or coordinates are wrong
    # validation by generation and the project's metric; the best epoch is kept and recorded
    assert rec["validation"]["gmner_f1"] == 1.0 and rec["validation"]["unparsable_entities"] == 0
    assert rec["best_epoch"] >= 1 and len(rec["validation_history"]) == 100
    assert rec["validation_history"][0]["validation"]["gmner_f1"] < 1.0
    # the box maps back to original pixels and matches the gold box
    ((box, score), (paris, _)) = grounder.ground_many(
        [(_example(one_image)["image"].get(), ["Ferrari, an organization", "Paris, a location"])],
        contexts=[{"text": "Ferrari meets Paris", "entities": _example(one_image)["entities"]}],
    )[0]
    assert box == pytest.approx(to_original_xyxy([9, 9, 35, 35], "absolute", (64, 48), (56, 56)))
    assert paris is None and 0.5 < score <= 1.0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["riveg_base_model"].endswith("base")
    run = json.loads((out / "riveg_run.json").read_text())
    assert run["fine_tuning"] == "full" and run["family"] == "vlm"
    assert len(list(out.glob("checkpoint-*"))) <= 2  # old epoch checkpoints pruned


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_florence2_sft_learns_its_phrase_grounding_format(one_image, tmp_path):
    base = save_pair(tiny_florence2(), tmp_path / "base")
    rec = train_vlm_grounder(
        VLMGrounderArguments(
            dataset=str(one_image),
            base_model=base,
            output=str(tmp_path / "out"),
            epochs=60,
            batch_size=1,
            learning_rate=1e-2,
            warmup_ratio=0.0,
            weight_decay=0.0,
            lora=False,
        )
    )
    assert rec["family"] == "florence2"
    assert rec["validation_history"][0]["validation"]["gmner_f1"] < 1.0
    assert rec["validation"]["gmner_f1"] == 1.0
    losses = [h["loss"] for h in rec["loss_history"]]
    assert losses[-1] < losses[0] / 10


@pytest.mark.slow  # an integration run of minutes on 2 cores: CI runs it (tests/run.sh under CI=true)
def test_lora_adapter_and_merged_outputs_reload_identically(one_image, tmp_path):
    base = save_pair(tiny_qwen2_5_vl(), tmp_path / "base")
    common = dict(
        dataset=str(one_image),
        base_model=base,
        max_steps=6,
        batch_size=1,
        learning_rate=5e-2,
        warmup_ratio=0.0,
    )
    rec_a = train_vlm_grounder(
        VLMGrounderArguments(**common, output=str(tmp_path / "adapter"), save="adapter")
    )
    rec_m = train_vlm_grounder(VLMGrounderArguments(**common, output=str(tmp_path / "merged"), save="merged"))
    losses = [h["loss"] for h in rec_a["loss_history"]]
    assert losses[-1] < losses[0]  # the same batch every step: the loss goes down
    assert [h["loss"] for h in rec_m["loss_history"]] == pytest.approx(losses)  # same seed, same run
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str((tmp_path / "base").resolve())
    ga, gm = Grounder.from_pretrained(tmp_path / "adapter"), Grounder.from_pretrained(tmp_path / "merged")
    assert ga.model.config.riveg_base_model == gm.model.config.riveg_base_model
    sd_a, sd_m = ga.model.state_dict(), gm.model.state_dict()
    assert sd_a.keys() == sd_m.keys()
    assert max(float((sd_a[k] - sd_m[k]).abs().max()) for k in sd_a) < 1e-6
    trained = any(
        float((sd_m[k] - v).abs().max()) > 1e-4
        for k, v in Grounder.from_pretrained(base).model.state_dict().items()
    )
    assert trained  # the adapter changed the weights
    batch = _Encoder(ga).collate([_example(one_image)])
    with torch.no_grad():
        la = ga.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        lm = gm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.allclose(la, lm, atol=1e-5)
    # both load in a fresh pipeline; the composite records the base model; same predictions after a round trip
    image = make_image((64, 48), color=(128, 128, 128), box=BOX, box_color=(220, 20, 20))
    outs = []
    for folder in ("adapter", "merged"):
        pipe = RiVEGPipeline.from_components(
            recognizer=every_word_recognizer(), grounder=str(tmp_path / folder)
        )
        pipe.save_pretrained(tmp_path / f"composite-{folder}")
        cfg = json.loads((tmp_path / f"composite-{folder}" / "config.json").read_text())
        assert cfg["components"]["grounder"]["base_model"] == str((tmp_path / "base").resolve())
        from transformers import pipeline

        fresh = pipeline("grounded-mner", model=str(tmp_path / f"composite-{folder}"))
        outs.append(fresh({"text": "Ferrari meets Paris", "image": image}, visibility="grounder"))
    assert outs[0] == outs[1]


def test_training_on_predicted_entities(one_image):
    split = load_built_dataset(str(one_image), "gmner")["train"]

    def recognizer(tokens):  # predicts Ferrari right, "meets" wrongly, misses Paris
        return [
            {"token_start": 0, "token_end": 1, "type": "ORG"},
            {"token_start": 1, "token_end": 2, "type": "PER"},
        ]

    exs, _ = grounding_examples(split, entities="predicted", recognizer=recognizer)
    (x,) = exs
    assert [e for e, _, _ in x["entities"]] == ["Ferrari", "meets"]
    assert x["boxes"] == [[BOX], []]  # a predicted entity that is not gold gets "not visible"
    assert len(x["references"]) == 2  # scoring is still against the gold entities


# ------------------------------------------------------------------------------------------- GRPO
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('[{"entity": "Ferrari", "bbox_2d": [9, 9, 35, 35]}, {"entity": "Paris", "bbox_2d": null}]', 1.0),
        # wrong box for Ferrari (IoU < 0.5), Paris right: 1 of 2
        ('[{"entity": "Ferrari", "bbox_2d": [40, 40, 56, 56]}, {"entity": "Paris", "bbox_2d": null}]', 0.5),
        # null for a visible entity and a box for an invisible one: nothing right
        ('[{"entity": "Ferrari", "bbox_2d": null}, {"entity": "Paris", "bbox_2d": [9, 9, 35, 35]}]', 0.0),
        # Paris right, Ferrari's object malformed: 0.5 - penalty 0.5 * 1/2
        ('[{"entity": "Ferrari", "bbox_2d": [9, 9]}, {"entity": "Paris", "bbox_2d": null}]', 0.25),
        # no JSON at all: both unparsable (Paris counted right as "not visible"), 0.5 - 0.5
        ("I cannot tell.", 0.0),
    ],
)
def test_reward_hand_cases(answer, expected):
    refs = [
        {"start": 0, "end": 1, "type": "ORG", "boxes": [BOX]},
        {"start": 2, "end": 3, "type": "LOC", "boxes": []},
    ]
    r = grounding_reward(
        answer, ["Ferrari", "Paris"], [[0, 1, "ORG"], [2, 3, "LOC"]], refs, "absolute", (64, 48), (56, 56)
    )
    assert r == pytest.approx(expected)


def test_grpo_runs_three_steps_and_logs_the_reward(overfit, one_image, tmp_path):
    out, _ = overfit
    rec = train_vlm_grounder(
        VLMGrounderArguments(
            dataset=str(one_image),
            base_model=str(out),
            output=str(tmp_path / "grpo"),
            method="grpo",
            max_steps=3,
            batch_size=2,
            num_generations=2,
            learning_rate=1e-4,
            lora=False,
        )
    )
    rewards = [h["reward"] for h in rec["reward_history"]]
    assert len(rewards) == 3 and all(math.isfinite(r) and -0.5 <= r <= 1.0 for r in rewards)
    assert max(rewards) > 0.5  # the SFT model's sampled answers are mostly right
    assert Grounder.from_pretrained(tmp_path / "grpo").family == "vlm"
    assert json.loads((tmp_path / "grpo" / "riveg_run.json").read_text())["method"] == "grpo"


# ------------------------------------------------------------------------------------------- entailment
def test_vlm_entailment_training_learns_yes_no(one_image, tmp_path):
    base = save_pair(tiny_qwen2_5_vl(), tmp_path / "base")
    rec = train_entailment(
        VisionTrainingArguments(
            dataset=str(one_image),
            base_model=base,
            output=str(tmp_path / "ent"),
            max_steps=30,
            batch_size=2,
            learning_rate=5e-3,
            warmup_ratio=0.0,
        )
    )
    losses = [h["loss"] for h in rec["loss_history"]]
    assert sum(losses[-3:]) < sum(losses[:3]) and losses[-1] < 0.2
    stage = Entailment.from_pretrained(tmp_path / "ent")
    assert stage.kind == "vlm" and stage.threshold == rec["threshold"]
    image = make_image((64, 48), color=(128, 128, 128), box=BOX, box_color=(220, 20, 20))
    ferrari, paris = stage.score(image, stage.hypotheses([("Ferrari", "ORG", "Ferrari, an organization"),
                                                           ("Paris", "LOC", "Paris, a location")]))  # fmt: skip
    assert ferrari > 0.8 and paris < 0.2
    assert rec["validation"]["accuracy"] == 1.0


def test_cli_trains_vlm_stages_with_lora(one_image, tmp_path, capsys):
    base = save_pair(tiny_qwen2_5_vl(), tmp_path / "base")
    common = ["--dataset", str(one_image), "--base-model", base, "--max-steps", "2", "--batch-size", "1"]
    assert cli(["train", "grounder", *common, "--output", str(tmp_path / "vg"), "--save", "adapter"]) == 0
    run = json.loads((tmp_path / "vg" / "riveg_run.json").read_text())
    assert run["fine_tuning"] == "lora" and run["arguments"]["learning_rate"] == 1e-4
    assert Grounder.from_pretrained(tmp_path / "vg").family == "vlm"
    assert cli(["train", "entailment", *common, "--output", str(tmp_path / "ent")]) == 0
    assert Entailment.from_pretrained(tmp_path / "ent").model.config.riveg_base_model == base
    assert not (tmp_path / "ent" / "adapter_config.json").exists()  # merged: a plain checkpoint
    bert = save_pair(every_word_recognizer(), tmp_path / "bert")
    code = cli(["train", "grounder", "--method", "grpo", "--dataset", str(one_image), "--base-model", bert,
                "--output", str(tmp_path / "x")])  # fmt: skip
    assert code == 2
    assert "trains vision-language grounders" in capsys.readouterr().err


def test_vlm_grounder_card_says_how_it_was_trained(overfit):
    out, _ = overfit
    card = (out / "README.md").read_text()
    assert "vision-language grounder" in card and "Entities at training time: gold" in card
    assert "SFT, full" in card and "gmner_f1" in card


def test_grpo_rows_carry_the_exact_pixels_and_chat_the_grounder_sees():
    """GRPO samples answers for the image the grounder reads at prediction: stored in a ``datasets`` table, a decoded
    JPEG would be re-encoded as a new lossy JPEG (other pixels); the rows attach image and chat when drawn."""
    import io

    from PIL import Image

    from riveg_hf.stages.vlm_grounding import grounding_messages
    from riveg_hf.training.vlm import _grpo_rows

    rng = torch.Generator().manual_seed(0)
    noise = (torch.rand(48, 64, 3, generator=rng) * 255).to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG", quality=70)
    image = Image.open(io.BytesIO(buf.getvalue()))
    image.load()
    train = [{"text": "Ferrari in Paris", "entities": [("Ferrari", "ORG", "a red car")], "image": image}]
    row = _grpo_rows([{"index": 0, "names": ["Ferrari"]}], train)[0]
    assert row["image"].tobytes() == image.tobytes() and row["names"] == ["Ferrari"]
    assert row["prompt"] == grounding_messages("Ferrari in Paris", [("Ferrari", "ORG", "a red car")])
