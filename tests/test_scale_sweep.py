"""Defects found by the sweep of the scale paths (--nproc, npy sources, deep and wide models), each with the
check that failed before its fix: a float32 run's one-feature npz features took float32 statistics (other
values than the float64 path and the same arrays as an npy source); a data-parallel torch run's streamed
features were read a share at a time with no read-ahead (the session's plan of whole batches was dropped at
the first share)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.runtime.data import prepare

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
model sweep {
  seed: 3
  dtype: DTYPE
  data {
    source: SOURCE
    normalize: NORM
    split: SPLIT
  }
  input: INPUT
  layers {
    Dense(4, activation=relu)
    Dropout(0.2)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.01)
  train {
    epochs: 1
    batch_size: 7
  }
}
"""
NPY = 'npy("x.npy", "y.npy")'
NPZ = 'npz("d.npz")'


def _write(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    np.savez(folder / "d.npz", x=x, y=y)


def _spec(folder: Path, name: str, source: str, dtype: str = "float64", norm: str = "standard",
          split: str = "holdout(val=0.2, test=0.1)", input_: str = "(1)") -> Path:
    path = folder / f"{name}.dlspec"
    path.write_text(SPEC.replace("SOURCE", source).replace("DTYPE", dtype).replace("NORM", norm)
                    .replace("SPLIT", split).replace("INPUT", input_))
    return path


@pytest.mark.parametrize("shape", [(64,), (64, 1)])
@pytest.mark.parametrize("norm", ["standard", "minmax"])
def test_one_float32_feature_is_normalised_as_in_float64(tmp_path, shape, norm):
    """An npz file's float32 features stay float32 in a float32 run; with one feature they are not held in
    place, and assemble() took their statistics in float32 (the mean 0.9815835 where float64 gives
    0.98158323): values that differed from the float64 path's and from the same arrays in .npy files."""
    rng = np.random.default_rng(0)
    _write(tmp_path, (rng.normal(size=shape) * 40).astype(np.float32), rng.integers(0, 3, shape[0]))
    for split in ("holdout(val=0.2, test=0.1)", "kfold(k=3)"):
        want = prepare(dlc.load(_spec(tmp_path, "w", NPZ, "float32", norm, split)), tmp_path)  # (float64)
        for source in (NPZ, NPY):
            got = prepare(dlc.load(_spec(tmp_path, "a", source, "float32", norm, split)), tmp_path, "float32")
            assert np.array_equal(got.shift, want.shift) and np.array_equal(got.scale, want.scale), source
            assert got.shift.dtype == np.float64
            for part in ("train", "val", "test"):
                a, b = getattr(got, part), getattr(want, part)
                assert (a is None) == (b is None)
                if a is not None:
                    assert np.array_equal(np.asarray(a.x).astype(np.float32), b.x.astype(np.float32)), part


def test_a_data_parallel_share_of_streamed_features_is_read_ahead(tmp_path, monkeypatch):
    """Rank 1 of 2 (the sum over the processes replaced by one process's values): every share of the
    epoch's batches is read in the reading thread, ahead of its step (they were all read in the training
    thread, after the session's plan of whole batches was dropped), and trains as the same rows in memory."""
    pytest.importorskip("torch")
    from dlc.backends import session_class
    from dlc.backends.distributed import Worker
    from dlc.backends.torch import distributed
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import StreamedRows

    monkeypatch.setattr(distributed, "_all_reduce", lambda t: None)  # (one process: the sum is its own)
    rng = np.random.default_rng(4)
    _write(tmp_path, rng.normal(size=(50, 5)), rng.integers(0, 3, 50))
    reads: list[tuple[str, list[int]]] = []
    take = StreamedRows.take

    def recorded(self, indices):
        if len(indices):  # (load_data reads none, for the dtype)
            reads.append((threading.current_thread().name, list(np.asarray(indices))))
        return take(self, indices)

    monkeypatch.setattr(StreamedRows, "take", recorded)
    results = []
    for source in (NPY, NPZ):
        spec = dlc.load(_spec(tmp_path, source[:3], source, input_="(5)", split="holdout(val=0.3)"))
        data = prepare(spec, tmp_path, "float64")
        session = session_class("torch")(spec, weights=initial_weights(spec))
        distributed.wrap(session, Worker(rank=1, world=2))
        perm = np.random.default_rng(1).permutation(len(data.train.y))  # 35 samples: 5 batches of 7
        reads.clear()
        losses, stats, sizes = session.train_epoch(session.load_data(data.train.x, data.train.y), perm, 7)
        results.append((losses, stats, session.get_weights()))
        if source == NPY:
            shares = [list(perm[i + 4:i + 7]) for i in range(0, 35, 7)]  # (rank 1 takes 3 of each 7)
            assert [rows for _, rows in reads][-5:] == shares
            assert all(name.startswith("dlc-batches") for name, _ in reads), reads
    (la, sa, wa), (lb, sb, wb) = results
    assert np.array_equal(la, lb) and np.array_equal(sa, sb)
    assert all(np.array_equal(wa[k][w], wb[k][w]) for k in wa for w in wa[k])


@pytest.mark.parametrize("x,want", [
    (np.zeros((0, 5)), "p.npy: no samples"),
    (np.array([["a"] * 5] * 4), "p.npy: holds <U1 values, not numbers"),
    (np.zeros((4, 0)), "p.npy: holds samples with no features (shape (4, 0))"),
])
def test_an_npy_file_to_predict_is_not_called_an_array_x(tmp_path, x, want):
    """`dlc predict --input p.npy` (and an npy source's words): an .npy file holds one array of no name;
    its errors said "p.npy: array 'x' has no samples", naming an array 'x' the file does not have."""
    from dlc.runtime.data import DataError, numeric_features

    np.save(tmp_path / "p.npy", x)
    with pytest.raises(DataError) as e:
        numeric_features(tmp_path / "p.npy", np.load(tmp_path / "p.npy"), "x")
    assert str(e.value).startswith(str(tmp_path / want)) and "array" not in str(e.value)
    with pytest.raises(DataError, match="d.npz: array 'x' "):  # (an archive's arrays are named)
        numeric_features(tmp_path / "d.npz", x, "x")


@pytest.mark.slow  # (15-25 s: a one-process and a two-process run)
def test_streamed_features_on_two_torch_processes_equal_one_in_memory(tmp_path):
    """`dlc run --nproc 2` of an npy source (read a share at a time, ahead of its step) with a last batch of
    one sample, Dropout and a plateau: the per-epoch numbers and final weights of one process on the same
    arrays in an .npz (float64, relative 1e-9)."""
    import json
    import subprocess
    import sys

    pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    _write(tmp_path, rng.normal(size=(50, 5)), rng.integers(0, 3, 50))  # 35 train: 17, 17, 1
    runs = {}
    for name, source, nproc in (("one", NPZ, 1), ("two", NPY, 2)):
        text = _spec(tmp_path, name, source, input_="(5)", split="holdout(val=0.3)").read_text()
        (tmp_path / f"{name}.dlspec").write_text(text.replace("epochs: 1", "epochs: 3").replace(
            "batch_size: 7", "batch_size: 17").replace("train {", "schedule: plateau(patience=1)\n  train {"))
        r = subprocess.run([sys.executable, "-m", "dlc", "run", str(tmp_path / f"{name}.dlspec"), "--nproc",
                            str(nproc), "--out", str(tmp_path / name), "--quiet"], capture_output=True,
                           text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        runs[name] = json.loads((tmp_path / name / "history.json").read_text())
    for a, b in zip(runs["one"], runs["two"], strict=True):
        for k in a:
            if k not in ("time_s", "samples_per_s"):
                assert abs(a[k] - b[k]) <= 1e-9 * max(abs(a[k]), abs(b[k]), 1e-12), (k, a[k], b[k])
    one, two = (tmp_path / name / "checkpoint.npz" for name in ("one", "two"))
    with np.load(one) as f1, np.load(two) as f2:
        for k in (k for k in f1.files if k.startswith("s:w/")):
            assert np.abs(f1[k] - f2[k]).max() <= 1e-9 * max(float(np.abs(f1[k]).max()), 1e-12), k
