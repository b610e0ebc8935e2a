"""The composite RiVEG checkpoint: one config that records each stage's class and location.

Like a diffusers pipeline, a saved RiVEG checkpoint is a folder::

    config.json            model_type "riveg": per component its class, location and options
    recognizer/            the token-classification model + tokenizer
    grounder/              the zero-shot detector + processor
    entailment/ expander/ captioner/ segmenter/   (when configured)

A component can also be recorded as a Hub reference pinned to a commit
(``{"repo_id": ..., "revision": <sha>}``) instead of a subfolder
(``save_pretrained(..., reference_hub_components=True)``), so a composite of public
checkpoints is a few kilobytes. ``RiVEGModel.from_pretrained`` (and therefore
``pipeline("grounded-mner", model=DIR)``) loads each component through transformers' classes
with safetensors, never with remote code. ``revision``, ``local_files_only``, ``token``,
``cache_dir``, ``force_download``, ``proxies``, ``subfolder`` and ``dtype`` reach every component.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils.hub import resolve_revision

from .options import CALL_OPTIONS, STAGE_OPTIONS, check_stage_argument, split_call_options
from .serving.client import checkpoint_endpoint_config
from .stages import STAGES, ComponentLoadError, Expander, Stage
from .stages.base import HUB_ARGUMENTS, quiet_progress

__all__ = ["ComponentSpec", "RiVEGConfig", "RiVEGModel", "build_model"]

TASKS = ("grounded-mner", "segmented-mner")
#: a composite needs one of these: the recognizer (RiVEG's cascade) or a joint reader
REQUIRED = ("recognizer", "reader")


class RiVEGConfig(PreTrainedConfig):
    """Config of a composite RiVEG checkpoint.

    Args:
        components: ``{name: {"model_class", "path" | ("repo_id", "revision"), "options"}}`` for
            ``recognizer``, ``grounder`` and the optional ``expander``, ``captioner``, ``entailment``,
            ``segmenter``. ``path`` is a subfolder of the checkpoint.
        task: ``"grounded-mner"`` or ``"segmented-mner"``.
        pipeline_options: defaults of the pipeline's call options (``mask_format``, ``use_descriptions`` ...).
    """

    model_type = "riveg"

    def __init__(
        self,
        components: dict | None = None,
        task: str = "grounded-mner",
        pipeline_options: dict | None = None,
        **kwargs,
    ):
        self.components = dict(components or {})
        self.task = task
        self.pipeline_options = dict(pipeline_options or {})
        super().__init__(**kwargs)


class RiVEGModel(PreTrainedModel):
    """Holds the stages; their models are sub-modules, so ``.to(device)`` moves all of them.

    Not meant to be called: run it through :class:`riveg_hf.RiVEGPipeline`.
    """

    config_class = RiVEGConfig
    base_model_prefix = "riveg"
    _no_split_modules: list[str] = []

    def __init__(self, config: RiVEGConfig, stages: dict[str, Stage] | None = None):
        super().__init__(config)
        self.stages: dict[str, Stage] = {k: v for k, v in (stages or {}).items() if v is not None}
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; valid: {list(STAGES)}")
        self.components = nn.ModuleDict(
            {name: st.model for name, st in self.stages.items() if st.model is not None}
        )

    def forward(self, *args, **kwargs):
        raise NotImplementedError("RiVEGModel is a container of stages; call it through RiVEGPipeline.")

    @property
    def device(self) -> torch.device:
        """Where the stages' models are; the CPU for a composite whose stages are all served (no weights here)."""
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def input_modalities(self) -> tuple[str, ...]:
        return ("text", "image")

    def stage(self, name: str) -> Stage | None:
        return self.stages.get(name)

    # ------------------------------------------------------------------ loading
    @classmethod
    @quiet_progress
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args: Any,
        config: RiVEGConfig | None = None,
        revision: str | None = None,
        subfolder: str = "",
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        proxies: dict[str, str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        dtype: Any = None,
        trust_endpoints: bool = False,
        stage_options: dict[str, dict[str, Any]] | None = None,
        skip: Sequence[str] = (),
        **kwargs: Any,
    ) -> RiVEGModel:
        """Load a composite checkpoint (local folder or Hub repo): every component, with the same options.

        transformers' Hub arguments (``revision``, ``subfolder``, ``cache_dir``, ``force_download``, ``proxies``,
        ``token``, ``local_files_only``) mean what they mean for any model and reach every component: a
        component saved in the composite is read from the same commit (``subfolder``: the composite lies in
        that folder of the repo or directory); a component recorded as another repo (``repo_id`` + pinned
        ``revision``) gets all of them but ``revision`` and ``subfolder``, which belong to the composite's repo.
        ``dtype`` (or ``torch_dtype``) applies to every model. See :func:`loading_arguments` for the arguments
        that are accepted with no effect or refused.

        A served stage (``endpoint`` in its options: an LLM / VLM server URL) is loaded *untrusted*: it sends
        nothing until the user opts in for this load with ``trust_endpoints=True`` or ``RIVEG_TRUST_ENDPOINTS``
        (see :mod:`riveg_hf.serving.client`); a token or cache path in the checkpoint is ignored.

        ``stage_options``: ``{component: {option: value}}`` the user sets for this load, over the checkpoint's
        (``{"reader": {"prompt_dir": DIR}}``); an ``"endpoint"`` there (the user's word: trusted) serves that
        component from that server instead of loading its weights (``endpoint_family`` from its model class).
        ``skip``: components not to load (``("segmenter",)`` when no mask is asked for).
        """
        if model_args:
            raise TypeError(
                f"RiVEGModel.from_pretrained takes no positional arguments after the location, got "
                f"{len(model_args)}; pass options by name (dtype=..., revision=...)"
            )
        root = str(pretrained_model_name_or_path)
        hub = {
            "cache_dir": str(cache_dir) if cache_dir is not None else None,
            "force_download": bool(force_download),
            "proxies": proxies,
            "token": token,
            "local_files_only": bool(local_files_only),
        }
        dtype = loading_arguments(kwargs, dtype=dtype, revision=revision, subfolder=subfolder, **hub)
        subfolder = _safe_subfolder(subfolder, root, nested=True) if subfolder else ""
        local = os.path.isdir(root)
        if not local:  # one commit for the config and every component saved in the composite
            revision = resolve_revision(
                root,
                revision,
                token=token,
                local_files_only=hub["local_files_only"],
                cache_dir=hub["cache_dir"],
            )
        if config is None:
            config = RiVEGConfig.from_pretrained(root, revision=revision, subfolder=subfolder, **hub)
        stage_options = dict(stage_options or {})
        unknown = sorted(set(stage_options) - set(config.components)) + sorted(
            set(skip) - set(config.components)
        )
        if unknown:
            raise ValueError(
                f"{root}: no component {unknown} in this composite; it has {sorted(config.components)}"
            )
        place = {"root": root, "subfolder": subfolder, "local": local, "revision": revision}
        components = {
            name: _checkpoint_component(name, spec, stage_options.get(name), place, trust_endpoints)
            for name, spec in config.components.items()
            if name not in skip or name not in STAGES
        }
        return build_model(components, config=config, hub={**hub, "dtype": dtype}, where=root, container=cls)

    # ------------------------------------------------------------------ saving
    @quiet_progress
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        reference_hub_components: bool = False,
        is_main_process: bool = True,
        **kwargs: Any,
    ) -> None:
        """Write ``config.json`` and one subfolder per component.

        With ``reference_hub_components=True``, a component that was loaded from the Hub is recorded
        as ``{"repo_id", "revision"}`` (pinned to the commit that was loaded) instead of being copied.
        """
        if not is_main_process:
            return
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        components: dict[str, dict[str, Any]] = {}
        for name, stage in self.stages.items():
            entry: dict[str, Any] = {
                "model_class": type(stage.model).__name__ if stage.model is not None else None,
                "options": _json_safe(stage.options()),
            }
            base_model = getattr(getattr(stage.model, "config", None), "riveg_base_model", None)
            if base_model:  # a fine-tuned component (LoRA merged or full): the checkpoint it started from
                entry["base_model"] = str(base_model)
            src = stage.source
            from_hub = src.get("location") and not os.path.isdir(src["location"]) and not src.get("subfolder")
            if stage.model is None:
                pass
            elif reference_hub_components and from_hub:
                entry["repo_id"] = src["location"]
                entry["revision"] = src.get("revision") or "main"
            else:
                stage.save_pretrained(out / name)
                entry["path"] = name
            components[name] = entry
        self.config.components = components
        self.config.architectures = [type(self).__name__]
        self.config.save_pretrained(out)


