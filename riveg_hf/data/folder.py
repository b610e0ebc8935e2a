"""Write a dataset as a Hub-style folder: parquet shards + a README dataset card whose YAML
lists the ``configs`` and ``dataset_info``. The folder loads with ``load_dataset(folder, config)``
offline and can be pushed with :func:`push_dataset_folder`.

Since ``datasets`` 4.0 dataset scripts are gone; this is the convention that replaces them.
Builder code is never written into the folder (``load_dataset`` refuses a folder that holds
``<folder-name>.py``).

**Atomic builds.** A build is written into a hidden sibling folder (``.<name>.building-<pid>-*``)
and swapped into place only when complete, with its completion marker
(:data:`BUILD_MARKER`) written last. A build killed at any moment leaves the previous folder
untouched (or no folder); ``--overwrite`` replaces the previous build only once the new one is
complete (one atomic exchange on Linux). :func:`load_built_dataset` -- what ``riveg evaluate``,
``predict`` and ``train`` use -- refuses a local folder without the marker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets as hf_tqdm
from datasets import Dataset, DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

__all__ = [
    "BUILD_MARKER",
    "ConfigSpec",
    "IncompleteDatasetError",
    "check_build_complete",
    "load_built_dataset",
    "push_dataset_folder",
    "write_dataset_folder",
]

#: Written last into a complete build; a local dataset folder without it is refused.
BUILD_MARKER = ".riveg-build-complete.json"


class IncompleteDatasetError(ValueError):
    """A local dataset folder that is not a complete riveg-hf build."""


#: Split names of the raw releases -> Hugging Face split names.
SPLIT_NAMES = {
    "train": "train",
    "dev": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}


@dataclass
class ConfigSpec:
    """One config: its features, and per split an iterable of records (dicts matching ``features``)."""

    name: str
    features: Features
    splits: Mapping[str, Callable[[], Iterable[dict[str, Any]]]]
    description: str = ""
    default: bool = False
    rows_per_shard: int | None = None  # None: one shard per split


@contextmanager
def _quiet_progress():
    """No per-shard progress bar; the caller's own setting is restored afterwards."""
    was_disabled = hf_tqdm.are_progress_bars_disabled()
    hf_tqdm.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            hf_tqdm.enable_progress_bars()


