"""`dlc run --resume`: a run killed with SIGKILL continues from its last finished epoch and ends with the same
weights and history as a run that was never interrupted."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_after_epochs

SPEC = """
model resumable {
  seed: 5
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.1, stratify=true)
  }
  input: (64)
  layers {
    Dense(128, activation=relu)
    Dropout(0.3)
    Dense(128, activation=relu) * 2
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.001)
  schedule: plateau(factor=0.5, patience=1, min_lr=1e-5)
  train {
    epochs: EPOCHS
    batch_size: 16
    early_stopping: (monitor=val_loss, patience=50, restore_best=true)
  }
}
"""


BATCH = {"torch": 16, "keras": 64}
# keras' epochs of 23 steps take ~50 ms: under load the test's polling was starved until all 12 had finished
EPOCHS = {"torch": 12, "keras": 40}


def _run(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "dlc", "run", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _losses(run):
    return [(r["loss"], r["val_loss"], r["lr"]) for r in json.loads((run / "history.json").read_text())]


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_kill9_then_resume_equals_uninterrupted(tmp_path, backend):
    epochs = EPOCHS[backend]
    spec = tmp_path / "resumable.dlspec"
    # keras: bigger batches, fewer steps (its step costs more; an epoch still outlasts the kill's polling)
    spec.write_text(SPEC.replace("EPOCHS", str(epochs)).replace("batch_size: 16",
                                                                f"batch_size: {BATCH[backend]}"))
    full, cut = tmp_path / "full", tmp_path / "cut"
    ref = _run(spec, "--backend", backend, "--out", full, "--quiet")
    ref.wait(timeout=600)
    assert ref.returncode == 0, ref.stderr.read()
    victim = _run(spec, "--backend", backend, "--out", cut, "--quiet")
    kill_after_epochs(victim, cut, 3, timeout=240)
    done_before = len(json.loads((cut / "history.json").read_text()))
    assert 3 <= done_before < epochs and not (cut / "metrics.json").exists()

    r = subprocess.run([sys.executable, "-m", "dlc", "run", "--resume", str(cut), "--quiet"],
                       capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _losses(cut) == _losses(full)
    # the training evidence continues too: the same epochs, steps and numbers as the uninterrupted run's
    ea, eb = (json.loads((d / "evidence.json").read_text()) for d in (cut, full))
    assert ea["epochs"] == eb["epochs"] and ea["step_losses"] == eb["step_losses"]
    a = json.loads((cut / "metrics.json").read_text())
    b = json.loads((full / "metrics.json").read_text())
    assert a == b
    from dlc.runtime.serve import load_run

    wa = load_run(cut)[1].get_weights()
    wb = load_run(full)[1].get_weights()
    for lname in wa:
        for wname in wa[lname]:
            np.testing.assert_array_equal(wa[lname][wname], wb[lname][wname])

    again = subprocess.run([sys.executable, "-m", "dlc", "run", "--resume", str(cut)], capture_output=True,
                           text=True, check=False)
    assert again.returncode == 0 and "already finished" in again.stdout


def test_resume_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dlc", "run", "--resume", str(tmp_path)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 1 and "not a dlc run directory" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_says_how_to_continue_and_keeps_the_run(tmp_path):
    """SIGINT mid-run: exit 130, one line naming the command that continues it, the run listed as incomplete
    with its finished epochs."""
    import signal

    spec = tmp_path / "resumable.dlspec"
    spec.write_text(SPEC.replace("EPOCHS", "200"))
    run = tmp_path / "run"
    # (Ctrl-C as a terminal delivers it, even where the tests run as a background job, which starts with
    # SIGINT ignored: Python would keep it ignored, and the run would train to its end)
    proc = _run(spec, "--backend", "torch", "--out", run, "--quiet",
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    kill_after_epochs(proc, run, 2, timeout=240, signum=signal.SIGINT)
    err = proc.stderr.read()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"dlc: interrupted; `dlc run --resume {run}` continues it"
    r = subprocess.run([sys.executable, "-m", "dlc", "runs", str(run), "--json"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["status"].startswith("incomplete")


OPTIMIZER_FIXTURES = sorted(
    p for p in (Path(__file__).parent / "equivalence" / "fixtures").glob("opt_*.dlspec"))


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("path", OPTIMIZER_FIXTURES, ids=lambda p: p.stem)
def test_a_restored_optimizer_steps_as_the_one_saved(path, backend):
    """Every optimizer's whole state is in the checkpoint (get_state/set_state): a session restored after
    one epoch trains the next epoch to the bits of the session it was saved from (torch's Nadam lost its
    running momentum product u_product before 2026-11-30: 0.04 apart in the next epoch's losses)."""
    import warnings

    from dlc.backends import session_class
    from dlc.compiler import compile_file
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = compile_file(path).spec
    data = prepare(spec, path.parent)
    make = session_class(backend)
    sessions = [make(spec, dtype="float64", device="cpu", weights=initial_weights(spec)) for _ in range(2)]
    bs = spec.train.batch_size
    first = np.random.default_rng(1).permutation(len(data.train.x))
    saved = sessions[0]
    saved.train_epoch(saved.load_data(data.train.x, data.train.y), first, bs)
    sessions[1].set_state(saved.get_state())
    then = np.random.default_rng(2).permutation(len(data.train.x))
    losses = [s.train_epoch(s.load_data(data.train.x, data.train.y), then, bs)[0] for s in sessions]
    np.testing.assert_array_equal(losses[1], losses[0])
