"""The protocol every stage follows: one transformers model (and its processor) behind a small interface.

A stage is built from a hub id, a local folder, or an already-loaded model:

>>> from riveg_hf.stages import Recognizer
>>> rec = Recognizer.from_pretrained("dslim/bert-base-NER")  # doctest: +SKIP
>>> rec = Recognizer(model, tokenizer, label_map={"MISC": "OTHER"})  # doctest: +SKIP

``from_pretrained`` loads through transformers' Auto classes (any checkpoint of the stage's
kind), with safetensors only and never with remote code. ``save_pretrained`` writes the model
and its processor into a folder that ``from_pretrained`` reads back; ``options()`` gives the
stage's settings (thresholds, prompts...) as JSON-safe data for the composite config.
"""

from __future__ import annotations

import functools
import numbers
import os
from typing import Any, ClassVar

import torch
import transformers
from transformers import AutoConfig, AutoProcessor, AutoTokenizer, PreTrainedModel
from transformers.utils.hub import resolve_revision

from .registry import Option, check_options, resolve_path

__all__ = [
    "HUB_ARGUMENTS",
    "ComponentLoadError",
    "Option",
    "Stage",
    "quiet_progress",
    "resolve_model_class",
    "token_limit",
]

#: transformers' Hub arguments of ``from_pretrained``: every loader of riveg-hf honours all of them and passes
#: them on to each file it fetches (model, processor, adapter, the composite's config)
HUB_ARGUMENTS = (
    "revision",
    "subfolder",
    "cache_dir",
    "force_download",
    "proxies",
    "token",
    "local_files_only",
)

#: position embeddings these families reserve before the first token (padding_idx + 1)
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "bart": 2, "mbart": 2}