# ---------------------------------------------------------------------- the one construction path
#: the settings of a served stage's server, given once for every component served (``"endpoint:URL"``)
SERVED_OPTIONS = ("endpoint_model", "endpoint_family")


@dataclass
class ComponentSpec:
    """One component as :func:`build_model` reads it: where its weights are (``location``, a folder or a hub
    id, with ``load``: ``model_class`` / ``revision`` / ``subfolder`` of that component), or the server that runs
    it (``endpoint``: a URL or settings), and the stage's own arguments (``options``, the names of the stage's
    constructor: ``{"threshold": 0.5}`` for the entailment stage). Neither location nor endpoint: the template
    expander (descriptions without an LLM)."""

    location: str | os.PathLike | None = None
    load: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    endpoint: Any = None


def build_model(
    components: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    *,
    task: str | None = None,
    config: RiVEGConfig | None = None,
    hub: Mapping[str, Any] | None = None,
    where: str = "from_components",
    container: type[RiVEGModel] | None = None,
) -> RiVEGModel:
    """Build a composite from its components: the one path of ``RiVEGPipeline.from_components``,
    ``RiVEGModel.from_pretrained`` (presets, ``pipeline(task, model=DIR)``, the Inference Endpoints handler).

    ``components``: ``{role: spec}``, a spec being a hub id, a local folder, ``"endpoint:URL"`` (or
    ``{"endpoint": URL, "model": ..., "family": ..., **stage arguments}``), a loaded model, a ``(model,
    processor)`` pair, a ready :class:`~riveg_hf.stages.Stage` or a :class:`ComponentSpec`; None: absent.
    ``options``: by their public names (:data:`~riveg_hf.options.STAGE_OPTIONS`, each routed to the stage that
    owns it; :data:`~riveg_hf.options.CALL_OPTIONS`, saved as the pipeline's defaults; ``endpoint_model`` /
    ``endpoint_family``, for every served component). One rule for every option, wherever it comes from: an
    unknown name is a TypeError listing the valid ones; an option whose stage is absent is a ValueError naming
    that stage; a value is checked by its call option's check when the name is one (the message ``pipe(x,
    box_threshold=5.0)`` gives), else by the stage family (its declared options; a ready stage through
    ``Stage.configure``). ``hub``: Hub arguments and ``dtype`` for every component loaded here. ``config``: a
    checkpoint's (its ``pipeline_options`` checked like call options), else one is made for ``task``.
    """
    specs = {role: _as_spec(spec) for role, spec in components.items() if spec is not None}
    _check_roles(specs, where)
    args, located, calls = _route_options(dict(options or {}), specs, where)
    stages = {
        role: _make_stage(STAGES[role], spec, args[role], dict(hub or {}), where)
        for role, spec in specs.items()
    }
    if located:  # box_threshold without a grounder: the segmenter's, when it finds the boxes itself (SAM 3)
        segmenter = stages["segmenter"]
        if segmenter.locator() is None:
            raise ValueError(
                f"{where}: {', '.join(sorted(located))} is an option of the grounder (the stage that finds boxes), and this "
                f"pipeline has none: {type(segmenter.model).__name__} segments boxes it is given. Pass grounder=... "
                "(or a SAM 3 segmenter, which finds boxes itself), or leave out box_threshold."
            )
        segmenter.configure(**located)
    if config is None:
        config = RiVEGConfig(task=_task(task, stages, where), pipeline_options=calls)
    else:
        _checked(f"{where}: pipeline_options", split_call_options, config.pipeline_options)
    return (container or RiVEGModel)(config, stages)


