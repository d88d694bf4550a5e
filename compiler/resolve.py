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
from .syntax import quote
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
        self.block: A.BlockDef | None = None  # the block whose body is being expanded
        self.used_blocks: set[str] = set()  # blocks called from the layers (the others are checked apart)
        self.dropped = 0  # layer calls that did not resolve (their errors reported where they were found)

    # ------------------------------------------------------------------------------------------- values

    def value(self, v: A.Value, env: dict, path: str, annotation: Any = None) -> Any:
        """Convert an AST value to Python (catalogue values are bound when the annotation asks for them)."""
        if isinstance(v, A.Name) and v.name in env:
            # (the argument was written at the call, outside this block's body: its names are no parameters)
            outer, self.block = self.block, None
            try:
                return self.value(env[v.name], {}, path, annotation)
            finally:
                self.block = outer
        if isinstance(v, A.Call) and v.name in SEARCH_FUNCS:
            return self.search_space(v, env, path, annotation)
        if isinstance(v, A.Name) and self.block is not None and annotation is not None \
                and not _takes_names(annotation):
            self._not_a_parameter(v, self.block)
            return MISSING
        fam = family_of_annotation(annotation) if annotation is not None else None
        if fam is not None and isinstance(v, A.List) and catalog.is_list_annotation(annotation):
            out = [self.bind(it, fam, env, f"{path}[{i}]") for i, it in enumerate(v.items)]
            return MISSING if any(o is MISSING for o in out) else out
        if fam is not None:  # (a number or a string where a name belongs is reported by bind)
            return self.bind(v, fam, env, path)
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
        if self._nested_space(v, env):
            return MISSING
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
            if kind != "int_uniform" and self._fractional_for_integer(v, path, annotation, lo, hi):
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

    def _fractional_for_integer(self, v: A.Call, path: str, annotation: Any, lo: float, hi: float) -> bool:
        """Report uniform()/loguniform() for a whole-number argument (units, kernel sizes): a tuner would
        draw 7.31 units. True when reported."""
        if not _wants_integer(annotation):
            return False
        field = path.rsplit(".", 1)[-1]
        self.d.add("E501", f"{v.name}() draws fractional numbers, but {field} takes whole numbers",
                   v.name_span, f"use int_uniform({_num(lo)}, {_num(hi)}) for a whole number")
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
            self._not_a_name(v, family)
            return MISSING
        cls = lookup(family, call.name)
        if cls is None:
            self._unknown_name(call, family)
            return MISSING
        return self.construct(cls, call.name, call.args, call.kwargs, env, path, call.name_span, call.span)

    def _unknown_name(self, call: A.Call, family: str) -> None:
        """Report a name that is not in the catalogue family (nor a block, for a layer)."""
        if family == "layer" and (call.name in self.d.recovered_blocks or (
                "*" in self.d.recovered_blocks and call.name[:1].islower()
                and call.name.lower() not in {n.lower() for n in catalog.names("layer")})):
            return  # most likely a block whose header had a syntax error, already reported
        word = FAMILY_WORDS.get(family, family)
        candidates = catalog.names(family) + (list(self.blocks) if family == "layer" else [])
        self.d.add(FAMILY_CODES.get(family, "E100"), f"unknown {word} '{call.name}'", call.name_span,
                   lambda: did_you_mean(call.name, candidates)
                   or f"known: {', '.join(catalog.CANONICAL[family][:12])}")

    def unused_blocks(self) -> None:
        """Unknown layer names in the blocks no layer calls: a typo there would otherwise wait, unreported,
        for the block's first use (their arguments need the call's values, so only names are checked)."""
        for name, block in self.blocks.items():
            if name not in self.used_blocks:
                self._layer_names(block.body)

    def _layer_names(self, body: list[A.Stmt]) -> None:
        for st in body:
            if isinstance(st, A.LayerStmt) and st.call.name not in self.blocks \
                    and lookup("layer", st.call.name) is None:
                self._unknown_name(st.call, "layer")
            elif isinstance(st, A.Section) and st.name == "residual":
                self._layer_names(st.body)

    def _not_a_parameter(self, v: A.Name, block: A.BlockDef) -> None:
        """A name inside a block where a number belongs (`block b(n) { Dense(m) }`): a misspelt parameter."""
        names = [p.name for p in block.params]
        takes = f"block {block.name} takes: {', '.join(names)}" if names else \
            f"block {block.name} takes no parameters"
        self.d.add("E112", f"'{v.name}' is not a parameter of block {block.name}", v.span,
                   lambda: did_you_mean(v.name, names) or takes)

    def _not_a_name(self, v: A.Value, family: str) -> None:
        """A number, string, list or tuple where a catalogue name belongs (`activation="relu"`)."""
        word = FAMILY_WORDS.get(family, family)
        what = _VALUE_WORDS.get(type(v), "this value")
        if isinstance(v, A.Str) and lookup(family, v.value) is not None:
            hint = f"write {v.value} without quotes"
        else:
            quotes = " (without quotes)" if isinstance(v, A.Str) else ""
            hint = f"expected {_family_example(family)}{quotes}"
        self.d.add("E201", f"expected {_a(word)} {word} here, not {what}", v.span, hint)

    def construct(self, cls, spec_name: str, args: list, kwargs: list, env: dict, path: str, name_span: Span,
                  span: Span, quiet_missing: bool | set[str] = False) -> Any:
        fields = cls.model_fields
        shown = spec_name
        values: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        written: dict[str, str] = {}  # field -> the keyword the spec used for it (`lr` for learning_rate)
        taken = {cls.aliases.get(kw.key, kw.key) for kw in kwargs}
        late = self._late_positional(args, kwargs, cls.positional, taken)
        ok = not late
        args = [a for a in args if not any(a is x for x in late)]
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
        # a value that came through a block parameter: the error names the parameter and where it was given
        via = {f: f"{v.name} = {_source_text(env[v.name])}, given on line {env[v.name].span.line}"
               for f, v in values.items() if isinstance(v, A.Name) and v.name in env}
        return self._validate(cls, converted, spans, name_span, shown, quiet_missing, written, via)

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
                                   f"valid '{key}' of {shown}", span,
                                   _explain(errs, cls.model_fields[fname].annotation))

    def _late_positional(self, args: list, kwargs: list[A.Kwarg], names: typing.Sequence[str],
                         taken: set[str]) -> list:
        """Report positional arguments written after a keyword one (`Dense(activation=relu, 3)`), as Python
        does: which parameter each was meant for is unclear. Returns them, for the caller to drop."""
        if not kwargs:
            return []
        first = min((kw.key_span.line, kw.key_span.col) for kw in kwargs)
        early = [a for a in args if (a.span.line, a.span.col) < first]
        free = iter([n for n in names[len(early):] if n not in taken])  # what each late one may be for
        late = []
        for a in args:
            if (a.span.line, a.span.col) > first:
                name = next(free, "key")
                self.d.add("E203", "a positional argument cannot follow keyword arguments", a.span,
                           f"name it, e.g. {name}={_source_text(a)}, or put it before the keywords")
                late.append(a)
        return late

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
                  quiet_missing: bool | set[str] = False, written: dict[str, str] | None = None,
                  via: dict[str, str] | None = None) -> Any:
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
                came = f" ({via[field]})" if via and field in via else ""
                self.d.add("E201", f"invalid value for '{key}' of {shown}{came}" if field else
                           f"invalid {shown}", where, _explain(errs, cls.model_fields[field].annotation
                                           if field in cls.model_fields else None))
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
            if not self._block_arguments(call, block):
                return []
            # the parameters not given positionally come as keywords
            new_env = {p.name: a for p, a in zip(block.params, call.args, strict=False)}
            new_env.update({kw.key: kw.value for kw in call.kwargs})
            resolved = {k: (env[v.name] if isinstance(v, A.Name) and v.name in env else v)
                        for k, v in new_env.items()}
            self.used_blocks.add(call.name)
            outer, self.block = self.block, block
            try:
                return self.layers(block.body, resolved, path, stack + (call.name,), depth)
            finally:
                self.block = outer
        layer = self.bind(call, "layer", env, path)
        if layer is MISSING:
            self.dropped += 1
            return []
        return [layer]

    def _block_arguments(self, call: A.Call, block: A.BlockDef) -> bool:
        """Whether a block call's arguments fill its parameters exactly once each; reports what does not."""
        names = [p.name for p in block.params]
        late = self._late_positional(call.args, call.kwargs, names, {kw.key for kw in call.kwargs})
        ok = not late
        args = [a for a in call.args if not any(a is x for x in late)]
        for kw in call.kwargs:
            if kw.key not in names:
                self.d.add("E112", f"unknown argument '{kw.key}' for block {call.name}", kw.key_span,
                           _block_argument_hint(call.name, kw.key, names))
                ok = False
            elif kw.key in names[:len(args)]:
                self._given_twice(kw, args[names.index(kw.key)].span, by_position=True)
                ok = False
        given = len(args) + len(call.kwargs)
        if ok and given != len(names):
            n = len(names)
            self.d.add("E206", f"block '{call.name}' takes {n} argument{'s' if n != 1 else ''}, got {given}",
                       call.span, f"defined as block {call.name}({', '.join(names)})")
            ok = False
        return ok

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
        n_errors, n_dropped = self.d.error_count, self.dropped
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
            # (layers that did not resolve, their errors reported where they were read, leave it not empty)
            if not self.had_syntax_errors and self.dropped == n_dropped:
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
            self.d.add("E201", f"invalid value for '{key}'", st.value.span, _explain(e.errors(), ann))
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


