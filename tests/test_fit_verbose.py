"""`Model.fit(verbose=...)` as Keras' fit: a notebook or terminal user sees each epoch (a bar with the running
loss and the time left, then the epoch's line); a pipe, a log or a test sees nothing unless asked."""

from __future__ import annotations

import io

import pytest

import dlc
from dlc.runtime import verbose as V

from conftest import ROOT

IRIS = ROOT / "specs" / "iris.dlspec"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_verbose_2_prints_a_line_per_epoch_numbered_across_fits(capsys):
    model = dlc.Model(IRIS, backend="torch")
    model.fit(epochs=2, verbose=2)
    model.fit(epochs=1, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2", "Epoch 3/3"]
    assert " - loss: " in lines[0] and " - val_accuracy: " in lines[0] and "\r" not in lines[0]


def test_auto_and_0_print_nothing_where_the_output_does_not_redraw(capsys):
    model = dlc.Model(IRIS, backend="torch")
    model.fit(epochs=1)
    model.fit(epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_verbose_1_in_a_terminal_draws_a_bar_then_the_epoch_line(monkeypatch, capsys):
    monkeypatch.setattr(V, "redraws", lambda stream: True)
    model = dlc.Model(IRIS, backend="torch")
    model.fit(epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert out.startswith("\rEpoch 1/1") and out.endswith("\n") and out.count("\n") == 1, repr(out)
    assert "\rEpoch 1/1 - 6/6 - " in out and " - loss: " in out, repr(out)


def test_the_bar_shows_the_running_loss_and_the_time_left_and_fits_the_terminal(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(V, "_terminal_columns", lambda stream: 60)
    printer = V.FitPrinter(1, 20, screen)
    printer.progress(2, 0, 10)
    printer.progress(2, 4, 10, {"loss": 0.51234, "accuracy": 0.8})
    drawn = screen.getvalue().split("\r")[-1]
    assert drawn.startswith("4/10 [===========>..................] - ETA: ") and len(drawn) <= 59, drawn
    printer.close()  # (a failure before the epoch's line: the next output starts on a line of its own)
    assert screen.getvalue().endswith("\n")


@pytest.mark.parametrize("bad", [3, -1, True, "yes", 1.0])
def test_a_verbose_keras_does_not_take_is_refused(bad):
    with pytest.raises(ValueError, match=r"verbose must be 0, 1, 2 or 'auto' \(got "):
        V.verbosity(bad)
