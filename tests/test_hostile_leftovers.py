"""Leftovers of the hostile-input passes around run folders: a folder of runs with a stray run file in it, a
DLC_TUNE_WORKER that is no mode, lock files left behind (and the race of removing one), a swapped model file
`dlc runs` called done, MNIST images of no pixels, and data that fails to load before a run folder exists."""

from __future__ import annotations

import json
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_run_folders import one_line

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
model tiny {
  seed: 3
  data {
    source: SOURCE
    split: holdout(val=0.2)
  }
  input: (INPUT)
  layers {
    Dense(2, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 1
    batch_size: 16
  }
}
"""


def write_spec(folder: Path, source: str = 'npz("data.npz")', inputs: str = "3") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(folder / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    path = folder / "tiny.dlspec"
    path.write_text(SPEC.replace("SOURCE", source).replace("INPUT", inputs))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder of two finished runs of the same model: `a` (seed 3) and `b` (seed 4)."""
    base = tmp_path_factory.mktemp("leftovers")
    spec = write_spec(base / "spec")
    for name, seed in (("a", "3"), ("b", "4")):
        rc, _, err = run_cli("run", spec, "--out", base / "runs" / name, "--quiet", "--seed", seed)
        assert rc == 0, err
    return base / "runs"


def listed(folder: Path) -> dict[str, str]:
    rc, out, err = run_cli("runs", folder, "--json")
    assert rc == 0, err
    return {Path(r["run"]).name: r["status"] for r in json.loads(out)}


# ------------------------------------------------------------------ 1. a stray run file in a folder of runs


@pytest.mark.parametrize("stray", ["ir.json", "run.json", "history.json"])
def test_a_folder_of_runs_with_a_stray_run_file_lists_its_runs(runs, tmp_path, stray):
    folder = tmp_path / "runs"
    shutil.copytree(runs, folder)
    shutil.copy(runs / "a" / stray, folder / stray)  # (a run file copied up one folder by mistake)
    assert listed(folder) == {"a": "done", "b": "done"}
    # runs named 1 and 2 (trials are numbered so, but only inside a tune folder's trials/)
    for name in ("a", "b"):
        (folder / name).rename(folder / {"a": "1", "b": "2"}[name])
    assert listed(folder) == {"1": "done", "2": "done"}
    # a run folder itself is still one run
    assert listed(folder / "1") == {"1": "done"}


# ------------------------------------------------------------------------------------ 2. DLC_TUNE_WORKER


def test_a_tune_worker_mode_that_is_none_is_refused(tmp_path, monkeypatch):
    from dlc.runtime.tune import TuneError, _worker_mode

    spec = Path(__file__).resolve().parents[1] / "specs" / "tune" / "iris_tune.dlspec"
    monkeypatch.setenv("DLC_TUNE_WORKER", "bogus")
    with pytest.raises(TuneError, match="DLC_TUNE_WORKER='bogus' is not one of fork, subprocess"):
        _worker_mode()
    rc, out, err = run_cli("tune", spec, "--out", tmp_path / "t", "--trials", "1", "--quiet")
    assert rc == 2 and "DLC_TUNE_WORKER='bogus'" in one_line(err) and out == ""
    assert not (tmp_path / "t").exists()  # (refused before any folder is made)
    for fine in ("fork", "subprocess", ""):
        monkeypatch.setenv("DLC_TUNE_WORKER", fine)
        assert _worker_mode() in ("fork", "subprocess")


# ---------------------------------------------------------------------------------------------- 3. lock files


def test_a_run_leaves_no_lock_file(runs):
    from dlc.runtime.runlock import LOCK, busy

    assert not (runs / "a" / LOCK).exists()
    assert busy(runs / "a") is None and not (runs / "a" / LOCK).exists()


def test_a_study_lock_leaves_no_file_in_the_cache(tmp_path, monkeypatch):
    from dlc.runtime.tune import _StudyLock, lock_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "run").mkdir()
    (tmp_path / "data").mkdir()
    path = lock_path(tmp_path / "data" / "mine.db", tmp_path / "run")
    for _ in range(3):
        with _StudyLock(None, f"sqlite:///{tmp_path / 'data' / 'mine.db'}", "s", tmp_path / "run"):
            assert path.is_file()
        assert not path.exists()
    assert list((tmp_path / "cache" / "dlc" / "locks").iterdir()) == []


def test_removing_a_lock_file_a_waiter_opened_never_gives_two_holders(tmp_path):
    """A holds the lock; B opens the file and waits; A lets go and removes the file; B gets the lock of the
    removed file, and must not count it: while B holds the lock, C cannot take it (flock locks of one file
    conflict between two opens in one process as between processes)."""
    from dlc.runtime.runlock import locked

    path = tmp_path / "x.dlc-lock"
    holding, release_b, done = threading.Event(), threading.Event(), threading.Event()

    def b():
        with locked(path):
            holding.set()
            release_b.wait(10)
        done.set()

    with locked(path):
        t = threading.Thread(target=b)
        t.start()
        time.sleep(0.3)  # (B has opened the file and waits in flock)
        assert not holding.is_set()
    assert holding.wait(10)
    with pytest.raises(BlockingIOError), locked(path, wait=False):
        pass
    release_b.set()
    t.join(10)
    assert done.is_set() and not path.exists()
    with locked(path, wait=False):  # (free again)
        assert path.is_file()


