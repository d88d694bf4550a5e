"""Layer expansion: `layers { }` as the flat list of layer IR, blocks called with their arguments, repeats
(`Dense(64) * 3`) and residual bodies expanded, within the limits `dlc check` must still answer in seconds."""

from __future__ import annotations

import typing
from typing import Any, Protocol

from . import ast as A
from .catalog import lookup
from .diagnostics import MISSING, Diagnostics, Span, did_you_mean
from .layers import Residual
from .spaces import SEARCH_FUNCS, SearchSpaceCalls
from .spec import Spec
from .wording import written_text

# a model's layers once blocks and repeats are expanded (every layer and block call counts), and how deep
# block calls and residual blocks may nest
MAX_LAYERS = 10_000
MAX_DEPTH = 64


class _TooManyLayers(Exception):
    """The layers expand beyond MAX_LAYERS: the expansion stops (the model's `layers` reports it)."""


class LayerBinder(Protocol):
    """What the expansion asks of the binder (bind.Binder): each layer call bound, the blocks, the block whose
    body is being expanded (its parameters are names there), and its argument diagnostics."""

    d: Diagnostics
    blocks: dict[str, A.BlockDef]
    block: A.BlockDef | None
    had_syntax_errors: bool

    def bind(self, v: A.Value, family: str, env: dict, path: str) -> Any: ...

    def unknown_name(self, call: A.Call, family: str) -> None: ...

    def named_arguments(self, call: A.Call, env: dict) -> None: ...

    def late_positional(self, args: list, kwargs: list[A.Kwarg], names: typing.Sequence[str],
                        taken: set[str]) -> list: ...

    def given_twice(self, kw: A.Kwarg, first: Span, by_position: bool) -> None: ...

    def not_a_parameter(self, v: A.Name, block: A.BlockDef) -> None: ...

    @property
    def spaces(self) -> SearchSpaceCalls: ...


