"""W010: a learning-rate schedule that needs more epochs than the training has (a cosine that stops part of
the way down, a warm-up that never ends, a step that never comes, a plateau whose patience outlasts the
training), for every value a search space of the epochs or of the schedule's lengths may take.

The spec as checked takes each search space's first option (a range's low end); judged on that alone, `epochs:
choice(5, 50)` with cosine(epochs=20) would warn as if training always stopped after 5 epochs, and `epochs:
choice(50, 5)` would warn only through options.py's one-option-at-a-time resolves, once per option. Here the
rule is judged at every combination of those spaces' values and said once, naming the values it fires for:
"when train.epochs is 5 or 8: ...". A range (int_uniform) is judged at its ends and at the whole numbers where
the rule starts or stops firing, found by bisection (each rule is monotone in each length), so that "5 to 19"
is exact; when two ranges are searched, each is judged at its ends only (where one range's pieces end depends
on the other's value). options.py leaves W010 of these spaces to this check."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ast as A
from .diagnostics import Diagnostics, Span
from .training import CosineDecay, Plateau, SearchSpace, StepDecay, Warmup
from .wording import literal, number_text

# the arguments whose values decide W010: a search space at one of them is judged at each of its values
SCHEDULE_LENGTH_PATHS = ("train.epochs", "schedule.epochs", "schedule.every", "schedule.patience",
                         "schedule.then.epochs", "schedule.then.every")

# the most combinations of those spaces' values judged (each some microseconds, and options.py resolves the
# spec again per option): beyond it only the values the spec was checked with are, as without search spaces
MAX_COMBINATIONS = 512

# the most combinations of the other spaces' values at which a range is bisected for where the rule starts or
# stops firing; beyond it the range is judged at its two ends only
MAX_BISECTED = 64

# the most firing combinations for which every way of grouping them into clauses is tried (the shortest
# said): beyond it they are grouped by the first space's values only
MAX_REGROUPED = 256

# the most clauses said in one warning: the rest are counted
MAX_LISTED = 4


@dataclass
class Finding:
    """One W010 as the rule words it for one set of values."""

    message: str
    span: Span | None
    hint: str | None


@dataclass
class Axis:
    """A search space of SCHEDULE_LENGTH_PATHS and the values it is judged at. A range's value stands for the
    whole numbers of `stands_for[value]` (low, high), for each of which the rule says the same."""

    space: SearchSpace
    values: list[Any]
    stands_for: dict[Any, tuple[int, int]] | None = None


Values = tuple[Any, ...]  # one value per axis
Clause = list[tuple[int, list[Any]]]  # (axis, the values of it named): the values named all together


def check_schedule_length(spec, call: A.Value, calls: dict[tuple[int, int], A.Call], d: Diagnostics) -> None:
    """W010 for `spec`'s schedule (written as `call`), judged at every value of the search spaces of
    SCHEDULE_LENGTH_PATHS (`calls`: the search-space calls by the position of their name)."""
    sched, lr = spec.schedule, spec.optimizer.learning_rate
    spaces = [s for p in SCHEDULE_LENGTH_PATHS if (s := _space_at(spec.search_spaces, p)) is not None]

    def judged(values: Values) -> Finding | None:
        s, epochs = _with_values(sched, spec.train.epochs, spaces, values)
        return schedule_length_problem(s, epochs, lr, call)

    axes = [_axis(s) for s in spaces]
    if not axes or _combinations(axes) > MAX_COMBINATIONS:
        found = schedule_length_problem(sched, spec.train.epochs, lr, call)
        if found is not None:
            d.warn("W010", found.message, found.span, found.hint)
        return
    ranges = [i for i, a in enumerate(axes) if a.stands_for is not None]
    if len(ranges) == 1:  # (two ranges' pieces would depend on each other: they are judged at their ends)
        axes[ranges[0]] = _bisected(axes, ranges[0], lambda v: judged(v) is not None)
    findings = {v: f for v in itertools.product(*(a.values for a in axes)) if (f := judged(v)) is not None}
    if findings:
        _warn_when(axes, findings, calls, d)


def _warn_when(axes: list[Axis], findings: dict[Values, Finding], calls: dict[tuple[int, int], A.Call],
               d: Diagnostics) -> None:
    """One W010 naming the values it fires for, in the words of the first combination that fires, at that
    combination's value of the first space named (at the rule's own place when every value fires)."""
    first_values, first = next(iter(findings.items()))
    firing = list(findings)
    everywhere = len(firing) == _combinations(axes)
    if everywhere:
        clauses: list[Clause] = [[(i, a.values) for i, a in enumerate(axes)]]
        at = first.span
    else:
        clauses = _clauses(set(firing), firing, axes, list(range(len(axes))))
        i = clauses[0][0][0]
        at = _value_span(axes[i], first_values[i], calls) or first.span
    where = f"see line {first.span.line}" if first.span is not None and at is not None \
        and first.span.line != at.line else None
    hint = "; ".join(x for x in (first.hint, where) if x) or None
    d.warn("W010", f"when {_condition_text(axes, clauses, everywhere)}: {first.message}", at, hint)


def schedule_length_problem(sched, epochs: int, lr: float, call: A.Value) -> Finding | None:
    """The W010 of schedule `sched` (written as `call`) over `epochs` epochs of training from lr `lr`, or
    None when it fits. The lr each epoch uses is the schedule's lr_at, epochs counted from 0."""
    where = call.name_span if isinstance(call, A.Call) else call.span
    trains = f"training stops after {epochs} epoch{'s' if epochs != 1 else ''}"
    if isinstance(sched, Warmup):
        return _warmup_problem(sched, epochs, lr, call, where, trains)
    if isinstance(sched, Plateau):
        at = A.argument(call, "patience", None)
        if epochs > sched.patience + 1:
            return None
        return Finding(f"plateau(patience={sched.patience}) never lowers the lr: {trains}, and the earliest "
                       f"epoch it can lower it for is epoch {sched.patience + 2} (the first epoch sets the "
                       f"best {sched.monitor}, then {sched.patience} without improvement)",
                       at.span if at is not None else where,
                       f"use a patience below {epochs - 1}, or train for more epochs" if epochs > 1 else
                       "train for more epochs: a plateau lowers the lr for epoch 2 at the earliest "
                       "(patience=0)")
    return _decay_problem(sched, lr, epochs, trains, call, where)


