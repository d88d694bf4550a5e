"""The targets of the data against the loss and the output, where the data says them before training: the
shape of an .npy or .npz target array (from its header), a CSV target column of class names, the values of a
small target (a CSV column's, an array's, MNIST's labels) against the class labels the loss takes, and a
regression target against what the output's activation can reach (W015). By the runtime's rules
(dlc/runtime/data/targets.py): E302 now, not when the data is read. Apart from the checks of the files
themselves (sourcechecks.py), which call in here once a file is read."""

from __future__ import annotations

import math
from pathlib import Path

from . import ast as A
from .checkshared import argument_span, final_activation, find_assign, layer_span, positional_span, shape_text
from .datarows import csv_target_names
from .diagnostics import Diagnostics, Span
from .layers import ActivationLayer, ShapeError
from .spec import Csv, Spec
from .wording import number_text


def check_target_shape(spec: Spec, shape: tuple[int, ...], what: str, m: A.Model, d: Diagnostics) -> None:
    """Targets of a known shape (an .npy file's or an .npz array's header) against the loss and the output,
    by the runtime's rules (dlc/runtime/data/targets.py): a regression loss compares one target column with
    each output; a classification loss takes one label per sample, or (categorical_crossentropy only)
    one-hot rows of one value per output. E302 now, not when the data is read."""
    if len(shape) < 1:
        return
    try:
        units = spec.output_shape()[-1]
    except (ShapeError, IndexError):
        return
    width = math.prod(shape[1:])
    task, name = spec.task, spec.loss.name
    st = find_assign(m, "loss")
    last = layer_span(spec.layers[-1])
    if task == "regression":
        if width != units:
            outputs = f"{units} output{'s' if units != 1 else ''}"
            d.add("E302", f"{what} holds {width} target value(s) per sample (shape {shape_text(shape)}), but "
                  f"the last layer has {outputs}; {name} compares one target with each output", last,
                  f"use Dense({width})" if width else None)
        return
    if task not in ("categorical", "binary") or len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return
    if spec.targets != "onehot":
        d.add("E302", f"{what} has shape {shape_text(shape)} (one-hot rows?), but {name} needs one label per "
              "sample", st.value.span if st else None,
              "use categorical_crossentropy for one-hot targets, or save y.argmax(axis=1)"
              if task == "categorical" else "save one label 0 or 1 per sample")
    elif len(shape) != 2 or shape[1] != units:
        d.add("E302", f"{what} has shape {shape_text(shape)}, but the last layer has {units} outputs", last,
              f"give one-hot rows of {units}, or use Dense({width}, activation=softmax)" if len(shape) == 2
              else f"give one-hot rows of {units} or class labels 0..{units - 1}")


def check_target_dtype(spec: Spec, descr: str, what: str, at: Span | None, d: Diagnostics) -> bool:
    """Targets of an .npy file or an .npz array (by their header's dtype) that are numbers, as every loss
    takes them (dlc/runtime/data/targets.py: text in an array is "not a class number", and only a CSV target
    column of names is numbered); E302 and False when they are not."""
    if descr != "structured" and descr[1:2] in tuple("biuf"):
        return True
    task, name = spec.task, spec.loss.name
    if task == "regression":
        need, hint = f"{name} needs numeric targets", "save the targets as numbers"
    else:
        try:
            units = spec.output_shape()[-1]
        except (ShapeError, IndexError):
            units = 2
        need = ("binary_crossentropy needs labels 0 and 1" if task == "binary" else
                f"{name} needs integer class labels 0..{max(units, 2) - 1}")
        hint = ("number the classes: np.unique(y, return_inverse=True)[1] gives labels 0, 1, 2, ... in "
                "sorted order, as a CSV target column of names is numbered")
    d.add("E302", f"{what} holds {descr} values, not numbers, but {need}", at, hint)
    return False


def check_csv_target_names(spec: Spec, src: Csv, path: Path, m: A.Model, d: Diagnostics) -> None:
    """A CSV target column of names (classes), when the file is small enough for it to be known
    (compiler/datarows.py), against the loss and the output: a regression loss (the runtime refuses it when
    it reads the data, dlc/runtime/data/targets.py, in the same words), fewer softmax outputs than names, or
    binary_crossentropy for other than two names (the runtime stops at the first row of a class past the
    outputs): E302 now, not after the model is built."""
    task = spec.task
    if task not in ("regression", "categorical", "binary"):
        return
    names = csv_target_names(path, src.target)
    if not names:
        return
    column = f"the target column '{src.target}' of '{src.path}'" if src.target is not None else \
        f"the target column of '{src.path}' (its last)"
    shown = ", ".join(n if len(n) <= 24 else n[:20] + "..." for n in names[:3]) + (", ..." if len(names) > 3
                                                                                   else "")
    n = len(names)
    holds = f"{column} holds names ({shown}: {n:,} class{'es' if n != 1 else ''})"
    st = find_assign(m, "loss")
    if task == "regression":
        fix = ("binary_crossentropy with Dense(1, activation=sigmoid)" if n == 2 else
               f"sparse_categorical_crossentropy with Dense({n}, activation=softmax)")
        d.add("E302", f"{holds}, but {spec.loss.name} is a regression loss", st.value.span if st else None,
              f"for classes use {fix}; for regression the target column must hold numbers")
        return
    try:
        units = spec.output_shape()[-1]
    except (ShapeError, IndexError):
        return
    last = spec.layers[-1]
    if task == "categorical" and 2 <= units < n:
        d.add("E302", f"{holds}, but the last layer has {units} outputs", layer_span(last),
              f"use Dense({n}, activation=softmax)")
    elif task == "binary" and n != 2:
        d.add("E302", f"{holds}, but binary_crossentropy needs two classes", st.value.span if st else None,
              f"use sparse_categorical_crossentropy with Dense({n}, activation=softmax)")


