"""evaluate / predict / export on trained runs of both backends, and clear errors for bad input files."""

import json

import numpy as np
import pytest

from conftest import ROOT, run_cli


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _dlc(*args):
    """The CLI in-process (the frameworks are imported once for the whole module)."""
    return _Result(*run_cli(*args))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    out = {}
    for spec, backend, epochs in (("iris", "torch", 5), ("iris", "keras", 5), ("digits_cnn", "keras", 1)):
        d = base / f"{spec}-{backend}"
        r = _dlc("run", ROOT / "specs" / f"{spec}.dlspec", "--backend", backend, "--epochs", epochs,
                 "--out", d, "--quiet")
        assert r.returncode == 0, r.stderr
        out[(spec, backend)] = d
    return out


def _iris_features(n=12):
    from sklearn.datasets import load_iris

    d = load_iris()
    return d.data[:n], d.target[:n]


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_predict_csv(runs, tmp_path, backend):
    x, _ = _iris_features()
    f = tmp_path / "x.csv"
    np.savetxt(f, x, delimiter=",", header="a,b,c,d", comments="")
    out = tmp_path / "pred.csv"
    r = _dlc("predict", runs[("iris", backend)], "--input", f, "--output", out)
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "class,p0,p1,p2" and len(lines) == 13
    probs = np.array([[float(v) for v in ln.split(",")[1:]] for ln in lines[1:]])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_same_on_both_backends(runs, tmp_path):
    x, _ = _iris_features()
    f = tmp_path / "x.npz"
    np.savez(f, x=x)
    res = {}
    for backend in ("torch", "keras"):
        out = tmp_path / f"{backend}.npz"
        assert _dlc("predict", runs[("iris", backend)], "--input", f, "--output", out).returncode == 0
        res[backend] = np.load(out)["predictions"]
    assert np.abs(res["torch"] - res["keras"]).max() < 1e-5


@pytest.mark.parametrize("content, message", [
    ("1,2,3\n4,5,6\n", "samples have 3 features, the model takes 4"),
    ("1,2,3,4\n4,5,x,6\n", "row 2, column 3 is not a number"),
    ("1,2,3,4\n4,5,,6\n", "row 2, column 3 is empty (a missing value)"),
    ("1,2,3,4\n4,5,nan,6\n", "row 2, feature 3 is not a finite number"),
    ("1,2,3,4\n4,5,6\n", "rows have different numbers of columns: row 2 has 3, row 1 has 4"),
])
def test_predict_bad_input(runs, tmp_path, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    r = _dlc("predict", runs[("iris", "torch")], "--input", f)
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_predict_missing_file_and_bad_run(runs, tmp_path):
    r = _dlc("predict", runs[("iris", "torch")], "--input", tmp_path / "nope.csv")
    assert r.returncode == 1 and "no such file" in r.stderr
    r = _dlc("predict", tmp_path, "--input", tmp_path / "nope.csv")
    assert r.returncode == 1 and "not a finished run directory" in r.stderr


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_evaluate_matches_metrics_json(runs, backend):
    run = runs[("iris", backend)]
    r = _dlc("evaluate", run, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    saved = json.loads((run / "metrics.json").read_text())
    for part in ("train", "val", "test"):
        assert got[part]["accuracy"] == pytest.approx(saved[part]["accuracy"])
        assert got[part]["loss"] == pytest.approx(saved[part]["loss"], rel=1e-5)


def test_evaluate_on_a_file(runs, tmp_path):
    x, y = _iris_features(150)
    f = tmp_path / "xy.csv"
    np.savetxt(f, np.column_stack([x, y]), delimiter=",")
    r = _dlc("evaluate", runs[("iris", "torch")], "--data", f, "--json")
    assert r.returncode == 0, r.stderr
    assert 0.0 <= json.loads(r.stdout)["data"]["accuracy"] <= 1.0


@pytest.mark.parametrize("key", [("iris", "torch"), ("iris", "keras"), ("digits_cnn", "keras")])
def test_onnx_matches_trained_model(runs, tmp_path, key):
    import onnxruntime as ort

    from dlc.runtime.serve import load_run, preprocess

    run = runs[key]
    out = tmp_path / "m.onnx"
    r = _dlc("export", run, "--format", "onnx", "--output", out)
    assert r.returncode == 0, r.stderr
    spec, session, info = load_run(run)
    if key[0] == "iris":
        x, _ = _iris_features(40)
    else:
        from sklearn.datasets import load_digits

        x = load_digits().data[:40]
    x = x.reshape((len(x),) + tuple(spec.input)).astype(np.float32)
    want = session.predict(preprocess(info, spec, x, "x"))
    got = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    assert np.abs(got - want).max() < 1e-5
