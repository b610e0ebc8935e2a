"""Images for a served vision-language model: resized here to the size the model's processor would choose, sent
as a base64 data URL in the OpenAI vision message format.

A Qwen2.5-VL server answers in pixels of the image *as its processor resized it*. If the client sent the
original image, those pixels would be of a size the client never saw. So the client resizes the image itself
with the processor's own rule (``smart_resize``: sides multiples of 28 -- 32 for Qwen3-VL --, pixels within
``[min_pixels, max_pixels]``); the server's processor then leaves it as it is, and the answer's pixels are the
sent image's, which the client maps back to the original. ``min_pixels`` / ``max_pixels`` default to the
checkpoints' ``preprocessor_config.json`` (3136 / 12,845,056); give the values a server was started with
(vLLM ``--mm-processor-kwargs '{"max_pixels": ...}'``, SGLang ``SGLANG_IMAGE_MAX_PIXELS``) when they differ.
Relative-coordinate families (Qwen2-VL, Qwen3-VL) are resized the same way, which only bounds the payload.
"""

from __future__ import annotations

import base64
import io
import math
import re

from PIL import Image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_PIXELS",
    "FACTORS",
    "PIXEL_BOUNDS",
    "check_pixels",
    "infer_family",
    "smart_resize",
    "to_data_url",
]

#: Qwen2-VL / 2.5-VL processors' default ``min_pixels`` (4 patches of 28 x 28)
DEFAULT_MIN_PIXELS = 3136
#: Qwen2-VL / 2.5-VL processors' default ``max_pixels`` (16384 patches of 28 x 28)
DEFAULT_MAX_PIXELS = 12_845_056
#: the bounds of ``min_pixels`` / ``max_pixels`` (a checkpoint's included), checked when a stage is built:
#: name -> (lowest, highest, why). ``max_pixels`` >= one 32x32 patch (0 divided by zero), <= 4096 x 4096 (a
#: 16.8 MP RGB image is 50 MB before encoding); ``min_pixels`` <= ``max_pixels`` (a huge one upscaled every
#: image to gigabytes).
PIXEL_BOUNDS: dict[str, tuple[int, int, str]] = {
    "min_pixels": (1, 16_777_216, "pixels the image is scaled up to at least; at most max_pixels"),
    "max_pixels": (
        1024,
        16_777_216,
        "pixels the image is scaled down to at most: one 32x32 patch to 4096x4096",
    ),
}


def check_pixels(min_pixels, max_pixels, where: str) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` as integers within :data:`PIXEL_BOUNDS` and in order, else a ``ValueError``
    naming the setting, the value and the allowed range."""
    from .client import check_setting

    lo, hi, why = PIXEL_BOUNDS["max_pixels"]
    max_p = check_setting("max_pixels", max_pixels, lo, hi, integer=True, why=why, where=where)
    lo, hi, why = PIXEL_BOUNDS["min_pixels"]
    min_p = check_setting("min_pixels", min_pixels, lo, min(hi, max_p), integer=True, why=why, where=where)
    return min_p, max_p


#: model_type -> the side multiple of its processor (patch size x spatial merge)
FACTORS = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32, "qwen3_vl_moe": 32}


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) as Qwen-VL's processors compute it (transformers' ``smart_resize``, same arithmetic).

    >>> smart_resize(1365, 2048, 28, 3136, 12845056)
    (1372, 2044)
    """
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def to_data_url(
    image: Image.Image, family: str, min_pixels: int, max_pixels: int
) -> tuple[str, tuple[int, int]]:
    """The image resized for ``family`` and encoded as a PNG data URL; returns (url, (width, height) sent).
    A ``ValueError`` for an empty image or pixel bounds out of :data:`PIXEL_BOUNDS`."""
    min_pixels, max_pixels = check_pixels(min_pixels, max_pixels, "served image")
    w, h = image.size
    if w < 1 or h < 1:
        raise ValueError(f"the image is empty ({w}x{h} pixels): nothing to send")
    rh, rw = smart_resize(h, w, FACTORS[family], min_pixels, max_pixels)
    sent = image if (rw, rh) == (w, h) else image.convert("RGB").resize((rw, rh), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    sent.convert("RGB").save(buf, format="PNG")  # lossless: the server sees the pixels the client chose
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), (rw, rh)


_PATTERNS = (
    (re.compile(r"qwen3[-_.]?vl.*(?:a\d+b|moe)", re.I), "qwen3_vl_moe"),
    (re.compile(r"qwen3[-_.]?vl", re.I), "qwen3_vl"),
    (re.compile(r"qwen2[._]5[-_.]?vl", re.I), "qwen2_5_vl"),
    (re.compile(r"qwen2[-_.]?vl", re.I), "qwen2_vl"),
)


def infer_family(model_name: str | None) -> str | None:
    """The family of a served model from its name (``Qwen/Qwen2.5-VL-7B-Instruct`` -> ``qwen2_5_vl``), or None.

    >>> infer_family("Qwen/Qwen3-VL-30B-A3B-Instruct"), infer_family("Qwen/Qwen2.5-VL-7B-Instruct"), infer_family("x")
    ('qwen3_vl_moe', 'qwen2_5_vl', None)
    """
    for rx, family in _PATTERNS:
        if model_name and rx.search(model_name):
            return family
    return None


def served_vlm_client(
    endpoint, model: str | None, family: str | None, role: str, default_family: str | None = None
):
    """(ChatClient, family) of a served vision-language stage; the family from the argument, the endpoint's
    config, the model's name, or ``default_family``; an unknown one is an error naming the choices."""
    from .client import ChatClient

    cfg = {"url": endpoint} if isinstance(endpoint, str) else dict(endpoint)
    if model:
        cfg["model"] = model
    family = family or cfg.pop("family", None)
    client = ChatClient(**cfg)
    family = family or infer_family(client.model) or default_family
    if family not in FACTORS:
        raise ValueError(
            f"{role}: the served model {client.model!r} needs endpoint_family= one of {sorted(FACTORS)} (the "
            f"coordinates depend on it: Qwen2.5-VL answers in pixels, Qwen2-VL / Qwen3-VL in 0-1000); got {family!r}"
        )
    return client, family
