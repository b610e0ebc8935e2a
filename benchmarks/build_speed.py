"""How long building the datasets from the raw releases takes (no images): a benchmark that prints.

python benchmarks/build_speed.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets_scripts import twitter_gmner, twitter_mner
from tests.helpers import find_shared_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    a = ap.parse_args()
    data = Path(a.data) if a.data else find_shared_data()
    with tempfile.TemporaryDirectory() as tmp:
        for label, fn in [
            (
                "Twitter-GMNER v2.0 (gmner + mner)",
                lambda: twitter_gmner.build(data / "twitter-gmner" / "v2.0", Path(tmp) / "g2"),
            ),
            (
                "Twitter-GMNER v2.0 (+ LLM knowledge, captions)",
                lambda: twitter_gmner.build(
                    data / "twitter-gmner" / "v2.0",
                    Path(tmp) / "g2k",
                    knowledge=data / "riveg-aux" / "llm-knowledge",
                    captions=data / "riveg-aux" / "captions",
                ),
            ),
            (
                "Twitter-GMNER v1 (gmner + mner)",
                lambda: twitter_gmner.build(data / "twitter-gmner" / "v1", Path(tmp) / "g1"),
            ),
            (
                "Twitter-2015 + Twitter-2017",
                lambda: twitter_mner.build(data / "twitter-mner", Path(tmp) / "m"),
            ),
        ]:
            t = time.perf_counter()
            res = fn()
            n = sum(sum(v.values()) for v in res.counts.values())
            print(f"{label:50s} {time.perf_counter() - t:6.2f} s  ({n} rows written)")


if __name__ == "__main__":
    main()
