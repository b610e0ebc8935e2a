"""Twitter-SMNER mask files: one JSON file per image, each visual object labelled with its entity.

The authors describe the release as "the segmentation masks in json format, one json file
per image, with the named-entity label of each visual object" without publishing the
schema, so both forms such files take in practice are read, and detected per file:

* **LabelMe** -- ``{"shapes": [{"label", "points": [[x, y], ...], "shape_type":
  "polygon" | "rectangle"}], "imageHeight", "imageWidth"}``;
* **COCO** -- ``{"annotations": [{"segmentation": [[x0, y0, ...]] | {"size", "counts"},
  "category_id" | "label" | "name", "bbox"?}], "categories": [{"id", "name"}],
  "images": [{"height", "width"}]}``.

Anything else raises :class:`MaskFileError` naming the file and the two accepted forms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..masks import MaskError, mask_to_xyxy, polygons_to_rle, rle_from_any

__all__ = ["MaskFileError", "MaskObject", "detect_mask_format", "read_mask_file"]


class MaskFileError(ValueError):
    """A mask JSON file in neither the LabelMe nor the COCO form."""


@dataclass
class MaskObject:
    label: str
    rle: dict[str, Any]
    box: list[float] | None  # tight xyxy box of the mask


def detect_mask_format(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("shapes"), list):
        return "labelme"
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        return "coco"
    return "unknown"


def _labelme(data: dict, path: str) -> tuple[int, int, list[MaskObject]]:
    try:
        h, w = int(data["imageHeight"]), int(data["imageWidth"])
    except (KeyError, TypeError, ValueError):
        raise MaskFileError(f"{path}: LabelMe file needs integer 'imageHeight' and 'imageWidth'.") from None
    out = []
    for k, shape in enumerate(data["shapes"]):
        label = shape.get("label")
        pts = shape.get("points")
        kind = shape.get("shape_type") or "polygon"
        if not isinstance(label, str) or not isinstance(pts, list):
            raise MaskFileError(f"{path}: shape #{k} needs a string 'label' and a list of 'points'.")
        try:
            xy = [(float(p[0]), float(p[1])) for p in pts]
        except (TypeError, ValueError, IndexError):
            raise MaskFileError(
                f"{path}: shape #{k} ({label!r}) has points that are not [x, y] pairs."
            ) from None
        if kind == "rectangle":
            if len(xy) != 2:
                raise MaskFileError(
                    f"{path}: rectangle shape #{k} ({label!r}) needs 2 corner points, got {len(xy)}."
                )
            (x0, y0), (x1, y1) = xy
            x0, x1 = sorted((x0, x1))
            y0, y1 = sorted((y0, y1))
            poly = [x0, y0, x1, y0, x1, y1, x0, y1]
        elif kind == "polygon":
            if len(xy) < 3:
                raise MaskFileError(f"{path}: polygon shape #{k} ({label!r}) needs at least 3 points.")
            poly = [c for p in xy for c in p]
        else:
            raise MaskFileError(
                f"{path}: shape #{k} ({label!r}) has shape_type {kind!r}; supported: 'polygon', 'rectangle'."
            )
        rle = polygons_to_rle([poly], h, w)
        out.append(MaskObject(label=label, rle=rle, box=mask_to_xyxy(rle)))
    return h, w, out


def _coco(data: dict, path: str) -> tuple[int, int, list[MaskObject]]:
    images = data.get("images") or []
    h = w = None
    if images and isinstance(images[0], dict):
        h, w = images[0].get("height"), images[0].get("width")
    cats = {c.get("id"): c.get("name") for c in data.get("categories") or [] if isinstance(c, dict)}
    out = []
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise MaskFileError(f"{path}: annotation #{k} is not an object.")
        label = ann.get("label") or ann.get("name") or cats.get(ann.get("category_id"))
        if not isinstance(label, str):
            raise MaskFileError(
                f"{path}: annotation #{k} has no entity label ('label', 'name' or a 'category_id' in 'categories')."
            )
        seg = ann.get("segmentation")
        try:
            if isinstance(seg, dict):
                rle = rle_from_any(seg)
                ah, aw = rle["size"]
            elif isinstance(seg, list) and seg:
                if h is None or w is None:
                    raise MaskFileError(
                        f"{path}: polygon segmentation needs 'images': [{{'height', 'width'}}]."
                    )
                polys = seg if isinstance(seg[0], list) else [seg]
                rle = polygons_to_rle(polys, int(h), int(w))
                ah, aw = int(h), int(w)
            else:
                raise MaskFileError(f"{path}: annotation #{k} ({label!r}) has no 'segmentation'.")
        except MaskError as err:
            raise MaskFileError(f"{path}: annotation #{k} ({label!r}): {err}") from None
        if h is None:
            h, w = ah, aw
        out.append(MaskObject(label=label, rle=rle, box=mask_to_xyxy(rle)))
    if h is None:
        raise MaskFileError(f"{path}: cannot tell the image size (no 'images' entry and no annotations).")
    return int(h), int(w), out


def read_mask_file(path: str | Path) -> tuple[int, int, list[MaskObject]]:
    """Read one SMNER mask file -> ``(height, width, [MaskObject])``."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise MaskFileError(f"{path}: not valid JSON ({err}).") from None
    fmt = detect_mask_format(data)
    if fmt == "labelme":
        return _labelme(data, path)
    if fmt == "coco":
        return _coco(data, path)
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise MaskFileError(
        f"{path}: unrecognised mask file (top level: {keys}). Expected LabelMe "
        "({'shapes': [{'label', 'points', 'shape_type'}], 'imageHeight', 'imageWidth'}) or COCO "
        "({'annotations': [{'segmentation', 'category_id'|'label'}], 'categories', 'images'})."
    )
