"""Training a joint reader: one vision-language model that writes every entity of a tweet, its type and its box.

    riveg train reader --dataset twitter-gmner --base-model Qwen/Qwen2.5-VL-7B-Instruct --output reader
    riveg train reader --dataset twitter-gmner --base-model reader --method grpo --output reader-grpo
    riveg train reader --dataset twitter-fmnerg --level fine --base-model Qwen/Qwen2.5-VL-7B-Instruct --output fine

The output folder is a joint reader (:class:`riveg_hf.stages.JointReader`, ``RiVEGPipeline.from_components(
reader=DIR, segmenter=...)``), with its run record ``riveg_run.json`` and a model card.

**Targets** (supervised fine-tuning, ``method="sft"``). One example per tweet with an image: the exact chat the
reader family sends (:meth:`JointReader.messages`, the image as the family sends it, :meth:`JointReader.sent_image`)
and, as the answer, **every gold entity** of the tweet in text order -- its words as written, its type, and its
boxes in the family's coordinates, or "not visible" -- so the reader's own parser reads the target back to the gold
entities (the targets are the exact inverse of the parser; a tweet without entities gets the empty answer):

* ``format="qwen-vl"`` (riveg-hf's reader, :mod:`riveg_hf.stages.readers.qwen_vl`): a JSON list
  ``[{"entity": ..., "type": ..., "bbox_2d": [x1, y1, x2, y2] | null}]`` with the box in the model's trained
  coordinates (:data:`~riveg_hf.stages.vlm_grounding.VLM_FAMILIES`: Qwen2.5-VL absolute pixels of the
  processor's resized image, Qwen2-VL / Qwen3-VL 0..1000 relative; :func:`~riveg_hf.stages.vlm_grounding.
  from_original_xyxy`); an entity with several gold boxes gets the **largest** (the answer holds one box per
  entity; the metric accepts any gold box);
* ``format="e2e-gmner"`` (:mod:`riveg_hf.stages.readers.e2e_gmner`): E2E-GMNER's ``entity|type|[x1,y1,x2,y2]``
  parts joined by ``"; "``, several boxes as ``[[...],[...]]``, ``None`` for a not-visible entity and for a tweet
  without entity, boxes in the pixels of the image resized within E2E-GMNER's 200704..802816 pixels -- the
  answers ``Finch-coder/E2E-GMNER@d90c1eb:scripts/gmner_to_sft_data.py`` builds (``build_answer_from_record``,
  ``format_bboxes``) after its collator rescales them (``src/e2egmner/evaluation/geometry.py``
  ``rescale_assistant_text_bboxes``, ``scale_box_xyxy``). Its prompt texts are not shipped (no license):
  ``instruction_file=`` / ``system_prompt_file=`` as for the reader. Types PER / LOC / ORG / OTHER only.
* ``format="sake"`` is refused: SAKE's SFT data are multi-turn agent trajectories (search calls, the results its
  search returned, a teacher's reasoning), which Twitter-GMNER / FMNERG do not contain; single-turn answers in its
  format would teach the agent never to search. Continue training a SAKE checkpoint (a Qwen2.5-VL) with
  ``format="qwen-vl"`` instead.

**Reasoning** (``reasoning=FILE``, e2e-gmner only): E2E-GMNER's teacher chains, a JSON-lines file whose lines hold
``image_path`` and the chain under ``think`` (or ``cot`` / ``reasoning``), matched to a tweet by the image's file
name without extension (= the tweet's id) -- ``build_cot_index`` / ``find_think_for_record`` of
``gmner_to_sft_data.py``; the target becomes ``<think>CHAIN</think><answer>ANSWER</answer>`` (``convert_record``),
an empty chain where the file has none for a tweet (as E2E-GMNER does; counted in the run record).

**Box jitter** (``box_jitter=F`` > 0): E2E-GMNER's GRBP, re-expressed from ``geometry.py``
(``jitter_box_with_iou_guard``, ``jitter_box_center_scale``, ``_sample_jitter_delta``) with the settings of its
``scripts/train_lora.sh`` / ``cli/train.py``: each time a training target is built (every epoch anew), each gold box
in the resized image's pixels has its centre moved by ``dx * w, dy * h`` and its sides scaled by ``1 + s``, the four
deltas drawn from a Gaussian of sigma ``F / sqrt(3)`` truncated at ``min(F, 2 sigma)``, ``F`` halved for a box
under 32 x 32 pixels, scales within [0.2, 5], clipped to the image; a draw whose IoU with the gold box is under 0.6
is redrawn (5 tries, then the gold box). Validation targets are never jittered. The draws come from a generator
seeded by ``seed`` (never the global one).

The loss is on the answer tokens only; LoRA on the language model's linear layers (r 32, alpha 64, E2E-GMNER's)
or a full fine-tune (``lora=False``); after each epoch the validation split is read **by the reader itself**
(generation) and scored with :func:`riveg_hf.metrics.compute_gmner`; the best epoch's weights are kept
(``best_validation_gmner_f1`` in the run record). Under several processes (``torchrun`` / ``accelerate launch``)
each trains on its share of the batches and reads its share of the validation tweets.

**GRPO** (``method="grpo"``, after SFT): TRL's ``GRPOTrainer`` samples ``num_generations`` answers per tweet; the
rewards (:mod:`riveg_hf.training.rewards`) -- format, entity count, span, type, region, GMNER F1 -- are each logged
(``rewards/<name>/mean``), and the total (``reward``: ``gmner`` by default, ``sake``, ``mean``) is the one trained
on. GRPO samples from exactly what the reader reads at inference -- its chat, the image as it sends it (never
re-encoded, :func:`grpo_dataset`) -- and each sampled answer is rewarded as the reader would read it
(:func:`completion_answer`). The completion budget must hold a whole answer: ``max_new_tokens`` /
``max_completion_length`` under the longest gold answer is warned about (every such completion would be clipped
and rewarded as unfinished). ``temperature`` is GRPO's sampling temperature (1.0, as E2E-GMNER / SAKE / MCR train
7B readers).

A base that is already a joint reader -- e.g. ``SYSU-AI/SAKE-7B_gmner``, or the output of a previous run -- is
continued like any other Qwen-VL checkpoint (the LoRA adapters start from its weights).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..types import ENTITY_TYPES
from .common import (
    LazyImage,
    LoopConfig,
    accelerate_loop,
    dataset_provenance,
    image_of,
)
from .rewards import (
    COMPONENTS,
    TOTALS,
    answer_predictions,
    answer_rewards,
    format_reward,
    total_reward,
    word_offsets,
)
from .vlm import _Encoder, _save, end_training, keep_if_best, require_trl, run_grpo, target_box, trainable

__all__ = [
    "FORMATS",
    "ReaderTrainingArguments",
    "completion_answer",
    "e2e_gmner_target",
    "grpo_dataset",
    "jitter_box",
    "load_reasoning",
    "qwen_vl_target",
    "reader_examples",
    "score_reader",
    "train_reader",
]

#: the answer formats a reader is trained on (= the reader family it loads as)
FORMATS = ("qwen-vl", "e2e-gmner")
LEVELS = ("coarse", "fine")
#: E2E-GMNER's GRBP settings besides the strength (cli/train.py defaults, scripts/train_lora.sh)
JITTER_IOU_MIN = 0.6
JITTER_TRIES = 5
JITTER_MIN_AREA = 32 * 32
JITTER_SMALL_BOX_SCALE = 0.5
JITTER_TRUNC_K = 2.0
JITTER_SCALE_RANGE = (0.2, 5.0)
JITTER_MIN_SIZE = 2.0
SAKE_REFUSAL = (
    "--format sake is not trainable here: SAKE's supervised data are multi-turn agent trajectories (its search "
    "calls, the results the search returned, a teacher's reasoning chain), which Twitter-GMNER / Twitter-FMNERG do "
    "not contain, and single-turn answers in its format would teach the agent never to search. To continue "
    "training a SAKE checkpoint (SYSU-AI/SAKE-7B_gmner is a Qwen2.5-VL), pass it as --base-model with "
    "--format qwen-vl (riveg-hf's reader format) or --format e2e-gmner."
)


@dataclass(kw_only=True)
class ReaderTrainingArguments(LoopConfig):
    """``riveg train reader`` (see the module doc); the one source of its defaults. ``learning_rate`` unset: 1e-4
    with LoRA, 1e-5 for a full fine-tune. ``config`` unset: from ``level`` (``gmner`` for a Twitter-GMNER folder,
    ``coarse`` / ``fine`` for a Twitter-FMNERG one)."""

    dataset: str
    base_model: str
    output: str
    config: str | None = None
    format: str = "qwen-vl"  # qwen-vl | e2e-gmner (sake: refused, see the module doc)
    level: str = "coarse"  # coarse | fine
    method: str = "sft"  # sft | grpo
    reasoning: str | None = None  # E2E-GMNER teacher chains (jsonl); e2e-gmner only
    box_jitter: float = 0.0  # E2E-GMNER's GRBP strength (beta = gamma); 0: off
    instruction_file: str | None = None  # e2e-gmner: E2E-GMNER's INSTRUCTION
    system_prompt_file: str | None = None  # e2e-gmner: E2E-GMNER's DEFAULT_SYSTEM_PROMPT
    max_new_tokens: int | None = None  # validation answers; unset: from the longest training target
    validate_every: int = 1  # epochs between validations by generation (the last epoch is always validated)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    local_files_only: bool = False
    learning_rate: float | None = None
    lora: bool = True  # False: full fine-tuning
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    save: str = "merged"  # merged | adapter
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"
    # GRPO
    num_generations: int = 4
    max_completion_length: int | None = None
    temperature: float = 1.0
    reward: str = "gmner"  # gmner | sake | mean

    def __post_init__(self):
        if self.learning_rate is None:
            self.learning_rate = 1e-4 if self.lora else 1e-5
        if self.format == "sake":
            raise ValueError(SAKE_REFUSAL)
        choices = {"format": FORMATS, "level": LEVELS, "method": ("sft", "grpo"), "save": ("merged", "adapter"),
                   "reward": TOTALS}  # fmt: skip
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"--{name} {getattr(self, name)!r}: expected one of {list(valid)}")
        if (
            isinstance(self.validate_every, bool)
            or not isinstance(self.validate_every, int)
            or self.validate_every < 1
        ):
            raise ValueError(
                f"--validate-every {self.validate_every!r}: expected a whole number of epochs >= 1"
            )
        if not (isinstance(self.box_jitter, (int, float)) and 0.0 <= self.box_jitter <= 1.0):
            raise ValueError(
                f"--box-jitter {self.box_jitter!r}: expected a number in [0, 1] (E2E-GMNER trains with 0.1; 0 = off)"
            )
        if self.reasoning and self.format != "e2e-gmner":
            raise ValueError(
                "--reasoning trains E2E-GMNER's <think>...</think><answer>...</answer> layout; the qwen-vl reader "
                "reads a bare JSON answer. Pass --format e2e-gmner with --reasoning, or leave --reasoning out."
            )
        if self.format != "e2e-gmner" and (self.instruction_file or self.system_prompt_file):
            raise ValueError(
                "--instruction-file / --system-prompt-file are E2E-GMNER's prompts: --format e2e-gmner"
            )
        if self.num_generations < 2 and self.method == "grpo":
            raise ValueError(
                f"--num-generations {self.num_generations}: GRPO compares at least 2 answers per tweet"
            )


# ---------------------------------------------------------------------- data
def _resolve_config(args: ReaderTrainingArguments) -> str:
    """The dataset config of ``level`` in ``args.dataset`` (or ``args.config`` when given)."""
    if args.config:
        return args.config
    from datasets import get_dataset_config_names

    from ..data.folder import check_build_complete

    check_build_complete(args.dataset)
    names = list(get_dataset_config_names(str(args.dataset)))
    if args.level == "fine":
        if "fine" not in names:
            raise ValueError(
                f"--level fine needs a Twitter-FMNERG dataset (config 'fine'); {args.dataset} has configs {names}. "
                "Build one with `riveg data build twitter-fmnerg --images DIR --out DIR`."
            )
        return "fine"
    for name in ("gmner", "coarse"):
        if name in names:
            return name
    raise ValueError(
        f"{args.dataset} has configs {names}, none of Twitter-GMNER's 'gmner' or Twitter-FMNERG's 'coarse' / "
        "'fine'; pass --config NAME, or build the dataset with `riveg data build twitter-gmner --images DIR`."
    )


def load_reasoning(path: str) -> dict[str, str]:
    """``{image id: chain}`` from E2E-GMNER's teacher-chain layout (see the module doc): one JSON object a line
    with ``image_path`` and ``think`` / ``cot`` / ``reasoning``; the id is the image's file name without
    extension. A line that is not a JSON object is an error naming it."""
    chains: dict[str, str] = {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--reasoning {path}: no such file (a .jsonl of {{image_path, think}} lines)")
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as err:
                raise ValueError(f"--reasoning {path}:{lineno}: not JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(
                    f"--reasoning {path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
                )
            think = next((rec[k] for k in ("think", "cot", "reasoning") if isinstance(rec.get(k), str)), "")
            image = str(rec.get("image_path") or "").replace("\\", "/")
            if think.strip() and image:
                chains[Path(image).stem] = think.strip()
    if not chains:
        raise ValueError(
            f"--reasoning {path}: no line has both image_path and a non-empty think / cot / reasoning (E2E-GMNER's "
            'teacher-chain layout: {"image_path": "…/<IMGID>.jpg", "think": "…"})'
        )
    return chains


def reader_examples(
    split, *, reasoning: dict[str, str] | None = None, max_examples: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows of a gmner / fmnerg split -> one example per tweet with an image: its words, text, entities
    ``(name, type, [boxes])`` in text order (boxes in original pixels, ``[]`` = not visible), the metric's
    references and the reasoning chain (None without a reasoning file)."""
    from datasets import Image as ImageFeature

    names = split.features["entities"].feature["type"].names
    split = split.cast_column("image", ImageFeature(decode=False))
    out: list[dict[str, Any]] = []
    counts = {"rows": 0, "rows_without_image": 0, "tweets": 0, "tweets_without_entities": 0, "entities": 0,
              "visible_entities": 0}  # fmt: skip
    if reasoning is not None:
        counts["without_reasoning"] = 0
    for row in split:
        counts["rows"] += 1
        image = row["image"]
        if image is None or (image.get("bytes") is None and image.get("path") is None):
            counts["rows_without_image"] += 1
            continue
        ents, refs = [], []
        for e in sorted(row["entities"], key=lambda e: (e["start"], e["end"])):
            typ = names[e["type"]] if isinstance(e["type"], int) else str(e["type"])
            boxes = [list(map(float, b)) for b in e["boxes"]] if e["groundable"] else []
            ents.append((" ".join(row["tokens"][e["start"] : e["end"]]), typ, boxes))
            refs.append({"start": e["start"], "end": e["end"], "type": typ, "boxes": boxes})
        think = None
        if reasoning is not None:
            think = reasoning.get(str(row["id"]))
            if think is None and image.get("path"):
                think = reasoning.get(Path(str(image["path"])).stem)
            if think is None:
                counts["without_reasoning"] += 1
                think = ""
        out.append({"id": str(row["id"]), "image": LazyImage(image), "tokens": list(row["tokens"]),
                    "text": " ".join(row["tokens"]), "entities": ents, "references": refs, "think": think})  # fmt: skip
        counts["tweets"] += 1
        counts["tweets_without_entities"] += not ents
        counts["entities"] += len(ents)
        counts["visible_entities"] += sum(bool(b) for _, _, b in ents)
        if max_examples and len(out) >= max_examples:
            break
    return out, counts


