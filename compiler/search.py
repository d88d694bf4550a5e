"""Search spaces as a tuner sees them, with no framework and no Optuna: one parameter per search-space call,
grid points, the literal text of a chosen value, the concrete spec with every call replaced by its value, the
coarse-to-fine narrowing of `dlc tune --refine`, and the spec checks of the `search` block.

Rules (also in the README):
- A parameter is one search-space call in the text. A call used more than once (inside a block used twice, or
  a repeated layer) is one parameter: every use takes the same value. Its name is the path of its first use
  (`layers[0].units`, `optimizer.learning_rate`, `train.batch_size`).
- Grid search needs finite sets: `choice` is its options; `int_uniform(lo, hi)` (both ends included) is every
  integer when there are at most GRID_POINTS of them, else GRID_POINTS evenly spaced integers; `uniform` is
  GRID_POINTS evenly spaced values and `loguniform` GRID_POINTS values evenly spaced in log scale, both ends
  included, rounded to 3 significant digits.
- Refine (coarse to fine): the top trials are the best quarter of the completed trials of the earlier run (at
  least 3, or all of them when fewer). Each numeric range narrows to the smallest range holding the top
  trials' values (`loguniform` in log scale); when they all took one value, the range is that value ± 5% of
  the old range (× / ÷ (high/low)^0.05 in log scale; ± 1 for integers), clipped to the old range. A `choice`
  keeps the options the top trials took, in their order in the spec.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeGuard

from . import ast as A
from .datarows import home_expanded
from .diagnostics import Diagnostics, Span, did_you_mean
from .syntax import quote
from .training import Objective, Search, higher_is_better

GRID_POINTS = 5
TOP_FRACTION = 0.25
TOP_MIN = 3


@dataclass
class Space:
    """One tunable parameter: a search-space call of the spec, deduplicated by its position."""

    name: str
    kind: str  # choice | uniform | loguniform | int_uniform
    at: tuple[int, int]
    end: tuple[int, int]
    options: list[Any] = field(default_factory=list)
    option_texts: list[str] = field(default_factory=list)  # each option as written in the spec
    low: float | None = None
    high: float | None = None

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric space (uniform, loguniform, int_uniform); a choice has none."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.kind} space '{self.name}' has no low and high")
        return self.low, self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(self.option_texts)})"
        low, high = self.bounds()
        if self.kind == "int_uniform":
            return f"int_uniform({int(low)}, {int(high)})"
        return f"{self.kind}({_num(low)}, {_num(high)})"

    def brief(self, most: int = 8) -> str:
        """describe() for a line of a report: a choice of more than `most` options shows its first ones, the
        last and the count (a choice of 2,000 widths made `dlc check`'s summary line 10,000 characters)."""
        texts = self.option_texts
        if self.kind != "choice" or len(texts) <= most:
            return self.describe()
        return f"choice({', '.join(texts[:most - 2])}, …, {texts[-1]}: {len(texts):,} options)"

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "at": list(self.at),
                               "end": list(self.end)}
        if self.kind == "choice":
            out["options"] = list(self.options)
            out["option_texts"] = list(self.option_texts)
        else:
            out["low"], out["high"] = self.low, self.high
        return out

    @staticmethod
    def from_json(d: dict) -> Space:
        return Space(d["name"], d["kind"], tuple(d["at"]), tuple(d["end"]), list(d.get("options", [])),
                     list(d.get("option_texts", [])), d.get("low"), d.get("high"))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (1, 1.0 and true are different options)."""
    return type(a) is type(b) and a == b


# ----------------------------------------------------------------------------------------- spaces of a spec


def _offsets(source: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(source):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def _offset(starts: list[int], line: int, col: int) -> int:
    return starts[line - 1] + col - 1


def _text(source: str, starts: list[int], span: Span) -> str:
    return source[_offset(starts, span.line, span.col):_offset(starts, span.end_line, span.end_col)]


def spaces_of(compiled) -> list[Space]:
    """The tunable parameters of a compiled spec, in the order of their first use, one per call position."""
    spec, source, tree = compiled.spec, compiled.source, compiled.tree
    calls = A.calls_by_position(tree) if tree is not None else {}
    starts = _offsets(source)
    out: list[Space] = []
    seen: set[tuple[int, int]] = set()
    names: set[str] = set()
    for s in spec.search_spaces:
        at = tuple(s.at)
        if at in seen:
            continue
        seen.add(at)
        name = s.path if s.path not in names else f"{s.path}@{at[0]}:{at[1]}"
        names.add(name)
        texts: list[str] = []
        if s.kind == "choice":
            call = calls.get(at)
            texts = [_text(source, starts, a.span) for a in call.args] if call is not None \
                else [literal_of(o) for o in s.options]
        out.append(Space(name, s.kind, at, tuple(s.end), list(s.options), texts, s.low, s.high))
    return out


# --------------------------------------------------------------------------------------------------- grid


def _round_unique(values: list[float], lo: float, hi: float) -> list[float]:
    """Round interior points to 3 significant digits (more if that would merge two points); keep the ends. A
    range a few floats wide (`loguniform(0.001, 0.0010000000000000002)`) has fewer points than GRID_POINTS:
    each once, or the grid would run one point several times."""
    for digits in range(3, 18):
        pts = [values[0]] + [float(f"{v:.{digits}g}") for v in values[1:-1]] + [values[-1]]
        pts = [min(max(p, lo), hi) for p in pts]
        if len(set(pts)) == len(pts):
            return pts
    return sorted({min(max(v, lo), hi) for v in values})


def grid_points(space: Space) -> list[Any]:
    if space.kind == "choice":
        return list(space.options)
    lo, hi = space.bounds()
    n = GRID_POINTS
    if space.kind == "int_uniform":
        lo_i, hi_i = math.ceil(lo), math.floor(hi)
        if hi_i - lo_i + 1 <= n:
            return list(range(lo_i, hi_i + 1))
        return sorted({round(lo_i + (hi_i - lo_i) * i / (n - 1)) for i in range(n)})
    if space.kind == "loguniform":
        a, b = math.log(lo), math.log(hi)
        raw = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
    else:
        raw = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    raw[0], raw[-1] = lo, hi
    return _round_unique(raw, lo, hi)


# a larger finite space is searched as before (its repeats are rare, and its points too many to list)
LISTED_POINTS = 100_000


def space_size(spaces: list[Space]) -> int | None:
    """How many points a search space has, when every space in it is finite; None otherwise."""
    size = 1
    for sp in spaces:
        if sp.kind == "choice":
            size *= len({json.dumps(o, sort_keys=True) for o in sp.options})
        elif sp.kind == "int_uniform":
            low, high = sp.bounds()
            size *= max(0, int(high) - int(low) + 1)
        else:
            return None
        if size > LISTED_POINTS:
            return None
    return size


# ------------------------------------------------------------------------------------------ literal values


def literal_of(value: Any) -> str:
    """A value as spec text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if value.isidentifier() and value.isascii() else quote(value)
    raise TypeError(f"no spec literal for {value!r}")


