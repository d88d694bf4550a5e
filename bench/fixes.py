"""Candidate performance fixes for dlc's backends, applied to one Session instance at a time (dlc's files are
not changed). Each keeps dlc's numbers bit for bit: profile_dlc.py checks losses and weights against dlc as
it is. They are here to be measured (bench_mlp.py --variants dlc-torch+fixes,dlc-keras+fixes; profile_dlc.py)
and, once wanted, moved into dlc/backends by their owner.

torch
  inplace-rmsprop   dlc's Keras-exact RMSprop update with the same ops in the same order, written in place
                    into two preallocated buffers per parameter: no temporaries of the parameter's size and
                    no `copy_`. The temporaries (five or six 1.6 MB arrays for the 784x512 kernel, each step)
                    make glibc grow and trim its heap every step: ~1,800 minor page faults per step.
  inplace-dropout   dlc's hash dropout mask (the same int64 operations as dlc.rng.fmix32) computed in place
                    in one preallocated buffer instead of ~20 fresh 512 KB int64 tensors per step.
keras
  uint32-dropout    dlc's hash dropout mask in uint32 arithmetic (products wrap mod 2^32, as the hash wants)
                    instead of int64 with 16-bit split multiplies: 9 elementwise ops instead of ~25.
  graph-slicing     each batch's indices cut inside a compiled function instead of by an eager
                    `perm_t[i*bs:(i+1)*bs]` in Python (an eager strided slice costs ~0.1-0.2 ms per step).
"""

from __future__ import annotations

import inspect
import time
import types

import numpy as np

# ----------------------------------------------------------------------------------------------- torch


def _mul32_(x, c, tmp):
    """x <- (x * c) mod 2^32 in place, with the int64 operations of dlc.rng.mul32."""
    import torch

    from dlc.rng import M32

    lo, hi = c & 0xFFFF, c >> 16
    torch.mul(x, hi, out=tmp)
    tmp.bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    x.mul_(lo).add_(tmp).bitwise_and_(M32)


def inplace_dropout_forward(self, x):
    """Replacement for backends/torch/layers.py DropoutT.forward."""
    import torch

    from dlc.rng import _C1, _C2, fmix32

    if not self.training or self.rate == 0:
        return x
    n = x.numel()
    if getattr(self, "_h", None) is None or self._h.numel() != n or self._h.device != x.device:
        self._idx = torch.arange(n, dtype=torch.int64, device=x.device) & 0xFFFFFFFF
        self._h, self._t = torch.empty_like(self._idx), torch.empty_like(self._idx)
    key = fmix32(self.base ^ (self.counter.value & 0xFFFFFFFF))
    h, t = self._h, self._t
    torch.bitwise_xor(self._idx, key, out=h)
    h ^= h >> 16
    _mul32_(h, _C1, t)
    h ^= h >> 15
    _mul32_(h, _C2, t)
    h ^= h >> 16
    keep = (h >> 8) >= self.threshold
    return torch.where(keep.view(x.shape), x * self.scale, torch.zeros((), dtype=x.dtype, device=x.device))


def inplace_rmsprop_update(self, p, g, s, lr):
    """Replacement for backends/torch/optimizers.py RMSprop.update: its ops, in its order, in place."""
    import torch

    if self.ir.centered:
        raise NotImplementedError("centered RMSprop is not covered by this candidate")
    if "t" not in s:
        s["t"], s["d"] = torch.empty_like(p), torch.empty_like(p)
    v, t, d = s["v"], s["t"], s["d"]
    torch.mul(g, g, out=t).mul_(1 - self.ir.rho)
    v.mul_(self.ir.rho).add_(t)                    # v = rho * v + (1 - rho) * (g * g)
    torch.add(v, self.ir.epsilon, out=d).sqrt_()   # sqrt(v + eps)
    torch.mul(g, lr, out=t).div_(d)                # (lr * g) / sqrt(v + eps)
    if "m" in s:
        s["m"].mul_(self.ir.momentum).add_(t)      # m = momentum * m + increment
        p.sub_(s["m"])
    else:
        p.sub_(t)