# ---------------------------------------------------------------------- targets
def _gauss_delta(a: float, rng: random.Random) -> float:
    if a <= 0:
        return 0.0
    sigma = a / math.sqrt(3.0)
    cap = min(a, JITTER_TRUNC_K * sigma)
    return max(-cap, min(cap, rng.gauss(0.0, sigma)))


def _iou(a, b) -> float:
    from ..boxes import iou_xyxy

    return iou_xyxy(a, b)


def jitter_box(box, frame: tuple[int, int], strength: float, rng: random.Random) -> list[float]:
    """E2E-GMNER's GRBP jitter of one box in the pixels of ``frame`` (width, height) -- see the module doc.

    >>> b = jitter_box([10, 10, 50, 40], (100, 80), 0.1, random.Random(0))
    >>> _iou(b, [10, 10, 50, 40]) >= 0.6 and b != [10, 10, 50, 40]
    True
    """
    w_img, h_img = frame
    x0, y0, x1, y1 = (float(v) for v in box)
    gold = [
        max(0.0, min(w_img, x0)),
        max(0.0, min(h_img, y0)),
        max(0.0, min(w_img, x1)),
        max(0.0, min(h_img, y1)),
    ]
    w, h = gold[2] - gold[0], gold[3] - gold[1]
    a = strength * (JITTER_SMALL_BOX_SCALE if w * h < JITTER_MIN_AREA else 1.0)
    if w < JITTER_MIN_SIZE or h < JITTER_MIN_SIZE or a <= 0:
        return gold
    lo, hi = JITTER_SCALE_RANGE
    for _ in range(JITTER_TRIES):
        dx, dy = _gauss_delta(a, rng) * w, _gauss_delta(a, rng) * h
        sx = max(lo, min(hi, 1.0 + _gauss_delta(a, rng)))
        sy = max(lo, min(hi, 1.0 + _gauss_delta(a, rng)))
        w2, h2 = max(JITTER_MIN_SIZE, w * sx), max(JITTER_MIN_SIZE, h * sy)
        cx, cy = (gold[0] + gold[2]) / 2 + dx, (gold[1] + gold[3]) / 2 + dy
        j = [max(0.0, min(w_img, cx - w2 / 2)), max(0.0, min(h_img, cy - h2 / 2)),
             max(0.0, min(w_img, cx + w2 / 2)), max(0.0, min(h_img, cy + h2 / 2))]  # fmt: skip
        if j[2] - j[0] < JITTER_MIN_SIZE or j[3] - j[1] < JITTER_MIN_SIZE:
            continue  # E2E-GMNER returns the gold box for this draw, whose IoU (1) passes the guard
        if _iou(j, gold) >= JITTER_IOU_MIN:
            return j
    return gold


