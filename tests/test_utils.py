"""Boxes, masks and image loading."""

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from riveg_hf.boxes import (
    BoxError,
    as_xyxy,
    clip_xyxy,
    cxcywh_to_xyxy,
    iou_matrix,
    iou_xyxy,
    xywh_to_xyxy,
    xyxy_to_dict,
    xyxy_to_xywh,
)
from riveg_hf.images import ImageLoadError, ImageTooLargeError, load_image
from riveg_hf.masks import (
    MaskError,
    decode_rle,
    encode_rle,
    mask_iou,
    mask_to_xyxy,
    polygons_to_rle,
    rle_from_any,
)
from riveg_hf.types import GroundedEntity


def test_box_converters_round_trip():
    assert xywh_to_xyxy([10, 20, 30, 40]) == [10, 20, 40, 60]
    assert xyxy_to_xywh([10, 20, 40, 60]) == [10, 20, 30, 40]
    assert cxcywh_to_xyxy([50, 50, 20, 10]) == [40, 45, 60, 55]
    assert as_xyxy({"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}) == [1, 2, 3, 4]
    assert xyxy_to_dict([1, 2, 3, 4]) == {"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.0}
    assert clip_xyxy([-5, 3, 700, 20], 640, 480) == [0, 3, 640, 20]


def test_box_errors_state_expected_shape():
    with pytest.raises(BoxError, match=r"expected 4 numbers \[xmin, ymin, xmax, ymax\]"):
        as_xyxy([1, 2, 3])
    with pytest.raises(BoxError, match="xmax < xmin.*xywh_to_xyxy"):
        as_xyxy([10, 10, 5, 20])
    with pytest.raises(BoxError, match="NaN"):
        as_xyxy([0, 0, float("nan"), 1])
    with pytest.raises(BoxError, match="missing"):
        as_xyxy({"x": 1})


def test_iou():
    assert iou_xyxy([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou_xyxy([0, 0, 10, 10], [10, 10, 20, 20]) == 0.0
    assert iou_xyxy([0, 0, 10, 10], [0, 0, 10, 5]) == 0.5
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]])
    b = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    m = iou_matrix(a, b)
    assert m.shape == (2, 2) and m[0, 0] == 1.0 and m[1, 1] == 0.0
    assert m[1, 0] == pytest.approx(iou_xyxy(a[1], b[0]))


def test_rle_round_trip_and_iou():
    m = np.zeros((30, 40), dtype=bool)
    m[5:15, 10:30] = True
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [30, 40]
    assert (decode_rle(rle) == m).all()
    assert mask_to_xyxy(rle) == [10, 5, 30, 15]
    half = m.copy()
    half[:, 20:] = False
    assert mask_iou(rle, half) == pytest.approx(0.5)
    poly = polygons_to_rle([[10, 5, 30, 5, 30, 15, 10, 15]], 30, 40)
    assert mask_iou(poly, m) > 0.8
    assert rle_from_any(rle) == rle
    with pytest.raises(MaskError, match="different sizes"):
        mask_iou(m, np.zeros((3, 3), bool))
    with pytest.raises(MaskError, match="'size'"):
        decode_rle({"counts": "x"})


def _png(mode, size=(7, 5)):
    if mode == "I;16":
        img = Image.fromarray(np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000)
        assert img.mode == "I;16"
    else:
        img = Image.new(mode, size)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "1", "LA"])
def test_every_mode_becomes_rgb(mode):
    img = load_image(_png(mode))
    assert img.mode == "RGB" and img.size == (7, 5)


def test_sixteen_bit_is_rescaled_not_clipped():
    img = load_image(_png("I;16"))
    arr = np.asarray(img)[..., 0]
    assert arr.max() > 100 and arr.min() == 0  # 34000/65535 -> ~132


def test_rgba_transparent_is_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_image(rgba))[0, 0].tolist() == [255, 255, 255]


def test_smallest_image_and_degenerate_ones():
    assert load_image(Image.new("RGB", (4, 4))).size == (4, 4)
    for size in [(1, 1), (8000, 1), (3, 500)]:
        with pytest.raises(ImageLoadError, match="short side must be at least 4 pixels"):
            load_image(Image.new("RGB", size))


def _huge_png_bytes(w, h):
    """A valid PNG header claiming w x h, built without allocating the pixels."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


def test_huge_image_refused_before_decoding(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(_huge_png_bytes(20000, 20000))
    with pytest.raises(ImageTooLargeError, match="400,000,000 pixels"):
        load_image(p)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="7000x7000 = 49,000,000 pixels, above the limit"):
            load_image(_huge_png_bytes(7000, 7000))  # under PIL's own guard: refused by ours
        assert tracemalloc.get_traced_memory()[1] < 20_000_000  # no pixel buffer was allocated
    finally:
        tracemalloc.stop()
    with pytest.raises(ImageTooLargeError, match="above the limit of 100 pixels"):
        load_image(Image.new("RGB", (20, 20)), max_image_pixels=100)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ImageLoadError, match="image file not found"):
        load_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(ImageLoadError, match="bad.jpg: not an image file"):
        load_image(bad)
    buf = io.BytesIO()
    Image.new("RGB", (50, 50), (1, 2, 3)).save(buf, format="PNG")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(buf.getvalue()[:-30])
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(trunc)


def test_grounded_entity_validates_and_serialises():
    e = GroundedEntity("Obama", "PER", 0, 5, score=float("nan"), box=[1, 2, 3, 4], box_score=0.9)
    d = e.to_dict()
    assert d["box"] == {"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.0}
    assert d["score"] == 0.0 and "token_start" not in d
    with pytest.raises(BoxError):
        GroundedEntity("x", "PER", 0, 1, box=[3, 3, 1, 1])
