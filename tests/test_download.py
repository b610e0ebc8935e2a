"""`riveg data download` against a local HTTP server that serves a small archive in GitHub's layout:
progress, resume after a cut connection, checksums recorded then verified, the chain to `data build`, and
every way an archive, a resume or a user's folder can go wrong (round 2 of the hardening)."""

from __future__ import annotations

import http.server
import io
import json
import os
import struct
import threading
import time
import zipfile

import pytest

from riveg_hf.cli import main as cli
from riveg_hf.data import load_built_dataset
from riveg_hf.data.download import SOURCES, DownloadError, download_release

from .helpers import write_release

REF = SOURCES["twitter-gmner"].ref
PATH = f"/NUSTM/GMNER/zip/{REF}"
TWEETS = {
    "train": [{"id": "1", "tokens": ["Obama", "in", "Paris"], "tags": ["B-PER", "O", "B-LOC"],
               "objects": [("Obama", [1, 1, 20, 30])], "size": (64, 48)}],
    "dev": [{"id": "2", "tokens": ["Go", "Lakers"], "tags": ["O", "B-ORG"], "objects": None}],
    "test": [{"id": "3", "tokens": ["NASA"], "tags": ["B-ORG"], "objects": None}],
}  # fmt: skip
V1 = {**TWEETS, "test": [{"id": "3", "tokens": ["NASA", "v1"], "tags": ["B-ORG", "O"], "objects": None}]}


def _github_zip(tmp_path, *, test_text: str | None = None) -> bytes:
    """NUSTM/GMNER's layout at the pinned commit: <repo>-<ref>/Twitter10000_v2.0/{txt,xml}/ (v2.0) and
    Twitter10000/{txt,xml}/ (v1), plus code we must not extract."""
    v2 = write_release(tmp_path / "rel-v2", TWEETS)
    v1 = write_release(tmp_path / "rel-v1", V1)
    if test_text is not None:
        (v2 / "txt" / "test.txt").write_text(test_text)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder, raw in (("Twitter10000_v2.0", v2), ("Twitter10000", v1)):
            for p in sorted(raw.rglob("*")):
                if p.is_file():
                    zf.write(p, f"GMNER-{REF}/{folder}/{p.relative_to(raw).as_posix()}")
        zf.writestr(f"GMNER-{REF}/README.md", "code and data")
        zf.writestr(f"GMNER-{REF}/Twitter10000/../../evil.txt", "zip slip")
        zf.writestr(f"GMNER-{REF}/Twitter10000_v2.0/txt/nested/deep.txt", "not a release file")
    return buf.getvalue()


