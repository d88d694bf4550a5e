"""npy("x.npy", "y.npy"): features read from the file a batch at a time. The same arrays as an .npz file
train to the same numbers, bit for bit (float64 and float32, both backends, standard and minmax statistics,
holdout with val and test, k-fold, augmentation); `dlc check` reads the files' headers and positions its
errors; a run, its evaluation and predictions work from the command line; a bad file is one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.runtime.data import DataError, FileRows, StreamedRows, prepare
from dlc.runtime.data.stream import open_rows

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
model streamed {
  seed: 3
  dtype: DTYPE
  data {
    source: SOURCE
    normalize: NORM
    split: SPLIT
    AUGMENT
  }
  input: INPUT
  layers {
    LAYERS
    Dense(8, activation=relu)
    Dropout(0.2)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.01)
  train {
    epochs: 2
    batch_size: 16
  }
}
"""
NPY = 'npy("x.npy", "y.npy")'
NPZ = 'npz("d.npz")'


def _write(folder: Path, x: np.ndarray | None = None, y: np.ndarray | None = None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(150, 6)) * 3 + 1 if x is None else x
    y = rng.integers(0, 3, len(x)) if y is None else y
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    np.savez(folder / "d.npz", x=x, y=y)


def _spec(folder: Path, name: str, source: str, dtype: str = "float64", norm: str = "standard",
          split: str = "holdout(val=0.2, test=0.1)", augment: str = "", input_: str = "(6)",
          layers: str = "") -> Path:
    text = (SPEC.replace("SOURCE", source).replace("DTYPE", dtype).replace("NORM", norm)
            .replace("SPLIT", split).replace("AUGMENT", augment).replace("INPUT", input_)
            .replace("LAYERS", layers))
    path = folder / f"{name}.dlspec"
    path.write_text(text)
    return path


def _fit(path: Path, backend: str):
    model = dlc.Model(dlc.load(path), backend=backend)
    hist = model.fit()
    return model, hist


def _same_training(a, b, tol: float = 0.0) -> None:
    (ma, ha), (mb, hb) = a, b
    la, lb = np.array(ha.step_losses), np.array(hb.step_losses)
    assert la.shape == lb.shape and np.abs(la - lb).max() <= tol
    assert [r["val_loss"] for r in ha.rows] == pytest.approx([r["val_loss"] for r in hb.rows], abs=tol, rel=0)
    wa, wb = ma.get_weights(), mb.get_weights()
    for layer in wa:
        for w in wa[layer]:
            assert np.abs(wa[layer][w] - wb[layer][w]).max() <= tol, (layer, w)


# ------------------------------------------------------------------------------------------------- the data


@pytest.mark.parametrize("xdtype", ["float64", "float32", "int16"])
@pytest.mark.parametrize("norm", ["standard", "minmax", "none"])
def test_parts_equal_the_in_memory_ones(tmp_path, xdtype, norm):
    x = (np.random.default_rng(1).normal(size=(120, 6)) * 50).astype(xdtype)
    _write(tmp_path, x)
    for dtype in (None, "float32", "float64"):
        a = prepare(dlc.load(_spec(tmp_path, "a", NPY, dtype or "float64", norm)), tmp_path, dtype)
        b = prepare(dlc.load(_spec(tmp_path, "b", NPZ, dtype or "float64", norm)), tmp_path, dtype)
        assert (a.shift is None) == (b.shift is None)
        if a.shift is not None:
            assert np.array_equal(a.shift, b.shift) and np.array_equal(a.scale, b.scale)
        for part in ("train", "val", "test"):
            sa, sb = getattr(a, part), getattr(b, part)
            assert isinstance(sa.x, StreamedRows)
            want = np.asarray(sb.x).astype(dtype or "float64")  # (a backend rounds in-memory data so)
            assert sa.x.shape == want.shape and sa.x.dtype == want.dtype
            assert np.array_equal(np.asarray(sa.x), want)
            assert np.array_equal(sa.x[[3, 0, 5]], want[[3, 0, 5]]) and np.array_equal(sa.x[2:7], want[2:7])
            assert np.array_equal(sa.y, sb.y) and np.array_equal(sa.labels, sb.labels)


