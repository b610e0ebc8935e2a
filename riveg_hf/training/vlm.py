"""Fine-tuning a vision-language grounder (Qwen2.5-VL, Qwen3-VL, Florence-2) on Twitter-GMNER.

    riveg train grounder --dataset twitter-gmner --base-model Qwen/Qwen2.5-VL-3B-Instruct --output vg
    riveg train grounder --dataset twitter-gmner --base-model vg --method grpo --output vg-grpo

**Supervised fine-tuning** (``method="sft"``). One example per image: the prompt the pipeline's VLM
grounder sends (:func:`~riveg_hf.stages.vlm_grounding.grounding_messages`: tweet, each entity with its type
and description) and, as the target, its answer format
(:func:`~riveg_hf.stages.vlm_grounding.format_grounding_answer`): each entity with its gold box in the
model's own coordinates (Qwen2.5-VL: pixels of the processor's resized image; Qwen3-VL: 0-1000), or
``null`` when it is not groundable. When an entity has several gold boxes the target is the **largest**
one: the metric accepts a box that matches *any* gold box (IoU >= 0.5), so each is right, and the largest
is the most salient and deterministic. Florence-2 is trained on its own phrase-grounding format
(``phrase<loc_x0><loc_y0><loc_x1><loc_y1>`` per visible entity, quantized by its processor; an entity
that is not visible is left out, which the grounder reads as "not visible").

The loss is on the answer tokens only (the prompt and the image tokens are masked with -100). LoRA
through ``peft`` on the language model's linear layers by default (``lora=False``: full fine-tuning),
gradient checkpointing, bf16 on GPUs that support it. After each epoch the validation split is scored by
**generating** with the pipeline's own grounder and :func:`riveg_hf.metrics.compute_gmner` (EEG / GMNER
F1); the best epoch's weights are kept. The output is a merged checkpoint (``save="merged"``, default) or
the base + a PEFT adapter (``save="adapter"``); both load in the pipeline with no ``trust_remote_code``,
and the base model is recorded (``config.riveg_base_model`` / ``adapter_config.json``).

**Entities at training time** are the gold ones by default (the grounder learns to ground what it is
given). ``entities="predicted"`` with ``recognizer=DIR`` trains on the recognizer's output instead: an
entity that matches a gold one (same span and type) gets its boxes, any other gets ``null``.

**Reinforcement fine-tuning** (``method="grpo"``, after SFT): TRL's ``GRPOTrainer`` samples several
answers per image and rewards each with :func:`grounding_reward` -- the project's GMNER metric over the
image's entities (right visibility decision and IoU >= 0.5) minus a format penalty for entities the
answer leaves unparsable.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..metrics.core import compute_gmner
from ..stages.grounder import Grounder, LocateRequest
from ..stages.vlm_grounding import (
    NOTE_MALFORMED,
    NOTE_UNPARSABLE,
    VLM_FAMILIES,
    grounding_messages,
    read_grounding_answer,
)
from .common import (
    LazyImage,
    VisionTrainingArguments,
    accelerate_loop,
    dataset_provenance,
    image_of,
    load_descriptions,
    load_image_splits,
    peak_memory_mb,
    resolve_mixed_precision,
    write_run_record,
)

__all__ = [
    "VLMGrounderArguments",
    "grounding_examples",
    "grounding_reward",
    "is_vlm_checkpoint",
    "target_box",
    "train_vlm_grounder",
]

#: the language model's linear layers LoRA adapts (Qwen2.5-VL / Qwen3-VL decoder; Florence-2's BART)
LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1|fc2)"
)
#: reward subtracted per unparsable entity (as a fraction of the image's entities) in GRPO
FORMAT_PENALTY = 0.5


@dataclass(kw_only=True)
class VLMGrounderArguments(VisionTrainingArguments):
    """A vision-language stage's training (grounder SFT / GRPO, or VLM entailment): the vision arguments plus
    LoRA and the method. ``learning_rate`` unset: 1e-4 with LoRA, 1e-5 for a full fine-tune (one default,
    whether from the CLI or from Python)."""

    learning_rate: float | None = None
    method: str = "sft"  # sft | grpo
    lora: bool = True  # False: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    save: str = "merged"  # merged | adapter
    entities: str = "gold"  # gold | predicted (with recognizer)
    recognizer: str | None = None
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"  # auto: bf16 on a GPU that supports it, else fp32
    # GRPO
    num_generations: int = 4
    max_completion_length: int | None = None
    temperature: float = 1.0

    def __post_init__(self):
        if self.learning_rate is None:
            self.learning_rate = 1e-4 if self.lora else 1e-5


def is_vlm_checkpoint(location: str, local_files_only: bool = False) -> bool:
    """Whether ``location`` (hub id, folder, or PEFT adapter of one) is a VLM the grounder can fine-tune."""
    from transformers import AutoConfig

    from ..stages.base import _adapter_config

    hub = {"local_files_only": local_files_only}
    adapter = _adapter_config(str(location), hub)
    if adapter is not None and adapter.get("base_model_name_or_path"):
        location = adapter["base_model_name_or_path"]
    try:
        model_type = AutoConfig.from_pretrained(str(location), **hub).model_type
    except (OSError, ValueError):
        return False
    return model_type in VLM_FAMILIES or model_type == "florence2"


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def target_box(boxes) -> list[float] | None:
    """The training target among an entity's gold boxes: the largest (see the module doc); None if none."""
    boxes = [list(map(float, b)) for b in boxes or []]
    return max(boxes, key=_area) if boxes else None


