"""Drawing grounded entities: a box (and mask) per visible entity, labelled "Entity (TYPE) score".

Each entity gets one colour, shared by its box, its mask and its highlight in the text
(:func:`entity_colors`, :func:`highlight_spans`), so a reader can match words to regions.

>>> from riveg_hf.visualize import draw_entities
>>> draw_entities(image, pipe({"text": text, "image": image}))  # doctest: +SKIP
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .boxes import as_xyxy
from .images import load_image
from .masks import decode_rle

__all__ = ["draw_entities", "entity_colors", "highlight_spans", "label_boxes", "save_drawing"]


def entity_colors(n: int) -> list[tuple[int, int, int]]:
    """``n`` well-separated RGB colours (golden-angle hues), the same for the same ``n``."""
    out = []
    for i in range(n):
        h = (0.08 + i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def _hex(c: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c)


def highlight_spans(text: str, entities: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """``[(piece, label or None)]`` covering ``text``, as ``gradio.HighlightedText`` takes it.

    Labels are ``"Entity (TYPE)"``; use :func:`entity_colors` for the matching colour map.
    """
    pieces: list[tuple[str, str | None]] = []
    pos = 0
    for e in sorted(entities, key=lambda e: e["start"]):
        if e["start"] < pos:
            continue
        if e["start"] > pos:
            pieces.append((text[pos : e["start"]], None))
        pieces.append((text[e["start"] : e["end"]], label_of(e)))
        pos = e["end"]
    if pos < len(text):
        pieces.append((text[pos:], None))
    return pieces


def label_of(e: dict[str, Any]) -> str:
    return f"{e['entity']} ({e['type']})"


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def _label_text(e: dict[str, Any]) -> str:
    score = e.get("box_score") if e.get("box_score") is not None else e.get("groundable_score")
    return label_of(e) + (f" {score:.2f}" if score is not None else "")


def label_boxes(image: Image.Image, entities: list[dict[str, Any]], font=None) -> list[tuple | None]:
    """Where each boxed entity's label goes: ``(x0, y0, x1, y1)`` pixels (None without a box).

    A label sits just above its box (inside it at the top edge of the image); a label that would
    overlap one already placed moves down by its height until it is free, so coinciding boxes get
    stacked, readable labels. Rectangles stay inside the image.
    """
    w, h = image.size
    font = font or _font(max(11, round(min(w, h) / 40)))
    draw = ImageDraw.Draw(image)
    placed: list[tuple] = []
    out: list[tuple | None] = []
    for e in entities:
        if e.get("box") is None:
            out.append(None)
            continue
        x0, y0, _x1, _y1 = as_xyxy(e["box"])
        tb = draw.textbbox((0, 0), _label_text(e), font=font)
        tw, th = tb[2] - tb[0] + 6, tb[3] - tb[1] + 4
        x = min(max(0.0, x0), max(0.0, w - tw))
        y = y0 - th if y0 - th >= 0 else y0
        for _ in range(len(placed) + 1):
            rect = (x, y, x + tw, y + th)
            clash = [
                r
                for r in placed
                if min(r[2], rect[2]) > max(r[0], rect[0]) and min(r[3], rect[3]) > max(r[1], rect[1])
            ]
            if not clash:
                break
            y = max(r[3] for r in clash)
        y = min(max(0.0, y), max(0.0, h - th))
        rect = (x, y, x + tw, y + th)
        placed.append(rect)
        out.append(rect)
    return out


def draw_entities(
    image: Any,
    entities: list[dict[str, Any]],
    *,
    mask_alpha: float = 0.45,
    line_width: int | None = None,
    show_not_visible: bool = False,
) -> Image.Image:
    """A copy of ``image`` with each visible entity's box, mask and "Entity (TYPE) score" label.

    ``entities`` is one pipeline output (boxes in original-image pixels, masks as COCO RLE or arrays).
    With ``show_not_visible``, entities without a box are listed in the top-left corner.
    """
    img = load_image(image).copy()
    w, h = img.size
    colors = entity_colors(len(entities))
    overlay = np.asarray(img, dtype=np.float32).copy()
    for e, c in zip(entities, colors):
        m = e.get("mask")
        if m is None:
            continue
        arr = decode_rle(m) if isinstance(m, dict) else np.asarray(m, dtype=bool)
        if arr.shape != (h, w):
            continue
        overlay[arr] = overlay[arr] * (1 - mask_alpha) + np.array(c, dtype=np.float32) * mask_alpha
    img = Image.fromarray(overlay.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    lw = line_width or max(2, round(min(w, h) / 200))
    font = _font(max(11, round(min(w, h) / 40)))
    missing = []
    for e, c in zip(entities, colors):
        if e.get("box") is None:
            missing.append((e, c))
            continue
        draw.rectangle(as_xyxy(e["box"]), outline=c, width=lw)
    for e, c, rect in zip(entities, colors, label_boxes(img, entities, font)):
        if rect is not None:  # labels after all boxes, so no box line crosses a label
            draw.rectangle(list(rect), fill=c)
            draw.text((rect[0] + 3, rect[1] + 1), _label_text(e), fill=(0, 0, 0), font=font)
    if show_not_visible and missing:
        y = 4
        for e, c in missing:
            draw.text(
                (4, y),
                f"{label_of(e)}: not visible",
                fill=c,
                font=font,
                stroke_width=1,
                stroke_fill=(0, 0, 0),
            )
            y += font.size + 4 if hasattr(font, "size") else 14
    return img


def save_drawing(row: dict[str, Any], line: dict[str, Any], folder: str | Path) -> Path | None:
    """``riveg predict --draw``: save ``<id>.png`` with the entities of one output line drawn on its image."""
    if row.get("image") is None or "entities" not in line:
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(line["id"]))[:100] or "image"
    path = folder / f"{safe}.png"
    draw_entities(row["image"], line["entities"], show_not_visible=True).save(path)
    with open(folder / f"{safe}.json", "w", encoding="utf-8") as fh:
        json.dump(
            {
                "text": line.get("text"),
                "spans": highlight_spans(line.get("text") or "", line["entities"]),
                "colors": [_hex(c) for c in entity_colors(len(line["entities"]))],
            },
            fh,
            ensure_ascii=False,
        )
    return path
