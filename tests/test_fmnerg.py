"""Twitter-FMNERG end to end on a small fixture written here in FMNERG's format (a dozen tweets, the columns
token / coarse tag / fine tag, Twitter-GMNER XML boxes): download from a local server, build both configs,
train a tiny recognizer on the fine types, predict, evaluate at both levels and with FMNERG's protocol."""

from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from riveg_hf.cli import main as cli
from riveg_hf.data import load_built_dataset
from riveg_hf.data.download import FILE_SOURCES, download_release
from riveg_hf.data.fmnerg import COARSE_TYPES, FINE_TO_COARSE, FINE_TYPES

from .helpers import make_image, voc_xml

SRC = FILE_SOURCES["twitter-fmnerg"]
# (id, [(token, fine type or None)], [(xml name, box)])
TWEETS = [
    (
        "1001",
        [("Messi", "athlete"), ("scores", None), ("in", None), ("Miami", "city")],
        [("Messi", [2, 2, 30, 40])],
    ),
    ("1002", [("Obama", "politician"), ("visits", None), ("Paris", "city")], [("Obama", [5, 5, 40, 44])]),
    ("1003", [("NASA", "government_agency"), ("launches", None), ("Artemis", "product_other")], []),
    (
        "1004",
        [("Taylor", "musician"), ("Swift", "musician"), ("sings", None)],
        [("Taylor Swift", [1, 1, 60, 47])],
    ),
    ("1005", [("Lakers", "sports_team"), ("win", None), ("again", None)], [("Lakers", [10, 10, 50, 40])]),
    ("1006", [("Visit", None), ("Yosemite", "park"), ("today", None)], [("Yosemite", [0, 0, 64, 30])]),
    ("1007", [("Netflix", "company"), ("drops", None), ("Dune", "film_and_television_works")], []),
    ("1008", [("Messi", "athlete"), ("and", None), ("Messi", "athlete")], [("Messi", [3, 3, 20, 20])]),
    (
        "1009",
        [("Google", "company"), ("Chrome", "software"), ("update", None)],
        [("Chrome", [30, 5, 60, 35])],
    ),
    ("1010", [("Wimbledon", "sports_event"), ("starts", None)], [("Wimbledon", [0, 20, 64, 48])]),
    ("1011", [("Louvre", "cultural_place"), ("reopens", None)], [("Louvre", [4, 4, 60, 44])]),
    ("1012", [("Oscars", "award"), ("tonight", None)], []),
]


def _conll(tweets) -> str:
    lines = []
    for tid, toks, _ in tweets:
        lines.append(f"IMGID:{tid}")
        prev = None
        for tok, fine in toks:
            if fine is None:
                lines.append(f"{tok}\tO\tO")
            else:
                bio = "I-" if prev == fine and tok == "Swift" else "B-"
                lines.append(f"{tok}\t{bio}{FINE_TO_COARSE[fine]}\t{bio}{fine}")
            prev = fine
        lines.append("")
    return "\n".join(lines) + "\n"


