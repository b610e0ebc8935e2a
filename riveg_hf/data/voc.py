"""Pascal-VOC XML annotations of Twitter-GMNER, parsed without entity expansion (defusedxml)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..boxes import repair_xyxy
from .report import Report

__all__ = ["AnnotationError", "VOCAnnotation", "VOCObject", "read_voc"]


class AnnotationError(ValueError):
    """An XML file that is not a readable Pascal-VOC annotation; the message names the file."""


@dataclass
class VOCObject:
    """One ``<object>``: the annotator's entity name and a pixel ``xyxy`` box."""

    name: str
    box: list[float]


@dataclass
class VOCAnnotation:
    """One Pascal VOC XML file (read with defusedxml): the image size when given, and its objects."""

    width: int | None
    height: int | None
    objects: list[VOCObject] = field(default_factory=list)


def _int_or_none(text: str | None) -> int | None:
    try:
        v = int(float(text))
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def read_voc(path: str | Path, report: Report | None = None) -> VOCAnnotation:
    """Read one Pascal-VOC XML file.

    * XML that is not well-formed, or that declares a DOCTYPE / entities (XML bombs,
      external entities), raises :class:`AnnotationError` naming the file.
    * An ``<object>`` without a name or with non-numeric coordinates is skipped and reported.
    * Boxes with ``xmax < xmin`` (or ``ymax < ymin``) are swapped, boxes crossing the
      ``<size>`` border are clipped; both are counted in ``report`` (``box_repaired``).
    * A box entirely outside the image, of zero area (``[10, 10, 10, 10]``), or with a NaN / infinite
      coordinate cannot be repaired:
      the object is unusable, reported (``box_outside_image`` / ``empty_box`` / ``object_bad_box``) and skipped,
      so its entity stays but is not groundable from that object (no prediction could match a
      zero-area box).
    """
    path = str(path)
    report = report if report is not None else Report()
    try:
        root = SafeET.parse(path, forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException as err:
        raise AnnotationError(
            f"{path}: refused: the XML declares a DOCTYPE or entities ({type(err).__name__}); "
            "Pascal-VOC annotations never need them."
        ) from None
    except ParseError as err:
        raise AnnotationError(f"{path}: not well-formed XML ({err}).") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <annotation> (Pascal-VOC).")
    size = root.find("size")
    width = _int_or_none(size.findtext("width")) if size is not None else None
    height = _int_or_none(size.findtext("height")) if size is not None else None
    ann = VOCAnnotation(width=width, height=height)
    for k, obj in enumerate(root.iter("object")):
        name = obj.findtext("name")
        bnd = obj.find("bndbox")
        if name is None or not name.strip():
            report.add("object_without_name", f"{path}: object #{k} has no <name> (skipped)")
            continue
        if bnd is None:
            report.add("object_without_box", f"{path}: object {name!r} has no <bndbox> (skipped)")
            continue
        try:
            box = [float(bnd.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            report.add(
                "object_bad_box", f"{path}: object {name!r} has a missing or non-numeric coordinate (skipped)"
            )
            continue
        if not all(math.isfinite(v) for v in box):
            report.add(
                "object_bad_box", f"{path}: object {name!r} has a NaN or infinite coordinate (skipped)"
            )
            continue
        x0, x1 = sorted((box[0], box[2]))
        y0, y1 = sorted((box[1], box[3]))
        if width is not None and height is not None and (x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0):
            report.add(
                "box_outside_image",
                f"{path}: object {name!r} has box {box}, entirely outside the {width}x{height} image "
                "(object unusable: skipped; its entity is not groundable from it)",
            )
            continue
        box, fixes = repair_xyxy(box, width, height)
        if box[2] <= box[0] or box[3] <= box[1]:
            report.add(
                "empty_box",
                f"{path}: object {name!r} has a zero-area box {box} (object unusable: skipped; no prediction "
                "could match it, so its entity is not groundable from it)",
            )
            continue
        if fixes:
            report.add("box_repaired", f"{path}: object {name!r}: {', '.join(fixes)}")
        ann.objects.append(VOCObject(name=name, box=box))
    return ann
