"""SMNER metric (MNER, EEG, SMNER P/R/F1 with mask IoU) for `evaluate`: a thin wrapper over compute_smner."""

import evaluate
from riveg_hf.metrics.core import compute_smner
from riveg_hf.metrics.modules.cards import (
    SMNER_CITATION,
    SMNER_DESCRIPTION,
    SMNER_INPUTS,
    smner_features,
    infer_features,
)


@evaluate.utils.file_utils.add_start_docstrings(SMNER_DESCRIPTION, SMNER_INPUTS)
class Smner(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=SMNER_DESCRIPTION,
            citation=SMNER_CITATION,
            inputs_description=SMNER_INPUTS,
            features=smner_features(),
        )

    def _infer_feature_from_example(self, example):
        return infer_features(self, example)

    def _compute(self, predictions, references):
        return compute_smner(predictions, references)
