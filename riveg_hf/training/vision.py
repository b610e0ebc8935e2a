"""Training the entailment classifier and the grounder on a Twitter-GMNER dataset folder built with images.

    riveg train entailment --dataset twitter-gmner --base-model Salesforce/blip-itm-base-coco --output ent
    riveg train grounder   --dataset twitter-gmner --base-model IDEA-Research/grounding-dino-tiny --output gd

Examples come from the ``gmner`` config (rows with an image; rows without one are counted and skipped):

* **entailment** -- one example per entity: (image, ``Entity(TYPE)-description``) -> visible, labelled by
  the groundable flag (RiVEG's recipe). BLIP ITM fine-tunes its own 2-way ITM head (cross-entropy); a dual
  encoder (CLIP, SigLIP) learns ``sigmoid(scale * cos + bias)`` with a binary loss, the bias stored in the
  config. The validation split calibrates the decision threshold (``riveg_entailment_threshold``).
* **grounder** -- one example per groundable entity: (image, description) -> its gold boxes, through the
  detector's own loss in transformers (Grounding DINO family; OWL-ViT/OWLv2 have no training loss there).

Descriptions come from ``--descriptions FILE.jsonl`` (``{"id", "start", "end", "description"}`` per entity,
e.g. written by an LLM) or, without it, the template ``"Entity, a type"``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..stages.entailment import Entailment, calibrate_threshold
from ..stages.expander import template_description
from .common import (
    LazyImage,
    VisionTrainingArguments,
    accelerate_loop,
    dataset_provenance,
    image_of,
    load_descriptions,
    load_image_splits,
    peak_memory_mb,
    write_run_record,
)

__all__ = ["VisionTrainingArguments", "entity_examples", "train_entailment", "train_grounder"]


def entity_examples(
    split, descriptions: dict | None = None, *, groundable_only: bool = False, max_examples: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows of a gmner split -> one example per entity with its image; counts of what was skipped."""
    from datasets import Image as ImageFeature

    descriptions = descriptions or {}
    names = split.features["entities"].feature["type"].names
    split = split.cast_column("image", ImageFeature(decode=False))  # keep the encoded bytes; decode per batch
    out, counts = [], {"rows": 0, "rows_without_image": 0, "entities": 0}
    for row in split:
        counts["rows"] += 1
        if row["image"] is None or (row["image"].get("bytes") is None and row["image"].get("path") is None):
            counts["rows_without_image"] += 1
            continue
        image = LazyImage(row["image"])
        for e in row["entities"]:
            typ = names[e["type"]] if isinstance(e["type"], int) else e["type"]
            if groundable_only and not e["groundable"]:
                continue
            desc = descriptions.get((row["id"], e["start"], e["end"])) or template_description(e["text"], typ)
            out.append(
                {
                    "image": image,
                    "entity": e["text"],
                    "type": typ,
                    "description": desc,
                    "label": bool(e["groundable"]),
                    "boxes": [list(b) for b in e["boxes"]],
                }
            )
            counts["entities"] += 1
            if max_examples and len(out) >= max_examples:
                return out, counts
    return out, counts


def _need_images(counts: dict[str, int], args) -> None:
    if counts["entities"] == 0:
        raise ValueError(
            f"{args.dataset}: no training example has an image ({counts['rows_without_image']} of {counts['rows']} "
            "rows have none). Rebuild the dataset with `riveg data build twitter-gmner --images DIR`."
        )


def _finish(kind: str, model, processor, record: dict[str, Any], args, state, t0: float) -> dict[str, Any]:
    """Time and memory into the record; on the main process save model, processor, run record and card."""
    from ..cards import component_card

    record["wall_time_s"] = round(time.perf_counter() - t0, 1)
    record.update(peak_memory_mb())
    if state.is_main_process:
        model.save_pretrained(args.output)
        processor.save_pretrained(args.output)
        write_run_record(args.output, record)
        component_card(kind, record).save(Path(args.output) / "README.md")
    return record


