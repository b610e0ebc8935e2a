"""Training recipes for the trainable stages: ``mner`` (Trainer), ``entailment`` and ``grounder`` (accelerate; a
vision-language model through :mod:`riveg_hf.training.vlm`), and the joint ``reader`` (one vision-language model
that writes entities, types and boxes: :mod:`riveg_hf.training.reader`).

:func:`train` is the one dispatcher (the CLI's ``riveg train`` uses it): it picks the stage's arguments class --
the one source of its defaults -- and its recipe. Values left out (or None) keep the class's defaults.

>>> train("grounder", dataset="ds", base_model="IDEA-Research/grounding-dino-tiny", output="gd")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["STAGES", "arguments_class", "build_arguments", "train"]

#: the stages ``riveg train`` trains
STAGES = ("mner", "entailment", "grounder", "reader")


def arguments_class(stage: str, base_model: str, local_files_only: bool = False) -> type:
    """The arguments dataclass of ``stage`` for ``base_model`` (a vision-language model has its own)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid: {list(STAGES)}")
    if stage == "mner":
        from .mner import MNERTrainingArguments

        return MNERTrainingArguments
    if stage == "reader":
        from .reader import ReaderTrainingArguments

        return ReaderTrainingArguments
    from .vlm import VLMGrounderArguments, is_vlm_checkpoint

    if is_vlm_checkpoint(base_model, local_files_only):
        return VLMGrounderArguments
    from .common import VisionTrainingArguments

    return VisionTrainingArguments


def build_arguments(stage: str, **values: Any):
    """The stage's arguments from ``values`` (None = the default); an argument the stage does not take is an
    error naming the ones it does."""
    cls = arguments_class(stage, values.get("base_model", ""), bool(values.get("local_files_only")))
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(
            f"train {stage} ({cls.__name__}, for {values.get('base_model')}) does not take {unknown}; it takes "
            f"{sorted(names)}"
        )
    return cls(**given)


def train(stage: str, args: Any = None, **values: Any) -> dict[str, Any]:
    """Train ``stage`` with ``args`` (an arguments dataclass) or ``values``; returns the run record."""
    if args is None:
        args = build_arguments(stage, **values)
    if stage == "mner":
        from .mner import train_mner

        return train_mner(args)
    if stage == "reader":
        from .reader import train_reader

        return train_reader(args)
    from .vision import train_entailment, train_grounder

    return train_entailment(args) if stage == "entailment" else train_grounder(args)
