"""Checkpoints, `--resume` and `dlc run --nproc` used as a demanding user would: a data-parallel run without
--out that loses a worker or is interrupted names the run folder it keeps and the command that continues it;
`--nproc 3 --out RUN --replace` replaces the run (the ranks above 0 no longer check, and lock, its folder); a
run whose data file changed since it started is refused by `--resume` (its last epochs would train on other
samples); a bad DLC_COLLECTIVE_TIMEOUT and a compiled run resumed with --nproc are refused before any worker
starts (by `dlc tune --trial-nproc` too); a checkpoint that is a folder, one that does not fit the model (said
in words) and an ir.json with one error are named as they are; `--resume ""` says it is empty. Each is one
line and an exit code, the run folder left as it was. (slow: a run stopped mid-epoch on two processes resumes
to the numbers of one uninterrupted process, on both backends.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, edited_spec, kill_after_epochs, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"


def _dlc(*args, cwd, env=None, timeout=240):
    full = {k: v for k, v in os.environ.items() if k != "DLC_TEST_WORKER_DIES"}
    full.update(OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "dlc", *map(str, args)], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def _epochs(run: Path) -> int:
    return len(json.loads((run / "history.json").read_text()))


# ------------------------------------------------------------------- a data-parallel run without --out


def test_a_lost_worker_names_the_run_folder_and_how_to_continue(tmp_path):
    """Rank 1 of `dlc run SPEC --nproc 2` (no --out) died in epoch 3: the line said which worker stopped but
    not where the run was, and stdout was empty, so the run folder under runs/ had to be guessed. Now the
    line names the folder it keeps and the command that continues it (test_nproc resumes such a run)."""
    pytest.importorskip("torch")
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 4")))
    r = _dlc("run", spec, "--nproc", 2, "--quiet", cwd=tmp_path,
             env={"DLC_TEST_WORKER_DIES": "1:15"})  # 6 steps an epoch: rank 1 exits in epoch 3
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    (run,) = (tmp_path / "runs").iterdir()
    rel = run.relative_to(tmp_path)
    assert re.fullmatch(rf"dlc: error: worker 1 of 2 stopped \(exit code 1: .*\); the other workers were "
                        rf"stopped \(run directory kept: {rel}; `dlc run --resume {rel} --nproc 2` continues "
                        rf"it\)", lines[0]), lines[0]
    assert _epochs(run) == 2 and (run / "checkpoint.npz").is_file()
    assert not json.loads((run / "run.json").read_text())["finished"]


def test_ctrl_c_names_the_command_that_continues_a_run_without_out(tmp_path):
    """Ctrl-C to `dlc run SPEC --nproc 2` (no --out) said only `dlc: interrupted`; one process names the
    `--resume` command, and now the data-parallel run does too, with its folder under runs/."""
    pytest.importorskip("torch")
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 3000")))
    env = {k: v for k, v in os.environ.items() if k != "DLC_TEST_WORKER_DIES"}
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "run", str(spec), "--nproc", "2", "--quiet"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(env, OMP_NUM_THREADS="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "runs"
    while not (runs.is_dir() and any(runs.iterdir())):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    (run,) = runs.iterdir()
    kill_after_epochs(proc, run, 1, timeout=240, signum=signal.SIGINT)
    err = proc.stderr.read()
    assert proc.returncode == 130, err
    rel = run.relative_to(tmp_path)
    assert err.strip().splitlines() == [f"dlc: interrupted; `dlc run --resume {rel} --nproc 2` continues it"]


def test_replacing_a_run_with_three_processes(tmp_path):
    """`dlc run SPEC --nproc 3 --out RUN --replace` failed most times: every rank checked the folder, taking
    its lock for a moment, and refused the folder another rank held just then (`worker 1 of 3 stopped (exit
    code 2: --out RUN is being trained into by another dlc process...)`). Only rank 0, which writes it,
    checks it now."""
    pytest.importorskip("torch")
    run = tmp_path / "run"
    assert run_cli("run", IRIS, "--epochs", 1, "--out", run, "--quiet")[0] == 0
    r = _dlc("run", IRIS, "--nproc", 3, "--epochs", 2, "--out", run, "--replace", "--quiet", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.split() == [str(run)], r.stderr
    assert _epochs(run) == 2


RESUMABLE = (Path(__file__).parent / "test_resume.py").read_text().split('SPEC = """')[1].split('"""')[0]


@pytest.mark.slow  # (40-70 s: three trainings, two of them on two processes)
@pytest.mark.parametrize("backend,signum", [("torch", signal.SIGTERM), ("keras", signal.SIGINT)])
def test_stopped_mid_epoch_on_two_processes_resumes_to_the_uninterrupted_numbers(tmp_path, backend, signum):
    """SIGTERM or Ctrl-C to `dlc run SPEC --nproc 2` in the middle of an epoch (Dropout, plateau, early
    stopping with restore_best), then `--resume --nproc 2`: every epoch's numbers are those of one
    uninterrupted process (float64, relative 1e-9). (Already so; kept as a guard.)"""
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    spec = tmp_path / "s.dlspec"
    spec.write_text(RESUMABLE.replace("EPOCHS", "6").replace("batch_size: 16", "batch_size: 8"))
    full, cut = tmp_path / "full", tmp_path / "cut"
    r = _dlc("run", spec, "--backend", backend, "--dtype", "float64", "--out", full, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    env = {k: v for k, v in os.environ.items() if k != "DLC_TEST_WORKER_DIES"}
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "run", str(spec), "--backend", backend, "--dtype",
                             "float64", "--out", str(cut), "--quiet", "--nproc", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(env, OMP_NUM_THREADS="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    kill_after_epochs(proc, cut, 2, timeout=240, signum=signum)
    err = proc.stderr.read()
    assert proc.returncode == 128 + signum and "--nproc 2` continues it" in err, err
    r = _dlc("run", "--resume", cut, "--nproc", 2, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows, ref = (json.loads((d / "history.json").read_text()) for d in (cut, full))
    assert len(rows) == len(ref)
    for a, b in zip(rows, ref, strict=True):
        for k in a.keys() - {"time_s", "samples_per_s"}:
            assert abs(a[k] - b[k]) <= 1e-9 * max(abs(a[k]), abs(b[k]), 1e-12), (a["epoch"], k, a[k], b[k])


# --------------------------------------------------------------------------- the data changed since


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory) -> Path:
    """A run of 2 epochs on a data file (data.npz, 60 samples) whose spec asks for 3: --resume trains on."""
    folder = tmp_path_factory.mktemp("changed")
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", x=rng.random((60, 4)), y=rng.integers(0, 3, 60))
    (folder / "s.dlspec").write_text(edited_spec(
        IRIS, ("source: iris", 'source: npz("data.npz")'), ("epochs: 40", "epochs: 3")))
    run = folder / "run"
    rc, _, err = run_cli("run", folder / "s.dlspec", "--epochs", 2, "--out", run, "--quiet")
    assert rc == 0, err
    # (as a run killed after its 2nd epoch: not finished, its spec's 3 epochs in ir.json)
    (run / "metrics.json").unlink()
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "finished": None}))
    ir = json.loads((run / "ir.json").read_text())
    ir["train"]["epochs"] = 3
    (run / "ir.json").write_text(json.dumps(ir))
    return run


def _copy_with_data(run: Path, into: Path, x=None, y=None) -> Path:
    """A copy of the run folder and of its data file's folder, the data file rewritten with `x` and `y`."""
    import shutil

    copy = Path(shutil.copytree(run.parent, into / "copy"))
    with np.load(copy / "data.npz") as f:
        xs, ys = f["x"], f["y"]
    np.savez(copy / "data.npz", x=xs if x is None else x(xs), y=ys if y is None else y(ys))
    info = json.loads((copy / "run" / "run.json").read_text())
    info.update(spec_dir=str(copy), data_read={**info["data_read"], "file": str(copy / "data.npz")})
    (copy / "run" / "run.json").write_text(json.dumps(info))
    return copy / "run"


