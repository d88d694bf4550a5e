"""The run folder's per-epoch files (history, evidence, checkpoint) are written at dlc.runtime.epochfiles'
pace: after the first and the last epoch, between them once 20 times the last write's time has passed. 1,500
epochs of iris spent 12 s writing them after every epoch against 9 s of training. Here with a clock that
ticks once per look, so that which epochs are written does not depend on the machine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlc.runtime import epochfiles
from dlc.runtime.epochfiles import EpochFiles, Pace

from conftest import ROOT, edited_spec, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = ROOT / "specs" / "iris.dlspec"


class Ticks:
    """A clock that moves on by one at every reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_the_next_write_waits_twenty_times_the_last_ones_time():
    times = iter([0.0, 10.0, 12.0, 51.0, 52.0, 52.0, 52.5, 62.0, 63.0])
    pace = Pace(clock=lambda: next(times))
    assert pace.due()  # at 0: the first is due
    with pace.timed():  # 10 -> 12: the next is due at 12 + 20 * 2 = 52
        pass
    assert not pace.due()  # at 51
    assert pace.due()  # at 52
    with pace.timed():  # 52 -> 52.5: the next at 62.5
        pass
    assert not pace.due()  # at 62
    assert pace.due()  # at 63


def test_files_are_written_at_the_first_epoch_at_their_pace_and_at_the_last():
    class Rec:
        unwritten = False
        writes = 0

        def write(self):
            self.writes += 1
            self.unwritten = False

    rows: list[dict] = []
    saved: list[int] = []
    rec = Rec()
    files = EpochFiles(None, rows, rec, save=lambda st: saved.append(st), pace=Pace(clock=Ticks()))
    with files.flushed():
        for epoch in range(1, 101):
            rows.append({"epoch": epoch})
            rec.unwritten = True
            files.after_epoch(epoch, last=epoch == 100)
    # a write reads the clock twice (1 tick), so the next is due 20 ticks later: one look an epoch
    assert saved[0] == 1 and saved[-1] == 100 and 4 < len(saved) < 10, saved
    assert all(b - a >= 20 for a, b in zip(saved[:-2], saved[1:-1], strict=True)), saved
    assert rec.writes == len(saved) and not rec.unwritten


def _run_with_ticking_pace(monkeypatch):
    monkeypatch.setattr(epochfiles, "Pace", lambda: Pace(clock=Ticks()))


def test_a_long_run_has_every_epoch_in_its_files_and_checkpoints_the_last(tmp_path, monkeypatch):
    from dlc.runtime import checkpoint

    saved: list[int] = []
    save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda run, s, st: (saved.append(st.epoch), save(run, s, st)))
    _run_with_ticking_pace(monkeypatch)
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 60")))
    rc, out, err = run_cli("run", spec, "--out", tmp_path / "r", "--quiet")
    assert rc == 0, err
    assert saved[0] == 1 and saved[-1] == 60 and len(saved) < 10, saved  # (it was 60 writes)
    run = tmp_path / "r"
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == list(range(1, 61))
    assert len((run / "history.csv").read_text().splitlines()) == 61
    ev = json.loads((run / "evidence.json").read_text())
    assert [e["epoch"] for e in ev["epochs"]] == list(range(1, 61)) and len(ev["step_losses"]) == 60 * 6
    with np.load(run / "checkpoint.npz") as z:
        assert json.loads(z["loop"].tobytes().decode())["epoch"] == 60


def _interrupt_at(monkeypatch, epoch: int) -> None:
    """KeyboardInterrupt (Ctrl-C) as epoch `epoch` (from 1) trains."""
    from dlc.runtime import loop

    train_epoch = loop._train_epoch

    def interrupted(session, spec, train_h, val_h, perm, e, *rest):
        if e + 1 == epoch:
            raise KeyboardInterrupt
        return train_epoch(session, spec, train_h, val_h, perm, e, *rest)

    monkeypatch.setattr(loop, "_train_epoch", interrupted)


