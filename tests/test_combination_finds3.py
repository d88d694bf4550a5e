"""Combinations of LANGUAGE.md's features found failing by a third sweep of generated specs (layers with
unusual arguments inside residual and user blocks with parameters and repeats; initializers, regularizers and
constraints together; every optimizer with clipping under each schedule; losses and metrics by task; kfold
with early stopping; augmentation with CNNs; dtype and precision; search spaces inside blocks; each spec
checked, compared in float64 on both backends, run, evaluated, exported, emitted and tuned): kept here as
tiny specs."""

from __future__ import annotations

import pytest

from conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = (ROOT / "specs" / "iris.dlspec").read_text().replace("epochs: 40", "epochs: 1")
DENSE = "Dense(16, activation=relu, kernel_init=he_normal)"


def _compare(text: str, steps: int):
    from dlc.compiler import compile_text
    from dlc.runtime.compare import compare_spec

    return compare_spec(compile_text(text).raise_for_errors(), ROOT, steps, "float64")


SEQUENCE_MAXOUT = "Reshape((2, 2))\n    Maxout(4, kernel_init=constant(0.05), bias_init=ones)\n    Flatten()"


@pytest.mark.parametrize("maxout", ["Maxout(3, pieces=3, kernel_init=zeros)", SEQUENCE_MAXOUT],
                         ids=["zeros", "constant_on_sequences"])
def test_maxout_pieces_with_equal_weights_tie_alike_on_both_backends(maxout):
    """`Maxout(3, pieces=3, kernel_init=zeros)` (any constant kernel_init: the pieces start equal and, the
    max sharing their gradient, stay equal) mismatched in float64 from step 2 (|Δw| 4e-3 after two steps,
    3e-2 relative in the loss by step 3): TensorFlow's float64 matmul rounds equal kernel columns differently
    by their position in the product, so the keras pieces no longer tied and its max sent the whole gradient
    to one of them, where torch's tied and shared it. Each piece is its own product on both backends now."""
    c = _compare(IRIS.replace(DENSE, maxout), 8)
    assert c.passed and c.max_rel_loss_diff < 1e-14, c.summary
    assert c.final_weight_max_abs_diff < 1e-12


def test_a_keras_maxout_ties_equal_pieces_exactly():
    """The keras layer itself: equal pieces give equal products, a tie the max then shares: every piece's
    kernel columns get the same gradient, a third of the whole, with and without a bias, on a batch of
    sequences too."""
    import keras
    import numpy as np
    import tensorflow as tf

    from dlc.backends.keras.library import Maxout

    rng = np.random.default_rng(0)
    for use_bias, shape in ((True, (64, 30)), (False, (16, 5, 30))):
        layer = Maxout(4, pieces=3, use_bias=use_bias, dtype="float64")
        layer.build(shape)
        layer.kernel.assign(np.repeat(rng.normal(size=(30, 4)), 3, axis=1))
        x = keras.ops.convert_to_tensor(rng.normal(size=shape))
        with tf.GradientTape() as tape:
            out = layer(x)
            total = tf.reduce_sum(out * rng.normal(size=out.shape))
        grad = tape.gradient(total, layer.kernel).numpy()
        assert np.abs(grad).max() > 0
        for p in (1, 2):
            np.testing.assert_array_equal(grad[:, p::3], grad[:, ::3])
        want = keras.ops.matmul(x, layer.kernel[:, ::3]).numpy()
        want = want + (layer.bias.numpy()[::3] if use_bias else 0)
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-14, atol=0)


DIGITS = """model digits_conv {{
  seed: 5
  data {{
    source: digits
    normalize: minmax
    split: holdout(val=0.2)
  }}
  input: (8, 8, 1)
  layers {{
    {layers}
    Flatten()
    Dense(10, activation=softmax)
  }}
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {{
    epochs: 1
    batch_size: 256
  }}
}}
"""


@pytest.mark.parametrize("layers", ["Conv2D(2, 1)\n    Conv2D(1, (3, 3))",
                                    "Conv2D(3, 1, activation=relu)\n    Conv2D(1, 2, strides=2, "
                                    "padding=same)"],
                         ids=["valid", "same_strided"])
