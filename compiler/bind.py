"""The binder: an AST value → Python, a call → the catalogue class it names, every error recorded.

A call names a catalogue class (catalog.py); positional arguments follow the class' `positional`, keywords its
fields (with `aliases`); a field whose type is a catalogue family is bound recursively. Search-space calls
(`choice`, `uniform`, ...) may stand in any argument: spaces.py records them and gives the value to use.
Inside a block's body (`block`), a name is a parameter, its value the one given at the call (`env`).
"""

from __future__ import annotations

import typing
from typing import Any, TypeGuard

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from . import ast as A
from . import catalog
from .catalog import IRNode, family_of_annotation, lookup, record_class, takes_keyword, takes_names
from .diagnostics import MISSING, Diagnostics, Span, did_you_mean
from .layers import Layer
from .spaces import SEARCH_FUNCS, Overrides, SearchSpaceCalls
from .wording import (
    FAMILY_CODES,
    FAMILY_WORDS,
    VALUE_WORDS,
    article,
    constant_hint,
    explain,
    family_example,
    literal_hint,
    option_shown,
    other_argument,
    other_family,
    other_name,
    source_text,
    written_text,
)

# families every argument of which may be left out: `none` says so explicitly (kernel_reg=none), so that a
# search can choose between one and none (kernel_reg=choice(none, l2(1e-4)))
OPTIONAL_FAMILIES = ("regularizer", "constraint")
NONE = "none"


