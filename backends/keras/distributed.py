"""Data-parallel training on Keras (`dlc run --nproc N --backend keras`) through tf.distribute's
MultiWorkerMirroredStrategy: one replica per process, used for its collectives only (the model's variables
stay ordinary ones, every process holding the same values). Each process trains on its contiguous share of
every global batch and the gradients are summed across the processes in the step (a replica context's
all_reduce), as backends/distributed.py defines; the step losses and metric statistics are summed once per
epoch. Evaluation runs whole on every process. One machine only (the workers' ports are given by the
launcher); BatchNorm is refused (Keras' synchronized BatchNorm computes the variance as E[x²] − mean², not
Keras' own formula)."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from dlc.backends.distributed import Worker, WorkerLost, share
from dlc.backends.session import batch_sizes

from .layers import HashDropout
from .training import Trainer

PORTS = "DLC_WORKER_PORTS"  # the launcher's free ports, one per worker (this machine)
DIE_AT = "DLC_TEST_WORKER_DIES"  # "RANK:STEP": that rank exits at that step (honoured under pytest only)
_strategy = None
# what DataParallel traces once: (the step: (x, y, idx, offset, batch) -> loss, the sum over the processes)
StepFns = tuple[Callable[..., tf.Tensor], Callable[[tf.Tensor], tf.Tensor]]


def _lost(e: BaseException) -> WorkerLost:
    text = str(e).lower()
    why = "timed out" if "deadline" in text or "timed out" in text else "its connection was lost"
    return WorkerLost(f"another process of this data-parallel run stopped or stopped answering ({why})")


def start(worker: Worker, device: str = "auto") -> None:
    """Start this process's part of the MultiWorkerMirroredStrategy (before any model is built)."""
    global _strategy
    ports = os.environ.get(PORTS, "")
    if len(ports.split(",")) != worker.world:
        raise ValueError("the keras backend trains data-parallel on one machine, started by `dlc run "
                         "--nproc` (not with --nnodes or torchrun); use --backend torch")
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports.split(",")]},
        "task": {"type": "worker", "index": worker.rank}})
    impl = tf.distribute.experimental.CommunicationImplementation.RING
    options = tf.distribute.experimental.CommunicationOptions(implementation=impl,
                                                              timeout_seconds=worker.timeout_s)
    try:
        _strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (tf.errors.OpError, RuntimeError) as e:
        raise _lost(e) from None


def stop() -> None:
    """Nothing to leave (the strategy's server ends with the process)."""


def wrap(session, worker: Worker) -> None:
    """Make the session's epochs train data-parallel (Session.train_epoch replaced on the instance). What it
    cannot train exactly (BatchNorm, mixed_float16, a streamed source) dlc.runtime.parallel.blockers refuses
    before any worker starts."""
    session.train_epoch = DataParallel(session, worker).train_epoch


