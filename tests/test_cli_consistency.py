"""One behaviour across the commands, where each had its own: a path of the wrong kind where a run folder is
expected (a file, a path through a file) is a usage error (exit 2) in every command that takes one, a run
folder that is not there a failure (exit 1); every error line starts `dlc: error: ` (tune's and the usage
errors' had their own); `dlc lr-find` shows its progress in a terminal and nothing in a pipe; a suspended
worker of a data-parallel run is named as such; an output folder no file can be made in is refused before
any work, by the same probe in every command that writes one."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_cli_ux import ANSI, DLC, _in_a_terminal, _read_until

from conftest import ROOT, edited_spec, kill_after_epochs, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"
IRIS_TUNE = ROOT / "specs" / "tune" / "iris_tune.dlspec"


def only_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# every command that takes a run folder, as (argv with RUN in it, what it takes, in its words)
RUN_FOLDER_ARGS = [
    (["run", "--resume", "RUN"], "--resume", "a run directory (the folder `dlc run` wrote)"),
    (["tune", "--refine", "RUN"], "--refine", "a tune run directory (the folder `dlc tune` wrote)"),
    (["evaluate", "RUN"], "RUN", "a run directory (the folder `dlc run` wrote)"),
    (["predict", "RUN", "--input", "x.csv"], "RUN", "a run directory (the folder `dlc run` wrote)"),
    (["export", "RUN"], "RUN", "a run directory (the folder `dlc run` wrote)"),
    (["plot", "RUN"], "RUN", "a run directory (the folder `dlc run` wrote)"),
    (["doctor", "RUN"], "RUN", "a run directory (the folder `dlc run` wrote)"),
    (["runs", "RUN"], "DIR", "a folder of runs"),
]


def _with(argv: list[str], run: Path) -> list[str]:
    return [str(run) if a == "RUN" else a for a in argv]


# ------------------------------------------------------------------------------- 1. run folder arguments


@pytest.mark.parametrize("argv,option,what", RUN_FOLDER_ARGS, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_a_file_given_as_a_run_folder_is_a_usage_error_in_every_command(tmp_path, argv, option, what):
    """`dlc run --resume FILE` was exit 1 and `dlc tune --refine FILE` exit 2 ("no tune.json with the spec
    there"); a path of the wrong kind is a usage error (exit 2) everywhere, as `--output FOLDER` is."""
    f = tmp_path / "notes.txt"
    f.write_text("x")
    rc, out, err = run_cli(*_with(argv, f))
    assert rc == 2 and out == "", err
    assert only_line(err) == f"dlc: error: {option} {f} is a file, not {what}"


@pytest.mark.parametrize("argv,option,what", RUN_FOLDER_ARGS, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_a_path_through_a_file_is_a_usage_error_in_every_command(tmp_path, argv, option, what):
    """FILE/run can be no folder: its parent is a file (an output under a file is refused the same way)."""
    f = tmp_path / "notes.txt"
    f.write_text("x")
    rc, out, err = run_cli(*_with(argv, f / "run"))
    assert rc == 2 and out == "", err
    assert only_line(err) == f"dlc: error: {option} {f / 'run'}: {f} is a file, not a folder"


@pytest.mark.parametrize("argv,option,what", RUN_FOLDER_ARGS, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_a_run_folder_that_is_not_there_is_exit_1_in_every_command(tmp_path, argv, option, what):
    """A well-formed path to nothing is a failure (exit 1), as a missing input file is: the path may be
    mistyped or the run gone. `dlc tune --refine MISSING` was exit 2, saying "no tune.json with the spec
    there"."""
    missing = tmp_path / "nowhere"
    rc, out, err = run_cli(*_with(argv, missing))
    said = f"no such folder '{missing}'" if option == "DIR" else f"no such run directory '{missing}'"
    assert rc == 1 and out == "" and only_line(err) == f"dlc: error: {said}", err


@pytest.mark.parametrize("argv,command", [(["run", "--resume"], "dlc run"),
                                          (["tune", "--refine"], "dlc tune")])
def test_a_spec_given_as_the_run_folder_says_how_to_run_it(tmp_path, argv, command):
    spec = tmp_path / "iris.dlspec"
    spec.write_text(IRIS.read_text())
    rc, _, err = run_cli(*argv, spec)
    assert rc == 2 and only_line(err).endswith(f"; a spec is given as SPEC: `{command} {spec}`"), err


def test_empty_run_folder_arguments_are_usage_errors(tmp_path):
    """`dlc tune --refine ''` said "give a SPEC (or --refine RUN ...)" as if none was given."""
    rc, _, err = run_cli("tune", "--refine", "")
    assert rc == 2 and only_line(err) == "dlc: error: --refine is empty; give a path"
    rc, _, err = run_cli("tune", IRIS_TUNE, "--out", " ")
    assert rc == 2 and only_line(err) == "dlc: error: --out is empty; give a path"


# -------------------------------------------------------------------------------------- 2. error prefixes


def test_tune_errors_start_as_every_error_does(tmp_path):
    """TuneError lines started `dlc tune: `; every other error `dlc: error: `."""
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli("tune", "--refine", tmp_path / "empty")
    said = f"dlc: error: --refine {tmp_path / 'empty'}: no tune.json with the spec there"
    assert rc == 1 and only_line(err) == said, err  # (a folder that holds no run: exit 1, as every command)


def test_usage_errors_start_as_every_error_does():
    """A usage error's line was `dlc compare: error: ...`; the usage line above it names the command."""
    rc, out, err = run_cli("compare", IRIS, "--steps", "0")
    lines = err.splitlines()
    assert rc == 2 and out == "" and lines[0].startswith("Usage: dlc compare ")
    assert lines[-1].startswith("dlc: error: ") and "--steps" in lines[-1], err


def test_a_best_spec_that_does_not_check_is_said_as_an_error(capsys):
    """dlc/cli/tune.py printed `dlc tune: the best spec does not check (a bug):`."""
    from rich.console import Console

    from dlc.cli import tune
    from dlc.cli.errors import CommandError

    done = SimpleNamespace(problem="spec.dlspec:3:5: error E101: ...", interrupted=None, metric="val_loss",
                           spaces=[], ranked=[], direction="minimize", trials=[], counts={}, ran_again={},
                           best=None, stopped=None, run=Path("runs/x"))
    with pytest.raises(CommandError):  # (no trial completed: the line after it)
        tune._finish(Console(stderr=True, highlight=False, width=200), "x", done, quiet=False)
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "dlc: error: the best spec does not check (a bug):", err


# ------------------------------------------------------------------------------- 3. lr-find's progress


def _short_lr_find(tmp_path) -> list[str]:
    return ["lr-find", str(IRIS), "--steps", "20", "--out", str(tmp_path / "lr.png")]


def test_lr_find_in_a_pipe_prints_the_result_alone(tmp_path):
    rc, out, err = run_cli(*_short_lr_find(tmp_path))
    assert rc == 0 and err == "" and "suggested lr" in out and "lr range test  " not in out, err


def test_lr_find_in_a_terminal_shows_its_progress(tmp_path):
    """`dlc lr-find` was silent while it trained (tens of seconds); in a terminal it says what it runs and
    shows a bar over the steps, as `dlc run` does over an epoch's."""
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    seen = bytearray()
    with _in_a_terminal([DLC, *_short_lr_find(tmp_path)], env, tmp_path) as (proc, master):
        _read_until(master, seen, lambda s: proc.poll() is not None, 120)
        proc.wait(timeout=60)
        _read_until(master, seen, lambda s: False, 1)
    text = ANSI.sub(b"", bytes(seen)).decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert "iris: lr range test on torch, lr 1e-07 → 10 over 20 steps ..." in text
    assert re.search(r"lr range test +\d+/20 .* - lr: \S+ - loss: \d", text), text[-2000:]
    assert text.index("lr range test on torch") < text.index("suggested lr")


# ---------------------------------------------------------------------------- 4. a suspended worker


def test_the_launcher_names_a_suspended_worker(monkeypatch):
    """A worker stopped by SIGSTOP (alive, silent) was reported as "the 2 workers of this data-parallel run
    lost contact with each other"."""
    from dlc.runtime.parallel import EXIT_WORKER_LOST, TIMEOUT, Launch, _verdict

    monkeypatch.delenv(TIMEOUT, raising=False)

    code, line = _verdict([EXIT_WORKER_LOST, None], [0], [None, None], Launch(2), None, {1: 4242})
    said = "worker 1 of 2 (pid 4242) stopped responding: it is suspended (SIGSTOP, Ctrl-Z or a debugger)"
    assert code == 1 and line.startswith(said + ", so the others timed out after 300 s"), line
    code, line = _verdict([EXIT_WORKER_LOST, None], [0], [None, None], Launch(2), None, {})
    assert code == 1 and line.startswith("the 2 workers of this data-parallel run lost contact"), line


def test_a_suspended_process_is_told_from_a_running_one():
    from dlc.runtime.parallel import _suspended

    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not _suspended(proc.pid)
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not _suspended(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _suspended(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not _suspended(proc.pid)  # (gone)


@pytest.mark.slow
def test_a_worker_suspended_mid_run_is_named_in_the_launchers_line(tmp_path):
    """About 15 s: two torch workers, one SIGSTOP'd after the first checkpoint, a 5 s collective timeout."""
    pytest.importorskip("torch")
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 3000")))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLC_COLLECTIVE_TIMEOUT": "5"}
    proc = subprocess.Popen([DLC, "run", str(spec), "--nproc", "2", "--out", str(run), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.npz").is_file() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        worker = sorted(int(pid) for pid in children.split())[-1]  # (rank 1: started second)
        os.kill(worker, signal.SIGSTOP)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert re.fullmatch(rf"dlc: error: worker 1 of 2 \(pid {worker}\) stopped responding: it is suspended "
                        rf"\(SIGSTOP, Ctrl-Z or a debugger\), so the others timed out after 5 s "
                        rf"\(DLC_COLLECTIVE_TIMEOUT\); the workers were stopped \(run directory kept: {run}; "
                        rf"`dlc run --resume {run} --nproc 2` continues it\)", only_line(err)), err


# ------------------------------------------------------------------ 5. an output folder that is read-only


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("consistency") / "run"
    rc, _, err = run_cli("run", IRIS, "--epochs", "1", "--out", run, "--quiet", "--no-evidence")
    assert rc == 0, err
    return run


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder no file can be made in, as a read-only mount is (even to root, whom permission bits do not
    stop): the write probe's file is refused there with EROFS."""
    folder = tmp_path / "ro"
    (folder / "empty").mkdir(parents=True)
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folder


# (argv with RO for the read-only folder and RUN for a finished run, the option, the folder it names)
WRITERS = [
    (["run", str(IRIS), "--out", "RO/empty"], "--out", "RO/empty"),
    (["run", str(IRIS), "--out", "RO/new/run"], "--out", "RO"),
    (["cv", str(IRIS), "--out", "RO/empty"], "--out", "RO/empty"),
    (["tune", str(IRIS_TUNE), "--out", "RO/empty"], "--out", "RO/empty"),
    (["plot", "RUN", "--out", "RO/p.png"], "--out", "RO"),
    (["plot", "RUN", "--out", "RO/new/p.png"], "--out", "RO"),
    (["export", "RUN", "--output", "RO/m.onnx"], "--output", "RO"),
    (["predict", "RUN", "--input", "X", "--output", "RO/p.csv"], "--output", "RO"),
    (["compile", str(IRIS), "--emit", "torch", "--output", "RO/m.py"], "--output", "RO"),
]


@pytest.mark.parametrize("argv,option,folder", WRITERS, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_an_output_folder_that_is_read_only_is_refused_before_any_work(read_only, finished_run, tmp_path,
                                                                         argv, option, folder):
    """`dlc run --out RO/empty` failed with exit 1 once it wrote its first file, `dlc plot`, `export`,
    `predict` and `compile` after their work (exit 1), while `dlc lr-find --out RO/x.png` refused it up
    front (exit 2): now all refuse it before any work, exit 2, with lr-find's probe."""
    x = tmp_path / "x.csv"
    x.write_text("5.1,3.5,1.4,0.2\n")
    given = [a.replace("RO", str(read_only)) for a in argv]
    given = [str(finished_run) if a == "RUN" else str(x) if a == "X" else a for a in given]
    rc, out, err = run_cli(*given)
    where = folder.replace("RO", str(read_only))
    shown = next(a for a in given if a.startswith(str(read_only)))
    assert rc == 2 and out == "", err
    assert only_line(err) == (f"dlc: error: {option} {shown}: cannot write in {where} (Read-only file "
                              f"system); give {option} a place you can write")
    assert sorted(p.name for p in read_only.rglob("*")) == ["empty"]


def test_lr_find_refuses_a_read_only_folder_with_the_same_probe(read_only):
    rc, out, err = run_cli("lr-find", IRIS, "--out", read_only / "x.png")
    assert rc == 2 and out == "", err
    assert only_line(err) == (f"dlc: error: --out {read_only / 'x.png'}: cannot write a file in its folder "
                              f"{read_only} (Read-only file system); give --out a file in a folder you can "
                              "write")


def test_a_device_given_as_the_output_is_written_as_it_is(finished_run, tmp_path):
    """The probe is for a file made beside the output; /dev/null (a device) is written in place, whoever may
    write in /dev."""
    x = tmp_path / "x.csv"
    x.write_text("5.1,3.5,1.4,0.2\n")
    rc, _, err = run_cli("predict", finished_run, "--input", x, "--output", os.devnull)
    assert rc == 0, err


def _in_a_read_only_folder(folder: Path) -> list[str]:
    """The command prefix that runs a command with `folder` read-only: for root (whom permission bits do
    not stop), a private mount namespace in which it is a read-only bind mount of itself; for another user,
    chmod 555. Skips the test where neither can be had."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    bind = (f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && "
            f"touch {folder}/x 2>/dev/null && exit 9; exec \"$@\"")
    prefix = ["unshare", "-m", "sh", "-c", bind, "sh"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("no unshare here to make a read-only mount")
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.decode(errors='replace').strip()}")
    return prefix


def test_a_real_read_only_folder_is_refused_before_any_work(tmp_path):
    """On a read-only mount `dlc run --out RO/empty` failed (exit 1) on the first file it wrote, `dlc run
    --out RO/new` (exit 2) when it made the folder: one line, exit 2, before the spec is compiled, either
    way."""
    folder = tmp_path / "ro"
    (folder / "empty").mkdir(parents=True)
    prefix = _in_a_read_only_folder(folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for out, where in ((folder / "empty", folder / "empty"), (folder / "new" / "run", folder)):
        r = subprocess.run([*prefix, DLC, "run", str(IRIS), "--out", str(out)], capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 2 and r.stdout == "", r.stderr
        assert re.fullmatch(rf"dlc: error: --out {out}: cannot write in {where} \((Read-only file system|"
                            rf"Permission denied)\); give --out a place you can write", only_line(r.stderr))
    assert sorted(p.name for p in folder.rglob("*")) == ["empty"]


def test_resuming_a_run_in_a_read_only_folder_is_refused_before_an_epoch(read_only):
    """`dlc run --resume RUN` on a read-only mount said `resuming RUN from epoch 2`, then failed (exit 1)
    with "cannot write RUN/metrics.json: ...; give --out a folder that can be written" (no --out to give)."""
    spec = read_only / "long.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 3000")))
    run = read_only / "killed"
    proc = subprocess.Popen([DLC, "run", str(spec), "--out", str(run), "--quiet", "--no-evidence"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    kill_after_epochs(proc, run, 1, timeout=120)
    # (the kill left its lock file; the lock, taken and let go, removes it: dlc.runtime.runlock.locked)
    before = sorted(p.name for p in run.iterdir() if p.name != ".dlc-lock")
    rc, out, err = run_cli("run", "--resume", run)
    assert rc == 2 and out == "", err
    assert only_line(err) == (f"dlc: error: --resume {run}: cannot write in {run} (Read-only file system); "
                              "copy the run folder where you can write and resume the copy")
    assert sorted(p.name for p in run.iterdir() if p.name != ".dlc-lock") == before


def test_a_run_whose_output_was_closed_says_so_in_its_log(tmp_path):
    """`dlc run SPEC 2>&1 | head -1`: the reader goes, the run stops (exit 141) and stays resumable; its
    log.txt ended `failed: 1` (rich's SystemExit(1) for a closed output), which said nothing."""
    read, write = os.pipe()
    os.close(read)
    try:
        r = subprocess.run([DLC, "run", str(IRIS), "--out", str(tmp_path / "r")], stdout=write, stderr=write,
                           cwd=ROOT, timeout=120)
    finally:
        os.close(write)
    assert r.returncode == 141
    last = (tmp_path / "r" / "log.txt").read_text().splitlines()[-1]
    assert last.startswith("stopped: the output it printed to was closed") and "--resume" in last, last
