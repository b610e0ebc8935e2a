"""One source of truth for the pipeline's options: who owns each, its default, and how it is validated.

* **Call options** (:data:`CALL_OPTIONS`) are given per call (``pipe(x, box_threshold=0.2)``), saved as a
  composite's defaults, and sent as an endpoint request's ``parameters``. :func:`validate_call_options` is the
  one validator the pipeline and the Inference Endpoints handler share.
* **Stage options** (:data:`STAGE_OPTIONS`) configure a stage when the pipeline is built
  (``RiVEGPipeline.from_components(..., mask_threshold=0.4)``); each names the stage that owns it and the
  stage's own argument. An option whose stage is absent is an error naming that stage, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CALL_OPTIONS",
    "ERROR_MODES",
    "MASK_FORMATS",
    "STAGE_OPTIONS",
    "VISIBILITY_MODES",
    "CallOption",
    "StageOption",
    "split_call_options",
    "validate_call_options",
]

MASK_FORMATS = ("rle", "array", "none")
ERROR_MODES = ("return", "raise")
#: Who decides "visible?": the entailment stage (RiVEG; the grounder then boxes what it passed), or the grounder
#: itself (a vision-language grounder's answer = visible or not; the end-to-end style, no entailment call).
VISIBILITY_MODES = ("entailment", "grounder")
#: Default cap on the entities one image is grounded for (entailment, grounder, segmenter); entities past it
#: are kept in the output with ``box=None`` and ``"grounding": "skipped: ..."``, never dropped.
DEFAULT_MAX_ENTITIES_PER_IMAGE = 100


@dataclass(frozen=True)
class CallOption:
    name: str
    hook: str  # "preprocess" | "forward" | "postprocess"
    kind: str  # "unit" (a number in [0, 1]) | "bool" | "positive-int" | "choice" | "int"
    choices: tuple[str, ...] = ()
    nullable: bool = True
    doc: str = ""

    def check(self, value: Any) -> Any:
        """``value`` if valid, else ValueError saying what was received and what is expected."""
        if value is None and self.nullable:
            return value
        if self.kind == "unit":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
            want = "a number in [0, 1] (not a boolean)"
        elif self.kind == "bool":
            ok, want = isinstance(value, bool), "True or False"
        elif self.kind == "positive-int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            want = "a positive integer" + (" or None" if self.nullable else "")
        elif self.kind == "int":
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif self.kind == "choice":
            ok, want = value in self.choices, f"one of {self.choices}"
        else:  # pragma: no cover
            raise AssertionError(self.kind)
        if not ok:
            raise ValueError(f"{self.name} must be {want}, got {value!r}")
        return value


CALL_OPTIONS: dict[str, CallOption] = {
    o.name: o
    for o in (
        CallOption("max_image_pixels", "preprocess", "positive-int", doc="largest accepted image (pixels)"),
        CallOption("allow_url_images", "preprocess", "bool", doc="fetch http(s) image URLs (off by default)"),
        CallOption("max_entities_per_image", "forward", "positive-int", doc="entities grounded per image"),
        CallOption("vision_batch_size", "forward", "positive-int", doc="images per vision forward"),
        CallOption(
            "visibility", "forward", "choice", VISIBILITY_MODES, nullable=False, doc="who decides visible"
        ),
        CallOption("box_threshold", "forward", "unit", doc="the locator's score for a box (no entailment)"),
        CallOption("entailment_threshold", "forward", "unit", doc="P(visible) for a box"),
        CallOption("use_descriptions", "forward", "bool", doc="ground the descriptions, not the names"),
        CallOption(
            "use_knowledge", "forward", "bool", doc="feed LLM knowledge to a recognizer trained with it"
        ),
        CallOption("return_masks", "forward", "bool", doc="masks (default: task segmented-mner)"),
        CallOption(
            "errors", "forward", "choice", ERROR_MODES, nullable=False, doc="an input's error: return/raise"
        ),
        CallOption(
            "mask_format", "postprocess", "choice", MASK_FORMATS, nullable=False, doc="rle | array | none"
        ),
    )
}


def validate_call_options(
    options: Mapping[str, Any],
    *,
    allowed: Iterable[str] | None = None,
    choices: Mapping[str, Iterable[str]] | None = None,
    where: str = "pipeline",
) -> dict[str, Any]:
    """Check every option (unknown names and values, with the valid choices in the message); returns a copy.

    ``allowed`` restricts the names (the endpoint handler's parameters), ``choices`` narrows a choice option
    (``{"mask_format": ("rle", "none")}``: JSON answers only).
    """
    names = list(allowed) if allowed is not None else list(CALL_OPTIONS)
    out = {}
    for key, value in options.items():
        if key not in names:
            raise TypeError(f"{where}: unknown option {key!r}; valid options: {sorted(names)}")
        opt = CALL_OPTIONS[key]
        if choices and key in choices:
            narrowed = tuple(choices[key])
            if value not in narrowed:
                raise ValueError(f"{key} must be one of {list(narrowed)} here, got {value!r}")
        out[key] = opt.check(value)
    return out


def split_call_options(options: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Validated call options -> (preprocess, forward, postprocess) keyword dicts (the pipeline's hooks)."""
    hooks: dict[str, dict[str, Any]] = {"preprocess": {}, "forward": {}, "postprocess": {}}
    for key, value in validate_call_options(options).items():
        hooks[CALL_OPTIONS[key].hook][key] = value
    return hooks["preprocess"], hooks["forward"], hooks["postprocess"]


@dataclass(frozen=True)
class StageOption:
    """A ``from_components`` option: the stage that owns it and the argument it sets there."""

    name: str
    stage: str
    argument: str
    #: a stage that may own it instead when the first is absent (``box_threshold``: a segmenter that locates)
    alternative: str | None = None


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
        StageOption("endpoint_model", "expander", "endpoint_model"),
        StageOption("hypothesis", "entailment", "hypothesis"),
        StageOption("logit_bias", "entailment", "logit_bias"),
        StageOption("entailment_threshold", "entailment", "threshold"),
        StageOption("box_threshold", "grounder", "box_threshold", alternative="segmenter"),
        StageOption("mask_threshold", "segmenter", "mask_threshold"),
    )
}