def token_limit(
    config: Any, tokenizer: Any = None, *, default: int = 512, text_config: str | None = None
) -> int:
    """The longest token sequence that both the model and its tokenizer accept.

    The model's own limit (its text model's ``max_position_embeddings``, less the positions RoBERTa-like
    models reserve) wins over the tokenizer's ``model_max_length``, which community checkpoints often leave
    unset (then a huge sentinel) or set above what the model reads (the tiny BLIP ITM: tokenizer 128, text
    model 64). ``text_config``: the attribute holding the text model's config (``"text_config"``).

    >>> from transformers import BertConfig
    >>> token_limit(BertConfig(max_position_embeddings=64), None)
    64
    """
    cfg = getattr(config, text_config, None) if text_config else None
    cfg = cfg or getattr(config, "text_config", None) or config
    positions = getattr(cfg, "max_position_embeddings", None) or getattr(
        config, "max_position_embeddings", None
    )
    limit = None
    if isinstance(positions, int) and positions > 0:
        limit = positions - _POSITION_OFFSET.get(getattr(cfg, "model_type", ""), 0)
    tok = getattr(tokenizer, "tokenizer", tokenizer)  # a processor's tokenizer
    tok_max = getattr(tok, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limit = min(limit, tok_max) if limit else tok_max
    return int(limit or default)


def quiet_progress(fn):
    """Hide transformers' per-component "Loading weights" / "Writing model shards" bars while ``fn`` runs
    (restored afterwards); ``RIVEG_VERBOSE=1`` (CLI: ``--verbose``) shows them. Long work (datasets, predict,
    train) keeps its own single progress bar."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        from transformers.utils import logging as hf_logging

        if os.environ.get("RIVEG_VERBOSE") == "1" or not hf_logging.is_progress_bar_enabled():
            return fn(*args, **kwargs)
        hf_logging.disable_progress_bar()
        try:
            return fn(*args, **kwargs)
        finally:
            hf_logging.enable_progress_bar()

    return wrapper


class ComponentLoadError(OSError):
    """A component that cannot be loaded; the message says which and how to point at local folders."""


def _pinned(revision: Any) -> str | None:
    """The commit a (resolved) revision points to, or the revision as given."""
    resolved = getattr(revision, "resolved", None)
    return str(resolved) if resolved else (str(revision) if revision is not None else None)


def resolve_model_class(name: str, auto_classes: tuple[type, ...]) -> type:
    """A model class by name, from transformers -- never remote code."""
    cls = getattr(transformers, name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, PreTrainedModel)):
        valid = ", ".join(a.__name__ for a in auto_classes)
        raise ComponentLoadError(
            f"unknown model class {name!r}: riveg-hf loads classes that ship with transformers (through {valid}); "
            "it never executes code from a checkpoint (no trust_remote_code). Upgrade transformers if the class "
            "is newer than your version."
        )
    return cls


def _adapter_config(location: str, hub: dict[str, Any]) -> dict[str, Any] | None:
    """``adapter_config.json`` of a PEFT adapter checkpoint (local folder or hub id), else None."""
    import json

    from transformers.utils import find_adapter_config_file

    try:
        path = find_adapter_config_file(
            location,
            **{k: v for k, v in hub.items() if k in HUB_ARGUMENTS},
        )
    except (OSError, ValueError):
        return None
    if not path:
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


class Stage:
    """Base class of the five stages (and the captioner)."""

    #: the component's name in a composite checkpoint (``recognizer``, ``grounder`` ...)
    name: ClassVar[str] = ""
    #: Auto classes tried in order to load a checkpoint of this kind
    auto_classes: ClassVar[tuple[type, ...]] = ()
    #: ``"tokenizer"`` or ``"processor"``: what goes with the model
    processor_kind: ClassVar[str] = "processor"
    #: whether batching images pays on CPU too: True for a stage that generates (its decoding reads every weight
    #: once per token, whatever the batch); encoders already keep the cores busy with one image
    batches_on_cpu: bool = False
    #: the options every family of the role takes (:class:`~riveg_hf.stages.registry.Option`)
    role_options: ClassVar[tuple[Option, ...]] = ()
    #: the options this family adds (or re-declares with its own default)
    family_options: ClassVar[tuple[Option, ...]] = ()
    #: modules worth ``torch.compile`` on a GPU (attribute paths from the stage; each must name a module)
    compile_modules: ClassVar[tuple[str, ...]] = ()
    #: model type -> builder ``(seed=0) -> (model, processor)`` of a tiny random model of it, built offline: what
    #: the generated conformance tests run (``tests/test_families.py``); a family declares one per model type
    tiny_builders: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: PreTrainedModel, processor: Any, **options: Any):
        if model is not None and not isinstance(model, PreTrainedModel):
            raise TypeError(
                f"{self.name}: expected a transformers PreTrainedModel, got {type(model).__name__}. "
                f"Load one with {self.auto_classes[0].__name__ if self.auto_classes else 'from_pretrained'}."
            )
        self.model = model.eval() if model is not None else None
        self.processor = processor
        #: where the component came from: {"repo_id"/"path", "revision"}, recorded by save_pretrained
        self.source: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    @quiet_progress
    def load_model_and_processor(
        cls,
        location: str | os.PathLike,
        *,
        subfolder: str = "",
        model_class: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        cache_dir: str | None = None,
        force_download: bool = False,
        proxies: dict[str, str] | None = None,
        dtype: Any = None,
    ) -> tuple[PreTrainedModel, Any]:
        location = str(location)
        hub = {
            "revision": revision,
            "local_files_only": local_files_only,
            "token": token,
            "cache_dir": cache_dir,
            "force_download": force_download,
            "proxies": proxies,
            "trust_remote_code": False,
        }
        if subfolder:
            hub["subfolder"] = subfolder
        model_kwargs = {**hub, "use_safetensors": True}
        if dtype is not None:
            model_kwargs["dtype"] = dtype
        adapter = _adapter_config(location, hub)
        if adapter is not None:
            return cls._load_adapter(location, adapter, hub, model_class=model_class, dtype=dtype)
        errors = []
        try:
            if model_class is None:
                # Prefer the checkpoint's own architecture (a BLIP ITM checkpoint must not load as BlipModel).
                config = AutoConfig.from_pretrained(location, **hub)
                for arch in getattr(config, "architectures", None) or []:
                    if isinstance(getattr(transformers, arch, None), type):
                        model_class = arch
                        break
            if model_class is not None:
                model = resolve_model_class(model_class, cls.auto_classes).from_pretrained(
                    location, **model_kwargs
                )
            else:
                model = None
                for auto in cls.auto_classes:
                    try:
                        model = auto.from_pretrained(location, **model_kwargs)
                        break
                    except (
                        ValueError
                    ) as err:  # "Unrecognized configuration class ... for this kind of AutoModel"
                        errors.append(f"{auto.__name__}: {err}")
                if model is None:
                    raise ComponentLoadError(
                        f"{cls.name}: {location} is not a checkpoint of a supported kind. Tried "
                        + "; ".join(errors)
                    )
            loader = AutoTokenizer if cls.processor_kind == "tokenizer" else AutoProcessor
            processor = loader.from_pretrained(
                location, **{k: v for k, v in hub.items() if k != "trust_remote_code"}
            )
        except OSError as err:
            if isinstance(err, ComponentLoadError):
                raise
            where = f"{location}/{subfolder}" if subfolder else location
            raise ComponentLoadError(
                f"{cls.name}: could not load {where!r} ({err}). If the Hugging Face Hub is unreachable, download "
                "the checkpoint elsewhere (e.g. `hf download ID --local-dir DIR`) and pass the local folder instead "
                "of the hub id, or set HF_HUB_OFFLINE=1 to use what is already in the cache."
            ) from err
        return model, processor

    @classmethod
    def _load_adapter(cls, location: str, adapter: dict[str, Any], hub: dict[str, Any], **load: Any):
        """A PEFT adapter folder (``adapter_config.json``, as ``riveg train grounder --save adapter`` writes):
        load its base model, apply the adapter and merge it (exact for LoRA), so the stage holds a plain
        transformers model; the base is recorded in ``config.riveg_base_model``."""
        base = adapter.get("base_model_name_or_path")
        if not base:
            raise ComponentLoadError(
                f"{cls.name}: {location} is a PEFT adapter without base_model_name_or_path in adapter_config.json; "
                "set it to the base model's hub id or folder."
            )
        try:
            from peft import PeftModel
        except ImportError:
            raise ComponentLoadError(
                f"{cls.name}: {location} is a PEFT adapter (of {base}); loading it needs peft: "
                "pip install 'riveg-hf[train]' (or pip install peft), or save a merged checkpoint instead "
                "(riveg train grounder --save merged)."
            ) from None
        # the base is another repository: the adapter's revision and subfolder do not apply to it
        base_hub = {k: v for k, v in hub.items() if k in HUB_ARGUMENTS and k not in ("revision", "subfolder")}
        model, processor = cls.load_model_and_processor(base, **base_hub, **load)
        adapter_hub = {k: v for k, v in hub.items() if k in HUB_ARGUMENTS and v is not None}
        model = PeftModel.from_pretrained(model, location, **adapter_hub).merge_and_unload()
        model.config.riveg_base_model = str(base)
        try:
            loader = AutoTokenizer if cls.processor_kind == "tokenizer" else AutoProcessor
            processor = loader.from_pretrained(
                location, **{k: v for k, v in hub.items() if k != "trust_remote_code"}
            )
        except (OSError, ValueError):
            pass  # the adapter folder has no processor files: the base's
        return model, processor

    @classmethod
    def from_pretrained(cls, location: str | os.PathLike, **kwargs: Any) -> Stage:
        """Load the stage from a hub id or a local folder (see :meth:`load_model_and_processor`)."""
        load = {k: kwargs.pop(k) for k in (*HUB_ARGUMENTS, "model_class", "dtype") if k in kwargs}
        if not os.path.isdir(str(location)):
            # Resolve a hub revision once, so the model and processor come from one commit, which is recorded.
            load["revision"] = resolve_revision(
                str(location),
                load.get("revision"),
                token=load.get("token"),
                local_files_only=load.get("local_files_only", False),
                cache_dir=load.get("cache_dir"),
            )
        model, processor = cls.load_model_and_processor(location, **load)
        stage = cls(model, processor, **kwargs)
        stage.source = {"location": str(location), "revision": _pinned(load.get("revision"))}
        if load.get("subfolder"):
            stage.source["subfolder"] = load["subfolder"]
        return stage

    @quiet_progress
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the model (safetensors) and its processor into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        if self.processor is not None:
            self.processor.save_pretrained(directory)

    @classmethod
    def served(cls, endpoint: str | dict, **options: Any) -> Stage:
        """This stage on an OpenAI-compatible server (``"endpoint:URL"``); only the LLM / VLM roles have one."""
        raise ValueError(
            f"{cls.name}: 'endpoint:URL' (a model on a server) is for the expander, the grounder and the "
            f"entailment stage (a vision-language model); give the {cls.name} a hub id or a local folder."
        )

    # ------------------------------------------------------------------ runtime
    def clients(self) -> list[Any]:
        """The server clients this stage talks to (:class:`riveg_hf.serving.ChatClient`); none for a local model."""
        return []

    @classmethod
    def tiny(cls, model_type: str | None = None, *, seed: int = 0) -> tuple[Any, Any]:
        """A tiny random ``(model, processor)`` of ``model_type`` (default: the family's first), built offline
        (no download) for tests: see :attr:`tiny_builders`."""
        builders = cls.tiny_builders
        if not builders:
            raise NotImplementedError(f"{cls.__name__} declares no tiny model (tiny_builders)")
        model_type = next(iter(builders)) if model_type is None else model_type
        if model_type not in builders:
            raise ValueError(
                f"{cls.__name__}: no tiny model of type {model_type!r}; it has {sorted(builders)}"
            )
        return builders[model_type](seed=seed)

    # ------------------------------------------------------------------ options
    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        """name -> :class:`~riveg_hf.stages.registry.Option`: the role's options, then the family's (a family may
        re-declare one with its own default)."""
        out: dict[str, Option] = {}
        for klass in reversed(cls.__mro__):
            for attr in ("role_options", "family_options"):
                for opt in vars(klass).get(attr, ()):
                    out[opt.name] = opt
        return out

    @property
    def _where(self) -> str:
        family = getattr(self, "family", "")
        return f"{self.name} ({family})" if family else (self.name or type(self).__name__)

    def _init_options(self, given: dict[str, Any], *, extra: tuple[str, ...] = ()) -> None:
        """Validate and set every declared option from a constructor's ``given`` (None or absent: the
        default), then derive what depends on them (:meth:`_options_changed`). The one rule of
        :meth:`configure`, for the constructor."""
        declared = self.declared_options()
        checked = check_options(declared, given, self._where, extra)
        for name, opt in declared.items():
            value = checked.get(name)
            setattr(self, name, opt.default if value is None and not opt.nullable else value)
        self._options_changed(set(declared))

    def _options_changed(self, names: set[str]) -> None:
        """Hook: derive what depends on the options ``names`` just set (a None read from the model's config,
        a check between two options); raise ValueError to refuse the combination."""

    def configure(self, **options: Any) -> Stage:
        """Set options on a ready stage with the constructor's validation, and return the stage.

        Unknown name: TypeError listing the valid ones; a bad value: ValueError saying what was received, what
        is expected and how to fix it (the same rule whether an option comes from a constructor, a saved
        checkpoint or here). None resets an option to its default. A refused value leaves the stage unchanged.

        >>> grounder.configure(box_threshold=0.25)  # doctest: +SKIP
        """
        declared = self.declared_options()
        if not declared:
            return self._configure_undeclared(options)
        checked = check_options(declared, options, self._where)
        before = {k: getattr(self, k, None) for k in checked}
        for name, value in checked.items():
            opt = declared[name]
            setattr(self, name, opt.default if value is None and not opt.nullable else value)
        try:
            self._options_changed(set(checked))
        except Exception:
            for name, value in before.items():
                setattr(self, name, value)
            raise
        return self

    def _configure_undeclared(self, options: dict[str, Any]) -> Stage:
        """A stage without declarations (the expander, the captioner): its :meth:`options` are the valid names,
        and a value must have the type of the current one."""
        current = self.options()
        unknown = sorted(k for k in options if k not in current)
        if unknown:
            raise TypeError(f"{self._where}: unknown option(s) {unknown}; valid: {sorted(current)}")
        for name, value in options.items():
            now = current[name]
            if now is not None and value is not None:
                if isinstance(now, bool):
                    kinds: tuple[type, ...] = (bool,)
                elif isinstance(now, numbers.Integral):
                    kinds = (numbers.Integral,)
                elif isinstance(now, numbers.Real):
                    kinds = (numbers.Real,)
                elif isinstance(now, (list, tuple)):
                    kinds = (list, tuple)
                else:
                    kinds = (type(now),)
                if isinstance(now, bool) != isinstance(value, bool) or not isinstance(value, kinds):
                    raise ValueError(
                        f"{self._where}: {name} must be of type {type(now).__name__} like its current value {now!r}, "
                        f"got {value!r}; pass a value of type {type(now).__name__}"
                    )
            setattr(self, name, value)
        return self

    def options(self) -> dict[str, Any]:
        """JSON-safe settings recorded in the composite config (thresholds, prompts ...): the current value of
        each declared option."""
        return {
            name: opt.json_value(getattr(self, name, opt.default))
            for name, opt in self.declared_options().items()
            if opt.saved
        }

    def compiled_modules(self) -> dict[str, torch.nn.Module]:
        """path -> module for each of :attr:`compile_modules`; a path that names nothing is an error."""
        out = {}
        for path in self.compile_modules:
            module = resolve_path(self, path)
            if not isinstance(module, torch.nn.Module):
                raise TypeError(
                    f"{self._where}: compile_modules path {path!r} is a {type(module).__name__}, not a module"
                )
            out[path] = module
        return out

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def to(self, device: Any) -> Stage:
        self.model.to(device)
        return self

    def _floating(self, tensor: torch.Tensor) -> torch.Tensor:
        """Move a float input (pixel values) to the model's device and dtype; ints only to the device."""
        if tensor.is_floating_point():
            return tensor.to(self.device, self.dtype)
        return tensor.to(self.device)

    def _inputs(self, batch: Any) -> dict[str, Any]:
        return {k: self._floating(v) if isinstance(v, torch.Tensor) else v for k, v in dict(batch).items()}

    def __repr__(self) -> str:
        model = type(self.model).__name__ if self.model is not None else None
        return f"{type(self).__name__}(model={model}, options={self.options()})"
