"""What checks.py and the data checks (datachecks.py, sourcechecks.py, targetchecks.py, inputchecks.py) all
use: where a part of the spec is written in its text (the spans their messages point at), how a shape or a
path is shown in a message, what activation the network ends in, and where a data path written in a spec
points."""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import ast as A
from .datarows import home_expanded
from .diagnostics import Span
from .layers import Layer, Softmax
from .spec import Spec


def span_at(at, width: int = 1) -> Span | None:
    if not at:
        return None
    return Span(at[0], at[1], at[0], at[1] + width)


def layer_span(layer: Layer) -> Span | None:
    return span_at(layer.at, len(layer.kind) if layer.kind != "Residual" else len("residual"))


def find_assign(m: A.Model, key: str, section: str | None = None) -> A.Assign | None:
    body = m.body
    if section:
        secs = [s for s in body if isinstance(s, A.Section) and s.name == section]
        if not secs:
            return None
        body = secs[0].body
    for st in body:
        if isinstance(st, A.Assign) and st.key == key:
            return st
    return None


def kwarg_span(v: A.Value | None, key: str) -> Span | None:
    """The span of the value of keyword `key` in a call or record, if written there."""
    for kw in getattr(v, "kwargs", None) or []:
        if kw.key == key:
            return kw.value.span
    return None


def walk_values(node):
    """Every AST value in a statement list or value, depth first."""
    if isinstance(node, list):
        for x in node:
            yield from walk_values(x)
    elif isinstance(node, (A.Assign, A.Kwarg)):
        yield from walk_values(node.value)
    elif isinstance(node, (A.Section, A.BlockDef)):
        yield from walk_values(node.body)
    elif isinstance(node, A.LayerStmt):
        yield from walk_values(node.call)
    elif isinstance(node, (A.Call, A.Tuple, A.List)):
        yield node
        yield from walk_values(getattr(node, "args", None) or getattr(node, "items", []))
        yield from walk_values(node.kwargs)
    elif node is not None:
        yield node


def shape_text(shape) -> str:
    """A shape as a spec writes it: (64) rather than Python's (64,); a long one abbreviated."""
    if len(shape) > 10:
        return "(" + ", ".join(str(x) for x in shape[:8]) + f", ..., {shape[-1]}) ({len(shape):,} axes)"
    return "(" + ", ".join(str(x) for x in shape) + ")"


def layout_refusal(got: tuple[int, ...], want: tuple[int, ...],
                   samples: str = "samples of shape") -> str | None:
    """Why samples of shape `got` are not read as the model's input `want` although they hold as many values:
    a reshape read (3, 32, 32), channels first, as (32, 32, 3) and scrambled every image without a word.
    Shapes one of which merges neighbouring axes of the other are read as they are: flat samples, a flat
    input (each sample flattened, as Flatten would), (8, 8) images for an input of (64, 1) steps or (4, 4, 3)
    for (16, 3), and shapes that differ only by axes of size 1 ((8, 8) for (8, 8, 1)). One rule for training
    (check and run) and for predict and evaluate, so that a model takes at inference the arrays it was
    trained on. `samples`: the message's subject, followed by the shape."""
    bounds_got, bounds_want = _axis_bounds(got), _axis_bounds(want)
    if bounds_got <= bounds_want or bounds_want <= bounds_got:
        return None
    first = " (channels first? the model takes them last: np.moveaxis(x, 1, -1))" \
        if got == (want[-1], *want[:-1]) else ""
    flat = f" or flat, (N, {math.prod(want)})" if len(want) > 1 else ""
    shape = ", ".join(map(str, want))
    return f"{samples} {got}, the model takes {want}{first}; give them as (N, {shape}){flat}"


def _axis_bounds(shape: tuple[int, ...]) -> set[int]:
    """Where a sample's axes end in its values laid out in a row (the running products of its sizes): one
    shape merges neighbouring axes of another when its bounds are among the other's."""
    return {math.prod(shape[:i + 1]) for i in range(len(shape))}


def shown_path(path: Path) -> str:
    """A path relative to the working directory when it is below it, else absolute."""
    rel = os.path.relpath(path)
    return path.as_posix() if rel.startswith("..") else Path(rel).as_posix()


def layer_activation(layer) -> str | None:
    """The activation a layer applies (its activation=, an Activation layer's, a Softmax layer's), None for
    a layer without one (Dropout, Reshape, ...)."""
    if isinstance(layer, Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)  # (an Activation layer's too)
    return act.name if act is not None else None


def final_activation(spec: Spec) -> str:
    """The activation the network ends in (the last layer's, or an Activation/Softmax layer's)."""
    return (layer_activation(spec.layers[-1]) if spec.layers else None) or "linear"


def fused_output(spec: Spec) -> str | None:
    """'softmax' or 'sigmoid' when the network's last activation is computed inside the crossentropy from the
    logits (every target leaves it out of the last layer and applies it only for predictions), else None."""
    final = final_activation(spec)
    if type(spec.loss).output_activation == final and final in ("softmax", "sigmoid"):
        return final
    return None


def resolve_path(base_dir: Path, p: str) -> Path:
    path = home_expanded(Path(p))
    return path if path.is_absolute() else base_dir / path


def argument_span(m: A.Model, layer: Layer, field: str | None) -> Span | None:
    """Where the value of a layer's argument `field` is written (as a keyword), if in the model's text."""
    if field is None or not layer.at:
        return None
    for v in walk_values(m.body):
        if isinstance(v, A.Call) and (v.name_span.line, v.name_span.col) == tuple(layer.at):
            return next((kw.value.span for kw in v.kwargs
                         if type(layer).aliases.get(kw.key, kw.key) == field), None)
    return None


def positional_span(m: A.Model, layer: Layer, key: str, index: int) -> Span | None:
    """Where argument `key` (positional `index`) of a layer is written, if in the model's text."""
    if not layer.at:
        return None
    for v in walk_values(m.body):
        if isinstance(v, A.Call) and (v.name_span.line, v.name_span.col) == tuple(layer.at):
            arg = A.argument(v, key, index)
            return arg.span if arg is not None else None
    return None