class DataParallel:
    def __init__(self, trainer: Trainer, worker: Worker):
        self.t = trainer
        self.rank, self.world = worker.rank, worker.world
        self.offset = tf.Variable(0, dtype=tf.int64, trainable=False)
        for kl in trainer.klayers.values():
            if isinstance(kl, HashDropout):
                object.__setattr__(kl, "offset_var", self.offset)  # (not a weight: no Keras tracking)
        self._fns: StepFns | None = None
        self.die_at = None
        if os.environ.get("PYTEST_CURRENT_TEST") and os.environ.get(DIE_AT):
            rank, step = os.environ[DIE_AT].split(":")
            self.die_at = int(step) if int(rank) == self.rank else None

    def _step_fns(self, x, y) -> StepFns:
        """(the data-parallel step, the sum over the processes), made on first use for data like (x, y)."""
        if self._fns is None:
            self._fns = self._make_step(x, y)
        return self._fns

    def _make_step(self, x, y) -> StepFns:
        t, strategy = self.t, _strategy
        assert strategy is not None
        model, opt, loss_fn = t.train_model, t.opt, t.loss_fn
        variables = model.trainable_variables
        # the trainer's own steps (evaluation) and statistics variable, made once
        stats = t._steps_for(x, y).stats
        rank0 = self.rank == 0
        sum_op = tf.distribute.ReduceOp.SUM

        def replica(xb, yb, batch):
            n = tf.shape(xb)[0]
            with tf.GradientTape() as tape:
                out = model(xb, training=True)
                act = t._activity_reg()
                data = loss_fn(yb, out) if act is None else loss_fn(yb, out) + act
                weight = tf.cast(n, data.dtype) / tf.cast(batch, data.dtype)
                # an empty share (a last batch smaller than the processes): a zero gradient, in step
                loss = tf.where(n > 0, data * weight, tf.reduce_sum(out) * 0)
                if rank0:
                    pens = t._weight_penalties()
                    if pens:
                        loss = loss + tf.add_n(pens)
            grads = tape.gradient(loss, variables)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(grads, variables, strict=True)]
            grads = tf.distribute.get_replica_context().all_reduce(sum_op, grads)
            return loss, grads, out

        xs = tf.TensorSpec([None, *x.shape[1:]], x.dtype)
        ys = tf.TensorSpec([None, *y.shape[1:]], y.dtype)
        i64 = tf.TensorSpec([], tf.int64)

        @tf.function(input_signature=[xs, ys, tf.TensorSpec([None], tf.int64), i64, i64])
        def step(x, y, idx, offset, batch):
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            self.offset.assign(offset)
            loss, grads, out = strategy.run(replica, args=(xb, yb, batch))
            loss = strategy.experimental_local_results(loss)[0]
            grads = [strategy.experimental_local_results(g)[0] for g in grads]
            out = strategy.experimental_local_results(out)[0]
            opt.apply(grads, variables)
            t.step_var.assign_add(1)
            self.offset.assign(0)
            stats.assign_add(t._stats(yb, out))
            return loss

        @tf.function
        def total(v):
            # (tf.identity: a replica's input as it is has no device, which all_reduce needs)
            r = strategy.run(lambda a: tf.distribute.get_replica_context().all_reduce(sum_op, tf.identity(a)),
                             args=(v,))
            return strategy.experimental_local_results(r)[0]

        return step, total

    def train_epoch(self, handle, perm: np.ndarray, batch_size: int, progress=None):
        """The steps over the global batches of `perm`, this process taking its share of each: (per-step
        losses, metric statistics, batch sizes) of the whole run, summed over the processes."""
        t = self.t
        x, y = handle
        train_step, total = self._step_fns(x, y)
        stats = t._steps_for(x, y).stats
        sizes = batch_sizes(len(perm), batch_size)
        steps = len(sizes)
        stats.assign(tf.zeros(t.n_stats, dtype=t.dtype))
        losses = []
        last = time.perf_counter()
        try:
            for i in range(steps):
                a, b = share(int(sizes[i]), self.world, self.rank)
                if self.die_at is not None and int(t.step_var.numpy()) + 1 == self.die_at:
                    print(f"rank {self.rank} stops at step {self.die_at} ({DIE_AT})", file=sys.stderr,
                          flush=True)
                    os._exit(1)
                idx = tf.constant(perm[i * batch_size + a:i * batch_size + b], dtype=tf.int64)
                losses.append(train_step(x, y, idx, tf.constant(a, tf.int64),
                                         tf.constant(int(sizes[i]), tf.int64)))
                if progress is not None and time.perf_counter() - last > 0.2:
                    progress(i + 1, steps)
                    last = time.perf_counter()
            local = tf.concat([tf.stack(losses) if losses else tf.zeros([0], t.dtype),
                               tf.reshape(stats, [-1])], 0)
            flat = total(local).numpy().astype(np.float64)
        except tf.errors.OpError as e:
            raise _lost(e) from None
        if progress is not None:
            progress(steps, steps)
        return flat[:steps], flat[steps:].reshape(t.n_stats), sizes
