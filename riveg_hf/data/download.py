"""Getting the public releases: ``riveg data download twitter-gmner | twitter-mner [--dest DIR]``.

* ``twitter-gmner``: Twitter-GMNER from the authors' repository NUSTM/GMNER, pinned to commit ``c567956``:
  v2.0 (the corrected release of 2023-07-28, ``Twitter10000_v2.0/{txt,xml}``) into
  ``<dest>/twitter-gmner/v2.0`` and the original release (``Twitter10000/{txt,xml}``, the text RiVEG's
  published numbers use) into ``<dest>/twitter-gmner/v1``;
* ``twitter-mner``: Twitter-2015 and Twitter-2017 from jefferyYu/UMT (pinned), into ``<dest>/twitter-mner``.

``dest`` defaults to :func:`default_data_dir` (``$RIVEG_DATA``, else ``~/.cache/riveg-hf/data``), the
folder ``riveg data build`` reads when ``--raw`` is not given, laid out like the project's ``shared/data``.

**Integrity.** Every release is pinned to a commit, so its content cannot change under a rerun. The
archive is downloaded with a progress bar into ``<dest>/.downloads/`` and **resumes** where an interrupted
download stopped: a ``Range`` request with ``If-Range`` (the ``ETag`` / ``Last-Modified`` of the first
response), and a ``206`` answer is spliced only when its ``Content-Range`` starts exactly where the part
ends (and its validator is the same); anything else restarts from zero. A zip that does not verify (bad
CRC, encrypted or unknown-method member, truncated) is deleted, so the next run downloads it again. On the
first download the SHA-256 of the archive and of every extracted file is recorded in
``<dest>/.downloads/<name>.json``; later calls verify the files against it and download nothing.
One deadline bounds the whole download (``timeout``, default 30 minutes; each read also has its own
timeout); every failure is one line saying what to do.

**Only the release's files are touched.** Files are extracted into a staging folder, verified, then each
one is moved into place on its own (an atomic rename per file); repairing a damaged file or ``--force``
replaces only the files the release owns (the manifest's list). Anything else in those folders -- an
``images/`` folder beside ``txt/``, notes, ``twitter2015_images/`` -- stays. No path outside the
destination, bounded sizes, stale staging folders of killed runs removed.

Images are not part of these releases: Twitter-GMNER's images come from the authors' Google Drive
link in their README (NUSTM/GMNER), and Twitter-SMNER's mask files from RiVEG's repository
(JinYuanLi0012/RiVEG); point ``riveg data build --images DIR`` / ``--masks DIR`` at them.
``RIVEG_DATA_MIRROR`` replaces ``https://codeload.github.com`` (a mirror, or a local server in tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

from tqdm.auto import tqdm

__all__ = ["SOURCES", "DownloadError", "default_data_dir", "download_release", "release_dir"]

MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB: the releases are a few MiB
MAX_EXTRACTED_BYTES = 1 << 30
MAX_MEMBERS = 100_000
#: one deadline for a whole download (every request, resume and redirect), seconds
DEFAULT_TIMEOUT_S = 1800.0
#: the longest one read may wait for a byte, seconds
READ_TIMEOUT_S = 60.0
MAX_REDIRECTS = 5


class DownloadError(OSError):
    """A download that failed or does not verify; the message says what to do."""


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    ref: str  # the commit the release is pinned to
    members: dict[str, str]  # archive folder (after the top folder) -> destination folder (relative)
    description: str


#: the releases ``riveg data download`` knows: name -> pinned archive, digest and what to unpack where
SOURCES: dict[str, Source] = {
    "twitter-gmner": Source(
        repo="NUSTM/GMNER",
        ref="c5679560682d038e9d7b91f2de145350d21e4cc1",  # 2023-11-28; v2.0 added on 2023-07-28 (30d61ca)
        members={
            "Twitter10000_v2.0/txt/": "twitter-gmner/v2.0/txt/",
            "Twitter10000_v2.0/xml/": "twitter-gmner/v2.0/xml/",
            "Twitter10000/txt/": "twitter-gmner/v1/txt/",
            "Twitter10000/xml/": "twitter-gmner/v1/xml/",
        },
        description="Twitter-GMNER v2.0 and v1 (Yu et al., ACL 2023): txt/ (CoNLL) + xml/ (Pascal-VOC boxes)",
    ),
    "twitter-mner": Source(
        repo="jefferyYu/UMT",
        ref="f2e9574abb8f557b1a364692e0bef059512c31de",
        members={
            "data/twitter2015/": "twitter-mner/twitter2015/",
            "data/twitter2017/": "twitter-mner/twitter2017/",
        },
        description="Twitter-2015 and Twitter-2017 (Zhang et al., AAAI 2018; Yu et al., ACL 2020), CoNLL text",
    ),
}


@dataclass(frozen=True)
class FileSource:
    """A release fetched file by file (its repository's archive is too big: FMNERG's is ~0.9 GB of features)."""

    repo: str
    ref: str  # the commit
    files: dict[str, str]  # path in the repository -> destination (relative to the data folder)
    description: str


FILE_SOURCES: dict[str, FileSource] = {
    "twitter-fmnerg": FileSource(
        repo="NUSTM/FMNERG",
        ref="222d8e5d26674c7a0ddb6f853efecac0ca27aba0",
        files={
            f"Twitter10000v2/txt_fine/{s}.txt": f"twitter-fmnerg/txt_fine/{s}.txt"
            for s in ("train", "dev", "test")
        },
        description="Twitter-FMNERG (Wang et al., ACM MM 2023): txt_fine/ (token, coarse tag, fine tag); its boxes "
        "are Twitter-GMNER v2.0's XML (riveg data download twitter-gmner)",
    ),
}

#: where ``riveg data build <name>`` finds the downloaded release inside the data folder
RELEASE_SUBDIRS = {
    "twitter-fmnerg": "twitter-fmnerg",
    "twitter-gmner": "twitter-gmner/v2.0",
    "twitter-smner": "twitter-gmner/v2.0",
    "twitter-mner": "twitter-mner",
}


def default_data_dir() -> Path:
    """``$RIVEG_DATA``, else ``$XDG_CACHE_HOME/riveg-hf/data`` (``~/.cache/riveg-hf/data``)."""
    from ..paths import cache_path

    return cache_path("RIVEG_DATA", "data")


def release_dir(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a downloaded release (``riveg data build``'s default ``--raw``)."""
    return Path(data_dir or default_data_dir()) / RELEASE_SUBDIRS[dataset]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _url(src: Source) -> str:
    base = os.environ.get("RIVEG_DATA_MIRROR", "https://codeload.github.com").rstrip("/")
    return f"{base}/{src.repo}/zip/{src.ref}"


