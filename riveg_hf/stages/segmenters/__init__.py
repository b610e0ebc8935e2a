"""The segmenter families, one module each (see :mod:`riveg_hf.stages.segmenter`)."""
