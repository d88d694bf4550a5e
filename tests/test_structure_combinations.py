"""Combinations of model-structure features that LANGUAGE.md allows and no other test exercised, each found by
a sweep of generated specs (every layer with non-default arguments, blocks, residuals, repeats; `dlc check`,
then `dlc compare --dtype float64` on a few steps): kept here as tiny specs."""

from __future__ import annotations

import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = (ROOT / "specs" / "iris.dlspec").read_text().replace("epochs: 40", "epochs: 1")
DENSE = "Dense(16, activation=relu, kernel_init=he_normal)"
OUT = "Dense(3, activation=softmax)    # one probability per species"


def _spec(layers: str, out: str | None = None) -> str:
    text = IRIS.replace(DENSE, layers)
    return text if out is None else text.replace(OUT, out)


def _compiled(text: str):
    from dlc.compiler import compile_text

    return compile_text(text, "s.dlspec")


def _errors(text: str) -> list:
    return [d for d in _compiled(text).diagnostics.sorted() if d.severity == "error"]


def test_a_residual_block_takes_a_repeat_count_as_a_layer_does():
    """`residual { ... } * 2` (LANGUAGE.md's `* N` on a layer, applied to its residual block) was a syntax
    error ("unexpected '*'"); it is two residual blocks now, each with its own weights, as `Dense(4) * 2` is
    two layers."""
    spec = _compiled(_spec("Dense(4)\n    residual {\n      Dense(4, activation=relu)\n      LayerNorm()\n"
                           "    } * 3")).raise_for_errors()
    residuals = [layer for layer in spec.layers if layer.kind == "Residual"]
    assert len(residuals) == 3
    names = {inner.name for r in residuals for inner in r.body}
    assert len(names) == 6  # (three Dense, three LayerNorm: their own layers, their own weights)
    assert spec.param_counts() == (4 * 4 + 4 + 3 * (4 * 4 + 4 + 2 * 4) + 4 * 3 + 3, 0)


@pytest.mark.parametrize("text,message", [
    (_spec("residual {\n      Dense(16)\n    } * 0"), "a repeat count must be at least 1"),
    (IRIS.replace("    batch_size: 16                  # small data, small batches: 6 steps per epoch\n  }",
                  "    batch_size: 16\n  } * 2"), "'train { ... }' cannot be repeated"),
])
def test_a_repeat_only_a_residual_block_can_take_is_a_spec_error(tmp_path, text, message):
    path = tmp_path / "r.dlspec"
    path.write_text(text)
    rc, out, err = run_cli("check", path)
    assert rc == 2 and "Traceback" not in err
    assert message in out + err and "^" in out + err


PLAIN_RNN = _spec("Reshape((4, 1))\n    LSTM(5, return_sequences=true)\n    "
                  "Bidirectional(SimpleRNN(3), merge_mode=ave)")
REGULARIZED_RNN = _spec("Reshape((4, 1))\n    LSTM(5, return_sequences=true, activity_reg=l2(0.1), "
                        "kernel_constraint=max_norm(0.2), recurrent_constraint=unit_norm, "
                        "bias_constraint=non_neg)\n    "
                        "Bidirectional(SimpleRNN(3, kernel_constraint=max_norm(0.1), activity_reg=l1(0.05), "
                        "bias_constraint=non_neg, bias_init=ones), merge_mode=ave)")


def test_recurrent_layers_take_activity_regularizers_and_constraints_as_keras_does():
    """`LSTM(..., activity_reg=l2(...))`, `kernel_constraint=`, `recurrent_constraint=`, `bias_constraint=`
    (Keras' RNN layers take them, LANGUAGE.md puts regularizers on activity and constraints on layers) were
    E112 "unknown argument". The IR carries them to both lowerings: the torch session reads the weights'
    constraints and the layer's activity_reg as for Dense; Keras gets its own arguments."""
    import dlc.backends.keras.lower  # noqa: F401  (registers the keras lowerings; imports no framework)
    from dlc.backends.network import network_expr

    spec = _compiled(REGULARIZED_RNN).raise_for_errors()
    lstm, bidi = spec.layers[1], spec.layers[2]
    assert lstm.activity_reg is not None
    assert [w.constraint is not None for w in lstm.weights((4, 1))] == [True, True, True]
    assert [w.constraint is not None for w in bidi.weights((4, 5))] == [True, False, True] * 2
    keras_net = repr(network_expr(spec, "keras", container="network"))
    for arg in ("activity_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint"):
        assert f"('{arg}', Call(" in keras_net, arg


