"""Whole-spec checks that need more than one part of the spec: shapes, loss vs output, data vs input, files."""

from __future__ import annotations

import math
from pathlib import Path

from . import ast as A
from .diagnostics import Diagnostics, Span, did_you_mean
from .layers import ActivationLayer, BatchNorm, Conv1D, Conv2D, Dense, Layer, Residual, ShapeError, Softmax
from .spec import BUNDLED, Bundled, Csv, Mnist, Npz, Spec


def _span_at(at, width: int = 1) -> Span | None:
    if not at:
        return None
    return Span(at[0], at[1], at[0], at[1] + width)


def _layer_span(layer: Layer) -> Span | None:
    return _span_at(layer.at, len(layer.kind) if layer.kind != "Residual" else len("residual"))


def _find_assign(m: A.Model, key: str, section: str | None = None) -> A.Assign | None:
    body = m.body
    if section:
        secs = [s for s in body if isinstance(s, A.Section) and s.name == section]
        if not secs:
            return None
        body = secs[0].body
    for st in body:
        if isinstance(st, A.Assign) and st.key == key:
            return st
    return None


def final_activation(spec: Spec) -> str:
    """The activation the network ends in (the last layer's, or an Activation/Softmax layer's)."""
    if not spec.layers:
        return "linear"
    last = spec.layers[-1]
    if isinstance(last, Softmax):
        return "softmax"
    if isinstance(last, ActivationLayer):
        return last.activation.name
    act = getattr(last, "activation", None)
    return act.name if act is not None else "linear"


def num_classes(spec: Spec) -> int | None:
    if spec.data and isinstance(spec.data.source, Bundled):
        return BUNDLED[spec.data.source.name][1]
    return None