def _is_name(x: Any) -> bool:
    return isinstance(x, str) and x.isidentifier() and x not in ("true", "false")


def value_text(space: Space, value: Any) -> str:
    if space.kind == "choice":
        # an option as written, unless it is a quoted name (a catalogue field only accepts the name, a string
        # field accepts it too); a block's parameter (`choice(act, relu)`) stays the parameter, which each use
        # of the block gives its own value, as a trial does
        for opt, text in zip(space.options, space.option_texts, strict=True):
            if _same(opt, value) and (_is_name(text) or not _is_name(value)):
                return text
        return value if _is_name(value) else literal_of(value)
    if space.kind == "int_uniform":
        return str(int(value))
    return literal_of(float(value))


def concretize(compiled, spaces: list[Space], values: dict[str, Any], note: str | None = None,
               base_dir: Path | None = None, new_dir: Path | None = None) -> str:
    """The spec's text with every search-space call replaced by its chosen value, and the search block
    replaced by a comment (`note`). With `new_dir`, relative data paths are rewritten to stay right from a
    file there."""
    source, tree = compiled.source, compiled.tree
    starts = _offsets(source)
    model = tree.models[0]
    paths = data_paths(model) if new_dir is not None and base_dir is not None else []

    def moved(path: str) -> str | None:  # (a relative data path as text that reads the file from new_dir)
        assert new_dir is not None and base_dir is not None
        p = home_expanded(Path(path))
        return None if p.is_absolute() else quote(Path(_relpath(base_dir / p, new_dir)).as_posix())

    # a searched data path (`csv(choice("a.csv", "b.csv"))`): its value is rewritten as a written one is
    searched_paths = {(p.name_span.line, p.name_span.col) for p in paths if isinstance(p, A.Call)}
    edits: list[tuple[int, int, str]] = []
    for sp in spaces:
        value = values[sp.name]
        text = value_text(sp, value)
        if sp.at in searched_paths and isinstance(value, str):
            text = moved(value) or text
        edits.append((_offset(starts, *sp.at), _offset(starts, *sp.end), text))
    for st in model.body:
        if isinstance(st, A.Section) and st.name == "search":
            a = starts[st.span.line - 1]
            indent = source[a:_offset(starts, st.span.line, st.span.col)]
            end_line = st.span.end_line
            b = starts[end_line] - 1 if end_line < len(starts) else len(source)
            if indent.strip() == "" and source[_offset(starts, end_line, st.span.end_col):b].strip() == "":
                edits.append((a, b, f"{indent}# {note or 'search block removed: no search spaces left'}"))
            else:
                edits.append((_offset(starts, st.span.line, st.span.col),
                              _offset(starts, end_line, st.span.end_col), ""))
    for s in paths:
        if isinstance(s, A.Str) and (rel := moved(s.value)) is not None:
            edits.append((_offset(starts, s.span.line, s.span.col),
                          _offset(starts, s.span.end_line, s.span.end_col), rel))
    out = source
    for a, b, text in sorted(edits, key=lambda e: e[0], reverse=True):
        out = out[:a] + text + out[b:]
    return out


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), start.resolve())


