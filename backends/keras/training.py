"""The training steps around a Keras model, IR-free (the session and the emitted keras script share them)."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from dlc.backends.session import batch_sizes

from .layers import build_models, check_weights, keras_layers


class StepFunctions(NamedTuple):
    """A Trainer's step functions (tf.function graphs, traced for the dtypes and shapes of the first data they
    are made for) and the variable the train step adds each batch's metric statistics to."""

    train: Callable[..., tf.Tensor]  # (x, y, idx) -> the step's loss
    eval_batch: Callable[..., tuple[tf.Tensor, tf.Tensor]]  # (xb, yb) -> (loss x batch size, statistics)
    eval_all: Callable[..., tuple[tf.Tensor, tf.Tensor]]  # (x, y, batch_size) -> eval_batch on every batch
    stats: tf.Variable


class Trainer:
    """A lowered network trained the way dlc trains, IR-free: dlc's batches (index lists into data kept in
    TensorFlow), the dropout step advanced once per step, losses and metric statistics (a confusion matrix, or
    sums of squared and absolute errors) kept in TensorFlow until the epoch ends.

    `weight_shapes`: {layer: {weight: shape}} in Keras' weight order, the names dlc's weights use."""

    name = "keras"

    def __init__(self, layers, input_shape, optimizer, loss, *, task: str, n_stats, weight_shapes: dict,
                 step, output=None, dtype: str = "float32", name: str = "model"):
        self.dtype, self.task, self.n_stats, self.loss_fn = dtype, task, tuple(n_stats), loss
        self.fused = output is not None
        self.step_var = step
        self.train_model, self.model = build_models(input_shape, layers, dtype, name, output)
        self.klayers = {kl.name: kl for kl in keras_layers(layers)}
        self.weight_names = check_weights(self.klayers, weight_shapes)
        self.opt = optimizer
        self.opt.build(self.train_model.trainable_variables)
        self.device_name = "cpu"
        self._steps: StepFunctions | None = None

    # ------------------------------------------------------------------------------------------ weights

    def variables(self, lname: str) -> dict:
        return dict(zip(self.weight_names[lname], self.klayers[lname].weights, strict=True))

    def set_weights(self, weights):
        for lname, ws in weights.items():
            variables = self.variables(lname)
            for wname, arr in ws.items():
                variables[wname].assign(arr.astype(self.dtype))

    def get_weights(self, native: bool = False):
        """{layer: {weight: float64 array}}; `native`: in the weights' own dtype (a checkpoint's)."""
        return {lname: {wname: np.array(v.numpy(), dtype=None if native else np.float64, copy=True)
                        for wname, v in self.variables(lname).items()} for lname in self.weight_names}

    # ------------------------------------------------------------------------------------- step functions

    def _stats(self, y, out):
        if self.task == "regression":
            err = y - out
            return tf.stack([tf.reduce_sum(err * err), tf.reduce_sum(tf.abs(err)),
                             tf.cast(tf.size(err), out.dtype)])
        if self.task == "binary":
            thr = 0.0 if self.fused else 0.5
            pred = tf.cast(tf.reshape(out > thr, [-1]), tf.int64)
            true = tf.cast(tf.reshape(y, [-1]), tf.int64)
            k = 2
        else:
            pred = tf.argmax(out, axis=-1)
            true = tf.cast(y, tf.int64) if len(y.shape) == 1 else tf.argmax(y, axis=-1)
            k = self.n_stats[1]
        cm = tf.math.bincount(true * k + pred, minlength=k * k, maxlength=k * k, dtype=out.dtype)
        cm = tf.reshape(cm, (k, k))
        if self.n_stats[0] == k:
            return cm
        # mse/mae asked: the error row [Σ(t−p)², Σ|t−p|, 0, …] of the targets and probabilities under the
        # matrix (dlc/reference/metrics.py)
        p = out if out.dtype == tf.float64 else tf.cast(out, tf.float32)
        if self.task == "binary":
            p = tf.reshape(tf.sigmoid(p) if self.fused else p, [-1])
            err = tf.cast(tf.reshape(y, [-1]), p.dtype) - p
        else:
            p = tf.nn.softmax(p, axis=-1) if self.fused else p
            t = tf.one_hot(true, k, dtype=p.dtype) if len(y.shape) == 1 else tf.cast(y, p.dtype)
            err = t - p
        row = tf.concat([tf.stack([tf.reduce_sum(err * err), tf.reduce_sum(tf.abs(err))]),
                         tf.zeros([k - 2], p.dtype)], 0)
        return tf.concat([cm, tf.cast(tf.reshape(row, (1, k)), out.dtype)], 0)

    def _sum(self, losses: list):
        """The sum of regularization terms in the float dtype (under a mixed dtype policy an activity
        regularizer's term comes in the layer's 16-bit compute dtype), None for none."""
        return tf.add_n([tf.cast(t, self.dtype) for t in losses]) if losses else None

    def _reg(self):
        return self._sum(self.train_model.losses)

    def _weight_penalties(self) -> list:
        """Each regularized trainable weight's penalty, in weight order: the terms Layer.losses ends with."""
        return [v.regularizer(v) for v in self.train_model.trainable_weights if v.regularizer is not None]

    def _activity_reg(self):
        """The activity-regularizer part of the last call's losses (weight penalties are added once,
        outside). Layer.losses lists the add_loss terms of the model and its layers (here: the activity
        regularizers') first, then a fresh penalty per regularized trainable weight."""
        m = self.train_model
        losses = m.losses
        losses = losses[:len(losses) - sum(v.regularizer is not None for v in m.trainable_weights)]
        return self._sum(losses)

    def _steps_for(self, x, y) -> StepFunctions:
        """The step functions, made on first use for data like (x, y)."""
        if self._steps is None:
            self._steps = self._make_steps(x, y)
        return self._steps

    def _make_steps(self, x, y) -> StepFunctions:
        """One trace each: the batch dimension is left open, so the last (smaller) batch of an epoch and the
        validation batches reuse the graph (a retrace costs more than a whole epoch of a small model)."""
        model, opt, loss_fn = self.train_model, self.opt, self.loss_fn
        variables = model.trainable_variables
        # An Embedding's gradient reaches the optimizer as IndexedSlices, as in model.fit, except for a
        # centered RMSprop: Keras' sparse division then gathers out of range (InvalidArgumentError), so it
        # gets the summed, dense gradient (torch does the same: optimizers.RMSprop.per_occurrence)
        dense_grads = bool(getattr(getattr(opt, "inner_optimizer", opt), "centered", False))
        stats = tf.Variable(tf.zeros(self.n_stats, dtype=self.dtype), trainable=False)
        xs = tf.TensorSpec([None, *x.shape[1:]], x.dtype)
        ys = tf.TensorSpec([None, *y.shape[1:]], y.dtype)

        def step(xb, yb):
            with tf.GradientTape() as tape:
                out = model(xb, training=True)
                loss = loss_fn(yb, out)
                reg = self._reg()
                if reg is not None:
                    loss = loss + reg
                # the loss as the optimizer scales it: a LossScaleOptimizer (mixed_float16) multiplies it by
                # its dynamic scale and unscales the gradients in apply; any other optimizer returns it as is
                scaled = opt.scale_loss(loss)
            grads = tape.gradient(scaled, variables)
            if dense_grads:  # (see below)
                grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
            opt.apply(grads, variables)
            self.step_var.assign_add(1)
            stats.assign_add(self._stats(yb, out))
            return loss

        @tf.function(input_signature=[xs, ys, tf.TensorSpec([None], tf.int64)])
        def train_step(x, y, idx):
            """One step on rows `idx` of (x, y). A batch read on the host (session.HostBatches) comes through
            this same graph, as (xb, yb, 0..len-1), so that an npy run and the npz run of the same arrays run
            one graph, optimised once (the gather copies the values exactly), not two graphs that TensorFlow's
            graph optimizer might rewrite apart."""
            return step(tf.gather(x, idx), tf.gather(y, idx))

        @tf.function(input_signature=[xs, ys])
        def eval_step(xb, yb):
            out = model(xb, training=False)
            loss = loss_fn(yb, out)
            act = self._activity_reg()
            if act is not None:  # Keras 3 adds regularizer(output)/batch size on every call
                loss = loss + act
            return loss * tf.cast(tf.shape(xb)[0], out.dtype), self._stats(yb, out)

        @tf.function(input_signature=[xs, ys, tf.TensorSpec([], tf.int64)])
        def eval_all(x, y, batch_size):
            """eval_step on every batch in one call (a loop in the graph, not a Python call and an eager slice
            per batch): each batch's (loss x size, statistics), widened to float64, in order."""
            n = tf.shape(x, out_type=tf.int64)[0]
            steps = tf.cast((n + batch_size - 1) // batch_size, tf.int32)
            losses = tf.TensorArray(tf.float64, size=steps)
            parts = tf.TensorArray(tf.float64, size=steps)
            for i in tf.range(steps):
                lo = tf.cast(i, tf.int64) * batch_size
                loss, st = eval_step(x[lo:lo + batch_size], y[lo:lo + batch_size])
                losses = losses.write(i, tf.cast(loss, tf.float64))
                parts = parts.write(i, tf.cast(st, tf.float64))
            return losses.stack(), parts.stack()

        return StepFunctions(train_step, eval_step, eval_all, stats)

    # ---------------------------------------------------------------------------------------- training

    def load_data(self, x: np.ndarray, y: np.ndarray):
        return host_tensor(x, self.dtype), host_tensor(y, y.dtype if y.dtype.kind in "iu" else self.dtype)

    def set_lr(self, lr: float):
        self.opt.learning_rate = float(lr)

    def train_epoch(self, handle, perm: np.ndarray, batch_size: int, progress=None):
        """(step losses, metric statistics, batch sizes) of one epoch over `perm`, read once at its end."""
        x, y = handle
        fns = self._steps_for(x, y)
        sizes = batch_sizes(len(perm), batch_size)
        steps = len(sizes)
        fns.stats.assign(tf.zeros(self.n_stats, dtype=self.dtype))
        # every batch's indices cut at once (one op), not by an eager slice before each step
        batches = tf.split(tf.constant(perm, dtype=tf.int64), sizes.astype(np.int64)) if steps else []
        losses = []  # device tensors; read once, at the end of the epoch
        last = time.perf_counter()
        host = getattr(x, "on_host", False)  # (a session's HostBatches: streamed features)
        if host:
            x.reader.plan(perm, batch_size)  # (each batch read while the one before it trains)
        for i in range(steps):
            if host:
                idx = perm[i * batch_size:(i + 1) * batch_size]
                losses.append(fns.train(x[idx], tf.gather(y, batches[i]), tf.range(len(idx), dtype=tf.int64)))
            else:
                losses.append(fns.train(x, y, batches[i]))
            if progress is not None and time.perf_counter() - last > 0.2:
                progress(i + 1, steps, self._peek(losses[:i + 1], fns.stats))
                last = time.perf_counter()
        if progress is not None:
            progress(steps, steps, self._peek(losses, fns.stats))
        out = tf.stack(losses).numpy().astype(np.float64) if losses else np.zeros(0)
        return out, fns.stats.numpy().astype(np.float64), sizes

    @staticmethod
    def _peek(losses: list, stats):
        """The step losses and metric statistics so far, read when asked (the display's running values)."""
        return lambda: (tf.stack(losses).numpy().astype(np.float64) if losses else np.zeros(0),
                        stats.numpy().astype(np.float64))

    def evaluate(self, handle, batch_size: int):
        """(mean loss with the regularization penalties, metric statistics) in inference mode."""
        x, y = handle
        fns = self._steps_for(x, y)
        n = int(x.shape[0])
        total = 0.0
        stats = np.zeros(self.n_stats)
        if n and not getattr(x, "on_host", False):
            losses, parts = (t.numpy() for t in fns.eval_all(x, y, tf.constant(batch_size, tf.int64)))
        else:  # batches from the host; device tensors, read once at the end
            out = [fns.eval_batch(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]
            losses = tf.stack([o[0] for o in out]).numpy().astype(np.float64) if out else np.zeros(0)
            parts = tf.stack([o[1] for o in out]).numpy().astype(np.float64) if out else np.zeros(0)
        for loss, st in zip(losses.tolist(), parts, strict=True):  # in float64, batch after batch
            total += loss
            stats += st
        weight = self._weight_penalties()  # activity terms are in the eval step
        reg = tf.add_n(weight) if weight else None
        return total / n + (float(reg) if reg is not None else 0.0), stats

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        return np.asarray(self.model.predict(x.astype(self.dtype), batch_size=batch_size, verbose=0),
                          dtype=np.float64)


def host_tensor(a: np.ndarray, dtype) -> tf.Tensor:
    """A host array as a TensorFlow tensor in `dtype`, with one copy at most. tf.constant and
    tf.convert_to_tensor keep two copies of a numpy array (measured: 2x its size retained); DLPack wraps a
    C-contiguous, writable array whose data is aligned to 64 bytes without copying (TensorFlow's kernels
    need the alignment: an unaligned buffer aborts the process), so any other array is first copied once
    into such a buffer. A wrapped array is shared: it is not to be changed while the tensor is in use (as
    torch.as_tensor shares it on the torch backend)."""
    a = np.asarray(a, dtype=dtype)  # no copy when it has the dtype
    if a.size == 0 or a.ndim == 0:
        return tf.convert_to_tensor(a)
    if not (a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 64 == 0):
        buf = np.empty(a.nbytes + 64, np.uint8)
        start = -buf.ctypes.data % 64
        aligned = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
        np.copyto(aligned, a)
        a = aligned
    return tf.experimental.dlpack.from_dlpack(a.__dlpack__())
