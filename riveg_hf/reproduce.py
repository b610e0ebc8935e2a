"""``riveg reproduce``: from the released data to the GMNER table, in one resumable command.

    riveg reproduce --raw ../shared/data/twitter-gmner/v2.0 --images IMAGES \\
        --knowledge ../shared/data/riveg-aux/llm-knowledge --captions ../shared/data/riveg-aux/captions \\
        --out runs/riveg-2024 --recipe riveg-2024 [--dry-run] [--limit N] [--base-models mner=DIR,...]

Steps (each one is a ``riveg`` command, printed by ``--dry-run`` and recorded in ``results.json``):

1. ``data`` -- ``riveg data build twitter-gmner`` with images, LLM knowledge and captions;
2. ``mner`` -- ``riveg train mner`` (config ``mner_llm_knowledge`` when knowledge is given: PGIM style);
3. ``entailment`` -- ``riveg train entailment`` (recipe ``riveg-2024``; the ``vlm`` recipe decides
   visibility in the grounder's answer instead);
4. ``grounder`` -- ``riveg train grounder`` (Grounding DINO; or a VLM with LoRA SFT for ``vlm``);
5. ``compose`` -- the trained stages (+ optional expander / segmenter) saved as one composite checkpoint,
   ``OUT/model``, which ``pipeline("grounded-mner", model=OUT/model)`` and ``riveg push`` take as is;
6. ``predict`` -- ``riveg predict`` over the test split (with its LLM knowledge when the recognizer uses it);
7. ``evaluate`` -- ``riveg evaluate``, then ``results.json`` / ``results.md``: our MNER / EEG / GMNER P/R/F1
   next to the published numbers, with wall time and peak memory per step.

**Resumable.** Each step writes ``OUT/.steps/<step>.json`` (atomically, last) when it is complete; a
rerun skips completed steps, restarts an interrupted training step from its latest checkpoint and an
interrupted prediction from the ids already written. ``--force STEP`` reruns one step and those after it.

**Several GPUs.** ``accelerate launch -m riveg_hf.cli reproduce ...`` runs unchanged: the training and
prediction steps run on every process (they are accelerate-aware), the others on the main process only,
with a barrier after each step.

``--limit N`` keeps the first N tweets of each split (a smoke run of every step on a subset).

**The joint recipe** (``--recipe joint``: one vision-language model finds the entities, their types and their
boxes, the shape of E2E-GMNER, MCR and SAKE) replaces steps 2-4 with

2. ``reader`` -- ``riveg train reader --method sft`` of ``Qwen/Qwen2.5-VL-7B-Instruct`` (LoRA, merged on save) on
   the joint targets, in the ``qwen-vl`` answer format (or E2E-GMNER's: ``reader_format="e2e-gmner"``, with its
   reasoning file and box jitter when given);
3. ``grpo`` -- ``riveg train reader --method grpo`` from the SFT output (the recipe's ``grpo: True``; skipped with
   ``grpo=False``), one epoch at most;

and composes the last reader with a box-prompted SAM (``facebook/sam2.1-hiera-tiny``, as the ``qwen-vl-joint``
preset) for the masks. ``--base-models reader=M,segmenter=S`` replaces the bases.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["NOT_CITED", "PUBLISHED", "RECIPES", "ReproduceArguments", "plan", "reproduce"]

#: published test-set results on Twitter-GMNER (F1, %), the target of the table; ``source``: where the number is
#: printed (the paper; its table where it was checked against the paper)
PUBLISHED = [
    {"system": "RiVEG† (Li et al., ACL 2024 Findings)", "mner_f1": 85.94, "eeg_f1": 70.01, "gmner_f1": 67.06,
     "protocol": "riveg",
     "source": "Li et al., LLMs as Bridges: Reformulating Grounded Multimodal Named Entity Recognition, Findings of "
               "ACL 2024 (arXiv 2402.09989), main results on Twitter-GMNER"},
    {"system": "H-Index (Yu et al., ACL 2023)", "mner_f1": 79.73, "eeg_f1": 61.18, "gmner_f1": 56.41,
     "protocol": "h-index",
     "source": "Yu et al., Grounded Multimodal Named Entity Recognition on Social Media, ACL 2023, main results"},
    # MCR's scoring code is not public: ours is shown under this project's own protocol next to it
    {"system": "MCR (Qwen2.5-VL-7B, SFT + GRPO)", "mner_f1": None, "eeg_f1": None, "gmner_f1": 70.6,
     "protocol": "riveg-hf",
     "source": "Ma et al., Beyond Unimodal Shortcuts: MLLMs as Cross-Modal Reasoners for Grounded Named Entity "
               "Recognition (MCR), arXiv 2602.04486"},
]  # fmt: skip

#: published joint-reader systems whose numbers results.md leaves out, and why: a number is shown only where it can
#: be cited (ours under their protocol is still shown: riveg evaluate scores every protocol it knows)
NOT_CITED = {
    "e2e-gmner": "E2E-GMNER (Zhang et al., ACL 2026 Findings, arXiv 2604.17319): the README of Finch-coder/E2E-GMNER "
                 "@ d90c1ebf states no scores, and the paper's tables could not be read to cite one",
    "sake": "SAKE (Tang et al., arXiv 2604.20146): the README of tangjielong928/SAKE @ 71417dfd states no scores, and "
            "the paper's tables could not be read to cite one",
}  # fmt: skip

#: recipe -> base models per trained stage, and how visibility is decided
RECIPES: dict[str, dict[str, Any]] = {
    "riveg-2024": {
        "base_models": {
            "mner": "FacebookAI/xlm-roberta-large",
            "entailment": "Salesforce/blip-itm-base-coco",
            "grounder": "IDEA-Research/grounding-dino-tiny",
        },
        "visibility": "entailment",
    },
    "vlm": {
        "base_models": {"mner": "FacebookAI/xlm-roberta-large", "grounder": "Qwen/Qwen2.5-VL-3B-Instruct"},
        "visibility": "grounder",
    },
    # one model reads the tweet and its image and writes entities, types and boxes (E2E-GMNER, MCR, SAKE); SAM
    # (the qwen-vl-joint preset's) turns its boxes into masks
    "joint": {
        "base_models": {"reader": "Qwen/Qwen2.5-VL-7B-Instruct", "segmenter": "facebook/sam2.1-hiera-tiny"},
        "visibility": "reader",
        "reader_format": "qwen-vl",
        "grpo": True,  # SFT, then GRPO from the SFT output (MCR's and SAKE's order); grpo=False: SFT only
        "grpo_epochs": 1.0,  # GRPO samples several answers per tweet: at most one epoch
    },
}
#: the answer formats a joint reader is trained in -> the reader family that reads that format back
READER_FORMATS = {"qwen-vl": "qwen-vl", "e2e-gmner": "e2e-gmner"}
#: components used as they are (not trained), when given with --base-models
UNTRAINED = ("expander", "segmenter")
#: rough sizes (parameters) of the default bases, for --dry-run's disk and time estimates
KNOWN_PARAMS = {
    "FacebookAI/xlm-roberta-large": 560e6,
    "Salesforce/blip-itm-base-coco": 224e6,
    "IDEA-Research/grounding-dino-tiny": 172e6,
    "Qwen/Qwen2.5-VL-3B-Instruct": 3.75e9,
    "Qwen/Qwen2.5-VL-7B-Instruct": 8.29e9,
    "facebook/sam2.1-hiera-tiny": 38.9e6,
}
#: estimated seconds per training example-epoch on one current GPU (A100/H100 class), per stage;
#: estimates, not measurements (no GPU was available when this table was written)
EST_SECONDS_PER_EXAMPLE = {
    "mner": 0.01,
    "entailment": 0.02,
    "grounder": 0.05,
    "grounder-vlm": 0.5,
    "predict": 0.1,
    # The joint reader (Qwen2.5-VL-7B, LoRA, bf16, activation checkpointing) -- ESTIMATES derived by arithmetic,
    # not measured (no GPU was available): one training example is ~1,000 tokens (256-1,024 image tokens at
    # E2E-GMNER's 200,704-802,816 pixels, ~150 prompt, ~100 answer tokens; more with reasoning targets); a LoRA
    # step costs ~6 x 8.3e9 parameters x 1,000 tokens = 5e13 FLOP (forward, backward through the frozen weights,
    # recomputed forward) = ~0.3 s at ~40% of an H100's ~400 dense bf16 TFLOP/s, rounded up to 0.4 s for padding
    # and data loading (an A100 takes ~2x).
    "reader-sft": 0.4,
    # GRPO: per tweet 4 sampled answers of ~150 tokens, generated by transformers' generate (~25 ms per decoding
    # step for a 7B model at batch 1-4: ~4 s), then a forward/backward over the 4 answers (~4 x 0.4 s) and the
    # reference model's forward (~0.5 s): ~6 s, rounded up to 8 s per tweet per epoch.
    "reader-grpo": 8.0,
    # prediction: one greedy answer of ~100 tokens (~2.5 s at batch 1; batched readings ~4x faster) + SAM 2.1 on
    # its boxes (~0.05 s): ~1 s per tweet
    "predict-reader": 1.0,
}
SPLIT_SIZES = {"train": 7000, "validation": 1500, "test": 1500}  # Twitter-GMNER tweets


@dataclass
class ReproduceArguments:
    """The arguments of ``riveg reproduce`` (the CLI's flags; None = the recipe's value)."""

    raw: str
    out: str
    images: str | None = None
    knowledge: str | None = None
    captions: str | None = None
    recipe: str = "riveg-2024"
    base_models: dict[str, str] | str = field(default_factory=dict)  # or "mner=X,grounder=Y"
    limit: int | None = None
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int | None = None
    dry_run: bool = False
    force: str | None = None
    local_files_only: bool = False
    device: str | None = None
    # the joint recipe (None: the recipe's setting)
    grpo: bool | None = None  # GRPO after SFT
    reader_format: str | None = None  # the answer format the reader is trained in: qwen-vl | e2e-gmner
    reasoning: str | None = None  # reasoning targets (E2E-GMNER's teacher chains' layout) for the SFT step
    box_jitter: float | None = None  # E2E-GMNER's box jitter (GRBP) during SFT
    #: an E2E-GMNER checkout, for reader_format="e2e-gmner": its prompt texts (not shipped with riveg-hf)
    e2e_gmner_repo: str | None = None


@dataclass
class Step:
    name: str
    what: str
    command: list[str] | None  # a `riveg` command line (run in process), or None for a Python step
    run: Callable[[], None]
    distributed: bool = False  # runs on every accelerate process
    est_seconds: float = 0.0
    est_disk_bytes: float = 0.0
    #: how est_seconds was reached (printed by --dry-run): an estimate, never a measurement
    est_note: str = ""
    #: what the step must leave behind (paths under OUT); a marker whose outputs are gone is not complete
    outputs: list[str] = field(default_factory=list)
    #: what the step is run with besides its command (the Python steps' settings, the inputs' checksums)
    settings: dict[str, Any] = field(default_factory=dict)
    #: every path under OUT the step writes (outputs, checkpoints, scratch files): removed before the step starts
    #: afresh, so that nothing of a run with other settings is resumed; default: the outputs' top folders
    owns: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.owns:
            self.owns = sorted({Path(rel).parts[0] for rel in self.outputs})


class StepFailed(RuntimeError):
    """A step of the run failed; the message is one line naming the step and the command."""


#: the runner of the `riveg` command lines of the steps (``riveg_hf.cli`` gives its ``main``); reproduce never
#: imports the CLI itself
Runner = Callable[[list[str]], int]


def _stages(recipe: str | None) -> tuple[str, ...]:
    """The stages --base-models may name for ``recipe`` (all recipes' stages when None)."""
    if recipe is None:
        trained = {k for r in RECIPES.values() for k in r["base_models"]}
        return tuple(sorted(trained | set(UNTRAINED)))
    r = RECIPES[recipe]
    if r["visibility"] == "reader":  # a joint reader runs alone (with the segmenter for its masks)
        return tuple(r["base_models"])
    return (*r["base_models"], *UNTRAINED)


def _parse_base_models(value: str | dict | None, recipe: str | None = None) -> dict[str, str]:
    valid = _stages(recipe)
    if not value:
        return {}
    if isinstance(value, dict):
        out = dict(value)
    else:
        out = {}
        for part in value.split(","):
            key, sep, loc = part.partition("=")
            if not sep or key.strip() not in _stages(None) or not loc.strip():
                raise ValueError(
                    f"--base-models: {part!r} is not STAGE=MODEL; stages: {', '.join(valid)} "
                    "(e.g. --base-models mner=bert-base-cased,grounder=./my-gdino)"
                )
            out[key.strip()] = loc.strip()
    wrong = sorted(set(out) - set(valid))
    if wrong:
        raise ValueError(
            f"--base-models: recipe {recipe!r} has no stage {', '.join(wrong)}; its stages: {', '.join(valid)}"
            + (" (a joint reader finds the entities, types and boxes itself)" if "reader" in valid else "")
        )
    return out


_RUNNER: list[Runner] = []


def _cli(argv: list[str]) -> None:
    if not _RUNNER:
        raise RuntimeError("reproduce() was called without a runner for its `riveg` steps")
    code = _RUNNER[-1](argv)
    if code:
        raise StepFailed(f"exit {code}: riveg {shlex.join(argv)}")


def _params(location: str) -> float | None:
    if location in KNOWN_PARAMS:
        return KNOWN_PARAMS[location]
    p = Path(location)
    if p.is_dir():
        size = sum(f.stat().st_size for f in p.rglob("*.safetensors"))
        return size / 4 if size else None  # fp32 weights
    return None


# ---------------------------------------------------------------------- limit
def _limited_release(args: ReproduceArguments, dest: Path) -> tuple[str, str | None]:
    """The first ``limit`` tweets of each split (txt + their xml, and the knowledge files cut to match)."""
    from .data.conll import read_llm_knowledge

    raw = Path(args.raw)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "txt").mkdir(parents=True)
    (dest / "xml").mkdir()
    for split in ("train", "dev", "test"):
        src = raw / "txt" / f"{split}.txt"
        if not src.is_file():
            raise FileNotFoundError(f"--raw {raw}: no txt/{split}.txt (a Twitter-GMNER release folder)")
        lines, n = [], 0
        for line in src.read_text(encoding="utf-8-sig").splitlines():
            if line.startswith("IMGID:"):
                n += 1
                if n > args.limit:
                    break
                xml = raw / "xml" / f"{line[6:].strip()}.xml"
                if xml.is_file():
                    shutil.copy2(xml, dest / "xml" / xml.name)
            lines.append(line)
        (dest / "txt" / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    knowledge = None
    if args.knowledge:
        knowledge = dest / "llm-knowledge"
        knowledge.mkdir()
        for split in ("train", "valid", "test"):
            src = Path(args.knowledge) / f"{split}.txt"
            sents = read_llm_knowledge(src)
            text = src.read_text(encoding="utf-8").splitlines()
            cut = sents[args.limit].line - 1 if len(sents) > args.limit else len(text)
            (knowledge / f"{split}.txt").write_text("\n".join(text[:cut]) + "\n", encoding="utf-8")
    return str(dest), (str(knowledge) if knowledge else None)


# ---------------------------------------------------------------------- plan
#: an E2E-GMNER checkout's files holding the prompt texts its format needs (riveg-hf does not ship them: the
#: repository has no license) -> the `riveg train reader` flag / reader option that takes each
E2E_GMNER_PROMPTS = {
    "instruction_file": "scripts/gmner_to_sft_data.py",
    "system_prompt_file": "src/e2egmner/data/collator.py",
}


def _joint_settings(args: ReproduceArguments) -> dict[str, Any]:
    """The joint recipe's settings (the recipe's, replaced by those given); an error for them elsewhere."""
    names = ("grpo", "reader_format", "reasoning", "box_jitter", "e2e_gmner_repo")
    given = {k: getattr(args, k) for k in names}
    recipe = RECIPES[args.recipe]
    if recipe["visibility"] != "reader":
        used = sorted(k for k, v in given.items() if v is not None)
        if used:
            raise ValueError(
                f"{', '.join(used)}: settings of the joint recipe (--recipe joint), not of {args.recipe!r}"
            )
        return {}
    fmt = given["reader_format"] or recipe["reader_format"]
    if fmt not in READER_FORMATS:
        raise ValueError(f"reader_format must be one of {sorted(READER_FORMATS)}, got {fmt!r}")
    jitter = given["box_jitter"]
    if jitter is not None and (
        isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1
    ):
        raise ValueError(f"box_jitter must be a number in [0, 1] (E2E-GMNER trains with 0.1), got {jitter!r}")
    if given["reasoning"] is not None and fmt != "e2e-gmner":
        raise ValueError(
            "reasoning targets are E2E-GMNER's <think>...</think><answer>...</answer> layout: use them with "
            "reader_format='e2e-gmner'"
        )
    if given["reasoning"] is not None and not args.dry_run and not Path(given["reasoning"]).is_file():
        raise FileNotFoundError(
            f"reasoning: no file {given['reasoning']} (E2E-GMNER's teacher chains, one JSON line a tweet)"
        )
    prompts = {}
    if fmt == "e2e-gmner":
        repo = given["e2e_gmner_repo"]
        if not repo:
            raise ValueError(
                "reader_format='e2e-gmner' needs E2E-GMNER's prompt texts, which riveg-hf does not ship (its "
                "repository has no license): pass e2e_gmner_repo=DIR, a checkout of "
                "https://github.com/Finch-coder/E2E-GMNER"
            )
        prompts = {k: str(Path(repo) / rel) for k, rel in E2E_GMNER_PROMPTS.items()}
        missing = [p for p in prompts.values() if not Path(p).is_file()]
        if missing and not args.dry_run:
            raise FileNotFoundError(f"e2e_gmner_repo {repo}: no {', '.join(missing)} (an E2E-GMNER checkout)")
    elif given["e2e_gmner_repo"] is not None:
        raise ValueError("e2e_gmner_repo: the prompt texts of reader_format='e2e-gmner', not of 'qwen-vl'")
    return {"grpo": recipe["grpo"] if given["grpo"] is None else bool(given["grpo"]), "format": fmt,
            "reasoning": given["reasoning"], "box_jitter": jitter, "grpo_epochs": recipe["grpo_epochs"],
            "prompts": prompts}  # fmt: skip


def plan(args: ReproduceArguments) -> list[Step]:
    """The steps of a run, each with its command and estimates (what --dry-run prints)."""
    if args.recipe not in RECIPES:
        raise ValueError(f"--recipe must be one of {sorted(RECIPES)}, got {args.recipe!r}")
    recipe = RECIPES[args.recipe]
    joint = _joint_settings(args)
    if joint:  # the reader reads the tweet and its image: the LLM knowledge and captions are not used
        args = replace(args, knowledge=None, captions=None)
    bases = {**recipe["base_models"], **_parse_base_models(args.base_models, args.recipe)}
    out = Path(args.out)
    data, model = out / "data", out / "model"
    n = {s: min(args.limit, k) if args.limit else k for s, k in SPLIT_SIZES.items()}
    mner_config = "mner_llm_knowledge" if args.knowledge else "mner"
    rest = []  # the training settings besides the epochs
    if args.max_steps:
        rest += ["--max-steps", str(args.max_steps)]
    if args.batch_size:
        rest += ["--batch-size", str(args.batch_size)]
    if args.local_files_only:
        rest.append("--local-files-only")
    common = ["--epochs", str(args.epochs), *rest]
    steps: list[Step] = []

    raw, knowledge = args.raw, args.knowledge
    if args.limit:
        raw, knowledge = (
            str(out / f"raw-first-{args.limit}"),
            (str(out / f"raw-first-{args.limit}" / "llm-knowledge") if args.knowledge else None),
        )
    build = ["data", "build", "twitter-gmner", "--raw", raw, "--out", str(data), "--overwrite"]
    build += ["--images", args.images] if args.images else []
    build += ["--knowledge", knowledge] if knowledge else []
    build += ["--captions", args.captions] if args.captions else []

    def run_data():
        if args.limit:
            _limited_release(args, Path(raw))
        _cli(build)

    steps.append(
        Step("data", f"build the dataset (text, boxes, images{'' if joint else ', knowledge, captions'})", build, run_data,
             est_seconds=60 + 0.02 * sum(n.values()), est_disk_bytes=1.5e5 * sum(n.values()) if args.images else 5e7,
             outputs=["data"], settings={"limit": args.limit, "inputs": _InputDigest(args)})
    )  # fmt: skip

    def resumable_run(argv: list[str], folder: Path) -> Callable[[], None]:
        def run():
            resume = []
            if any((p / "loop_state.json").is_file() or (p / "trainer_state.json").is_file()
                   for p in folder.glob("checkpoint-*")):  # fmt: skip
                resume = ["--resume-from-checkpoint", "auto"]  # an interrupted run continues
            _cli([*argv, *resume])

        return run

    def train_step(stage: str, extra: list[str]) -> Step:
        folder = out / stage
        argv = ["train", stage, "--dataset", str(data), "--base-model", bases[stage], "--output", str(folder),
                *extra, *common]  # fmt: skip
        kind = "grounder-vlm" if stage == "grounder" and args.recipe == "vlm" else stage
        # examples per tweet: mner one; entailment one per entity (~1.6); Grounding DINO one per groundable
        # entity (~1.2); the VLM grounder one per image
        examples = n["train"] * {"mner": 1.0, "entailment": 1.6, "grounder": 1.2, "grounder-vlm": 1.0}[kind]
        params = _params(bases[stage]) or 5e8
        return Step(stage, f"train {stage} from {bases[stage]}", argv, resumable_run(argv, folder), distributed=True,
                    est_seconds=EST_SECONDS_PER_EXAMPLE[kind] * examples * args.epochs,
                    est_disk_bytes=params * 4 * (3 if kind != "grounder-vlm" else 1.2),
                    outputs=[f"{stage}/config.json", f"{stage}/riveg_run.json"])  # fmt: skip

    if joint:
        reader = _joint_training_steps(args, joint, bases, data, out, n, common, rest, resumable_run, steps)
    else:
        steps.append(train_step("mner", ["--config", mner_config]))
        if recipe["visibility"] == "entailment":
            steps.append(train_step("entailment", []))
        steps.append(train_step("grounder", []))

    untrained = {k: bases[k] for k in UNTRAINED if k in bases}

    def run_compose():
        from .pipeline import RiVEGPipeline

        if joint:  # the reader finds entities, types and boxes; the segmenter draws the masks of its boxes
            comps = {"reader": str(reader), "reader_family": READER_FORMATS[joint["format"]],
                     **{f"reader_{k}": v for k, v in joint["prompts"].items()}}  # fmt: skip
        else:
            comps = {"recognizer": str(out / "mner"), "grounder": str(out / "grounder"),
                     "visibility": recipe["visibility"]}  # fmt: skip
            if recipe["visibility"] == "entailment":
                comps["entailment"] = str(out / "entailment")
        comps.update(untrained)
        pipe = RiVEGPipeline.from_components(**comps, local_files_only=args.local_files_only)
        _save_composite(pipe, out, model)

    if joint:
        what = (f"save the reader ({reader.name}/, {joint['format']} answers) with the segmenter "
                f"{untrained.get('segmenter', '(none)')} as one composite checkpoint (OUT/model)")  # fmt: skip
        # the merged reader is saved in bf16
        disk = 2 * (_reader_params(bases) + sum(_params(bases[k]) or 5e8 for k in bases if k != "reader"))
        settings = {"reader": reader.name, "family": READER_FORMATS[joint["format"]], "untrained": untrained}
    else:
        what = "save the trained stages as one composite checkpoint (OUT/model)"
        disk = sum((_params(bases[k]) or 5e8) * 4 for k in bases)
        settings = {"visibility": recipe["visibility"], "untrained": untrained}
    steps.append(
        Step("compose", what, None, run_compose, est_seconds=30 if not joint else 120, est_disk_bytes=disk,
             outputs=["model/config.json"], settings=settings)
    )  # fmt: skip

    inputs, preds = out / "test_inputs.jsonl", out / "predictions.jsonl"
    predict = [
        "predict",
        "--model",
        str(model),
        "--input",
        str(inputs),
        "--output",
        str(preds),
        "--local-files-only",
    ]
    predict += ["--images", args.images] if args.images else []
    predict += ["--device", args.device] if args.device else []

    def run_predict():
        from .distributed import partial_state

        if partial_state().is_main_process and not inputs.is_file():
            _write_test_inputs(data, inputs, with_knowledge=bool(args.knowledge))
        partial_state().wait_for_everyone()
        _cli(predict)

    if joint:
        per = EST_SECONDS_PER_EXAMPLE["predict-reader"] * _reader_params(bases) / READER_REFERENCE_PARAMS
        note = f"estimate: {per:.3g} GPU-s per tweet (one reader answer + SAM) x {n['test']} tweets; not measured"
    else:
        per = EST_SECONDS_PER_EXAMPLE["predict"] * (5 if args.recipe == "vlm" else 1)
        note = ""
    steps.append(
        Step("predict", "predict the test split with the composite", predict, run_predict, distributed=True,
             est_seconds=per * n["test"], est_note=note,
             est_disk_bytes=2e3 * n["test"] * (50 if joint and "segmenter" in bases else 1),  # masks: RLE
             outputs=["predictions.jsonl"], owns=["test_inputs.jsonl", "predictions.jsonl"])
    )  # fmt: skip
    evaluate = ["evaluate", "--predictions", str(preds), "--dataset", str(data), "--config", "gmner",
                "--split", "test", "--protocol", "all", "--output", str(out / "scores.json")]  # fmt: skip
    steps.append(
        Step("evaluate", "score with riveg_hf.metrics under every protocol and write results.json / results.md",
             evaluate, lambda: _cli(evaluate), est_seconds=10, est_disk_bytes=1e4, outputs=["scores.json"])
    )  # fmt: skip
    return steps


def _joint_training_steps(args, joint, bases, data, out, n, common, rest, resumable_run, steps) -> Path:
    """The joint recipe's training steps (SFT, then GRPO from its output); returns the folder of the last reader."""
    fmt = ["--format", joint["format"], "--save", "merged"]  # merged: the folder loads as a reader by itself
    for key, path in joint["prompts"].items():  # E2E-GMNER's prompt texts (e2e-gmner format)
        fmt += [f"--{key.replace('_', '-')}", path]
    sft = out / "reader"
    argv = ["train", "reader", "--dataset", str(data), "--base-model", bases["reader"], "--output", str(sft),
            "--method", "sft", *fmt]  # fmt: skip
    argv += ["--reasoning", joint["reasoning"]] if joint["reasoning"] else []
    argv += ["--box-jitter", str(joint["box_jitter"])] if joint["box_jitter"] is not None else []
    argv += common
    params = _reader_params(bases)
    # the per-example estimates are for a 7B base: linear in its size
    scale = params / READER_REFERENCE_PARAMS
    per = EST_SECONDS_PER_EXAMPLE["reader-sft"] * scale
    steps.append(
        Step("reader", f"supervised fine-tuning of the joint reader from {bases['reader']} ({joint['format']} answers)",
             argv, resumable_run(argv, sft), distributed=True,
             est_seconds=per * n["train"] * args.epochs,
             est_note=f"estimate: {per:.3g} GPU-s per tweet-epoch (LoRA SFT, bf16, {params / 1e9:.3g}B parameters) x "
                      f"{n['train']} tweets x {args.epochs:g} epochs; derived, not measured",
             # the merged reader in bf16 + LoRA checkpoints (adapter and optimizer state, ~2% of the weights each)
             est_disk_bytes=params * 2 * 1.1,
             outputs=["reader/config.json", "reader/riveg_run.json"],
             settings={"reasoning": _FileDigest(joint["reasoning"]),
                       **{k: _FileDigest(v) for k, v in joint["prompts"].items()}})
    )  # fmt: skip
    if not joint["grpo"]:
        return sft
    grpo = out / "reader-grpo"
    epochs = min(args.epochs, joint["grpo_epochs"])
    argv = ["train", "reader", "--dataset", str(data), "--base-model", str(sft), "--output", str(grpo),
            "--method", "grpo", *fmt, "--epochs", f"{epochs:g}", *rest]  # fmt: skip
    per = EST_SECONDS_PER_EXAMPLE["reader-grpo"] * scale
    steps.append(
        Step("grpo", "GRPO of the reader from its SFT output (rewards: format, entity set, region)", argv,
             resumable_run(argv, grpo), distributed=True, est_seconds=per * n["train"] * epochs,
             est_note=f"estimate: {per:.3g} GPU-s per tweet-epoch (4 sampled answers + update, LoRA, "
                      f"{params / 1e9:.3g}B parameters) x {n['train']} tweets x {epochs:g} epoch; derived, not measured",
             est_disk_bytes=params * 2 * 1.1,
             outputs=["reader-grpo/config.json", "reader-grpo/riveg_run.json"])
    )  # fmt: skip
    return grpo


#: the reader size the per-example estimates of EST_SECONDS_PER_EXAMPLE were derived for (Qwen2.5-VL-7B)
READER_REFERENCE_PARAMS = 8.29e9


def _reader_params(bases: dict[str, str]) -> float:
    """The reader base's parameters (from KNOWN_PARAMS or its weights; a 7B when neither tells)."""
    return _params(bases["reader"]) or READER_REFERENCE_PARAMS


def _save_composite(pipe, out: Path, model: Path) -> None:
    """Save the composite beside OUT/model, then swap it in: a killed save leaves the old one or none."""
    stage_dir = out / ".model.building"
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    pipe.save_pretrained(stage_dir)
    if model.exists():
        shutil.rmtree(model)
    os.replace(stage_dir, model)


# ---------------------------------------------------------------------- what a step was run with
class _InputDigest:
    """Checksums of the run's inputs (the release's txt and xml, the knowledge and caption files, the images'
    names and sizes), computed once when first needed."""

    def __init__(self, args: ReproduceArguments):
        self.args = args
        self._value: dict[str, Any] | None = None

    def value(self) -> dict[str, Any]:
        if self._value is None:
            a = self.args
            self._value = {
                "raw": _tree_digest(a.raw, content=True),
                "images": _tree_digest(a.images, content=False) if a.images else None,  # names, sizes, mtimes
                "knowledge": _tree_digest(a.knowledge, content=True) if a.knowledge else None,
                "captions": _tree_digest(a.captions, content=True) if a.captions else None,
            }
        return self._value


class _FileDigest:
    """The checksum of one input file (or None when no file is given), computed once when first needed."""

    def __init__(self, path: str | None):
        self.path = path
        self._value: str | None = None

    def value(self) -> str | None:
        if self._value is None and self.path:
            self._value = _tree_digest(self.path, content=True)
        return self._value


def _tree_digest(path: str | os.PathLike, *, content: bool) -> str | None:
    """SHA-256 over a folder's files (relative names and contents; or names, sizes and modification times,
    so that a file changed in place with the same size counts as changed)."""
    import hashlib

    root = Path(path)
    if not root.exists():
        return None
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(root) if f != root else f.name).encode() + b"\0")
        if content:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            st = f.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(b"\0")
    return h.hexdigest()


