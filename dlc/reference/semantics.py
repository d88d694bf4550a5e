"""Formulas every target shares, written once (the backends call them; emitted scripts copy their source)."""

from __future__ import annotations

import numpy as np


def same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis (size n, window k, stride s): the odd extra goes after."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def as_float32(x: float) -> float:
    """A Python constant as Keras casts it (`ops.cast(python_float, dtype)` passes through float32)."""
    return float(np.float32(x))
