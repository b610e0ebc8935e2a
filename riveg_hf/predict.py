"""Batch prediction to JSON lines: files of tweets, whole datasets, several processes, resumable.

``riveg predict`` is a thin wrapper over :func:`predict_to_jsonl`. Each output line is
``{"id", "text", "image"?, "entities": [...]}`` (or ``{"id", "text", "image"?, "error"}`` for an input
that could not be processed); ``image`` is the input's image reference (its path or URL) when it had
one, so ``riveg segment --predictions`` finds the image again. Work is resumable: ids already written to the output are skipped. Under
``accelerate launch`` each process takes its share of the inputs (round-robin by position),
writes ``<output>.part-<rank>-of-<n>``, and the main process merges the parts in input order.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .images import DEFAULT_MAX_IMAGE_PIXELS
from .paths import os_lock

__all__ = ["iter_jsonl_inputs", "load_done_ids", "predict_to_jsonl", "read_jsonl"]


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``[(line number, object)]`` of a JSON-lines file; blank lines are skipped, anything else is an error."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({err}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}.")
            rows.append((lineno, row))
    return rows


def iter_jsonl_inputs(path: str | Path, images_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Read ``{"id"?, "text"|"tokens", "image"?}`` lines; relative image paths resolve against ``images_root``
    (default: the file's folder). Lines without an id get their line number as id."""
    path = Path(path)
    root = Path(images_root) if images_root is not None else path.parent
    rows = []
    for lineno, row in read_jsonl(path):
        row.setdefault("id", str(lineno))
        img = row.get("image")
        if isinstance(img, str) and not img.startswith(("http://", "https://")) and not os.path.isabs(img):
            row["image"] = str(root / img)
        rows.append(row)
    return rows


