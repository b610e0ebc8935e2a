"""The evaluation report (riveg_hf.report, ``riveg evaluate --report DIR``): one self-contained HTML page whose counts
are the metric's, each error class on a hand-built case, masks, no images, untrusted text, a 1,500-tweet set,
the CLI end to end, and the page in real headless Chromium (the demo's harness and skip policy).

``python -m tests.test_report docs/report.png`` writes the README's screenshot (the example tweets and
scikit-image photos, hand-written predictions against hand-written gold)."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riveg_hf.masks import encode_rle
from riveg_hf.metrics import PROTOCOLS, compute_gmner, compute_smner
from riveg_hf.report import ERROR_CLASSES, match_entities, write_report

from .helpers import REPO, make_image, skimage_photo, skip_or_fail, write_release

A = [10.0, 10.0, 40.0, 60.0]
B = [50.0, 10.0, 90.0, 60.0]
SCRIPT = "<script>alert(1)</script>"


# --------------------------------------------------------------------------- a tiny DOM of the page
class _Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, dict(attrs), parent, [], ""

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def all(self, **attrs):
        """Descendants whose attributes have these values (True: present)."""
        return [
            n
            for n in self.iter()
            if all((k.replace("_", "-") in n.attrs) if v is True else n.attrs.get(k.replace("_", "-")) == v
                   for k, v in attrs.items())
        ]  # fmt: skip

    def text_content(self):
        return self.text + "".join(c.text_content() for c in self.children)


class _Tree(HTMLParser):
    VOID = {"img", "meta", "br", "hr", "input", "link", "col", "source", "wbr"}

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = _Node("#root", {}, None)
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(_Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data):
        leaf = _Node("#text", {}, self.cur)
        leaf.text = data
        self.cur.children.append(leaf)


def dom(page_path: Path) -> _Node:
    return _Tree(Path(page_path).read_text(encoding="utf-8")).root


def page_error_counts(root: _Node) -> dict[str, int]:
    out = {}
    for tr in root.all(data_error_class=True):
        if tr.tag == "tr":
            out[tr.attrs["data-error-class"]] = int(tr.all(data_count=True)[0].attrs["data-count"])
    return out


def page_scores(root: _Node) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for td in root.all(data_protocol=True, data_metric=True):
        out.setdefault(td.attrs["data-protocol"], {})[td.attrs["data-metric"]] = float(td.attrs["data-value"])
    for td in root.all(data_protocol=True, data_count=True):
        out[td.attrs["data-protocol"]][td.attrs["data-count"]] = int(td.text_content())
    return out


def assert_scores_are_the_metrics(root: _Node, want: dict[str, dict]) -> None:
    shown = page_scores(root)
    assert set(shown) == set(want)
    for name, s in want.items():
        for key, value in shown[name].items():
            assert value == s[key], (name, key)  # the exact float, through repr()


# --------------------------------------------------------------------------- the hand-built case
def g(s, e, t, boxes, text=""):
    return {"start": s, "end": e, "type": t, "boxes": boxes, "text": text}


def p(s, e, t, box, text="", **kw):
    return {"start": s, "end": e, "type": t, "box": box, "entity": text, **kw}


def constructed():
    """(predictions, references, tokens) by id, with every error class at a known place."""
    tokens = {
        "a": "Lionel Messi visits Paris with Neymar and PSG".split(),
        "b": "Obama in Berlin today".split(),
        "c": "NASA launches Artemis".split(),
        "d": ["Tokyo"],
        'x"><i>e': [SCRIPT, "Trump"],
    }
    refs = {
        "a": [g(0, 2, "PER", [A]), g(3, 4, "LOC", []), g(5, 6, "PER", [B]), g(7, 8, "ORG", [])],
        "b": [g(0, 1, "PER", [[10, 10, 50, 50]]), g(2, 3, "LOC", [[60, 10, 90, 70]])],
        "c": [g(0, 1, "ORG", []), g(2, 3, "OTHER", [[0, 0, 50, 50]])],
        "d": [g(0, 1, "LOC", [[0, 0, 20, 20]])],
        'x"><i>e': [g(1, 2, "PER", [])],
    }
    preds = {
        "a": [
            p(1, 2, "PER", A, score=0.93, description="Argentine footballer <b>bold</b>"),  # span wrong
            p(3, 4, "ORG", None),  # type wrong
            p(5, 6, "PER", A),  # box on another entity (Messi's)
            p(7, 8, "ORG", [0, 0, 5, 5]),  # "not visible" wrong: a box where gold is not visible
        ],
        "b": [
            p(0, 1, "PER", None),  # "not visible" wrong: none where gold has a box
            p(2, 3, "LOC", [60, 10, 70, 20]),  # box wrong (IoU 100 / 1800)
            p(3, 4, "OTHER", None),  # spurious
        ],
        "c": [p(0, 1, "ORG", None), p(0, 1, "ORG", None)],  # right, then a duplicate; Artemis missed
        "d": [p(0, 1, "LOC", [0, 0, 20, 21])],  # right
        'x"><i>e': [p(0, 1, "PER", None, description=SCRIPT)],  # spurious; Trump missed
    }
    for k in refs:  # entity strings, for the protocols that key on them
        for e in refs[k]:
            e["text"] = " ".join(tokens[k][e["start"] : e["end"]])
        for e in preds[k]:
            e["entity"] = " ".join(tokens[k][e["start"] : e["end"]])
    return preds, refs, tokens


EXPECTED = {
    "span": 1, "type": 1, "region": 1, "region_other": 1, "missing_region": 1, "extra_region": 1,
    "duplicate": 1, "spurious": 2, "missed": 2,
}  # fmt: skip


def constructed_images(folder: Path, missing=("c",)) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, box in (("a", A), ("b", [60, 10, 90, 70]), ("c", None), ("d", [0, 0, 20, 20]), ('x"><i>e', None)):
        path = folder / f"{len(out)}.jpg"
        make_image((100, 80), color=(110, 150, 200), box=box).save(path)
        out[k] = None if k in missing else str(path)
    return out


def test_each_error_class_on_a_constructed_case(tmp_path):
    preds, refs, tokens = constructed()
    analysis = match_entities(preds, refs)
    assert analysis.counts == EXPECTED
    by_id = {ex.id: ex for ex in analysis.examples}
    assert [q.error for q in by_id["a"].preds] == ["span", "type", "region_other", "extra_region"]
    assert by_id["a"].preds[2].other == 0 and by_id["a"].preds[2].iou == 0.0
    assert [q.error for q in by_id["b"].preds] == ["missing_region", "region", "spurious"]
    assert by_id["b"].preds[1].iou == pytest.approx(100 / 1800)
    assert [q.error for q in by_id["c"].preds] == [None, "duplicate"]
    assert [x.error for x in by_id["c"].golds] == [None, "missed"]
    assert by_id["d"].n_errors == 0
    # every false positive is in exactly one class; the right ones are the metric's
    s = compute_gmner(preds, refs)
    n_right = round(s["gmner_precision"] * s["n_predictions"])
    assert analysis.correct["gmner"] == n_right == 2
    assert sum(v for k, v in analysis.counts.items() if k != "missed") == s["n_predictions"] - n_right

    page = write_report(preds, refs, tmp_path / "report", texts=tokens, images=constructed_images(tmp_path / "i"),
                        protocols="all")  # fmt: skip
    root = dom(page)
    assert page_error_counts(root) == EXPECTED
    want = {
        "riveg-hf": s,
        **{n: compute_gmner(preds, refs, protocol=n) for n in PROTOCOLS if n != "riveg-hf"},
    }
    assert_scores_are_the_metrics(root, want)
    # each class links to a gallery card that shows it
    cards = {c.attrs["id"]: c for c in root.all(data_errors=True)}
    assert [c.attrs["data-id"] for c in cards.values()] == ["a", "b", "c", 'x"><i>e']  # most errors first
    for tr in root.all(data_error_class=True):
        if tr.tag != "tr":
            continue
        links = [a.attrs["href"][1:] for a in tr.iter() if a.tag == "a"]
        assert links and all(link in cards for link in links), tr.attrs
        assert any(
            b.attrs.get("data-error-class") == tr.attrs["data-error-class"] for b in cards[links[0]].iter()
        )
    # per type, groundable, entities per tweet: the metric's numbers on each part
    per_type = {tr.attrs["data-type"]: tr for tr in root.all(data_type=True)}
    for t, d in s["per_type"].items():
        cells = {
            td.attrs["data-metric"]: float(td.attrs["data-value"]) for td in per_type[t].all(data_metric=True)
        }
        assert cells == {k: d[k] for k in cells} and len(cells) == 6
    groups = {tr.attrs["data-group"]: tr for tr in root.all(data_group=True)}
    vis = compute_gmner({k: [e for e in v if e["box"] is not None] for k, v in preds.items()},
                        {k: [e for e in v if e["boxes"]] for k, v in refs.items()})  # fmt: skip
    shown = {
        td.attrs["data-metric"]: float(td.attrs["data-value"])
        for td in groups["groundable"].all(data_metric=True)
    }
    assert shown == {k: vis[k] for k in shown}
    rows = {tr.attrs["data-entities"]: tr for tr in root.all(data_entities=True)}
    assert set(rows) == {"1", "2", "4+"}
    assert rows["2"].all(data_count="n_tweets")[0].text_content() == "2"
    # the IoU histogram: the metric's grounding diagnostics
    bins = [int(r.attrs["data-count"]) for r in root.all(data_bin=True)]
    assert sum(bins) == s["diagnostics"]["grounding_evaluated"] == 3 and bins[0] == 2 and bins[9] == 1


def test_untrusted_text_is_escaped(tmp_path):
    preds, refs, tokens = constructed()
    page = write_report(preds, refs, tmp_path / "r", texts=tokens)
    raw = page.read_text(encoding="utf-8")
    assert "<script" not in raw.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "<b>bold</b>" not in raw and "&lt;b&gt;bold&lt;/b&gt;" in raw
    assert 'x"><i>e' not in raw and "x&quot;&gt;&lt;i&gt;e" in raw
    assert "default-src 'none'" in raw  # and no script could run anyway
    card = next(c for c in dom(page).all(data_errors=True) if c.attrs["data-id"] == 'x"><i>e')
    assert SCRIPT in card.text_content()  # shown as text


def test_report_without_images_or_text_says_so(tmp_path):
    preds, refs, tokens = constructed()
    page = write_report(preds, refs, tmp_path / "r", texts=tokens)
    root = dom(page)
    notices = [n.text_content() for n in root.all(data_notice="1")]
    assert notices and notices[0].startswith("No images were given")
    assert not [n for n in root.iter() if n.tag == "img"] and not (tmp_path / "r" / "img").exists()
    assert page_error_counts(root) == EXPECTED
    # no text either: the entities' own strings
    root = dom(write_report(preds, refs, tmp_path / "r2"))
    assert page_error_counts(root) == EXPECTED and "Neymar" in root.text_content()
    # some images missing: those tweets say so
    page = write_report(preds, refs, tmp_path / "r3", texts=tokens, images=constructed_images(tmp_path / "i"))
    root = dom(page)
    assert "1 of the gallery's 4 tweets have no image" in root.all(data_notice="1")[0].text_content()
    no_image = [c.attrs["data-id"] for c in root.all(data_errors=True) if c.all(data_noimage="1")]
    assert no_image == ["c"]
    assert len(list((tmp_path / "r3" / "img").iterdir())) == 3


def _mask(h, w, box):
    m = np.zeros((h, w), dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return encode_rle(m)


def smner_case():
    h, w = 48, 64
    left, right = [4, 4, 28, 40], [36, 4, 60, 40]
    refs = [[
        {"start": 0, "end": 1, "type": "PER", "boxes": [left], "masks": [_mask(h, w, left)], "text": "Ann"},
        {"start": 2, "end": 3, "type": "PER", "boxes": [right], "masks": [_mask(h, w, right)], "text": "Bob"},
        {"start": 4, "end": 5, "type": "LOC", "boxes": [], "masks": [], "text": "Rome"},
    ]]  # fmt: skip
    preds = [[
        {"start": 0, "end": 1, "type": "PER", "box": left, "mask": _mask(h, w, left), "entity": "Ann"},  # right
        {"start": 2, "end": 3, "type": "PER", "box": left, "mask": _mask(h, w, left), "entity": "Bob"},  # other's
        {"start": 4, "end": 5, "type": "LOC", "box": [0, 0, 8, 8], "mask": _mask(h, w, [0, 0, 8, 8]),
         "entity": "Rome"},  # a mask where gold is not visible
    ]]  # fmt: skip
    return preds, refs, [["Ann", "and", "Bob", "in", "Rome"]], h, w


def test_smner_masks_are_drawn_and_classified(tmp_path):
    preds, refs, tokens, h, w = smner_case()
    image = Image.new("RGB", (w, h), (128, 128, 128))
    page = write_report(preds, refs, tmp_path / "r", texts=tokens, images=[image])
    root = dom(page)
    counts = page_error_counts(root)
    assert counts["region_other"] == 1 and counts["extra_region"] == 1 and sum(counts.values()) == 2
    s = compute_smner(preds, refs)
    assert_scores_are_the_metrics(root, {"riveg-hf": s})
    assert "mask on another entity" in root.text_content() and "SMNER" in root.text_content()
    thumb = np.asarray(Image.open(tmp_path / "r" / "img" / "t0.jpg").convert("RGB")).astype(int)
    assert thumb.shape[:2] == (h, w)
    inside, outside = thumb[20, 16], thumb[44, 32]  # in Ann's masks (gold and predicted), and in no mask
    assert abs(outside - 128).max() < 12 and abs(inside - outside).max() > 25  # the translucent overlay
    with pytest.raises(ValueError, match="SMNER masks have only the riveg-hf protocol"):
        write_report(preds, refs, tmp_path / "r2", protocols=("riveg-hf", "riveg"))


def _random_case(rng: random.Random, n: int, image_size=(64, 48)):
    """n synthetic tweets: repeated spans, duplicated predictions, shifted spans and boxes, every type."""
    types = ["PER", "LOC", "ORG", "OTHER"]
    w, h = image_size
    preds, refs, tokens = {}, {}, {}
    for k in range(n):
        key = f"tw{k}"
        n_tok = rng.randint(3, 14)
        tokens[key] = [f"w{k}_{i}" for i in range(n_tok)]
        golds, cur = [], 0
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4, 5])):
            if cur >= n_tok:
                break
            s = rng.randint(cur, n_tok - 1)
            e = min(n_tok, s + rng.randint(1, 2))
            cur = e
            boxes = []
            if rng.random() < 0.6:
                x0, y0 = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
                boxes = [[x0, y0, rng.uniform(x0 + 4, w), rng.uniform(y0 + 4, h)]]
            words = " ".join(tokens[key][s:e])
            golds.append({"start": s, "end": e, "type": rng.choice(types), "boxes": boxes, "text": words})
            if rng.random() < 0.05:  # the same span twice in gold
                golds.append(dict(golds[-1]))
        out = []
        for gold in golds:
            r = rng.random()
            if r < 0.12:
                continue
            s, e = gold["start"], gold["end"]
            if r < 0.2:
                e = min(n_tok, e + 1)
            t = gold["type"] if rng.random() < 0.85 else rng.choice(types)
            box = None
            if gold["boxes"] and rng.random() < 0.85:
                b = gold["boxes"][0]
                d = rng.choice([0, 1, 2, 8, 20])
                box = [max(0.0, b[0] - d), max(0.0, b[1] - d), min(w, b[2] + d), min(h, b[3] + d)]
            elif not gold["boxes"] and rng.random() < 0.1:
                box = [0, 0, 10, 10]
            words = " ".join(tokens[key][s:e])
            out.append({"start": s, "end": e, "type": t, "box": box, "score": rng.random(), "entity": words})
            if rng.random() < 0.04:
                out.append(dict(out[-1]))
        if rng.random() < 0.2:
            s = rng.randrange(n_tok)
            out.append(
                {"start": s, "end": s + 1, "type": rng.choice(types), "box": None, "entity": tokens[key][s]}
            )
        preds[key], refs[key] = out, golds
    return preds, refs, tokens


def test_the_matching_is_the_metrics_on_random_inputs():
    rng = random.Random(7)
    for _ in range(20):
        preds, refs, _ = _random_case(rng, 60)
        a = match_entities(preds, refs)
        s = compute_gmner(preds, refs)
        for metric in ("mner", "eeg", "gmner"):
            assert a.correct[metric] == round(s[f"{metric}_precision"] * s["n_predictions"]), metric
        fp = sum(1 for ex in a.examples for q in ex.preds if q.error)
        assert fp == s["n_predictions"] - a.correct["gmner"]
        assert sum(1 for ex in a.examples for q in ex.preds if q.error is None) == a.correct["gmner"]
        assert a.counts["missed"] <= s["n_references"] - a.correct["gmner"]
        assert a.region_evaluated == s["diagnostics"]["grounding_evaluated"]


def test_a_1500_tweet_report_builds(tmp_path):
    preds, refs, tokens = _random_case(random.Random(1500), 1500)
    read = []

    def image(key):
        read.append(key)
        return make_image((64, 48), color=(90, 120, 160))

    t0 = time.perf_counter()
    page = write_report(preds, refs, tmp_path / "r", texts=tokens, images=image, protocols="all")
    took = time.perf_counter() - t0
    print(f"\n1,500-tweet report: {took:.2f} s, {page.stat().st_size / 1e6:.2f} MB of HTML")
    root = dom(page)
    size = int(root.all(data_gallery_size=True)[0].attrs["data-gallery-size"])
    assert size == 200 == len(read) == len(root.all(data_errors=True))  # images read for the gallery only
    assert "capped at 200" in root.text_content()
    assert len(list((tmp_path / "r" / "img").iterdir())) == 200
    errors = [int(c.attrs["data-errors"]) for c in root.all(data_errors=True)]
    assert errors == sorted(errors, reverse=True)
    a = match_entities(preds, refs)
    assert page_error_counts(root) == a.counts
    assert int(root.all(data_count_name="n_examples")[0].attrs["data-count"]) == 1500


def test_the_folder_is_replaced_atomically_and_a_foreign_folder_is_refused(tmp_path):
    preds, refs, tokens = constructed()
    out = tmp_path / "report"
    write_report(preds, refs, out, texts=tokens, images=constructed_images(tmp_path / "i"))
    (out / "stale.txt").write_text("from an earlier report")
    write_report(preds, refs, out, texts=tokens)
    assert not (out / "stale.txt").exists() and not (out / "img").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i", "report"]  # no temporary folder left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="does not hold a riveg-hf report"):
        write_report(preds, refs, foreign, texts=tokens)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i", "mine", "report"]


def test_riveg_evaluate_report_end_to_end(tmp_path, capsys):
    from datasets_scripts import twitter_gmner
    from riveg_hf.cli import main as cli
    from riveg_hf.data import load_built_dataset

    images = tmp_path / "images"
    images.mkdir()
    exs = [
        {"id": "1", "tokens": ["Messi", "meets", "Neymar", "in", "Paris"],
         "tags": ["B-PER", "O", "B-PER", "O", "B-LOC"],
         "objects": [("Messi", [2, 2, 30, 40]), ("Neymar", [34, 2, 62, 40])], "size": (64, 48)},
        {"id": "2", "tokens": ["NASA", "rocks", SCRIPT], "tags": ["B-ORG", "O", "O"], "objects": [],
         "size": (64, 48)},
        {"id": "3", "tokens": ["Tokyo", "tonight"], "tags": ["B-LOC", "O"], "objects": [("Tokyo", [0, 0, 64, 48])],
         "size": (64, 48)},
    ]  # fmt: skip
    for ex in exs:
        make_image((64, 48), box=ex["objects"][0][1] if ex["objects"] else None).save(
            images / f"{ex['id']}.jpg"
        )
    raw = write_release(tmp_path / "raw", {"train": exs, "dev": exs, "test": exs})
    twitter_gmner.build(raw, tmp_path / "ds", images=images)
    lines = [
        {"id": "1", "entities": [
            {"entity": "Messi", "type": "PER", "start": 0, "end": 5, "token_start": 0, "token_end": 1,
             "box": {"xmin": 2, "ymin": 2, "xmax": 30, "ymax": 40}, "description": "footballer", "score": 0.9},
            {"entity": "Neymar", "type": "PER", "start": 12, "end": 18, "token_start": 2, "token_end": 3,
             "box": {"xmin": 2, "ymin": 2, "xmax": 30, "ymax": 40}},
            {"entity": "Paris", "type": "ORG", "start": 22, "end": 27, "token_start": 4, "token_end": 5, "box": None}]},
        {"id": "2", "text": "NASA rocks", "error": "image could not be read"},
        {"id": "3", "entities": [
            {"entity": "tonight", "type": "OTHER", "start": 6, "end": 13, "token_start": 1, "token_end": 2,
             "box": None}]},
    ]  # fmt: skip
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "report"
    argv = ["evaluate", "--predictions", str(preds), "--dataset", str(tmp_path / "ds"), "--report", str(out)]
    assert cli([*argv, "--protocol", "all"]) == 0
    assert f"wrote {out / 'index.html'}" in capsys.readouterr().out
    root = dom(out / "index.html")
    test = load_built_dataset(tmp_path / "ds", "gmner", split="test")
    rows = [x.get("entities", []) for x in lines]
    want = {n: compute_gmner(rows, test["entities"], protocol=n) for n in PROTOCOLS}
    assert_scores_are_the_metrics(root, want)
    assert page_error_counts(root) == {**dict.fromkeys(ERROR_CLASSES, 0), "region_other": 1, "type": 1,
                                       "missed": 2, "spurious": 1}  # fmt: skip
    assert "1 input(s) failed" in root.all(data_notice="1")[0].text_content()
    assert sorted(p.name for p in (out / "img").iterdir()) == ["t0.jpg", "t1.jpg", "t2.jpg"]
    assert SCRIPT not in (out / "index.html").read_text(encoding="utf-8")
    # the default: the riveg-hf protocol only; the folder replaced
    assert cli(argv) == 0
    assert set(page_scores(dom(out / "index.html"))) == {"riveg-hf"}
    # a dataset built without images: a report of text and numbers that says so
    twitter_gmner.build(raw, tmp_path / "ds2")
    assert cli([*argv[:4], str(tmp_path / "ds2"), "--report", str(tmp_path / "r2")]) == 0
    notice = dom(tmp_path / "r2" / "index.html").all(data_notice="1")[0].text_content()
    assert notice.startswith("No image could be read for any tweet of the gallery")


# --------------------------------------------------------------------------- the example report and Chromium
def _at(text: str, surface: str, nth: int = 0) -> tuple[int, int]:
    s = -1
    for _ in range(nth + 1):
        s = text.index(surface, s + 1)
    return s, s + len(surface)


# id -> [(surface, type, gold box or None, predicted type or None (no prediction), predicted box, predicted
#         surface (the span predicted; default the gold one), description)]
_EXAMPLE = {
    "astronaut": [
        (
            "Eileen Collins",
            "PER",
            [105, 0, 380, 512],
            "PER",
            [112, 8, 372, 505],
            None,
            "Eileen Collins, American astronaut, first woman to command a Space Shuttle.",
        ),
        ("NASA", "ORG", None, "ORG", [128, 340, 218, 430], None, "NASA, the United States space agency."),
        (
            "Space Shuttle Columbia",
            "OTHER",
            [355, 0, 480, 290],
            "OTHER",
            [112, 8, 372, 505],
            None,
            "Space Shuttle Columbia, NASA's first space-rated orbiter.",
        ),
    ],
    "rocket": [
        ("SpaceX", "ORG", None, "ORG", None, None, "SpaceX, an American spacecraft manufacturer."),
        (
            "Falcon 9",
            "OTHER",
            [295, 120, 352, 415],
            "OTHER",
            [230, 330, 430, 427],
            None,
            "Falcon 9, a reusable two-stage rocket.",
        ),
        ("Cape Canaveral", "LOC", None, "LOC", None, None, "Cape Canaveral, a cape in Florida."),
    ],
    "coffee": [
        ("Blue Bottle Coffee", "ORG", None, "LOC", None, None, "Blue Bottle Coffee, a coffee roaster."),
        ("San Francisco", "LOC", None, "LOC", None, None, "San Francisco, a city in California."),
    ],
    "chelsea": [
        ("Chelsea", "OTHER", [60, 0, 400, 300], "OTHER", [70, 6, 392, 296], None, "Chelsea, a cat."),
        ("CatsOfTwitter", "ORG", None, None, None, None, None),
    ],
    "motorcycle": [
        ("Oregon", "LOC", None, "LOC", None, None, "Oregon, a state of the United States."),
        ("Ducati", "ORG", [80, 110, 690, 455], "ORG", None, None, "Ducati, an Italian motorcycle maker."),
        ("DucatiUSA", "ORG", None, "ORG", None, None, "Ducati North America."),
    ],
    "hubble": [
        ("Hubble Space Telescope", "OTHER", None, "OTHER", None, "Hubble", "Hubble, an astronomer."),
        (
            "Hubble Deep Field",
            "OTHER",
            [0, 0, 1000, 872],
            "OTHER",
            [0, 0, 1000, 860],
            None,
            "The Hubble Deep Field, an image of a small region of space.",
        ),
    ],
    "no-image": [
        ("Barack Obama", "PER", None, "PER", None, None, "Barack Obama, 44th US president."),
        ("Angela Merkel", "PER", None, "PER", None, None, "Angela Merkel, Chancellor of Germany."),
        ("Berlin", "LOC", None, "LOC", None, None, "Berlin, the capital of Germany."),
        ("NATO", "ORG", None, "OTHER", None, None, "NATO, a military alliance."),
    ],
}
_EXTRA = {"coffee": [("Monday", "OTHER", None, "a day of the week")]}  # spurious predictions


def example_inputs():
    """The example tweets (examples/tweets.jsonl) with scikit-image's photos, hand-written gold and predictions."""
    tweets = [json.loads(line) for line in (REPO / "examples" / "tweets.jsonl").read_text().splitlines()]
    preds, refs, texts, images = {}, {}, {}, {}
    rng = random.Random(0)
    for tw in tweets:
        key, text = tw["id"], tw["text"]
        texts[key] = text
        images[key] = str(skimage_photo(tw["image"])) if tw["image"] else None
        golds, ps = [], []
        for surface, typ, box, ptype, pbox, psurface, desc in _EXAMPLE[key]:
            s, e = _at(text, surface)
            golds.append({"start": s, "end": e, "type": typ, "text": surface, "boxes": [box] if box else []})
            if ptype is not None:
                ps_, pe = _at(text, psurface) if psurface else (s, e)
                ps.append({"entity": text[ps_:pe], "type": ptype, "start": ps_, "end": pe, "box": pbox,
                           "score": round(rng.uniform(0.8, 0.99), 2), "description": desc,
                           "groundable_score": round(rng.uniform(0.6, 0.95) if pbox else rng.uniform(0.05, 0.4), 2),
                           "box_score": round(rng.uniform(0.4, 0.9), 2) if pbox else None})  # fmt: skip
        for surface, typ, pbox, desc in _EXTRA.get(key, []):
            s, e = _at(text, surface)
            ps.append({"entity": surface, "type": typ, "start": s, "end": e, "box": pbox, "description": desc,
                       "score": 0.55})  # fmt: skip
        preds[key], refs[key] = ps, golds
    return preds, refs, texts, images


