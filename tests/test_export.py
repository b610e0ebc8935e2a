"""`riveg export` / :mod:`riveg_hf.export`: each format written and read back by the real library (pycocotools, the
package's VOC reader, Label Studio's documented schema, FiftyOne's importer and supervision when installed)."""

import doctest
import json
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import riveg_hf.export as export_module
from riveg_hf.boxes import dict_to_xyxy
from riveg_hf.cli import main as cli
from riveg_hf.data import read_voc
from riveg_hf.export import ExportError, export_predictions, from_supervision, to_supervision
from riveg_hf.masks import decode_rle, encode_rle
from riveg_hf.types import GroundedEntity

from .helpers import make_image, write_release

HOSTILE = "../../x"


def _mask(h, w, box):
    m = np.zeros((h, w), dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


OBAMA_MASK = _mask(48, 64, (5, 6, 19, 28))
# fmt: off
PREDICTIONS = [
    {
        "id": "1",
        "text": "Obama visits Paris",
        "image": "1.jpg",
        "entities": [
            {"entity": "Obama", "type": "PER", "start": 0, "end": 5, "score": 0.99, "description": "a person",
             "description_source": "template", "groundable": True, "groundable_score": 0.93,
             "box": {"xmin": 4.3, "ymin": 4.0, "xmax": 20.7, "ymax": 30.25}, "box_score": 0.61,
             "mask": encode_rle(OBAMA_MASK)},
            {"entity": "Paris", "type": "LOC", "start": 13, "end": 18, "score": 0.8, "groundable": False,
             "groundable_score": 0.1, "box": None, "box_score": None, "mask": None},
        ],
    },
    {"id": "2", "text": "broken image", "image": "missing.jpg", "error": "image file not found"},
    {
        "id": HOSTILE,
        "text": "Go Lakers and NASA",
        "image": "2.png",
        "entities": [
            {"entity": "Lakers", "type": "ORG", "start": 3, "end": 9, "score": 0.7, "groundable": True,
             "groundable_score": None, "box": {"xmin": 10.0, "ymin": 12.5, "xmax": 70.0, "ymax": 50.0},
             "box_score": None, "mask": None},
            {"entity": "NASA", "type": "ORG", "start": 14, "end": 18, "score": 0.6, "groundable": True,
             "groundable_score": 0.8, "box": {"xmin": 0.0, "ymin": 0.0, "xmax": 8.0, "ymax": 8.0},
             "box_score": 0.9, "mask": None},
        ],
    },
    {"id": "3", "text": "nothing here", "image": "3.jpg", "entities": []},
]
# fmt: on


@pytest.fixture
def preds(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    make_image((64, 48)).save(images / "1.jpg")
    make_image((80, 60)).save(images / "2.png")
    make_image((32, 32)).save(images / "3.jpg")
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PREDICTIONS), encoding="utf-8")
    return path, images


def _boxes(entities):
    return {e["entity"]: dict_to_xyxy(e["box"]) for e in entities if e["box"] is not None}


def _inside(root, out):
    return all(p.resolve().is_relative_to(out.resolve()) for p in root.rglob("*"))