class RangeServer:
    """Serves one archive at PATH with an ETag; honours Range (and If-Range). ``script`` is a list of how the
    next responses misbehave: "cut" (half the body then close), "ignore-range" (200 with the whole body),
    "wrong-offset" (206 from 0), "overlap" (206 from 100 bytes before the asked offset), "changed" (the
    upstream file changed: new body and ETag), "chunked-cut" (chunked body closed midway), "drip"."""

    def __init__(self, body: bytes, script: list[str] | None = None, path: str = PATH):
        self.body, self.script, self.requests, self.path = body, list(script or []), [], path
        self.etag = '"v1"'
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                srv.requests.append((self.path, self.headers.get("Range"), self.headers.get("If-Range")))
                if self.path != srv.path:
                    self.send_error(404)
                    return
                mode = srv.script.pop(0) if srv.script else ""
                if mode == "changed":
                    srv.body, srv.etag = srv.new_body, '"v2"'
                body = srv.body
                start = 0
                rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                honour = rng and rng.startswith("bytes=") and (if_range in (None, srv.etag))
                if mode == "ignore-range":
                    honour = False
                if honour:
                    start = int(rng[6:].split("-")[0])
                    shown = {"wrong-offset": 0, "overlap": max(0, start - 100)}.get(mode, start)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {shown}-{len(body) - 1}/{len(body)}")
                    start = shown
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("ETag", srv.etag)
                if mode == "chunked-cut":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = body[start : start + len(body) // 2]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if mode == "cut":
                    self.wfile.write(body[start : start + len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                if mode == "drip":
                    for b in body[start:]:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(0.2)
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # the deliberately cut connections
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = RangeServer(_github_zip(tmp_path), script=["cut"])
    monkeypatch.setenv("RIVEG_DATA_MIRROR", srv.url)
    monkeypatch.setenv("RIVEG_DATA", str(tmp_path / "data"))
    yield srv
    srv.close()


def _archive(tmp_path):
    return tmp_path / "data" / ".downloads" / f"twitter-gmner-{REF}.zip"


def test_download_resumes_verifies_and_feeds_data_build(server, tmp_path, capsys):
    data = tmp_path / "data"
    # 1. the connection is cut halfway: a clear error, the partial file kept
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        download_release("twitter-gmner", progress=False)
    part = data / ".downloads" / f"twitter-gmner-{REF}.zip.part"
    assert 0 < part.stat().st_size < len(server.body)
    # 2. the same command resumes with a range request (and If-Range) and extracts only the release's files
    assert cli(["data", "download", "twitter-gmner"]) == 0
    assert server.requests == [(PATH, None, None), (PATH, f"bytes={len(server.body) // 2}-", '"v1"')]
    assert not part.exists()
    release = data / "twitter-gmner" / "v2.0"
    assert sorted(p.name for p in (release / "txt").iterdir()) == ["dev.txt", "test.txt", "train.txt"]
    assert (release / "xml" / "1.xml").is_file()
    # v2.0 is the corrected release, v1 the original: each into its own folder
    assert "v1" not in (release / "txt" / "test.txt").read_text()
    assert "v1" in (data / "twitter-gmner" / "v1" / "txt" / "test.txt").read_text()
    assert not list(data.rglob("evil.txt")) and not (release / "txt" / "nested").exists()
    manifest = json.loads((data / ".downloads" / "twitter-gmner.json").read_text())
    assert {f for f in manifest["files"] if "/v2.0/" in f} == {
        "twitter-gmner/v2.0/txt/train.txt", "twitter-gmner/v2.0/txt/dev.txt", "twitter-gmner/v2.0/txt/test.txt",
        "twitter-gmner/v2.0/xml/1.xml"}  # fmt: skip
    # 3. again: verified from the recorded checksums, nothing downloaded
    n = len(server.requests)
    capsys.readouterr()
    assert cli(["data", "download", "twitter-gmner"]) == 0
    assert "checksums verified" in capsys.readouterr().out and len(server.requests) == n
    # 4. `riveg data build` without --raw reads the downloaded release
    out = tmp_path / "ds"
    assert cli(["data", "build", "twitter-gmner", "--out", str(out)]) == 0
    assert load_built_dataset(out, "gmner", split="train")[0]["entities"][0]["boxes"] == [
        [1.0, 1.0, 20.0, 30.0]
    ]
    # 5. a tampered file is repaired from the kept archive, whose files still verify
    (release / "txt" / "test.txt").write_text("IMGID:9\nevil\tB-PER\n")
    download_release("twitter-gmner", progress=False)
    assert "NASA" in (release / "txt" / "test.txt").read_text()


def test_repair_and_force_never_delete_what_the_user_put_in_the_release_folders(server, tmp_path):
    data = tmp_path / "data"
    server.script = []
    download_release("twitter-gmner", progress=False)
    release = data / "twitter-gmner" / "v2.0"
    (release / "images").mkdir()
    (release / "images" / "1.jpg").write_bytes(b"my image")
    (release / "notes.md").write_text("my notes")
    (release / "txt" / "my-split.txt").write_text("mine")
    (release / "txt" / "test.txt").write_text("damaged")
    download_release("twitter-gmner", progress=False)  # repair one file
    download_release("twitter-gmner", progress=False, force=True)  # download and reinstall everything
    assert (release / "images" / "1.jpg").read_bytes() == b"my image"
    assert (release / "notes.md").read_text() == "my notes"
    assert (release / "txt" / "my-split.txt").read_text() == "mine"
    assert "NASA" in (release / "txt" / "test.txt").read_text()


def test_twitter_mner_keeps_a_users_images_folder(tmp_path, monkeypatch):
    buf = io.BytesIO()
    ref = SOURCES["twitter-mner"].ref
    with zipfile.ZipFile(buf, "w") as zf:
        for year in ("2015", "2017"):
            for split in ("train", "valid", "test"):
                zf.writestr(f"UMT-{ref}/data/twitter{year}/{split}.txt", f"IMGID:1\nObama\tB-PER\n\n{split}")
    srv = RangeServer(buf.getvalue(), path=f"/jefferyYu/UMT/zip/{ref}")
    try:
        monkeypatch.setenv("RIVEG_DATA_MIRROR", srv.url)
        download_release("twitter-mner", tmp_path, progress=False)
        imgs = tmp_path / "twitter-mner" / "twitter2015_images"
        imgs.mkdir()
        (imgs / "1.jpg").write_bytes(b"jpg")
        (tmp_path / "twitter-mner" / "twitter2015" / "test.txt").write_text("damaged")
        download_release("twitter-mner", tmp_path, progress=False)
        download_release("twitter-mner", tmp_path, progress=False, force=True)
        assert (imgs / "1.jpg").read_bytes() == b"jpg"
        assert "test" in (tmp_path / "twitter-mner" / "twitter2015" / "test.txt").read_text()
    finally:
        srv.close()


def _corrupt(body: bytes, how: str) -> bytes:
    """A zip whose first member is damaged: its data (bad CRC), its encryption flag, or its method."""
    data = bytearray(body)
    off = data.find(b"PK\x03\x04")
    name_len, extra_len = struct.unpack("<HH", data[off + 26 : off + 30])
    if how == "crc":
        start = off + 30 + name_len + extra_len
        data[start + 2] ^= 0xFF
    elif how == "encrypted":
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            o = data.find(sig)
            flag_at = o + 6 if sig == b"PK\x03\x04" else o + 8
            data[flag_at] |= 0x1
    elif how == "method":
        for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            o = data.find(sig)
            data[o + at : o + at + 2] = struct.pack("<H", 99)
    return bytes(data)


@pytest.mark.parametrize("how", ["crc", "encrypted", "method", "truncated"])
def test_a_corrupt_archive_is_discarded_with_one_line_and_the_next_run_downloads_it_again(
    server, tmp_path, how, capsys
):
    good = server.body
    server.body = _corrupt(good, how) if how != "truncated" else good[: len(good) - 200]
    server.script = []
    assert cli(["data", "download", "twitter-gmner"]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]  # no bars
    assert len(lines) == 1 and lines[0].startswith("riveg data: error:") and "Traceback" not in err
    assert ("corrupt" in err or "stopped at" in err) and not _archive(tmp_path).exists()
    server.body = good
    assert cli(["data", "download", "twitter-gmner"]) == 0


@pytest.mark.parametrize("mode", ["wrong-offset", "overlap", "ignore-range", "changed"])
def test_a_resume_is_spliced_only_when_the_server_continues_the_same_file(
    server, tmp_path, tmp_path_factory, mode
):
    server.new_body = _github_zip(tmp_path_factory.mktemp("new"), test_text="IMGID:3\nNASA\tB-ORG\nnew\tO\n")
    server.script = ["cut", mode]
    with pytest.raises(DownloadError):
        download_release("twitter-gmner", progress=False)
    if mode == "changed":  # the manifest of a first download is not there yet: the new release is taken
        download_release("twitter-gmner", progress=False)
        assert _archive(tmp_path).read_bytes() == server.new_body
    else:
        download_release("twitter-gmner", progress=False)
        assert _archive(tmp_path).read_bytes() == server.body
    assert zipfile.ZipFile(_archive(tmp_path)).testzip() is None


def test_a_chunked_body_cut_short_is_an_interruption_and_resumes(server, tmp_path):
    server.script = ["chunked-cut"]
    with pytest.raises(DownloadError, match="resume"):
        download_release("twitter-gmner", progress=False)
    download_release("twitter-gmner", progress=False)
    assert _archive(tmp_path).read_bytes() == server.body


def test_a_manifest_without_files_is_checked_again_not_a_traceback(server, tmp_path, capsys):
    server.script = []
    download_release("twitter-gmner", progress=False)
    m = tmp_path / "data" / ".downloads" / "twitter-gmner.json"
    for bad in ('{"name": "twitter-gmner"}', "[1, 2]", "{not json", '{"files": {"a": 1}}'):
        m.write_text(bad)
        assert cli(["data", "download", "twitter-gmner"]) == 0
        assert set(json.loads(m.read_text())["files"])


def test_an_upstream_change_after_the_first_download_is_refused_until_force(server, tmp_path):
    server.script = []
    download_release("twitter-gmner", progress=False)
    release = tmp_path / "data" / "twitter-gmner" / "v2.0"
    (release / "txt" / "test.txt").write_text("tampered")
    # the kept archive now holds another test.txt than the one recorded
    _archive(tmp_path).write_bytes(_github_zip(tmp_path / "x", test_text="IMGID:3\nchanged\tO\n"))
    with pytest.raises(DownloadError, match="differ from the ones recorded"):
        download_release("twitter-gmner", progress=False)
    download_release("twitter-gmner", progress=False, force=True)
    assert "NASA" in (release / "txt" / "test.txt").read_text()


def test_stale_staging_folders_of_killed_runs_are_removed(server, tmp_path):
    downloads = tmp_path / "data" / ".downloads"
    stale = downloads / ".extracting-999999999-abc"
    stale.mkdir(parents=True)
    (stale / "big").write_bytes(b"x" * 1000)
    mine = downloads / f".extracting-{os.getpid()}-live"  # a live process's is left alone
    mine.mkdir()
    server.script = []
    download_release("twitter-gmner", progress=False)
    assert not stale.exists() and mine.exists()


def test_one_deadline_for_the_whole_download(server, tmp_path):
    server.script = ["drip"]
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="deadline"):
        download_release("twitter-gmner", progress=False, timeout=1.5)
    assert time.monotonic() - t0 < 4


def test_build_without_raw_and_without_a_download_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RIVEG_DATA", str(tmp_path / "empty"))
    assert cli(["data", "build", "twitter-gmner", "--out", str(tmp_path / "o")]) == 2
    assert "riveg data download twitter-gmner" in capsys.readouterr().err
    assert cli(["data", "build", "twitter-gmner", "--raw", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "txt/train.txt" in err and "xml/<id>.xml" in err and "riveg data download" in err


def test_unreachable_mirror_fails_with_one_clear_line(tmp_path, monkeypatch, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("RIVEG_DATA_MIRROR", f"http://127.0.0.1:{port}")
    assert cli(["data", "download", "twitter-mner", "--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_real_release_in_githubs_layout_installs_v2_and_v1_where_they_belong(
    shared_data, tmp_path, monkeypatch
):
    """The real Twitter-GMNER text and boxes zipped as GitHub serves NUSTM/GMNER at the pinned commit
    (Twitter10000_v2.0/ = v2.0, Twitter10000/ = v1): each lands in its own folder, byte for byte."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder, version in (("Twitter10000_v2.0", "v2.0"), ("Twitter10000", "v1")):
            for split in ("train", "dev", "test"):
                src = shared_data / "twitter-gmner" / version / "txt" / f"{split}.txt"
                zf.write(src, f"GMNER-{REF}/{folder}/txt/{split}.txt")
            for p in sorted((shared_data / "twitter-gmner" / version / "xml").iterdir())[:50]:
                zf.write(p, f"GMNER-{REF}/{folder}/xml/{p.name}")
    srv = RangeServer(buf.getvalue())
    try:
        monkeypatch.setenv("RIVEG_DATA_MIRROR", srv.url)
        download_release("twitter-gmner", tmp_path, progress=False)
    finally:
        srv.close()
    for version in ("v2.0", "v1"):
        for split in ("train", "dev", "test"):
            got = (tmp_path / "twitter-gmner" / version / "txt" / f"{split}.txt").read_bytes()
            assert got == (shared_data / "twitter-gmner" / version / "txt" / f"{split}.txt").read_bytes()
