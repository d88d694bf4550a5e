"""checkpoint.npz's loop state, its history rows encoded once per run (re-encoding them all after every epoch
made a long run quadratic) and kept as UTF-8 bytes: the same JSON as encoding the whole state again, after
appends, a resume's cut and odd numbers; a checkpoint of the earlier format (a numpy string) loads as it
did, and a run resumed from either continues as the uninterrupted run."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from dlc.runtime import checkpoint
from dlc.runtime.loop import History, LoopState

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _row(rng: random.Random, epoch: int) -> dict:
    row = {"epoch": epoch, "loss": rng.choice([rng.random(), math.nan, math.inf, np.float64(rng.random())]),
           "accuracy": rng.random(), "lr": rng.choice([0.1, 1e-5, np.float32(0.5)]), "time_s": rng.random()}
    if rng.random() < 0.2:
        row["val_loss"] = rng.random()  # (a column not in every row)
    return row


def _state(rows: list[dict], rng: random.Random) -> LoopState:
    plateau = rng.choice([None, {"best": math.inf, "wait": 1, "cooldown": 0}])
    history = History(rows=rows, stopped_early=rng.random() < 0.2, best_epoch=rng.choice([None, 2]))
    return LoopState(epoch=len(rows), lr=rng.random(), plateau=plateau,
                     es_best=rng.choice([None, -math.inf, np.float64(0.25)]), es_wait=rng.randint(0, 3),
                     history=history)


@pytest.mark.parametrize("seed", range(8))
def test_the_loop_json_is_the_whole_states_encoding(tmp_path, seed):
    rng = random.Random(seed)
    rows: list[dict] = []
    for _ in range(60):
        action = rng.random()
        if action < 0.1 and rows:  # a resume: the history cut back to a checkpoint's, then grown again
            rows = [dict(r) for r in rows[:rng.randint(0, len(rows))]]
        elif action < 0.15 and rows:  # a row changed in place (encoded again)
            rows[rng.randrange(len(rows))]["loss"] = rng.random()
        else:
            rows.append(_row(rng, len(rows) + 1))
        state = _state(rows, rng)
        assert checkpoint.loop_json(tmp_path, state) == json.dumps(state.to_json(), default=float)


class _Session:
    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state

    def get_state(self) -> dict[str, np.ndarray]:
        return self.state


def _as_before(run: Path) -> None:
    """checkpoint.npz rewritten as dlc wrote it before: the loop state a numpy string."""
    with np.load(run / checkpoint.FILE, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["loop"] = np.array(arrays["loop"].tobytes().decode("utf-8"))
    with open(run / checkpoint.FILE, "wb") as fh:
        np.savez(fh, **arrays)


def test_a_checkpoint_of_either_format_loads_the_same(tmp_path):
    rng = random.Random(1)
    rows = [_row(rng, e) for e in range(1, 30)]
    state = _state(rows, rng)
    session = _Session({"w/dense/kernel": np.arange(6.0).reshape(2, 3), "step": np.array(7)})
    checkpoint.save(tmp_path, session, state)
    with np.load(tmp_path / checkpoint.FILE) as f:
        assert f["loop"].dtype == np.uint8  # (a quarter of a numpy string's size)
    new = checkpoint.load(tmp_path)
    _as_before(tmp_path)
    with np.load(tmp_path / checkpoint.FILE) as f:
        assert f["loop"].dtype.kind == "U"
    old = checkpoint.load(tmp_path)
    assert new is not None and old is not None
    saved = json.dumps(json.loads(json.dumps(state.to_json(), default=float)))
    for s in (new, old):
        assert json.dumps(s[1].to_json()) == saved
        assert s[0].keys() == session.state.keys()
        assert all(np.array_equal(s[0][k], v) for k, v in session.state.items())


def test_a_loop_state_that_is_not_utf8_is_a_damaged_checkpoint(tmp_path):
    session = _Session({"step": np.array(1)})
    checkpoint.save(tmp_path, session, LoopState())
    with np.load(tmp_path / checkpoint.FILE) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["loop"] = np.frombuffer(b"\xff\xfe{", dtype=np.uint8)
    with open(tmp_path / checkpoint.FILE, "wb") as fh:
        np.savez(fh, **arrays)
    from dlc.runtime.runs import RunDirError

    with pytest.raises(RunDirError, match="is damaged"):
        checkpoint.load(tmp_path)


SPEC = """
model ck {
  seed: 3
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (64)
  layers {
    Dense(16, activation=relu)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.01)
  schedule: plateau(factor=0.5, patience=1)
  train {
    epochs: 4
    batch_size: 64
    early_stopping: (monitor=val_loss, patience=3, restore_best=true)
  }
}
"""


def _numbers(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time_s", "samples_per_s")}
            for r in json.loads((run / "history.json").read_text())]


def _stopped(tmp_path: Path, name: str) -> Path:
    """A run of 2 epochs of its spec's 4, left as a killed one (not finished)."""
    run = tmp_path / name
    rc, _, err = run_cli("run", tmp_path / "ck.dlspec", "--epochs", 2, "--out", run, "--quiet", "--backend",
                         "torch", "--device", "cpu")
    assert rc == 0, err
    (run / "metrics.json").unlink()
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "finished": None}))
    ir = json.loads((run / "ir.json").read_text())
    ir["train"]["epochs"] = 4
    (run / "ir.json").write_text(json.dumps(ir))
    return run