_VALUE_WORDS: dict[type, str] = {A.Num: "a number", A.Str: "a string", A.Bool: "true or false",
                                 A.Tuple: "a tuple", A.List: "a list", A.Phrase: "two names"}
# how a hint names a family's values, with an example (the first catalogue name when not listed)
_FAMILY_EXAMPLES = {
    "activation": "an activation name such as relu", "loss": "a loss name such as categorical_crossentropy",
    "source": 'a data source such as iris or csv("file.csv")', "layer": "a layer such as Dense(64)",
    "optimizer": "an optimizer such as Adam(lr=1e-3)", "metric": "a metric name such as accuracy",
    "schedule": "a schedule such as cosine(epochs=10)", "regularizer": "a regularizer such as l2(1e-4)",
    "initializer": "an initializer name such as glorot_uniform", "split": "a split such as holdout(val=0.2)",
    "constraint": "a constraint such as max_norm(3)"}


def _family_example(family: str) -> str:
    word = FAMILY_WORDS.get(family, family)
    return _FAMILY_EXAMPLES.get(family) or f"{_a(word)} {word} such as {catalog.CANONICAL[family][0]}"


def _source_text(v: A.Value) -> str:
    """A simple value as written (`3`, `relu`, `"a.csv"`); `...` for anything longer."""
    if isinstance(v, A.Num):
        return v.text
    if isinstance(v, A.Name):
        return v.name
    if isinstance(v, A.Bool):
        return "true" if v.value else "false"
    if isinstance(v, A.Str):
        return quote(v.value)
    return "..."


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "tuple_type": "a tuple",
    "list_type": "a list", "none_required": None, "model_type": None, "union_tag_invalid": None,
}