@pytest.mark.parametrize("x,y,why", [
    (lambda x: np.concatenate([x, x[:20]]), lambda y: np.concatenate([y, y[:20]]),
     "data.npz has 80 samples, it had 60"),
    (None, lambda y: (y + 1) % 3, "the targets differ"),
    (lambda x: x * 10, None, "the normalization statistics differ: the feature values changed"),
])
def test_resume_refuses_a_run_whose_data_changed(npz_run, tmp_path, x, y, why):
    """The data file rewritten after the run started (more rows, other labels, other values): `--resume`
    trained the epochs left on the new samples, normalized with the new statistics while run.json kept the
    old ones, and finished without a word. Now it is one line, exit 1, and the run folder is left as it was
    (not marked failed: putting the data back resumes it)."""
    run = _copy_with_data(npz_run, tmp_path, x, y)
    before = (run / "run.json").read_text()
    rc, out, err = run_cli("run", "--resume", run, "--quiet")
    assert rc == 1 and err.splitlines() == [
        f"dlc: error: '{run}' cannot be resumed: its data changed since the run started ("
        + why.replace("data.npz", str(run.parent / "data.npz")) + "); put the data back as it was, or train "
        f"the spec again (`dlc run SPEC --out {run} --replace`)"], err
    assert (run / "run.json").read_text() == before and _epochs(run) == 2


