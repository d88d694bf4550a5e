"""What the Keras lowerings (lower.py) name besides keras.* and tf.*, and the training steps around the model.

IR-free and self-contained: every top-level definition uses only other top-level names of this module, the
imports below and dlc.reference.rng's hash, so the emitted keras script copies their source text as they are. Importing
this module registers dlc's custom objects with Keras (needed before keras.saving.load_model on a dlc model).
"""

from __future__ import annotations

import json  # noqa: F401 — the namespace lowered expressions and copied definitions may use
import math  # noqa: F401
import time
from functools import partial  # noqa: F401

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from dlc.reference.rng import dropout_threshold, fmix32

# ------------------------------------------------------------------------------------------------ layers


class TFOps:
    """The dropout hash's integer operators on TensorFlow int64 tensors (no Python operator overloads for bits)."""

    xor = staticmethod(tf.bitwise.bitwise_xor)
    shr = staticmethod(lambda a, n: tf.bitwise.right_shift(a, tf.constant(n, tf.int64)))
    shl = staticmethod(lambda a, n: tf.bitwise.left_shift(a, tf.constant(n, tf.int64)))
    band = staticmethod(lambda a, m: tf.bitwise.bitwise_and(a, tf.constant(m, tf.int64)))


@keras.saving.register_keras_serializable(package="dlc")
class HashDropout(keras.layers.Layer):
    """Inverted dropout with dlc's counter-based masks (the same bits as on every other backend); the step comes
    from an int64 variable the trainer advances. Without one (a loaded model) it is the identity."""

    def __init__(self, rate: float, base: int, step=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.base = int(base)
        self.threshold = dropout_threshold(self.rate)
        self.scale = 1.0 / (1.0 - self.rate)
        self.step_var = step

    def call(self, x, training=False):
        if not training or self.rate == 0 or self.step_var is None:
            return x
        n = tf.size(x, out_type=tf.int64)
        ops = TFOps
        idx = ops.band(tf.range(n, dtype=tf.int64), 0xFFFFFFFF)
        step = ops.band(tf.convert_to_tensor(self.step_var), 0xFFFFFFFF)
        key = fmix32(ops.xor(tf.constant(self.base, tf.int64), step), ops)
        keep = tf.reshape(ops.shr(fmix32(ops.xor(idx, key), ops), 8) >= self.threshold, tf.shape(x))
        return tf.where(keep, x * tf.constant(self.scale, x.dtype), tf.zeros((), x.dtype))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "base": self.base}


@keras.saving.register_keras_serializable(package="dlc")
class Maxout(keras.layers.Dense):
    """Dense to units·pieces (linear), reshaped to (..., units, pieces), max over the pieces, then the activation."""

    def __init__(self, units: int, pieces: int = 2, activation=None, **kwargs):
        super().__init__(units * pieces, activation=None, **kwargs)
        self.maxout_units, self.pieces = int(units), int(pieces)
        self.maxout_activation = keras.activations.get(activation)

    def call(self, inputs, training=None):
        y = super().call(inputs)
        y = keras.ops.reshape(y, (-1, *y.shape[1:-1], self.maxout_units, self.pieces))
        return self.maxout_activation(keras.ops.max(y, axis=-1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.maxout_units,)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.maxout_units, pieces=self.pieces,
                   activation=keras.activations.serialize(self.maxout_activation))
        return cfg


