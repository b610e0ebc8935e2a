"""The grounder families, one module each (see :mod:`riveg_hf.stages.grounder` for the protocol and the
registry; :data:`riveg_hf.stages.grounder.FAMILY_MODULES` lists these modules)."""