def grounding_examples(
    split,
    descriptions: dict | None = None,
    *,
    entities: str = "gold",
    recognizer=None,
    max_examples: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows of a gmner split -> one example per image with its entities; counts of what was skipped."""
    from datasets import Image as ImageFeature

    from ..stages.expander import template_description

    descriptions = descriptions or {}
    names = split.features["entities"].feature["type"].names
    split = split.cast_column("image", ImageFeature(decode=False))
    out: list[dict[str, Any]] = []
    counts = {"rows": 0, "rows_without_image": 0, "rows_without_entities": 0, "images": 0, "entities": 0}
    for row in split:
        counts["rows"] += 1
        if row["image"] is None or (row["image"].get("bytes") is None and row["image"].get("path") is None):
            counts["rows_without_image"] += 1
            continue
        gold = {
            (e["start"], e["end"], names[e["type"]] if isinstance(e["type"], int) else e["type"]): e
            for e in row["entities"]
        }
        if entities == "predicted":
            spans = [
                (int(p["token_start"]), int(p["token_end"]), p["type"]) for p in recognizer(row["tokens"])
            ]
        else:
            spans = list(gold)
        if not spans:
            counts["rows_without_entities"] += 1
            continue
        ents, boxes = [], []
        for start, end, typ in spans:
            text = " ".join(row["tokens"][start:end])
            desc = descriptions.get((row["id"], start, end)) or template_description(text, typ)
            ents.append((text, typ, desc))
            g = gold.get((start, end, typ))
            boxes.append([list(b) for b in g["boxes"]] if g is not None and g["groundable"] else [])
        out.append(
            {
                "id": row["id"],
                "image": LazyImage(row["image"]),
                "text": " ".join(row["tokens"]),
                "entities": ents,
                "spans": spans,
                "boxes": boxes,
                "references": [
                    {"start": s, "end": e, "type": t, "boxes": g["boxes"] if g["groundable"] else []}
                    for (s, e, t), g in gold.items()
                ],
            }
        )
        counts["images"] += 1
        counts["entities"] += len(ents)
        if max_examples and len(out) >= max_examples:
            break
    return out, counts


# ---------------------------------------------------------------------- encoding
class _Encoder:
    """Prompt + target for one family, with the answer-only labels."""

    def __init__(self, grounder: Grounder):
        self.grounder = grounder
        self.family = grounder.family
        self.proc = grounder.processor
        self.tok = self.proc.tokenizer
        self.patch = int(getattr(self.proc.image_processor, "patch_size", 14) or 14)
        if self.family == "vlm":
            gen = grounder.model.generation_config
            eos = gen.eos_token_id if gen.eos_token_id is not None else self.tok.eos_token_id
            eos = eos[0] if isinstance(eos, (list, tuple)) else eos
            self.eos_text = self.tok.convert_ids_to_tokens(int(eos))

    def prompt(self, x: dict[str, Any]) -> str:
        return self.grounder.training_prompt(x["text"], x["entities"])

    def target(self, x: dict[str, Any], image, input_size: tuple[int, int] | None) -> str:
        boxes = [target_box(b) for b in x["boxes"]]
        return self.grounder.training_target(x["entities"], boxes, image.size, input_size)

    def input_size(self, grid) -> tuple[int, int]:
        _, gh, gw = (int(v) for v in grid)
        return gw * self.patch, gh * self.patch

    def image(self, x: dict[str, Any]):
        """The image of example ``x`` as the model is sent it (a family may resize or convert it)."""
        return image_of(x)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        images = [self.image(x) for x in items]
        if self.family == "florence2":
            enc = self.proc(
                text=[self.prompt(x) for x in items], images=images, return_tensors="pt", padding=True
            )
            targets = [self.target(x, im, None) for x, im in zip(items, images)]
            lab = self.tok(targets, return_tensors="pt", padding=True, padding_side="right")
            labels = lab["input_ids"].masked_fill(lab["attention_mask"] == 0, -100)
            return {**dict(enc), "labels": labels}
        # Decoder-only VLMs: prompt (as the processor encodes it for generation, image tokens expanded)
        # followed by the answer tokens, right-padded. Per-token inputs the processor adds (e.g.
        # Qwen's mm_token_type_ids, which set the rotary positions) are extended with 0 for the answer:
        # training must see the positions generation will see.
        seqs, labels, token_extra, image_extra = [], [], [], []
        for x, image in zip(items, images):
            enc = self.proc(text=[self.prompt(x)], images=[image], return_tensors="pt")
            answer = self.target(x, image, self.input_size(enc["image_grid_thw"][0])) + self.eos_text
            ans = self.tok(answer, add_special_tokens=False)["input_ids"]
            prompt_ids = enc["input_ids"][0].tolist()
            seqs.append(prompt_ids + ans)
            labels.append([-100] * len(prompt_ids) + ans)
            n_prompt = len(prompt_ids)
            token_extra.append(
                {
                    k: v[0].tolist() + [0] * len(ans)
                    for k, v in enc.items()
                    if k not in ("input_ids", "attention_mask") and v.dim() == 2 and v.shape == (1, n_prompt)
                }
            )
            image_extra.append(
                {
                    k: v
                    for k, v in enc.items()
                    if k not in token_extra[-1] and k not in ("input_ids", "attention_mask")
                }
            )
        n = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        batch = {
            "input_ids": torch.tensor([s + [pad] * (n - len(s)) for s in seqs]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs]),
            "labels": torch.tensor([lab + [-100] * (n - len(lab)) for lab in labels]),
        }
        for k in token_extra[0]:
            batch[k] = torch.tensor([t[k] + [0] * (n - len(t[k])) for t in token_extra])
        for k in image_extra[
            0
        ]:  # pixel_values, image_grid_thw: concatenated over images, as the processor does
            batch[k] = torch.cat([t[k] for t in image_extra])
        return batch


# ---------------------------------------------------------------------- scoring
#: the notes of an entity the answer left unusable (not an omission, which means "not visible")
_BAD_ANSWER = (NOTE_MALFORMED, NOTE_UNPARSABLE)


def _predictions(grounder: Grounder, examples: list[dict[str, Any]], batch_size: int = 4):
    """Generate with the pipeline's grounder -> (metric predictions per example, unparsable count)."""
    requests = [LocateRequest(image_of(x), [d for _, _, d in x["entities"]], text=x["text"], entities=x["entities"])
                for x in examples]  # fmt: skip
    results = grounder.locate_many(requests, vision_batch_size=batch_size)
    preds = []
    for x, loc in zip(examples, results):
        row = []
        for k, (s, e, t) in enumerate(x["spans"]):
            box, score = loc.boxes[k], loc.score(k)
            keep = box is not None and (score is None or score >= grounder.box_threshold)
            row.append({"start": s, "end": e, "type": t, "box": box if keep else None})
        preds.append(row)
    unparsable = sum(sum(n in _BAD_ANSWER for n in loc.notes) for loc in results)
    return preds, unparsable


def score_grounder(grounder: Grounder, examples: list[dict[str, Any]], batch_size: int = 4) -> dict[str, Any]:
    """EEG / GMNER P/R/F1 (and MNER, perfect with gold entities) of a grounder on examples, by generation."""
    preds, unparsable = _predictions(grounder, examples, batch_size)
    scores = compute_gmner(preds, [x["references"] for x in examples], ids=[x["id"] for x in examples])
    keep = ("mner_f1", "eeg_precision", "eeg_recall", "eeg_f1", "gmner_precision", "gmner_recall", "gmner_f1")
    return {
        **{k: float(scores[k]) for k in keep},
        "unparsable_entities": unparsable,
        "examples": len(examples),
    }


def grounding_reward(
    answer: str,
    names: list[str],
    spans: list[list[Any]],
    references: list[dict[str, Any]],
    convention: str,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
) -> float:
    """Reward of one answer: GMNER F1 of the image (``compute_gmner``; with the given entities this is the
    fraction with the right visibility decision and, when visible, IoU >= 0.5), minus
    ``FORMAT_PENALTY`` x the fraction of entities the answer leaves unparsable.

    >>> refs = [{"start": 0, "end": 1, "type": "PER", "boxes": [[0, 0, 50, 50]]},
    ...         {"start": 2, "end": 3, "type": "LOC", "boxes": []}]
    >>> kw = dict(names=["Obama", "Paris"], spans=[[0, 1, "PER"], [2, 3, "LOC"]], references=refs,
    ...           convention="relative-1000", original_size=(100, 100), input_size=(112, 112))
    >>> grounding_reward('[{"bbox_2d": [0, 0, 500, 500], "label": "Obama"}]', **kw)  # Paris left out: not visible
    1.0
    >>> grounding_reward('[{"bbox_2d": [600, 600, 900, 900], "label": "Obama"}, {"bbox_2d": true, "label": "Paris"}]',
    ...                  **kw)  # Obama wrong, Paris right (no box) but malformed: 0.5 - 0.5 x 1/2
    0.25
    """
    read = read_grounding_answer(
        answer, [(n, "", n) for n in names], convention, tuple(original_size), tuple(input_size)
    )
    preds = [
        {"start": int(s), "end": int(e), "type": t, "box": box} for (s, e, t), box in zip(spans, read.boxes)
    ]
    f1 = float(compute_gmner([preds], [references])["gmner_f1"])
    bad = sum(n in _BAD_ANSWER for n in read.notes)
    return f1 - FORMAT_PENALTY * bad / max(1, len(names))


# ---------------------------------------------------------------------- training
def _load(args: VLMGrounderArguments) -> Grounder:
    model, processor = Grounder.load_model_and_processor(
        args.base_model, local_files_only=args.local_files_only
    )
    grounder = Grounder(model, processor)
    if grounder.family not in ("vlm", "florence2"):
        raise ValueError(
            f"{args.base_model} ({model.config.model_type}) is not a vision-language grounder; VLM fine-tuning "
            f"takes {sorted(VLM_FAMILIES)} or florence2."
        )
    return grounder


def _examples(args: VLMGrounderArguments, ds):
    desc = load_descriptions(args.descriptions)
    recognizer = None
    if args.entities == "predicted":
        if not args.recognizer:
            raise ValueError(
                "--entities predicted needs --recognizer DIR (a trained MNER model or composite)"
            )
        from ..stages.recognizer import Recognizer

        recognizer = Recognizer.from_pretrained(args.recognizer, local_files_only=args.local_files_only)
    elif args.entities != "gold":
        raise ValueError(f"--entities must be 'gold' or 'predicted', got {args.entities!r}")
    train, counts = grounding_examples(
        ds["train"], desc, entities=args.entities, recognizer=recognizer, max_examples=args.max_train_samples
    )
    dev = []
    if "validation" in ds:
        dev, _ = grounding_examples(
            ds["validation"], desc, entities="gold", max_examples=args.max_eval_samples
        )
    if not train:
        raise ValueError(
            f"{args.dataset}: no training image with entities ({counts}). Rebuild the dataset with "
            "`riveg data build twitter-gmner --images DIR`."
        )
    return train, dev, counts


def _checkpointing(model, on: bool) -> None:
    """Activation (gradient) checkpointing, by the name this transformers version uses."""
    if on and hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()


def _grpo_checkpointing(config_class, on: bool) -> dict[str, Any]:
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return {
        "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on
    }


def _add_lora(model, args: VLMGrounderArguments):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError(
            "LoRA fine-tuning needs peft: pip install 'riveg-hf[train]' (or pass --full-finetune)"
        ) from None
    cfg = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, target_modules=LORA_TARGETS
    )
    return get_peft_model(model, cfg)