# ---------------------------------------------------------------------- COCO
def test_coco_read_back_by_pycocotools(preds, tmp_path):
    path, images = preds
    out = tmp_path / "coco"
    summary = export_predictions(path, out, "coco", images=images)
    assert summary.error_lines == [(2, "2", "image file not found")]  # skipped and counted
    assert summary.renamed[HOSTILE] == "x-9cdf6a50"
    assert [f.name for f in summary.files] == ["predictions.json"]
    coco = COCO(str(out / "predictions.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["PER", "LOC", "ORG", "OTHER"]
    by_id = {im["riveg_id"]: im for im in coco.dataset["images"]}
    assert set(by_id) == {"1", HOSTILE, "3"}  # the error line is not an image of the export
    assert (by_id["1"]["width"], by_id["1"]["height"], by_id["1"]["size_source"]) == (64, 48, "image file")
    assert (by_id[HOSTILE]["width"], by_id[HOSTILE]["height"], by_id[HOSTILE]["file_name"]) == (
        80,
        60,
        "2.png",
    )
    for pred in (PREDICTIONS[0], PREDICTIONS[2]):
        im = by_id[pred["id"]]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]]))
        got = {}
        for a in anns:
            x, y, w, h = a["bbox"]  # COCO xywh
            got[a["attributes"]["entity"]] = [x, y, x + w, y + h]
            src = next(e for e in pred["entities"] if e["entity"] == a["attributes"]["entity"])
            assert coco.cats[a["category_id"]]["name"] == src["type"]
            assert a["attributes"]["entity_score"] == src["score"]
            assert a["attributes"]["box_score"] == src["box_score"]
            assert a["attributes"]["groundable_score"] == src["groundable_score"]
            assert (a["attributes"]["start"], a["attributes"]["end"]) == (src["start"], src["end"])
            assert a["score"] == (src["box_score"] if src["box_score"] is not None else src["score"])
        assert got.keys() == _boxes(pred["entities"]).keys()
        for name, box in _boxes(pred["entities"]).items():
            np.testing.assert_allclose(got[name], box, atol=1e-9)
    # the SMNER mask decodes to the same pixels
    obama = next(a for a in coco.dataset["annotations"] if a["attributes"]["entity"] == "Obama")
    assert (coco.annToMask(obama).astype(bool) == OBAMA_MASK).all()
    assert obama["area"] == int(OBAMA_MASK.sum())
    # the not-visible entity is kept on its image
    nv = by_id["1"]["not_visible"]
    assert [(e["entity"], e["type"], e["start"], e["end"]) for e in nv] == [("Paris", "LOC", 13, 18)]
    assert coco.cats[nv[0]["category_id"]]["name"] == "LOC" and by_id["3"]["not_visible"] == []
    assert coco.dataset["info"]["bbox_format"].startswith(
        "COCO [x, y, width, height] in pixels, converted from"
    )
    assert _inside(tmp_path, tmp_path) and not list(out.glob(".riveg-export-*"))


def test_unknown_sizes_are_said_and_masks_give_sizes(tmp_path):
    lines = [dict(p) for p in PREDICTIONS]
    for p in lines:
        p.pop("image", None)
    (tmp_path / "noimg.jsonl").write_text("".join(json.dumps(p) + "\n" for p in lines), encoding="utf-8")
    summary = export_predictions(tmp_path / "noimg.jsonl", tmp_path / "c", "coco")
    doc = json.loads((tmp_path / "c" / "predictions.json").read_text())
    by_id = {im["riveg_id"]: im for im in doc["images"]}
    assert (by_id["1"]["width"], by_id["1"]["height"], by_id["1"]["size_source"]) == (64, 48, "mask")
    assert by_id[HOSTILE]["width"] is None and by_id[HOSTILE]["size_source"] is None
    COCO(str(tmp_path / "c" / "predictions.json"))  # null sizes still load
    assert summary.unknown_size == [HOSTILE, "3"]
    assert any("unknown size" in line for line in summary.lines())
    # Label Studio / FiftyOne need the size to place a box: refused, naming the ids and the fix
    for fmt in ("labelstudio", "fiftyone"):
        with pytest.raises(ExportError, match=r"no known size.*\.\./\.\./x.*--images"):
            export_predictions(tmp_path / "noimg.jsonl", tmp_path / fmt, fmt)