def _family_box(box, convention: str, image_size, input_size, jitter: float, rng) -> list[int]:
    """A gold box (original pixels) in the family's integer coordinates, jittered in the resized image first."""
    from ..stages.vlm_grounding import from_original_xyxy

    if not jitter:
        return from_original_xyxy(box, convention, image_size, input_size)
    in_frame = from_original_xyxy(
        box, "absolute", image_size, input_size
    )  # E2E-GMNER jitters the scaled ints
    j = jitter_box(in_frame, input_size, jitter, rng)
    if convention == "absolute":
        return [round(v) for v in j]
    iw, ih = input_size
    return [
        round(j[0] * 1000 / iw),
        round(j[1] * 1000 / ih),
        round(j[2] * 1000 / iw),
        round(j[3] * 1000 / ih),
    ]


def qwen_vl_target(
    entities, convention: str, image_size, input_size, *, jitter: float = 0.0, rng=None
) -> str:
    """The qwen-vl reader's answer for gold ``entities`` ``(name, type, [boxes])`` (original pixels).

    >>> qwen_vl_target([("Ferrari", "ORG", [[10, 8, 40, 30]]), ("Paris", "LOC", [])], "absolute", (64, 48), (56, 56))
    '[{"entity": "Ferrari", "type": "ORG", "bbox_2d": [9, 9, 35, 35]}, {"entity": "Paris", "type": "LOC", "bbox_2d": null}]'
    """
    objs = []
    for name, typ, boxes in entities:
        box = target_box(boxes)
        if box is not None:
            box = _family_box(box, convention, image_size, input_size, jitter, rng)
        objs.append({"entity": name, "type": typ, "bbox_2d": box})
    return json.dumps(objs, ensure_ascii=False)