def test_resume_with_the_same_data_trains_on(npz_run, tmp_path):
    run = _copy_with_data(npz_run, tmp_path)
    rc, out, err = run_cli("run", "--resume", run, "--quiet")
    assert rc == 0, err
    assert _epochs(run) == 3 and json.loads((run / "run.json").read_text())["finished"]


# ------------------------------------------------------------------------------------ damaged run files


def test_a_checkpoint_that_is_a_folder_is_named_so(npz_run, tmp_path):
    """checkpoint.npz a folder: `--resume` said the checkpoint was missing."""
    import shutil

    copy = Path(shutil.copytree(npz_run, tmp_path / "copy"))
    (copy / "checkpoint.npz").unlink()
    (copy / "checkpoint.npz").mkdir()
    rc, out, err = run_cli("run", "--resume", copy, "--quiet")
    assert rc == 1 and err.splitlines() == [
        f"dlc: error: {copy / 'checkpoint.npz'} is a folder, not a dlc checkpoint; it cannot be resumed "
        f"from: train the spec again (`dlc run SPEC --out {copy} --replace`)"], err


def test_an_ir_json_with_one_error_says_one_error(npz_run, tmp_path):
    """'not a dlc spec: 1 errors'."""
    import shutil

    copy = Path(shutil.copytree(npz_run, tmp_path / "copy"))
    ir = json.loads((copy / "ir.json").read_text())
    ir["train"]["epochs"] = 0
    (copy / "ir.json").write_text(json.dumps(ir))
    rc, out, err = run_cli("run", "--resume", copy, "--quiet")
    assert rc == 1 and "(not a dlc spec: 1 error);" in err and len(err.splitlines()) == 1, err


def _edited_checkpoint(run: Path, into: Path, edit) -> Path:
    """A copy of the run folder whose checkpoint.npz's arrays are edited by `edit` (a dict of the session's
    arrays, `s:` keys, changed in place)."""
    import shutil

    copy = Path(shutil.copytree(run, into / "copy"))
    with np.load(copy / "checkpoint.npz") as f:
        arrays = {k: f[k] for k in f.files}
    session = {k[2:]: v for k, v in arrays.items() if k.startswith("s:")}
    edit(session)
    arrays = {**{k: v for k, v in arrays.items() if not k.startswith("s:")},
              **{f"s:{k}": v for k, v in session.items()}}
    np.savez(copy / "checkpoint.npz", **arrays)
    return copy


def _no_iterations(s):
    del s["opt/iterations"]


