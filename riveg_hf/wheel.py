"""A wheel of riveg-hf built from the installed package, for checkpoints that must install it without an index.

riveg-hf is not on PyPI. A composite pushed with ``riveg push`` is meant to run on Inference Endpoints as it is,
so the push ships the package itself: ``wheels/riveg_hf-<version>-py3-none-any.whl`` in the repository and a
``requirements.txt`` that installs it from there (``--find-links wheels``, which pip resolves relative to the
requirements file) with the transformers / torch versions it was tested with. riveg-hf is pure Python, so the
wheel is written here directly (a zip with the package files and its ``dist-info``), from an installed copy or
a clone alike; no build tool and no network are needed.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata as metadata
import io
import os
import zipfile
from pathlib import Path

__all__ = ["PACKAGES", "build_wheel", "requirements_lines"]

#: the top-level packages the distribution ships (pyproject.toml, [tool.setuptools.packages.find])
PACKAGES = ("riveg_hf", "riveg_cli", "datasets_scripts", "model_cards")
DIST = "riveg-hf"


def _requires() -> list[str]:
    """Requires-Dist: from pyproject.toml beside a clone (the truth), else from the installed metadata."""
    import riveg_hf

    pyproject = Path(riveg_hf.__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10
            tomllib = None
        if tomllib is not None:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
            reqs = list(project.get("dependencies", []))
            for extra, deps in project.get("optional-dependencies", {}).items():
                reqs += [f'{d}; extra == "{extra}"' for d in deps]
            return reqs
    return list(metadata.distribution(DIST).metadata.get_all("Requires-Dist") or [])


def _files() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        root = Path(importlib.import_module(pkg).__file__).resolve().parent
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
                out.append((f"{pkg}/{p.relative_to(root).as_posix()}", p))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(out_dir: str | os.PathLike) -> Path:
    """Write ``riveg_hf-<version>-py3-none-any.whl`` into ``out_dir`` (written beside, then renamed)."""
    from . import __version__

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"riveg_hf-{__version__}-py3-none-any.whl"
    info = f"riveg_hf-{__version__}.dist-info"
    meta = [
        "Metadata-Version: 2.1",
        f"Name: {DIST}",
        f"Version: {__version__}",
        "Summary: Grounded and Segmented Multimodal NER (GMNER / SMNER) as a Hugging Face task",
        "Requires-Python: >=3.10",
        *(f"Requires-Dist: {r}" for r in _requires()),
    ]
    extras = sorted({r.split('extra == "')[1].rstrip('"') for r in _requires() if 'extra == "' in r})
    meta[5:5] = [f"Provides-Extra: {e}" for e in extras]
    generated = {
        f"{info}/METADATA": ("\n".join(meta) + "\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: riveg-hf\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\nriveg = riveg_cli:main\n",
        f"{info}/top_level.txt": ("\n".join(PACKAGES) + "\n").encode(),
    }
    buf = io.BytesIO()
    record = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, path in _files():
            data = path.read_bytes()
            zf.writestr(arc, data)
            record.append(_record_line(arc, data))
        for arc, data in generated.items():
            zf.writestr(arc, data)
            record.append(_record_line(arc, data))
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    tmp = out_dir / f".{name}.tmp"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out_dir / name)
    return out_dir / name


def requirements_lines(wheel_dir: str = "wheels") -> list[str]:
    """``requirements.txt`` of a pushed checkpoint: riveg-hf from ``wheel_dir`` (relative to the file), with the
    transformers and torch versions it was tested with."""
    from . import __version__

    def base(dist: str) -> str:
        return metadata.version(dist).split("+", 1)[0]

    return [
        "# riveg-hf is shipped with this checkpoint (wheels/); pins: the versions it was tested with",
        f"--find-links {wheel_dir}",
        f"riveg-hf=={__version__}",
        f"transformers=={base('transformers')}",
        f"torch=={base('torch')}",
    ]
