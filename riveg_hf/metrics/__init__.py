"""Scores for MNER, EEG, GMNER and SMNER: functions first, ``evaluate`` modules as thin wrappers.

>>> from riveg_hf.metrics import compute_gmner
>>> scores = compute_gmner(predictions, dataset["test"]["entities"])  # doctest: +SKIP
>>> import evaluate
>>> gmner = evaluate.load(GMNER_MODULE)  # doctest: +SKIP
"""

from pathlib import Path

from .core import MetricInputError, compute_gmner, compute_smner, prf
from .protocols import PROTOCOLS
from .report import format_protocol_table, format_table

_MODULES = Path(__file__).resolve().parent / "modules"
#: Path to pass to ``evaluate.load`` for the GMNER metric module (works offline).
GMNER_MODULE = str(_MODULES / "gmner")
#: Path to pass to ``evaluate.load`` for the SMNER metric module (works offline).
SMNER_MODULE = str(_MODULES / "smner")

__all__ = [
    "GMNER_MODULE",
    "PROTOCOLS",
    "SMNER_MODULE",
    "MetricInputError",
    "compute_gmner",
    "compute_smner",
    "format_protocol_table",
    "format_table",
    "prf",
]
