"""One registry shape for every role with model families, and the declared options of a stage.

A **family** is one class (a subclass of its role's base: :class:`~riveg_hf.stages.Grounder`,
:class:`~riveg_hf.stages.Segmenter`, :class:`~riveg_hf.stages.Entailment`, :class:`~riveg_hf.stages.JointReader`,
:class:`~riveg_hf.stages.Recognizer`) in one module. It declares:

* ``family``: its name (recorded in training runs, cards and composite configs);
* ``model_types``: the ``config.model_type`` values it serves (entailment and the recognizer also have an
  ``accepts(model)`` rule, for the families that serve a kind of model rather than a list of types);
* ``family_options``: its :class:`Option` declarations (name, default, validation, doc), declared **once**: the
  constructor, :meth:`~riveg_hf.stages.Stage.configure` and a saved checkpoint's options all go through them;
* ``tiny(model_type=None, seed=0)``: a tiny random ``(model, processor)`` of each model type it claims (built
  offline), which the generated conformance tests (``tests/test_families.py``) run.

and registers itself with its role's :class:`FamilyRegistry` (``@register``, the role module's decorator). **A
new family is one module**: the package's own families are listed in each role's ``FAMILY_MODULES``; a family in
your own module registers when it is imported, with no edit of riveg-hf::

    from riveg_hf.stages.grounder import Grounder, register

    @register
    class MyGrounder(Grounder):
        family = "my-detector"
        model_types = ("my_detector",)
        ...
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["FamilyRegistry", "Option", "UnknownFamilyError", "resolve_path"]

#: the value kinds an :class:`Option` checks, and what each expects (the error messages say it)
KINDS = {
    "unit": "a number in [0, 1]",
    "number": "a finite number",
    "bool": "True or False",
    "int": "an integer",
    "positive-int": "a positive integer",
    "choice": "one of the choices",
    "str": "a string",
    "str-list": "a list of strings",
    "mapping": "a mapping (dict)",
    "path": "a file or folder path (a string)",
    "any": "any value",
}


@dataclass(frozen=True)
class Option:
    """One option of a stage: its name, default, validation and doc, declared once.

    ``kind`` is one of :data:`KINDS`; ``low`` / ``high`` bound a number or an integer; ``nullable``: None is a
    value of its own (e.g. "read it from the model's config"), else None stands for the default; ``why`` says
    what the number means (written into the error); ``saved``: recorded by :meth:`Stage.options`.

    >>> Option("box_threshold", 0.3, "unit", why="a box score is a probability").check(0.25, "grounder")
    0.25
    >>> Option("box_threshold", 0.3, "unit").check(5.0, "grounder")
    Traceback (most recent call last):
    ...
    ValueError: grounder: box_threshold must be in [0, 1], got 5.0; pass a number in [0, 1] (default 0.3)
    """

    name: str
    default: Any = None
    kind: str = "any"
    doc: str = ""
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    low: float | None = None
    high: float | None = None
    why: str = ""
    saved: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Option {self.name!r}: kind {self.kind!r}; valid: {sorted(KINDS)}")

    def with_default(self, default: Any) -> Option:
        """The same option with another default (a family's calibration)."""
        return replace(self, default=default)

    @property
    def expects(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        what = KINDS[self.kind]
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            what += f" in [{lo}, {hi}]"
        return what + (" or None" if self.nullable else "")

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` (normalised: numpy numbers become Python's), or ValueError saying what was received, what is
        expected and how to fix it. None is returned as is (a nullable option's own value, else "the default",
        which the caller substitutes)."""
        if value is None:
            return None
        problem = self._problem(value)
        if problem is None:
            return self._normalise(value)
        why = f" ({self.why})" if self.why else ""
        head = f"{where}: " if where else ""
        raise ValueError(
            f"{head}{self.name} {problem}, got {value!r}{why}; pass {self.expects} (default {self.default!r})"
        )

    def _problem(self, value: Any) -> str | None:
        kind, is_bool = self.kind, isinstance(value, (bool, np.bool_))
        if kind in ("unit", "number"):
            if is_bool or not isinstance(value, numbers.Real):
                return "must be a number"
            if not math.isfinite(float(value)):
                return "must be finite"
            lo, hi = (0.0, 1.0) if kind == "unit" else (self.low, self.high)
            if (lo is not None and float(value) < lo) or (hi is not None and float(value) > hi):
                return f"must be in [{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
        elif kind == "bool":
            if not is_bool:
                return "must be True or False"
        elif kind in ("int", "positive-int"):
            if is_bool or not isinstance(value, numbers.Integral):
                return "must be an integer"
            lo = 1 if kind == "positive-int" and self.low is None else self.low
            if (lo is not None and value < lo) or (self.high is not None and value > self.high):
                return f"must be in [{lo if lo is not None else '-inf'}, {self.high if self.high is not None else 'inf'}]"
        elif kind == "choice":
            if value not in self.choices:
                return f"must be one of {list(self.choices)}"
        elif kind == "str":
            if not isinstance(value, str):
                return "must be a string"
        elif kind == "path":
            if not isinstance(value, str) and not hasattr(value, "__fspath__"):
                return "must be a path"
        elif kind == "str-list":
            if isinstance(value, str) or not isinstance(value, Iterable):
                return "must be a list of strings"
            if not all(isinstance(v, str) for v in value):
                return "must be a list of strings"
        elif kind == "mapping" and not isinstance(value, Mapping):
            return "must be a mapping"
        return None

    def _normalise(self, value: Any) -> Any:
        if self.kind in ("unit", "number"):
            return float(value)
        if self.kind == "bool":
            return bool(value)
        if self.kind in ("int", "positive-int"):
            return int(value)
        if self.kind == "str-list":
            return tuple(value)
        if self.kind == "mapping":
            return dict(value)
        return value

    def json_value(self, value: Any) -> Any:
        """``value`` as JSON-safe data (for :meth:`Stage.options`)."""
        if isinstance(value, tuple):
            return list(value)
        if hasattr(value, "__fspath__"):
            return str(value)
        return value


def resolve_path(root: Any, path: str) -> Any:
    """The object at the dotted attribute ``path`` from ``root`` (``"model.vision_model"``); AttributeError
    naming the first part that names nothing (a family's ``compile_modules`` must name real modules)."""
    obj = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(
                f"{type(root).__name__}: {path!r} names nothing ({type(obj).__name__} has no {part!r}); fix the "
                "family's compile_modules"
            )
        obj = getattr(obj, part)
    return obj


class UnknownFamilyError(TypeError):
    """A model type (or family name) no registered family serves; the message lists the supported ones."""


class FamilyRegistry:
    """The families of one role (see the module doc).

    ``role``: the role's name (``"grounder"``); ``package``: the package holding the library's family modules
    and ``modules`` their names (imported on first lookup; a user's family registers itself on import);
    ``hint``: how to fix an unknown model type (examples of checkpoints). ``by_name``: the family is chosen by
    its name (the joint reader: one architecture serves several trained answer formats), so several families may
    claim one model type.
    """

    def __init__(
        self, role: str, package: str, modules: Iterable[str], *, hint: str = "", by_name: bool = False
    ):
        self.role = role
        self.choose_by_name = by_name
        self.package = package
        self.modules = tuple(modules)
        self.hint = hint
        self._families: dict[str, type] = {}
        self._loaded = False

    # ------------------------------------------------------------------ registering
    def register(self, cls: type) -> type:
        """Class decorator: ``cls`` serves its ``model_types`` (a later family of the same name replaces it)."""
        name = getattr(cls, "family", "")
        if not name:
            raise TypeError(f"{self.role}: {cls.__name__} declares no family name (family = '...')")
        claimed = {t: f for f, c in self._families.items() if f != name for t in c.model_types}
        clash = sorted(t for t in cls.model_types if t in claimed)
        if clash and not self.choose_by_name:
            raise TypeError(
                f"{self.role}: {cls.__name__} claims model types {clash}, already served by the family "
                f"{claimed[clash[0]]!r}; a model type has one family"
            )
        self._families[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Forget the family ``name`` (tests that register a family of their own clean up with it)."""
        self._families.pop(name, None)

    def load(self) -> None:
        """Import the library's family modules (each registers its class)."""
        if not self._loaded:
            for module in self.modules:
                importlib.import_module(f"{self.package}.{module}")
            self._loaded = True

    # ------------------------------------------------------------------ looking up
    def families(self) -> list[type]:
        """Every registered family, in registration order (the library's modules first)."""
        self.load()
        return list(self._families.values())

    def names(self) -> list[str]:
        return [c.family for c in self.families()]

    def model_types(self) -> dict[str, type]:
        """model type -> its family."""
        return {t: c for c in self.families() for t in c.model_types}

    def by_name(self, name: str) -> type:
        self.load()
        cls = self._families.get(name)
        if cls is None:
            raise UnknownFamilyError(
                f"{self.role}: unknown family {name!r}; supported: {sorted(self._families)}. Pass one of them, "
                f"or register your own family class with @register (riveg_hf.stages.{self.role})."
            )
        return cls

    def for_model_type(self, model_type: str) -> type:
        """The family serving ``model_type``; the error lists the supported types and how to fix it."""
        if self.choose_by_name:
            raise TypeError(f"{self.role}: a family is chosen by name (family=...): {self.names()}")
        cls = self.model_types().get(model_type)
        if cls is None:
            raise UnknownFamilyError(self.unknown_message(model_type))
        return cls

    def for_model(self, model: Any) -> type:
        """The family serving ``model``: by its model type, else the first whose ``accepts(model)`` is true."""
        model_type = getattr(getattr(model, "config", None), "model_type", "")
        cls = self.model_types().get(model_type)
        if cls is not None:
            return cls
        for family in self.families():
            accepts = getattr(family, "accepts", None)
            if accepts is not None and accepts(model):
                return family
        raise UnknownFamilyError(self.unknown_message(model_type, type(model).__name__))

    def unknown_message(self, model_type: str, model_class: str | None = None) -> str:
        got = f"{model_class} (model type {model_type!r})" if model_class else f"model type {model_type!r}"
        rules = [c.accepts_doc for c in self.families() if getattr(c, "accepts_doc", "")]
        also = f"; also {'; '.join(rules)}" if rules else ""
        return (
            f"{self.role}: {got} is not supported; supported: {sorted(self.model_types())} (model types){also}. "
            f"{self.hint + ' ' if self.hint else ''}A new family is one module registering a "
            f"{self.role} class (see riveg_hf.stages.registry)."
        ).strip()

    # ------------------------------------------------------------------ documentation
    def rows(self) -> list[tuple[str, str, str]]:
        """(family, model types, what) per family: the source of the tables in the docs."""
        rows = []
        for c in self.families():
            types = ", ".join(c.model_types) or "-"
            if getattr(c, "accepts_doc", ""):
                types = f"{types} (and {c.accepts_doc})" if c.model_types else c.accepts_doc
            doc = (c.__doc__ or "").strip().splitlines()
            rows.append((c.family, types, doc[0].strip() if doc else ""))
        return rows

    def table(self) -> str:
        """The families as a Markdown table (family, model types, what)."""
        lines = ["| family | model types | what |", "|---|---|---|"]
        lines += [f"| `{f}` | {t} | {w} |" for f, t, w in self.rows()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"FamilyRegistry({self.role!r}, families={list(self._families)})"


def check_options(
    declared: Mapping[str, Option], options: Mapping[str, Any], where: str, extra: Iterable[str] = ()
) -> dict[str, Any]:
    """Validated ``options`` (None kept: see :meth:`Option.check`); TypeError for an unknown name, listing the
    valid ones (``extra``: names the caller takes besides the declared options)."""
    unknown = sorted(k for k in options if k not in declared)
    if unknown:
        valid = sorted({*declared, *extra})
        raise TypeError(
            f"{where}: unknown option(s) {unknown}; valid: {valid}. Check the spelling, or see the family's "
            "declared options (Stage.declared_options())."
        )
    return {k: declared[k].check(v, where) for k, v in options.items()}


def defaults_of(declared: Mapping[str, Option]) -> dict[str, Any]:
    return {k: o.default for k, o in declared.items()}


#: the type of a tiny builder: ``builder(seed=0) -> (model, processor)``
TinyBuilder = Callable[..., tuple[Any, Any]]
