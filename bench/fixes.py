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
keras
  (landed in dlc: the hash dropout mask in uint32 arithmetic, products wrapping mod 2^32 as the hash wants,
  instead of int64 with 16-bit split multiplies (backends/keras/layers.py fmix32_u32, HashDropout.call); and
  each epoch's batch indices cut by one tf.split instead of an eager `perm_t[i*bs:(i+1)*bs]` before each step
  (backends/keras/training.py Trainer.train_epoch; the candidate here cut them inside a second compiled
  function, the split measured a little cheaper). Both bit-identical, as the candidates were.)
"""

from __future__ import annotations

# ----------------------------------------------------------------------------------------------- torch


def apply_torch(session, flush_denormals: bool = True):
    import torch

    if flush_denormals:
        torch.set_flush_denormal(True)  # process-wide; returns False where the CPU cannot
    return session


# ----------------------------------------------------------------------------------------------- keras


def apply_keras(session):
    """No keras candidate is left (both landed in backends/keras; see the module's docstring): the session as
    it is, so `dlc-keras+fixes` is dlc-keras."""
    return session