def test_a_one_filter_conv2d_on_several_channels_trains_in_float64_on_torch(layers):
    """`Conv2D(1, (3, 3))` on an input of several channels (an RGB image, or after another convolution)
    failed on torch in float64 (`dlc compare`, `dlc run --dtype float64`, `dtype: float64`) in the first
    backward: "RuntimeError: slow_conv2d: grad_weight must be contiguous". The kernel of one filter permuted
    to torch's (1, in, kh, kw) reads as channels-last, and the float64 convolution's backward allocated its
    gradient alike, then refused it. The backward gets a contiguous kernel now; both backends agree."""
    c = _compare(DIGITS.format(layers=layers), 3)
    assert c.passed and c.max_rel_loss_diff < 1e-14, c.summary


def test_the_tied_convolution_s_gradients_are_f_conv2d_s_for_one_filter():
    import torch
    import torch.nn.functional as F

    from dlc.backends.torch.conv_layers import TiedConv

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    kernel = torch.randn(3, 3, 3, 1, dtype=torch.float64, generator=gen, requires_grad=True)
    TiedConv.apply(x, kernel, (1, 1), False).square().sum().backward()
    x2, k2 = x.detach().clone().requires_grad_(), kernel.detach().clone().requires_grad_()
    # (contiguous: F.conv2d fails on the permuted one-filter kernel in float64 just as TiedConv did)
    F.conv2d(x2.permute(0, 3, 1, 2), k2.permute(3, 2, 0, 1).contiguous()).square().sum().backward()
    torch.testing.assert_close(kernel.grad, k2.grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-13, atol=1e-13)


def test_a_one_filter_conv2d_on_several_channels_trains_under_mixed_float16_on_torch():
    """The same convolution under `precision: mixed_float16` on a CPU (float16 goes through the same slow
    convolution): `dlc run` failed with "slow_conv2d: grad_weight must be contiguous" after its first step."""
    import numpy as np

    from dlc.backends import session_class
    from dlc.compiler import compile_text
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    text = DIGITS.format(layers="Conv2D(2, 1)\n    Conv2D(1, (3, 3))").replace(
        "batch_size: 256", "batch_size: 256\n    precision: mixed_float16")
    spec = compile_text(text).raise_for_errors()
    session = session_class("torch")(spec, device="cpu")
    losses = train(session, spec, prepare(spec, ROOT)).step_losses
    assert len(losses) == 6 and np.all(np.isfinite(losses))


RECT = """model rect_crop {{
  seed: 2
  data {{
    source: npz("rect.npz")
    split: holdout(val=0.25)
    augment: [flip(horizontal=true), {crop}]
  }}
  input: (6, 8, 2)
  layers {{
    Conv2D(3, (2, 3), strides=(1, 2), padding=same)
    MaxPool2D((2, 1))
    Flatten()
    Dense(3, activation=softmax)
  }}
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {{
    epochs: 1
    batch_size: 16
  }}
}}
"""


@pytest.fixture
def rect_images(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "rect.npz", x=rng.uniform(size=(48, 6, 8, 2)), y=rng.integers(0, 3, 48))
    return tmp_path


def test_crop_takes_a_height_and_width_for_an_image_that_is_not_square(rect_images):
    """`augment: [crop(6, padding=1)]` on 6x8 images was E303 "crop(6, ...) must keep the image size 6x8"
    with the hint "pad-and-crop: crop(6, padding=...)", the spec as written: no crop could be written for an
    image that is not square. crop((6, 8), padding=1) pads and crops it now (as torchvision's
    RandomCrop((h, w), padding)), alike on both backends, and the hint names it."""
    from dlc.compiler import compile_text
    from dlc.runtime.compare import compare_spec

    bad = compile_text(RECT.format(crop="crop(6, padding=1)"), "s.dlspec", rect_images)
    (err,) = bad.diagnostics.errors
    assert err.code == "E303" and err.hint == "pad-and-crop: crop((6, 8), padding=...)", err
    runs = {}
    for crop in ("crop((6, 8), padding=1)", "crop((6, 8))"):
        spec = compile_text(RECT.format(crop=crop), "s.dlspec", rect_images).raise_for_errors()
        assert spec.data.augment[1].window == (6, 8)
        c = compare_spec(spec, rect_images, 3, "float64")
        assert c.passed and c.max_rel_loss_diff < 1e-14, c.summary
        runs[crop] = c.losses["torch"]
    assert runs["crop((6, 8), padding=1)"][1:] != runs["crop((6, 8))"][1:]  # (the padded crop moves images)


