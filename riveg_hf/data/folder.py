"""Write a dataset as a Hub-style folder: parquet shards + a README dataset card whose YAML
lists the ``configs`` and ``dataset_info``. The folder loads with ``load_dataset(folder, config)``
offline and can be pushed with :func:`push_dataset_folder`.

Since ``datasets`` 4.0 dataset scripts are gone; this is the convention that replaces them.
Builder code is never written into the folder (``load_dataset`` refuses a folder that holds
``<folder-name>.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets as hf_tqdm
from datasets import Dataset, DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

__all__ = ["ConfigSpec", "push_dataset_folder", "write_dataset_folder"]

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


def write_dataset_folder(
    out: str | os.PathLike,
    configs: list[ConfigSpec],
    *,
    card_body: str,
    card_data: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, dict[str, int]]:
    """Write ``configs`` under ``out/<config>/<split>-XXXXX-of-YYYYY.parquet`` and ``out/README.md``.

    Returns ``{config: {split: num_examples}}``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (CLI: --overwrite).")
        for c in configs:
            shutil.rmtree(out / c.name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    py_name = out / f"{out.name}.py"
    if py_name.exists():
        raise FileExistsError(
            f"{py_name} would make load_dataset refuse the folder (dataset scripts are gone)."
        )

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
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["README.md", "*/*.parquet"],
    )
