"""Checks that need more than one part of the spec: shapes, loss vs output, metrics and monitors, schedule,
precision. What the data files tell about the spec is checked in datachecks.py."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

from . import ast as A
from .checkshared import (
    argument_span,
    final_activation,
    find_assign,
    kwarg_span,
    layer_activation,
    layer_span,
    positional_span,
    shape_text,
    span_at,
    walk_values,
)
from .datachecks import check_data, check_split_rows
from .deadbias import check_dead_biases
from .degenerate import check_degenerate_layers
from .diagnostics import Diagnostics, Span, did_you_mean
from .layers import (
    GRU,
    ActivationLayer,
    Bidirectional,
    Dense,
    Layer,
    RecurrentLayer,
    Residual,
    ShapeError,
    SimpleRNN,
    Softmax,
)
from .schedulelength import check_schedule_length
from .sourcechecks import check_source_files_exist, check_source_kind
from .spec import Bundled, Spec, task_for
from .training import CosineDecay, Plateau, SearchSpace, Warmup, canonical_metric_key
from .wording import number_text

# the most parameters a model may have, and values one layer may output per sample: beyond them the weights
# (or one sample's activations) need 8 GB and more in float32, and frameworks index tensors with 32 bits
MAX_PARAMS = 2**31
MAX_VALUES = 2**31
# the most axes a sample may have (numpy's arrays have at most 64 with the batch axis; real data has 1 to 3)
MAX_RANK = 16


def check_spec(spec: Spec, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    if shapes_ok := _check_shapes(spec, d):
        _check_size(spec, m, d)
        _check_constraint_axes(spec, m, d)
    _check_double_activation(spec.layers, d)
    _check_empty_residuals(spec.layers, d)
    errors_before = d.error_count
    _check_loss(spec, m, d)
    if shapes_ok:  # (the output layer when the loss found nothing wrong with it: its error says enough)
        _check_softmax_of_one(spec, m, d, check_last=d.error_count == errors_before)
    check_data(spec, m, d, base_dir)
    plateau_monitor_ok = _check_metrics_and_monitors(spec, m, d)
    _check_min_lr(spec.optimizer, spec.schedule, spec.search_spaces, m, d)
    if plateau_monitor_ok:  # (W010 would judge a plateau by the monitor just refused)
        _check_schedule_length(spec, m, d)
    check_dead_biases(spec.layers, spec.input, d, layer_span)
    check_degenerate_layers(spec, d, layer_span)
    _check_settings_without_bias(spec, m, d)
    _check_precision(spec, m, d)
    from .search import check_search

    check_search(spec, m, d)
    _check_search_has_spaces(spec, m, d)
    if spec.search_spaces and spec.search is None:
        s = spec.search_spaces[0]
        call = next((v for v in walk_values(m.body) if isinstance(v, A.Call)
                     and (v.name_span.line, v.name_span.col) == tuple(s.at)), None)
        d.add("E501", "search spaces need a search { } block", call.name_span if call else span_at(s.at),
              "add search { method: tpe  trials: 20  objective: minimize val_loss }")


BIAS_SETTINGS = ("bias_init", "bias_reg", "bias_constraint")


def _check_settings_without_bias(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    """W016: a bias initializer, regularizer or constraint on a layer with use_bias=false: there is no bias
    for it to act on, so it is dropped without a word (a spec that meant to keep the bias, most likely)."""
    try:
        layers = [info.layer for info in spec.walk()]
    except ShapeError:  # (reported as E301)
        return
    for outer in layers:
        layer = outer.layer if isinstance(outer, Bidirectional) else outer
        if getattr(layer, "use_bias", True):
            continue
        given = [f for f in BIAS_SETTINGS if getattr(layer, f, None) is not None
                 and not (f == "bias_init" and getattr(layer, f).name == "zeros")]
        for field in given:
            d.warn("W016", f"{field} has no effect: {layer.kind} has use_bias=false, so it has no bias",
                   argument_span(m, layer, field) or layer_span(layer),
                   f"remove {field}, or remove use_bias=false to keep the bias")


def _check_search_has_spaces(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    """A search block with nothing to search: `dlc tune` refuses it (E505), so `dlc check` does too."""
    if spec.search is None or spec.search_spaces:
        return
    sec = next((st for st in m.body if isinstance(st, A.Section) and st.name == "search"), None)
    d.add("E505", "the search block has no search spaces to search", sec.name_span if sec else None,
          "write choice(...), uniform(lo, hi), loguniform(lo, hi) or int_uniform(lo, hi) in an argument, "
          "e.g. optimizer: Adam(lr=loguniform(1e-4, 1e-1)), or remove the search block")


def _check_shapes(spec: Spec, d: Diagnostics) -> bool:
    """Report the first layer whose input shape it cannot take; True when every shape is right."""
    try:
        for _ in spec.walk():
            pass
        return True
    except ShapeError as e:
        layer = getattr(e, "layer", None)
        # "what is wrong; what to do" -> message and hint
        text, _, hint = re.sub(r"\((-?\d+),\)", r"(\1)", str(e)).partition("; ")  # (64,) -> (64)
        if not hint and "does not fit" in text:
            hint = "use a smaller window" + ("" if getattr(layer, "padding", "same") == "same"
                                             else " or padding=same")
        d.add("E301", f"shape error: {text}", layer_span(layer) if layer else None, hint or None)
        return False


def _check_size(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    """The input, each layer's output and the parameters stay within MAX_VALUES, MAX_RANK and MAX_PARAMS."""
    inp = find_assign(m, "input")
    if len(spec.input) > MAX_RANK:
        d.add("E211", f"the input has {len(spec.input)} axes", inp.value.span if inp else None,
              f"an input may have at most {MAX_RANK} axes")
        return
    if math.prod(spec.input) > MAX_VALUES:
        d.add("E211", f"input {shape_text(spec.input)} has {math.prod(spec.input):,} values per sample",
              inp.value.span if inp else None, f"an input may have at most {MAX_VALUES:,} values")
        return
    total = 0
    for info in spec.walk():
        values = math.prod(info.out_shape)
        if len(info.out_shape) > MAX_RANK:
            d.add("E211", f"too many axes: {info.layer.kind} outputs {len(info.out_shape)} axes per sample",
                  layer_span(info.layer), f"a layer may output at most {MAX_RANK} axes")
            return
        if values > MAX_VALUES:
            d.add("E211", f"too large: {info.layer.kind} outputs {values:,} values per sample "
                  f"(shape {shape_text(info.out_shape)})", layer_span(info.layer),
                  f"a layer may output at most {MAX_VALUES:,} values per sample")
            return
        total += sum(math.prod(w.shape) for w in info.weights)
        if total > MAX_PARAMS:
            d.add("E211", f"too many parameters: {total:,} up to this {info.layer.kind}",
                  layer_span(info.layer), f"a model may have at most {MAX_PARAMS:,} parameters")
            return