# ---------------------------------------------------------------------- VOC
def test_voc_read_back_by_the_package_reader(preds, tmp_path):
    path, images = preds
    out = tmp_path / "voc"
    export_predictions(path, out, "voc", images=images)
    files = sorted(p.name for p in (out / "predictions").iterdir())
    assert files == ["1.xml", "3.xml", "x-9cdf6a50.xml"]  # the hostile id stays inside the folder
    assert _inside(tmp_path, tmp_path) and not (tmp_path.parent / "x.xml").exists()
    for pred, name in ((PREDICTIONS[0], "1"), (PREDICTIONS[2], "x-9cdf6a50")):
        ann = read_voc(out / "predictions" / f"{name}.xml")
        assert (ann.width, ann.height) == ((64, 48) if name == "1" else (80, 60))
        got = {o.name: o.box for o in ann.objects}
        want = _boxes(pred["entities"])
        assert got.keys() == want.keys()
        for k, box in want.items():
            np.testing.assert_allclose(got[k], box, atol=0.5)  # integers, like Twitter-GMNER's files
        root = ET.parse(out / "predictions" / f"{name}.xml").getroot()
        assert root.findtext("riveg_id") == pred["id"] and root.findtext("text") == pred["text"]
        for obj in root.iter("object"):
            src = next(e for e in pred["entities"] if e["entity"] == obj.findtext("name"))
            assert (
                obj.findtext("riveg/type") == src["type"] and int(obj.findtext("riveg/start")) == src["start"]
            )
    root = ET.parse(out / "predictions" / "1.xml").getroot()
    nv = root.findall("not_visible/entity")
    assert [(e.findtext("name"), e.findtext("type"), e.findtext("end")) for e in nv] == [
        ("Paris", "LOC", "18")
    ]
    assert ET.parse(out / "predictions" / "3.xml").getroot().find("object") is None
    # more decimals on request
    export_predictions(path, tmp_path / "voc2", "voc", images=images, voc_decimals=2)
    got = {o.name: o.box for o in read_voc(tmp_path / "voc2" / "predictions" / "1.xml").objects}
    np.testing.assert_allclose(got["Obama"], [4.3, 4.0, 20.7, 30.25], atol=0.005)


def test_voc_xml_stays_well_formed_with_control_characters(tmp_path):
    line = {"id": "c", "text": "bad \x01 char \ud800", "entities": [
        {"entity": "A\x02B", "type": "PER", "start": 0, "end": 1, "box": [1, 1, 5, 5]}]}  # fmt: skip
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    export_predictions(tmp_path / "p.jsonl", tmp_path / "v", "voc")
    ann = read_voc(tmp_path / "v" / "predictions" / "c.xml")
    assert [o.name for o in ann.objects] == ["A\ufffdB"] and ann.width is None  # no <size> when unknown


# ---------------------------------------------------------------------- Label Studio
def _check_ls_task(task, config_root):
    """The task against Label Studio's documented import format (labelstud.io/guide/predictions, task_format)."""
    controls = {el.get("name"): el for el in config_root if el.get("toName")}
    objects = {el.get("name"): el for el in config_root if el.get("value", "").startswith("$")}
    for key in ("image", "text"):
        assert key in task["data"] and f"${key}" in {o.get("value") for o in objects.values()}
    for block in task.get("predictions", []) + task.get("annotations", []):
        ids = {r["id"] for r in block["result"] if "id" in r}
        assert len(ids) == len([r for r in block["result"] if "id" in r])  # unique ids
        for r in block["result"]:
            if r["type"] == "relation":
                assert (
                    {"from_id", "to_id", "direction"} <= set(r) and r["from_id"] in ids and r["to_id"] in ids
                )
                continue
            ctrl = controls[r["from_name"]]
            assert ctrl.get("toName") == r["to_name"] and ctrl.tag.lower() == r["type"]
            labels = {lab.get("value") for lab in ctrl}
            v = r["value"]
            if r["type"] == "rectanglelabels":
                assert {"original_width", "original_height", "image_rotation"} <= set(r)
                assert {"x", "y", "width", "height", "rotation", "rectanglelabels"} <= set(v)
                assert set(v["rectanglelabels"]) <= labels and all(0 <= v[k] <= 100 for k in ("x", "y"))
            else:
                assert {"start", "end", "text", "labels"} <= set(v) and set(v["labels"]) <= labels
                assert task["data"]["text"][v["start"] : v["end"]] == v["text"]
    return controls


