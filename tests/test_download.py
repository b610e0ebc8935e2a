"""`riveg data download` against a local HTTP server that serves a small archive in GitHub's layout:
progress, resume after a cut connection, checksums recorded then verified, and the chain to `data build`."""

from __future__ import annotations

import http.server
import io
import json
import threading
import zipfile

import pytest

from riveg_hf.cli import main as cli
from riveg_hf.data import load_built_dataset
from riveg_hf.data.download import DownloadError, download_release

from .helpers import write_release

TWEETS = {
    "train": [{"id": "1", "tokens": ["Obama", "in", "Paris"], "tags": ["B-PER", "O", "B-LOC"],
               "objects": [("Obama", [1, 1, 20, 30])], "size": (64, 48)}],
    "dev": [{"id": "2", "tokens": ["Go", "Lakers"], "tags": ["O", "B-ORG"], "objects": None}],
    "test": [{"id": "3", "tokens": ["NASA"], "tags": ["B-ORG"], "objects": None}],
}  # fmt: skip


def _github_zip(tmp_path) -> bytes:
    """NUSTM/GMNER's layout: <repo>-<ref>/Twitter10000/{txt,xml}/..., plus code we must not extract."""
    raw = write_release(tmp_path / "rel", TWEETS)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(raw.rglob("*")):
            if p.is_file():
                zf.write(p, f"GMNER-main/Twitter10000/{p.relative_to(raw).as_posix()}")
        zf.writestr("GMNER-main/README.md", "code and data")
        zf.writestr("GMNER-main/Twitter10000/../../evil.txt", "zip slip")
        zf.writestr("GMNER-main/Twitter10000/txt/nested/deep.txt", "not a release file")
    return buf.getvalue()


class RangeServer:
    """Serves one archive at /NUSTM/GMNER/zip/main; honours Range; can cut the first response midway."""

    def __init__(self, body: bytes, cut_first: bool):
        self.body, self.cut, self.requests = body, cut_first, []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                srv.requests.append((self.path, self.headers.get("Range")))
                if self.path != "/NUSTM/GMNER/zip/main":
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(srv.body) - 1}/{len(srv.body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(srv.body) - start))
                self.end_headers()
                if srv.cut:
                    srv.cut = False
                    self.wfile.write(srv.body[start : start + len(srv.body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(srv.body[start:])

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # the deliberately cut connection
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = RangeServer(_github_zip(tmp_path), cut_first=True)
    monkeypatch.setenv("RIVEG_DATA_MIRROR", srv.url)
    yield srv
    srv.close()


def test_download_resumes_verifies_and_feeds_data_build(server, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    monkeypatch.setenv("RIVEG_DATA", str(data))
    # 1. the connection is cut halfway: a clear error, the partial file kept
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        download_release("twitter-gmner", progress=False)
    part = data / ".downloads" / "twitter-gmner-main.zip.part"
    assert 0 < part.stat().st_size < len(server.body)
    # 2. the same command resumes with a range request and extracts only the release's files
    assert cli(["data", "download", "twitter-gmner"]) == 0
    assert server.requests == [
        ("/NUSTM/GMNER/zip/main", None),
        ("/NUSTM/GMNER/zip/main", f"bytes={len(server.body) // 2}-"),
    ]
    assert not part.exists()
    release = data / "twitter-gmner" / "v2.0"
    assert sorted(p.name for p in (release / "txt").iterdir()) == ["dev.txt", "test.txt", "train.txt"]
    assert (release / "xml" / "1.xml").is_file()
    assert not list(data.rglob("evil.txt")) and not (release / "txt" / "nested").exists()
    manifest = json.loads((data / ".downloads" / "twitter-gmner.json").read_text())
    assert set(manifest["files"]) == {"twitter-gmner/v2.0/txt/train.txt", "twitter-gmner/v2.0/txt/dev.txt",
                                      "twitter-gmner/v2.0/txt/test.txt", "twitter-gmner/v2.0/xml/1.xml"}  # fmt: skip
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
    # 5. a tampered file is repaired from the kept archive, whose checksum still matches
    (release / "txt" / "test.txt").write_text("IMGID:9\nevil\tB-PER\n")
    download_release("twitter-gmner", progress=False)
    assert "NASA" in (release / "txt" / "test.txt").read_text()
    # 6. an archive that changed since the first download is refused until --force
    archive = data / ".downloads" / "twitter-gmner-main.zip"
    (release / "txt" / "test.txt").write_text("tampered")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("GMNER-main/Twitter10000/txt/extra.txt", "new upstream file")
    with pytest.raises(DownloadError, match="differs from the one recorded"):
        download_release("twitter-gmner", progress=False)


def test_build_without_raw_and_without_a_download_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RIVEG_DATA", str(tmp_path / "empty"))
    assert cli(["data", "build", "twitter-gmner", "--out", str(tmp_path / "o")]) == 2
    assert "riveg data download twitter-gmner" in capsys.readouterr().err
    assert cli(["data", "build", "twitter-gmner", "--raw", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
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
