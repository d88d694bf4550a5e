"""BatchNorm's and LayerNorm's means in TensorFlow's order of additions (float64;
backends/torch/reductions.py).

After `normalize: standard` some pixel columns of digits are constant within a batch; the mean of n copies
of one value c came out 1 ulp apart on TensorFlow (Eigen's reduction) and torch (x.mean), so x − mean was
exactly 0 on one backend and ±3e-16 on the other, a ReLU after BatchNorm sent its gradient differently, and
BatchNorm → ReLU → Dense on digits parted from Keras at step 1 (float64, relative 3.9e-5). The torch backend
now sums in Eigen's order (the module's docstring states it); these tests hold it to tf.reduce_mean and
tf.nn.moments bit for bit, the layers to Keras' layers, and the spec to Keras step for step."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from dlc.backends.torch import reductions as R  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not R._X86, reason="TensorFlow's order was measured on x86-64 only")]


def _shapes(rng, count):
    """Random shapes: BatchNorm after Dense (n, c) and after Conv2D (n, h, w, c), sequences (b, t, c),
    LayerNorm rows (r, m), with the edge cases: one row, one column, fewer than 16 rows, c not a multiple of
    4, rows longer than 4,096 (Eigen's tree reduction) that do not start on a packet boundary."""
    fixed = [(1, 7), (7, 1), (1, 1), (15, 9), (16, 9), (17, 3), (22, 64), (32, 64), (100, 5), (300, 70),
             (4, 5000, 2), (3, 4097), (2, 9001), (5, 8195), (3, 70), (32, 8, 8, 1), (32, 8, 8, 6)]
    out = list(fixed)
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append((int(rng.integers(1, 301)), int(rng.integers(1, 71))))
        elif kind == 1:
            out.append(tuple(int(v) for v in rng.integers(1, (40, 12, 12, 40))))  # (n, h, w, c)
        elif kind == 2:
            out.append(tuple(int(v) for v in rng.integers(1, (20, 50, 70))))
        else:
            out.append((int(rng.integers(1, 64)), int(rng.integers(1, 300))))
    return out


def _data(shape, rng, i):
    """Normals of random scale per column; in some cases constant columns, constant rows, or values on a
    grid of 1/8 (so that sums of equal values are exact or not, both)."""
    x = rng.standard_normal(shape) * np.exp(3 * rng.standard_normal(shape[-1:]))
    if i % 3 == 0:
        cols = rng.random(shape[-1]) < 0.5
        x[..., cols] = x.reshape(-1, shape[-1])[0, cols]
    if i % 5 == 0:
        x[...] = x[..., :1]
    if i % 7 == 0:
        x = np.round(x * 8) / 8
    return x


def test_means_bit_identical_to_tensorflow():
    """tf.reduce_mean over the leading axes and over the last one, and tf.nn.moments (the mean and the
    variance Keras' BatchNormalization and LayerNormalization take), against tf_leading_mean / tf_last_mean,
    bit for bit. (Checked while writing this on 13,000 random cases, TensorFlow at 1, 2, 4, 8 and its
    default intra-op threads, torch at 1 and 2: none differed.)"""
    import torch

    rng = np.random.default_rng(0)
    plain_broken = 0
    for i, shape in enumerate(_shapes(rng, 240)):
        x = _data(shape, rng, i)
        t, xt = torch.as_tensor(x), tf.constant(x)
        lead = list(range(x.ndim - 1))
        mean, var = tf.nn.moments(xt, axes=lead)
        lmean, lvar = tf.nn.moments(xt, axes=[-1], keepdims=True)
        m, lm = R.tf_leading_mean(t), R.tf_last_mean(t)
        got = {"leading mean": (tf.reduce_mean(xt, axis=lead), m), "moments mean": (mean, m),
               "moments variance": (var, R.tf_leading_mean((t - m) ** 2)),
               "last mean": (tf.reduce_mean(xt, axis=-1, keepdims=True), lm),
               "last moments mean": (lmean, lm),
               "last moments variance": (lvar, R.tf_last_mean((t - lm) ** 2))}
        for what, (want, have) in got.items():
            assert np.array_equal(want.numpy(), have.numpy()), f"{shape}: {what} differs from TensorFlow's"
        plain_broken += not np.array_equal(mean.numpy(), t.mean(dim=tuple(lead)).numpy())
    assert plain_broken > 20, "x.mean agrees with TensorFlow everywhere here: the test tests nothing"


def test_gradient_and_other_dtypes_unchanged():
    """The gradient is x.mean's, bit for bit; float32 (and anything not float64 on the CPU) is x.mean."""
    import torch

    rng = np.random.default_rng(1)
    for shape in ((20, 7), (5, 3, 4, 6), (17, 1), (3, 4100)):
        x = torch.as_tensor(rng.standard_normal(shape), dtype=torch.float64).requires_grad_()
        lead = tuple(range(len(shape) - 1))
        for ours, plain in ((R.tf_leading_mean, lambda v, lead=lead: v.mean(dim=lead)),
                            (R.tf_last_mean, lambda v: v.mean(dim=-1, keepdim=True))):
            g = torch.as_tensor(rng.standard_normal(plain(x).shape))
            a, = torch.autograd.grad((ours(x) * g).sum(), x)
            b, = torch.autograd.grad((plain(x) * g).sum(), x)
            assert torch.equal(a, b)
            x32 = x.detach().float()
            assert torch.equal(ours(x32), plain(x32))


def _keras_layer(kind, shape):
    import keras

    layer = keras.layers.BatchNormalization() if kind == "batch" else keras.layers.LayerNormalization(axis=-1)
    layer.build((None,) + tuple(shape[1:]))
    return layer


@pytest.mark.parametrize("kind, shape", [("batch", (32, 64)), ("batch", (22, 64)), ("batch", (16, 4, 4, 6)),
                                         ("batch", (9, 3, 3, 1)), ("layer", (32, 64)), ("layer", (8, 5, 23))])
def test_layers_bit_identical_to_keras(kind, shape):
    """Training-mode output of dlc's torch BatchNorm / LayerNorm against Keras' layers in float64, on data
    with constant columns (BatchNorm: like standardised digits' pixels) and constant rows (LayerNorm), random
    gamma and beta: bit-identical, the exact zeros included."""
    import keras
    import torch

    from dlc.backends.torch.layers import BatchNorm, LayerNorm

    rng = np.random.default_rng(len(shape) + shape[0])
    x = _data(shape, rng, 0 if kind == "batch" else 5)
    keras.config.set_floatx("float64")
    try:
        k = _keras_layer(kind, shape)
        gamma, beta = 1 + 0.1 * rng.standard_normal(shape[-1]), 0.1 * rng.standard_normal(shape[-1])
        k.gamma.assign(gamma)
        k.beta.assign(beta)
        want = np.asarray(k(tf.constant(x), training=True))
    finally:
        keras.config.set_floatx("float32")
    t = (BatchNorm if kind == "batch" else LayerNorm)(shape[-1]).double().train()
    with torch.no_grad():
        t.gamma.copy_(torch.as_tensor(gamma))
        t.beta.copy_(torch.as_tensor(beta))
        have = t(torch.as_tensor(x)).numpy()
    assert np.array_equal(want, have), f"max |Δ| {np.abs(want - have).max():.3g}"


SPEC = """
model bn_digits_ties {
  seed: 0
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2)
  }
  input: (64)
  layers {
    BatchNorm()
    Activation(relu)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD(lr=0.05, momentum=0.9)
  train {
    epochs: 1
    batch_size: 32
  }
}
"""


def test_batchnorm_relu_on_standardised_digits_follows_keras(tmp_path):
    """The reported spec (it parted from Keras at step 1 with x.mean): float64, 30 steps within the bound."""
    from dlc.compiler import compile_text
    from dlc.runtime.compare import compare_spec

    c = compare_spec(compile_text(SPEC).raise_for_errors(), tmp_path, 30, "float64")
    assert c.passed, c.reasons