def test_labelstudio_tasks_match_the_documented_schema(preds, tmp_path):
    path, images = preds
    out = tmp_path / "ls"
    summary = export_predictions(
        path, out, "labelstudio", images=images, image_url_prefix="/data/local-files/?d="
    )
    assert any("masks are not in them" in n for n in summary.notes)
    tasks = json.loads((out / "tasks.json").read_text())
    config = ET.parse(out / "labeling_config.xml").getroot()
    assert config.tag == "View" and config.find("Relations/Relation").get("value") == "shown in"
    assert [t["data"]["riveg_id"] for t in tasks] == ["1", HOSTILE, "3"]
    for task in tasks:
        _check_ls_task(task, config)
        assert task["predictions"][0]["model_version"] == "riveg-hf"
    t1 = tasks[0]
    assert t1["data"]["image"] == "/data/local-files/?d=1.jpg" and t1["data"]["not_visible"] == [
        "Paris (LOC)"
    ]
    # percents back to pixels (Label Studio's "Units of image annotations") = the predictions' boxes
    for task, pred in ((tasks[0], PREDICTIONS[0]), (tasks[1], PREDICTIONS[2])):
        res = task["predictions"][0]["result"]
        spans = {r["id"]: r["value"]["text"] for r in res if r["type"] == "labels"}
        rects = {r["id"]: r for r in res if r["type"] == "rectanglelabels"}
        links = {r["to_id"]: spans[r["from_id"]] for r in res if r["type"] == "relation"}
        got = {}
        for rid, r in rects.items():
            v, w, h = r["value"], r["original_width"], r["original_height"]
            x, y = v["x"] / 100 * w, v["y"] / 100 * h
            got[links[rid]] = [x, y, x + v["width"] / 100 * w, y + v["height"] / 100 * h]
        want = _boxes(pred["entities"])
        assert got.keys() == want.keys()
        for k, box in want.items():
            np.testing.assert_allclose(got[k], box, atol=1e-9)
        assert set(spans.values()) == {e["entity"] for e in pred["entities"]}  # not-visible spans too


def test_labelstudio_span_off_its_text_keeps_the_box_and_says_so(tmp_path):
    line = {"id": 7, "text": "Obama visits", "entities": [
        {"entity": "Obama", "type": "PER", "start": 1, "end": 6, "box": [0, 0, 4, 4], "mask": encode_rle(np.ones((8, 8)))}]}  # fmt: skip
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    summary = export_predictions(tmp_path / "p.jsonl", tmp_path / "ls", "labelstudio")
    assert any("not at their offsets" in n and "'7'" in n for n in summary.notes)
    [task] = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert [r["type"] for r in task["predictions"][0]["result"]] == ["rectanglelabels"]
    assert task["predictions"][0]["result"][0]["original_width"] == 8  # the mask gave the size


# ---------------------------------------------------------------------- FiftyOne
def test_fiftyone_layout_and_its_importer(preds, tmp_path):
    path, images = preds
    out = tmp_path / "fo"
    summary = export_predictions(path, out, "fiftyone", images=images)
    assert {f.name for f in summary.files} == {"labels.json", "load_fiftyone.py"}
    compile(summary.load_command, "load_fiftyone.py", "exec")  # the printed command is valid Python
    assert "fo.Dataset.from_dir(" in summary.load_command and str(images.resolve()) in summary.load_command
    assert (out / "load_fiftyone.py").read_text() == summary.load_command
    doc = json.loads((out / "labels.json").read_text())
    assert all(im["file_name"].startswith(str(images.resolve())) for im in doc["images"])
    COCO(str(out / "labels.json"))
    fouc = pytest.importorskip("fiftyone.utils.coco", reason="fiftyone is not installed (optional)")
    importer = fouc.COCODetectionDatasetImporter(
        data_path=str(images), labels_path=str(out / "labels.json"), label_types=["detections", "segmentations"],
        extra_attrs=True, include_id=True,
    )  # fmt: skip
    with importer:
        samples = {p: labels for p, _, labels in importer}
    dets = samples[str((images / "1.jpg").resolve())]["detections"].detections
    assert [(d.label, d.entity) for d in dets] == [("PER", "Obama")]
    np.testing.assert_allclose(dets[0].bounding_box, [4.3 / 64, 4 / 48, 16.4 / 64, 26.25 / 48], atol=1e-9)
    assert dets[0].confidence == 0.61 and dets[0].entity_score == 0.99


