"""SimpleRNN, LSTM and GRU (backends/*/recurrent.py): parameter counts as Keras counts them, torch's own
recurrence against Keras' layers on random sequences (float64, every step's output), and the weight exchange.
Training equivalence (step losses, weights) is proven by the rnn_* fixtures of the equivalence suite."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from dlc.backends import LoweringMissing, session_class
from dlc.compiler import compile_text
from dlc.reference.weights import initial_weights

SPEC = """
model seq {{
  seed: 5
  data {{ source: digits }}
  input: (8, 8)
  layers {{
    {layers}
    Dense(10, activation=softmax)
  }}
  loss: categorical_crossentropy
  optimizer: SGD()
}}
"""

CASES = [
    ("SimpleRNN(7)", 7 * (8 + 7 + 1)),
    ("SimpleRNN(5, use_bias=false, activation=relu, return_sequences=true)\n Flatten()", 5 * (8 + 5)),
    ("LSTM(6)", 4 * (8 * 6 + 36 + 6)),
    ("LSTM(6, return_sequences=true, unit_forget_bias=false, activation=softsign)\n LSTM(4)",
     4 * (8 * 6 + 36 + 6) + 4 * (6 * 4 + 16 + 4)),
    ("GRU(9)", 3 * (8 * 9 + 81 + 2 * 9)),
    ("GRU(5, return_sequences=true, recurrent_activation=hard_sigmoid)\n GRU(3, use_bias=false)",
     3 * (8 * 5 + 25 + 10) + 3 * (5 * 3 + 9)),
]


def _spec(layers: str):
    return compile_text(SPEC.format(layers=layers)).raise_for_errors()


@pytest.mark.parametrize("layers,rnn_params", CASES, ids=[c[0].split("\n")[0] for c in CASES])
def test_params_and_outputs_match_keras(layers, rnn_params):
    import torch

    spec = _spec(layers)
    trainable, _ = spec.param_counts()
    infos = list(spec.walk())
    dense_params = next(info for info in infos if info.layer.kind == "Dense")
    n_dense = sum(int(np.prod(w.shape)) for w in dense_params.weights)
    assert trainable - n_dense == rnn_params
    w = initial_weights(spec)
    ks = session_class("keras")(spec, dtype="float64", device="cpu", weights=w)
    ts = session_class("torch")(spec, dtype="float64", device="cpu", weights=w)
    assert ks.train_model.count_params() == trainable
    assert sum(p.numel() for p in ts.net.parameters()) == trainable
    for name, ws in ks.get_weights().items():  # the exchange puts dlc's arrays into Keras' cell variables
        for wname, arr in ws.items():
            np.testing.assert_array_equal(arr, w[name][wname])
    x = np.random.default_rng(1).normal(size=(13, 8, 8))
    # every layer's output (whole sequences where return_sequences) on both backends
    import keras

    kx = keras.Input((8, 8), dtype="float64")
    ky, outs = kx, []
    for info in infos:
        ky = ks.klayers[info.layer.name](ky)
        outs.append(ky)
    kouts = keras.Model(kx, outs)(x)
    ts.net.eval()
    ty = torch.as_tensor(x)
    with torch.no_grad():
        for mod, kout in zip(ts.net.children(), kouts, strict=True):
            ty = mod(ty)
            np.testing.assert_allclose(ty.numpy(), np.asarray(kout), rtol=0, atol=1e-13)


def test_recurrent_output_layer_is_refused_on_both_backends():
    """A softmax output is fused into the loss (logits); a recurrent layer's activation cannot be. `dlc check`
    says so (E302, tests/test_structure_combinations.py); the backends refuse such an IR too."""
    compiled = compile_text(SPEC.format(layers="GRU(10, activation=softmax)").replace(
        "Dense(10, activation=softmax)", ""))
    assert [d.code for d in compiled.diagnostics.errors] == ["E302"]
    spec = compiled.spec
    assert spec is not None
    for backend in ("torch", "keras"):
        with pytest.raises(LoweringMissing, match="GRU as the output layer"):
            session_class(backend)(spec, dtype="float64", device="cpu")


FUSED = [("SimpleRNN", {}), ("SimpleRNN", {"activation": "relu"}), ("LSTM", {}), ("GRU", {}),
         ("LSTM", {"use_bias": False}), ("GRU", {"use_bias": False, "return_sequences": True}),
         ("LSTM", {"return_sequences": True})]


@pytest.mark.parametrize("kind,kw", FUSED, ids=[f"{k}-{'-'.join(map(str, kw.values()))}" for k, kw in FUSED])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_kernel_is_the_step_loop(kind, kw, dtype):
    """With the default activations torch's fused kernels (torch.lstm, ...) run the layer from views of the
    Keras-layout weights: the outputs and every weight's gradient are the step loop's to a few ulp."""
    import torch
    import torch.nn.functional as F

    from dlc.backends.torch import recurrent

    kw = {**kw, "activation": F.relu if kw.get("activation") == "relu" else torch.tanh}
    layer = getattr(recurrent, kind)(5, 7, **kw).to(getattr(torch, dtype))
    assert layer.kernel_fn is not None
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) - 0.5)
    x = torch.randn((4, 6, 5), generator=gen, dtype=layer.kernel.dtype)
    fused, loop = layer(x), layer.loop_forward(x)
    assert fused.shape == loop.shape == ((4, 6, 7) if kw.get("return_sequences") else (4, 7))
    params = list(layer.parameters())
    g_fused = torch.autograd.grad(fused.square().sum(), params)
    g_loop = torch.autograd.grad(loop.square().sum(), params)
    tol = 1e-13 if dtype == "float64" else 1e-5
    torch.testing.assert_close(fused, loop, rtol=0, atol=tol)
    for a, b in zip(g_fused, g_loop, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_other_activations_run_the_step_loop(kind):
    import torch

    from dlc.backends.torch import recurrent
    from dlc.backends.torch.activations import hard_sigmoid

    kw = {"activation": torch.nn.functional.softsign}
    if kind != "SimpleRNN":
        kw = {"recurrent_activation": hard_sigmoid}
    assert getattr(recurrent, kind)(5, 7, **kw).kernel_fn is None


def test_fused_kernel_under_autocast_runs_in_the_low_precision():
    """Mixed precision: the fused kernel takes the input and weights in the autocast dtype, as the loop's
    matmuls do under autocast (a float32 weight with a bfloat16 input is an error in torch.lstm)."""
    import torch

    from dlc.backends.torch import recurrent

    layer = recurrent.LSTM(5, 7)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():  # (a layer is made with zero weights: dlc sets them)
        for p in layer.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
    x = torch.randn((4, 6, 5), generator=gen)
    want = layer.loop_forward(x)  # float32
    assert want.abs().max() > 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for given in (x, x.to(torch.bfloat16)):
            y = layer(given)
            assert y.dtype == torch.bfloat16
            torch.testing.assert_close(y.float(), want, rtol=0, atol=0.02)
            assert (y.float() - want).abs().max() > 0  # (it did run in bfloat16)
