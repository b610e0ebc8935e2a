"""The ``riveg`` command line: ``data``, ``predict``, ``segment``, ``evaluate``, ``train``, ``demo``, ``push``.

Each subcommand imports what it needs when it runs, so ``riveg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
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
    result = build(a.raw, a.out, **kwargs)
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
            )
        }
        if bad:
            print(f"--strict: the build reported problems: {bad}", file=sys.stderr)
            return 2
    return 0


def _cmd_data_push(a: argparse.Namespace) -> int:
    from riveg_hf.data import push_dataset_folder

    info = push_dataset_folder(a.folder, a.repo_id, private=a.private)
    print(f"pushed {a.folder} to https://huggingface.co/datasets/{a.repo_id} ({info})")
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="build Hugging Face datasets from the raw releases, push them to the Hub")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{build,push}")
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
        "--raw", required=True, help="the raw release folder (txt/ + xml/, or twitter2015/ + twitter2017/)"
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
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CLIError(f"{path}:{lineno}: not a JSON line ({err}).") from None
    return rows


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from datasets import load_dataset

    from riveg_hf.metrics import compute_gmner, compute_smner, format_table

    rows = read_jsonl(a.predictions)
    preds: dict[str, list] = {}
    for k, row in enumerate(rows, 1):
        if "id" not in row or "entities" not in row:
            raise CLIError(
                f"{a.predictions}:{k}: each line needs 'id' and 'entities' (got keys {sorted(row)})."
            )
        if str(row["id"]) in preds:
            raise CLIError(f"{a.predictions}:{k}: duplicate prediction for id {row['id']!r}.")
        preds[str(row["id"])] = row["entities"]
    ds = load_dataset(a.dataset, a.config, split=a.split)
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


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riveg",
        description="riveg-hf: grounded (GMNER) and segmented (SMNER) multimodal NER with Hugging Face models.",
    )
    from riveg_hf import __version__

    parser.add_argument("--version", action="version", version=f"riveg-hf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for adder in (_add_data, _add_evaluate):
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
