"""The training steps around a Keras model, IR-free (the session and the emitted keras script share them)."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import time

import numpy as np
import tensorflow as tf

from .layers import build_models, check_weights, keras_layers


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
        self._train_step = None
        self._eval_step = None

    # ------------------------------------------------------------------------------------------ weights

    def variables(self, lname: str) -> dict:
        return dict(zip(self.weight_names[lname], self.klayers[lname].weights, strict=True))

    def set_weights(self, weights):
        for lname, ws in weights.items():
            variables = self.variables(lname)
            for wname, arr in ws.items():
                variables[wname].assign(arr.astype(self.dtype))

    def get_weights(self):
        return {lname: {wname: np.array(v.numpy(), dtype=np.float64, copy=True)
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
            k = self.n_stats[0]
        cm = tf.math.bincount(true * k + pred, minlength=k * k, maxlength=k * k, dtype=out.dtype)
        return tf.reshape(cm, (k, k))

    def _reg(self):
        losses = self.train_model.losses
        return tf.add_n(losses) if losses else None

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
        return tf.add_n(losses) if losses else None

    def _make_steps(self, x, y):
        """One trace each: the batch dimension is left open, so the last (smaller) batch of an epoch and the
        validation batches reuse the graph (a retrace costs more than a whole epoch of a small model)."""
        model, opt, loss_fn = self.train_model, self.opt, self.loss_fn
        variables = model.trainable_variables
        stats = self._stats_var = tf.Variable(tf.zeros(self.n_stats, dtype=self.dtype), trainable=False)
        xs = tf.TensorSpec([None, *x.shape[1:]], x.dtype)
        ys = tf.TensorSpec([None, *y.shape[1:]], y.dtype)

        @tf.function(input_signature=[xs, ys, tf.TensorSpec([None], tf.int64)])
        def train_step(x, y, idx):
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                out = model(xb, training=True)
                loss = loss_fn(yb, out)
                reg = self._reg()
                if reg is not None:
                    loss = loss + reg
            grads = tape.gradient(loss, variables)
            opt.apply(grads, variables)
            self.step_var.assign_add(1)
            stats.assign_add(self._stats(yb, out))
            return loss

        @tf.function(input_signature=[xs, ys])
        def eval_step(xb, yb):
            out = model(xb, training=False)
            loss = loss_fn(yb, out)
            act = self._activity_reg()
            if act is not None:  # Keras 3 adds regularizer(output)/batch size on every call
                loss = loss + act
            return loss * tf.cast(tf.shape(xb)[0], out.dtype), self._stats(yb, out)

        self._train_step, self._eval_step = train_step, eval_step

    # ---------------------------------------------------------------------------------------- training

    def load_data(self, x: np.ndarray, y: np.ndarray):
        yt = tf.constant(y) if y.dtype.kind in "iu" else tf.constant(y.astype(self.dtype))
        return tf.constant(np.asarray(x, dtype=self.dtype)), yt  # no numpy copy when x has the dtype

    def set_lr(self, lr: float):
        self.opt.learning_rate = float(lr)

    def train_epoch(self, handle, perm: np.ndarray, batch_size: int, progress=None):
        """(step losses, metric statistics, batch sizes) of one epoch over `perm`, read once at its end."""
        x, y = handle
        if self._train_step is None:
            self._make_steps(x, y)
        n = len(perm)
        steps = -(-n // batch_size)
        self._stats_var.assign(tf.zeros(self.n_stats, dtype=self.dtype))
        sizes = np.array([min(batch_size, n - i * batch_size) for i in range(steps)], dtype=np.float64)
        perm_t = tf.constant(perm, dtype=tf.int64)
        losses = []  # device tensors; read once, at the end of the epoch
        last = time.perf_counter()
        for i in range(steps):
            losses.append(self._train_step(x, y, perm_t[i * batch_size:(i + 1) * batch_size]))
            if progress is not None and time.perf_counter() - last > 0.2:
                progress(i + 1, steps, self._peek(losses[:i + 1]))
                last = time.perf_counter()
        if progress is not None:
            progress(steps, steps, self._peek(losses))
        out = tf.stack(losses).numpy().astype(np.float64) if losses else np.zeros(0)
        return out, self._stats_var.numpy().astype(np.float64), sizes

    def _peek(self, losses: list):
        """The step losses and metric statistics so far, read when asked (the display's running values)."""
        return lambda: (tf.stack(losses).numpy().astype(np.float64) if losses else np.zeros(0),
                        self._stats_var.numpy().astype(np.float64))

    def evaluate(self, handle, batch_size: int):
        """(mean loss with the regularization penalties, metric statistics) in inference mode."""
        x, y = handle
        if self._eval_step is None:
            self._make_steps(x, y)
        n = int(x.shape[0])
        total = 0.0
        stats = np.zeros(self.n_stats)
        for i in range(0, n, batch_size):
            loss, st = self._eval_step(x[i:i + batch_size], y[i:i + batch_size])
            total += float(loss)
            stats += st.numpy()
        weight = self._weight_penalties()  # activity terms are in the eval step
        reg = tf.add_n(weight) if weight else None
        return total / n + (float(reg) if reg is not None else 0.0), stats

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        return np.asarray(self.model.predict(x.astype(self.dtype), batch_size=batch_size, verbose=0),
                          dtype=np.float64)
