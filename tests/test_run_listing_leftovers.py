"""Leftovers of the run-folder passes: a refused `--resume` said "finishing RUN ..." before its error line; an
--out whose run.json is a pipe was told to `--resume`, which was refused in turn; `dlc runs` listed a tune
folder of unreadable trials as done with 0 trials; `dlc predict` named the outputs of a regression loss
trained on classes p0, p1, ... as if probabilities."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_run_folders import one_line, unfinish

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
model tiny {
  seed: 3
  data {
    source: npz("data.npz")
    split: holdout(val=0.2)
  }
  input: (3)
  layers {
    Dense(2, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 2
    batch_size: 16
  }
}
"""


def write_spec(folder: Path, seed: int = 0) -> Path:
    """The tiny spec and its data.npz (features of `seed`) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).normal(size=(40, 3))
    np.savez(folder / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    path = folder / "tiny.dlspec"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-epoch run to copy (each test damages its own copy)."""
    base = tmp_path_factory.mktemp("listing")
    rc, _, err = run_cli("run", write_spec(base / "spec"), "--out", base / "run", "--quiet")
    assert rc == 0, err
    return base / "run"


@pytest.fixture
def killed(finished, tmp_path) -> Path:
    """A copy of the run as if killed after its last epoch, before run.json's `finished`."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    unfinish(copy)
    return copy


# --------------------------------------------------------------- 1. a refused resume is its error line alone


def _misfit_checkpoint(run: Path) -> str:
    """A checkpoint whose first kernel is of another shape: refused once the model is built."""
    with np.load(run / "checkpoint.npz") as f:
        arrays = dict(f)
    arrays["s:w/dense_0/kernel"] = np.zeros((7, 7), np.float32)
    np.savez(run / "checkpoint.npz", **arrays)
    return "does not fit the run's model (layer dense_0's kernel is 3×2 in the model, 7×7 in the checkpoint)"


def _other_data(run: Path) -> str:
    """run.json pointing at a folder of other data: refused once the data is read."""
    write_spec(run.parent / "elsewhere", seed=1)
    info = json.loads((run / "run.json").read_text())
    info["spec_dir"] = str(run.parent / "elsewhere")
    (run / "run.json").write_text(json.dumps(info))
    return "its data changed since the run started (the targets differ)"


@pytest.mark.parametrize("damage", [_misfit_checkpoint, _other_data], ids=["checkpoint", "data"])
def test_a_resume_refused_after_its_checks_prints_no_progress_first(killed, damage):
    """Not quiet, it said `finishing RUN: all 2 epochs are trained; writing its final metrics and model`,
    then the error line: the note now waits until training starts."""
    why = damage(killed)
    rc, out, err = run_cli("run", "--resume", killed)
    assert rc == 1 and out == "", err
    assert why in one_line(err)
    assert "finishing" not in err and "resuming" not in err


def test_a_checkpoint_that_does_not_fit_leaves_the_folder_as_it_was(killed):
    """The refusal marked run.json failed and deleted metrics.json first: `dlc runs` then said "failed" for a
    run whose training had ended, and a checkpoint put back could not finish it."""
    before = {name: (killed / name).read_bytes() for name in ("run.json", "metrics.json")}
    why = _misfit_checkpoint(killed)
    rc, out, err = run_cli("run", "--resume", killed, "--quiet")
    assert rc == 1 and why in one_line(err), err
    assert {name: (killed / name).read_bytes() for name in before} == before
    rc, out, err = run_cli("runs", killed, "--json")
    assert rc == 0 and json.loads(out)[0]["status"].startswith("incomplete"), out


def test_a_resume_that_trains_still_says_where_it_continues(killed):
    rc, out, err = run_cli("run", "--resume", killed)
    assert rc == 0, err
    lines = err.splitlines()
    assert lines[0] == f"finishing {killed}: all 2 epochs are trained; writing its final metrics and model"
    assert lines[1].startswith("tiny on torch")
    log = (killed / "log.txt").read_text().splitlines()
    assert f"finishing {killed}: all 2 epochs are trained; writing its final metrics and model" in log


# ------------------------------------------------------ 2. --out holding a run that --resume cannot continue


@pytest.mark.parametrize("damage,why", [
    ("pipe", "run.json is not a regular file (a pipe, a socket or a device)"),
    ("ir", "ir.json is not valid JSON (Expecting property name enclosed in double quotes at line 2: "
     "truncated?)"),
], ids=["run.json a pipe", "ir.json not JSON"])
def test_an_out_holding_a_run_resume_refuses_says_what_is_wrong(killed, damage, why):
    """`--out RUN already holds a dlc run; ..., or continue it with dlc run --resume RUN`, and that resume
    was refused: run.json cannot be read."""
    if damage == "pipe":
        (killed / "run.json").unlink()
        os.mkfifo(killed / "run.json")
    else:
        (killed / "ir.json").write_text("{\n")
    spec = write_spec(killed.parent / "spec")
    rc, out, err = run_cli("run", spec, "--out", killed, "--quiet")
    assert rc == 2 and out == "", err
    assert one_line(err) == (f"dlc: error: --out {killed} holds a dlc run that cannot be resumed: {why}; "
                             "give a new folder, or add --replace to delete it first")
    rc, _, err = run_cli("run", "--resume", killed)  # (what the line no longer suggests)
    assert rc == 1 and why in one_line(err)
    rc, _, err = run_cli("run", spec, "--out", killed, "--quiet", "--replace")  # (what it suggests)
    assert rc == 0, err


def test_cv_out_holding_a_run_resume_refuses_says_what_is_wrong(killed):
    """`dlc cv --out RUN` (its own path to the same refusal, through rundir) said `--resume` too."""
    (killed / "run.json").unlink()
    os.mkfifo(killed / "run.json")
    rc, out, err = run_cli("cv", write_spec(killed.parent / "spec"), "--out", killed, "--k", "2", "--quiet")
    assert rc == 2 and out == "", err
    assert one_line(err) == (f"dlc: error: --out {killed} holds a dlc run that cannot be resumed: run.json "
                             "is not a regular file (a pipe, a socket or a device); give a new folder, or "
                             "add --replace to delete it first")


def test_an_out_holding_a_run_to_resume_still_says_resume(killed):
    rc, _, err = run_cli("run", write_spec(killed.parent / "spec"), "--out", killed, "--quiet")
    assert rc == 2 and one_line(err).endswith(f"or continue it with `dlc run --resume {killed}`")


# ----------------------------------------------------------------- 3. a tune folder of unreadable trials


def listed(folder: Path) -> dict[str, str]:
    rc, out, err = run_cli("runs", folder, "--json")
    assert rc == 0, err
    return {Path(r["run"]).name: r["status"] for r in json.loads(out)}


SOUND = {"number": 0, "state": "COMPLETE", "outcome": "complete", "value": 0.5}


@pytest.mark.parametrize("trials,why", [
    ([1, 2, "x"], "trial entry 1 is 1, not an object"),
    ([{"foo": 1}], 'trial entry 1 has no trial number ({"foo": 1})'),
    ("garbage", 'trials are "garbage", not a list'),
    ({"a": 1}, 'trials are {"a": 1}, not a list'),
    ([SOUND, {"number": 1}], 'trial 1 has no state ({"number": 1})'),
    ([SOUND, {"number": 1, "state": 5}], "trial 1 has state 5, none of COMPLETE, PRUNED, FAIL, RUNNING, "
                                         "WAITING"),
], ids=["not objects", "no number", "a text", "an object", "no state", "a state of no trial"])
def test_a_tune_folder_of_unreadable_trials_is_listed_damaged(tmp_path, trials, why):
    """It was listed `done` with 0 trials; a tune.json of another shape was `damaged: ...` already."""
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tune.json").write_text(json.dumps({"spec": "tiny", "trials": trials}))
    assert listed(tmp_path) == {"t": f"damaged: tune.json: {why}"}


def test_a_tune_folder_of_sound_trials_is_listed_done(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tune.json").write_text(json.dumps({"spec": "tiny", "trials": [SOUND]}))
    assert listed(tmp_path) == {"t": "done"}


# ------------------------------------------------------- 4. predict: a regression loss's outputs are scores


CLASSES = """\
model q {
  seed: 1
  data { source: SOURCE
    split: holdout(val=0.2) }
  input: (INPUT)
  layers {
    LAYER
  }
  loss: LOSS
  optimizer: Adam(lr=0.01)
  train { epochs: 1
    batch_size: 16 }
}
"""


@pytest.mark.parametrize("source,layer,loss,header", [
    ("iris", "Dense(3)", "mse", "class,score0,score1,score2"),
    ("iris", "Dense(3, activation=softmax)", "huber", "class,score0,score1,score2"),
    ("breast_cancer", "Dense(1, activation=sigmoid)", "mae", "class,score1"),
    ("iris", "Dense(3, activation=softmax)", "sparse_categorical_crossentropy", "class,p0,p1,p2"),
    ("breast_cancer", "Dense(1, activation=sigmoid)", "binary_crossentropy", "class,p1"),
], ids=["mse linear", "huber softmax", "mae binary", "crossentropy", "binary crossentropy"])
def test_predict_names_a_regression_loss_outputs_scores(tmp_path, source, layer, loss, header):
    """A linear layer trained with mse on iris's classes printed `class,p0,p1,p2` over outputs such as
    -0.38: not probabilities. The class column stays (the task is a classification)."""
    spec = tmp_path / "q.dlspec"
    inputs = {"iris": 4, "breast_cancer": 30}[source]
    spec.write_text(CLASSES.replace("SOURCE", source).replace("INPUT", str(inputs)).replace("LAYER", layer)
                    .replace("LOSS", loss))
    rc, _, err = run_cli("run", spec, "--out", tmp_path / "run", "--quiet")
    assert rc == 0, err
    features = tmp_path / "x.csv"
    np.savetxt(features, np.random.default_rng(0).normal(size=(2, inputs)), delimiter=",")
    rc, out, err = run_cli("predict", tmp_path / "run", "--input", features)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == header and len(lines) == 3
    assert all(line.split(",")[0] in ("0", "1", "2") for line in lines[1:])
    rc, _, err = run_cli("predict", tmp_path / "run", "--input", features, "--output", tmp_path / "p.json")
    assert rc == 0, err
    assert list(json.loads((tmp_path / "p.json").read_text())[0]) == header.split(",")


# ---------------------------------------- 5. W010 beside the error of the plateau monitor it names (compiler)


def test_a_refused_plateau_monitor_is_not_named_again_by_a_warning():
    """`plateau(monitor=val_acc, patience=5)` over 2 epochs: E201 `cannot monitor 'val_accuracy'`; it also
    had W010 `... the first epoch sets the best val_accuracy ...`, a warning about the refused monitor."""
    from dlc.compiler import compile_text

    schedule = "  optimizer: Adam(lr=0.01)\n  schedule: plateau(monitor=val_acc, patience=5)"
    text = CLASSES.replace("SOURCE", "iris").replace("INPUT", "4") \
        .replace("LOSS", "categorical_crossentropy").replace("LAYER", "Dense(3, activation=softmax)") \
        .replace("  optimizer: Adam(lr=0.01)", schedule).replace("epochs: 1", "epochs: 2")
    found = [(x.code, x.severity) for x in compile_text(text, "q.dlspec", Path(".")).diagnostics.sorted()]
    assert found == [("E201", "error")]
