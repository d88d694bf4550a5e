"""Each option of each search space checked in context, as a trial will see it.

A trial of `dlc tune` compiles the spec with one value per search space (its overrides), and fails when that
spec has an error. So `loss: choice(categorical_crossentropy, mse)` on a classification set is a spec error:
every trial that draws mse fails. `dlc check` resolves the spec once with every space at its first option (a
range at its low end); here it is resolved again once per other option (a range: its high end), the other
spaces at their first value, with the same overrides a trial uses, and whatever that finds and the spec as
checked does not is reported at the option. One resolve per option, not per combination: an option that
conflicts only with another space's option is left to the trial. That includes the other spaces' first values:
an error that goes away when one other space takes another value (a kernel too long for padding=valid, where
padding may be same) is warning W008, naming the pair, since the trials that draw other pairs train.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import ast as A
from .diagnostics import Diagnostic, Diagnostics, Span
from .resolve import resolve
from .schedulelength import SCHEDULE_LENGTH_PATHS
from .spec import Spec
from .training import SearchSpace
from .wording import option_shown

# the most options checked in one spec: a resolve takes 1 to 5 ms (a small CNN), so `dlc check` stays within
# a fraction of a second even with many long choices (the rest are not checked here; their trials still are)
MAX_OPTION_CHECKS = 64
# ... and the most values resolved for them in all: a resolve reads every value of the spec, so a spec with a
# choice of 40,000 options (a 256 KB file) gets a few resolves, not 64 of 40,000 values each (a minute)
MAX_OPTION_CHECK_VALUES = 64 * 2_000


def check_each_option(tree: A.File, spec: Spec, d: Diagnostics, base_dir: Path) -> None:
    """Report what each other option of each search space of `spec` (compiled from `tree`) would make a spec
    error or warning, at that option: "when loss is mse: ...". An error that another space's other value
    avoids is a warning (W008) naming both: only the trials that draw that pair fail. An error of the spec as
    checked that another value of a space avoids is reported at that space's first value, which causes it."""
    known = {_key(x) for x in d.items}
    spans = {x.span for x in d.items if x.span is not None}
    calls = A.calls_by_position(tree)
    most = _option_checks(tree)
    options = list(itertools.islice(_other_options(spec.search_spaces, calls), most + 1))
    base_errors = _resolved_errors(tree, base_dir, d)
    causes: dict[int, list[SearchSpace]] = {}  # a base error -> the spaces another value of which avoids it
    budget = [most]  # the resolves left for looking for a pair without the error
    for space, value, arg in options[:most]:
        resolved, found = _resolved(tree, base_dir, {space.at: value})
        if resolved:
            _note_causes(base_errors, found, space, causes)
        if arg.span in spans:
            continue  # (the option itself is reported already: it does not fit its argument)
        new = [x for x in found if _key(x) not in known and not _judged_at_every_value(x, space)]
        pair = _pair_without_errors(tree, base_dir, space, value, known, budget, spec.search_spaces, calls) \
            if _has_error(new) else None
        for x in new:
            when = f"when {space.path} is {option_shown(arg, value)}"
            at = _within(x.span, arg.span)
            if pair is not None and x.severity == "error":
                d.warn("W008", f"{when} and {pair}: {x.message}", at,
                       _hint(x, at, "only the trials that draw both fail"))
            else:
                d.add(x.code, f"{when}: {x.message}", at, _hint(x, at), x.severity)
    if len(options) <= most:  # (every other value was tried: the causes found are all)
        for i, spaces in causes.items():
            _report_at_cause(base_errors[i], spaces, calls, d)


def _resolved_errors(tree: A.File, base_dir: Path, d: Diagnostics) -> list[Diagnostic]:
    """The errors of `d` that resolving the spec finds, which another value of a space may avoid: not one
    found while reading it (`int_uniform(1, 1e400)`: an overflow, which no override resolve meets again, was
    blamed on the first other space). Resolved again only when there are errors (a spec that resolves with
    some is rare)."""
    errors = [x for x in d.items if x.severity == "error"]
    if not errors:
        return []
    _, found = _resolved(tree, base_dir, {})
    again = {_key(x) for x in found}
    return [x for x in errors if _key(x) in again]


