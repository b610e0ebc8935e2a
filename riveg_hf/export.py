"""Export predictions (and gold) to the files annotation and evaluation tools read: COCO, Pascal VOC, Label
Studio, FiftyOne; and one image's entities to / from ``supervision.Detections``.

``riveg export --predictions preds.jsonl --format coco|voc|labelstudio|fiftyone --out DIR [--images DIR]
[--dataset DIR --config gmner --split test]`` is a thin wrapper over :func:`export_predictions`.

**Input.** The predictions file is what ``riveg predict`` writes: one JSON line per tweet, ``{"id", "text",
"image"?, "entities": [...]}``, or ``{"id", "text", "image"?, "error"}`` for an input the pipeline could not
process. An error line is skipped and **counted** (:attr:`ExportSummary.error_lines`, printed by the CLI); a
malformed line (not JSON, no ``id``, a box that is not ``xyxy``, a corrupt mask, a duplicate id) stops the export
with an :class:`ExportError` naming the file, the line, what was received and what was expected. Gold comes from a
dataset folder built by ``riveg data build`` (``dataset=``, ``config=``, ``split=``) and is always written to
separate files (or, for Label Studio, the separate ``annotations`` field of each task).

**Image size** (COCO ``width`` / ``height``, VOC ``<size>``, Label Studio ``original_width`` / ``original_height``)
comes from, in this order: the image file found in ``images=`` (``--images``: its relative ``image`` path, its
file name, then ``<id>.jpg`` / ``.jpeg`` / ``.png``, never a path outside that folder; the EXIF orientation is
applied, as everywhere in riveg-hf), the dataset row's ``width`` / ``height``, the prediction's own image file,
then the size of its masks (COCO RLE ``size``). Each exported image records where its size came from
(``size_source``: ``"image file"``, ``"dataset"``, ``"prediction's image file"``, ``"mask"``, or ``null`` when
**unknown**); COCO then writes ``"width": null, "height": null``, VOC leaves ``<size>`` out, and Label Studio and
FiftyOne, which need the size to place a box, refuse the export with the ids to fix.

**Boxes** are riveg-hf's pixel ``xyxy`` (original-image coordinates) everywhere, converted per format:
COCO ``bbox`` is ``[x, y, width, height]`` (``x = xmin``, ``width = xmax - xmin``), VOC keeps ``xmin ymin xmax
ymax`` (rounded to integers, like Twitter-GMNER's own files; ``voc_decimals`` keeps more), Label Studio uses
percent of the image size.

**File names** come from ids: an id that is not a plain name (letters, digits, ``_ . -``; no ``..``) is
sanitised and given a short hash (``"../../x"`` -> ``"x-<8 hex>"``), and every written path is checked to be
inside the output folder. The original id is always kept inside the file (``riveg_id``).

**Atomic.** Every output file (or folder) is written into a hidden staging folder inside ``out`` and moved into
place with ``os.replace`` once complete; an interrupted export leaves the previous files as they were. A rerun
replaces the files it writes and leaves anything else in ``out`` alone.

Layouts
-------

``coco`` -> ``OUT/predictions.json`` (+ ``OUT/gold.json``)::

    {"info": {"description", "version", "date_created", "source", "bbox_format"},
     "licenses": [],
     "categories": [{"id": 1, "name": "PER", "supercategory": "entity"}, ...],   # the entity types, ids from 1
     "images": [{"id": 1, "file_name", "width", "height",                    # width/height null when unknown
                 "riveg_id", "text", "size_source",
                 "predicted" | "annotated",                                     # false: no prediction / no gold row
                 "prediction_error"?,                                           # the error of a skipped line
                 "not_visible": [{"category_id", "entity", "type", "start", "end", "entity_score",
                                  "groundable_score", "groundable", ...}]}],     # COCO has no box-less detection
     "annotations": [{"id", "image_id", "category_id",
                      "bbox": [x, y, w, h],                                     # converted from xyxy
                      "area", "iscrowd": 0,
                      "segmentation": {"size": [h, w], "counts": str}?,        # SMNER masks, COCO RLE
                      "score"?,                                                 # predictions: box_score (else the
                                                                                # entity's score): the confidence
                      "attributes": {"entity", "type", "start", "end", "entity_score", "box_score",
                                     "groundable_score", "groundable", "token_start"?, "token_end"?,
                                     "box_index"?}}]}

The entity's recognition ``score`` is ``attributes.entity_score``: COCO readers that merge ``attributes`` into the
object (FiftyOne, CVAT-style) would otherwise overwrite the annotation's own ``score``. ``start`` / ``end`` are
character offsets into ``text``; gold also has ``token_start`` / ``token_end`` (the dataset's token offsets;
gold ``text`` is the tokens joined by single spaces, as ``riveg predict --dataset`` writes it), and a gold entity
with several boxes has one annotation per box (``box_index``). Predictions and gold share the same ``images``
(same ids), so ``pycocotools.cocoeval.COCOeval`` can compare them.

``voc`` -> ``OUT/predictions/<name>.xml`` (+ ``OUT/gold/<name>.xml``), one Pascal-VOC file per image, as
Twitter-GMNER's annotations::

    <annotation>
      <filename>1.jpg</filename>
      <source><database>riveg-hf predictions</database></source>
      <riveg_id>1</riveg_id>
      <text>Obama visits Paris</text>
      <size><width>64</width><height>48</height><depth>3</depth></size>    <!-- left out when unknown -->
      <segmented>0</segmented>
      <object>
        <name>Obama</name>                                                  <!-- the entity string -->
        <pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
        <bndbox><xmin>4</xmin><ymin>4</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>
        <riveg><type>PER</type><start>0</start><end>5</end><score>0.99</score>
               <box_score>0.61</box_score><groundable_score>0.93</groundable_score></riveg>
      </object>
      <not_visible>                                                         <!-- entities without a box -->
        <entity><name>Paris</name><type>LOC</type><start>13</start><end>18</end>...</entity>
      </not_visible>
    </annotation>

The ``<not_visible>`` entries are ``<entity>``, never ``<object>``, so VOC readers (and
:func:`riveg_hf.data.read_voc`) see only the boxes. Masks are not written to VOC (use ``coco`` or ``fiftyone``).

``labelstudio`` -> ``OUT/tasks.json`` + ``OUT/labeling_config.xml``. The import format is Label Studio's
"Import pre-annotated data" guide (https://labelstud.io/guide/predictions: a task is ``{"data": {...},
"predictions": [{"model_version", "score", "result": [...]}]}``; ``rectanglelabels`` results carry
``original_width``, ``original_height``, ``image_rotation`` and ``value`` ``{x, y, width, height, rotation,
rectanglelabels}`` in **percent** of the image size (its "Units of image annotations": ``pixel_x = x / 100 *
original_width``); NER spans are ``labels`` results with ``value`` ``{start, end, score, text, labels}``) and its
result format (https://labelstud.io/guide/task_format: ``relation`` results ``{from_id, to_id, direction,
labels}``). One task per image::

    {"data": {"image": <image_url_prefix + file_name, else the prediction's image>, "text": <tweet>,
              "riveg_id": <id>, "not_visible": ["Paris (LOC)", ...], "gold_not_visible"?: [...],
              "prediction_error"?: <the error of a skipped line>},
     "predictions": [{"model_version": "riveg-hf", "score": <lowest entity score>, "result": [
         {"id": "e0", "from_name": "entity", "to_name": "text", "type": "labels",
          "value": {"start": 0, "end": 5, "score": 0.99, "text": "Obama", "labels": ["PER"]}},
         {"id": "e0_box0", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
          "original_width": 64, "original_height": 48, "image_rotation": 0, "score": <box_score>,
          "value": {"x": 6.25, "y": 8.33, "width": 25.0, "height": 54.17, "rotation": 0,
                    "rectanglelabels": ["PER"]}},
         {"type": "relation", "from_id": "e0", "to_id": "e0_box0", "direction": "right",
          "labels": ["shown in"]}]}],
     "annotations": [{"result": [...]}]}                                     # gold, same layout, no scores

``start`` / ``end`` are Python (code point) offsets, which Label Studio's Text tag stores since
HumanSignal/label-studio#1559 (before, an emoji counted twice). Masks are not exported to Label Studio (its
``brushlabels`` use its own RLE). ``labeling_config.xml`` is the matching labeling interface (``Text`` +
``Labels name="entity"``, ``Image`` + ``RectangleLabels name="box"``, ``Relations``), one label per entity type.

``fiftyone`` -> ``OUT/labels.json`` (+ ``OUT/gold.json``) + ``OUT/load_fiftyone.py``: COCO files as above (the
layout FiftyOne's ``COCODetectionDataset`` importer reads, ``attributes`` loaded with ``extra_attrs=True``), with
``file_name`` the image's absolute path where it was found (FiftyOne's importer takes absolute file names as they
are), and the Python that loads them (:attr:`ExportSummary.load_command`)::

    import fiftyone as fo
    dataset = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset, data_path=IMAGES, labels_path="OUT/labels.json",
        label_types=["detections", "segmentations"],     # "segmentations" only when there are masks
        label_field={"detections": "predictions", "segmentations": "predictions_masks", "coco_id": "coco_id"},
        extra_attrs=True, include_id=True)
    # + the same from gold.json into "ground_truth", merged with dataset.merge_samples(gold), and the tweet text
    # and not-visible entities of labels.json's images set on each sample (all in load_fiftyone.py)

FiftyOne's ``"segmentations"`` keeps only the objects that have a mask (SMNER), so the boxes are loaded as
``"detections"`` too. FiftyOne stores boxes relative to the image size: it needs every image's width and height.

supervision
-----------
:func:`to_supervision` turns one image's entities into ``supervision.Detections`` (``xyxy``, ``mask``,
``class_id`` = index in the type list, ``confidence`` = ``box_score``, ``data`` = ``entity``, ``type``,
``start``, ``end``, ``score``, ``groundable_score``, ``has_mask``); the entities without a box are kept in
``detections.metadata["not_visible"]``. :func:`from_supervision` is its inverse. Both need the ``export`` extra
(``pip install "riveg-hf[export]"``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import numbers
import os
import re
import shutil
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boxes import BoxError, as_xyxy, xyxy_to_dict
from .masks import MaskError, mask_area, mask_to_xyxy, rle_from_any
from .types import ENTITY_TYPES

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "ExportSummary",
    "export_predictions",
    "from_supervision",
    "safe_file_stem",
    "to_supervision",
]

#: The formats :func:`export_predictions` writes.
EXPORT_FORMATS = ("coco", "voc", "labelstudio", "fiftyone")
#: Image files looked for in ``images=`` as ``<id><ext>`` when the prediction names none there.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
#: The Label Studio relation label that links an entity's text span to its box.
LS_RELATION = "shown in"

_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
# characters XML 1.0 cannot hold (control characters, lone surrogates, U+FFFE/U+FFFF)
_XML_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SUPERVISION_HELP = (
    "needs the `supervision` package: pip install \"riveg-hf[export]\" (or pip install 'supervision>=0.20')."
)


class ExportError(ValueError):
    """Input that cannot be exported; the message says what was received, what was expected and how to fix it."""


# --------------------------------------------------------------------------- records
@dataclass
class _Region:
    """One exported object: an entity's attributes and one of its boxes (or none: not visible)."""

    attrs: dict[str, Any]
    box: list[float] | None
    mask: dict[str, Any] | None
    group: int  # the entity's index in its image (a gold entity with several boxes has several regions)


