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

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as _coco_mask

__all__ = [
    "MAX_MASK_PIXELS",
    "MaskError",
    "as_rle",
    "decode_rle",
    "encode_rle",
    "mask_area",
    "mask_iou",
    "mask_to_xyxy",
    "polygons_to_rle",
    "rle_from_any",
    "validate_polygon",
]

#: Largest mask (height * width) accepted from a file or a prediction: the image limit (40 MP).
MAX_MASK_PIXELS = 40_000_000


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


def _check_size(size: Any) -> list[int]:
    try:
        h, w = (int(v) for v in size)
        exact = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError, OverflowError):
        raise MaskError(
            f"RLE 'size' must be [height, width] (two positive integers), got {size!r}."
        ) from None
    if not exact or h < 1 or w < 1:
        raise MaskError(f"RLE 'size' must be [height, width] (two positive integers), got {size!r}.")
    if h * w > MAX_MASK_PIXELS:
        raise MaskError(f"RLE size {h}x{w} is above the limit of {MAX_MASK_PIXELS:,} pixels.")
    return [h, w]


def _decode_counts(counts: bytes) -> list[int]:
    """COCO compressed counts -> run lengths (pycocotools' ``rleFrString``, with every step checked)."""
    out: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise MaskError("RLE 'counts' string ends in the middle of a number (truncated).")
            c = counts[p] - 48
            if not 0 <= c < 64:
                raise MaskError(
                    f"RLE 'counts' has the character {chr(counts[p])!r} at position {p}; a compressed COCO RLE "
                    "uses only the characters '0' to 'o'."
                )
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
            if k > 13:
                raise MaskError("RLE 'counts' holds a number too large for any image.")
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def _to_coco(rle: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a COCO RLE (runs well-formed, non-negative, summing to height * width) before pycocotools."""
    if "size" not in rle or "counts" not in rle:
        raise MaskError(f"a COCO RLE needs keys 'size' [height, width] and 'counts'; got keys {sorted(rle)}.")
    if not isinstance(rle["size"], (list, tuple)) or len(rle["size"]) != 2:
        raise MaskError(f"RLE 'size' must be [height, width], got {rle['size']!r}.")
    size = _check_size(rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise MaskError("uncompressed RLE 'counts' must be a list of non-negative integers.")
        runs = counts
    else:
        if isinstance(counts, str):
            try:
                counts = counts.encode("ascii")
            except UnicodeEncodeError:
                raise MaskError(
                    "RLE 'counts' holds non-ASCII characters; a compressed COCO RLE uses only '0' to 'o'."
                ) from None
        if not isinstance(counts, bytes):
            raise MaskError(
                f"RLE 'counts' must be a string, bytes or a list of ints, got {type(counts).__name__}."
            )
        runs = _decode_counts(counts)
        if any(c < 0 for c in runs):
            raise MaskError("RLE 'counts' decodes to a negative run length (corrupt).")
    total = sum(runs)
    if total != size[0] * size[1]:
        raise MaskError(
            f"RLE runs sum to {total} pixels, but size {size[0]}x{size[1]} has {size[0] * size[1]}; the mask "
            "is corrupt or its 'size' is wrong."
        )
    if isinstance(counts, list):
        return _coco_mask.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
    return {"size": size, "counts": counts}


def validate_polygon(
    points: Sequence[Any], height: int, width: int, *, tolerance: float | None = None
) -> list[float]:
    """A polygon ``[x0, y0, x1, y1, ...]`` (or ``[[x, y], ...]``) checked and clipped to the image.

    Every coordinate must be finite and within ``tolerance`` pixels of the image (default: 1%
    of its larger side, at least 2 px); at least 3 points. Raises :class:`MaskError` otherwise,
    before pycocotools sees it (NaN or huge coordinates crash it or cost gigabytes).

    >>> validate_polygon([0, 0, 10.5, 0, 10, 12], 10, 10)
    [0.0, 0.0, 10.0, 0.0, 10.0, 10.0]
    """
    if points and isinstance(points[0], (list, tuple)):
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
            raise MaskError("polygon points must be [x, y] pairs.")
        flat = [c for p in points for c in p]
    else:
        flat = list(points)
    try:
        vals = [float(v) for v in flat]
    except (TypeError, ValueError):
        raise MaskError("polygon coordinates must be numbers.") from None
    if len(vals) % 2 or len(vals) < 6:
        raise MaskError(f"a polygon needs at least 3 (x, y) points, got {len(vals) / 2:g}.")
    if not all(math.isfinite(v) for v in vals):
        raise MaskError("polygon has a NaN or infinite coordinate.")
    tol = tolerance if tolerance is not None else max(2.0, 0.01 * max(height, width))
    xs, ys = vals[0::2], vals[1::2]
    if min(xs) < -tol or max(xs) > width + tol or min(ys) < -tol or max(ys) > height + tol:
        raise MaskError(
            f"polygon reaches ({min(xs):g}..{max(xs):g}, {min(ys):g}..{max(ys):g}), outside the {width}x{height} "
            f"image by more than {tol:g} px."
        )
    out = []
    for x, y in zip(xs, ys):
        out += [min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))]
    return out


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) -> boolean ``(H, W)`` array."""
    return _coco_mask.decode(_to_coco(rle)).astype(bool)


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict[str, Any]:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixels) -> one merged compressed RLE.

    Each polygon is checked by :func:`validate_polygon` first.
    """
    height, width = _check_size([height, width])
    polys = [validate_polygon(p, height, width) for p in polygons]
    if not polys:
        raise MaskError("no polygon given.")
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
    """The number of pixels of a mask (a boolean array or COCO RLE, compressed or not)."""
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
