"""The documentation: README size, links, docstrings of the public names, the API reference, the strict build.

The site is ``docs/`` + ``mkdocs.yml`` (mkdocs-material, mkdocstrings); ``.ci/run`` builds it with ``--strict``.
Rules checked here:

* the README keeps what a newcomer needs first: at most 12,000 characters, and the test command;
* every relative link of the README and of ``docs/**/*.md`` names a file that exists;
* every public name (each ``riveg_hf`` module's ``__all__``) has a docstring (a ``#:`` comment above a constant,
  or a string literal after it, counts: the API reference shows them, see ``docs/_ext/comment_docstrings.py``);
* every public module (one with an ``__all__``) has a ``::: module`` block on an API reference page;
* ``mkdocs build --strict`` passes (skipped only when mkdocs is not installed, and never under ``CI=true``).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PACKAGE = REPO / "riveg_hf"
README_LIMIT = 12_000
#: folders of riveg_hf that are not Python API: evaluate's metric scripts and the endpoint handler template
NOT_API = ("riveg_hf/metrics/modules", "riveg_hf/templates")

_FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"""(?:href|src)=["']([^"']+)["']""")


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code blocks and inline code."""
    text = _CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    return _LINK.findall(text) + _HTML_LINK.findall(text)


def test_readme_fits_a_first_read():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, (
        f"README.md has {len(text)} characters (at most {README_LIMIT}): move reference text into docs/"
    )
    assert "bash tests/run.sh" in text  # CI and newcomers run the README's test command


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a URL (http:, mailto: ...) or an anchor on the same page
        if target.startswith("/"):
            broken.append(f"{target} (absolute: links must be relative)")
            continue
        file = target.split("#", 1)[0].split("?", 1)[0]
        if not (path.parent / file).is_file():
            broken.append(target)
    assert not broken, f"{path.relative_to(REPO)}: links to files that do not exist: {broken}"


def test_readme_links_into_the_docs():
    targets = [t.split("#", 1)[0] for t in _links(README) if not re.match(r"^[a-z]+:|#", t)]
    assert any(t.startswith("docs/") for t in targets), "the README links into docs/"
    assert "docs/index.md" in targets


# ---------------------------------------------------------------------- the public API
def _public_modules() -> list[str]:
    """Every module of riveg_hf with an ``__all__`` (found in the source, nothing imported)."""
    mods = []
    for file in sorted(PACKAGE.rglob("*.py")):
        rel = file.relative_to(REPO)
        if any(str(rel).startswith(p) for p in NOT_API):
            continue
        if any(part.startswith("_") and part != "__init__.py" for part in rel.parts):
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        if not any(
            isinstance(node, ast.Assign | ast.AnnAssign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in _targets(node))
            for node in tree.body
        ):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods.append(".".join(parts))
    return mods


def _targets(node: ast.stmt) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, ast.AnnAssign):
        return [node.target]
    return []


def _module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec is not None and spec.origin else None


def _resolve_from(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if _module_file(module).name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _data_doc(module: str, name: str, depth: int = 0) -> str | None:
    """The documentation written for the constant ``name`` of ``module``: the ``#:`` comment above (or after)
    its assignment, or the string literal after it; followed through ``from X import name``."""
    file = _module_file(module)
    if file is None or depth > 5 or file.suffix != ".py":
        return None
    source = file.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    for i, node in enumerate(tree.body):
        if any(isinstance(t, ast.Name) and t.id == name for t in _targets(node)):
            block, j = [], node.lineno - 2
            while j >= 0 and lines[j].lstrip().startswith("#:"):
                block.append(lines[j].lstrip()[2:].strip())
                j -= 1
            if any(block):
                return " ".join(reversed(block))
            if "#:" in lines[node.lineno - 1]:
                return lines[node.lineno - 1].split("#:", 1)[1].strip() or None
            after = tree.body[i + 1] if i + 1 < len(tree.body) else None
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                return after.value.value if isinstance(after.value.value, str) else None
            return None
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            source_name = next(a.name for a in node.names if (a.asname or a.name) == name)
            return _data_doc(_resolve_from(module, node), source_name, depth + 1)
    return None


def _own_doc(obj) -> str | None:
    """The docstring an object has itself (not one inherited, not the one dataclasses writes)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if doc and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return None  # dataclasses' generated signature, not documentation
        return doc
    return getattr(obj, "__doc__", None)


def _undocumented() -> list[str]:
    missing = []
    for module in _public_modules():
        mod = importlib.import_module(module)
        for name in mod.__all__:
            if name.startswith("_"):
                continue  # __version__ and the like: metadata, not API
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj):
                doc = _own_doc(obj)
            else:
                doc = _data_doc(module, name)
            if not (doc and doc.strip()):
                missing.append(f"{module}.{name}")
    return missing


def test_public_names_have_docstrings():
    missing = _undocumented()
    assert not missing, (
        f"{len(missing)} public names (in an __all__) have no docstring (a class / function docstring, or a `#:` "
        "comment above a constant); the API reference would show them bare:\n  " + "\n  ".join(missing)
    )


def test_every_public_module_is_in_the_api_reference():
    documented = set()
    for page in (DOCS / "reference").glob("*.md"):
        documented |= set(re.findall(r"^:::\s+([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.M))
    public = set(_public_modules())
    assert not public - documented, (
        f"public modules (with an __all__) missing from docs/reference/*.md: {sorted(public - documented)}; "
        "add a `::: module` block to the page of their topic"
    )
    unknown = {
        m for m in documented if importlib.util.find_spec(m.split(".")[0]) is None or _module_file(m) is None
    }
    assert not unknown, f"docs/reference names modules that do not exist: {sorted(unknown)}"


def test_docs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but mkdocs is not installed: tests/run.sh installs the docs extra")
        pytest.skip("mkdocs is not installed (pip install -c tests/constraints.txt -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout[-4000:]}\n{run.stderr[-8000:]}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "pipeline" / "index.html").is_file()