# ------------------------------------------------------------------------------- 4. a swapped model file


def test_runs_says_a_swapped_model_file_is_damaged_as_evaluate_does(runs, tmp_path):
    swapped = tmp_path / "swapped"
    shutil.copytree(runs / "a", swapped)
    shutil.copy(runs / "b" / "model.pt", swapped / "model.pt")  # (the same shapes: it loads without error)
    rc, _, err = run_cli("evaluate", swapped)
    refused = one_line(err)
    assert rc == 1 and "model.pt is not the file this run saved" in refused
    status = listed(swapped)["swapped"]
    assert status.startswith("damaged: ") and status.removeprefix("damaged: ") in refused
    # a finished run whose model.json lost its digests' table: damaged too, not done
    model = json.loads((swapped / "model.json").read_text())
    model["sha256"] = "x"
    (swapped / "model.json").write_text(json.dumps(model))
    assert listed(swapped)["swapped"].startswith("damaged: model.json is damaged (its sha256 is not a table")


# ------------------------------------------------------------------------------- 5. MNIST images of no pixels


def _idx(folder: Path, rows: int, cols: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", 20), ("t10k", 10)):
        (folder / f"{part}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, rows, cols)
                                                           + bytes(n * rows * cols))
        (folder / f"{part}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + bytes(n))


def test_mnist_images_of_no_pixels_are_named_as_npz_features_of_no_values(tmp_path):
    from dlc.compiler.datafiles import no_features
    from dlc.runtime.data.base import DataError
    from dlc.runtime.data.files import read_mnist

    _idx(tmp_path / "m", 0, 0)
    np.savez(tmp_path / "m.npz", x_train=np.zeros((5, 0, 0), np.uint8), y_train=np.zeros(5, np.uint8),
             x_test=np.zeros((3, 0, 0), np.uint8), y_test=np.zeros(3, np.uint8))
    wording = no_features((20, 0, 0))
    assert wording is not None
    for source, shape in (('mnist("m")', (20, 0, 0)), ('mnist("m.npz")', (5, 0, 0))):
        spec = write_spec(tmp_path, source)
        rc, _, err = run_cli("check", spec)
        assert rc == 2 and "error[E401]" in err and no_features(shape) in err, err
        assert "use input: (0)" not in err and "E303" not in err
    for where, shape in ((tmp_path / "m", (20, 0, 0)), (tmp_path / "m.npz", (5, 0, 0))):
        with pytest.raises(DataError) as e:
            read_mnist(where)
        assert str(no_features(shape)) in str(e.value)
    _idx(tmp_path / "ok", 1, 3)  # (images of pixels still read)
    assert read_mnist(tmp_path / "ok")[0].shape == (30, 3)


# ------------------------------------------------------------------- 6. data that fails to load at run time


def test_data_gone_between_check_and_training_makes_no_run_folder_and_claims_none(tmp_path):
    from dlc.cli.errors import report
    from dlc.compiler import compile_file
    from dlc.runtime.data.base import DataError
    from dlc.runtime.run import train_run

    spec = write_spec(tmp_path)
    result = compile_file(spec)
    assert result.ok
    (tmp_path / "data.npz").unlink()  # (after `dlc check` passed)
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:
        train_run(result.spec, "torch", str(spec), tmp_path, out=str(out))
    assert not out.exists()  # (nothing had started: no folder, so none to keep)
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert report(e.value) == 1
    line = one_line(err.getvalue())
    assert "data.npz" in line and "run directory" not in line
    # the command line: `dlc run` checks first (exit 2), and makes no folder either
    rc, _, err_text = run_cli("run", spec, "--out", out, "--quiet")
    assert rc == 2 and "E401" in err_text and not out.exists()


def test_data_gone_before_a_resume_leaves_the_run_as_it_was(runs, tmp_path):
    base = tmp_path / "spec"
    spec = write_spec(base)
    run = tmp_path / "run"
    rc, _, err = run_cli("run", spec, "--out", run, "--quiet")
    assert rc == 0, err
    info = json.loads((run / "run.json").read_text())
    info["finished"] = None  # (as if killed before its end)
    (run / "run.json").write_text(json.dumps(info))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    (base / "data.npz").unlink()
    rc, _, err = run_cli("run", "--resume", run)
    assert rc == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("dlc: error: ") and "data.npz" in last
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


# ------------------------------------------------------------------------------- further hostile run folders


def _copy(runs: Path, tmp_path: Path, name: str, finished: bool = True) -> Path:
    run = tmp_path / name
    shutil.copytree(runs / "a", run)
    if not finished:  # (as if killed before its end: --resume continues it)
        info = json.loads((run / "run.json").read_text())
        info["finished"] = None
        (run / "run.json").write_text(json.dumps(info))
    return run


def _edit(path: Path, **changes) -> None:
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


def test_runs_lists_foreign_values_in_run_files_without_a_traceback(runs, tmp_path):
    _edit(_copy(runs, tmp_path, "env_int") / "env.json", backend=7)
    _edit(_copy(runs, tmp_path, "metrics_str") / "metrics.json", test="bad")
    (_copy(runs, tmp_path, "rows") / "history.json").write_text('[1, "x"]')
    (_copy(runs, tmp_path, "no_epoch") / "history.json").write_text('[{"loss": 1.0}]')
    for name, file in (("dot", "."), ("up", "../a/model.pt"), ("int", 5)):
        _edit(_copy(runs, tmp_path, f"file_{name}") / "model.json", file=file)
    folder = _copy(runs, tmp_path, "pt_folder")
    (folder / "model.pt").unlink()
    (folder / "model.pt").mkdir()
    rows = listed(tmp_path)
    assert rows["env_int"] == rows["metrics_str"] == "done"
    assert rows["rows"] == "damaged: history.json is damaged (row 1 is 1, not an epoch's values)"
    assert rows["no_epoch"] == "damaged: history.json is damaged (row 1 has no epoch number)"
    assert rows["file_dot"] == \
        'damaged: model.json is damaged (its file is ".", not the name of a file in the run)'
    assert rows["file_up"].startswith('damaged: model.json is damaged (its file is "../a/model.pt"')
    assert rows["file_int"].startswith("damaged: model.json is damaged (its file is 5,")
    assert rows["pt_folder"] == "damaged: model.pt is a folder, not the model file"
    rc, _, err = run_cli("plot", tmp_path / "rows", "--out", tmp_path / "p.png")
    assert rc == 1 and "history.json is damaged (row 1 is 1" in one_line(err)


def test_runs_says_what_evaluate_refuses_in_run_json(runs, tmp_path):
    run = _copy(runs, tmp_path, "jax")
    _edit(run / "run.json", backend="jax")
    rc, _, err = run_cli("evaluate", run)
    assert rc == 1 and 'run.json is damaged: its backend is "jax", not torch or keras' in one_line(err)
    assert listed(run)["jax"] == 'damaged: run.json is damaged: its backend is "jax", not torch or keras'


def test_a_tune_json_trial_without_a_number_is_one_line(tmp_path):
    tune = tmp_path / "t"
    (tune / "trials").mkdir(parents=True)
    (tune / "tune.json").write_text(json.dumps({"trials": "x", "best": {"number": "x"},
                                                "objective": {"metric": "val_loss"}}))
    rc, _, err = run_cli("plot", tune, "--out", tmp_path / "p.png")
    assert rc == 1 and "tune.json is damaged (a trial" in one_line(err)
    rc, out, err = run_cli("runs", tune, "--json")
    assert rc == 0 and json.loads(out)[0].get("best_trial") is None


@pytest.mark.parametrize("name", ["history.json", "metrics.json", "model.pt"])
def test_resume_over_a_folder_where_a_run_file_goes_is_one_line(runs, tmp_path, name):
    run = _copy(runs, tmp_path, "run", finished=False)
    (run / name).unlink()
    (run / name).mkdir()
    rc, _, err = run_cli("run", "--resume", run, "--quiet")
    assert rc == 1 and one_line(err) == (f"dlc: error: '{run}' cannot be resumed: {name} is a folder, where "
                                         "the run writes a file of that name; move it out of the run folder "
                                         "and resume again")


def test_resume_with_a_spec_dir_that_is_no_text_is_one_line(runs, tmp_path):
    run = _copy(runs, tmp_path, "run", finished=False)
    _edit(run / "run.json", spec_dir=5)
    rc, _, err = run_cli("run", "--resume", run, "--quiet")
    assert rc == 1 and "run.json is damaged (its spec_dir is 5, not text)" in one_line(err)


def test_runs_lists_a_run_reached_through_links_once(runs, tmp_path):
    shutil.copytree(runs / "a", tmp_path / "a")
    (tmp_path / "loop").symlink_to(".")
    (tmp_path / "b").symlink_to("a")
    assert listed(tmp_path) == {"a": "done"}


@pytest.mark.parametrize("name", ["run.json", "ir.json", "metrics.json"])
def test_a_pipe_in_place_of_a_run_file_is_named_never_waited_on(runs, tmp_path, name):
    import os

    run = _copy(runs, tmp_path, "run")
    (run / name).unlink()
    os.mkfifo(run / name)  # (reading it would wait for a writer forever)
    assert listed(run)["run"] == f"damaged: {name} is not a regular file (a pipe, a socket or a device)"
    for argv in (["evaluate", run], ["export", run, "--output", tmp_path / "m.onnx"]):
        rc, _, err = run_cli(*argv)
        assert rc == 1 and f"{name} is not a regular file" in one_line(err)
