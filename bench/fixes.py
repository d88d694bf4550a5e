"""Candidate performance fixes for dlc's backends, applied to one Session at a time (dlc's files are not
changed). They are here to be measured (bench_mlp.py --variants dlc-torch+fixes,dlc-keras+fixes;
profile_dlc.py) and, once wanted, moved into dlc/backends by their owner.

torch
  flush-denormals   torch.set_flush_denormal(True) (process-wide) as TensorFlow does on its CPU threads:
                    from epoch 2 about a quarter of RMSprop's `v` for the first kernel is denormal (rows of
                    dead ReLU units decay by rho each step), and x86 arithmetic on denormals is slow.
                    The update is unchanged (`v + eps` with eps 1e-7 absorbs any denormal).
  (landed in dlc, e6fc42f: the RMSprop update and the hash-dropout mask in place in preallocated buffers; they
  were candidates here, measured at 1.6x on one thread, from ~1,800 page faults per step to none.)
keras (bit-identical losses and weights, checked by profile_dlc.py)
  uint32-dropout    dlc's hash dropout mask in uint32 arithmetic (products wrap mod 2^32, as the hash wants)
                    instead of int64 with 16-bit split multiplies: 9 elementwise ops instead of ~25.
  graph-slicing     each batch's indices cut inside a compiled function instead of by an eager
                    `perm_t[i*bs:(i+1)*bs]` in Python before each step.
"""

from __future__ import annotations

import inspect
import time
import types

import numpy as np

# ----------------------------------------------------------------------------------------------- torch


def apply_torch(session, flush_denormals: bool = True):
    import torch

    if flush_denormals:
        torch.set_flush_denormal(True)  # process-wide; returns False where the CPU cannot
    return session


# ----------------------------------------------------------------------------------------------- keras


def uint32_dropout_call(self, x, training=False):
    """Replacement for backends/keras/library.py HashDropout.call."""
    import tensorflow as tf

    from dlc.backends.keras.library import TFOps
    from dlc.reference.rng import C1, C2, fmix32

    if not training or self.rate == 0 or self.step_var is None:
        return x
    ops = TFOps
    step = ops.band(tf.convert_to_tensor(self.step_var), 0xFFFFFFFF)
    key = fmix32(ops.xor(tf.constant(self.base, tf.int64), step), ops)
    idx = tf.range(tf.size(x, out_type=tf.int64), dtype=tf.int64)
    h = tf.cast(tf.bitwise.bitwise_xor(idx, key), tf.uint32)  # both < 2^32: exact

    def shr(a, k):
        return tf.bitwise.right_shift(a, tf.constant(k, tf.uint32))

    h = tf.bitwise.bitwise_xor(h, shr(h, 16)) * tf.constant(C1, tf.uint32)  # wraps mod 2^32
    h = tf.bitwise.bitwise_xor(h, shr(h, 15)) * tf.constant(C2, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, shr(h, 16))
    keep = tf.reshape(shr(h, 8) >= tf.constant(self.threshold, tf.uint32), tf.shape(x))
    return tf.where(keep, x * tf.constant(self.scale, x.dtype), tf.zeros((), x.dtype))


def graph_slicing_train_epoch(self, handle, perm, batch_size, progress=None):
    """Replacement for backends/keras/library.py Trainer.train_epoch (train_step(x, y, idx) -> loss), with
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
    from dlc.backends.keras.library import HashDropout

    if slicing:
        if list(inspect.signature(session._make_steps).parameters) != ["x", "y"]:
            return None
        session.train_epoch = types.MethodType(graph_slicing_train_epoch, session)
    if dropout:
        for layer in session.klayers.values():
            if isinstance(layer, HashDropout):
                layer.call = types.MethodType(uint32_dropout_call, layer)
    return session
