"""Run folders as dlc's other commands leave them, and the run's own record of an interrupt:

- `dlc run --out RUN --replace` refused a run folder once `dlc export RUN` had written RUN/model.onnx into it
  ("is not a dlc run folder (it holds model.onnx)"): a file dlc wrote is dlc's, a user's file still is not;
- `dlc doctor CV/fold_1` said "the run folder has no copy of its spec" (the cv folder above it holds one)
  and judged the fold without the spec's model (task, learning rate, layers) or cv.json's fold size;
- a Ctrl-C that landed after an epoch's row was kept for history.json but before it was printed left the
  epoch table and log.txt a row short of history.json.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, edited_spec, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"
ENV = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _spec(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 2"), *edits))
    return spec


# --------------------------------------------------------------------------- --replace after dlc export


def test_replace_takes_a_run_folder_dlc_export_wrote_into_but_not_a_users_file(tmp_path):
    spec, run = _spec(tmp_path), tmp_path / "run"
    assert run_cli("run", spec, "--out", run, "--quiet")[0] == 0
    rc, out, err = run_cli("export", run)
    assert rc == 0, err
    assert (run / "model.onnx").is_file()
    rc, out, err = run_cli("run", spec, "--out", run, "--quiet", "--replace")
    assert (rc, err) == (0, ""), err
    assert out.strip() == str(run)
    assert not (run / "model.onnx").exists()  # (deleted with the old run)
    (run / "notes.txt").write_text("mine")
    rc, _, err = run_cli("run", spec, "--out", run, "--quiet", "--replace")
    assert rc == 2
    assert f"--out {run} is not empty and is not a dlc run folder (it holds notes.txt)" in err
    assert "--replace deletes only a folder dlc wrote" in err
    assert (run / "notes.txt").read_text() == "mine"


def test_replace_takes_a_cv_folder_with_a_folds_export_and_an_export_may_still_name_model_onnx(tmp_path):
    spec = _spec(tmp_path, ("split: holdout(val=0.2, test=0.2, stratify=true)", "split: kfold(k=2)"))
    cv = tmp_path / "cv"
    assert run_cli("cv", spec, "--out", cv, "--quiet")[0] == 0
    (cv / "fold_1" / "model.onnx").write_bytes(b"onnx")  # (what an export into a fold leaves)
    rc, out, err = run_cli("cv", spec, "--out", cv, "--quiet", "--replace")
    assert (rc, err) == (0, ""), err
    assert not (cv / "fold_1" / "model.onnx").exists()
    run = tmp_path / "run"
    assert run_cli("run", _spec(tmp_path), "--out", run, "--quiet")[0] == 0
    rc, out, err = run_cli("export", run, "--output", run / "model.onnx")  # (its default, named)
    assert (rc, out.strip()) == (0, str(run / "model.onnx")), err


# --------------------------------------------------------------------------------- dlc doctor CV/fold_N


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cv")
    spec = tmp / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 3"),
                                ("split: holdout(val=0.2, test=0.2, stratify=true)", "split: kfold(k=3)")))
    cv = tmp / "cv"
    rc, _, err = run_cli("cv", spec, "--out", cv, "--quiet")
    assert rc == 0, err
    return cv


def test_doctor_of_a_fold_says_where_its_spec_is_not_that_it_has_none(cv_run):
    rc, out, err = run_cli("doctor", cv_run / "fold_1")
    assert rc == 0, err
    text = " ".join(out.split())
    assert "no copy of its spec" not in text
    assert text.startswith(f"dlc doctor {cv_run / 'fold_1'} (fold 1 of a cross-validation run; per-layer "
                           "evidence recorded)")
    assert (f"note: fold 1 of the cross-validation in {cv_run}: no spec change is planned for one fold; "
            f"`dlc doctor {cv_run}` diagnoses every fold and plans one on its spec copy "
            f"{cv_run / 'iris.dlspec'}") in text
    rc, out, err = run_cli("doctor", cv_run / "fold_1", "--fix")
    assert rc == 0
    assert (f"nothing to fix automatically in {cv_run / 'fold_1'} (no spec to change here: see the "
            "notes)") in err
    assert not (cv_run / "fold_1" / "doctor.dlspec").exists()


def test_doctor_of_a_fold_judges_it_as_doctor_of_the_cv_folder_does(cv_run):
    rc, out, err = run_cli("doctor", cv_run, "--json")
    assert rc == 0, err
    whole = {f["fold"]: f["diagnoses"] for f in json.loads(out)["folds"]}
    for i in (1, 2, 3):
        rc, out, err = run_cli("doctor", cv_run / f"fold_{i}", "--json")
        assert rc == 0, err
        alone = json.loads(out)
        assert (alone["kind"], alone["fold"]) == ("run", i)
        assert alone["diagnoses"] == whole[i]


def test_doctor_of_the_cv_folder_is_as_it_was(cv_run):
    rc, out, err = run_cli("doctor", cv_run)
    assert rc == 0, err
    assert out.startswith(f"dlc doctor {cv_run} (cross-validation run; per-layer evidence recorded)")
    assert "no copy of its spec" not in out and "by fold:" in out


def test_a_run_of_its_own_in_a_folder_named_fold_is_no_fold(tmp_path):
    spec, run = _spec(tmp_path), tmp_path / "fold_1"
    assert run_cli("run", spec, "--out", run, "--quiet")[0] == 0
    rc, out, err = run_cli("doctor", run)
    assert rc == 0, err
    assert out.startswith(f"dlc doctor {run} (run;")


# --------------------------------------------------------------------------------------------- Ctrl-C

# `dlc run` with a Ctrl-C landing where it did: the epoch's row kept for history.json (and written to the
# event file), not yet printed; a second SIGINT there (SECOND=1) is raised at once
CTRL_C_IN_THE_EPOCHS_END = """
import os, signal, sys
from dlc.runtime import tensorboard

