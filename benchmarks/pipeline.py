"""Pipeline efficiency with full-size architectures at random initialisation (random weights cost the same
compute as trained ones), on CPU unless --device says otherwise:

* recognizer: bert-base (the architecture of dslim/bert-base-NER);
* entailment: BLIP ITM base (blip-itm-base-coco's architecture, 384 px);
* grounder: Grounding DINO tiny (Swin-T, 900 queries, 800 px shortest edge);
* segmenter: SAM 2.1 hiera-tiny (1024 px);
* with ``--expander``: the expander LLM of the riveg-2024 preset (Qwen2.5-0.5B size, its 151,936-token vocabulary).

Prints (a benchmark: it measures and prints, it never fails on time):
1. the cost of one tweet with 1, 2, 4, 8 entities (goal: 8 entities <= 1.5x one entity), with the number of
   vision-encoder calls per image;
2. tweets/s per batch size (``--batch-sizes 1,8,32``; the vision models get the same number of images per forward),
   with the model time per stage, and whether the results equal those of the first batch size;
3. the pipeline's own overhead as a share of the models' forward time (goal <= 10%);
4. peak memory;
5. entity scaling: one image with 10 / 100 / 1000 entities through the grounder (tiny random Grounding DINO,
   every word an entity), with the per-image cap off and at its default (100): seconds per entity must stay
   flat (linear cost), and with the cap the entities past it are kept with a note.

    python benchmarks/pipeline.py [--tweets 64] [--batch-sizes 1,8,32] [--device cpu|cuda] [--dtype bfloat16]
                                  [--no-segmenter]
    python benchmarks/pipeline.py --scaling-only        # section 5 alone, about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import (
    BertConfig,
    BertForTokenClassification,
    BlipConfig,
    BlipForImageTextRetrieval,
    BlipImageProcessor,
    BlipProcessor,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    Sam2Config,
    Sam2ImageProcessor,
    Sam2Model,
    Sam2Processor,
)

from riveg_hf import RiVEGPipeline
from riveg_hf.testing import NER_LABELS, tiny_bert_tokenizer

WORDS = "Obama Paris NASA Messi Tokyo Apple Berlin Ferrari Nike Rome".split()


QWEN_VOCAB = 151936
_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
             "<|endoftext|>"]  # fmt: skip


def qwen_tokenizer():
    """A word-level tokenizer with Qwen's vocabulary size and chat special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from riveg_hf.testing import _VLM_CHAT_TEMPLATE

    vocab = {f"w{i}": i for i in range(QWEN_VOCAB - len(_SPECIALS) - 1)}
    vocab["[UNK]"] = len(vocab)
    for s in _SPECIALS:
        vocab[s] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="<|endoftext|>",
                                  eos_token="<|im_end|>", additional_special_tokens=_SPECIALS)  # fmt: skip
    tok.chat_template = _VLM_CHAT_TEMPLATE
    return tok


def expander():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = qwen_tokenizer()
    cfg = Qwen2Config(vocab_size=QWEN_VOCAB, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    return Qwen2ForCausalLM(cfg).eval(), tok


def build(device: str, segmenter: bool, with_expander: bool = False) -> RiVEGPipeline:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tok = tiny_bert_tokenizer()
        rec = BertForTokenClassification(
            BertConfig(
                num_labels=len(NER_LABELS),
                id2label=dict(enumerate(NER_LABELS)),
                label2id={n: i for i, n in enumerate(NER_LABELS)},
            )
        ).eval()
        with torch.no_grad():  # tag every word B-PER, so a tweet of n words has n entities
            rec.classifier.bias.fill_(-30.0)
            rec.classifier.bias[NER_LABELS.index("B-PER")] = 30.0
        gtok = tiny_bert_tokenizer(lowercase=True, bert_base_ids=True)
        gd = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
        gproc = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=gtok)
        blip = BlipForImageTextRetrieval(BlipConfig()).eval()
        bproc = BlipProcessor(
            image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
            tokenizer=tiny_bert_tokenizer(lowercase=True),
        )
        comps = {"recognizer": (rec, tok), "entailment": (blip, bproc), "grounder": (gd, gproc)}
        if with_expander:
            comps["expander"] = expander()
        if segmenter:
            comps["segmenter"] = (
                Sam2Model(Sam2Config()).eval(),
                Sam2Processor(image_processor=Sam2ImageProcessor()),
            )
    return RiVEGPipeline.from_components(**comps, entailment_threshold=0.0, box_threshold=0.0, device=device)


