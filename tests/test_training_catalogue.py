"""Training catalogue beyond step-for-step losses: the lr each epoch in the history, metric definitions
against sklearn, and every initializer (bit-identical on both backends, Keras' variance formulas)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from dlc.compiler import compile_file, compile_text

from conftest import FIXTURE_DIR

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train_both(spec, base_dir: Path, epochs: int, dtype: str = "float64"):
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    spec = spec.model_copy(update={"dtype": dtype})
    data = prepare(spec, base_dir)
    init = initial_weights(spec)
    out = {}
    for name in ("keras", "torch"):
        session = session_class(name)(spec, dtype=dtype, device="cpu", weights=init)
        out[name] = (session, train(session, spec, data, epochs=epochs), data)
    return out


# ------------------------------------------------------------------------------------- lr in the history

SCHEDULES = ["schedule_step", "schedule_exponential", "schedule_cosine", "schedule_warmup",
             "schedule_plateau"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_lr_used_each_epoch_is_in_the_history(name):
    spec = compile_file(FIXTURE_DIR / f"{name}.dlspec").raise_for_errors()
    runs = _train_both(spec, FIXTURE_DIR, epochs=12)
    lrs = {b: [row["lr"] for row in hist.rows] for b, (_, hist, _) in runs.items()}
    assert len(lrs["keras"]) == 12
    assert lrs["keras"] == lrs["torch"]
    base = spec.optimizer.learning_rate
    if spec.schedule.kind == "plateau":
        # patience 1, min_delta 0.01: the validation losses (0.360, 0.0817, 0.0236, 0.0247, 0.0539, 0.0560,
        # 0.0389, 0.0238, 0.0151, 0.0104, 0.0078, ...) improve by 0.01 up to epoch 3, not in epochs 4-9 (a cut
        # after each), in epoch 10 (0.0104 < 0.0236 - 0.01: no cut), not in epoch 11 (a cut)
        assert lrs["keras"] == [base] * 4 + [base * 0.5 ** k for k in (1, 2, 3, 4, 5, 6, 6, 7)]
    else:
        assert lrs["keras"] == [spec.schedule.lr_at(e, base) for e in range(12)]
    # and the optimizer really used it: the Keras variable and the torch optimizer hold the last epoch's lr
    keras_session, torch_session = runs["keras"][0], runs["torch"][0]
    assert float(keras_session.opt.learning_rate.numpy()) == pytest.approx(lrs["keras"][-1], rel=1e-15)
    assert torch_session.opt.lr == lrs["torch"][-1]


# ---------------------------------------------------------------------------------------------- metrics

METRIC_SPEC = """
model metrics_{task} {{
  seed: 5
  data {{
    source: {source}
    normalize: standard
    split: holdout(val=0.3, test=0.1, stratify=true)
  }}
  input: ({n_in})
  layers {{
    Dense(8, activation=relu)
    Dense({n_out}, activation={act})
  }}
  loss: {loss}
  metrics: [accuracy, precision, recall, f1]
  optimizer: SGD(lr=0.02)
  train {{
    epochs: 2
    batch_size: 16
  }}
}}
"""


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_precision_recall_f1_match_sklearn_on_both_backends(task):
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    if task == "multiclass":
        kw = {"source": "wine", "n_in": 13, "n_out": 3, "act": "softmax", "loss": "categorical_crossentropy"}
    else:
        kw = {"source": "breast_cancer", "n_in": 30, "n_out": 1, "act": "sigmoid",
              "loss": "binary_crossentropy"}
    spec = compile_text(METRIC_SPEC.format(task=task, **kw)).raise_for_errors()
    runs = _train_both(spec, FIXTURE_DIR, epochs=2)
    rows = {b: hist.rows[-1] for b, (_, hist, _) in runs.items()}
    names = ["val_accuracy", "val_precision", "val_recall", "val_f1"]
    assert [rows["keras"][n] for n in names] == [rows["torch"][n] for n in names]  # identical, not just close
    session, _, data = runs["keras"]
    prob = session.predict(data.val.x)
    y = np.asarray(data.val.y)
    if task == "multiclass":
        pred, true = prob.argmax(-1), (y.argmax(-1) if y.ndim == 2 else y)
        avg = "macro"  # documented: macro average over classes
    else:
        pred, true = (prob.reshape(-1) > 0.5).astype(int), y.reshape(-1).astype(int)
        avg = "binary"  # documented: of the positive class
    want = [accuracy_score(true, pred), precision_score(true, pred, average=avg, zero_division=0),
            recall_score(true, pred, average=avg, zero_division=0),
            f1_score(true, pred, average=avg, zero_division=0)]
    assert [rows["keras"][n] for n in names] == pytest.approx(want, abs=1e-12)
    assert 0 < rows["keras"]["val_precision"] < 1 or task == "binary"


def test_regression_metrics_identical_on_both_backends():
    spec = compile_file(FIXTURE_DIR / "loss_huber.dlspec").raise_for_errors()
    spec = spec.model_copy(update={"metrics": compile_text(
        (FIXTURE_DIR / "loss_huber.dlspec").read_text().replace("metrics: [mae]", "metrics: [mse, mae]")
    ).raise_for_errors().metrics})
    runs = _train_both(spec, FIXTURE_DIR, epochs=2)
    rows = {b: hist.rows[-1] for b, (_, hist, _) in runs.items()}
    for n in ("mse", "mae", "val_mse", "val_mae"):
        assert rows["keras"][n] == pytest.approx(rows["torch"][n], rel=1e-12, abs=0), n
    session, _, data = runs["torch"]
    err = np.asarray(data.val.y, dtype=np.float64).reshape(-1) - session.predict(data.val.x).reshape(-1)
    assert rows["torch"]["val_mse"] == pytest.approx(float(np.mean(err ** 2)), rel=1e-10)
    assert rows["torch"]["val_mae"] == pytest.approx(float(np.mean(np.abs(err))), rel=1e-10)


# ----------------------------------------------------------------------------------------- initializers

INITIALIZERS = ["zeros", "ones", "constant(0.3)", "random_normal", "random_uniform", "truncated_normal",
                "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
                "orthogonal"]

INIT_SPEC = """
model init_all {{
  seed: 11
  data {{
    source: wine
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }}
  input: (13)
  layers {{
    Dense(400, activation=relu, kernel_init={init}, bias_init={init})
    Dense(300, activation=relu, kernel_init={init})
    Dense(3, activation=softmax)
  }}
  loss: categorical_crossentropy
  optimizer: SGD(lr=0.01)
}}
"""


def _expected_std(name: str, fan_in: int, fan_out: int) -> float | None:
    """Keras' formulas (keras/src/initializers): the std of the drawn values."""
    trunc = 0.87962566103423978  # std of a standard normal truncated at ±2
    return {"random_normal": 0.05, "random_uniform": 0.1 / math.sqrt(12), "truncated_normal": 0.05 * trunc,
            "glorot_uniform": math.sqrt(2 / (fan_in + fan_out)),
            "glorot_normal": math.sqrt(2 / (fan_in + fan_out)),
            "he_normal": math.sqrt(2 / fan_in), "he_uniform": math.sqrt(2 / fan_in),
            "lecun_normal": math.sqrt(1 / fan_in), "lecun_uniform": math.sqrt(1 / fan_in),
            "orthogonal": 1 / math.sqrt(max(fan_in, fan_out))}.get(name)


