"""dlc's own randomness: every draw comes from the spec's seed, never from a framework's RNG.

- initial weights: numpy Generators keyed by (seed, layer index, weight index), drawn in float64;
- epoch shuffles: numpy permutations keyed by (seed, epoch);
- dropout masks: a counter-based hash ("lowbias32") of (seed, layer, step, element index), computed with the
  same int64 operations in numpy and PyTorch (TensorFlow: in uint32, whose products wrap mod 2^32 as the
  hash's do; backends/keras/layers.py fmix32_u32), so masks are bit-identical on every backend.
"""

from __future__ import annotations

import math

import numpy as np

M32 = 0xFFFFFFFF
C1, C2 = 0x7FEB352D, 0x846CA68B
GOLDEN = 0x9E3779B1

STREAM_INIT, STREAM_SHUFFLE, STREAM_SPLIT, STREAM_AUGMENT = 1, 2, 3, 4
STREAM_PROBE = 5  # the training evidence's probe set (dlc/reference/evidence.py)


def stream(seed: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & 0xFFFFFFFFFFFF, *keys])))


class PyOps:
    """Integer operators on Python ints, numpy int64 arrays and torch int64 tensors."""

    xor = staticmethod(lambda a, b: a ^ b)
    shr = staticmethod(lambda a, n: a >> n)
    shl = staticmethod(lambda a, n: a << n)
    band = staticmethod(lambda a, m: a & m)


def mul32(x, c: int, ops=PyOps):
    """(x * c) mod 2^32 for 0 <= x < 2^32 in int64 arithmetic (the multiplicand split in 16-bit halves)."""
    lo, hi = c & 0xFFFF, c >> 16
    return ops.band(x * lo + ops.shl(ops.band(x * hi, 0xFFFF), 16), M32)


def fmix32(x, ops=PyOps):
    """lowbias32 finalizer; `ops` gives the bit operators to frameworks without Python operator support."""
    x = ops.xor(x, ops.shr(x, 16))
    x = mul32(x, C1, ops)
    x = ops.xor(x, ops.shr(x, 15))
    x = mul32(x, C2, ops)
    return ops.xor(x, ops.shr(x, 16))


def dropout_base(seed: int, layer_index: int) -> int:
    """Per-layer constant, hashed on the host; the per-step key is fmix32(base ^ step)."""
    return fmix32(fmix32(seed & M32) ^ ((layer_index * GOLDEN) & M32))


def dropout_threshold(rate: float) -> int:
    """Keep an element where (hash >> 8) >= threshold, i.e. u = (hash >> 8)·2^-24 >= rate, in integers."""
    return math.ceil(rate * (1 << 24))


def dropout_keep_numpy(seed: int, layer_index: int, step: int, shape: tuple[int, ...],
                       rate: float) -> np.ndarray:
    """Reference mask in canonical (channels-last) element order."""
    key = fmix32(dropout_base(seed, layer_index) ^ (step & M32))
    idx = np.arange(math.prod(shape), dtype=np.int64) & M32
    x = fmix32(idx ^ key)
    return ((x >> 8) >= dropout_threshold(rate)).reshape(shape)


def epoch_permutation(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    return stream(seed, STREAM_SHUFFLE, epoch).permutation(n)