class ModelClock:
    """Wall time spent inside each component model's forward (and generate), and vision-encoder calls."""

    def __init__(self, pipe: RiVEGPipeline):
        self.seconds = 0.0
        self.by_stage: dict[str, float] = {}
        self.vision_calls = {"entailment": 0, "grounder": 0, "segmenter": 0}
        self._depth = 0
        st = pipe.stages
        for name, stage in st.items():
            if stage.model is not None:
                stage.model.register_forward_pre_hook(lambda *a, n=name: self._start(n))
                stage.model.register_forward_hook(self._stop)
        encoders = {
            "entailment": st["entailment"].model.vision_model,
            "grounder": st["grounder"].model.model.backbone,
        }
        if "segmenter" in st:
            encoders["segmenter"] = st["segmenter"].model.vision_encoder
        for name, mod in encoders.items():
            mod.register_forward_hook(
                lambda *a, n=name: self.vision_calls.__setitem__(n, self.vision_calls[n] + 1)
            )
        # sub-modules called directly by the stages (BLIP's vision/text encoders, ITM head)
        for mod in (
            st["entailment"].model.vision_model,
            st["entailment"].model.text_encoder,
            st["entailment"].model.itm_head,
        ):
            mod.register_forward_pre_hook(lambda *a: self._start("entailment"))
            mod.register_forward_hook(self._stop)

    def _start(self, name):
        if self._depth == 0:
            self._t, self._name = time.perf_counter(), name
        self._depth += 1

    def _stop(self, *args):
        self._depth -= 1
        if self._depth == 0:
            dt = time.perf_counter() - self._t
            self.seconds += dt
            self.by_stage[self._name] = self.by_stage.get(self._name, 0.0) + dt

    @contextlib.contextmanager
    def measure(self):
        self.seconds = 0.0
        self.by_stage = {}
        for k in self.vision_calls:
            self.vision_calls[k] = 0
        t = time.perf_counter()
        yield self
        self.total = time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tweets", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-segmenter", action="store_true")
    ap.add_argument(
        "--expander",
        action="store_true",
        help="add the riveg-2024 preset's expander (Qwen2.5-0.5B size): the default preset in full",
    )
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--scaling-only", action="store_true", help="only section 5 (entity scaling)")
    ap.add_argument(
        "--batch-sizes", default="1,8", help="section 2: comma-separated batch sizes, e.g. 1,8,32"
    )
    ap.add_argument(
        "--vision-batch-size",
        type=int,
        default=None,
        help="section 2: images per vision forward, fixed (default: equal to the batch size)",
    )
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="model dtype")
    ap.add_argument(
        "--skip-entity-sections",
        action="store_true",
        help="skip sections 1 and 5 (cost per entity count, entity scaling): throughput, overhead, memory only",
    )
    a = ap.parse_args()
    if a.scaling_only:
        entity_scaling(a.device)
        return
    from skimage import data

    from riveg_hf.images import to_rgb

    photos = [
        to_rgb(__import__("PIL.Image", fromlist=["Image"]).fromarray(x))
        for x in (data.astronaut(), data.rocket(), data.coffee(), data.chelsea())
    ]
    pipe = build(a.device, not a.no_segmenter, a.expander)
    if a.dtype:
        pipe.model.to(getattr(torch, a.dtype))
    clock = ModelClock(pipe)
    print(hardware(a.device))
    print(
        f"device {a.device}; components: "
        + ", ".join(f"{k}={type(v.model).__name__}" for k, v in pipe.stages.items() if v.model is not None)
    )
    pipe({"text": "warm up", "image": photos[0]})

    print(
        f"\n1. one tweet, n entities (best of {a.repeat})" + (": skipped" if a.skip_entity_sections else "")
    )
    base = None
    for n in () if a.skip_entity_sections else (1, 2, 4, 8):
        best = None
        for _ in range(a.repeat):
            with clock.measure():
                out = pipe({"text": " ".join(WORDS[:n]), "image": photos[0]})
            best = clock.total if best is None else min(best, clock.total)
        assert len(out) == n
        base = base or best
        print(
            f"   {n} entities: {best:6.2f} s  ({best / base:.2f}x one entity)   vision-encoder calls: "
            f"{clock.vision_calls}"
        )

    vbs = f"vision batch {a.vision_batch_size}" if a.vision_batch_size else "vision batch = batch"
    print(
        f"\n2. throughput over {a.tweets} tweets (4 entities each, 4 photos in turn) per batch size ({vbs})"
    )
    inputs = [{"text": " ".join(WORDS[i % 6 : i % 6 + 4]), "image": photos[i % 4]} for i in range(a.tweets)]
    sizes = [int(x) for x in a.batch_sizes.split(",")]
    runs = {}
    for bs in sizes:
        with clock.measure():
            out = pipe(inputs, batch_size=bs, vision_batch_size=a.vision_batch_size or bs)
        runs[bs] = (clock.total, clock.seconds, dict(clock.by_stage), out)
    t_one, m_one, _, ref = runs[sizes[0]]
    print("   batch | tweets/s | speed-up | model time per stage (s)")
    for bs, (t, _m, stages, out) in runs.items():
        same = f"{_close(out, ref)} ({_diff(out, ref)})"
        per = ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items()))
        print(
            f"   {bs:5d} | {a.tweets / t:8.3f} | {t_one / t:7.2f}x | {per}   results equal to batch {sizes[0]}: {same}"
        )
    t_batch, m_batch = runs[sizes[-1]][0], runs[sizes[-1]][1]

    print("\n3. pipeline overhead (time outside model forwards) / model forward time")
    print(
        f"   batch {sizes[0]}: {(t_one - m_one) / m_one:6.1%}   batch {sizes[-1]}: {(t_batch - m_batch) / m_batch:6.1%}"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n4. peak memory: {rss:.0f} MiB resident"
        + (f", {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB CUDA" if torch.cuda.is_available() else "")
    )
    if not a.skip_entity_sections:
        entity_scaling(a.device)


