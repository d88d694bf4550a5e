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


def test_an_output_that_has_gone_ends_the_printing_not_the_training():
    """A script piped to `head` closed fit's output: BrokenPipeError ended the training at the next line."""
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    printer = V.FitPrinter(2, 5, Gone(), steps=9)
    printer.epoch({"epoch": 1, "loss": 0.5, "time_s": 0.1})
    printer.epoch({"epoch": 2, "loss": 0.4, "time_s": 0.1})
    assert printer.verbose == 0


def test_the_epoch_line_has_the_steps_and_the_time_per_step():
    out = io.StringIO()
    V.FitPrinter(2, 20, out, steps=94).epoch({"epoch": 3, "loss": 0.51234, "val_loss": 0.6, "lr": 1e-3,
                                              "time_s": 1.2, "samples_per_s": 9e3})
    assert out.getvalue() == "Epoch 3/20 - 94/94 - 1.2s - 12.8ms/step - loss: 0.5123 - val_loss: 0.6000 - " \
                             "lr: 0.001\n"
