"""Lowering by registration: one function per IR class and target, found by a table lookup on the class.

A lowering does not build framework objects itself; it returns an *expression* (`call("Dense", 64, 10, ...)`,
`ref("F.relu")`) naming things in its target's library. A live target evaluates the expression against its
library (backends/torch/library.py, backends/keras/library.py); an emit target renders the same expression as
Python text and copies the definitions it names into the script (backends/emit/bundle.py). So one lowering per
IR class serves a backend and its emitted script, and lowering files import no framework: the support matrix
is computed anywhere (`dlc catalogue`), like sqlglot's generators dispatch on the node class.

Targets: "torch" and "keras" (the backends), "emit_torch" and "emit_keras" (the standalone scripts).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dlc.compiler.diagnostics import DlcError

TARGETS = ("keras", "torch", "emit_keras", "emit_torch")
TORCH = ("torch", "emit_torch")
KERAS = ("keras", "emit_keras")
EMIT = ("emit_keras", "emit_torch")
# the modules whose import registers a target's lowerings (none of them imports a framework)
TARGET_MODULES = {
    "torch": ("dlc.backends.torch.lower", "dlc.backends.shared"),
    "keras": ("dlc.backends.keras.lower", "dlc.backends.shared"),
    "emit_torch": ("dlc.backends.torch.lower", "dlc.backends.shared", "dlc.backends.emit.lower"),
    "emit_keras": ("dlc.backends.keras.lower", "dlc.backends.shared", "dlc.backends.emit.lower"),
}


class LoweringMissing(DlcError):
    """An IR item a target cannot lower; names the item, the target and the spec position."""

    def __init__(self, item: str, backend: str, at: tuple[int, int] | None = None,
                 why: str = "not supported yet"):
        self.item, self.backend, self.at = item, backend, at
        where = f" (line {at[0]}, column {at[1]})" if at else ""
        super().__init__(f"{item}{where} is {why} on the {backend} target")


# ----------------------------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Ref:
    """A name in the target's library, possibly dotted (`keras.layers.Dense`, `F.relu`, `Dense`)."""

    path: str


@dataclass(frozen=True)
class Call:
    fn: Ref
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def ref(path: str) -> Ref:
    return Ref(path)


def call(path: str, *args, **kwargs) -> Call:
    """`path(*args, **kwargs)` in the target's library; keyword arguments set to None are left out."""
    return Call(Ref(path), tuple(args), tuple((k, v) for k, v in kwargs.items() if v is not None))


def evaluate(expr, namespace: dict[str, Any]):
    """Build the objects an expression describes, names resolved in `namespace`."""
    if isinstance(expr, Ref):
        head, *rest = expr.path.split(".")
        obj = namespace[head]
        for part in rest:
            obj = getattr(obj, part)
        return obj
    if isinstance(expr, Call):
        fn = evaluate(expr.fn, namespace)
        return fn(*(evaluate(a, namespace) for a in expr.args),
                  **{k: evaluate(v, namespace) for k, v in expr.kwargs})
    if isinstance(expr, list):
        return [evaluate(x, namespace) for x in expr]
    if isinstance(expr, tuple):
        return tuple(evaluate(x, namespace) for x in expr)
    if isinstance(expr, dict):
        return {k: evaluate(v, namespace) for k, v in expr.items()}
    return expr


def render(expr, indent: int = 0, width: int = 110, used: int = 0) -> str:
    """Python source for an expression; a call or literal too long for one line puts one item per line.
    `indent`: the indentation of the line the expression starts on; `used`: the other characters of its
    first and last lines (what precedes it after the indentation, a comma after it), kept within `width`."""
    if isinstance(expr, Ref):
        return expr.path
    if isinstance(expr, Call):
        parts = [render(a, indent + 4, width, 1) for a in expr.args]  # (each item is followed by a comma)
        parts += [f"{k}={render(v, indent + 4, width, len(k) + 2)}" for k, v in expr.kwargs]
        return _wrapped(f"{expr.fn.path}(", parts, ")", indent, width, used)
    if isinstance(expr, list):
        return _wrapped("[", [render(x, indent + 4, width, 1) for x in expr], "]", indent, width, used)
    if isinstance(expr, dict):
        return _wrapped("{", [f"{k!r}: {render(v, indent + 4, width, len(repr(k)) + 3)}"
                              for k, v in expr.items()], "}", indent, width, used)
    if isinstance(expr, tuple):  # (a one-item tuple keeps its comma)
        items = [render(x, indent + 4, width, 1) for x in expr]
        return _wrapped("(", items, ",)" if len(items) == 1 else ")", indent, width, used)
    if isinstance(expr, float):
        return repr(float(expr))
    return repr(expr)


