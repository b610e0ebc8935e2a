"""The house: one base class per role, one module per family behind a registry, no import cycle (the families'
conformance tests, generated from the registries, are tests/test_families.py)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from riveg_hf.stages.grounder import FAMILY_MODULES, family_class
from riveg_hf.testing import TINY_LOCATORS

from .helpers import REPO


# ---------------------------------------------------------------------- import graph
def _import_graph(root: Path) -> dict[str, set[str]]:
    """Every import of the library and the CLI (module level or inside functions), as module -> modules."""
    mods: dict[str, tuple[Path, bool]] = {}
    for pkg in ("riveg_hf", "riveg_cli"):
        for p in (root / pkg).rglob("*.py"):
            parts = list(p.relative_to(root).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1] if node.level else []
                mod = ".".join([*base, node.module] if node.module else base) if node.level else node.module
                targets = [mod, *(f"{mod}.{a.name}" for a in node.names)]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # a module may read its own package
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_and_the_library_never_imports_the_cli():
    graph = _import_graph(REPO)
    assert _cycles(graph) == []
    up = sorted(m for m, deps in graph.items() if m.startswith("riveg_hf.") and m != "riveg_hf.cli"
                and any(d.startswith("riveg_cli") for d in deps))  # fmt: skip
    assert up == []  # riveg_hf.cli is only the `python -m riveg_hf.cli` entry point
    # training never depends on publishing (cards are a leaf both use)
    assert not any(
        d == "riveg_hf.hub" for m, deps in graph.items() if m.startswith("riveg_hf.training") for d in deps
    )


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# ---------------------------------------------------------------------- registry
def test_every_family_module_registers_and_has_a_tiny_model():
    from riveg_hf.stages import grounder, segmenter

    for name in FAMILY_MODULES:
        assert (REPO / "riveg_hf" / "stages" / "grounders" / f"{name}.py").is_file()
    registered = set(grounder.FAMILIES.model_types())
    # every model type a family serves has a tiny model (TINY_LOCATORS is derived from the families' own)
    assert registered | {"sam3"} == set(TINY_LOCATORS)
    assert {t for f in segmenter.FAMILIES.families() if f.locates for t in f.model_types} == {"sam3"}
    with pytest.raises(TypeError, match="supported:"):
        family_class("not-a-model")
    # the per-family conformance tests are generated from the registries: tests/test_families.py
