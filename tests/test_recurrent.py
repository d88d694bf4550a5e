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
