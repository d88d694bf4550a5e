"""The spec AST: a faithful, position-carrying picture of the file, before any meaning is given to names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .diagnostics import Span


@dataclass
class Num:
    value: float | int
    text: str
    span: Span
    problem: str | None = None  # why the literal is unusable (it overflows), already reported; value is 0


@dataclass
class Str:
    value: str
    span: Span


@dataclass
class Bool:
    value: bool
    span: Span


@dataclass
class Name:
    name: str
    span: Span


@dataclass
class Phrase:
    """Two juxtaposed names, e.g. `minimize val_loss`."""

    words: list[Name]
    span: Span


@dataclass
class Kwarg:
    key: str
    key_span: Span
    value: Value


@dataclass
class Call:
    name: str
    name_span: Span
    args: list[Value]
    kwargs: list[Kwarg]
    span: Span


@dataclass
class Tuple:
    """`(a, b)` or a record `(k=v, ...)`; `(64)` is a one-element tuple."""

    items: list[Value]
    kwargs: list[Kwarg]
    span: Span


@dataclass
class List:
    items: list[Value]
    kwargs: list[Kwarg]
    span: Span


Value = Union[Num, Str, Bool, Name, Phrase, Call, Tuple, List]


@dataclass
class Assign:
    key: str
    key_span: Span
    value: Value
    span: Span


@dataclass
class Section:
    name: str
    name_span: Span
    body: list[Stmt]
    span: Span
    repeat: int | str | Call | None = None  # `residual { ... } * 2`, `* n` (a parameter), `* choice(..)`
    repeat_span: Span | None = None


@dataclass
class LayerStmt:
    call: Call
    repeat: int | str | Call | None  # `Dense(8) * 3`, `* n` (a block's parameter), `* choice(1, 2)`
    repeat_span: Span | None
    span: Span


@dataclass
class BlockDef:
    name: str
    name_span: Span
    params: list[Name]
    body: list[Stmt]
    span: Span


Stmt = Union[Assign, Section, LayerStmt, BlockDef]


@dataclass
class Model:
    name: str
    name_span: Span
    body: list[Stmt]
    span: Span


@dataclass
class File:
    models: list[Model] = field(default_factory=list)
    blocks: list[BlockDef] = field(default_factory=list)


def calls_by_position(tree: File) -> dict[tuple[int, int], Call]:
    """Every call in the file (models and top-level blocks, nested ones included) by the (line, col) of its
    name: how a validated layer (its `.at`) finds the text it came from."""
    out: dict[tuple[int, int], Call] = {}

    def walk(node) -> None:
        if isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, (Assign, Kwarg)):
            walk(node.value)
        elif isinstance(node, (Section, BlockDef, Model)):
            walk(node.body)
        elif isinstance(node, LayerStmt):
            walk(node.call)
        elif isinstance(node, Call):
            out[(node.name_span.line, node.name_span.col)] = node
            walk(node.args)
            walk(node.kwargs)
        elif isinstance(node, (Tuple, List)):
            walk(node.items)
            walk(node.kwargs)

    walk(tree.models)
    walk(tree.blocks)
    return out


def argument(call: Value | None, key: str, index: int | None) -> Value | None:
    """The value written for argument `key` (positional `index`) of a call, if written."""
    if not isinstance(call, Call):
        return None
    kw = next((k for k in call.kwargs if k.key == key), None)
    if kw is not None:
        return kw.value
    return call.args[index] if index is not None and len(call.args) > index else None