def e2e_gmner_target(entities, image_size, input_size, *, think: str | None = None, jitter: float = 0.0,
                     rng=None) -> str:  # fmt: skip
    """E2E-GMNER's answer for gold ``entities`` ``(name, type, [boxes])`` (original pixels), boxes in the pixels
    of the resized image ``input_size``; wrapped in ``<think>``/``<answer>`` when ``think`` is given.

    >>> e2e_gmner_target([("Ferrari", "ORG", [[10, 8, 40, 30], [0, 0, 8, 8]]), ("Paris", "LOC", [])],
    ...                  (64, 48), (560, 420))
    'Ferrari|ORG|[[88,70,350,262],[0,0,70,70]]; Paris|LOC|None'
    >>> e2e_gmner_target([], (64, 48), (560, 420), think="no names")
    '<think>no names</think><answer>None</answer>'
    """
    parts = []
    for name, typ, boxes in entities:
        coords = [_family_box(b, "absolute", image_size, input_size, jitter, rng) for b in boxes]
        if not coords:
            field = "None"
        elif len(coords) == 1:
            field = "[" + ",".join(map(str, coords[0])) + "]"
        else:
            field = json.dumps(coords, separators=(",", ":"))
        parts.append(f"{name}|{typ}|{field}")
    answer = "; ".join(parts) if parts else "None"
    return answer if think is None else f"<think>{think}</think><answer>{answer}</answer>"