# ---------------------------------------------------------------------- HTTP
def _open(url: str, headers: dict[str, str], deadline: float):
    """GET ``url`` (following at most MAX_REDIRECTS http(s) redirects) -> (connection, response, watchdog)."""
    from ..net import Watchdog

    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DownloadError(
                f"{url}: only http(s) URLs are downloaded (a redirect to {parts.scheme}: refused)."
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DownloadError(
                f"{url}: the download's deadline passed; run the same command again to resume."
            )
        timeout = min(READ_TIMEOUT_S, remaining)
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        dog = Watchdog(conn, deadline).__enter__()  # the caller exits it (with the connection)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", path, headers={"User-Agent": "riveg-hf", **headers})
            resp = conn.getresponse()
            redirect = resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location")
        except BaseException:
            dog.__exit__()
            conn.close()
            raise
        if not redirect:
            return conn, resp, dog
        url = urljoin(url, resp.getheader("Location"))
        dog.__exit__()
        conn.close()
    raise DownloadError(f"{url}: more than {MAX_REDIRECTS} redirects.")


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


def _fetch(url: str, part: Path, *, progress: bool, deadline: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size when the server can prove it continues
    the same file there (see the module doc). Raises DownloadError with a one-line message."""
    meta_path = part.with_name(part.name + ".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        if not isinstance(meta, dict) or meta.get("url") != url:
            meta = {}
    except (OSError, ValueError):
        meta = {}
    have = part.stat().st_size if part.exists() else 0
    validator = meta.get("etag") or meta.get("last_modified")
    if have and not validator:
        have = 0  # nothing proves the server would continue the same file: start again
    for _attempt in range(2):  # a resume the server cannot honour exactly restarts once from zero
        headers = {"Range": f"bytes={have}-", "If-Range": validator} if have else {}
        try:
            conn, resp, dog = _open(url, headers, deadline)
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"{url}: cannot connect ({err}). Check the network, or set RIVEG_DATA_MIRROR to a mirror of "
                "codeload.github.com; a partial download is kept and resumed next time."
            ) from None
        try:
            status = resp.status
            if status == 416 and have and meta.get("total") == have:
                return  # already complete
            if status not in (200, 206):
                raise DownloadError(f"{url}: HTTP {status} {resp.reason}.")
            etag, modified = resp.getheader("ETag"), resp.getheader("Last-Modified")
            start, total = 0, None
            if status == 206:
                m = _CONTENT_RANGE.match(resp.getheader("Content-Range") or "")
                spliceable = (
                    have
                    and m is not None
                    and int(m.group(1)) == have
                    and (m.group(3) == "*" or meta.get("total") in (None, int(m.group(3))))
                    and _same_file(meta, etag, modified)
                )
                if not spliceable:
                    have, validator = 0, None  # a range we did not ask for, or another file: start again
                    continue
                start = have
                total = int(m.group(3)) if m.group(3) != "*" else None
            else:
                length = resp.getheader("Content-Length")
                total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_ARCHIVE_BYTES:
                raise DownloadError(
                    f"{url}: the archive is {total:,} bytes, above the {MAX_ARCHIVE_BYTES:,} limit."
                )
            if start == 0:  # a fresh file: remember what identifies it, for a later resume
                meta = {"url": url, "etag": etag, "last_modified": modified, "total": total}
                tmp = meta_path.with_name(meta_path.name + ".tmp")
                tmp.write_text(json.dumps(meta), encoding="utf-8")
                os.replace(tmp, meta_path)
            _stream(resp, part, start, total, url, progress)
            if dog.fired.is_set():
                raise DownloadError(
                    f"{url}: the download's deadline passed; run the same command again to resume."
                )
            size = part.stat().st_size
            if total is not None and size != total:
                raise DownloadError(
                    f"{url}: the download stopped at {size:,} of {total:,} bytes; run the same command again "
                    "to resume."
                )
            return
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, DownloadError):
                raise
            if dog.fired.is_set():
                raise DownloadError(
                    f"{url}: the download's deadline passed; run the same command again to resume."
                ) from None
            raise DownloadError(
                f"{url}: the download was interrupted ({type(err).__name__}); run the same command again to "
                "resume."
            ) from None
        finally:
            dog.__exit__()
            conn.close()
    raise DownloadError(
        f"{url}: the server does not resume downloads consistently; delete {part} and run again."
    )


def _same_file(meta: dict[str, Any], etag: str | None, modified: str | None) -> bool:
    """Does a 206 answer belong to the file the part was started from?"""
    if meta.get("etag") and etag:
        return etag == meta["etag"]
    if meta.get("last_modified") and modified:
        return modified == meta["last_modified"]
    return True  # nothing to compare beyond If-Range, which the server honoured with this 206


def _stream(resp, part: Path, start: int, total: int | None, url: str, progress: bool) -> None:
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=part.name, disable=not progress)
    n = start
    try:
        with open(part, "r+b" if start else "wb") as fh:
            fh.seek(start)
            fh.truncate()
            while True:
                chunk = resp.read1(1 << 16)
                if not chunk:
                    break
                fh.write(chunk)
                n += len(chunk)
                bar.update(len(chunk))
                if n > MAX_ARCHIVE_BYTES:
                    raise DownloadError(f"{url}: the archive is above the {MAX_ARCHIVE_BYTES:,} byte limit.")
    finally:
        bar.close()


# ---------------------------------------------------------------------- archive
def _members(zf: zipfile.ZipFile, src: Source) -> list[tuple[zipfile.ZipInfo, str]]:
    """(member, destination path relative to the data folder) for the release's own files only."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DownloadError(f"the archive has {len(infos):,} entries, above the {MAX_MEMBERS:,} limit.")
    out, total = [], 0
    for info in infos:
        if info.is_dir():
            continue
        parts = PurePosixPath(info.filename).parts
        if len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or info.filename.startswith("/"):
            continue
        inner = "/".join(parts[1:])  # drop the archive's top folder (<repo>-<ref>/)
        for prefix, dest in src.members.items():
            if inner.startswith(prefix):
                rest = inner[len(prefix) :]
                if "/" in rest or "\\" in rest or not rest:
                    break  # only the files of that folder, nothing nested
                total += info.file_size
                if total > MAX_EXTRACTED_BYTES:
                    raise DownloadError(f"the archive expands past {MAX_EXTRACTED_BYTES:,} bytes.")
                out.append((info, dest + rest))
                break
    if not out:
        raise DownloadError(
            f"the archive holds none of the expected folders {sorted(src.members)}: is it {src.repo} at {src.ref}?"
        )
    return out


_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError)


def _extract(archive: Path, src: Source, stage: Path, only: set[str] | None) -> dict[str, str]:
    """Extract the release's files (or ``only`` those) into ``stage`` -> {relative path: sha256}.
    A zip that does not verify is deleted (DownloadError: run again)."""
    files: dict[str, str] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            for info, rel in _members(zf, src):
                if only is not None and rel not in only:
                    continue
                if info.flag_bits & 0x1:
                    raise RuntimeError(f"{info.filename} is encrypted")
                target = stage / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as fin, open(target, "wb") as fout:  # zipfile checks each member's CRC
                    shutil.copyfileobj(fin, fout)
                files[rel] = _sha256(target)
    except _ZIP_ERRORS as err:
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{src.repo}: the downloaded archive is corrupt ({type(err).__name__}: {err}); it was deleted, run the "
            "same command again to download it anew."
        ) from None
    return files


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The recorded manifest, or None when it is absent or not one this module wrote (warned)."""
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        m = None
    ok = (
        isinstance(m, dict)
        and isinstance(m.get("files"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in m["files"].items())
        and isinstance(m.get("archive"), str)
        and isinstance(m.get("archive_sha256"), str)
    )
    if not ok:
        print(
            f"{path}: not a readable download manifest; the release is checked again from its archive",
            flush=True,
        )
        return None
    return m


def _safe_rel(dest: Path, rel: str) -> Path:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DownloadError(f"refused manifest path {rel!r}: outside {dest}")
    return dest / Path(*p.parts)


def _remove_stale_stages(downloads: Path) -> None:
    """Staging folders of killed runs (``.extracting-<pid>-*``) are removed."""
    from .folder import _pid_alive

    for cand in downloads.glob(".extracting-*"):
        pid = cand.name[len(".extracting-") :].split("-", 1)[0]
        if cand.is_dir() and (not pid.isdigit() or not _pid_alive(int(pid))):
            shutil.rmtree(cand, ignore_errors=True)


def _install(stage: Path, dest: Path, files: dict[str, str], stale: set[str]) -> None:
    """Move each staged file into place (one atomic rename per file); remove release files no longer in it."""
    for rel in sorted(files):
        target = _safe_rel(dest, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, target)
    for rel in sorted(stale - set(files)):
        _safe_rel(dest, rel).unlink(missing_ok=True)


def _write_manifest(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def download_release(
    name: str,
    dest: str | os.PathLike | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download, verify and install one release (see the module doc); returns the data folder."""
    from .folder import signals_as_exit

    deadline = time.monotonic() + float(timeout)
    root = Path(dest).expanduser() if dest is not None else default_data_dir()
    with signals_as_exit(), _one_download(root / ".downloads" / f".{name}.lock", name, deadline):
        # SIGTERM runs the clean-up of the staging folder too; a second download of the same release into the
        # same folder waits for the first, then finds its files verified
        return _download_release(name, dest, force=force, progress=progress, timeout=timeout)


