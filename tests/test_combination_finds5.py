"""Defects found by the combination sweep of 2026-12-02 (residual and user blocks with BatchNorm and Dropout
inside repeats; convolutions with every pooling on digits as 8x8x1; stacked and bidirectional recurrent layers
feeding pooling and convolutions; every schedule with every optimizer family; regularizers and constraints on
several layer kinds; augmentation with kfold; early stopping with epoch schedules; regression and binary sets
with their losses and metrics; batch sizes beyond the data, one epoch, tiny and empty validation parts; each
spec checked, compared in float64, run on both backends, evaluated, exported and emitted): specs `dlc check`
accepted and `dlc run` then refused at its first epoch, kept here as tiny specs."""

from __future__ import annotations

import pytest

from conftest import run_cli

DIABETES = """model classes_of_diabetes {
  data {
    source: diabetes
    split: holdout(val=0.2)
  }
  input: (10)
  layers {
    OUTPUT
  }
  loss: LOSS
  optimizer: Adam()
}
"""


def _errors(text: str) -> list:
    from dlc.compiler import compile_text

    return compile_text(text, "s.dlspec").diagnostics.errors


@pytest.mark.parametrize("loss, output, labels", [
    ("sparse_categorical_crossentropy", "Dense(3, activation=softmax)", "class labels 0..2"),
    ("categorical_crossentropy", "Dense(10, activation=softmax)", "class labels 0..9"),
    ("binary_crossentropy", "Dense(1, activation=sigmoid)", "labels 0 and 1"),
])
def test_a_classification_loss_on_the_diabetes_regression_set_is_a_spec_error(loss, output, labels):
    """`source: diabetes` (a number 25..346 per sample) with a crossentropy passed `dlc check`, and `dlc run`
    then failed reading the targets as class labels: "diabetes: label 151 in sample 1 but the output layer
    has 3 units (classes 0..2)" (binary_crossentropy: "... needs labels 0 and 1"). E302 at the loss now."""
    (err,) = _errors(DIABETES.replace("OUTPUT", output).replace("LOSS", loss))
    assert err.code == "E302" and (err.span.line, err.span.col) == (10, 9), err
    assert err.message == (f"'diabetes' is a regression set (its target is a number, 25..346), but {loss} "
                           f"needs {labels}")
    assert err.hint == "use a regression loss (mse, mae or huber) with Dense(1)"


@pytest.mark.parametrize("loss, output", [
    ("mse", "Dense(1)"), ("sparse_categorical_crossentropy", "Dense(347, activation=softmax)")])
def test_diabetes_targets_that_fit_the_output_still_check(loss, output):
    """A regression loss, and (as the runtime takes them) whole-number labels that fit the outputs: no
    error."""
    assert _errors(DIABETES.replace("OUTPUT", output).replace("LOSS", loss)) == []


TOKENS = """model minmax_tokens {
  data {
    source: SOURCE
    normalize: minmax
    split: holdout(val=0.2)
  }
  input: (INPUT)
  layers {
    Embedding(17, 2)
    Flatten()
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam()
}
"""


@pytest.mark.parametrize("source, n", [("digits", 64), ("iris", 4)])
def test_minmax_before_an_embedding_of_a_bundled_set_is_a_spec_error(tmp_path, source, n):
    """`source: digits`, `normalize: minmax`, then an Embedding: `dlc check` gave only the warning W005
    ("... unless every feature takes two values only"), and `dlc run` failed at its first epoch ("digits:
    sample 1, feature 3 is 0.3125, but the first layer, Embedding(17, ...), takes token indices"). A bundled
    set's features are known, and none takes two values only: E303 at the normalize line, exit 2."""
    text = TOKENS.replace("SOURCE", source).replace("INPUT", str(n)).replace(
        "Dense(3,", "Dense(10," if source == "digits" else "Dense(3,")
    (err,) = _errors(text)
    assert err.code == "E303" and (err.span.line, err.span.col) == (4, 16), err
    assert f"normalize: minmax turns the '{source}' features into fractions" in err.message
    spec = tmp_path / "s.dlspec"
    spec.write_text(text)
    rc, _, stderr = run_cli("check", spec)
    assert rc == 2 and "Traceback" not in stderr


def test_minmax_before_an_embedding_of_a_csv_file_stays_a_warning(tmp_path):
    """A file's features may each take two values only (0/1 tokens, which minmax keeps whole): W005 there,
    as before."""
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{i % 2},{(i // 2) % 2},{i % 3}\n"
                                                            for i in range(30)))
    from dlc.compiler import compile_text

    text = TOKENS.replace("SOURCE", 'csv("t.csv", target="label")').replace("INPUT", "2")
    r = compile_text(text, "s.dlspec", tmp_path)
    assert r.ok and [w.code for w in r.diagnostics.sorted()] == ["W005"], r.diagnostics.sorted()


IRIS_SOFTMAX = """model softmax_layer {
  data {
    source: iris
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
    Dense(3)
    SOFTMAX
  }
  loss: LOSS
  optimizer: Adam()
}
"""


@pytest.mark.parametrize("axis", ["0", "-2"])
@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_a_last_softmax_over_the_batch_axis_is_no_crossentropy_output(axis, loss):
    """`Dense(3)` then `Softmax(axis=0)` with a crossentropy passed `dlc check` (W014 only: "each output
    depends on the other samples of the batch") and compared equivalent, but trained and predicted exactly as
    `Softmax()`: the loss takes the softmax from the logits over the classes, so the axis was dropped on both
    backends, silently (Keras normalises over the batch). E302 at the layer now."""
    errors = _errors(IRIS_SOFTMAX.replace("SOFTMAX", f"Softmax(axis={axis})").replace("LOSS", loss))
    (err,) = errors
    assert err.code == "E302" and (err.span.line, err.span.col) == (9, 5), err
    assert err.message == (f"{loss} takes the softmax over the classes (the output's last axis), but the "
                           f"last layer is Softmax(axis={axis}), over the batch axis")


@pytest.mark.parametrize("softmax, loss", [("Softmax()", "categorical_crossentropy"),
                                           ("Softmax(axis=1)", "sparse_categorical_crossentropy"),
                                           ("Softmax(axis=0)", "mse")])
def test_a_last_softmax_over_the_classes_still_checks(softmax, loss):
    """The class axis (-1, or 1 for a flat output), and a regression loss, which takes the layer's output as
    it is: no error."""
    assert _errors(IRIS_SOFTMAX.replace("SOFTMAX", softmax).replace("LOSS", loss)) == []
