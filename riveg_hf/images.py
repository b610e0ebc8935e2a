"""Loading images safely: bounded size, every PIL mode converted to RGB, clear errors.

**Orientation.** Pixel coordinates everywhere in riveg-hf refer to the image **as displayed**:
an EXIF ``Orientation`` tag is applied (``PIL.ImageOps.exif_transpose``) when an image is
loaded, as transformers' ``load_image`` and every browser do. The API, the CLI, the dataset
builder, the endpoint handler and the demo all go through :func:`load_image`, so a box means
the same pixels in each. (Twitter strips EXIF from uploads, so Twitter-GMNER is unaffected.)

**Size.** Images above ``max_image_pixels`` are refused before decoding; images whose short side
is below :data:`MIN_IMAGE_SIDE` pixels (e.g. 8000x1) are refused with a clear error, since no
vision stage can resize them meaningfully.

**URLs** are off unless enabled (``allow_urls=True``); then :func:`riveg_hf.net.fetch_url`
refuses private, loopback and link-local hosts on every redirect hop.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .net import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, fetch_url

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_SIDE",
    "MIN_IMAGE_SIDE",
    "ImageLoadError",
    "ImageTooLargeError",
    "load_image",
    "to_rgb",
]

#: Largest image (width * height) accepted by default: 40 megapixels, well above any
#: image Twitter serves (4096 x 4096). Pass ``max_image_pixels`` to change it.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: Largest download accepted when an image is given as an http(s) URL (and URLs are enabled).
DEFAULT_MAX_IMAGE_BYTES = DEFAULT_MAX_BYTES
#: Smallest accepted short side, in pixels. Detectors and SAM resize the short side to hundreds of
#: pixels: an 8000x1 strip would become a 8000x800 mess or fail inside a processor.
MIN_IMAGE_SIDE = 4
#: Largest accepted side, in pixels, and the largest ratio of the long side to the short one. Checked from the
#: header, before any pixel is decoded: a 4 x 10,000,000 strip is within the pixel limit but would cost seconds
#: and gigabytes in every processor's resize. Twitter serves at most 4096 x 4096; panoramas stay far below 50:1.
MAX_IMAGE_SIDE = 20_000
#: Largest ratio of an image's long side to its short side (see :data:`MAX_IMAGE_SIDE`).
MAX_ASPECT_RATIO = 50


class ImageLoadError(ValueError):
    """An image that cannot be read: missing file, not an image, truncated data."""


class ImageTooLargeError(ImageLoadError):
    """An image with more pixels than ``max_image_pixels`` (refused before decoding)."""


def _check_size(size: tuple[int, int], max_pixels: int | None, what: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageLoadError(f"{what}: image has an empty size {w}x{h}.")
    if min(w, h) < MIN_IMAGE_SIDE:
        raise ImageLoadError(
            f"{what}: image is {w}x{h} pixels; its short side must be at least {MIN_IMAGE_SIDE} pixels "
            "(riveg_hf.images.MIN_IMAGE_SIDE). Pass the real photo, or None to report every entity as not visible."
        )
    if max(w, h) > MAX_IMAGE_SIDE:
        raise ImageTooLargeError(
            f"{what}: image is {w}x{h} pixels; its long side is above the limit of {MAX_IMAGE_SIDE:,} pixels "
            "(riveg_hf.images.MAX_IMAGE_SIDE). Downscale it first."
        )
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise ImageLoadError(
            f"{what}: image is {w}x{h} pixels, an aspect ratio of {max(w, h) / min(w, h):,.0f}:1, above "
            f"{MAX_ASPECT_RATIO}:1 (riveg_hf.images.MAX_ASPECT_RATIO). Crop it to the region that matters."
        )
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(
            f"{what}: image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} pixels. "
            "Downscale it first, or raise the limit with max_image_pixels=... (CLI: --max-image-pixels)."
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (1, L, P, RGBA, LA, CMYK, I;16, I, F, ...) to 8-bit RGB.

    Transparent pixels are composited on white; 16/32-bit and float images are rescaled
    from their value range to 0..255.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if mode.startswith("I;16") else (float(arr.min()), float(arr.max()))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr8 = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _open_bytes(data: bytes, what: str, max_pixels: int | None) -> Image.Image:
    return _open(io.BytesIO(data), what, max_pixels)


def _open(fp: Any, what: str, max_pixels: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)):,} pixels" if found else str(err)
        limit = f"{max_pixels:,}" if max_pixels is not None else "PIL's"
        raise ImageTooLargeError(
            f"{what}: image is too large ({pixels}), above the limit of {limit} pixels (refused by PIL's "
            "decompression-bomb guard before decoding). Downscale it first."
        ) from None
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"{what}: not an image file PIL can read (corrupt or unsupported format)."
        ) from None
    except OSError as err:
        raise ImageLoadError(f"{what}: cannot open image: {err}") from None
    _check_size(img.size, max_pixels, what)
    try:
        # Never tolerate truncated files silently (the global ImageFile flag is left untouched).
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise ImageLoadError(
                f"{what}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set globally; refusing to guess pixel data."
            )
        img.load()
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageLoadError):
            raise
        raise ImageLoadError(f"{what}: image data is corrupt or truncated ({err}).") from None
    return img


def _exif_upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a no-op without one): coordinates are in displayed pixels."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF block: keep the stored orientation
        return img
    if orientation in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def load_image(
    image: Any,
    *,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    what: str | None = None,
    allow_urls: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> Image.Image:
    """Return ``image`` as an RGB ``PIL.Image``.

    ``image`` may be a ``PIL.Image``, a local path (``str`` / ``Path``), an ``http(s)`` URL,
    raw bytes, a ``(H, W)`` / ``(H, W, C)`` uint8 array, or a ``datasets`` image dict
    ``{"bytes", "path"}``. Images above ``max_image_pixels`` are refused *before* their
    pixels are decoded, so a huge file never costs memory. An EXIF orientation is applied
    (displayed orientation, see the module doc). URLs are refused unless ``allow_urls=True``.
    """
    label = what or "image"
    if isinstance(image, Image.Image):
        _check_size(image.size, max_image_pixels, label)
        return to_rgb(_exif_upright(image))
    if isinstance(image, dict) and ("bytes" in image or "path" in image):
        if image.get("bytes") is not None:
            return load_image(
                image["bytes"], max_image_pixels=max_image_pixels, what=what or image.get("path")
            )
        if image.get("path"):
            return load_image(image["path"], max_image_pixels=max_image_pixels, what=what)
        raise ImageLoadError(f"{label}: image dict has neither 'bytes' nor 'path'.")
    if isinstance(image, (bytes, bytearray)):
        return to_rgb(_exif_upright(_open_bytes(bytes(image), label, max_image_pixels)))
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ImageLoadError(f"{label}: expected an (H, W) or (H, W, C) array, got shape {image.shape}.")
        _check_size((image.shape[1], image.shape[0]), max_image_pixels, label)
        arr = image
        if arr.dtype != np.uint8:
            raise ImageLoadError(f"{label}: expected a uint8 array, got dtype {arr.dtype}.")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return to_rgb(Image.fromarray(arr))
    if isinstance(image, (str, os.PathLike)):
        s = str(image)
        if s.startswith(("http://", "https://")):
            if not allow_urls:
                raise ImageLoadError(
                    "image URLs are off: pass a local file, bytes or a PIL image, or enable URL images "
                    "(allow_url_images=True in the pipeline, --allow-url-images in the CLI); see docs/guides/security.md."
                )
            data = fetch_url(s, max_bytes=DEFAULT_MAX_IMAGE_BYTES, timeout=timeout)
            return to_rgb(_exif_upright(_open_bytes(data, "image URL", max_image_pixels)))
        path = Path(s).expanduser()
        if not path.is_file():
            raise ImageLoadError(
                f"{what or s}: image file not found ({path}). Pass an existing local path, a PIL image, or None "
                "(then every entity is reported as not visible)."
            )
        with open(path, "rb") as fh:
            return to_rgb(_exif_upright(_open(fh, what or str(path), max_image_pixels)))
    raise ImageLoadError(
        f"{label}: expected a PIL image, a local path, a URL, bytes or a uint8 array, got {type(image).__name__}."
    )