def _wrapped(opening: str, items: list[str], closing: str, indent: int, width: int, used: int) -> str:
    flat = opening + ", ".join(items) + closing
    if indent + used + len(flat) <= width and "\n" not in flat:
        return flat
    pad = " " * (indent + 4)
    return opening + "\n" + "".join(f"{pad}{i},\n" for i in items) + " " * indent + closing.lstrip(",")


def names_in(expr) -> set[str]:
    """The library names (first path segment) an expression uses: what an emitted script must define."""
    if isinstance(expr, Ref):
        return {expr.path.split(".")[0]}
    if isinstance(expr, Call):
        out = names_in(expr.fn)
        for a in expr.args:
            out |= names_in(a)
        for _, v in expr.kwargs:
            out |= names_in(v)
        return out
    if isinstance(expr, (list, tuple)):
        return set().union(*(names_in(x) for x in expr)) if expr else set()
    if isinstance(expr, dict):
        return set().union(*(names_in(v) for v in expr.values())) if expr else set()
    return set()


# --------------------------------------------------------------------------------------------------- registry


@dataclass
class Registry:
    """target -> IR class -> lowering function; and the cells marked unsupported, with the reason."""

    table: dict[str, dict[type, Callable]] = field(default_factory=lambda: {t: {} for t in TARGETS})
    unsupported: dict[str, dict[type, str]] = field(default_factory=lambda: {t: {} for t in TARGETS})
    # cells a target handles in dlc's shared, framework-free code (initial weights, schedules, metrics, data)
    shared: dict[str, dict[type, str]] = field(default_factory=lambda: {t: {} for t in TARGETS})

    def lowers(self, *classes: type, targets: Iterable[str]):
        """Decorator: `fn(node, ctx)` lowers every class in `classes` on every target in `targets`."""
        targets = tuple(targets)

        def deco(fn):
            for t in targets:
                for cls in classes:
                    if cls in self.table[t]:
                        raise ValueError(f"{cls.__name__} is lowered twice on {t}")
                    self.table[t][cls] = fn
            return fn

        return deco

    def mark_shared(self, *classes: type, targets: Iterable[str], how: str) -> None:
        for t in targets:
            for cls in classes:
                self.shared[t][cls] = how

    def mark_unsupported(self, cls: type, targets: Iterable[str], reason: str) -> None:
        for t in targets:
            self.unsupported[t][cls] = reason

    def lowering(self, target: str, node) -> Callable:
        fn = self.table[target].get(type(node))
        if fn is None:
            why = self.unsupported[target].get(type(node), "not supported yet")
            raise LoweringMissing(item_name(node), target, getattr(node, "at", None), why)
        return fn

    def lower(self, target: str, node, ctx):
        return self.lowering(target, node)(node, ctx)

    def status(self, target: str, cls: type) -> tuple[str, str]:
        """("lowered" | "shared" | "unsupported" | "missing", detail) for one cell of the support matrix."""
        if cls in self.table[target]:
            fn = self.table[target][cls]
            return "lowered", f"{fn.__module__}.{fn.__name__}"
        if cls in self.shared[target]:
            return "shared", self.shared[target][cls]
        if cls in self.unsupported[target]:
            return "unsupported", self.unsupported[target][cls]
        return "missing", ""


REGISTRY = Registry()
lowers = REGISTRY.lowers


def item_name(node) -> str:
    """How a user names an IR item: `layer Dense`, `activation 'gelu'`, `optimizer Nadam`."""
    fam = getattr(type(node), "family", "") or "item"
    names = getattr(type(node), "spec_names", ()) or (type(node).__name__,)
    name = getattr(node, "name", None) if fam != "layer" else None
    return f"{fam} {name if isinstance(name, str) and name in names else names[0]}"


def load_target(target: str) -> Registry:
    """Import the modules that register `target`'s lowerings (no framework is imported)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}' (known: {', '.join(TARGETS)})")
    for mod in TARGET_MODULES[target]:
        importlib.import_module(mod)
    return REGISTRY


# ---------------------------------------------------------------------------------------------------- context


@dataclass
class Context:
    """What a lowering may ask about where its node sits: the target, the spec, and for a layer its shapes,
    weights and whether its activation is left to the loss (the fused softmax/sigmoid output)."""

    target: str
    spec: Any
    info: Any = None  # dlc.compiler.spec.LayerInfo of the layer being lowered
    fused: bool = False

    def lower(self, node):
        return REGISTRY.lower(self.target, node, self)

    def for_layer(self, info, fused: bool = False) -> Context:
        return Context(self.target, self.spec, info, fused)

    def activation(self, act):
        """The lowered activation of this layer: linear when the loss computes it from the logits."""
        from dlc.compiler.functions import LINEAR

        return self.lower(LINEAR if self.fused else act)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.info.in_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.info.out_shape)

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        return {w.name: tuple(w.shape) for w in self.info.weights}