# ---------------------------------------------------------------------- encoding
class _ReaderEncoder(_Encoder):
    """The reader's chat + the target in its format, answer-only labels (the grounder's collate)."""

    def __init__(self, reader, fmt: str, jitter: float = 0.0, seed: int = 0):
        self.reader, self.fmt, self.jitter = reader, fmt, float(jitter)
        self.family = "vlm"
        self.proc = reader.processor
        self.tok = self.proc.tokenizer
        self.patch = int(getattr(self.proc.image_processor, "patch_size", 14) or 14)
        gen = reader.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tok.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        self.eos_text = self.tok.convert_ids_to_tokens(int(eos))
        self.rng = random.Random(seed)
        self.seen = 0  # training examples encoded in this process

    def image(self, x):
        return self.reader.sent_image(image_of(x))

    def prompt(self, x) -> str:
        from ..stages.reader import ReadRequest

        chat = self.reader.messages(ReadRequest(True, x["text"], x["id"]), True)
        return self.proc.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    def target(self, x, image, input_size, *, jitter: float | None = None) -> str:
        jitter = self.jitter if jitter is None else jitter
        if self.fmt == "e2e-gmner":
            return e2e_gmner_target(x["entities"], image.size, input_size, think=x.get("think"), jitter=jitter,
                                    rng=self.rng)  # fmt: skip
        return qwen_vl_target(x["entities"], self.reader.convention, image.size, input_size, jitter=jitter,
                              rng=self.rng)  # fmt: skip

    def collate(self, items):
        self.seen += len(items)
        return super().collate(items)

    def answer_tokens(self, x) -> int:
        """Tokens of ``x``'s target without jitter (for the generation budget)."""
        image = self.image(x)
        grid = self.proc.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
        return len(self.tok(self.target(x, image, self.input_size(grid), jitter=0.0))["input_ids"]) + 1