def data_paths(model: A.Model) -> list[A.Str | A.Call]:
    """The file paths written in the data section's source (csv/npz/mnist: the first argument or path=;
    npy: both arguments, x= and y=): each a string, or the search-space call that chooses it."""
    out: list[A.Str | A.Call] = []
    for st in model.body:
        if isinstance(st, A.Section) and st.name == "data":
            for d in st.body:
                if isinstance(d, A.Assign) and d.key == "source" and isinstance(d.value, A.Call):
                    call = d.value
                    keys = ("x", "y") if call.name == "npy" else ("path",)
                    out.extend(a for a in call.args[:len(keys)] if _path_value(a))
                    out.extend(kw.value for kw in call.kwargs
                               if kw.key in keys and _path_value(kw.value))
    return out


def _path_value(v: A.Value) -> TypeGuard[A.Str | A.Call]:
    return isinstance(v, A.Str) or (isinstance(v, A.Call) and v.name == "choice")


# ------------------------------------------------------------------------------------------------ refine


def top_trials(trials: list[dict], direction: str) -> list[dict]:
    """The best quarter of the completed trials (at least TOP_MIN, or all when fewer)."""
    done = [t for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None
            and math.isfinite(t["value"])]
    done.sort(key=lambda t: t["value"], reverse=direction == "maximize")
    k = max(TOP_MIN, math.ceil(TOP_FRACTION * len(done)))
    return done[:k]


def refine(spaces: list[Space], top: list[dict]) -> list[Space]:
    """Narrow each space to what the top trials took (the rule in the module docstring)."""
    out = []
    for sp in spaces:
        vals = [t["params"][sp.name] for t in top if sp.name in t["params"]]
        if not vals:
            out.append(sp)
            continue
        if sp.kind == "choice":
            keep = [(o, t) for o, t in zip(sp.options, sp.option_texts, strict=True)
                    if any(_same(o, v) for v in vals)]
            out.append(replace(sp, options=[o for o, _ in keep], option_texts=[t for _, t in keep]))
            continue
        lo, hi = min(vals), max(vals)
        low, high = sp.bounds()
        if sp.kind == "int_uniform":
            lo, hi = int(lo), int(hi)
            if lo == hi:
                lo, hi = max(int(low), lo - 1), min(int(high), hi + 1)
            out.append(replace(sp, low=float(lo), high=float(hi)))
        elif sp.kind == "loguniform":
            if lo == hi:
                f = (high / low) ** 0.05
                lo, hi = max(low, lo / f), min(high, hi * f)
            out.append(replace(sp, low=float(lo), high=float(hi)))
        else:
            if lo == hi:
                w = 0.05 * (high - low)
                lo, hi = max(low, lo - w), min(high, hi + w)
            out.append(replace(sp, low=float(lo), high=float(hi)))
    return out


# ------------------------------------------------------------------------------------------- spec checks


def objective_names(metrics: list, data) -> list[str]:
    """The metric names a search objective may name for a spec with these metrics and this data."""
    base = ["loss"] + [m.name for m in metrics]
    split = data.split if data is not None else None
    kfold = split is not None and split.kind == "kfold"
    has_val = split is not None and getattr(split, "val", 0) > 0
    names = [] if kfold else list(base) + ([f"val_{b}" for b in base] if has_val else [])
    return names + [f"cv_{b}" for b in base]


