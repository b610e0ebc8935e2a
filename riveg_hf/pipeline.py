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
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Pipeline, PreTrainedModel
from transformers.utils import logging

from .images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, load_image
from .masks import encode_rle
from .modeling_riveg import TASKS, RiVEGConfig, RiVEGModel
from .net import URLFetchError
from .options import (
    CALL_OPTIONS,
    DEFAULT_MAX_ENTITIES_PER_IMAGE,
    ERROR_MODES,  # noqa: F401  (re-exported: riveg_hf.pipeline.ERROR_MODES)
    MASK_FORMATS,  # noqa: F401
    STAGE_OPTIONS,
    VISIBILITY_MODES,  # noqa: F401
    split_call_options,
)
from .stages import STAGES, ComponentLoadError, Expander, ExpansionRequest, ReadRequest, Stage
from .stages.grounder import Localization, LocateRequest
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
class _Job:
    """One image to ground: its position in the batch, the image, its (capped) entities, the tweet."""

    item: int
    image: Any
    entities: list[dict[str, Any]]
    text: str


@dataclass
class _Located:
    """The locator's answer for one job: ``index`` maps an entity of the job to its entry in ``result``."""

    index: dict[int, int]
    result: Localization


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
        **options: Any,
    ) -> RiVEGPipeline:
        """Build the pipeline from its components.

        Each component is a hub id, a local folder, an already-loaded model (its processor is
        loaded from ``model.name_or_path``), a ``(model, processor)`` pair, or a ready
        :class:`~riveg_hf.stages.Stage`. ``expander=None`` uses the template descriptions.
        ``revision``, ``local_files_only``, ``token``, ``cache_dir`` and ``dtype`` reach every
        component loaded here; ``device`` places them all.

        Stage options (:data:`riveg_hf.options.STAGE_OPTIONS`, each owned by one stage; an option for an absent
        stage is an error naming it): ``label_map``, ``stride``, ``max_length`` (recognizer); ``prompt``,
        ``template``, ``max_new_tokens``, ``knowledge_prompt``, ``endpoint_model`` (expander); ``hypothesis``,
        ``logit_bias``, ``entailment_threshold`` (entailment); ``box_threshold`` (the grounder, or a SAM 3
        segmenter that finds the boxes); ``mask_threshold`` (segmenter). Call options saved as defaults: ``use_descriptions``,
        ``use_knowledge``, ``return_masks``, ``mask_format``, ``errors``, ``max_image_pixels``,
        ``allow_url_images`` (False: image URLs are refused; see README, Security),
        ``max_entities_per_image`` (100: entities past it keep ``box=None`` and say so in ``"grounding"``).

        >>> pipe = RiVEGPipeline.from_components(  # doctest: +SKIP
        ...     recognizer="dslim/bert-base-NER", grounder="IDEA-Research/grounding-dino-tiny",
        ...     entailment="Salesforce/blip-itm-base-coco", segmenter="facebook/sam2.1-hiera-tiny")
        """
        if recognizer is None and reader is None:
            raise ValueError(
                "from_components needs a recognizer (a token-classification checkpoint), or a joint reader "
                "(reader=...: a vision-language model that writes entities, types and boxes in one answer)."
            )
        if reader is not None:
            clash = [k for k, v in {"recognizer": recognizer, "expander": expander, "captioner": captioner,
                                    "entailment": entailment, "grounder": grounder}.items() if v is not None]  # fmt: skip
            if clash:
                raise ValueError(
                    f"from_components: a joint reader finds the entities, their types, visibility and boxes itself; "
                    f"{clash} would never run beside it. Pass reader=... with segmenter= only (masks of its boxes)."
                )
        given = {
            "reader": reader,
            "recognizer": recognizer,
            "captioner": captioner,
            "expander": expander,
            "entailment": entailment,
            "grounder": grounder,
            "segmenter": segmenter,
        }
        stage_opts, call_opts = _route_options(options, {k for k, v in given.items() if v is not None})
        hub = {
            "revision": revision,
            "local_files_only": local_files_only,
            "token": token,
            "cache_dir": cache_dir,
            "dtype": dtype,
        }
        stages: dict[str, Stage] = {}
        for name, spec in given.items():
            if spec is None:
                if name == "expander" and reader is None:
                    stages[name] = Expander(None, None, **stage_opts[name])
                continue
            stages[name] = _make_stage(STAGES[name], spec, stage_opts[name], hub, stage_opts["_served"])
        for key, value in stage_opts.pop(
            "_locator", {}
        ).items():  # a segmenter that locates owns box_threshold
            seg = stages["segmenter"]
            if seg.locator() is None:
                raise ValueError(
                    f"{key} is an option of the grounder (the stage that finds boxes), and this pipeline has none: "
                    f"{type(seg.model).__name__} segments boxes it is given. Pass grounder=... (or a SAM 3 "
                    "segmenter, which finds boxes itself), or leave out box_threshold."
                )
            setattr(seg, key, value)
        if task is None:
            task = "segmented-mner" if "segmenter" in stages else "grounded-mner"
        _check_task(task)
        if task == "segmented-mner" and "segmenter" not in stages:
            raise ValueError("task 'segmented-mner' needs a segmenter (e.g. facebook/sam2.1-hiera-tiny).")
        config = RiVEGConfig(task=task, pipeline_options=call_opts)
        model = RiVEGModel(config, stages)
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
            for path in getattr(stage, "compile_modules", ()):
                owner, _, leaf = path.rpartition(".")
                parent = stage
                for part in owner.split(".") if owner else []:
                    parent = getattr(parent, part, None)
                    if parent is None:
                        break
                module = getattr(parent, leaf, None) if parent is not None else None
                if isinstance(module, torch.nn.Module) and not hasattr(module, "_orig_mod"):
                    setattr(parent, leaf, torch.compile(module, **compile_kwargs))
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
        return split_call_options(
            kwargs
        )  # one validator, shared with the endpoint handler (riveg_hf.options)

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
    def preprocess(
        self,
        inputs: Any,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        allow_url_images: bool = False,
        index: int = 0,
    ):
        item = _normalize_input(inputs)
        image = item.get("image")
        if image is not None:
            try:
                image = load_image(image, max_image_pixels=max_image_pixels, allow_urls=allow_url_images)
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
        return {
            "index": index,
            "id": item.get("id"),
            "text": text,
            "words": words,
            "offsets": offsets,
            "from_tokens": "tokens" in item,
            "image": image,
            "knowledge": knowledge,
            "caption": item.get("caption"),
        }

    def _forward(
        self,
        batch: list[dict[str, Any]],
        box_threshold: float | None = None,
        entailment_threshold: float | None = None,
        use_descriptions: bool = True,
        use_knowledge: bool | None = None,
        return_masks: bool | None = None,
        errors: str = "return",
        max_entities_per_image: int | None = DEFAULT_MAX_ENTITIES_PER_IMAGE,
        vision_batch_size: int | None = None,
        visibility: str = "entailment",
    ) -> list[dict[str, Any]]:
        """The stages over one batch, as named steps: caption -> recognize -> describe -> cap entities ->
        (decide visibility -> locate -> segment, per batch with a per-image retry) -> collect."""
        if return_masks is None:
            return_masks = self.task == "segmented-mner"
        run = _Run(
            self._stage("recognizer"),
            self._stage("expander") or Expander(None, None),
            self._stage("captioner"),
            None if visibility == "grounder" else self._stage("entailment"),
            self._locator(),
            self._mask_stage(return_masks),
            box_threshold,
            entailment_threshold,
            use_descriptions,
            use_knowledge,
            vision_batch_size,
            self._stage("reader"),
        )
        if run.reader is not None:  # one model reads entities, types and boxes; the segmenter still segments
            entities = [[] for _ in batch]
            jobs = [_Job(k, b["image"], entities[k], b["text"]) for k, b in enumerate(batch)]
            failed = self._each_image_on_failure(jobs, lambda js: self._read(batch, js, run))  # 2-6
            return self._collect(batch, entities, failed, errors)  # 8
        self._caption(batch, run)  # 1
        spans = self._recognize(batch, run)  # 2
        entities = self._describe(batch, spans, run)  # 3
        jobs = self._cap_entities(batch, entities, run.locator, max_entities_per_image)  # 4
        failed = self._each_image_on_failure(jobs, lambda js: self._ground(js, run))  # 5-7
        return self._collect(batch, entities, failed, errors)  # 8

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

    def _caption(self, batch: list[dict[str, Any]], run: _Run) -> None:
        """1. Captions, once per image, only when an LLM will read them."""
        if run.captioner is None or not run.expander.has_llm:
            return
        need = [b for b in batch if b["image"] is not None and b.get("caption") is None and b["words"]]
        if need:
            for b, cap in zip(need, run.captioner.caption([b["image"] for b in need])):
                b["caption"] = cap

    def _recognize(self, batch: list[dict[str, Any]], run: _Run) -> list[list]:
        """2. The recognizer once over the batch (with PGIM knowledge when it was trained with it)."""
        knowledge = [None] * len(batch)
        if run.recognizer.uses_knowledge and run.use_knowledge is not False:
            missing = [b for b in batch if b["knowledge"] is None and b["words"]]
            if missing and run.expander.has_llm:
                written = run.expander.knowledge(
                    [b["text"] for b in missing], [b.get("caption") for b in missing]
                )
                for b, k in zip(missing, written):
                    b["knowledge"] = k.split() or None
            knowledge = [b["knowledge"] for b in batch]
        spans: list[list] = [[] for _ in batch]
        has_words = [i for i, b in enumerate(batch) if b["words"]]
        if has_words:
            found = run.recognizer([batch[i]["words"] for i in has_words], [knowledge[i] for i in has_words])
            for i, sp in zip(has_words, found):
                spans[i] = sp
        return spans

    def _describe(
        self, batch: list[dict[str, Any]], spans: list[list], run: _Run
    ) -> list[list[dict[str, Any]]]:
        """3. The entities as output records, with their descriptions (once over the batch, cached)."""
        entities: list[list[dict[str, Any]]] = []
        requests: list[ExpansionRequest] = []
        for b, item_spans in zip(batch, spans):
            ents = []
            for sp in item_spans:
                c0, c1 = b["offsets"][sp.start][0], b["offsets"][sp.end - 1][1]
                ents.append({"entity": b["text"][c0:c1], "type": sp.type, "start": c0, "end": c1, "score": sp.score,
                             "token_start": sp.start, "token_end": sp.end, "groundable": False,
                             "groundable_score": None, "box": None, "box_score": None, "mask": None})  # fmt: skip
            names = tuple(dict.fromkeys(e["entity"] for e in ents))
            for e in ents:
                others = tuple(n for n in names if n != e["entity"])
                requests.append(ExpansionRequest(e["entity"], e["type"], b["text"], b.get("caption"), others))
            entities.append(ents)
        described = iter(run.expander.describe_detailed(requests)) if requests else iter(())
        for ents in entities:
            for ent in ents:
                d = next(described)
                ent["description"], ent["description_source"] = d.description, d.source
        return entities

    def _read(self, batch: list[dict[str, Any]], jobs: list[_Job], run: _Run) -> None:
        """2-7 with a joint reader: one answer per tweet (entities placed on the text, types, boxes), then the
        segmenter's masks of its boxes, once per image."""
        readings = run.reader.read_many(
            [ReadRequest(j.image, j.text, batch[j.item].get("id")) for j in jobs],
            vision_batch_size=self._vbs(run.reader, run),
        )
        failed = [r.error for r in readings if r.error]
        if failed:  # unknown, never "no entity": that tweet becomes an error line (each tweet retried alone)
            raise RuntimeError(failed[0])
        for job, reading in zip(jobs, readings):
            b = batch[job.item]
            job.entities.clear()
            for e in reading.entities:
                words = [w for w, (a, z) in enumerate(b["offsets"]) if a < e.end and z > e.start]
                ent = {"entity": e.entity, "type": e.type, "start": e.start, "end": e.end, "score": None,
                       "token_start": words[0] if words else None, "token_end": words[-1] + 1 if words else None,
                       "groundable": e.box is not None, "groundable_score": None, "box": e.box,
                       "box_score": e.box_score, "mask": None, "description": None, "description_source": None}  # fmt: skip
                if e.note:
                    ent["grounding"] = e.note
                job.entities.append(ent)
            if reading.notes:
                b["reader_notes"] = list(reading.notes)
        if run.segmenter is None:
            return
        todo = [j for j in jobs if j.image is not None and any(e["box"] is not None for e in j.entities)]
        if not todo:
            return
        order = [[i for i, e in enumerate(j.entities) if e["box"] is not None] for j in todo]
        masks = run.segmenter.segment_many(
            [(j.image, [j.entities[i]["box"] for i in o]) for j, o in zip(todo, order)],
            vision_batch_size=self._vbs(run.segmenter, run),
        )
        for j, o, ms in zip(todo, order, masks):
            for i, m in zip(o, ms):
                j.entities[i]["mask"] = m

    def _cap_entities(self, batch, entities, locator, cap: int | None) -> list[_Job]:
        """4. One grounding job per image with entities; entities past the cap are kept, with a note."""
        jobs = []
        for k, (b, ents) in enumerate(zip(batch, entities)):
            if b["image"] is None or not ents or locator is None:
                continue
            limit = len(ents) if cap is None else cap
            for ent in ents[limit:]:
                ent["grounding"] = (f"skipped: the image has {len(ents)} entities, above "
                                    f"max_entities_per_image={limit}; raise it to ground them")  # fmt: skip
            jobs.append(_Job(k, b["image"], ents[:limit], b["text"]))
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
        """5-7. Decide visibility, locate, segment: each vision model encodes each image once."""
        visible, probs = self._decide_visibility(jobs, run)  # 5
        located = self._locate(jobs, visible, run)  # 6
        keep = self._kept(jobs, visible, located, run)
        masks = self._segment(jobs, located, keep, run)  # 7
        for job, pr, loc, kp, ms in zip(jobs, probs, located, keep, masks):
            for i, ent in enumerate(job.entities):
                k = loc.index.get(i)
                box = loc.result.boxes[k] if k is not None else None
                score = loc.result.score(k) if k is not None else None
                ent.update(groundable=i in kp, groundable_score=pr[i] if pr[i] is not None else score,
                           box=box if i in kp else None, box_score=score, mask=ms.get(i))  # fmt: skip
                note = loc.result.notes[k] if k is not None else None
                if note:
                    ent["grounding"] = note

    def _vbs(self, stage, run: _Run) -> int:
        return run.vision_batch_size or self.default_vision_batch_size(stage)

    def _decide_visibility(
        self, jobs: list[_Job], run: _Run
    ) -> tuple[list[list[bool]], list[list[float | None]]]:
        """5. The entailment stage's P(visible) per entity (RiVEG), or every entity passed on to the locator."""
        if run.entailment is None:
            return [[True] * len(j.entities) for j in jobs], [[None] * len(j.entities) for j in jobs]
        ent = run.entailment
        hyps = [ent.hypotheses([(e["entity"], e["type"], e["description"] or e["entity"]) for e in j.entities])
                for j in jobs]  # fmt: skip
        items = [(j.image, h) for j, h in zip(jobs, hyps)]
        noted = getattr(ent, "score_many_noted", None)  # a served entailer says why a score is unknown
        if noted is not None:
            probs, notes = noted(items, vision_batch_size=self._vbs(ent, run))
        else:
            probs = ent.score_many(items, vision_batch_size=self._vbs(ent, run))
            notes = [[None] * len(h) for h in hyps]
        threshold = ent.threshold if run.entailment_threshold is None else run.entailment_threshold
        # an unknown P(visible) (NaN: the server failed) is never a confident "no": score None, with the note
        scores = [
            [float(p) if p is not None and math.isfinite(float(p)) else None for p in pr] for pr in probs
        ]
        for job, nt in zip(jobs, notes):
            for e, note in zip(job.entities, nt):
                if note:
                    e["grounding"] = note
        return [[sc is not None and sc >= threshold for sc in row] for row in scores], scores

    def _locate(self, jobs: list[_Job], visible: list[list[bool]], run: _Run) -> list[_Located]:
        """6. One request per image for the entities still visible: their descriptions (or names)."""
        asked = [[i for i, v in enumerate(vis) if v] for vis in visible]
        requests = []
        for job, idx in zip(jobs, asked):
            ents = [job.entities[i] for i in idx]
            queries = [
                e["description"] if run.use_descriptions and e.get("description") else e["entity"]
                for e in ents
            ]
            context = [(e["entity"], e["type"], e["description"] or e["entity"]) for e in ents]
            requests.append(LocateRequest(job.image, queries, text=job.text, entities=context))
        results = run.locator.locate_many(requests, vision_batch_size=self._vbs(run.locator, run))
        return [_Located({i: k for k, i in enumerate(idx)}, res) for idx, res in zip(asked, results)]

    def _kept(self, jobs, visible, located: list[_Located], run: _Run) -> list[set[int]]:
        """Which entities keep their box: with an entailment stage its decision is final and the locator's top
        box is kept (as in RiVEG); without one, the locator's score decides (when it has scores)."""
        locator = run.locator
        threshold = locator.box_threshold if run.box_threshold is None else run.box_threshold
        keep = []
        for loc in located:
            kept = set()
            for i, k in loc.index.items():
                box, score = loc.result.boxes[k], loc.result.score(k)
                if box is not None and (run.entailment is not None or score is None or score >= threshold):
                    kept.add(i)
            keep.append(kept)
        return keep

    def _segment(
        self, jobs, located: list[_Located], keep: list[set[int]], run: _Run
    ) -> list[dict[int, Any]]:
        """7. Masks of the kept boxes: the locator's own (SAM 3 from text), else the segmenter, once per image."""
        if run.segmenter is None:
            return [{} for _ in jobs]
        if run.locator.returns_masks:
            return [{i: loc.result.mask(loc.index[i]) for i in sorted(kp)} for loc, kp in zip(located, keep)]
        if not any(keep):
            return [{} for _ in jobs]
        order = [sorted(kp) for kp in keep]
        items = [
            (j.image, [loc.result.boxes[loc.index[i]] for i in o]) for j, loc, o in zip(jobs, located, order)
        ]
        segmented = run.segmenter.segment_many(items, vision_batch_size=self._vbs(run.segmenter, run))
        return [dict(zip(o, m)) for o, m in zip(order, segmented)]

    def _collect(
        self, batch, entities, failed: dict[int, BaseException], errors: str
    ) -> list[dict[str, Any]]:
        """8. One output per input: its entities, or its error (raised with ``errors="raise"``)."""
        out = []
        for k, (b, ents) in enumerate(zip(batch, entities)):
            if k in failed:
                err = failed[k]
                if errors == "raise":
                    raise RiVEGInputError(f"input {b['index']}: {err}") from err
                out.append({"error": f"{type(err).__name__}: {err}", "index": b["index"]})
            else:
                out.append({"entities": ents, "from_tokens": b["from_tokens"], "id": b.get("id"),
                            "reader_notes": b.get("reader_notes")})  # fmt: skip
        return out

    def postprocess(self, model_outputs: dict[str, Any], mask_format: str = "rle") -> list[dict[str, Any]]:
        if "error" in model_outputs:
            return model_outputs
        for note in model_outputs.get("reader_notes") or []:  # what the reader's answer gave that is not kept
            where = f"id {model_outputs['id']}" if model_outputs.get("id") is not None else "an input"
            logger.warning(f"{where}: the joint reader's answer: {note}")
        results = []
        for ent in model_outputs["entities"]:
            mask = ent.get("mask")
            if mask is not None:
                mask = (
                    None if mask_format == "none" else (mask if mask_format == "array" else encode_rle(mask))
                )
            g = GroundedEntity(
                entity=ent["entity"],
                type=ent["type"],
                start=ent["start"],
                end=ent["end"],
                score=ent["score"],
                description=ent["description"],
                groundable=ent["groundable"],
                groundable_score=ent["groundable_score"],
                box=ent["box"],
                box_score=ent["box_score"],
                mask=mask,
                token_start=ent["token_start"] if model_outputs["from_tokens"] else None,
                token_end=ent["token_end"] if model_outputs["from_tokens"] else None,
                description_source=ent.get("description_source"),
                extra={"grounding": ent["grounding"]} if "grounding" in ent else {},
            )
            results.append(g.to_dict())
        return results


