"""W010 (a schedule longer than the training) with a searched epochs or schedule length: judged at every
value a trial may draw (compiler/schedulelength.py), said once, naming the values it fires for."""

from __future__ import annotations

import pytest

from dlc.compiler import compile_text
from dlc.compiler.diagnostics import Diagnostic

from conftest import ROOT, run_cli

TUNE = ROOT / "specs" / "tune" / "iris_tune.dlspec"


def _tuned(schedule: str, epochs: str) -> str:
    text = TUNE.read_text()
    for old, new in (("optimizer: Adam(lr=loguniform(1e-3, 1e-1))",
                      f"optimizer: Adam(lr=loguniform(1e-3, 1e-1))\n  schedule: {schedule}"),
                     ("epochs: 60", f"epochs: {epochs}")):
        assert old in text
        text = text.replace(old, new, 1)
    return text


def _w010(text: str) -> list[Diagnostic]:
    return [x for x in compile_text(text, "t.dlspec", TUNE.parent).diagnostics.sorted() if x.code == "W010"]


def _one(text: str) -> Diagnostic:
    found = _w010(text)
    assert len(found) == 1, [x.message for x in found]
    assert found[0].severity == "warning"
    return found[0]


def _at(text: str, needle: str, line_with: str) -> tuple[int, int]:
    """(line, col), 1-based, of `needle` on the first line holding `line_with`."""
    for n, line in enumerate(text.split("\n"), 1):
        if line_with in line and needle in line:
            return n, line.index(needle, line.index(line_with) + len(line_with)) + 1
    raise AssertionError(f"{needle!r} not in the spec")


def _where(d: Diagnostic) -> tuple[int, int]:
    assert d.span is not None
    return d.span.line, d.span.col


@pytest.mark.parametrize("epochs", ["choice(50, 5)", "choice(5, 50)"])
def test_a_searched_epochs_warns_at_the_option_it_fires_for(epochs):
    text = _tuned("cosine(epochs=20)", epochs)
    w = _one(text)
    assert w.message == ("when train.epochs is 5: cosine(epochs=20) is longer than the training: training "
                         "stops after 5 epochs, 0.25 of the way through the cosine")
    before = "epochs: choice(" if epochs == "choice(5, 50)" else "epochs: choice(50, "
    assert _where(w) == _at(text, "5", before)
    assert (w.hint or "").endswith("use cosine(epochs=5) to decay over the whole training; "
                                   f"see line {_at(text, '20', 'schedule:')[0]}")


def test_options_it_fires_for_are_one_warning():
    text = _tuned("cosine(epochs=20)", "choice(5, 8, 50, 10)")
    w = _one(text)
    assert w.message.startswith("when train.epochs is 5 or 8 or 10: cosine(epochs=20) is longer than the "
                                "training: training stops after 5 epochs")


@pytest.mark.parametrize(("schedule", "epochs"), [
    ("cosine(epochs=choice(20, 150))", "choice(200, 300)"),
    ("step(every=choice(5, 10))", "int_uniform(11, 90)"),
    ("warmup(int_uniform(2, 10), then=cosine(epochs=choice(10, 20)))", "30"),
])
def test_quiet_when_no_value_fires(schedule, epochs):
    assert not _w010(_tuned(schedule, epochs))


def test_every_value_firing_is_said_at_the_schedule():
    text = _tuned("cosine(epochs=20)", "choice(5, 10)")
    w = _one(text)
    assert w.message.startswith("when train.epochs is 5 or 10: cosine(epochs=20) is longer")
    assert _where(w) == _at(text, "20", "cosine(epochs=")


def test_a_range_is_said_as_the_numbers_it_fires_for():
    text = _tuned("step(every=7)", "int_uniform(1, 1000)")
    w = _one(text)
    assert w.message.startswith("when train.epochs is 1 to 7: step(every=7) never lowers the lr: training "
                                "stops after 1 epoch")
    assert _where(w) == _at(text, "1", "int_uniform(")