def trainable(base_model, args: Any):
    """The model supervised fine-tuning trains: ``base_model`` with a LoRA adapter when ``args.lora`` (its
    initialisation seeded: part of the run), activation checkpointing on when asked for, and no KV cache."""
    model = base_model
    if args.lora:
        from transformers import set_seed

        set_seed(args.seed)  # the adapter's initialisation is part of the run
        model = _add_lora(base_model, args)
    if args.gradient_checkpointing and base_model.supports_gradient_checkpointing:
        _checkpointing(base_model, True)
    base_model.config.use_cache = False
    return model


def keep_if_best(best: dict[str, Any], scores: dict[str, float], epoch: int, step: int, unwrapped) -> None:
    """Keep the trainable weights of this epoch when its validation GMNER F1 is the best so far (ties: the later
    epoch)."""
    if best["score"] is None or scores["gmner_f1"] >= best["score"]:
        best.update(score=scores["gmner_f1"], epoch=epoch, step=step, scores=scores)
        best["state"] = {
            k: v.detach().to("cpu", copy=True) for k, v in unwrapped.named_parameters() if v.requires_grad
        }


def end_training(model, base_model, args: Any, best: dict[str, Any]) -> None:
    """Back to the best epoch's weights, eval mode, checkpointing off and the KV cache on (for generation)."""
    if best.get("state") is not None:
        model.load_state_dict(best.pop("state"), strict=False)
    model.eval()
    if args.gradient_checkpointing and base_model.supports_gradient_checkpointing:
        _checkpointing(base_model, False)
    base_model.config.use_cache = True


