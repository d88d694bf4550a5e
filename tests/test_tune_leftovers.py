"""`dlc tune`'s data errors, old studies, the live line on narrow terminals, and help pages at any width.

- A data error that a trial's parameters cause (an output layer too small for the labels: the compiler cannot
  know the labels) is that trial's result: it counts towards --trials and is not run again. The same error
  in 3 trials in a row with different parameters is the data's fault: they crashed (queued again) and the
  search stops (tests/test_tune_trials.py runs that on a CSV that cannot be read).
- A failed trial of a study from before `failure_kind` counts, as it did then.
- The live line fits the terminal by leaving out its least useful parts, the counts last; it shows each
  standing at once, never a trial running once every trial is done (one whose worker has told Optuna its
  result is done, though its process is still exiting), and is erased with the search's last standing.
- Help pages never cut an option's name, at 40 columns too, and no flag shows a `<bool>`.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, run_cli

# the labels are 0, 1, 2: an output of 2 units fails in the trial (a DataError), one of 3 trains
SPEC = """
model c {
  seed: 1
  data {
    source: csv("d.csv", target="y")
    split: holdout(val=0.25)
  }
  input: (2)
  layers {
    Dense(8, activation=relu)
    Dense(choice(2, 3), activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=choice(0.01, 0.02))
  train {
    epochs: 1
    batch_size: 8
  }
  search {
    method: grid
    trials: 4
    objective: minimize val_loss
  }
}
"""


def _spec(tmp_path: Path) -> Path:
    rows = [f"0.{i:02d},0.{(i * 7) % 40:02d},{i % 3}" for i in range(40)]
    (tmp_path / "d.csv").write_text("a,b,y\n" + "\n".join(rows) + "\n")
    p = tmp_path / "c.dlspec"
    p.write_text(SPEC)
    return p


def test_a_data_error_of_the_parameters_counts_and_is_not_run_again(tmp_path, monkeypatch):
    """The grid's first two points fail with the same data error (held until the third point completes,
    which shows it theirs), the last two complete: 4 trials, exit 0, and the same command runs nothing
    more. (`dlc check` reads the labels of a CSV file up to MAX_CSV_PARSED_BYTES and refuses the 2-unit
    option; here the search's check stands for that of a bigger file, whose labels only the trials read.)"""
    from dlc.compiler import datarows

    monkeypatch.setattr(datarows, "MAX_CSV_PARSED_BYTES", 0)
    p = _spec(tmp_path)
    run = tmp_path / "run"
    for again in (False, True):
        rc, _, err = run_cli("tune", p, "--out", run, "--threads", "1")
        assert rc == 0, err
        summary = json.loads((run / "tune.json").read_text())
        trials = summary["trials"]
        assert [t["outcome"] for t in trials] == ["failed", "failed", "complete", "complete"]
        assert [t["failure_kind"] for t in trials[:2]] == ["result", "result"]
        # (the trial's own check, in a process the patch does not reach, reads the labels)
        assert "holds class labels 0..2, but the last layer has 2 outputs" in trials[0]["failure"]
        assert trials[0]["failure"] == trials[1]["failure"]
        assert summary["stopped"] is None and "rerun_of" not in json.dumps(trials)
        assert "4 trials: 2 complete, 2 failed" in err and "queued again" not in err
        rows = [line.split()[1] for line in err.splitlines() if line.startswith("trial ")]
        assert rows == ([] if again else ["0", "1", "2", "3"])  # (the held trials' rows first, in order)


def _failed(message: str, **params) -> SimpleNamespace:
    return SimpleNamespace(user_attrs={"failure": message}, params=params)


def test_data_errors_are_held_until_a_trial_tells_whose_fault_they_are():
    from dlc.runtime.tune import _DataFailures

    judge = _DataFailures()
    a, b = _failed("no column 'z'", u=1), _failed("no column 'z'", u=2)
    assert judge.judge(a) == ([], []) and judge.judge(b) == ([], [])
    other = _failed("label 2 in row 4", u=3)
    assert judge.judge(other) == ([a, b], [])  # another message: the first two were their parameters'
    assert judge.release() == [other]  # (another outcome, or the end of the search)
    assert judge.release() == []


def test_three_alike_with_other_parameters_are_the_datas_fault_and_later_ones_too():
    from dlc.runtime.tune import STOP_AFTER_SAME_FAILURE, _DataFailures

    assert STOP_AFTER_SAME_FAILURE == 3
    judge = _DataFailures()
    same = [_failed("d.csv: cannot read", u=1), _failed("d.csv: cannot read", u=1)]
    assert [judge.judge(t) for t in same] == [([], []), ([], [])]  # (the same parameters prove nothing)
    more = [_failed("d.csv: cannot read", u=2), _failed("d.csv: cannot read", u=3)]
    assert judge.judge(more[0]) == ([], [])
    assert judge.judge(more[1]) == ([], [*same, *more])
    late = _failed("d.csv: cannot read", u=4)
    assert judge.judge(late) == ([], [late]) and judge.held == []


def test_a_failed_trial_of_an_older_study_counts_and_is_not_run_again():
    """A study from before `failure_kind`: its failed trials have none; that dlc counted them."""
    from dlc.runtime.trials import outcome
    from dlc.runtime.tune import _counted, _not_queued_again

    def trial(**attrs):
        return SimpleNamespace(state=SimpleNamespace(name="FAIL"), user_attrs=attrs, number=0,
                               params={"u": 1})

    old = trial(failure="ValueError: x")
    assert outcome(old) == "failed" and _counted(old) and _not_queued_again([old]) == []
    assert outcome(trial(failure="x", failure_kind="error")) == "crashed"
    assert outcome(trial(failure="x", failure_kind="result")) == "failed"
    assert outcome(trial(dlc_interrupted="its process is gone")) == "interrupted"


# ------------------------------------------------------------------------------------------- the live line


def _standing(**kw):
    base = {"done": 2, "target": 20, "running": {3: time.monotonic() - 42.4, 4: time.monotonic() - 3},
            "best": (1, 0.0512)}
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("width,line", [
    (100, "2/20 done · trial 3 running 0:42 (2 running) · best 0.0512 (trial 1)"),
    (60, "2/20 done · trial 3 running 0:42 (2 running) · best 0.0512"),
    (50, "2/20 done · trial 3 running 0:42 · best 0.0512"),
    (40, "2/20 done · trial 3 0:42 · best 0.0512"),
    (30, "2/20 done · trial 3 0:42"),
    (20, "2/20 done · 0:42"),
    (12, "2/20 done"),
    (6, "2/20"),
])
def test_the_live_line_fits_the_terminal_leaving_out_the_least_useful_first(width, line):
    from dlc.cli.tune import status_text

    assert status_text(_standing(), width) == line


def test_the_live_line_is_drawn_refitted_on_a_narrow_terminal():
    from rich.console import Console

    from dlc.cli import tune

    for width, shown in ((40, "2/20 done · trial 3 0:42 · best 0.0512\n"),
                         (60, "2/20 done · trial 3 running 0:42 (2 running) · best 0.0512\n")):
        screen = io.StringIO()
        display = tune._Display(Console(file=screen, width=width, force_terminal=True))
        display.standing(_standing())
        display.close()
        assert shown in screen.getvalue() and "…" not in screen.getvalue()


# -------------------------------------------------------------------------------------------- help pages


def _commands() -> list[str]:
    import typer

    from dlc.cli import app

    return ["", *sorted(typer.main.get_command(app).commands)]


def _names(command: str) -> list[str]:
    """Every option's names and every argument's name on the command's help page."""
    import typer

    from dlc.cli import app

    group = typer.main.get_command(app)
    cmd = group.commands[command] if command else group
    out = ["--help", "-h"]
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        out += [*param.opts, *param.secondary_opts] if param.param_type_name == "option" \
            else [param.metavar or param.name.upper()]
    return out


@pytest.mark.parametrize("columns", [40, 60, 100])
@pytest.mark.parametrize("command", _commands(), ids=lambda c: c or "dlc")
def test_help_pages_show_every_option_name_whole_and_no_bool(command, columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    rc, out, err = run_cli(*([command] if command else []), "--help")
    assert rc == 0, err
    assert "…" not in out and "<bool>" not in out
    assert max(len(line) for line in out.splitlines()) <= columns
    cut = [n for n in _names(command) if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", out)]
    assert not cut, f"dlc {command} --help at {columns} columns lacks {cut}:\n{out}"


def test_help_in_a_pipe_shows_no_bool_and_the_option_names():
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "PY_COLORS")}
    proc = subprocess.run([sys.executable, "-m", "dlc", "tune", "--help"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "<bool>" not in proc.stdout and "\x1b[" not in proc.stdout
    assert all(name in proc.stdout for name in ("--workers", "--refine", "--quiet", "--help"))


# ------------------------------------------------------------------------------ the live line's last standing


def _search_of(study, target: int):
    """A _Search with only what _standing reads."""
    from dlc.runtime.tune import _Search

    search = object.__new__(_Search)
    search.study, search.direction, search.target = study, "minimize", target
    search.started_at = {}
    return search


def test_a_trial_whose_result_is_in_is_done_not_running_though_its_process_has_not_exited():
    """The worker tells Optuna its trial's value, then its process exits: a standing taken between (another
    worker's trial ended) counted it done and showed it running too: `4/4 done · trial 3 running`."""
    import optuna

    from dlc.cli.tune import status_text
    from dlc.runtime.tune_worker import quiet_optuna

    quiet_optuna()
    study = optuna.create_study()
    asked = [study.ask() for _ in range(4)]
    for t, v in zip(asked, (0.4, 0.3, 0.2, 0.25), strict=True):
        study.tell(t, v)  # (trial 3's worker has told its value; its process is still exiting)
    search = _search_of(study, target=4)
    now = time.monotonic()
    search.started_at = {2: now - 5, 3: now - 2}
    standing = search._standing({asked[3]._trial_id: (None, 3)})
    assert (standing.done, standing.target, standing.running) == (4, 4, {})
    assert standing.best == (2, 0.2)
    assert "running" not in status_text(standing)

    late = study.ask()  # a trial still training is running, and not done
    search.target = 5
    search.started_at[late.number] = now
    standing = search._standing({asked[3]._trial_id: (None, 3), late._trial_id: (None, late.number)})
    assert (standing.done, standing.running) == (4, {late.number: now})
    assert status_text(standing, 100).startswith(f"4/5 done · trial {late.number} running")


def test_the_live_line_shows_each_standing_at_once_and_is_erased_when_all_are_done():
    """Not the last standing until the next second's redraw: the new one at once; and the line is gone with
    the standing that has no trial running (the search's last), not left showing a trial running."""
    from rich.console import Console

    from dlc.cli import tune

    screen = io.StringIO()
    display = tune._Display(Console(file=screen, width=100, force_terminal=True))
    display.standing(_standing(done=2, target=4, running={3: time.monotonic()}))
    display.standing(_standing(done=3, target=4, running={3: time.monotonic()}))
    assert "3/4 done · trial 3 running" in screen.getvalue()  # drawn at once
    display.standing(_standing(done=4, target=4, running={}))
    assert display.live.live is None  # stopped: the (transient) line erased
    drawn = len(screen.getvalue())
    display.close()
    assert len(screen.getvalue()) == drawn and "4/4 done" not in screen.getvalue()
