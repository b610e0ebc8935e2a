"""Readers for the raw GMNER / SMNER / MNER releases, entity-object alignment, dataset folders."""

from .align import AlignmentResult, align_objects, normalize_name
from .conll import (
    CoNLLFormatError,
    Sentence,
    bio_tags,
    read_captions,
    read_conll,
    read_llm_knowledge,
    spans_to_tags,
    tags_to_spans,
)
from .features import NER_TAGS, gmner_features, knowledge_features, mner_features, smner_features
from .folder import (
    BUILD_MARKER,
    ConfigSpec,
    IncompleteDatasetError,
    check_build_complete,
    load_built_dataset,
    push_dataset_folder,
    write_dataset_folder,
)
from .gmner import GMNER_SPLITS, RawRelease, gmner_records, knowledge_records
from .ids import InvalidIdError, safe_child, validate_id
from .report import Report
from .smner_masks import MaskFileError, read_mask_file
from .voc import AnnotationError, VOCAnnotation, VOCObject, read_voc

__all__ = [
    "BUILD_MARKER",
    "GMNER_SPLITS",
    "NER_TAGS",
    "AlignmentResult",
    "AnnotationError",
    "CoNLLFormatError",
    "ConfigSpec",
    "IncompleteDatasetError",
    "InvalidIdError",
    "MaskFileError",
    "RawRelease",
    "Report",
    "Sentence",
    "VOCAnnotation",
    "VOCObject",
    "align_objects",
    "bio_tags",
    "check_build_complete",
    "gmner_features",
    "gmner_records",
    "knowledge_features",
    "knowledge_records",
    "load_built_dataset",
    "mner_features",
    "normalize_name",
    "push_dataset_folder",
    "read_captions",
    "read_conll",
    "read_llm_knowledge",
    "read_mask_file",
    "read_voc",
    "safe_child",
    "smner_features",
    "spans_to_tags",
    "tags_to_spans",
    "validate_id",
    "write_dataset_folder",
]