def test_a_run_resumed_from_either_format_ends_as_the_uninterrupted_one(tmp_path):
    (tmp_path / "ck.dlspec").write_text(SPEC)
    rc, _, err = run_cli("run", tmp_path / "ck.dlspec", "--out", tmp_path / "full", "--quiet", "--backend",
                         "torch", "--device", "cpu")
    assert rc == 0, err
    want = json.loads((tmp_path / "full" / "metrics.json").read_text())
    for name in ("new", "old"):
        run = _stopped(tmp_path, name)
        if name == "old":
            _as_before(run)
        rc, _, err = run_cli("run", "--resume", run, "--quiet")
        assert rc == 0, err
        assert _numbers(run) == _numbers(tmp_path / "full")
        got = json.loads((run / "metrics.json").read_text())
        assert got.keys() == want.keys()
        assert {k: v for k, v in got.items() if k != "time_s"} == {k: want[k] for k in got if k != "time_s"}


@pytest.mark.parametrize("seed", range(6))
def test_history_json_laid_out_row_by_row_is_json_rows(tmp_path, seed):
    """history.json, laid out row by row (rundir._EncodedRows.lines), is json_rows of the rows, also for rows
    json_rows does not expect: a first key other than "epoch", a value holding '}, {"epoch": ' (a list of
    dicts), an empty row; after appends, cuts and rows changed in place."""
    from dlc.runtime import rundir

    rng = random.Random(seed)

    def odd_row(epoch: int) -> dict:
        kind = rng.random()
        if kind < 0.1:
            return {}
        if kind < 0.2:
            return {"loss": rng.random(), "epoch": epoch}
        if kind < 0.3:
            return {"epoch": epoch, "parts": [{"epoch": 1}, {"epoch": 2, "x": [{}, {"epoch": 3}]}]}
        return {"epoch": epoch, "loss": rng.choice([rng.random(), math.nan]), "lr": np.float32(0.5)}

    rows: list[dict] = []
    for _ in range(80):
        action = rng.random()
        if action < 0.1:
            rows = rows[:rng.randint(0, len(rows))]
        elif action < 0.15 and rows:
            rows[rng.randrange(len(rows))] = odd_row(0)
        else:
            rows.append(odd_row(len(rows) + 1))
        rundir.write_history(tmp_path, rows)
        assert (tmp_path / "history.json").read_text() == rundir.json_rows(rows, default=float) + "\n"