@keras.saving.register_keras_serializable(package="dlc")
class LeakyRelu:
    """keras.activations.leaky_relu with its slope, as an object: Keras saves and loads it (not a lambda or a
    partial)."""

    def __init__(self, negative_slope: float):
        self.negative_slope = negative_slope

    def __call__(self, x):
        return keras.activations.leaky_relu(x, negative_slope=self.negative_slope)

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="dlc")
class Elu:
    """keras.activations.elu with its alpha, as an object Keras saves and loads."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def __call__(self, x):
        return keras.activations.elu(x, alpha=self.alpha)

    def get_config(self):
        return {"alpha": self.alpha}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Residual:
    """output = input + body(input): not a Keras layer but a marker, so the body's layers stay in the functional
    graph as themselves; applying it adds an Add layer of the input and the body's output. The body comes as
    `layer_name=layer` arguments, in order (as backends/network.py writes it)."""

    def __init__(self, dtype=None, name=None, **body):
        self.body, self.dtype, self.name = list(body.values()), dtype, name

    def __call__(self, x):
        return keras.layers.Add(name=self.name, dtype=self.dtype)([x, apply_layers(x, self.body)])


def network(**layers) -> list:
    """The lowered network, `layer_name=layer` in order: the layers build_models applies."""
    return list(layers.values())


def apply_layers(x, layers):
    for layer in layers:
        x = layer(x)
    return x


def keras_layers(layers) -> list:
    """The Keras layers of a lowered network in order, residual bodies included (their Add layers not)."""
    out = []
    for layer in layers:
        out += keras_layers(layer.body) if isinstance(layer, Residual) else [layer]
    return out


def build_models(input_shape, layers, dtype: str, name: str, output=None):
    """(train_model, model): the functional model to the logits, and the one that applies the `output`
    activation ('softmax' / 'sigmoid') the loss computes from the logits (the same model when there is none)."""
    inputs = keras.Input(tuple(input_shape), dtype=dtype)
    logits = apply_layers(inputs, layers)
    train_model = keras.Model(inputs, logits, name=name)
    if output is None:
        return train_model, train_model
    out = keras.layers.Activation(output, name="output_activation", dtype=dtype)(logits)
    return train_model, keras.Model(inputs, out, name=name)


def check_weights(klayers: dict, weight_shapes: dict) -> dict:
    """{layer: [weight names]} in Keras' own order (dlc lists every layer's weights in that order), after checking
    that the shapes agree and that no Keras layer has weights dlc does not list."""
    for lname, kl in klayers.items():
        want = list(weight_shapes.get(lname, {}).values())
        got = [tuple(v.shape) for v in kl.weights]
        if got != [tuple(s) for s in want]:
            raise ValueError(f"layer {lname}: Keras' weights have shapes {got}, dlc's {want}")
    return {lname: list(ws) for lname, ws in weight_shapes.items() if ws}


# ------------------------------------------------------------------------------------------------ losses
# The mean over the batch of the per-sample loss; crossentropies from the logits (the output layer's softmax or
# sigmoid is left to them).


def categorical_crossentropy(y, logits):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, logits))


def sparse_categorical_crossentropy(y, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))


def binary_crossentropy(y, logits):
    return tf.reduce_mean(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, logits), axis=-1))


def mean_squared_error(y, out):
    return tf.reduce_mean(tf.reduce_mean(tf.square(y - out), axis=-1))


def mean_absolute_error(y, out):
    return tf.reduce_mean(tf.reduce_mean(tf.abs(y - out), axis=-1))


def huber(y, out, delta: float = 1.0):
    d = tf.constant(delta, out.dtype)
    err = tf.abs(y - out)
    return tf.reduce_mean(tf.reduce_mean(tf.where(err <= d, 0.5 * err * err, d * err - 0.5 * d * d), axis=-1))


# ---------------------------------------------------------------------------------------------- training


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
        return dict(zip(self.weight_names[lname], self.klayers[lname].weights))

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

    def _activity_reg(self):
        """The activity-regularizer part of the last call's losses (weight penalties are added once, outside)."""
        m = self.train_model  # Layer.losses = own add_loss losses (activity) + fresh weight penalties
        losses = list(m._get_own_losses())
        for layer in m._flatten_layers(include_self=False):
            losses.extend(layer._get_own_losses())
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
        return tf.constant(x.astype(self.dtype)), yt

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
                progress(i + 1, steps)
                last = time.perf_counter()
        if progress is not None:
            progress(steps, steps)
        out = tf.stack(losses).numpy().astype(np.float64) if losses else np.zeros(0)
        return out, self._stats_var.numpy().astype(np.float64), sizes

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
        weight = self.train_model._get_regularization_losses()  # activity terms are in the eval step
        reg = tf.add_n(weight) if weight else None
        return total / n + (float(reg) if reg is not None else 0.0), stats

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        return np.asarray(self.model.predict(x.astype(self.dtype), batch_size=batch_size, verbose=0),
                          dtype=np.float64)