class _BatchIterator(Iterator):
    """Yields one output per input, running the stages once per batch of ``batch_size`` inputs."""

    def __init__(self, pipe: RiVEGPipeline, inputs: Iterable, batch_size: int, pre, fwd, post):
        self.pipe, self.inputs, self.batch_size = pipe, iter(inputs), batch_size
        self.pre, self.fwd, self.post = pre, fwd, post
        self.errors = fwd.get("errors", "return")
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
                results[p["index"]] = self.pipe.postprocess(o, **self.post)
        return [results[i] for i, _ in chunk]


# ---------------------------------------------------------------------- helpers
class _SizedBatchIterator(_BatchIterator):
    """The iterator of a sized input (list, dataset): ``len()`` is the number of outputs still to come."""

    def __len__(self) -> int:
        return self.total - self.index + len(self.pending)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")


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


def _route_options(
    options: dict[str, Any], present: set[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """from_components' options -> (per stage: its arguments; the call options saved as defaults). An option for
    a stage that is absent is an error naming the stage (it used to be silently dropped)."""
    per_stage: dict[str, dict[str, Any]] = {name: {} for name in STAGES}
    per_stage["_served"] = {}  # endpoint_model / endpoint_family: every stage given as "endpoint:URL"
    calls: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("endpoint_model", "endpoint_family"):
            per_stage["_served"][key] = value
            continue
        opt = STAGE_OPTIONS.get(key)
        if opt is None:
            if key not in CALL_OPTIONS:
                valid = sorted([*STAGE_OPTIONS, *CALL_OPTIONS])
                raise TypeError(f"from_components: unknown option {key!r}; valid options: {valid}")
            calls[key] = value
            continue
        if opt.stage in present or (
            opt.stage == "expander" and "reader" not in present
        ):  # the template expander
            per_stage[opt.stage][opt.argument] = value
        elif opt.alternative in present:
            per_stage.setdefault("_locator", {})[opt.argument] = value  # checked once the stage is built
        else:
            owner = opt.stage + (f" (or a {opt.alternative} that locates)" if opt.alternative else "")
            raise ValueError(
                f"from_components: {key} is an option of the {owner}, and this pipeline has no {opt.stage}: pass "
                f"{opt.stage}=... or leave out {key}."
            )
    split_call_options(calls)  # validated now, not at the first call
    return per_stage, calls


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


def _make_stage(
    stage_cls: type[Stage],
    spec: Any,
    options: dict[str, Any],
    hub: dict[str, Any],
    served: dict | None = None,
) -> Stage:
    """A Stage from a hub id / folder, ``"endpoint:URL"`` (a server), a loaded model, a (model, processor) pair
    or a Stage. ``served``: ``endpoint_model`` / ``endpoint_family`` for a served stage."""
    served = {k: v for k, v in (served or {}).items() if v is not None}
    if isinstance(spec, Stage):
        for key, value in options.items():
            setattr(spec, key, value)
        return spec
    if isinstance(spec, str) and spec.startswith("endpoint:"):  # a model on an OpenAI-compatible server
        return stage_cls.served(spec[len("endpoint:") :], **served, **options)
    if isinstance(spec, Mapping) and "endpoint" in spec:  # {"endpoint": URL, "model": ..., "family": ...}
        spec = dict(spec)
        ep = {"url": spec.pop("endpoint"), **({"model": spec.pop("model")} if spec.get("model") else {})}
        fam = {"endpoint_family": spec.pop("family")} if spec.get("family") else {}
        return stage_cls.served(ep, **{**served, **fam}, **spec, **options)
    if isinstance(spec, (str, os.PathLike)):
        return stage_cls.from_pretrained(
            spec, **{k: v for k, v in hub.items() if v is not None or k == "dtype"}, **options
        )
    processor = None
    model = spec
    if isinstance(spec, tuple) and len(spec) == 2:
        model, processor = spec
    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            f"{stage_cls.name}: expected a hub id, a local folder, a loaded model, a (model, processor) pair or a "
            f"Stage; got {type(spec).__name__}."
        )
    if processor is None:
        from transformers import AutoProcessor, AutoTokenizer

        name = getattr(model, "name_or_path", "")
        if not name:
            raise ComponentLoadError(
                f"{stage_cls.name}: pass (model, processor): the model has no name_or_path."
            )
        loader = AutoTokenizer if stage_cls.processor_kind == "tokenizer" else AutoProcessor
        processor = loader.from_pretrained(name, local_files_only=hub.get("local_files_only", False))
    stage = stage_cls(model, processor, **options)
    name = getattr(model, "name_or_path", "")
    stage.source = {"location": name} if name else {}
    return stage


def default_model_path(task: str):
    """The folder of the task's default composite (a config of Hub references)."""
    from pathlib import Path

    _check_task(task)
    return Path(__file__).resolve().parent / "defaults" / task


#: Documented composites (configs of Hub references), by name: see README, Presets.
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
