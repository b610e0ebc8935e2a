"""A wheel of riveg-hf built from the installed package, for checkpoints that must install it without an index.

riveg-hf is not on PyPI. A composite pushed with ``riveg push`` is meant to run on Inference Endpoints as it is,
so the push ships the package itself: ``wheels/riveg_hf-<version>+shipped.<digest>-py3-none-any.whl`` in the
repository and a ``requirements.txt`` that installs exactly that wheel, with the transformers / torch versions it
was tested with. riveg-hf is pure Python, so the wheel is written here directly (a zip with the package files and
its ``dist-info``), from an installed copy or a clone alike; no build tool and no network are needed.

**Only the shipped wheel can satisfy the requirement.** The name ``riveg-hf`` is free on PyPI, so a requirement
``riveg-hf==0.1.0`` next to ``--find-links wheels`` lets pip take anyone's ``riveg_hf-0.1.0-1-py3-none-any.whl``
(a build tag sorts above the shipped file) from the index and run it on every endpoint. The shipped wheel's
version therefore carries a local label derived from its contents (``0.1.0+shipped.<16 hex digits>``) and the
requirement pins it exactly: PyPI refuses uploads with a local version, so no index can offer a candidate, and
``--find-links wheels`` -- the one form pip resolves relative to the requirements file, wherever pip runs from
(the Inference Toolkit runs ``pip install -r /repository/requirements.txt`` from ``/app``) -- is the only place
it is found. Without the ``wheels/`` folder the install fails ("no matching distribution") instead of falling
back to an index. (A ``--hash`` pin is not used: one hashed line turns on pip's hash-checking mode for every
requirement, and then each dependency the endpoint image lacks would need a hash too; and a direct reference
``./wheels/...whl`` resolves against pip's working directory, not the requirements file.)

**Only the package's own files are shipped**: its ``*.py`` modules and the package data pyproject.toml declares
(``[tool.setuptools.package-data]``), as a setuptools build would; never dotfiles or dot-folders (``.env``,
``.git``), never anything else lying in the installed folder (notes, caches, keys), and in a git clone never a
file git ignores.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib
import importlib.metadata as metadata
import io
import os
import subprocess
import zipfile
from pathlib import Path

__all__ = [
    "LOCAL_LABEL",
    "PACKAGES",
    "PACKAGE_DATA",
    "build_wheel",
    "package_files",
    "requirements_lines",
    "wheel_version",
]

#: the top-level packages the distribution ships (pyproject.toml, [tool.setuptools.packages.find])
PACKAGES = ("riveg_hf", "riveg_cli", "datasets_scripts", "model_cards")
#: the data files each package ships besides its ``*.py`` (pyproject.toml, [tool.setuptools.package-data]; read
#: from pyproject.toml when it is beside the package, this copy for an installed one)
PACKAGE_DATA: dict[str, tuple[str, ...]] = {
    "riveg_hf": ("metrics/modules/*/*.py", "metrics/modules/*/*.md", "defaults/*/config.json",
                 "defaults/presets/*/config.json", "defaults/README.md", "templates/*.py"),
    "model_cards": ("*.md",),
}  # fmt: skip
DIST = "riveg-hf"
#: the local version label of a shipped wheel: ``<version>+shipped.<digest of its files>``
LOCAL_LABEL = "shipped"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same files give the same wheel, byte for byte


def _pyproject() -> dict | None:
    import riveg_hf

    pyproject = Path(riveg_hf.__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return None
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))


def _requires() -> list[str]:
    """Requires-Dist: from pyproject.toml beside a clone (the truth), else from the installed metadata."""
    data = _pyproject()
    if data is not None:
        project = data["project"]
        reqs = list(project.get("dependencies", []))
        for extra, deps in project.get("optional-dependencies", {}).items():
            reqs += [f'{d}; extra == "{extra}"' for d in deps]
        return reqs
    return list(metadata.distribution(DIST).metadata.get_all("Requires-Dist") or [])


def _package_data() -> dict[str, tuple[str, ...]]:
    data = _pyproject()
    declared = (data or {}).get("tool", {}).get("setuptools", {}).get("package-data")
    if declared is None:
        return PACKAGE_DATA
    return {pkg: tuple(patterns) for pkg, patterns in declared.items()}


def _matches(rel: str, pattern: str) -> bool:
    """``rel`` (posix, relative to the package) matches a package-data glob: ``*`` never crosses a ``/``."""
    parts, pats = rel.split("/"), pattern.split("/")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, p) for a, p in zip(parts, pats))


def _git_ignored(roots: list[Path]) -> set[Path] | None:
    """The files git ignores under ``roots`` (a clone), or None when they are not in a git work tree."""
    try:
        top = subprocess.run(["git", "-C", str(roots[0]), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
        out = subprocess.run(
            ["git", "-C", top, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--",
             *(str(r) for r in roots)],
            capture_output=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {(Path(top) / p.decode("utf-8", "surrogateescape")).resolve() for p in out.split(b"\0") if p}


def package_files(roots: dict[str, Path] | None = None) -> list[tuple[str, Path]]:
    """``[(name in the wheel, file)]``: each package's ``*.py`` and declared package data, nothing else.

    ``roots`` maps a top-level package to its folder (default: where each of :data:`PACKAGES` is imported
    from). Skipped: anything under a dot-folder or ``__pycache__``, dotfiles, symbolic links that leave the
    package, files that are neither ``*.py`` nor a declared data pattern, and in a git clone the files git
    ignores.
    """
    if roots is None:
        roots = {pkg: Path(importlib.import_module(pkg).__file__).resolve().parent for pkg in PACKAGES}
    data = _package_data()
    ignored = _git_ignored(list(roots.values())) or set()
    out = []
    for pkg, root in roots.items():
        root = Path(root).resolve()
        patterns = data.get(pkg, ())
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for name in sorted(filenames):
                path = Path(dirpath) / name
                rel = path.relative_to(root).as_posix()
                if name.startswith(".") or not (
                    name.endswith(".py") or any(_matches(rel, p) for p in patterns)
                ):
                    continue
                real = path.resolve()
                if not real.is_file() or not real.is_relative_to(root) or real in ignored:
                    continue
                out.append((f"{pkg}/{rel}", path))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _writestr(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def build_wheel(out_dir: str | os.PathLike, *, roots: dict[str, Path] | None = None) -> Path:
    """Write ``riveg_hf-<version>+shipped.<digest>-py3-none-any.whl`` into ``out_dir`` (written beside, then
    renamed) and return its path. ``roots``: as in :func:`package_files`."""
    from . import __version__

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [(arc, path.read_bytes()) for arc, path in package_files(roots)]
    requires = _requires()
    content = hashlib.sha256()
    for arc, data in files:
        content.update(f"{arc}\0{len(data)}\0".encode())
        content.update(data)
    content.update("\n".join(requires).encode())
    sep = "." if "+" in __version__ else "+"
    version = f"{__version__}{sep}{LOCAL_LABEL}.{content.hexdigest()[:16]}"
    name = f"riveg_hf-{version}-py3-none-any.whl"
    info = f"riveg_hf-{version}.dist-info"
    extras = sorted({r.split('extra == "')[1].rstrip('"') for r in requires if 'extra == "' in r})
    meta = [
        "Metadata-Version: 2.1",
        f"Name: {DIST}",
        f"Version: {version}",
        "Summary: Grounded and Segmented Multimodal NER (GMNER / SMNER) as a Hugging Face task",
        "Requires-Python: >=3.10",
        *(f"Provides-Extra: {e}" for e in extras),
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    generated = {
        f"{info}/METADATA": ("\n".join(meta) + "\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: riveg-hf\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\nriveg = riveg_cli:main\n",
        f"{info}/top_level.txt": ("\n".join(PACKAGES) + "\n").encode(),
    }
    buf = io.BytesIO()
    record = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in [*files, *generated.items()]:
            _writestr(zf, arc, data)
            record.append(_record_line(arc, data))
        record.append(f"{info}/RECORD,,")
        _writestr(zf, f"{info}/RECORD", ("\n".join(record) + "\n").encode())
    tmp = out_dir / f".{name}.tmp"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out_dir / name)
    return out_dir / name


def wheel_version(wheel: str | os.PathLike) -> str:
    """The version in a wheel's file name (``riveg_hf-<version>-py3-none-any.whl``)."""
    stem = Path(wheel).name
    prefix, suffix = "riveg_hf-", "-py3-none-any.whl"
    if not (stem.startswith(prefix) and stem.endswith(suffix)):
        raise ValueError(f"{stem!r} is not a riveg-hf wheel (riveg_hf-<version>-py3-none-any.whl)")
    return stem[len(prefix) : -len(suffix)]


