"""Joint reader families (see :mod:`riveg_hf.stages.reader`), one module each."""