# ---------------------------------------------------------------------- entailment
def train_entailment(args: VisionTrainingArguments) -> dict[str, Any]:
    """Fine-tune an image-text model into the pipeline's entailment component."""
    from transformers import AutoModel, AutoProcessor, BlipForImageTextRetrieval

    from ..distributed import partial_state
    from ..stages.base import Stage

    t0 = time.perf_counter()
    state = partial_state()
    ds = load_image_splits(args)
    desc = load_descriptions(args.descriptions)
    train, counts = entity_examples(ds["train"], desc, max_examples=args.max_train_samples)
    _need_images(counts, args)
    model, processor = Stage.load_model_and_processor(args.base_model, local_files_only=args.local_files_only)
    from ..stages.entailment import _vlm_types

    vlm_checkpoint = model.config.model_type in _vlm_types()
    if (
        not vlm_checkpoint
        and not isinstance(model, BlipForImageTextRetrieval)
        and not hasattr(model, "get_text_features")
    ):
        model = AutoModel.from_pretrained(
            args.base_model, use_safetensors=True, local_files_only=args.local_files_only
        )
        processor = AutoProcessor.from_pretrained(args.base_model, local_files_only=args.local_files_only)
    stage = Entailment(model, processor, hypothesis=args.hypothesis)
    vlm = stage.kind == "vlm"
    train_model = model
    if vlm and getattr(args, "lora", False):
        from transformers import set_seed

        from .vlm import _add_lora

        set_seed(args.seed)  # the adapter's initialisation is part of the run
        train_model = _add_lora(model, args)
    contrastive = stage.kind == "contrastive"
    bias = None
    if contrastive:
        with torch.no_grad():
            scale = float(model.logit_scale.exp()) if hasattr(model, "logit_scale") else 100.0
            init = float(model.logit_bias) if hasattr(model, "logit_bias") else -0.25 * scale
        bias = torch.nn.Parameter(torch.tensor(init))
        model.register_parameter("riveg_logit_bias", bias)

    def collate(items):
        hyps = stage.hypotheses([(x["entity"], x["type"], x["description"]) for x in items])
        labels = torch.tensor([int(x["label"]) for x in items])
        if vlm:  # the question with each image; the answer's first token is yes / no
            return {
                **dict(stage.vlm_encode([(image_of(x), h) for x, h in zip(items, hyps)])),
                "labels": labels,
            }
        tok = stage._tokenize(hyps)
        ip = getattr(processor, "image_processor", processor)
        pixels = ip(images=[image_of(x) for x in items], return_tensors="pt")["pixel_values"]
        return {**{k: v.cpu() for k, v in tok.items()}, "pixel_values": pixels, "labels": labels}

    def loss_fn(m, batch):
        m = getattr(m, "module", m)
        labels = batch.pop("labels")
        if vlm:  # cross-entropy over the two answers [no, yes]
            return torch.nn.functional.cross_entropy(stage.vlm_yes_no_logits(m, batch), labels)
        if not contrastive:
            out = m(
                input_ids=batch["input_ids"],
                attention_mask=batch.get("attention_mask"),
                pixel_values=batch["pixel_values"],
                use_itm_head=True,
            )
            return torch.nn.functional.cross_entropy(out.itm_score, labels)
        img = _feat(m.get_image_features(pixel_values=batch["pixel_values"]))
        txt = _feat(
            m.get_text_features(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")})
        )
        cos = (torch.nn.functional.normalize(img, dim=-1) * torch.nn.functional.normalize(txt, dim=-1)).sum(
            -1
        )
        logit_scale = m.logit_scale.exp() if hasattr(m, "logit_scale") else torch.tensor(100.0)
        logits = cos * logit_scale + m.riveg_logit_bias
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())

    cfg = accelerate_loop(train_model, train, collate, loss_fn, args)
    if train_model is not model:  # LoRA: merge into the base weights (exact), a plain checkpoint again
        model = train_model.merge_and_unload()
        stage.model = model
    if vlm:
        model.config.riveg_base_model = args.base_model
    model.eval()
    if contrastive:
        model.config.riveg_logit_bias = float(bias.detach())
        del model._parameters["riveg_logit_bias"]
    record: dict[str, Any] = {
        "task": "entailment",
        "arguments": asdict(args),
        "train_examples": counts,
        "loss_history": [h for h in cfg.history if "loss" in h],
        "data": dataset_provenance(args.dataset, args.config),
    }
    threshold = 0.5
    if "validation" in ds:
        dev, _ = entity_examples(ds["validation"], desc, max_examples=args.max_eval_samples)
        if dev:
            stage = Entailment(
                model,
                processor,
                hypothesis=args.hypothesis,
                logit_bias=model.config.to_dict().get("riveg_logit_bias"),
            )
            scores = np.concatenate(
                [
                    stage.score(image_of(x), stage.hypotheses([(x["entity"], x["type"], x["description"])]))
                    for x in dev
                ]
            )
            labels = np.array([x["label"] for x in dev])
            threshold = calibrate_threshold(scores, labels)
            pred = scores >= threshold
            tp = int((pred & labels).sum())
            p = tp / max(1, int(pred.sum()))
            r = tp / max(1, int(labels.sum()))
            record["validation"] = {
                "accuracy": float((pred == labels).mean()),
                "precision": p,
                "recall": r,
                "f1": 2 * p * r / (p + r) if p + r else 0.0,
                "examples": len(dev),
                "threshold": threshold,
            }
    model.config.riveg_entailment_threshold = threshold
    record["threshold"] = threshold
    return _finish("entailment", model, processor, record, args, state, t0)


