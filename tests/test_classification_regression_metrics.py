"""mse and mae as metrics of a classification loss (LANGUAGE.md:
`metrics: [accuracy, precision, recall, f1, mse, mae]`), as Keras computes metrics=["mse", "mae"] on a
classifier: between the targets and the output probabilities, also when the softmax/sigmoid is fused into the
loss. Categorical: the one-hot targets (sparse integer labels one-hot encoded) against the k probabilities,
averaged over N·k values; binary: the 0/1 target against the sigmoid probability. Both backends accumulate
them as an error row under the confusion matrix (dlc/reference/metrics.py), and agree in float64."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.reference import metrics as M

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LANGUAGE_METRICS = "metrics: [accuracy, precision, recall, f1, mse, mae]"
SHARED = ROOT.parent / "shared"

# loss -> (data source, input, output layer)
CLASSIFIERS = {
    "categorical_crossentropy": ("iris", 4, "Dense(3, activation=softmax)"),
    "sparse_categorical_crossentropy": ("iris", 4, "Dense(3, activation=softmax)"),
    "binary_crossentropy": ("breast_cancer", 30, "Dense(1, activation=sigmoid)"),
}


def _spec(tmp_path: Path, loss: str, metrics: str = LANGUAGE_METRICS, train: str = "", extra: str = "",
          optimizer: str = "SGD(lr=0.05)", name: str = "m") -> Path:
    source, n_in, output = CLASSIFIERS.get(loss, ("diabetes", 10, "Dense(1)"))
    stratify = ", stratify=true" if loss in CLASSIFIERS else ""
    text = textwrap.dedent(f"""\
        model {name} {{
          seed: 11
          data {{
            source: {source}
            normalize: standard
            split: holdout(val=0.2, test=0.2{stratify})
          }}
          input: ({n_in})
          layers {{
            Dense(8, activation=relu)
            {output}
          }}
          loss: {loss}
          {metrics}
          optimizer: {optimizer}{extra}
          train {{
            epochs: 3
            batch_size: 32{train}
          }}
        }}
        """)
    path = tmp_path / f"{name}.dlspec"
    path.write_text(text)
    return path


def _numpy_errors(spec, probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """mse and mae from the model's predicted probabilities, as the metric is defined."""
    if type(spec.loss).task == "binary":
        err = labels.reshape(-1).astype(np.float64) - probs.reshape(-1)
    else:
        err = np.eye(probs.shape[1])[labels] - probs
    return {"mse": float(np.mean(err * err)), "mae": float(np.mean(np.abs(err)))}


def _numpy_accuracy(spec, probs: np.ndarray, labels: np.ndarray) -> float:
    pred = (probs.reshape(-1) > 0.5).astype(int) if type(spec.loss).task == "binary" else probs.argmax(axis=1)
    return float(np.mean(pred == labels.reshape(-1)))


# ------------------------------------------------------------------------------------------------- check


def test_language_md_shows_the_metrics_line():
    if not SHARED.is_dir():
        pytest.skip("shared/ (LANGUAGE.md) is not next to this checkout")
    assert LANGUAGE_METRICS in (SHARED / "LANGUAGE.md").read_text()


@pytest.mark.parametrize("loss", list(CLASSIFIERS))
def test_check_accepts_mse_mae_with_a_classification_loss(tmp_path, loss):
    rc, out, err = run_cli("check", _spec(tmp_path, loss))
    assert rc == 0, err
    assert "E304" not in out + err


@pytest.mark.parametrize("metric", ["accuracy", "precision", "recall", "f1"])
def test_classification_metrics_on_a_regression_loss_stay_an_error(tmp_path, metric):
    rc, out, err = run_cli("check", _spec(tmp_path, "mse", metrics=f"metrics: [{metric}, mae]"))
    assert rc != 0
    assert f"error[E304]: metric '{metric}' does not apply to a regression loss (mse)" in out + err


def test_regression_loss_still_takes_mse_and_mae(tmp_path):
    rc, _, err = run_cli("check", _spec(tmp_path, "huber", metrics="metrics: [mse, mae]"))
    assert rc == 0, err


# ------------------------------------------------------------------------------------------ statistics


def test_statistics_grow_only_when_an_error_metric_is_asked():
    assert M.stats_size("categorical", 3, ["accuracy", "f1"]) == (3, 3)
    assert M.stats_size("binary", None, ["accuracy"]) == (2, 2)
    assert M.stats_size("categorical", 3, ["accuracy", "mse"]) == (4, 3)
    assert M.stats_size("binary", None, ["mae"]) == (3, 2)
    assert M.stats_size("regression", None, ["mse", "mae"]) == (3,)


@pytest.mark.parametrize("task", ["categorical", "binary"])
def test_error_row_leaves_the_confusion_metrics_as_they_were(task):
    cm = np.array([[5.0, 2.0], [1.0, 7.0]]) if task == "binary" else \
        np.array([[5.0, 2.0, 0.0], [1.0, 7.0, 3.0], [0.0, 4.0, 9.0]])
    k = cm.shape[1]
    names = ["accuracy", "precision", "recall", "f1"]
    row = np.zeros((1, k))
    row[0, :2] = [3.5, 6.25]
    with_errors = M.compute(names + ["mse", "mae"], task, np.vstack([cm, row]))
    assert {n: with_errors[n] for n in names} == M.compute(names, task, cm)  # bit-identical
    count = cm.sum() * (1 if task == "binary" else k)
    assert with_errors["mse"] == 3.5 / count
    assert with_errors["mae"] == 6.25 / count


