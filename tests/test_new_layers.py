"""Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, UpSampling2D and Bidirectional, layer by layer: each IR
layer lowered through the registry to Keras and to torch, given the same weights (Keras' layout, by IR weight
name on the torch side, in Keras' order on the Keras side), must agree in float64 on the output and on every
gradient (input and weights) to rounding, over more configurations than the equivalence fixtures train
(output_padding, kernels smaller than the stride, unequal factors, every merge mode of every cell). Also:
Keras' fan rule for the new kernel shapes, and the spec errors for what TensorFlow cannot compute."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from dlc.backends.lowering import Context, evaluate, load_target
from dlc.compiler import compile_text
from dlc.compiler import functions as fn
from dlc.compiler import layers as L
from dlc.compiler.spec import LayerInfo

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOL = 1e-12  # relative to the largest magnitude compared


def _cases():
    out = []
    for shape in [(7, 7, 2), (6, 5, 3)]:
        for k, s, pad, op in [((3, 3), (2, 2), "same", None), ((3, 3), (2, 2), "valid", None),
                              ((2, 2), (3, 3), "valid", None), ((2, 4), (3, 1), "same", None),
                              ((3, 3), (2, 2), "same", 1), ((2, 3), (2, 2), "valid", (1, 0)),
                              ((4, 4), (2, 2), "same", 1), (1, 3, "same", None)]:
            out.append((L.Conv2DTranspose(filters=3, kernel_size=k, strides=s, padding=pad, output_padding=op,
                                          activation=fn.Tanh()), shape))
        for k, s, pad, m in [((3, 3), 2, "same", 1), ((3, 3), 1, "valid", 2), ((2, 3), 2, "same", 3)]:
            out.append((L.DepthwiseConv2D(kernel_size=k, strides=s, padding=pad, depth_multiplier=m,
                                          use_bias=m != 2), shape))
            out.append((L.SeparableConv2D(filters=4, kernel_size=k, strides=s, padding=pad,
                                          depth_multiplier=m, activation=fn.Relu(), use_bias=m != 3), shape))
        for size, how in [((2, 2), "nearest"), ((2, 3), "nearest"), ((2, 2), "bilinear"),
                          ((3, 2), "bilinear"), ((1, 5), "bilinear")]:
            out.append((L.UpSampling2D(size=size, interpolation=how), shape))
    for cell in (L.SimpleRNN, L.LSTM, L.GRU):
        for merge in ("concat", "sum", "mul", "ave"):
            for seq in (True, False):
                out.append((L.Bidirectional(layer=cell(units=4, return_sequences=seq,
                                                       use_bias=merge != "mul"),
                                            merge_mode=merge), (6, 3)))
    return out


CASES = _cases()


def _id(case) -> str:
    layer, shape = case
    keys = [k for k in ("kernel_size", "strides", "padding", "output_padding", "depth_multiplier", "size",
                        "interpolation", "merge_mode") if k in type(layer).model_fields]
    inner = ""
    if isinstance(layer, L.Bidirectional):
        inner = f"{layer.layer.kind}-seq{int(layer.layer.return_sequences)}-"
    values = "-".join(str(getattr(layer, k)) for k in keys)
    return f"{layer.kind}-{inner}{values}-{'x'.join(map(str, shape))}"


def _build(layer, shape):
    """(LayerInfo, keras layer, torch module), both lowered from the IR through the registry, float64."""
    import torch

    from dlc.backends.keras import library as keras_library
    from dlc.backends.torch import library as torch_library

    info = LayerInfo(0, layer, shape, layer.out_shape(shape), layer.weights(shape), 0)
    load_target("torch")
    load_target("keras")
    expr = Context("torch", None).for_layer(info).lower(layer)
    t = evaluate(expr, torch_library.namespace()).to(torch.float64)
    k = evaluate(Context("keras", None).for_layer(info).lower(layer),
                 {**vars(keras_library), "DTYPE": "float64"})
    return info, k, t


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_forward_and_gradients_equal_keras_float64(case):
    import tensorflow as tf
    import torch

    layer, shape = case
    info, klayer, module = _build(layer, shape)
    rng = np.random.default_rng(len(_id(case)))
    x = rng.standard_normal((3, *shape))
    g = rng.standard_normal((3, *info.out_shape))
    klayer.build((None, *shape))
    weights = {w.name: 0.5 * rng.standard_normal(w.shape) for w in info.weights}
    assert [tuple(v.shape) for v in klayer.weights] == [tuple(w.shape) for w in info.weights]
    for v, w in zip(klayer.weights, info.weights, strict=True):
        v.assign(weights[w.name])
    with torch.no_grad():
        for name, arr in weights.items():
            getattr(module, name).copy_(torch.as_tensor(arr))

    xk = tf.Variable(x)
    with tf.GradientTape() as tape:
        yk = klayer(xk)
        total = tf.reduce_sum(yk * g)
    grads_k = tape.gradient(total, [xk, *klayer.weights])
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    (yt * torch.as_tensor(g)).sum().backward()
    grads_t = [xt.grad] + [getattr(module, w.name).grad for w in info.weights]

    assert yk.dtype == tf.float64 and yt.dtype == torch.float64
    assert tuple(yt.shape[1:]) == tuple(info.out_shape)
    pairs = [("output", yk.numpy(), yt.detach().numpy())]
    pairs += [(f"d/d{n}", a.numpy(), b.numpy())
              for n, a, b in zip(["input"] + [w.name for w in info.weights], grads_k, grads_t, strict=True)]
    for what, a, b in pairs:
        scale = max(1.0, float(np.abs(a).max()))
        err = np.abs(a - b).max()
        assert err <= TOL * scale, f"{what}: |Δ| {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("case", CASES[::3], ids=[_id(c) for c in CASES[::3]])
def test_kernel_fans_are_keras_fans(case):
    """dlc draws the initial kernels itself: its fan rule on each new kernel shape, as Keras lays the kernel
    out (transposed: (kh, kw, filters, in); depthwise (kh, kw, in, multiplier); pointwise (1, 1, in·m,
    filters)), is Keras' own compute_fans of that shape, so every variance-scaling initializer has Keras'
    variance."""
    from keras.src.initializers.random_initializers import compute_fans

    layer, shape = case
    for w in layer.weights(shape):
        if len(w.shape) >= 2:
            assert fn.fans(tuple(w.shape)) == tuple(float(f) for f in compute_fans(tuple(w.shape))), w.name


def _errors(layers: str, input_shape: str = "(8, 8, 1)") -> list[str]:
    text = f"""
