"""IR layers → Keras 3 layers, one lowering per kind. Keras is the reference semantics; the only custom layer is
dropout, whose masks come from dlc's hash stream (the same bits as on every other backend)."""

from __future__ import annotations

import keras
import tensorflow as tf

from dlc.backends import LoweringMissing
from dlc.compiler import layers as L
from dlc.compiler.spec import LayerInfo
from dlc.rng import dropout_base, dropout_threshold, fmix32

from . import recurrent

BACKEND = "keras"


def activation(act):
    if act.name == "leaky_relu":
        return lambda x, a=act.alpha: keras.activations.leaky_relu(x, negative_slope=a)
    if act.name == "elu":
        return lambda x, a=act.alpha: keras.activations.elu(x, alpha=a)
    if act.name == "swish":
        return keras.activations.silu
    fn = getattr(keras.activations, act.name, None)
    if fn is None:
        raise LoweringMissing(f"activation '{act.name}'", BACKEND)
    return fn


def regularizer(r):
    if r is None:
        return None
    if r.name == "l1":
        return keras.regularizers.L1(r.l1)
    if r.name == "l2":
        return keras.regularizers.L2(r.l2)
    return keras.regularizers.L1L2(l1=r.l1, l2=r.l2)


def constraint(c):
    if c is None:
        return None
    if c.name == "max_norm":
        return keras.constraints.MaxNorm(c.max_value, axis=c.axis)
    if c.name == "non_neg":
        return keras.constraints.NonNeg()
    return keras.constraints.UnitNorm(axis=c.axis)


class TFOps:
    xor = staticmethod(tf.bitwise.bitwise_xor)
    shr = staticmethod(lambda a, n: tf.bitwise.right_shift(a, tf.constant(n, tf.int64)))
    shl = staticmethod(lambda a, n: tf.bitwise.left_shift(a, tf.constant(n, tf.int64)))
    band = staticmethod(lambda a, m: tf.bitwise.bitwise_and(a, tf.constant(m, tf.int64)))


@keras.saving.register_keras_serializable(package="dlc")
class HashDropout(keras.layers.Layer):
    """Inverted dropout with dlc's counter-based masks; the step comes from a variable the trainer advances."""

    def __init__(self, rate: float, base: int, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.base = int(base)
        self.threshold = dropout_threshold(self.rate)
        self.scale = 1.0 / (1.0 - self.rate)
        self.step_var = None  # set by the session: a tf.Variable(int64) holding the global step

    def call(self, x, training=False):
        if not training or self.rate == 0 or self.step_var is None:
            return x
        n = tf.size(x, out_type=tf.int64)
        ops = TFOps
        idx = ops.band(tf.range(n, dtype=tf.int64), 0xFFFFFFFF)
        key = fmix32(ops.xor(tf.constant(self.base, tf.int64), ops.band(tf.convert_to_tensor(self.step_var), 0xFFFFFFFF)), ops)
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


def _dense_kwargs(layer, fuse_out: bool, dtype: str) -> dict:
    return {
        "activation": activation(L.LINEAR if fuse_out else layer.activation), "use_bias": layer.use_bias,
        "kernel_regularizer": regularizer(layer.kernel_reg), "bias_regularizer": regularizer(layer.bias_reg),
        "activity_regularizer": regularizer(layer.activity_reg),
        "kernel_constraint": constraint(layer.kernel_constraint),
        "bias_constraint": constraint(layer.bias_constraint), "dtype": dtype, "name": layer.name}


def lower(info: LayerInfo, seed: int, fuse_out: bool, dtype: str):
    layer = info.layer
    kind = layer.kind
    if kind == "Dense":
        return keras.layers.Dense(layer.units, **_dense_kwargs(layer, fuse_out, dtype))
    if kind == "Conv2D":
        return keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                                   **_dense_kwargs(layer, fuse_out, dtype))
    if kind == "MaxPool2D":
        return keras.layers.MaxPooling2D(layer.pool_size, strides=layer.strides, padding=layer.padding,
                                         dtype=dtype, name=layer.name)
    if kind == "Conv1D":
        return keras.layers.Conv1D(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                                   **_dense_kwargs(layer, fuse_out, dtype))
    if kind in POOLS:
        return POOLS[kind](layer.pool_size, strides=layer.strides, padding=layer.padding, dtype=dtype,
                           name=layer.name)
    if kind in GLOBAL_POOLS:
        return GLOBAL_POOLS[kind](dtype=dtype, name=layer.name)
    if kind == "Reshape":
        return keras.layers.Reshape(layer.target_shape, dtype=dtype, name=layer.name)
    if kind == "LayerNorm":
        return keras.layers.LayerNormalization(axis=-1, epsilon=layer.epsilon, center=layer.center,
                                               scale=layer.scale, dtype=dtype, name=layer.name)
    if kind == "Embedding":
        return keras.layers.Embedding(layer.input_dim, layer.output_dim, dtype=dtype, name=layer.name)
    if kind == "LeakyReLU":
        return keras.layers.LeakyReLU(negative_slope=layer.alpha, dtype=dtype, name=layer.name)
    if kind == "ELU":
        return keras.layers.ELU(alpha=layer.alpha, dtype=dtype, name=layer.name)
    if kind == "PReLU":
        return keras.layers.PReLU(dtype=dtype, name=layer.name)
    if kind == "Maxout":
        kw = _dense_kwargs(layer, fuse_out, dtype)
        return Maxout(layer.units, layer.pieces, **kw)
    if kind == "Flatten":
        return keras.layers.Flatten(dtype=dtype, name=layer.name)
    if kind == "Dropout":
        return HashDropout(layer.rate, dropout_base(seed, info.index), dtype=dtype, name=layer.name)
    if kind == "Activation":
        return keras.layers.Activation(activation(L.LINEAR if fuse_out else layer.activation), dtype=dtype,
                                       name=layer.name)
    if kind == "Softmax":
        if fuse_out:
            return keras.layers.Activation("linear", dtype=dtype, name=layer.name)
        return keras.layers.Softmax(axis=layer.axis, dtype=dtype, name=layer.name)
    if kind == "BatchNorm":
        return keras.layers.BatchNormalization(momentum=layer.momentum, epsilon=layer.epsilon, center=layer.center,
                                               scale=layer.scale, dtype=dtype, name=layer.name)
    if kind in recurrent.KINDS:
        if fuse_out:
            raise LoweringMissing(f"{kind} as the output layer", BACKEND, layer.at,
                                  "not supported (its activation cannot be fused into the loss; add a Dense)")
        return recurrent.lower(info, activation, regularizer, dtype)
    raise LoweringMissing(f"layer {kind}", BACKEND, layer.at)


POOLS = {"MaxPool1D": keras.layers.MaxPooling1D, "AvgPool1D": keras.layers.AveragePooling1D,
         "AvgPool2D": keras.layers.AveragePooling2D}
GLOBAL_POOLS = {"GlobalAvgPool1D": keras.layers.GlobalAveragePooling1D,
                "GlobalAvgPool2D": keras.layers.GlobalAveragePooling2D,
                "GlobalMaxPool1D": keras.layers.GlobalMaxPooling1D,
                "GlobalMaxPool2D": keras.layers.GlobalMaxPooling2D}


def variable_for(klayer, wname: str):
    if recurrent.is_recurrent(klayer):
        return getattr(klayer.cell, wname)
    return getattr(klayer, wname)