def train_vlm_grounder(args: VLMGrounderArguments) -> dict[str, Any]:
    """Fine-tune a VLM grounder (see the module doc); returns the run record (also ``riveg_run.json``)."""
    if args.method == "grpo":
        return train_vlm_grounder_grpo(args)
    if args.method != "sft":
        raise ValueError(f"--method must be 'sft' or 'grpo', got {args.method!r}")
    if args.save not in ("merged", "adapter"):
        raise ValueError(f"--save must be 'merged' or 'adapter', got {args.save!r}")
    from ..distributed import partial_state

    t0 = time.perf_counter()
    state = partial_state()
    ds = load_image_splits(args)
    train, dev, counts = _examples(args, ds)
    grounder = _load(args)
    base_model = grounder.model
    encoder = _Encoder(grounder)
    model = trainable(base_model, args)
    best: dict[str, Any] = {"score": None}

    def validate(unwrapped, epoch: int, step: int):
        if not dev:
            return None
        inner = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
        inner.config.use_cache = True
        scores = score_grounder(Grounder(inner, grounder.processor), dev, batch_size=args.batch_size)
        inner.config.use_cache = False
        if state.is_main_process:
            print(f"epoch {epoch}: validation " + json.dumps({k: round(v, 4) for k, v in scores.items()}))
        keep_if_best(best, scores, epoch, step, unwrapped)
        return {"validation": scores}

    cfg = accelerate_loop(
        model, train, encoder.collate, lambda m, b: m(**b).loss, args, on_epoch_end=validate
    )
    end_training(model, base_model, args, best)
    record: dict[str, Any] = {
        **_record_head(args, grounder),
        "arguments": asdict(args),
        "train_examples": counts,
        "loss_history": [h for h in cfg.history if "loss" in h],
        "validation_history": [h for h in cfg.history if "validation" in h],
        "data": dataset_provenance(args.dataset, args.config),
    }
    if best["score"] is not None:
        record["validation"] = best["scores"]
        record["best_epoch"] = best["epoch"]
    return _save(model, grounder, record, args, state, t0)


