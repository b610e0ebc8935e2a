"""Scoring speed on the Twitter-GMNER test split: riveg_hf.metrics.compute_gmner vs an O(n*m) scan.

The research scorers compare every prediction with every gold entity of the split (RiVEG's
statistic.py). Both are run on the same inputs here; results must agree, and the ratio of
wall times is printed. A benchmark: it measures and prints, it does not pass or fail on time.

    python benchmarks/metrics_speed.py [--data ../shared/data] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from riveg_hf.boxes import iou_xyxy
from riveg_hf.data import gmner_records
from riveg_hf.metrics import compute_gmner
from tests.helpers import find_shared_data


def naive_counts(preds, golds):
    """The straightforward scorer: for each metric and each prediction, scan every gold entity of the split.

    Entities are flattened with their example id, as a scorer reading two files does; a gold entity is
    matched at most once per metric. Returns the correct counts of MNER, EEG and GMNER.
    """
    flat_g = [{**g, "id": i} for i, ex in enumerate(golds) for g in ex]
    flat_p = [{**p, "id": i} for i, ex in enumerate(preds) for p in ex]

    def region_ok(p, g):
        if p["box"] is None:
            return not g["boxes"]
        return any(iou_xyxy(p["box"], b) >= 0.5 for b in g["boxes"])

    rules = {
        "mner": lambda p, g: p["type"] == g["type"],
        "eeg": lambda p, g: region_ok(p, g),
        "gmner": lambda p, g: p["type"] == g["type"] and region_ok(p, g),
    }
    counts = {}
    for name, rule in rules.items():
        used = set()
        correct = 0
        for p in flat_p:
            for k, g in enumerate(flat_g):
                if (
                    g["id"] == p["id"]
                    and g["start"] == p["start"]
                    and g["end"] == p["end"]
                    and k not in used
                    and rule(p, g)
                ):
                    used.add(k)
                    correct += 1
                    break
        counts[name] = correct
    return counts


def noisy_predictions(golds, seed=0):
    rng = random.Random(seed)
    out = []
    for ex in golds:
        preds = []
        for g in ex:
            if rng.random() < 0.15:
                continue  # missed
            t = g["type"] if rng.random() > 0.1 else rng.choice(["PER", "LOC", "ORG", "OTHER"])
            if g["boxes"] and rng.random() > 0.2:
                x0, y0, x1, y1 = g["boxes"][0]
                d = rng.uniform(-0.3, 0.3) * (x1 - x0)
                box = [x0 + d, y0, x1 + d, y1]
            else:
                box = None if rng.random() > 0.1 else [0, 0, 50, 50]
            preds.append({"start": g["start"], "end": g["end"], "type": t, "box": box})
        if rng.random() < 0.2:
            preds.append({"start": 0, "end": 1, "type": "PER", "box": None})  # spurious
        out.append(preds)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--splits", default="test", help="comma-separated, e.g. test,train (the ratio grows with n)"
    )
    a = ap.parse_args()
    data = Path(a.data) if a.data else find_shared_data()
    for split in a.splits.split(","):
        run(data, split, a.repeat)


def run(data, split, repeat):
    golds = [r["entities"] for r in gmner_records(data / "twitter-gmner" / "v2.0", split)]
    preds = noisy_predictions(golds)
    n_gold = sum(map(len, golds))
    n_pred = sum(map(len, preds))
    fast = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = compute_gmner(preds, golds)
        fast.append(time.perf_counter() - t)
    t = time.perf_counter()
    naive_correct = naive_counts(preds, golds)
    naive = time.perf_counter() - t
    fast_correct = {k: round(r[f"{k}_precision"] * n_pred) for k in naive_correct}
    assert naive_correct == fast_correct, (naive_correct, fast_correct)  # same results on the same inputs
    print(
        f"Twitter-GMNER v2.0 {split}: {n_gold} gold entities, {n_pred} predictions; correct: {naive_correct}"
    )
    print(
        f"compute_gmner (linear; MNER/EEG/GMNER + per-type + diagnostics): best of {repeat}: "
        f"{min(fast) * 1e3:.1f} ms"
    )
    print(f"O(n*m) scan of all gold per prediction (MNER/EEG/GMNER counts):  {naive * 1e3:.1f} ms")
    print(f"ratio: {naive / min(fast):.0f}x")


if __name__ == "__main__":
    main()