def test_a_part_holds_no_copy_of_the_features(tmp_path):
    """The parts read rows from the file on request; the file is never mapped into the process."""
    _write(tmp_path)
    data = prepare(dlc.load(_spec(tmp_path, "a", NPY)), tmp_path, "float32")
    rows = data.train.x
    assert isinstance(rows, StreamedRows) and isinstance(rows.source, FileRows)
    assert rows.take(np.arange(4)).dtype == np.float32
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(tmp_path / "x.npy") not in maps.read_text()


@pytest.mark.parametrize("dtype", ["float64", ">f4", "int16", "bool"])
def test_rows_are_the_ones_numpy_indexes(tmp_path, dtype):
    """Rows in any order, repeated, negative, in runs and alone, and slices with steps: numpy's rows."""
    x = (np.random.default_rng(1).normal(size=(97, 3, 2)) * 5).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    rows, flat = open_rows(tmp_path / "x.npy"), x.reshape(97, -1)
    assert rows.shape == (97, 6) and len(rows) == 97
    order = np.random.default_rng(2).permutation(97)
    for ix in (order, order[:10], [5, 5, 4, 96, 0, 1, 2, 3], [-1, -97, 3], np.arange(20, 40), [],
               np.array([7])):
        got = rows[ix]
        assert got.dtype == flat.dtype and np.array_equal(got, flat[np.asarray(ix, dtype=int)])
    for sl in (slice(None), slice(3, 9), slice(90, 200), slice(None, None, 7), slice(50, 10, -3),
               slice(5, 5)):
        assert np.array_equal(rows[sl], flat[sl])
    for bad in ([97], [-98]):
        with pytest.raises(IndexError):
            rows[bad]


def test_a_file_changed_under_a_run_is_a_data_error(tmp_path):
    """A memory map dies of SIGBUS when its file is cut short while a run reads it; read as it goes, a file
    cut short, or rewritten at the same size, is one line that says what happened."""
    _write(tmp_path)
    x = np.load(tmp_path / "x.npy")
    rows = open_rows(tmp_path / "x.npy")
    np.save(tmp_path / "x.npy", x[:10])  # (cut short)
    with pytest.raises(DataError, match="x.npy changed while this run was reading it") as e:
        rows[np.arange(100, 120)]
    assert "\n" not in str(e.value)
    np.save(tmp_path / "x.npy", x)
    rows = open_rows(tmp_path / "x.npy")
    assert np.array_equal(rows[:5], x[:5])
    np.save(tmp_path / "x.npy", x * 10)  # (the same size, other values)
    os.utime(tmp_path / "x.npy", ns=(rows.stamp[1] + 10**9, rows.stamp[1] + 10**9))
    with pytest.raises(DataError, match="changed while"):
        rows[:5]


def test_a_file_cut_short_during_dlc_run_is_exit_1_with_the_folder_kept(tmp_path):
    """The command line: one line, exit 1, the run folder and its history kept (it was a Bus error, 135)."""
    import json
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(0)
    _write(tmp_path, rng.normal(size=(4000, 6)), rng.integers(0, 3, 4000))
    spec = _spec(tmp_path, "a", NPY, dtype="float32").read_text().replace("epochs: 2", "epochs: 400")
    (tmp_path / "a.dlspec").write_text(spec)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "run", str(tmp_path / "a.dlspec"), "--backend",
                             "torch", "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    history = run / "history.csv"
    deadline = time.monotonic() + 120
    while not (history.exists() and len(history.read_text().splitlines()) > 2) and proc.poll() is None:
        assert time.monotonic() < deadline, "no epoch was written"
        time.sleep(0.05)
    np.save(tmp_path / "x.npy", np.zeros((3, 6)))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "x.npy changed while this run was reading it" in lines[0], err
    assert "Traceback" not in err and history.exists()
    assert json.loads((run / "run.json").read_text())


