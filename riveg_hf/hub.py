"""Publishing a composite checkpoint: ``riveg push``. ``push_composite`` writes the card
(:mod:`riveg_hf.cards`), ``handler.py`` (Inference Endpoints), ``requirements.txt`` and the riveg-hf wheel it
installs (``wheels/``, :mod:`riveg_hf.wheel`: the package is not on an index, and the requirement can only be met
by that wheel) into the checkpoint folder and uploads it with ``HfApi.upload_folder``.

**Where the token goes.** The upload sends a Hub token (``token=``, else ``HF_TOKEN`` / the stored login) to
``huggingface_hub``'s endpoint, which ``HF_ENDPOINT`` can point anywhere; :func:`hub_endpoint_for_token` refuses
any endpoint that is not ``https://huggingface.co`` or an ``https://*.huggingface.co`` host (default port, no
credentials in the URL), so a token never travels in clear text or to another server.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cards import component_card, composite_card
from .net import HUB_HOST, hub_endpoint_for_token

__all__ = [
    "HANDLER_TEMPLATE",
    "HUB_HOST",
    "component_card",
    "composite_card",
    "hub_endpoint_for_token",
    "prepare_for_push",
    "push_composite",
]

#: the Inference Endpoints ``handler.py`` that :func:`prepare_for_push` (``riveg push``) copies into a composite
HANDLER_TEMPLATE = Path(__file__).resolve().parent / "templates" / "handler.py"


def prepare_for_push(
    folder: str | os.PathLike, repo_id: str, *, results: dict[str, Any] | None = None
) -> Path:
    """Write ``README.md`` (the card), ``handler.py`` and ``requirements.txt`` into a composite folder."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json: save a composite first (pipe.save_pretrained(DIR))."
        )
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if cfg.get("model_type") != "riveg":
        raise ValueError(f"{folder}/config.json has model_type {cfg.get('model_type')!r}; expected 'riveg'.")
    composite_card(folder, repo_id=repo_id, results=results).save(folder / "README.md")
    shutil.copyfile(HANDLER_TEMPLATE, folder / "handler.py")
    from .wheel import build_wheel, requirements_lines

    _remove_shipped_wheels(folder / "wheels")  # one wheel, the one requirements.txt names
    wheel = build_wheel(folder / "wheels")  # riveg-hf is not on an index: the endpoint installs it from here
    (folder / "requirements.txt").write_text(
        "\n".join(requirements_lines(wheel, "wheels")) + "\n", encoding="utf-8"
    )
    return folder


def _remove_shipped_wheels(wheels: Path) -> None:
    for old in wheels.glob("riveg_hf-*.whl") if wheels.is_dir() else ():
        old.unlink()


def push_composite(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    results: dict[str, Any] | None = None,
    commit_message: str = "Upload RiVEG composite checkpoint",
    upload: Callable[..., Any] | None = None,
) -> Any:
    """Prepare a staging copy of ``folder`` (card, handler) and upload it to ``repo_id`` with ``HfApi.upload_folder``.

    Nothing is written into ``folder`` until the upload succeeds; then its card, ``handler.py`` and
    ``requirements.txt`` are copied back, so the local folder matches what was pushed. A failed upload (no
    network, no token) leaves ``folder`` exactly as it was. ``upload`` replaces the upload call (tests).
    """
    import tempfile

    folder = Path(folder)
    if upload is None:
        hub_endpoint_for_token()  # the token's destination, before anything is staged or sent
    with tempfile.TemporaryDirectory(prefix="riveg-push-") as tmp:
        stage = Path(tmp) / folder.name

        def link_or_copy(src, dst):
            try:
                os.link(src, dst)  # no second copy of the weights
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(
            folder,
            stage,
            copy_function=link_or_copy,
            ignore=shutil.ignore_patterns("checkpoint-*", "*.part-*", "__pycache__"),
        )
        for name in _PUSH_FILES:  # fresh files, never written through a hard link into the original
            (stage / name).unlink(missing_ok=True)
        prepare_for_push(stage, repo_id, results=results)
        if upload is None:
            from huggingface_hub import HfApi

            api = HfApi(token=token)  # its endpoint is huggingface_hub's, checked above
            api.create_repo(repo_id, private=private, exist_ok=True)
            upload = api.upload_folder
        info = upload(
            folder_path=str(stage),
            repo_id=repo_id,
            repo_type="model",
            commit_message=commit_message,
            ignore_patterns=["checkpoint-*", "*.part-*", "__pycache__"],
        )
        for name in _PUSH_FILES:
            tmp_file = folder / f".{name}.tmp"
            shutil.copyfile(stage / name, tmp_file)
            os.replace(tmp_file, folder / name)
        _remove_shipped_wheels(folder / "wheels")
        for whl in (stage / "wheels").glob("*.whl"):
            (folder / "wheels").mkdir(exist_ok=True)
            tmp_file = folder / "wheels" / f".{whl.name}.tmp"
            shutil.copyfile(whl, tmp_file)
            os.replace(tmp_file, folder / "wheels" / whl.name)
    return info


_PUSH_FILES = ("README.md", "handler.py", "requirements.txt")
