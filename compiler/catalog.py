"""The IR's base class and the catalogue registry.

Every spec-visible thing (a layer, an activation, an optimizer, ...) is one Pydantic class registered under a
family and one or more spec names. The binder (bind.py) finds classes here by name, maps positional
arguments with `positional`, keyword aliases with `aliases`, and nested catalogue values (an activation inside
a layer) by the family of the field's annotation.
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

REGISTRY: dict[str, dict[str, type[Catalogued]]] = {}
# the canonical (first) name of each class, used by did-you-mean and by the catalogue listing
CANONICAL: dict[str, list[str]] = {}


class IRNode(BaseModel):
    """Immutable, validated, JSON-serialisable."""

    # (allow_inf_nan: a number that is not finite never reaches the IR, whoever builds it; a spec's literal is
    # reported where it is written)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    # how spec arguments map onto fields: positional order and keyword aliases
    positional: ClassVar[tuple[str, ...]] = ()
    aliases: ClassVar[dict[str, str]] = {}


class Catalogued(IRNode):
    family: ClassVar[str] = ""
    # set by @register: the names a spec may use for this class
    spec_names: ClassVar[tuple[str, ...]] = ()
    # a lowering that exists for only some backends names the others here with a reason
    doc: ClassVar[str] = ""


def register(*names: str):
    """Class decorator: make a catalogue class reachable from specs under `names` (first is canonical)."""

    def deco(cls):
        fam = cls.family
        assert fam, cls
        table = REGISTRY.setdefault(fam, {})
        for n in names:
            assert n not in table, (fam, n)
            table[n] = cls
        cls.spec_names = tuple(names)
        CANONICAL.setdefault(fam, []).append(names[0])
        return cls

    return deco


def lookup(family: str, name: str) -> type[Catalogued] | None:
    return REGISTRY.get(family, {}).get(name)


def names(family: str) -> list[str]:
    return list(REGISTRY.get(family, {}))


def family_of_annotation(annotation: Any) -> str | None:
    """The catalogue family a field's type belongs to (unwrapping Optional, Union, Annotated and list)."""
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, Catalogued) and a.family:
            return a.family
        stack.extend(typing.get_args(a))
    return None


def is_list_annotation(annotation: Any) -> bool:
    stack = [annotation]
    while stack:
        a = stack.pop()
        if typing.get_origin(a) in (list, tuple) and not (
            typing.get_origin(a) is tuple
            and all(x in (int, float) for x in typing.get_args(a) if x is not ...)
        ):
            return True
        origin = typing.get_origin(a)
        if origin in (typing.Union, typing.Annotated) or str(origin) == "types.UnionType":
            stack.extend(typing.get_args(a))
    return False


# ---- what a field's annotation accepts: the binder asks before converting a value

def leaf_types(annotation: Any) -> set:
    """The plain types an annotation accepts, through Optional, Union, Annotated and tuple."""
    out, stack = set(), [annotation]
    while stack:
        a = stack.pop()
        args = typing.get_args(a)
        if args and typing.get_origin(a) is not typing.Literal:
            stack.extend(x for x in args if x is not ...)
        elif isinstance(a, type):
            out.add(a)
    return out


def takes_names(annotation: Any) -> bool:
    """Whether a field may be given a bare name: a string, one of some words, or a catalogue name."""
    stack = [annotation]
    while stack:
        a = stack.pop()
        if typing.get_origin(a) is typing.Literal:
            if any(isinstance(x, str) for x in typing.get_args(a)):
                return True
        elif a is str or (isinstance(a, type) and issubclass(a, Catalogued)):
            return True
        else:
            stack.extend(typing.get_args(a))
    return False


def wants_integer(annotation: Any) -> bool:
    """Whether a field takes whole numbers only (units, kernel sizes): uniform() would draw 7.31 for it."""
    types = leaf_types(annotation) if annotation is not None else set()
    return int in types and float not in types


def takes_keyword(cls, fname: str) -> bool:
    """Whether `fname` may be given as a keyword: a field, but not the internal ones (a name only when it is
    also positional)."""
    if fname not in cls.model_fields or fname in ("at", "kind"):
        return False
    return fname != "name" or "name" in cls.positional


def record_class(annotation) -> type | None:
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel) and not issubclass(a, Catalogued):
            return a
        stack.extend(typing.get_args(a))
    return None