def _as_spec(spec: Any) -> Any:
    """``"endpoint:URL"`` and ``{"endpoint": URL, ...}`` as a :class:`ComponentSpec`; any other spec as is."""
    if isinstance(spec, str) and spec.startswith("endpoint:"):  # a model on an OpenAI-compatible server
        return ComponentSpec(endpoint=spec[len("endpoint:") :])
    if isinstance(spec, Mapping) and "endpoint" in spec:  # {"endpoint": URL, "model": ..., "family": ...}
        rest = dict(spec)
        endpoint = {
            "url": rest.pop("endpoint"),
            **({"model": rest.pop("model")} if rest.get("model") else {}),
        }
        rest.pop("model", None)
        if rest.get("family"):
            rest["endpoint_family"] = rest.pop("family")
        return ComponentSpec(endpoint=endpoint, options=rest)
    return spec


def _check_roles(specs: Mapping[str, Any], where: str) -> None:
    """Known roles; a recognizer or a joint reader; nothing beside a joint reader that would never run."""
    unknown = sorted(set(specs) - set(STAGES))
    if unknown:
        raise ValueError(f"{where}: unknown component(s) {unknown}; valid: {list(STAGES)}")
    if not any(r in specs for r in REQUIRED):
        raise ValueError(
            f"{where}: a composite needs a recognizer (a token-classification checkpoint), or a joint reader "
            "(reader=...: a vision-language model that writes entities, types and boxes in one answer)."
        )
    replaced = ("recognizer", "expander", "captioner", "entailment", "grounder")
    clash = [r for r in replaced if r in specs and not (r == "expander" and _is_template(specs[r]))]
    if "reader" in specs and clash:
        raise ValueError(
            f"{where}: a joint reader finds the entities, their types, visibility and boxes itself; "
            f"{clash} would never run beside it. Pass reader=... with segmenter= only (masks of its boxes)."
        )


