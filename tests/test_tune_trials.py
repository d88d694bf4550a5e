"""`dlc tune`: which trials count towards --trials, and what the console says while and after trials run.

A trial whose failure is its parameters' result (a non-finite loss) counts; one that crashed (an error in its
process: a killed process, a data error that trials with other parameters repeat) does not: its parameters are
queued again, and the same command continues the search once the cause is fixed. Three crashes in a row stop a
`dlc tune` (one line, exit 1); so do three data errors alike. An
interrupted trial is said to be queued again, not counted as a failure. On a terminal a live line says which
trial runs and for how long; a pipe gets the trial rows alone.

Trials are tiny (a 40-row CSV or iris, one thread).
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

SPEC = """
model c {
  seed: 1
  data {
    source: csv("d.csv", target="y")
    split: holdout(val=0.25)
  }
  input: (2)
  layers {
    Dense(choice(4, 8), activation=relu)
    Dense(1, activation=sigmoid)
  }
  loss: binary_crossentropy
  optimizer: Adam(lr=choice(0.01, 0.02))
  train {
    epochs: EPOCHS
    batch_size: 8
  }
  search {
    method: grid
    trials: 4
    objective: minimize val_loss
  }
}
"""


IRIS = """
model i {
  seed: 5
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.3, stratify=true)
  }
  input: (4)
  layers {
    Dense(8, activation=relu)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: SGD(lr=choice(0.05, 1e12))
  train {
    epochs: 1
    batch_size: 32
  }
  search {
    method: grid
    trials: 2
    objective: minimize val_loss
  }
}
"""


def _csv(path: Path, good: bool) -> None:
    """40 rows; a bad file passes the check (its numbers are numbers) but not a trial: a value float32 cannot
    hold (the check reads every cell of a small file, so a word in a number column would be an E401)."""
    rows = [f"{'1e39' if not good and i == 5 else f'0.{i:02d}'},0.{(i * 7) % 40:02d},{i % 2}"
            for i in range(40)]
    path.write_text("a,b,y\n" + "\n".join(rows) + "\n")


def _spec(tmp_path: Path, epochs: int = 1, good: bool = True) -> Path:
    _csv(tmp_path / "d.csv", good)
    p = tmp_path / "c.dlspec"
    p.write_text(SPEC.replace("EPOCHS", str(epochs)))
    return p


def _trials(run: Path) -> list[dict]:
    return json.loads((run / "tune.json").read_text())["trials"]


def test_crashed_trials_are_run_again_by_the_same_command(tmp_path):
    """Every trial fails with the same data error (the data cannot be read), whatever its parameters: the
    search stops after 3 in a row, exit 1, with why; they crashed (the data's fault, not the parameters') and
    do not count, so the same command, once the file is fixed, runs their parameters again and the rest of
    the grid (it ran nothing more: the crashes counted)."""
    from dlc.runtime.runs import describe

    p = _spec(tmp_path, good=False)
    run = tmp_path / "run"
    rc, _, err = run_cli("tune", p, "--out", run, "--threads", "1")
    assert rc == 1
    assert "dlc: error: no trial completed, stopped: the last 3 trials failed alike, whatever their " \
        "parameters (" in err
    assert "beyond what float32 holds (±3.4e+38); rescale that feature); fix the cause and run the same " \
        "command again to continue" in err
    assert "not counted, queued again" in err
    summary = json.loads((run / "tune.json").read_text())
    assert summary["stopped"].startswith("the last 3 trials failed alike")
    assert summary["counts"] == {"crashed": 3, "waiting": 4}  # 3 reruns and the grid's 4th point
    assert {t["failure_kind"] for t in summary["trials"] if t["state"] == "FAIL"} == {"error"}
    assert describe(run)["status"].startswith("failed: no trial completed (3 failed)")

    _csv(tmp_path / "d.csv", good=True)
    rc, _, err = run_cli("tune", p, "--out", run, "--threads", "1")
    assert rc == 0, err
    trials = _trials(run)
    crashed = [t for t in trials if t["outcome"] == "crashed"]
    reruns = {t["rerun_of"]: t for t in trials if "rerun_of" in t}
    assert len(crashed) == 3 and set(reruns) == {t["number"] for t in crashed}
    assert all(reruns[t["number"]]["params"] == t["params"] and reruns[t["number"]]["outcome"] == "complete"
               for t in crashed)
    assert sum(t["outcome"] == "complete" for t in trials) == 4 and len(trials) == 7
    assert "7 trials: 4 complete, 3 crashed (ran again)" in err
    assert "a crashed or interrupted trial does not count towards --trials" in err
    row = describe(run)
    assert row["epochs"] == "4 trials" and row["status"] == "done"


def test_a_non_finite_loss_counts_and_is_not_run_again(tmp_path):
    """A loss that became inf is what those parameters give: the trial counts (`failed`), and running the
    same command again runs nothing more."""
    p = tmp_path / "iris.dlspec"
    p.write_text(IRIS)
    run = tmp_path / "run"
    for _ in range(2):
        rc, _, err = run_cli("tune", p, "--out", run, "--threads", "1")
        assert rc == 0, err
        trials = _trials(run)
        assert [t["outcome"] for t in trials] == ["complete", "failed"]
        assert trials[1]["failure_kind"] == "result" and "loss became" in trials[1]["failure"]
    assert "2 trials: 1 complete, 1 failed" in err and "does not count" not in err


KILL_THE_FIRST_TRIAL = """
import os, re, signal, sys, time
from pathlib import Path
log, deadline = Path(sys.argv[1]), time.time() + 120
while time.time() < deadline:
    found = re.search(r"\\(process (\\d+),", log.read_text()) if log.exists() else None
    if found:
        os.kill(int(found.group(1)), signal.SIGKILL)
        break
    time.sleep(0.02)
