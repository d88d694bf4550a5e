"""Targets as the loss wants them, each checked against the loss and the output layer first."""

from __future__ import annotations

import numpy as np

from dlc.compiler.spec import Spec
from dlc.runtime.data.base import DataError, Samples
from dlc.runtime.data.files import dtype_text

# -------------------------------------------------------------------------------------------------- targets


def class_targets(y: np.ndarray, kind: str, num_classes: int | None = None) -> np.ndarray:
    """Targets as the loss wants them: "onehot" rows, "int" labels or a "float" column per sample."""
    if kind == "onehot":
        if num_classes is None:
            raise ValueError("one-hot targets need the number of classes")
        return np.eye(num_classes)[y.astype(np.int64)]
    if kind == "int":
        return y.astype(np.int64)
    return y.astype(np.float64).reshape(len(y), -1)


def checked_targets(spec: Spec, s: Samples) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """(targets as the loss wants them, integer class labels or None, number of classes or None), after
    checking every target against the loss and the output layer: a bad one is a DataError naming its value,
    its row and what is expected, before any backend could fail on it with an index error."""
    task = spec.task
    units = spec.output_shape()[-1]
    if task == "regression":
        return regression_targets(spec, s, units), None, None
    labels = class_labels(spec, s, units)
    classes = units if task == "categorical" else 2
    return class_targets(labels, spec.targets, classes), labels, classes


def regression_targets(spec: Spec, s: Samples, units: int) -> np.ndarray:
    """One number per output unit and sample (a target of another width would be broadcast, silently)."""
    name = spec.loss.name
    if s.class_names is not None:
        raise DataError(f"{s.where}: the target column holds names ({', '.join(s.class_names[:3])}"
                        f"{', ...' if len(s.class_names) > 3 else ''}), but {name} is a regression loss; for "
                        "classes use sparse_categorical_crossentropy with a softmax output")
    if s.y.dtype.kind not in "biuf":
        i, value = _first_non_number(s.y)
        raise DataError(f"{s.where}: {_target_text('target', value)} in {s.row(i)} is not a number; {name} "
                        "needs numeric targets")
    y = s.y.astype(np.float64).reshape(len(s.y), -1)
    if y.shape[1] != units:
        raise DataError(f"{s.where}: the targets have {y.shape[1]} column(s) but the output layer has "
                        f"{units} units; {name} compares one target with each output (use "
                        f"Dense({y.shape[1]}) or targets with {units} columns)")
    return y


def class_labels(spec: Spec, s: Samples, units: int) -> np.ndarray:
    """Integer labels 0..classes-1 (0 and 1 for binary_crossentropy), one per sample; one-hot rows become
    labels for categorical_crossentropy, and are an error for a loss that needs one label per sample."""
    y = s.y[:, 0] if s.y.ndim == 2 and s.y.shape[1] == 1 else s.y
    if y.ndim > 1:
        y = onehot_labels(spec, s, y, units)
    hi = units - 1 if spec.task == "categorical" else 1
    if y.dtype.kind not in "biuf":
        i, value = _first_non_number(y)
        raise DataError(f"{s.where}: {_target_text('label', value)} in {s.row(i)} is not a class number; "
                        f"{spec.loss.name} needs integer class labels 0..{hi}")
    v = y.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v != np.round(v)) | (v < 0) | (v > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(bad_label(spec, s, i, float(v[i]), units))
    return v.astype(np.int64)


def bad_label(spec: Spec, s: Samples, i: int, v: float, units: int) -> str:
    """What is wrong with label v of sample i, and what is expected."""
    binary = spec.task == "binary"
    need = (f"{spec.loss.name} needs labels 0 and 1" if binary
            else f"{spec.loss.name} needs integer class labels 0..{units - 1}")
    shown = f"class {s.class_names[int(v)]!r} (number {int(v)})" if s.class_names else f"label {v:g}"
    where = f"{s.where}: {shown} in {s.row(i)}"
    if not np.isfinite(v):
        return f"{s.where}: the label in {s.row(i)} is missing or not finite ({v}); {need}"
    if v != round(v):
        return (f"{where} is not a whole number; {need} (for a numeric target use a regression loss such as "
                "mse)")
    if v < 0:
        return f"{where} is negative; {need}"
    if binary:
        return f"{where}, but {need}; for more classes use categorical_crossentropy with a softmax output"
    return f"{where} but the output layer has {units} units (classes 0..{units - 1})"


def onehot_labels(spec: Spec, s: Samples, y: np.ndarray, units: int) -> np.ndarray:
    """The labels of one-hot target rows, which only categorical_crossentropy takes."""
    name = spec.loss.name
    if spec.targets != "onehot":
        one = "one label 0 or 1" if spec.task == "binary" else "one integer class label"
        hint = ("; use categorical_crossentropy for one-hot targets, or give y.argmax(axis=1)"
                if spec.task == "categorical" else "")
        raise DataError(f"{s.where}: the targets have shape {y.shape} (one-hot rows?) but {name} needs {one} "
                        f"per sample{hint}")
    if y.ndim != 2 or y.shape[1] != units:
        raise DataError(f"{s.where}: the targets have shape {y.shape} but the output layer has {units} "
                        f"units; give one-hot rows of {units} or class labels 0..{units - 1}")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{s.where}: the targets hold {dtype_text(y.dtype)} values, not numbers")
    ok = np.isin(y, (0, 1)).all(axis=1) & (y.sum(axis=1) == 1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(f"{s.where}: the target of {s.row(i)} is not one-hot ({np.array2string(y[i])}); "
                        f"give one-hot rows (a single 1) or class labels 0..{units - 1}")
    return y.argmax(axis=1)


def _first_non_number(a: np.ndarray) -> tuple[int, object]:
    """(sample, value) of the first target that is not a number, as a plain Python value (its repr is 'a',
    not np.str_('a')): in an array of objects (`[0, None]`) the first that is no int or float, else the
    first. (`.item()` of an object array's int was "'int' object has no attribute 'item'".)"""
    rows = a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)
    for i, row in enumerate(rows):
        for v in row:
            v = v.item() if isinstance(v, np.generic) else v
            if a.dtype.kind != "O" or isinstance(v, bool) or not isinstance(v, (int, float)):
                return i, v
    return 0, None


def _target_text(word: str, value: object) -> str:
    """`label 'cat'`, or `a missing label` for None."""
    return f"a missing {word} (None)" if value is None else f"{word} {value!r}"