class Binder:
    def __init__(self, diags: Diagnostics, overrides: Overrides | None = None,
                 had_syntax_errors: bool = False):
        self.d = diags
        self.had_syntax_errors = had_syntax_errors
        self.blocks: dict[str, A.BlockDef] = {}
        self.block: A.BlockDef | None = None  # the block whose body is being expanded
        self.spaces = SearchSpaceCalls(self, overrides or {})

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
            return self.spaces.call(v, env, path, annotation)
        if isinstance(v, A.Name) and self.block is not None and annotation is not None \
                and not takes_names(annotation):
            self.not_a_parameter(v, self.block)
            return MISSING
        fam = family_of_annotation(annotation) if annotation is not None else None
        if fam is not None and isinstance(v, A.List) and catalog.is_list_annotation(annotation):
            out = [self.bind(it, fam, env, f"{path}[{i}]") for i, it in enumerate(v.items)]
            return MISSING if any(o is MISSING for o in out) else out
        if fam is not None:  # (a number or a string where a name belongs is reported by bind)
            return self.bind(v, fam, env, path)
        record = record_class(annotation)
        if record is not None and _is_record(v):
            return self.record(record, v.kwargs, env, path, v.span)
        if record is not None and isinstance(v, A.Call) and v.name not in self.blocks:
            # `early_stopping: EarlyStopping(patience=3)` (Keras' callback): a record has no name
            self.d.add("E201", f"a call to '{v.name}' is not expected here", v.name_span,
                       f"a record is written without a name: {written_text(v)[len(v.name):]}")
            return MISSING
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
            self.d.add("E201", f"a call to '{v.name}' is not expected here", v.name_span, _call_hint(v.name))
            return MISSING
        raise AssertionError(v)

    def bind(self, v: A.Value, family: str, env: dict, path: str) -> Any:
        """Bind a name or call to the catalogue class it names in `family`."""
        if isinstance(v, A.Name) and v.name in env:
            return self.bind(env[v.name], family, {}, path)
        if isinstance(v, A.Call) and v.name in SEARCH_FUNCS:  # (an item of a list: `metrics: [choice(...)]`)
            return self.spaces.call(v, env, path, None, family)
        if isinstance(v, A.Name) and v.name == NONE and family in OPTIONAL_FAMILIES:
            return None  # as Keras' None: what a search writes to try with and without one
        if isinstance(v, A.Name):
            call = A.Call(v.name, v.span, [], [], v.span)
        elif isinstance(v, A.Call):
            call = v
        else:
            self._not_a_name(v, family)
            return MISSING
        cls = lookup(family, call.name)
        if cls is None:
            self.unknown_name(call, family)
            if family == "layer":
                self.named_arguments(call, env)
            return MISSING
        return self.construct(cls, call.name, call.args, call.kwargs, env, path, call.name_span, call.span)

    def named_arguments(self, call: A.Call, env: dict) -> None:
        """The catalogue names among a layer call's keyword arguments, looked up where the layer is not
        bound: an unknown layer's (`Dnese(4, activation=rleu)` said only 'Dnese') and those in a block no
        layer calls, and there also the keywords the layer does not take; so that every error is said at
        once. Only names (`l2` of `kernel_reg=l2(q)`, whose value needs the block's call), and not the names
        of `env` (a block's parameters)."""
        cls = lookup("layer", call.name)
        for kw in call.kwargs:
            if cls is not None and not takes_keyword(cls, cls.aliases.get(kw.key, kw.key)):
                self._unknown_argument(cls, call.name, kw)  # (a known layer's misspelt keyword)
                continue
            family, v = _keyword_family(kw.key), kw.value
            if family is None or not isinstance(v, (A.Name, A.Call)) or v.name in env \
                    or v.name in SEARCH_FUNCS or (family in OPTIONAL_FAMILIES and v.name == NONE):
                continue
            if lookup(family, v.name) is None:
                called = v if isinstance(v, A.Call) else A.Call(v.name, v.span, [], [], v.span)
                self.unknown_name(called, family)

    def bound_quietly(self, v: A.Value, family: str, env: dict, path: str) -> Any:
        """`v` bound in `family` with nothing reported (MISSING when it does not bind): what a search
        space's option stands for, to compare two options; its errors are reported where it is bound."""
        quiet = Binder(Diagnostics(), had_syntax_errors=self.had_syntax_errors)
        quiet.blocks = self.blocks
        return quiet.bind(v, family, env, path)

    def unknown_name(self, call: A.Call, family: str) -> None:
        """Report a name that is not in the catalogue family (nor a block, for a layer)."""
        if family == "layer" and (call.name in self.d.recovered_blocks or (
                "*" in self.d.recovered_blocks and call.name[:1].islower()
                and call.name.lower() not in {n.lower() for n in catalog.names("layer")})):
            return  # most likely a block whose header had a syntax error, already reported
        word = FAMILY_WORDS.get(family, family)
        candidates = catalog.names(family) + (list(self.blocks) if family == "layer" else [])
        # every name of a short family (activations: 14, leaky_relu and elu last), else the first 12 and '...'
        known = list(catalog.CANONICAL[family])
        known = known if len(known) <= 16 else known[:12] + ["..."]
        if family in OPTIONAL_FAMILIES:
            candidates, known = candidates + [NONE], known + [NONE]
        # (`activation=choise(relu, elu)`: a misspelt search space, when no name of the family is closer)
        spaces = [] if family == "layer" or not call.args else list(SEARCH_FUNCS)
        self.d.add(FAMILY_CODES.get(family, "E100"), f"unknown {word} '{call.name}'", call.name_span,
                   lambda: other_name(family, call.name) or other_family(family, call.name) or did_you_mean(
                       call.name, candidates) or (
                       spaces and did_you_mean(call.name, spaces)) or f"known: {', '.join(known)}")

    def not_a_parameter(self, v: A.Name, block: A.BlockDef) -> None:
        """A name inside a block where a number belongs (`block b(n) { Dense(m) }`): a misspelt parameter."""
        names = [p.name for p in block.params]
        takes = f"block {block.name} takes: {', '.join(names)}" if names else \
            f"block {block.name} takes no parameters"
        self.d.add("E112", f"'{v.name}' is not a parameter of block {block.name}", v.span,
                   lambda: did_you_mean(v.name, names) or takes)

    def _not_a_name(self, v: A.Value, family: str) -> None:
        """A number, string, list or tuple where a catalogue name belongs (`activation="relu"`)."""
        word = FAMILY_WORDS.get(family, family)
        what = VALUE_WORDS.get(type(v), "this value")
        if isinstance(v, A.Str) and lookup(family, v.value) is not None:
            hint = f"write {v.value} without quotes"
        elif isinstance(v, A.Tuple) and v.items and not v.kwargs and family in ("metric", "augment"):
            # `metrics: (accuracy, f1)`
            hint = f"a list is written in [ ]: {written_text(A.List(v.items, [], v.span))}"
        else:
            quotes = " (without quotes)" if isinstance(v, A.Str) else ""
            hint = f"expected {family_example(family)}{quotes}"
        self.d.add("E201", f"expected {article(word)} {word} here, not {what}", v.span, hint)

    def construct(self, cls, spec_name: str, args: list, kwargs: list, env: dict, path: str, name_span: Span,
                  span: Span, quiet_missing: bool | set[str] = False) -> Any:
        fields = cls.model_fields
        shown = spec_name
        values: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        written: dict[str, str] = {}  # field -> the keyword the spec used for it (`lr` for learning_rate)
        taken = {cls.aliases.get(kw.key, kw.key) for kw in kwargs}
        late = self.late_positional(args, kwargs, cls.positional, taken)
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
            if not takes_keyword(cls, fname):
                self._unknown_argument(cls, shown, kw)
                ok = False
            elif fname in values:
                self.given_twice(kw, spans[fname], by_position=fname not in written)
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
        if ok:
            self.spaces.check_alternatives(cls, converted, path, shown, written)
        # a value that came through a block parameter: the error names the parameter and where it was given
        via = {f: f"{v.name} = {_briefly(written_text(env[v.name]))}, given on line {env[v.name].span.line}"
               for f, v in values.items() if isinstance(v, A.Name) and v.name in env}
        chosen = {f: c for f, v in values.items() if f in converted
                  and (c := self.spaces.chosen_option(v, env, converted[f])) is not None}
        if not ok:
            # the arguments that did convert are still validated, so that their errors are reported with the
            # others (`split: holdout(tst=0.2)` and `normalize: standrd` in one data { }): their own errors
            # only, not what the failed ones would have decided
            self._validate(cls, converted, _item_spans(spans, values), name_span, shown, True, written, via,
                           chosen, partial=True, given=values)
            return MISSING
        return self._validate(cls, converted, _item_spans(spans, values), name_span, shown, quiet_missing,
                              written, via, chosen, given=values)

    def late_positional(self, args: list, kwargs: list[A.Kwarg], names: typing.Sequence[str],
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
                           f"name it, e.g. {name}={source_text(a)}, or put it before the keywords")
                late.append(a)
        return late

    def _too_many_positional(self, cls, shown: str, args: list) -> None:
        n = len(cls.positional)
        extra = args[n]
        hint = "name the argument: key=value" if n else f"{shown} takes keyword arguments only"
        first = cls.model_fields[cls.positional[0]].annotation if n else None
        if n == 1 and "tuple[" in str(first) and all(isinstance(a, A.Num) for a in args):
            # `Reshape(7, 7, 64)`: a shape is one tuple
            hint = f"a shape is one tuple: {shown}(({', '.join(source_text(a) for a in args)}))"
        elif isinstance(extra, A.Name):
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
                   lambda: other_argument(kw.key, kw.value, cls) or did_you_mean(kw.key, valid) or (
                       other_argument(kw.key, kw.value, cls, siblings=True)) or (
                       f"{shown} takes: {', '.join(valid)}" if valid
                                                           else f"{shown} takes no arguments"))

    def given_twice(self, kw: A.Kwarg, first: Span, by_position: bool) -> None:
        how = "by position, " if by_position else ""
        self.d.add("E205", f"argument '{kw.key}' given twice", kw.key_span,
                   f"already given {how}at column {first.col}" if first.line == kw.key_span.line
                   else f"already given {how}on line {first.line}")

    def _validate(self, cls, converted: dict, spans: dict, name_span: Span, shown: str,
                  quiet_missing: bool | set[str] = False, written: dict[str, str] | None = None,
                  via: dict[str, str] | None = None, chosen: dict[str, tuple[str, A.Value]] | None = None,
                  partial: bool = False, given: dict[str, A.Value] | None = None) -> Any:
        """`cls(**converted)`, or MISSING with each field that does not fit reported at its value (a search
        space's at the option or end taken, in the words check_alternatives uses for the others: `chosen`).
        `partial`: some arguments failed already; only the errors of those given are reported."""
        try:
            return cls(**converted)
        except ValidationError as e:
            errors = e.errors()
        except Exception:  # (a validator that reads an argument that failed: nothing more is said)
            if not partial:
                raise
            return MISSING
        by_field: dict[str | None, list[ErrorDetails]] = {}
        for err in errors:
            loc = [x for x in err["loc"] if isinstance(x, str)]
            by_field.setdefault(loc[0] if loc else None, []).append(err)
        if partial:
            by_field = {f: errs for f, errs in by_field.items() if f in spans and f in converted
                        and errs[0]["type"] != "missing"}
        for field, errs in by_field.items():
            if errs[0]["type"] == "missing" and field:
                if not (quiet_missing is True or (quiet_missing and field in quiet_missing)):
                    self.d.add("E202", f"{shown} is missing its required argument '{field}'", name_span,
                               f"write {shown}({field}=...)")
                continue
            where = spans.get(field, name_span)
            # (a tuple's one bad item, `(3, relu)`: the caret under it, not the whole tuple)
            indices = {next(x for x in err["loc"] if isinstance(x, int)) for err in errs
                       if any(isinstance(x, int) for x in err["loc"])}
            if len(indices) == 1 and (field, *indices) in spans:
                where = spans[(field, *indices)]
            key = (written or {}).get(field, field) if field else field
            came = f" ({via[field]})" if via and field in via else ""
            if field and chosen and field in chosen:
                func, option = chosen[field]
                where = option.span
                self.d.add("E501", f"{func}() may choose {option_shown(option, converted[field])}, which "
                           f"is not a valid '{key}' of {shown}{came}", where,
                           explain(errs, cls.model_fields[field].annotation))
                continue
            self.d.add("E201", f"invalid value for '{key}' of {shown}{came}" if field else
                       f"invalid {shown}", where, constant_hint(converted.get(field or ""))
                       or literal_hint((given or {}).get(field or ""), errs)
                       or explain(errs, cls.model_fields[field].annotation
                                  if field in cls.model_fields else None))
        return MISSING

    def record(self, cls: type[IRNode], kwargs: list[A.Kwarg], env: dict, path: str, span: Span) -> Any:
        return self.construct(cls, cls.__name__, [], kwargs, env, path, span, span)


