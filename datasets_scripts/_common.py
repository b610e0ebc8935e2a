"""What the builders share: the build result and the report file."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from riveg_hf import __version__
from riveg_hf.data import Report, write_dataset_folder


@dataclass
class BuildResult:
    out: Path
    counts: dict[str, dict[str, int]]
    report: Report
    seconds: float = 0.0
    sources: dict[str, str | None] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"wrote {self.out} in {self.seconds:.1f}s"]
        for cfg, splits in self.counts.items():
            lines.append(f"  {cfg}: " + ", ".join(f"{s}={n}" for s, n in splits.items()))
        lines.append("report:")
        lines.append(self.report.summary())
        return "\n".join(lines)


def write_build(
    out: str | Path,
    specs,
    *,
    card_body: str,
    card_data: dict,
    overwrite: bool,
    report: Report,
    t0: float,
    sources: dict[str, str | None],
) -> BuildResult:
    """Write the dataset folder atomically, with ``build_report.json`` inside it before the swap."""
    out = Path(out)

    def write_report(stage: Path, counts) -> None:
        payload = {
            "riveg_hf_version": __version__,
            "python": platform.python_version(),
            "command": " ".join(sys.argv),
            "sources": sources,
            "counts": counts,
            **report.to_dict(),
        }
        with open(stage / "build_report.json", "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, ensure_ascii=False)

    counts = write_dataset_folder(
        out, specs, card_body=card_body, card_data=card_data, overwrite=overwrite, finalize=write_report
    )
    return BuildResult(
        out=out, counts=counts, report=report, seconds=time.perf_counter() - t0, sources=sources
    )
