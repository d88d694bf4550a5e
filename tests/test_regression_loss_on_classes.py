"""Regression losses (mse, mae, huber) on class labels, as Nielsen's 784-30-10 sigmoid network with the
quadratic cost and Keras' `compile(loss="mse", metrics=["accuracy"])` on one-hot labels: on a bundled
classification set the task is a classification (`Spec.task`, defined once), the targets one-hot (a 0/1 column
for one output of two classes), the loss Keras' of whatever the last layer outputs (nothing fused), every
classification metric applies; other output widths are E302; regression data keeps its meaning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_text

from conftest import FIXTURE_DIR, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NIELSEN = """\
model q {
  seed: 1
  data { source: digits
    normalize: minmax
    split: holdout(val=0.2) }
  input: (64)
  layers {
    Dense(30, activation=sigmoid)
    Dense(10, activation=sigmoid)
  }
  loss: mse
  metrics: [accuracy]
  optimizer: SGD(lr=3.0)
  train { epochs: 3
    batch_size: 10 }
}
"""


def _spec(source="digits", units=10, loss="mse", act="sigmoid", metrics="[accuracy]", inp=64, extra=""):
    text = (NIELSEN.replace("digits", source).replace("Dense(10, activation=sigmoid)",
                                                     f"Dense({units}, activation={act})")
            .replace("loss: mse", f"loss: {loss}").replace("[accuracy]", metrics)
            .replace("(64)", f"({inp})").replace("batch_size: 10 }", f"batch_size: 10\n{extra} }}"))
    return text


def _compile(text: str):
    return compile_text(text, "q.dlspec", Path("."))


def _errors(text: str):
    return [(d.code, d.message, d.hint_text()) for d in _compile(text).diagnostics.sorted()
            if d.severity == "error"]


# ------------------------------------------------------------------------------------------------- the task


def test_the_tutorial_spec_checks_and_is_a_classification():
    r = _compile(NIELSEN)
    assert not [d for d in r.diagnostics.sorted() if d.severity == "error"]
    spec = r.raise_for_errors()
    assert (spec.task, spec.targets, spec.classes) == ("categorical", "onehot", 10)


@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "huber(delta=0.5)"])
@pytest.mark.parametrize("source,inp,units,task,targets", [
    ("iris", 4, 3, "categorical", "onehot"), ("wine", 13, 3, "categorical", "onehot"),
    ("breast_cancer", 30, 2, "categorical", "onehot"), ("breast_cancer", 30, 1, "binary", "float")])
def test_each_regression_loss_on_each_classification_set(loss, source, inp, units, task, targets):
    text = _spec(source, units, loss, "linear", "[accuracy, precision, recall, f1, mse, mae]", inp)
    spec = _compile(text).raise_for_errors()
    assert (spec.task, spec.targets) == (task, targets)


def test_regression_data_keeps_its_meaning():
    text = _spec("diabetes", 1, "mse", "linear", "[mae]", 10)
    spec = _compile(text).raise_for_errors()
    assert (spec.task, spec.targets, spec.classes) == ("regression", "float", None)
    # a classification metric there is still E304, and its words stay
    errors = _errors(text.replace("[mae]", "[accuracy, mae]"))
    assert [(c, m) for c, m, _ in errors] == [
        ("E304", "metric 'accuracy' does not apply to a regression loss (mse)")]


def test_crossentropies_keep_their_task():
    spec = _compile(_spec(loss="categorical_crossentropy", act="softmax")).raise_for_errors()
    assert (spec.task, spec.targets) == ("categorical", "onehot")
    spec = _compile(_spec("breast_cancer", 1, "binary_crossentropy", inp=30)).raise_for_errors()
    assert (spec.task, spec.targets) == ("binary", "float")


@pytest.mark.parametrize("source,inp,units,hint", [
    ("digits", 64, 7, "use Dense(10, ...)"), ("digits", 64, 1, "use Dense(10, ...)"),
    ("iris", 4, 4, "use Dense(3, ...)"), ("breast_cancer", 30, 3, "use Dense(2, ...) or Dense(1, ...)")])
def test_other_output_widths_are_e302_with_a_hint(source, inp, units, hint):
    errors = _errors(_spec(source, units, inp=inp))
    assert len(errors) == 1, errors
    code, message, got = errors[0]
    assert code == "E302" and f"but the last layer has {units} outputs" in message and got == hint
    assert "regression loss" not in message


def test_a_csv_target_of_numbers_stays_regression(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n" + "".join(f"{i},{i * 2},{i % 3}\n" for i in range(30)))
    text = (_spec(units=1, act="linear", metrics="[mae]", inp=2)
            .replace("source: digits", 'source: csv("d.csv", target="y")'))
    r = compile_text(text, "q.dlspec", tmp_path)
    spec = r.raise_for_errors()
    assert spec.task == "regression"


def _mnist_spec(tmp_path: Path, units: int) -> str:
    """Nielsen's network on a small mnist.npz (labels 0..9) made here."""
    r = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", x_train=r.integers(0, 255, (60, 4, 4), dtype=np.uint8),
             y_train=r.integers(0, 10, 60).astype(np.uint8),
             x_test=r.integers(0, 255, (20, 4, 4), dtype=np.uint8),
             y_test=r.integers(0, 10, 20).astype(np.uint8))
    return (_spec(units=units, inp="4, 4").replace("source: digits", 'source: mnist(".")')
            .replace("Dense(30", "Flatten()\n    Dense(30"))


