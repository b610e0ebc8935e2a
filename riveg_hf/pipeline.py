"""The ``grounded-mner`` / ``segmented-mner`` pipeline: RiVEG's five stages over swappable checkpoints.

>>> import riveg_hf  # registers the tasks; no trust_remote_code needed
>>> from transformers import pipeline
>>> pipe = pipeline("grounded-mner", model="path/to/riveg-checkpoint")  # doctest: +SKIP
>>> pipe({"text": "Sunset over the Golden Gate Bridge tonight", "image": "bridge.jpg"})  # doctest: +SKIP
[{'entity': 'Golden Gate Bridge', 'type': 'LOC', 'start': 16, 'end': 34, 'score': 0.99,
  'description': 'an iconic red suspension bridge in San Francisco', 'groundable': True,
  'groundable_score': 0.93, 'box': {'xmin': 12.0, 'ymin': 40.5, 'xmax': 610.2, 'ymax': 388.0},
  'box_score': 0.61, 'mask': None}]

Data flow, with no back-and-forth: text + image -> recognizer (entities) -> expander
(descriptions) -> entailment (visible?) -> grounder (box) -> segmenter (mask). Per batch:
the recognizer runs once over all tweets, the expander once over all entities (cached), and
each vision model encodes each image once, however many entities the tweet has.

Inputs: ``{"text": str, "image": ...}``, ``{"tokens": [...], "image": ...}``, a plain string,
or keyword arguments ``pipe(text=..., image=...)``; lists, generators and ``datasets.Dataset``
rows (``batch_size=``). ``image`` is a PIL image, a local path, or None (then every entity
is "not visible"; said once in a warning); an http(s) URL only with ``allow_url_images=True``.
Pixel coordinates are those of the image as displayed (EXIF orientation applied).
At most ``max_entities_per_image`` (default 100) entities of one image are grounded; the others
stay in the output with ``box=None`` and a ``"grounding"`` note, so the cost of one input stays
linear and bounded.

Output per input: a list of entity dicts ``{"entity", "type", "start", "end", "score",
"description", "description_source", "groundable", "groundable_score", "box", "box_score", "mask"}`` (JSON-safe),
with character offsets ``start``/``end`` (plus ``token_start``/``token_end`` for ``tokens``
input), ``box`` as ``{"xmin","ymin","xmax","ymax"}`` pixels of the original image or None,
``mask`` a COCO RLE (``mask_format="rle"``), a boolean array (``"array"``) or None.
In a batch, an input that cannot be processed gives ``{"error": message, "index": i}`` in its
place (``errors="return"``, the default) or raises naming its index (``errors="raise"``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Pipeline
from transformers.utils import logging

from .images import ImageLoadError, load_image
from .masks import encode_rle
from .modeling_riveg import TASKS, ComponentSpec, RiVEGConfig, RiVEGModel, build_model, check_task
from .net import URLFetchError
from .options import (
    ERROR_MODES,  # noqa: F401  (re-exported: riveg_hf.pipeline.ERROR_MODES)
    MASK_FORMATS,  # noqa: F401
    VISIBILITY_MODES,  # noqa: F401
    call_defaults,
    split_call_options,
)
from .stages import Expander, ExpansionRequest, ReadRequest, Stage
from .stages.grounder import LocateRequest
from .stages.registry import resolve_path
from .text import join_words, split_words
from .types import GroundedEntity

logger = logging.get_logger(__name__)

__all__ = ["RiVEGInputError", "RiVEGPipeline"]

#: Default number of images per vision-model forward (entailment, grounder, segmenter) on an accelerator; bounds
#: memory. On CPU the default is 1 (``CPU_VISION_BATCH_SIZE``): one image already keeps the cores busy, and larger
#: vision batches measured slower there (benchmarks/pipeline.py), while the text stages (recognizer, expander LLM)
#: still batch over the whole pipeline batch. A stage that generates (a VLM grounder: ``Stage.batches_on_cpu``)
#: keeps the accelerator default on CPU too: decoding reads all the weights once per token whatever the batch,
#: so images decoded together cost little more than one (vlm preset on 2 CPU cores, batch 4: 4 images per
#: generation gave 1.56x the tweets/s of one image per generation, same run).
DEFAULT_VISION_BATCH_SIZE = 8
CPU_VISION_BATCH_SIZE = 1


@dataclass
class _Run:
    """The stages and options of one forward pass."""

    recognizer: Any
    expander: Expander
    captioner: Any
    entailment: Any  # None: the locator's answer decides visibility
    locator: Any  # the grounder, or a segmenter's locator (SAM 3), or None
    segmenter: Any  # None when no mask is asked for
    box_threshold: float | None
    entailment_threshold: float | None
    use_descriptions: bool
    use_knowledge: bool | None
    vision_batch_size: int | None
    reader: Any = None  # a joint reader: entities, types and boxes in one answer (replaces 2-6)


@dataclass
class _Input:
    """One input as ``preprocess`` read it: the text, its words with their character offsets, the image (loaded),
    the PGIM knowledge and the caption (both filled in by the forward pass when an LLM writes them)."""

    index: int
    id: Any
    text: str
    words: list[str]
    offsets: list[tuple[int, int]]
    from_tokens: bool
    image: Any
    knowledge: list[str] | None
    caption: str | None
    #: what a joint reader's answer gave that is not kept (logged once the input is answered)
    reader_notes: list[str] = field(default_factory=list)


@dataclass
class _Entity:
    """One entity, from recognition (or the joint reader) to the output. Each step fills its own fields: describe
    (``description``), decide visibility (``groundable_score``, ``visible``), locate (``box``, ``box_score``,
    ``note``; the locator's own ``mask``), keep (``groundable``), segment (``mask``). :meth:`output` is the
    validated :class:`~riveg_hf.types.GroundedEntity`."""

    entity: str
    type: str
    start: int
    end: int
    score: float | None
    #: word offsets, kept for an input given as ``tokens`` only (the output has them then)
    token_start: int | None = None
    token_end: int | None = None
    description: str | None = None
    description_source: str | None = None
    #: the entailment stage's decision: the locator is asked for the visible entities only
    visible: bool = True
    groundable: bool = False
    groundable_score: float | None = None
    box: list[float] | None = None
    box_score: float | None = None
    mask: Any = None
    #: why the entity has no box, when that is worth saying (``"grounding"`` in the output)
    note: str | None = None

    def clear_grounding(self) -> None:
        """Back to "not grounded yet" (an image retried alone starts again from here)."""
        self.visible, self.groundable, self.note = True, False, None
        self.groundable_score = self.box = self.box_score = self.mask = None

    def output(self, mask_format: str) -> GroundedEntity:
        """The validated result, its mask written as ``mask_format`` asks (COCO RLE, the array, or none)."""
        mask = self.mask
        if mask is not None and mask_format != "array":
            mask = None if mask_format == "none" else encode_rle(mask)
        return GroundedEntity(
            entity=self.entity,
            type=self.type,
            start=self.start,
            end=self.end,
            score=self.score,
            description=self.description,
            description_source=self.description_source,
            groundable=self.groundable,
            groundable_score=self.groundable_score,
            box=self.box,
            box_score=self.box_score,
            mask=mask,
            token_start=self.token_start,
            token_end=self.token_end,
            extra={"grounding": self.note} if self.note else {},
        )


@dataclass
class _Job:
    """One image to ground: its position in the batch, the image, its (capped) entities, the tweet."""

    item: int
    image: Any
    entities: list[_Entity]
    text: str


@dataclass
class _Result:
    """One input's answer from the forward pass: its entities, or the error that lost it."""

    index: int
    entities: list[_Entity]
    error: BaseException | None = None


class RiVEGInputError(ValueError):
    """An input the pipeline cannot read; in a batch the message starts with the input's index."""


class RiVEGPipeline(Pipeline):
    """Grounded (and segmented) multimodal NER, RiVEG style. See the module documentation."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_video_processor = False

    def __init__(self, model: RiVEGModel, *args: Any, **kwargs: Any):
        if not isinstance(model, RiVEGModel):
            raise TypeError(
                f"RiVEGPipeline needs a RiVEGModel (a composite checkpoint), got {type(model).__name__}. Build one "
                "with RiVEGPipeline.from_components(recognizer=..., grounder=...) or load a saved one with "
                'pipeline("grounded-mner", model=DIR).'
            )
        for hub_only in ("local_files_only", "token", "revision", "trust_remote_code"):
            kwargs.pop(hub_only, None)  # consumed by transformers.pipeline() while loading
        # servers named by a checkpoint are contacted only when the user opts in for this load
        trust_endpoints = kwargs.pop("trust_endpoints", False)
        for stage in model.stages.values():
            for client in stage.clients():
                if trust_endpoints:
                    client.trust()
                client.check_trusted()
        defaults = dict(model.config.pipeline_options)
        defaults.update(kwargs)
        task = defaults.pop("task", None) or model.config.task or "grounded-mner"
        super().__init__(model, *args, task=task, **defaults)
        self._warned_no_image = False

    # ------------------------------------------------------------------ construction
    def default_vision_batch_size(self, stage: Stage | None = None) -> int:
        """Images per vision forward when not given: 8 on an accelerator, 1 on CPU except for a stage that
        generates (``stage.batches_on_cpu``: a VLM grounder), which keeps 8 (see ``DEFAULT_VISION_BATCH_SIZE``).

        Without ``stage``: the default of an encoder stage given where the pipeline's models are."""
        stages = [stage] if stage is not None else list(self.stages.values())
        devices = {st.model.device.type for st in stages if st is not None and st.model is not None}
        if devices <= {"cpu"} and not getattr(stage, "batches_on_cpu", False):
            return CPU_VISION_BATCH_SIZE
        return DEFAULT_VISION_BATCH_SIZE

    @classmethod
    def from_components(
        cls,
        recognizer: Any = None,
        grounder: Any = None,
        *,
        reader: Any = None,
        expander: Any = None,
        captioner: Any = None,
        entailment: Any = None,
        segmenter: Any = None,
        task: str | None = None,
        device: Any = None,
        dtype: Any = None,
        revision: str | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        cache_dir: str | None = None,
        force_download: bool = False,
        proxies: dict[str, str] | None = None,
        **options: Any,
    ) -> RiVEGPipeline:
        """Build the pipeline from its components, through :func:`riveg_hf.modeling_riveg.build_model` (the path
        ``pipeline(task, model=DIR)`` loads a composite through too).

        Each component is a hub id, a local folder, ``"endpoint:URL"`` (a model on a server), a loaded model (its
        processor from ``model.name_or_path``), a ``(model, processor)`` pair, or a ready
        :class:`~riveg_hf.stages.Stage`. ``expander=None``: the template descriptions. The Hub arguments and
        ``dtype`` reach every component loaded here; ``device`` places them all.

        ``options``: stage options (:data:`riveg_hf.options.STAGE_OPTIONS`: ``label_map``, ``box_threshold``,
        ``mask_threshold``, ``reader_*`` ...; each goes to the stage that owns it, an option for an absent stage
        is an error naming it; ``endpoint_model`` / ``endpoint_family`` go to every served component) and call
        options saved as the pipeline's defaults (:data:`riveg_hf.options.CALL_OPTIONS`). A threshold given here
        is its stage's default, saved with it; the same name at a call overrides it for that call; both are
        checked alike (see :mod:`riveg_hf.options`). Any other name is a TypeError listing the valid ones.

        >>> pipe = RiVEGPipeline.from_components(  # doctest: +SKIP
        ...     recognizer="dslim/bert-base-NER", grounder="IDEA-Research/grounding-dino-tiny",
        ...     entailment="Salesforce/blip-itm-base-coco", segmenter="facebook/sam2.1-hiera-tiny")
        """
        if expander is None and reader is None:
            expander = ComponentSpec()  # the template descriptions (no LLM)
        components = {"reader": reader, "recognizer": recognizer, "captioner": captioner, "expander": expander,
                      "entailment": entailment, "grounder": grounder, "segmenter": segmenter}  # fmt: skip
        hub = {"revision": revision, "local_files_only": local_files_only, "token": token, "cache_dir": cache_dir,
               "force_download": force_download, "proxies": proxies}  # fmt: skip
        hub = {k: v for k, v in hub.items() if v is not None}
        model = build_model(components, options, task=task, hub={**hub, "dtype": dtype})
        if dtype is not None and dtype != "auto":
            model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        return cls(model=model, device=device)

    def compile_vision_encoders(
        self, stages: tuple[str, ...] = ("entailment", "segmenter", "grounder"), **compile_kwargs: Any
    ) -> list[str]:
        """Opt-in ``torch.compile`` of the vision encoders (entailment, grounder backbone, segmenter), in place.

        Worth it on a GPU for long runs (the first call compiles). Only these modules are wrapped; no global
        torch setting changes. ``compile_kwargs`` go to ``torch.compile`` (e.g. ``mode="max-autotune"``).
        Returns the names of the compiled modules.
        """
        done = []
        for stage_name in stages:
            stage = self.stages.get(stage_name)
            if stage is None or stage.model is None:
                continue
            for path, module in stage.compiled_modules().items():  # a path that names nothing is an error
                if hasattr(module, "_orig_mod"):  # compiled already
                    continue
                owner, _, leaf = path.rpartition(".")
                setattr(
                    resolve_path(stage, owner) if owner else stage,
                    leaf,
                    torch.compile(module, **compile_kwargs),
                )
                done.append(f"{stage_name}.{path.removeprefix('model.')}")
        return done

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write a composite checkpoint that ``pipeline(task, model=DIR)`` reloads offline.

        ``reference_hub_components=True`` records Hub components as pinned references instead of copies.
        """
        self.model.config.task = self.task
        self.model.save_pretrained(save_directory, **kwargs)

    # ------------------------------------------------------------------ stages
    @property
    def stages(self) -> dict[str, Stage]:
        return self.model.stages

    def _stage(self, name: str) -> Any:
        return self.model.stages.get(name)

    # ------------------------------------------------------------------ parameters
    def _sanitize_parameters(self, **kwargs: Any):
        pre, fwd, post = split_call_options(kwargs)  # one validator, shared with the endpoint handler
        self._check_readers(fwd)
        return pre, fwd, post

    def _check_readers(self, fwd: dict[str, Any]) -> None:
        """A threshold whose stage will not run is an error, never silently ignored."""
        if fwd.get("box_threshold") is not None and self._locator() is None:
            raise ValueError(
                "box_threshold: this composite has no stage that locates (no grounder, no segmenter that finds "
                f"objects from text{'; its joint reader writes the boxes' if self._stage('reader') else ''}), so "
                "no box score is thresholded; drop box_threshold."
            )
        if fwd.get("entailment_threshold") is not None:
            if self._stage("entailment") is None:
                raise ValueError(
                    "entailment_threshold: this composite has no entailment stage; drop entailment_threshold."
                )
            if fwd.get("visibility") == "grounder":
                raise ValueError(
                    "entailment_threshold with visibility='grounder': the entailment stage does not run (the "
                    "grounder's answer decides visibility); drop one of them."
                )

    # ------------------------------------------------------------------ calling
    def __call__(
        self,
        inputs: Any = None,
        *args: Any,
        text: str | None = None,
        image: Any = None,
        tokens: list[str] | None = None,
        knowledge: Any = None,
        **kwargs: Any,
    ):
        """Run on one input, a list, a generator or a ``datasets.Dataset`` (see the module doc)."""
        if inputs is None:
            if text is None and tokens is None:
                raise RiVEGInputError(
                    "pass an input: pipe({'text': ..., 'image': ...}) or pipe(text=..., image=...)"
                )
            inputs = {"text": text, "tokens": tokens, "image": image, "knowledge": knowledge}
            inputs = {k: v for k, v in inputs.items() if v is not None or k == "image"}
        elif text is not None or tokens is not None or image is not None:
            raise RiVEGInputError(
                "pass either one input (dict, list, dataset) or text=/tokens=/image=, not both"
            )
        if _is_hf_dataset(inputs):
            # row by row; a map-style dataset keeps its length (progress bars), a streaming one is a generator
            inputs = _LazyRows(inputs) if hasattr(inputs, "__len__") else (row for row in inputs)
        elif isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        return super().__call__(inputs, *args, **kwargs)

    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        prepared = self.preprocess(inputs, **preprocess_params)
        out = self.forward([prepared], **{**forward_params, "errors": "raise"})[0]
        return self.postprocess(out, **postprocess_params)

    def get_iterator(
        self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
    ):
        """Our own batching: preprocess ``batch_size`` inputs, run the stages once over them, postprocess each."""
        cls = _SizedBatchIterator if hasattr(inputs, "__len__") else _BatchIterator
        return cls(
            self, inputs, max(1, int(batch_size or 1)), preprocess_params, forward_params, postprocess_params
        )

    # ------------------------------------------------------------------ the four hooks
    def preprocess(self, inputs: Any, index: int = 0, **options: Any) -> _Input:
        """One input -> an :class:`_Input` (its image loaded, its words split); options: ``max_image_pixels``,
        ``allow_url_images`` (defaults: :data:`riveg_hf.options.CALL_OPTIONS`)."""
        opts = call_defaults("preprocess", options)
        item = _normalize_input(inputs)
        image = item.get("image")
        if image is not None:
            try:
                image = load_image(
                    image, max_image_pixels=opts["max_image_pixels"], allow_urls=opts["allow_url_images"]
                )
            except (ImageLoadError, URLFetchError) as err:
                raise RiVEGInputError(str(err)) from None
        elif not self._warned_no_image:
            logger.warning(
                "An input has no image: its entities are reported as not visible (box=None). "
                "Pass 'image' (a PIL image or a local path) to ground them. (Shown once.)"
            )
            self._warned_no_image = True
        if "tokens" in item:
            words = list(item["tokens"])
            text, offsets = join_words(words)
        else:
            text = item["text"]
            triples = split_words(text)
            words = [w for w, _, _ in triples]
            offsets = [(s, e) for _, s, e in triples]
        knowledge = item.get("knowledge")
        if isinstance(knowledge, str):
            knowledge = knowledge.split() or None  # whitespace words, as in the training files
        return _Input(index, item.get("id"), text, words, offsets, "tokens" in item, image, knowledge,
                      item.get("caption"))  # fmt: skip

    def _forward(self, batch: list[_Input], **options: Any) -> list[_Result]:
        """The stages over one batch, as named steps: caption -> recognize -> describe -> cap entities ->
        (decide visibility -> locate -> keep -> segment, per batch with a per-image retry) -> collect. Options:
        the forward call options (defaults: :data:`riveg_hf.options.CALL_OPTIONS`)."""
        opts = call_defaults("forward", options)
        run = self._run_of(opts)
        if run.reader is not None:  # one model reads entities, types and boxes; the segmenter still segments
            entities: list[list[_Entity]] = [[] for _ in batch]
            jobs = [_Job(k, b.image, entities[k], b.text) for k, b in enumerate(batch)]
            failed = self._each_image_on_failure(jobs, lambda js: self._read(batch, js, run))  # 2-7
            return self._collect(batch, entities, failed, opts["errors"])  # 8
        self._caption(batch, run)  # 1
        spans = self._recognize(batch, run)  # 2
        entities = self._describe(batch, spans, run)  # 3
        jobs = self._cap_entities(batch, entities, run.locator, opts["max_entities_per_image"])  # 4
        failed = self._each_image_on_failure(jobs, lambda js: self._ground(js, run))  # 5-7
        return self._collect(batch, entities, failed, opts["errors"])  # 8

    def _run_of(self, opts: dict[str, Any]) -> _Run:
        """The stages this call runs, with its options."""
        return_masks = opts["return_masks"]
        if return_masks is None:
            return_masks = self.task == "segmented-mner"
        return _Run(
            self._stage("recognizer"),
            self._stage("expander") or Expander(None, None),
            self._stage("captioner"),
            None if opts["visibility"] == "grounder" else self._stage("entailment"),
            self._locator(),
            self._mask_stage(return_masks),
            opts["box_threshold"],
            opts["entailment_threshold"],
            opts["use_descriptions"],
            opts["use_knowledge"],
            opts["vision_batch_size"],
            self._stage("reader"),
        )

    # ------------------------------------------------------------------ the steps
    def _locator(self):
        """The stage that finds boxes: the grounder, else a segmenter that locates (SAM 3 from text)."""
        grounder = self._stage("grounder")
        if grounder is not None:
            return grounder
        segmenter = self._stage("segmenter")
        return segmenter.locator() if segmenter is not None else None

    def _mask_stage(self, return_masks: bool):
        segmenter = self._stage("segmenter")
        if return_masks and segmenter is None:
            raise ValueError(
                "masks were asked for (segmented-mner / return_masks=True) but there is no segmenter."
            )
        return segmenter if return_masks else None

    def _caption(self, batch: list[_Input], run: _Run) -> None:
        """1. Captions, once per image, only when an LLM will read them."""
        if run.captioner is None or not run.expander.has_llm:
            return
        need = [b for b in batch if b.image is not None and b.caption is None and b.words]
        if need:
            for b, cap in zip(need, run.captioner.caption([b.image for b in need])):
                b.caption = cap

    def _recognize(self, batch: list[_Input], run: _Run) -> list[list]:
        """2. The recognizer once over the batch (with PGIM knowledge when it was trained with it)."""
        knowledge = [None] * len(batch)
        if run.recognizer.uses_knowledge and run.use_knowledge is not False:
            missing = [b for b in batch if b.knowledge is None and b.words]
            if missing and run.expander.has_llm:
                written = run.expander.knowledge([b.text for b in missing], [b.caption for b in missing])
                for b, k in zip(missing, written):
                    b.knowledge = k.split() or None
            knowledge = [b.knowledge for b in batch]
        spans: list[list] = [[] for _ in batch]
        has_words = [i for i, b in enumerate(batch) if b.words]
        if has_words:
            found = run.recognizer([batch[i].words for i in has_words], [knowledge[i] for i in has_words])
            for i, sp in zip(has_words, found):
                spans[i] = sp
        return spans

    def _describe(self, batch: list[_Input], spans: list[list], run: _Run) -> list[list[_Entity]]:
        """3. The entities as records, with their descriptions (once over the batch, cached)."""
        entities = [[_span_entity(b, sp) for sp in item_spans] for b, item_spans in zip(batch, spans)]
        requests: list[ExpansionRequest] = []
        for b, ents in zip(batch, entities):
            names = tuple(dict.fromkeys(e.entity for e in ents))
            requests += [ExpansionRequest(e.entity, e.type, b.text, b.caption, tuple(n for n in names if n != e.entity))
                         for e in ents]  # fmt: skip
        if requests:
            described = run.expander.describe_detailed(requests)
            for ent, d in zip((e for ents in entities for e in ents), described, strict=True):
                ent.description, ent.description_source = d.description, d.source
        return entities

    def _read(self, batch: list[_Input], jobs: list[_Job], run: _Run) -> None:
        """2-7 with a joint reader: one answer per tweet (entities placed on the text, types, boxes), then the
        segmenter's masks of its boxes, once per image."""
        readings = run.reader.read_many(
            [ReadRequest(j.image, j.text, batch[j.item].id) for j in jobs],
            vision_batch_size=self._vbs(run.reader, run),
        )
        failed = [r.error for r in readings if r.error]
        if failed:  # unknown, never "no entity": that tweet becomes an error line (each tweet retried alone)
            raise RuntimeError(failed[0])
        for job, reading in zip(jobs, readings):
            item = batch[job.item]
            job.entities[:] = [_read_entity(item, e) for e in reading.entities]
            item.reader_notes = list(reading.notes)
        if run.segmenter is not None:
            with_boxes = [j for j in jobs if j.image is not None and any(e.groundable for e in j.entities)]
            if with_boxes:
                self._add_masks(with_boxes, run)

    def _cap_entities(self, batch: list[_Input], entities, locator, cap: int | None) -> list[_Job]:
        """4. One grounding job per image with entities; entities past the cap are kept, with a note."""
        jobs = []
        for k, (b, ents) in enumerate(zip(batch, entities)):
            if b.image is None or not ents or locator is None:
                continue
            limit = len(ents) if cap is None else cap
            for ent in ents[limit:]:
                ent.note = (f"skipped: the image has {len(ents)} entities, above "
                            f"max_entities_per_image={limit}; raise it to ground them")  # fmt: skip
            jobs.append(_Job(k, b.image, ents[:limit], b.text))
        return jobs

    def _each_image_on_failure(self, jobs: list[_Job], step) -> dict[int, BaseException]:
        """``step(jobs)`` over the whole batch; if it fails, each image alone, so one bad input never loses the
        others. Returns the failed inputs' errors by position in the batch."""
        failed: dict[int, BaseException] = {}
        if not jobs:
            return failed
        try:
            step(jobs)
        except Exception:  # whatever the class: each image alone, so one bad input never loses the others
            for job in jobs:
                try:
                    step([job])
                except Exception as err:
                    failed[job.item] = err
        return failed

    def _ground(self, jobs: list[_Job], run: _Run) -> None:
        """5-7. Decide visibility, locate, keep, segment: each vision model encodes each image once; each entity
        record receives its own results."""
        for job in jobs:
            for ent in job.entities:
                ent.clear_grounding()
        self._decide_visibility(jobs, run)  # 5
        self._locate(jobs, run)  # 6
        self._keep(jobs, run)
        self._segment(jobs, run)  # 7

    def _vbs(self, stage, run: _Run) -> int:
        return run.vision_batch_size or self.default_vision_batch_size(stage)

    def _decide_visibility(self, jobs: list[_Job], run: _Run) -> None:
        """5. The entailment stage's P(visible) per entity (RiVEG): its ``groundable_score``, and ``visible`` when
        it passes the threshold; without an entailment stage every entity is passed on to the locator. An
        unknown P(visible) (NaN: a served entailer failed) is never a confident "no": score None, with the note."""
        ent = run.entailment
        if ent is None:
            return
        hyps = [
            ent.hypotheses([(e.entity, e.type, e.description or e.entity) for e in j.entities]) for j in jobs
        ]
        items = [(j.image, h) for j, h in zip(jobs, hyps)]
        noted = getattr(ent, "score_many_noted", None)  # a served entailer says why a score is unknown
        if noted is not None:
            probs, notes = noted(items, vision_batch_size=self._vbs(ent, run))
        else:
            probs = ent.score_many(items, vision_batch_size=self._vbs(ent, run))
            notes = [[None] * len(h) for h in hyps]
        threshold = ent.threshold if run.entailment_threshold is None else run.entailment_threshold
        for job, row, row_notes in zip(jobs, probs, notes):
            for e, p, note in zip(job.entities, row, row_notes):
                e.groundable_score = float(p) if p is not None and math.isfinite(float(p)) else None
                e.visible = e.groundable_score is not None and e.groundable_score >= threshold
                e.note = note or e.note

    def _locate(self, jobs: list[_Job], run: _Run) -> None:
        """6. One request per image for its visible entities (their descriptions, or names); each entity receives
        its box, the locator's score (its ``groundable_score`` too when the entailment stage gave none), its note
        and, for a locator that segments (SAM 3) when masks are asked for, its mask."""
        asked = [[e for e in j.entities if e.visible] for j in jobs]
        requests = [
            LocateRequest(j.image, [_query(e, run.use_descriptions) for e in ents], text=j.text,
                          entities=[(e.entity, e.type, e.description or e.entity) for e in ents])
            for j, ents in zip(jobs, asked)
        ]  # fmt: skip
        results = run.locator.locate_many(requests, vision_batch_size=self._vbs(run.locator, run))
        own_masks = run.segmenter is not None and run.locator.returns_masks
        for ents, found in zip(asked, results, strict=True):
            for k, e in enumerate(ents):
                e.box, e.box_score, e.note = found.boxes[k], found.score(k), found.notes[k] or e.note
                e.mask = found.mask(k) if own_masks else None
                if e.groundable_score is None:
                    e.groundable_score = e.box_score

    def _keep(self, jobs: list[_Job], run: _Run) -> None:
        """Which entities keep their box: with an entailment stage its decision is final and the locator's top
        box is kept (as in RiVEG); without one, the locator's score decides (when it has scores). ``box_threshold``
        of the call, else the locator's own."""
        threshold = run.locator.box_threshold if run.box_threshold is None else run.box_threshold
        for job in jobs:
            for e in job.entities:
                passes = run.entailment is not None or e.box_score is None or e.box_score >= threshold
                e.groundable = e.visible and e.box is not None and passes
                if not e.groundable:
                    e.box, e.mask = None, None

    def _segment(self, jobs: list[_Job], run: _Run) -> None:
        """7. Masks of the kept boxes: the locator's own (SAM 3 from text, set by ``_locate``), else the
        segmenter's, once per image."""
        if run.segmenter is None or run.locator.returns_masks:
            return
        if any(e.groundable for j in jobs for e in j.entities):
            self._add_masks(jobs, run)

    def _add_masks(self, jobs: list[_Job], run: _Run) -> None:
        """The segmenter's mask of each kept box, every image of ``jobs`` in one ``segment_many``."""
        kept = [[e for e in j.entities if e.groundable] for j in jobs]
        masks = run.segmenter.segment_many(
            [(j.image, [e.box for e in ents]) for j, ents in zip(jobs, kept)],
            vision_batch_size=self._vbs(run.segmenter, run),
        )
        for ents, found in zip(kept, masks, strict=True):
            for e, mask in zip(ents, found, strict=True):
                e.mask = mask

    def _collect(
        self, batch: list[_Input], entities, failed: dict[int, BaseException], errors: str
    ) -> list[_Result]:
        """8. One result per input: its entities, or its error (raised with ``errors="raise"``)."""
        out = []
        for k, (b, ents) in enumerate(zip(batch, entities)):
            err = failed.get(k)
            if err is not None:
                if errors == "raise":
                    raise RiVEGInputError(f"input {b.index}: {err}") from err
                out.append(_Result(b.index, [], err))
                continue
            for note in b.reader_notes:  # what the reader's answer gave that is not kept
                where = f"id {b.id}" if b.id is not None else "an input"
                logger.warning(f"{where}: the joint reader's answer: {note}")
            out.append(_Result(b.index, ents))
        return out

    def postprocess(self, model_outputs: _Result, **options: Any) -> list[dict[str, Any]] | dict[str, Any]:
        """Serialize one result: its entities (masks as ``mask_format`` asks), or its error line."""
        mask_format = call_defaults("postprocess", options)["mask_format"]
        if model_outputs.error is not None:
            err = model_outputs.error
            return {"error": f"{type(err).__name__}: {err}", "index": model_outputs.index}
        return [e.output(mask_format).to_dict() for e in model_outputs.entities]


class _BatchIterator(Iterator):
    """Yields one output per input, running the stages once per batch of ``batch_size`` inputs."""

    def __init__(self, pipe: RiVEGPipeline, inputs: Iterable, batch_size: int, pre, fwd, post):
        self.pipe, self.inputs, self.batch_size = pipe, iter(inputs), batch_size
        self.pre, self.fwd, self.post = pre, fwd, post
        self.errors = call_defaults("forward", fwd)["errors"]
        self.pending: list[Any] = []
        self.index = 0
        self.total = len(inputs) if hasattr(inputs, "__len__") else None

    def __next__(self):
        if not self.pending:
            chunk = []
            for x in self.inputs:
                chunk.append((self.index, x))
                self.index += 1
                if len(chunk) == self.batch_size:
                    break
            if not chunk:
                raise StopIteration
            self.pending = self._run(chunk)
        return self.pending.pop(0)

    def _run(self, chunk: list[tuple[int, Any]]) -> list[Any]:
        results: dict[int, Any] = {}
        prepared = []
        for i, x in chunk:
            try:
                prepared.append(self.pipe.preprocess(x, index=i, **self.pre))
            except (RiVEGInputError, ValueError, TypeError) as err:
                if self.errors == "raise":
                    raise RiVEGInputError(f"input {i}: {err}") from err
                results[i] = {"error": f"{type(err).__name__}: {err}", "index": i}
        if prepared:
            for p, o in zip(prepared, self.pipe.forward(prepared, **self.fwd)):
                results[p.index] = self.pipe.postprocess(o, **self.post)
        return [results[i] for i, _ in chunk]


# ---------------------------------------------------------------------- helpers
class _SizedBatchIterator(_BatchIterator):
    """The iterator of a sized input (list, dataset): ``len()`` is the number of outputs still to come."""

    def __len__(self) -> int:
        return self.total - self.index + len(self.pending)


class _LazyRows(torch.utils.data.Dataset):
    """A ``datasets.Dataset`` read row by row, with its length (transformers streams a torch Dataset lazily)."""

    def __init__(self, ds):
        self.ds = ds

    def __getitem__(self, i):
        return self.ds[i]

    def __len__(self) -> int:
        return len(self.ds)

    def __iter__(self):
        return iter(self.ds)


def _span_entity(item: _Input, span: Any) -> _Entity:
    """The recognizer's word span as an entity of the input's text (word offsets for ``tokens`` input only)."""
    c0, c1 = item.offsets[span.start][0], item.offsets[span.end - 1][1]
    words = (span.start, span.end) if item.from_tokens else (None, None)
    return _Entity(item.text[c0:c1], span.type, c0, c1, span.score, *words)


def _read_entity(item: _Input, found: Any) -> _Entity:
    """A joint reader's entity (placed on the text, with its box) as an entity record."""
    words = [w for w, (a, z) in enumerate(item.offsets) if a < found.end and z > found.start]
    span = (words[0], words[-1] + 1) if words and item.from_tokens else (None, None)
    return _Entity(found.entity, found.type, found.start, found.end, None, *span, groundable=found.box is not None,
                   box=found.box, box_score=found.box_score, note=found.note or None)  # fmt: skip


def _query(entity: _Entity, use_descriptions: bool) -> str:
    """What the locator looks for: the entity's description, or its name."""
    return entity.description if use_descriptions and entity.description else entity.entity


def _is_hf_dataset(x: Any) -> bool:
    try:
        import datasets
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, (datasets.Dataset, datasets.IterableDataset))


