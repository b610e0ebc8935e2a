"""Model cards of riveg-hf checkpoints (``huggingface_hub.ModelCard``): a leaf that training (each trained
component's card) and publishing (``riveg push``: the composite's card) both use.

Cards are rendered from the templates in ``model_cards/`` with metadata from ``ModelCardData``
(``library_name``, ``tags`` with ``grounded-mner``, ``base_model``, ``datasets``, ``license``, and a
``model-index`` with the measured results).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from model_cards import INSTALL_COMMAND, template

__all__ = ["component_card", "composite_card"]

_DATASETS = {
    "gmner": ("riveg/twitter-gmner", "Twitter-GMNER"),
    "mner": ("riveg/twitter-gmner", "Twitter-GMNER"),
    "mner_llm_knowledge": ("riveg/twitter-gmner", "Twitter-GMNER (with LLM knowledge)"),
    "smner": ("riveg/twitter-smner", "Twitter-SMNER"),
    "twitter2015": ("riveg/twitter-mner", "Twitter-2015"),
    "twitter2017": ("riveg/twitter-mner", "Twitter-2017"),
    "fine": ("riveg/twitter-fmnerg", "Twitter-FMNERG (fine types)"),
    "coarse": ("riveg/twitter-fmnerg", "Twitter-FMNERG (coarse types)"),
}
#: what each joint-reader answer format is, for its card
_READER_FORMATS = {
    "qwen-vl": 'riveg-hf\'s joint reader format: a JSON list of `{"entity", "type", "bbox_2d"}`, the box in the '
    "model's own coordinates or `null` when the image does not show the entity",
    "e2e-gmner": "E2E-GMNER's format: `entity|type|[x1,y1,x2,y2]` parts separated by `; `, `None` when the image "
    "does not show the entity, boxes in the pixels of the image resized within 200704..802816 pixels",
}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def component_card(kind: str, record: dict[str, Any], *, repo_id: str | None = None) -> ModelCard:
    """The card of a trained component from its run record (``riveg_run.json``)."""
    args = record.get("arguments", {})
    config = args.get("config") or "gmner"
    ds_id, ds_name = _DATASETS.get(config, (str(args.get("dataset")), str(args.get("dataset"))))
    base = str(args.get("base_model", ""))
    name = repo_id or Path(str(args.get("output", "model"))).name
    common = {
        "base_model": base,
        "repo_id": repo_id or name,
        "model_name": name,
        "dataset_pretty": ds_name,
        "config": config,
        "command": record.get("command", ""),
    }
    if kind == "mner":
        evals, rows = [], []
        for split in ("validation", "test"):
            res = record.get(split)
            if not res:
                continue
            rows.append(
                {"split": split, "p": _pct(res["precision"]), "r": _pct(res["recall"]), "f": _pct(res["f1"])}
            )
            for metric in ("precision", "recall", "f1"):
                evals.append(
                    EvalResult(
                        task_type="token-classification",
                        task_name="Multimodal NER (text part)",
                        dataset_type=ds_id,
                        dataset_name=ds_name,
                        dataset_config=config,
                        dataset_split=split,
                        metric_type=metric,
                        metric_name=f"MNER {metric}",
                        metric_value=round(100 * res[metric], 2),
                    )
                )
        data = _component_data("token-classification", ["mner", "named-entity-recognition", "twitter"],
                               base, ds_id, name, evals or None)  # fmt: skip
        return ModelCard.from_template(
            data,
            install=INSTALL_COMMAND,
            template_path=str(template("mner")),
            result_rows=rows,
            uses_knowledge=record.get("uses_knowledge"),
            test_split_note="scored with the pipeline's recognizer (long tweets windowed)",
            epochs=args.get("epochs"),
            batch_size=args.get("batch_size"),
            learning_rate=args.get("learning_rate"),
            seed=args.get("seed"),
            max_length=record.get("max_length"),
            wall_time=record.get("wall_time_s"),
            peak_memory=record.get("peak_rss_mb"),
            device=record.get("device", "cpu"),
            **common,
        )
    if kind in ("entailment", "grounder"):
        results = {k: v for k, v in (record.get("validation") or {}).items() if isinstance(v, (int, float))}
        metric_name = "accuracy" if kind == "entailment" else "grounding_accuracy"
        if kind == "grounder" and "gmner_f1" in results:  # a VLM grounder, scored by generation
            metric_name = "gmner_f1"
        evals = None
        if metric_name in results:
            evals = [
                EvalResult(
                    task_type="zero-shot-object-detection"
                    if kind == "grounder"
                    else "zero-shot-image-classification",
                    dataset_type=ds_id,
                    dataset_name=ds_name,
                    dataset_split="validation",
                    metric_type=metric_name,
                    metric_value=round(float(results[metric_name]), 4),
                )
            ]
        data = _component_data(
            "zero-shot-object-detection" if kind == "grounder" else "zero-shot-image-classification",
            ["visual-entailment" if kind == "entailment" else "visual-grounding"],
            base, ds_id, name, evals,
        )  # fmt: skip
        return ModelCard.from_template(
            data,
            install=INSTALL_COMMAND,
            template_path=str(template(kind)),
            results=results,
            threshold=record.get("threshold"),
            vlm=record.get("family") in ("vlm", "florence2"),
            method=record.get("method", "sft"),
            fine_tuning=record.get("fine_tuning", "full"),
            entities=record.get("entities", "gold"),
            **common,
        )
    if kind == "reader":
        return _reader_card(record, args, ds_id, ds_name, base, name, common)
    raise ValueError(f"unknown component kind {kind!r}; valid: mner, entailment, grounder, reader")


def _component_data(pipeline_tag: str, tags: list[str], base, ds_id: str, name: str, evals) -> ModelCardData:
    """The card metadata every trained component shares (tags after ``grounded-mner``, ``riveg``)."""
    return ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["grounded-mner", "riveg", *tags],
        base_model=base or None,
        datasets=[ds_id],
        model_name=name,
        eval_results=evals,
    )


def _reader_card(record, args, ds_id, ds_name, base, name, common) -> ModelCard:
    """A joint reader's card: base, method, data, answer format and the validation scores."""
    results = {k: v for k, v in (record.get("validation") or {}).items() if isinstance(v, (int, float))}
    evals = [
        EvalResult(
            task_type="image-text-to-text",
            task_name="Grounded multimodal NER (joint reader)",
            dataset_type=ds_id,
            dataset_name=ds_name,
            dataset_config=common["config"],
            dataset_split="validation",
            metric_type=metric,
            metric_name=f"{metric.split('_')[0].upper()} F1",
            metric_value=round(100 * float(results[metric]), 2),
        )
        for metric in ("gmner_f1", "eeg_f1", "mner_f1")
        if metric in results
    ]
    fmt = record.get("format", "qwen-vl")
    data = _component_data("image-text-to-text", ["joint-reader", "named-entity-recognition", "visual-grounding"],
                           base, ds_id, name, evals or None)  # fmt: skip
    return ModelCard.from_template(
        data,
        install=INSTALL_COMMAND,
        template_path=str(template("reader")),
        results={k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()},
        base_on_hub=bool(base) and not Path(base).is_absolute() and not Path(base).exists(),
        method=record.get("method", "sft"),
        fine_tuning=record.get("fine_tuning", "lora"),
        answer_format=fmt,
        format_description=_READER_FORMATS.get(fmt, fmt),
        level=record.get("level", "coarse"),
        entity_types=", ".join(record.get("entity_types") or []),
        reasoning=record.get("reasoning", False),
        box_jitter=record.get("box_jitter", 0.0),
        reward=args.get("reward", "gmner"),
        best_epoch=record.get("best_epoch"),
        train_examples=(record.get("train_examples") or {}).get("tweets"),
        wall_time=record.get("wall_time_s"),
        **common,
    )


