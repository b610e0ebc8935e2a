"""One source of truth for the pipeline's options: who owns each, its default, and how it is validated.

* **Call options** (:data:`CALL_OPTIONS`) are given per call (``pipe(x, box_threshold=0.2)``), saved as a
  composite's defaults, and sent as an endpoint request's ``parameters``. :func:`validate_call_options` is the
  one validator the pipeline and the Inference Endpoints handler share.
* **Stage options** (:data:`STAGE_OPTIONS`) configure a stage when the pipeline is built
  (``RiVEGPipeline.from_components(..., mask_threshold=0.4)``); each names the stage that owns it and the
  stage's own argument. An option whose stage is absent is an error naming that stage, never silently dropped.

**One rule for a name that is both** (``box_threshold``, ``entailment_threshold``): given when the pipeline is
built (``from_components``, a composite's ``config.json``), it is the owning stage's default, saved with that
stage; given at a call, it overrides that default for the call only (None, the call default: the stage's own).
Both are checked by the same :meth:`CallOption.check`, so a value refused at a call (``box_threshold=5.0``) is
refused with the same message when the pipeline is built or a checkpoint is loaded
(:func:`riveg_hf.modeling_riveg.build_model`, the one construction path). A call default lives in this table
(:attr:`CallOption.default`, :func:`call_defaults`), never in a hook's signature.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .images import DEFAULT_MAX_IMAGE_PIXELS

__all__ = [
    "CALL_OPTIONS",
    "ERROR_MODES",
    "MASK_FORMATS",
    "STAGE_OPTIONS",
    "VISIBILITY_MODES",
    "CallOption",
    "StageOption",
    "call_defaults",
    "check_stage_argument",
    "split_call_options",
    "validate_call_options",
]

#: how masks are returned: COCO RLE (JSON-safe, the default), boolean arrays, or not at all
MASK_FORMATS = ("rle", "array", "none")
#: what an input that fails becomes: an error line in its place (the others go on), or an exception
ERROR_MODES = ("return", "raise")
#: Who decides "visible?": the entailment stage (RiVEG; the grounder then boxes what it passed), or the grounder
#: itself (a vision-language grounder's answer = visible or not; the end-to-end style, no entailment call).
VISIBILITY_MODES = ("entailment", "grounder")
#: Default cap on the entities one image is grounded for (entailment, grounder, segmenter); entities past it
#: are kept in the output with ``box=None`` and ``"grounding": "skipped: ..."``, never dropped.
DEFAULT_MAX_ENTITIES_PER_IMAGE = 100


@dataclass(frozen=True)
class CallOption:
    """An option given per call (``pipe(x, NAME=value)``): the hook that reads it, its kind, its default and its
    check (:meth:`check`)."""

    name: str
    hook: str  # "preprocess" | "forward" | "postprocess"
    kind: str  # "unit" (a number in [0, 1]) | "bool" | "positive-int" | "choice" | "int"
    choices: tuple[str, ...] = ()
    nullable: bool = True
    doc: str = ""
    #: the value a call gets when the option is not given (the hooks read it from here, not from a signature)
    default: Any = None

    def check(self, value: Any, *, json_values: bool = False) -> Any:
        """``value`` if valid, else ValueError saying what was received and what is expected (``json_values``:
        the received value written as JSON, ``true`` / ``null``, for an endpoint's answer)."""
        if value is None and self.nullable:
            return value
        got = _json(value) if json_values else repr(value)
        yes_no = "true or false" if json_values else "True or False"
        problem = None
        # numpy scalars (np.float32 thresholds, np.int64 sizes, np.bool_) are numbers too: returned as Python's
        if self.kind == "unit":
            if isinstance(value, (bool, np.bool_)):
                problem = f"must be a number, got {got} (a number in [0, 1], not a boolean)"
            elif not isinstance(value, numbers.Real):
                problem = f"must be a number, got {got}"
            elif not 0.0 <= float(value) <= 1.0:
                problem = f"must be in [0, 1], got {got}"
            else:
                value = float(value) if not isinstance(value, int) else value
        elif self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                problem = f"must be {yes_no}, got {got}"
            value = bool(value) if problem is None else value
        elif self.kind in ("positive-int", "int"):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                problem = f"must be an integer, got {got}"
            elif self.kind == "positive-int" and value < 1:
                problem = f"must be a positive integer{' or None' if self.nullable else ''}, got {got}"
            else:
                value = int(value)
        elif self.kind == "choice":
            if value not in self.choices:
                problem = f"must be one of {list(self.choices)}, got {got}"
        else:  # pragma: no cover
            raise AssertionError(self.kind)
        if problem:
            raise ValueError(f"{self.name} {problem}")
        return value


def _json(value: Any) -> str:
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


#: every call option, by name: the one table the pipeline, the CLI and the endpoint handler validate with
CALL_OPTIONS: dict[str, CallOption] = {
    o.name: o
    for o in (
        CallOption(
            "max_image_pixels",
            "preprocess",
            "positive-int",
            doc="largest accepted image (pixels)",
            default=DEFAULT_MAX_IMAGE_PIXELS,
        ),
        CallOption(
            "allow_url_images",
            "preprocess",
            "bool",
            doc="fetch http(s) image URLs (off by default)",
            default=False,
        ),
        CallOption(
            "max_entities_per_image",
            "forward",
            "positive-int",
            doc="entities grounded per image",
            default=DEFAULT_MAX_ENTITIES_PER_IMAGE,
        ),
        CallOption("vision_batch_size", "forward", "positive-int", doc="images per vision forward"),
        CallOption(
            "visibility",
            "forward",
            "choice",
            VISIBILITY_MODES,
            nullable=False,
            doc="who decides visible",
            default="entailment",
        ),
        CallOption(
            "box_threshold",
            "forward",
            "unit",
            doc="the locator's score for a box (no entailment); None: the stage's",
        ),
        CallOption("entailment_threshold", "forward", "unit", doc="P(visible) for a box; None: the stage's"),
        CallOption(
            "use_descriptions", "forward", "bool", doc="ground the descriptions, not the names", default=True
        ),
        CallOption(
            "use_knowledge", "forward", "bool", doc="feed LLM knowledge to a recognizer trained with it"
        ),
        CallOption("return_masks", "forward", "bool", doc="masks (default: task segmented-mner)"),
        CallOption(
            "errors",
            "forward",
            "choice",
            ERROR_MODES,
            nullable=False,
            doc="an input's error: return/raise",
            default="return",
        ),
        CallOption(
            "mask_format",
            "postprocess",
            "choice",
            MASK_FORMATS,
            nullable=False,
            doc="rle | array | none",
            default="rle",
        ),
    )
}


def validate_call_options(
    options: Mapping[str, Any],
    *,
    allowed: Iterable[str] | None = None,
    choices: Mapping[str, Iterable[str]] | None = None,
    where: str = "pipeline",
    json_values: bool = False,
) -> dict[str, Any]:
    """Check every option (unknown names and values, with the valid choices in the message); returns a copy.

    The one validator of the pipeline and the endpoint handler. ``allowed`` restricts the names (the handler's
    parameters), ``choices`` narrows a choice option (``{"mask_format": ("rle", "none")}``: JSON answers only),
    ``json_values`` writes received values as JSON in the messages.
    """
    names = list(allowed) if allowed is not None else list(CALL_OPTIONS)
    unknown = sorted(k for k in options if k not in names)
    if unknown:
        if json_values:
            raise TypeError(f"unknown {where} {unknown}; valid: {sorted(names)}")
        raise TypeError(f"{where}: unknown option {unknown[0]!r}; valid options: {sorted(names)}")
    out = {}
    for key, value in options.items():
        opt = CALL_OPTIONS[key]
        if choices and key in choices:
            opt = CallOption(
                opt.name, opt.hook, "choice", tuple(choices[key]), opt.nullable, opt.doc, opt.default
            )
        out[key] = opt.check(value, json_values=json_values)
    return out


def split_call_options(options: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Validated call options -> (preprocess, forward, postprocess) keyword dicts (the pipeline's hooks)."""
    hooks: dict[str, dict[str, Any]] = {"preprocess": {}, "forward": {}, "postprocess": {}}
    for key, value in validate_call_options(options).items():
        hooks[CALL_OPTIONS[key].hook][key] = value
    return hooks["preprocess"], hooks["forward"], hooks["postprocess"]


def call_defaults(hook: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every call option of ``hook`` (``"preprocess"``, ``"forward"``, ``"postprocess"``): its table default,
    overridden by ``given`` (already validated)."""
    out = {o.name: o.default for o in CALL_OPTIONS.values() if o.hook == hook}
    out.update(given or {})
    return out


@dataclass(frozen=True)
class StageOption:
    """A ``from_components`` option: the stage that owns it and the argument it sets there."""

    name: str
    stage: str
    argument: str
    #: a stage that may own it instead when the first is absent (``box_threshold``: a segmenter that locates)
    alternative: str | None = None


#: every construction option of ``from_components``, by name: the stage that owns it and its argument there
STAGE_OPTIONS: dict[str, StageOption] = {
    o.name: o
    for o in (
        StageOption("label_map", "recognizer", "label_map"),
        StageOption("stride", "recognizer", "stride"),
        StageOption("max_length", "recognizer", "max_length"),
        StageOption("prompt", "expander", "prompt"),
        StageOption("template", "expander", "template"),
        StageOption("max_new_tokens", "expander", "max_new_tokens"),
        StageOption("knowledge_prompt", "expander", "knowledge_prompt"),
        StageOption("hypothesis", "entailment", "hypothesis"),
        StageOption("logit_bias", "entailment", "logit_bias"),
        StageOption("entailment_threshold", "entailment", "threshold"),
        StageOption("box_threshold", "grounder", "box_threshold", alternative="segmenter"),
        StageOption("mask_threshold", "segmenter", "mask_threshold"),
        StageOption("reader_family", "reader", "family"),
        StageOption("reader_max_new_tokens", "reader", "max_new_tokens"),
        StageOption("reader_entity_types", "reader", "entity_types"),
        StageOption("reader_prompt_dir", "reader", "prompt_dir"),
        StageOption("reader_search", "reader", "search"),
        StageOption("reader_search_cache", "reader", "search_cache"),
        StageOption("reader_return_trace", "reader", "return_trace"),
        StageOption("reader_instruction_file", "reader", "instruction_file"),
        StageOption("reader_system_prompt_file", "reader", "system_prompt_file"),
    )
}

#: (stage, its argument) -> the option's public name (``("entailment", "threshold")`` -> ``entailment_threshold``)
STAGE_ARGUMENTS: dict[tuple[str, str], str] = {
    **{(o.stage, o.argument): o.name for o in STAGE_OPTIONS.values()},
    **{(o.alternative, o.argument): o.name for o in STAGE_OPTIONS.values() if o.alternative},
}


def check_stage_argument(stage: str, argument: str, value: Any) -> Any:
    """``value`` for ``argument`` of ``stage`` (a constructor's option or a checkpoint's), checked by the rule of
    its call option when the name is also one (``box_threshold``: the same message as ``pipe(x,
    box_threshold=...)``); other arguments are the stage family's to check (its declared options)."""
    name = STAGE_ARGUMENTS.get((stage, argument))
    if name is None or name not in CALL_OPTIONS or value is None:
        return value
    return CALL_OPTIONS[name].check(value)
