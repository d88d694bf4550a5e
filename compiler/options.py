"""Each option of each search space checked in context, as a trial will see it.

A trial of `dlc tune` compiles the spec with one value per search space (its overrides), and fails when that
spec has an error. So `loss: choice(categorical_crossentropy, mse)` on a classification set is a spec error:
every trial that draws mse fails. `dlc check` resolves the spec once with every space at its first option (a
range at its low end); here it is resolved again once per other option (a range: its high end), the other
spaces at their first value, with the same overrides a trial uses, and whatever that finds and the spec as
checked does not is reported at the option. One resolve per option, not per combination: an option that
conflicts only with another space's option is left to the trial.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import ast as A
from .diagnostics import Diagnostic, Diagnostics, Span
from .resolve import resolve
from .spec import Spec
from .training import SearchSpace
from .wording import literal, source_text

# the most options checked in one spec: a resolve takes 1 to 5 ms (a small CNN), so `dlc check` stays within
# a fraction of a second even with many long choices (the rest are not checked here; their trials still are)
MAX_OPTION_CHECKS = 64


def check_each_option(tree: A.File, spec: Spec, d: Diagnostics, base_dir: Path) -> None:
    """Report what each other option of each search space of `spec` (compiled from `tree`) would make a spec
    error or warning, at that option: "when loss is mse: ..."."""
    known = {_key(x) for x in d.items}
    spans = {x.span for x in d.items if x.span is not None}
    options = _other_options(spec.search_spaces, A.calls_by_position(tree))
    for space, value, arg in itertools.islice(options, MAX_OPTION_CHECKS):
        if arg.span in spans:
            continue  # (the option itself is reported already: it does not fit its argument)
        for found in _new_findings(tree, base_dir, {space.at: value}, known):
            d.add(found.code, f"when {space.path} is {_shown(arg, value)}: {found.message}", arg.span,
                  _hint(found, arg.span), found.severity)


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


def _new_findings(tree: A.File, base_dir: Path, overrides: dict, known: set[tuple]) -> list[Diagnostic]:
    """What resolving the spec with `overrides` finds (every check, as for a trial) that is not in `known`."""
    found = Diagnostics()
    resolve(tree, found, base_dir, overrides)
    return [x for x in found.items if _key(x) not in known]


def _key(x: Diagnostic) -> tuple:
    return x.code, x.message, x.span


def _shown(arg: A.Value, value: Any) -> str:
    """An option as written; a block's parameter (`choice(n, 8)` in its body) by the value given for it."""
    if isinstance(arg, A.Name) and arg.name != value:
        return f"{arg.name} = {literal(value)}"
    text = source_text(arg)
    return literal(value) if text == "..." else text


def _hint(found: Diagnostic, at: Span) -> str | None:
    """The rule's own hint, and the line it is about when that is not the option's."""
    hint = found.hint_text()
    if found.span is None or found.span.line == at.line:
        return hint
    where = f"see line {found.span.line}"
    return f"{hint}; {where}" if hint else where