def test_ctrl_c_writes_the_finished_epochs_and_resume_trains_on_from_the_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C in epoch 9: the history and evidence of epochs 1-8 are written though they were not due; the
    checkpoint is the last one written (epoch 1), from which --resume trains to the numbers of a run never
    interrupted."""
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 12")))
    rc, out, err = run_cli("run", spec, "--out", tmp_path / "full", "--quiet")
    assert rc == 0, err
    with monkeypatch.context() as m:
        _run_with_ticking_pace(m)
        _interrupt_at(m, 9)
        rc, out, err = run_cli("run", spec, "--out", tmp_path / "cut", "--quiet")
    assert rc == 130, err
    cut, full = tmp_path / "cut", tmp_path / "full"
    assert len(json.loads((cut / "history.json").read_text())) == 8
    assert [e["epoch"] for e in json.loads((cut / "evidence.json").read_text())["epochs"]] == \
        list(range(1, 9))
    with np.load(cut / "checkpoint.npz") as z:
        assert json.loads(z["loop"].tobytes().decode())["epoch"] == 1
    rc, out, err = run_cli("run", "--resume", cut, "--quiet")
    assert rc == 0, err
    losses = [[(r["loss"], r["val_loss"]) for r in json.loads((d / "history.json").read_text())]
              for d in (cut, full)]
    assert losses[0] == losses[1]
    ea, eb = (json.loads((d / "evidence.json").read_text()) for d in (cut, full))
    assert ea["epochs"] == eb["epochs"] and ea["step_losses"] == eb["step_losses"]


def test_a_diverging_run_keeps_every_finished_epoch_and_the_failed_ones_evidence(tmp_path, monkeypatch):
    """A non-finite loss in epoch 7, none of epochs 2-6 due: history and evidence are written up to it (the
    failed epoch's evidence included), as when every epoch was written."""
    from dlc.runtime import loop

    check = loop._check_finite

    def nan_in_epoch_7(hist, losses, epoch, *rest):
        if epoch == 6:
            losses = np.where(np.arange(len(losses)) == 2, np.nan, losses)
        return check(hist, losses, epoch, *rest)

    monkeypatch.setattr(loop, "_check_finite", nan_in_epoch_7)
    _run_with_ticking_pace(monkeypatch)
    rc, out, err = run_cli("run", IRIS, "--out", tmp_path / "r", "--quiet")
    assert rc == 1 and "loss became nan at epoch 7, step 3" in err, err
    run = tmp_path / "r"
    assert len(json.loads((run / "history.json").read_text())) == 6
    assert [e["epoch"] for e in json.loads((run / "evidence.json").read_text())["epochs"]] == \
        list(range(1, 8))
    assert json.loads((run / "run.json").read_text())["failed"].startswith("loss became nan")


@pytest.mark.parametrize("command", ["cv", "tune"])
def test_folds_and_trials_write_their_files_at_the_pace_too(tmp_path, monkeypatch, command):
    """A cv fold's and a tune trial's history and evidence: every epoch, written at the end however few were
    due."""
    _run_with_ticking_pace(monkeypatch)
    spec = tmp_path / "iris.dlspec"
    edits = [("epochs: 40", "epochs: 30")]
    if command == "cv":
        edits.append(("holdout(val=0.2, test=0.2, stratify=true)", "kfold(k=2)"))
        where = "fold_1"
    else:
        edits.append(("Adam(lr=0.01)", "Adam(lr=choice(0.01, 0.02))"))
        edits.append(("batch_size: 16", "batch_size: 16\n  }\n  search {\n    method: grid\n    trials: 1"))
        where = "trials/0000"
    spec.write_text(edited_spec(IRIS, *edits))
    rc, out, err = run_cli(command, spec, "--out", tmp_path / "r", "--quiet")
    assert rc == 0, err
    folder = tmp_path / "r" / where
    assert len(json.loads((folder / "history.json").read_text())) == 30
    assert len(json.loads((folder / "evidence.json").read_text())["epochs"]) == 30