def _record_head(args: VLMGrounderArguments, grounder: Grounder) -> dict[str, Any]:
    return {
        "task": "grounder",
        "method": args.method,
        "family": grounder.family,
        "base_model": args.base_model,
        "fine_tuning": "lora" if args.lora else "full",
        "entities": args.entities,
    }


def _save(
    model,
    grounder: Grounder,
    record: dict[str, Any],
    args: VLMGrounderArguments,
    state,
    t0: float,
    *,
    kind: str = "grounder",
    config_extra: dict[str, Any] | None = None,
):
    """Write the trained stage (``grounder`` or any stage with a ``processor``), its run record and card."""
    from ..cards import component_card

    record["wall_time_s"] = round(time.perf_counter() - t0, 1)
    record.update(peak_memory_mb())
    if not state.is_main_process:
        return record
    out = Path(args.output)
    base = str(Path(args.base_model).resolve()) if Path(args.base_model).is_dir() else args.base_model
    saved = "adapter" if hasattr(model, "merge_and_unload") and args.save == "adapter" else "merged"
    if saved == "adapter":  # base + PEFT adapter (adapter_config.json names the base)
        model.peft_config["default"].base_model_name_or_path = base
        model.save_pretrained(out)
    else:  # LoRA merged into the weights (exact), or full fine-tuning
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.config.riveg_base_model = base
        for key, value in (config_extra or {}).items():
            setattr(model.config, key, value)
        model.save_pretrained(out, safe_serialization=True)
    grounder.processor.save_pretrained(out)
    record["saved"] = saved
    record.setdefault("command", " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))  # as the run record says
    component_card(kind, record).save(out / "README.md")
    write_run_record(out, record)  # last: a folder with its run record is complete
    return record


# ---------------------------------------------------------------------- GRPO
def require_trl() -> None:
    """Fail fast, before any data is read, when trl (GRPO) is not installed."""
    try:
        import trl  # noqa: F401
    except ImportError:
        raise ImportError("--method grpo needs trl: pip install 'riveg-hf[train]'") from None


def run_grpo(
    args: Any,
    model,
    processor,
    reward_funcs: list,
    dataset,
    *,
    max_completion_length: int,
    state,
    **config: Any,
) -> tuple[Any, list[dict[str, Any]]]:
    """TRL's GRPO of ``model`` over ``dataset`` (prompts attached when drawn) with ``reward_funcs``: the one
    trainer set-up of ``riveg train grounder --method grpo`` and ``riveg train reader --method grpo`` (LoRA when
    ``args.lora``; ``config``: further ``GRPOConfig`` fields). Returns the trained model (in eval mode) and the
    numeric entries of its log history."""
    from accelerate.state import DistributedType
    from trl import GRPOConfig, GRPOTrainer

    grpo = GRPOConfig(
        output_dir=args.output,
        per_device_train_batch_size=max(args.num_generations, args.batch_size),
        num_generations=args.num_generations,
        max_completion_length=max_completion_length,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps or -1,
        num_train_epochs=args.epochs,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        temperature=args.temperature,
        bf16=resolve_mixed_precision(args.mixed_precision) == "bf16",
        remove_unused_columns=False,
        # several processes on a machine without GPU: keep the CPU process group (the Trainer forms its own)
        use_cpu=state.distributed_type == DistributedType.MULTI_CPU,
        **_grpo_checkpointing(GRPOConfig, args.gradient_checkpointing),
        **config,
    )
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                 target_modules=LORA_TARGETS)  # fmt: skip
    model.train()
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=grpo, train_dataset=dataset,
                          processing_class=processor, peft_config=peft_config)  # fmt: skip
    trainer.train()
    trained = trainer.model
    trained.eval()
    history = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history]
    return trained, history


