"""Reading a raw Twitter-GMNER release (``txt/`` CoNLL + ``xml/`` Pascal-VOC) into records.

A record is a plain dict with the fields of :func:`riveg_hf.data.features.gmner_features`
(``id``, ``tokens``, ``ner_tags``, ``image``, ``width``, ``height``, ``caption``,
``entities``); the builders in ``datasets_scripts/`` turn records into parquet shards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..boxes import iou_xyxy, repair_xyxy
from ..images import ImageLoadError, load_image
from ..types import ENTITY_TYPES
from .align import PASSES, align_objects
from .conll import (
    Sentence,
    bio_tags,
    read_captions,
    read_conll,
    read_llm_knowledge,
    spans_to_tags,
    tags_to_spans,
)
from .ids import safe_child
from .report import Report
from .smner_masks import MaskFileError, read_mask_file
from .voc import AnnotationError, VOCObject, read_voc

__all__ = [
    "GMNER_SPLITS",
    "RawRelease",
    "gmner_records",
    "knowledge_records",
    "load_captions",
]

#: Raw split names of Twitter-GMNER, in order.
GMNER_SPLITS = ("train", "dev", "test")
#: Split-name spellings of the RiVEG auxiliary files for each GMNER split.
_AUX_SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "valid", "validation"), "test": ("test",)}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class RawRelease:
    """A raw release folder with ``txt/{train,dev,test}.txt`` and ``xml/<id>.xml``."""

    root: Path
    #: the folder of the CoNLL files (``txt``; Twitter-FMNERG: ``txt_fine``) and of the XML boxes
    txt_name: str = "txt"
    xml: Path | None = None

    def __post_init__(self):
        self.root = Path(self.root)
        if not (self.root / self.txt_name).is_dir():
            raise FileNotFoundError(
                f"--raw {self.root} is not a Twitter-GMNER release: a release folder holds txt/train.txt, "
                "txt/dev.txt, txt/test.txt (CoNLL: IMGID:<id> lines, then token<TAB>tag) and xml/<id>.xml "
                "(Pascal-VOC boxes). Get one with `riveg data download twitter-gmner` (then leave out --raw), "
                "or point --raw at such a folder."
            )

    def txt(self, split: str) -> Path:
        for name in _AUX_SPLIT_NAMES.get(split, (split,)):
            p = self.root / self.txt_name / f"{name}.txt"
            if p.is_file():
                return p
        raise FileNotFoundError(f"{self.root / self.txt_name}: no file for split {split!r}")

    @property
    def xml_dir(self) -> Path:
        return Path(self.xml) if self.xml is not None else self.root / "xml"


def _aux_file(folder: Path, split: str, pattern: str) -> Path | None:
    for name in _AUX_SPLIT_NAMES.get(split, (split,)):
        p = folder / pattern.format(split=name)
        if p.is_file():
            return p
    return None


def load_captions(folder: str | Path | None, split: str, report: Report) -> dict[str, str]:
    """mPLUG-Owl captions of one split (``captions/mplug-owl-<split>.txt``), ``{}`` when absent."""
    if folder is None:
        return {}
    p = _aux_file(Path(folder), split, "mplug-owl-{split}.txt")
    if p is None:
        report.add("missing_caption_file", f"{folder}: no mplug-owl-{split}.txt")
        return {}
    return read_captions(p, report)


def _read_image(images: Path, example_id: str, report: Report, max_image_pixels: int | None):
    for suffix in IMAGE_SUFFIXES:
        p = safe_child(images, example_id, suffix)
        if p.is_file():
            break
    else:
        report.add("missing_image", f"{example_id}: no {example_id}.jpg in {images} (kept with image=None)")
        return None, None
    try:
        img = load_image(p, max_image_pixels=max_image_pixels, what=f"{example_id} ({p.name})")
    except ImageLoadError as err:
        report.add("corrupt_image", f"{err} (kept with image=None)")
        return None, None
    return {"bytes": p.read_bytes(), "path": p.name}, img.size


def _pair_masks(
    example_id: str,
    tokens: Sequence[str],
    spans: Sequence[tuple[int, int, str]],
    entity_boxes: Sequence[Sequence[list[float]]],
    masks_dir: Path,
    size: tuple[int | None, int | None],
    report: Report,
) -> list[list[dict | None]]:
    """One mask per box: mask objects are aligned to entities by label, then to boxes by IoU."""
    out: list[list[dict | None]] = [[None] * len(b) for b in entity_boxes]
    n_boxes = sum(len(b) for b in entity_boxes)
    path = safe_child(masks_dir, example_id, ".json")
    if not path.is_file():
        if n_boxes:
            report.add(
                "missing_mask_file", f"{example_id}: {n_boxes} box(es) but no {path.name} (masks=None)"
            )
        return out
    h, w, objs = read_mask_file(path, report)
    width, height = size
    if width is not None and (w, h) != (width, height):
        report.add(
            "mask_size_mismatch",
            f"{example_id}: mask file is {w}x{h}, the image (or its XML <size>) is {width}x{height}; its "
            f"{len(objs)} mask(s) are skipped (masks=None)",
        )
        if n_boxes:
            report.add("box_without_mask", f"{example_id}: {n_boxes} box(es) without a mask", n=n_boxes)
        return out
    vobjs = [VOCObject(name=o.label, box=o.box or [0.0, 0.0, 0.0, 0.0]) for o in objs]
    aligned = align_objects(tokens, spans, vobjs)
    texts = [" ".join(tokens[s:e]) for s, e, _ in spans]
    index = {id(v): k for k, v in enumerate(vobjs)}
    by_text: dict[str, list[int]] = {}
    for vo, text, _how in aligned.matched:
        by_text.setdefault(text, []).append(index[id(vo)])
    used: set[int] = set()
    for i, boxes in enumerate(entity_boxes):
        cands = by_text.get(texts[i], [])
        for j, box in enumerate(boxes):
            scored = sorted(
                ((iou_xyxy(box, objs[k].box), k) for k in cands if k not in used and objs[k].box is not None),
                reverse=True,
            )
            if scored and scored[0][0] > 0:
                used.add(scored[0][1])
                out[i][j] = objs[scored[0][1]].rle
            else:
                report.add("box_without_mask", f"{example_id}: no mask for a box of {texts[i]!r} (mask=None)")
    for k, o in enumerate(objs):
        if k not in used:
            report.add(
                "unmatched_mask", f"{example_id}: mask labelled {o.label!r} matches no box of its entity"
            )
    return out


def _fit_boxes(example_id: str, boxes: list, size: tuple[int, int], report: Report) -> list:
    """Boxes checked against the real image: clipped to it; one entirely outside or of zero area is dropped
    (reported), so a row never stores a box outside its image."""
    w, h = size
    out = []
    for box in boxes:
        x0, y0, x1, y1 = box
        if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
            report.add("box_outside_image", f"{example_id}: box {box} is outside the {w}x{h} image (dropped)")
            continue
        fitted, fixes = repair_xyxy(box, w, h)
        if fitted[2] <= fitted[0] or fitted[3] <= fitted[1]:
            report.add("empty_box", f"{example_id}: box {box} has no area inside the {w}x{h} image (dropped)")
            continue
        if fixes:
            report.add("box_repaired", f"{example_id}: box {box}: {', '.join(fixes)}")
        out.append(fitted)
    return out


def gmner_records(
    raw: str | Path,
    split: str,
    *,
    images: str | Path | None = None,
    captions: str | Path | None = None,
    masks: str | Path | None = None,
    types: Sequence[str] = ENTITY_TYPES,
    orphan_i: str = "skip",
    align_passes: Sequence[str] = PASSES,
    max_image_pixels: int | None = None,
    report: Report | None = None,
    release: RawRelease | None = None,
    tag_columns: tuple[int, int] = (2, 1),
    extra_tags: tuple[int, Sequence[str], str] | None = None,
) -> list[dict[str, Any]]:
    """Read one split of a raw Twitter-GMNER release into records (see the module doc).

    ``release``: another layout (Twitter-FMNERG: ``txt_fine/`` and Twitter-GMNER's XML); ``tag_columns``:
    (columns, the tag column); ``extra_tags`` ``(column, types, field)``: a second tag level read from the same
    file, stored on each entity as ``field`` (FMNERG: the other type level).

    Every entity is kept (``groundable=False`` when no object names it); every XML object
    that names no entity is reported (``unmatched_object``); see :mod:`riveg_hf.data.align`
    for how names are matched. ``masks`` (a folder of ``<id>.json``) adds one COCO RLE per
    box (Twitter-SMNER).
    """
    release = release if release is not None else RawRelease(Path(raw))
    report = report if report is not None else Report()
    columns, tag_column = tag_columns
    sents = read_conll(release.txt(split), allowed_tags=bio_tags(types), report=report, columns=columns,
                       tag_column=tag_column)  # fmt: skip
    other: dict[str, list[str]] = {}
    if extra_tags is not None:
        col, other_types, _ = extra_tags
        other = {s.id: s.tags for s in read_conll(release.txt(split), allowed_tags=bio_tags(other_types),
                                                  report=Report(), columns=columns, tag_column=col)}  # fmt: skip
    caps = load_captions(captions, split, report)
    images_dir = Path(images) if images is not None else None
    if images_dir is not None and not images_dir.is_dir():
        raise FileNotFoundError(f"--images {images_dir} is not a folder of <IMGID>.jpg files.")
    masks_dir = Path(masks) if masks is not None else None
    if masks_dir is not None and not masks_dir.is_dir():
        raise FileNotFoundError(f"--masks {masks_dir} is not a folder of <IMGID>.json mask files.")
    records = []
    for s in sents:
        spans = tags_to_spans(s.tags, orphan_i=orphan_i, where=f"{split} {s.id}", report=report)
        other_spans = {(a, b) for a, b, _ in tags_to_spans(other.get(s.id) or [], orphan_i=orphan_i)}
        # Tags re-derived from the spans, so ner_tags and entities always agree (orphan I- handled once).
        tags = spans_to_tags(len(s.tokens), spans)
        xml_path = safe_child(release.xml_dir, s.id, ".xml")
        width = height = None
        objects: list[VOCObject] = []
        if xml_path.is_file():
            try:
                ann = read_voc(xml_path, report)
            except AnnotationError as err:
                report.add("bad_xml", f"{err} (example kept without boxes)")
            else:
                width, height, objects = ann.width, ann.height, ann.objects
        report.count("xml_objects", len(objects))
        aligned = align_objects(s.tokens, spans, objects, passes=align_passes)
        for obj, text, how in aligned.matched:
            report.count(f"aligned_{how}")
            if how != "exact":
                report.add(f"aligned_{how}_detail", f"{s.id}: object {obj.name!r} -> entity {text!r}")
        for obj in aligned.unmatched:
            report.add("unmatched_object", f"{s.id}: XML object {obj.name!r} names no entity of the tweet")
        image = None
        if images_dir is not None:
            image, size = _read_image(images_dir, s.id, report, max_image_pixels)
            if size is not None:
                if width is not None and (width, height) != size:
                    report.add(
                        "size_mismatch", f"{s.id}: XML says {width}x{height}, image is {size[0]}x{size[1]} "
                        "(boxes checked against the image)",
                    )  # fmt: skip
                width, height = size
                aligned.boxes = [_fit_boxes(s.id, bs, size, report) for bs in aligned.boxes]
        entity_masks = None
        if masks_dir is not None:
            try:
                entity_masks = _pair_masks(
                    s.id, s.tokens, spans, aligned.boxes, masks_dir, (width, height), report
                )
            except MaskFileError as err:
                report.add("bad_mask_file", f"{err} (masks=None)")
                entity_masks = [[None] * len(b) for b in aligned.boxes]
        entities = []
        for i, (st, en, typ) in enumerate(spans):
            ent = {
                "text": " ".join(s.tokens[st:en]),
                "type": typ,
                "start": st,
                "end": en,
                "groundable": bool(aligned.boxes[i]),
                "boxes": aligned.boxes[i],
            }
            if entity_masks is not None:
                ent["masks"] = entity_masks[i]
            if extra_tags is not None:
                other_tags = other.get(s.id) or ["O"] * len(s.tokens)
                tag = other_tags[st]
                ent[extra_tags[2]] = tag[2:] if tag[:2] in ("B-", "I-") else None
                if (st, en) not in other_spans:  # the two levels disagree on where the entity is
                    found = [" ".join(s.tokens[a:b]) for a, b, _ in _overlapping(other_tags, st, en)]
                    report.add(
                        "level_span_mismatch",
                        f"{split} {s.id}: {ent['text']!r} ({typ}) is "
                        + (f"{found} at the other level" if found else "no entity at the other level")
                        + f"; {extra_tags[2]}={ent[extra_tags[2]]!r} kept from its first token",
                    )
            entities.append(ent)
        report.count("tweets")
        report.count("entities", len(entities))
        report.count("groundable_entities", sum(e["groundable"] for e in entities))
        records.append(
            {
                "id": s.id,
                "tokens": s.tokens,
                "ner_tags": tags,
                "image": image,
                "width": width,
                "height": height,
                "caption": caps.get(s.id),
                "entities": entities,
            }
        )
    if caps:
        missing = [r["id"] for r in records if r["caption"] is None]
        if missing:
            report.add(
                "missing_caption",
                f"{split}: {len(missing)} tweet(s) without a caption: {missing[:5]}",
                n=len(missing),
            )
    return records


def _overlapping(tags: Sequence[str], start: int, end: int) -> list[tuple[int, int, str]]:
    """The spans of ``tags`` that overlap ``[start, end)``."""
    return [(a, b, t) for a, b, t in tags_to_spans(tags) if a < end and start < b]


def knowledge_records(
    records: Sequence[Mapping[str, Any]], knowledge_dir: str | Path, split: str, report: Report | None = None
) -> list[dict[str, Any]]:
    """Attach RiVEG's LLM knowledge (``llm-knowledge/<split>.txt``, same order and tokens) to records."""
    report = report if report is not None else Report()
    p = _aux_file(Path(knowledge_dir), split, "{split}.txt")
    if p is None:
        raise FileNotFoundError(
            f"{knowledge_dir}: no knowledge file for split {split!r} (train/valid/test.txt)"
        )
    sents: list[Sentence] = read_llm_knowledge(p, report=report)
    if len(sents) != len(records):
        raise ValueError(
            f"{p}: {len(sents)} tweets, but the {split} split has {len(records)}; the knowledge file must list "
            "the same tweets in the same order as txt/{split}.txt."
        )
    out = []
    for k, (rec, s) in enumerate(zip(records, sents)):
        if s.tokens != list(rec["tokens"]):
            diff = next((i for i, (a, b) in enumerate(zip(s.tokens, rec["tokens"])) if a != b), None)
            raise ValueError(
                f"{p}:{s.line}: tweet #{k} ({rec['id']}) has different tokens in the knowledge file "
                f"(first difference at token {diff}); files are out of step."
            )
        out.append(
            {
                "id": rec["id"],
                "tokens": rec["tokens"],
                "ner_tags": rec["ner_tags"],
                "entities": [{k2: e[k2] for k2 in ("text", "type", "start", "end")} for e in rec["entities"]],
                "knowledge": s.knowledge or [],
            }
        )
    return out