def _run_with(step: Step, args: ReproduceArguments, previous: str) -> dict[str, Any]:
    """Everything a step's result depends on: its command, its settings, the run's recipe and limit, and
    (through ``previous``, the digest of the step before) everything before it."""
    settings = {k: (v.value() if isinstance(v, (_InputDigest, _FileDigest)) else v)
                for k, v in step.settings.items()}  # fmt: skip
    return {"step": step.name, "command": step.command, "settings": settings, "recipe": args.recipe,
            "limit": args.limit, "previous": previous}  # fmt: skip


def _digest(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


_HASH_LIMIT = 64 << 20  # files above this are recorded by size and modification time, not content


def _output_record(path: Path) -> dict[str, Any] | None:
    """What identifies an output: a file's size and SHA-256 (or mtime when large); a folder's listing."""
    import hashlib

    if path.is_file():
        st = path.stat()
        rec: dict[str, Any] = {"kind": "file", "size": st.st_size}
        if st.st_size <= _HASH_LIMIT:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            rec["sha256"] = h.hexdigest()
        else:
            rec["mtime_ns"] = st.st_mtime_ns
        return rec
    if path.is_dir():
        listing = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
        return {"kind": "dir", "files": len(listing), "digest": _digest(listing)}
    return None


def _completion(marker: Path, run_with: dict[str, Any], out: Path, step: Step) -> tuple[bool, str]:
    """(complete?, why not) for a step's marker."""
    if not marker.is_file():
        return False, "not run yet"
    try:
        m = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False, "its marker is unreadable"
    if (
        not isinstance(m, dict)
        or not isinstance(m.get("run_with"), dict)
        or not isinstance(m.get("outputs"), dict)
    ):
        return False, "its marker does not record what it was run with (an older or foreign marker)"
    if m.get("fingerprint") != _digest(run_with):
        before = m["run_with"]
        changed = sorted(k for k in run_with if k != "previous" and before.get(k) != run_with[k])
        if not changed:
            return False, "a step before it was run again or with other settings"
        what = ", ".join(changed)
        return False, f"it was run with other settings ({what} changed)"
    for rel in step.outputs:
        if _output_record(out / rel) != m["outputs"].get(rel):
            return False, f"its output {rel} is missing or changed since it was written"
    return True, ""


def _write_test_inputs(data: Path, path: Path, *, with_knowledge: bool) -> None:
    """The test split as `riveg predict` input lines (tokens, image file, and LLM knowledge when used)."""
    from datasets import Image as ImageFeature

    from .data import load_built_dataset

    test = load_built_dataset(str(data), "gmner", split="test").cast_column(
        "image", ImageFeature(decode=False)
    )
    knowledge = {}
    if with_knowledge:
        k = load_built_dataset(str(data), "mner_llm_knowledge", split="test")
        knowledge = {r["id"]: " ".join(r["knowledge"] or []) for r in k}
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in test:
            line: dict[str, Any] = {"id": row["id"], "tokens": row["tokens"]}
            img = row["image"]
            if img is not None and img.get("path"):
                line["image"] = Path(img["path"]).name
            if knowledge.get(row["id"]):
                line["knowledge"] = knowledge[row["id"]]
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- run
class _PeakRSS:
    """Peak resident memory of this process while a step runs (sampled every 0.1 s), and of the GPU."""

    def __enter__(self):
        import torch

        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        import torch

        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.result = {"peak_rss_mb": round(self.peak / 2**20, 1)}
        if torch.cuda.is_available():
            self.result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return False


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _human(seconds: float) -> str:
    return (
        f"{seconds / 3600:.1f} h"
        if seconds >= 3600
        else f"{seconds / 60:.0f} min"
        if seconds >= 60
        else f"{seconds:.0f} s"
    )


def _print_plan(args: ReproduceArguments, steps: list[Step]) -> None:
    print(f"riveg reproduce --recipe {args.recipe} -> {args.out} (dry run: nothing is written)")
    done_dir = Path(args.out) / ".steps"
    previous, rerun = "", False
    for k, s in enumerate(steps, 1):
        run_with = _run_with(s, args, previous)
        previous = _digest(run_with)
        complete, why = _completion(done_dir / f"{s.name}.json", run_with, Path(args.out), s)
        rerun = rerun or not complete or args.force == s.name
        state = (
            "done, skipped" if not rerun else ("to run" if why == "not run yet" else f"to run again: {why}")
        )
        cmd = (
            f"riveg {shlex.join(s.command)}"
            if s.command
            else "(Python: RiVEGPipeline.from_components(...).save_pretrained(OUT/model))"
        )
        print(f"{k}. {s.name} [{state}]: {s.what}\n   {cmd}\n   expected: ~{_human(s.est_seconds)} on one GPU, "
              f"~{s.est_disk_bytes / 1e9:.2f} GB disk (estimates)")  # fmt: skip
        if s.est_note:
            print(f"   ({s.est_note})")
    total = sum(s.est_seconds for s in steps)
    print(
        f"total: ~{_human(total)}, ~{sum(s.est_disk_bytes for s in steps) / 1e9:.1f} GB (estimates, not measured)"
    )


def _check_paths(args: ReproduceArguments) -> None:
    """Refuse an --out that overlaps an input: the run rebuilds and replaces folders under --out (data/,
    model/ ...), which would delete a release or images kept there."""
    out = Path(args.out).expanduser().resolve()
    inputs = {
        "--raw": args.raw,
        "--images": args.images,
        "--knowledge": args.knowledge,
        "--captions": args.captions,
        "--reasoning": args.reasoning,
        "--e2e-gmner-repo": args.e2e_gmner_repo,
    }
    for name, loc in _parse_base_models(args.base_models).items():
        if Path(loc).expanduser().exists():
            inputs[f"--base-models {name}"] = loc
    for flag, loc in inputs.items():
        if not loc:
            continue
        p = Path(loc).expanduser().resolve()
        if p == out or out in p.parents or p in out.parents:
            raise ValueError(
                f"--out {args.out} overlaps {flag} {loc}: reproduce writes and replaces folders under --out (data/, "
                "model/, the trained stages), which would delete that input. Choose an --out folder outside the "
                "inputs (e.g. runs/NAME)."
            )


def reproduce(args: ReproduceArguments, runner: Runner | None = None) -> dict[str, Any] | None:
    """Run (or with ``dry_run`` print) the plan; returns the results (``OUT/results.json``).

    ``runner(argv) -> exit code`` runs the steps' ``riveg`` command lines (the CLI passes its ``main``).
    A step is complete when its marker records the same command, settings and inputs as this run (and every
    step before it is complete) and the outputs it recorded are still there, unchanged; the first step that
    is not reruns, with every step after it. A failed step raises :class:`StepFailed` (one line)."""
    from accelerate.utils import gather_object

    from .distributed import partial_state

    if args.recipe in RECIPES and RECIPES[args.recipe]["visibility"] == "reader":
        if args.images is None and not args.dry_run:
            raise ValueError(
                f"--recipe {args.recipe} trains a reader that reads each tweet's image: --images (a folder of "
                "<IMGID>.jpg) is needed"
            )
        if args.knowledge or args.captions:
            print(f"riveg reproduce: --recipe {args.recipe} does not use --knowledge / --captions (the reader reads "
                  "the tweet and its image); they are left out", file=sys.stderr)  # fmt: skip
    elif args.images is None and not args.dry_run:
        print(
            "riveg reproduce: no --images: entailment and grounding cannot be trained without images",
            file=sys.stderr,
        )
    _check_paths(args)
    steps = plan(args)
    if args.dry_run:
        _print_plan(args, steps)
        return None
    if runner is None:
        raise ValueError("reproduce() needs runner=, the function that runs a `riveg` command line")
    state = partial_state()
    out = Path(args.out)
    done_dir = out / ".steps"
    names = [s.name for s in steps]
    if args.force and args.force not in names:
        raise ValueError(f"--force must name a step of this recipe: {names}")
    if state.is_main_process:
        _write_json(out / "reproduce_args.json", {k: v for k, v in vars(args).items()})
    _RUNNER.append(runner)
    try:
        with _one_run(out, state.is_main_process):
            _run_steps(args, steps, state, out, done_dir, gather_object)
    finally:
        _RUNNER.pop()
    if not state.is_main_process:
        return None
    results = _results(args, steps)
    _write_json(out / "results.json", results)
    (out / "results.md").write_text(_results_md(results), encoding="utf-8")
    print(_results_md(results))
    return results


@contextlib.contextmanager
def _one_run(out: Path, main: bool):
    """One ``riveg reproduce`` at a time in ``out``: an OS lock held by the main process (released when it
    dies, however it dies); a second run into the same folder refuses instead of both "succeeding"."""
    if not main:
        yield
        return
    from .paths import os_lock

    (out / ".steps").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(os_lock(out / ".steps" / "lock"))
        except BlockingIOError:
            raise StepFailed(
                f"another riveg reproduce is running with --out {out}; wait for it to finish (its steps are kept "
                "and this command then skips them) or choose another --out"
            ) from None
        yield


def _fresh_start(step: Step, out: Path, started: Path, fingerprint: str) -> bool:
    """Before a step runs: when it was not interrupted while running with this very fingerprint, remove what
    it owns (a resumed predictions file or checkpoint of other settings would pass for this run's); record
    that it started. True when it starts afresh."""
    try:
        resumable = json.loads(started.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
    except (OSError, ValueError, AttributeError, RecursionError):
        resumable = False
    if not resumable:
        for rel in step.owns:
            path = out / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    _write_json(started, {"step": step.name, "fingerprint": fingerprint})
    return not resumable


def _run_steps(args, steps, state, out: Path, done_dir: Path, gather_object) -> None:
    previous = ""
    rerun = False
    for s in steps:
        run_with = _run_with(s, args, previous)
        previous = _digest(run_with)
        marker = done_dir / f"{s.name}.json"
        complete, why = (False, "--force") if args.force == s.name else _completion(marker, run_with, out, s)
        if complete and not rerun:
            if state.is_main_process:
                print(f"[{s.name}] done earlier ({marker}), skipped")
            continue
        if not rerun:
            rerun = True
            if marker.is_file() and state.is_main_process:
                print(f"[{s.name}] runs again: {why}; so do the steps after it", flush=True)
            state.wait_for_everyone()
            if state.is_main_process:
                for later in steps[steps.index(s) :]:
                    (done_dir / f"{later.name}.json").unlink(missing_ok=True)
            state.wait_for_everyone()
        started = done_dir / "started" / f"{s.name}.json"
        if state.is_main_process:
            if args.force == s.name:
                started.unlink(missing_ok=True)
            if not _fresh_start(s, out, started, _digest(run_with)):
                print(f"[{s.name}] continues its interrupted run (same settings)", flush=True)
            print(
                f"[{s.name}] {s.what}" + (f"\n  riveg {shlex.join(s.command)}" if s.command else ""),
                flush=True,
            )
        state.wait_for_everyone()
        t0 = time.perf_counter()
        ran = False
        with _PeakRSS() as peak:
            if s.distributed or state.is_main_process:
                try:
                    s.run()
                except StepFailed as err:
                    raise StepFailed(f"step {s.name!r} failed ({err}); fix it and run the same command again "
                                     "(the steps done so far are kept)") from None  # fmt: skip
                except Exception as err:
                    if os.environ.get("RIVEG_VERBOSE") == "1":
                        raise
                    raise StepFailed(f"step {s.name!r} failed: {type(err).__name__}: {err} (--verbose shows the "
                                     "traceback; the steps done so far are kept)") from None  # fmt: skip
                ran = True
        # which processes ran the step (all of them for training and prediction, the main one otherwise)
        ran_on = [i for i, r in enumerate(gather_object([ran])) if r]
        state.wait_for_everyone()
        if state.is_main_process:
            missing = [rel for rel in s.outputs if _output_record(out / rel) is None]
            if missing:
                raise StepFailed(f"step {s.name!r} ended without writing {missing}")
            _write_json(
                marker,
                {
                    "step": s.name,
                    "command": (["riveg", *s.command] if s.command else None),
                    "fingerprint": _digest(run_with),
                    "run_with": run_with,
                    "outputs": {rel: _output_record(out / rel) for rel in s.outputs},
                    "processes": ran_on,
                    "wall_time_s": round(time.perf_counter() - t0, 1),
                    **peak.result,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
            )
            started.unlink(missing_ok=True)
        state.wait_for_everyone()


def _results(args: ReproduceArguments, steps: list[Step]) -> dict[str, Any]:
    from . import __version__

    out = Path(args.out)
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    ours = {
        k: scores[k]
        for k in scores
        if k.startswith(("mner_", "eeg_", "gmner_")) and isinstance(scores[k], float)
    }
    step_info = [json.loads((out / ".steps" / f"{s.name}.json").read_text(encoding="utf-8")) for s in steps]
    return {
        "recipe": args.recipe,
        # the joint recipe's settings as run (GRPO or not, answer format, reasoning file, box jitter)
        "joint": _joint_settings(args) or None,
        "limit": args.limit,
        "riveg_hf_version": __version__,
        "model": str(out / "model"),
        "predictions": str(out / "predictions.jsonl"),
        "ours": ours,
        # our scores under each published system's own protocol (riveg_hf.metrics.protocols)
        "ours_by_protocol": {
            name: {k: v for k, v in sc.items() if k.endswith(("_precision", "_recall", "_f1"))}
            for name, sc in (scores.get("protocols") or {}).items()
        },
        "n_test_examples": scores.get("n_references"),
        "failed_inputs": scores.get("failed_inputs", 0),
        "published": PUBLISHED,
        # published systems whose numbers are left out (no citable source), with why
        "published_not_cited": NOT_CITED,
        "steps": step_info,
        "total_wall_time_s": round(sum(s["wall_time_s"] for s in step_info), 1),
    }


def _results_md(r: dict[str, Any]) -> str:
    def pct(v, scale=100.0):  # ours are fractions, the published numbers percentages
        return "" if v is None else f"{scale * v:.2f}"

    o = r["ours"]
    subset = f" (first {r['limit']} tweets per split: a smoke run, not comparable)" if r.get("limit") else ""
    lines = [
        f"# GMNER on Twitter-GMNER: recipe `{r['recipe']}`{subset}",
        "",
    ]
    j = r.get("joint")
    if j:
        lines += [f"One joint reader ({'SFT, then GRPO' if j['grpo'] else 'SFT'}; `{j['format']}` answers"
                  f"{'; reasoning targets' if j.get('reasoning') else ''}"
                  f"{'; box jitter ' + format(j['box_jitter'], 'g') if j.get('box_jitter') else ''}) "
                  "finds the entities, types and boxes; SAM draws the masks of its boxes.", ""]  # fmt: skip
    lines += [
        "| system | MNER P | MNER R | MNER F1 | EEG P | EEG R | EEG F1 | GMNER P | GMNER R | GMNER F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| **ours** (riveg-hf "
        + r["riveg_hf_version"]
        + ") | "
        + " | ".join(
            pct(o.get(f"{t}_{m}")) for t in ("mner", "eeg", "gmner") for m in ("precision", "recall", "f1")
        )
        + " |",
    ]
    for p in r["published"]:
        lines.append(
            f"| {p['system']} (published) | | | {pct(p['mner_f1'], 1)} | | | {pct(p['eeg_f1'], 1)} | | | {pct(p['gmner_f1'], 1)} |"
        )
    by = r.get("ours_by_protocol") or {}
    if by:
        lines += ["", "Each published number was measured with its system's own scoring; ours under the same one "
                  "(riveg_hf.metrics.protocols; docs/guides/metrics.md):", "",
                  "| published system | its protocol | its GMNER F1 | ours, same protocol: MNER F1 | EEG F1 | GMNER F1 |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for p in r["published"]:
            o = by.get(p.get("protocol", "riveg-hf"), {})
            lines.append(f"| {p['system']} | `{p.get('protocol', 'riveg-hf')}` | {pct(p['gmner_f1'], 1)} | "
                         f"{pct(o.get('mner_f1'))} | {pct(o.get('eeg_f1'))} | {pct(o.get('gmner_f1'))} |")  # fmt: skip
        # every other protocol `riveg evaluate` knows: ours, with no published number beside it
        not_cited = r.get("published_not_cited") or {}
        shown = {p.get("protocol", "riveg-hf") for p in r["published"]}
        for name in sorted(set(by) - shown):
            o = by[name]
            who = (
                "(none cited)"
                if name not in not_cited
                else f"{not_cited[name].split(' (')[0]}: not cited (below)"
            )
            lines.append(f"| {who} | `{name}` | -- | {pct(o.get('mner_f1'))} | {pct(o.get('eeg_f1'))} | "
                         f"{pct(o.get('gmner_f1'))} |")  # fmt: skip
    sources = [f"- {p['system']}: {p['source']}" for p in r["published"] if p.get("source")]
    if sources:
        lines += ["", "Sources of the published numbers:", "", *sources]
    if r.get("published_not_cited"):
        lines += ["", "Left out (no number that can be cited):", ""]
        lines += [f"- `{k}`: {v}" for k, v in r["published_not_cited"].items()]
    lines += ["", "| step | wall time | peak RSS (MiB) | peak GPU (MiB) |", "|---|---|---|---|"]
    for s in r["steps"]:
        lines.append(
            f"| {s['step']} | {_human(s['wall_time_s'])} | {s.get('peak_rss_mb', '')} | {s.get('peak_cuda_mb', '')} |"
        )
    lines.append(
        f"\nTotal: {_human(r['total_wall_time_s'])}. Predictions: `{r['predictions']}`; model: `{r['model']}`."
    )
    return "\n".join(lines) + "\n"
