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

Every shape is validated before pycocotools sees it (:func:`riveg_hf.masks.validate_polygon`:
finite coordinates within a tolerance of the image, at least 3 points; RLE counts well-formed
and summing to height x width; an RLE's size equal to the file's image size; the image at most
:data:`riveg_hf.masks.MAX_MASK_PIXELS`). A bad shape is reported (``bad_mask_shape``, naming file
and shape) and skipped; the good shapes of the same file are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..masks import MAX_MASK_PIXELS, MaskError, mask_to_xyxy, polygons_to_rle, rle_from_any
from .report import Report

__all__ = ["MaskFileError", "MaskObject", "detect_mask_format", "read_mask_file"]


class MaskFileError(ValueError):
    """A mask JSON file in neither the LabelMe nor the COCO form."""


@dataclass
class MaskObject:
    """One labelled object of a mask file: its label, its COCO RLE and the tight ``xyxy`` box of the mask."""

    label: str
    rle: dict[str, Any]
    box: list[float] | None  # tight xyxy box of the mask


def detect_mask_format(data: Any) -> str:
    """The layout of a parsed mask file: ``"labelme"`` (``shapes``), ``"coco"`` (``annotations``) ..."""
    if isinstance(data, dict) and isinstance(data.get("shapes"), list):
        return "labelme"
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        return "coco"
    return "unknown"


def _image_size(h: Any, w: Any, path: str, where: str) -> tuple[int, int]:
    try:
        hi, wi = int(h), int(w)
        exact = float(h) == hi and float(w) == wi
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact or hi < 1 or wi < 1:
        raise MaskFileError(f"{path}: {where} must be two positive integers, got {h!r} x {w!r}.")
    if hi * wi > MAX_MASK_PIXELS:
        raise MaskFileError(f"{path}: image size {wi}x{hi} is above the limit of {MAX_MASK_PIXELS:,} pixels.")
    return hi, wi


def _labelme(data: dict, path: str, report: Report) -> tuple[int, int, list[MaskObject]]:
    h, w = _image_size(
        data.get("imageHeight"), data.get("imageWidth"), path, "'imageHeight' and 'imageWidth'"
    )
    out = []
    for k, shape in enumerate(data["shapes"]):
        if not isinstance(shape, dict):
            report.add("bad_mask_shape", f"{path}: shape #{k} is not an object (skipped)")
            continue
        label = shape.get("label")
        pts = shape.get("points")
        kind = shape.get("shape_type") or "polygon"
        try:
            if not isinstance(label, str) or not isinstance(pts, list):
                raise MaskError("needs a string 'label' and a list of 'points'")
            if kind == "rectangle":
                if len(pts) != 2 or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
                    raise MaskError(f"a rectangle needs 2 corner points [x, y], got {len(pts)}")
                (x0, y0), (x1, y1) = ((float(p[0]), float(p[1])) for p in pts)
                x0, x1 = sorted((x0, x1))
                y0, y1 = sorted((y0, y1))
                poly = [x0, y0, x1, y0, x1, y1, x0, y1]
            elif kind == "polygon":
                poly = pts
            else:
                raise MaskError(f"shape_type {kind!r} is not supported; supported: 'polygon', 'rectangle'")
            rle = polygons_to_rle([poly], h, w)
        except (MaskError, TypeError, ValueError) as err:
            report.add("bad_mask_shape", f"{path}: shape #{k} ({label!r}): {err} (skipped)")
            continue
        out.append(MaskObject(label=label, rle=rle, box=mask_to_xyxy(rle)))
    return h, w, out


def _coco(data: dict, path: str, report: Report) -> tuple[int, int, list[MaskObject]]:
    images = data.get("images") or []
    h = w = None
    if images and isinstance(images[0], dict) and images[0].get("height") is not None:
        h, w = _image_size(
            images[0].get("height"), images[0].get("width"), path, "images[0] height and width"
        )
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
                if h is not None and (ah, aw) != (h, w):
                    report.add(
                        "mask_size_mismatch",
                        f"{path}: annotation #{k} ({label!r}) is an RLE of {aw}x{ah}, the file's image is "
                        f"{w}x{h} (skipped)",
                    )
                    continue
            elif isinstance(seg, list) and seg:
                if h is None or w is None:
                    raise MaskError("polygon segmentation needs 'images': [{'height', 'width'}]")
                polys = seg if isinstance(seg[0], list) else [seg]
                rle = polygons_to_rle(polys, h, w)
                ah, aw = h, w
            else:
                raise MaskError("no 'segmentation'")
        except (MaskError, TypeError, ValueError) as err:
            report.add("bad_mask_shape", f"{path}: annotation #{k} ({label!r}): {err} (skipped)")
            continue
        if h is None:
            h, w = ah, aw
        out.append(MaskObject(label=label, rle=rle, box=mask_to_xyxy(rle)))
    if h is None:
        raise MaskFileError(f"{path}: cannot tell the image size (no 'images' entry and no annotations).")
    return int(h), int(w), out


def read_mask_file(path: str | Path, report: Report | None = None) -> tuple[int, int, list[MaskObject]]:
    """Read one SMNER mask file -> ``(height, width, [MaskObject])``; bad shapes go to ``report``."""
    path = str(path)
    report = report if report is not None else Report()
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise MaskFileError(f"{path}: not valid JSON ({err}).") from None
    except UnicodeDecodeError as err:
        raise MaskFileError(f"{path}: not UTF-8 text ({err}).") from None
    fmt = detect_mask_format(data)
    if fmt == "labelme":
        return _labelme(data, path, report)
    if fmt == "coco":
        return _coco(data, path, report)
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise MaskFileError(
        f"{path}: unrecognised mask file (top level: {keys}). Expected LabelMe "
        "({'shapes': [{'label', 'points', 'shape_type'}], 'imageHeight', 'imageWidth'}) or COCO "
        "({'annotations': [{'segmentation', 'category_id'|'label'}], 'categories', 'images'})."
    )
