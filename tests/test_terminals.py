"""What a user sees in terminals that are not the developer's: a narrow one (the progress bar keeps the epoch,
the steps and the time left; tables become one block per row; the doctor wraps at the terminal's width), a
dumb one or a CI log with FORCE_COLOR=1 (no live bar, no carriage returns), a stream that cannot encode ±, →
or box drawing (PYTHONIOENCODING=ascii: ASCII look-alikes, never a UnicodeEncodeError), a read-only current
folder (one line, not Python's OSError), a pipe into `cut` (CSV lines without \\r), Ctrl-C on a search before
a trial ended (one line), and plots of a 1-epoch run (whole-epoch ticks, not 0.945 to 1.050)."""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import ROOT

TIMING = ["1.2s left", "25ms/step"]
VALUES = ["loss: 0.5200", "accuracy: 0.8100", "recall: 0.8000"]


def _line(head: str, bar: int, tail: str) -> str:
    return head + (" " + "━" * bar if bar else "") + (" " + tail if tail else "")


# ------------------------------------------------------------------------------------------ progress bar


@pytest.mark.parametrize("width", [28, 40, 60, 80, 100, 140, 250])
def test_the_progress_line_fits_the_terminal_and_keeps_epoch_and_steps(width):
    from dlc.cli.display import progress_parts

    line = _line(*progress_parts("3/20", " 12/539", TIMING, VALUES, width))
    assert len(line) <= width, line
    assert line.startswith("epoch 3/20  12/539 1.2s left") or line.startswith("epoch 3/20  12/539 ━")
    if width >= 60:
        assert "loss: 0.5200" in line and "━" in line
    if width >= 110:
        assert line.endswith("1.2s left 25ms/step - loss: 0.5200 - accuracy: 0.8100 - recall: 0.8000")


def test_a_narrow_terminal_sees_the_epoch_and_steps_of_the_bar():
    """rich cut the line from the left on 40 columns: `608ms le… - loss: 1.4291 - accuracy: 0.…`, with no
    epoch, steps or bar."""
    from rich.console import Console

    from dlc.cli.display import Progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=40, color_system=None)
    bar = Progress(console, 20)
    with bar:
        bar(2, 0, 47)
        bar(2, 12, 47, {"loss": 0.52, "accuracy": 0.81})
    text = buf.getvalue()
    assert "epoch 3/20 12/47" in text and "left" in text and "…" not in text


@pytest.mark.parametrize("env", [{"FORCE_COLOR": "1"}, {"TERM": "dumb", "TTY_COMPATIBLE": "1"}])
def test_no_live_bar_in_a_forced_colour_log_or_a_dumb_terminal(monkeypatch, env):
    """FORCE_COLOR=1 (a CI log) makes rich call a file a terminal: the bar's carriage returns would fill the
    log; a dumb terminal cannot redraw a line (rich left a blank line where the bar was)."""
    from rich.console import Console

    from dlc.cli.display import Progress, can_redraw

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    console = Console(file=io.StringIO())
    assert console.is_terminal and not can_redraw(console)
    assert not Progress(console, 3).enabled


# ------------------------------------------------------------------------------- streams without UTF-8


def ascii_stdout(monkeypatch):
    """sys.stdout an ASCII stream made safe as dlc's main does; returns what was written to it so far (set in
    the test itself: pytest resets sys.stdout after a fixture's set-up)."""
    from dlc.cli.ascii import make_streams_safe

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", newline="\n")
    monkeypatch.setattr(sys, "stdout", stream)
    make_streams_safe()

    def text() -> str:
        stream.flush()
        return raw.getvalue().decode("ascii")

    return text


def test_an_ascii_stream_gets_look_alikes_not_an_error(monkeypatch):
    written = ascii_stdout(monkeypatch)
    print("mean ± std → 3×3 — |Δloss| ≤ 1e-10 ✓ é")
    assert written() == "mean +/- std -> 3x3 - |deltaloss| <= 1e-10 Y e\n"


def test_an_ascii_table_stays_aligned(monkeypatch):
    """± shown as +/- is three characters: the columns are measured as written."""
    from dlc.cli.tables import print_table

    written = ascii_stdout(monkeypatch)
    print_table("cv", ["fold", "val loss"], [["1", "0.8776"], ["mean ± std", "0.8716 ± 0.0085"]],
                right=("val loss",))
    lines = written().splitlines()
    assert lines[-1] == "mean +/- std  0.8716 +/- 0.0085"
    assert len({len(x) for x in lines[1:]}) == 1, lines


