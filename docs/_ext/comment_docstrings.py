"""A griffe extension for the API reference (mkdocstrings): reads the project's docstrings as they are written.

The docstrings follow the Sphinx habits of the code base; Markdown would mangle some of them, so this extension
rewrites, for the site only (the source is never changed, nothing is fetched or executed):

* ``#:`` comments above (or after) a module constant become its docstring (griffe reads only string literals);
* Sphinx roles (``:class:`~riveg_hf.types.GroundedEntity```) become inline code (``GroundedEntity``);
* a paragraph ending in ``::`` (an RST literal block) ends in ``:``; its indented block stays code;
* doctest lines (``>>>`` and their output) and RST simple tables (``===  ===`` borders) become fenced blocks.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|ref):`(~?)([^`]+)`")
_TABLE_BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")


def _comment_doc(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment of the assignment on 1-based line ``lineno``: the block of ``#:`` lines right above
    it, else a trailing ``#:`` on the line itself."""
    block = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        block.append(lines[i].lstrip()[2:].strip())
        i -= 1
    if block:
        return "\n".join(reversed(block))
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    if "#:" in line:
        return line.split("#:", 1)[1].strip() or None
    return None


def _role(m: re.Match) -> str:
    target = m.group(2).strip()
    if "<" in target and target.endswith(">"):  # :ref:`title <target>`
        target = target.split("<", 1)[0].strip()
    if m.group(1):
        target = target.rsplit(".", 1)[-1]
    return f"``{target}``"


def to_markdown(text: str) -> str:
    """The docstring ``text`` with roles, literal-block markers, doctests and RST tables made Markdown."""
    text = _ROLE.sub(_role, text)
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if not in_fence and stripped.startswith(">>>"):
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        if not in_fence and _TABLE_BORDER.match(line):
            out.append(f"{indent}```text")
            borders = 0
            while i < len(lines) and borders < 3:
                if _TABLE_BORDER.match(lines[i]):
                    borders += 1
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        if not in_fence and line.rstrip().endswith("::") and not stripped.startswith(("#", "-", "*")):
            line = line.rstrip()[:-1]
        out.append(line)
        i += 1
    return "\n".join(out)


class CommentDocstrings(griffe.Extension):
    """Give a constant its ``#:`` comment as docstring, and make every docstring Markdown (see the module)."""

    def on_instance(
        self, *, node: ast.AST | griffe.ObjectNode, obj: griffe.Object, agent: Any, **kwargs: Any
    ) -> None:
        if obj.docstring is None and isinstance(obj, griffe.Attribute) and obj.lineno is not None:
            try:
                lines = obj.lines_collection[obj.filepath]
            except (KeyError, TypeError):
                lines = []
            text = _comment_doc(lines, obj.lineno) if lines else None
            if text:
                obj.docstring = griffe.Docstring(text, lineno=obj.lineno, endlineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