def _check_constraint_axes(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    """A constraint's axis names an axis of the weight it constrains (max_norm(axis=...), unit_norm)."""
    for info in spec.walk():
        for w in info.weights:
            axis = getattr(w.constraint, "axis", None)
            rank = len(w.shape)
            if axis is not None and not -rank <= axis < rank:
                what = getattr(w.constraint, "name", "constraint")
                field = next((f for f in type(info.layer).model_fields
                              if getattr(info.layer, f) is w.constraint), None)
                d.add("E301", f"{what}(axis={axis}) on the {w.name} of {info.layer.kind}: the {w.name} has "
                      f"shape {shape_text(w.shape)}, axes {-rank} to {rank - 1}",
                      argument_span(m, info.layer, field) or layer_span(info.layer),
                      "axis=0 constrains each output unit's incoming weights")


def _softmax_or_sigmoid(layer: Layer) -> str | None:
    """'softmax' or 'sigmoid' when a layer's output is one (over the last axis), else None."""
    if isinstance(layer, Softmax):
        return "softmax" if layer.axis == -1 else None
    act = getattr(layer, "activation", None)
    name = getattr(act, "name", None)
    return name if name in ("softmax", "sigmoid") else None


def _check_double_activation(layers, d: Diagnostics) -> None:
    """`Dense(3, activation=softmax)` then `Activation(softmax)`: the second squashes probabilities again."""
    for a, b in itertools.pairwise(layers):
        first = _softmax_or_sigmoid(a)
        if first and isinstance(b, (Softmax, ActivationLayer)) and _softmax_or_sigmoid(b) == first:
            d.warn("W002", f"{first} applied twice: the {a.kind} before this layer already ends in {first}",
                   layer_span(b), f"remove this layer, or the activation={first} of the {a.kind}")
    for layer in layers:
        if isinstance(layer, Residual):
            _check_double_activation(layer.body, d)


def _check_empty_residuals(layers, d: Diagnostics, seen: set | None = None) -> None:
    """W012: `residual { }` (or a body of blocks that add no layer) adds its input to itself, 2·x: a body left
    out, most likely, and nothing a run could learn from. Once per residual written (a block's is used many
    times)."""
    seen = set() if seen is None else seen
    for layer in layers:
        if not isinstance(layer, Residual):
            continue
        if not layer.body and layer.at not in seen:
            seen.add(layer.at)
            d.warn("W012", "residual with an empty body: its output is its input added to itself (2·x)",
                   layer_span(layer), "put the body's layers inside the braces, or remove the residual")
        _check_empty_residuals(layer.body, d, seen)


def _check_softmax_of_one(spec: Spec, m: A.Model, d: Diagnostics, check_last: bool) -> None:
    """W011: a softmax over an axis of one value (`Dense(1, activation=softmax)`) outputs 1.0 whatever its
    input, so nothing before it can be learnt (Keras warns only at run time, in a UserWarning). `check_last`:
    whether the network's last layer is judged too (not when the loss already reported it)."""
    last = spec.layers[-1] if spec.layers else None
    for info in spec.walk():
        layer = info.layer
        if layer is last and not check_last:
            continue
        cell = layer.layer if isinstance(layer, Bidirectional) else layer
        if isinstance(cell, RecurrentLayer):
            _check_recurrent_softmax(cell, m, d)
            continue
        if isinstance(layer, Softmax):
            rank = len(info.in_shape) + 1  # (Keras' axes count the batch axis, which has no known size)
            axis = layer.axis % rank
            if axis == 0 or info.in_shape[axis - 1] != 1:
                continue
            where = layer_span(layer)
            what = f"Softmax(axis={layer.axis}) over an axis of size 1"
        elif layer_activation(layer) == "softmax" and not isinstance(layer, ActivationLayer) \
                and info.out_shape and info.out_shape[-1] == 1:
            where = argument_span(m, layer, "activation") or layer_span(layer)
            what = f"activation=softmax on {layer.kind}({_units(layer)})"
        elif isinstance(layer, ActivationLayer) and layer.activation.name == "softmax" \
                and info.out_shape and info.out_shape[-1] == 1:
            where = positional_span(m, layer, "activation", 0) or layer_span(layer)
            what = "Activation(softmax) of one value"
        else:
            continue
        if layer is last and info.depth == 0:
            drop = "remove this layer" if isinstance(layer, (Softmax, ActivationLayer)) else \
                "leave the activation out"
            hint = (f"for regression {drop} (a linear output: any real number); for a probability use sigmoid"
                    if spec.task == "regression" else
                    "for one output use sigmoid (a probability); softmax takes one unit per class")
        else:
            hint = "a softmax needs two values or more along its axis: use another activation, or more units"
        d.warn("W011", f"{what}: a softmax of one value is always 1.0, so nothing can be learnt", where,
               hint)


def _check_recurrent_softmax(cell: RecurrentLayer, m: A.Model, d: Diagnostics) -> None:
    """W011 of a recurrent layer of one unit (or its copy in a Bidirectional) with a softmax, which it applies
    over its units: SimpleRNN's output is the softmax, always 1.0; LSTM's and GRU's candidate values are, so
    only their gates learn; GRU's gates (recurrent_activation) at 1.0 keep its state at its initial 0."""
    if cell.units != 1:
        return
    act = cell.activation.name
    gates = getattr(cell, "recurrent_activation", None)
    fix = "use tanh (the default), or more units"
    if act == "softmax" and isinstance(cell, SimpleRNN):
        what = ("activation=softmax on SimpleRNN(1): a softmax of one value is always 1.0, so nothing can be "
                "learnt")
        field = "activation"
    elif isinstance(cell, GRU) and gates is not None and gates.name == "softmax":
        what = ("recurrent_activation=softmax on GRU(1): a softmax of one value is always 1.0, so its update "
                "gate keeps the state at its initial 0 and nothing can be learnt")
        field, fix = "recurrent_activation", "use sigmoid (the default), or more units"
    elif act == "softmax":
        what = (f"activation=softmax on {cell.kind}(1): a softmax of one value is always 1.0, so its "
                "candidate values are constant and only its gates learn")
        field = "activation"
    else:
        return
    d.warn("W011", what, argument_span(m, cell, field) or layer_span(cell), fix)


def _units(layer: Layer) -> str:
    """A layer's size as written first (Dense(1), Conv2D(1, ...)), for a message."""
    for field in ("units", "filters"):
        if (n := getattr(layer, field, None)) is not None:
            return f"{n}" if field == "units" and isinstance(layer, Dense) else f"{n}, ..."
    return "..."


def _check_loss(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    try:
        out = spec.output_shape()
    except ShapeError:
        return
    loss = spec.loss
    st = find_assign(m, "loss")
    where = st.value.span if st else None
    last = spec.layers[-1]
    act = final_activation(spec)
    want = type(loss).output_activation
    if len(out) != 1:
        d.add("E302", f"the model's output has shape {shape_text(out)}; {loss.name} needs a flat output",
              layer_span(last), "add Flatten() or a global pooling layer, then Dense(...)")
        return
    if want == "softmax" and isinstance(last, Softmax) and last.axis % 2 != 1:
        # (the loss takes the softmax from the logits over the classes: a Softmax(axis=0) there trained and
        # predicted as Softmax() on both backends, silently, where Keras normalises over the batch)
        d.add("E302", f"{loss.name} takes the softmax over the classes (the output's last axis), but the "
              f"last layer is Softmax(axis={last.axis}), over the batch axis", layer_span(last),
              "use Softmax() (axis=-1)")
        return
    if want and act == want and getattr(last, "activity_reg", None) is not None:
        d.add("E302",
              f"activity_reg on the output layer: its {act} is part of the loss (computed from the logits),"
              " so the penalty would see pre-activation values", layer_span(last),
              "put activity_reg on a hidden layer")
    if want and isinstance(last, (RecurrentLayer, Bidirectional)):
        # a recurrent layer's activation works inside its cell (LSTM: h = o·act(c)), so it cannot be the
        # output activation the loss takes from the logits (both backends refused it only when building)
        inner = last.layer if isinstance(last, Bidirectional) else last
        how = (f"whose activation{'=' + want if inner.activation.name == want else ''} is applied inside its "
               "recurrence, not to its output") if inner is last else \
            "which merges its recurrent layers' outputs"
        d.add("E302", f"{loss.name} needs a {want} output layer, but the last layer is {last.kind}, {how}",
              layer_span(last),
              f"add Dense({out[0]}, activation={want}) after it")
        return
    n_before = d.error_count
    _check_output_units(spec, loss, out[0], where, last, d)
    if want and act != want and d.error_count == n_before:
        earlier = _ends_in_before(spec, want)
        if earlier is not None and getattr(last, "activation", None) is None:
            d.add("E302", f"{loss.name} needs the {want} to come last, but {last.kind} comes after the "
                  f"{earlier.kind} that applies it", layer_span(last),
                  f"move {last.kind} before that {earlier.kind}: dlc computes the {want} inside the loss "
                  "(from the logits), so it must be the network's last operation")
        else:
            d.add("E302", f"{loss.name} needs a {want} output, but the last layer ends in '{act}'",
                  layer_span(last), f"add activation={want} to the last layer")


def _ends_in_before(spec: Spec, want: str) -> Layer | None:
    """The last layer before the final one whose activation is `want` (a softmax followed by Dropout or
    Reshape), if any."""
    for layer in reversed(spec.layers[:-1]):
        act = layer_activation(layer)
        if act == want:
            return layer
        if act not in (None, "linear"):
            return None
    return None


def _check_output_units(spec: Spec, loss, units: int, where: Span | None, last: Layer,
                        d: Diagnostics) -> None:
    classes = spec.classes
    task = type(loss).task
    if task == "categorical":
        if units < 2:
            d.add("E302", f"{loss.name} needs one output per class, but the last layer has {units}",
                  layer_span(last),
                  "for two classes use Dense(2, activation=softmax), or binary_crossentropy "
                  "with Dense(1, activation=sigmoid)")
        elif classes is not None and units != classes:
            d.add("E302", f"the data has {classes} classes but the last layer has {units} outputs",
                  layer_span(last), f"use Dense({classes}, activation=softmax)")
    elif task == "binary":
        if classes is not None and classes != 2:
            d.add("E302", f"binary_crossentropy needs two classes; the data has {classes}", where,
                  "use categorical_crossentropy with a softmax output")
        elif units != 1:
            d.add("E302", f"binary_crossentropy needs one sigmoid output, but the last layer has {units}",
                  layer_span(last), "use Dense(1, activation=sigmoid)")
    elif classes is not None and spec.data is not None:  # (classes are known only from the data)
        # a regression loss on class labels (Keras' loss="mse" on one-hot labels): one output per class
        # (one-hot targets), or one output of two classes (a 0/1 column): Spec.task
        if units != classes and not (units == 1 and classes == 2):
            one = " (or 1: a 0/1 target)" if classes == 2 else ""
            d.add("E302", f"'{spec.data.source.name}' has {classes} classes, so {loss.name} compares the "
                  f"outputs with one-hot targets of {classes}{one}, but the last layer has {units} outputs",
                  layer_span(last),
                  f"use Dense({classes}, ...)" + (" or Dense(1, ...)" if classes == 2 else ""))
    elif spec.data and isinstance(spec.data.source, Bundled) and units != 1:
        d.add("E302", f"'{spec.data.source.name}' has one target, but the last layer has {units} outputs",
              layer_span(last), "use Dense(1)")


def _check_metrics_and_monitors(spec: Spec, m: A.Model, d: Diagnostics) -> bool:
    """The metrics fit the loss's task and the monitors name what is computed; False when a plateau
    schedule's monitor was refused."""
    task = spec.task
    st = find_assign(m, "metrics")
    written: list[A.Value] = []
    if st is not None:
        written = st.value.items if isinstance(st.value, A.List) else [st.value]
    for i, metric in enumerate(spec.metrics):
        if task not in type(metric).tasks:
            span = written[i].span if i < len(written) else (st.value.span if st else None)
            kind = "classification" if task in ("categorical", "binary") else "regression"
            d.add("E304", f"metric '{metric.name}' does not apply to a {kind} loss ({spec.loss.name})", span,
                  "classification: accuracy, precision, recall, f1, mse, mae; regression: mse, mae")
    es = spec.train.early_stopping
    checks = []
    if es is not None:
        checks.append((es.monitor, find_assign(m, "early_stopping", "train"), False))
    if spec.schedule is not None and spec.schedule.kind == "plateau":
        checks.append((spec.schedule.monitor, find_assign(m, "schedule"), True))
    plateau_ok = True
    for monitor, stmt, plateau in checks:
        where = (kwarg_span(stmt.value, "monitor") or stmt.value.span) if stmt else None
        ok = _check_monitor(monitor, where, spec.metrics, _has_validation(spec.data), d)
        plateau_ok = plateau_ok and (ok or not plateau)
    return plateau_ok


def _has_validation(data) -> bool:
    """Whether training sees validation data: a holdout with val > 0, or k-fold."""
    return data is not None and (getattr(data.split, "val", 0) > 0 or data.split.kind == "kfold")


def _check_monitor(monitor: str, where: Span | None, metrics: list, has_val: bool | None,
                   d: Diagnostics, written: str | None = None) -> bool:
    """A monitor names the loss or a metric (val_ for validation); has_val None: not known (not checked).
    `written`: the name as the spec writes it (`val_acc` for `val_accuracy`), which the messages quote.
    False when it was refused."""
    base = ["loss"] + [mt.name for mt in metrics]
    valid = base + [f"val_{b}" for b in base]
    shown = written or monitor
    if monitor not in valid:
        d.add("E201", f"cannot monitor '{shown}'", where,
              did_you_mean(shown, valid) or f"expected one of {', '.join(valid)}")
        return False
    if monitor.startswith("val_") and has_val is False:
        d.add("E201", f"'{shown}' needs a validation split", where, "use split: holdout(val=0.2)")
        return False
    return True


def _check_min_lr(optimizer, schedule, spaces: list[SearchSpace], m: A.Model, d: Diagnostics) -> None:
    """A schedule's min_lr (cosine's, plateau's, warm-up's then=cosine) at or above the optimizer's lr: a
    cosine decay would raise the lr toward it and a plateau would never lower it. With a search space for
    either, every option (both ends of a range) is compared: a tuner draws them independently."""
    inner = schedule.then if isinstance(schedule, Warmup) else schedule
    if optimizer is None or not isinstance(inner, (CosineDecay, Plateau)):
        return
    path = "schedule.then.min_lr" if inner is not schedule else "schedule.min_lr"
    lr, lr_how = min(_searched_values(spaces, "optimizer.learning_rate", optimizer.learning_rate))
    min_lr, min_how = max(_searched_values(spaces, path, inner.min_lr))
    if min_lr < lr:
        return
    st = find_assign(m, "schedule")
    where = next((sp for v in walk_values(st.value) if (sp := kwarg_span(v, "min_lr"))), st.value.span) \
        if st is not None else None
    if isinstance(inner, Plateau):
        why = "plateau would never lower the learning rate"
    elif min_lr > lr:
        why = "the schedule would raise the learning rate"
    else:
        why = "the schedule would keep the learning rate constant"
    d.add("E201", f"min_lr {number_text(min_lr)}{min_how} is not below the optimizer's lr "
          f"{number_text(lr)}{lr_how}", where, f"{why}; min_lr must be below {number_text(lr)}")


def _check_schedule_length(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    """A schedule that needs more epochs than the training has (W010), at every value of a searched epochs
    or schedule length (compiler/schedulelength.py)."""
    st = find_assign(m, "schedule")
    if spec.schedule is None or spec.optimizer is None or st is None:
        return
    calls = {(v.name_span.line, v.name_span.col): v for v in walk_values(m.body) if isinstance(v, A.Call)}
    check_schedule_length(spec, st.value, calls, d)


def _searched_values(spaces: list[SearchSpace], path: str, value: float) -> list[tuple[float, str]]:
    """(value, how it is chosen) of each value the argument at `path` may take: its one value, or the options
    (ends) of the search space written there."""
    space = next((s for s in spaces if s.path == path), None)
    if space is None:
        return [(value, "")]
    if space.kind == "choice":
        return [(float(o), " (an option of its choice())") for o in space.options
                if isinstance(o, (int, float)) and not isinstance(o, bool)] or [(value, "")]
    assert space.low is not None and space.high is not None  # (a range always has both)
    return [(space.low, f" (the low end of {space.kind}())"),
            (space.high, f" (the high end of {space.kind}())")]


def check_partial(m: A.Model, fields: dict, failed: set[str], d: Diagnostics, base_dir: Path) -> None:
    """The whole-spec checks that still apply when a spec could not be built (a bad argument somewhere): the
    ones that need only what did resolve and the AST, so that one bad argument hides no other error (a
    missing data file, an unknown monitor, a min_lr above the lr, a misspelt search objective). `failed`: the
    keys that did not resolve, or were misspelt (what they hold is not known)."""
    errors_before = d.error_count
    check_source_files_exist(m, fields.get("data"), d, base_dir)
    if fields.get("data") is not None and d.error_count == errors_before:  # (its files are there)
        check_source_kind(fields["data"].source, m, d, base_dir)
    if fields.get("data") is not None and d.error_count == errors_before:  # (and what they should be)
        check_split_rows(fields["data"], task_for(fields["loss"], fields["data"], None) if "loss" in fields
                         else None, m, d, base_dir)
    if "metrics" not in failed:  # (the metrics name what may be monitored)
        _check_monitors_written(m, fields, d)
    if "optimizer" in fields and "schedule" in fields:
        _check_min_lr(fields["optimizer"], fields["schedule"], fields.get("search_spaces", []), m, d)
    from .search import check_search_partial

    check_search_partial(m, fields, failed, d)


def _check_monitors_written(m: A.Model, fields: dict, d: Diagnostics) -> None:
    """The monitors written for plateau and early_stopping, read from the AST; whether there is a validation
    split is known when the data resolved."""
    has_val = _has_validation(fields["data"]) if "data" in fields else None
    sched = find_assign(m, "schedule")
    plateau = sched is not None and isinstance(sched.value, A.Call) and sched.value.name == "plateau"
    stmts = [sched] if sched is not None and plateau else []
    stmts += [st for st in [find_assign(m, "early_stopping", "train")] if st is not None]
    for st in stmts:
        kw = next((k for k in getattr(st.value, "kwargs", None) or [] if k.key == "monitor"), None)
        if kw is not None and isinstance(kw.value, (A.Name, A.Str)):
            written = kw.value.name if isinstance(kw.value, A.Name) else kw.value.value
            # (checked as the IR reads it, `val_acc` as `val_accuracy`; quoted as written)
            _check_monitor(str(canonical_metric_key(written)), kw.value.span, fields.get("metrics", []),
                           has_val, d, written)


def precision_conflict(spec: Spec, dtype: str | None = None) -> str | None:
    """Why `spec` cannot train in `dtype` (None: its own) with its train precision, or None: mixed precision
    keeps float32 weights and computes in 16 bits, so it has no float64 form."""
    dtype = dtype or spec.dtype
    if spec.train.mixed and dtype != "float32":
        return (f"precision: {spec.train.precision} computes in {spec.train.compute_dtype} with float32 "
                f"weights; it cannot train in {dtype}")
    return None


def _check_precision(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    problem = precision_conflict(spec)
    if problem:
        st = find_assign(m, "precision", "train")
        d.add("E305", problem, st.value.span if st else None,
              "remove dtype: float64, or use precision: float32 (the default)")
