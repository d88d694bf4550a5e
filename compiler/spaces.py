"""Search-space calls (`choice`, `uniform`, ...) where a value belongs: each is recorded as a SearchSpace with
its position, and stands for one value, its first option or low end, or `overrides[(line, col)]`, which is how
a tuner fixes a trial's values. Every other value it may take is checked against its argument too."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from . import ast as A
from . import catalog
from .catalog import family_of_annotation, wants_integer
from .diagnostics import MISSING, Diagnostics
from .training import SearchSpace
from .wording import (
    FAMILY_WORDS,
    article,
    explain,
    literal,
    number_text,
    option_shown,
    source_text,
    written_text,
)

# a search-space call's name -> the SearchSpace kind it makes (randint is int_uniform)
SEARCH_FUNCS: dict[str, Literal["choice", "uniform", "loguniform", "int_uniform"]] = {
    "choice": "choice", "uniform": "uniform", "loguniform": "loguniform", "int_uniform": "int_uniform",
    "randint": "int_uniform"}

Overrides = dict[tuple[int, int], Any]


class ValueBinder(Protocol):
    """What a search-space call asks of the binder (bind.Binder): its options converted and bound."""

    d: Diagnostics

    def value(self, v: A.Value, env: dict, path: str, annotation: Any = None) -> Any: ...

    def bind(self, v: A.Value, family: str, env: dict, path: str) -> Any: ...

    def bound_quietly(self, v: A.Value, family: str, env: dict, path: str) -> Any: ...


class SearchSpaceCalls:
    def __init__(self, binder: ValueBinder, overrides: Overrides):
        self.binder = binder
        self.d = binder.d
        self.overrides = overrides
        self.found: list[SearchSpace] = []
        # path -> (the search-space call there, the option values it may take other than the one resolved)
        self.alternatives: dict[str, tuple[A.Call, list[tuple[Any, A.Value]]]] = {}
        # (a choice's position, a call option's text) -> (the call, the block arguments it is bound with)
        self.call_options: dict[tuple[tuple[int, int], str], tuple[A.Call, dict]] = {}

    def call(self, v: A.Call, env: dict, path: str, annotation: Any, family: str | None = None) -> Any:
        """A search-space call where a value belongs: recorded, and replaced by the value this run uses. A
        chosen name is bound in `family` (default: the annotation's), as a name written there would be."""
        kind = SEARCH_FUNCS[v.name]
        fam = family or (family_of_annotation(annotation) if annotation is not None else None)
        if (kind != "choice" and fam is not None and self._range_for_names(v, path, fam)) or \
                self._nested_space(v, env) or self._call_option(v, env, fam):
            return MISSING
        at = (v.name_span.line, v.name_span.col)
        raw = [self._call_text(at, a, env) if _is_call_option(a, env) else self.binder.value(a, env, path)
               for a in v.args]
        if any(r is MISSING for r in raw) or v.kwargs:
            if v.kwargs:
                self.d.add("E501", f"{v.name}() takes positional arguments only", v.kwargs[0].key_span)
            return MISSING
        end = (v.span.end_line, v.span.end_col)
        if kind == "choice":
            first_use = not any(s.at == at for s in self.found)
            if not self._options_fit(v, raw, env, first_use):
                return MISSING
            if first_use and fam is not None:  # (reported; the options are still bound, to report theirs)
                self._bound_twice(v, raw, fam, env, path)
            if len(raw) == 1:  # (every trial takes it: a tpe or random search repeats one trial)
                one = source_text(v.args[0])
                self.d.warn("W009", "a choice of one value searches nothing: every trial takes it", v.span,
                            f"write {literal(raw[0]) if one == '...' else one}, or list the other options")
            space = SearchSpace(kind=kind, path=path, options=list(raw), at=at, end=end)
            rep = raw[0]
            others = list(zip(raw, v.args, strict=True))
        else:
            if not self._ends_fit(v, raw, path, annotation):
                return MISSING
            lo, hi = raw
            space = SearchSpace(kind=kind, path=path, low=float(lo), high=float(hi), at=at, end=end)
            rep = int(lo) if kind == "int_uniform" else lo
            ends = [int(b) if kind == "int_uniform" else b for b in raw]
            others = list(zip(ends, v.args, strict=True))
        self.found.append(space)
        chosen = self._chosen(space, rep)
        self.alternatives[path] = (v, [(o, arg) for o, arg in others if not _same_option(o, chosen)])
        # a chosen name may itself be a catalogue value (choice(relu, elu)), or a call (choice(SGD(lr=0.1),
        # Adam)): bind it as such; its errors say which option they are about unless a trial (or the check of
        # that option, options.py) chose it, which says so itself
        if fam is not None and isinstance(chosen, str):
            arg = next((a for o, a in others if _same_option(o, chosen)), v.args[0])
            return self._bind_option(at, chosen, arg, fam, path, said=at not in self.overrides)
        return chosen

    def _call_text(self, at: tuple[int, int], a: A.Value, env: dict) -> str:
        """A call option's value (`SGD(lr=0.1)`): its text, which a tuner draws like a name; the call is kept
        to be bound when drawn."""
        call = env.get(a.name, a) if isinstance(a, A.Name) else a
        assert isinstance(call, A.Call)
        text = written_text(call)
        self.call_options[(at, text)] = (call, env if call is a else {})
        return text

    def _bind_option(self, at: tuple[int, int], option: str, arg: A.Value, family: str, path: str,
                     said: bool = True) -> Any:
        """A chosen option in `family`: the call it is the text of, else a name. With `said`, each error
        found says first which option it is about (`when optimizer is SGD(lr=-1): ...`): only the trials
        that draw it meet it."""
        value, env = self._option_value(at, option, arg), self._option_env(at, option)
        with self.d.prefixed(f"when {path} is {option_shown(arg, option)}: ") if said else nullcontext():
            return self.binder.bind(value, family, env, path)

    def _option_value(self, at: tuple[int, int], option: str, arg: A.Value) -> A.Value:
        """What a catalogue option stands for: the call whose text it is, else a name (written at `arg`)."""
        call = self.call_options.get((at, option))
        return call[0] if call is not None else A.Name(option, arg.span)

    def _option_env(self, at: tuple[int, int], option: str) -> dict:
        """The block arguments a call option is bound with (none for a name)."""
        call = self.call_options.get((at, option))
        return call[1] if call is not None else {}

    def _chosen(self, space: SearchSpace, rep: Any) -> Any:
        """The value this use of a search space takes: its override, else `rep`. A choice in a block used with
        other arguments lists other values in each use (`choice(filters, 8)`): an override is an option of its
        first use, and each use takes the same option, its own value of it, as the concrete spec (a trial's,
        best.dlspec) writes that option."""
        if space.at not in self.overrides:
            return rep
        value = self.overrides[space.at]
        first = next(s for s in self.found if s.at == space.at)
        if space.kind != "choice" or first is space:
            return value
        index = next((i for i, o in enumerate(first.options) if _same_option(o, value)), None)
        return value if index is None else space.options[index]

    def _options_fit(self, v: A.Call, raw: list, env: dict, first_use: bool) -> bool:
        """choice()'s options: at least one, each a plain value, none twice in the use that defines the
        parameter (a grid would count it twice: a search that never ends; a later use of a block may map two
        options to one value, `choice(f, 8)` in `b(8)`, since the first use tells them apart). Reports what
        does not fit."""
        if not raw:
            self.d.add("E501", "choice() needs at least one option", v.span)
            return False
        bad = [a for a, r in zip(v.args, raw, strict=True) if not isinstance(r, (int, float, str, bool))]
        if bad:
            self.d.add("E501", "a choice() option must be a number, a name, a string or true/false",
                       bad[0].span, "list the options themselves: choice(32, 64, 128)")
            return False
        twice = _first_repeat(raw) if first_use else None
        if twice is not None:
            first, second = twice
            self._listed_twice(v.args[first], v.args[second], raw[first], raw[second], env, "value")
            return False
        return True

    def _bound_twice(self, v: A.Call, raw: list, family: str, env: dict, path: str) -> None:
        """Report two catalogue options written differently that are one and the same (`choice(Adam,
        Adam())`, `choice(l2(1e-3), l2(0.001))`, a name and its alias): the same point searched twice."""
        at = (v.name_span.line, v.name_span.col)
        seen: dict[str, int] = {}
        for i, (option, arg) in enumerate(zip(raw, v.args, strict=True)):
            if not isinstance(option, str):
                continue  # (a number where a name belongs: reported as an option its argument rejects)
            bound = self.binder.bound_quietly(self._option_value(at, option, arg), family,
                                              self._option_env(at, option), path)
            key = _bound_key(bound)
            if key is not None and key in seen:
                first = seen[key]
                word = FAMILY_WORDS.get(family, family)
                self._listed_twice(v.args[first], arg, raw[first], option, env, word)
                return
            if key is not None:
                seen[key] = i

    def _listed_twice(self, first: A.Value, second: A.Value, first_value: Any, second_value: Any, env: dict,
                      word: str) -> None:
        """Report the second of two options that are the same, naming the first (and, for a block's
        parameter, the value given for it and where)."""
        same_line = first.span.line == second.span.line
        where = f"column {first.span.col}" if same_line else f"line {first.span.line}"
        if written_text(first) == written_text(second):
            same = f"the first at {where}"
        else:
            same = f"the same {word} as {_described(first, first_value, env)} at {where}"
            if _is_parameter(second, env):
                same = f"{_described(second, second_value, env)} is {same}"
        listed = literal(second_value) if _is_parameter(second, env) else written_text(second)
        self.d.add("E501", f"choice() lists {listed} twice", second.span, f"{same}: list each option once")

    def _ends_fit(self, v: A.Call, raw: list, path: str, annotation: Any) -> bool:
        """A range's two ends: numbers, low < high (0 < low for loguniform), whole numbers for int_uniform and
        for an argument that takes whole numbers only. Reports what does not fit."""
        kind = SEARCH_FUNCS[v.name]
        if len(raw) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
            self.d.add("E501", f"{v.name}(low, high) needs two numbers", v.span)
            return False
        lo, hi = raw
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            written = f"{v.name}({', '.join(written_text(a) for a in v.args)})"
            zero = next((a for a, x in zip(v.args, raw, strict=True)
                         if x == 0 and isinstance(a, A.Num) and any(c in "123456789" for c in a.text)), None)
            hint = f"{zero.text} is 0 as a 64-bit number" if zero is not None else \
                f"a log scale has no 0: start above it, e.g. {v.name}({hi / 1000:g}, {number_text(hi)})" \
                if kind == "loguniform" and lo <= 0 < hi else None
            if hint is None and lo == hi:  # (as choice(8)'s W009 says: a range of one value searches nothing)
                hint = f"a range of one value searches nothing: write {written_text(v.args[0])}, or widen it"
            elif hint is None and lo > hi:
                hint = f"the ends the other way round: {v.name}({written_text(v.args[1])}, " \
                       f"{written_text(v.args[0])})"
            self.d.add("E501", f"{written}: need 0 < low < high" if kind == "loguniform"
                       else f"{written}: need low < high", v.span, hint)
            return False
        if kind != "int_uniform":
            return not self._fractional_for_integer(v, path, annotation, lo, hi)
        if not (float(lo).is_integer() and float(hi).is_integer()):
            self.d.add("E501", f"{v.name}({number_text(lo)}, {number_text(hi)}) draws whole numbers, so its "
                       "ends must be whole numbers", v.span,
                       f"for example {v.name}({math.ceil(lo)}, {max(math.floor(hi), math.ceil(lo) + 1)})")
            return False
        return True

    def _fractional_for_integer(self, v: A.Call, path: str, annotation: Any, lo: float, hi: float) -> bool:
        """Report uniform()/loguniform() for a whole-number argument (units, kernel sizes): a tuner would
        draw 7.31 units. True when reported."""
        if not wants_integer(annotation):
            return False
        field = path.rsplit(".", 1)[-1]
        self.d.add("E501", f"{v.name}() draws fractional numbers, but {field} takes whole numbers",
                   v.name_span, f"use int_uniform({number_text(lo)}, {number_text(hi)}) for a whole number")
        return True

    def _range_for_names(self, v: A.Call, path: str, family: str) -> bool:
        """Report a range where a catalogue name belongs (`activation=uniform(0, 1)`): it draws numbers, and
        no number is an activation (once, rather than each end as an option it may choose). True (always)."""
        word = FAMILY_WORDS.get(family, family)
        field = path.rsplit(".", 1)[-1]
        names = catalog.CANONICAL[family][:2]
        self.d.add("E501", f"{v.name}() draws numbers, but {field} takes {article(word)} {word}", v.name_span,
                   f"choose among {word}s: choice({', '.join(names)})")
        return True

    def _nested_space(self, v: A.Call, env: dict) -> bool:
        """Report a search space inside another (`choice(4, choice(8, 16))`): a tuner draws one value per
        call, so the inner call would never be searched. True when there is one."""
        found = False
        for a in v.args:
            inner = env.get(a.name, a) if isinstance(a, A.Name) else a
            if isinstance(inner, A.Call) and inner.name in SEARCH_FUNCS:
                hint = ("list every option in one choice(...)" if v.name == inner.name == "choice"
                        else "give plain numbers or names here")
                self.d.add("E501", "a search space cannot contain another search space", inner.name_span,
                           hint)
                found = True
        return found

    def _call_option(self, v: A.Call, env: dict, family: str | None) -> bool:
        """Report each call among a search space's options that cannot be one: a call where a catalogue item
        belongs is a choice's option (`optimizer: choice(SGD(lr=0.1, momentum=0.9), Adam(lr=1e-3))`), but not
        a range's end, not where a plain value belongs (`units`), and not one that holds a search space of
        its own (a tuner draws one value per call: the inner one would be searched only when its option is
        drawn). True when there is one."""
        calls = [c for c in (env.get(a.name, a) if isinstance(a, A.Name) else a for a in v.args)
                 if isinstance(c, A.Call) and c.name not in SEARCH_FUNCS]
        found = False
        for c in calls:
            inner = inner_space(c, env)
            if v.name == "choice" and family is not None and inner is None:
                continue
            found = True
            if inner is not None:
                self.d.add("E501", f"a choice's option cannot hold a search space: {c.name}() holds "
                           f"{inner.name}()", inner.name_span,
                           f"fix {c.name}()'s arguments in this choice, or search them in a spec of its own")
            elif v.name == "choice":
                self.d.add("E501", f"a search space chooses plain values here, not a call to '{c.name}'",
                           c.name_span, "list plain values here: choice(32, 64, 128)")
            else:
                self.d.add("E501", f"{v.name}() takes two numbers, not a call to '{c.name}'", c.name_span,
                           "give plain numbers here")
        return found

    def chosen_option(self, v: A.Value, env: dict, value: Any) -> tuple[str, A.Value] | None:
        """(the search-space call's name, the argument `value` is written as in it) when the value written
        `v` (or the block argument it names) is a search-space call that took `value`: its first option, its
        low end, or a trial's override; None otherwise. An argument that value does not fit is reported
        there, as the other options are (check_alternatives), rather than at the whole call."""
        call = env.get(v.name, v) if isinstance(v, A.Name) else v
        if not (isinstance(call, A.Call) and call.name in SEARCH_FUNCS):
            return None
        at = (call.name_span.line, call.name_span.col)
        space = next((s for s in reversed(self.found) if s.at == at), None)
        if space is None:
            return None
        if space.kind == "choice":
            index = next((i for i, o in enumerate(space.options) if _same_option(o, value)), None)
        else:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ends = (space.low, space.high)
            index = next((i for i, end in enumerate(ends) if number and end == value), None)
        if index is None or index >= len(call.args):
            return None
        return call.name, call.args[index]

    def check_alternatives(self, cls, converted: dict, path: str, shown: str,
                            written: dict[str, str]) -> None:
        """Every value a search space in these arguments may take, not only the one resolved, is checked now:
        `padding=choice(same, bogus)` is a spec error at `dlc check`, not a failed trial during `dlc tune`.
        Each option is tried with the other arguments as resolved."""
        for fname in [f for f in converted if f"{path}.{f}" in self.alternatives]:
            call, others = self.alternatives.pop(f"{path}.{fname}")
            fam = family_of_annotation(cls.model_fields[fname].annotation)
            at = (call.name_span.line, call.name_span.col)
            for option, arg in others:
                value = option
                if fam is not None and isinstance(option, str):
                    value = self._bind_option(at, option, arg, fam, f"{path}.{fname}")
                    if value is MISSING:
                        continue  # (an unknown name or a call's error, reported by bind)
                try:
                    cls(**{**converted, fname: value})
                except ValidationError as e:
                    errs = [err for err in e.errors() if [x for x in err["loc"] if isinstance(x, str)][:1]
                            in ([fname], [])]
                    if errs:
                        key = written.get(fname, fname)
                        self.d.add("E501", f"{call.name}() may choose {option_shown(arg, option)}, which is "
                                   f"not a valid '{key}' of {shown}", arg.span,
                                   explain(errs, cls.model_fields[fname].annotation))


def _is_call_option(a: A.Value, env: dict) -> bool:
    value = env.get(a.name, a) if isinstance(a, A.Name) else a
    return isinstance(value, A.Call) and value.name not in SEARCH_FUNCS


def inner_space(v: A.Value, env: dict) -> A.Call | None:
    """The first search-space call inside `v` (a block argument it names followed), or None."""
    if isinstance(v, A.Name) and v.name in env:
        return inner_space(env[v.name], {})
    if isinstance(v, A.Call) and v.name in SEARCH_FUNCS:
        return v
    items = [*v.args, *(k.value for k in v.kwargs)] if isinstance(v, A.Call) else \
        [*v.items, *(k.value for k in v.kwargs)] if isinstance(v, (A.Tuple, A.List)) else []
    return next((found for i in items if (found := inner_space(i, env)) is not None), None)


def _option_key(a: Any) -> tuple[bool, Any]:
    """What makes two search-space values the same option (True is not 1, 1 is 1.0), hashable."""
    return isinstance(a, bool), a


def _same_option(a: Any, b: Any) -> bool:
    return _option_key(a) == _option_key(b)


def _first_repeat(raw: list) -> tuple[int, int] | None:
    """(where an option listed twice is first, where again), in one pass: a choice of a thousand options is
    checked once per option of every space by `dlc check`."""
    seen: dict[tuple[bool, Any], int] = {}
    for i, r in enumerate(raw):
        if _option_key(r) in seen:
            return seen[_option_key(r)], i
        seen[_option_key(r)] = i
    return None


def _is_parameter(arg: A.Value, env: dict) -> bool:
    return isinstance(arg, A.Name) and arg.name in env


def _described(arg: A.Value, value: Any, env: dict) -> str:
    """An option as written; a block's parameter by the value given for it and where (`f = 8 (given on line
    12)`)."""
    shown = option_shown(arg, value)
    if isinstance(arg, A.Name) and arg.name in env:
        shown += f" (given on line {env[arg.name].span.line})"
    return shown


def _bound_key(bound: Any) -> str | None:
    """What makes two bound catalogue options the same (their class and every argument, defaults included;
    not a layer's place in the text), hashable; None for an option that did not bind (its error is reported
    where it is bound)."""
    if bound is MISSING or not hasattr(bound, "model_dump_json"):
        return None
    return f"{type(bound).__module__}.{type(bound).__qualname__}:{bound.model_dump_json(exclude={'at'})}"