class RawServer:
    """raw.githubusercontent.com's layout: /<repo>/<ref>/<path>."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                srv.requests.append(self.path)
                body = srv.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"x"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnerg")
    splits = {"train": TWEETS, "dev": TWEETS[:6], "test": TWEETS[6:]}
    files = {
        f"/{SRC.repo}/{SRC.ref}/Twitter10000v2/txt_fine/{s}.txt": _conll(t).encode()
        for s, t in splits.items()
    }
    srv = RawServer(files)
    data = root / "data"
    old = os.environ.get("RIVEG_DATA_RAW_MIRROR")
    os.environ["RIVEG_DATA_RAW_MIRROR"] = srv.url
    try:
        download_release("twitter-fmnerg", data, progress=False)
        n = len(srv.requests)
        download_release("twitter-fmnerg", data, progress=False)  # verified, nothing downloaded
        assert len(srv.requests) == n == 3
    finally:
        srv.close()
        if old is None:
            os.environ.pop("RIVEG_DATA_RAW_MIRROR")
        else:
            os.environ["RIVEG_DATA_RAW_MIRROR"] = old
    xml = data / "twitter-gmner" / "v2.0" / "xml"
    xml.mkdir(parents=True)
    images = root / "images"
    images.mkdir()
    for tid, _, objects in TWEETS:
        if objects:
            (xml / f"{tid}.xml").write_text(voc_xml(64, 48, objects))
        make_image((64, 48)).save(images / f"{tid}.jpg")
    return {"data": data, "images": images, "root": root}


def test_download_build_train_predict_evaluate_at_both_levels(release, tmp_path, monkeypatch, capsys):
    data = release["data"]
    monkeypatch.setenv("RIVEG_DATA", str(data))
    assert (data / "twitter-fmnerg" / "txt_fine" / "test.txt").is_file()
    out = tmp_path / "ds"
    assert (
        cli(["data", "build", "twitter-fmnerg", "--out", str(out), "--images", str(release["images"])]) == 0
    )
    fine = load_built_dataset(out, "fine", split="train")
    coarse = load_built_dataset(out, "coarse", split="train")
    assert fine.features["entities"].feature["type"].names == list(FINE_TYPES)
    assert coarse.features["entities"].feature["type"].names == list(COARSE_TYPES)
    messi = fine[0]["entities"][0]
    assert (messi["text"], messi["fine_type"], messi["coarse_type"]) == ("Messi", "athlete", "person")
    assert messi["groundable"] and messi["boxes"] == [[2.0, 2.0, 30.0, 40.0]]
    assert coarse[0]["entities"][0]["type"] == COARSE_TYPES.index("person")
    taylor = fine[3]["entities"][0]
    assert taylor["text"] == "Taylor Swift" and taylor["groundable"]  # two tokens, XML name "Taylor Swift"
    # train a tiny recognizer on the 51 fine types, a few steps
    from riveg_hf.testing import tiny_bert_tokenizer

    base = tmp_path / "bert"
    from transformers import BertConfig, BertModel

    tok = tiny_bert_tokenizer()
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=37, max_position_embeddings=128)).save_pretrained(base)  # fmt: skip
    tok.save_pretrained(base)
    rec = tmp_path / "rec"
    assert cli(["train", "mner", "--dataset", str(out), "--config", "fine", "--base-model", str(base), "--output",
                str(rec), "--max-steps", "3", "--batch-size", "4"]) == 0  # fmt: skip
    cfg = json.loads((rec / "config.json").read_text())
    assert cfg["riveg_entity_types"] == list(FINE_TYPES)
    from riveg_hf import RiVEGPipeline

    comp = tmp_path / "comp"
    RiVEGPipeline.from_components(recognizer=str(rec)).save_pretrained(comp)
    preds = tmp_path / "p.jsonl"
    assert cli(["predict", "--dataset", str(out), "--config", "fine", "--split", "test", "--model", str(comp),
                "--output", str(preds), "--device", "cpu"]) == 0  # fmt: skip
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(lines) == 6 and all(e["type"] in FINE_TYPES for r in lines for e in r.get("entities", []))
    capsys.readouterr()
    for level in ("fine", "coarse"):
        s = tmp_path / f"scores-{level}.json"
        assert cli(["evaluate", "--predictions", str(preds), "--dataset", str(out), "--config", "fine",
                    "--level", level, "--protocol", "fmnerg", "--output", str(s)]) == 0  # fmt: skip
        scores = json.loads(s.read_text())
        assert set(scores["per_type"]) <= set(COARSE_TYPES if level == "coarse" else FINE_TYPES)
        assert "fmnerg" in scores["protocols"]
    assert "| fmnerg |" in capsys.readouterr().out


def test_gold_references_score_one_at_both_levels(release, tmp_path, monkeypatch):
    from riveg_hf.metrics import compute_gmner

    monkeypatch.setenv("RIVEG_DATA", str(release["data"]))
    out = tmp_path / "ds"
    assert cli(["data", "build", "twitter-fmnerg", "--out", str(out), "--configs", "fine"]) == 0
    test = load_built_dataset(out, "fine", split="test")
    names = test.features["entities"].feature["type"].names
    preds = [[{"start": e["start"], "end": e["end"], "type": names[e["type"]], "entity": e["text"],
               "box": e["boxes"][0] if e["boxes"] else None} for e in row] for row in test["entities"]]  # fmt: skip
    for kw in (
        {},
        {"type_map": FINE_TO_COARSE},
        {"protocol": "fmnerg"},
        {"protocol": "fmnerg", "type_map": FINE_TO_COARSE},
    ):
        assert compute_gmner(preds, test["entities"], type_names=names, **kw)["gmner_f1"] == 1.0, kw


def test_a_download_that_is_not_a_fmnerg_file_is_refused(tmp_path, monkeypatch):
    from riveg_hf.data.download import DownloadError

    files = {f"/{SRC.repo}/{SRC.ref}/Twitter10000v2/txt_fine/{s}.txt": b"<html>rate limited</html>"
             for s in ("train", "dev", "test")}  # fmt: skip
    srv = RawServer(files)
    monkeypatch.setenv("RIVEG_DATA_RAW_MIRROR", srv.url)
    try:
        with pytest.raises(DownloadError, match="not a FMNERG text file"):
            download_release("twitter-fmnerg", tmp_path, progress=False)
    finally:
        srv.close()


def test_the_real_files_build_with_the_twitter_gmner_v2_counts():
    """Where the real FMNERG files are under RIVEG_DATA (they are not part of this workplace's shared data).
    Expected counts: FMNERG's tweets are Twitter-GMNER v2.0's (NUSTM/FMNERG README: built on Twitter-GMNER v2), so
    7000 / 1500 / 1500 tweets and 11,779 / 2,450 / 2,543 entities, counted from the v2.0 release files."""
    data = Path(os.environ.get("RIVEG_DATA", "/nonexistent"))
    if not (data / "twitter-fmnerg" / "txt_fine" / "test.txt").is_file():
        pytest.skip(
            "the real Twitter-FMNERG files are not here: riveg data download twitter-fmnerg (needs GitHub)"
        )
    from datasets_scripts import twitter_fmnerg

    res = twitter_fmnerg.build(data / "twitter-fmnerg", Path(os.environ.get("TMPDIR", "/tmp")) / "fmnerg-real",
                               xml=data / "twitter-gmner" / "v2.0" / "xml", overwrite=True)  # fmt: skip
    assert res.counts["fine"] == {"train": 7000, "validation": 1500, "test": 1500}
    assert res.report.counts["entities"] == 11779 + 2450 + 2543
