"""The training evidence's probe on Keras (definitions: dlc/reference/evidence.py): one forward and backward
pass over the probe set in inference mode through a functional model that exposes every layer's output; the
numbers are reduced in TensorFlow and read in one transfer."""

from __future__ import annotations

from . import quiet  # noqa: F401  (imports TensorFlow with its start-up notices silenced)

# isort: split
import keras
import tensorflow as tf

from dlc.reference.evidence import SIGMOID_HIGH, SIGMOID_LOW, TANH_LIMIT, ProbeLayer, probe_rows


def activation_stats(a, family: str | None) -> list:
    """[mean, std, dead fraction, saturated fraction] of one layer's output (NaN where not applicable)."""
    nan = tf.constant(float("nan"), a.dtype)
    mean = tf.reduce_mean(a)
    std = tf.sqrt(tf.reduce_mean(tf.square(a - mean)))
    dead = sat = nan
    if family == "relu":
        alive = tf.reduce_any(tf.reshape(a > 0, [-1, a.shape[-1]]), axis=0)
        dead = 1 - tf.reduce_mean(tf.cast(alive, a.dtype))
    elif family == "sigmoid":
        sat = tf.reduce_mean(tf.cast((a < SIGMOID_LOW) | (a > SIGMOID_HIGH), a.dtype))
    elif family == "tanh":
        sat = tf.reduce_mean(tf.cast(tf.abs(a) > TANH_LIMIT, a.dtype))
    return [mean, std, dead, sat]


# a run of at least this many epochs has its probe traced from the first: eagerly it costs ~10 ms an epoch,
# traced ~2 ms after a ~0.45 s trace, which a shorter run does not pay back
TRACED_FROM_EPOCHS = 60


class Prober:
    """`probe(x, y)` for a trainer's model: {layer: {grad_norm, act_mean, act_std, dead_fraction,
    saturated_fraction}} (None where not applicable). `variables(name)` gives a layer's {weight: variable};
    `epochs`: how many epochs the run has (it is probed after each)."""

    def __init__(self, train_model, variables, loss, layers: list[ProbeLayer], epochs: int = 0):
        self.layers, self.loss = layers, loss
        outputs = [train_model.get_layer(pl.name).output for pl in layers]
        self.model = keras.Model(train_model.inputs, [*outputs, train_model.outputs[0]])
        self.vars = {pl.name: [variables(pl.name)[w] for w in pl.trainable] for pl in layers}
        # eagerly the probe took 10 ms an epoch (iris, digits_mlp), more than a small model's training; traced
        # 2 ms, but the trace costs ~0.45 s: traced for a run of TRACED_FROM_EPOCHS epochs or more (the same
        # bits: measured on 5 specs, float32 and float64)
        self.numbers = tf.function(self._numbers, reduce_retracing=True) if epochs >= TRACED_FROM_EPOCHS \
            else self._numbers

    def __call__(self, x, y) -> dict[str, dict[str, float | None]]:
        return probe_rows(self.layers, self.numbers(x, y).numpy().tolist())

    def _numbers(self, x, y):
        """The probe's numbers, in probe_rows' order, as one float64 tensor."""
        flat = [v for pl in self.layers for v in self.vars[pl.name]]
        with tf.GradientTape() as tape:
            outs = self.model(x, training=False)
            loss = self.loss(y, outs[-1])
        grads = tape.gradient(loss, flat) if flat else []
        values, i = [], 0
        zero = tf.zeros((), loss.dtype)
        for pl, a in zip(self.layers, outs[:-1], strict=True):
            g = grads[i:i + len(self.vars[pl.name])]
            i += len(g)
            a = tf.cast(a, loss.dtype)  # (a layer's output is 16-bit under mixed precision)
            dense = [tf.convert_to_tensor(t) for t in g if t is not None]  # an Embedding's IndexedSlices
            sq = [tf.reduce_sum(t * t) for t in dense]
            norm = tf.sqrt(tf.add_n(sq)) if sq else (zero if g else zero + float("nan"))
            if pl.output_activation == "softmax":
                a = tf.nn.softmax(a, axis=-1)
            elif pl.output_activation == "sigmoid":
                a = tf.sigmoid(a)
            values += [norm, *activation_stats(a, pl.family)]
        return tf.cast(tf.stack(values), tf.float64)