def test_crop_of_a_height_and_width_keeps_every_image_s_size():
    import numpy as np

    from dlc.runtime.augment import crop

    images = np.repeat(np.arange(6 * 8, dtype=np.float64).reshape(1, 6, 8, 1) + 1, 4, axis=0)
    out = images.copy()
    crop(out, np.random.default_rng(0), (6, 8), padding=2)
    assert out.shape == images.shape and not np.array_equal(out, images)
    for i in range(4):  # every kept pixel is the image's, moved by one offset
        kept = np.argwhere(out[i, :, :, 0] > 0)
        (dy, dx), = {(int(out[i, r, c, 0] - 1) // 8 - r, int(out[i, r, c, 0] - 1) % 8 - c) for r, c in kept}
        assert abs(dy) <= 2 and abs(dx) <= 2


RESIDUAL_1X1 = "Conv2D(4, 3, padding=same)\n    residual {\n      Conv2D(4, 1)\n    }"


@pytest.mark.parametrize("layers", ["Conv2D(2, 3)", "DepthwiseConv2D(3, depth_multiplier=2)", RESIDUAL_1X1],
                         ids=["conv2d_valid", "depthwise", "residual_1x1"])
def test_a_compiled_step_takes_convolutions_without_padding(layers):
    """`dlc run --compile` failed in its first step with inductor's "TypeError: cannot determine truth value
    of Relational: 1 < s97" (or "4*s97**2 < 4*s97") for a convolution that reads its NHWC activations through
    the NCHW view without a padding copy: a first layer Conv2D with padding=valid (Conv2D's default),
    DepthwiseConv2D, SeparableConv2D, or a 1x1 convolution in a residual branch. The step was compiled with
    every size symbolic (dynamic=True), and inductor could not order strides that compare only through the
    image's symbolic sizes. Only the batch axis is dynamic now (the last batch is smaller: still one graph);
    the compiled step trains to the eager numbers (float32: to rounding)."""
    import numpy as np

    from dlc.backends import session_class
    from dlc.compiler import compile_text
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    spec = compile_text(DIGITS.format(layers=layers)).raise_for_errors()
    data = prepare(spec, ROOT)
    losses = [np.array(train(session_class("torch")(spec, device="cpu", compile=compiled), spec,
                             data).step_losses) for compiled in (False, True)]
    assert len(losses[0]) == len(losses[1]) == 6  # (the last batch smaller: dynamic sizes)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)


@pytest.mark.slow  # (inductor compiles the recurrent loop for ~50 s here)
def test_a_compiled_step_takes_an_embedding_before_a_recurrent_layer():
    """`dlc run --compile` of Embedding → GRU (LSTM, SimpleRNN: the classic text model) failed in its first
    step with inductor's "NotImplementedError: Cannot access storage of SparseTensorImpl" (the lookup's sparse
    gradient, traced beside the recurrent loop). The lookup runs eagerly under torch.compile now (a graph
    break, as the tied convolutions do); the compiled step trains to the eager numbers."""
    import numpy as np

    from dlc.backends import session_class
    from dlc.compiler import compile_text
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    text = DIGITS.format(layers="Embedding(17, 2)\n    Reshape((8, 16))\n    GRU(2)").replace(
        "input: (8, 8, 1)", "input: (64)").replace("normalize: minmax", "normalize: none").replace(
        "    Flatten()\n    Dense(10", "    Dense(10")
    spec = compile_text(text).raise_for_errors()
    data = prepare(spec, ROOT)
    losses = [np.array(train(session_class("torch")(spec, device="cpu", compile=compiled), spec,
                             data).step_losses) for compiled in (False, True)]
    assert len(losses[0]) == len(losses[1]) == 6
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