@dataclass
class _Image:
    id: str
    line: int | None = None
    text: str | None = None
    ref: str | None = None
    pred: list[_Region] | None = None  # None: no prediction for this image (error line, or gold only)
    error: str | None = None
    gold_row: dict[str, Any] | None = None
    gold: list[_Region] | None = None
    name: str = ""
    width: int | None = None
    height: int | None = None
    size_source: str | None = None
    file_name: str = ""
    path: Path | None = None  # the image file found, if any


@dataclass
class ExportSummary:
    """What :func:`export_predictions` wrote and everything it could not carry over."""

    format: str
    out: Path
    files: list[Path] = field(default_factory=list)
    images: int = 0
    predictions: dict[str, int] = field(default_factory=dict)
    gold: dict[str, int] | None = None
    #: ``[(line number, id, error)]`` of the predictions' error lines, skipped
    error_lines: list[tuple[int, str, str]] = field(default_factory=list)
    #: ids of the images whose size is unknown
    unknown_size: list[str] = field(default_factory=list)
    #: ``{id: file stem}`` for ids that were not safe file names
    renamed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: the Python that loads the export (FiftyOne)
    load_command: str | None = None

    def lines(self) -> list[str]:
        """Human-readable report, one line per fact (the CLI prints it)."""
        p = self.predictions
        out = [
            f"riveg export: {self.format} -> {self.out}: {self.images} image(s); predictions: {p.get('entities', 0)} "
            f"entities ({p.get('boxes', 0)} boxes, {p.get('masks', 0)} masks, {p.get('not_visible', 0)} not visible)"
        ]
        if self.gold is not None:
            g = self.gold
            out.append(
                f"  gold: {g.get('entities', 0)} entities ({g.get('boxes', 0)} boxes, {g.get('masks', 0)} masks, "
                f"{g.get('not_visible', 0)} not visible)"
            )
        out += [f"  wrote {f}" for f in self.files]
        if self.error_lines:
            ids = ", ".join(repr(i) for _, i, _ in self.error_lines[:5])
            more = " ..." if len(self.error_lines) > 5 else ""
            out.append(
                f"  skipped {len(self.error_lines)} error line(s) of the predictions (inputs `riveg predict` could "
                f"not process): {ids}{more}"
            )
        if self.unknown_size:
            ids = ", ".join(repr(i) for i in self.unknown_size[:5])
            more = " ..." if len(self.unknown_size) > 5 else ""
            out.append(
                f"  {len(self.unknown_size)} image(s) of unknown size (no image file in --images, no dataset row, "
                f"no mask): {ids}{more}; give --images DIR to read their sizes"
            )
        if self.renamed:
            pairs = ", ".join(f"{k!r} -> {v!r}" for k, v in list(self.renamed.items())[:5])
            out.append(f"  {len(self.renamed)} id(s) are not plain file names and were renamed: {pairs}")
        out += [f"  note: {n}" for n in self.notes]
        if self.load_command:
            out.append("  load it with:\n" + "\n".join("    " + s for s in self.load_command.splitlines()))
        return out


