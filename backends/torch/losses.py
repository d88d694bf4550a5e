"""Keras' losses, weight penalties, constraints and metric statistics on torch tensors, from plain arguments.

Crossentropies take the logits of the fused softmax/sigmoid output (log-softmax / log-sigmoid, no clipping):
the exact counterparts of the with-logits kernels Keras-TF uses after a softmax or sigmoid output layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def categorical_crossentropy(logits, y):
    return -(y * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def sparse_categorical_crossentropy(logits, y):
    return F.cross_entropy(logits, y)


def binary_crossentropy(logits, y):
    return F.binary_cross_entropy_with_logits(logits, y)


def mse(out, y):
    return ((y - out) ** 2).mean(dim=-1).mean()


def mae(out, y):
    return (y - out).abs().mean(dim=-1).mean()


def huber(out, y, delta=1.0):
    err = (y - out).abs()
    return torch.where(err <= delta, 0.5 * err * err, delta * err - 0.5 * delta * delta).mean(dim=-1).mean()


def penalty(t, l1=0.0, l2=0.0):
    """Keras' regularizer l1·Σ|w| + l2·Σw² (the lowering passes the coefficients cast through float32)."""
    term = None
    if l1:
        term = l1 * t.abs().sum()
    if l2:
        sq = l2 * (t * t).sum()
        term = sq if term is None else term + sq
    return term


def in_dtype(value: float, dtype) -> float:
    """A Python constant as a tensor of `dtype` holds it: one beyond its range is ±inf, as Keras' cast makes
    it (torch refuses such a scalar in clamp or elu: `max_norm(1e39)` is inf in float32, check's W003)."""
    return value if abs(value) <= torch.finfo(dtype).max else math.copysign(math.inf, value)


@torch.no_grad()
def max_norm(w, max_value, axis=0):
    """Keras MaxNorm after each step: w·clip(n, 0, max)/(1e-7 + n), n the L2 norm along `axis`."""
    norms = torch.sqrt((w * w).sum(dim=axis, keepdim=True))
    w.copy_(w * (torch.clamp(norms, 0, in_dtype(max_value, w.dtype)) / (1e-7 + norms)))


@torch.no_grad()
def unit_norm(w, axis=0):
    norms = torch.sqrt((w * w).sum(dim=axis, keepdim=True))
    w.copy_(w / (1e-7 + norms))


@torch.no_grad()
def non_neg(w):
    w.copy_(torch.clamp(w, min=0))


def regression_stats(out, y):
    """[Σ(y−ŷ)², Σ|y−ŷ|, count] for the regression metrics (dlc/reference/metrics.py)."""
    err = y - out
    return torch.stack([(err * err).sum(), err.abs().sum(), err.new_full((), float(err.numel()))])


def confusion_stats(out, y, k, errors=None):
    """The k×k confusion matrix (rows: true class, columns: predicted) of argmax outputs; with `errors`
    ('logits': `out` are the fused softmax's logits, 'probabilities': `out` is the softmax) the error row
    [Σ(t−p)², Σ|t−p|, 0, …] of the one-hot targets t and probabilities p under it (mse/mae metrics)."""
    pred = out.argmax(dim=-1)
    true = y if y.dim() == 1 else y.argmax(dim=-1)
    cm = counts(torch.add(pred, true, alpha=k), k * k, out.dtype).view(k, k)  # (true*k + pred in one op)
    if errors is None:
        return cm
    p = _float(out)
    p = torch.softmax(p, dim=-1) if errors == "logits" else p
    t = F.one_hot(y, k).to(p.dtype) if y.dim() == 1 else y.to(p.dtype)
    return torch.cat([cm, _error_row(t - p, k).to(out.dtype)])


def binary_stats(out, y, threshold=0.5, errors=None):
    """The 2×2 confusion matrix of out > threshold (0 on logits, 0.5 on probabilities); with `errors`
    ('logits' or 'probabilities', what `out` is) the error row [Σ(t−p)², Σ|t−p|] of the 0/1 targets t and
    sigmoid probabilities p under it (mse/mae metrics)."""
    pred = (out > threshold).long().view(-1)
    true = y.long().view(-1)
    cm = counts(torch.add(pred, true, alpha=2), 4, out.dtype).view(2, 2)
    if errors is None:
        return cm
    p = _float(out).reshape(-1)
    p = torch.sigmoid(p) if errors == "logits" else p
    return torch.cat([cm, _error_row(y.reshape(-1).to(p.dtype) - p, 2).to(out.dtype)])


def counts(index, n: int, dtype):
    """torch.bincount(index, minlength=n) in `dtype`, without a host synchronization (CUDA's bincount reads
    the largest index back to size its output); counts of a batch are exact in a float dtype."""
    ones = _one(dtype, index.device).expand(index.numel())
    return torch.zeros(n, dtype=dtype, device=index.device).index_add_(0, index, ones)


_ONES: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _one(dtype, device) -> torch.Tensor:
    """A 0-d 1 per dtype and device, made once (a fresh `torch.ones` per step is a kernel launch on CUDA)."""
    one = _ONES.get((dtype, device))
    if one is None:
        one = _ONES[(dtype, device)] = torch.ones((), dtype=dtype, device=device)
    return one


def _float(t):
    """`t` in float32 at least (a 16-bit output's squared errors summed over a batch would overflow)."""
    return t if t.dtype == torch.float64 else t.float()


def _error_row(err, k):
    """[Σerr², Σ|err|, 0, …] as a 1×k row."""
    row = torch.stack([(err * err).sum(), err.abs().sum()])
    return torch.cat([row, row.new_zeros(k - 2)]).view(1, k)
