"""AST → IR: give names their meaning, expand blocks and repetition, validate, and collect every error.

The binder is generic: a call names a catalogue class (catalog.py); positional arguments follow the class'
`positional`, keywords its fields (with `aliases`); a field whose type is a catalogue family is bound
recursively. Search-space calls (`choice`, `uniform`, ...) may stand in any argument; they are recorded with
their position and replaced by a representative value (or by `overrides[(line, col)]`, which is how a tuner
fixes a trial's values).
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal, TypeGuard

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from . import ast as A
from . import catalog
from .catalog import IRNode, family_of_annotation, lookup
from .diagnostics import Diagnostics, Span, did_you_mean
from .layers import Layer, Residual, ShapeError
from .spec import BUNDLED, Bundled, Csv, Data, Holdout, Mnist, Npz, Spec
from .training import EarlyStopping, Objective, Search, SearchSpace, Train

FAMILY_CODES = {
    "layer": "E101", "activation": "E102", "initializer": "E103", "regularizer": "E104", "constraint": "E104",
    "optimizer": "E105", "loss": "E106", "metric": "E107", "schedule": "E108", "source": "E109",
    "split": "E109", "augment": "E109",
}
FAMILY_WORDS = {"source": "data source", "split": "split", "augment": "augmentation"}

MODEL_KEYS = {"seed", "dtype", "input", "loss", "metrics", "optimizer", "schedule"}
MODEL_SECTIONS = {"data", "layers", "train", "search"}
REQUIRED = ("data", "input", "layers", "loss", "optimizer")
SECTION_CLASSES = {"data": Data, "train": Train, "search": Search}
# a search-space call's name -> the SearchSpace kind it makes (randint is int_uniform)
SEARCH_FUNCS: dict[str, Literal["choice", "uniform", "loguniform", "int_uniform"]] = {
    "choice": "choice", "uniform": "uniform", "loguniform": "loguniform", "int_uniform": "int_uniform",
    "randint": "int_uniform"}

Overrides = dict[tuple[int, int], Any]

# what `dlc check` must still answer in seconds: a model's layers once blocks and repeats are expanded (every
# layer and block call counts), and how deep block calls and residual blocks may nest
MAX_LAYERS = 10_000
MAX_DEPTH = 64


class _TooManyLayers(Exception):
    """The layers expand beyond MAX_LAYERS: the expansion stops (the model's `layers` reports it)."""


class _Missing:
    """A value that could not be converted; its error is already recorded."""


MISSING = _Missing()


class Resolver:
    def __init__(self, diags: Diagnostics, base_dir: Path | None = None, overrides: Overrides | None = None,
                 had_syntax_errors: bool = False):
        self.d = diags
        self.base_dir = base_dir or Path(".")
        self.overrides = overrides or {}
        self.had_syntax_errors = had_syntax_errors
        self.blocks: dict[str, A.BlockDef] = {}
        self.spaces: list[SearchSpace] = []
        # path -> (the search-space call there, the option values it may take other than the one resolved)
        self.alternatives: dict[str, tuple[A.Call, list[tuple[Any, Span]]]] = {}
        self.expanded = 0  # layer and block calls expanded so far (MAX_LAYERS)
        self.top: A.Stmt | None = None  # the statement of `layers { }` being expanded

    # ------------------------------------------------------------------------------------------- values

    def value(self, v: A.Value, env: dict, path: str, annotation: Any = None) -> Any:
        """Convert an AST value to Python (catalogue values are bound when the annotation asks for them)."""
        if isinstance(v, A.Name) and v.name in env:
            return self.value(env[v.name], {}, path, annotation)
        if isinstance(v, A.Call) and v.name in SEARCH_FUNCS:
            return self.search_space(v, env, path, annotation)
        fam = family_of_annotation(annotation) if annotation is not None else None
        if fam is not None and isinstance(v, (A.Call, A.Name)):
            return self.bind(v, fam, env, path)
        if fam is not None and isinstance(v, A.List) and catalog.is_list_annotation(annotation):
            out = [self.bind(it, fam, env, f"{path}[{i}]") for i, it in enumerate(v.items)]
            return MISSING if any(o is MISSING for o in out) else out
        record = _record_class(annotation)
        if record is not None and _is_record(v):
            return self.record(record, v.kwargs, env, path, v.span)
        return self._literal(v, env, path)

    def _literal(self, v: A.Value, env: dict, path: str) -> Any:
        """A number, string, boolean, name or phrase, or a tuple or list of them."""
        if isinstance(v, A.Num) and v.problem:
            return MISSING  # (reported where it was read)
        if isinstance(v, (A.Num, A.Str, A.Bool)):
            return v.value
        if isinstance(v, A.Name):
            return v.name
        if isinstance(v, A.Phrase):
            return " ".join(w.name for w in v.words)
        if isinstance(v, (A.Tuple, A.List)):
            if v.kwargs:
                self.d.add("E201", "a record (k=v, ...) is not expected here", v.span)
                return MISSING
            items = [self.value(it, env, f"{path}[{i}]") for i, it in enumerate(v.items)]
            if any(i is MISSING for i in items):
                return MISSING
            return tuple(items) if isinstance(v, A.Tuple) else list(items)
        if isinstance(v, A.Call):
            self.d.add("E201", f"a call to '{v.name}' is not expected here", v.name_span,
                       "expected a number, a name, a string or a tuple")
            return MISSING
        raise AssertionError(v)

    def search_space(self, v: A.Call, env: dict, path: str, annotation: Any) -> Any:
        kind = SEARCH_FUNCS[v.name]
        raw = [self.value(a, env, path) for a in v.args]
        if any(r is MISSING for r in raw) or v.kwargs:
            if v.kwargs:
                self.d.add("E501", f"{v.name}() takes positional arguments only", v.kwargs[0].key_span)
            return MISSING
        at = (v.name_span.line, v.name_span.col)
        end = (v.span.end_line, v.span.end_col)
        if kind == "choice":
            if not raw:
                self.d.add("E501", "choice() needs at least one option", v.span)
                return MISSING
            bad = [a for a, r in zip(v.args, raw, strict=True) if not isinstance(r, (int, float, str, bool))]
            if bad:
                self.d.add("E501", "a choice() option must be a number, a name, a string or true/false",
                           bad[0].span, "list the options themselves: choice(32, 64, 128)")
                return MISSING
            space = SearchSpace(kind=kind, path=path, options=list(raw), at=at, end=end)
            rep = raw[0]
            others = list(zip(raw, (a.span for a in v.args), strict=True))
        else:
            if len(raw) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
                self.d.add("E501", f"{v.name}(low, high) needs two numbers", v.span)
                return MISSING
            lo, hi = raw
            if not lo < hi or (kind == "loguniform" and lo <= 0):
                self.d.add("E501", f"{v.name}({lo}, {hi}): need 0 < low < high" if kind == "loguniform"
                           else f"{v.name}({lo}, {hi}): need low < high", v.span)
                return MISSING
            space = SearchSpace(kind=kind, path=path, low=float(lo), high=float(hi), at=at, end=end)
            rep = int(lo) if kind == "int_uniform" else lo
            ends = [int(b) if kind == "int_uniform" else b for b in raw]
            others = list(zip(ends, (a.span for a in v.args), strict=True))
        self.spaces.append(space)
        chosen = self.overrides.get(at, rep)
        self.alternatives[path] = (v, [(o, span) for o, span in others if not _same_option(o, chosen)])
        # a chosen name may itself be a catalogue value (choice(relu, elu)): bind it as such
        fam = family_of_annotation(annotation) if annotation is not None else None
        if fam is not None and isinstance(chosen, str):
            span = v.span
            return self.bind(A.Name(chosen, span), fam, {}, path)
        return chosen

    def bind(self, v: A.Value, family: str, env: dict, path: str) -> Any:
        """Bind a name or call to the catalogue class it names in `family`."""
        if isinstance(v, A.Name) and v.name in env:
            return self.bind(env[v.name], family, {}, path)
        if isinstance(v, A.Call) and v.name in SEARCH_FUNCS:
            return self.search_space(v, env, path, _FAMILY_ANNOTATION.get(family))
        if isinstance(v, A.Name):
            call = A.Call(v.name, v.span, [], [], v.span)
        elif isinstance(v, A.Call):
            call = v
        else:
            word = FAMILY_WORDS.get(family, family)
            self.d.add("E201", f"expected {_a(word)} {word} here", v.span,
                       f"for example '{catalog.CANONICAL[family][0]}'")
            return MISSING
        cls = lookup(family, call.name)
        if cls is None and family == "layer" and (call.name in self.d.recovered_blocks or (
                "*" in self.d.recovered_blocks and call.name[:1].islower()
                and call.name.lower() not in {n.lower() for n in catalog.names("layer")})):
            return MISSING  # most likely a block whose header had a syntax error, already reported
        if cls is None:
            word = FAMILY_WORDS.get(family, family)
            candidates = catalog.names(family) + (list(self.blocks) if family == "layer" else [])
            self.d.add(FAMILY_CODES.get(family, "E100"), f"unknown {word} '{call.name}'", call.name_span,
                       lambda: did_you_mean(call.name, candidates)
                       or f"known: {', '.join(catalog.CANONICAL[family][:12])}")
            return MISSING
        return self.construct(cls, call.name, call.args, call.kwargs, env, path, call.name_span, call.span)

    def construct(self, cls, spec_name: str, args: list, kwargs: list, env: dict, path: str, name_span: Span,
                  span: Span, quiet_missing: bool | set[str] = False) -> Any:
        fields = cls.model_fields
        shown = spec_name
        values: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        written: dict[str, str] = {}  # field -> the keyword the spec used for it (`lr` for learning_rate)
        ok = True
        if len(args) > len(cls.positional):
            self._too_many_positional(cls, shown, args)
            ok = False
        # (fewer arguments than positional fields: the rest come as keywords or defaults)
        for fname, a in zip(cls.positional, args, strict=False):
            values[fname] = a
            spans[fname] = a.span
        for kw in kwargs:
            fname = cls.aliases.get(kw.key, kw.key)
            if not _takes_keyword(cls, fname):
                self._unknown_argument(cls, shown, kw)
                ok = False
            elif fname in values:
                self._given_twice(kw, spans[fname], by_position=fname not in written)
                ok = False
            else:
                values[fname] = kw.value
                spans[fname] = kw.value.span
                written[fname] = kw.key
        converted: dict[str, Any] = {}
        for fname, v in values.items():
            c = self.value(v, env, f"{path}.{fname}", fields[fname].annotation)
            if c is MISSING:
                ok = False
            else:
                converted[fname] = c
        if "name" in fields and fields["name"].is_required() and "name" not in converted:
            converted["name"] = spec_name
        if issubclass(cls, Layer):
            converted["at"] = (name_span.line, name_span.col)
        if not ok:
            return MISSING
        self._check_alternatives(cls, converted, path, shown, written)
        return self._validate(cls, converted, spans, name_span, shown, quiet_missing, written)

    def _check_alternatives(self, cls, converted: dict, path: str, shown: str,
                            written: dict[str, str]) -> None:
        """Every value a search space in these arguments may take, not only the one resolved, is checked now:
        `padding=choice(same, bogus)` is a spec error at `dlc check`, not a failed trial during `dlc tune`.
        Each option is tried with the other arguments as resolved."""
        for fname in [f for f in converted if f"{path}.{f}" in self.alternatives]:
            call, others = self.alternatives.pop(f"{path}.{fname}")
            fam = family_of_annotation(cls.model_fields[fname].annotation)
            for option, span in others:
                value = option
                if fam is not None and isinstance(option, str):
                    value = self.bind(A.Name(option, span), fam, {}, f"{path}.{fname}")
                    if value is MISSING:
                        continue  # (an unknown name, reported by bind)
                try:
                    cls(**{**converted, fname: value})
                except ValidationError as e:
                    errs = [err for err in e.errors() if [x for x in err["loc"] if isinstance(x, str)][:1]
                            in ([fname], [])]
                    if errs:
                        key = written.get(fname, fname)
                        self.d.add("E501", f"{call.name}() may choose {literal(option)}, which is not a "
                                   f"valid '{key}' of {shown}", span, _explain(errs))

    def _too_many_positional(self, cls, shown: str, args: list) -> None:
        n = len(cls.positional)
        extra = args[n]
        hint = "name the argument: key=value" if n else f"{shown} takes keyword arguments only"
        if isinstance(extra, A.Name):
            # `Dense(64, relu)`: say which keyword the name belongs to
            for fname, info in cls.model_fields.items():
                fam = family_of_annotation(info.annotation)
                if fname not in cls.positional and fam and lookup(fam, extra.name) is not None:
                    hint = f"name the argument: {fname}={extra.name}"
                    break
        self.d.add("E203", f"{shown} takes {n} positional argument{'s' if n != 1 else ''}, got {len(args)}",
                   extra.span, hint)

    def _unknown_argument(self, cls, shown: str, kw: A.Kwarg) -> None:
        valid = [f for f in cls.model_fields if f not in ("at", "kind", "name")] + list(cls.aliases)
        self.d.add("E112", f"unknown argument '{kw.key}' for {shown}", kw.key_span,
                   lambda: did_you_mean(kw.key, valid) or (f"{shown} takes: {', '.join(valid)}" if valid
                                                           else f"{shown} takes no arguments"))

    def _given_twice(self, kw: A.Kwarg, first: Span, by_position: bool) -> None:
        how = "by position, " if by_position else ""
        self.d.add("E205", f"argument '{kw.key}' given twice", kw.key_span,
                   f"already given {how}at column {first.col}" if first.line == kw.key_span.line
                   else f"already given {how}on line {first.line}")

    def _validate(self, cls, converted: dict, spans: dict, name_span: Span, shown: str,
                  quiet_missing: bool | set[str] = False, written: dict[str, str] | None = None) -> Any:
        try:
            return cls(**converted)
        except ValidationError as e:
            by_field: dict[str | None, list[ErrorDetails]] = {}
            for err in e.errors():
                loc = [x for x in err["loc"] if isinstance(x, str)]
                by_field.setdefault(loc[0] if loc else None, []).append(err)
            for field, errs in by_field.items():
                if errs[0]["type"] == "missing" and field:
                    if not (quiet_missing is True or (quiet_missing and field in quiet_missing)):
                        self.d.add("E202", f"{shown} is missing its required argument '{field}'", name_span,
                                   f"write {shown}({field}=...)")
                    continue
                where = spans.get(field, name_span)
                key = (written or {}).get(field, field) if field else field
                self.d.add("E201", f"invalid value for '{key}' of {shown}" if field else f"invalid {shown}",
                           where, _explain(errs))
            return MISSING

    def record(self, cls: type[IRNode], kwargs: list[A.Kwarg], env: dict, path: str, span: Span) -> Any:
        return self.construct(cls, cls.__name__, [], kwargs, env, path, span, span)

    # --------------------------------------------------------------------------------------------- layers

    def layers(self, body: list[A.Stmt], env: dict, path: str, stack: tuple[str, ...],
               depth: int = 0) -> list:
        """The layers of a body, blocks and repeats expanded; `depth`: the residual blocks around it."""
        out: list = []
        for st in body:
            if not stack and depth == 0:
                self.top = st
            if isinstance(st, A.LayerStmt):
                for _ in range(self._repeats(st)):
                    out.extend(self.layer_call(st.call, env, f"{path}[{len(out)}]", stack, depth))
            elif isinstance(st, A.Section) and st.name == "residual":
                if depth >= MAX_DEPTH:
                    self.d.add("E210", f"nested too deeply: more than {MAX_DEPTH} levels of residual blocks",
                               st.name_span, f"at most {MAX_DEPTH} residual blocks may nest")
                    continue
                self._count()
                inner = self.layers(st.body, env, f"{path}[{len(out)}].body", stack, depth + 1)
                out.append(Residual(body=inner, at=(st.name_span.line, st.name_span.col)))
            elif isinstance(st, A.Section):
                hint = did_you_mean(st.name, ["residual"])
                self.d.add("E111", f"unknown section '{st.name}' inside layers", st.name_span,
                           hint or "inside layers: layer calls, block calls and residual { ... }")
            elif isinstance(st, A.BlockDef):
                pass  # collected up front
            else:
                self.d.add("E110", f"'{st.key}: ...' is not allowed inside layers", st.key_span,
                           "layers hold layer calls such as Dense(64)")
        return out

    def _repeats(self, st: A.LayerStmt) -> int:
        """How many times a layer statement is expanded (0 after reporting a bad count)."""
        if st.repeat is None:
            return 1
        if st.repeat < 1:
            self.d.add("E201", "a repeat count must be at least 1", st.repeat_span)
            return 0
        if st.repeat > MAX_LAYERS:
            shown = f"{st.repeat:,} times" if st.repeat < 10**18 else "more than 10^18 times"
            self.d.add("E211", f"too many layers: {st.call.name} repeated {shown}", st.repeat_span,
                       f"a model may have at most {MAX_LAYERS:,} layers")
            return 0
        return st.repeat

    def _count(self) -> None:
        self.expanded += 1
        if self.expanded > MAX_LAYERS:
            raise _TooManyLayers

    def layer_call(self, call: A.Call, env: dict, path: str, stack: tuple[str, ...], depth: int = 0) -> list:
        self._count()
        if call.name in self.blocks and lookup("layer", call.name) is None:
            block = self.blocks[call.name]
            if len(stack) >= MAX_DEPTH:
                self.d.add("E210", f"nested too deeply: more than {MAX_DEPTH} levels of block calls",
                           call.name_span, f"at most {MAX_DEPTH} block calls may nest")
                return []
            if call.name in stack:
                chain = " -> ".join(stack[stack.index(call.name):] + (call.name,))
                self.d.add("E207", f"block '{call.name}' uses itself ({chain})", call.name_span,
                           "a block may use other blocks, but not itself")
                return []
            if call.kwargs:
                names = [p.name for p in block.params]
                for kw in call.kwargs:
                    if kw.key not in names:
                        self.d.add("E112", f"unknown argument '{kw.key}' for block {call.name}", kw.key_span,
                                   _block_argument_hint(call.name, kw.key, names))
                        return []
            given = len(call.args) + len(call.kwargs)
            if given != len(block.params):
                n = len(block.params)
                self.d.add("E206",
                           f"block '{call.name}' takes {n} argument{'s' if n != 1 else ''}, got {given}",
                           call.span,
                           f"defined as block {call.name}({', '.join(p.name for p in block.params)})")
                return []
            # the parameters not given positionally come as keywords
            new_env = {p.name: a for p, a in zip(block.params, call.args, strict=False)}
            new_env.update({kw.key: kw.value for kw in call.kwargs})
            resolved = {k: (env[v.name] if isinstance(v, A.Name) and v.name in env else v)
                        for k, v in new_env.items()}
            return self.layers(block.body, resolved, path, stack + (call.name,), depth)
        layer = self.bind(call, "layer", env, path)
        return [] if layer is MISSING else [layer]

    # ---------------------------------------------------------------------------------------------- model

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
                self.d.add("E111", f"unexpected statement inside {sec.name}", sp,
                           f"{sec.name} holds 'key: value' lines")
                continue
            if st.key in seen:
                self.d.add("E204", f"duplicate key '{st.key}' in {sec.name}", st.key_span,
                           f"first set on line {seen[st.key].line}")
                continue
            seen[st.key] = st.key_span
            value = st.value
            if cls is Search and st.key == "objective":
                objective = _objective_record(st.value, self.d)
                if objective is None:
                    continue
                value = objective
            kwargs.append(A.Kwarg(st.key, st.key_span, value))
        fields = [f for f in cls.model_fields]
        for kw in kwargs:
            if kw.key not in cls.model_fields and kw.key not in cls.aliases:
                hint = did_you_mean(kw.key, fields) if self.d.hints_wanted else None
                if hint:
                    meant.add(hint.split("'")[1])
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
        for st in m.body:
            # (a layer statement here is always misplaced: the last test only tells the type checker so)
            if isinstance(st, A.BlockDef) or self._misplaced(st, suggested) or isinstance(st, A.LayerStmt):
                continue
            key = st.key if isinstance(st, A.Assign) else st.name
            kspan = st.key_span if isinstance(st, A.Assign) else st.name_span
            if key in where:
                self.d.add("E204", f"duplicate key '{key}'", kspan, f"first set on line {where[key].line}")
                continue
            where[key] = kspan
            value = self.model_item(st, key)
            if value is MISSING:
                failed.add(key)
            else:
                fields[key] = value
        # a key the user meant but misspelt has no value: whole-spec checks would report that as other errors
        failed |= suggested & (MODEL_KEYS | MODEL_SECTIONS)
        if not self.had_syntax_errors:
            for key in REQUIRED:
                if key not in where and key not in suggested:
                    self.d.add("E208", f"model '{m.name}' has no {key}", m.name_span,
                               f"add {_REQUIRED_EXAMPLES[key]}")
        if failed or any(k not in fields for k in REQUIRED):
            return None
        fields["search_spaces"] = list(self.spaces)
        try:
            spec = Spec(**fields)
        except ValidationError as e:
            for err in e.errors():
                self.d.add("E201", f"invalid model: {err['msg']}", m.name_span)
            return None
        return _name_layers(spec)

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
            self._unknown_section(st.name, st.name_span, suggested)
            return True
        return False

    def _unknown_key(self, key: str, span: Span, suggested: set[str]) -> None:
        hint = did_you_mean(key, sorted(MODEL_KEYS | MODEL_SECTIONS)) if self.d.hints_wanted else None
        if hint:
            suggested.add(hint.split("'")[1])
        if key in MODEL_SECTIONS:
            hint = f"{key} is a section: {key} {{ ... }}"
            suggested.add(key)
        self.d.add("E110", f"unknown key '{key}'", span,
                   hint or f"known keys: {', '.join(sorted(MODEL_KEYS))}")

    def _unknown_section(self, key: str, span: Span, suggested: set[str]) -> None:
        hint = did_you_mean(key, sorted(MODEL_SECTIONS)) if self.d.hints_wanted else None
        if hint:
            suggested.add(hint.split("'")[1])
        if key in MODEL_KEYS:
            hint = f"{key} is a key: {key}: ..."
            suggested.add(key)
        self.d.add("E111", f"unknown section '{key}'", span,
                   hint or f"known sections: {', '.join(sorted(MODEL_SECTIONS))}")

    def model_layers(self, st: A.Section) -> Any:
        n_errors = self.d.error_count
        try:
            layers = self.layers(st.body, {}, "layers", ())
        except _TooManyLayers:
            top = self.top
            where = top.call.name_span if isinstance(top, A.LayerStmt) else getattr(top, "name_span", None)
            self.d.add("E211", f"too many layers: the model expands to more than {MAX_LAYERS:,} layers here",
                       where, f"a model may have at most {MAX_LAYERS:,} layers (blocks and repeats expanded)")
            return MISSING
        if self.d.error_count > n_errors:
            # a layer that did not resolve leaves a different network: checking its shapes or its output
            # against the loss would report errors the spec does not have
            return MISSING
        if not layers:
            if not self.had_syntax_errors:
                self.d.add("E208", "layers { } is empty", st.name_span, "add at least one layer")
            return MISSING
        return layers

    def model_item(self, st, key: str) -> Any:
        if key == "layers":
            return self.model_layers(st)
        if key in SECTION_CLASSES:
            return self.section(SECTION_CLASSES[key], st, {}, key)
        ann = Spec.model_fields[key].annotation
        if key == "input":
            v = st.value
            if any(isinstance(i, A.Num) and i.problem for i in [v, *getattr(v, "items", [])]):
                return MISSING  # (reported where it was read)
            if isinstance(v, A.Num) and isinstance(v.value, int):
                return (v.value,)
            if not (isinstance(v, A.Tuple) and v.items and not v.kwargs
                    and all(isinstance(i, A.Num) and isinstance(i.value, int) and i.value > 0
                            for i in v.items)):
                self.d.add("E201", "input must be a shape of positive integers", v.span,
                           "for example input: (64) or input: (8, 8, 1)")
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
            self.d.add("E201", f"invalid value for '{key}'", st.value.span, _explain(e.errors()))
            return MISSING
        return val


_FAMILY_ANNOTATION: dict[str, Any] = {}

# what `add ...` suggests for a missing required key
_REQUIRED_EXAMPLES = {"data": "data { source: digits }", "input": "input: (64)",
                      "layers": "layers { Dense(10, activation=softmax) }",
                      "loss": "loss: categorical_crossentropy", "optimizer": "optimizer: Adam(lr=1e-3)"}


def _block_argument_hint(block: str, key: str, names: list[str]):
    """The hint for an unknown argument of a block call, computed when shown."""
    return lambda: did_you_mean(key, names) or f"block {block} takes: {', '.join(names)}"


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "tuple_type": "a tuple",
    "list_type": "a list", "none_required": None, "model_type": None, "union_tag_invalid": None,
}


