"""GMNER metric (MNER, EEG, GMNER P/R/F1) for `evaluate`: a thin wrapper over riveg_hf.metrics.compute_gmner."""

import evaluate
from riveg_hf.metrics.core import compute_gmner
from riveg_hf.metrics.modules.cards import (
    GMNER_CITATION,
    GMNER_DESCRIPTION,
    GMNER_INPUTS,
    gmner_features,
    infer_features,
)


@evaluate.utils.file_utils.add_start_docstrings(GMNER_DESCRIPTION, GMNER_INPUTS)
class Gmner(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=GMNER_DESCRIPTION,
            citation=GMNER_CITATION,
            inputs_description=GMNER_INPUTS,
            features=gmner_features(),
            reference_urls=["https://aclanthology.org/2023.acl-long.508/"],
        )

    def _infer_feature_from_example(self, example):
        return infer_features(self, example)

    def _compute(self, predictions, references, protocol="riveg-hf"):  # riveg_hf.metrics.protocols
        return compute_gmner(predictions, references, protocol=protocol)
