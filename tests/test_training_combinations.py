"""Combinations of training settings (optimizers, schedules, losses, metrics, regularizers, splits, early
stopping, augmentation, search) that LANGUAGE.md allows and no other test exercised, each found failing by a
sweep of small specs (check, float64 runs on both backends compared epoch by epoch, cv, tune): kept here as
tiny runs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGITS_RNN = """model rnn_activity {
  seed: 4
  data {
    source: digits
    normalize: minmax
    split: holdout(val=0.2)
  }
  input: (8, 8)
  layers {
    SimpleRNN(6, return_sequences=RETURN, activity_reg=l2(1e-2))
    POOL
    Dense(10, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=0.1, momentum=0.9)
  train {
    epochs: 1
    batch_size: 256
  }
}
"""


@pytest.mark.parametrize("sequences", [True, False])
def test_a_simplernn_s_activity_regularizer_counts_on_keras(sequences):
    """`SimpleRNN(6, activity_reg=l2(1e-2))` trained differently on the two backends in float64 (loss 2.398
    on torch, 2.389 on keras after an epoch): keras.layers.SimpleRNN takes activity_regularizer= but never
    hands it on to its Layer (LSTM and GRU do), so Keras dropped the penalty without a word. The keras
    lowering now builds dlc's SimpleRNN, which applies it."""
    from dlc import api
    from dlc.compiler import compile_text

    text = DIGITS_RNN.replace("RETURN", "true" if sequences else "false").replace(
        "POOL", "GlobalMaxPool1D()" if sequences else "")
    spec = compile_text(text).raise_for_errors()
    result = api.compare(spec, steps=2, dtype="float64")
    assert result["verdict"] == "equivalent", result
    assert result["max_abs_loss_diff"] <= 1e-12


def test_a_keras_simplernn_with_an_activity_regularizer_saves_and_reloads(tmp_path):
    """dlc's SimpleRNN is registered with Keras, and keeps its penalty through get_config/from_config (a
    run's model.keras reloads for `dlc evaluate` and `dlc predict`)."""
    import keras

    from dlc.backends.keras import library

    layer = library.SimpleRNN(3, activity_regularizer=keras.regularizers.L2(0.01))
    model = keras.Sequential([keras.Input((4, 2)), layer])
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(back.layers[0], library.SimpleRNN)
    assert float(back.layers[0].activity_regularizer.l2) == pytest.approx(0.01)


@pytest.mark.parametrize("written, meant", [
    ("SGD(0.05, 0.9, true)", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("RMSprop(0.01, 0.8, 0.5, 1e-6, true)", {"rho": 0.8, "momentum": 0.5, "epsilon": 1e-6, "centered": True}),
    ("Adam(0.01, 0.8, 0.99, 1e-6, true)", {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6, "amsgrad": True}),
    ("AdamW(0.01, 0.1, 0.8)", {"weight_decay": 0.1, "beta_1": 0.8}),
    ("Adagrad(0.1, 0.01, 1e-6)", {"initial_accumulator_value": 0.01, "epsilon": 1e-6}),
    ("Adadelta(1.0, 0.9, 1e-6)", {"rho": 0.9, "epsilon": 1e-6}),
    ("Nadam(0.01, 0.85, 0.995, 1e-5)", {"beta_1": 0.85, "beta_2": 0.995, "epsilon": 1e-5}),
])
def test_optimizer_arguments_are_taken_by_position_in_keras_order(written, meant):
    """`SGD(0.05, 0.9, true)` is keras.optimizers.SGD(learning_rate, momentum, nesterov), as a Keras user
    writes it; it was refused ("SGD takes 1 positional argument, got 3"). Each optimizer takes Keras'
    positional order now (AdamW: weight_decay second, as Keras')."""
    from dlc.compiler import compile_text

    text = ITERS.replace("OPTIMIZER", written)
    opt = compile_text(text).raise_for_errors().optimizer
    assert {k: getattr(opt, k) for k in meant} == meant


def test_one_positional_argument_too_many_for_an_optimizer_is_a_spec_error():
    from dlc.compiler import compile_text

    result = compile_text(ITERS.replace("OPTIMIZER", "SGD(0.05, 0.9, true, 0.1)"))
    assert not result.ok
    first = result.diagnostics.sorted()[0]
    assert first.code == "E203" and "SGD takes 3 positional arguments, got 4" in first.message


ITERS = """model opt_positional {
  seed: 1
  data {
    source: iris
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: OPTIMIZER
  train {
    epochs: 1
  }
}
"""
