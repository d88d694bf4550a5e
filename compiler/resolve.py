"""AST → IR: give names their meaning, expand blocks and repetition, validate, and collect every error.

The model's keys and sections are resolved here; bind.py binds each value to the catalogue (spaces.py the
search-space calls among them), expand.py expands the layers, and checks.py checks the whole spec.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import ast as A
from . import catalog
from .bind import Binder
from .diagnostics import MISSING, Diagnostic, Diagnostics, Span, did_you_mean
from .expand import LayerExpander, collect_blocks, name_layers
from .spaces import SEARCH_FUNCS, Overrides, inner_space
from .spec import Data, Spec
from .training import Search, Train
from .wording import NO_VALUE, explain, written_text

MODEL_KEYS = {"seed", "dtype", "input", "loss", "metrics", "optimizer", "schedule"}
MODEL_SECTIONS = {"data", "layers", "train", "search"}
REQUIRED = ("data", "input", "layers", "loss", "optimizer")
SECTION_CLASSES: dict[str, type[Data | Train | Search]] = {"data": Data, "train": Train, "search": Search}
# what `add ...` suggests for a missing required key
_REQUIRED_EXAMPLES = {"data": "data { source: digits }", "input": "input: (64)",
                      "layers": "layers { Dense(10, activation=softmax) }",
                      "loss": "loss: categorical_crossentropy", "optimizer": "optimizer: Adam(lr=1e-3)"}


class Resolver(Binder):
    def __init__(self, diags: Diagnostics, base_dir: Path | None = None, overrides: Overrides | None = None,
                 had_syntax_errors: bool = False):
        super().__init__(diags, overrides, had_syntax_errors)
        self.base_dir = base_dir or Path(".")
        self.expander = LayerExpander(self)
        # the model's keys that resolved, and those that did not or were misspelt (set by `model`): what the
        # checks of a spec that failed can use
        self.resolved: dict[str, Any] = {}
        self.failed: set[str] = set()

    def section(self, cls, sec: A.Section, env: dict, path: str) -> Any:
        seen: dict[str, Span] = {}
        kwargs = []
        meant: set[str] = set()  # fields a misspelt or malformed line was meant to set: not reported missing
        for st in sec.body:
            if not isinstance(st, A.Assign):
                if isinstance(st, A.LayerStmt) and st.call.name in cls.model_fields:  # `epochs (10)`
                    self.d.add("E001", f"syntax error: missing ':' after '{st.call.name}'", st.call.name_span,
                               f"write {st.call.name}: ...")
                    meant.add(st.call.name)
                    continue
                sp = st.name_span if hasattr(st, "name_span") else st.span
                if isinstance(st, A.Section) and st.name in MODEL_SECTIONS | {"residual"}:  # `train { data {`
                    home = "layers { }" if st.name == "residual" else "the model itself"
                    self.d.add("E111", f"section '{st.name}' inside {sec.name}", sp,
                               f"{st.name} {{ }} belongs in {home}, not inside {sec.name} {{ }}")
                    continue
                self.d.add("E111", f"unexpected statement inside {sec.name}", sp,
                           f"{sec.name} holds 'key: value' lines")
                continue
            if st.key in seen:
                self.d.add("E204", f"duplicate key '{st.key}' in {sec.name}", st.key_span,
                           f"first set on line {seen[st.key].line}")
                continue
            seen[st.key] = st.key_span
            value = st.value
            if cls is Search and self._searched_search(st):
                meant.add(st.key)
                continue
            if cls is Search and st.key == "objective":
                value = _objective_record(st.value, self.d)
            kwargs.append(A.Kwarg(st.key, st.key_span, value))
        fields = [f for f in cls.model_fields]
        for kw in kwargs:
            if kw.key not in cls.model_fields and kw.key not in cls.aliases:
                hint = did_you_mean(kw.key, fields) if self.d.hints_wanted else None
                if hint:
                    meant.add(hint.split("'")[1])
                hint = _belongs_elsewhere(kw.key, sec.name) or hint or _argument_elsewhere(kw.key)
                self.d.add("E110", f"unknown key '{kw.key}' in {sec.name}", kw.key_span,
                           hint or f"{sec.name} takes: {', '.join(fields)}")
        kwargs = [kw for kw in kwargs if kw.key in cls.model_fields or kw.key in cls.aliases]
        return self.construct(cls, sec.name, [], kwargs, env, path, sec.name_span, sec.span,
                              quiet_missing=True if self.had_syntax_errors else meant)

    def model(self, m: A.Model) -> Spec | None:
        fields: dict[str, Any] = {"name": m.name}
        where: dict[str, Span] = {}
        failed: set[str] = set()
        suggested: set[str] = set()  # keys a did-you-mean pointed at: not also reported as missing
        written = {st.key if isinstance(st, A.Assign) else st.name for st in m.body
                   if isinstance(st, (A.Assign, A.Section))}
        for st in m.body:
            # (a layer statement here is always misplaced: the last test only tells the type checker so)
            if isinstance(st, A.BlockDef) or self._not_the_models(st, suggested, written) or isinstance(
                    st, A.LayerStmt):
                continue
            key = st.key if isinstance(st, A.Assign) else st.name
            kspan = st.key_span if isinstance(st, A.Assign) else st.name_span
            if key in where:
                what = "section" if isinstance(st, A.Section) else "key"
                done = "written" if what == "section" else "set"
                self.d.add("E204", f"duplicate {what} '{key}'", kspan,
                           f"first {done} on line {where[key].line}")
                continue
            where[key] = kspan
            value = self.model_item(st, key)
            if value is MISSING:
                failed.add(key)
            else:
                fields[key] = value
        # a key the user meant but misspelt has no value: whole-spec checks would report that as other errors
        failed |= suggested & (MODEL_KEYS | MODEL_SECTIONS)
        self.resolved, self.failed = fields | {"search_spaces": list(self.spaces.found)}, failed
        if not self.had_syntax_errors:
            for key in REQUIRED:
                if key not in where and key not in suggested:
                    self.d.add("E208", f"model '{m.name}' has no {key}", m.name_span,
                               f"add {_REQUIRED_EXAMPLES[key]}")
        if failed or any(k not in fields for k in REQUIRED):
            return None
        fields["search_spaces"] = list(self.spaces.found)
        try:
            spec = Spec(**fields)
        except ValidationError as e:
            for err in e.errors():
                self.d.add("E201", f"invalid model: {err['msg']}", m.name_span)
            return None
        return name_layers(spec)

    def _not_the_models(self, st: A.Assign | A.Section | A.LayerStmt, suggested: set[str],
                        written: set[str]) -> bool:
        """_misplaced, and what a misspelt key or section holds checked as the one it was meant to be."""
        before = set(suggested)
        if not self._misplaced(st, suggested):
            return False
        if not isinstance(st, A.LayerStmt):
            self._check_as_meant(st, suggested - before - written)
        return True

    def _check_as_meant(self, st: A.Assign | A.Section, meant: set[str]) -> None:
        """A misspelt key or section (`dat { }`, `optimzer: Adma()`) is checked as the one its did-you-mean
        names, when that one is not also written, so that the errors in what it holds are reported with it;
        its value is not used."""
        if len(meant) != 1:
            return
        (key,) = meant
        if isinstance(st, A.Section) and key in MODEL_SECTIONS:
            self.model_item(A.Section(key, st.name_span, st.body, st.span), key)
        elif isinstance(st, A.Assign) and key in MODEL_KEYS:
            self.model_item(A.Assign(key, st.key_span, st.value, st.span), key)

    def _unreadable_number_in(self, st: A.Section) -> bool:
        """Whether a number that overflows (reported where it was read, E209) is written in `st` or in a
        block: the layer holding it did not resolve."""
        spans = [st.span, *(b.span for b in self.blocks.values())]
        return any(x.code == "E209" and x.span is not None and x.severity == "error"
                   and any(sp.line <= x.span.line <= sp.end_line for sp in spans) for x in self.d.items)

    def _searched_search(self, st: A.Assign) -> bool:
        """Report a search space in the search block (`trials: choice(10, 20)`): it says how the search runs,
        one value for the whole study, and best.dlspec drops the block. True when there is one."""
        searched = inner_space(st.value, {})
        if searched is not None:
            self.d.add("E501", f"the search block's {st.key} cannot be searched: it says how the search runs",
                       searched.span, "give it one value, and search the model and its training")
        return searched is not None

    def _searched_input(self, v: A.Value) -> bool:
        """Report a search space in the input shape (`input: (choice(4, 8))`): every trial's data has one
        shape. True when there is one."""
        searched = next((i for i in [v, *getattr(v, "items", [])]
                         if isinstance(i, A.Call) and i.name in SEARCH_FUNCS), None)
        if searched is not None:
            self.d.add("E501", "the input shape cannot be searched: it is the shape of the data's samples",
                       searched.span, "write the shape the data has, and search the layers")
        return searched is not None

    def _misplaced(self, st, suggested: set[str]) -> bool:
        """Report a statement that is not a model key or section: a layer outside layers { }, an unknown key
        or section. `suggested` collects the keys a hint pointed at. True when the statement was one."""
        if isinstance(st, A.LayerStmt):
            if st.call.name in MODEL_KEYS:  # `input (8, 8, 1)` reads as a call
                self.d.add("E001", f"syntax error: missing ':' after '{st.call.name}'", st.call.name_span,
                           f"write {st.call.name}: ...")
                suggested.add(st.call.name)
            else:
                self.d.add("E110", f"layer '{st.call.name}' outside a layers {{ }} section",
                           st.call.name_span, "put layers inside layers { ... }")
            return True
        if isinstance(st, A.Assign) and st.key not in MODEL_KEYS:
            self._unknown_key(st.key, st.key_span, suggested)
            return True
        if isinstance(st, A.Section) and st.name not in MODEL_SECTIONS:
            self._unknown_section(st.name, st.name_span, suggested, st.body)
            return True
        return False

    def _unknown_key(self, key: str, span: Span, suggested: set[str]) -> None:
        hint = did_you_mean(key, sorted(MODEL_KEYS | MODEL_SECTIONS)) if self.d.hints_wanted else None
        if hint:
            suggested.add(hint.split("'")[1])
        if key in MODEL_SECTIONS:
            hint = f"{key} is a section: {key} {{ ... }}"
            suggested.add(key)
        hint = _belongs_elsewhere(key, None) or hint
        if key == "name":  # `name: iris` (Keras' Sequential(name=...))
            hint = "a model's name is written after 'model': model NAME { ... }"
        self.d.add("E110", f"unknown key '{key}'", span,
                   hint or f"known keys: {', '.join(sorted(MODEL_KEYS))}")

    def _unknown_section(self, key: str, span: Span, suggested: set[str], body: list | None = None) -> None:
        hint = did_you_mean(key, sorted(MODEL_SECTIONS)) if self.d.hints_wanted else None
        if hint:
            suggested.add(hint.split("'")[1])
        if key in MODEL_KEYS:
            hint = f"{key} is a key: {key}: ..."
            suggested.add(key)
        if hint is None and key in OTHER_SECTIONS:  # `fit { }`: Keras' word for train { }
            hint = f"did you mean '{OTHER_SECTIONS[key]}' (Keras' {key})?"
            suggested.add(OTHER_SECTIONS[key])
        model_keys = [st for st in body or [] if isinstance(st, A.Assign) and st.key in MODEL_KEYS]
        if hint is None and model_keys:  # `compile { loss: mse }`: Keras' compile() takes the model's keys
            keys = list(dict.fromkeys(st.key for st in model_keys))
            hint = f"{', '.join(keys)} {'is a key' if len(keys) == 1 else 'are keys'} of the model itself: " \
                   f"write {'it' if len(keys) == 1 else 'them'} without {key} {{ }}"
            for st in model_keys:  # (checked as the model's, so that their errors are reported; not used)
                if st.key not in suggested:
                    suggested.add(st.key)
                    self.model_item(st, st.key)
        self.d.add("E111", f"unknown section '{key}'", span,
                   hint or f"known sections: {', '.join(sorted(MODEL_SECTIONS))}")

    def model_item(self, st, key: str) -> Any:
        if key == "layers":
            layers = self.expander.model_layers(st)
            if layers is not MISSING and self._unreadable_number_in(st):
                return MISSING  # (its layer was dropped: the network left would be checked as the spec's)
            return layers
        if key in SECTION_CLASSES:
            return self.section(SECTION_CLASSES[key], st, {}, key)
        ann = Spec.model_fields[key].annotation
        if key == "input":
            v = st.value
            if any(isinstance(i, A.Num) and i.problem for i in [v, *getattr(v, "items", [])]):
                return MISSING  # (reported where it was read)
            if isinstance(v, A.Num) and isinstance(v.value, int):
                return (v.value,)
            if self._searched_input(v):
                return MISSING
            if not (isinstance(v, A.Tuple) and v.items and not v.kwargs
                    and all(isinstance(i, A.Num) and isinstance(i.value, int) and i.value > 0
                            for i in v.items)):
                # (one bad size of a tuple, `(8, 0, 1)`: the caret under it)
                bad = [i for i in v.items if not (isinstance(i, A.Num) and isinstance(i.value, int)
                                                  and i.value > 0)] if isinstance(v, A.Tuple) else []
                self.d.add("E201", "input must be a shape of positive integers",
                           bad[0].span if len(bad) == 1 and not v.kwargs and not isinstance(bad[0], A.Tuple)
                           and not (isinstance(bad[0], A.Name) and bad[0].name in NO_VALUE) else v.span,
                           _input_hint(v))
                return MISSING
            return tuple(i.value for i in v.items if isinstance(i, A.Num))  # (all are, checked above)
        val = self.value(st.value, {}, key, ann)
        if val is MISSING:
            return MISSING
        if key == "metrics" and not isinstance(val, list):
            val = [val]
        try:
            # an empty Spec to validate one field against: model_construct requires no field (it validates
            # nothing), though the Pydantic plugin types it like __init__
            empty = Spec.model_construct()  # type: ignore[call-arg]
            Spec.__pydantic_validator__.validate_assignment(empty, key, val)
        except ValidationError as e:
            self.d.add("E201", f"invalid value for '{key}'", st.value.span, explain(e.errors(), ann))
            return MISSING
        return val


def _input_hint(v: A.Value) -> str:
    """How to write an input shape that is no tuple of positive integers: a list (`[4]`), a batch axis
    written as None (`(None, 4)`, Keras' model.summary() shows it)."""
    items = getattr(v, "items", None) or []
    sizes = [i for i in items if not (isinstance(i, A.Name) and i.name in NO_VALUE)]
    shown = ", ".join(written_text(i) for i in sizes)
    if sizes and len(sizes) < len(items) and isinstance(v, A.Tuple):
        return f"a sample's shape leaves out the batch axis: input: ({shown})"
    if isinstance(v, A.List) and sizes:
        return f"a shape is written in ( ): input: ({shown})"
    return "for example input: (64) or input: (8, 8, 1)"


# sections under Keras' names: the name -> dlc's section
OTHER_SECTIONS = {"fit": "train", "training": "train", "sequential": "layers",
                  "dataset": "data", "tune": "search", "tuning": "search"}
# keys other tools set where dlc sets them otherwise: the key -> where dlc says it
KEYS_ELSEWHERE = {
    "validation_split": "the validation part is split off in data { split: holdout(val=0.2) }",
    "validation_data": "the validation part is split off in data { split: holdout(val=0.2) }",
    "callbacks": "dlc's callbacks are keys: early_stopping: (patience=5) in train { }, schedule: plateau() "
                 "in the model",
}
# families whose arguments a user may write as keys of a section (`learning_rate: 0.01` in train { }):
# the family -> the key that takes it
_ARGUMENT_HOMES = {"optimizer": "optimizer", "split": "split", "schedule": "schedule", "source": "source"}


def _argument_elsewhere(key: str) -> str | None:
    """`learning_rate: 0.01` in train { }, `stratify: true` in data { }: an argument of a value written as
    a key, and how it is written."""
    if key in KEYS_ELSEWHERE:
        return KEYS_ELSEWHERE[key]
    if any(key in cls.model_fields for cls in SECTION_CLASSES.values()):
        return None  # (`shuffle` in data { }: train's or kfold's; the section's own keys are listed)
    for family, home in _ARGUMENT_HOMES.items():
        for name, cls in catalog.REGISTRY.get(family, {}).items():
            if key in cls.aliases or (key in cls.model_fields and key not in ("at", "kind", "name")):
                return f"{key} is an argument of the {home}: {home}: {name}(..., {key}=...)"
    return None


def _belongs_elsewhere(key: str, written_in: str | None) -> str | None:
    """`epochs: 20` written in the model rather than in train { } (or `loss: mse` in train): where the key
    belongs, as a hint; None when it is not the other level's. (A key of another section keeps the list of
    the section's own: `shuffle` in data may mean kfold's as well as train's.)"""
    if written_in is not None:
        if key in MODEL_KEYS:
            return f"{key} belongs in the model itself, not in {written_in} {{ }}"
        here = SECTION_CLASSES[written_in]
        families = {catalog.family_of_annotation(f.annotation) for f in here.model_fields.values()} - {None}
        if any(key in cls.model_fields for fam in families
               for cls in catalog.REGISTRY.get(str(fam), {}).values()):
            return None  # (`shuffle` in data { }: train's, or kfold's own: the section's keys are listed)
        home = next((name for name, cls in SECTION_CLASSES.items() if name != written_in
                     and (key in cls.model_fields or key in cls.aliases)), None)
        return f"{key} belongs inside {home} {{ ... }}, not in {written_in} {{ }}" if home else None
    home = next((name for name, cls in SECTION_CLASSES.items()
                 if key in cls.model_fields or key in cls.aliases), None)
    return f"{key} belongs inside {home} {{ ... }}" if home else _argument_elsewhere(key)


def _objective_record(v: A.Value, d: Diagnostics) -> A.Value:
    """`objective: minimize val_loss` (or just `val_loss`, its direction inferred) as an Objective record. A
    misspelt direction is reported and its metric kept, to be checked too. A quoted one is reported and read
    as if unquoted, so that its metric is checked too."""
    words = v.value.split() if isinstance(v, A.Str) else []
    if isinstance(v, A.Str) and 1 <= len(words) <= 2 and all(w.isidentifier() for w in words):
        d.add("E201", "expected an objective here, not a string", v.span,
              f"write {v.value} without quotes: objective: {v.value}")
        names = [A.Name(w, v.span) for w in words]
        v = A.Phrase(names, v.span) if len(names) == 2 else names[0]
    if isinstance(v, A.Phrase):
        direction, metric = v.words
        if direction.name not in ("minimize", "maximize"):
            d.add("E201", f"unknown direction '{direction.name}'", direction.span,
                  did_you_mean(direction.name, ["minimize", "maximize"]) or "expected minimize or maximize")
            return A.Tuple([], [A.Kwarg("metric", metric.span, A.Name(metric.name, metric.span))], v.span)
        return A.Tuple([], [A.Kwarg("direction", direction.span, A.Name(direction.name, direction.span)),
                            A.Kwarg("metric", metric.span, A.Name(metric.name, metric.span))], v.span)
    if isinstance(v, A.Name):
        return A.Tuple([], [A.Kwarg("metric", v.span, v)], v.span)
    return v


def resolve(f: A.File, d: Diagnostics, base_dir: Path | None = None, overrides: Overrides | None = None,
            had_syntax_errors: bool = False) -> Spec | None:
    first = len(d.items)
    try:
        return _resolve(f, d, base_dir, overrides, had_syntax_errors)
    finally:
        _spans_as_written(f, d.items[first:])


def _resolve(f: A.File, d: Diagnostics, base_dir: Path | None, overrides: Overrides | None,
             had_syntax_errors: bool) -> Spec | None:
    r = Resolver(d, base_dir, overrides, had_syntax_errors)
    r.blocks = collect_blocks(f, d)
    if not f.models:
        if not had_syntax_errors:
            d.add("E208", "no model in this file", Span(1, 1, 1, 2), "a spec needs model NAME { ... }")
        return None
    if len(f.models) > 1:
        for m in f.models[1:]:
            d.add("E204", f"a file holds one model; '{m.name}' is a second", m.name_span,
                  f"put it in a file of its own (the first is '{f.models[0].name}')")
    # blocks are checked once, even if unused, so errors in them are not hidden
    spec = r.model(f.models[0])
    r.expander.unused_blocks()
    from .checks import check_partial, check_spec

    if had_syntax_errors:  # (what a syntax error touched is not known: the checks of the rest still run)
        model, fields, failed = _undamaged(f.models[0], r.resolved, r.failed, d)
        check_partial(model, fields, failed, d, r.base_dir)
        return spec

    if spec is None:
        check_partial(f.models[0], r.resolved, r.failed, d, r.base_dir)
    else:
        check_spec(spec, f.models[0], d, r.base_dir)
    return spec


def _spans_as_written(f: A.File, items: list[Diagnostic]) -> None:
    """A finding about a layer is placed at its name as wide as the layer's kind (its canonical name): under
    an alias (`MaxPooling2D` for MaxPool2D) the caret is made as wide as the name written."""
    widths: dict[tuple[int, int], tuple[int, int]] = {}  # (line, col) -> (written, canonical) width
    layers = catalog.REGISTRY.get("layer", {})
    for call in A.calls_by_position(f).values():
        cls = layers.get(call.name)
        if cls is not None and call.name != cls.spec_names[0]:
            widths[(call.name_span.line, call.name_span.col)] = (len(call.name), len(cls.spec_names[0]))
    if not widths:
        return
    for item in items:
        sp = item.span
        found = widths.get((sp.line, sp.col)) if sp is not None and sp.end_line == sp.line else None
        if sp is not None and found is not None and sp.end_col - sp.col == found[1]:
            item.span = Span(sp.line, sp.col, sp.line, sp.col + found[0])


def _undamaged(m: A.Model, fields: dict[str, Any], failed: set[str],
               d: Diagnostics) -> tuple[A.Model, dict[str, Any], set[str]]:
    """What the checks of a spec with syntax errors may read: the model without the statements a syntax
    error touched (a section whose header is whole keeps its other lines), the resolved keys none touched,
    and the keys whose value is not known: `failed`, those touched, and, when a statement of the model itself
    was blanked (it may have set any key), every key not written. A touched search block is left out of
    both: its checks would read the default of a line that was lost."""
    found = {x.span.line for x in d.errors if x.code.startswith("E0") and x.span is not None}
    lines = sorted(found | d.repaired_lines)
    touched = {st.key if isinstance(st, A.Assign) else st.name for st in m.body
               if isinstance(st, (A.Assign, A.Section)) and _covers(st.span, lines)}
    inside = [ln for ln in lines if m.span.line < ln < m.span.end_line]
    loose = len(inside) > sum(bisect.bisect_right(inside, st.span.end_line) - bisect.bisect_left(
        inside, st.span.line) for st in m.body)  # (statements do not overlap)
    unknown = touched | ((MODEL_KEYS | MODEL_SECTIONS) - fields.keys() if loose else set())
    kept = {k: v for k, v in fields.items() if k not in touched}
    whole = A.Model(m.name, m.name_span, _pruned(m.body, lines), m.span)
    return whole, kept, (failed | unknown) - (touched & {"search"})


def _covers(span: Span, lines: list[int]) -> bool:
    """Whether any of the sorted `lines` is in the span's lines."""
    i = bisect.bisect_left(lines, span.line)
    return i < len(lines) and lines[i] <= span.end_line


def _pruned(body: list, lines: list[int]) -> list:
    """`body` without the statements on `lines`; a section whose header is not on one keeps the rest."""
    out = []
    for st in body:
        if not _covers(st.span, lines):
            out.append(st)
        elif isinstance(st, A.Section) and not _covers(Span(st.span.line, 1, st.span.line, 1), lines):
            out.append(A.Section(st.name, st.name_span, _pruned(st.body, lines), st.span, st.repeat,
                                 st.repeat_span))
    return out
