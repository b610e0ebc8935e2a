"""Segmentation masks as COCO run-length encoding (RLE).

A mask in riveg-hf is, unless asked otherwise, a **COCO compressed RLE**
``{"size": [height, width], "counts": "<ascii string>"}`` in original-image pixels: it is
JSON-safe, small, and what ``pycocotools`` and the COCO tooling read. ``decode_rle`` gives
back a boolean ``(height, width)`` array.

>>> import numpy as np
>>> m = np.zeros((4, 5), dtype=bool); m[1:3, 1:4] = True
>>> rle = encode_rle(m)
>>> rle["size"]
[4, 5]
>>> bool((decode_rle(rle) == m).all())
True
>>> mask_iou(rle, m)
1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as _coco_mask

__all__ = [
    "MaskError",
    "as_rle",
    "decode_rle",
    "encode_rle",
    "mask_area",
    "mask_iou",
    "mask_to_xyxy",
    "polygons_to_rle",
    "rle_from_any",
]


class MaskError(ValueError):
    """A mask that is neither a boolean array nor a COCO RLE dict."""


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Boolean ``(H, W)`` array -> COCO compressed RLE with a ``str`` ``counts`` (JSON-safe)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise MaskError(f"expected a 2-D (height, width) mask, got an array of shape {arr.shape}.")
    rle = _coco_mask.encode(np.asfortranarray(arr.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts.decode("ascii")}


def _to_coco(rle: Mapping[str, Any]) -> dict[str, Any]:
    if "size" not in rle or "counts" not in rle:
        raise MaskError(f"a COCO RLE needs keys 'size' [height, width] and 'counts'; got keys {sorted(rle)}.")
    size = [int(s) for s in rle["size"]]
    if len(size) != 2:
        raise MaskError(f"RLE 'size' must be [height, width], got {rle['size']!r}.")
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return _coco_mask.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise MaskError(
            f"RLE 'counts' must be a string, bytes or a list of ints, got {type(counts).__name__}."
        )
    return {"size": size, "counts": counts}


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) -> boolean ``(H, W)`` array."""
    return _coco_mask.decode(_to_coco(rle)).astype(bool)


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict[str, Any]:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixels) -> one merged compressed RLE."""
    polys = [list(map(float, p)) for p in polygons]
    bad = [p for p in polys if len(p) < 6 or len(p) % 2]
    if bad:
        raise MaskError(f"a polygon needs at least 3 (x, y) points as a flat list, got {bad[0]!r}.")
    rles = _coco_mask.frPyObjects(polys, int(height), int(width))
    merged = _coco_mask.merge(rles)
    return {"size": [int(height), int(width)], "counts": merged["counts"].decode("ascii")}


def rle_from_any(mask: Any) -> dict[str, Any]:
    """Accept a boolean array or a COCO RLE (compressed or not) and return a compressed RLE."""
    if isinstance(mask, Mapping):
        coco = _to_coco(mask)
        counts = coco["counts"]
        return {
            "size": list(coco["size"]),
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        }
    if hasattr(mask, "detach"):  # torch tensor
        mask = mask.detach().cpu().numpy()
    if isinstance(mask, (np.ndarray, list)):
        return encode_rle(np.asarray(mask).astype(bool))
    raise MaskError(
        f"expected a mask as a boolean (height, width) array or a COCO RLE dict {{'size', 'counts'}}, "
        f"got {type(mask).__name__}."
    )


as_rle = rle_from_any


def mask_area(mask: Any) -> int:
    return int(_coco_mask.area(_to_coco(rle_from_any(mask))))


def mask_iou(a: Any, b: Any) -> float:
    """IoU of two masks (arrays or RLEs) of the same size."""
    ra, rb = _to_coco(rle_from_any(a)), _to_coco(rle_from_any(b))
    if list(ra["size"]) != list(rb["size"]):
        raise MaskError(f"masks of different sizes cannot be compared: {ra['size']} vs {rb['size']}.")
    return float(_coco_mask.iou([ra], [rb], [0])[0][0])


def mask_to_xyxy(mask: Any) -> list[float] | None:
    """Tight ``xyxy`` box of a mask, or ``None`` for an empty mask."""
    coco = _to_coco(rle_from_any(mask))
    if _coco_mask.area(coco) == 0:
        return None
    x, y, w, h = (float(v) for v in _coco_mask.toBbox(coco))
    return [x, y, x + w, y + h]