def _write_split(
    rows: Iterable[dict], features: Features, out_dir: Path, split: str, rows_per_shard: int | None
):
    tmp_paths: list[Path] = []
    n_rows = 0
    n_bytes = 0
    buf: list[dict] = []

    def flush():
        nonlocal n_bytes
        if not buf and tmp_paths:
            return
        if buf:
            ds = Dataset.from_list(buf, features=features)
        else:  # an empty split still carries the schema
            ds = Dataset.from_dict({k: [] for k in features}, features=features)
        p = out_dir / f"{split}-tmp-{len(tmp_paths):05d}.parquet"
        with _quiet_progress():
            ds.to_parquet(str(p))
        n_bytes += ds.data.nbytes
        tmp_paths.append(p)
        buf.clear()

    for row in rows:
        buf.append(row)
        n_rows += 1
        if rows_per_shard and len(buf) >= rows_per_shard:
            flush()
    if buf or not tmp_paths:
        flush()
    total = len(tmp_paths)
    for i, p in enumerate(tmp_paths):
        p.rename(out_dir / f"{split}-{i:05d}-of-{total:05d}.parquet")
    return n_rows, n_bytes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_stages(out: Path) -> None:
    """Remove staging folders of ``out`` left by builds whose process is gone (killed builds)."""
    prefix = f".{out.name}.building-"
    if not out.parent.is_dir():
        return
    for cand in out.parent.iterdir():
        if not cand.name.startswith(prefix) or not cand.is_dir():
            continue
        pid = cand.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(cand, ignore_errors=True)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _commit(stage: Path, out: Path) -> None:
    """Put the complete ``stage`` at ``out``; the previous ``out`` survives until this instant."""
    if not out.exists():
        os.rename(stage, out)
        return
    if out.is_dir() and not any(out.iterdir()):
        os.replace(stage, out)  # rename(2) replaces an empty directory atomically
        return
    if _exchange(stage, out):
        shutil.rmtree(stage, ignore_errors=True)  # now holds the previous build
        return
    old = out.with_name(f".{out.name}.previous-{os.getpid()}")
    os.rename(out, old)
    os.rename(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def check_build_complete(location: str | os.PathLike) -> None:
    """Raise :class:`IncompleteDatasetError` for a local folder without the completion marker.

    Hub ids (anything that is not a local folder) are left to ``load_dataset``.
    """
    path = Path(location)
    if not path.is_dir():
        return
    if not (path / BUILD_MARKER).is_file():
        raise IncompleteDatasetError(
            f"{path} is not a complete riveg-hf dataset build: it has no {BUILD_MARKER} marker, so it may hold a "
            "partial split or duplicated rows (an interrupted build, a partial copy, or a build by riveg-hf < 0.2). "
            f"Rebuild it: riveg data build <dataset> --out {path} --overwrite (see docs/guides/datasets.md)."
        )


def load_built_dataset(location: str | os.PathLike, config: str | None = None, **kwargs: Any):
    """``datasets.load_dataset(location, config, **kwargs)`` after :func:`check_build_complete`."""
    from datasets import load_dataset

    check_build_complete(location)
    return load_dataset(str(location), config, **kwargs)


@contextmanager
def signals_as_exit(signals=(signal.SIGTERM, signal.SIGHUP)):
    """While active (main thread only), ``SIGTERM`` / ``SIGHUP`` raise ``SystemExit`` instead of killing the
    process outright, so the ``finally`` blocks that remove a staging folder run (SIGINT already raises
    ``KeyboardInterrupt``). SIGKILL cannot be caught: its leftovers are removed by the next run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    old = {}
    for sig in signals:
        with suppress(ValueError, OSError):  # not allowed here
            old[sig] = signal.signal(sig, _exit)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_stage_dir(prefix: str, parent: Path) -> Path:
    """A fresh hidden staging folder with the permissions a plain ``mkdir`` would give (``mkdtemp`` makes it
    0700, which would stick to the folder once it is renamed into place)."""
    stage = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(stage, 0o777 & ~_umask())
    return stage


def write_dataset_folder(
    out: str | os.PathLike,
    configs: list[ConfigSpec],
    *,
    card_body: str,
    card_data: dict[str, Any] | None = None,
    overwrite: bool = False,
    finalize: Callable[[Path, dict[str, dict[str, int]]], None] | None = None,
) -> dict[str, dict[str, int]]:
    """Write ``configs`` under ``out/<config>/<split>-XXXXX-of-YYYYY.parquet`` and ``out/README.md``.

    Atomic (see the module doc): everything is written into a staging sibling, ``finalize(stage,
    counts)`` may add files (the build report), the marker is written last, then the stage takes
    ``out``'s place. Returns ``{config: {split: num_examples}}``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (CLI: --overwrite).")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_stages(out)
    with signals_as_exit():
        return _write_staged(out, configs, card_body, card_data, finalize)


def _write_staged(out, configs, card_body, card_data, finalize) -> dict[str, dict[str, int]]:
    stage = make_stage_dir(f".{out.name}.building-{os.getpid()}-", out.parent)
    try:
        counts = _write_configs(stage, configs, card_body=card_body, card_data=card_data)
        if finalize is not None:
            finalize(stage, counts)
        marker = {"complete": True, "counts": counts}
        with open(stage / BUILD_MARKER, "w", encoding="utf-8") as fh:
            json.dump(marker, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        _commit(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return counts


def _write_configs(
    out: Path, configs: list[ConfigSpec], *, card_body: str, card_data: dict[str, Any] | None
) -> dict[str, dict[str, int]]:

    infos = DatasetInfosDict()
    metadata = MetadataConfigs()
    counts: dict[str, dict[str, int]] = {}
    for spec in configs:
        cdir = out / spec.name
        cdir.mkdir(parents=True, exist_ok=True)
        split_dict = SplitDict()
        data_files = []
        counts[spec.name] = {}
        for split, make_rows in spec.splits.items():
            hf_split = SPLIT_NAMES.get(split, split)
            n_rows, n_bytes = _write_split(make_rows(), spec.features, cdir, hf_split, spec.rows_per_shard)
            split_dict.add(SplitInfo(name=hf_split, num_bytes=n_bytes, num_examples=n_rows))
            data_files.append({"split": hf_split, "path": f"{spec.name}/{hf_split}-*"})
            counts[spec.name][hf_split] = n_rows
        infos[spec.name] = DatasetInfo(
            description=spec.description or None,
            features=spec.features,
            splits=split_dict,
            config_name=spec.name,
        )
        entry: dict[str, Any] = {"data_files": data_files}
        if spec.default:
            entry["default"] = True
        metadata[spec.name] = entry

    data = DatasetCardData(**(card_data or {}))
    metadata.to_dataset_card_data(data)
    infos.to_dataset_card_data(data)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n{card_body}")
    card.save(out / "README.md")
    return counts


def push_dataset_folder(
    folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None
):
    """Upload a folder written by :func:`write_dataset_folder` to the Hub as a dataset repo.

    This is ``huggingface_hub``'s own upload path (``create_repo`` + ``upload_folder``),
    so the card's ``configs`` make ``load_dataset(repo_id, config)`` work on the Hub too.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "README.md").is_file():
        raise FileNotFoundError(f"{folder} has no README.md: build it first with `riveg data build`.")
    check_build_complete(folder)
    from ..net import hub_endpoint_for_token

    hub_endpoint_for_token()  # the token goes over https to huggingface.co only (ValueError, nothing sent)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["README.md", "*/*.parquet"],
    )
