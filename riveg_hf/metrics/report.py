"""Human-readable score tables."""

from __future__ import annotations

from typing import Any

__all__ = ["format_protocol_table", "format_table"]


def format_protocol_table(by_protocol: dict[str, dict[str, Any]]) -> str:
    """One row per scoring protocol: MNER / EEG / GMNER F1 (in %) and the counts it uses."""
    lines = [
        "| protocol | MNER F1 | EEG F1 | GMNER F1 | #pred | #gold | scored like |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in by_protocol.items():
        lines.append(
            f"| {name} | {100 * s['mner_f1']:.2f} | {100 * s['eeg_f1']:.2f} | {100 * s['gmner_f1']:.2f} | "
            f"{s['n_predictions']} | {s['n_references']} | {s.get('scored_by', 'riveg_hf.metrics.core')} |"
        )
    return "\n".join(lines)


def format_table(scores: dict[str, Any]) -> str:
    """P / R / F1 (in %) for MNER, EEG and GMNER (or SMNER), per type, and the stage diagnostics."""
    region = "smner" if "smner_f1" in scores else "gmner"
    rows = [("MNER", "mner"), ("EEG", "eeg"), (region.upper(), region)]
    lines = [f"{'task':<8}{'P':>8}{'R':>8}{'F1':>8}", "-" * 32]
    for label, key in rows:
        lines.append(
            f"{label:<8}"
            + "".join(f"{100 * scores[f'{key}_{m}']:>8.2f}" for m in ("precision", "recall", "f1"))
        )
    lines.append("")
    lines.append(f"{'type':<8}{'#gold':>7}{'#pred':>7}{'MNER F1':>9}{region.upper() + ' F1':>10}")
    for t, d in scores.get("per_type", {}).items():
        lines.append(
            f"{t:<8}{d['n_gold']:>7}{d['n_pred']:>7}{100 * d['mner_f1']:>9.2f}{100 * d[f'{region}_f1']:>10.2f}"
        )
    diag = scores.get("diagnostics", {})
    if diag:
        lines.append("")
        lines.append(f"stage diagnostics on {diag['recognised_entities']} correctly recognised entities:")
        lines.append(
            f"  entailment (groundable?)  acc {100 * diag['entailment_accuracy']:.2f}  "
            f"P {100 * diag['entailment_precision']:.2f}  R {100 * diag['entailment_recall']:.2f}  "
            f"F1 {100 * diag['entailment_f1']:.2f}   {diag['entailment_confusion']}"
        )
        name = "mask" if region == "smner" else "grounding"
        lines.append(
            f"  {name} (IoU >= 0.5)      acc {100 * diag[f'{name}_accuracy']:.2f} on "
            f"{diag[f'{name}_evaluated']} entities groundable in gold and predicted; "
            f"mean IoU {diag[f'{name}_mean_iou']:.3f}"
        )
    return "\n".join(lines)
