"""Means in TensorFlow's order of additions (float64, CPU), so that BatchNorm and LayerNorm give Keras'
values to the last bit. Where n copies of one value c are averaged (a pixel column constant in a batch),
TensorFlow's sum and torch's can land 1 ulp apart, so x − mean is exactly 0 in one and ±3e-16 in the other,
and a ReLU after it sends its gradient differently.

TensorFlow's CPU Mean kernel (reduction_ops_common.h; ReduceEigenImpl for MeanReducer) is Eigen's sum over
the axes divided by the count, after ReductionHelper::Simplify has dropped dimensions of size 1 and merged
adjacent reduced or kept ones. Eigen's order of additions (TensorReduction.h; TensorFlow's x86-64 wheels are
built for AVX: 4 doubles a packet):

- over the leading axes of (..., c), c ≥ 2 (BatchNorm): merged to (n, c) and reduced along axis 0, each
  packet of 4 adjacent columns by InnerMostDimPreserver: for n ≥ 16 four accumulators, row j into
  accumulator j mod 4 up to the last multiple of 4, combined ((a0 + a1) + a2) + a3, the last n mod 4 rows
  then added in order; for n < 16 the rows added in order. The last c mod 4 columns (all where c < 4): rows
  added in order. One row (n = 1): a copy.
- over the last axis (LayerNorm), or over everything (c = 1): each row of m values by InnerMostDimReducer:
  m > 4096: the sum of two halves split at a packet boundary of the flat input (tree reduction); otherwise
  chunks of 16 into four packet accumulators (p_k += x[16i + 4k : 16i + 4k + 4]), combined
  ((p0 + p1) + p2) + p3, the remaining whole packets added to p0, the last m mod 4 values summed in order
  from 0, result = tail + ((p0[0] + p0[2]) + (p0[1] + p0[3])). m = 1: a copy.

This does not depend on TensorFlow's thread count (the threads share out output elements, each reduced
whole), except in one case: a full reduction (one channel, or LayerNorm on a single row) of 54,194 values or
more is split by Eigen's FullReducer into one shard per thread, by TensorFlow's intra-op thread count; these
functions follow the one-thread order there. Checked bit for bit against tf.reduce_mean and tf.nn.moments
(TensorFlow 2.21, x86-64; tests/test_reduction_ties.py).

The gradient is x.mean's (g / n to every element).
"""

from __future__ import annotations

import platform

import torch

from dlc.backends.torch.eager import eager_under_compile

PACKET = 4  # doubles in Eigen's packet in TensorFlow's x86-64 build (AVX)
LEAF = 1024  # Eigen's LeafSize for a tree reduction, in packets


def _seq_sum(x, dim: int):
    """Sum along `dim` added in order from 0 (torch's CPU cumsum accumulates sequentially)."""
    return torch.cumsum(x, dim).select(dim, x.shape[dim] - 1)


