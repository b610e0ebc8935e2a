"""What the three training recipes share: run records, data provenance, peak memory, an accelerate loop."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "LazyImage",
    "LoopConfig",
    "LoopResult",
    "VisionTrainingArguments",
    "accelerate_loop",
    "dataset_provenance",
    "image_of",
    "load_descriptions",
    "load_image_splits",
    "peak_memory_mb",
    "resolve_mixed_precision",
    "write_run_record",
]


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (and of the GPU, when one is used), in MiB."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"peak_rss_mb": round(rss_kb / 1024, 1)}
    if torch.cuda.is_available():
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def dataset_provenance(dataset_dir: str | os.PathLike, config: str | None) -> dict[str, Any]:
    """Where the training data came from: the folder, config, and the raw release recorded by its builder."""
    info: dict[str, Any] = {"dataset": str(dataset_dir), "config": config}
    report = Path(dataset_dir) / "build_report.json"
    if report.is_file():
        data = json.loads(report.read_text(encoding="utf-8"))
        info["built_from"] = data.get("sources")
        info["builder_version"] = data.get("riveg_hf_version")
        info["counts"] = data.get("counts", {}).get(config) if config else data.get("counts")
    return info


def write_run_record(output_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """``riveg_run.json``: the exact command, arguments, data version, versions, results, time and memory."""
    from .. import __version__
    from ..distributed import partial_state

    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:  # pragma: no cover
        tf_version = None
    full = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "riveg_hf_version": __version__,
        "transformers_version": tf_version,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "processes": partial_state().num_processes,  # data-parallel processes that trained together
        **record,
    }
    path = Path(output_dir) / "riveg_run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(full, indent=2, default=str), encoding="utf-8")
    return path


@dataclass(kw_only=True)
class LoopConfig:
    """The optimisation settings of the accelerate loop -- the one source of their defaults: the vision and VLM
    training arguments inherit them, and the CLI's flags default to "unset" (these values)."""

    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 8
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 42
    resume_from_checkpoint: str | None = (
        None  # a checkpoint folder, or "auto" for the latest in the output folder
    )
    #: accelerate's mixed precision: "no", "bf16", "fp16", or "auto" (bf16 on a GPU that supports it, else "no")
    mixed_precision: str = "no"
    save_every_epoch: bool = True
    #: how many of the latest ``checkpoint-*`` folders to keep (older ones are removed once a new one is
    #: complete); None keeps all
    keep_checkpoints: int | None = 2
    log_every: int = 10


@dataclass(kw_only=True)
class VisionTrainingArguments(LoopConfig):
    """``riveg train entailment | grounder`` (accelerate): the data, the base model, the loop's settings."""

    dataset: str
    base_model: str
    output: str
    config: str = "gmner"
    descriptions: str | None = None
    hypothesis: str = "{entity}({type})-{description}"  # riveg_hf.stages.entailment.DEFAULT_HYPOTHESIS
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    local_files_only: bool = False


@dataclass
class LoopResult:
    """What a training loop leaves: the loss (and validation) history."""

    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_mixed_precision(choice: str) -> str:
    """``auto``: bf16 on a GPU that supports it, else full precision; other values as accelerate takes them."""
    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


class LazyImage:
    """An encoded image, decoded when used (a split's images need not fit in memory decoded)."""

    def __init__(self, data: dict):
        self.data = data

    def get(self):
        from ..images import load_image

        return load_image(self.data)


def image_of(x: dict[str, Any]):
    """The PIL image of a dataset example (decoding a lazily read one)."""
    return x["image"].get() if isinstance(x["image"], LazyImage) else x["image"]


def load_descriptions(path: str | None) -> dict[tuple[str, int, int], str]:
    """``{(id, start, end): description}`` from a jsonl of ``{id, start, end, description}`` lines."""
    if not path:
        return {}
    out = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                out[(str(row["id"]), int(row["start"]), int(row["end"]))] = str(row["description"])
            except KeyError as err:
                raise ValueError(
                    f"{path}:{lineno}: missing key {err.args[0]!r}; need id, start, end, description"
                ) from None
    return out


def load_image_splits(args: VisionTrainingArguments):
    """The dataset's splits for a vision stage; refused when it has no train split or no images."""
    from ..data import load_built_dataset

    ds = load_built_dataset(args.dataset, args.config)
    if "train" not in ds:
        raise ValueError(f"{args.dataset} has no train split")
    if "image" not in ds["train"].column_names:
        raise ValueError(
            f"{args.dataset} ({args.config}) has no images; build it with --images (config gmner)."
        )
    return ds


