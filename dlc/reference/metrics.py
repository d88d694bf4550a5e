"""Metrics from statistics each backend accumulates on its device, computed once here in numpy.

Classification backends accumulate a confusion matrix (rows: true class, columns: predicted; binary outputs
are thresholded at probability 0.5, i.e. logit > 0). Regression backends accumulate [Σ(y−ŷ)², Σ|y−ŷ|, count].
Precision, recall and f1 are of the positive class for binary tasks and macro averages over classes otherwise.

mse and mae with a classification loss (as Keras computes them on a classifier's output) compare the target
with the output probabilities (the softmax/sigmoid, also when it is fused into the loss): categorical, the
one-hot target (sparse integer labels one-hot encoded, the Brier-style score) against the k probabilities,
averaged over the N·k values; binary, the 0/1 target against the sigmoid probability, over its N values.
Then the statistics get one more row under the confusion matrix, [Σ(t−p)², Σ|t−p|, 0, …] (k ≥ 2 values): the
count is the confusion matrix's total (times k for categorical), so the matrix itself is unchanged.
"""

from __future__ import annotations

import numpy as np

ERROR_METRICS = ("mse", "mae")


def error_row(task: str, metrics) -> bool:
    """Whether a classification task's statistics carry the error row (mse or mae is asked)."""
    return task != "regression" and any(m in ERROR_METRICS for m in metrics)


def stats_size(task: str, num_classes: int | None, metrics=()) -> tuple[int, ...]:
    """The statistics' shape: (3,) for regression; (k, k), or (k + 1, k) with the error row, otherwise."""
    if task == "regression":
        return (3,)
    k = 2 if task == "binary" else num_classes
    if k is None:
        raise ValueError(f"a {task} task needs its number of classes")
    return (k + 1, k) if error_row(task, metrics) else (k, k)


def _safe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def compute(names: list[str], task: str, stats: np.ndarray) -> dict[str, float]:
    stats = np.asarray(stats, dtype=np.float64)
    out: dict[str, float] = {}
    if task == "regression":
        sse, sae, count = stats
        for n in names:
            if n == "mse":
                out[n] = float(sse / max(count, 1))
            elif n == "mae":
                out[n] = float(sae / max(count, 1))
        return out
    cm, err = stats, None
    if stats.shape[0] > stats.shape[1]:  # the error row under the confusion matrix
        cm, err = stats[:-1], stats[-1]
    out.update(_confusion_metrics([n for n in names if n not in ERROR_METRICS], task, cm))
    for n in names:
        if n in ERROR_METRICS:
            if err is None:
                raise ValueError(f"the statistics have no error row for '{n}'")
            count = cm.sum() * (1 if task == "binary" else cm.shape[0])
            out[n] = float(err[0 if n == "mse" else 1] / max(count, 1))
    return {n: out[n] for n in names if n in out}


def _confusion_metrics(names: list[str], task: str, cm: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    tp = np.diag(cm)
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1)
    prec = _safe(tp, pred)
    rec = _safe(tp, true)
    f1 = _safe(2 * prec * rec, prec + rec)
    pick = (lambda v: float(v[1])) if task == "binary" else (lambda v: float(v.mean()))
    for n in names:
        if n == "accuracy":
            out[n] = float(tp.sum() / max(cm.sum(), 1))
        elif n == "precision":
            out[n] = pick(prec)
        elif n == "recall":
            out[n] = pick(rec)
        elif n == "f1":
            out[n] = pick(f1)
    return out
