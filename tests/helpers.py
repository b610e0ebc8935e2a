"""Small builders of test inputs: raw releases, images, mask files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


GET_DATA = (
    "the real data was not found: get it with `riveg data download twitter-gmner twitter-mner` (into $RIVEG_DATA "
    "or ~/.cache/riveg-hf/data), or set RIVEG_DATA to a folder laid out like shared/data"
)


def find_shared_data() -> Path | None:
    """The real releases: ``$RIVEG_DATA``, then ``shared/data`` beside the checkout (or above it), then the
    download cache of ``riveg data download`` (``~/.cache/riveg-hf/data``). None when none holds Twitter-GMNER."""
    from riveg_hf.data.download import default_data_dir

    env = os.environ.get("RIVEG_DATA")
    candidates = [Path(env)] if env else []
    candidates += [parent / "shared" / "data" for parent in [REPO, *REPO.parents]]
    candidates.append(default_data_dir())
    for cand in candidates:
        if (cand / "twitter-gmner" / "v2.0" / "txt").is_dir():
            return cand
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with a loud reason on a user's machine; fail under CI (``CI=true``), where everything must run."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run here, so a missing prerequisite is a failure)")
    pytest.skip(reason)


def voc_xml(width: int, height: int, objects: list[tuple[str, list[float]]]) -> str:
    objs = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    return (
        f"<annotation><filename>x.jpg</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def write_release(root: Path, splits: dict[str, list[dict]]) -> Path:
    """Write a raw GMNER-style release.

    ``splits = {"train": [{"id", "tokens", "tags", "objects": [(name, box)], "size": (w, h)}]}``;
    a split missing from ``splits`` gets an empty file.
    """
    (root / "txt").mkdir(parents=True, exist_ok=True)
    (root / "xml").mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        lines = []
        for ex in splits.get(split, []):
            lines.append(f"IMGID:{ex['id']}")
            lines += [f"{t}\t{g}" for t, g in zip(ex["tokens"], ex["tags"])]
            lines.append("")
            if ex.get("objects") is not None:
                w, h = ex.get("size", (64, 48))
                (root / "xml" / f"{ex['id']}.xml").write_text(voc_xml(w, h, ex["objects"]), encoding="utf-8")
        (root / "txt" / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def make_image(
    size=(64, 48), color=(200, 30, 30), mode="RGB", box=None, box_color=(20, 200, 20)
) -> Image.Image:
    img = Image.new("RGB", size, color)
    if box is not None:
        arr = np.array(img)
        x0, y0, x1, y1 = (int(v) for v in box)
        arr[y0:y1, x0:x1] = box_color
        img = Image.fromarray(arr)
    return img.convert(mode) if mode != "RGB" else img


def skimage_photo(name: str) -> Path:
    import skimage

    p = Path(skimage.__file__).parent / "data" / name
    assert p.is_file(), f"scikit-image ships {name}; reinstall scikit-image"
    return p


def write_labelme(path: Path, width: int, height: int, shapes: list[tuple[str, str, list]]) -> None:
    data = {
        "imageWidth": width,
        "imageHeight": height,
        "shapes": [{"label": lab, "shape_type": kind, "points": pts} for lab, kind, pts in shapes],
    }
    path.write_text(json.dumps(data), encoding="utf-8")


def save_composite(dummy_dir: dict, out: Path, components=("recognizer", "grounder"), **options) -> Path:
    """Save a tiny RiVEG composite built from the session's dummy components (see conftest ``dummy_dir``)."""
    from riveg_hf import RiVEGPipeline

    RiVEGPipeline.from_components(**{c: dummy_dir[c] for c in components}, **options).save_pretrained(out)
    return out


def assert_outputs_close(a, b, box_tol: float = 1e-3, score_tol: float = 1e-4) -> None:
    """Pipeline outputs (lists of entity lists, or predict lines with "entities") equal up to the float noise
    of batching: same entities and decisions, boxes within ``box_tol`` px, scores within ``score_tol``, masks
    IoU >= 0.999. Different batch compositions (batch sizes, a resumed run, several processes) give results
    that agree to this tolerance, not bit for bit."""
    from riveg_hf.masks import mask_iou

    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, dict) and "entities" in x:
            assert {k: v for k, v in x.items() if k != "entities"} == {
                k: v for k, v in y.items() if k != "entities"
            }
            x, y = x["entities"], y["entities"]
        if isinstance(x, dict):  # an error line / item
            assert x == y
            continue
        assert isinstance(x, list) and isinstance(y, list) and len(x) == len(y)
        for e, f in zip(x, y):
            exact = {
                k: v
                for k, v in e.items()
                if k not in ("score", "groundable_score", "box_score", "box", "mask")
            }
            assert exact == {k: v for k, v in f.items() if k in exact} and set(e) == set(f)
            for k in ("score", "groundable_score", "box_score"):
                assert (e[k] is None) == (f[k] is None) and (e[k] is None or abs(e[k] - f[k]) <= score_tol), k
            assert (e["box"] is None) == (f["box"] is None)
            if e["box"] is not None:
                assert max(abs(e["box"][c] - f["box"][c]) for c in e["box"]) <= box_tol
            assert (e["mask"] is None) == (f["mask"] is None)
            if e["mask"] is not None:
                assert mask_iou(e["mask"], f["mask"]) >= 0.999