# ---------------------------------------------------------------------- gold
@pytest.fixture
def gold_dataset(tmp_path):
    from datasets_scripts import twitter_gmner

    tweets = {"test": [
        {"id": "1", "tokens": ["Obama", "visits", "Paris"], "tags": ["B-PER", "O", "B-LOC"],
         "objects": [("Obama", [4, 4, 20, 30]), ("Obama", [30, 5, 40, 20])], "size": (64, 48)},
        {"id": "2", "tokens": ["broken", "image"], "tags": ["O", "O"], "objects": None},
        {"id": "9", "tokens": ["Go", "Lakers"], "tags": ["O", "B-ORG"], "objects": None},
    ]}  # fmt: skip
    twitter_gmner.build(write_release(tmp_path / "raw", tweets), tmp_path / "ds", configs=("gmner",))
    return tmp_path / "ds"


def test_gold_goes_to_separate_files_and_cocoeval_compares(preds, gold_dataset, tmp_path):
    path, images = preds
    out = tmp_path / "coco"
    summary = export_predictions(path, out, "coco", images=images, dataset=gold_dataset, config="gmner")
    assert {f.name for f in summary.files} == {"predictions.json", "gold.json"}
    assert summary.gold == {"images": 3, "entities": 3, "boxes": 2, "masks": 0, "not_visible": 2}
    assert any("not in" in n and HOSTILE in n for n in summary.notes)
    assert any("1 id(s)" in n and "no prediction line" in n for n in summary.notes)  # "9": gold only
    gold, pred = COCO(str(out / "gold.json")), COCO(str(out / "predictions.json"))
    assert [im["riveg_id"] for im in gold.dataset["images"]] == [
        im["riveg_id"] for im in pred.dataset["images"]
    ]
    im1 = next(im for im in gold.dataset["images"] if im["riveg_id"] == "1")
    anns = gold.loadAnns(gold.getAnnIds(imgIds=[im1["id"]]))
    assert [(a["attributes"]["entity"], a["attributes"]["box_index"], a["bbox"]) for a in anns] == [
        ("Obama", 0, [4.0, 4.0, 16.0, 26.0]),
        ("Obama", 1, [30.0, 5.0, 10.0, 15.0]),
    ]
    a = anns[0]["attributes"]
    assert (a["start"], a["end"], a["token_start"], a["token_end"]) == (0, 5, 0, 1) and "score" not in anns[0]
    assert [e["entity"] for e in im1["not_visible"]] == ["Paris"]
    err = next(im for im in pred.dataset["images"] if im["riveg_id"] == "2")
    assert err["predicted"] is False and err["prediction_error"] == "image file not found"
    ev = COCOeval(gold, pred.loadRes(pred.dataset["annotations"]), "bbox")
    ev.evaluate()
    ev.accumulate()  # the two files are one COCO evaluation
    # VOC and Label Studio keep gold apart too
    export_predictions(path, tmp_path / "voc", "voc", images=images, dataset=gold_dataset, config="gmner")
    assert [o.name for o in read_voc(tmp_path / "voc" / "gold" / "1.xml").objects] == ["Obama", "Obama"]
    export_predictions(
        path, tmp_path / "ls", "labelstudio", images=images, dataset=gold_dataset, config="gmner"
    )
    tasks = {t["data"]["riveg_id"]: t for t in json.loads((tmp_path / "ls" / "tasks.json").read_text())}
    config = ET.parse(tmp_path / "ls" / "labeling_config.xml").getroot()
    for t in tasks.values():
        _check_ls_task(t, config)
    gold_res = tasks["1"]["annotations"][0]["result"]
    assert (
        sum(r["type"] == "rectanglelabels" for r in gold_res) == 2
        and sum(r["type"] == "labels" for r in gold_res) == 2
    )
    assert "predictions" not in tasks["9"] and tasks["2"]["data"]["prediction_error"]


