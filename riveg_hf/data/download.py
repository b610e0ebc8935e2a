"""Getting the public releases: ``riveg data download twitter-gmner | twitter-mner [--dest DIR]``.

* ``twitter-gmner``: Twitter-GMNER v2.0 (the authors' corrected release of 2023-07-21, ``txt/`` + ``xml/``)
  from the authors' repository NUSTM/GMNER, into ``<dest>/twitter-gmner/v2.0``;
* ``twitter-mner``: Twitter-2015 and Twitter-2017 from jefferyYu/UMT, into ``<dest>/twitter-mner``.

``dest`` defaults to :func:`default_data_dir` (``$RIVEG_DATA``, else ``$XDG_CACHE_HOME/riveg-hf/data``,
i.e. ``~/.cache/riveg-hf/data``), the folder ``riveg data build`` reads when ``--raw`` is not given,
laid out like the project's ``shared/data``. The archive is downloaded with a progress bar into
``<dest>/.downloads/`` and **resumes** where an interrupted download stopped (HTTP range requests).
On the first download the SHA-256 of the archive and of every extracted file is recorded in
``<dest>/.downloads/<name>.json``; later calls verify the files against it and download nothing,
and a changed archive is refused until ``--force``. Files are extracted into a staging folder and
swapped into place, so an interrupted extraction never leaves a half-filled release. Only the
release's own files are taken from the archive (no path outside the destination, bounded sizes).

Images are not part of these releases: Twitter-GMNER's images come from the authors' Google Drive
link in their README (NUSTM/GMNER), and Twitter-SMNER's mask files from RiVEG's repository
(JinYuanLi0012/RiVEG); point ``riveg data build --images DIR`` / ``--masks DIR`` at them.
``RIVEG_DATA_MIRROR`` replaces ``https://codeload.github.com`` (a mirror, or a local server in tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

__all__ = ["SOURCES", "DownloadError", "default_data_dir", "download_release", "release_dir"]

MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB: the releases are a few MiB
MAX_EXTRACTED_BYTES = 1 << 30
MAX_MEMBERS = 100_000


class DownloadError(OSError):
    """A download that failed or does not verify; the message says what to do."""


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    ref: str  # branch, tag or commit
    members: dict[str, str]  # archive folder (after the top folder) -> destination folder (relative)
    description: str


SOURCES: dict[str, Source] = {
    "twitter-gmner": Source(
        repo="NUSTM/GMNER",
        ref="main",
        members={
            "Twitter10000/txt/": "twitter-gmner/v2.0/txt/",
            "Twitter10000/xml/": "twitter-gmner/v2.0/xml/",
        },
        description="Twitter-GMNER v2.0 (Yu et al., ACL 2023): txt/ (CoNLL) + xml/ (Pascal-VOC boxes)",
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

#: where ``riveg data build <name>`` finds the downloaded release inside the data folder
RELEASE_SUBDIRS = {
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


def _fetch(url: str, part: Path, *, progress: bool, timeout: float = 60.0) -> None:
    """Download ``url`` into ``part``, resuming from its current size (HTTP Range)."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "riveg-hf"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # already complete
            return
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}.") from None
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(
            f"{url}: cannot connect ({getattr(err, 'reason', err)}). Check the network, or set RIVEG_DATA_MIRROR "
            "to a mirror of codeload.github.com; a partial download is kept and resumed next time."
        ) from None
    with resp:
        if have and resp.status != 206:  # the server ignored the range: start again
            have = 0
        total = resp.headers.get("Content-Length")
        total = int(total) + have if total and total.isdigit() else None
        if total and total > MAX_ARCHIVE_BYTES:
            raise DownloadError(
                f"{url}: the archive is {total:,} bytes, above the {MAX_ARCHIVE_BYTES:,} limit."
            )
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name, disable=not progress)
        try:
            with open(part, "ab" if have else "wb") as fh:
                while True:
                    try:
                        chunk = resp.read(1 << 16)
                    except OSError as err:
                        raise DownloadError(
                            f"{url}: the download was interrupted ({err}); run the same command again to resume."
                        ) from None
                    if not chunk:
                        break
                    fh.write(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
                    if have > MAX_ARCHIVE_BYTES:
                        raise DownloadError(
                            f"{url}: the archive is above the {MAX_ARCHIVE_BYTES:,} byte limit."
                        )
        finally:
            bar.close()
    if total is not None and have < total:
        raise DownloadError(
            f"{url}: the download stopped at {have:,} of {total:,} bytes; run the same command again to resume."
        )


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


def _verify(dest: Path, files: dict[str, str]) -> list[str]:
    bad = []
    for rel, digest in files.items():
        p = dest / rel
        if not p.is_file() or _sha256(p) != digest:
            bad.append(rel)
    return bad


def download_release(
    name: str, dest: str | os.PathLike | None = None, *, force: bool = False, progress: bool = True
) -> Path:
    """Download, verify and extract one release (see the module doc); returns the data folder."""
    if name not in SOURCES:
        raise ValueError(f"unknown release {name!r}; valid: {sorted(SOURCES)}")
    src = SOURCES[name]
    dest = Path(dest).expanduser() if dest is not None else default_data_dir()
    downloads = dest / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    manifest_path = downloads / f"{name}.json"
    url = _url(src)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    if manifest is not None and not force:
        bad = _verify(dest, manifest["files"])
        if not bad:
            print(f"{name}: {len(manifest['files'])} files already in {dest}, checksums verified", flush=True)
            return dest
        if not (downloads / manifest["archive"]).is_file():
            raise DownloadError(
                f"{name}: {len(bad)} file(s) in {dest} differ from their recorded checksums (e.g. {bad[0]}) and the "
                f"archive is gone; run `riveg data download {name} --dest {dest} --force` to download it again."
            )
    archive = downloads / f"{name}-{src.ref}.zip"
    if force:
        archive.unlink(missing_ok=True)
    if not archive.is_file():
        part = archive.with_name(archive.name + ".part")
        print(f"{name}: downloading {src.description} from {url}", flush=True)
        _fetch(url, part, progress=progress)
        os.replace(part, archive)
    digest = _sha256(archive)
    if manifest is not None and not force and manifest.get("archive_sha256") != digest:
        raise DownloadError(
            f"{name}: the archive's SHA-256 {digest[:12]}... differs from the one recorded on the first download "
            f"({manifest.get('archive_sha256', '?')[:12]}...): the release changed upstream or the file is corrupt. "
            f"Delete {archive} and run again, or accept the new release with --force."
        )
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{name}: the downloaded file is not a zip archive; it was removed, run again."
        ) from None
    files: dict[str, str] = {}
    with zf:
        members = _members(zf, src)
        # extract each destination folder into a staging sibling, then swap it into place
        from .folder import _commit

        tops = sorted({d.rstrip("/").rsplit("/", 1)[0] for d in src.members.values()})
        stages = {}
        try:
            for top in tops:
                (dest / top).parent.mkdir(parents=True, exist_ok=True)
                stages[top] = Path(
                    tempfile.mkdtemp(prefix=f".{Path(top).name}.extracting-", dir=(dest / top).parent)
                )
            for info, rel in members:
                top = next(t for t in tops if rel.startswith(t + "/"))
                target = stages[top] / rel[len(top) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as fin, open(target, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                files[rel] = _sha256(target)
            for top, stage in stages.items():
                _commit(stage, dest / top)
        finally:
            for stage in stages.values():
                shutil.rmtree(stage, ignore_errors=True)
    record = {"name": name, "url": url, "repo": src.repo, "ref": src.ref, "archive": archive.name,
              "archive_sha256": digest, "files": files}  # fmt: skip
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, manifest_path)
    print(f"{name}: {len(files)} files in {dest} (SHA-256 recorded in {manifest_path})", flush=True)
    return dest
