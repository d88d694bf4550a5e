"""A trainable Keras model for one spec: Keras layers, regularizers and optimizers; dlc's weights, batches and
masks; a compiled train step that keeps data, losses and metric statistics in TensorFlow until the epoch ends."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from dlc.backends import LoweringMissing
from dlc.compiler.checks import final_activation
from dlc.compiler.spec import Spec
from dlc.metrics import stats_size
from dlc.weights import flatten, unflatten

from . import layers as KL


def _optimizer(ir):
    common = {k: getattr(ir, k) for k in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay")
              if getattr(ir, k) is not None}
    lr = ir.learning_rate
    if ir.kind == "SGD":
        return keras.optimizers.SGD(lr, momentum=ir.momentum, nesterov=ir.nesterov, **common)
    if ir.kind == "RMSprop":
        return keras.optimizers.RMSprop(lr, rho=ir.rho, momentum=ir.momentum, epsilon=ir.epsilon,
                                        centered=ir.centered, **common)
    if ir.kind == "Adam":
        return keras.optimizers.Adam(lr, beta_1=ir.beta_1, beta_2=ir.beta_2, epsilon=ir.epsilon,
                                     amsgrad=ir.amsgrad, **common)
    if ir.kind == "AdamW":  # weight_decay (default 0.004) is in `common`
        return keras.optimizers.AdamW(lr, beta_1=ir.beta_1, beta_2=ir.beta_2, epsilon=ir.epsilon,
                                      amsgrad=ir.amsgrad, **common)
    if ir.kind == "Adagrad":
        return keras.optimizers.Adagrad(lr, initial_accumulator_value=ir.initial_accumulator_value,
                                        epsilon=ir.epsilon, **common)
    if ir.kind == "Adadelta":
        return keras.optimizers.Adadelta(lr, rho=ir.rho, epsilon=ir.epsilon, **common)
    if ir.kind == "Nadam":
        return keras.optimizers.Nadam(lr, beta_1=ir.beta_1, beta_2=ir.beta_2, epsilon=ir.epsilon, **common)
    raise LoweringMissing(f"optimizer {ir.kind}", "keras")


class Session:
    name = "keras"

    def __init__(self, spec: Spec, dtype: str | None = None, device: str = "auto", weights=None):
        if device not in ("auto", "cpu", None):
            raise RuntimeError(f"--device {device}: the keras backend runs on the CPU here "
                               "(TensorFlow sees no GPU); use --backend torch for CUDA")
        self.spec = spec
        self.dtype = dtype or spec.dtype
        keras.config.set_floatx(self.dtype)  # optimizer constants and lr variables follow floatx
        self.task = type(spec.loss).task
        self.final = final_activation(spec)
        self.fused = type(spec.loss).output_activation == self.final and self.final in ("softmax", "sigmoid")
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.klayers: dict[str, keras.layers.Layer] = {}
        inputs = keras.Input(tuple(spec.input), dtype=self.dtype)
        infos = list(spec.walk())
        last = spec.layers[-1].name
        pos = 0

        def build(x, depth):
            nonlocal pos
            while pos < len(infos) and infos[pos].depth >= depth:
                info = infos[pos]
                pos += 1
                if info.layer.kind == "Residual":
                    y = build(x, depth + 1)
                    x = keras.layers.Add(name=info.layer.name, dtype=self.dtype)([x, y])
                    continue
                kl = KL.lower(info, spec.seed, self.fused and info.layer.name == last, self.dtype)
                if isinstance(kl, KL.HashDropout):
                    kl.step_var = self.step_var
                self.klayers[info.layer.name] = kl
                x = kl(x)
            return x

        logits = build(inputs, 0)
        self.train_model = keras.Model(inputs, logits, name=spec.name)
        if self.fused:
            out = keras.layers.Activation(self.final, name="output_activation", dtype=self.dtype)(logits)
            self.model = keras.Model(inputs, out, name=spec.name)
        else:
            self.model = self.train_model
        if weights is not None:
            self.set_weights(weights)
        self.opt = _optimizer(spec.optimizer)
        self.opt.build(self.train_model.trainable_variables)
        self.device_name = "cpu"
        self._train_step = None
        self._eval_step = None
        self.n_stats = stats_size(self.task, spec.output_shape()[-1])

    # ------------------------------------------------------------------------------------------ weights

    def set_weights(self, weights):
        for lname, ws in weights.items():
            kl = self.klayers[lname]
            for wname, arr in ws.items():
                KL.variable_for(kl, wname).assign(arr.astype(self.dtype))

    def get_weights(self):
        out = {}
        for info in self.spec.walk():
            if info.weights:
                kl = self.klayers[info.layer.name]
                out[info.layer.name] = {w.name: np.array(KL.variable_for(kl, w.name).numpy(), dtype=np.float64, copy=True)
                                        for w in info.weights}
        return out

    # ------------------------------------------------------------------------------------------- losses

    def _loss(self, y, out):
        name = self.spec.loss.name
        if name == "categorical_crossentropy":
            per = tf.nn.softmax_cross_entropy_with_logits(y, out)
        elif name == "sparse_categorical_crossentropy":
            per = tf.nn.sparse_softmax_cross_entropy_with_logits(y, out)
        elif name == "binary_crossentropy":
            per = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, out), axis=-1)
        elif name == "mse":
            per = tf.reduce_mean(tf.square(y - out), axis=-1)
        elif name == "mae":
            per = tf.reduce_mean(tf.abs(y - out), axis=-1)
        elif name == "huber":
            d = tf.constant(self.spec.loss.delta, out.dtype)
            err = tf.abs(y - out)
            per = tf.reduce_mean(tf.where(err <= d, 0.5 * err * err, d * err - 0.5 * d * d), axis=-1)
        else:
            raise LoweringMissing(f"loss {name}", "keras")
        return tf.reduce_mean(per)

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
        model, opt = self.train_model, self.opt
        variables = model.trainable_variables
        stats = self._stats_var = tf.Variable(tf.zeros(self.n_stats, dtype=self.dtype), trainable=False)
        xs = tf.TensorSpec([None, *x.shape[1:]], x.dtype)
        ys = tf.TensorSpec([None, *y.shape[1:]], y.dtype)

        @tf.function(input_signature=[xs, ys, tf.TensorSpec([None], tf.int64)])
        def train_step(x, y, idx):
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                out = model(xb, training=True)
                loss = self._loss(yb, out)
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
            loss = self._loss(yb, out)
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

    def save(self, directory: Path) -> list[str]:
        directory = Path(directory)
        self.model.save(directory / "model.keras")
        (directory / "model.json").write_text(json.dumps(
            {"backend": "keras", "format": "keras", "file": "model.keras", "dtype": self.dtype,
             "load": "import dlc.backends.keras.layers; keras.saving.load_model('model.keras')"}, indent=2))
        return ["model.keras", "model.json"]

    def load(self, directory: Path):
        loaded = keras.saving.load_model(Path(directory) / "model.keras")
        self.model.set_weights(loaded.get_weights())

    # ------------------------------------------------------------------------------------- checkpoints

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights, optimizer variables (slots, iterations, lr) and the dropout step: a checkpoint's content."""
        out = flatten(self.get_weights(), "w/")
        for i, v in enumerate(self.opt.variables):
            out[f"opt/{i}"] = np.array(v.numpy(), copy=True)
        out["step"] = np.array(int(self.step_var.numpy()))
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.set_weights(unflatten(state, "w/"))
        for i, v in enumerate(self.opt.variables):
            v.assign(state[f"opt/{i}"])
        self.step_var.assign(int(state["step"]))