def _warmup_problem(sched: Warmup, epochs: int, lr: float, call: A.Value, where: Span | None,
                    trains: str) -> Finding | None:
    """A warm-up that never ends, a `then` that never starts, or a `then` too long for what is left."""
    at = A.argument(call, "epochs", 0)
    then = A.argument(call, "then", 1)
    span = at.span if at is not None else where
    if epochs < sched.epochs:
        # (the lr's numbers in the hint: a searched lr's other values would repeat the warning)
        return Finding(f"the warm-up never ends: {trains}, {number_text(epochs / sched.epochs)} of the way "
                       f"through warmup(epochs={sched.epochs})"
                       + (f": then={sched.then.kind}(...) never starts" if sched.then is not None else ""),
                       span, f"the lr ends at {lr * epochs / sched.epochs:.3g}, not the optimizer's "
                       f"{number_text(lr)}: warm up for fewer epochs, or train for more than {sched.epochs}")
    if sched.then is None:
        return None
    if epochs == sched.epochs:
        return Finding(f"then={sched.then.kind}(...) never starts: the warm-up takes all {epochs} epochs of "
                       "the training", span,
                       f"warm up for fewer epochs, or train for more than {sched.epochs}")
    return _decay_problem(sched.then, lr, epochs - sched.epochs,
                          f"{trains}, {epochs - sched.epochs} after the warm-up", then,
                          then.name_span if isinstance(then, A.Call) else span)


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def _decay_problem(sched, lr: float, epochs: int, trains: str, call: A.Value | None,
                   where: Span | None) -> Finding | None:
    """A cosine or step schedule (alone, or after a warm-up) over `epochs` epochs of training."""
    if isinstance(sched, CosineDecay) and epochs < sched.epochs:
        at = A.argument(call, "epochs", 0)
        last = sched.lr_at(epochs - 1, lr)
        return Finding(f"cosine(epochs={sched.epochs}) is longer than the training: {trains}, "
                       f"{number_text(round(epochs / sched.epochs, 3))} of the way through the cosine",
                       at.span if at is not None else where,
                       f"the lr ends at {last:.3g} (from {number_text(lr)}), not min_lr "
                       f"{number_text(sched.min_lr)}: use cosine(epochs={epochs}) to decay over the whole "
                       "training")
    if isinstance(sched, StepDecay) and epochs <= sched.every:
        at = A.argument(call, "every", 0)
        every = _epochs(sched.every)
        # (after a warm-up, `epochs` and the step count from the warm-up's end: "1 after the warm-up")
        more = f"train for more than {every}"
        if "after the warm-up" in trains:
            more += " after the warm-up"
        return Finding(f"step(every={sched.every}) never lowers the lr: {trains}, and its first step comes "
                       f"after {every}", at.span if at is not None else where,
                       f"step every {_epochs(max(epochs // 2, 1))}, or {more}" if epochs > 1 else more)
    return None