# ---------------------------------------------------------------------- scoring
def score_reader(reader, examples: list[dict[str, Any]], *, batch_size: int = 4, type_names=None,
                 state=None) -> dict[str, Any]:  # fmt: skip
    """MNER / EEG / GMNER P/R/F1 of the reader on ``examples``, by generation (the reader reads each tweet, its
    entities are put on words as the pipeline does, :func:`riveg_hf.metrics.compute_gmner` scores them), with the
    fraction of answers in the family's exact format. Under several processes each reads its share."""
    from ..metrics.core import compute_gmner
    from ..stages.reader import ReadRequest

    names = list(type_names or getattr(reader, "entity_types", None) or ENTITY_TYPES)
    indexed = list(enumerate(examples))
    if state is not None and state.num_processes > 1:
        with state.split_between_processes(indexed) as share:
            mine = list(share)
    else:
        mine = indexed
    readings = reader.read_many(
        [ReadRequest(image_of(x), x["text"], x["id"]) for _, x in mine], vision_batch_size=batch_size
    )
    reasoning = any(x.get("think") is not None for x in examples)
    local = [
        (i, answer_predictions(r.entities, word_offsets(x["tokens"])),
         format_reward(r.answer or "", reader.family, reasoning=reasoning))
        for (i, x), r in zip(mine, readings)
    ]  # fmt: skip
    if state is not None and state.num_processes > 1:
        from accelerate.utils import gather_object

        gathered = sorted(gather_object(local), key=lambda t: t[0])
    else:
        gathered = local
    scores = compute_gmner([p for _, p, _ in gathered], [x["references"] for x in examples],
                           ids=[x["id"] for x in examples], type_names=names)  # fmt: skip
    keep = ("mner_precision", "mner_recall", "mner_f1", "eeg_precision", "eeg_recall", "eeg_f1",
            "gmner_precision", "gmner_recall", "gmner_f1")  # fmt: skip
    return {**{k: float(scores[k]) for k in keep},
            "format_ok": sum(f for _, _, f in gathered) / max(1, len(gathered)),
            "examples": len(examples), "read_here": len(mine)}  # fmt: skip


# ---------------------------------------------------------------------- training
def _load(args: ReaderTrainingArguments, type_names: list[str]):
    from ..stages.reader import JointReader

    model, processor = JointReader.load_model_and_processor(
        args.base_model, local_files_only=args.local_files_only
    )
    options: dict[str, Any] = {}
    if args.format == "qwen-vl":
        options["entity_types"] = tuple(type_names)
    else:
        wrong = [t for t in type_names if t not in ENTITY_TYPES]
        if wrong:
            raise ValueError(
                f"--format e2e-gmner reads the types {list(ENTITY_TYPES)} only (E2E-GMNER's); {args.dataset} "
                f"({args.config}) has {wrong[:5]}{'...' if len(wrong) > 5 else ''}. Train fine types with --format "
                "qwen-vl."
            )
        options.update(instruction_file=args.instruction_file, system_prompt_file=args.system_prompt_file)
    try:
        return JointReader(model, processor, family=args.format, **options)
    except ValueError as err:
        raise ValueError(f"--base-model {args.base_model}: {err}") from None


def _prepare(args: ReaderTrainingArguments):
    from ..data import load_built_dataset

    args.config = _resolve_config(args)
    ds = load_built_dataset(args.dataset, args.config)
    if "train" not in ds:
        raise ValueError(f"{args.dataset} ({args.config}) has no train split")
    if "image" not in ds["train"].column_names:
        raise ValueError(f"{args.dataset} ({args.config}) has no images; build it with --images DIR.")
    type_names = list(ds["train"].features["entities"].feature["type"].names)
    chains = load_reasoning(args.reasoning) if args.reasoning else None
    train, counts = reader_examples(ds["train"], reasoning=chains, max_examples=args.max_train_samples)
    dev = []
    if "validation" in ds:
        dev, _ = reader_examples(ds["validation"], max_examples=args.max_eval_samples)
    if not train:
        raise ValueError(
            f"{args.dataset} ({args.config}): no training tweet with an image ({counts}). Rebuild the dataset with "
            "--images DIR."
        )
    if chains is not None and counts["without_reasoning"] == counts["tweets"]:
        raise ValueError(
            f"--reasoning {args.reasoning}: no chain matches a training tweet (matched by the image file name "
            f"without extension = the tweet id, e.g. {train[0]['id']!r})"
        )
    return train, dev, counts, type_names


def _budget(args, encoder, train) -> int:
    """The tokens of a generated answer: ``max_new_tokens``, else twice the longest training target (of the first
    256) and some. A cap under the longest target is warned about: those answers are cut before they end."""
    from ..stages.reader import MAX_NEW_TOKENS

    longest = max(encoder.answer_tokens(x) for x in train[:256])
    if args.max_new_tokens:
        _check_cap("--max-new-tokens", int(args.max_new_tokens), longest)
        return int(args.max_new_tokens)
    return min(MAX_NEW_TOKENS, max(64, 2 * longest + 16))


def _check_cap(flag: str, cap: int, longest: int) -> None:
    if cap < longest:
        import warnings

        warnings.warn(
            f"{flag} {cap} is under the longest gold answer of the training tweets ({longest} tokens with its end "
            "token): such answers are cut before they end -- validation reads them cut, and GRPO's sampled "
            "answers to those tweets can never end (all clipped, rewarded as unfinished). Leave it unset (twice "
            "the longest answer) or raise it.",
            stacklevel=3,
        )


