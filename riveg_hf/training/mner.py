"""Training the recognizer (MNER) with the Trainer, on a riveg-hf dataset folder.

    riveg train mner --dataset twitter-gmner --config gmner --base-model bert-base-cased --output mner-bert

* word-level labels on the first sub-token of each word (the others, and special tokens, are -100);
* ``--config mner_llm_knowledge``: RiVEG/PGIM's LLM-written knowledge is appended after the tweet as a
  second segment (``tokenizer(words, knowledge)``, truncated first), never labelled, never predicted;
  the saved config says so (``riveg_knowledge: true``), and the pipeline then feeds knowledge in the
  same format (from the input, or written by its expander LLM);
* entity-level P/R/F1 with :mod:`riveg_hf.metrics` on the validation split each epoch; the best
  checkpoint by validation F1 is kept; the test split is scored at the end through the same
  :class:`~riveg_hf.stages.Recognizer` the pipeline uses (long tweets windowed, not truncated);
* the label names go into the config (``id2label``), so the checkpoint loads as the pipeline's
  ``recognizer`` directly; runs unchanged under ``accelerate launch``; resumable; seeded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import base_model_error, dataset_provenance, peak_memory_mb, write_run_record

__all__ = ["MNERTrainingArguments", "evaluate_recognizer", "train_mner"]

#: the configs of the project's datasets that hold ner_tags (any other config with ner_tags works too)
CONFIGS = ("gmner", "mner", "mner_llm_knowledge", "twitter2015", "twitter2017", "fine", "coarse")


@dataclass
class MNERTrainingArguments:
    """The arguments of ``riveg train mner`` (each field's default is the recipe's)."""

    dataset: str
    base_model: str
    output: str
    config: str = "gmner"
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int | None = None  # default: 128 (text) / 256 (text + knowledge)
    seed: int = 42
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    resume_from_checkpoint: str | None = None
    logging_steps: int = 50
    local_files_only: bool = False


def _spans(tags: list[str]) -> list[tuple[int, int, str]]:
    from ..data.conll import tags_to_spans

    return tags_to_spans(tags, orphan_i="begin")


def _tokenize(
    batch: dict[str, list], tokenizer, label_names: list[str], max_length: int, with_knowledge: bool
):
    words = batch["tokens"]
    if with_knowledge:
        know = [k if k else ["none"] for k in batch["knowledge"]]
        enc = tokenizer(
            words, know, is_split_into_words=True, truncation="only_second", max_length=max_length
        )
    else:
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    labels = []
    for i, tags in enumerate(batch["ner_tags"]):
        word_ids = enc.word_ids(i)
        seq = enc.sequence_ids(i)
        prev = None
        row = []
        for w, s in zip(word_ids, seq):
            if w is None or s != 0 or w == prev:
                row.append(-100)
            else:
                row.append(int(tags[w]))
            if s == 0:
                prev = w
        labels.append(row)
    enc["labels"] = labels
    return enc


def _word_level(pred_ids: np.ndarray, label_ids: np.ndarray, names: list[str]):
    """Token-level predictions/labels -> word-level tag sequences (first sub-tokens only)."""
    preds, golds = [], []
    for p, lab in zip(pred_ids, label_ids):
        keep = lab != -100
        preds.append([names[i] for i in p[keep]])
        golds.append([names[i] for i in lab[keep]])
    return preds, golds


def mner_scores(pred_tags: list[list[str]], gold_tags: list[list[str]]) -> dict[str, float]:
    """Entity-level MNER precision / recall / F1 of tag sequences, through :func:`riveg_hf.metrics.compute_gmner`."""
    from ..metrics import compute_gmner

    preds = [[{"start": s, "end": e, "type": t, "box": None} for s, e, t in _spans(p)] for p in pred_tags]
    golds = [[{"start": s, "end": e, "type": t, "boxes": []} for s, e, t in _spans(g)] for g in gold_tags]
    types = list(dict.fromkeys(t for rows in (preds, golds) for r in rows for t in (e["type"] for e in r)))
    r = compute_gmner(preds, golds, type_names=types or ["PER"])
    return {
        "mner_precision": r["mner_precision"],
        "mner_recall": r["mner_recall"],
        "mner_f1": r["mner_f1"],
        "per_type": {t: d["mner_f1"] for t, d in r["per_type"].items()},
    }


def evaluate_recognizer(model, tokenizer, split, *, knowledge: bool, batch_size: int = 64) -> dict[str, Any]:
    """Score a token-classification model on a dataset split with the pipeline's Recognizer (windowed)."""
    from ..metrics import compute_gmner
    from ..stages import Recognizer

    rec = Recognizer(model, tokenizer, batch_size=batch_size, uses_knowledge=knowledge)
    names = split.features["entities"].feature["type"].names
    preds = []
    rows = split.to_list() if hasattr(split, "to_list") else list(split)
    for start in range(0, len(rows), 256):
        chunk = rows[start : start + 256]
        found = rec([r["tokens"] for r in chunk], [r.get("knowledge") for r in chunk] if knowledge else None)
        preds += [
            [{"start": s.start, "end": s.end, "type": s.type, "box": None} for s in spans] for spans in found
        ]
    golds = [
        [{"start": e["start"], "end": e["end"], "type": names[e["type"]], "boxes": []} for e in r["entities"]]
        for r in rows
    ]
    types = list(dict.fromkeys([*names, *(e["type"] for p in preds for e in p)]))
    r = compute_gmner(preds, golds, type_names=types)
    return {
        "precision": r["mner_precision"],
        "recall": r["mner_recall"],
        "f1": r["mner_f1"],
        "per_type": {t: {"f1": d["mner_f1"], "n_gold": d["n_gold"]} for t, d in r["per_type"].items()},
        "n_examples": len(rows),
        "n_gold_entities": r["n_references"],
    }