def _humane(msg: str, err: ErrorDetails) -> str:
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "literal_error":
        expected = msg.replace("Input should be", "expected")
        # a misspelt setting (`precision: mixed_bf16`): the nearest of the allowed names first
        allowed = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        given = err.get("input")
        hint = did_you_mean(given, allowed) if isinstance(given, str) and allowed else None
        return f"{hint} ({expected})" if hint else expected
    return msg.replace("Input should be", "must be")


def _same_option(a: Any, b: Any) -> bool:
    """Whether two search-space values are the same option (True is not 1, 1 is 1.0)."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def literal(value: Any) -> str:
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else repr(value)


def _explain(errs: list[ErrorDetails]) -> str:
    """One hint for a field's errors; a union's type errors become 'expected an integer or a tuple'."""
    if all(e["type"] in _TYPE_WORDS for e in errs):
        words = list(dict.fromkeys(w for e in errs if (w := _TYPE_WORDS[e["type"]])))
        if words:
            return "expected " + (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1])
    concrete = [e for e in errs if e["type"] not in _TYPE_WORDS] or errs
    return _humane(concrete[0]["msg"], concrete[0])


def _takes_keyword(cls, fname: str) -> bool:
    """Whether `fname` may be given as a keyword: a field, but not the internal ones (a name only when it is
    also positional)."""
    if fname not in cls.model_fields or fname in ("at", "kind"):
        return False
    return fname != "name" or "name" in cls.positional


def _is_record(v: A.Value) -> TypeGuard[A.Tuple]:
    """`(k=v, ...)`: keywords only."""
    return isinstance(v, A.Tuple) and bool(v.kwargs) and not v.items


def _record_class(annotation) -> type | None:
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel) and not issubclass(a, catalog.Catalogued):
            return a
        stack.extend(typing.get_args(a))
    return None


def _objective_record(v: A.Value, d: Diagnostics) -> A.Value | None:
    """`objective: minimize val_loss` (or just `val_loss`, minimised) as an Objective record."""
    if isinstance(v, A.Phrase):
        direction, metric = v.words
        if direction.name not in ("minimize", "maximize"):
            d.add("E201", f"unknown direction '{direction.name}'", direction.span,
                  did_you_mean(direction.name, ["minimize", "maximize"]) or "expected minimize or maximize")
            return None
        return A.Tuple([], [A.Kwarg("direction", direction.span, A.Name(direction.name, direction.span)),
                            A.Kwarg("metric", metric.span, A.Name(metric.name, metric.span))], v.span)
    if isinstance(v, A.Name):
        return A.Tuple([], [A.Kwarg("metric", v.span, v)], v.span)
    return v


def _name_layers(spec: Spec) -> Spec:
    """Give every layer a unique name in traversal order (dense_0, dropout_1, ...)."""
    counter = [0]

    def go(layers):
        out = []
        for layer in layers:
            idx = counter[0]
            counter[0] += 1
            name = f"{layer.kind.lower()}_{idx}"
            if isinstance(layer, Residual):
                out.append(layer.model_copy(update={"name": name, "body": go(layer.body)}))
            else:
                out.append(layer.model_copy(update={"name": name}))
        return out

    return spec.model_copy(update={"layers": go(spec.layers)})


def collect_blocks(f: A.File, d: Diagnostics) -> dict[str, A.BlockDef]:
    blocks: dict[str, A.BlockDef] = {}
    defs = list(f.blocks) + [st for m in f.models for st in m.body if isinstance(st, A.BlockDef)]
    for b in defs:
        if b.name in blocks:
            d.add("E204", f"block '{b.name}' is defined twice", b.name_span,
                  f"first defined on line {blocks[b.name].name_span.line}")
            continue
        if lookup("layer", b.name) is not None:
            d.add("E204", f"block '{b.name}' has the name of a layer", b.name_span, "rename the block")
            continue
        params = [p.name for p in b.params]
        for i, p in enumerate(b.params):
            if p.name in params[:i]:
                d.add("E204", f"parameter '{p.name}' repeated in block '{b.name}'", p.span)
        blocks[b.name] = b
    return blocks


def resolve(f: A.File, d: Diagnostics, base_dir: Path | None = None, overrides: Overrides | None = None,
            had_syntax_errors: bool = False) -> Spec | None:
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
    if spec is None or had_syntax_errors:
        return spec
    from .checks import check_spec

    check_spec(spec, f.models[0], d, r.base_dir)
    return spec


__all__ = [
    "BUNDLED",
    "Bundled",
    "Csv",
    "EarlyStopping",
    "Holdout",
    "Mnist",
    "Npz",
    "Objective",
    "Resolver",
    "ShapeError",
    "resolve",
]