# a record's example for a hint (other records: `(key=value, ...)`)
_RECORD_EXAMPLES = {"EarlyStopping": "(monitor=val_loss, patience=5)",
                    "Objective": "(direction=minimize, metric=val_loss)"}


def _structural(err: ErrorDetails) -> str | None:
    """Plain words for Pydantic's errors about a value's shape (a record, a tagged union, a tuple's length),
    whose own wording names Pydantic's internals; None for other errors."""
    ctx, kind = err.get("ctx") or {}, err.get("type")
    if kind == "model_type":
        name = str(ctx.get("class_name", ""))
        return "expected a record such as " + _RECORD_EXAMPLES.get(name, "(key=value, ...)")
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        key = next((x for x in reversed(err["loc"]) if isinstance(x, str)), "this argument")
        listed = ", ".join(tags[:-1]) + " or " + tags[-1] if len(tags) > 1 else "".join(tags)
        return f"{key}= takes {listed}"
    if kind in ("too_long", "too_short") and "actual_length" in ctx:
        n = ctx.get("max_length" if kind == "too_long" else "min_length")
        return f"expected {n} {'numbers' if ctx.get('field_type') == 'Tuple' else 'items'}, " \
               f"got {ctx['actual_length']}"
    if kind in ("model_attributes_type", "dataclass_type"):
        return "expected a name or a call here"
    return None


def _humane(msg: str, err: ErrorDetails) -> str:
    structural = _structural(err)
    if structural is not None:
        return structural
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


def _explain(errs: list[ErrorDetails], annotation: Any = None) -> str:
    """One hint for a field's errors; a union's type errors become 'expected an integer or a tuple'. With the
    field's `annotation`, a value that is no catalogue name says which kind of name belongs there."""
    fam = family_of_annotation(annotation) if annotation is not None else None
    if fam is not None and any(e["type"] == "model_attributes_type" for e in errs):
        return "expected " + _family_example(fam)
    if all(e["type"] in _TYPE_WORDS for e in errs):
        words = list(dict.fromkeys(w for e in errs if (w := _TYPE_WORDS[e["type"]])))
        if words:
            return "expected " + (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1])
    concrete = [e for e in errs if e["type"] not in _TYPE_WORDS] or errs
    return _humane(concrete[0]["msg"], concrete[0])


def _leaf_types(annotation: Any) -> set:
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


def _takes_names(annotation: Any) -> bool:
    """Whether a field may be given a bare name: a string, one of some words, or a catalogue name."""
    stack = [annotation]
    while stack:
        a = stack.pop()
        if typing.get_origin(a) is typing.Literal:
            if any(isinstance(x, str) for x in typing.get_args(a)):
                return True
        elif a is str or (isinstance(a, type) and issubclass(a, catalog.Catalogued)):
            return True
        else:
            stack.extend(typing.get_args(a))
    return False


def _wants_integer(annotation: Any) -> bool:
    """Whether a field takes whole numbers only (units, kernel sizes): uniform() would draw 7.31 for it."""
    types = _leaf_types(annotation) if annotation is not None else set()
    return int in types and float not in types


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


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
    r.unused_blocks()
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
