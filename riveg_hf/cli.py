"""The ``riveg`` command line: ``data``, ``predict``, ``segment``, ``evaluate``, ``train``, ``demo``, ``push``.

Each subcommand imports what it needs (datasets, gradio, accelerate ...) only when it runs; ``import riveg_hf``
itself loads torch and transformers, since importing the package registers the pipeline tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


class CLIError(Exception):
    """An error shown to the user as one line, without a traceback."""


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
            raise CLIError(
                f"no --raw given and no downloaded release at {raw}. Get it with `riveg data download "
                f"{'twitter-mner' if a.dataset == 'twitter-mner' else 'twitter-gmner'}` (or set RIVEG_DATA to the "
                "folder that holds it), or pass --raw DIR."
            )
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


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="build Hugging Face datasets from the raw releases, push them to the Hub")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{download,build,push}")
    d = dsub.add_parser(
        "download",
        help="download the public releases (text + boxes) into the data folder that `data build` reads",
        description="Download Twitter-GMNER v2.0 (NUSTM/GMNER) and/or Twitter-2015/2017 (jefferyYu/UMT) from the "
        "authors' GitHub repositories, resumably, with SHA-256 checksums recorded on the first download and "
        "verified after. Default folder: $RIVEG_DATA, else ~/.cache/riveg-hf/data. Images are not included: "
        "see the README, Datasets.",
    )
    d.add_argument("datasets", nargs="+", choices=["twitter-gmner", "twitter-mner"])
    d.add_argument(
        "--dest", default=None, help="data folder (default: $RIVEG_DATA or ~/.cache/riveg-hf/data)"
    )
    d.add_argument("--force", action="store_true", help="download again and accept a changed release")
    d.set_defaults(func=_cmd_data_download)
    b = dsub.add_parser(
        "build",
        help="raw release -> parquet shards + dataset card that load_dataset(DIR, config) reads",
        description="Build a dataset folder. Examples:\n"
        "  riveg data build twitter-gmner --raw ../shared/data/twitter-gmner/v2.0 --out twitter-gmner \\\n"
        "      --knowledge ../shared/data/riveg-aux/llm-knowledge --captions ../shared/data/riveg-aux/captions\n"
        "  riveg data build twitter-smner --raw ../shared/data/twitter-gmner/v2.0 --masks MASKS --out twitter-smner\n"
        "  riveg data build twitter-mner --raw ../shared/data/twitter-mner --out twitter-mner",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("dataset", choices=["twitter-gmner", "twitter-smner", "twitter-mner"])
    b.add_argument(
        "--raw",
        default=None,
        help="the raw release folder: txt/{train,dev,test}.txt + xml/<id>.xml (twitter-gmner, twitter-smner), or "
        "twitter2015/ + twitter2017/ with {train,valid,test}.txt (twitter-mner). Default: the release "
        "`riveg data download` put in $RIVEG_DATA (~/.cache/riveg-hf/data)",
    )
    b.add_argument("--out", required=True, help="output folder (parquet shards + README.md dataset card)")
    b.add_argument("--images", help="folder of <IMGID>.jpg; without it image=None")
    b.add_argument(
        "--knowledge", help="RiVEG llm-knowledge folder (train/valid/test.txt): adds mner_llm_knowledge"
    )
    b.add_argument("--captions", help="RiVEG captions folder (mplug-owl-{train,dev,test}.txt)")
    b.add_argument("--masks", help="twitter-smner: folder of per-image <IMGID>.json mask files")
    b.add_argument("--configs", help="comma-separated subset of configs to build")
    b.add_argument(
        "--max-image-pixels", type=int, default=None, help="refuse larger images (default 40M pixels)"
    )
    b.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    b.add_argument(
        "--strict", action="store_true", help="exit with code 2 if anything was skipped or unmatched"
    )
    b.set_defaults(func=_cmd_data_build)
    ps = dsub.add_parser("push", help="upload a built dataset folder to the Hub (needs a token)")
    ps.add_argument("folder")
    ps.add_argument("repo_id", help="org/name")
    ps.add_argument("--private", action="store_true")
    ps.set_defaults(func=_cmd_data_push)


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
    fn = compute_smner if smner else compute_gmner
    scores = fn(preds, refs, type_names=type_names)
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
    if a.output:
        Path(a.output).write_text(json.dumps(scores, indent=2), encoding="utf-8")
        print(f"wrote {a.output}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predictions (jsonl) against a dataset: MNER, EEG, GMNER/SMNER",
        description='Score a predictions file: one JSON line per example {"id", "entities": '
        '[{"start", "end", "type", "box"}]} (pipeline outputs work as they are).',
    )
    p.add_argument("--predictions", required=True, help="jsonl with one {id, entities} line per example")
    p.add_argument(
        "--dataset", required=True, help="a dataset folder or Hub id (built by `riveg data build`)"
    )
    p.add_argument("--config", default=None, help="dataset config (default: the dataset's default)")
    p.add_argument("--split", default="test")
    p.add_argument("--smner", action="store_true", help="score masks (automatic for SMNER datasets)")
    p.add_argument("--output", help="also write the scores as JSON")
    p.set_defaults(func=_cmd_evaluate)


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

    location = a.model or str(default_model_path(a.task))
    device = a.device if a.device is not None else (0 if torch.cuda.is_available() else -1)
    try:
        model = RiVEGModel.from_pretrained(
            location,
            revision=a.revision,
            local_files_only=a.local_files_only,
            dtype=getattr(torch, a.dtype) if a.dtype else None,
        )
    except (ComponentLoadError, OSError) as err:
        raise CLIError(f"{err}\n{HUB_HELP}") from None
    return RiVEGPipeline(model=model, device=device, task=a.task)


def _call_options(a: argparse.Namespace) -> dict:
    opts = {
        "mask_format": a.mask_format,
        "max_image_pixels": a.max_image_pixels,
        "allow_url_images": a.allow_url_images,
        "max_entities_per_image": a.max_entities_per_image,
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
    )
    if to_stdout:
        sys.stdout.write(Path(output).read_text(encoding="utf-8"))
    else:
        print(
            f"wrote {output}: {counts['written']} new line(s), {counts['done_before']} already done, "
            f"{counts['errors']} error(s)",
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


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="grounded / segmented MNER on tweets (jsonl, --text, or a whole dataset)",
        description="Run the grounded-mner (or segmented-mner) pipeline and write JSON lines "
        "{id, text, entities}. Examples:\n"
        "  riveg predict --input examples/tweets.jsonl --output predictions.jsonl\n"
        "  riveg predict --text 'Obama in Paris' --image photo.jpg\n"
        "  accelerate launch -m riveg_hf.cli predict --dataset twitter-gmner --split test --output preds.jsonl\n"
        "Without --model the task's zero-shot default downloads public checkpoints from the Hub; "
        "--model also takes a local composite folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", help="jsonl with one {id?, text | tokens, image?} per line")
    p.add_argument(
        "--images", help="folder that relative image paths in --input resolve against (default: its folder)"
    )
    p.add_argument("--text", help="one tweet")
    p.add_argument("--image", help="its image (with --text)")
    p.add_argument(
        "--dataset", help="a dataset folder / hub id built by `riveg data build` (rows with tokens, image)"
    )
    p.add_argument("--config", default=None, help="dataset config (default: its default)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--output", help="output jsonl (default: stdout); resumable: ids already there are skipped"
    )
    p.add_argument(
        "--model", default=None, help="composite checkpoint: hub id or local folder (default: task default)"
    )
    p.add_argument("--task", default="grounded-mner", choices=["grounded-mner", "segmented-mner"])
    p.add_argument("--revision", default=None)
    p.add_argument("--local-files-only", action="store_true", help="never contact the Hub")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: GPU if available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--box-threshold", type=float, default=None)
    p.add_argument("--entailment-threshold", type=float, default=None)
    p.add_argument(
        "--no-descriptions", action="store_true", help="ground the entity names, not the LLM descriptions"
    )
    p.add_argument("--mask-format", default="rle", choices=["rle", "none"])
    p.add_argument("--max-image-pixels", type=int, default=40_000_000)
    p.add_argument(
        "--allow-url-images",
        action="store_true",
        help="fetch http(s) image URLs (public addresses only, every redirect checked; off by default)",
    )
    p.add_argument(
        "--max-entities-per-image",
        type=int,
        default=100,
        help="ground at most this many entities per image; the others are kept with box=None and a note",
    )
    p.add_argument("--draw", help="also save one annotated image per input into this folder")
    p.set_defaults(func=_cmd_predict)

    s = sub.add_parser(
        "segment",
        help="add SAM 2 masks to GMNER predictions from any model (box-prompted)",
        description="Read predictions jsonl ({id, entities: [{..., box}], image?}) and add a COCO RLE mask to every "
        "entity with a box, prompting the segmenter with the boxes of each image in one call.",
    )
    s.add_argument("--predictions", required=True)
    s.add_argument("--images", help="folder with <id>.jpg (or relative 'image' paths)")
    s.add_argument(
        "--segmenter", default="facebook/sam2.1-hiera-tiny", help="SAM 2 / SAM checkpoint (hub id or folder)"
    )
    s.add_argument("--output", help="output jsonl (default: stdout)")
    s.add_argument("--local-files-only", action="store_true")
    s.add_argument("--max-image-pixels", type=int, default=40_000_000)
    s.set_defaults(func=_cmd_segment)


# --------------------------------------------------------------------------- train
def _cmd_train(a: argparse.Namespace) -> int:
    if a.stage == "mner":
        from riveg_hf.training.mner import MNERTrainingArguments, train_mner

        args = MNERTrainingArguments(
            dataset=a.dataset,
            base_model=a.base_model,
            output=a.output,
            config=a.config or "gmner",
            epochs=a.epochs,
            max_steps=a.max_steps or -1,
            batch_size=a.batch_size or 32,
            learning_rate=a.learning_rate or 5e-5,
            max_length=a.max_length,
            seed=a.seed,
            max_train_samples=a.max_train_samples,
            max_eval_samples=a.max_eval_samples,
            resume_from_checkpoint=a.resume_from_checkpoint,
            local_files_only=a.local_files_only,
        )
        rec = train_mner(args)
        for split in ("validation", "test"):
            if split in rec:
                r = rec[split]
                print(
                    f"{split}: MNER P {100 * r['precision']:.2f}  R {100 * r['recall']:.2f}  F1 {100 * r['f1']:.2f}"
                )
    else:
        from riveg_hf.training.vision import VisionTrainingArguments, train_entailment, train_grounder

        args = VisionTrainingArguments(
            dataset=a.dataset,
            base_model=a.base_model,
            output=a.output,
            config=a.config or "gmner",
            descriptions=a.descriptions,
            epochs=a.epochs,
            max_steps=a.max_steps,
            batch_size=a.batch_size or 8,
            learning_rate=a.learning_rate or 2e-5,
            seed=a.seed,
            max_train_samples=a.max_train_samples,
            max_eval_samples=a.max_eval_samples,
            resume_from_checkpoint=a.resume_from_checkpoint,
            local_files_only=a.local_files_only,
        )
        rec = (train_entailment if a.stage == "entailment" else train_grounder)(args)
        if "validation" in rec:
            print("validation:", json.dumps(rec["validation"]))
    print(f"saved {a.output} (run record: {a.output}/riveg_run.json)")
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a stage: mner (Trainer), entailment or grounder (accelerate)",
        description="Train one stage on a dataset folder built by `riveg data build`; the output folder loads "
        "as that stage of the pipeline. Runs unchanged under `accelerate launch -m riveg_hf.cli train ...`.\n"
        "  riveg train mner --dataset twitter-gmner --config mner_llm_knowledge --base-model bert-base-cased "
        "--output mner\n"
        "  riveg train entailment --dataset twitter-gmner --base-model Salesforce/blip-itm-base-coco --output ent\n"
        "  riveg train grounder --dataset twitter-gmner --base-model IDEA-Research/grounding-dino-tiny --output gd",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stage", choices=["mner", "entailment", "grounder"])
    p.add_argument("--dataset", required=True, help="dataset folder or hub id")
    p.add_argument(
        "--config",
        default=None,
        help="mner: gmner | mner | mner_llm_knowledge | twitter2015 | twitter2017; others: gmner",
    )
    p.add_argument("--base-model", required=True, help="hub id or local folder of the model to fine-tune")
    p.add_argument("--output", required=True)
    p.add_argument(
        "--descriptions", help="entailment/grounder: jsonl {id, start, end, description} per entity"
    )
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many optimizer steps (quick runs)"
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--max-length", type=int, default=None, help="mner: tokens per example")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument(
        "--resume-from-checkpoint", default=None, help="a checkpoint folder, or 'auto' for the latest"
    )
    p.add_argument("--local-files-only", action="store_true")
    p.set_defaults(func=_cmd_train)


# --------------------------------------------------------------------------- demo / push
def _cmd_demo(a: argparse.Namespace) -> int:
    from riveg_hf.demo import launch
    from riveg_hf.stages import ComponentLoadError

    try:
        launch(a.model, host=a.host, port=a.port, task=a.task, local_files_only=a.local_files_only)
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


def _add_demo_push(sub) -> None:
    d = sub.add_parser("demo", help="serve the Gradio demo (binds 127.0.0.1 unless --host says otherwise)")
    d.add_argument(
        "--model", default=None, help="composite checkpoint (hub id or folder); default: task default"
    )
    d.add_argument("--task", default="grounded-mner", choices=["grounded-mner", "segmented-mner"])
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=7860)
    d.add_argument("--local-files-only", action="store_true")
    d.set_defaults(func=_cmd_demo)
    p = sub.add_parser("push", help="upload a composite checkpoint with its model card and endpoint handler")
    p.add_argument("folder", help="a folder written by pipe.save_pretrained(...)")
    p.add_argument("repo_id", help="org/name")
    p.add_argument("--private", action="store_true")
    p.add_argument("--results", help="JSON file of scores (e.g. from `riveg evaluate --output`) for the card")
    p.set_defaults(func=_cmd_push)


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riveg",
        description="riveg-hf: grounded (GMNER) and segmented (SMNER) multimodal NER with Hugging Face models.",
    )
    from riveg_hf import __version__

    parser.add_argument("--version", action="version", version=f"riveg-hf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for adder in (_add_data, _add_predict, _add_evaluate, _add_train, _add_demo_push):
        adder(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"riveg: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as err:
        print(f"riveg {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