def example_report(out: Path) -> Path:
    preds, refs, texts, images = example_inputs()
    return write_report(preds, refs, out, texts=texts, images=images, protocols="all",
                        title="riveg-hf evaluation report: the example tweets")  # fmt: skip


@contextmanager
def chromium_page(viewport=(1280, 900)):
    """A headless Chromium page, found as the demo's browser test finds it (skip, or fail under CI=true)."""
    from playwright.sync_api import sync_playwright  # a dev dependency

    with sync_playwright() as p:
        exe = next(
            (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
            None,
        )
        if exe is None and os.path.exists(p.chromium.executable_path):
            exe = p.chromium.executable_path  # `playwright install chromium`
        if exe is None:
            skip_or_fail(
                "no Chromium for the browser test: install Debian's chromium (tests/run.sh does under CI=true) "
                "or run `playwright install chromium`"
            )
        browser = p.chromium.launch(
            executable_path=exe,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            problems: list[str] = []
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.on(
                "request",
                lambda r: problems.append(f"network: {r.url}") if not r.url.startswith("file:") else None,
            )
            yield page, problems
        finally:
            browser.close()


def _check_in_browser(page, problems, index: Path) -> dict:
    page.goto(index.resolve().as_uri(), wait_until="load")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    found = page.evaluate(
        """() => ({
        widths: [...document.images].map(i => i.naturalWidth),
        scripts: document.querySelectorAll('script').length,
        counts: Object.fromEntries([...document.querySelectorAll('tr[data-error-class]')].map(
            tr => [tr.dataset.errorClass, +tr.querySelector('[data-count]').dataset.count])),
        scores: [...document.querySelectorAll('td[data-protocol][data-metric]')].map(
            td => [td.dataset.protocol, td.dataset.metric, +td.dataset.value]),
        cards: document.querySelectorAll('article.card').length,
        figures: document.querySelectorAll('.fig').length,
        text: document.body.innerText,
    })"""
    )
    assert problems == []
    assert found["scripts"] == 0
    assert found["widths"] and all(w > 0 for w in found["widths"])  # every gallery image loads
    assert len(found["widths"]) == found["figures"]
    return found


def test_the_page_in_headless_chromium(tmp_path):
    preds, refs, tokens = constructed()
    index = write_report(preds, refs, tmp_path / "r", texts=tokens, images=constructed_images(tmp_path / "i"),
                         protocols="all")  # fmt: skip
    sm_preds, sm_refs, sm_tokens, h, w = smner_case()
    sm_index = write_report(
        sm_preds, sm_refs, tmp_path / "sm", texts=sm_tokens, images=[Image.new("RGB", (w, h))]
    )
    ex_index = example_report(tmp_path / "ex")
    with chromium_page() as (page, problems):
        found = _check_in_browser(page, problems, index)
        assert found["counts"] == EXPECTED
        want = {"riveg-hf": compute_gmner(preds, refs), **{n: compute_gmner(preds, refs, protocol=n)
                                                          for n in PROTOCOLS if n != "riveg-hf"}}  # fmt: skip
        for protocol, metric, value in found["scores"]:
            assert value == want[protocol][metric], (protocol, metric)
        assert found["cards"] == 4 and found["figures"] == 3  # one tweet's image is missing, and says so
        assert SCRIPT in found["text"] and "image not available for this tweet" in found["text"]
        found = _check_in_browser(page, problems, sm_index)
        assert found["counts"]["region_other"] == 1 and found["figures"] == 1
        found = _check_in_browser(page, problems, ex_index)
        assert found["figures"] == 6 and "image not available for this tweet" in found["text"]
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def screenshot(out_png: Path, width: int = 1240, cards: int = 2) -> None:
    """The README's picture: the example report from its title to the end of its first ``cards`` gallery cards."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        index = example_report(Path(tmp) / "report")
        full = Path(tmp) / "full.png"
        with chromium_page(viewport=(width, 900)) as (page, problems):
            _check_in_browser(page, problems, index)
            bottom = page.evaluate(
                f"() => document.querySelectorAll('article.card')[{cards - 1}].getBoundingClientRect().bottom"
                " + window.scrollY + 12"
            )
            page.screenshot(
                path=str(full), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": bottom}
            )
        img = (
            Image.open(full)
            .convert("RGB")
            .quantize(colors=160, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        )
        out_png.parent.mkdir(parents=True, exist_ok=True)
        img.save(out_png, optimize=True)
    print(f"wrote {out_png} ({out_png.stat().st_size / 1e3:.0f} kB, {img.width}x{img.height})")


if __name__ == "__main__":  # python -m tests.test_report docs/report.png
    import sys

    screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png"))