def _feat(out):
    from ..stages.entailment import _features

    return _features(out)


# ---------------------------------------------------------------------- grounder
def _cxcywh(box: list[float], w: int, h: int) -> list[float]:
    x0, y0, x1, y1 = box
    return [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]


def train_grounder(args: VisionTrainingArguments) -> dict[str, Any]:
    """Fine-tune a Grounding DINO-family detector on (image, description) -> boxes, with its own loss; a
    vision-language model (Qwen2.5-VL, Qwen3-VL, Florence-2) goes to :func:`~riveg_hf.training.vlm.train_vlm_grounder`."""
    from ..distributed import partial_state
    from .vlm import VLMGrounderArguments, is_vlm_checkpoint, train_vlm_grounder

    if is_vlm_checkpoint(args.base_model, args.local_files_only):
        if not isinstance(args, VLMGrounderArguments):  # what was set beyond the defaults carries over
            base = VisionTrainingArguments(
                dataset=args.dataset, base_model=args.base_model, output=args.output
            )
            given = {k: v for k, v in vars(args).items() if v != getattr(base, k)}
            args = VLMGrounderArguments(dataset=args.dataset, base_model=args.base_model, output=args.output,
                                        **{k: v for k, v in given.items() if k not in ("dataset", "base_model",
                                                                                     "output")})  # fmt: skip
        return train_vlm_grounder(args)

    from ..stages.base import Stage
    from ..stages.grounder import Grounder
    from ..stages.grounders._detector import clean_query

    t0 = time.perf_counter()
    state = partial_state()
    ds = load_image_splits(args)
    desc = load_descriptions(args.descriptions)
    train, counts = entity_examples(
        ds["train"], desc, groundable_only=True, max_examples=args.max_train_samples
    )
    _need_images(counts, args)
    model, processor = Stage.load_model_and_processor(args.base_model, local_files_only=args.local_files_only)
    grounder = Grounder(model, processor)
    if grounder.family != "grounding-dino":
        raise ValueError(
            f"{args.base_model} ({model.config.model_type}) has no training loss in transformers; fine-tune a "
            "Grounding DINO checkpoint (e.g. IDEA-Research/grounding-dino-tiny) instead."
        )
    try:
        import scipy  # noqa: F401  (Grounding DINO's Hungarian matcher)
    except ImportError:
        raise ImportError(
            "riveg train grounder needs scipy (Grounding DINO's loss): pip install scipy"
        ) from None

    def collate(items):
        prompts = [clean_query(x["description"]) + "." for x in items]
        images = [image_of(x) for x in items]
        enc = processor(images=images, text=prompts, return_tensors="pt", padding=True)
        labels = []
        for x, image in zip(items, images):
            w, h = image.size
            boxes = torch.tensor([_cxcywh(b, w, h) for b in x["boxes"]], dtype=torch.float32).clamp(0, 1)
            labels.append({"class_labels": torch.zeros(len(boxes), dtype=torch.long), "boxes": boxes})
        return {**dict(enc), "labels": labels}

    def loss_fn(m, batch):
        labels = [
            {k: v.to(batch["pixel_values"].device) for k, v in lab.items()} for lab in batch.pop("labels")
        ]
        return m(**batch, labels=labels).loss

    model.train()
    cfg = accelerate_loop(model, train, collate, loss_fn, args)
    model.eval()
    record: dict[str, Any] = {
        "task": "grounder",
        "arguments": asdict(args),
        "train_examples": counts,
        "loss_history": [h for h in cfg.history if "loss" in h],
        "data": dataset_provenance(args.dataset, args.config),
    }
    if "validation" in ds:
        dev, _ = entity_examples(
            ds["validation"], desc, groundable_only=True, max_examples=args.max_eval_samples
        )
        if dev:
            from ..boxes import iou_xyxy

            grounder = Grounder(model, processor)
            ious = []
            for x in dev:
                ((box, _score),) = grounder.ground(image_of(x), [x["description"]])
                ious.append(max((iou_xyxy(box, b) for b in x["boxes"]), default=0.0) if box else 0.0)
            record["validation"] = {
                "grounding_accuracy": float(np.mean([i >= 0.5 for i in ious])),
                "mean_iou": float(np.mean(ious)),
                "examples": len(dev),
            }
    return _finish("grounder", model, processor, record, args, state, t0)