def resolve_path(base_dir: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else base_dir / path


def check_spec(spec: Spec, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    _check_shapes(spec, d)
    _check_loss(spec, m, d)
    _check_data(spec, m, d, base_dir)
    _check_metrics_and_monitors(spec, m, d)
    _check_bias_before_bn(spec.layers, d)
    if spec.search_spaces and spec.search is None:
        s = spec.search_spaces[0]
        d.add("E501", "search spaces need a search { } block", _span_at(s.at, 6),
              "add search { method: tpe  trials: 20  objective: minimize val_loss }")


def _check_shapes(spec: Spec, d: Diagnostics) -> None:
    try:
        for _ in spec.walk():
            pass
    except ShapeError as e:
        layer = getattr(e, "layer", None)
        d.add("E301", f"shape error in {layer.kind if layer else 'a layer'}: {e}",
              _layer_span(layer) if layer else None)


def _check_loss(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    try:
        out = spec.output_shape()
    except ShapeError:
        return
    loss = spec.loss
    st = _find_assign(m, "loss")
    where = st.value.span if st else None
    last = spec.layers[-1]
    act = final_activation(spec)
    want = type(loss).output_activation
    if want and act != want:
        d.add("E302", f"{loss.name} needs a {want} output, but the last layer ends in '{act}'", _layer_span(last),
              f"add activation={want} to the last layer")
    if len(out) != 1:
        d.add("E302", f"the model's output has shape {out}; {loss.name} needs a flat output", _layer_span(last),
              "add Flatten() or a global pooling layer, then Dense(...)")
        return
    units = out[0]
    classes = num_classes(spec)
    if type(loss).task == "categorical":
        if units < 2:
            d.add("E302", f"{loss.name} needs one output per class, but the last layer has {units}",
                  _layer_span(last), "use binary_crossentropy with a sigmoid output for two classes")
        elif classes is not None and units != classes:
            d.add("E302", f"the data has {classes} classes but the last layer has {units} outputs",
                  _layer_span(last), f"use Dense({classes}, activation=softmax)")
    elif type(loss).task == "binary":
        if classes is not None and classes != 2:
            d.add("E302", f"binary_crossentropy needs two classes; the data has {classes}", where,
                  "use categorical_crossentropy with a softmax output")
        elif units != 1:
            d.add("E302", f"binary_crossentropy needs one sigmoid output, but the last layer has {units}",
                  _layer_span(last), "use Dense(1, activation=sigmoid)")
    elif classes is not None:
        d.add("E302", f"{loss.name} is a regression loss, but '{spec.data.source.name}' is a classification set",
              where, did_you_mean("categorical_crossentropy", ["categorical_crossentropy"]))
    elif spec.data and isinstance(spec.data.source, Bundled) and units != 1:
        d.add("E302", f"'{spec.data.source.name}' has one target, but the last layer has {units} outputs",
              _layer_span(last), "use Dense(1)")


def _check_data(spec: Spec, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    if spec.data is None:
        return
    src = spec.data.source
    st = _find_assign(m, "source", "data")
    where = st.value.span if st else None
    if isinstance(src, Bundled):
        feats = BUNDLED[src.name][0]
        need = math.prod(spec.input)
        if need != math.prod(feats):
            d.add("E303", f"input {tuple(spec.input)} has {need} values, but '{src.name}' samples have "
                  f"{math.prod(feats)} features", (_find_assign(m, "input").value.span if _find_assign(m, "input")
                                                   else where),
                  f"use input: ({math.prod(feats)})" + (" or (8, 8, 1)" if src.name == "digits" else ""))
        if spec.data.augment and len(spec.input) != 3:
            aug = _find_assign(m, "augment", "data")
            d.add("E303", "augment applies to image data; input must be (height, width, channels)",
                  aug.value.span if aug else where)
        return
    if isinstance(src, (Csv, Npz, Mnist)):
        path = resolve_path(base_dir, src.path)
        if isinstance(src, Mnist):
            ok = path.is_dir() or path.is_file()
        else:
            ok = path.is_file()
        if not ok:
            d.add("E401", f"cannot read data file '{src.path}': no such {'folder' if isinstance(src, Mnist) else 'file'}",
                  where, f"looked for {path} (relative paths start at the spec's folder)")
            return
        if isinstance(src, Csv):
            try:
                with open(path, newline="") as fh:
                    header = fh.readline().strip().split(",")
            except (OSError, UnicodeDecodeError) as e:
                d.add("E401", f"cannot read data file '{src.path}': {e}", where)
                return
            cols = [c.strip().strip('"') for c in header]
            if src.target is not None and src.target not in cols:
                d.add("E401", f"'{src.path}' has no column '{src.target}'", where,
                      did_you_mean(src.target, cols) or f"columns: {', '.join(cols[:12])}")
            elif len(cols) - 1 != math.prod(spec.input):
                d.add("E303", f"input {tuple(spec.input)} has {math.prod(spec.input)} values, but "
                      f"'{src.path}' has {len(cols) - 1} feature columns", where)


def _check_metrics_and_monitors(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    task = type(spec.loss).task
    st = _find_assign(m, "metrics")
    for metric in spec.metrics:
        if task not in type(metric).tasks:
            d.add("E304", f"metric '{metric.name}' does not apply to a {task} loss ({spec.loss.name})",
                  st.value.span if st else None,
                  "classification: accuracy, precision, recall, f1; regression: mse, mae")
    base = ["loss"] + [mt.name for mt in spec.metrics]
    valid = base + [f"val_{b}" for b in base]
    has_val = spec.data is not None and (getattr(spec.data.split, "val", 0) > 0 or spec.data.split.kind == "kfold")
    es = spec.train.early_stopping
    checks = []
    if es is not None:
        checks.append((es.monitor, _find_assign(m, "early_stopping", "train")))
    if spec.schedule is not None and spec.schedule.kind == "plateau":
        checks.append((spec.schedule.monitor, _find_assign(m, "schedule")))
    for monitor, stmt in checks:
        where = stmt.value.span if stmt else None
        if monitor not in valid:
            d.add("E201", f"cannot monitor '{monitor}'", where,
                  did_you_mean(monitor, valid) or f"expected one of {', '.join(valid)}")
        elif monitor.startswith("val_") and not has_val:
            d.add("E201", f"'{monitor}' needs a validation split", where, "use split: holdout(val=0.2)")


def _check_bias_before_bn(layers, d: Diagnostics) -> None:
    for a, b in zip(layers, layers[1:]):
        if isinstance(a, (Dense, Conv1D, Conv2D)) and a.use_bias and isinstance(b, BatchNorm) \
                and a.activation.name == "linear":
            d.warn("W001", f"the bias of {a.kind} has no effect before BatchNorm", _layer_span(a),
                   "add use_bias=false: the bias costs parameters and drifts on rounding noise under Adam")
    for layer in layers:
        if isinstance(layer, Residual):
            _check_bias_before_bn(layer.body, d)
