"""Combinations of spec features that LANGUAGE.md allows and no other spec exercised, each found failing by a
sweep of small specs (check, run on both backends, compare): kept here as tiny runs of the iris spec."""

from __future__ import annotations

import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = (ROOT / "specs" / "iris.dlspec").read_text().replace("epochs: 40", "epochs: 1")
DENSE = "Dense(16, activation=relu, kernel_init=he_normal)"


@pytest.mark.parametrize("reg", ["l1_l2(l1=0, l2=0)", "l2(0)"])
def test_an_activity_regularizer_of_zero_trains_on_torch(tmp_path, reg):
    """`activity_reg=l1_l2(l1=0, l2=0)` passed `dlc check` and trained on keras, but torch failed in the
    first step: "TypeError: unsupported operand type(s) for /: 'NoneType' and 'int'" (losses.penalty gives
    None for a regularizer with no term, which the activity hook divides by the batch size)."""
    spec = tmp_path / "zero.dlspec"
    spec.write_text(IRIS.replace(DENSE, f"{DENSE[:-1]}, activity_reg={reg})"))
    rc, out, err = run_cli("run", spec, "--backend", "torch", "--out", tmp_path / "r", "--quiet")
    assert rc == 0, err


def test_exporting_a_mixed_precision_run_says_the_onnx_model_computes_in_float32(tmp_path):
    """`precision: mixed_bfloat16` then `dlc export`: the ONNX graph is float32 and differed from `dlc
    predict`'s bfloat16 outputs by 1.7e-3 (the README promised 1e-5), without a word. A note now says so; a
    float32 run's export stays silent."""
    pytest.importorskip("onnx")
    spec = tmp_path / "mixed.dlspec"
    spec.write_text(IRIS.replace("batch_size: 16", "batch_size: 16\n    precision: mixed_bfloat16"))
    assert run_cli("run", spec, "--backend", "torch", "--out", tmp_path / "r", "--quiet")[0] == 0
    rc, out, err = run_cli("export", tmp_path / "r", "--format", "onnx", "--output", tmp_path / "m.onnx")
    assert rc == 0 and out.strip() == str(tmp_path / "m.onnx")
    assert err.startswith("note: the run trained with precision: mixed_bfloat16 (its layers compute in "
                          "bfloat16); the ONNX model computes in float32") and len(err.splitlines()) == 1


@pytest.mark.parametrize("precision", ["mixed_float16", "float32"])
def test_a_keras_checkpoint_keeps_nadam_s_momentum_cache_under_loss_scaling(precision):
    """Nadam with `precision: mixed_float16` on keras, killed and resumed, trained on with other losses from
    the first resumed epoch (|Δloss| 0.024 by epoch 12; Adam, or Nadam in float32, resumed exactly): Keras'
    Nadam keeps the product of its momentum cache in a variable that a Nadam wrapped by the
    LossScaleOptimizer does not list among its variables, so the checkpoint left it out and --resume
    restarted it at 1. The checkpoint holds it now."""
    from dlc.backends import session_class
    from dlc.compiler import compile_text

    spec = compile_text(IRIS.replace("Adam(lr=0.01)", "Nadam(lr=0.01)").replace(
        "batch_size: 16", f"batch_size: 16\n    precision: {precision}")).raise_for_errors()
    Session = session_class("keras")
    trained = Session(spec)
    inner = getattr(trained.opt, "inner_optimizer", trained.opt)
    inner._u_product.assign(0.25)  # (as some steps leave it)
    resumed = Session(spec)
    resumed.set_state(trained.get_state())
    assert float(getattr(resumed.opt, "inner_optimizer", resumed.opt)._u_product.numpy()) == 0.25


def test_keras_builds_a_model_deeper_than_python_s_recursion_limit():
    """Keras builds a functional model by recursing through its layers, about a frame a layer: `Dense(4)`
    2,000 times (a spec dlc allows: up to 10,000 layers) failed on keras with "maximum recursion depth
    exceeded" (torch trained it). The keras session raises the limit for the model it builds; here the limit
    is lowered to 200 to see that with a net of 150 layers, quickly."""
    import sys

    from dlc.backends import session_class
    from dlc.compiler import compile_text

    spec = compile_text(IRIS.replace(DENSE, "Dense(4)\n    " * 150)).raise_for_errors()
    Session = session_class("keras")  # (imported at the usual limit)
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        session = Session(spec)
        assert len(session.train_model.layers) == 152  # (the input, 150 Dense, the output layer)
        assert sys.getrecursionlimit() >= 150
    finally:
        sys.setrecursionlimit(saved)


def test_selu_s_gradient_at_zero_is_tensorflow_s():
    """`activation=selu` on a pre-activation of exactly 0 (here `kernel_init=zeros`; in the sweep a dropped or
    blank input to a layer without bias: Embedding, Conv1D, Dropout, Dense(6, activation=selu)): the float64
    comparison mismatched from step 2 (|Δloss| 1e-5 relative), as torch's F.selu has the gradient scale·alpha
    (1.758) at 0 where tf.nn.selu has the scale (1.051). The torch lowering takes TensorFlow's branch at 0."""
    from dlc.compiler import compile_text
    from dlc.runtime.compare import compare_spec

    text = IRIS.replace(DENSE, "Dense(16, activation=selu, kernel_init=zeros)")
    c = compare_spec(compile_text(text).raise_for_errors(), ROOT, 3, "float64")
    assert c.passed and c.max_rel_loss_diff < 1e-14, c.summary


