"""The bodies of the ``riveg`` subcommands: ``data``, ``predict``, ``segment``, ``evaluate``, ``train``,
``reproduce``, ``demo``, ``push``. The parser and ``main`` live in the light package :mod:`riveg_cli` (so ``riveg
--help`` does not import torch), which imports this module only when a command runs. The library (``riveg_hf``)
never imports the CLI: ``riveg reproduce`` receives its step runner from here. Each subcommand imports what it
needs (datasets, gradio, accelerate ...) only when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import CLIError, main

__all__ = ["CLIError"]


# --------------------------------------------------------------------------- data
def _cmd_data_build(a: argparse.Namespace) -> int:
    from datasets_scripts import BUILDERS

    build = BUILDERS[a.dataset]
    kwargs = {"overwrite": a.overwrite}
    if a.dataset in ("twitter-gmner", "twitter-smner"):
        kwargs.update(images=a.images, captions=a.captions, max_image_pixels=a.max_image_pixels)
    if a.dataset == "twitter-gmner":
        kwargs.update(knowledge=a.knowledge)
        if a.configs:
            kwargs["configs"] = tuple(a.configs.split(","))
    if a.dataset == "twitter-fmnerg":
        kwargs.update(images=a.images, max_image_pixels=a.max_image_pixels, xml=a.xml)
        if a.configs:
            kwargs["configs"] = tuple(a.configs.split(","))
    elif a.xml:
        raise CLIError("--xml is for twitter-fmnerg (its boxes are Twitter-GMNER's XML).")
    if a.dataset == "twitter-smner":
        if not a.masks:
            raise CLIError(
                "twitter-smner needs --masks DIR (the folder of per-image <IMGID>.json mask files)."
            )
        kwargs.update(masks=a.masks)
    for flag in ("images", "captions", "knowledge", "masks"):
        if getattr(a, flag) and flag not in kwargs:
            raise CLIError(f"--{flag} does not apply to {a.dataset}.")
    raw = a.raw
    if raw is None:
        from riveg_hf.data.download import release_dir

        raw = release_dir(a.dataset)
        if not raw.is_dir():
            name = a.dataset if a.dataset in ("twitter-mner", "twitter-fmnerg") else "twitter-gmner"
            raise CLIError(
                f"no --raw given and no downloaded release at {raw}. Get it with `riveg data download {name}"
                f"{' twitter-gmner' if name == 'twitter-fmnerg' else ''}` (or set RIVEG_DATA to the folder that holds "
                "it), or pass --raw DIR."
            )
        if a.dataset == "twitter-fmnerg" and kwargs.get("xml") is None:
            kwargs["xml"] = release_dir("twitter-gmner") / "xml"
    result = build(raw, a.out, **kwargs)
    print(result.summary())
    if a.strict:
        bad = {
            k: v
            for k, v in result.report.counts.items()
            if k
            in (
                "rejected_id",
                "duplicate_id",
                "bad_xml",
                "corrupt_image",
                "unmatched_object",
                "bad_mask_file",
                "bad_mask_shape",
                "mask_size_mismatch",
                "box_outside_image",
                "empty_box",
            )
        }
        if bad:
            print(f"--strict: the build reported problems: {bad}", file=sys.stderr)
            return 2
    return 0


def _cmd_data_download(a: argparse.Namespace) -> int:
    from riveg_hf.data.download import download_release

    for name in a.datasets:
        download_release(name, a.dest, force=a.force)
    return 0


def _cmd_data_push(a: argparse.Namespace) -> int:
    from riveg_hf.data import push_dataset_folder

    try:
        info = push_dataset_folder(a.folder, a.repo_id, private=a.private)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # network, auth, offline mode: one line, no traceback
        raise CLIError(_upload_failed(a.repo_id, a.folder, err)) from None
    print(f"pushed {a.folder} to https://huggingface.co/datasets/{a.repo_id} ({info})")
    return 0


def _upload_failed(repo_id: str, folder: str, err: BaseException) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return (
        f"could not upload {folder} to the Hub repo {repo_id} ({type(err).__name__}: {first}). Check the network "
        f"(HF_HUB_OFFLINE must be unset) and your token (`hf auth login` or HF_TOKEN); {folder} was not changed."
    )


# --------------------------------------------------------------------------- evaluate
def read_jsonl(path: str | Path) -> list[dict]:
    from riveg_hf.predict import read_jsonl as _read

    try:
        return [row for _, row in _read(path)]
    except ValueError as err:
        raise CLIError(str(err)) from None


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from riveg_hf.data import load_built_dataset
    from riveg_hf.metrics import compute_gmner, compute_smner, format_table

    rows = read_jsonl(a.predictions)
    preds: dict[str, list] = {}
    failed: list[str] = []
    for k, row in enumerate(rows, 1):
        if "id" in row and "entities" not in row and "error" in row:
            failed.append(str(row["id"]))  # an input `riveg predict` could not process: it predicted nothing
            row = {**row, "entities": []}
        if "id" not in row or "entities" not in row:
            raise CLIError(
                f"{a.predictions}:{k}: each line needs 'id' and 'entities' (or 'error', as `riveg predict` writes "
                f"for a failed input); got keys {sorted(row)}."
            )
        if str(row["id"]) in preds:
            raise CLIError(f"{a.predictions}:{k}: duplicate prediction for id {row['id']!r}.")
        preds[str(row["id"])] = row["entities"]
    ds = load_built_dataset(a.dataset, a.config, split=a.split)
    if "entities" not in ds.column_names:
        raise CLIError(f"{a.dataset} ({a.config or 'default config'}) has no 'entities' column.")
    entity_feature = ds.features["entities"].feature
    type_names = entity_feature["type"].names
    refs = dict(zip(ds["id"], ds["entities"]))
    smner = a.smner or "masks" in entity_feature
    type_map = None
    if a.level == "coarse":
        from riveg_hf.data.fmnerg import FINE_TO_COARSE

        type_map = FINE_TO_COARSE
    elif a.level == "fine":
        from riveg_hf.data.fmnerg import FINE_TYPES

        if not set(type_names) & set(FINE_TYPES):  # --level fine on coarse data would change nothing
            raise CLIError(
                f"--level fine scores Twitter-FMNERG's fine types, but {a.dataset} ({a.config or 'default config'}) "
                f"has the types {list(type_names)[:8]}: drop --level, or use the fine config (--config fine)."
            )
    if a.protocol != "riveg-hf" and smner:
        raise CLIError("--protocol scores boxes (GMNER); SMNER masks have only the riveg-hf protocol")
    fn = compute_smner if smner else compute_gmner
    kwargs = {"type_map": type_map} if type_map else {}
    scores = fn(preds, refs, type_names=type_names, **kwargs)
    if a.protocol != "riveg-hf":
        from riveg_hf.metrics import PROTOCOLS, format_protocol_table

        names = list(PROTOCOLS) if a.protocol == "all" else ["riveg-hf", a.protocol]
        by = {"riveg-hf": {**scores, "scored_by": PROTOCOLS["riveg-hf"][1]}}
        for name in names[1:]:
            by[name] = compute_gmner(preds, refs, type_names=type_names, protocol=name, **kwargs)
        scores["protocols"] = {k: {m: v for m, v in s.items() if m not in ("per_type", "diagnostics")}
                               for k, s in by.items()}  # fmt: skip
    print(
        f"{a.predictions} vs {a.dataset} [{a.split}]: {len(preds)} predicted examples, {len(refs)} gold examples"
    )
    if failed:
        scores["failed_inputs"] = len(failed)
        print(
            f"{len(failed)} input(s) failed in `riveg predict` (lines with 'error'), scored as predicting no "
            f"entity: {failed[:5]}{' ...' if len(failed) > 5 else ''}"
        )
    print(format_table(scores))
    if "protocols" in scores:
        print("\nthe same predictions under each system's own scoring (docs/guides/metrics.md):")
        print(format_protocol_table(scores["protocols"]))
    if a.output:
        Path(a.output).write_text(json.dumps(scores, indent=2), encoding="utf-8")
        print(f"wrote {a.output}")
    if a.report:
        from riveg_hf.metrics import PROTOCOLS
        from riveg_hf.report import write_dataset_report

        wanted = list(PROTOCOLS) if a.protocol == "all" else ["riveg-hf", a.protocol]
        failed_note = [f"{len(failed)} input(s) failed in `riveg predict`, scored as predicting no entity"]
        page = write_dataset_report(
            preds, ds, a.report, prediction_images={str(r["id"]): r.get("image") for r in rows if "id" in r},
            protocols=list(dict.fromkeys(wanted)), smner=smner, type_map=type_map, notes=failed_note if failed else (),
            title=f"{Path(a.predictions).name} vs {a.dataset} [{a.split}]",
        )  # fmt: skip
        print(f"wrote {page}")
    return 0


# --------------------------------------------------------------------------- export
def _cmd_export(a: argparse.Namespace) -> int:
    from riveg_hf.export import export_predictions

    if a.dataset is None and a.config is not None:
        raise CLIError("--config names a config of --dataset; give --dataset too (or leave --config out).")
    summary = export_predictions(
        a.predictions,
        a.out,
        a.format,
        images=a.images,
        dataset=a.dataset,
        config=a.config,
        split=a.split,
        model_version=a.model_version,
        image_url_prefix=a.image_url_prefix,
    )
    print("\n".join(summary.lines()))
    return 0


# --------------------------------------------------------------------------- predict / segment
HUB_HELP = (
    "The model weights could not be loaded. Without access to the Hugging Face Hub, point --model at a local "
    "composite folder (written by `pipe.save_pretrained(DIR)` or `riveg train`); for the main job "
    "(examples/run.sh) set RIVEG_MODEL=DIR. Or download the checkpoints elsewhere (`hf download ID --local-dir "
    "DIR`) and build the composite from those folders."
)


def _load_pipeline(a: argparse.Namespace):
    """Same as ``pipeline(task, model=...)``, loading the composite directly so errors stay short."""
    import torch

    from riveg_hf import RiVEGModel, RiVEGPipeline
    from riveg_hf.pipeline import default_model_path
    from riveg_hf.stages import ComponentLoadError

    if getattr(a, "preset", None):
        if a.model:
            raise CLIError("give --model or --preset, not both.")
        from riveg_hf.pipeline import preset_path

        try:
            location = str(preset_path(a.preset))
        except ValueError as err:
            raise CLIError(str(err)) from None
    else:
        location = a.model or str(default_model_path(a.task))
    from riveg_hf.serving import UntrustedEndpointError

    device = a.device if a.device is not None else (0 if torch.cuda.is_available() else -1)
    trust = bool(getattr(a, "trust_endpoints", False))
    reader: dict = {}  # the joint reader's settings the user gives for this run
    if getattr(a, "reader_endpoint", None):
        reader["endpoint"] = a.reader_endpoint
        if a.endpoint_model:
            reader["endpoint_model"] = a.endpoint_model
    if getattr(a, "sake_prompts", None):
        reader["prompt_dir"] = a.sake_prompts
    if getattr(a, "search_cache", None):
        reader.update(search="cache", search_cache=a.search_cache)
    try:
        model = RiVEGModel.from_pretrained(
            location,
            revision=a.revision,
            local_files_only=a.local_files_only,
            dtype=getattr(torch, a.dtype) if a.dtype else None,
            trust_endpoints=trust,
            stage_options={"reader": reader} if reader else None,
            skip=_unused(location, a.task),
        )
        return RiVEGPipeline(model=model, device=device, task=a.task, trust_endpoints=trust)
    except UntrustedEndpointError as err:
        raise CLIError(str(err)) from None
    except (ComponentLoadError, OSError) as err:
        raise CLIError(f"{err}\n{HUB_HELP}") from None


def _unused(location: str, task: str) -> tuple[str, ...]:
    """The components a run of ``task`` never calls: the segmenter of a local composite or preset when no mask is
    asked for (not loaded: no download, no memory)."""
    import json
    import os

    path = os.path.join(location, "config.json")
    if task != "grounded-mner" or not os.path.isfile(path):
        return ()
    with open(path, encoding="utf-8") as fh:
        components = json.load(fh).get("components") or {}
    return ("segmenter",) if "segmenter" in components else ()


def _call_options(a: argparse.Namespace) -> dict:
    opts = {
        "mask_format": a.mask_format,
        "max_image_pixels": a.max_image_pixels,
        "allow_url_images": a.allow_url_images,
        "max_entities_per_image": a.max_entities_per_image,
        "vision_batch_size": a.vision_batch_size,
    }
    if a.box_threshold is not None:
        opts["box_threshold"] = a.box_threshold
    if a.entailment_threshold is not None:
        opts["entailment_threshold"] = a.entailment_threshold
    if a.no_descriptions:
        opts["use_descriptions"] = False
    return opts


def _cmd_predict(a: argparse.Namespace) -> int:
    from riveg_hf.predict import iter_jsonl_inputs, predict_to_jsonl

    sources = [bool(a.input), a.text is not None, bool(a.dataset)]
    if sum(sources) != 1:
        raise CLIError("give exactly one of --input FILE.jsonl, --text TEXT [--image PATH], --dataset DIR.")
    ids = None
    if a.dataset:
        from riveg_hf.data import load_built_dataset

        rows = load_built_dataset(a.dataset, a.config, split=a.split)
        if "tokens" not in rows.column_names and "text" not in rows.column_names:
            raise CLIError(f"{a.dataset}: rows need a 'tokens' or 'text' column, got {rows.column_names}.")
        ids = rows["id"] if "id" in rows.column_names else [str(i) for i in range(len(rows))]
    elif a.input:
        rows = iter_jsonl_inputs(a.input, a.images)
    else:
        rows = [{"id": "0", "text": a.text, "image": a.image}]
    pipe = _load_pipeline(a)
    if a.compile:
        print(f"compiled: {', '.join(pipe.compile_vision_encoders()) or 'nothing'}", file=sys.stderr)
    output = a.output
    to_stdout = output is None or output == "-"
    if to_stdout:
        import tempfile

        output = Path(tempfile.mkdtemp()) / "predictions.jsonl"
    on_result = None
    if a.draw:
        from riveg_hf.visualize import save_drawing

        def on_result(row, line):
            save_drawing(row, line, a.draw)

    counts = predict_to_jsonl(
        pipe,
        rows,
        output,
        ids=ids,
        batch_size=a.batch_size,
        call_kwargs=_call_options(a),
        on_result=on_result,
        progress=not to_stdout,
        num_workers=a.num_workers,
    )
    if to_stdout:
        sys.stdout.write(Path(output).read_text(encoding="utf-8"))
    else:
        shard = f"[process {counts['process']} of {counts['processes']}] " if counts["processes"] > 1 else ""
        print(
            f"{shard}wrote {output}: {counts['written']} new line(s), {counts['done_before']} already done, "
            f"{counts['errors']} error(s)"
            + (
                f", {counts['unknown']} entity(ies) unknown: a server gave no answer (see their 'grounding')"
                if counts.get("unknown")
                else ""
            ),
            file=sys.stderr,
        )
    return 0


def _cmd_segment(a: argparse.Namespace) -> int:
    from riveg_hf.images import ImageLoadError
    from riveg_hf.segment import add_masks
    from riveg_hf.stages import ComponentLoadError, Segmenter

    try:
        segmenter = Segmenter.from_pretrained(a.segmenter, local_files_only=a.local_files_only)
    except (ComponentLoadError, OSError) as err:
        raise CLIError(f"{err}\n{HUB_HELP}") from None
    rows = read_jsonl(a.predictions)
    out = sys.stdout if a.output in (None, "-") else open(a.output, "w", encoding="utf-8")
    n_err = 0
    try:
        for k, row in enumerate(rows, 1):
            if "entities" not in row:
                out.write(json.dumps(row) + "\n")
                continue
            if not any(e.get("box") is not None for e in row["entities"]):
                for e in row["entities"]:
                    e.setdefault("mask", None)
                out.write(json.dumps(row, ensure_ascii=False) + "\n")  # nothing to segment, no image needed
                continue
            image = row.get("image") or (str(Path(a.images) / f"{row['id']}.jpg") if a.images else None)
            if image and a.images and not os.path.isabs(image) and not Path(image).exists():
                image = str(Path(a.images) / image)
            try:
                if image is None:
                    raise ImageLoadError("no image: give --images DIR (with <id>.jpg) or an 'image' field")
                row["entities"] = add_masks(
                    row["entities"], image, segmenter, mask_format="rle", max_image_pixels=a.max_image_pixels
                )
            except (ImageLoadError, ValueError) as err:
                row["error"] = f"{a.predictions}:{k}: {err}"
                n_err += 1
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if n_err:
        print(
            f"riveg segment: {n_err} line(s) could not be segmented (see their 'error' field)",
            file=sys.stderr,
        )
        return 1
    return 0


# --------------------------------------------------------------------------- train
def _cmd_train(a: argparse.Namespace) -> int:
    """``riveg train STAGE``: the flags given become the stage's arguments (``riveg_hf.training.train``); a flag
    left out keeps the arguments dataclass's default (one source of defaults)."""
    from riveg_hf.training import arguments_class, build_arguments, train
    from riveg_hf.training.vlm import VLMGrounderArguments

    values = {
        "dataset": a.dataset, "base_model": a.base_model, "output": a.output, "config": a.config,
        "descriptions": a.descriptions, "epochs": a.epochs, "max_steps": a.max_steps, "batch_size": a.batch_size,
        "learning_rate": a.learning_rate, "max_length": a.max_length, "seed": a.seed,
        "max_train_samples": a.max_train_samples, "max_eval_samples": a.max_eval_samples,
        "resume_from_checkpoint": a.resume_from_checkpoint, "local_files_only": a.local_files_only or None,
        "method": a.method, "lora": False if a.full_finetune else None, "lora_r": a.lora_r,
        "lora_alpha": a.lora_alpha, "save": a.save, "entities": a.entities, "recognizer": a.recognizer,
        "gradient_checkpointing": False if a.no_gradient_checkpointing else None,
        "mixed_precision": a.mixed_precision, "num_generations": a.num_generations,
    }  # fmt: skip
    reader_flags = {
        "format": a.format, "level": a.level, "reasoning": a.reasoning, "box_jitter": a.box_jitter,
        "instruction_file": a.instruction_file, "system_prompt_file": a.system_prompt_file, "reward": a.reward,
        "max_new_tokens": a.max_new_tokens, "validate_every": a.validate_every,
    }  # fmt: skip
    if a.stage == "reader":
        values.update(reader_flags)
    else:
        given = sorted(f"--{k.replace('_', '-')}" for k, v in reader_flags.items() if v is not None)
        if given:
            raise CLIError(
                f"{', '.join(given)}: flags of `riveg train reader`, not of `riveg train {a.stage}`"
            )
    if (
        a.method not in (None, "sft")
        and a.stage != "reader"
        and (
            a.stage != "grounder"
            or arguments_class(a.stage, a.base_model, a.local_files_only) is not VLMGrounderArguments
        )
    ):
        raise CLIError(
            f"--method {a.method} trains vision-language grounders; {a.base_model} ({a.stage}) is not one"
        )
    try:
        args = build_arguments(a.stage, **values)
    except ValueError as err:
        # field names as flags; a reader's messages already name flags and quote names with underscores
        raise CLIError(str(err) if a.stage == "reader" else str(err).replace("_", "-")) from None
    rec = train(a.stage, args)
    if a.stage == "mner":
        for split in ("validation", "test"):
            if split in rec:
                r = rec[split]
                print(
                    f"{split}: MNER P {100 * r['precision']:.2f}  R {100 * r['recall']:.2f}  F1 {100 * r['f1']:.2f}"
                )
    elif "validation" in rec:
        print("validation:", json.dumps(rec["validation"]))
    print(f"saved {a.output} (run record: {a.output}/riveg_run.json)")
    return 0