def _narrow_kernel(s):
    s["w/dense_0/kernel"] = s["w/dense_0/kernel"][:, :8]


def _no_last_layer(s):
    for k in [k for k in s if k.startswith("w/dense_1/")]:
        del s[k]


def _narrow_slot(s):
    s["opt/0/m"] = s["opt/0/m"][:, :8]


def _keras_optimizer(s):
    for k in [k for k in s if k.startswith("opt/")]:
        del s[k]
    s.update({f"opt/{i}": np.zeros(()) for i in range(9)})


@pytest.mark.parametrize("edit,why", [
    (_no_iterations, "the optimizer's state differs: the checkpoint lacks 1 of the model's 10 optimizer "
     "arrays (iteration count)"),
    (_narrow_kernel, "layer dense_0's kernel is 4×16 in the model, 4×8 in the checkpoint"),
    (_no_last_layer, "the checkpoint has no weights for layer dense_1"),
    (_narrow_slot, "the optimizer's state differs: its slot m of weight 0 is 4×16 in the model, 4×8 in the "
     "checkpoint"),
    (_keras_optimizer, "the checkpoint holds another optimizer's state (9 arrays, none of the model's 10: "
     "another optimizer, or another backend's)"),
], ids=["no iterations", "kernel shape", "no layer", "slot shape", "another optimizer"])
def test_a_checkpoint_that_does_not_fit_the_model_says_what_differs(npz_run, tmp_path, edit, why):
    """A checkpoint of another model said a raw key (`does not fit the run's model ('opt/iterations')`) or
    torch's `The size of tensor a (16) must match the size of tensor b (8) at non-singleton dimension 1`;
    one lacking a layer's weights resumed with that layer's fresh weights, without a word. Now the line says
    in words what differs."""
    copy = _edited_checkpoint(npz_run, tmp_path, edit)
    rc, out, err = run_cli("run", "--resume", copy, "--quiet")
    assert rc == 1 and err.splitlines() == [
        f"dlc: error: {copy / 'checkpoint.npz'} does not fit the run's model ({why}); it cannot be resumed "
        f"from: train the spec again (`dlc run SPEC --out {copy} --replace`) (run directory kept: {copy})"
    ], err
    assert _epochs(copy) == 2