@pytest.mark.slow
def test_recurrent_activity_regularizers_and_constraints_train_alike_on_both_backends():
    """The spec above trains alike on both backends in float64, and differently from the one without them:
    the activity term is in the first step's loss, the constraints change the steps after."""
    from dlc.runtime.compare import compare_spec

    c = compare_spec(_compiled(REGULARIZED_RNN).raise_for_errors(), ROOT, 3, "float64")
    assert c.passed and c.max_rel_loss_diff < 1e-14, c.summary
    base = compare_spec(_compiled(PLAIN_RNN).raise_for_errors(), ROOT, 3, "float64")
    for name in ("keras", "torch"):  # (the activity term is in the first step's loss; the constraints after)
        assert c.losses[name][0] > base.losses[name][0] + 1e-6
        assert abs(c.losses[name][2] - base.losses[name][2]) > 1e-6


def test_an_activity_regularizer_inside_bidirectional_penalises_each_direction_on_torch():
    """Keras' Bidirectional runs two copies of the wrapped layer, each adding its activity term on its own
    output; the torch session hooks both directions (and the LSTM before): three terms per forward."""
    import torch

    from dlc.backends import session_class

    session = session_class("torch")(_compiled(REGULARIZED_RNN).raise_for_errors(), dtype="float64",
                                     device="cpu")
    session.net(torch.ones((2, 4), dtype=torch.float64))
    assert len(session.trainer._acts) == 3


@pytest.mark.parametrize("last", ["LSTM(3, activation=softmax)", "GRU(3)",
                                  "Bidirectional(SimpleRNN(3, activation=softmax), merge_mode=sum)"])
def test_a_recurrent_output_layer_under_a_crossentropy_is_a_spec_error(last):
    """`LSTM(3, activation=softmax)` as the last layer under a crossentropy passed `dlc check` and failed
    when a backend built it ("LSTM as the output layer ... is not supported": its activation works inside the
    cell, it is no output activation the loss can take from logits). `dlc check` says so now, with the fix;
    under mse such a layer stays a valid output."""
    errors = _errors(_spec("Reshape((4, 1))", out=last))
    assert len(errors) == 1 and errors[0].code == "E302", errors
    assert "needs a softmax output layer, but the last layer is" in errors[0].message
    assert errors[0].hint == "add Dense(3, activation=softmax) after it"
    mse = _spec("Reshape((4, 1))", out=last).replace("sparse_categorical_crossentropy", "mse")
    assert not [e for e in _errors(mse) if "output layer" in e.message]


@pytest.mark.parametrize("layer,field", [("Conv2D(4, 3, strides=(2))", "strides"),
                                         ("MaxPool2D((2))", "pool_size"), ("Conv2D(4, (3))", "kernel_size")])
def test_a_one_number_tuple_where_a_pair_belongs_says_so(layer, field):
    """`Conv2D(4, 3, strides=(2))` (a one-element tuple, LANGUAGE.md's `(64)`) was E201 with the hint "Field
    required", Pydantic's words for the pair's missing second number."""
    text = _spec(f"Reshape((2, 2, 1))\n    {layer}\n    Flatten()")
    errors = _errors(text)
    assert len(errors) == 1 and errors[0].message.endswith(f"'{field}' of {layer.split('(')[0]}"), errors
    assert errors[0].hint.startswith("expected 2 numbers, got 1: (")


def test_an_unknown_activation_lists_every_activation():
    """`activation=a6` (nothing near it) listed "known:" the first 12 activations, leaving out leaky_relu and
    elu (LANGUAGE.md's last two) as if they did not exist; a family of up to 16 names is listed whole."""
    errors = _errors(_spec("Dense(4, activation=qqq)"))
    assert len(errors) == 1 and errors[0].hint_text().endswith("softmax, leaky_relu, elu"), errors
    layers = _errors(_spec("Qqqqqq(4)"))
    assert len(layers) == 1 and layers[0].hint_text().endswith(", ..."), layers
