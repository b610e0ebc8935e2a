"""The ``riveg`` command line, light to start: argument parsing only; each subcommand's implementation
(in :mod:`riveg_hf.cli`) and with it torch / transformers is imported only when that subcommand runs, so
``riveg --help`` and ``riveg --version`` answer at once.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["CLIError", "build_parser", "main"]


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("riveg-hf")
    except PackageNotFoundError:  # running from a checkout that is not installed
        import re
        from pathlib import Path

        init = Path(__file__).resolve().parents[1] / "riveg_hf" / "__init__.py"
        found = re.search(r'__version__ = "([^"]+)"', init.read_text(encoding="utf-8"))
        return found.group(1) if found else "unknown"


class CLIError(Exception):
    """An error shown to the user as one line, without a traceback."""


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="build Hugging Face datasets from the raw releases, push them to the Hub")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{download,build,push}")
    d = dsub.add_parser(
        "download",
        help="download the public releases (text + boxes) into the data folder that `data build` reads",
        description="Download Twitter-GMNER v2.0 (NUSTM/GMNER) and/or Twitter-2015/2017 (jefferyYu/UMT) from the "
        "authors' GitHub repositories, resumably, with SHA-256 checksums recorded on the first download and "
        "verified after. Default folder: $RIVEG_DATA, else ~/.cache/riveg-hf/data. Images are not included: "
        "see docs/guides/datasets.md.",
    )
    d.add_argument("datasets", nargs="+", choices=["twitter-gmner", "twitter-mner", "twitter-fmnerg"])
    d.add_argument(
        "--dest", default=None, help="data folder (default: $RIVEG_DATA or ~/.cache/riveg-hf/data)"
    )
    d.add_argument("--force", action="store_true", help="download again and accept a changed release")
    d.set_defaults(func="_cmd_data_download")
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
    b.add_argument("dataset", choices=["twitter-gmner", "twitter-smner", "twitter-mner", "twitter-fmnerg"])
    b.add_argument(
        "--xml", help="twitter-fmnerg: the Twitter-GMNER v2.0 xml/ folder (default: the downloaded one)"
    )
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
    b.set_defaults(func="_cmd_data_build")
    ps = dsub.add_parser("push", help="upload a built dataset folder to the Hub (needs a token)")
    ps.add_argument("folder")
    ps.add_argument("repo_id", help="org/name")
    ps.add_argument("--private", action="store_true")
    ps.set_defaults(func="_cmd_data_push")


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
    p.add_argument(
        "--protocol",
        default="riveg-hf",
        choices=["riveg-hf", "riveg", "h-index", "e2e-gmner", "fmnerg", "sake", "all"],
        help="whose scoring to use: this project's (default), a published system's (RiVEG, H-Index, E2E-GMNER, "
        "TIGER/FMNERG, SAKE, reimplemented from their code; docs/guides/metrics.md), or all of them as one table",
    )
    p.add_argument(
        "--level",
        choices=["fine", "coarse"],
        default=None,
        help="Twitter-FMNERG: score the fine types (default) or their coarse types",
    )
    p.add_argument("--output", help="also write the scores as JSON")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="also write an HTML report DIR/index.html: scores per protocol asked, per type / groundable / "
        "entities per tweet, error classes, IoU histogram, a gallery of the worst tweets (docs/guides/metrics.md)",
    )
    p.set_defaults(func="_cmd_evaluate")


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="predictions (jsonl) -> COCO, Pascal VOC, Label Studio or FiftyOne files (+ gold with --dataset)",
        description="Export a predictions file (`riveg predict` output) for annotation and evaluation tools. "
        "Examples:\n"
        "  riveg export --predictions preds.jsonl --format coco --out export/coco --images IMAGES\n"
        "  riveg export --predictions preds.jsonl --format voc --out export/voc --dataset twitter-gmner --split test\n"
        "  riveg export --predictions preds.jsonl --format labelstudio --out export/ls --images IMAGES \\\n"
        "      --image-url-prefix '/data/local-files/?d=images/'\n"
        "  riveg export --predictions preds.jsonl --format fiftyone --out export/fo --images IMAGES\n"
        "Boxes are converted from riveg-hf's pixel xyxy (COCO: xywh; Label Studio: percent). Error lines are "
        "skipped and counted. Layouts: docs/guides/exports-reports.md (or `help(riveg_hf.export)`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--predictions", required=True, help="jsonl written by `riveg predict` ({id, text, entities})"
    )
    p.add_argument(
        "--format", required=True, choices=["coco", "voc", "labelstudio", "fiftyone"], help="what to write"
    )
    p.add_argument(
        "--out", required=True, help="output folder (the export's files are replaced, nothing else)"
    )
    p.add_argument(
        "--images", help="folder of the images: sizes are read there, file names are relative to it"
    )
    p.add_argument(
        "--dataset", help="also export the gold of this dataset folder / Hub id (`riveg data build`)"
    )
    p.add_argument("--config", default=None, help="dataset config (default: the dataset's default)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--image-url-prefix",
        default=None,
        help="labelstudio: put before each image file name in data.image (e.g. '/data/local-files/?d=images/')",
    )
    p.add_argument("--model-version", default="riveg-hf", help="labelstudio: the predictions' model_version")
    p.set_defaults(func="_cmd_export")


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
    p.add_argument(
        "--preset",
        default=None,
        help="a documented composite instead of --model: riveg-2024 | vlm | sam3 | qwen-vl-joint | sake-7b | "
        "sake-7b-fmnerg (see docs/guides/presets.md; Hub weights)",
    )
    p.add_argument("--task", default="grounded-mner", choices=["grounded-mner", "segmented-mner"])
    p.add_argument("--revision", default=None)
    p.add_argument("--local-files-only", action="store_true", help="never contact the Hub")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: GPU if available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--batch-size", type=int, default=8, help="tweets per pipeline batch")
    p.add_argument(
        "--vision-batch-size",
        type=int,
        default=None,
        help="images per vision-model forward (bounds memory; default: 8 on a GPU; on CPU 1, a VLM grounder 8)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the vision encoders (GPU, long runs; first call slow)",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader worker processes that read and decode images ahead of the models (output identical)",
    )
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
    p.add_argument(
        "--trust-endpoints",
        action="store_true",
        help="contact the LLM / VLM servers the composite's config.json names (off: a checkpoint's URL gets "
        "nothing; see docs/guides/security.md)",
    )
    p.add_argument(
        "--reader-endpoint",
        default=None,
        help="serve the composite's joint reader from this OpenAI-compatible server (vLLM / SGLang) instead of "
        "loading its weights (e.g. --preset sake-7b --reader-endpoint http://127.0.0.1:8000/v1)",
    )
    p.add_argument("--endpoint-model", default=None, help="the served model's name (with --reader-endpoint)")
    p.add_argument(
        "--sake-prompts",
        default=None,
        help="SAKE's prompt folder (a SAKE checkout's sake_rl/prompts/Twitter-GMNER-Prompt; not shipped here)",
    )
    p.add_argument(
        "--search-cache",
        default=None,
        help="SAKE's offline search cache ({DIR}/{text,image}_search/{id}_{kind}_search.json): answers its searches "
        "(nothing leaves the machine); without it every search finds nothing",
    )
    p.set_defaults(func="_cmd_predict")

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
    s.set_defaults(func="_cmd_segment")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a stage: mner (Trainer), entailment, grounder or the joint reader (accelerate)",
        description="Train one stage on a dataset folder built by `riveg data build`; the output folder loads "
        "as that stage of the pipeline. Runs unchanged under `accelerate launch -m riveg_hf.cli train ...`.\n"
        "  riveg train mner --dataset twitter-gmner --config mner_llm_knowledge --base-model bert-base-cased "
        "--output mner\n"
        "  riveg train entailment --dataset twitter-gmner --base-model Salesforce/blip-itm-base-coco --output ent\n"
        "  riveg train grounder --dataset twitter-gmner --base-model IDEA-Research/grounding-dino-tiny --output gd\n"
        "  riveg train grounder --dataset twitter-gmner --base-model Qwen/Qwen2.5-VL-3B-Instruct --output vg   (LoRA SFT)\n"
        "  riveg train grounder --dataset twitter-gmner --base-model vg --method grpo --output vg-grpo\n"
        "  riveg train entailment --dataset twitter-gmner --base-model Qwen/Qwen2.5-VL-3B-Instruct --output ent-vlm\n"
        "  riveg train reader --dataset twitter-gmner --base-model Qwen/Qwen2.5-VL-7B-Instruct --output reader   (joint)\n"
        "  riveg train reader --dataset twitter-gmner --base-model reader --method grpo --output reader-grpo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults of every flag left out: the stage's arguments dataclass (riveg_hf.training.mner."
        "MNERTrainingArguments, riveg_hf.training.common.VisionTrainingArguments, riveg_hf.training.vlm."
        "VLMGrounderArguments, riveg_hf.training.reader.ReaderTrainingArguments), the one source of them.",
    )
    p.add_argument("stage", choices=["mner", "entailment", "grounder", "reader"])
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
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many optimizer steps (quick runs)"
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--max-length", type=int, default=None, help="mner: tokens per example")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument(
        "--resume-from-checkpoint", default=None, help="a checkpoint folder, or 'auto' for the latest"
    )
    p.add_argument("--local-files-only", action="store_true")
    v = p.add_argument_group(
        "vision-language models (grounder: Qwen2.5-VL / Qwen3-VL / Florence-2; entailment: Qwen-VL)"
    )
    v.add_argument(
        "--method",
        choices=["sft", "grpo"],
        default=None,
        help="grounder / reader: SFT (default), or GRPO after SFT (trl)",
    )
    v.add_argument("--full-finetune", action="store_true", help="train all weights instead of LoRA adapters")
    v.add_argument("--lora-r", type=int, default=None)
    v.add_argument("--lora-alpha", type=int, default=None)
    v.add_argument(
        "--save",
        choices=["merged", "adapter"],
        default=None,
        help="LoRA output: merged weights or base + adapter",
    )
    v.add_argument(
        "--entities",
        choices=["gold", "predicted"],
        default=None,
        help="grounder: train on gold entities, or on --recognizer's predictions",
    )
    v.add_argument("--recognizer", help="MNER model folder for --entities predicted")
    v.add_argument("--no-gradient-checkpointing", action="store_true")
    v.add_argument(
        "--mixed-precision",
        choices=["auto", "no", "bf16", "fp16"],
        default=None,
        help="auto: bf16 on GPUs that support it",
    )
    v.add_argument("--num-generations", type=int, default=None, help="GRPO: sampled answers per image")
    j = p.add_argument_group("joint reader (riveg train reader: one model writes entities, types and boxes)")
    j.add_argument(
        "--format",
        choices=["qwen-vl", "e2e-gmner", "sake"],
        default=None,
        help="the answer format = the reader family it loads as: qwen-vl (default) or e2e-gmner; sake is refused "
        "(its data are agent trajectories), continue a SAKE checkpoint with qwen-vl",
    )
    j.add_argument(
        "--level",
        choices=["coarse", "fine"],
        default=None,
        help="entity types: coarse (Twitter-GMNER, or Twitter-FMNERG's 8) or fine (Twitter-FMNERG's 51)",
    )
    j.add_argument(
        "--reasoning",
        help="e2e-gmner: E2E-GMNER's teacher chains (.jsonl of {image_path, think}); targets become "
        "<think>...</think><answer>...</answer>",
    )
    j.add_argument(
        "--box-jitter",
        type=float,
        default=None,
        help="E2E-GMNER's GRBP box jitter strength (0.1 in its script)",
    )
    j.add_argument("--instruction-file", help="e2e-gmner: E2E-GMNER's INSTRUCTION (text file or its .py)")
    j.add_argument(
        "--system-prompt-file", help="e2e-gmner: E2E-GMNER's DEFAULT_SYSTEM_PROMPT (text file or its .py)"
    )
    j.add_argument(
        "--reward",
        choices=["gmner", "sake", "mean"],
        default=None,
        help="GRPO: the total reward (default gmner)",
    )
    j.add_argument("--max-new-tokens", type=int, default=None, help="validation answers' token budget")
    j.add_argument(
        "--validate-every", type=int, default=None, help="epochs between validations (the last one always)"
    )
    p.set_defaults(func="_cmd_train")


#: the recipes of ``riveg reproduce`` (the keys of riveg_hf.reproduce.RECIPES; kept here so that parsing stays free
#: of torch, and checked against them by tests/test_reproduce_joint.py)
RECIPES = ["riveg-2024", "vlm", "joint"]


def _add_reproduce(sub) -> None:
    r = sub.add_parser(
        "reproduce",
        help="from the released data to the GMNER table: build, train every stage, predict, evaluate",
        description="One resumable command from the raw release to results.md / results.json (ours next to the "
        "published numbers). Each step is a `riveg` command, printed by --dry-run; a rerun skips completed steps.\n"
        "  riveg reproduce --raw ../shared/data/twitter-gmner/v2.0 --images IMAGES --knowledge "
        "../shared/data/riveg-aux/llm-knowledge --captions ../shared/data/riveg-aux/captions --out runs/riveg-2024\n"
        "  accelerate launch -m riveg_hf.cli reproduce ... --recipe vlm   (several GPUs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--raw", required=True, help="the Twitter-GMNER release folder (txt/ + xml/)")
    r.add_argument("--images", help="folder of <IMGID>.jpg (needed to train entailment and grounding)")
    r.add_argument("--knowledge", help="RiVEG llm-knowledge folder: MNER trained PGIM-style with it")
    r.add_argument("--captions", help="RiVEG captions folder")
    r.add_argument(
        "--out", required=True, help="run folder: data, trained stages, model, predictions, results"
    )
    r.add_argument(
        "--recipe",
        choices=RECIPES,
        default="riveg-2024",
        help="riveg-2024: RiVEG's cascade; vlm: a VLM grounder decides visibility; joint: one reader (SFT, GRPO)",
    )
    r.add_argument(
        "--base-models",
        default=None,
        help="STAGE=MODEL,... to replace a recipe's bases (mner, entailment, grounder; joint: reader) or add an "
        "expander / segmenter",
    )
    r.add_argument(
        "--grpo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="joint: GRPO after SFT (default: on, as MCR and SAKE do)",
    )
    r.add_argument(
        "--reader-format", choices=["qwen-vl", "e2e-gmner"], default=None, help="joint: answer format"
    )
    r.add_argument("--reasoning", default=None, help="joint, e2e-gmner format: reasoning chains file (JSONL)")
    r.add_argument("--box-jitter", type=float, default=None, help="joint: GRBP box jitter in [0, 1]")
    r.add_argument("--e2e-gmner-repo", default=None, help="joint, e2e-gmner format: an E2E-GMNER checkout")
    r.add_argument("--limit", type=int, default=None, help="first N tweets of each split (smoke run)")
    r.add_argument("--epochs", type=float, default=3.0)
    r.add_argument("--max-steps", type=int, default=None, help="per training step (quick runs)")
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--dry-run", action="store_true", help="print the plan, commands, expected time and disk")
    r.add_argument("--force", default=None, help="rerun this step and the ones after it")
    r.add_argument("--device", default=None, help="prediction device (default: GPU if available)")
    r.add_argument("--local-files-only", action="store_true")
    r.set_defaults(func="_cmd_reproduce")


def _add_demo_push(sub) -> None:
    d = sub.add_parser("demo", help="serve the Gradio demo (binds 127.0.0.1 unless --host says otherwise)")
    d.add_argument(
        "--model", default=None, help="composite checkpoint (hub id or folder); default: task default"
    )
    d.add_argument("--task", default="grounded-mner", choices=["grounded-mner", "segmented-mner"])
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=7860)
    d.add_argument("--local-files-only", action="store_true")
    d.add_argument("--trust-endpoints", action="store_true", help="contact the servers the composite names")
    d.set_defaults(func="_cmd_demo")
    p = sub.add_parser("push", help="upload a composite checkpoint with its model card and endpoint handler")
    p.add_argument("folder", help="a folder written by pipe.save_pretrained(...)")
    p.add_argument("repo_id", help="org/name")
    p.add_argument("--private", action="store_true")
    p.add_argument("--results", help="JSON file of scores (e.g. from `riveg evaluate --output`) for the card")
    p.set_defaults(func="_cmd_push")


#: exit codes, one per class of outcome (docs/guides/cli.md)
EXIT_OK = 0
#: the work failed although the input may be fine: network, download, server, disk, a failed step or item
EXIT_FAILED = 1
#: the input is wrong: usage, a missing / malformed file or folder, predictions that cannot be scored
EXIT_BAD_INPUT = 2
EXIT_CODES_HELP = (
    "exit codes: 0 success; 1 the work failed (network, download, a server, disk, a failed step or item); "
    "2 bad input (usage, a missing or malformed file or folder, predictions that cannot be scored)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``riveg`` argument parser (every command and its flags); building it imports no torch."""
    parser = argparse.ArgumentParser(
        prog="riveg",
        description="riveg-hf: grounded (GMNER) and segmented (SMNER) multimodal NER with Hugging Face models.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"riveg-hf {_version()}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show per-component loading / saving progress bars and warnings",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for adder in (
        _add_data,
        _add_predict,
        _add_evaluate,
        _add_export,
        _add_train,
        _add_reproduce,
        _add_demo_push,
    ):
        adder(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``riveg ARGV``; returns the exit code: 0 success, 1 the work failed, 2 bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import importlib
    import os

    if args.verbose:
        os.environ["RIVEG_VERBOSE"] = "1"
    func = getattr(importlib.import_module("riveg_cli.commands"), args.func)  # torch & co. load only now
    try:
        return int(func(args) or 0)
    except CLIError as err:
        print(f"riveg: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError) as err:
        print(f"riveg {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # network, download, disk: the work failed, the input may be fine
        print(f"riveg {args.command}: error: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
