"""The Python API (dlc/api.py): the README's example runs as written, and each function keeps its contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.reference.weights import initial_weights

from conftest import ROOT

IRIS = ROOT / "specs" / "iris.dlspec"


def _dlc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlc", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "README's Python API section has no ```python block"
    return blocks[0]


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[k].keys() == b[k].keys() and all(np.array_equal(a[k][w], b[k][w]) for w in a[k]) for k in a)


# ------------------------------------------------------------------------------------------------ README

def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README block, run as is from a folder that has the repository's specs/ (it writes runs/ there)."""
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_readme_example(), "README.md", "exec"), ns)  # noqa: S102 — the documented example
    assert ns["report"]["passed"] and ns["report"]["initial_weight_max_abs_diff"] == 0.0
    assert len(ns["history"].rows) == 5
    assert (tmp_path / "runs" / "iris-notebook" / "model.pt").is_file()
    out = capsys.readouterr().out
    assert "(90, 4) (30, 4) (30, 4)" in out


def test_import_dlc_is_cheap():
    """`import dlc` imports no more than the package; the spec and data functions import no framework."""
    code = textwrap.dedent(f"""
        import sys
        import dlc
        assert "dlc.api" not in sys.modules and "pydantic" not in sys.modules, sorted(sys.modules)
        spec = dlc.load({str(IRIS)!r})
        data = dlc.load_data(spec)
        dlc.epoch_order(spec, 0)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "keras", "jax"))
        assert not bad, bad
        print("clean")
        """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "clean"


# -------------------------------------------------------------------------------------------------- load

BAD = """\
model bad {
  data { source: iris }
  input: (4)
  layers {
    Dense(16, activation=rleu)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adm(lr=0.01)
}
"""


def test_spec_error_str_is_what_dlc_check_prints(tmp_path):
    (tmp_path / "bad.dlspec").write_text(BAD)
    with pytest.raises(dlc.SpecError) as info:
        dlc.load(tmp_path / "bad.dlspec")
    msg = str(info.value)
    assert len(info.value.diagnostics) == 2
    assert f"{tmp_path / 'bad.dlspec'}:5:26" in msg and "did you mean 'relu'?" in msg and "^^^^" in msg
    assert f"{tmp_path / 'bad.dlspec'}:9:14" in msg and "did you mean 'Adam'?" in msg
    r = _dlc("check", str(tmp_path / "bad.dlspec"), cwd=tmp_path)
    assert r.returncode == 2
    assert msg in r.stderr


def test_missing_spec_file_is_a_spec_error(tmp_path):
    with pytest.raises(dlc.SpecError, match="E400"):
        dlc.load(tmp_path / "nope.dlspec")


def test_loaded_spec_remembers_its_file_outside_the_ir(monkeypatch, tmp_path):
    from dlc.compiler import compile_file
    from dlc.compiler.spec import Spec

    monkeypatch.chdir(tmp_path)
    spec = dlc.load(IRIS)
    assert spec.source_file == IRIS
    assert spec.model_copy(update={"seed": 1}).source_file == IRIS  # copies keep it
    assert "source_file" not in spec.model_dump_json()
    assert "source_file" not in json.dumps(Spec.model_json_schema())
    assert spec == compile_file(IRIS).spec  # equality is the IR's


# -------------------------------------------------------------------------------------------------- data

TINY = """\
model tiny {
  seed: 3
  dtype: float64
  data {
    source: csv("data/points.csv")
    normalize: standard
    split: holdout(val=0.25, test=0.25, stratify=true)
  }
  input: (2)
  layers {
    Dense(8, activation=relu)
    Dropout(0.2)
    Dense(2, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.05)
  train {
    epochs: 3
    batch_size: 8
  }
}
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    """A spec reading data/points.csv next to it, and a current directory elsewhere."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 2)) * [1.0, 10.0] + [5.0, -20.0]
    y = (x[:, 0] - 5.0 + (x[:, 1] + 20.0) / 10 > 0).astype(int)
    rows = "\n".join(f"{a:.6f},{b:.6f},{c}" for (a, b), c in zip(x, y, strict=True))
    (proj / "data" / "points.csv").write_text("x1,x2,label\n" + rows + "\n")
    (proj / "tiny.dlspec").write_text(TINY)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return proj / "tiny.dlspec"


def test_relative_data_paths_resolve_against_the_spec_folder(tiny):
    spec = dlc.load(tiny)
    data = dlc.load_data(spec)
    assert (len(data.train.x), len(data.val.x), len(data.test.x)) == (24, 12, 12)
    assert data.train.y.shape == (24, 2)  # one-hot for categorical_crossentropy
    # normalised with the training part's statistics
    np.testing.assert_allclose(data.train.x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.train.x.std(axis=0), 1.0, atol=1e-12)
    raw = np.loadtxt(tiny.parent / "data" / "points.csv", delimiter=",", skiprows=1)[:, :2]
    back = data.test.x * data.scale + data.shift
    assert all(any(np.allclose(r, row, atol=1e-9) for row in raw) for r in back)


def test_load_data_has_no_absent_parts():
    spec = dlc.load(IRIS)
    spec = spec.model_copy(update={"data": spec.data.model_copy(
        update={"split": spec.data.split.model_copy(update={"val": 0.0, "test": 0.0})})})
    data = dlc.load_data(spec)
    assert len(data.train.x) == 150 and data.val is None and data.test is None


# -------------------------------------------------------------------------------------------- the model

@pytest.mark.parametrize("name", ["iris", "digits_cnn"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_initial_weights_are_dlc_s_and_the_same_on_both_backends(name, dtype):
    spec = dlc.load(ROOT / "specs" / f"{name}.dlspec")
    w = {b: dlc.Model(spec, backend=b, dtype=dtype, device="cpu").get_weights() for b in ("torch", "keras")}
    init = initial_weights(spec)
    expected = {k: {n: a.astype(dtype) for n, a in ws.items()} for k, ws in init.items()}
    for backend in ("torch", "keras"):
        got = {k: {n: np.asarray(a).astype(dtype) for n, a in ws.items()} for k, ws in w[backend].items()}
        assert _same_weights(got, expected), backend
        assert list(w[backend]) == list(init)  # the layers in order, each weight in Keras' order
        assert all(list(w[backend][k]) == list(init[k]) for k in init)
    assert _same_weights(w["torch"], w["keras"])


def test_fit_matches_across_backends_and_continues():
    """float64: torch's step losses are keras' within 1e-12, over two fit calls; a continued fit is the same
    as one longer fit."""
    spec = dlc.load(IRIS)
    models = {b: dlc.Model(spec, backend=b, dtype="float64", device="cpu") for b in ("torch", "keras")}
    first = {b: m.fit(epochs=2) for b, m in models.items()}
    second = {b: m.fit(max_steps=4) for b, m in models.items()}
    for h in (first, second):
        assert len(h["torch"].step_losses) == len(h["keras"].step_losses) > 0
        np.testing.assert_allclose(h["torch"].step_losses, h["keras"].step_losses, rtol=0, atol=1e-12)
    assert len(first["torch"].step_losses) == 12 and [r["epoch"] for r in first["torch"].rows] == [1, 2]
    assert len(second["torch"].step_losses) == 4 and [r["epoch"] for r in second["torch"].rows] == [3]
    assert len(models["torch"].history.step_losses) == 16 and len(models["torch"].history.rows) == 3
    one = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
    whole = one.fit(epochs=3, max_steps=16)
    np.testing.assert_array_equal(whole.step_losses, models["torch"].history.step_losses)
    assert _same_weights(one.get_weights(), models["torch"].get_weights())


def test_epoch_order_is_what_training_used():
    spec = dlc.load(IRIS)
    model = dlc.Model(spec, backend="torch", device="cpu")
    seen = []
    real = model.session.train_epoch

    def spy(handle, perm, batch_size, progress=None):
        seen.append(np.array(perm))
        return real(handle, perm, batch_size, progress)

    model.session.train_epoch = spy
    model.fit(epochs=3)
    n = len(model.data.train.x)
    assert len(seen) == 3
    for epoch, perm in enumerate(seen):
        np.testing.assert_array_equal(perm, dlc.epoch_order(spec, epoch, n))
    assert not np.array_equal(seen[0], seen[1])
    fixed = spec.model_copy(update={"train": spec.train.model_copy(update={"shuffle": False})})
    np.testing.assert_array_equal(dlc.epoch_order(fixed, 4, n), np.arange(n))


def test_evaluate_and_predict_take_load_data_s_inputs():
    spec = dlc.load(ROOT / "specs" / "wine.dlspec")  # categorical_crossentropy: one-hot targets
    model = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
    model.fit(epochs=2)
    test = model.data.test
    res = model.evaluate(test.x, test.y)
    assert set(res) == {"loss"} | {m.name for m in spec.metrics}
    assert model.evaluate(test.x, test.labels) == res  # integer labels are one-hot encoded
    p = model.predict(test.x)
    assert p.shape == (len(test.x), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert res["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == test.labels))
    np.testing.assert_array_equal(model.predict(test.x.reshape(len(test.x), -1)), p)
    with pytest.raises(ValueError, match="the model takes"):
        model.predict(test.x[:, :5])


def test_a_spec_with_search_spaces_is_refused():
    spec = dlc.load(ROOT / "specs" / "tune" / "iris_tune.dlspec")
    with pytest.raises(ValueError, match="dlc tune"):
        dlc.Model(spec)


# -------------------------------------------------------------------------------------------------- files

def test_save_writes_a_run_dlc_evaluate_and_predict_load(tiny, tmp_path):
    """Saved from a current directory away from the spec: the run finds its data through run.json."""
    spec = dlc.load(tiny)
    model = dlc.Model(spec, backend="torch", device="cpu")
    model.fit()
    run = model.save(tmp_path / "run")
    for name in ("tiny.dlspec", "ir.json", "run.json", "env.json", "model.pt", "model.json", "history.json",
                 "history.csv", "metrics.json", "curves.png"):
        assert (run / name).is_file(), name
    assert len(json.loads((run / "history.json").read_text())) == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3
    data = model.data
    r = _dlc("evaluate", str(run), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for part in ("train", "val", "test"):
        split = getattr(data, part)
        want = model.evaluate(split.x, split.y)
        assert got[part] == pytest.approx(want, abs=1e-12) == metrics[part]
    np.savez(tmp_path / "raw.npz", x=data.test.x * data.scale + data.shift)  # raw features
    r = _dlc("predict", str(run), "--input", str(tmp_path / "raw.npz"), "--output", str(tmp_path / "p.npz"),
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "p.npz") as f:
        np.testing.assert_allclose(f["predictions"], model.predict(data.test.x), atol=1e-12)


def test_save_before_training_keeps_the_initial_weights(tmp_path):
    spec = dlc.load(IRIS)
    model = dlc.Model(spec, backend="keras", device="cpu")
    run = model.save(tmp_path / "run")
    assert not (run / "metrics.json").exists() and json.loads((run / "history.json").read_text()) == []
    other = dlc.Model(spec, backend="keras", device="cpu")
    other.set_weights({k: {n: a * 0 for n, a in ws.items()} for k, ws in other.get_weights().items()})
    other.session.load(run)
    assert _same_weights(other.get_weights(), model.get_weights())


# ------------------------------------------------------------------------------------------------ compare

def test_compare_returns_dlc_compare_json(tmp_path):
    spec = dlc.load(IRIS)
    report = dlc.compare(spec, steps=20)
    assert report["passed"], report["reasons"]
    assert report["steps"] == 20 and report["dtype"] == "float64"
    assert report["initial_weight_max_abs_diff"] == 0.0 and report["max_abs_loss_diff"] <= 1e-10
    r = _dlc("compare", str(IRIS), "--steps", "20", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    assert set(cli) == set(report)
    assert cli["runs"] == report["runs"]
    for backend, losses in report["losses"].items():
        np.testing.assert_allclose(cli["losses"][backend], losses, rtol=0, atol=1e-12)


def test_evaluate_checks_labels_as_training_does():
    """A label out of the output layer's range is a ValueError naming it (a wrong argument, as README says:
    not a dlc.Error that `except dlc.Error` would swallow), not a backend's index error; so are a missing
    label (`[0, None]` was "'int' object has no attribute 'item'") and a nan target."""
    spec = dlc.load(ROOT / "specs" / "iris.dlspec")
    model = dlc.Model(spec, backend="torch")
    x = dlc.load_data(spec).test.x[:4]
    with pytest.raises(ValueError, match=r"label 3 in sample 2 but the output layer has 3 units"):
        model.evaluate(x, np.array([0, 3, 1, 2]))
    with pytest.raises(ValueError, match="is negative"):
        model.evaluate(x, np.array([0, -1, 1, 2]))
    with pytest.raises(ValueError, match=r"a missing label \(None\) in sample 3 is not a class number"):
        model.evaluate(x, [0, 1, None, 2])
    with pytest.raises(ValueError, match=r"a target is missing or not finite \(the first in sample 2\)"):
        model.evaluate(x, np.array([0, np.nan, 1, 2]))
    assert set(model.evaluate(x, np.array([0, 2, 1, 2]))) >= {"loss", "accuracy"}


# ---------------------------------------------------------------------------------------- wrong arguments


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_wrong_arguments_are_plain_python_errors_naming_them(tiny, backend):
    """Wrong types and values get a TypeError or ValueError in dlc's words (not an AttributeError or a
    KeyError from inside), and what `dlc run`/`dlc predict` refuse is refused here too."""
    for bad, kind, text in ((None, TypeError, "load() takes the path of a .dlspec file, not NoneType"),
                            (3, TypeError, "not int")):
        with pytest.raises(kind, match=re.escape(text)):
            dlc.load(bad)
    with pytest.raises(TypeError, match=r"Model\(\) takes a spec \(dlc.load\(PATH\)\) or the path"):
        dlc.Model(3, backend=backend)
    with pytest.raises(ValueError, match=r"dtype='float16': expected one of 'float32', 'float64'"):
        dlc.Model(tiny, backend=backend, dtype="float16")
    with pytest.raises(ValueError, match=r"backend='jax': expected one of 'torch', 'keras'"):
        dlc.Model(tiny, backend="jax")
    model = dlc.Model(str(tiny), backend=backend)  # a path is loaded
    for epochs, kind in ((0, ValueError), (-1, ValueError), (True, TypeError), ("3", TypeError)):
        with pytest.raises(kind, match="epochs must be"):
            model.fit(epochs=epochs)
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        model.fit(max_steps=0)
    with pytest.raises(ValueError, match=r"the inputs hold values that are not finite .*index \(1, 0\)"):
        model.predict(np.array([[0.0, 1.0], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"beyond ±3.4e\+38"):  # (this spec is float64: 1e300 fits it)
        dlc.Model(tiny, backend=backend, dtype="float32").predict(np.full((2, 2), 1e300))
    w = model.get_weights()
    layer, weights = next(iter(w.items()))
    name, value = next(iter(weights.items()))
    with pytest.raises(ValueError, match=f"{layer}.{name} has shape {re.escape(str(value.shape))}, not"):
        model.set_weights({layer: {name: 1}})
    with pytest.raises(ValueError, match="no layer 'dense_9' with weights; did you mean 'dense_"):
        model.set_weights({"dense_9": {name: value}})
    with pytest.raises(ValueError, match=f"layer '{layer}' has no weight 'kernal'"):
        model.set_weights({layer: {"kernal": value}})
    with pytest.raises(ValueError, match=f"{layer}.{name} hold values that are not finite"):
        model.set_weights({layer: {name: np.full(value.shape, np.nan)}})
    assert _same_weights(model.get_weights(), w)  # nothing was set by a refused call
    model.set_weights({layer: {name: value * 2}})
    np.testing.assert_allclose(model.get_weights()[layer][name], value * 2)
    assert len(model.fit(epochs=1).rows) == 1


def test_a_kfold_spec_trains_its_fold_1_with_validation(tmp_path):
    """A kfold spec's Model trains fold 1 as `dlc cv` builds it: early stopping on a val_ metric runs (it
    failed after epoch 1 with 'monitors val_accuracy, which this run does not compute')."""
    text = (ROOT / "specs" / "iris.dlspec").read_text()
    assert "holdout(" in text and "train {" in text
    text = re.sub(r"split: holdout\([^)]*\)", "split: kfold(k=3, stratify=true)", text)
    text = text.replace("train {", "train {\n    early_stopping: (monitor=val_accuracy, patience=2)", 1)
    path = tmp_path / "kf.dlspec"
    path.write_text(text)
    model = dlc.Model(path, backend="torch")
    from dlc.runtime.data import folds

    fold1 = folds(dlc.load(path), tmp_path)[0]
    assert len(model.data.train.x) == len(fold1.train.x) == 100 and len(model.data.val.x) == 50
    # load_data and epoch_order give that fold too: load_data's arrays are normalised as the model's were
    # (all 150 rows' statistics fed it other inputs), and the order is of its 100 samples
    np.testing.assert_array_equal(dlc.load_data(path).val.x, fold1.val.x)
    assert len(dlc.epoch_order(path, 0)) == 100
    hist = model.fit(epochs=3)
    assert len(hist.rows) >= 1 and "val_accuracy" in hist.rows[0]