@pytest.mark.parametrize("command", ["cv", "runs", "compare", "catalogue"])
def test_help_on_an_ascii_stream(command):
    """`dlc cv --help | cat` with PYTHONIOENCODING=ascii ended in a UnicodeEncodeError traceback (± in the
    help text)."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    p = subprocess.run([sys.executable, "-m", "dlc", command, "--help"], capture_output=True, env=env,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr.decode()[-600:]
    p.stdout.decode("ascii")


# ----------------------------------------------------------------------------------------------- tables


def test_a_narrow_terminal_gets_one_block_per_row(monkeypatch):
    """On 40 columns the rich table of `dlc runs` folded every cell two letters wide (`20 / 26 / -1 / 1-`)."""
    from dlc.cli.tables import print_table

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setenv("COLUMNS", "40")
    columns = ["run", "spec", "date", "final metrics", "status"]
    print_table("runs in runs", columns, [["keras", "iris", "2026-11-29 21:07",
                                           "loss 0.6189  accuracy 0.8000", "done"]])
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", x).rstrip() for x in screen.getvalue().splitlines()]
    assert all(len(x) <= 40 for x in lines), lines
    assert lines[:4] == ["runs in runs", "keras", "  spec           iris",
                         "  date           2026-11-29 21:07"]
    monkeypatch.setenv("COLUMNS", "120")
    screen.seek(0)
    screen.truncate()
    print_table("runs in runs", columns, [["keras", "iris", "2026-11-29 21:07", "loss 0.6", "done"]])
    assert "┏━" in screen.getvalue() and "loss 0.6" in screen.getvalue()  # wide enough: the rich table


def test_the_doctor_wraps_at_a_narrow_terminal(monkeypatch):
    import shutil

    from dlc.cli import doctor

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(100, 24): os.terminal_size((40, 24)))
    assert doctor._width() == 40


# ---------------------------------------------------------------------------------------- pipes, errors


def test_predictions_on_stdout_have_unix_line_ends(monkeypatch):
    """csv's default \\r\\n left a \\r at the end of each line for `cut -d, -f4` and awk."""
    import numpy as np

    from dlc.cli import predict

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    p = SimpleNamespace(columns=["class", "p0", "p1"], table=np.array([[0, 0.75, 0.25], [1, 0.1, 0.9]]),
                        task="classification", class_names=None)
    predict.write(p, None)
    assert out.getvalue() == "class,p0,p1\n0,0.75,0.25\n1,0.1,0.9\n"


def test_a_read_only_folder_is_one_line_that_says_what_to_do():
    from dlc.cli.errors import classify

    code, text = classify(OSError(errno.EROFS, "Read-only file system", "runs"))
    assert code == 1 and text == ("dlc: error: cannot write runs: the file system is read-only; give --out a "
                                  "folder that can be written")
    code, text = classify(PermissionError(errno.EACCES, "Permission denied", "runs/x"))
    assert code == 1 and text == "dlc: error: runs/x: permission denied"


def test_ctrl_c_before_a_trial_ended_is_the_interrupted_line_alone(capsys):
    """No empty table of best trials, no 'no trial completed' error after `interrupted: run the same command
    again to continue`."""
    from rich.console import Console

    from dlc.cli import tune
    from dlc.cli.errors import CommandError

    done = SimpleNamespace(problem=None, interrupted=True, best=None, metric="val_loss", spaces=[], ranked=[],
                           direction="minimize", counts={"fail": 1}, trials=[], run="runs/t")
    for quiet, said in ((False, ""), (True, "dlc: interrupted")):
        with pytest.raises(CommandError) as e:
            tune._finish(Console(file=io.StringIO(), quiet=quiet), "t", done, quiet)
        assert (e.value.code, e.value.text) == (130, said)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------ plots


def test_one_epoch_gets_one_whole_tick():
    from dlc.runtime.rundir import epoch_axis, figure

    fig, axes = figure(1, 1)
    ax = axes[0][0]
    ax.plot([1], [0.5], "o")
    epoch_axis(ax, [1])
    fig.canvas.draw()
    assert list(ax.get_xticks()) == [1] and ax.get_xlabel() == "epoch"


@pytest.mark.parametrize(("lrs", "scale"), [([0.01, 0.0159], "linear"), ([1e-4, 0.01], "log")])
def test_the_learning_rate_axis_is_log_only_over_a_decade(lrs, scale):
    """`dlc plot` put any lr on a log axis, labelled 1.6×10^-2, 1.5×10^-2, ... for two constant rates."""
    from dlc.runtime.rundir import figure, lr_scale

    fig, axes = figure(1, 1)
    ax = axes[0][0]
    ax.plot([1, 2], lrs)
    lr_scale(ax, lrs)
    assert ax.get_yscale() == scale


# ------------------------------------------------------------------------------------------------- help


def test_a_flag_shows_no_type_in_the_help():
    """Typer labelled the flags `<bool>` (`--replace <bool>`), which reads as if they took a value."""
    from conftest import run_cli

    rc, out, _ = run_cli("run", "--help")
    assert rc == 0 and "--replace" in out and "--quiet" in out
    assert not re.search(r"--(replace|quiet|no-evidence|compile)\s+<bool>", out), out


def test_a_plain_table_pads_wide_characters_by_the_cells_they_take():
    """`dlc runs > file`: a name with CJK characters (two cells each) shifted its row by two cells."""
    from dlc.api import text_cells as cells
    from dlc.cli.tables import plain_table

    text = plain_table("t", ["name", "n"], [["名前 x", "1"], ["plain", "22"]], right=["n"])
    rows = text.splitlines()[3:]
    assert [cells(r) for r in rows] == [cells(rows[1])] * 2, text
    assert cells("名前") == 4 and cells("e\u0301") == 1


def test_an_error_naming_a_file_with_an_escape_does_not_reach_the_terminal_raw():
    """`dlc doctor $'x\\x1b[31m'` sent the ESC to the terminal, colouring it."""
    out = subprocess.run([sys.executable, "-m", "dlc", "doctor", "/nonexistent/x\x1b[31mred"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and "\x1b" not in out.stderr and "x\\x1b[31mred" in out.stderr, out.stderr


def test_a_link_that_loops_is_named_as_one(tmp_path):
    """`dlc plot LOOP` printed Path.resolve's "Symlink loop from ..." RuntimeError."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    out = subprocess.run([sys.executable, "-m", "dlc", "plot", str(loop), "--out", str(tmp_path / "p.png")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "is a link to" in out.stderr and "Symlink loop" not in out.stderr, out.stderr