def load_done_ids(paths: Iterable[str | Path]) -> set[str]:
    """Ids already present in existing output files (a truncated last line is ignored)."""
    done: set[str] = set()
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                try:
                    done.add(str(json.loads(line)["id"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    return done


def _repair_tail(path: Path) -> None:
    """Drop a partial last line left by an interruption, so appended lines stay valid JSON lines."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n")
    path.write_bytes(data[: cut + 1] if cut >= 0 else b"")


def predict_to_jsonl(
    pipe: Any,
    rows: Sequence[Any],
    output: str | Path,
    *,
    ids: Sequence[str] | None = None,
    batch_size: int = 8,
    call_kwargs: dict[str, Any] | None = None,
    on_result: Callable[[Any, dict[str, Any]], None] | None = None,
    progress: bool = True,
    num_workers: int = 0,
) -> dict[str, int]:
    """Run ``pipe`` over ``rows`` and write one JSON line per input to ``output``; resumable, shardable.

    ``rows`` may be a list of input dicts or a ``datasets.Dataset`` (read lazily). ``ids`` defaults to
    each row's ``id``. Returns counts ``{"process", "processes", "total", "done_before", "written", "errors", "unknown"}`` (``unknown``: entities a served
    stage could not judge, its server having given no answer)
    of this process (its index and the number of processes; each writes its share, the main one merges).

    ``num_workers > 0`` reads and decodes the images in that many DataLoader worker processes, a couple
    of inputs ahead of the models; the output (order, content, resume) is byte-identical to
    ``num_workers=0``.
    """
    from .distributed import partial_state

    state = partial_state()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    if ids is None:
        ids = [str(rows[i].get("id", i)) if isinstance(rows[i], dict) else str(i) for i in range(n)]
    else:
        ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError(
            "input ids must be unique to make the output resumable; give every row a distinct 'id'."
        )
    world, rank = state.num_processes, state.process_index
    part = output if world == 1 else output.with_name(f"{output.name}.part-{rank:05d}-of-{world:05d}")
    parts = [output.with_name(f"{output.name}.part-{r:05d}-of-{world:05d}") for r in range(world)]
    # the lock is taken before anything reads or repairs the file another process may be writing
    with _exclusive(part):
        _repair_tail(part)
        done = load_done_ids([output, part] if world > 1 else [output])
        mine = [i for i in range(rank, n, world) if ids[i] not in done]
        counts = {
            "process": rank,
            "processes": world,
            "total": n,
            "done_before": len([i for i in range(rank, n, world)]) - len(mine),
            "written": 0,
            "errors": 0,
            "unknown": 0,
        }
        call_kwargs = dict(call_kwargs or {})

        source = _Inputs(rows, mine, call_kwargs)
        if num_workers > 0 and mine:
            from torch.utils.data import DataLoader

            loader = DataLoader(
                source, batch_size=None, num_workers=num_workers, prefetch_factor=2, collate_fn=_identity
            )
            stream = (x for x in loader)
        else:
            stream = (source[k] for k in range(len(source)))
        results = pipe(stream, batch_size=batch_size, **call_kwargs) if mine else iter(())
        bar = tqdm(
            total=len(mine),
            disable=not progress or not state.is_local_main_process,
            desc="riveg predict",
            unit="tweet",
        )
        with open(part, "a", encoding="utf-8") as fh:
            for i, result in zip(mine, results):
                row = rows[i]
                text = row.get("text") if row.get("text") is not None else " ".join(row.get("tokens") or [])
                line = {"id": ids[i], "text": text}
                ref = _image_ref(row.get("image") if isinstance(row, dict) else None)
                if ref is not None:
                    line["image"] = ref
                if isinstance(result, dict) and "error" in result:
                    line["error"] = result["error"]
                    counts["errors"] += 1
                else:
                    line["entities"] = result
                    counts["unknown"] += sum(_unknown(e) for e in result if isinstance(e, dict))
                fh.write(_json_line(line))
                fh.flush()
                counts["written"] += 1
                if on_result is not None:
                    on_result(row, line)
                bar.update(1)
        bar.close()
    if world > 1:
        state.wait_for_everyone()
        if state.is_main_process:
            _merge(output, parts, ids)
        state.wait_for_everyone()
    return counts


def _json_line(obj: dict[str, Any]) -> str:
    """One JSON line, UTF-8 text where it can be; an input's invalid character (a lone surrogate) is written
    escaped (``\\ud800``, valid JSON) rather than crashing the write."""
    try:
        line = json.dumps(obj, ensure_ascii=False)
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj, ensure_ascii=True)
    return line + "\n"


class OutputLockedError(FileExistsError):
    """Another process is writing the same predictions file."""


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an OS lock on ``path`` itself while writing it: a second ``riveg predict`` on the same output refuses
    instead of writing duplicate lines."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(os_lock(path, mode=0o666))
        except BlockingIOError:
            raise OutputLockedError(
                f"{path} is being written by another process (another riveg predict with the same --output); "
                "wait for it to finish (this one would write the same ids twice) or choose another --output."
            ) from None
        yield


def _unknown(entity: dict[str, Any]) -> bool:
    """An entity a served stage could not judge (its server gave no answer): its visibility or box is unknown,
    not a "no" (the stages' notes say "... server gave no answer (...)")."""
    note = entity.get("grounding")
    return isinstance(note, str) and "server gave no answer" in note


def _identity(x: Any) -> Any:
    return x


class _Inputs:
    """The pipeline inputs of the rows still to do; ``decode`` (in DataLoader workers) loads the image too."""

    def __init__(self, rows: Any, todo: Sequence[int], call_kwargs: dict[str, Any]):
        self.rows, self.todo = rows, list(todo)
        self.image_kwargs = {
            "max_image_pixels": call_kwargs.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS),
            "allow_urls": bool(call_kwargs.get("allow_url_images", False)),
        }

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, k: int) -> dict[str, Any]:
        row = self.rows[self.todo[k]]
        item = {
            key: row[key]
            for key in ("text", "tokens", "image", "knowledge", "caption")
            if key in row and row[key] is not None
        }
        from torch.utils.data import get_worker_info

        if "image" in item and get_worker_info() is not None:  # decode here, in the worker process
            from .images import load_image

            # a bad image is left as it was: the pipeline reports the same error, in its place
            with contextlib.suppress(ValueError, OSError):
                item["image"] = load_image(item["image"], **self.image_kwargs)
        return item


def _image_ref(image: Any) -> str | None:
    """A JSON-safe reference to an input image: its path or URL (None for in-memory images)."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, dict) and isinstance(image.get("path"), str):
        return image["path"]
    return None


def _merge(output: Path, parts: Sequence[Path], ids: Sequence[str]) -> None:
    """Merge the per-process parts (and an existing output) into ``output``, in input order."""
    by_id: dict[str, str] = {}
    for p in [output, *parts]:
        if not p.exists():
            continue
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                try:
                    by_id[str(json.loads(line)["id"])] = line if line.endswith("\n") else line + "\n"
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in ids:
            if i in by_id:
                fh.write(by_id[i])
    os.replace(tmp, output)
    for p in parts:
        p.unlink(missing_ok=True)