def _grpo_rows(rows: list[dict[str, Any]], train: list[dict[str, Any]]):
    """GRPO's prompts: the reward fields stored, the chat and the image attached when a row is drawn. The image
    is never stored in the dataset: ``datasets`` would re-encode it (a decoded JPEG as a new, lossy JPEG) and
    GRPO would sample answers for other pixels than the grounder sees at prediction."""
    from datasets import Dataset

    def with_chat(batch: dict[str, list]) -> dict[str, list]:
        xs = [train[i] for i in batch["index"]]
        prompts = [grounding_messages(x["text"], x["entities"]) for x in xs]
        return {**batch, "prompt": prompts, "image": [image_of(x) for x in xs]}

    return Dataset.from_list(rows).with_transform(with_chat)


def train_vlm_grounder_grpo(args: VLMGrounderArguments) -> dict[str, Any]:
    """Reinforcement fine-tuning with TRL's GRPO and :func:`grounding_reward` (Qwen-VL families)."""
    require_trl()
    from ..distributed import partial_state

    t0 = time.perf_counter()
    state = partial_state()
    ds = load_image_splits(args)
    train, dev, counts = _examples(args, ds)
    grounder = _load(args)
    if grounder.family != "vlm":
        raise ValueError(
            "--method grpo trains Qwen2.5-VL / Qwen3-VL grounders (JSON answers); Florence-2: use sft"
        )
    encoder = _Encoder(grounder)
    proc = grounder.processor
    proc.tokenizer.padding_side = "left"
    rows = []
    for i, x in enumerate(train):
        image = image_of(x)
        grid = proc.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
        rows.append(
            {
                "index": i,
                "names": [e for e, _, _ in x["entities"]],
                "spans": json.dumps([list(s) for s in x["spans"]]),
                "references": json.dumps(x["references"]),
                "original_size": list(image.size),
                "input_size": list(encoder.input_size(grid)),
            }
        )
    convention = grounder.convention

    def reward(completions, names, spans, references, original_size, input_size, **_):
        out = []
        for c, n, s, r, o, i in zip(completions, names, spans, references, original_size, input_size):
            text = (
                c
                if isinstance(c, str)
                else "".join(m.get("content", "") if isinstance(m.get("content"), str) else "" for m in c)
            )
            out.append(
                grounding_reward(text, n, json.loads(s), json.loads(r), convention, tuple(o), tuple(i))
            )
        return out

    reward.__name__ = "gmner_reward"
    n_max = max(len(x["entities"]) for x in train)
    from ..stages.vlm_grounding import max_new_tokens_for

    model, history = run_grpo(args, grounder.model, proc, [reward], _grpo_rows(rows, train), state=state,
                              max_completion_length=args.max_completion_length or max_new_tokens_for(n_max))  # fmt: skip
    record: dict[str, Any] = {
        **_record_head(args, grounder),
        "arguments": asdict(args),
        "train_examples": counts,
        "reward_history": [{"step": h.get("step"), "reward": h["reward"]} for h in history if "reward" in h],
        "log_history": history,
        "data": dataset_provenance(args.dataset, args.config),
    }
    if dev:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        record["validation"] = score_grounder(Grounder(inner, proc), dev, batch_size=args.batch_size)
    return _save(model, grounder, record, args, state, t0)
