"""Bounding boxes: one convention, named converters, vectorised IoU.

Every box in riveg-hf is **pixel ``xyxy`` in original-image coordinates**:
``[xmin, ymin, xmax, ymax]`` with ``xmin <= xmax`` and ``ymin <= ymax``, as in the
Pascal-VOC files of Twitter-GMNER and in transformers' detection pipelines. Pipeline
outputs use the dict form of the same box, ``{"xmin", "ymin", "xmax", "ymax"}``.

Converters are named by their formats (``xywh_to_xyxy``, ``xyxy_to_dict`` ...), so a
reader never has to guess which convention a function returns.

>>> xywh_to_xyxy([10, 20, 30, 40])
[10.0, 20.0, 40.0, 60.0]
>>> xyxy_to_dict([10, 20, 40, 60])
{'xmin': 10.0, 'ymin': 20.0, 'xmax': 40.0, 'ymax': 60.0}
>>> iou_xyxy([0, 0, 10, 10], [5, 0, 15, 10])
0.3333333333333333
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: the keys of a box dict, in order: pixel ``xyxy`` of the original image
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")

__all__ = [
    "BOX_KEYS",
    "BoxError",
    "as_xyxy",
    "box_area",
    "box_in_image",
    "clip_xyxy",
    "cxcywh_to_xyxy",
    "dict_to_xyxy",
    "iou_matrix",
    "iou_xyxy",
    "repair_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_dict",
    "xyxy_to_xywh",
]


class BoxError(ValueError):
    """A box that is not a valid pixel ``xyxy`` box. The message says what was received."""


def _four_numbers(box: Any, what: str) -> list[float]:
    if isinstance(box, np.ndarray):
        box = box.tolist()
    if hasattr(box, "tolist") and not isinstance(box, (list, tuple)):  # torch tensors
        box = box.tolist()
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise BoxError(
            f"{what}: expected 4 numbers [xmin, ymin, xmax, ymax] in pixels, got {box!r}. "
            "Pass a list/tuple of 4 numbers or a dict with keys xmin, ymin, xmax, ymax."
        )
    out = []
    for v in box:
        if isinstance(v, (str, bytes, bool)) or v is None:  # "10" and True are not coordinates
            raise BoxError(f"{what}: box coordinates must be numbers, got {box!r}.")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise BoxError(f"{what}: box coordinates must be numbers, got {box!r}.") from None
        out.append(f)
    return out


def dict_to_xyxy(box: Mapping[str, Any]) -> list[float]:
    """``{"xmin","ymin","xmax","ymax"}`` -> ``[xmin, ymin, xmax, ymax]``."""
    missing = [k for k in BOX_KEYS if k not in box]
    if missing:
        raise BoxError(f"box dict is missing {missing}: got keys {sorted(box)}; expected {list(BOX_KEYS)}.")
    return _four_numbers([box[k] for k in BOX_KEYS], "box")


def xyxy_to_dict(box: Sequence[float]) -> dict[str, float]:
    """``[xmin, ymin, xmax, ymax]`` -> ``{"xmin","ymin","xmax","ymax"}`` (floats, JSON-safe)."""
    vals = _four_numbers(box, "box")
    return dict(zip(BOX_KEYS, vals))


def xywh_to_xyxy(box: Sequence[float]) -> list[float]:
    """COCO ``[x, y, width, height]`` -> ``[xmin, ymin, xmax, ymax]``."""
    x, y, w, h = _four_numbers(box, "xywh box")
    return [x, y, x + w, y + h]


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    """``[xmin, ymin, xmax, ymax]`` -> COCO ``[x, y, width, height]``."""
    x0, y0, x1, y1 = _four_numbers(box, "xyxy box")
    return [x0, y0, x1 - x0, y1 - y0]


def cxcywh_to_xyxy(box: Sequence[float]) -> list[float]:
    """``[center_x, center_y, width, height]`` -> ``[xmin, ymin, xmax, ymax]``."""
    cx, cy, w, h = _four_numbers(box, "cxcywh box")
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def as_xyxy(box: Any, *, what: str = "box") -> list[float] | None:
    """Normalise a box given as list/tuple/array/dict to a validated ``xyxy`` list.

    ``None`` stays ``None`` ("not visible"). NaN/inf coordinates and ``xmax < xmin`` /
    ``ymax < ymin`` raise :class:`BoxError` naming ``what``.
    """
    if box is None:
        return None
    vals = dict_to_xyxy(box) if isinstance(box, Mapping) else _four_numbers(box, what)
    if not all(math.isfinite(v) for v in vals):
        raise BoxError(f"{what}: box has a NaN or infinite coordinate: {vals}.")
    if vals[2] < vals[0] or vals[3] < vals[1]:
        raise BoxError(
            f"{what}: box {vals} has xmax < xmin or ymax < ymin; boxes are [xmin, ymin, xmax, ymax] in pixels "
            "(did you pass [x, y, width, height]? convert with riveg_hf.boxes.xywh_to_xyxy)."
        )
    return vals


def clip_xyxy(box: Sequence[float], width: float, height: float) -> list[float]:
    """Clip a box to the image ``[0, width] x [0, height]``; four floats, whatever number types came in.

    >>> clip_xyxy([-3, 2, 70, 50], 64, 48)
    [0.0, 2.0, 64.0, 48.0]
    """
    x0, y0, x1, y1 = _four_numbers(box, "box")
    w, h = float(width), float(height)
    return [min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h)]


def box_in_image(box: Any, width: float, height: float) -> list[float] | None:
    """What a model's box means inside the image: corners sorted, clipped to ``[0, width] x [0, height]``,
    four floats; None when it is not four finite numbers or nothing of it is left (a zero-area box).

    Models answer boxes a few pixels past the edge, with int or numpy coordinates, or absurdly large: all of
    these are read here, in one place, so that a box never fails validation downstream.

    >>> box_in_image([1.14, 0.86, 70, 50], 64, 48)
    [1.14, 0.86, 64.0, 48.0]
    >>> box_in_image([10, 10, 1e308, 10], 64, 48) is None  # zero height
    True
    """
    try:
        vals = _four_numbers(box, "box")
    except BoxError:
        return None
    if not all(math.isfinite(v) for v in vals):
        return None
    x0, x1 = sorted(vals[0::2])
    y0, y1 = sorted(vals[1::2])
    out = clip_xyxy([x0, y0, x1, y1], width, height)
    return out if out[2] > out[0] and out[3] > out[1] else None


def repair_xyxy(
    box: Sequence[float], width: float | None, height: float | None
) -> tuple[list[float], list[str]]:
    """Swap inverted corners and clip to the image; return the box and what was repaired."""
    x0, y0, x1, y1 = _four_numbers(box, "box")
    fixes = []
    if x1 < x0:
        x0, x1 = x1, x0
        fixes.append("swapped xmin/xmax")
    if y1 < y0:
        y0, y1 = y1, y0
        fixes.append("swapped ymin/ymax")
    out = [x0, y0, x1, y1]
    if width is not None and height is not None:
        clipped = clip_xyxy(out, width, height)
        if clipped != out:
            fixes.append(f"clipped to the {int(width)}x{int(height)} image")
        out = clipped
    return out, fixes


def box_area(box: Sequence[float]) -> float:
    """The area of an ``xyxy`` box (0 for an empty or inverted one).

    >>> box_area([0, 0, 4, 2.5])
    10.0
    """
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def iou_xyxy(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``xyxy`` boxes (0.0 when both are empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``a`` (N, 4) and ``b`` (M, 4) ``xyxy`` boxes -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