def _latest_checkpoint(output_dir: str) -> str | None:
    """The latest *complete* checkpoint (its loop_state.json written last), or None."""
    ckpts = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if (p / "loop_state.json").is_file()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    return str(ckpts[-1]) if ckpts else None


def _prune_checkpoints(output_dir: str, keep: int | None) -> None:
    """Remove all but the ``keep`` latest complete checkpoints (a checkpoint is complete once its
    ``loop_state.json`` is written, so a kill leaves the previous ones usable)."""
    import shutil

    if not keep:
        return
    done = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if (p / "loop_state.json").is_file()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def accelerate_loop(
    model: torch.nn.Module,
    train_items: Sequence[Any],
    collate: Callable[[list[Any]], Any],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    cfg: LoopConfig,
    on_epoch_end: Callable[[torch.nn.Module, int, int], dict[str, Any] | None] | None = None,
    output_dir: str | None = None,
) -> LoopResult:
    """A plain training loop under ``accelerate`` (runs unchanged with ``accelerate launch`` on GPUs/nodes).

    Seeds are fixed, a progress bar shows on the main process, a checkpoint (``accelerator.save_state``)
    is written after each epoch into ``output_dir`` (default ``cfg.output``), and ``resume_from_checkpoint``
    continues from one. Returns the loss history (``result.history``). ``on_epoch_end(unwrapped_model, epoch, step)`` runs after each
    epoch (validation); what it returns is added to the history, and the model is set back to training.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from ..distributed import partial_state

    partial_state()  # several processes on a machine without GPU: one CPU group, which the Accelerator uses
    output_dir = str(output_dir or cfg.output)
    result = LoopResult()
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
    )
    set_seed(cfg.seed)
    g = torch.Generator()
    g.manual_seed(cfg.seed)
    loader = DataLoader(
        list(train_items), batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, generator=g
    )
    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    epochs = math.ceil(total / steps_per_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    accelerator.register_for_checkpointing(scheduler)
    start_epoch, step = 0, 0
    resume = cfg.resume_from_checkpoint
    if resume == "auto":
        resume = _latest_checkpoint(output_dir)
    if resume:
        accelerator.load_state(resume)
        state = json.loads((Path(resume) / "loop_state.json").read_text())
        start_epoch, step = state["epoch"], state["step"]
        result.history = state.get("history", [])
        accelerator.print(f"resumed from {resume} (epoch {start_epoch}, step {step})")
    bar = tqdm(total=total, initial=step, disable=not accelerator.is_local_main_process, desc="training")
    model.train()
    t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        running = []
        for batch in loader:
            if step >= total:
                break
            with accelerator.accumulate(model):
                loss = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                value = accelerator.gather(loss.detach().float().reshape(1)).mean().item()
                running.append(value)
                result.history.append({"step": step, "loss": value})
                bar.update(1)
                if step % cfg.log_every == 0:
                    bar.set_postfix(
                        loss=f"{sum(running[-cfg.log_every :]) / len(running[-cfg.log_every :]):.4f}"
                    )
        if cfg.save_every_epoch or step >= total:
            ckpt = Path(output_dir) / f"checkpoint-{step}"
            accelerator.save_state(str(ckpt))
            if accelerator.is_main_process:
                (ckpt / "loop_state.json").write_text(
                    json.dumps({"epoch": epoch + 1, "step": step, "history": result.history})
                )
                _prune_checkpoints(output_dir, cfg.keep_checkpoints)
        if on_epoch_end is not None:
            extra = on_epoch_end(accelerator.unwrap_model(model), epoch + 1, step)
            model.train()
            if extra:
                result.history.append({"epoch": epoch + 1, "step": step, **extra})
        if step >= total:
            break
    bar.close()
    accelerator.wait_for_everyone()
    result.history.append({"seconds": time.perf_counter() - t0})
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    return result


def base_model_error(base_model: str, err: BaseException) -> OSError:
    """One error that names the checkpoint that could not be loaded and how to point at a local one."""
    return OSError(
        f"--base-model {base_model!r} could not be loaded ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        "Give a Hub id you can download, or a local folder with config.json, *.safetensors and the tokenizer / "
        "processor files (`hf download ID --local-dir DIR`); offline, only local folders work."
    )