def test_smner_gold_masks_from_a_dataset_object(tmp_path):
    from datasets import Dataset

    from riveg_hf.data import smner_features

    gold_mask = _mask(48, 64, (30, 5, 40, 20))
    row = {"id": "1", "tokens": ["Obama", "visits", "Paris"], "ner_tags": [1, 0, 3], "image": None, "width": 64,
           "height": 48, "caption": None, "entities": [
               {"text": "Obama", "type": 0, "start": 0, "end": 1, "groundable": True, "boxes": [[30, 5, 40, 20]],
                "masks": [encode_rle(gold_mask)]},
               {"text": "Paris", "type": 1, "start": 2, "end": 3, "groundable": False, "boxes": [], "masks": []}]}  # fmt: skip
    ds = Dataset.from_list([row], features=smner_features())
    summary = export_predictions([PREDICTIONS[0]], tmp_path / "c", "coco", dataset=ds)
    assert summary.gold == {"images": 1, "entities": 2, "boxes": 1, "masks": 1, "not_visible": 1}
    gold = COCO(str(tmp_path / "c" / "gold.json"))
    [im] = gold.dataset["images"]
    assert (im["width"], im["height"], im["size_source"]) == (64, 48, "dataset")
    [ann] = gold.dataset["annotations"]
    assert (gold.annToMask(ann).astype(bool) == gold_mask).all() and ann["attributes"]["entity"] == "Obama"
    assert [e["entity"] for e in im["not_visible"]] == ["Paris"]


# ---------------------------------------------------------------------- supervision
def test_supervision_round_trip():
    sv = pytest.importorskip("supervision")
    ents = PREDICTIONS[0]["entities"] + [
        GroundedEntity(
            "Rome", "LOC", 20, 24, box={"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}, groundable=True
        )
    ]
    det = to_supervision(ents)
    assert isinstance(det, sv.Detections) and len(det) == 2
    assert det.class_id.tolist() == [0, 1] and list(det.data["entity"]) == ["Obama", "Rome"]
    assert det.mask.shape == (2, 48, 64) and det.data["has_mask"].tolist() == [True, False]
    assert det.confidence[0] == 0.61 and np.isnan(det.confidence[1])
    back = from_supervision(det)
    assert [(e["entity"], e["type"], e["start"], e["end"], e["box"]) for e in back] == [
        ("Obama", "PER", 0, 5, ents[0]["box"]),
        ("Rome", "LOC", 20, 24, {"xmin": 1.0, "ymin": 2.0, "xmax": 3.0, "ymax": 4.0}),
        ("Paris", "LOC", 13, 18, None),
    ]
    assert (decode_rle(back[0]["mask"]) == OBAMA_MASK).all() and back[1]["mask"] is None
    assert back[0]["box_score"] == 0.61 and back[1]["box_score"] is None and back[0]["score"] == 0.99
    assert len(to_supervision([])) == 0
    with pytest.raises(ValueError, match="types="):
        to_supervision([{"entity": "x", "type": "MISC", "start": 0, "end": 1, "box": [0, 0, 1, 1]}])


def test_supervision_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(ImportError, match=r"riveg-hf\[export\]"):
        to_supervision([])


# ---------------------------------------------------------------------- bad input, atomicity, CLI
@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"text": "no id", "entities": []}', r"p\.jsonl:2: each line needs an 'id'"),
        ('{"id": "1", "text": "dup", "entities": []}', r"p\.jsonl:2: duplicate id '1' \(first on line 1\)"),
        ('{"id": "b", "text": "x"}', r"p\.jsonl:2: each line needs 'entities' \(or 'error'"),
        ('{"id": "b", "entities": [{"entity": "x", "type": "PER", "start": 0, "end": 1, "box": [5, 5, 1, 1]}]}',
         r"p\.jsonl:2: entity #0 \('x'\): box.*xmax < xmin.*xywh_to_xyxy"),
        ('{"id": "b", "entities": [{"entity": "x", "type": "PER", "start": 0, "end": 1, "box": null, '
         '"mask": {"size": [2, 2], "counts": "zz"}}]}', r"p\.jsonl:2: entity #0 \('x'\): mask"),
        ('{"id": "b", "entities": [{"entity": "x", "start": 0, "end": 1}]}', r"'type' must be a non-empty string"),
        ("not json", r"p\.jsonl:2: not a JSON line"),
    ],
)  # fmt: skip
def test_bad_lines_are_errors_naming_the_line(tmp_path, line, match):
    (tmp_path / "p.jsonl").write_text('{"id": "1", "text": "ok", "entities": []}\n' + line + "\n")
    with pytest.raises(ValueError, match=match):
        export_predictions(tmp_path / "p.jsonl", tmp_path / "out", "coco")
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_mask_of_another_image_size_is_refused(preds, tmp_path):
    _, images = preds
    bad = dict(
        PREDICTIONS[0], entities=[dict(PREDICTIONS[0]["entities"][0], mask=encode_rle(np.ones((10, 10))))]
    )
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ExportError, match=r"mask of 'Obama' is 10x10 pixels but the image is 64x48"):
        export_predictions(tmp_path / "bad.jsonl", tmp_path / "o", "coco", images=images)


