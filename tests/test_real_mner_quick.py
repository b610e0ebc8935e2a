"""The quick version of the real MNER benchmark (MiniLM on the real Twitter-GMNER text), marked slow."""

import json
import subprocess
import sys

import pytest

from .helpers import REPO


@pytest.mark.slow
def test_quick_real_mner_run(shared_data, tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "mner_real.py"),
        "--out",
        str(tmp_path),
        "--data",
        str(shared_data),
        "--quick",
    ]
    subprocess.run(cmd, check=True, timeout=1800)
    [row] = json.loads((tmp_path / "results.json").read_text())
    assert (
        row["config"] == "gmner"
        and row["test"]["n_examples"] == 1500
        and row["test"]["n_gold_entities"] == 2543
    )
    assert row["test"]["f1"] > 0.3 and row["peak_rss_mb"] > 0  # a real score, not the zeros of 20 steps
    card = (tmp_path / "minilm-gmner" / "README.md").read_text()
    assert "model-index" in card
