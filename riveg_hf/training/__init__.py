"""Training recipes for the trainable stages: ``mner`` (Trainer), ``entailment`` and ``grounder`` (accelerate)."""