@contextlib.contextmanager
def _one_download(lock: Path, name: str, deadline: float):
    """An OS lock per release and data folder (released when the process dies, however it dies)."""
    from ..paths import os_lock

    lock.parent.mkdir(parents=True, exist_ok=True)

    def said() -> None:
        print(f"{name}: another download into this folder is running; waiting for it", flush=True)

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(os_lock(lock, wait_until=deadline, on_wait=said))
        except TimeoutError:
            raise DownloadError(
                f"{name}: another download of this release into {lock.parent.parent} is still running; "
                "run the same command again when it has finished"
            ) from None
        yield


def _download_release(name, dest, *, force, progress, timeout) -> Path:
    if name in FILE_SOURCES:
        return _download_files(
            name, FILE_SOURCES[name], dest, force=force, progress=progress, timeout=timeout
        )
    if name not in SOURCES:
        raise ValueError(f"unknown release {name!r}; valid: {sorted([*SOURCES, *FILE_SOURCES])}")
    src = SOURCES[name]
    deadline = time.monotonic() + float(timeout)
    dest = Path(dest).expanduser() if dest is not None else default_data_dir()
    downloads = dest / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    _remove_stale_stages(downloads)
    manifest_path = downloads / f"{name}.json"
    url = _url(src)
    manifest = _read_manifest(manifest_path)
    repair: set[str] | None = None  # None: install everything
    if manifest is not None and not force:
        bad = [rel for rel, digest in manifest["files"].items() if not _verified(dest, rel, digest)]
        if not bad:
            print(f"{name}: {len(manifest['files'])} files already in {dest}, checksums verified", flush=True)
            return dest
        print(f"{name}: {len(bad)} file(s) differ from their recorded checksums (e.g. {bad[0]}); repairing them "
              "(other files in the folder are left alone)", flush=True)  # fmt: skip
        repair = set(bad)
    archive = downloads / f"{name}-{src.ref}.zip"
    if force:
        archive.unlink(missing_ok=True)
    if not archive.is_file():
        part = archive.with_name(archive.name + ".part")
        print(f"{name}: downloading {src.description} from {url}", flush=True)
        _fetch(url, part, progress=progress, deadline=deadline)
        os.replace(part, archive)
        part.with_name(part.name + ".json").unlink(missing_ok=True)
    digest = _sha256(archive)
    stage = Path(tempfile.mkdtemp(prefix=f".extracting-{os.getpid()}-", dir=downloads))
    try:
        files = _extract(archive, src, stage, repair)
        if manifest is not None and not force:
            changed = sorted(rel for rel, d in files.items() if manifest["files"].get(rel) != d)
            if changed or (repair and set(repair) - set(files)):
                archive.unlink(missing_ok=True)
                raise DownloadError(
                    f"{name}: the archive's files differ from the ones recorded on the first download (e.g. "
                    f"{(changed or sorted(repair))[0]}; archive SHA-256 {digest[:12]}..., recorded "
                    f"{manifest['archive_sha256'][:12]}...): the release changed upstream or the file is corrupt. "
                    f"Run again to download it anew, or accept the new release with --force."
                )
            record_files = dict(manifest["files"])
            record_files.update(files)
        else:
            record_files = files
        stale = set(manifest["files"]) if manifest is not None else set()
        _install(stage, dest, files, stale if repair is None else set())
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    record = {"name": name, "url": url, "repo": src.repo, "ref": src.ref, "archive": archive.name,
              "archive_sha256": digest, "files": record_files}  # fmt: skip
    _write_manifest(manifest_path, record)
    print(
        f"{name}: {len(files)} file(s) installed in {dest} (SHA-256 recorded in {manifest_path})", flush=True
    )
    return dest