def test_a_failed_export_leaves_the_previous_files(preds, tmp_path, monkeypatch):
    path, images = preds
    out = tmp_path / "voc"
    export_predictions(path, out, "voc", images=images)
    before = {p: p.read_bytes() for p in (out / "predictions").iterdir()}
    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return b"<annotation/>"

    monkeypatch.setattr(export_module, "_voc_xml", boom)
    with pytest.raises(OSError, match="disk full"):
        export_predictions(path, out, "voc", images=images)
    assert {p: p.read_bytes() for p in (out / "predictions").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["predictions"]  # no staging folder left


def test_cli_export_end_to_end(preds, gold_dataset, tmp_path, capsys):
    path, images = preds
    out = tmp_path / "cli"
    rc = cli(["export", "--predictions", str(path), "--format", "coco", "--out", str(out), "--images", str(images),
              "--dataset", str(gold_dataset), "--config", "gmner", "--split", "test"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "skipped 1 error line(s)" in printed and "'2'" in printed
    assert "converted from riveg-hf's [xmin, ymin, xmax, ymax]" in printed and "renamed" in printed
    assert (out / "predictions.json").is_file() and (out / "gold.json").is_file()
    rc = cli(["export", "--predictions", str(path), "--format", "fiftyone", "--out", str(tmp_path / "fo"),
              "--images", str(images)])  # fmt: skip
    assert rc == 0 and "fo.Dataset.from_dir(" in capsys.readouterr().out
    # bad input: exit 2 with one line saying what to fix
    (tmp_path / "bad.jsonl").write_text('{"id": "1", "entities": [{"entity": "x"}]}\n')
    rc = cli(["export", "--predictions", str(tmp_path / "bad.jsonl"), "--format", "voc", "--out", str(out)])
    err = capsys.readouterr().err
    assert (
        rc == 2
        and err.startswith("riveg export: error:")
        and "bad.jsonl:1" in err
        and len(err.splitlines()) == 1
    )
    assert (
        cli(["export", "--predictions", str(tmp_path / "nope.jsonl"), "--format", "voc", "--out", str(out)])
        == 2
    )
    with pytest.raises(SystemExit):
        cli(["export", "--predictions", str(path), "--format", "yolo", "--out", str(out)])


def test_module_doctests():
    assert doctest.testmod(export_module).failed == 0
