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
``cache_dir`` and ``dtype`` reach every component.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from .serving.client import checkpoint_endpoint_config
from .stages import STAGES, ComponentLoadError, Expander, Stage
from .stages.base import quiet_progress

__all__ = ["RiVEGConfig", "RiVEGModel"]

TASKS = ("grounded-mner", "segmented-mner")
REQUIRED = ("recognizer",)


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
        local_files_only: bool = False,
        token: str | bool | None = None,
        cache_dir: str | None = None,
        dtype: Any = None,
        trust_endpoints: bool = False,
        **kwargs: Any,
    ) -> RiVEGModel:
        """Load a composite checkpoint (local folder or Hub repo): every component, with the same options.

        A served stage (``endpoint`` in its options: an LLM / VLM server URL) is loaded *untrusted*: it sends
        nothing until the user opts in for this load with ``trust_endpoints=True`` or ``RIVEG_TRUST_ENDPOINTS``
        (see :mod:`riveg_hf.serving.client`); a token or cache path in the checkpoint is ignored.
        """
        for ignored in (
            "trust_remote_code",
            "code_revision",
            "torch_dtype",
            "use_safetensors",
            "device_map",
            "adapter_kwargs",
            "low_cpu_mem_usage",
            "force_download",
            "proxies",
            *[k for k in kwargs if k.startswith("_")],
        ):
            value = kwargs.pop(ignored, None)
            if ignored == "torch_dtype" and value is not None and dtype is None:
                dtype = value
            if ignored == "device_map" and value not in (None, "cpu"):
                raise ValueError("RiVEG components are placed with device=..., not device_map.")
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)} for RiVEGModel.from_pretrained")
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        root = str(pretrained_model_name_or_path)
        if config is None:
            config = RiVEGConfig.from_pretrained(
                root, revision=revision, local_files_only=local_files_only, token=token, cache_dir=cache_dir
            )
        common = {
            "local_files_only": local_files_only,
            "token": token,
            "cache_dir": cache_dir,
            "dtype": dtype,
        }
        stages: dict[str, Stage] = {}
        for name, spec in config.components.items():
            stage_cls = STAGES.get(name)
            if stage_cls is None:
                raise ComponentLoadError(
                    f"{root}: unknown component {name!r} in config.json; valid: {list(STAGES)}"
                )
            options = dict(spec.get("options") or {})
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
                if os.path.isdir(root):
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
        missing = [r for r in REQUIRED if r not in stages]
        if missing:
            raise ComponentLoadError(f"{root}: config.json lacks the required component(s) {missing}")
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


def _safe_subfolder(path: str, root: str) -> str:
    p = Path(path)
    if p.is_absolute() or ".." in p.parts or len(p.parts) != 1:
        raise ComponentLoadError(
            f"{root}: component path {path!r} must be a plain subfolder name of the checkpoint"
        )
    return path


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