def test_mnist_labels_are_classes_under_a_regression_loss(tmp_path):
    """MNIST's targets are labels whose count only its files know: more than one output makes them one-hot
    (Nielsen's network, on MNIST itself), one output keeps the regression on the digit's value."""
    from dlc.runtime.compare import compare_spec, float64_loss_bound

    spec = compile_text(_mnist_spec(tmp_path, 10), "q.dlspec", tmp_path).raise_for_errors()
    assert (spec.task, spec.targets) == ("categorical", "onehot")
    c = compare_spec(spec, tmp_path, 12, "float64")
    k, t = np.array(c.losses["keras"]), np.array(c.losses["torch"])
    assert len(k) == 12 and np.all(np.abs(k - t) <= float64_loss_bound(k))
    one = compile_text(_mnist_spec(tmp_path, 1).replace("[accuracy]", "[mae]"), "q.dlspec", tmp_path)
    assert one.raise_for_errors().task == "regression"


def test_monitoring_val_accuracy_is_accepted():
    extra = ("    early_stopping: (monitor=val_accuracy, patience=1, restore_best=true)")
    text = _spec(extra=extra).replace("optimizer: SGD(lr=3.0)", "optimizer: SGD(lr=3.0)\n  schedule: "
                                      "plateau(monitor=val_accuracy, factor=0.5, patience=1)")
    assert _errors(text) == []


# ---------------------------------------------------------------------------------------- targets, metrics


def test_targets_are_one_hot_or_a_binary_column():
    from dlc.runtime.data import prepare

    spec = _compile(NIELSEN).raise_for_errors()
    data = prepare(spec, Path("."))
    y = data.train.y
    assert y.shape[1] == 10 and set(np.unique(y)) == {0.0, 1.0} and np.all(y.sum(axis=1) == 1)
    spec = _compile(_spec("breast_cancer", 1, inp=30)).raise_for_errors()
    y = prepare(spec, Path(".")).train.y
    assert y.shape[1] == 1 and y.dtype == np.float64 and set(np.unique(y)) == {0.0, 1.0}


def _torch_session(spec):
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights

    return session_class("torch")(spec, device="cpu", weights=initial_weights(spec), dtype="float64")


@pytest.mark.parametrize("loss,ref", [
    ("mse", lambda t, p: ((t - p) ** 2).mean(axis=-1).mean()),
    ("mae", lambda t, p: np.abs(t - p).mean(axis=-1).mean()),
    ("huber(delta=0.2)", lambda t, p: np.where(np.abs(t - p) <= 0.2, 0.5 * (t - p) ** 2,
                                               0.2 * np.abs(t - p) - 0.02).mean(axis=-1).mean())])
def test_the_loss_is_keras_formula_on_the_outputs_not_fused(loss, ref):
    """The first step's loss is the formula on the one-hot targets and the sigmoid outputs (no softmax or
    sigmoid inside the loss), as torch computes it from dlc's initial weights."""
    import torch

    from dlc.runtime.data import prepare

    spec = _compile(_spec(loss=loss)).raise_for_errors().model_copy(update={"dtype": "float64"})
    data = prepare(spec, Path("."))
    s = _torch_session(spec)
    x = torch.as_tensor(data.train.x[:10], dtype=torch.float64)
    with torch.no_grad():
        out = s.net(x).numpy()
    expected = ref(data.train.y[:10], out)
    got = float(s.trainer.loss(torch.as_tensor(out), torch.as_tensor(data.train.y[:10])))
    assert np.all((out > 0) & (out < 1))  # the sigmoid's values reach the loss
    assert got == pytest.approx(expected, rel=1e-12)