def _normalize_input(inputs: Any) -> dict[str, Any]:
    """Validate one input -> ``{"text"|"tokens", "image", "knowledge", "id", "caption"}``."""
    if isinstance(inputs, str):
        return {"text": inputs, "image": None}
    if not isinstance(inputs, Mapping):
        raise RiVEGInputError(
            f"expected a dict {{'text' or 'tokens', 'image'}} or a string, got {type(inputs).__name__}."
        )
    item = dict(inputs)
    has_text = item.get("text") is not None
    has_tokens = item.get("tokens") is not None
    if has_text and has_tokens:
        raise RiVEGInputError("give either 'text' or 'tokens', not both.")
    if not has_text and not has_tokens:
        raise RiVEGInputError(
            f"the input needs 'text' (a string) or 'tokens' (a list of words); got keys {sorted(item)}."
        )
    out: dict[str, Any] = {
        "image": item.get("image"),
        "id": item.get("id"),
        "knowledge": item.get("knowledge"),
        "caption": item.get("caption"),
    }
    if has_text:
        if not isinstance(item["text"], str):
            raise RiVEGInputError(f"'text' must be a string, got {type(item['text']).__name__}.")
        out["text"] = _valid_unicode(item["text"], "text")
    else:
        toks = item["tokens"]
        if isinstance(toks, str) or not all(isinstance(t, str) for t in toks):
            raise RiVEGInputError("'tokens' must be a list of strings (words); pass a sentence as 'text'.")
        out["tokens"] = [_valid_unicode(t, f"tokens[{i}]") for i, t in enumerate(toks)]
    for key in ("knowledge", "caption"):
        if isinstance(out[key], str):
            _valid_unicode(out[key], key)
    return out