def csv_column(src: Csv) -> str:
    return f"the target column '{src.target}' of '{src.path}'" if src.target is not None else \
        f"the target column of '{src.path}' (its last)"


# a largest label beyond this is no class number (a Dense of that many units would not fit in memory): the
# hint does not suggest Dense(10**300)
MOST_CLASSES = 1_000_000


def check_labels(spec: Spec, values: list[float] | None, column: str, m: A.Model, d: Diagnostics) -> None:
    """A target of one number per sample whose values are known (a small CSV file's column, parsed; MNIST's
    labels, counted) against the loss and the output, by the runtime's rules (dlc/runtime/data/targets.py):
    a regression loss compares it with one output; class labels are whole numbers 0..units-1 (0 and 1 for
    binary_crossentropy). E302 now, not when the data is read."""
    if not values:
        return
    try:
        units = spec.output_shape()[-1]
    except (ShapeError, IndexError):
        return
    task = spec.task
    st = find_assign(m, "loss")
    at_loss = st.value.span if st else None
    last = layer_span(spec.layers[-1])
    lo, hi = values[0], values[-1]
    if task == "regression":
        if units != 1:
            d.add("E302", f"{column} holds one number per sample, but the last layer has {units} outputs; "
                  f"{spec.loss.name} compares one target with each output", last, "use Dense(1)")
        else:
            check_output_range(spec, lo, hi, column, m, d)
        return
    if task not in ("categorical", "binary"):
        return
    top = units - 1 if task == "categorical" else 1
    need = (f"{spec.loss.name} needs integer class labels 0..{top}" if task == "categorical" else
            "binary_crossentropy needs labels 0 and 1")
    fraction = next((v for v in values if not v.is_integer()), None)
    if fraction is not None:
        d.add("E302", f"{column} holds {number_text(fraction)}, not a whole number, but {need}", at_loss,
              "for a numeric target use a regression loss such as mse, with Dense(1)")
    elif lo < 0:
        d.add("E302", f"{column} holds {number_text(lo)}, a negative label, but {need}", at_loss,
              "number the classes 0, 1, 2, ...")
    elif hi > top and task == "binary":
        n = int(hi) + 1
        d.add("E302", f"{column} holds labels {number_text(lo)}..{number_text(hi)}, but {need}", at_loss,
              f"for {n} classes use sparse_categorical_crossentropy with Dense({n}, activation=softmax)")
    elif hi > top and units >= 2:  # (one unit: the loss's own error says it)
        d.add("E302", f"{column} holds class labels {number_text(lo)}..{number_text(hi)}, but the last layer "
              f"has {units} outputs (classes 0..{top})", last,
              f"use Dense({int(hi) + 1}, activation=softmax)" if hi < MOST_CLASSES else
              "labels this large are no class numbers: number the classes 0, 1, 2, ...; for a numeric "
              "target use a regression loss such as mse, with Dense(1)")


# the values each bounded activation can output (closed: a float rounds to the ends), for W015
ACTIVATION_RANGE = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0),
                    "softsign": (-1.0, 1.0), "relu6": (0.0, 6.0), "relu": (0.0, math.inf),
                    "softplus": (0.0, math.inf), "selu": (-1.7580993408473766, math.inf)}


def check_output_range(spec: Spec, lo: float, hi: float, column: str, m: A.Model, d: Diagnostics) -> None:
    """W015: a regression output whose activation cannot reach the targets (known: a bundled set's, a small
    CSV file's), e.g. sigmoid's (0, 1) for diabetes' 25..346: the targets are not normalised, so the loss
    cannot fall below what the nearest reachable value leaves, and the run trains silently wrong."""
    act = final_activation(spec)
    last = spec.layers[-1]
    alpha = getattr(getattr(last, "activation", None), "alpha", None)
    if act == "elu":
        reach = (-(alpha if alpha is not None else 1.0), math.inf)
    elif act in ACTIVATION_RANGE:
        reach = ACTIVATION_RANGE[act]
    else:
        return
    if reach[0] <= lo and hi <= reach[1]:
        return
    shown = (f"lie in ({number_text(reach[0])}, {number_text(reach[1])})" if math.isfinite(reach[1])
             else f"are {number_text(reach[0])} or more")
    where = (positional_span(m, last, "activation", 0) if isinstance(last, ActivationLayer)
             else argument_span(m, last, "activation")) or layer_span(last)
    d.warn("W015", f"the output ends in {act}, whose values {shown}, but {column} holds "
           f"{number_text(lo)}..{number_text(hi)} (targets are not normalised)", where,
           "leave the last layer linear (no activation) for a regression target")