def _verified(dest: Path, rel: str, digest: str) -> bool:
    try:
        p = _safe_rel(dest, rel)
    except DownloadError:
        return False
    return p.is_file() and _sha256(p) == digest


def _raw_url(src: FileSource, path: str) -> str:
    base = os.environ.get("RIVEG_DATA_RAW_MIRROR", "https://raw.githubusercontent.com").rstrip("/")
    return f"{base}/{src.repo}/{src.ref}/{path}"


def _fmnerg_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole FMNERG text file, or None. Every line is read (an error page after three
    valid lines is not a release): ``IMGID:<id>`` lines, ``token<TAB>coarse tag<TAB>fine tag`` lines with BIO
    tags of FMNERG's type tree, blank lines between tweets."""
    from .fmnerg import COARSE_TYPES, FINE_TYPES

    coarse = {"O"} | {f"{p}-{t}" for p in "BI" for t in COARSE_TYPES}
    fine = {"O"} | {f"{p}-{t}" for p in "BI" for t in FINE_TYPES}
    tweets = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\r\n").lstrip("\ufeff")
            if not line.strip():
                continue
            if line.startswith("IMGID:"):
                tweets += 1
                continue
            cols = line.split("\t")
            if tweets == 0 or len(cols) != 3 or cols[1] not in coarse or cols[2] not in fine:
                return f"line {n} is not IMGID:<id> nor token<TAB>coarse<TAB>fine tags: {line[:60]!r}"
    return None if tweets else "it has no IMGID: line"