def apply_torch(session, rmsprop: bool = True, dropout: bool = True):
    from dlc.backends.torch.layers import DropoutT
    from dlc.backends.torch.optimizers import RMSprop

    if rmsprop and isinstance(session.opt, RMSprop):
        session.opt.update = types.MethodType(inplace_rmsprop_update, session.opt)
    if dropout:
        for m in session.net.modules():
            if isinstance(m, DropoutT):
                m.forward = types.MethodType(inplace_dropout_forward, m)
    return session


# ----------------------------------------------------------------------------------------------- keras


def uint32_dropout_call(self, x, training=False):
    """Replacement for backends/keras/layers.py HashDropout.call."""
    import tensorflow as tf

    from dlc.backends.keras.layers import TFOps
    from dlc.rng import _C1, _C2, fmix32

    if not training or self.rate == 0 or self.step_var is None:
        return x
    ops = TFOps
    step = ops.band(tf.convert_to_tensor(self.step_var), 0xFFFFFFFF)
    key = fmix32(ops.xor(tf.constant(self.base, tf.int64), step), ops)
    idx = tf.range(tf.size(x, out_type=tf.int64), dtype=tf.int64)
    h = tf.cast(tf.bitwise.bitwise_xor(idx, key), tf.uint32)  # both < 2^32: exact

    def shr(a, k):
        return tf.bitwise.right_shift(a, tf.constant(k, tf.uint32))

    h = tf.bitwise.bitwise_xor(h, shr(h, 16)) * tf.constant(_C1, tf.uint32)  # wraps mod 2^32
    h = tf.bitwise.bitwise_xor(h, shr(h, 15)) * tf.constant(_C2, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, shr(h, 16))
    keep = tf.reshape(shr(h, 8) >= tf.constant(self.threshold, tf.uint32), tf.shape(x))
    return tf.where(keep, x * tf.constant(self.scale, x.dtype), tf.zeros((), x.dtype))


def graph_slicing_train_epoch(self, handle, perm, batch_size, progress=None):
    """Replacement for backends/keras/session.py Session.train_epoch (train_step(x, y, idx) -> loss), with
    each batch's indices cut inside a compiled function."""
    import tensorflow as tf

    x, y = handle
    if self._train_step is None:
        self._make_steps(x, y)
    if getattr(self, "_sliced_step", None) is None:
        inner = self._train_step

        @tf.function(input_signature=[tf.TensorSpec([None, *x.shape[1:]], x.dtype),
                                      tf.TensorSpec([None, *y.shape[1:]], y.dtype),
                                      tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)])
        def sliced(x, y, perm_t, start):
            return inner(x, y, perm_t[start:start + batch_size])

        self._sliced_step = sliced
    n = len(perm)
    steps = -(-n // batch_size)
    self._stats_var.assign(tf.zeros(self.n_stats, dtype=self.dtype))
    sizes = np.array([min(batch_size, n - i * batch_size) for i in range(steps)], dtype=np.float64)
    perm_t = tf.constant(perm, dtype=tf.int64)
    losses = []
    last = time.perf_counter()
    for i in range(steps):
        losses.append(self._sliced_step(x, y, perm_t, tf.constant(i * batch_size, tf.int64)))
        if progress is not None and time.perf_counter() - last > 0.2:
            progress(i + 1, steps)
            last = time.perf_counter()
    if progress is not None:
        progress(steps, steps)
    return tf.stack(losses).numpy().astype(np.float64), self._stats_var.numpy().astype(np.float64), sizes


def apply_keras(session, dropout: bool = True, slicing: bool = True):
    """Returns the session, or None when its internals no longer match what the candidate replaces."""
    from dlc.backends.keras.layers import HashDropout

    if slicing:
        if list(inspect.signature(session._make_steps).parameters) != ["x", "y"]:
            return None
        session.train_epoch = types.MethodType(graph_slicing_train_epoch, session)
    if dropout:
        for layer in session.klayers.values():
            if isinstance(layer, HashDropout):
                layer.call = types.MethodType(uint32_dropout_call, layer)
    return session