def composite_card(
    folder: str | os.PathLike, *, repo_id: str, results: dict[str, Any] | None = None
) -> ModelCard:
    """The card of a composite checkpoint folder, listing each component's class and location."""
    cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    task = cfg.get("task", "grounded-mner")
    comps = []
    bases = []
    for name, spec in cfg.get("components", {}).items():
        if "repo_id" in spec:
            loc = (
                f"[`{spec['repo_id']}`](https://huggingface.co/{spec['repo_id']}) @ `{spec.get('revision')}`"
            )
            bases.append(spec["repo_id"])
        elif "path" in spec:
            loc = f"subfolder `{spec['path']}/`"
        elif (spec.get("options") or {}).get("endpoint"):
            ep = spec["options"]["endpoint"]
            model = ep.get("model") or "the server's model"
            loc = f"**served**: `{model}` at `{ep.get('url')}` (OpenAI-compatible server; contacted only with trust_endpoints)"
        else:
            loc = "template (no model)"
        served = bool((spec.get("options") or {}).get("endpoint"))
        cls = spec.get("model_class") or ("served model" if served else "-")
        comps.append({"name": name, "model_class": cls, "location": loc})
    evals = None
    if results:
        evals = [
            EvalResult(
                task_type="object-detection",
                task_name=task,
                dataset_type="riveg/twitter-gmner",
                dataset_name="Twitter-GMNER",
                dataset_split="test",
                metric_type=k,
                metric_value=v,
            )
            for k, v in results.items()
            if isinstance(v, (int, float))
        ]
    data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="riveg-hf",
        tags=[
            "grounded-mner",
            "segmented-mner",
            "riveg",
            "multimodal",
            "named-entity-recognition",
            "visual-grounding",
        ],
        base_model=bases or None,
        datasets=["riveg/twitter-gmner"],
        model_name=repo_id.split("/")[-1],
        eval_results=evals,
    )
    return ModelCard.from_template(
        data,
        install=INSTALL_COMMAND,
        template_path=str(template("riveg_composite")),
        components=comps,
        task=task,
        task_pretty="segmented multimodal NER (SMNER)"
        if task == "segmented-mner"
        else "grounded multimodal NER (GMNER)",
        segmenter="segmenter" in cfg.get("components", {}),
        repo_id=repo_id,
        results=results or {},
        model_name=repo_id.split("/")[-1],
    )