def _record_head(args: ReaderTrainingArguments, reader, type_names) -> dict[str, Any]:
    return {
        "task": "reader",
        "method": args.method,
        "format": args.format,
        "family": reader.family,
        "model_type": reader.model_type,
        "base_model": args.base_model,
        "fine_tuning": "lora" if args.lora else "full",
        "level": args.level,
        "config": args.config,
        "entity_types": list(type_names),
        "reasoning": bool(args.reasoning),
        "box_jitter": args.box_jitter,
    }


def _config_extra(args, type_names) -> dict[str, Any]:
    return {"riveg_entity_types": list(type_names), "riveg_reader_family": args.format}


def _clear_previous(args, state) -> None:
    """An output folder's run record goes first: until the new one is written last, the folder is incomplete."""
    if state.is_main_process:
        (Path(args.output) / "riveg_run.json").unlink(missing_ok=True)


def _share_line(state, trained: int, read: int) -> None:
    if state.num_processes > 1:
        print(f"[process {state.process_index} of {state.num_processes}] trained on {trained} examples, read "
              f"{read} validation tweets", file=sys.stderr, flush=True)  # fmt: skip


def train_reader(args: ReaderTrainingArguments) -> dict[str, Any]:
    """Train a joint reader (see the module doc); returns the run record (also ``riveg_run.json``)."""
    if args.method == "grpo":
        return train_reader_grpo(args)
    from ..distributed import partial_state

    t0 = time.perf_counter()
    state = partial_state()
    train, dev, counts, type_names = _prepare(args)
    reader = _load(args, type_names)
    base_model = reader.model
    encoder = _ReaderEncoder(reader, args.format, args.box_jitter, args.seed)
    budget = _budget(args, encoder, train)
    model = trainable(base_model, args)
    best: dict[str, Any] = {"score": None}
    read = {"n": 0}
    last: dict[str, Any] = {}

    def validate(unwrapped, epoch: int, step: int, *, final: bool = False):
        last.update(epoch=epoch, step=step, validated=False)
        if not dev or (epoch % args.validate_every and not final):
            return None
        last["validated"] = True
        base_model.config.use_cache = True
        reader.max_new_tokens = budget
        scores = score_reader(reader, dev, batch_size=args.batch_size, type_names=type_names, state=state)
        read["n"] += scores.pop("read_here")
        base_model.config.use_cache = False
        if state.is_main_process:
            print(f"epoch {epoch}: validation " + json.dumps({k: round(v, 4) for k, v in scores.items()}))
        keep_if_best(best, scores, epoch, step, unwrapped)
        return {"validation": scores}

    _clear_previous(args, state)
    cfg = accelerate_loop(
        model, train, encoder.collate, lambda m, b: m(**b).loss, args, on_epoch_end=validate
    )
    if dev and last and not last["validated"]:  # the last epoch fell between validations
        extra = validate(model, last["epoch"], last["step"], final=True)
        cfg.history.append({"epoch": last["epoch"], "step": last["step"], **extra})
    end_training(model, base_model, args, best)
    _share_line(state, encoder.seen, read["n"])
    record: dict[str, Any] = {
        **_record_head(args, reader, type_names),
        "arguments": asdict(args),
        "train_examples": counts,
        "loss_history": [h for h in cfg.history if "loss" in h],
        "validation_history": [h for h in cfg.history if "validation" in h],
        "validation_max_new_tokens": budget,
        "data": dataset_provenance(args.dataset, args.config),
    }
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        record["examples_per_process"] = gather_object([encoder.seen])
    if best["score"] is not None:
        record["validation"] = best["scores"]
        record["best_epoch"] = best["epoch"]
        record["best_validation_gmner_f1"] = best["score"]
    return _save(
        model, reader, record, args, state, t0, kind="reader", config_extra=_config_extra(args, type_names)
    )


# ---------------------------------------------------------------------- GRPO
def grpo_dataset(reader, encoder: _ReaderEncoder, train: list[dict[str, Any]]):
    """GRPO's prompts: one row per training tweet with what the rewards read (its words, gold references, the
    image's original and resized sizes), and -- attached when a row is drawn -- the reader's own chat
    (:meth:`JointReader.messages`) and the image exactly as the reader sends it (:meth:`JointReader.sent_image`).
    The image is never stored in the dataset: ``datasets`` would re-encode it (a decoded JPEG as a new, lossy JPEG)
    and GRPO would sample answers for other pixels than the reader sees (nor would a training split's decoded
    images have to fit in memory)."""
    from datasets import Dataset

    from ..stages.reader import ReadRequest

    proc = reader.processor
    rows = []
    for i, x in enumerate(train):
        image = encoder.image(x)
        grid = proc.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
        rows.append({"index": i, "tokens": json.dumps(x["tokens"]), "references": json.dumps(x["references"]),
                     "original_size": list(image_of(x).size), "input_size": list(encoder.input_size(grid))})  # fmt: skip

    def with_chat(batch: dict[str, list]) -> dict[str, list]:
        images = [encoder.image(train[i]) for i in batch["index"]]
        prompts = [reader.messages(ReadRequest(im, train[i]["text"], train[i]["id"]), im)
                   for i, im in zip(batch["index"], images)]  # fmt: skip
        return {**batch, "prompt": prompts, "image": images}

    return Dataset.from_list(rows).with_transform(with_chat)


