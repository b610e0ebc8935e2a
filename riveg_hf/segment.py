"""Box-prompted segmentation for any GMNER model's output: ``add_masks``.

RiVEG's second claim is that a box-prompted SAM gives **any** GMNER model the ability to do
SMNER. ``add_masks`` takes entities in the pipeline's output format (from this package or from
any other model: ``box`` as the ``{"xmin", ...}`` dict or an ``[xmin, ymin, xmax, ymax]`` list)
and returns them with a ``mask`` per visible entity, from one segmenter call per image.

>>> from riveg_hf import add_masks
>>> add_masks(entities, "photo.jpg", segmenter="facebook/sam2.1-hiera-tiny")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .boxes import as_xyxy, xyxy_to_dict
from .images import DEFAULT_MAX_IMAGE_PIXELS, load_image
from .masks import encode_rle
from .stages import Segmenter

__all__ = ["add_masks"]

MASK_FORMATS = ("rle", "array")


def add_masks(
    entities: Sequence[dict[str, Any]],
    image: Any,
    segmenter: Segmenter | str | Any,
    *,
    mask_format: str = "rle",
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    **load_kwargs: Any,
) -> list[dict[str, Any]]:
    """Return copies of ``entities`` with ``mask`` set for each entity that has a box (None otherwise).

    ``segmenter`` is a :class:`~riveg_hf.stages.Segmenter`, a hub id / local folder of a SAM 2 or
    SAM checkpoint, or a ``(model, processor)`` pair. Boxes are pixel ``xyxy`` of the original image.
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    if not isinstance(segmenter, Segmenter):
        if isinstance(segmenter, tuple):
            segmenter = Segmenter(*segmenter)
        else:
            segmenter = Segmenter.from_pretrained(segmenter, **load_kwargs)
    out = [dict(e) for e in entities]
    with_box = []
    for i, e in enumerate(out):
        if "box" not in e:
            raise ValueError(
                f"entity {i} ({e.get('entity', '?')!r}) has no 'box' key (None for not visible)."
            )
        if e["box"] is not None:
            box = as_xyxy(e["box"], what=f"entity {i} box")
            e["box"] = xyxy_to_dict(box)
            with_box.append((i, box))
        e["mask"] = None
    if not with_box:
        return out
    img = load_image(image, max_image_pixels=max_image_pixels)
    masks = segmenter.segment(img, [b for _, b in with_box])
    for (i, _), m in zip(with_box, masks):
        out[i]["mask"] = encode_rle(m) if mask_format == "rle" else m
    return out