write = tensorboard.EventWriter.scalars

def scalars(self, epoch, row):
    write(self, epoch, row)
    if epoch == 2:
        for _ in range(1 + int(os.environ.get("SECOND", "0"))):
            os.kill(os.getpid(), signal.SIGINT)

tensorboard.EventWriter.scalars = scalars
sys.argv = ["dlc", *sys.argv[1:]]
from dlc.cli import entry
entry()
"""


def _interrupted(tmp_path: Path, second: bool = False) -> tuple[subprocess.CompletedProcess, Path]:
    run = tmp_path / "run"
    spec = _spec(tmp_path, ("epochs: 2", "epochs: 6"))
    argv = [sys.executable, "-c", CTRL_C_IN_THE_EPOCHS_END, "run", str(spec), "--out", str(run)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**ENV, "SECOND": str(int(second))})
    return proc, run


def _rows(text: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"(?m)^\s*(\d+)/6\s", text)]


def test_a_ctrl_c_at_an_epochs_end_leaves_its_row_in_the_table_and_the_log(tmp_path):
    proc, run = _interrupted(tmp_path)
    assert proc.returncode == 130, proc.stderr
    assert f"dlc: interrupted; `dlc run --resume {run}` continues it" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    history = [r["epoch"] for r in json.loads((run / "history.json").read_text())]
    log = (run / "log.txt").read_text()
    assert history == [1, 2]
    assert _rows(proc.stderr) == history
    assert _rows(log) == history
    assert log.rstrip().endswith("interrupted")


def test_a_second_ctrl_c_there_stops_at_once(tmp_path):
    proc, run = _interrupted(tmp_path, second=True)
    assert proc.returncode == 130, proc.stderr
    assert f"dlc: interrupted; `dlc run --resume {run}` continues it" in proc.stderr
    # (not held until the row is printed: a display blocked on a full pipe would hold it for ever)
    assert _rows(proc.stderr) == [1]
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [1, 2]


def test_a_signal_in_an_epochs_end_is_raised_once_it_is_done():
    from dlc.runtime.run import epoch_end_whole

    done = []
    with pytest.raises(KeyboardInterrupt), epoch_end_whole():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("row printed")
    assert done == ["row printed"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), epoch_end_whole():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        done.append("not reached")
    assert done == ["row printed"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_doctor_of_a_fold_of_a_kfold_tune_trial_points_to_the_tune_folder(tmp_path):
    from dlc.runtime.doctor import diagnose

    rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.1 / e, "lr": 0.01, "time_s": 0.1} for e in (1, 2, 3)]
    tune, trial = tmp_path / "tune", tmp_path / "tune" / "trials" / "0002"
    (trial / "fold_1").mkdir(parents=True)
    (tune / "tune.json").write_text("{}")
    (trial / "fold_1" / "history.json").write_text(json.dumps(rows))
    for cv_json in (False, True):  # (a trial's run_cv writes cv.json in the trial folder when it ends)
        if cv_json:
            (trial / "cv.json").write_text(json.dumps({"k": 2, "backend": "torch", "folds": []}))
        notes = diagnose(trial / "fold_1").notes
        assert not any("the run folder has no copy of its spec" in n for n in notes), notes
        assert any(n.startswith("a tune trial keeps no copy of its spec") and f"`dlc doctor {tune}`" in n
                   for n in notes), notes
