"""Per-preset cost with full-size architectures at random initialisation (random weights cost the compute of
trained ones; no vision weights are downloadable here): the cost of one tweet with 1 / 2 / 4 / 8 entities,
the tokens generated per image (expander and VLM grounder), and peak memory, for each preset of
``riveg_hf.pipeline.PRESETS``:

* ``riveg-2024``: bert-base recognizer, Qwen2.5-0.5B expander, BLIP ITM base, Grounding DINO tiny, SAM 2.1 tiny;
* ``vlm``: bert-base, Qwen2.5-0.5B, Qwen2.5-VL-3B (joint visibility + grounding), SAM 2.1 tiny;
* ``sam3``: bert-base, Qwen2.5-0.5B, SAM 3 (text-prompted: finds box and mask from the description).

The language models use their real vocabulary sizes (151,936) with a word-level tokenizer of that size, so the
output layer costs what it costs. A random-weight generator never stops early: the token counts are the
pipeline's budgets (``max_new_tokens``), the worst case; a trained model stops at its answer's end.
Each preset runs in its own process (its peak memory is its own). A benchmark: it measures and prints.

    python benchmarks/presets.py [--presets riveg-2024,vlm,sam3] [--device cpu|cuda] [--dtype bfloat16]
                                 [--entities 1,2,4,8] [--tweets 32 --batch-sizes 1,8,32]

With ``--tweets N`` each preset also runs N tweets (``--throughput-entities`` entities each, the four scikit-image
photos of different sizes in turn) at each of ``--batch-sizes`` (the vision stages get as many images per forward
as the batch holds, unless ``--vision-batch-size`` fixes it, or a size is written ``B:V``, V images per vision
forward): tweets/s, the speed-up over the first row, and whether the results equal the first row's (boxes within
1e-3 px, scores within 1e-4). E.g. ``--tweets 4 --batch-sizes 1,4:1,4`` on the vlm preset.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import _SPECIALS, QWEN_VOCAB, _close, _diff, expander, hardware, qwen_tokenizer


def qwen2_5_vl_3b():
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tok = qwen_tokenizer()
    ids = {s: tok.convert_tokens_to_ids(s) for s in _SPECIALS}
    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": QWEN_VOCAB, "hidden_size": 2048, "intermediate_size": 11008,
                     "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
                     "max_position_embeddings": 128000, "tie_word_embeddings": True,
                     "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
    )  # fmt: skip
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    # the released processor's pixel budget (up to 12.8 M pixels; tweets' photos are ~1 MP)
    proc = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tok,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=tok.chat_template)  # fmt: skip
    return model, proc


def sam3():
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from riveg_hf.testing import tiny_clip_tokenizer

    return Sam3Model(Sam3Config()).eval(), Sam3Processor(image_processor=Sam3ImageProcessor(),
                                                         tokenizer=tiny_clip_tokenizer(max_length=32))  # fmt: skip


def build(preset: str, device: str, dtype):
    from pipeline import build as build_2024  # the full-size riveg-2024 stages of benchmarks/pipeline.py

    from riveg_hf import RiVEGPipeline

    torch.manual_seed(0)
    base = build_2024("cpu", segmenter=preset != "sam3")
    comps = {name: (st.model, st.processor) for name, st in base.stages.items()}
    comps["expander"] = expander()
    opts = {"entailment_threshold": 0.0, "box_threshold": 0.0}
    if preset == "vlm":
        del comps["entailment"]
        comps["grounder"] = qwen2_5_vl_3b()
        opts = {"visibility": "grounder", "box_threshold": 0.0}
    elif preset == "sam3":
        for k in ("entailment", "grounder"):
            comps.pop(k, None)
        comps["segmenter"] = sam3()
        opts = {"box_threshold": 0.0}
    task = "segmented-mner"
    return RiVEGPipeline.from_components(**comps, task=task, device=device, dtype=dtype, **opts)


def throughput(pipe, tweets: int, n_entities: int, batch_sizes: list[int], vision_batch_size) -> list[dict]:
    """tweets/s per batch size over ``tweets`` tweets of ``n_entities`` entities, photos of 4 sizes in turn."""
    from PIL import Image
    from skimage import data

    from riveg_hf.images import to_rgb

    photos = [
        to_rgb(Image.fromarray(x)) for x in (data.astronaut(), data.rocket(), data.coffee(), data.chelsea())
    ]
    words = "Obama Paris NASA Messi Tokyo Apple Berlin Ferrari Nike Rome".split()
    inputs = [
        {"text": " ".join(words[i % 6 : i % 6 + n_entities]), "image": photos[i % 4]} for i in range(tweets)
    ]
    rows, ref = [], None
    for spec in batch_sizes:  # "B" (vision batch = B, or --vision-batch-size) or "B:V" (vision batch V)
        bs, _, v = str(spec).partition(":")
        bs, vbs = int(bs), int(v) if v else (vision_batch_size or int(bs))
        _sync()
        t0 = time.perf_counter()
        out = pipe(inputs, batch_size=bs, vision_batch_size=vbs)
        _sync()
        dt = time.perf_counter() - t0
        ref = out if ref is None else ref
        rows.append({"batch_size": bs, "vision_batch_size": vbs, "seconds": round(dt, 2), "tweets_per_s": round(tweets / dt, 3),
                     "equal_to_first": _close(out, ref), "diff": _diff(out, ref)})  # fmt: skip
    return rows


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_one(preset: str, device: str, dtype: str | None, entities: list[int], tp: dict | None = None) -> dict:
    from PIL import Image

    from riveg_hf.stages.vlm_grounding import max_new_tokens_for  # noqa: F401  (documents the budget)

    pipe = build(preset, device, getattr(torch, dtype) if dtype else None)
    params = {
        n: sum(p.numel() for p in st.model.parameters())
        for n, st in pipe.stages.items()
        if st.model is not None
    }
    generated = {"expander": 0, "grounder": 0}
    for name in generated:
        st = pipe.stages.get(name)
        if st is None or st.model is None or not hasattr(st.model, "generate"):
            continue
        real = st.model.generate

        def counting(*a, _real=real, _name=name, **kw):
            out = _real(*a, **kw)
            seqs = out.sequences if hasattr(out, "sequences") else out
            prompt = kw["input_ids"].shape[1] if "input_ids" in kw else 0
            generated[_name] += int((seqs.shape[1] - prompt) * seqs.shape[0])
            return out

        st.model.generate = counting
    image = Image.new("RGB", (1024, 768), (120, 80, 40))
    words = "Obama Paris NASA Messi Tokyo Apple Berlin Ferrari".split()
    pipe({"text": "warm", "image": image})
    rows = []
    for n in entities:
        for k in generated:
            generated[k] = 0
        t0 = time.perf_counter()
        out = pipe({"text": " ".join(words[:n]), "image": image})
        dt = time.perf_counter() - t0
        rows.append(
            {"entities": n, "found": len(out), "seconds": round(dt, 2), "generated_tokens": dict(generated)}
        )
    tp_rows = throughput(pipe, **tp) if tp else []
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    peak = {"peak_rss_gib": round(rss, 2)}
    if torch.cuda.is_available():
        peak["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return {
        "preset": preset,
        "params_m": {k: round(v / 1e6) for k, v in params.items()},
        "rows": rows,
        "throughput": tp_rows,
        **peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="riveg-2024,vlm,sam3")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--entities", default="1,2,4,8")
    ap.add_argument(
        "--tweets", type=int, default=0, help="throughput section: tweets per batch size (0: skip)"
    )
    ap.add_argument("--batch-sizes", default="1,8,32", help="throughput section: comma-separated batch sizes")
    ap.add_argument(
        "--throughput-entities", type=int, default=2, help="throughput section: entities per tweet"
    )
    ap.add_argument(
        "--vision-batch-size", type=int, default=None, help="throughput: fixed images per forward"
    )
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one preset in this process
    a = ap.parse_args()
    entities = [int(x) for x in a.entities.split(",")] if a.entities else []
    if a.one:
        tp = None
        if a.tweets:
            tp = {"tweets": a.tweets, "n_entities": a.throughput_entities,
                  "batch_sizes": a.batch_sizes.split(","),
                  "vision_batch_size": a.vision_batch_size}  # fmt: skip
        print("RESULT " + json.dumps(run_one(a.one, a.device, a.dtype, entities, tp)))
        return
    print(hardware(a.device) + f"; device {a.device}, dtype {a.dtype or 'float32'}")
    for preset in a.presets.split(","):
        cmd = [sys.executable, __file__, "--one", preset, "--device", a.device, "--entities", a.entities,
               "--tweets", str(a.tweets), "--batch-sizes", a.batch_sizes,
               "--throughput-entities", str(a.throughput_entities)]  # fmt: skip
        if a.vision_batch_size:
            cmd += ["--vision-batch-size", str(a.vision_batch_size)]
        if a.dtype:
            cmd += ["--dtype", a.dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"\n{preset}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
            continue
        r = json.loads(line[7:])
        print(f"\n{preset}: parameters (M) {r['params_m']}, peak RSS {r['peak_rss_gib']} GiB"
              + (f", peak GPU {r['peak_cuda_gib']} GiB" if "peak_cuda_gib" in r else ""))  # fmt: skip
        base = r["rows"][0]["seconds"] if r["rows"] else None
        for row in r["rows"]:
            g = row["generated_tokens"]
            print(f"   {row['entities']} entities: {row['seconds']:8.2f} s/tweet ({row['seconds'] / base:4.2f}x one entity)"
                  f"  generated tokens: expander {g['expander']}, grounder {g['grounder']}")  # fmt: skip
        if r["throughput"]:
            first = r["throughput"][0]
            print(f"   throughput, {a.tweets} tweets x {a.throughput_entities} entities:")
            for row in r["throughput"]:
                print(f"     batch {row['batch_size']:3d}, vision batch {row['vision_batch_size']:3d}: "
                      f"{row['tweets_per_s']:8.3f} tweets/s ({first['seconds'] / row['seconds']:5.2f}x the first row)"
                      f"  results equal to the first row: {row['equal_to_first']} ({row['diff']})")  # fmt: skip


if __name__ == "__main__":
    main()