def test_an_error_metric_without_its_statistics_is_refused():
    with pytest.raises(ValueError, match="error row"):
        M.compute(["mse"], "categorical", np.eye(3))


# ------------------------------------------------------------------------------------ values, backends


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("loss", list(CLASSIFIERS))
def test_values_are_those_of_the_predicted_probabilities(tmp_path, loss, backend):
    spec = dlc.load(_spec(tmp_path, loss))
    model = dlc.Model(spec, backend=backend, dtype="float64")
    hist = model.fit(epochs=2)
    data = model.data
    for part in (data.val, data.test, data.train):
        probs = model.predict(part.x)
        want = _numpy_errors(model.spec, probs, part.labels)
        got = model.evaluate(part.x, part.y)
        for n in ("mse", "mae"):
            assert got[n] == pytest.approx(want[n], rel=1e-12, abs=0), (n, got[n], want[n])
        assert got["accuracy"] == _numpy_accuracy(model.spec, probs, part.labels)
    # the epoch row's validation values are the same evaluation
    last = hist.rows[-1]
    val = model.evaluate(data.val.x, data.val.y)
    for n in ("mse", "mae", "accuracy"):
        assert last[f"val_{n}"] == pytest.approx(val[n], rel=1e-12, abs=0)
    # the training values are of the probabilities too (a Brier-style score below its trivial bound)
    assert 0 < last["mse"] < 1 and 0 < last["mae"] < 1


@pytest.mark.parametrize("loss", list(CLASSIFIERS))
def test_backends_agree_in_float64(tmp_path, loss):
    spec = dlc.load(_spec(tmp_path, loss))
    r = dlc.compare(spec, steps=20, dtype="float64")
    assert r["verdict"] == "equivalent", r["summary"]
    fk, ft = r["final_metrics"]["keras"], r["final_metrics"]["torch"]
    for n in ("mse", "mae", "val_mse", "val_mae"):
        assert abs(fk[n] - ft[n]) <= 1e-10 * abs(fk[n]), (n, fk[n], ft[n])
    for n in ("accuracy", "precision", "recall", "f1"):
        assert fk[n] == ft[n] and fk[f"val_{n}"] == ft[f"val_{n}"], (n, fk, ft)


def test_the_fixture_agrees_in_float64():
    path = ROOT / "tests" / "equivalence" / "fixtures" / "metric_mse_mae_classification.dlspec"
    r = dlc.compare(dlc.load(path), steps=20, dtype="float64")
    assert r["verdict"] == "equivalent", r["summary"]
    fk, ft = r["final_metrics"]["keras"], r["final_metrics"]["torch"]
    for n in ("mse", "mae", "val_mse", "val_mae"):
        assert abs(fk[n] - ft[n]) <= 1e-10 * abs(fk[n]), (n, fk[n], ft[n])


# --------------------------------------------------------------------------------------------- monitors


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "binary_crossentropy"])
def test_val_mse_as_early_stopping_and_plateau_monitor(tmp_path, loss):
    path = _spec(tmp_path, loss, metrics="metrics: [accuracy, mse]", optimizer="Adam(lr=0.1)",
                 train="\n    early_stopping: (monitor=val_mse, patience=2, restore_best=true)",
                 extra="\n  schedule: plateau(monitor=val_mse, factor=0.5, patience=1)")
    rc, _, err = run_cli("check", path)
    assert rc == 0, err
    spec = dlc.load(path)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 20})})
    hists = {b: dlc.Model(spec, backend=b, dtype="float64").fit() for b in ("keras", "torch")}
    rows = {b: h.rows for b, h in hists.items()}
    assert len(rows["keras"]) == len(rows["torch"])
    for h in hists.values():  # both monitors acted on val_mse (measured: stops after 7 or 12 of 20 epochs)
        assert h.stopped_early and h.restored_best
        assert h.best_epoch == 1 + int(np.argmin([r["val_mse"] for r in h.rows]))
        assert h.rows[-1]["lr"] < h.rows[0]["lr"]
    assert hists["keras"].best_epoch == hists["torch"].best_epoch
    for rk, rt in zip(rows["keras"], rows["torch"], strict=True):
        assert rk["lr"] == rt["lr"]
        assert abs(rk["val_mse"] - rt["val_mse"]) <= 1e-10 * abs(rk["val_mse"])
    r = dlc.compare(spec, steps=None, dtype="float64")
    assert r["verdict"] == "equivalent", r["summary"]


def test_keras_metric_names_are_aliases():
    """Keras users write sparse_categorical_accuracy or mean_squared_error: the same metrics as accuracy
    and mse."""
    from dlc.compiler import compile_text

    for names, want in (("sparse_categorical_accuracy, categorical_accuracy, binary_accuracy, acc",
                         ["accuracy"] * 4), ("mean_squared_error, mean_absolute_error", ["mse", "mae"])):
        text = ("model m {\n  data {\n    source: iris\n  }\n  input: (4)\n  layers {\n"
                "    Dense(3, activation=softmax)\n  }\n  loss: categorical_crossentropy\n"
                f"  metrics: [{names}]\n  optimizer: Adam()\n}}\n")
        spec = compile_text(text).raise_for_errors()
        assert [m.name for m in spec.metrics] == want