def test_accuracy_is_argmax_and_threshold():
    from dlc.reference import metrics as M

    # categorical: a 2x2 confusion matrix (rows true) of argmax predictions
    assert M.compute(["accuracy"], "categorical", np.array([[3.0, 1.0], [0.0, 4.0]]))["accuracy"] == 7 / 8
    assert M.compute(["accuracy", "precision"], "binary", np.array([[3.0, 1.0], [0.0, 4.0]])) == \
        {"accuracy": 7 / 8, "precision": 0.8}


# ------------------------------------------------------------------------------------------------ the runs


def _losses(spec, backend: str, epochs: int | None = None) -> tuple[list[float], dict]:
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    data = prepare(spec, FIXTURE_DIR)
    session = session_class(backend)(spec, device="cpu", weights=initial_weights(spec))
    h = train(session, spec, data, epochs=epochs)
    return h.step_losses, h


@pytest.mark.parametrize("fixture", ["loss_mse_classes", "loss_huber_binary"])
def test_float64_both_backends_agree_per_step(fixture):
    from dlc.compiler import compile_file
    from dlc.runtime.compare import compare_spec, float64_loss_bound

    spec = compile_file(FIXTURE_DIR / f"{fixture}.dlspec").raise_for_errors()
    c = compare_spec(spec, FIXTURE_DIR, 40, "float64")
    k, t = np.array(c.losses["keras"]), np.array(c.losses["torch"])
    assert len(k) == len(t) == 40
    diff = np.abs(k - t)
    print(f"\n{fixture}: float64 max per-step |Δ| = {diff.max():.3g}")
    assert np.all(diff <= float64_loss_bound(k)), diff.max()
    assert "equivalent" in c.summary


def test_dlc_run_both_backends_reports_accuracy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "q.dlspec"
    spec.write_text(NIELSEN.replace("epochs: 3", "epochs: 2"))
    finals = {}
    for backend in ("torch", "keras"):
        rc, out, err = run_cli("run", spec, "--backend", backend, "--quiet")
        assert rc == 0, err
        run = sorted((tmp_path / "runs").glob(f"q-{backend}-*"))[-1]
        finals[backend] = json.loads((run / "metrics.json").read_text())
    for part in ("train", "val"):
        k, t = finals["keras"][part], finals["torch"][part]
        assert set(k) == set(t) == {"loss", "accuracy"}
        assert k["loss"] == pytest.approx(t["loss"], rel=1e-4)  # (float32: rounding apart)
        assert k["accuracy"] == pytest.approx(t["accuracy"], abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_emitted_script_gives_dlcs_losses(tmp_path, backend):
    from dlc.backends.emit.script import emit
    from dlc.compiler import compile_file

    path = FIXTURE_DIR / "loss_mse_classes.dlspec"
    spec = compile_file(path).raise_for_errors()
    script = tmp_path / f"s_{backend}.py"
    script.write_text(emit(spec, backend, path))
    out = tmp_path / "losses.json"
    proc = subprocess.run([sys.executable, str(script), "--losses", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(out.read_text())
    mine, _ = _losses(spec, backend)
    assert len(theirs) == len(mine) > 0
    assert np.array_equal(np.array(theirs), np.array(mine))


@pytest.mark.slow
def test_cv_and_doctor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "q.dlspec"
    spec.write_text(NIELSEN.replace("holdout(val=0.2)", "kfold(k=3, shuffle=true, stratify=true)")
                    .replace("epochs: 3", "epochs: 1"))
    rc, out, err = run_cli("cv", spec, "--backend", "torch")
    assert rc == 0 and "val accuracy" in out + err, err
    spec.write_text(NIELSEN)
    rc, out, err = run_cli("run", spec, "--backend", "torch", "--quiet")
    assert rc == 0, err
    run = sorted((tmp_path / "runs").glob("q-torch-*"))[-1]
    rc, out, err = run_cli("doctor", run)
    assert rc == 0 and "Traceback" not in err, err
