"""dlc's own Keras layers (dropout with dlc's hash masks, maxout) and the functional-model builder for a
lowered layer tree (residual blocks as Add layers). IR-free: the emitted keras script copies these
definitions."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import keras
import tensorflow as tf

from dlc.reference.rng import dropout_threshold, fmix32


class TFOps:
    """The dropout hash's integer operators on TensorFlow int64 tensors (no Python operators for bits)."""

    xor = staticmethod(tf.bitwise.bitwise_xor)
    shr = staticmethod(lambda a, n: tf.bitwise.right_shift(a, tf.constant(n, tf.int64)))
    shl = staticmethod(lambda a, n: tf.bitwise.left_shift(a, tf.constant(n, tf.int64)))
    band = staticmethod(lambda a, m: tf.bitwise.bitwise_and(a, tf.constant(m, tf.int64)))


@keras.saving.register_keras_serializable(package="dlc")
class HashDropout(keras.layers.Layer):
    """Inverted dropout with dlc's counter-based masks (the same bits as on every other backend); the step
    comes from an int64 variable the trainer advances. Without one (a loaded model) it is the identity."""

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
    """Dense to units·pieces (linear), reshaped to (..., units, pieces), max over pieces, then activation."""

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


class Residual:
    """output = input + body(input): not a Keras layer but a marker, so the body's layers stay in the
    functional graph as themselves; applying it adds an Add layer of the input and the body's output. The body
    comes as `layer_name=layer` arguments, in order (as backends/network.py writes it)."""

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
    activation ('softmax' / 'sigmoid') the loss computes from the logits (the same model when there is
    none)."""
    inputs = keras.Input(tuple(input_shape), dtype=dtype)
    logits = apply_layers(inputs, layers)
    train_model = keras.Model(inputs, logits, name=name)
    if output is None:
        return train_model, train_model
    out = keras.layers.Activation(output, name="output_activation", dtype=dtype)(logits)
    return train_model, keras.Model(inputs, out, name=name)


def check_weights(klayers: dict, weight_shapes: dict) -> dict:
    """{layer: [weight names]} in Keras' own order (dlc lists every layer's weights in that order), after
    checking that the shapes agree and that no Keras layer has weights dlc does not list."""
    for lname, kl in klayers.items():
        want = list(weight_shapes.get(lname, {}).values())
        got = [tuple(v.shape) for v in kl.weights]
        if got != [tuple(s) for s in want]:
            raise ValueError(f"layer {lname}: Keras' weights have shapes {got}, dlc's {want}")
    return {lname: list(ws) for lname, ws in weight_shapes.items() if ws}