model m {{
  data {{ source: digits }}
  input: {input_shape}
  layers {{
    {layers}
    Flatten()
    Dense(10, activation=softmax)
  }}
  loss: categorical_crossentropy
  optimizer: SGD()
}}
"""
    return [f"{d.message} | {d.hint}" for d in compile_text(text).diagnostics.errors]


@pytest.mark.parametrize("layers,input_shape,expected", [
    ("DepthwiseConv2D((3, 3), strides=(2, 1))", "(8, 8, 1)", "needs equal strides on both axes"),
    ("SeparableConv2D(4, 3, strides=(1, 2))", "(8, 8, 1)", "needs equal strides on both axes"),
    ("Conv2DTranspose(2, 3, strides=2, output_padding=2)", "(8, 8, 1)", "must be smaller than strides"),
    ("Conv2DTranspose(2, (4, 4), strides=2, padding=same, output_padding=0)", "(8, 8, 1)",
     "which TensorFlow cannot compute"),
    ("Bidirectional(Dense(4))", "(8, 8)",
     "Bidirectional wraps a recurrent layer (SimpleRNN, LSTM or GRU), got Dense"),
    ("Bidirectional(LSTM(4), merge_mode=max)", "(8, 8)", "expected 'concat', 'sum', 'mul' or 'ave'"),
    ("UpSampling2D(interpolation=bicubic)", "(8, 8, 1)", "expected 'nearest' or 'bilinear'"),
    ("DepthwiseConv2D((3, 3), depth_multiplier=0)", "(8, 8, 1)", "depth_multiplier"),
])
def test_what_tensorflow_cannot_compute_is_a_spec_error(layers, input_shape, expected):
    errors = _errors(layers, input_shape)
    assert len(errors) == 1 and expected in errors[0], errors


def test_keras_names_are_aliases():
    text = """
model m {
  data { source: digits }
  input: (8, 8, 1)
  layers {
    Convolution2DTranspose(2, 3, strides=2, padding=same)
    DepthwiseConv2D(3, depthwise_initializer=he_normal, depthwise_regularizer=l2(1e-3),
                    depthwise_constraint=max_norm(2.0))
    SeparableConvolution2D(3, 3, depthwise_initializer=he_uniform, pointwise_initializer=lecun_normal,
                           pointwise_regularizer=l1(1e-4))
    UpSampling2D(2)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
"""
    spec = compile_text(text).raise_for_errors()
    tr, dw, sep = spec.layers[:3]
    assert (tr.kind, tr.padding, dw.kernel_init.name, dw.kernel_reg.l2, dw.kernel_constraint.max_value) == \
        ("Conv2DTranspose", "same", "he_normal", 1e-3, 2.0)
    assert (sep.depthwise_init.name, sep.pointwise_init.name, sep.pointwise_reg.l1) == \
        ("he_uniform", "lecun_normal", 1e-4)
    assert [info.out_shape for info in spec.walk()][:4] == [(16, 16, 2), (14, 14, 2), (12, 12, 3),
                                                            (24, 24, 3)]