"""


def test_a_killed_trial_process_is_run_again_at_once(tmp_path):
    """A trial's process killed (as the kernel's OOM killer would) crashed: its parameters run again in the
    same `dlc tune`, which ends with the trials it was asked for. (The killer is its own process: a thread
    of this one waited on the GIL of the in-process `dlc tune` under load, and the trial ended first.)"""
    p = _spec(tmp_path, epochs=600)
    p.write_text(p.read_text().replace("trials: 4", "trials: 1"))
    run = tmp_path / "run"
    log = run / "trials" / "0000" / "log.txt"
    killer = subprocess.Popen([sys.executable, "-c", KILL_THE_FIRST_TRIAL, str(log)])
    rc, _, err = run_cli("tune", p, "--out", run, "--threads", "1")
    killer.kill()  # (it has killed the trial, or never found it: then the asserts say so)
    killer.wait()
    assert rc == 0, err
    first, rerun = _trials(run)
    assert first["outcome"] == "crashed" and "its process exited with code -9" in first["failure"]
    assert rerun["rerun_of"] == 0 and rerun["params"] == first["params"] and rerun["outcome"] == "complete"
    assert "2 trials: 1 complete, 1 crashed (ran again)" in err


def test_an_interrupted_trial_is_said_to_be_queued_again_not_failed(capsys):
    from rich.console import Console

    from dlc.cli import tune

    screen = io.StringIO()
    best = SimpleNamespace(number=0, value=0.25, params={}, datetime_start=None, datetime_complete=None,
                           user_attrs={})
    done = SimpleNamespace(problem=None, interrupted=KeyboardInterrupt(), best=best, metric="val_loss",
                           spaces=[], ranked=[], direction="minimize",
                           counts={"complete": 1, "interrupted": 1, "waiting": 1}, trials=[best] * 3,
                           run=Path("runs/t"), stopped=None, ran_again={})
    assert tune._finish(Console(file=screen, width=200), "t", done, False) == 130
    assert "3 trials: 1 complete, 1 interrupted (queued again), 1 waiting" in screen.getvalue()
    assert "1 fail" not in screen.getvalue()
    capsys.readouterr()


def _standing(**kw):
    base = {"done": 2, "target": 20, "running": {3: time.monotonic() - 42.4}, "best": (1, 0.0512)}
    return SimpleNamespace(**{**base, **kw})


def test_the_live_line_says_which_trial_runs_and_the_best():
    from dlc.cli.tune import status_text

    assert status_text(_standing()) == "2/20 done · trial 3 running 0:42 · best 0.0512 (trial 1)"
    two = _standing(running={3: time.monotonic() - 42.4, 4: time.monotonic() - 3}, best=None)
    assert status_text(two) == "2/20 done · trial 3 running 0:42 (2 running)"
    assert status_text(_standing(running={})) == ""


@pytest.mark.parametrize(("done", "trials", "grid", "line"), [
    (2, 4, None, "resuming: 2 of 4 trials done"),
    (4, 2, None, "resuming: 4 trials done, 2 asked for: nothing to run (a larger --trials continues the "
                 "search)"),
    (4, 4, 4, "resuming: 4 trials done, 4 asked for: nothing to run (every point of the grid is done)")])
def test_a_resumed_search_with_nothing_left_says_so(done, trials, grid, line):
    """The same --out again with --trials at or below the trials done said `resuming: 4 of 2 trials done`."""
    from rich.console import Console

    from dlc.cli import tune

    screen = io.StringIO()
    display = tune._Display(Console(file=screen, width=300, soft_wrap=True))
    display.started(SimpleNamespace(spec_name="m", method="grid" if grid else "tpe", grid_size=grid,
                                    points=None, earlier=0, target=trials, trials=trials, backend="torch",
                                    workers=1,
                                    direction="minimize", metric="val_loss", prune="none", run=Path("runs/t"),
                                    study="m",
                                    storage="sqlite:///t.db", refined=None, spaces=[], done_before=done,
                                    requeued=0, trial_nproc=1))
    assert line in screen.getvalue().splitlines()


@pytest.mark.parametrize("terminal", [True, False])
def test_the_live_line_is_drawn_on_a_terminal_only_and_erased_before_a_row(terminal):
    from rich.console import Console

    from dlc.cli import tune

    screen = io.StringIO()
    display = tune._Display(Console(file=screen, width=200, force_terminal=terminal))
    display.plan = SimpleNamespace(metric="val_loss", spaces=[])
    display.standing(_standing())
    display.trial(SimpleNamespace(number=2, params={}, state=SimpleNamespace(name="COMPLETE"), value=0.06,
                                  user_attrs={}, datetime_start=None, datetime_complete=None))
    display.close()
    text = screen.getvalue()
    assert "trial   2  val_loss 0.0600" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    if terminal:
        assert "2/20 done · trial 3 running 0:42 · best 0.0512 (trial 1)" in text
        assert text.endswith("\x1b[2K")  # the line is erased when the search ends
    else:
        assert text == "trial   2  val_loss 0.0600  \n"


def test_a_pseudo_terminal_gets_the_live_line_and_a_pipe_does_not(tmp_path):
    """The whole command: under a pseudo-terminal the live line shows while the trial trains; piped, stderr
    has the rows alone."""
    import pty

    p = _spec(tmp_path, epochs=40)
    p.write_text(p.read_text().replace("trials: 4", "trials: 1"))
    argv = [sys.executable, "-m", "dlc", "tune", str(p), "--threads", "1"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv + ["--out", str(tmp_path / "tty")], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, env={**os.environ, "COLUMNS": "200"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(120) == 0
    shown = b"".join(chunks).decode()
    assert re.search(r"0/1 done · trial 0 running 0:0\d", shown), shown
    piped = subprocess.run(argv + ["--out", str(tmp_path / "pipe")], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert "done · trial" not in piped.stderr and "\x1b" not in piped.stderr
    assert "trial   0  val_loss" in piped.stderr


def test_a_resumed_search_says_which_interruptions_ran_again():
    """Ctrl-C twice, the search resumed in between: the first interruption's rerun had finished, yet the
    summary said "2 interrupted (queued again)"."""
    from dlc.cli.tune import counts_text
    from dlc.runtime.tune import TuneResult

    def trial(number, state, **attrs):
        return SimpleNamespace(number=number, state=SimpleNamespace(name=state), user_attrs=attrs)

    trials = [trial(0, "COMPLETE"), trial(1, "FAIL", dlc_interrupted="Ctrl-C"),
              trial(2, "COMPLETE", dlc_rerun_of=1), trial(3, "FAIL", dlc_interrupted="Ctrl-C"),
              trial(4, "WAITING", dlc_rerun_of=3)]
    counts = {"complete": 2, "interrupted": 2, "waiting": 1}
    done = TuneResult(Path("t"), [], "val_loss", "minimize", trials, [], counts, None)
    assert done.ran_again == {"interrupted": 1}
    assert counts_text(counts, done.ran_again) == \
        "2 complete, 2 interrupted (1 ran again, 1 queued again), 1 waiting"
    assert counts_text({"crashed": 1}, {"crashed": 1}) == "1 crashed (ran again)"
    assert counts_text({"crashed": 1}) == "1 crashed (queued again)"