# ------------------------------------------------------------------------------------- searched lengths


def _space_at(spaces: list[SearchSpace], path: str) -> SearchSpace | None:
    return next((s for s in spaces if s.path == path), None)


def _axis(space: SearchSpace) -> Axis:
    """A choice's options; a range's two ends (an int_uniform's, each standing for itself until bisected)."""
    if space.kind == "choice":
        return Axis(space, list(space.options))
    assert space.low is not None and space.high is not None  # (a range always has both)
    if space.kind != "int_uniform":
        return Axis(space, [_whole(space.low), _whole(space.high)])
    low, high = int(space.low), int(space.high)
    return Axis(space, [low, high], {low: (low, low), high: (high, high)})


def _whole(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _combinations(axes: list[Axis]) -> int:
    return math.prod(len(a.values) for a in axes)


def _with_values(sched, epochs: int, spaces: list[SearchSpace], values: Values) -> tuple[Any, Any]:
    """(schedule, epochs) with each space's argument set to its value in `values`."""
    for space, value in zip(spaces, values, strict=True):
        head, _, field = space.path.rpartition(".")
        if head == "train":
            epochs = value
        elif head == "schedule":
            sched = sched.model_copy(update={field: value})
        elif head == "schedule.then" and getattr(sched, "then", None) is not None:
            sched = sched.model_copy(update={"then": sched.then.model_copy(update={field: value})})
    return sched, epochs


def _bisected(axes: list[Axis], i: int, fires: Callable[[Values], bool]) -> Axis:
    """Range axis `i` cut where the rule starts or stops firing with any combination of the other axes'
    values (the rule is monotone in the range's value, so each cut is found by bisection), each piece judged
    at its first whole number: what is said of it is then said of every number in it."""
    low, high = axes[i].values[0], axes[i].values[-1]
    others = [a.values if j != i else [low] for j, a in enumerate(axes)]
    if math.prod(len(v) for v in others) > MAX_BISECTED:
        return axes[i]
    cuts = {low}
    for combo in itertools.product(*others):
        def at(v: int, combo: Values = combo) -> bool:
            return fires(combo[:i] + (v,) + combo[i + 1:])

        at_low, at_high = at(low), at(high)
        if at_low and not at_high:
            cuts.add(_last_true(low, high, at) + 1)
        elif at_high and not at_low:
            cuts.add(_first_true(low, high, at))
    starts = sorted(cuts)
    ends = [s - 1 for s in starts[1:]] + [high]
    return Axis(axes[i].space, starts, dict(zip(starts, zip(starts, ends, strict=True), strict=True)))


def _last_true(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """The largest v in [low, high] with ok(v), where ok(low) and ok holds up to a point."""
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if ok(mid) else (low, mid - 1)
    return low


def _first_true(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """The smallest v in [low, high] with ok(v), where ok(high) and ok holds from a point on."""
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid + 1, high)
    return high


def _clauses(every: set[Values], firing: list[Values], axes: list[Axis], left: list[int]) -> list[Clause]:
    """The `firing` combinations (of `every` that fire) as few clauses of values of the axes `left` as this
    finds: an axis whose value does not change whether they fire is left out; values that fire with every
    value of the others are one clause ("train.epochs is 5 or 8"); else one clause per value of an axis that
    decides (each tried, the shortest kept), those with the same rest merged."""
    deciding = [i for i in left
                if any(c[:i] + (v,) + c[i + 1:] not in every for c in firing for v in axes[i].values)]
    if not deciding:
        return [[]]
    seen = list(dict.fromkeys(tuple(c[i] for i in deciding) for c in firing))
    per_axis = [list(dict.fromkeys(t[k] for t in seen)) for k in range(len(deciding))]
    if len(seen) == math.prod(len(v) for v in per_axis):  # (a product: each axis's values said once)
        return [list(zip(deciding, per_axis, strict=True))]
    heads = deciding if len(firing) <= MAX_REGROUPED else deciding[:1]
    return min((_grouped_by(head, every, firing, axes, left) for head in heads),
               key=lambda cs: (len(cs), sum(len(c) for c in cs)))


def _grouped_by(head: int, every: set[Values], firing: list[Values], axes: list[Axis],
                left: list[int]) -> list[Clause]:
    """_clauses with one clause per value of axis `head` (those whose other values are the same merged),
    each clause's axes in the order of SCHEDULE_LENGTH_PATHS."""
    rest = [i for i in left if i != head]
    out: list[Clause] = []
    for value in dict.fromkeys(c[head] for c in firing):
        for clause in _clauses(every, [c for c in firing if c[head] == value], axes, rest):
            same = next((x for x in out if [y for y in x if y[0] != head] == clause), None)
            if same is not None:
                dict(same)[head].append(value)
            else:
                out.append(sorted([(head, [value]), *clause], key=lambda y: y[0]))
    return out


def _condition_text(axes: list[Axis], clauses: list[Clause], everywhere: bool) -> str:
    """ "train.epochs is 5 or 8", "train.epochs is 5 to 19 and schedule.epochs is 150", clauses joined by
    "or" (MAX_LISTED of them, then how many more). A range named from end to end goes unsaid in a clause that
    names another space, unless the rule fires `everywhere`."""
    listed = []
    for clause in clauses[:MAX_LISTED]:
        terms = [(axes[i], _values_text(axes[i], values)) for i, values in clause]
        named = [(a, text) for a, text in terms if everywhere or text != _values_text(a, a.values)] or terms
        listed.append(" and ".join(f"{a.space.path} is {text}" for a, text in named))
    more = len(clauses) - MAX_LISTED
    rest = f", or {more} other combination{'s' if more > 1 else ''}" if more > 0 else ""
    return ", or ".join(listed) + rest


def _values_text(axis: Axis, values: list[Any]) -> str:
    """ "5 or 8"; of a range, the whole numbers its values stand for, adjoining ones merged: "5 to 19"."""
    if axis.stands_for is None:
        return " or ".join(literal(v) for v in values)
    merged: list[list[int]] = []
    for a, b in sorted(axis.stands_for[v] for v in values):
        if merged and merged[-1][1] + 1 == a:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return " or ".join(str(a) if a == b else f"{a} to {b}" for a, b in merged)


def _value_span(axis: Axis, value: Any, calls: dict[tuple[int, int], A.Call]) -> Span | None:
    """Where `value` of an axis is written: the choice's option; the range's end its numbers reach, else the
    whole range."""
    call = calls.get(axis.space.at)
    if call is None:
        return None
    if axis.stands_for is None:
        index = next((k for k, v in enumerate(axis.values) if v == value), None)
    else:
        a, b = axis.stands_for[value]
        index = 0 if a == axis.values[0] else 1 if b == axis.stands_for[axis.values[-1]][1] else None
    if index is None or index >= len(call.args):
        return call.span
    return call.args[index].span
