"""Metrics from statistics each backend accumulates on its device, computed once here in numpy.

Classification backends accumulate a confusion matrix (rows: true class, columns: predicted; binary outputs
are thresholded at probability 0.5, i.e. logit > 0). Regression backends accumulate [Σ(y−ŷ)², Σ|y−ŷ|, count].
Precision, recall and f1 are of the positive class for binary tasks and macro averages over classes otherwise.
"""

from __future__ import annotations

import numpy as np


def stats_size(task: str, num_classes: int | None) -> tuple[int, ...]:
    if task == "regression":
        return (3,)
    k = 2 if task == "binary" else num_classes
    if k is None:
        raise ValueError(f"a {task} task needs its number of classes")
    return (k, k)


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
    cm = stats
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
