"""`dlc doctor`, `dlc plot` and `dlc runs` on the runs users actually end up with: a confident binary
classifier, a net whose ReLUs died in a blow-up, a cv fold or every tune trial failing in its first epoch, run
folders damaged by hand. Synthetic folders (the doctor's test spec), no training: each test well under 2 s."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_doctor import SPEC, _cv_folder, evidence, healthy_rows, history, ids, write_run

from dlc.runtime.doctor import diagnose
from dlc.runtime.doctor.fix import number
from dlc.runtime.doctor.gradients import PLOT, plot_gradients
from dlc.runtime.rundir import tick_text
from dlc.runtime.runlock import holder as lock_holder
from dlc.runtime.runs import RunDirError, list_runs, plot_runs, read_json

from conftest import run_cli

NAN_FAILURE = "loss became nan at epoch 1, step 3 (learning rate 1e+12); training diverged"


def _dead_after_blow_up(e: int, name: str) -> dict:
    """dense_1 all dead from epoch 1 on, so no gradient reaches dense_0 (what a huge first update leaves)."""
    if name == "dense_1":
        return {"dead_fraction": 1.0, "grad_norm": 0.0}
    return {"grad_norm": 0.0, "update_ratio": 0.0} if name == "dense_0" else {}


# ------------------------------------------------------------------------------------------- the rules


def test_an_output_sigmoid_near_0_or_1_is_a_confident_classifier_not_saturation(tmp_path):
    ev = evidence(10, lambda e, n: {"saturated_fraction": 0.84} if n == "dense_2" else {})
    ev["layers"][2] = {**ev["layers"][2], "activation": "sigmoid", "family": "sigmoid"}
    report = diagnose(write_run(tmp_path / "run", healthy_rows(), ev))
    assert ids(report) == ["healthy"]
    assert "no saturated hidden layer" in report.diagnoses[0].evidence


def test_a_zero_gradient_below_an_all_dead_layer_is_dead_relu_not_vanishing(tmp_path):
    report = diagnose(write_run(tmp_path / "run", healthy_rows(), evidence(10, _dead_after_blow_up)))
    assert "vanishing_gradients" not in ids(report) and "dead_relu" in ids(report)
    assert "inf" not in json.dumps(report.to_json())


def test_a_zero_first_layer_gradient_says_so_instead_of_infx(tmp_path):
    ev = evidence(10, lambda e, n: {"grad_norm": 0.0} if n == "dense_0" else {})
    d = diagnose(write_run(tmp_path / "run", healthy_rows(), ev)).diagnoses[0]
    assert d.id == "vanishing_gradients"
    assert "gradient norm is 0, no gradient at all" in d.evidence and "infx" not in d.evidence


def test_per_layer_findings_of_a_diverged_run_point_at_the_divergence(tmp_path):
    steps = [2.3] + [2.3e10] * 99
    report = diagnose(write_run(tmp_path / "run", healthy_rows(), evidence(10, _dead_after_blow_up, steps)))
    assert ids(report)[:2] == ["divergence", "dead_relu"]
    assert report.diagnoses[1].evidence.endswith("(the divergence above can cause this: treat that first)")


# ---------------------------------------------------------------------------------------- damaged runs


def test_a_missing_run_json_is_not_called_unfinished(tmp_path):
    run = write_run(tmp_path / "run", healthy_rows())
    (run / "run.json").unlink()
    notes = diagnose(run).notes
    assert any(n.startswith("run.json is missing: whether the run finished") for n in notes)
    assert not any("did not finish" in n for n in notes)


def test_a_truncated_history_is_one_line_naming_resume(tmp_path):
    run = write_run(tmp_path / "run", healthy_rows())
    (run / "checkpoint.npz").write_bytes(b"")
    (run / "history.json").write_text('[{"epoch": 1, "loss": "2.')
    rc, out, err = run_cli("doctor", run)
    assert rc == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "history.json is not valid JSON (Unterminated string starting at line 1" in err
    assert f"`dlc run --resume {run}` writes it again" in err


def test_read_json_names_the_json_error_once(tmp_path):
    (tmp_path / "x.json").write_text('{"a": "b')
    with pytest.raises(RunDirError, match=r"\(Unterminated string starting at line 1: truncated\?\)"):
        read_json(tmp_path / "x.json")


# ------------------------------------------------------------------------------------ cv and tune failures


def _cv_with_failed_fold(folder: Path, kinds: list[str], failed: int) -> Path:
    """A cv folder whose fold `failed` diverged in its first epoch: only its evidence.json, and cv.json's
    `failed` (the folds after it never began)."""
    cv = _cv_folder(folder, kinds)
    fold = cv / f"fold_{failed}"
    for name in ("history.json", "metrics.json"):
        (fold / name).unlink()
    (fold / "evidence.json").write_text(json.dumps(evidence(0, step_losses=[2.3, 7e23, None])))
    summary = json.loads((cv / "cv.json").read_text())
    summary["failed"] = f"fold {failed} of {len(kinds)}: {NAN_FAILURE}"
    (cv / "cv.json").write_text(json.dumps(summary))
    return cv


def test_a_cv_fold_that_failed_in_its_first_epoch_is_diagnosed(tmp_path):
    report = diagnose(_cv_with_failed_fold(tmp_path / "cv", ["healthy"], failed=1))
    assert ids(report) == ["divergence"]
    assert report.notes[0] == f"the cross-validation stopped: fold 1 failed ({NAN_FAILURE})"


def test_a_failed_fold_counts_for_the_whole_even_in_one_of_three(tmp_path):
    report = diagnose(_cv_with_failed_fold(tmp_path / "cv", ["healthy"] * 3, failed=3))
    assert ids(report)[0] == "divergence"


def _tune_folder(folder: Path, states: list[str]) -> Path:
    trials = []
    for i, state in enumerate(states):
        (folder / "trials" / f"{i:04d}").mkdir(parents=True)
        (folder / "trials" / f"{i:04d}" / "evidence.json").write_text("{}")
        trials.append({"number": i, "state": state, "value": None, "params": {},
                       "failure": NAN_FAILURE if state == "FAIL" else None})
    (folder / "tune.json").write_text(json.dumps({"backend": "torch", "trials": trials, "best": None,
                                                  "objective": {"metric": "val_loss"}}))
    return folder


def test_a_tune_run_with_no_completed_trial_says_why_and_sends_nowhere_empty(tmp_path):
    run = _tune_folder(tmp_path / "tune", ["FAIL", "FAIL"])
    for argv in (("doctor", run), ("plot", run, "--out", tmp_path / "p.png")):
        rc, _, err = run_cli(*argv)
        assert rc == 1 and len(err.strip().splitlines()) == 1
        assert f"no trial completed (2 failed; trial 0: {NAN_FAILURE})" in err
        assert "trials/0000" not in err and "yet" not in err


def test_a_tune_run_of_pruned_trials_points_at_one_with_a_history(tmp_path):
    run = _tune_folder(tmp_path / "tune", ["PRUNED", "PRUNED"])
    (run / "trials" / "0001" / "history.json").write_text(json.dumps(healthy_rows(2)))
    rc, _, err = run_cli("doctor", run)
    assert rc == 1 and "(2 pruned)" in err and f"e.g. {run / 'trials' / '0001'}" in err


def test_a_damaged_tune_json_is_called_damaged_not_missing(tmp_path):
    """It was "no tune.json with a completed trial", the file there but cut short."""
    run = _tune_folder(tmp_path / "tune", ["COMPLETE"])
    (run / "trials" / "0000" / "history.json").write_text(json.dumps(healthy_rows(2)))
    (run / "tune.json").write_text('{"trials": [')
    for argv in (("doctor", run), ("plot", run, "--out", tmp_path / "p.png")):
        rc, _, err = run_cli(*argv)
        assert rc == 1 and "tune.json is not valid JSON" in err and "trials/0000" in err, err


# ------------------------------------------------------------------------------------ --fix and plots


@pytest.mark.parametrize("value,text", [(1e11, "1e11"), (1e-5, "1e-5"), (0.008, "0.008"),
                                        (10000.0, "10000.0"), (1.5e12, "1.5e12"), (0.3, "0.3")])
def test_a_fixed_number_is_written_as_a_person_writes_it(value, text):
    assert number(value) == text


def test_fix_of_a_huge_learning_rate_writes_it_short(tmp_path):
    run = write_run(tmp_path / "run", history([2.3]), evidence(1, step_losses=[2.3, 7e23, None]),
                    spec=SPEC.replace("SGD(lr=0.1)", "SGD(lr=1e12)"), failed=NAN_FAILURE)
    rc, out, _ = run_cli("doctor", run, "--fix")
    assert rc == 0 and "+  optimizer: SGD(lr=1e11)" in out


@pytest.mark.parametrize("value,text", [(1e21, "1e21"), (2000.0, "2,000"), (0.05, "0.05"), (2e-7, "2e-7"),
                                        (10.0, "10")])
def test_log_tick_labels_stay_short(value, text):
    assert tick_text(value) == text


def test_gradients_png_names_the_layers_a_log_scale_cannot_draw(tmp_path):
    ev = evidence(3, _dead_after_blow_up)
    path = plot_gradients(tmp_path, ev, "run")
    assert path == tmp_path / PLOT and path.stat().st_size > 0
    from dlc.runtime.doctor.gradients import _title, _zeros_note

    assert _title(ev, "run") == "run: at epoch 3 no gradient reaches the first layer (dense_0: 0)"
    assert _zeros_note(ev) == ("not drawn where 0 (a log scale has no 0): dense_0 (gradient 0 in every "
                               "epoch; update 0 in every epoch), dense_1 (gradient 0 in every epoch)")


# ------------------------------------------------------------------------------------- dlc plot, dlc runs


def test_plot_of_a_run_that_failed_in_its_first_epoch_says_so(tmp_path):
    run = write_run(tmp_path / "run", [], None, failed=NAN_FAILURE)
    with pytest.raises(RunDirError, match=r"failed before it finished an epoch \(loss became nan.*"
                                          r"`dlc doctor .*run` diagnoses it"):
        plot_runs([run], tmp_path / "p.png")


def test_plot_of_a_cv_folder_leaves_out_the_fold_that_failed(tmp_path):
    cv = _cv_with_failed_fold(tmp_path / "cv", ["healthy"] * 3, failed=3)
    assert plot_runs([cv], tmp_path / "p.png").stat().st_size > 0
    only = _cv_with_failed_fold(tmp_path / "cv1", ["healthy"], failed=1)
    with pytest.raises(RunDirError, match=rf"`dlc doctor {only}` diagnoses it"):
        plot_runs([only], tmp_path / "q.png")


def test_runs_calls_a_finished_run_with_its_history_cut_damaged(tmp_path):
    run = write_run(tmp_path / "run", healthy_rows(3), metrics={"val": {"loss": 0.1}, "epochs_run": 3})
    (run / "model.json").write_text(json.dumps({"file": "model.pt"}))
    (run / "model.pt").write_bytes(b"x")
    assert list_runs(tmp_path)[0]["status"] == "done"
    (run / "history.json").write_text("[]")
    assert list_runs(tmp_path)[0]["status"] == "damaged: history.json has 0 of the 3 epochs metrics.json " \
                                               "says were run"


def test_runs_of_a_folder_without_runs_says_so_on_stderr(tmp_path):
    rc, out, err = run_cli("runs", tmp_path)
    assert rc == 0 and out == "" and err.startswith(f"dlc runs: no run folders in {tmp_path}")
    rc, out, _ = run_cli("runs", tmp_path, "--json")
    assert rc == 0 and json.loads(out) == []


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="the lock holder is read from /proc/locks")
def test_a_run_still_training_is_running_not_incomplete(tmp_path):
    from dlc.runtime.runlock import held

    run = write_run(tmp_path / "run", healthy_rows(3))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "finished": None}))
    assert list_runs(tmp_path)[0]["status"].startswith("incomplete: 3 of 10 epochs")
    with held(run):  # (as `dlc run` holds it while it trains)
        assert lock_holder(run) == os.getpid()
        assert list_runs(tmp_path)[0]["status"] == f"running (pid {os.getpid()}): 3 of 10 epochs"
        assert diagnose(run).notes[0].startswith(f"the run is still training (pid {os.getpid()}): 3 of 10")
    assert lock_holder(run) is None


def test_gradients_title_of_a_run_that_diverged_names_the_epochs_not_drawn():
    from dlc.runtime.doctor.gradients import _title

    def norms(e: int, name: str) -> dict:
        return {"grad_norm": None if e == 3 else 0.2 if name == "dense_2" else 0.1}

    assert _title(evidence(3, norms), "run") == ("run: at epoch 2 the last layer's gradient norm is 2x the "
                                                 "first's; epoch 3's are not finite")


def test_a_target_accuracy_on_a_run_without_accuracy_is_said_unused(tmp_path):
    run = write_run(tmp_path / "run", history([2.0 * 0.8 ** i for i in range(5)]),
                    spec=SPEC.replace("metrics: [accuracy]", "metrics: [mae]"))
    assert "--target-accuracy 0.9 is not used: the run measures no accuracy (its metrics: mae)" in \
        " ".join(diagnose(run, 0.9).notes)
    assert not any("target-accuracy" in n for n in diagnose(run).notes)


def test_a_tune_trial_folder_is_not_called_damaged_and_says_where_a_fix_is(tmp_path):
    trial = tmp_path / "tune" / "trials" / "0002"
    trial.mkdir(parents=True)
    (tmp_path / "tune" / "tune.json").write_text("{}")
    (trial / "history.json").write_text(json.dumps(healthy_rows(3)))
    notes = diagnose(trial).notes
    assert not any("run.json" in n for n in notes)
    assert any(n.startswith("a tune trial keeps no copy of its spec") and f"`dlc doctor {tmp_path / 'tune'}`"
               in n for n in notes)


def test_runs_shows_a_name_with_a_newline_or_an_escape_escaped(tmp_path):
    for name in ("new\nline", "esc\x1b[31mred"):
        write_run(tmp_path / name, healthy_rows(2))
    rc, out, _ = run_cli("runs", tmp_path)
    assert rc == 0 and "\x1b" not in out and "new\\nline  " in out and "esc\\x1b[31mred  " in out
    assert len(out.splitlines()) == 5  # (the title, the header, the rule, a line per run)
    assert run_cli("doctor", tmp_path / "new\nline")[1].startswith(f"dlc doctor {tmp_path}/new\\nline (run")


@pytest.mark.parametrize("make,said", [
    (lambda p: p.symlink_to(p.parent / "gone"), "is a link to '{p.parent}/gone', which is no folder"),
    (lambda p: __import__("os").mkfifo(p), "is a special file (a pipe, a socket or a device), not a"),
])
def test_a_dangling_link_or_a_pipe_is_not_called_missing(tmp_path, make, said):
    """A pipe is a path of the wrong kind: a usage error (exit 2) before any work, as every run folder
    argument; a dangling link names where it points (exit 1, as a folder that is not there)."""
    run = tmp_path / "x"
    make(run)
    for argv in (("doctor", run), ("runs", run)):
        rc, _, err = run_cli(*argv)
        assert rc == (2 if run.is_fifo() else 1) and said.format(p=run) in err, err


@pytest.mark.parametrize("n", [3, 12, 25])
def test_every_run_of_a_plot_gets_its_own_colour(n):
    from dlc.runtime.runs import _run_colors

    colors = _run_colors(n, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
    assert len({str(c) for c in colors[:n]}) == n


def test_a_cv_cut_short_says_which_folds_finished(tmp_path):
    cv = _cv_folder(tmp_path / "cv", ["healthy"] * 3)
    (cv / "cv.json").unlink()
    (cv / "fold_3" / "metrics.json").unlink()
    assert diagnose(cv).notes[0] == ("no cv.json: the cross-validation did not finish (2 folds finished; "
                                     "fold 3 judged on its epochs so far)")