def save_pair(pair, path) -> str:
    """Save a ``(model, processor)`` pair into ``path``; returns the path as a string."""
    model, proc = pair
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


def sake_prompt_dir(root: Path, *, fmnerg: bool = False) -> Path:
    """Stand-ins for SAKE's prompt files (not shipped: riveg-hf pins their SHA-256 and reads a SAKE checkout's),
    laid out as SAKE's prompt folder, with the round-1 file's ``**Input Data:**`` line and ``<image>``."""
    d = root / ("Twitter-FMNERG-Prompt" if fmnerg else "Twitter-GMNER-Prompt")
    d.mkdir(parents=True)
    first = "round_1_user_prompt_1_fmnerg.txt" if fmnerg else "round_1_user_prompt_1.txt"
    (d / first).write_text(
        "You are an assistant.\n---\n\n**Input Data:** Here are the image and original social media post for "
        "your task:\n<image>\n"
    )
    (d / "after_text_search_prompt_1.txt").write_text("AFTER TEXT")
    (d / "after_image_search_prompt_1.txt").write_text("AFTER IMAGE")
    return d


def real_gmner_subset(root: Path, limit: int, bases: dict) -> dict:
    """The first ``limit`` tweets of each split of the real Twitter-GMNER v2.0 text (skipped, or failed under
    CI, when it is absent), with a generated image per tweet (grey, a red ellipse in each gold box: something to
    find there) under ``root/images``, and ``bases`` (name -> (model, processor)) saved under ``root/bases``.
    Returns {"raw", "images", "root", "bases": name -> folder, "data"}."""
    from PIL import ImageDraw

    from riveg_hf.data.voc import read_voc

    data = find_shared_data()
    if data is None or not (data / "twitter-gmner" / "v2.0").is_dir():
        skip_or_fail("the real Twitter-GMNER text is needed (riveg data download twitter-gmner)")
    raw = data / "twitter-gmner" / "v2.0"
    images = root / "images"
    images.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        ids = [ln[6:].strip() for ln in (raw / "txt" / f"{split}.txt").read_text(encoding="utf-8-sig").splitlines()
               if ln.startswith("IMGID:")][:limit]  # fmt: skip
        for i in ids:
            xml = raw / "xml" / f"{i}.xml"
            ann = read_voc(xml) if xml.is_file() else None
            size = (ann.width, ann.height) if ann and ann.width else (96, 64)
            img = Image.new("RGB", size, (120, 120, 120))
            draw = ImageDraw.Draw(img)
            for obj in ann.objects if ann else []:
                draw.ellipse(list(obj.box), fill=(230, 40, 40))
            img.save(images / f"{i}.jpg")
    saved = {}
    for name, (model, processor) in bases.items():
        model.save_pretrained(root / "bases" / name)
        processor.save_pretrained(root / "bases" / name)
        saved[name] = str(root / "bases" / name)
    return {"raw": str(raw), "images": str(images), "root": root, "bases": saved, "data": data}


def script_generate(monkeypatch, reader, answers, record=lambda kw: kw["input_ids"].shape[0]) -> list:
    """A reader's ``model.generate``, made to answer ``answers`` in order, one per generated row (the real
    generate runs for one token, so scores keep their shape). Returns the list of ``record(generate's kwargs)``
    per call (default: the rows generated)."""
    import torch

    real, tok = reader.model.generate, reader.processor.tokenizer
    queue = list(answers)
    calls = []

    def canned(**kw):
        out = real(**{**kw, "max_new_tokens": 1})
        rows = []
        for _ in range(kw["input_ids"].shape[0]):
            ids = tok(queue.pop(0), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append(ids)
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
        out.sequences = torch.cat([kw["input_ids"], new], dim=1)
        calls.append(record(kw))
        return out

    monkeypatch.setattr(reader.model, "generate", canned)
    return calls
