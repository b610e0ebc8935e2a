"""riveg-hf: Grounded and Segmented Multimodal NER (GMNER / SMNER) as a Hugging Face task.

``import riveg_hf`` registers the tasks ``grounded-mner`` and ``segmented-mner`` with
``transformers.pipeline`` and the composite ``riveg`` config/model with the Auto classes, so
``pipeline("grounded-mner", model=DIR)`` works without ``trust_remote_code``.
"""

__version__ = "0.1.0"

from .boxes import BOX_KEYS, as_xyxy, iou_xyxy, xywh_to_xyxy, xyxy_to_dict, xyxy_to_xywh
from .images import load_image
from .masks import decode_rle, encode_rle, mask_iou
from .modeling_riveg import RiVEGConfig, RiVEGModel
from .pipeline import RiVEGInputError, RiVEGPipeline, _register
from .segment import add_masks
from .types import ENTITY_TYPES, GroundedEntity

_register()

__all__ = [
    "BOX_KEYS",
    "ENTITY_TYPES",
    "GroundedEntity",
    "RiVEGConfig",
    "RiVEGInputError",
    "RiVEGModel",
    "RiVEGPipeline",
    "__version__",
    "add_masks",
    "as_xyxy",
    "decode_rle",
    "encode_rle",
    "iou_xyxy",
    "load_image",
    "mask_iou",
    "xywh_to_xyxy",
    "xyxy_to_dict",
    "xyxy_to_xywh",
]
