"""What a command-line user sees, across the commands: `dlc` alone (the help on stderr, exit 2, as Click
does), an option left without its value (the command's usage line, as every usage error), a path option of
the wrong kind (a folder for a FILE, an output in a folder that is not there or is a file, an input dlc
cannot read: a usage error, exit 2, before any work; it was exit 1), `dlc compare`'s default length (the
API's, 200 steps: it was 50), `dlc run` of a kfold spec (stdout is the run directory alone, as for every
spec: it got the table too), and the live progress bar in a terminal (running loss, time left; Ctrl-C
leaves the cursor shown)."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dlc.cli import COMMANDS

from conftest import ROOT, edited_spec, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"
DLC = str(ROOT / ".venv" / "bin" / "dlc")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def only_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ help


def test_dlc_alone_prints_the_help_on_stderr_and_exits_2():
    """A usage error's help goes where its exit code says (`dlc > out.txt` wrote the help into the file)."""
    rc, out, err = run_cli()
    assert rc == 2 and out == ""
    assert "Usage: dlc [OPTIONS] COMMAND" in err and "Commands" in err


@pytest.mark.parametrize("name", [m.NAME for m in COMMANDS])
def test_every_command_has_short_help(name):
    rc, out, err = run_cli(name, "-h")
    assert rc == 0 and err == "", err
    assert f"Usage: dlc {name} [OPTIONS]" in out


def test_an_option_missing_its_value_names_the_command():
    """`dlc run s.dlspec --out` said only `dlc: error: ...`, without the usage line of `dlc run`."""
    rc, out, err = run_cli("run", IRIS, "--out")
    assert rc == 2 and out == ""
    assert err.splitlines() == ["Usage: dlc run [OPTIONS] [SPEC]", "Try 'dlc run --help' for help.",
                                "dlc: error: Option '--out' requires an argument."]


@pytest.mark.parametrize("argv,says", [
    (["rnu"], "no such command: rnu; did you mean run?"),
    (["lr_find"], "no such command: lr_find; did you mean lr-find?"),
    (["xyzzy"], "no such command: xyzzy"),
    (["run", "--epoch", "1"], "no such option: --epoch; did you mean --epochs?"),
    # (`--backend` as `dlc run` takes it: compile calls it --emit; check takes neither)
    (["compile", "x.dlspec", "--backend", "torch"], "no such option: --backend; did you mean --emit?"),
    (["check", "x.dlspec", "--backend", "torch"], "no such option: --backend"),
])
def test_a_misspelt_command_or_option_is_said_alike_with_the_close_name(argv, says):
    """The command said `No such command 'rnu'. Did you mean 'run'?`, the option `no such option: --epoch;
    did you mean --epochs?`: one wording now."""
    rc, out, err = run_cli(*argv)
    assert rc == 2 and out == "" and err.splitlines()[-1] == f"dlc: error: {says}", err


# ----------------------------------------------------------------------------------- path options: exit 2


@pytest.mark.parametrize("argv,example", [
    (["compile", str(IRIS), "--output", "{folder}"], "model.py"),
    (["compile", str(IRIS), "--emit", "torch", "--output", "{folder}"], "model.py"),
    (["export", "{run}", "--output", "{folder}"], "model.onnx"),
    (["predict", "{run}", "--input", "{run}/x.csv", "--output", "{folder}"], "predictions.csv"),
    (["plot", "{run}", "--out", "{folder}"], "plot.png"),
], ids=lambda v: " ".join(v[:1] + v[-2:-1]) if isinstance(v, list) else "")
def test_a_folder_given_for_an_output_file_is_a_usage_error(tmp_path, argv, example):
    """It was exit 1, as if something had failed while running; nothing is read or trained first."""
    folder, run = tmp_path / "out", tmp_path / "run"
    folder.mkdir()
    rc, out, err = run_cli(*[a.format(folder=folder, run=run) for a in argv])
    assert rc == 2 and out == ""
    assert only_line(err) == f"dlc: error: {argv[-2]} {folder} is a folder; give a file, such as " \
                             f"{folder / example}"


