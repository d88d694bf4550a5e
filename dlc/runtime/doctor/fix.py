"""The remedy as a spec: for a diagnosis, the smallest text edit of the run's spec file that applies the
guides' first remedy (a lower learning rate, dropout after the widest hidden layers, ReLU with He
initialization, leaky_relu, clipnorm, a plateau schedule, standardized inputs, a wider bottleneck, ...).

Edits are made on the spec's text at the positions the parser recorded (dlc.compiler.ast spans): comments,
layout and everything not changed stay as they were. Nothing here reads or writes a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc.compiler import ast as A
from dlc.compiler.search import literal_of
from dlc.compiler.syntax import quote

from .rules import FIX_STEPS_PER_EPOCH, HEAVY_DROPOUT, HEAVY_WEIGHT_DECAY, LR_DOWN, PLATEAU_EPOCHS, Diagnosis

DROPOUT_RATE = 0.3  # the Dropout --fix inserts for overfitting (the guides: 0.2-0.5)
DROPOUT_STEP = 0.2  # an existing Dropout below 0.5 is raised by this, up to 0.5
CLIPNORM = 1.0  # the clipnorm --fix adds for exploding gradients
SHORT_RUN_EPOCHS = 10  # underfitting in a run of 1 or 2 epochs: --fix trains at least this many
PLATEAU_FIX = "plateau(monitor=loss, factor=0.5, patience=3)"  # the schedule --fix adds for a plateau
EARLY_STOPPING_FIX = "(monitor=val_loss, patience=5, restore_best=true)"
# underfitting with strong regularization: a Dropout above HEAVY_DROPOUT set to DROPOUT_RATE, an L1/L2 factor
# of HEAVY_WEIGHT_DECAY or more divided by WEIGHT_DECAY_DOWN (to at most WEIGHT_DECAY_FIX)
WEIGHT_DECAY_DOWN = 10.0
WEIGHT_DECAY_FIX = 1e-3


@dataclass
class Edit:
    start: int  # offsets in the source
    end: int
    text: str


@dataclass
class Change:
    """What --fix writes for one diagnosis: a one-line summary and the text edits."""

    summary: str
    edits: list[Edit] = field(default_factory=list)
    sets: tuple[str, ...] = ()  # the command-line overrides the change replaces ("epochs")

    def to_json(self, source: str, spec_name: str = "", writes: str = "doctor.dlspec") -> dict:
        """The change, its edits positioned in the spec it edits (`spec`), written to `writes`."""
        starts = _starts(source)

        def where(offset: int) -> tuple[int, int]:
            line = max(i for i, s in enumerate(starts) if s <= offset)
            return line + 1, offset - starts[line] + 1

        return {"summary": self.summary, "spec": spec_name, "writes": writes,
                "edits": [{"line": where(e.start)[0], "col": where(e.start)[1], "old": source[e.start:e.end],
                           "new": e.text} for e in sorted(self.edits, key=lambda e: e.start)]}


def _starts(source: str) -> list[int]:
    starts = [0]
    starts.extend(i + 1 for i, ch in enumerate(source) if ch == "\n")
    return starts


def apply(source: str, edits: list[Edit]) -> str:
    out = source
    for e in sorted(edits, key=lambda e: e.start, reverse=True):
        out = out[:e.start] + e.text + out[e.end:]
    return out


class SpecText:
    """A spec's text, its AST and IR, with the positions of what the fixes change."""

    def __init__(self, source: str, tree: A.File, spec, ran=None):
        self.source, self.tree, self.spec = source, tree, spec
        self.ran = ran if ran is not None else spec  # the spec as the run trained it (ir.json: overrides)
        self.starts = _starts(source)
        self.model = tree.models[0]
        # the file's line ending, which a line the fixes add ends with too (a CRLF spec stays CRLF)
        self.newline = "\r\n" if "\r\n" in source else "\n"

    # positions
    def off(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col - 1

    def span(self, span) -> tuple[int, int]:
        return self.off(span.line, span.col), self.off(span.end_line, span.end_col)

    def text(self, span) -> str:
        a, b = self.span(span)
        return self.source[a:b]

    def line_end(self, line: int) -> int:
        """The offset of the newline that ends `line` (its CR in a CRLF file; the end of the text for the last
        line)."""
        end = self.starts[line] - 1 if line < len(self.starts) else len(self.source)
        return end - 1 if end > self.starts[line - 1] and self.source[end - 1] == "\r" else end

    def indent(self, line: int) -> str:
        a = self.starts[line - 1]
        text = self.source[a:self.line_end(line)]
        return text[:len(text) - len(text.lstrip())]

    def replace(self, span, text: str) -> Edit:
        a, b = self.span(span)
        return Edit(a, b, text)

    def line_after(self, stmt, text: str, indent: str | None = None) -> Edit:
        """A new line after the statement's last line, indented like the statement."""
        at = self.line_end(stmt.span.end_line)
        pad = self.indent(stmt.span.line) if indent is None else indent
        return Edit(at, at, self.newline + pad + text)

    # the spec's statements
    def section(self, name: str) -> A.Section | None:
        return next((s for s in self.model.body if isinstance(s, A.Section) and s.name == name), None)

    def assign(self, key: str, section: str | None = None) -> A.Assign | None:
        body = self.model.body if section is None else (getattr(self.section(section), "body", None) or [])
        return next((s for s in body if isinstance(s, A.Assign) and s.key == key), None)

    def calls(self) -> dict[tuple[int, int], A.Call]:
        """Every call of the file (models and blocks) by the position of its name, as layers record it."""
        return A.calls_by_position(self.tree)

    def layers(self) -> list:
        """The spec's layers in order (residual bodies included), each with `.at`: where its call is."""
        return [info.layer for info in self.spec.walk()]

    def top_statements(self) -> list[A.LayerStmt]:
        section = self.section("layers")
        return [s for s in (section.body if section else []) if isinstance(s, A.LayerStmt)]

    def in_block(self, call: A.Call) -> bool:
        """The call is written inside a `block` definition (a change there changes every use)."""
        line = call.name_span.line
        blocks = list(self.tree.blocks) + [s for s in self.model.body if isinstance(s, A.BlockDef)]
        return any(b.span.line <= line <= b.span.end_line for b in blocks)


def set_arg(st: SpecText, call: A.Call, key: str, value: str, aliases: tuple[str, ...] = (),
            positional: int | None = None) -> Edit:
    """`key=value` in the call: the written keyword (or its alias, or the positional argument) replaced, else
    added after the last argument."""
    for kw in call.kwargs:
        if kw.key == key or kw.key in aliases:
            return st.replace(kw.value.span, value)
    if positional is not None and len(call.args) > positional:
        return st.replace(call.args[positional].span, value)
    written = list(call.args) + [kw.value for kw in call.kwargs]
    if written:
        last = max(written, key=lambda v: (v.span.end_line, v.span.end_col))
        at = st.off(last.span.end_line, last.span.end_col)
        return Edit(at, at, f", {key}={value}")
    end = st.off(call.span.end_line, call.span.end_col) - 1  # the closing parenthesis
    return Edit(end, end, f"{key}={value}")


def arg(call: A.Call, key: str, positional: int | None = None, aliases: tuple[str, ...] = ()):
    """The written value of an argument (keyword, alias or position), or None."""
    for kw in call.kwargs:
        if kw.key == key or kw.key in aliases:
            return kw.value
    if positional is not None and len(call.args) > positional:
        return call.args[positional]
    return None


def number(x: float) -> str:
    """A rounded number as spec text (3 significant digits), as a person writes it: 1e11 and 1e-5, not
    100000000000.0 and 1e-05; 0.001 and 10000.0 as repr writes them."""
    value = float(f"{x:.3g}")
    text = literal_of(value)
    if "e" not in text and len(text) <= 8:
        return text
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else text


# ------------------------------------------------------------------------------------------------ plans


def _optimizer(st: SpecText, key: str, value: str) -> Edit | None:
    a = st.assign("optimizer")
    if a is None:
        return None
    if isinstance(a.value, A.Name):  # `optimizer: Adam`: the call with its argument
        return st.replace(a.value.span, f"{a.value.name}({key}={value})")
    if isinstance(a.value, A.Call):
        aliases = ("learning_rate",) if key == "lr" else ()
        return set_arg(st, a.value, key, value, aliases, positional=0 if key == "lr" else None)
    return None


def _scale_lr(st: SpecText, factor: float, why: str) -> Change | None:
    lr = st.spec.optimizer.learning_rate
    new = float(f"{lr * factor:.3g}")
    edit = _optimizer(st, "lr", number(new))
    if edit is None:
        return None
    return Change(f"optimizer {st.spec.optimizer.kind}: lr {lr:g} -> {new:g} ({why})", [edit])


def _layer_calls(st: SpecText, names: set[str] | None = None, pick=None) -> list[tuple[Any, A.Call]]:
    """(IR layer, its call) of the layers named (or picked), one per written call."""
    calls = st.calls()
    out, seen = [], set()
    for layer in st.layers():
        if (names is not None and layer.name not in names) or (pick is not None and not pick(layer)):
            continue
        if layer.at is None or layer.at in seen or tuple(layer.at) not in calls:
            continue
        seen.add(layer.at)
        out.append((layer, calls[tuple(layer.at)]))
    return out


def _hidden(st: SpecText) -> list:
    """The weighted layers before the last one (the output layer)."""
    weighted = [info.layer for info in st.spec.walk() if info.weights]
    return weighted[:-1]


def _where(st: SpecText, calls: list[tuple[Any, A.Call]]) -> str:
    lines = sorted({c.name_span.line for _, c in calls})
    where = "line " + ", ".join(map(str, lines)) if len(lines) < 2 else \
        "lines " + ", ".join(map(str, lines))
    if any(st.in_block(c) for _, c in calls):
        where += ", inside a block: every use of it changes"
    return where


def _count(st: SpecText, calls: list[tuple[Any, A.Call]], names: set[str]) -> int:
    """How many layers of `names` the edited calls make (a repeated statement makes several)."""
    spots = {tuple(layer.at) for layer, _ in calls}
    return sum(1 for x in st.layers() if x.name in names and x.at is not None and tuple(x.at) in spots)


def fix_divergence(st: SpecText, d: Diagnosis) -> Change | None:
    return _scale_lr(st, 1 / LR_DOWN, f"{LR_DOWN:g}x lower: the loss diverged")


def fix_lr_too_low(st: SpecText, d: Diagnosis) -> Change | None:
    factor = float(d.facts.get("factor", 10.0))
    why = "the loss barely moved" if d.facts.get("stuck") else "the updates were tiny"
    return _scale_lr(st, factor, f"{factor:.2g}x higher: {why}")


def fix_exploding_gradients(st: SpecText, d: Diagnosis) -> Change | None:
    opt = st.spec.optimizer
    if any(getattr(opt, k, None) is not None for k in ("clipnorm", "clipvalue", "global_clipnorm")):
        return _scale_lr(st, 1 / LR_DOWN, f"{LR_DOWN:g}x lower: the gradients explode although clipped")
    edit = _optimizer(st, "clipnorm", literal_of(CLIPNORM))
    if edit is None:
        return None
    return Change(f"optimizer {opt.kind}: clipnorm={CLIPNORM!r} (gradient clipping)", [edit])


def fix_vanishing_gradients(st: SpecText, d: Diagnosis) -> Change | None:
    hidden = {layer.name for layer in _hidden(st)}
    squash = _layer_calls(st, hidden, lambda x: getattr(getattr(x, "activation", None), "name", None)
                          in ("sigmoid", "tanh", "hard_sigmoid", "softsign"))
    edits: list[Edit] = []
    for layer, call in squash:
        act = arg(call, "activation")
        if act is not None:
            edits.append(st.replace(act.span, "relu"))
        if "kernel_init" in type(layer).model_fields:
            edits.append(set_arg(st, call, "kernel_init", "he_normal", ("kernel_initializer",)))
    if edits:
        acts = sorted({layer.activation.name for layer, _ in squash})
        n = _count(st, squash, hidden)
        return Change(f"{n} hidden layer{'s' * (n > 1)} ({_where(st, squash)}): activation "
                      f"{'/'.join(acts)} -> relu with kernel_init=he_normal", edits)
    plain = _layer_calls(st, hidden, lambda x: "kernel_init" in type(x).model_fields
                         and not x.kernel_init.name.startswith("he_"))
    if not plain:
        return None
    edits = [set_arg(st, call, "kernel_init", "he_normal", ("kernel_initializer",)) for _, call in plain]
    n = _count(st, plain, hidden)
    return Change(f"kernel_init=he_normal in {n} hidden layer{'s' * (n > 1)} ({_where(st, plain)})", edits)


def _random_init(st: SpecText, names: set[str]) -> Change | None:
    """kernel_init=he_normal (the ReLU family) or glorot_uniform (the others) in the layers `names`, whose
    kernels start constant."""
    calls = _layer_calls(st, names, lambda x: "kernel_init" in type(x).model_fields)
    if not calls:
        return None
    relu = ("relu", "leaky_relu", "relu6", "elu", "selu", "gelu", "swish")
    edits, what = [], []
    for layer, call in calls:
        act = getattr(getattr(layer, "activation", None), "name", None)
        init = "he_normal" if act in relu else "glorot_uniform"
        edits.append(set_arg(st, call, "kernel_init", init, ("kernel_initializer",)))
        what.append(f"{layer.name} {layer.kernel_init.name} -> {init}")
    return Change(f"kernel_init: {', '.join(what)} ({_where(st, calls)}: a constant kernel keeps the units "
                  "the same)", edits)


def fix_dead_relu(st: SpecText, d: Diagnosis) -> Change | None:
    if d.facts.get("symmetric"):
        change = _random_init(st, set(d.facts["symmetric"]))
        if change is not None:
            return change
    names = set((d.facts.get("layers") or {}).keys())
    edits, changed = [], []
    for layer, call in _layer_calls(st, names):
        act = arg(call, "activation", positional=0 if layer.kind == "Activation" else None)
        if isinstance(act, A.Name) and act.name == "relu":
            edits.append(st.replace(act.span, "leaky_relu"))
            changed.append((layer, call))
    if not edits:
        return _scale_lr(st, 1 / 3, "3x lower: a large update kills ReLUs")
    names_changed = ", ".join(x.name for x, _ in changed)
    return Change(f"relu -> leaky_relu in {names_changed} ({_where(st, changed)})", edits)


def fix_saturation(st: SpecText, d: Diagnosis) -> Change | None:
    data = st.section("data")
    if st.spec.data is not None and st.spec.data.normalize != "standard" and data is not None:
        norm = st.assign("normalize", "data")
        if norm is not None:
            return Change(f"data: normalize {st.spec.data.normalize} -> standard",
                          [st.replace(norm.value.span, "standard")])
        src = st.assign("source", "data")
        if src is not None:
            return Change("data: normalize: standard (it was none)",
                          [st.line_after(src, "normalize: standard")])
    names = set((d.facts.get("layers") or {}).keys())
    calls = _layer_calls(st, names, lambda x: "kernel_init" in type(x).model_fields
                         and not x.kernel_init.name.startswith("glorot_"))
    if not calls:
        return None
    spots = {tuple(x.at) for x, _ in calls}  # (a repeated statement is several layers, all changed)
    named = ", ".join(x.name for x in st.layers() if x.at is not None and tuple(x.at) in spots
                      and "kernel_init" in type(x).model_fields)
    return Change(f"kernel_init=glorot_uniform in {named} ({_where(st, calls)})",
                  [set_arg(st, call, "kernel_init", "glorot_uniform", ("kernel_initializer",))
                   for _, call in calls])


def _width(layer) -> int:
    return int(getattr(layer, "units", None) or getattr(layer, "filters", None) or 0)


def _widest(st: SpecText) -> list[tuple[Any, A.LayerStmt]]:
    """The hidden layers of the largest width (all of them when several tie) written as statements of the
    layers section, in order."""
    by_at = {(s.call.name_span.line, s.call.name_span.col): s for s in st.top_statements()}
    weighted = [info.layer for info in st.spec.walk() if info.weights]
    output = tuple(weighted[-1].at) if weighted and weighted[-1].at is not None else None
    hidden = [x for x in _hidden(st) if x.at is not None and tuple(x.at) in by_at and _width(x)
              and tuple(x.at) != output]  # (not a statement the output layer is part of)
    if not hidden:
        return []
    most = max(_width(x) for x in hidden)
    last: dict[tuple, Any] = {}  # a repeated statement (`Dense(64) * 3`): its last layer, what follows it
    for x in hidden:
        if _width(x) == most:
            last[tuple(x.at)] = x
    return [(x, by_at[at]) for at, x in last.items()]


def _early_stopping(st: SpecText) -> Change | None:
    train = st.section("train")
    if st.spec.train.early_stopping is not None or train is None or not train.body or \
            not st.spec.data or st.spec.data.split.kind != "holdout" or not st.spec.data.split.val:
        return None
    last = train.body[-1]
    return Change("train: early stopping on val_loss, restoring the best epoch",
                  [st.line_after(last, f"early_stopping: {EARLY_STOPPING_FIX}")])


def fix_overfitting(st: SpecText, d: Diagnosis) -> Change | None:
    """Dropout after each of the widest hidden layers (a Dropout already there raised), else early
    stopping."""
    body = st.top_statements()
    edits, what = [], []
    for layer, stmt in _widest(st):
        k = body.index(stmt) + 1
        nxt = body[k] if k < len(body) else None
        if nxt is not None and nxt.call.name == "Dropout":
            rate = arg(nxt.call, "rate", positional=0)
            if isinstance(rate, A.Num) and rate.value < 0.5:
                new = min(0.5, max(DROPOUT_RATE, round(float(rate.value) + DROPOUT_STEP, 2)))
                edits.append(st.replace(rate.span, literal_of(new)))
                what.append(f"the Dropout after {layer.name} (line {nxt.span.line}) "
                            f"{float(rate.value):.3g} -> {new:g}")
            continue
        edits.append(st.line_after(stmt, f"Dropout({DROPOUT_RATE:g})"))
        what.append(f"Dropout({DROPOUT_RATE:g}) after {layer.name} (line {stmt.span.end_line})")
    if not edits:
        return _early_stopping(st)
    widest = _widest(st)
    return Change("; ".join(what) + f" (the widest hidden layer{'s' * (len(widest) > 1)}, "
                  f"{_width(widest[0][0])} units)", edits)


def fix_underfitting(st: SpecText, d: Diagnosis) -> Change | None:
    """In order: nothing for a rate too low (its own fix); a random init for a constant kernel; a wider
    bottleneck; weaker strong regularization; a smaller batch for few steps; nothing more for a loss that
    barely moved; more epochs while it still fell; a wider widest layer."""
    if d.facts.get("explained") == "lr_too_low":  # a bigger model trains no faster at a rate too low
        return None
    # (a wider layer of identical units is still one unit)
    for change in (_random_init(st, set(d.facts.get("symmetric") or ())), _bottleneck(st, d),
                   _weaker_regularization(st, set(d.facts.get("regularized") or ())),
                   _smaller_batch(st, d.facts.get("few_steps"))):
        if change is not None:
            return change
    if d.facts.get("stuck"):  # (an optimization problem: a bigger model or more epochs do not cure it)
        return None
    longer = _longer(st, d)
    if longer is not None:
        return longer
    found = _widest(st)
    if not found:
        return None
    layer, stmt = found[0]
    units = arg(stmt.call, "units", positional=0)
    if not isinstance(units, A.Num):
        return None
    wider = 2 * int(units.value)
    return Change(f"{layer.name} (line {stmt.span.line}): {units.text} -> {wider} units (a bigger model)",
                  [st.replace(units.span, str(wider))])


def _bottleneck(st: SpecText, d: Diagnosis) -> Change | None:
    """The bottleneck layer (a hidden layer narrower than the output) widened."""
    hidden = [x for x in _hidden(st) if getattr(x, "units", None)]
    weighted = [info.layer for info in st.spec.walk() if info.weights]
    out_units = getattr(weighted[-1], "units", None) if weighted else None
    slim = d.facts.get("bottleneck")
    if not slim or not out_units:
        return None
    calls = _layer_calls(st, {slim})
    others = [x.units for x in hidden if x.name != slim]
    new = max(others + [4 * out_units])
    # a width written as a number in the layers section; one from a block's parameter, or in a block's
    # body, is the width of every use of the block: no minimal edit widens this layer alone
    units = arg(calls[0][1], "units", positional=0, aliases=("filters",)) if calls else None
    if not isinstance(units, A.Num) or st.in_block(calls[0][1]):
        return None
    word = "filters" if getattr(calls[0][0], "filters", None) else "units"
    line = calls[0][1].name_span.line
    return Change(f"{slim} (line {line}): {units.text} -> {new} {word} (it was a bottleneck)",
                  [st.replace(units.span, str(new))])


def _longer(st: SpecText, d: Diagnosis) -> Change | None:
    """More epochs while the loss still fell (or a run too short to tell)."""
    epochs = st.assign("epochs", "train")
    longer = d.facts.get("still_improving") or d.facts.get("short_run")
    if not longer or epochs is None or not isinstance(epochs.value, A.Num):
        return None
    ran, written = st.ran.train.epochs, int(epochs.value.value)
    why = "the loss was still falling" if d.facts.get("still_improving") else \
        "the run was too short to tell whether the loss was still falling"
    if ran < written and 2 * ran <= written:  # an --epochs override cut the run short: the spec's own
        same = st.replace(epochs.value.span, epochs.value.text)
        return Change(f"train: epochs {written}, as the spec says (the run trained {ran} with --epochs, "
                      f"and {why})", [same], sets=("epochs",))
    # (a run of 1 or 2 epochs doubled is still too short to show a trend: at least SHORT_RUN_EPOCHS)
    new_epochs = 2 * ran if d.facts.get("still_improving") else max(2 * ran, SHORT_RUN_EPOCHS)
    how = "" if ran == written or new_epochs != 2 * ran else f", twice the {ran} the run trained"
    return Change(f"train: epochs {epochs.value.text} -> {new_epochs} ({why}{how})",
                  [st.replace(epochs.value.span, str(new_epochs))], sets=("epochs",))


def _weaker_regularization(st: SpecText, names: set[str]) -> Change | None:
    """Underfitting with strong regularization: each Dropout above HEAVY_DROPOUT to DROPOUT_RATE, each kernel
    L1/L2 factor of HEAVY_WEIGHT_DECAY or more divided by WEIGHT_DECAY_DOWN (at most WEIGHT_DECAY_FIX), where
    written as a number (not inside a block, whose every use it would change)."""
    edits, what = [], []
    for layer, call in _layer_calls(st, names):
        if st.in_block(call):
            continue
        where = f"{layer.name} (line {call.name_span.line})"
        if layer.kind == "Dropout":
            rate = arg(call, "rate", positional=0)
            if isinstance(rate, A.Num) and float(rate.value) > HEAVY_DROPOUT:
                edits.append(st.replace(rate.span, literal_of(DROPOUT_RATE)))
                what.append(f"{where}: Dropout {rate.text} -> {DROPOUT_RATE:g}")
            continue
        reg = arg(call, "kernel_reg", aliases=("kernel_regularizer",))
        if not isinstance(reg, A.Call):
            continue
        for key in ("l1", "l2"):
            value = arg(reg, key, positional=0 if reg.name == key else None)
            if isinstance(value, A.Num) and float(value.value) >= HEAVY_WEIGHT_DECAY:
                new = min(float(value.value) / WEIGHT_DECAY_DOWN, WEIGHT_DECAY_FIX)
                edits.append(st.replace(value.span, number(new)))
                what.append(f"{where}: {key} {value.text} -> {number(new)}")
    if not edits:
        return None
    return Change("weaker regularization: " + "; ".join(what) + " (it held the model back)", edits)


def _smaller_batch(st: SpecText, few) -> Change | None:
    """Underfitting with few steps an epoch: the batch size cut to the largest power of two that gives about
    FIX_STEPS_PER_EPOCH steps an epoch."""
    if not isinstance(few, dict) or not isinstance(few.get("per_epoch"), int):
        return None
    written = st.assign("batch_size", "train")
    if written is None or not isinstance(written.value, A.Num):
        return None
    batch = int(written.value.value)
    known = few.get("samples")
    # the training samples: known (a run's data), else at most the batches' (the last one may be short)
    samples = known if isinstance(known, int) and known > 0 else batch * few["per_epoch"]
    new = 1
    while new * 2 * FIX_STEPS_PER_EPOCH <= samples:
        new *= 2
    if new >= batch:
        return None
    steps = -(-samples // new)
    about = f"{steps} steps an epoch" if samples == known else f"up to {steps} steps an epoch"
    return Change(f"train: batch_size {written.value.text} -> {new} ({about} instead of {few['per_epoch']})",
                  [st.replace(written.value.span, str(new))])


def fix_plateau(st: SpecText, d: Diagnosis) -> Change | None:
    # a loss stuck by a cause (a rate too low, dead units, ...), or stuck from the start: decaying the rate
    # treats none of them, and lowers a rate too low further
    if d.facts.get("explained") or d.facts.get("from_start") or d.facts.get("decayed_from"):
        return None  # (a rate decayed already: decaying it more or sooner is no cure)
    sched = st.assign("schedule")
    if sched is None:
        opt = st.assign("optimizer")
        if opt is None:
            return None
        return Change(f"schedule: {PLATEAU_FIX} (lr x0.5 after 3 epochs without improvement)",
                      [st.line_after(opt, f"schedule: {PLATEAU_FIX}")])
    spec_sched = st.spec.schedule
    if spec_sched is None or spec_sched.kind != "plateau" or not isinstance(sched.value, A.Call):
        return None
    edits, what = [], []
    if spec_sched.patience >= PLATEAU_EPOCHS:
        edits.append(set_arg(st, sched.value, "patience", "2"))
        what.append(f"patience {spec_sched.patience} -> 2")
    if spec_sched.factor > 0.5:
        edits.append(set_arg(st, sched.value, "factor", "0.5"))
        what.append(f"factor {spec_sched.factor:g} -> 0.5")
    return Change("schedule plateau: " + ", ".join(what), edits) if edits else None


PLANS = {"divergence": fix_divergence, "lr_too_low": fix_lr_too_low,
         "exploding_gradients": fix_exploding_gradients, "vanishing_gradients": fix_vanishing_gradients,
         "dead_relu": fix_dead_relu, "saturation": fix_saturation, "overfitting": fix_overfitting,
         "underfitting": fix_underfitting, "plateau": fix_plateau}


def plan(st: SpecText, d: Diagnosis) -> Change | None:
    """The spec change for a diagnosis, or None when it has no automatic one."""
    fn = PLANS.get(d.id)
    return fn(st, d) if fn is not None else None


# ------------------------------------------------------------------------------------------ data paths


def moved_paths(st: SpecText, base_dir: Path, new_dir: Path) -> list[Edit]:
    """Edits that keep the data section's relative paths right from a file in `new_dir` (they were relative
    to `base_dir`)."""
    if base_dir.resolve() == new_dir.resolve():
        return []
    src = st.assign("source", "data")
    if src is None or not isinstance(src.value, A.Call):
        return []
    call = src.value
    # the arguments that are paths: npy(x, y)'s two files (npz's x= and y= name arrays), else the first
    keys, first = (("x", "y"), 2) if call.name == "npy" else (("path",), 1)
    strs = [a for a in call.args[:first] if isinstance(a, A.Str)] + \
        [kw.value for kw in call.kwargs if kw.key in keys and isinstance(kw.value, A.Str)]
    out = []
    for s in strs:
        p = Path(s.value).expanduser()
        if not p.is_absolute():
            rel = os.path.relpath((base_dir / p).resolve(), new_dir.resolve())
            out.append(st.replace(s.span, quote(Path(rel).as_posix())))
    return out
