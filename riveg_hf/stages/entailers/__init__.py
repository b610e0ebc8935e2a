"""The entailment families, one module each (see :mod:`riveg_hf.stages.entailment`)."""