def requirements_lines(wheel: str | os.PathLike, wheel_dir: str = "wheels") -> list[str]:
    """``requirements.txt`` of a pushed checkpoint: the shipped ``wheel`` (in ``wheel_dir``, relative to the
    requirements file) pinned to its exact ``+shipped.<digest>`` version, which no index can serve (see the module
    doc), with the transformers and torch versions it was tested with."""
    version = wheel_version(wheel)
    if f"+{LOCAL_LABEL}." not in version and f".{LOCAL_LABEL}." not in version:
        raise ValueError(
            f"{Path(wheel).name}: a shipped wheel's version carries '+{LOCAL_LABEL}.<digest>' (build it with "
            "riveg_hf.wheel.build_wheel); a plain version could be taken from a package index instead."
        )

    def base(dist: str) -> str:
        return metadata.version(dist).split("+", 1)[0]

    return [
        f"# riveg-hf is shipped with this checkpoint: {wheel_dir}/{Path(wheel).name}",
        f"# its local version '+{LOCAL_LABEL}.<digest>' cannot be on PyPI, so pip takes it from {wheel_dir}/ (found "
        "beside this file) or fails; the other pins: the versions it was tested with",
        f"--find-links {wheel_dir}",
        f"{DIST}=={version}",
        f"transformers=={base('transformers')}",
        f"torch=={base('torch')}",
    ]