def _option_checks(tree: A.File) -> int:
    """How many options may be resolved again: MAX_OPTION_CHECKS, fewer for a spec so large that as many
    resolves would read more than MAX_OPTION_CHECK_VALUES values."""
    return max(1, min(MAX_OPTION_CHECKS, MAX_OPTION_CHECK_VALUES // max(1, _values_in(tree))))


def _values_in(node) -> int:
    """The number of values (numbers, names, calls, ...) written in an AST node and below it."""
    if isinstance(node, list):
        return sum(_values_in(x) for x in node)
    if isinstance(node, A.File):
        return _values_in(node.models) + _values_in(node.blocks)
    if isinstance(node, (A.Model, A.Section, A.BlockDef)):
        return _values_in(node.body)
    if isinstance(node, A.LayerStmt):
        return _values_in(node.call)
    if isinstance(node, (A.Assign, A.Kwarg)):
        return _values_in(node.value)
    if isinstance(node, A.Call):
        return 1 + _values_in(node.args) + _values_in(node.kwargs)
    if isinstance(node, (A.Tuple, A.List)):
        return 1 + _values_in(node.items) + _values_in(node.kwargs)
    return 1


def _note_causes(base_errors: list[Diagnostic], found: list[Diagnostic], space: SearchSpace,
                 causes: dict[int, list[SearchSpace]]) -> None:
    """Record `space` against each error of the spec as checked that is gone (no error of its code at its
    place) with `space` at another value."""
    left = {(x.code, x.span) for x in found if x.severity == "error"}
    for i, e in enumerate(base_errors):
        if (e.code, e.span) not in left and space not in causes.setdefault(i, []):
            causes[i].append(space)


def _report_at_cause(e: Diagnostic, spaces: list[SearchSpace], calls: dict[tuple[int, int], A.Call],
                     d: Diagnostics) -> None:
    """An error of the spec as checked, which another value of each of `spaces` avoids, again at the first
    one's first value, naming them all ("when data.split.val is 0: ..."). It stays an error even when it
    takes two spaces' first values (a pairing that trials may avoid): the spec as checked, which `dlc check`
    summarises, is that pairing."""
    firsts = [(s, calls[s.at].args[0]) for s in spaces]
    at = firsts[0][1].span
    note = "dlc check takes each space's first value: list one that fits first" if len(spaces) > 1 else None
    d.drop(e)
    d.add(e.code, "when " + " and ".join(f"{s.path} is {option_shown(arg, _checked_with(s))}"
                                         for s, arg in firsts)
          + f": {e.message}", at, _hint(e, at, note), e.severity)


def _pair_without_errors(tree: A.File, base_dir: Path, space: SearchSpace, value: Any, known: set[tuple],
                         budget: list[int], spaces: list[SearchSpace], calls: dict[tuple[int, int], A.Call]
                         ) -> str | None:
    """How another space stands where `space` = `value` fails ("padding is valid"), when one of that space's
    other values lets the spec resolve without a new error (`Conv1D(4, choice(3, 9), padding=choice(valid,
    same))`: a kernel of 9 fails only with valid padding). None when no other value tried does (at most
    `budget[0]` resolves in all)."""
    for other, other_value, _ in _other_options(spaces, calls):
        if other.at == space.at:
            continue
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        _, found = _resolved(tree, base_dir, {space.at: value, other.at: other_value})
        if not _has_error([x for x in found if _key(x) not in known]):
            return f"{other.path} is {option_shown(calls[other.at].args[0], _checked_with(other))}"
    return None


def _within(found: Span | None, option: Span) -> Span:
    """Where to report what an option causes: at the part of the option it is about (the `-1` of
    `SGD(lr=-1)`, as the binder reports an option it binds), else at the whole option."""
    if found is None:
        return option
    starts_in = (found.line, found.col) >= (option.line, option.col)
    ends_in = (found.end_line, found.end_col) <= (option.end_line, option.end_col)
    return found if starts_in and ends_in else option


def _checked_with(space: SearchSpace) -> Any:
    """The value the spec as checked gives `space`: its first option, or its low end."""
    return space.options[0] if space.kind == "choice" else space.low


def _judged_at_every_value(x: Diagnostic, space: SearchSpace) -> bool:
    """Whether `x` is a W010 of a space that check_schedule_length judges at each of its values already (and
    says once, naming them)."""
    return x.code == "W010" and space.path in SCHEDULE_LENGTH_PATHS


def _has_error(items: list[Diagnostic]) -> bool:
    return any(x.severity == "error" for x in items)


def _other_options(spaces: list[SearchSpace], calls: dict[tuple[int, int], A.Call]
                   ) -> Iterator[tuple[SearchSpace, Any, A.Value]]:
    """(space, a value a trial may give it other than the one the spec was checked with, where that value is
    written): a choice's other options, a range's high end, as the tuner draws them (an int_uniform an int,
    uniform and loguniform a float). A call used more than once is one space (one override sets every use)."""
    seen: set[tuple[int, int]] = set()
    for s in spaces:
        call = calls.get(s.at)
        if call is None or s.at in seen:
            continue
        seen.add(s.at)
        if s.kind == "choice":
            yield from ((s, option, arg) for option, arg in zip(s.options[1:], call.args[1:], strict=True))
        else:
            low, high = s.low, s.high
            assert low is not None and high is not None  # (a range always has both)
            yield s, int(high) if s.kind == "int_uniform" else float(high), call.args[1]


def _resolved(tree: A.File, base_dir: Path, overrides: dict) -> tuple[bool, list[Diagnostic]]:
    """Whether the spec with `overrides` resolves to a Spec (so that every check ran, as for a trial), and
    what it finds."""
    found = Diagnostics()
    spec = resolve(tree, found, base_dir, overrides)
    return spec is not None, found.items


def _key(x: Diagnostic) -> tuple:
    return x.code, x.message, x.span


def _hint(found: Diagnostic, at: Span, note: str | None = None) -> str | None:
    """The rule's own hint, the line it is about when that is not the option's, and `note`."""
    where = f"see line {found.span.line}" if found.span is not None and found.span.line != at.line else None
    return "; ".join(x for x in (found.hint_text(), where, note) if x) or None