def _download_files(name, src: FileSource, dest, *, force, progress, timeout) -> Path:
    """The file-by-file release (see :class:`FileSource`): each file resumable, checksummed on the first download
    and verified after, installed by an atomic rename; the other files of the folder are left alone."""
    deadline = time.monotonic() + float(timeout)
    dest = Path(dest).expanduser() if dest is not None else default_data_dir()
    downloads = dest / ".downloads"
    cache = downloads / f"{name}-{src.ref}"
    cache.mkdir(parents=True, exist_ok=True)
    manifest_path = downloads / f"{name}.json"
    manifest = _read_manifest(manifest_path)
    if manifest is not None and not force:
        bad = [rel for rel, d in manifest["files"].items() if not _verified(dest, rel, d)]
        if not bad:
            print(f"{name}: {len(manifest['files'])} files already in {dest}, checksums verified", flush=True)
            return dest
    files: dict[str, str] = {}
    for remote, rel in src.files.items():
        cached = cache / Path(remote).name
        if force:
            cached.unlink(missing_ok=True)
        if not cached.is_file():
            part = cached.with_name(cached.name + ".part")
            url = _raw_url(src, remote)
            print(f"{name}: downloading {remote} from {url}", flush=True)
            _fetch(url, part, progress=progress, deadline=deadline)
            os.replace(part, cached)
            part.with_name(part.name + ".json").unlink(missing_ok=True)
        problem = _fmnerg_problem(cached)
        if problem:
            cached.unlink(missing_ok=True)
            raise DownloadError(
                f"{name}: {remote} is not a FMNERG text file (IMGID: lines, then token<TAB>coarse<TAB>fine): "
                f"{problem}; it was deleted, run the same command again."
            )
        digest = _sha256(cached)
        if manifest is not None and not force and manifest["files"].get(rel) not in (None, digest):
            cached.unlink(missing_ok=True)
            raise DownloadError(
                f"{name}: {remote} differs from the file recorded on the first download: the release changed "
                "upstream or the file is corrupt. Run again to download it anew, or accept it with --force."
            )
        files[rel] = digest
    # a file of the folder that is neither the release's nor what was installed before is somebody's edit:
    # nothing is replaced (all files checked before the first is installed)
    for rel, digest in files.items():
        target = _safe_rel(dest, rel)
        recorded = manifest["files"].get(rel) if manifest is not None else None
        if not force and target.is_file() and _sha256(target) not in (digest, recorded):
            raise DownloadError(
                f"{name}: {target} is not the file "
                + ("installed before (edited since?)" if recorded else "of the release (a file of yours?)")
                + "; nothing was replaced. Move it aside to keep it, or pass --force to replace it."
            )
    for remote, rel in src.files.items():
        target = _safe_rel(dest, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copyfile(cache / Path(remote).name, tmp)
        os.replace(tmp, target)
    _write_manifest(manifest_path, {"name": name, "repo": src.repo, "ref": src.ref, "archive": cache.name,
                                    "archive_sha256": "", "files": files})  # fmt: skip
    print(
        f"{name}: {len(files)} file(s) installed in {dest} (SHA-256 recorded in {manifest_path})", flush=True
    )
    return dest