@pytest.mark.parametrize("argv", [
    ["export", "{run}", "--output", "{missing}/m.onnx"],
    ["export", "{run}", "--output", "{file}/m.onnx"],
    ["compile", str(IRIS), "-o", "{missing}/m.py"],
    ["predict", "{run}", "--input", "{run}/x.csv", "--output", "{file}/p.csv"],
    ["plot", "{run}", "--out", "{file}/p.png"],
    ["plot", "{run}", "--out", "{file}/deeper/p.png"],  # (plot makes missing folders, never through a file)
], ids=lambda v: " ".join(v[:1] + v[-1:]))
def test_an_output_in_a_folder_that_cannot_be_is_a_usage_error(tmp_path, argv):
    (tmp_path / "file").write_text("x")
    names = {"run": tmp_path / "run", "missing": tmp_path / "missing", "file": tmp_path / "file"}
    rc, out, err = run_cli(*[a.format(**names) for a in argv])
    line = only_line(err)
    assert rc == 2 and out == "", err
    assert line.endswith((f"{tmp_path / 'missing'} does not exist",
                          f"{tmp_path / 'file'} is a file, not a folder")), line
    assert not (tmp_path / "missing").exists() and (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("option,given,says", [
    ("--input", "{folder}", "is a folder, not a .csv, .npz or .npy file"),
    ("--input", "/dev/null", "is not a regular file; give a .csv, .npz or .npy file"),
    ("--input", "{folder}/x.txt", "dlc reads a .csv, .npz or .npy file, by the name's ending (not .txt)"),
    ("--data", "{folder}", "is a folder, not a .csv or .npz file"),
    ("--data", "{folder}/x", "dlc reads a .csv or .npz file, by the name's ending (its name has no ending)"),
])
def test_an_input_file_option_of_the_wrong_kind_is_a_usage_error(tmp_path, option, given, says):
    """It was exit 1 (and said after the run was read); a file that is missing stays exit 1 (test_serve)."""
    folder = tmp_path / "in"
    folder.mkdir()
    given = given.format(folder=folder)
    (folder / "x.txt").write_text("1,2,3,4\n")
    (folder / "x").write_text("1,2,3,4\n")
    command = "predict" if option == "--input" else "evaluate"
    rc, out, err = run_cli(command, tmp_path / "run", option, given)
    assert rc == 2 and out == ""
    assert only_line(err).startswith(f"dlc: error: {option} {given}") and says in err, err


@pytest.mark.parametrize("argv,says", [
    (["check", ""], "SPEC"), (["check", str(IRIS), ""], "SPEC"), (["compile", ""], "SPEC"),
    (["compare", ""], "SPEC"), (["cv", ""], "SPEC"), (["lr-find", ""], "SPEC"), (["tune", ""], "SPEC"),
    (["doctor", ""], "RUN"), (["plot", ""], "RUN"), (["runs", ""], "DIR"),
    (["plot", "{run}", "--out", ""], "--out"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_an_empty_path_argument_is_a_usage_error(tmp_path, argv, says):
    """`dlc check ""` said "cannot read spec file '': it is a directory", `dlc doctor ""` and `dlc plot ""`
    looked at the current folder ('.'), `dlc runs ""` listed it."""
    rc, out, err = run_cli(*[a.format(run=tmp_path) for a in argv])
    assert rc == 2 and out == "" and only_line(err) == f"dlc: error: {says} is empty; give a path"


# -------------------------------------------------------------------------------------------- compare


def test_compare_compares_as_many_steps_as_the_api_by_default(monkeypatch):
    """`dlc compare` ran 50 steps, `dlc.compare` 200: one spec gave two verdicts, and a float32 near-tie was
    decided over at most 50 float64 steps instead of the 200 the bounds were measured over."""
    import dlc
    from dlc.cli import compare as cli

    api_default = inspect.signature(dlc.compare).parameters["steps"].default
    assert cli.DEFAULT_STEPS == api_default == 200
    monkeypatch.setenv("COLUMNS", "200")
    rc, out, _ = run_cli("compare", "--help")
    assert rc == 0 and "[default: 200]" in out


# ---------------------------------------------------------------------------------- stdout of a kfold run


@pytest.fixture(scope="module")
def kfold(tmp_path_factory, one_torch_thread):
    """A kfold spec (iris, 2 folds of 1 epoch) and what `dlc run` printed: (spec, run, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("kfold")
    spec = folder / "kf.dlspec"
    spec.write_text(edited_spec(IRIS, ("holdout(val=0.2, test=0.2, stratify=true)", "kfold(k=2)"),
                                ("epochs: 40", "epochs: 1")))
    rc, out, err = run_cli("run", spec, "--backend", "torch", "--no-evidence", "--out", folder / "r")
    assert rc == 0, err
    return spec, folder / "r", out, err


def test_run_of_a_kfold_spec_prints_only_the_run_directory_on_stdout(kfold, tmp_path):
    """`RUN=$(dlc run spec)` holds the run directory for every spec: a kfold spec put its table there too.
    `dlc cv` keeps the table on stdout: it is that command's result."""
    spec, run, out, err = kfold
    assert out == f"{run}\n"
    assert "iris: 2-fold cross-validation on torch" in err and "mean ± std" in err
    rc, out, err = run_cli("cv", spec, "--backend", "torch", "--no-evidence", "--out", tmp_path / "cv")
    assert rc == 0, err
    assert out.splitlines()[0] == "iris: 2-fold cross-validation on torch"
    assert out.splitlines()[-1] == str(tmp_path / "cv") and "mean ± std" not in err


def test_doctor_takes_json_as_every_command_does(kfold):
    """`dlc doctor RUN --json` was "no such option: --json" (only --format json), where compare, evaluate,
    lr-find and runs take --json."""
    _, run, _, _ = kfold
    rc, out, err = run_cli("doctor", run, "--json")
    assert rc == 0, err
    rc2, out2, _ = run_cli("doctor", run, "--format", "json")
    assert rc2 == 0 and json.loads(out) == json.loads(out2) and "diagnoses" in json.loads(out)


# ----------------------------------------------------------------------------------- a real terminal


@pytest.mark.parametrize("width", range(8, 41))
def test_a_narrow_progress_line_never_cuts_a_number(width):
    """At 20 columns `epoch 10/50  270/1077` was cut to `epoch 10/50  270/107`: 107 steps, it read."""
    from dlc.cli.display import progress_parts

    timing, values = ["1.2s left", "25ms/step"], ["loss: 0.5200"]
    head, bar, tail = progress_parts("10/50", " 270/1077", timing, values, width)
    line = " ".join(part for part in (head, "━" * bar, tail) if part)
    assert len(line) <= width and "270/1077" in line.split(), line
    assert "10/50" in line.split() or width < len("10/50 270/1077"), line
    assert "1.2s left" in line or width < len("epoch 10/50  270/1077 1.2s left"), line


def _read_until(fd: int, seen: bytearray, done, timeout: float) -> bool:
    """Read the pty into `seen` until done(seen) or `timeout` seconds or its end; whether done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(seen):
            return True
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # (the child has closed it: EIO)
                return done(seen)
            if not chunk:
                return done(seen)
            seen += chunk
    return done(seen)


@contextlib.contextmanager
def _in_a_terminal(argv: list[str], env: dict, cwd: Path):
    """`argv` started on a pty (stdin, stdout and stderr: a terminal, as `script` gives), as (the process, the
    pty's reading end); the process is killed if still running at the end, and the pty closed."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_the_bar_in_a_terminal_shows_the_running_loss_and_time_left_and_ctrl_c_leaves_it_clean(tmp_path):
    """In a terminal (a pty, as `script` gives): the live line has the epoch, the steps, the time left and the
    running loss; Ctrl-C ends it with the interrupted line, exit 130, no traceback, and the cursor the bar hid
    shown again (a terminal left without a cursor is the usual mess)."""
    spec = tmp_path / "slow.dlspec"  # (1,077 steps an epoch: the bar is redrawn many times)
    spec.write_text(edited_spec(ROOT / "specs" / "digits_mlp.dlspec", ("batch_size: 128", "batch_size: 1")))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "OMP_NUM_THREADS": "1"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    seen = bytearray()
    with _in_a_terminal([DLC, "run", str(spec), "--out", str(tmp_path / "r"), "--no-evidence"], env,
                        tmp_path) as (proc, master):
        bar = re.compile(rb"epoch \d+/20 +\d+/1077 \S+ \S+ left \S+/step - loss: \d")
        shown = _read_until(master, seen, lambda s: bar.search(ANSI.sub(b"", bytes(s))) is not None, 120)
        assert shown, seen.decode(errors="replace")[-2000:]
        proc.send_signal(signal.SIGINT)
        _read_until(master, seen, lambda s: proc.poll() is not None, 60)
        proc.wait(timeout=60)
        _read_until(master, seen, lambda s: False, 1)
    text = bytes(seen).decode(errors="replace")
    assert proc.returncode == 130, text[-2000:]
    assert "Traceback" not in text
    assert text.rfind("\x1b[?25h") > text.rfind("\x1b[?25l") >= 0  # the cursor is shown again
    plain = ANSI.sub(b"", bytes(seen)).decode(errors="replace")
    assert f"dlc: interrupted; `dlc run --resume {tmp_path / 'r'}` continues it" in plain
    assert Path(tmp_path / "r" / "run.json").is_file()


def test_compare_says_each_training_in_a_terminal_and_nothing_in_a_pipe(tmp_path):
    """`dlc compare` is several trainings, silent for seconds to minutes: in a terminal each one is a line on
    stderr as it starts; in a pipe stderr stays empty and stdout holds the result alone."""
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 1")))
    rc, out, err = run_cli("compare", spec, "--steps", "3")
    assert rc == 0 and "=> equivalent" in out and err == "", err
    seen = bytearray()
    with _in_a_terminal([DLC, "compare", str(spec), "--steps", "3"], {**os.environ, "OMP_NUM_THREADS": "1"},
                        tmp_path) as (proc, master):
        _read_until(master, seen, lambda s: proc.poll() is not None, 120)
        proc.wait(timeout=60)
        _read_until(master, seen, lambda s: False, 1)
    text = ANSI.sub(b"", bytes(seen)).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "iris: training keras in float64, 3 steps ..." in text
    assert "iris: training torch in float64, 3 steps ..." in text
    assert text.index("training torch") < text.index("=> equivalent")