def test_resume_with_an_empty_path_says_it_is_empty(tmp_path, monkeypatch):
    """`dlc run --resume ""` said `dlc run needs a SPEC (or --resume RUN)`, as if --resume were not given."""
    monkeypatch.chdir(tmp_path)
    for argv, option in ((["--resume", ""], "--resume"), (["--resume", "", "--nproc", 2], "--resume"),
                         ([""], "SPEC")):
        rc, out, err = run_cli("run", *argv)
        assert rc == 2 and out == "" and err.splitlines() == [f"dlc: error: {option} is empty; give a path"]
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------- the launch's settings


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf"])
def test_a_collective_timeout_that_is_no_number_of_seconds_is_refused_up_front(tmp_path, monkeypatch, value):
    """DLC_COLLECTIVE_TIMEOUT=abc failed in every worker with `ValueError: could not convert string to
    float`; 0 or -5 made every rendezvous time out at once, with pages of c10d's C++ stack and a line about
    workers that lost contact. Now it is refused before any worker starts: one line, exit 2, no run folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLC_COLLECTIVE_TIMEOUT", value)
    rc, out, err = run_cli("run", IRIS, "--nproc", 2, "--quiet")
    assert rc == 2 and err.splitlines() == [
        f"dlc: error: DLC_COLLECTIVE_TIMEOUT='{value}' is not a finite number of seconds above 0 (how long a "
        "data-parallel process waits for the others; 300 when unset)"], err
    assert not (tmp_path / "runs").exists()


TUNABLE = """
model t {
  seed: 3
  data {
    source: iris
    split: holdout(val=0.3)
  }
  input: (4)
  layers {
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=choice(0.01, 0.1))
  train {
    epochs: 1
    batch_size: 35
  }
  search {
    method: grid
    trials: 2
    objective: minimize val_loss
  }
}
"""


def test_tune_refuses_a_collective_timeout_that_is_no_number_of_seconds_up_front(tmp_path, monkeypatch):
    """`DLC_COLLECTIVE_TIMEOUT=abc dlc tune SPEC --trial-nproc 2`: every trial's processes failed on it, one
    trial after the other. Now it is refused as `dlc run --nproc` refuses it: one line, exit 2, no run folder.
    (One process per trial has no collectives: the variable is not read.)"""
    spec = tmp_path / "t.dlspec"
    spec.write_text(TUNABLE)
    monkeypatch.setenv("DLC_COLLECTIVE_TIMEOUT", "abc")
    rc, out, err = run_cli("tune", spec, "--out", tmp_path / "out", "--trial-nproc", 2)
    assert rc == 2 and err.splitlines() == [
        "dlc: error: DLC_COLLECTIVE_TIMEOUT='abc' is not a finite number of seconds above 0 (how long a "
        "data-parallel process waits for the others; 300 when unset)"], err
    assert not (tmp_path / "out").exists()


def test_tune_trials_on_three_processes_write_their_folder_from_rank_0_alone(tmp_path):
    """`dlc run --nproc 3 --out RUN --replace` failed when every rank checked (and locked) the run folder;
    a `dlc tune --trial-nproc 3` trial's ranks above 0 never touch the trial's folder (tune_worker._help:
    they write nothing, their output goes to a temporary file). Kept as a guard: both trials complete, each
    folder holds rank 0's files alone, no rank's output is left behind."""
    pytest.importorskip("torch")
    spec = tmp_path / "t.dlspec"
    spec.write_text(TUNABLE)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = _dlc("tune", spec, "--out", tmp_path / "out", "--trial-nproc", 3, "--threads", 1, "--quiet",
             cwd=tmp_path, env={"TMPDIR": str(tmp)}, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    summary = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert [t["outcome"] for t in summary["trials"]] == ["complete", "complete"]
    for t in summary["trials"]:
        files = sorted(os.listdir(t["folder"]))
        assert files == ["evidence.json", "history.csv", "history.json", "log.txt", "result.json"], files
        assert "Traceback" not in (Path(t["folder"]) / "log.txt").read_text()
    assert not list(tmp.iterdir())


def test_a_compiled_run_resumed_with_nproc_is_refused_up_front(npz_run, tmp_path):
    """A run started with --compile, resumed with --nproc 2: both workers started and failed with `dlc:
    error: ValueError: a compiled run (--compile) cannot train data-parallel yet ... (set DLC_TRACEBACK=1 to
    see where)`. Now it is refused before any worker starts: one line, exit 2, the run untouched."""
    import shutil

    copy = Path(shutil.copytree(npz_run, tmp_path / "copy"))
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "compile": True}))
    before = (copy / "run.json").read_text()
    rc, out, err = run_cli("run", "--resume", copy, "--nproc", 2, "--quiet")
    assert rc == 2 and err.splitlines() == [
        f"dlc: error: {copy} was started with --compile, which --nproc cannot train yet (the data-parallel "
        "step is not compiled): resume it without --nproc"], err
    assert (copy / "run.json").read_text() == before


# ---------------------------------------------------------------------------------------- under torchrun


def test_under_torchrun_only_rank_0_reports(tmp_path):
    """`torchrun --nproc-per-node 2 -m dlc run SPEC` (README: a dlc run started by torchrun joins the same
    way): both workers share the terminal; rank 1 printed its own epoch table, summary and run path too.
    Now stdout holds the run directory once, and the table is rank 0's alone, as under --nproc."""
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 2")))
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip("torchrun is not installed beside this Python")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "dlc", "run",
                           str(spec), "--backend", "torch", "--out", str(tmp_path / "r")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [str(tmp_path / "r")]
    assert done.stderr.count("trained 2 epochs") == 1, done.stderr
    assert _epochs(tmp_path / "r") == 2