def _briefly(text: str, width: int = 40) -> str:
    """A value's text as a message quotes it: at most `width` characters."""
    return text if len(text) <= width else text[:width - 3] + "..."


def _item_spans(spans: dict, values: dict[str, Any]) -> dict:
    """`spans` and, for an argument written as a tuple or list, each item's span under (field, index)."""
    out = dict(spans)
    for fname, v in values.items():
        if isinstance(v, (A.Tuple, A.List)):
            out.update({(fname, i): item.span for i, item in enumerate(v.items)})
    return out


def _is_record(v: A.Value) -> TypeGuard[A.Tuple]:
    """`(k=v, ...)`: keywords only."""
    return isinstance(v, A.Tuple) and bool(v.kwargs) and not v.items


# other tuners' search spaces, as dlc writes them
OTHER_SPACES = {"quniform": "int_uniform", "qloguniform": "loguniform",
                "log_uniform": "loguniform", "suggest_int": "int_uniform", "suggest_float": "uniform",
                "suggest_categorical": "choice", "categorical": "choice", "one_of": "choice"}


def _call_hint(name: str) -> str:
    """What a call where a plain value belongs may have meant: a search space misspelt, or another tuner's."""
    spaces = ", ".join(f"{f}(...)" for f in dict.fromkeys(SEARCH_FUNCS.values()))
    if name in OTHER_SPACES:
        return f"dlc writes this search space {OTHER_SPACES[name]}(...) (its spaces: {spaces})"
    guess = did_you_mean(name, SEARCH_FUNCS)
    if guess is not None:
        return f"{guess} (a search space: {spaces})"
    return "expected a number, a name, a string or a tuple"


def _keyword_family(key: str) -> str | None:
    """The catalogue family a layer keyword names, in any layer that takes it (`activation`: activation,
    `kernel_init`: initializer); None for a keyword of numbers or one no layer takes."""
    for cls in catalog.REGISTRY.get("layer", {}).values():
        field = cls.model_fields.get(cls.aliases.get(key, key))
        if field is not None and (family := family_of_annotation(field.annotation)) is not None:
            return family
    return None