STORAGE = re.compile(r"(sqlite|postgresql|postgres)(\+\w+)?://(.*)", re.IGNORECASE)


def storage_problem(url: str) -> str | None:
    """What is wrong with a search block's `storage:` URL (None when dlc can keep a study there): SQLite in a
    file, or PostgreSQL. An in-memory SQLite database cannot be shared with the trial processes."""
    if not url.strip():
        return "an empty storage names no database: leave storage out to keep the study in the tune " \
               "folder (DIR/study.db), or name one, sqlite:///file.db"
    m = STORAGE.fullmatch(url)
    if m is None:
        return "dlc keeps a study in SQLite (sqlite:///file.db) or PostgreSQL (postgresql://user@host/db)"
    if m.group(1).lower() != "sqlite":
        return None
    database = m.group(3).split("?", 1)[0]  # (`sqlite:///:memory:?cache=shared` is in memory too)
    if database in ("", "/", "/:memory:"):
        return "an in-memory SQLite database cannot be shared with the trial processes; name a file, " \
               "sqlite:///file.db"
    return home_problem(database.removeprefix("/"))


def home_problem(path: str) -> str | None:
    """Why a SQLite file's `~user/...` (expanded as a shell expands it) names no home folder: a user that
    does not exist (a shell keeps the text, and `mkdir -p` would make a folder named `~nobody`), a home that
    does not exist (nobody's /nonexistent, which dlc does not make), or no home known for `~`; None when it
    names one, or the path has no `~`."""
    if not path.startswith("~"):
        return None
    user = path[1:].split("/", 1)[0]
    try:
        home = Path(f"~{user}").expanduser()
    except RuntimeError:
        what = f"there is no user '{user}' on this machine" if user else "the home folder is not known (HOME)"
    else:
        if home.is_dir():
            return None
        what = f"~{user} is {home}, which does not exist"  # (`nobody`'s /nonexistent: not made for a study)
    return f"{what}; write the file's path, sqlite:////abs/path/x.db, or one relative to the spec's " \
           "folder, sqlite:///x.db"


def _check_storage(storage: str | None, m: A.Model, d: Diagnostics) -> None:
    problem = storage_problem(storage) if storage is not None else None
    if not problem:
        return
    where = None
    for s in m.body:
        if isinstance(s, A.Section) and s.name == "search":
            where = next((a.value.span for a in s.body if isinstance(a, A.Assign) and a.key == "storage"),
                         None)
    d.add("E506", f"storage {storage!r}: not a storage dlc can keep a study in", where, problem)


def _check_data_spaces(spaces: list, d: Diagnostics) -> None:
    """A search space in the split, the source or the seed changes which rows a trial is judged on: the
    objective then ranks trials measured on different sets. (Normalisation and augmentation are preprocessing
    choices: the validation rows stay the same.)"""
    for s in spaces:
        if s.path.startswith(("data.split", "data.source")) or s.path == "seed":
            d.warn("W007", f"{s.path} is searched: each trial's objective is measured on other rows (another "
                   "split, source or seed), so the trials are not compared on one set",
                   Span(s.at[0], s.at[1], s.end[0], s.end[1]),
                   "search the model and its training; fix the data and the seed")


def check_search(spec, m: A.Model, d: Diagnostics) -> None:
    """The search block's objective names a metric the run computes; its storage is one dlc can use; what it
    searches leaves the data the trials are compared on alone."""
    if spec.search is not None:
        check_search_block(spec.search, spec.metrics, spec.data, spec.search_spaces, m, d)


def check_search_block(search: Search, metrics: list | None, data, spaces: list, m: A.Model,
                       d: Diagnostics) -> None:
    """check_search on the parts of a spec that resolved: `metrics` or `data` None when they did not (the
    objective is then not checked, since what it may name is not known)."""
    _check_storage(search.storage, m, d)
    _check_data_spaces(spaces, d)
    if metrics is not None and data is not None:
        _check_objective(search.objective, objective_names(metrics, data), data, m, d)


def _objective_span(m: A.Model) -> tuple[Span | None, bool]:
    """Where the objective's metric is written in the search block, and whether it is written at all: an
    objective left out (the default, val_loss) is pointed at by the block's name, so that its error still
    names a line."""
    section = next((st for st in m.body if isinstance(st, A.Section) and st.name == "search"), None)
    if section is None:
        return None, False
    for a in section.body:
        if isinstance(a, A.Assign) and a.key == "objective":
            v = a.value
            return (v.words[-1].span if isinstance(v, A.Phrase) else v.span), True
    return section.name_span, False


