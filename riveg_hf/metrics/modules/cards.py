"""Texts and input features of the ``evaluate`` modules (kept here so the module files hold no logic)."""

from __future__ import annotations

from datasets import Features, List, Value

_CITE = """@inproceedings{yu-etal-2023-grounded,
  title     = {Grounded Multimodal Named Entity Recognition on Social Media},
  author    = {Yu, Jianfei and Li, Ziyan and Wang, Jieming and Xia, Rui},
  booktitle = {Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2023}
}
@inproceedings{li-etal-2024-llms,
  title     = {{LLMs} as Bridges: Reformulating Grounded Multimodal Named Entity Recognition},
  author    = {Li, Jinyuan and Li, Han and Sun, Di and Wang, Jiahao and Zhang, Wenkun and Wang, Zan and Pan, Gang},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2024},
  year      = {2024}
}"""

GMNER_CITATION = _CITE
SMNER_CITATION = _CITE

GMNER_DESCRIPTION = """Grounded multimodal NER scores: MNER (span + type), EEG (span + region) and GMNER (span + type +
region) precision, recall and F1, micro-averaged, with one-to-one matching. A region is correct when both sides say
"not visible", or the predicted box has IoU >= 0.5 with any gold box of the entity. Also per-type scores and stage
diagnostics (entailment and grounding accuracy on correctly recognised entities)."""

SMNER_DESCRIPTION = """Segmented multimodal NER scores: as GMNER, with mask IoU >= 0.5 against any gold mask of the entity as
the region criterion (keys smner_*), plus the mean mask IoU over entities that are right in span and type and
groundable in both."""

GMNER_INPUTS = """
Args:
    predictions: one list per example of entity dicts {"start", "end", "type", "box"}; box is
        [xmin, ymin, xmax, ymax] in pixels or None (not visible). start/end must be in the unit of the
        references (token offsets for riveg-hf datasets); for pipeline outputs on tokens use
        riveg_hf.metrics.compute_gmner, which reads token_start/token_end and box dicts directly.
    references: one list per example of {"start", "end", "type", "boxes"} (exactly these keys; type a
        name or a ClassLabel index); boxes is a list of [xmin, ymin, xmax, ymax] ([] = not visible).
        riveg_hf.metrics.compute_gmner takes a riveg-hf dataset's `entities` column as is.
Returns:
    mner_precision, mner_recall, mner_f1, eeg_precision, eeg_recall, eeg_f1, gmner_precision, gmner_recall,
    gmner_f1 (fractions), per_type, diagnostics.
"""

SMNER_INPUTS = """
Args:
    predictions: one list per example of {"start", "end", "type", "mask"}; mask is a COCO RLE
        {"size": [h, w], "counts": str} or None.
    references: one list per example of {"start", "end", "type", "masks"}; masks a list of COCO RLEs.
Returns:
    mner_*, eeg_*, smner_* precision/recall/F1, per_type, diagnostics (incl. mask_mean_iou).
"""


_INT = Value("int32")
_STR = Value("string")
_BOX = List(Value("float64"))
_RLE = {"size": List(_INT), "counts": _STR}


def _options(pred_region: dict, ref_region: dict, dataset_region: dict | None = None) -> list[Features]:
    """``evaluate`` needs the exact keys (extra keys raise inside evaluate), so the options differ in types
    (entity types as names or as ClassLabel indices, on either side) and in the reference keys: the minimal
    ``{start, end, type, <region>}``, or a riveg-hf dataset's ``entities`` column exactly as ``load_dataset``
    returns it (``text`` and ``groundable`` too)."""
    dataset_keys = {"text": _STR, "groundable": Value("bool"), **(dataset_region or {})}
    return [
        Features(
            {
                "predictions": List({**named, "start": _INT, "end": _INT, "type": pt, **pred_region}),
                "references": List({**extra, "start": _INT, "end": _INT, "type": rt, **ref_region}),
            }
        )
        for named in ({}, {"entity": _STR})  # the entity's string: the string-keyed protocols need it
        for extra in ({}, dataset_keys)
        for pt in (_STR, _INT)
        for rt in (_STR, _INT)
    ]


def gmner_features() -> list[Features]:
    return _options({"box": _BOX}, {"boxes": List(_BOX)})


def smner_features() -> list[Features]:
    return _options({"mask": _RLE}, {"masks": List(_RLE)}, {"boxes": List(_BOX)})


def infer_features(metric, example) -> Features:
    """``evaluate.Metric._infer_feature_from_example`` for our options: evaluate 0.4 tries each option and lets
    a ``KeyError`` escape when the references carry keys an option lacks, so options are first narrowed to
    those whose reference keys are the example's (a dataset's ``entities`` column, or the minimal form)."""
    refs = example.get("references") or []
    keys = set(refs[0]) if refs and isinstance(refs[0], dict) else None
    preds = example.get("predictions") or []
    named = "entity" in preds[0] if preds and isinstance(preds[0], dict) else None
    options = [f for f in metric.features if (keys is None or set(f["references"].feature) == keys)
               and (named is None or ("entity" in f["predictions"].feature) == named)]  # fmt: skip
    for features in options or metric.features:
        try:
            metric._enforce_nested_string_type(features, example)
            features.encode_example(example)
            return features
        except (ValueError, TypeError, KeyError):
            continue
    raise ValueError(
        "predictions / references do not match the expected format: predictions are lists of "
        f"{{start, end, type, <region>}}, references lists of {{start, end, type, <regions>}} or a riveg-hf dataset's "
        f"`entities` column as load_dataset returns it; got reference keys {sorted(keys or [])}."
    )