# --------------------------------------------------------------------------- validation helpers
def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ExportError(f"{what} must be a number or null, got {value!r}.")
    f = float(value)
    return f if math.isfinite(f) else None


def _offset(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise ExportError(f"{what} must be a non-negative integer (a character offset), got {value!r}.")
    return int(value)


def _pred_regions(entities: Any, text: str | None, where: str) -> list[_Region]:
    if not isinstance(entities, list):
        raise ExportError(
            f"{where}: 'entities' must be a list of entity objects (as `riveg predict` writes), got "
            f"{type(entities).__name__}."
        )
    regions = []
    for k, e in enumerate(entities):
        if hasattr(e, "to_dict") and not isinstance(e, Mapping):
            e = e.to_dict()  # a GroundedEntity
        at = f"{where}: entity #{k}"
        if not isinstance(e, Mapping):
            raise ExportError(
                f"{at}: expected an object {{entity, type, start, end, box, ...}}, got {e!r:.80}."
            )
        start = _offset(e.get("start"), f"{at}: 'start'")
        end = _offset(e.get("end"), f"{at}: 'end'")
        if end < start:
            raise ExportError(f"{at}: 'end' ({end}) is before 'start' ({start}); offsets are [start, end).")
        name = e.get("entity")
        if name is None and text is not None and end <= len(text):
            name = text[start:end]
        if not isinstance(name, str):
            raise ExportError(
                f"{at}: 'entity' must be the entity's string, got {name!r:.80} (and there is no 'text' to take it "
                "from)."
            )
        etype = e.get("type")
        if not isinstance(etype, str) or not etype:
            raise ExportError(
                f"{at} ({name!r}): 'type' must be a non-empty string such as 'PER', got {etype!r}."
            )
        try:
            box = as_xyxy(e.get("box"), what=f"{at} ({name!r}): box")
        except BoxError as err:
            raise ExportError(str(err)) from None
        mask = None
        if e.get("mask") is not None:
            try:
                mask = rle_from_any(e["mask"])
            except MaskError as err:
                raise ExportError(
                    f"{at} ({name!r}): mask: {err} Masks are COCO RLE {{'size': [h, w], 'counts': str}}."
                ) from None
            if box is None:
                box = mask_to_xyxy(mask)  # a mask without a box: its tight box
                if box is None:
                    mask = None  # an empty mask locates nothing
        attrs: dict[str, Any] = {"entity": name, "type": etype, "start": start, "end": end}
        attrs["score"] = _number(e.get("score"), f"{at}: 'score'")
        attrs["box_score"] = _number(e.get("box_score"), f"{at}: 'box_score'")
        attrs["groundable_score"] = _number(e.get("groundable_score"), f"{at}: 'groundable_score'")
        attrs["groundable"] = bool(e.get("groundable", box is not None))
        for key in ("token_start", "token_end"):
            if e.get(key) is not None:
                attrs[key] = _offset(e[key], f"{at}: {key!r}")
        regions.append(_Region(attrs, box, mask, k))
    return regions


def _gold_regions(row: Mapping[str, Any], type_names: Sequence[str] | None, where: str) -> list[_Region]:
    tokens = row.get("tokens")
    if not isinstance(tokens, list):
        raise ExportError(
            f"{where}: a dataset row needs 'tokens' (a list of words), got {type(tokens).__name__}."
        )
    starts, ends, pos = [], [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok)
        ends.append(pos)
        pos += 1
    regions = []
    for k, e in enumerate(row.get("entities") or []):
        etype = e.get("type")
        if isinstance(etype, numbers.Integral) and not isinstance(etype, bool) and type_names:
            etype = type_names[int(etype)]
        ts, te = int(e["start"]), int(e["end"])
        if not 0 <= ts < te <= len(tokens):
            raise ExportError(
                f"{where}: entity #{k} has token span [{ts}, {te}) outside its {len(tokens)} tokens."
            )
        attrs = {
            "entity": e.get("text") if e.get("text") is not None else " ".join(tokens[ts:te]),
            "type": str(etype),
            "start": starts[ts],
            "end": ends[te - 1],
            "token_start": ts,
            "token_end": te,
            "groundable": bool(e.get("groundable", bool(e.get("boxes")))),
        }
        boxes = list(e.get("boxes") or [])
        masks = list(e.get("masks") or [])
        if not boxes:
            regions.append(_Region(attrs, None, None, k))
        for i, b in enumerate(boxes):
            try:
                box = as_xyxy(b, what=f"{where}: entity #{k} box #{i}")
                mask = rle_from_any(masks[i]) if i < len(masks) and masks[i] is not None else None
            except (BoxError, MaskError) as err:
                raise ExportError(str(err)) from None
            regions.append(
                _Region({**attrs, "box_index": i} if len(boxes) > 1 else dict(attrs), box, mask, k)
            )
    return regions


# --------------------------------------------------------------------------- names and images
def safe_file_stem(example_id: str) -> str:
    """A file stem for ``example_id`` that can never leave its folder: the id itself when it is a plain name
    (letters, digits, ``_ . -``, no ``..``), else its safe characters plus a hash of the id.

    >>> safe_file_stem("1015799"), safe_file_stem("../../x")
    ('1015799', 'x-9cdf6a50')
    """
    if _SAFE_STEM.match(example_id) and ".." not in example_id:
        return example_id
    digest = hashlib.sha256(example_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    base = re.sub(r"[^A-Za-z0-9_.\-]+", "_", example_id).replace("..", "_").strip("._-")[:80]
    return f"{base}-{digest}" if base else f"id-{digest}"


def _assign_names(images: list[_Image], summary: ExportSummary) -> None:
    used: set[str] = set()
    for img in images:
        name = safe_file_stem(img.id)
        if name.casefold() in used:  # "A" and "a" are one file on case-insensitive file systems
            digest = hashlib.sha256(img.id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
            name = f"{name}-{digest}"
        if name.casefold() in used:
            raise ExportError(
                f"ids {img.id!r} and another one map to the same file name {name!r}; make them distinct."
            )
        used.add(name.casefold())
        img.name = name
        if name != img.id:
            summary.renamed[img.id] = name


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _read_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file as displayed (EXIF orientation applied), from its header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                try:
                    orientation = im.getexif().get(0x0112, 1)
                except Exception:
                    orientation = 1
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        return None
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees when displayed
        w, h = h, w
    return (w, h) if w > 0 and h > 0 else None


def _is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def _find_in_images(img: _Image, images_dir: Path, gold_path: str | None) -> tuple[Path, str] | None:
    rels: list[str] = []
    if img.ref:
        ref = img.ref.split("?", 1)[0] if _is_url(img.ref) else img.ref
        if not _is_url(img.ref) and not os.path.isabs(ref):
            rels.append(ref)
        rels.append(os.path.basename(ref.rstrip("/\\")))
    if gold_path:
        rels.append(os.path.basename(gold_path))
    if _SAFE_STEM.match(img.id) and ".." not in img.id:  # an id becomes a path only when it is a plain name
        rels += [f"{img.id}{ext}" for ext in IMAGE_EXTENSIONS]
    for rel in rels:
        if not rel:
            continue
        cand = images_dir / rel
        if cand.is_file() and _inside(cand, images_dir):
            return cand, Path(rel).as_posix()
    return None


def _resolve_images(images: list[_Image], images_dir: Path | None, base_dir: Path | None) -> None:
    for img in images:
        gold_image = (img.gold_row or {}).get("image")
        gold_path = gold_image.get("path") if isinstance(gold_image, Mapping) else None
        size = None
        found = _find_in_images(img, images_dir, gold_path) if images_dir is not None else None
        if found is not None:
            img.path, img.file_name = found
            size = _read_size(img.path)
            if size is not None:
                img.size_source = "image file"
        if size is None and img.gold_row is not None:
            w, h = img.gold_row.get("width"), img.gold_row.get("height")
            if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
                size, img.size_source = (w, h), "dataset"
        if img.path is None and img.ref and not _is_url(img.ref):
            p = Path(img.ref)
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            if p.is_file():
                img.path = p.resolve()
                if size is None:
                    size = _read_size(p)
                    if size is not None:
                        img.size_source = "prediction's image file"
        if size is None:
            for r in (img.pred or []) + (img.gold or []):
                if r.mask is not None:
                    size, img.size_source = (r.mask["size"][1], r.mask["size"][0]), "mask"
                    break
        if size is not None:
            img.width, img.height = size
        if not img.file_name:
            img.file_name = img.ref or (os.path.basename(gold_path) if gold_path else f"{img.name}.jpg")
        for which, regions in (("prediction", img.pred), ("gold", img.gold)):
            for r in regions or []:
                if r.mask is not None and size is not None and r.mask["size"] != [size[1], size[0]]:
                    h, w = r.mask["size"]
                    raise ExportError(
                        f"id {img.id!r}: the {which} mask of {r.attrs['entity']!r} is {w}x{h} pixels but the image "
                        f"is {size[0]}x{size[1]} ({img.size_source}); masks must cover the original image. Is it the "
                        "right image (--images) or the right predictions file?"
                    )


# --------------------------------------------------------------------------- reading the inputs
def _read_predictions(predictions: Any) -> tuple[list[tuple[int, dict]], str, Path | None]:
    if isinstance(predictions, (str, os.PathLike)):
        path = Path(predictions)
        if not path.exists():
            raise FileNotFoundError(
                f"predictions file {path} not found; pass the JSON-lines file `riveg predict` wrote."
            )
        if path.is_dir():
            raise IsADirectoryError(
                f"{path} is a folder; pass the predictions JSON-lines file `riveg predict` wrote."
            )
        from .predict import read_jsonl

        try:
            return read_jsonl(path), str(path), path.parent
        except UnicodeDecodeError as err:
            raise ExportError(f"{path}: not UTF-8 text ({err}); expected JSON lines.") from None
    rows = []
    for k, row in enumerate(predictions, 1):
        if not isinstance(row, Mapping):
            raise ExportError(
                f"predictions[{k - 1}]: expected a dict {{id, text, entities}}, got {type(row).__name__}."
            )
        rows.append((k, dict(row)))
    return rows, "predictions", None


def _collect(rows: list[tuple[int, dict]], src: str, summary: ExportSummary) -> dict[str, _Image]:
    images: dict[str, _Image] = {}
    for lineno, row in rows:
        where = f"{src}:{lineno}"
        rid = row.get("id")
        if rid is None or isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise ExportError(
                f"{where}: each line needs an 'id' (a string or integer) and 'entities' (or 'error', as `riveg "
                f"predict` writes for a failed input); got keys {sorted(row)}."
            )
        rid = str(rid)
        if rid in images:
            raise ExportError(
                f"{where}: duplicate id {rid!r} (first on line {images[rid].line}); ids name the exported images and "
                "files, so each must appear once. Remove the repeated line."
            )
        text = row.get("text")
        if text is not None and not isinstance(text, str):
            raise ExportError(f"{where}: 'text' must be a string, got {type(text).__name__}.")
        ref = row.get("image")
        if isinstance(ref, Mapping):
            ref = ref.get("path")
        img = _Image(id=rid, line=lineno, text=text, ref=ref if isinstance(ref, str) and ref else None)
        images[rid] = img
        if "entities" not in row:
            if "error" in row:
                img.error = str(row["error"])
                summary.error_lines.append((lineno, rid, img.error))
                continue
            raise ExportError(
                f"{where}: each line needs 'entities' (or 'error', as `riveg predict` writes for a failed input); "
                f"got keys {sorted(row)}."
            )
        img.pred = _pred_regions(row["entities"], text, where)
    return images


def _load_gold(dataset: Any, config: str | None, split: str) -> tuple[dict[str, dict], list[str] | None, str]:
    if isinstance(dataset, (str, os.PathLike)):
        from .data import load_built_dataset

        ds = load_built_dataset(dataset, config, split=split)
        label = f"{dataset} ({config or 'default config'}) [{split}]"
    else:
        ds, label = dataset, "the dataset"
    if not hasattr(ds, "column_names") or isinstance(ds.column_names, dict):
        raise ExportError(
            f"{label}: expected one split (a datasets.Dataset), got {type(ds).__name__}; pass split=."
        )
    missing = [c for c in ("id", "tokens", "entities") if c not in ds.column_names]
    if missing:
        raise ExportError(
            f"{label} has no {missing} column(s) (it has {ds.column_names}); gold needs a dataset built by `riveg "
            "data build` (twitter-gmner / twitter-smner)."
        )
    feature = ds.features["entities"]
    feature = getattr(feature, "feature", feature)
    type_feature = feature.get("type") if isinstance(feature, Mapping) else None
    type_names = list(type_feature.names) if hasattr(type_feature, "names") else None
    if "image" in ds.column_names:
        from datasets import Image

        ds = ds.cast_column("image", Image(decode=False))  # sizes come from width / height: no decoding
    cols = [c for c in ("id", "tokens", "width", "height", "image", "entities") if c in ds.column_names]
    rows = {}
    for row in ds.select_columns(cols):
        rows[str(row["id"])] = row
    return rows, type_names, label


# --------------------------------------------------------------------------- writing
def _json_bytes(obj: Any, indent: int | None = None) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a tweet: escaped, still valid JSON
        return json.dumps(obj, ensure_ascii=True, indent=indent).encode("ascii")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class _Stage:
    """Files written into a hidden folder inside ``out``, moved into place (``os.replace``) when all are done."""

    def __init__(self, out: Path):
        from .data.folder import make_stage_dir

        if out.exists() and not out.is_dir():
            raise FileExistsError(
                f"--out {out} exists and is not a folder; pass a folder for the exported files."
            )
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob(".riveg-export-*"):  # left by an export that was killed (not one still running)
            pid = old.name.split("-")[2]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        self.out = out
        self.dir = make_stage_dir(f".riveg-export-{os.getpid()}-", out)
        self.entries: list[str] = []

    def path(self, rel: str) -> Path:
        p = self.dir / rel
        if not _inside(p, self.dir):  # never: names are checked before, this is the last line of defence
            raise ExportError(f"refused to write {rel!r}: it would leave the output folder.")
        top = rel.split("/", 1)[0]
        if top not in self.entries:
            self.entries.append(top)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, rel: str, data: bytes) -> None:
        with open(self.path(rel), "wb") as fh:
            fh.write(data)

    def commit(self) -> list[Path]:
        done = []
        for top in self.entries:
            src, dst = self.dir / top, self.out / top
            if src.is_dir() and dst.exists():
                old = self.dir / f".old-{top}"
                os.replace(dst, old)  # a folder cannot be replaced in one step: swap, then drop the old one
                os.replace(src, dst)
            else:
                os.replace(src, dst)
            done.append(dst)
        shutil.rmtree(self.dir, ignore_errors=True)
        return done

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _coco_attrs(r: _Region) -> dict[str, Any]:
    a = dict(r.attrs)
    if "score" in a:
        a["entity_score"] = a.pop("score")
    return a


def _coco_doc(
    images: list[_Image], gold: bool, categories: list[str], source: str, absolute: bool = False
) -> dict[str, Any]:
    from . import __version__

    cat_id = {t: k + 1 for k, t in enumerate(categories)}
    doc_images, anns = [], []
    for k, img in enumerate(images, 1):
        regions = img.gold if gold else img.pred
        file_name = str(img.path) if absolute and img.path is not None else img.file_name
        entry: dict[str, Any] = {
            "id": k,
            "file_name": file_name,
            "width": img.width,
            "height": img.height,
            "riveg_id": img.id,
            "text": img.text if not gold or img.gold_row is None else " ".join(img.gold_row["tokens"]),
            "size_source": img.size_source,
        }
        if gold:
            entry["annotated"] = img.gold is not None
        else:
            entry["predicted"] = img.pred is not None
            if img.error is not None:
                entry["prediction_error"] = img.error
        not_visible = []
        for r in regions or []:
            attrs = _coco_attrs(r)
            if r.box is None:
                not_visible.append({"category_id": cat_id[r.attrs["type"]], **attrs})
                continue
            x0, y0, x1, y1 = r.box
            ann: dict[str, Any] = {
                "id": len(anns) + 1,
                "image_id": k,
                "category_id": cat_id[r.attrs["type"]],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": float(mask_area(r.mask)) if r.mask is not None else (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
            if r.mask is not None:
                ann["segmentation"] = {"size": list(r.mask["size"]), "counts": r.mask["counts"]}
            if not gold:
                conf = r.attrs.get("box_score")
                ann["score"] = conf if conf is not None else r.attrs.get("score")
            ann["attributes"] = attrs
            anns.append(ann)
        entry["not_visible"] = not_visible
        doc_images.append(entry)
    return {
        "info": {
            "description": f"riveg-hf {'gold' if gold else 'predictions'} exported for COCO tools",
            "version": __version__,
            "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": source,
            "bbox_format": "COCO [x, y, width, height] in pixels, converted from riveg-hf's xyxy "
            "(x = xmin, y = ymin, width = xmax - xmin, height = ymax - ymin)",
        },
        "licenses": [],
        "categories": [{"id": cat_id[t], "name": t, "supercategory": "entity"} for t in categories],
        "images": doc_images,
        "annotations": anns,
    }


def _xml_text(value: Any) -> str:
    return _XML_INVALID.sub("\ufffd", str(value))


def _sub(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = _xml_text(text)
    return el


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


def _voc_xml(img: _Image, regions: list[_Region], gold: bool, decimals: int) -> bytes:
    root = ET.Element("annotation")
    _sub(root, "filename", os.path.basename(img.file_name) or f"{img.name}.jpg")
    src = _sub(root, "source")
    _sub(src, "database", f"riveg-hf {'gold' if gold else 'predictions'}")
    _sub(root, "riveg_id", img.id)
    text = " ".join(img.gold_row["tokens"]) if gold and img.gold_row is not None else img.text
    if text is not None:
        _sub(root, "text", text)
    if img.width is not None:
        size = _sub(root, "size")
        _sub(size, "width", img.width)
        _sub(size, "height", img.height)
        _sub(size, "depth", 3)
    _sub(root, "segmented", 0)
    not_visible = None
    for r in regions:
        attrs = {k: v for k, v in r.attrs.items() if k != "entity" and v is not None}
        if r.box is None:
            if not_visible is None:
                not_visible = ET.Element("not_visible")
            ent = _sub(not_visible, "entity")
            _sub(ent, "name", r.attrs["entity"])
            for k, v in attrs.items():
                _sub(ent, k, _fmt(v))
            continue
        obj = _sub(root, "object")
        _sub(obj, "name", r.attrs["entity"])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", 0)
        _sub(obj, "difficult", 0)
        bnd = _sub(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), r.box):
            _sub(bnd, tag, round(v) if decimals <= 0 else _fmt(round(v, decimals)))
        extra = _sub(obj, "riveg")
        for k, v in attrs.items():
            _sub(extra, k, _fmt(v))
    if not_visible is not None:
        root.append(not_visible)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _ls_results(
    img: _Image, regions: list[_Region], gold: bool, text: str, unplaced: list[str]
) -> list[dict[str, Any]]:
    """Label Studio results of one image: a ``labels`` span per entity (placed only where ``text[start:end]`` is
    the entity: Label Studio shows the span on ``data.text``), a ``rectanglelabels`` per box, a relation between."""
    results: list[dict[str, Any]] = []
    spans: dict[int, str] = {}
    boxes_of: dict[int, int] = {}
    for r in regions:
        a = r.attrs
        if r.group not in spans:
            span_id = f"e{r.group}"
            spans[r.group] = span_id
            if text[a["start"] : a["end"]] == a["entity"]:
                value: dict[str, Any] = {"start": a["start"], "end": a["end"]}
                if not gold and a.get("score") is not None:
                    value["score"] = a["score"]
                value.update({"text": a["entity"], "labels": [a["type"]]})
                results.append(
                    {
                        "id": span_id,
                        "from_name": "entity",
                        "to_name": "text",
                        "type": "labels",
                        "value": value,
                    }
                )
            else:
                spans[r.group] = ""  # not at its offsets in data.text: the box stays, unlinked
                unplaced.append(img.id)
        if r.box is None:
            continue
        k = boxes_of.get(r.group, 0)
        boxes_of[r.group] = k + 1
        box_id = f"e{r.group}_box{k}"
        w, h = img.width, img.height
        x0, y0, x1, y1 = r.box
        rect: dict[str, Any] = {
            "id": box_id,
            "from_name": "box",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {
                "x": x0 / w * 100.0,
                "y": y0 / h * 100.0,
                "width": (x1 - x0) / w * 100.0,
                "height": (y1 - y0) / h * 100.0,
                "rotation": 0,
                "rectanglelabels": [a["type"]],
            },
        }
        if not gold and a.get("box_score") is not None:
            rect["score"] = a["box_score"]
        results.append(rect)
        if spans[r.group]:
            results.append(
                {
                    "type": "relation",
                    "from_id": spans[r.group],
                    "to_id": box_id,
                    "direction": "right",
                    "labels": [LS_RELATION],
                }
            )
    return results


def _ls_config(categories: list[str]) -> bytes:
    view = ET.Element("View")
    ET.SubElement(view, "Text", name="text", value="$text")
    labels = ET.SubElement(view, "Labels", name="entity", toName="text")
    for t in categories:
        ET.SubElement(labels, "Label", value=_xml_text(t))
    ET.SubElement(view, "Image", name="image", value="$image")
    rects = ET.SubElement(view, "RectangleLabels", name="box", toName="image")
    for t in categories:
        ET.SubElement(rects, "Label", value=_xml_text(t))
    rel = ET.SubElement(view, "Relations")
    ET.SubElement(rel, "Relation", value=LS_RELATION)
    ET.indent(view)
    return ET.tostring(view, encoding="utf-8") + b"\n"


def _not_visible_names(regions: list[_Region] | None) -> list[str]:
    return [f"{r.attrs['entity']} ({r.attrs['type']})" for r in regions or [] if r.box is None]


def _ls_tasks(
    images: list[_Image], has_gold: bool, model_version: str, url_prefix: str | None, unplaced: list[str]
) -> list[dict]:
    tasks = []
    for img in images:
        ref = img.file_name if url_prefix is not None or not img.ref else img.ref
        data: dict[str, Any] = {
            "image": f"{url_prefix}{ref}" if url_prefix is not None else ref,
            "text": img.text
            if img.text is not None
            else (" ".join(img.gold_row["tokens"]) if img.gold_row else ""),
            "riveg_id": img.id,
        }
        task: dict[str, Any] = {"data": data}
        if img.pred is not None:
            data["not_visible"] = _not_visible_names(img.pred)
            scores = [r.attrs["score"] for r in img.pred if r.attrs.get("score") is not None]
            pred: dict[str, Any] = {"model_version": model_version}
            if scores:
                pred["score"] = min(scores)
            pred["result"] = _ls_results(img, img.pred, False, data["text"], unplaced)
            task["predictions"] = [pred]
        elif img.error is not None:
            data["prediction_error"] = img.error
        if has_gold and img.gold is not None:
            data["gold_not_visible"] = _not_visible_names(img.gold)
            task["annotations"] = [{"result": _ls_results(img, img.gold, True, data["text"], unplaced)}]
        tasks.append(task)
    return tasks


def _fiftyone_command(
    out: Path, images_dir: Path | None, images: list[_Image], has_gold: bool, masks: bool
) -> str:
    if images_dir is not None:
        data_path = repr(str(images_dir.resolve())) + ","
    elif all(img.path is not None for img in images):
        data_path = repr(str(out.resolve())) + ",  # every file_name is an absolute path: any folder will do"
    else:
        data_path = '"/path/to/images",  # replace: the folder of the images (not all were found)'
    types = ["detections", "segmentations"] if masks else ["detections"]

    def load(var: str, labels: str, field: str) -> list[str]:
        fields = {"detections": field, "coco_id": "coco_id"}
        if masks:
            fields["segmentations"] = f"{field}_masks"  # the entities with a mask, with it
        return [
            f"{var} = fo.Dataset.from_dir(",
            "    dataset_type=fo.types.COCODetectionDataset,",
            f"    data_path={data_path}",
            f"    labels_path={str(out.resolve() / labels)!r},",
            f"    label_types={types!r},",
            f"    label_field={fields!r},",
            "    extra_attrs=True,",
            "    include_id=True,",
            ")",
        ]

    lines = ["import json", "", "import fiftyone as fo", "", *load("dataset", "labels.json", "predictions")]
    if has_gold:
        lines += [
            *load("gold", "gold.json", "ground_truth"),
            "dataset.merge_samples(gold)  # matched by filepath",
        ]
    lines += [
        "# the tweet and its entities without a box (kept per image: COCO has no box-less detection)",
        f"meta = {{im['id']: im for im in json.load(open({str(out.resolve() / 'labels.json')!r}))['images']}}",
        "for sample in dataset.iter_samples(autosave=True):",
        "    im = meta[sample['coco_id']]",
        "    sample['riveg_id'] = im['riveg_id']",
        "    sample['text'] = im['text']",
        "    sample['not_visible'] = [f\"{e['entity']} ({e['type']})\" for e in im['not_visible']]",
    ]
    return "\n".join(lines) + "\n"


def _counts(images: list[_Image], gold: bool) -> dict[str, int]:
    c = {"images": 0, "entities": 0, "boxes": 0, "masks": 0, "not_visible": 0}
    for img in images:
        regions = img.gold if gold else img.pred
        if regions is None:
            continue
        c["images"] += 1
        c["entities"] += len({r.group for r in regions})
        c["boxes"] += sum(r.box is not None for r in regions)
        c["masks"] += sum(r.mask is not None for r in regions)
        c["not_visible"] += sum(r.box is None for r in regions)
    return c


# --------------------------------------------------------------------------- the entry point
def export_predictions(
    predictions: str | os.PathLike | Iterable[Mapping[str, Any]],
    out: str | os.PathLike,
    format: str,
    *,
    images: str | os.PathLike | None = None,
    dataset: Any = None,
    config: str | None = None,
    split: str = "test",
    types: Sequence[str] | None = None,
    model_version: str = "riveg-hf",
    image_url_prefix: str | None = None,
    voc_decimals: int = 0,
) -> ExportSummary:
    """Export ``predictions`` (a ``riveg predict`` JSON-lines file, or its lines as dicts) to ``out`` in
    ``format`` (one of :data:`EXPORT_FORMATS`; layouts in the module doc), with gold from ``dataset`` (a folder /
    Hub id built by ``riveg data build``, or a ``datasets.Dataset`` split) when given.

    ``images``: the folder of the images (their sizes are read from there, and COCO / Label Studio file names are
    relative to it). ``types``: the category list (default: the dataset's types, else PER, LOC, ORG, OTHER; a type
    found in the data and missing from it is appended). ``model_version``: Label Studio's prediction version.
    ``image_url_prefix``: put before each file name in Label Studio's ``data.image`` (e.g.
    ``"/data/local-files/?d=images/"``). Returns an :class:`ExportSummary`.
    """
    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}.")
    out = Path(out)
    images_dir = Path(images) if images is not None else None
    if images_dir is not None and not images_dir.is_dir():
        raise NotADirectoryError(
            f"--images {images_dir} is not a folder; pass the folder that holds the images."
        )
    summary = ExportSummary(format=format, out=out)
    rows, src, base_dir = _read_predictions(predictions)
    by_id = _collect(rows, src, summary)

    type_names = None
    has_gold = dataset is not None
    if has_gold:
        gold_rows, type_names, label = _load_gold(dataset, config, split)
        for gid, row in gold_rows.items():
            img = by_id.get(gid)
            if img is None:
                img = by_id[gid] = _Image(id=gid)
            img.gold_row = row
            img.gold = _gold_regions(row, type_names, f"{label} id {gid!r}")
        only_gold = [
            i for i, img in by_id.items() if img.gold is not None and img.pred is None and not img.error
        ]
        if only_gold:
            summary.notes.append(
                f"{len(only_gold)} id(s) of {label} have no prediction line: exported with their gold, "
                "no prediction (predicted: false)"
            )
        only_pred = [i for i, img in by_id.items() if img.gold is None and img.pred is not None]
        if only_pred:
            summary.notes.append(
                f"{len(only_pred)} predicted id(s) are not in {label}: {only_pred[:5]}; they have no gold"
            )
    ordered = [img for img in by_id.values() if img.pred is not None or img.gold is not None]
    if not ordered:
        raise ExportError(
            f"{src}: nothing to export: {len(summary.error_lines)} error line(s) and no prediction"
            + (" (and no gold)" if has_gold else "")
            + "."
        )
    _assign_names(ordered, summary)
    _resolve_images(ordered, images_dir, base_dir)

    categories = list(types) if types is not None else list(type_names or ENTITY_TYPES)
    extra = []
    for img in ordered:
        for r in (img.pred or []) + (img.gold or []):
            if r.attrs["type"] not in categories and r.attrs["type"] not in extra:
                extra.append(r.attrs["type"])
    if extra:
        categories += extra
        if types is not None or type_names is not None:
            summary.notes.append(f"type(s) {extra} are not in the type list; added as categories")
    summary.unknown_size = [img.id for img in ordered if img.width is None]
    summary.images = len(ordered)
    summary.predictions = _counts(ordered, gold=False)
    summary.gold = _counts(ordered, gold=True) if has_gold else None

    if format in ("labelstudio", "fiftyone"):
        unplaced = [
            img.id
            for img in ordered
            if img.width is None and any(r.box is not None for r in (img.pred or []) + (img.gold or []))
        ]
        if unplaced:
            raise ExportError(
                f"{format} places boxes relative to the image size, and {len(unplaced)} image(s) with boxes have no "
                f"known size: {unplaced[:5]}{' ...' if len(unplaced) > 5 else ''}. Pass --images DIR (the folder of "
                "the images) or --dataset DIR (its rows have width / height), or export to coco / voc, which keep "
                "pixel boxes without it."
            )

    from .data.folder import signals_as_exit

    with signals_as_exit():
        stage = _Stage(out)
        try:
            _write(format, stage, ordered, has_gold, categories, src, summary, images_dir,
                   model_version, image_url_prefix, voc_decimals)  # fmt: skip
            summary.files = stage.commit()
        except BaseException:
            stage.abort()
            raise
    return summary


def _write(format, stage, ordered, has_gold, categories, src, summary, images_dir, model_version, url_prefix,
           voc_decimals) -> None:  # fmt: skip
    masks = bool(summary.predictions.get("masks") or (summary.gold or {}).get("masks"))
    if format == "coco":
        stage.write("predictions.json", _json_bytes(_coco_doc(ordered, False, categories, src)))
        if has_gold:
            stage.write("gold.json", _json_bytes(_coco_doc(ordered, True, categories, src)))
    elif format == "fiftyone":
        stage.write("labels.json", _json_bytes(_coco_doc(ordered, False, categories, src, absolute=True)))
        if has_gold:
            stage.write("gold.json", _json_bytes(_coco_doc(ordered, True, categories, src, absolute=True)))
        summary.load_command = _fiftyone_command(stage.out, images_dir, ordered, has_gold, masks)
        stage.write("load_fiftyone.py", summary.load_command.encode("utf-8"))
        if images_dir is None and any(img.path is None for img in ordered):
            summary.notes.append(
                "some images were not found on disk: FiftyOne needs them; set data_path in the command below"
            )
    elif format == "voc":
        for img in ordered:
            if img.pred is not None:
                stage.write(f"predictions/{img.name}.xml", _voc_xml(img, img.pred, False, voc_decimals))
            if has_gold and img.gold is not None:
                stage.write(f"gold/{img.name}.xml", _voc_xml(img, img.gold, True, voc_decimals))
        if masks:
            summary.notes.append("Pascal VOC files carry boxes only: the masks are not in them (use coco)")
    elif format == "labelstudio":
        unplaced: list[str] = []
        tasks = _ls_tasks(ordered, has_gold, model_version, url_prefix, unplaced)
        stage.write("tasks.json", _json_bytes(tasks, indent=1))
        if unplaced:
            summary.notes.append(
                f"{len(unplaced)} entity span(s) are not at their offsets in the tweet text (ids "
                f"{sorted(set(unplaced))[:5]}): written without their text span, boxes kept"
            )
        stage.write("labeling_config.xml", _ls_config(categories))
        if masks:
            summary.notes.append("Label Studio tasks carry boxes only: the masks are not in them (use coco)")
    if format in ("coco", "fiftyone"):
        summary.notes.append(
            "bbox is COCO [x, y, width, height], converted from riveg-hf's [xmin, ymin, xmax, ymax]"
        )


# --------------------------------------------------------------------------- supervision
def _supervision():
    try:
        import supervision as sv
    except ImportError as err:
        raise ImportError(
            f"riveg_hf.export.to_supervision / from_supervision {_SUPERVISION_HELP} ({err})"
        ) from None
    return sv


def to_supervision(
    entities: Iterable[Any],
    *,
    types: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
):
    """One image's entities (pipeline outputs: dicts or :class:`~riveg_hf.types.GroundedEntity`) ->
    ``supervision.Detections``.

    Each entity with a box is one detection: ``xyxy``, ``class_id`` (index of its type in ``types``, default
    PER, LOC, ORG, OTHER), ``confidence`` (``box_score``, NaN when none), ``mask`` (``(n, H, W)`` booleans when any
    entity has a mask; all-False where one has none, ``data["has_mask"]`` says which), and ``data`` arrays
    ``entity``, ``type``, ``start``, ``end``, ``score``, ``groundable_score``. The entities without a box ("not
    visible") are kept as dicts in ``detections.metadata["not_visible"]``. ``image_size`` ``(width, height)`` is
    checked against the masks.
    """
    import numpy as np

    sv = _supervision()
    from .masks import decode_rle

    regions = _pred_regions(list(entities), None, "to_supervision")
    names = list(types) if types is not None else list(ENTITY_TYPES)
    unknown = sorted({r.attrs["type"] for r in regions} - set(names))
    if unknown:
        raise ValueError(
            f"entity type(s) {unknown} are not in types={names}; pass types=[...] including them."
        )
    boxed = [r for r in regions if r.box is not None]
    n = len(boxed)
    mask = None
    if any(r.mask is not None for r in boxed):
        sizes = {tuple(r.mask["size"]) for r in boxed if r.mask is not None}
        if image_size is not None:
            sizes.add((int(image_size[1]), int(image_size[0])))
        if len(sizes) != 1:
            raise ValueError(
                f"masks of different sizes (height, width) {sorted(sizes)} cannot be one Detections."
            )
        (h, w) = sizes.pop()
        mask = np.zeros((n, h, w), dtype=bool)
        for k, r in enumerate(boxed):
            if r.mask is not None:
                mask[k] = decode_rle(r.mask)

    def col(key: str, dtype: Any) -> Any:
        vals = [r.attrs.get(key) for r in boxed]
        if dtype is float:
            return np.array([np.nan if v is None else v for v in vals], dtype=float)
        return np.array(vals, dtype=dtype) if n else np.array([], dtype=dtype)

    data = {
        "entity": col("entity", object),
        "type": col("type", object),
        "start": col("start", int),
        "end": col("end", int),
        "score": col("score", float),
        "groundable_score": col("groundable_score", float),
    }
    if mask is not None:
        data["has_mask"] = np.array([r.mask is not None for r in boxed], dtype=bool)
    det = sv.Detections(
        xyxy=np.array([r.box for r in boxed], dtype=float).reshape(n, 4),
        mask=mask,
        confidence=col("box_score", float),
        class_id=np.array([names.index(r.attrs["type"]) for r in boxed], dtype=int),
        data=data,
    )
    not_visible = [
        {
            k: v
            for k, v in r.attrs.items()
            if k in ("entity", "type", "start", "end", "score", "groundable_score")
        }
        for r in regions
        if r.box is None
    ]
    if hasattr(det, "metadata"):
        det.metadata["not_visible"] = not_visible
    elif not_visible:
        warnings.warn(
            f"this supervision version has no Detections.metadata: {len(not_visible)} not-visible entities are not "
            "carried (upgrade: pip install -U supervision).",
            stacklevel=2,
        )
    return det


def from_supervision(detections: Any, *, types: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``supervision.Detections`` -> riveg-hf entity dicts (``entity``, ``type``, ``start``, ``end``, ``score``,
    ``groundable``, ``groundable_score``, ``box`` as ``{"xmin", ...}``, ``box_score``, ``mask`` as COCO RLE),
    the inverse of :func:`to_supervision`, then the ``metadata["not_visible"]`` entities with ``box`` None.

    Detections from another model (no ``data["entity"]``): the type comes from ``class_id`` in ``types``
    (default PER, LOC, ORG, OTHER), the entity string is empty and ``start`` = ``end`` = 0.
    """
    import numpy as np

    _supervision()
    from .masks import encode_rle

    names = list(types) if types is not None else list(ENTITY_TYPES)
    data = getattr(detections, "data", None) or {}
    n = len(detections)

    def get(key: str, k: int) -> Any:
        if key not in data:
            return None
        v = data[key][k]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    out = []
    for k in range(n):
        etype = get("type", k) or get("class_name", k)  # supervision's own converters fill class_name
        if etype is None:
            cid = None if detections.class_id is None else int(detections.class_id[k])
            if cid is None or not 0 <= cid < len(names):
                raise ValueError(
                    f"detection #{k}: no data['type'] and class_id {cid} is not an index of types={names}; pass "
                    "types=[...] in the detector's class order."
                )
            etype = names[cid]
        conf = None
        if detections.confidence is not None:
            c = float(detections.confidence[k])
            conf = c if math.isfinite(c) else None
        mask = None
        if detections.mask is not None and (get("has_mask", k) is not False):
            mask = encode_rle(np.asarray(detections.mask[k], dtype=bool))
        score = get("score", k)
        out.append(
            {
                "entity": str(get("entity", k) or ""),
                "type": str(etype),
                "start": int(get("start", k) or 0),
                "end": int(get("end", k) or 0),
                "score": 1.0 if score is None else float(score),
                "groundable": True,
                "groundable_score": get("groundable_score", k),
                "box": xyxy_to_dict([float(v) for v in detections.xyxy[k]]),
                "box_score": conf,
                "mask": mask,
            }
        )
    for e in (getattr(detections, "metadata", None) or {}).get("not_visible", []):
        out.append(
            {
                "entity": e.get("entity", ""),
                "type": e.get("type"),
                "start": e.get("start", 0),
                "end": e.get("end", 0),
                "score": 1.0 if e.get("score") is None else e["score"],
                "groundable": False,
                "groundable_score": e.get("groundable_score"),
                "box": None,
                "box_score": None,
                "mask": None,
            }
        )
    return out