def test_elu_selu_and_softsign_take_tensorflow_s_gradients():
    """TensorFlow differentiates elu and selu from their output, g·(y + 1) (EluGrad) and g·(y + scale·alpha)
    (SeluGrad), and softsign as g / (1 + |x|)² (SoftsignGrad); torch's F.elu and F.selu use g·exp(x), and
    autograd of F.softsign's quotient cancels two terms. Below x ≈ −20 the elu gradients differ relatively by
    more than 1e-9 (1.7e-4 at −30); TF's forward is exp(x) − 1, F.elu's expm1. The torch lowering computes
    TensorFlow's formulas (checked here against them written out in numpy)."""
    import numpy as np
    import torch

    from dlc.backends.torch import activations as A

    x = np.array([-1000.0, -30.0, -21.0, -3.0, -1e-9, 0.0, 1e-9, 0.5, 7.0, 300.0])
    sa, scale = A.SELU_SCALE_ALPHA, A.SELU_SCALE
    with np.errstate(over="ignore"):
        elu = np.where(x < 0, np.exp(x) - 1, x)
        selu = np.where(x < 0, sa * (np.exp(x) - 1), scale * x)
    want = {
        "elu": (elu, np.where(elu < 0, elu + 1, 1.0)),
        "elu_0.5": (np.where(x > 0, elu, 0.5 * elu),
                    np.where(x > 0, 1.0, 0.5 * np.where(elu < 0, elu + 1, 1.0))),
        "selu": (selu, np.where(selu < 0, selu + sa, scale)),
        "softsign": (x / (np.abs(x) + 1), 1 / np.square(1 + np.abs(x))),
    }
    fns = {"elu": lambda t: A.elu(t, 1.0), "elu_0.5": lambda t: A.elu(t, 0.5), "selu": A.selu,
           "softsign": A.softsign}
    for name, f in fns.items():
        t = torch.tensor(x, requires_grad=True)
        y = f(t)
        y.sum().backward()
        np.testing.assert_array_equal(y.detach().numpy(), want[name][0], err_msg=name)
        np.testing.assert_array_equal(t.grad.numpy(), want[name][1], err_msg=name)


def test_elu_far_below_zero_under_an_l1_bias_compares_equivalent():
    """Found by a sweep of random specs: wine without normalisation (proline ~1000) through
    `Dense(12, activation=elu, bias_reg=l1(1e-3))` puts units far below zero, where torch's elu gradient
    g·exp(x) and TensorFlow's g·(y + 1) differ relatively by up to 1e-4; the l1 penalty's sign turns a bias
    that stays 0 on one backend and moves by 1e-18 on the other into a different step: float64 mismatched
    from step 2 (8.8e-9 relative in the loss by step 6)."""
    from dlc.compiler import compile_text
    from dlc.runtime.compare import compare_spec

    text = """model elu_far_below_zero {
  seed: 112
  data {
    source: wine
    normalize: none
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (13)
  layers {
    Dense(12, activation=elu, bias_reg=l1(1e-3))
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD(lr=0.005)
  train {
    batch_size: 128
  }
}
"""
    c = compare_spec(compile_text(text).raise_for_errors(), ROOT, 6, "float64")
    assert c.passed and c.max_rel_loss_diff < 1e-14, c.summary


@pytest.mark.parametrize("conv,pool", [("Conv1D(8, 3, padding=same, activation=relu)", "GlobalMaxPool1D()"),
                                       ("Conv1D(4, 2, strides=2)", "GlobalMaxPool1D()"),
                                       ("Conv1D(4, 2)", "MaxPool1D(2, strides=1)\n    Flatten()")],
                         ids=["text_cnn", "strided", "overlapping_pool"])
def test_a_max_pool_over_repeated_tokens_after_conv1d_compares_equivalent(conv, pool):
    """Found by a sweep of random specs: digits' pixels as tokens (many repeated 0s) through Embedding →
    Conv1D → a max-pool under Adam mismatched in float64 from step 1 or 2 (the classic text CNN: 1.5e-4
    relative in the loss by step 20; the first layer to differ the Embedding). Identical windows give
    exactly equal conv outputs in TensorFlow, a tie its max-pool breaks to the first; F.conv1d rounded some
    positions 1 ulp higher, so torch's gradient went to another occurrence of the token, and Adam squares an
    Embedding's gradient rows one by one. The torch Conv1D now computes every position alike (windows ×
    kernel)."""
    from dlc.compiler import compile_text
    from dlc.runtime.compare import compare_spec

    text = f"""model text_cnn {{
  seed: 186
  data {{
    source: digits
    normalize: none
    split: holdout(val=0.2, test=0.2)
  }}
  input: (64)
  layers {{
    Embedding(17, 4)
    {conv}
    {pool}
    Dense(10, activation=softmax)
  }}
  loss: categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {{
    batch_size: 256
  }}
}}
"""
    c = compare_spec(compile_text(text).raise_for_errors(), ROOT, 8, "float64")
    assert c.passed and c.max_rel_loss_diff < 1e-14, c.summary
