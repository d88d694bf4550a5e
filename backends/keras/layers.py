"""dlc's own Keras layers (dropout with dlc's hash masks, maxout) and the functional-model builder for a
lowered layer tree (residual blocks as Add layers). IR-free: the emitted keras script copies these
definitions."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import keras
import tensorflow as tf

from dlc.reference.rng import C1, C2, M32, dropout_threshold


def fmix32_u32(h):
    """dlc.reference.rng.fmix32 ("lowbias32") on TensorFlow uint32 tensors: uint32 products wrap mod 2^32,
    which is the hash's definition, so the 16-bit split multiplies of the int64 form (reference.rng.mul32)
    are not needed: 7 elementwise ops instead of ~20, the same bits."""
    xor, shr = tf.bitwise.bitwise_xor, tf.bitwise.right_shift
    h = xor(h, shr(h, tf.constant(16, tf.uint32))) * tf.constant(C1, tf.uint32)
    h = xor(h, shr(h, tf.constant(15, tf.uint32))) * tf.constant(C2, tf.uint32)
    return xor(h, shr(h, tf.constant(16, tf.uint32)))


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
        # the per-step key fmix32(base ^ (step mod 2^32)) and the element hashes fmix32((i mod 2^32) ^ key),
        # in uint32 (int64 -> uint32 casts keep the low 32 bits): the bits of dlc.reference.rng's int64 form
        step = tf.bitwise.bitwise_and(tf.convert_to_tensor(self.step_var), tf.constant(M32, tf.int64))
        step = tf.cast(step, tf.uint32)
        key = fmix32_u32(tf.bitwise.bitwise_xor(tf.constant(self.base, tf.uint32), step))
        idx = tf.range(tf.size(x, out_type=tf.int64), dtype=tf.int64)
        offset = getattr(self, "offset_var", None)  # data-parallel: this share's place in the global batch
        if offset is not None:
            per_sample = tf.size(x, out_type=tf.int64) // tf.maximum(tf.shape(x, out_type=tf.int64)[0], 1)
            idx = idx + tf.convert_to_tensor(offset) * per_sample
        idx = tf.cast(idx, tf.uint32)
        h = fmix32_u32(tf.bitwise.bitwise_xor(idx, key))
        keep = tf.reshape(tf.bitwise.right_shift(h, tf.constant(8, tf.uint32))
                          >= tf.constant(self.threshold, tf.uint32), tf.shape(x))
        return tf.where(keep, x * tf.constant(self.scale, x.dtype), tf.zeros((), x.dtype))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "base": self.base}


@keras.saving.register_keras_serializable(package="dlc")
class Maxout(keras.layers.Dense):
    """Dense to units·pieces (linear), grouped as (..., units, pieces), max over pieces, then activation.

    Each piece is its own matmul (kernel columns p, p + pieces, ...): TensorFlow's float64 matmul rounds
    equal kernel columns differently by their position in the product, so pieces with equal weights (a
    constant or zeros kernel_init, which keeps them equal) tied in torch but not here, and the max sent the
    whole gradient to one piece instead of sharing it; one product per piece rounds every piece alike. The
    pieces' products are one batched matmul (the kernel viewed as [pieces, in, units]), each still its own
    product: half the step time of a strided slice and a matmul per piece."""

    def __init__(self, units: int, pieces: int = 2, activation=None, **kwargs):
        super().__init__(units * pieces, activation=None, **kwargs)
        self.maxout_units, self.pieces = int(units), int(pieces)
        self.maxout_activation = keras.activations.get(activation)

    def call(self, inputs, training=None):
        ops, k, u = keras.ops, self.pieces, self.maxout_units
        lead = [1] * (len(inputs.shape) - 1)  # x's leading axes but the batch, broadcast
        w = ops.transpose(ops.reshape(self.kernel, (-1, u, k)), (2, 0, 1))  # piece p: columns p::k
        y = ops.matmul(ops.expand_dims(inputs, 0), ops.reshape(w, (k, *lead[1:], -1, u)))
        if self.bias is not None:
            y = ops.add(y, ops.reshape(ops.transpose(ops.reshape(self.bias, (u, k))), (k, *lead, u)))
        return self.maxout_activation(ops.max(y, axis=0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.maxout_units,)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.maxout_units, pieces=self.pieces,
                   activation=keras.activations.serialize(self.maxout_activation))
        return cfg


@keras.saving.register_keras_serializable(package="dlc")
class SimpleRNN(keras.layers.SimpleRNN):
    """keras.layers.SimpleRNN with its activity regularizer applied: Keras' SimpleRNN takes
    activity_regularizer= but never hands it on to its Layer (LSTM and GRU do), so the penalty on its output
    silently did nothing; the Layer applies (and get_config saves) the attribute set here."""

    def __init__(self, *args, activity_regularizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.activity_regularizer = keras.regularizers.get(activity_regularizer)


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
    """The Keras layers of a lowered network in order, residual bodies included (their Add layers not). A
    Residual is known by its `body` (no Keras layer has one), so that an emitted script of a network without
    one does not copy the class."""
    out = []
    for layer in layers:
        body = getattr(layer, "body", None)
        out += keras_layers(body) if body is not None else [layer]
    return out


def build_models(input_shape, layers, dtype: str, name: str, output=None):
    """(train_model, model): the functional model to the logits, and the one that applies the `output`
    activation ('softmax' / 'sigmoid') the loss computes from the logits (the same model when there is
    none). Layers with a mixed dtype policy (mixed precision) compute in 16 bits: their output is cast to
    `dtype` by a float32 linear activation, as Keras advises, so the loss and the output activation are
    computed in float32."""
    inputs = keras.Input(tuple(input_shape), dtype=dtype)
    logits = apply_layers(inputs, layers)
    if logits.dtype != dtype:
        logits = keras.layers.Activation("linear", name="output_cast", dtype=dtype)(logits)
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