def test_a_searched_schedule_length():
    text = _tuned("plateau(patience=choice(3, 30))", "20")
    w = _one(text)
    assert w.message.startswith("when schedule.patience is 30: plateau(patience=30) never lowers the lr: "
                                "training stops after 20 epochs")
    assert _where(w) == _at(text, "30", "choice(3, ")


def test_two_searched_spaces_name_the_pairs_it_fires_for():
    text = _tuned("cosine(epochs=choice(20, 150))", "choice(5, 50)")
    w = _one(text)
    assert w.message.startswith("when train.epochs is 5, or train.epochs is 50 and schedule.epochs is 150: "
                                "cosine(epochs=20) is longer than the training: training stops after 5")
    text = _tuned("cosine(epochs=choice(20, 150))", "int_uniform(5, 100)")
    assert _one(text).message.startswith(
        "when train.epochs is 5 to 19, or train.epochs is 20 to 100 and schedule.epochs is 150: ")


def test_a_searched_warm_up_with_a_searched_then():
    """warmup(w, then=cosine(c)) over 30 epochs fires when w + c > 30: for w of 11 to 20 only with c = 20."""
    text = _tuned("warmup(int_uniform(2, 40), then=cosine(epochs=choice(10, 20)))", "30")
    w = _one(text)
    assert w.message.startswith("when schedule.epochs is 11 to 20 and schedule.then.epochs is 20, or "
                                "schedule.epochs is 21 to 40: cosine(epochs=20) is longer than the training")


def test_dlc_check_shows_it_once(tmp_path):
    path = tmp_path / "t.dlspec"
    path.write_text(_tuned("cosine(epochs=20)", "choice(50, 5, 10)"))
    rc, out, err = run_cli("check", path)
    assert rc == 0, err
    text = out + err
    assert text.count("warning[W010]") == 1
    assert "warning[W010]: when train.epochs is 5 or 10: cosine(epochs=20)" in text


@pytest.mark.parametrize("schedule, epochs, message, hint", [
    ("step(every=3)", 3, "step(every=3) never lowers the lr: training stops after 3 epochs, and its first "
     "step comes after 3 epochs", "step every 1 epoch, or train for more than 3 epochs"),
    ("warmup(epochs=2, then=step(every=1))", 3, "step(every=1) never lowers the lr: training stops after 3 "
     "epochs, 1 after the warm-up, and its first step comes after 1 epoch",
     "train for more than 1 epoch after the warm-up"),
])
def test_a_step_that_never_steps_counts_its_epochs(schedule, epochs, message, hint):
    """The warning said "its first step comes after 1" (1 what?), and its hints "train for more than 1
    epochs" (the training has 3: it meant after the warm-up) and "step every 1 epochs"."""
    text = (ROOT / "specs" / "iris.dlspec").read_text().replace("epochs: 40", f"epochs: {epochs}").replace(
        "optimizer: Adam(lr=0.01)", f"optimizer: Adam(lr=0.01)\n  schedule: {schedule}")
    w = _one(text)
    assert (w.message, w.hint) == (message, hint)


def test_a_plateau_in_one_epoch_is_told_to_train_longer_not_to_lower_its_patience(tmp_path):
    """No patience lowers the lr within one epoch: the hint says to train longer (it said "use a patience
    below 1", which patience=0 does not satisfy either)."""
    from dlc.compiler import compile_text

    text = """model p {
  seed: 1
  data {
    source: iris
    split: holdout(val=0.2)
  }
  input: (4)
  layers {
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  schedule: plateau(patience=3)
  train {
    epochs: EPOCHS
    batch_size: 16
  }
}
"""
    hints = {}
    for epochs in (1, 4):
        (w,) = [d for d in compile_text(text.replace("EPOCHS", str(epochs))).diagnostics.warnings
                if d.code == "W010"]
        hints[epochs] = w.hint
    assert hints[1].startswith("train for more epochs") and "below" not in hints[1]
    assert hints[4] == "use a patience below 3, or train for more epochs"