def completion_answer(tok, ids, completion: Any = None) -> str:
    """A sampled completion's answer as the reader reads its own (:meth:`JointReader._generate`): the tokens up to
    the first end-of-sequence or padding token, decoded with the special tokens kept and cut at an end marker --
    not TRL's ``completions`` text (decoded with ``skip_special_tokens``, cut at the generation's EOS only).
    Without ``ids``, the text of ``completion`` (a string, or chat messages)."""
    if ids is None:
        if isinstance(completion, str):
            return completion
        return "".join(m.get("content", "") for m in completion or () if isinstance(m.get("content"), str))
    from ..stages.grounders.qwen_vl import strip_end

    stops = {tok.eos_token_id, tok.pad_token_id} - {None}
    ids = [int(t) for t in ids]
    end = next((k for k, t in enumerate(ids) if t in stops), len(ids))
    return strip_end(tok.decode(ids[:end], skip_special_tokens=False))


def train_reader_grpo(args: ReaderTrainingArguments) -> dict[str, Any]:
    """Reinforcement fine-tuning with TRL's GRPO and the rewards of :mod:`riveg_hf.training.rewards`."""
    require_trl()
    from ..distributed import partial_state

    t0 = time.perf_counter()
    state = partial_state()
    train, dev, counts, type_names = _prepare(args)
    reader = _load(args, type_names)
    encoder = _ReaderEncoder(reader, args.format, 0.0, args.seed)
    budget = _budget(args, encoder, train)
    if args.max_completion_length:
        _check_cap("--max-completion-length", int(args.max_completion_length),
                   max(encoder.answer_tokens(x) for x in train[:256]))  # fmt: skip
    tok = reader.processor.tokenizer
    tok.padding_side = "left"
    data = grpo_dataset(reader, encoder, train)
    reasoning = bool(args.reasoning)
    cache: dict[tuple, dict[str, float]] = {}

    def scores_of(answer, tokens, references, original_size, input_size) -> dict[str, float]:
        key = (answer, tokens, references, tuple(original_size))
        if key not in cache:
            if len(cache) > 4096:
                cache.clear()
            cache[key] = answer_rewards(reader, answer, json.loads(tokens), json.loads(references), original_size,
                                        input_size, type_names=type_names, reasoning=reasoning)  # fmt: skip
        return cache[key]

    def component(name: str):
        def reward(completions, tokens, references, original_size, input_size, completion_ids=None, **_):
            out = []
            ids = completion_ids if completion_ids is not None else [None] * len(completions)
            for c, c_ids, tk, r, o, i in zip(completions, ids, tokens, references, original_size, input_size):
                s = scores_of(completion_answer(tok, c_ids, c), tk, r, o, i)
                out.append(total_reward(s, args.reward) if name == "total" else float(s[name]))
            return out

        reward.__name__ = f"total_{args.reward}" if name == "total" else name
        return reward

    funcs = [component("total"), *(component(n) for n in COMPONENTS)]
    _clear_previous(args, state)
    model, history = run_grpo(
        args,
        reader.model,
        reader.processor,
        funcs,
        data,
        state=state,
        max_completion_length=args.max_completion_length or budget,
        reward_weights=[1.0] + [0.0] * len(COMPONENTS),
    )  # the total trained on, the others logged
    names = [f.__name__ for f in funcs]
    record: dict[str, Any] = {
        **_record_head(args, reader, type_names),
        "arguments": asdict(args),
        "train_examples": counts,
        "reward_history": [
            {"step": h.get("step"), **{n: h[f"rewards/{n}/mean"] for n in names if f"rewards/{n}/mean" in h}}
            for h in history
            if any(f"rewards/{n}/mean" in h for n in names)
        ],
        "log_history": history,
        "data": dataset_provenance(args.dataset, args.config),
    }
    if dev:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        reader.model = inner
        inner.config.use_cache = True
        reader.max_new_tokens = budget
        scores = score_reader(reader, dev, batch_size=args.batch_size, type_names=type_names, state=state)
        scores.pop("read_here")
        record["validation"] = scores
        record["best_validation_gmner_f1"] = scores["gmner_f1"]
    return _save(
        model, reader, record, args, state, t0, kind="reader", config_extra=_config_extra(args, type_names)
    )