def test_batches_read_ahead_are_the_batches_asked_for(tmp_path):
    from dlc.backends.session import BatchReader

    _write(tmp_path)
    rows = prepare(dlc.load(_spec(tmp_path, "a", NPY)), tmp_path, "float32").train.x
    reader = BatchReader(rows)
    perm = np.random.default_rng(2).permutation(len(rows))
    reader.plan(perm, 32)
    for i in range(0, 64, 32):  # on the plan: read ahead
        assert np.array_equal(reader.read(perm[i:i + 32]), rows[perm[i:i + 32]])
    assert np.array_equal(reader.read(perm[:5]), rows[perm[:5]])  # off the plan: it is dropped
    assert reader._plan is None
    assert np.array_equal(reader.read(slice(3, 9)), rows[3:9])
    reader.plan(perm[:40], 32)
    for i in (0, 32):
        assert np.array_equal(reader.read(perm[i:i + 32][:40 - i]), rows[perm[i:min(i + 32, 40)]])
    assert reader._plan is None  # (the plan ends with its last batch)


# ------------------------------------------------------------------------------------ training, bit for bit


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("norm", ["standard", "minmax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_equals_the_npz_run(tmp_path, backend, norm, dtype):
    _write(tmp_path)
    a = _fit(_spec(tmp_path, "a", NPY, dtype, norm), backend)
    b = _fit(_spec(tmp_path, "b", NPZ, dtype, norm), backend)
    _same_training(a, b)
    (ma, _), (mb, _) = a, b
    assert ma.evaluate(ma.data.test.x, ma.data.test.y) == mb.evaluate(mb.data.test.x, mb.data.test.y)
    assert np.array_equal(ma.predict(ma.data.test.x), mb.predict(mb.data.test.x))


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_augmented_training_equals_the_npz_run(tmp_path, backend):
    rng = np.random.default_rng(5)
    _write(tmp_path, rng.normal(size=(96, 4, 4, 1)), rng.integers(0, 3, 96))
    aug = "augment: [flip(horizontal=true, vertical=true), shift(0.25), crop(4, padding=1)]"
    kw = dict(augment=aug, input_="(4, 4, 1)", layers="Flatten()")
    _same_training(_fit(_spec(tmp_path, "a", NPY, **kw), backend),
                   _fit(_spec(tmp_path, "b", NPZ, **kw), backend))


@pytest.mark.slow  # (9 s)
def test_conv_residual_training_equals_the_npz_run_on_keras(tmp_path):
    """A float64 conv model with nested residual blocks and BatchNorm, k-fold (fold 1), on keras: the batches
    read on the host train through the resident data's step graph (Trainer.train_step) to the npz run's
    numbers (a sweep once reported a 1-ulp difference for such a model; not reproduced)."""
    rng = np.random.default_rng(8)
    _write(tmp_path, rng.normal(size=(100, 6, 6, 1)) * 2 + 1, rng.integers(0, 3, 100))
    layers = """Conv2D(4, (3, 3), padding=same, use_bias=false)
    BatchNorm()
    Activation(relu)
    residual {
      Conv2D(4, (3, 3), padding=same, activation=relu)
      residual {
        Conv2D(4, (3, 3), padding=same, use_bias=false)
        BatchNorm()
      }
    }
    MaxPool2D((2, 2))
    Flatten()"""
    kw = dict(split="kfold(k=3)", input_="(6, 6, 1)", layers=layers)
    _same_training(_fit(_spec(tmp_path, "a", NPY, **kw), "keras"),
                   _fit(_spec(tmp_path, "b", NPZ, **kw), "keras"))


@pytest.mark.parametrize("case", ["regression", "onehot", "one_feature", "int_images"])
def test_other_targets_and_shapes_equal_the_npz_run(tmp_path, case):
    rng = np.random.default_rng(11)
    n = 90
    kw: dict = {}
    edits: list[tuple[str, str]] = []
    if case == "regression":
        x, y = rng.normal(size=(n, 6)), rng.normal(size=(n, 2))
        edits = [("Dense(3, activation=softmax)", "Dense(2)"), ("sparse_categorical_crossentropy", "mse"),
                 ("[accuracy]", "[mae]")]
    elif case == "onehot":
        x, y = rng.normal(size=(n, 6)), np.eye(3)[rng.integers(0, 3, n)]
        edits = [("sparse_categorical_crossentropy", "categorical_crossentropy")]
    elif case == "one_feature":
        x, y = rng.normal(size=n) * 5, rng.integers(0, 3, n)
        kw = {"input_": "(1)"}
    else:  # uint8 images (N, 4, 4), the input (4, 4, 1)
        x, y = rng.integers(0, 256, (n, 4, 4)).astype(np.uint8), rng.integers(0, 3, n)
        kw = {"input_": "(4, 4, 1)", "layers": "Flatten()", "norm": "minmax"}
    _write(tmp_path, x, y)
    paths = [_spec(tmp_path, name, source, **kw) for name, source in (("a", NPY), ("b", NPZ))]
    for path in paths:
        text = path.read_text()
        for old, new in edits:
            text = text.replace(old, new)
        path.write_text(text)
    _same_training(_fit(paths[0], "torch"), _fit(paths[1], "torch"))


def test_kfold_cv_equals_the_npz_run(tmp_path):
    _write(tmp_path)
    split = "kfold(k=3, test=0.2)"
    rows = []
    for name, source in (("a", NPY), ("b", NPZ)):
        rc, out, err = run_cli("cv", _spec(tmp_path, name, source, split=split), "--backend", "torch",
                               "--out", tmp_path / f"cv_{name}")
        assert rc == 0, err
        import json

        rows.append(json.loads((tmp_path / f"cv_{name}" / "cv.json").read_text()))
    drop = {"time_s", "samples_per_s"}

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if k not in drop}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    assert clean(rows[0]["folds"]) == clean(rows[1]["folds"])


# --------------------------------------------------------------------------------------- the command line


def test_check_accepts_it_and_positions_its_errors(tmp_path):
    _write(tmp_path)
    rc, out, err = run_cli("check", _spec(tmp_path, "ok", NPY))
    assert rc == 0, err
    cases = {
        'npy("x.npy")': ("E202", "npy is missing its required argument 'y'"),
        'npy("x.npy", "y.npy", "z.npy")': ("E203", "npy takes 2 positional arguments, got 3"),
        'npy("x.npy", 3)': ("E201", "invalid value for 'y' of npy"),
        'npy("x.npy", "nope.npy")': ("E401", "cannot read data file 'nope.npy': no such file"),
        'npy("d.npz", "y.npy")': ("E401", "cannot read data file 'd.npz': not an .npy file"),
        'npy("x.npy", "short.npy")': ("E401", "'x.npy' has 150 samples but 'short.npy' has 149"),
        'npy("text.npy", "y.npy")': ("E401", "'text.npy' holds <U1 values, not numbers"),
    }
    np.save(tmp_path / "short.npy", np.zeros(149))
    np.save(tmp_path / "text.npy", np.array([["a"] * 6] * 150))
    for source, (code, message) in cases.items():
        path = _spec(tmp_path, "bad", source)
        rc, out, err = run_cli("check", path)
        assert rc == 2 and f"error[{code}]: {message}" in err, (source, err)
        assert f"{path.name}:5:" in err  # the line of the source, with a column
    rc, out, err = run_cli("check", _spec(tmp_path, "wide", NPY, input_="(7)"))
    assert rc == 2 and "'x.npy' samples have 6 features" in err and "use input: (6)" in err


def test_search_relocates_both_paths(tmp_path):
    from dlc.compiler import compile_file
    from dlc.compiler.search import data_paths

    _write(tmp_path)
    result = compile_file(_spec(tmp_path, "a", 'npy(x="x.npy", y="y.npy")'))
    assert [s.value for s in data_paths(result.tree.models[0])] == ["x.npy", "y.npy"]
    result = compile_file(_spec(tmp_path, "b", NPY))
    assert [s.value for s in data_paths(result.tree.models[0])] == ["x.npy", "y.npy"]


def test_run_evaluate_and_predict_from_the_command_line(tmp_path):
    _write(tmp_path)
    spec = _spec(tmp_path, "a", NPY, dtype="float32")
    rc, out, err = run_cli("run", spec, "--backend", "torch", "--out", tmp_path / "run")
    assert rc == 0, err
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    rc, out, err = run_cli("evaluate", tmp_path / "run")
    assert rc == 0, err
    assert f"{metrics['test']['loss']:.4f}" in out
    np.save(tmp_path / "new.npy", np.load(tmp_path / "x.npy")[:5])
    rc, out, err = run_cli("predict", tmp_path / "run", "--input", tmp_path / "new.npy")
    assert rc == 0, err
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 5


@pytest.mark.parametrize("case", ["missing", "length", "text", "nan", "notnpy", "overflow", "minmax_val"])
def test_bad_files_are_one_line(tmp_path, case):
    _write(tmp_path)
    spec = dlc.load(_spec(tmp_path, "a", NPY))
    x = np.load(tmp_path / "x.npy")
    if case == "missing":
        (tmp_path / "y.npy").unlink()
        want = "cannot read data file"
    elif case == "length":
        np.save(tmp_path / "y.npy", np.zeros(10, dtype=int))
        want = "x.npy has 150 samples but"
    elif case == "text":
        np.save(tmp_path / "x.npy", np.array([["a"] * 6] * 150))
        want = "holds <U1 values, not numbers"
    elif case == "nan":
        x[7, 2] = np.nan
        np.save(tmp_path / "x.npy", x)
        want = "1 feature value(s) are missing or not finite (the first in sample 8, feature 3)"
    elif case == "overflow":  # (found from each feature's extremes; the first such value is then named)
        x[[40, 9], 4] = [1e39, -2e39]
        np.save(tmp_path / "x.npy", x)
        spec = dlc.load(_spec(tmp_path, "a", NPY, "float32", "none"))
        want = "sample 10, feature 5 is -2e+39 after normalize: none, beyond what float32 holds"
    elif case == "minmax_val":  # a value far outside the training part's range, normalised beyond float32
        x[:, 0] = np.linspace(0, 1e-300, len(x))
        x[99, 0] = 1e300
        np.save(tmp_path / "x.npy", x)
        spec = dlc.load(_spec(tmp_path, "a", NPY, "float32", "minmax", "holdout(val=0.5)"))
        train_rows = prepare(dlc.load(_spec(tmp_path, "b", NPY, "float64", "none", "holdout(val=0.5)")),
                             tmp_path, "float64").train.x.index
        assert 99 not in train_rows  # (else the range holds it: pick another row)
        want = "sample 100, feature 1 is"
    else:
        (tmp_path / "x.npy").write_bytes(b"PK\x03\x04 not an npy file")
        want = "not an .npy file"
    with pytest.raises(DataError, match=None) as e:
        prepare(spec, tmp_path, "float32")
    assert want in str(e.value) and "\n" not in str(e.value)
    if case == "nan":  # (a spec error first, as the others: `dlc check` reads a small file's features)
        rc, out, err = run_cli("run", tmp_path / "a.dlspec", "--backend", "torch", "--out", tmp_path / "r")
        assert rc == 2 and f"error[E401]: 'x.npy': {want}" in err and "Traceback" not in err, err


def test_emitted_script_reads_npy_and_matches(tmp_path):
    """The emitted script reads the two files whole (read_npy) and trains to the run's step losses."""
    import json
    import subprocess
    import sys

    _write(tmp_path)
    spec = _spec(tmp_path, "a", NPY, dtype="float32")
    rc, out, err = run_cli("compile", spec, "--emit", "torch", "-o", tmp_path / "a.py")
    assert rc == 0, err
    assert "read_npy(" in (tmp_path / "a.py").read_text()
    proc = subprocess.run([sys.executable, str(tmp_path / "a.py"), "--losses", str(tmp_path / "l.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, hist = _fit(spec, "torch")
    assert json.loads((tmp_path / "l.json").read_text()) == hist.step_losses


def test_features_of_no_values_are_named_at_run_time(tmp_path):
    """A file that passed the check and then lost its features' values: the check's words, not a count."""
    _write(tmp_path)
    spec = dlc.load(_spec(tmp_path, "a", NPY))
    np.save(tmp_path / "x.npy", np.zeros((150, 0)))
    with pytest.raises(DataError, match=r"x.npy: holds samples with no features \(shape \(150, 0\)\)"):
        prepare(spec, tmp_path, "float32")