# --------------------------------------------------------------------------- reproduce
def _cmd_reproduce(a: argparse.Namespace) -> int:
    from riveg_hf.reproduce import ReproduceArguments, reproduce

    args = ReproduceArguments(
        raw=a.raw,
        out=a.out,
        images=a.images,
        knowledge=a.knowledge,
        captions=a.captions,
        recipe=a.recipe,
        base_models=a.base_models,
        limit=a.limit,
        epochs=a.epochs,
        max_steps=a.max_steps,
        batch_size=a.batch_size,
        dry_run=a.dry_run,
        force=a.force,
        local_files_only=a.local_files_only,
        device=a.device,
        grpo=a.grpo,
        reader_format=a.reader_format,
        reasoning=a.reasoning,
        box_jitter=a.box_jitter,
        e2e_gmner_repo=a.e2e_gmner_repo,
    )
    from riveg_hf.reproduce import StepFailed

    try:
        results = reproduce(args, runner=_step_runner)
    except StepFailed as err:
        print(f"riveg reproduce: error: {err}", file=sys.stderr)
        return 1
    if results is not None:
        print(f"wrote {a.out}/results.json and {a.out}/results.md")
    return 0


def _step_runner(argv: list[str]) -> int:
    """How ``riveg reproduce`` runs each of its steps: the same ``riveg`` command, in this process."""
    return main(argv)


# --------------------------------------------------------------------------- demo / push
def _cmd_demo(a: argparse.Namespace) -> int:
    from riveg_hf.demo import launch
    from riveg_hf.serving import UntrustedEndpointError
    from riveg_hf.stages import ComponentLoadError

    try:
        launch(
            a.model, host=a.host, port=a.port, task=a.task, local_files_only=a.local_files_only,
            trust_endpoints=a.trust_endpoints,
        )  # fmt: skip
    except UntrustedEndpointError as err:
        raise CLIError(str(err)) from None
    except (ComponentLoadError, OSError) as err:
        raise CLIError(f"{err}\n{HUB_HELP}") from None
    return 0


def _cmd_push(a: argparse.Namespace) -> int:
    from riveg_hf.hub import push_composite

    results = json.loads(Path(a.results).read_text()) if a.results else None
    try:
        info = push_composite(a.folder, a.repo_id, private=a.private, results=results)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # network, auth, offline mode: one line, no traceback
        raise CLIError(_upload_failed(a.repo_id, a.folder, err)) from None
    print(f"pushed {a.folder} to https://huggingface.co/{a.repo_id} ({info})")
    return 0