@pytest.mark.parametrize("init", INITIALIZERS)
def test_every_initializer_bit_identical_and_keras_variance(init):
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights, max_abs_diff

    spec = compile_text(INIT_SPEC.format(init=init)).raise_for_errors()
    for dtype in ("float64", "float32"):
        s = spec.model_copy(update={"dtype": dtype})
        w0 = initial_weights(s)
        ws = [session_class(b)(s, dtype=dtype, device="cpu", weights=w0).get_weights()
              for b in ("keras", "torch")]
        assert max_abs_diff(*ws) == 0.0, f"{init} {dtype}: initial weights differ"
    w = initial_weights(spec)
    kernel = next(iter(w.values()))  # the first Dense: (13, 400) kernel
    k1 = list(w.values())[1]["kernel"]  # (400, 300): big enough for a statistical check
    name = init.split("(")[0]
    if name == "zeros":
        assert not k1.any()
        return
    if name in ("ones", "constant"):
        assert np.all(k1 == (1.0 if name == "ones" else 0.3))
        return
    want = _expected_std(name, 400, 300)
    assert abs(k1.std() / want - 1) < 0.03, f"{init}: std {k1.std():.5g}, Keras' formula {want:.5g}"
    if name == "orthogonal":  # rows or columns orthonormal
        np.testing.assert_allclose(k1.T @ k1, np.eye(300), atol=1e-10)
    if name in ("glorot_uniform", "he_uniform", "lecun_uniform"):
        assert np.abs(k1).max() <= want * math.sqrt(3) + 1e-15
    if name in ("truncated_normal",) or name.endswith("_normal") and name != "random_normal":
        assert np.abs(k1).max() <= 2 * want / 0.87962566103423978 + 1e-12
    assert kernel["kernel"].shape == (13, 400)