def _is_template(spec: Any) -> bool:
    return isinstance(spec, ComponentSpec) and spec.location is None and spec.endpoint is None


def _route_options(
    options: dict[str, Any], specs: Mapping[str, Any], where: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Options by public name -> (per present stage: its checked arguments; the arguments of a segmenter that
    locates, set once it is built; the checked call options)."""
    args = {
        role: dict(spec.options) if isinstance(spec, ComponentSpec) else {} for role, spec in specs.items()
    }
    served = [
        role for role, spec in specs.items() if isinstance(spec, ComponentSpec) and spec.endpoint is not None
    ]
    located: dict[str, Any] = {}
    calls: dict[str, Any] = {}
    for key, value in options.items():
        opt = STAGE_OPTIONS.get(key)
        if key in SERVED_OPTIONS:
            if value is not None and not served:
                raise ValueError(
                    f"{where}: {key} is an option of a served stage (a component given as 'endpoint:URL'), and "
                    f"this pipeline has none: give a component as 'endpoint:URL' or leave out {key}."
                )
            for role in served if value is not None else ():
                args[role][key] = value
        elif opt is None:
            if key in HUB_ARGUMENTS:  # the only Hub argument not taken by name: subfolder
                raise TypeError(
                    f"{where}: {key}={value!r} would apply to every component; give the component's own folder "
                    "(a local path, or load it with Stage.from_pretrained(..., subfolder=...) and pass the stage)"
                )
            if key not in CALL_OPTIONS:
                valid = sorted([*STAGE_OPTIONS, *CALL_OPTIONS, *SERVED_OPTIONS])
                raise TypeError(
                    f"{where}: unknown option {key!r}; valid options: {valid} (besides the Hub arguments and dtype)"
                )
            calls[key] = value
        elif opt.stage in specs:
            args[opt.stage][opt.argument] = value
        elif opt.alternative in specs:
            located[opt.argument] = _checked(where, check_stage_argument, "grounder", opt.argument, value)
        else:
            owner = opt.stage + (f" (or a {opt.alternative} that locates)" if opt.alternative else "")
            raise ValueError(
                f"{where}: {key} is an option of the {owner}, and this pipeline has no {opt.stage}: pass "
                f"{opt.stage}=... or leave out {key}."
            )
    for role, given in args.items():
        for name, value in given.items():
            given[name] = _checked(f"{where}: {role}", check_stage_argument, role, name, value)
    _checked(where, split_call_options, calls)
    return args, located, calls


def _checked(where: str, check, *args: Any) -> Any:
    """``check(*args)``, its ValueError said with where the value came from (the message core is the check's)."""
    try:
        return check(*args)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _make_stage(
    stage_cls: type[Stage], spec: Any, args: dict[str, Any], hub: dict[str, Any], where: str
) -> Stage:
    """A stage from its spec (see :func:`build_model`) and its checked arguments."""
    if isinstance(spec, ComponentSpec):
        if spec.endpoint is not None:
            try:
                return stage_cls.served(spec.endpoint, **args)
            except (TypeError, ValueError) as err:  # which component, then the stage's own words
                kind = TypeError if isinstance(err, TypeError) else ValueError
                raise kind(f"{where}: component {stage_cls.name!r}: {err}") from None
        if spec.location is None:
            if stage_cls is not Expander:
                raise ComponentLoadError(f"{where}: component {stage_cls.name!r} has no model_class")
            return Expander(None, None, **args)
        return stage_cls.from_pretrained(spec.location, **{**hub, **spec.load}, **args)
    if isinstance(spec, Stage):  # a ready stage: its options set through its family's checks
        return spec.configure(**args) if args else spec
    if isinstance(spec, (str, os.PathLike)):
        return stage_cls.from_pretrained(spec, **hub, **args)
    model, processor = spec if isinstance(spec, tuple) and len(spec) == 2 else (spec, None)
    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            f"{stage_cls.name}: expected a hub id, a local folder, a loaded model, a (model, processor) pair, "
            f"'endpoint:URL' or a Stage; got {type(spec).__name__}."
        )
    name = getattr(model, "name_or_path", "")
    if processor is None:
        from transformers import AutoProcessor, AutoTokenizer

        if not name:
            raise ComponentLoadError(
                f"{stage_cls.name}: pass (model, processor): the model has no name_or_path."
            )
        loader = AutoTokenizer if stage_cls.processor_kind == "tokenizer" else AutoProcessor
        processor = loader.from_pretrained(name, local_files_only=bool(hub.get("local_files_only")))
    stage = stage_cls(model, processor, **args)
    stage.source = {"location": name} if name else {}
    return stage


def _task(task: str | None, stages: Mapping[str, Stage], where: str) -> str:
    """The composite's task: given, else ``segmented-mner`` when it has a segmenter."""
    task = task or ("segmented-mner" if "segmenter" in stages else "grounded-mner")
    check_task(task)
    if task == "segmented-mner" and "segmenter" not in stages:
        raise ValueError(
            f"{where}: task 'segmented-mner' needs a segmenter (e.g. facebook/sam2.1-hiera-tiny)."
        )
    return task


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")


def _checkpoint_component(
    name: str, entry: Mapping[str, Any], mine: Mapping[str, Any] | None, place: dict[str, Any], trust: bool
) -> ComponentSpec:
    """One component of a composite's ``config.json`` (with the user's options for this load) as a spec."""
    root = place["root"]
    options = {**(entry.get("options") or {}), **(mine or {})}
    if (mine or {}).get("endpoint") is not None:  # the user serves this component: its weights are not loaded
        if entry.get("model_class") and "endpoint_family" not in options:
            options["endpoint_family"] = _architecture(entry["model_class"])
        return ComponentSpec(endpoint=options.pop("endpoint"), options=options)
    if options.get("endpoint") is not None:  # a served stage: settings only, trusted as the user says
        try:
            options["endpoint"] = checkpoint_endpoint_config(options["endpoint"], trusted=trust)
        except ValueError as err:
            raise ComponentLoadError(f"{root}: component {name!r}: {err}") from None
    if entry.get("model_class") is None:  # a served stage, or a template-only expander
        return ComponentSpec(endpoint=options.pop("endpoint", None), options=options)
    if "path" in entry:
        sub = _safe_subfolder(entry["path"], root)
        sub = f"{place['subfolder']}/{sub}" if place["subfolder"] else sub
        if place["local"]:
            location, load = os.path.join(root, sub), {"revision": None}
        else:  # a Hub repo: the component is a subfolder of the same commit
            location, load = root, {"subfolder": sub, "revision": place["revision"]}
    elif "repo_id" in entry:
        location, load = entry["repo_id"], {"revision": entry.get("revision")}
    else:
        raise ComponentLoadError(f"{root}: component {name!r} needs 'path' or 'repo_id' in config.json")
    return ComponentSpec(location, {"model_class": entry["model_class"], **load}, options)


#: arguments transformers' loaders pass (AutoModel, pipeline) or users know from other models that a composite
#: takes with no effect: {name: (value(s) accepted, why the others are refused)}
_NO_EFFECT: dict[str, tuple[tuple[Any, ...], str]] = {
    "trust_remote_code": (
        (None, False),
        "riveg-hf loads only classes that ship with transformers and never runs a checkpoint's code",
    ),
    "code_revision": ((None,), "code_revision selects remote code, which riveg-hf never runs"),
    "use_safetensors": (
        (None, True),
        "riveg-hf loads safetensors weights only; convert the checkpoint (model.save_pretrained(DIR) "
        "writes safetensors) and load that",
    ),
    "device_map": (
        (None, "cpu"),
        "place a composite with pipeline(..., device=...) or model.to(device); its stages are not sharded",
    ),
    # removed in transformers 5, which accepts and ignores it as well
    "low_cpu_mem_usage": ((None, True, False), ""),
}


def loading_arguments(kwargs: dict[str, Any], *, dtype: Any, **hub: Any) -> Any:
    """Check what ``RiVEGModel.from_pretrained`` received beyond its named arguments; return the ``dtype``.

    - ``torch_dtype`` is the old name of ``dtype``; ``"float16"`` and other names become ``torch`` dtypes.
    - ``adapter_kwargs`` (AutoModel passes the resolved ``revision`` and the ``token`` in it): accepted when it
      only repeats Hub arguments with the values the composite is loaded with -- a composite is not an adapter
      (a component folder holding a PEFT adapter is found and merged on its own).
    - ``trust_remote_code``, ``code_revision``, ``use_safetensors``, ``device_map``, ``low_cpu_mem_usage``:
      accepted where they change nothing (see ``_NO_EFFECT``), refused otherwise, with why.
    - names starting with ``_`` (``_from_auto``, ``_from_pipeline``, ``_commit_hash``) are transformers'
      bookkeeping.
    Anything else is a ``TypeError`` that lists what is accepted.
    """
    kwargs = dict(kwargs)
    torch_dtype = kwargs.pop("torch_dtype", None)
    if torch_dtype is not None:
        if dtype is not None and dtype != torch_dtype:
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass dtype only")
        dtype = torch_dtype
    adapter = kwargs.pop("adapter_kwargs", None) or {}
    if not isinstance(adapter, dict):
        raise TypeError(f"adapter_kwargs must be a dict, got {type(adapter).__name__}")
    for key, value in adapter.items():
        if key not in hub or (value != hub[key] and str(value) != str(hub[key])):
            raise ValueError(
                f"adapter_kwargs {{{key!r}: ...}} does not apply to a RiVEG composite: it is not a PEFT adapter "
                "(a component saved as an adapter is found in its own folder and merged). Pass Hub arguments "
                f"directly (from_pretrained(..., {key}=...)); accepted: {sorted(hub)}"
            )
    for name, (accepted, why) in _NO_EFFECT.items():
        if name in kwargs:
            value = kwargs.pop(name)
            if not any(value is a or (isinstance(a, str) and value == a) for a in accepted):
                raise ValueError(f"{name}={value!r} is refused: {why}")
    unknown = sorted(k for k in kwargs if not k.startswith("_"))
    if unknown:
        raise TypeError(
            f"unexpected arguments {unknown} for RiVEGModel.from_pretrained; it takes the Hub arguments "
            f"{sorted(hub)}, dtype, config, trust_endpoints, and accepts {sorted(_NO_EFFECT)} where they change "
            "nothing. Options of a stage go to RiVEGPipeline.from_components or the composite's config.json."
        )
    if isinstance(dtype, str) and dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(
                f"dtype {dtype!r} is not a torch dtype; use e.g. 'float32', 'bfloat16', 'float16', 'auto'"
            )
        dtype = resolved
    return dtype


def _architecture(model_class: str) -> str | None:
    """The served family of a transformers VLM class (``Qwen2_5_VLForConditionalGeneration`` -> ``qwen2_5_vl``)."""
    from .serving.images import infer_family

    return infer_family(model_class)


def _safe_subfolder(path: str, root: str, *, nested: bool = False) -> str:
    """``path`` as a folder inside the checkpoint: relative, no ``..``; one level unless ``nested``."""
    p = Path(str(path).replace("\\", "/"))
    if not str(path) or p.is_absolute() or ".." in p.parts or (not nested and len(p.parts) != 1):
        what = "subfolder" if nested else "component path"
        raise ComponentLoadError(
            f"{root}: {what} {path!r} must be a "
            + (
                "relative folder inside the checkpoint, without '..'"
                if nested
                else "plain subfolder name of the checkpoint"
            )
        )
    return p.as_posix()


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
