"""What the two open-vocabulary detector families share: per query, its best box."""

from __future__ import annotations

import numpy as np

from ..grounder import Localization


def clean_query(query: str) -> str:
    """Lower-case, one line, no '.' (Grounding DINO separates phrases with '.')."""
    q = " ".join(query.replace(".", " ").split()).lower()
    return q or "object"


def best_per_query(scores: np.ndarray, boxes: np.ndarray) -> list[tuple[float, np.ndarray] | None]:
    """``scores`` (queries, boxes), ``boxes`` (boxes, 4) cxcywh -> per query (best score, its box); NaN = 0."""
    scores = np.nan_to_num(scores.astype(np.float64), nan=0.0)
    if scores.shape[1] == 0:
        return [None] * scores.shape[0]
    ks = scores.argmax(axis=1)
    return [(float(scores[q, k]), boxes[k]) for q, k in enumerate(ks)]


def to_localization(image, best, *, pad_to_square: bool = False) -> Localization:
    """Normalised cxcywh best boxes -> pixel xyxy of the original image, clipped (OWLv2 pads to a square)."""
    w, h = image.size
    sx, sy = (max(w, h), max(w, h)) if pad_to_square else (w, h)
    boxes, scores = [], []
    for found in best:
        if found is None:
            boxes.append(None)
            scores.append(0.0)
            continue
        score, (cx, cy, bw, bh) = found
        corners = [(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy]
        box = [min(max(float(v), 0.0), float(lim)) for v, lim in zip(corners, (w, h, w, h))]
        if not all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
            box = None  # a box clipped to a line stays (useless, but the detector's), as before
        boxes.append(box)
        scores.append(score if box is not None else 0.0)
    return Localization(boxes, scores)
