"""The house: one base class per role, one module per family behind a registry, no import cycle; and every
registered grounder family conforms to the locator protocol (tiny random models): batched equals one by one,
JSON-safe, boxes inside the image, identical after save / reload."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riveg_hf.stages import Grounder, Localization, LocateRequest, Segmenter
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
    from riveg_hf.stages import grounder

    for name in FAMILY_MODULES:
        assert (REPO / "riveg_hf" / "stages" / "grounders" / f"{name}.py").is_file()
    grounder._load_families()
    registered = set(grounder._REGISTRY)
    # every model type a family serves has a tiny model here, except the Grounding DINO / OWL siblings
    assert registered - set(TINY_LOCATORS) <= {"owlvit"}
    with pytest.raises(TypeError, match="supported:"):
        family_class("not-a-model")


def _locator(model_type: str):
    model, proc = TINY_LOCATORS[model_type]()
    if model_type == "sam3":
        seg = Segmenter(model, proc)
        return seg, seg.locator()
    g = Grounder(model, proc)
    assert isinstance(g, family_class(model.config.model_type)) and g.family
    return g, g


def _requests():
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)),
            Image.fromarray((rng.random((40, 72, 3)) * 255).astype(np.uint8)), Image.new("RGB", (64, 48))]  # fmt: skip
    ents = [
        [("Obama", "PER", "a man in a suit"), ("Paris", "LOC", "a city")],
        [("NASA", "ORG", "a logo")],
        [],
    ]
    return [
        LocateRequest(img, [d for _, _, d in e], text="a tweet", entities=e) for img, e in zip(imgs, ents)
    ]


def _plain(loc: Localization):
    return {"boxes": loc.boxes, "scores": loc.scores, "notes": loc.notes,
            "masks": None if loc.masks is None else [None if m is None else m.tolist() for m in loc.masks]}  # fmt: skip


def _close(a: Localization, b: Localization):
    assert len(a.boxes) == len(b.boxes) and a.notes == b.notes
    for x, y in zip(a.boxes, b.boxes):
        assert (x is None) == (y is None) and (x is None or max(abs(p - q) for p, q in zip(x, y)) <= 1e-3)
    if a.scores is not None:
        for x, y in zip(a.scores, b.scores):
            assert (x is None) == (y is None) and (x is None or abs(x - y) <= 1e-4)


@pytest.mark.parametrize("model_type", sorted(TINY_LOCATORS))
def test_every_grounder_family_conforms_to_the_locator_protocol(model_type, tmp_path):
    stage, locator = _locator(model_type)
    reqs = _requests()
    batched = locator.locate_many(reqs, vision_batch_size=8)
    assert [len(loc.boxes) for loc in batched] == [2, 1, 0]
    for r, loc in zip(reqs, batched):
        assert isinstance(loc, Localization)
        assert (loc.scores is None) == (not locator.has_scores)
        assert (loc.masks is not None) == bool(locator.returns_masks and loc.boxes)
        w, h = r.image.size
        for box in loc.boxes:
            assert box is None or (0 <= box[0] <= box[2] <= w and 0 <= box[1] <= box[3] <= h)
        json.dumps(_plain(loc), allow_nan=False)
    one_by_one = [locator.locate_many([r], vision_batch_size=1)[0] for r in reqs]
    for a, b in zip(batched, one_by_one):
        _close(a, b)
    # save / reload (through the stage that owns the weights) gives identical answers
    stage.save_pretrained(tmp_path / "s")
    again = (Segmenter if model_type == "sam3" else Grounder).from_pretrained(tmp_path / "s")
    again_locator = again.locator() if model_type == "sam3" else again
    assert type(again_locator) is type(locator) and again.options() == stage.options()
    for a, b in zip(batched, again_locator.locate_many(reqs, vision_batch_size=8)):
        _close(a, b)