def _outer_sum(x):
    """(n, c) summed over rows in Eigen's InnerMostDimPreserver order (c ≥ 2)."""
    n, c = x.shape
    cv = c - c % PACKET
    parts = []
    if cv:
        v = x[:, :cv]
        if n >= 16:
            u = n - n % 4
            a = _seq_sum(v[:u].reshape(u // 4, 4, cv), 0)
            s = ((a[0] + a[1]) + a[2]) + a[3]
            for j in range(u, n):  # at most 3 rows
                s = s + v[j]
        else:
            s = _seq_sum(v, 0)
        parts.append(s)
    if cv < c:
        parts.append(_seq_sum(x[:, cv:], 0))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _inner_sum(x, align: int = 0):
    """Each row of (r, m) summed in Eigen's InnerMostDimReducer order; every row starts at a flat offset
    ≡ align (mod 4), which places the tree's split for m > 4096."""
    r, m = x.shape
    if m > PACKET * LEAF:
        half = -(-m // 2)
        left = min(PACKET * (-(-(align + half) // PACKET)) - align, m)
        s = _inner_sum(x[:, :left], align)
        return s if left == m else s + _inner_sum(x[:, left:], 0)
    p = None
    v4 = m - m % (4 * PACKET)
    if v4:
        a = _seq_sum(x[:, :v4].reshape(r, v4 // (4 * PACKET), 4, PACKET), 1)
        p = ((a[:, 0] + a[:, 1]) + a[:, 2]) + a[:, 3]
    vp = m - m % PACKET
    for j in range(v4, vp, PACKET):  # at most 3 packets
        p = x[:, j:j + PACKET] if p is None else p + x[:, j:j + PACKET]
    tail = None
    for j in range(vp, m):  # at most 3 values, added from 0
        tail = x[:, j] if tail is None else tail + x[:, j]
    if p is None:
        return tail
    total = (p[:, 0] + p[:, 2]) + (p[:, 1] + p[:, 3])
    return total if tail is None else tail + total


def _rows_inner_sum(x):
    """(r, m) rows of a contiguous array summed as TensorFlow sums its last axis: rows grouped by where they
    start modulo a packet (only the tree for m > 4096 depends on it)."""
    r, m = x.shape
    if m <= PACKET * LEAF or m % PACKET == 0:
        return _inner_sum(x, 0)
    out = x.new_empty(r)
    starts = torch.arange(r) * m % PACKET
    for a in range(PACKET):  # at most 4 groups
        rows = (starts == a).nonzero().flatten()
        if len(rows):
            out[rows] = _inner_sum(x[rows], a)
    return out


class _TFMean(torch.autograd.Function):
    """The mean over the leading axes (last=False) or the last one, kept (last=True), in TF's order."""

    @staticmethod
    def forward(ctx, x, last: bool):
        ctx.shape = x.shape
        if last:  # mean over the last axis, kept
            m = ctx.n = x.shape[-1]
            x2 = x.reshape(-1, m)
            s = x2[:, 0] if m == 1 else _rows_inner_sum(x2)  # m = 1: TensorFlow copies
            return (s / m).reshape(x.shape[:-1] + (1,))
        c = x.shape[-1]
        x2 = x.reshape(-1, c)
        n = ctx.n = x2.shape[0]
        if n == 1:  # TensorFlow copies
            s = x2[0]
        elif c == 1:
            s = _inner_sum(x2.reshape(1, n))
        else:
            s = _outer_sum(x2)
        return s / n

    @staticmethod
    def backward(ctx, g):
        return (g / ctx.n).expand(ctx.shape), None  # x.mean's backward


# the order above is x86-64's (AVX packets); an ARM build (NEON: 2 doubles a packet) was not measured
_X86 = platform.machine().lower() in ("x86_64", "amd64")


def _applies(x) -> bool:
    return (_X86 and x.dtype == torch.float64 and x.device.type == "cpu" and x.numel() > 0
            and not torch.onnx.is_in_onnx_export())


def tf_leading_mean(x):
    """Mean over every axis but the last, as Keras' BatchNormalization computes it with TensorFlow (float64 on
    the CPU: its order of additions; otherwise x.mean)."""
    if not _applies(x):
        return x.mean(dim=tuple(range(x.dim() - 1)))
    return _tf_mean_eager(x.contiguous(), False)


def tf_last_mean(x):
    """Mean over the last axis, kept, as Keras' LayerNormalization computes it with TensorFlow (float64 on the
    CPU: its order of additions; otherwise x.mean)."""
    if not _applies(x):
        return x.mean(dim=-1, keepdim=True)
    return _tf_mean_eager(x.contiguous(), True)


@eager_under_compile
def _tf_mean_eager(x, last: bool):
    """Run eagerly under torch.compile too (a graph break, float64 only), as conv_layers' TiedConv: inductor
    would be free to reorder the additions."""
    return _TFMean.apply(x, last)
