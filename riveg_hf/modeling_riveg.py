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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils.hub import resolve_revision

from .serving.client import checkpoint_endpoint_config
from .stages import STAGES, ComponentLoadError, Expander, Stage
from .stages.base import quiet_progress

__all__ = ["RiVEGConfig", "RiVEGModel"]

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
        common = {**hub, "dtype": dtype}
        stage_options = dict(stage_options or {})
        unknown = sorted(set(stage_options) - set(config.components)) + sorted(
            set(skip) - set(config.components)
        )
        if unknown:
            raise ValueError(
                f"{root}: no component {unknown} in this composite; it has {sorted(config.components)}"
            )
        stages: dict[str, Stage] = {}
        for name, spec in config.components.items():
            stage_cls = STAGES.get(name)
            if stage_cls is None:
                raise ComponentLoadError(
                    f"{root}: unknown component {name!r} in config.json; valid: {list(STAGES)}"
                )
            if name in skip:
                continue
            options = dict(spec.get("options") or {})
            mine = dict(stage_options.get(name) or {})
            if mine.get("endpoint") is not None:  # the user serves this component: its weights are not loaded
                options.update(mine)
                if spec.get("model_class") and "endpoint_family" not in options:
                    options["endpoint_family"] = _architecture(spec["model_class"])
                try:
                    stages[name] = stage_cls.served(options.pop("endpoint"), **options)
                except (TypeError, ValueError) as err:
                    raise ComponentLoadError(f"{root}: component {name!r}: {err}") from None
                continue
            options.update(mine)
            if options.get("endpoint") is not None:  # a served stage: settings only, trusted as the user says
                try:
                    options["endpoint"] = checkpoint_endpoint_config(
                        options["endpoint"], trusted=trust_endpoints
                    )
                except ValueError as err:
                    raise ComponentLoadError(f"{root}: component {name!r}: {err}") from None
            if spec.get("model_class") is None:  # a served stage, or a template-only expander
                if options.get("endpoint") is not None:
                    try:
                        stages[name] = stage_cls.served(options.pop("endpoint"), **options)
                    except (TypeError, ValueError) as err:
                        raise ComponentLoadError(f"{root}: component {name!r}: {err}") from None
                elif stage_cls is Expander:
                    stages[name] = Expander(None, None, **options)
                else:
                    raise ComponentLoadError(f"{root}: component {name!r} has no model_class")
                continue
            if "path" in spec:
                sub = _safe_subfolder(spec["path"], root)
                sub = f"{subfolder}/{sub}" if subfolder else sub
                if local:
                    location, load = os.path.join(root, sub), {"revision": None}
                else:  # a Hub repo: the component is a subfolder of the same commit
                    location, load = root, {"subfolder": sub, "revision": revision}
            elif "repo_id" in spec:
                location, load = spec["repo_id"], {"revision": spec.get("revision")}
            else:
                raise ComponentLoadError(
                    f"{root}: component {name!r} needs 'path' or 'repo_id' in config.json"
                )
            stages[name] = stage_cls.from_pretrained(
                location, model_class=spec["model_class"], **load, **common, **options
            )
        if not any(r in stages for r in REQUIRED):
            raise ComponentLoadError(f"{root}: config.json has none of the components {list(REQUIRED)}")
        return cls(config, stages)

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