def train_mner(args: MNERTrainingArguments) -> dict[str, Any]:
    """Fine-tune a token-classification model; returns the run record (also written to ``riveg_run.json``)."""
    import torch

    # several processes on a machine without GPU: one CPU process group; the Trainer forms its own state, so
    # it is told to use the CPU (else each process would train alone on all the data into the same folder)
    from accelerate.state import DistributedType
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )
    from transformers.trainer_utils import get_last_checkpoint

    from ..data import load_built_dataset
    from ..distributed import partial_state

    cpu_group = partial_state().distributed_type == DistributedType.MULTI_CPU
    t0 = time.perf_counter()
    try:
        ds = load_built_dataset(args.dataset, args.config)
    except ValueError as err:
        if "BuilderConfig" in str(err) or "not found" in str(err):
            raise ValueError(f"--config {args.config!r} is not a config of {args.dataset}: {err}") from None
        raise
    if "ner_tags" not in ds["train"].column_names:
        raise ValueError(
            f"{args.dataset} ({args.config}) has no ner_tags column; MNER trains on e.g. {list(CONFIGS)}"
        )
    missing = [s for s in ("train", "validation") if s not in ds]
    if missing:
        raise ValueError(
            f"{args.dataset} ({args.config}) lacks the split(s) {missing}; build it with `riveg data build`."
        )
    with_knowledge = "knowledge" in ds["train"].column_names
    label_names = ds["train"].features["ner_tags"].feature.names
    max_length = args.max_length or (256 if with_knowledge else 128)
    train, dev = ds["train"], ds["validation"]
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples:
        dev = dev.select(range(min(args.max_eval_samples, len(dev))))

    try:
        tokenizer = AutoTokenizer.from_pretrained(args.base_model, local_files_only=args.local_files_only)
        model = AutoModelForTokenClassification.from_pretrained(
            args.base_model,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
            use_safetensors=True,
            local_files_only=args.local_files_only,
        )
    except (OSError, ValueError) as err:
        raise base_model_error(args.base_model, err) from None
    if not getattr(tokenizer, "is_fast", True):
        raise ValueError(
            f"{args.base_model}: a fast tokenizer is needed (word_ids); use a model that ships tokenizer.json"
        )
    model.config.riveg_knowledge = with_knowledge
    # the dataset's type set (Twitter-GMNER's 4, Twitter-FMNERG's 51 ...): the recognizer reports these
    model.config.riveg_entity_types = list(dict.fromkeys(n[2:] for n in label_names if n[:2] in ("B-", "I-")))
    # never longer than the model can read (XLM-R/BERT: 512 positions; small models fewer)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        offset = (
            2 if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        )
        if max_length > positions - offset:
            if args.max_length:
                print(
                    f"--max-length {args.max_length} > what {args.base_model} reads; using {positions - offset}"
                )
            max_length = positions - offset

    cols = train.column_names

    def prep(batch):
        return _tokenize(batch, tokenizer, label_names, max_length, with_knowledge)

    train_tok = train.map(prep, batched=True, remove_columns=cols, desc="tokenizing train")
    dev_tok = dev.map(prep, batched=True, remove_columns=dev.column_names, desc="tokenizing validation")

    def compute_metrics(p):
        logits, labels = p
        pred_tags, gold_tags = _word_level(np.argmax(logits, axis=-1), labels, label_names)
        s = mner_scores(pred_tags, gold_tags)
        return {k: v for k, v in s.items() if k != "per_type"}

    steps_mode = args.max_steps and args.max_steps > 0
    targs = TrainingArguments(
        output_dir=args.output,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if steps_mode else -1,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        eval_strategy="steps" if steps_mode else "epoch",
        eval_steps=args.max_steps if steps_mode else None,
        save_strategy="steps" if steps_mode else "epoch",
        save_steps=args.max_steps if steps_mode else None,
        load_best_model_at_end=True,
        metric_for_best_model="mner_f1",
        greater_is_better=True,
        save_total_limit=2,
        logging_steps=args.logging_steps,
        seed=args.seed,
        data_seed=args.seed,
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
        use_cpu=cpu_group,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_tok,
        eval_dataset=dev_tok,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    resume = args.resume_from_checkpoint
    if resume == "auto":
        resume = get_last_checkpoint(args.output)
    train_out = trainer.train(resume_from_checkpoint=resume)
    record: dict[str, Any] = {
        "task": "mner",
        "arguments": asdict(args),
        "max_length": max_length,
        "uses_knowledge": with_knowledge,
        "labels": label_names,
        "data": dataset_provenance(args.dataset, args.config),
        "train_runtime_s": train_out.metrics.get("train_runtime"),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_validation_mner_f1": trainer.state.best_metric,
    }
    if trainer.is_world_process_zero():
        trainer.save_model(args.output)  # the best model (load_best_model_at_end), with id2label
        tokenizer.save_pretrained(args.output)
    model = trainer.model
    model.eval()
    with torch.no_grad():
        record["validation"] = evaluate_recognizer(model, tokenizer, dev, knowledge=with_knowledge)
        if "test" in ds:
            record["test"] = evaluate_recognizer(model, tokenizer, ds["test"], knowledge=with_knowledge)
    record["wall_time_s"] = round(time.perf_counter() - t0, 1)
    record.update(peak_memory_mb())
    if trainer.is_world_process_zero():
        write_run_record(args.output, record)
        _write_card(args, record)
    return record


def _write_card(args: MNERTrainingArguments, record: dict[str, Any]) -> None:
    from ..cards import component_card

    component_card("mner", record).save(Path(args.output) / "README.md")