def _valid_unicode(text: str, field: str) -> str:
    """``text`` if it is valid Unicode (encodable as UTF-8); a lone surrogate ("\\ud800", valid in JSON) is
    refused here, at the input boundary, so it never reaches a tokenizer or an output file."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RiVEGInputError(
            f"{field!r} holds an invalid character (a lone surrogate {text[err.start]!r} at position {err.start}): "
            "not valid Unicode text. Decode the input as UTF-8 (or replace the character) and try again."
        ) from None
    return text


def default_model_path(task: str):
    """The folder of the task's default composite (a config of Hub references)."""
    from pathlib import Path

    check_task(task)
    return Path(__file__).resolve().parent / "defaults" / task


#: Documented composites (configs of Hub references), by name: see docs/guides/presets.md.
PRESETS = {
    "riveg-2024": "RiVEG as published in 2024, zero-shot: BERT NER, Qwen2.5-0.5B expander, BLIP ITM entailment, "
    "Grounding DINO tiny, SAM 2.1 tiny",
    "vlm": "BERT NER, Qwen2.5-0.5B expander, Qwen2.5-VL-3B-Instruct as joint entailment + grounder "
    "(visibility='grounder'), SAM 2.1 tiny",
    "sam3": "BERT NER, Qwen2.5-0.5B expander, SAM 3 finding box and mask from each description (gated checkpoint)",
    "qwen-vl-joint": "one model reads entities, types and boxes: Qwen2.5-VL-7B-Instruct zero-shot (joint reader), "
    "SAM 2.1 tiny for masks",
    "sake-7b": "SAKE-7B (SYSU-AI/SAKE-7B_gmner) as the joint reader with its agent loop (search off unless a cache "
    "is given; needs SAKE's prompt files: --sake-prompts), SAM 2.1 tiny for masks",
    "sake-7b-fmnerg": "SAKE-7B for Twitter-FMNERG's 51 fine types (SYSU-AI/SAKE-7B_fmnerg; SAKE's FMNERG prompt "
    "files), SAM 2.1 tiny for masks",
}


def preset_path(name: str):
    """The folder of a preset composite (``pipeline("segmented-mner", model=preset_path("vlm"))``)."""
    from pathlib import Path

    if name not in PRESETS:
        raise ValueError(
            f"unknown preset {name!r}; valid: {sorted(PRESETS)} ("
            + "; ".join(f"{k}: {v}" for k, v in PRESETS.items())
            + ")"
        )
    return Path(__file__).resolve().parent / "defaults" / "presets" / name


def _register() -> None:
    """Register the tasks and the composite config/model with transformers (called on ``import riveg_hf``)."""
    from transformers import AutoConfig, AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    with contextlib.suppress(ValueError):  # already registered (module reloaded)
        AutoConfig.register("riveg", RiVEGConfig)
    with contextlib.suppress(ValueError):
        AutoModel.register(RiVEGConfig, RiVEGModel)
    for task in TASKS:
        PIPELINE_REGISTRY.register_pipeline(
            task,
            pipeline_class=RiVEGPipeline,
            pt_model=RiVEGModel,
            default={"model": (str(default_model_path(task)), None)},
            type="multimodal",
        )