class LayerExpander:
    def __init__(self, binder: LayerBinder):
        self.binder = binder
        self.d: Diagnostics = binder.d
        self.expanded = 0  # layer and block calls expanded so far (MAX_LAYERS)
        self.top: A.Stmt | None = None  # the statement of `layers { }` being expanded
        self.used_blocks: set[str] = set()  # blocks called from the layers (the others are checked apart)
        self.dropped = 0  # layer calls that did not resolve (their errors reported where they were found)

    def model_layers(self, st: A.Section) -> Any:
        """The layers of `layers { }`, or MISSING when an error there leaves no network to check."""
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
            if not self.binder.had_syntax_errors and self.dropped == n_dropped:
                self.d.add("E208", "layers { } is empty", st.name_span, "add at least one layer")
            return MISSING
        return layers

    def unused_blocks(self) -> None:
        """The blocks no layer calls, checked as far as they can be without a call's values (_layer_names):
        a typo there (`activation=rleu`, `Dropout(7)`) would otherwise wait, unreported, for the block's
        first use."""
        for name, block in self.binder.blocks.items():
            if name not in self.used_blocks:
                self._layer_names(block.body, {p.name: p for p in block.params})

    def _layer_names(self, body: list[A.Stmt], params: dict) -> None:
        """A body of an unused block: a layer whose arguments use none of the block's parameters (nor a
        search space, which would be added to the search) is checked whole (`Dropout(7)`), as it would be
        at the block's first use; of the others, the names."""
        for st in body:
            if isinstance(st, A.LayerStmt) and st.call.name not in self.binder.blocks:
                if lookup("layer", st.call.name) is None:
                    self.binder.unknown_name(st.call, "layer")
                    self.binder.named_arguments(st.call, params)
                elif _names_in(st.call) & (set(params) | set(SEARCH_FUNCS)):
                    self.binder.named_arguments(st.call, params)
                else:
                    self.binder.bind(st.call, "layer", {}, "unused block")
            elif isinstance(st, A.Section) and st.name == "residual":
                self._layer_names(st.body, params)

    def layers(self, body: list[A.Stmt], env: dict, path: str, stack: tuple[str, ...],
               depth: int = 0) -> list:
        """The layers of a body, blocks and repeats expanded; `depth`: the residual blocks around it."""
        out: list = []
        for st in body:
            if not stack and depth == 0:
                self.top = st
            if isinstance(st, A.LayerStmt):
                for _ in range(self._repeats(st, env, f"{path}[{len(out)}]")):
                    out.extend(self.layer_call(st.call, env, f"{path}[{len(out)}]", stack, depth))
            elif isinstance(st, A.Section) and st.name == "residual":
                if depth >= MAX_DEPTH:
                    self.d.add("E210", f"nested too deeply: more than {MAX_DEPTH} levels of residual blocks",
                               st.name_span, f"at most {MAX_DEPTH} residual blocks may nest")
                    continue
                # (each repeat its own weights, as a repeated layer's)
                for _ in range(self._repeats(st, env, f"{path}[{len(out)}]")):
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

    def _repeats(self, st: A.LayerStmt | A.Section, env: dict, path: str) -> int:
        """How many times a layer statement is expanded (0 after reporting a bad count)."""
        count = st.repeat
        if count is None:
            return 1
        if not isinstance(count, int):
            found = self._count_value(count, st.repeat_span, env, path)
            if found is None:
                return 0
            count = found
        if count < 1:
            self.d.add("E201", "a repeat count must be at least 1", st.repeat_span)
            return 0
        if count > MAX_LAYERS:
            shown = f"{count:,} times" if count < 10**18 else "more than 10^18 times"
            what = st.call.name if isinstance(st, A.LayerStmt) else st.name
            self.d.add("E211", f"too many layers: {what} repeated {shown}", st.repeat_span,
                       f"a model may have at most {MAX_LAYERS:,} layers")
            return 0
        return count

    def _count_value(self, count: str | A.Call, span: Span | None, env: dict, path: str) -> int | None:
        """The count of `* n` (a block's parameter: `block stack(u, n) { Dense(u) * n }`) or of a searched
        depth (`* choice(1, 2, 3)`, or a parameter given one): the number, or the option this spec or trial
        takes; None after reporting a name that is no parameter, or a value that is no whole number."""
        if isinstance(count, A.Call):
            return self._searched_count(count, env, path)
        block = self.binder.block
        if block is None:
            self.d.add("E201", f"'{count}' is no repeat count", span,
                       "outside a block a layer is repeated a whole number of times: Dense(64) * 3")
            return None
        if count not in env:
            self.binder.not_a_parameter(A.Name(count, span or block.name_span), block)
            return None
        v = env[count]
        if isinstance(v, A.Num) and isinstance(v.value, int) and not isinstance(v.value, bool):
            return v.value
        if isinstance(v, A.Call) and v.name in SEARCH_FUNCS:
            return self._searched_count(v, env, path)
        self.d.add("E201", f"a repeat count is a whole number ({count} = {written_text(v)}, given on line "
                   f"{v.span.line})", span, f"give {count} a whole number, at least 1")
        return None

    def _searched_count(self, v: A.Call, env: dict, path: str) -> int | None:
        """A searched repeat count (the depth: `Dense(64) * choice(1, 2, 3)`, `* int_uniform(1, 4)`): every
        option a whole number from 1 to MAX_LAYERS, recorded as the search space `...repeat`, and the option
        this spec or trial takes."""
        if v.name not in SEARCH_FUNCS:
            self.d.add("E201", f"a repeat count is a whole number, not {written_text(v)}", v.span,
                       "write * 3, or search the depth: * choice(1, 2, 3)")
            return None
        if SEARCH_FUNCS[v.name] not in ("choice", "int_uniform"):
            self.d.add("E501", f"a repeat count is a whole number: {v.name}() draws fractions", v.name_span,
                       "search a depth with choice(1, 2, 3) or int_uniform(1, 4)")
            return None
        bad = next((a for a in v.args if not _a_count(a)), None)
        if bad is not None:
            self.d.add("E501", f"a searched repeat count takes whole numbers from 1 to {MAX_LAYERS:,}, not "
                       f"{written_text(bad)}", bad.span, "search a depth with choice(1, 2, 3)")
            return None
        chosen = self.binder.spaces.call(v, env, f"{path}.repeat", int)
        return None if chosen is MISSING else int(chosen)

    def _count(self) -> None:
        self.expanded += 1
        if self.expanded > MAX_LAYERS:
            raise _TooManyLayers

    def layer_call(self, call: A.Call, env: dict, path: str, stack: tuple[str, ...], depth: int = 0) -> list:
        self._count()
        if call.name in self.binder.blocks and lookup("layer", call.name) is None:
            block = self.binder.blocks[call.name]
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
            outer, self.binder.block = self.binder.block, block
            try:
                return self.layers(block.body, resolved, path, stack + (call.name,), depth)
            finally:
                self.binder.block = outer
        layer = self.binder.bind(call, "layer", env, path)
        if layer is MISSING:
            self.dropped += 1
            return []
        return [layer]

    def _block_arguments(self, call: A.Call, block: A.BlockDef) -> bool:
        """Whether a block call's arguments fill its parameters exactly once each; reports what does not."""
        names = [p.name for p in block.params]
        late = self.binder.late_positional(call.args, call.kwargs, names, {kw.key for kw in call.kwargs})
        ok = not late
        args = [a for a in call.args if not any(a is x for x in late)]
        for kw in call.kwargs:
            if kw.key not in names:
                self.d.add("E112", f"unknown argument '{kw.key}' for block {call.name}", kw.key_span,
                           _block_argument_hint(call.name, kw.key, names))
                ok = False
            elif kw.key in names[:len(args)]:
                self.binder.given_twice(kw, args[names.index(kw.key)].span, by_position=True)
                ok = False
        given = len(args) + len(call.kwargs)
        if ok and given != len(names):
            n = len(names)
            self.d.add("E206", f"block '{call.name}' takes {n} argument{'s' if n != 1 else ''}, got {given}",
                       call.span, f"defined as block {call.name}({', '.join(names)})")
            ok = False
        return ok


def _a_count(v: A.Value) -> bool:
    """Whether a searched repeat count's option is one: a whole number from 1 to MAX_LAYERS."""
    return isinstance(v, A.Num) and isinstance(v.value, int) and not isinstance(v.value, bool) \
        and 1 <= v.value <= MAX_LAYERS


def _block_argument_hint(block: str, key: str, names: list[str]):
    """The hint for an unknown argument of a block call, computed when shown."""
    return lambda: did_you_mean(key, names) or f"block {block} takes: {', '.join(names)}"


def name_layers(spec: Spec) -> Spec:
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
    """The blocks of a file by name, collected before any layer is expanded: a block may be used above its
    definition."""
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


def _names_in(v) -> set[str]:
    """Every name a value mentions, called ones included (`l2(q)`: l2 and q)."""
    if isinstance(v, A.Name):
        return {v.name}
    if isinstance(v, A.Call):
        return {v.name}.union(*(_names_in(a) for a in v.args), *(_names_in(k.value) for k in v.kwargs))
    if isinstance(v, (A.Tuple, A.List)):
        return set().union(*(_names_in(a) for a in v.items), *(_names_in(k.value) for k in v.kwargs))
    if isinstance(v, A.Phrase):
        return {w.name for w in v.words}
    return set()