def _check_objective(objective: Objective, valid: list[str], data, m: A.Model, d: Diagnostics) -> None:
    """The objective names a metric the run computes (`valid`), in the direction that makes it better."""
    metric, direction = objective.metric, objective.direction
    where, written = _objective_span(m)
    metric_words = f"objective '{metric}'" if written else f"the default objective '{metric}'"
    if metric in valid:
        better = "maximize" if higher_is_better(metric) else "minimize"
        if direction != better:  # (only a written direction can differ: a missing one is inferred)
            d.warn("W006", f"{direction} {metric}: a {'higher' if better == 'maximize' else 'lower'} "
                   f"{metric} is better, so the search would pick the worst trial", where,
                   f"write objective: {better} {metric}")
        return
    if metric in ("minimize", "maximize"):  # (`objective: maximize`: a direction without its metric)
        fits = [n for n in valid if higher_is_better(n) == (metric == "maximize")]
        example = next((n for n in fits if n.startswith("val_")), (fits or valid)[0])
        d.add("E504", f"objective '{metric}' names no metric", where,
              f"write the metric after it, e.g. objective: {metric} {example}")
        return
    base = metric[4:] if metric.startswith(("val_",)) else metric.removeprefix("cv_")
    split = data.split if data is not None else None
    if split is not None and split.kind == "kfold" and f"cv_{base}" in valid:
        d.add("E504", f"{metric_words}: with a kfold split every trial is cross-validated", where,
              f"use cv_{base} (the mean over the folds)" if written
              else f"add objective: {direction} cv_{base}")
    elif metric.startswith("val_") and f"cv_{base}" in valid and f"val_{base}" not in valid:
        d.add("E504", f"{metric_words} needs a validation split", where,
              f"use split: holdout(val=0.2), or cv_{base} to cross-validate every trial")
    else:
        d.add("E504", f"unknown objective metric '{metric}'", where,
              did_you_mean(metric, valid) or f"expected one of {', '.join(valid)}")


def check_search_partial(m: A.Model, fields: dict, failed: set[str], d: Diagnostics) -> None:
    """check_search for a spec that could not be built: the search block as resolved, or as written when it
    did not resolve (`method: tpee`), so that one bad line of the block hides no error in another."""
    search, objective_known = fields.get("search"), True
    if search is None and "search" in failed:
        search, objective_known = _search_as_written(m)
    if search is None:
        return
    metrics = fields.get("metrics", []) if objective_known and "metrics" not in failed else None
    check_search_block(search, metrics, fields.get("data"), fields.get("search_spaces", []), m, d)


def _search_as_written(m: A.Model) -> tuple[Search | None, bool]:
    """The parts of a search block that the spec checks read (its objective and storage), taken from the
    AST, and whether its objective could be read (one that cannot is reported where the block is resolved).
    (None, False) without a search block."""
    sec = next((st for st in m.body if isinstance(st, A.Section) and st.name == "search"), None)
    if sec is None:
        return None, False
    written: dict[str, A.Value] = {}
    for st in sec.body:
        if isinstance(st, A.Assign):
            written.setdefault(st.key, st.value)  # (a key set twice: the first, as the block resolves it)
    objective = _objective_as_written(written.get("objective"))
    storage = written.get("storage")
    search = Search.model_construct(objective=objective or Objective(),
                                    storage=storage.value if isinstance(storage, A.Str) else None)
    return search, objective is not None or "objective" not in written


def _objective_as_written(v: A.Value | None) -> Objective | None:
    """`minimize val_loss` or `val_loss` as an Objective; None for anything else (its error is reported
    where the block is resolved). A misspelt direction leaves the metric, its direction inferred."""
    if isinstance(v, A.Phrase) and v.words[0].name in ("minimize", "maximize"):
        return Objective(direction=v.words[0].name, metric=v.words[-1].name)  # type: ignore[arg-type]
    if isinstance(v, (A.Phrase, A.Name)):
        return Objective(metric=(v.words[-1] if isinstance(v, A.Phrase) else v).name)
    return None


def shown_storage(url: str) -> str:
    """A storage URL as dlc prints it: `postgresql://user:***@host/db` (a terminal or a CI log keeps what is
    printed, and tune.json is shared)."""
    import re

    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)