def hardware(device: str) -> str:
    """One line naming the machine the numbers come from."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    line = f"hardware: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.startswith("cuda") and torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name(device)}"
    return line


def _diff(a, b) -> str:
    """How far two outputs are apart: equal entities? the largest box (px) and score differences."""
    if [[e["entity"] for e in x] for x in a] != [[e["entity"] for e in x] for x in b]:
        return "different entities"
    box = score = 0.0
    boxed = 0
    for x, y in zip(a, b):
        for e, f in zip(x, y):
            if (e["box"] is None) != (f["box"] is None):
                boxed += 1
            elif e["box"] is not None:
                box = max(box, max(abs(e["box"][k] - f["box"][k]) for k in e["box"]))
            for k in ("box_score", "groundable_score"):
                if e[k] is not None and f[k] is not None:
                    score = max(score, abs(e[k] - f[k]))
    return f"max box diff {box:.2g} px, max score diff {score:.2g}, visibility differs for {boxed}"


def _close(a, b, tol=1e-3) -> bool:
    """Same entities, boxes within ``tol`` px and scores within 1e-4 (batched vs one by one)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if len(x) != len(y):
            return False
        for e, f in zip(x, y):
            if e["entity"] != f["entity"] or (e["box"] is None) != (f["box"] is None):
                return False
            if e["box"] is not None and max(abs(e["box"][k] - f["box"][k]) for k in e["box"]) > tol:
                return False
            for k in ("box_score", "groundable_score"):
                if e[k] is not None and f[k] is not None and abs(e[k] - f[k]) > 1e-4:
                    return False
    return True


def entity_scaling(device: str) -> None:
    """Section 5: cost against the number of entities of one image (tiny models: the pipeline's own cost)."""
    from PIL import Image

    from riveg_hf.pipeline import DEFAULT_MAX_ENTITIES_PER_IMAGE
    from riveg_hf.testing import every_word_recognizer, tiny_grounding_dino

    pipe = RiVEGPipeline.from_components(
        recognizer=every_word_recognizer(), grounder=tiny_grounding_dino(), box_threshold=0.0, device=device
    )
    image = Image.new("RGB", (320, 240), (120, 80, 40))
    print("\n5. entity scaling: one image, n entities (tiny random Grounding DINO; the pipeline's own cost)")
    pipe({"text": "warm up", "image": image})
    for cap in (None, DEFAULT_MAX_ENTITIES_PER_IMAGE):
        base = None
        for n in (10, 100, 1000):
            text = " ".join(f"w{i}" for i in range(n))
            t0 = time.perf_counter()
            out = pipe({"text": text, "image": image}, max_entities_per_image=cap)
            dt = time.perf_counter() - t0
            assert len(out) == n
            skipped = sum("grounding" in e for e in out)
            base = base or dt / n
            print(
                f"   cap={cap!s:>4}  {n:5d} entities: {dt:7.2f} s  {1000 * dt / n:6.2f} ms/entity "
                f"({dt / n / base:.2f}x the 10-entity rate)  grounded {n - skipped}, kept with a note {skipped}"
            )


if __name__ == "__main__":
    main()
