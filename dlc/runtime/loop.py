"""The one training contract both backends follow: epochs, seeded shuffles, lr per epoch, validation, plateau,
early stopping, NaN detection and the history. Backend-neutral: a backend only runs steps and evaluations."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from dlc.compiler.diagnostics import DlcError
from dlc.compiler.spec import Spec
from dlc.compiler.training import Plateau
from dlc.reference import metrics as M
from dlc.reference.callbacks import improved, monitor_mode, plateau_for
from dlc.reference.rng import epoch_permutation
from dlc.runtime.augment import augment
from dlc.runtime.data import Dataset


class TrainingFailed(DlcError):
    """Training cannot go on (a non-finite loss, ...): one line for the user; `history`, where given, is the
    history so far (a non-finite loss: its step losses through the failing epoch's)."""

    def __init__(self, message: str, history: History | None = None):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    rows: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None
    restored_best: bool = False
    failure: str | None = None
    step_losses: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        """A line, not every epoch's row and every step's loss (what a notebook shows of `model.fit()`)."""
        from dlc.runtime.reprs import clipped, history_line

        flags = [f"best epoch {self.best_epoch} restored" if self.restored_best and self.best_epoch else "",
                 "stopped early" if self.stopped_early else "",
                 f"failed: {clipped(self.failure)}" if self.failure else ""]
        extra = "; ".join(f for f in flags if f)
        return f"History({history_line(self.rows, len(self.step_losses))}{'; ' + extra if extra else ''})"

    def _repr_html_(self) -> str:
        """The epochs as a table in a notebook: the first and last 5 of a longer history."""
        from dlc.runtime.reprs import metric_names, number, table

        names = ["epoch", *metric_names(self.rows)] + (["lr"] if any("lr" in r for r in self.rows) else [])
        picked = self.rows if len(self.rows) <= 10 else [*self.rows[:5], None, *self.rows[-5:]]
        body = [["…"] * len(names) if r is None else
                [r.get(k, "") if k == "epoch" else number(r.get(k, "")) for k in names] for r in picked]
        return table(names, body, caption=repr(self))


def evaluate(session, spec: Spec, handle, batch_size: int) -> dict[str, float]:
    """The loss and the spec's metrics of the session's model on a loaded dataset (inference mode)."""
    loss, stats = session.evaluate(handle, batch_size)
    out = {"loss": float(loss)}
    out.update(M.compute([m.name for m in spec.metrics], spec.task, stats))
    return out


@dataclass
class LoopState:
    """Everything the loop needs to go on after epoch `epoch` (epochs count from 0): saved with each
    checkpoint so a killed run resumes with the same numbers as one never interrupted."""

    epoch: int = 0  # epochs finished
    lr: float = 0.0
    plateau: dict | None = None
    es_best: float | None = None
    es_wait: int = 0
    history: History = field(default_factory=History)
    best_weights: dict | None = None

    def to_json(self) -> dict:
        h = self.history
        return {"epoch": self.epoch, "lr": self.lr, "plateau": self.plateau, "es_best": self.es_best,
                "es_wait": self.es_wait, "rows": h.rows, "stopped_early": h.stopped_early,
                "best_epoch": h.best_epoch, "has_best_weights": self.best_weights is not None}

    @staticmethod
    def from_json(d: dict, best_weights=None) -> LoopState:
        h = History(rows=list(d["rows"]), stopped_early=d["stopped_early"], best_epoch=d["best_epoch"])
        return LoopState(d["epoch"], d["lr"], d["plateau"], d["es_best"], d["es_wait"], h, best_weights)


def train(session, spec: Spec, data: Dataset, epochs: int | None = None,
          on_epoch: Callable[[dict], None] | None = None,
          on_progress: Callable[[int, int, int, dict | None], None] | None = None,
          max_steps: int | None = None,
          resume: LoopState | None = None,
          on_checkpoint: Callable[[LoopState], None] | None = None,
          evidence=None) -> History:
    """Train `session` on `data` as the spec says; returns the history (also on failure, with .failure set).
    `resume` continues from a checkpointed state (the session's own state restored by the caller);
    `on_checkpoint` is called after every finished epoch with the state to save; `on_progress(epoch, done,
    total, running)` when an epoch starts (done 0) and as its steps go (running: the loss and metrics of
    the steps so far, when the backend tells them). `evidence` (a dlc.runtime.evidence.Recorder) records
    the training evidence after every epoch, the one that fails with a non-finite loss included."""
    epochs = epochs or spec.train.epochs
    train_h = session.load_data(data.train.x, data.train.y)
    val_h = session.load_data(data.val.x, data.val.y) if data.val is not None else None
    state = resume if resume is not None else _fresh_state(spec)
    plateau = _plateau(spec, state)
    hist = state.history
    if evidence is not None:
        evidence.begin(session, data, state.epoch, hist)
    for epoch in range(state.epoch, epochs):
        if hist.stopped_early:
            break
        lr = _epoch_lr(spec, plateau, state, epoch)
        session.set_lr(lr)
        perm = _epoch_order(spec, epoch, len(data.train.x), max_steps, len(hist.step_losses))
        if perm is None:
            break
        if spec.data is not None and spec.data.augment:
            train_h = session.load_data(augment(data.train.x, spec.data.augment, spec.seed, epoch),
                                        data.train.y)
        try:
            row = _train_epoch(session, spec, train_h, val_h, perm, epoch, lr, hist, on_progress)
        except TrainingFailed:
            if evidence is not None:
                with contextlib.suppress(Exception):  # the failure being reported comes first
                    evidence.record(session, epoch, lr, hist)
            raise
        if evidence is not None:
            evidence.record(session, epoch, lr, hist)
        if on_epoch:
            on_epoch(row)
        _end_epoch(session, spec, plateau, state, row, epoch, lr)
        if on_checkpoint:
            on_checkpoint(state)
    es = spec.train.early_stopping
    if es is not None and es.restore_best and state.best_weights is not None:
        session.set_weights(state.best_weights)
        hist.restored_best = True
    return hist


def _fresh_state(spec: Spec) -> LoopState:
    """The state before the first epoch: the optimizer's lr, early stopping's best at its worst."""
    state = LoopState(lr=spec.optimizer.learning_rate)
    es = spec.train.early_stopping
    if es is not None:
        state.es_best = math.inf if monitor_mode(es.mode, es.monitor) == "min" else -math.inf
    return state


def _plateau(spec: Spec, state: LoopState):
    """The spec's ReduceLROnPlateau (None without one), with its counters from a resumed state."""
    if spec.schedule is None or spec.schedule.kind != "plateau":
        return None
    plateau = plateau_for(spec.schedule)
    if state.plateau is not None:
        saved = state.plateau
        plateau.best, plateau.wait, plateau.cooldown = saved["best"], saved["wait"], saved["cooldown"]
    return plateau


def _epoch_lr(spec: Spec, plateau, state: LoopState, epoch: int) -> float:
    """This epoch's learning rate: the schedule's, or the one the plateau callback (or no schedule) left."""
    if spec.schedule is not None and plateau is None:
        return spec.schedule.lr_at(epoch, spec.optimizer.learning_rate)
    return state.lr


def _epoch_order(spec: Spec, epoch: int, n: int, max_steps: int | None,
                 steps_done: int) -> np.ndarray | None:
    """The epoch's seeded sample order, cut to the steps `max_steps` leaves; None when none are left."""
    perm = epoch_permutation(spec.seed, epoch, n, spec.train.shuffle)
    if max_steps is None:
        return perm
    left = max_steps - steps_done
    return perm[:left * spec.train.batch_size] if left > 0 else None


def _progress(spec: Spec, epoch: int, n: int, on_progress: Callable[[int, int, int, dict | None], None]):
    """The backend's progress callback, `(done, total, peek=None)`: `peek()` gives the step losses and the
    metric statistics so far, from which the running loss and metrics are told to `on_progress`."""
    bs, task = spec.train.batch_size, spec.task
    names: list[str] = [m.name for m in spec.metrics]

    def progress(done: int, total: int, peek=None) -> None:
        running = None
        if peek is not None and done > 0:
            losses, stats = peek()
            sizes = np.minimum(bs, n - np.arange(len(losses)) * bs).astype(np.float64)
            running = {"loss": float(np.sum(np.asarray(losses) * sizes) / np.sum(sizes))}
            running.update(M.compute(names, task, stats))
        on_progress(epoch, done, total, running)

    return progress


def _train_epoch(session, spec: Spec, train_h, val_h, perm, epoch: int, lr: float, hist: History,
                 on_progress: Callable[[int, int, int, dict | None], None] | None) -> dict:
    """One epoch of steps in the order `perm`, then the validation: the history row (also appended)."""
    bs = spec.train.batch_size
    progress = _progress(spec, epoch, len(perm), on_progress) if on_progress else None
    if progress is not None:
        progress(0, -(-len(perm) // bs))
    t0 = time.perf_counter()
    losses, stats, sizes = session.train_epoch(train_h, perm, bs, progress)
    elapsed = time.perf_counter() - t0
    hist.step_losses.extend(float(v) for v in losses)
    _check_finite(hist, losses, epoch, lr, spec.optimizer.learning_rate)
    _check_finite_weights(session, hist, epoch, lr, spec.optimizer.learning_rate)
    row = {"epoch": epoch + 1, "loss": float(np.sum(losses * sizes) / np.sum(sizes))}
    row.update(M.compute([m.name for m in spec.metrics], spec.task, stats))
    if val_h is not None:
        for k, v in evaluate(session, spec, val_h, bs).items():
            row[f"val_{k}"] = v
    row["lr"] = float(lr)
    row["time_s"] = elapsed
    row["samples_per_s"] = len(perm) / elapsed if elapsed > 0 else float("nan")
    hist.rows.append(row)
    return row


def _check_finite(hist: History, losses: np.ndarray, epoch: int, lr: float, base_lr: float) -> None:
    """TrainingFailed (kept in the history) at the first non-finite step loss, naming smaller lrs to try."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if not bad.size:
        return
    step = int(bad[0])
    _diverged(hist, f"loss became {'nan' if np.isnan(losses[step]) else 'inf'} at epoch {epoch + 1}, step "
                    f"{step + 1}", lr, base_lr)


def _check_finite_weights(session, hist: History, epoch: int, lr: float, base_lr: float) -> None:
    """TrainingFailed when a weight is nan or infinite after an epoch of finite losses: TensorFlow's fused
    Dense+ReLU kernel (a traced step on the CPU) gives 0 for nan, so a Keras model whose gradients overflowed
    trained on with finite losses and constant outputs (torch's loss became nan in the next step). A copy of
    the weights once an epoch: 0.03-0.1 ms for iris, 0.25-0.36 ms for the 407,000 weights of the seed MLP
    (whose epoch takes ~0.6 s); the evidence recorder copies them once more for its norms."""
    for lname, weights in session.get_weights().items():
        for wname, w in weights.items():
            if not np.isfinite(w).all():
                what = "nan" if np.isnan(w).any() else "inf"
                _diverged(hist, f"weights became {what} in epoch {epoch + 1} (layer '{lname}', {wname}) "
                                "while the loss stayed finite (an activation turned nan into a number)", lr,
                          base_lr)


def _diverged(hist: History, what: str, lr: float, base_lr: float) -> NoReturn:
    """TrainingFailed (kept in the history): what became non-finite, when, and smaller lrs to try."""
    smaller = min(base_lr / 10, 0.1)  # 0.1 and 0.01 are the classic starting points
    now = f"learning rate {lr:g}" + ("" if lr == base_lr else f", the optimizer's lr={base_lr:g}")
    hist.failure = (f"{what} ({now}); training diverged: try a smaller learning rate, e.g. lr={smaller:g} "
                    f"or lr={smaller / 10:g}")
    raise TrainingFailed(hist.failure, hist)


def _end_epoch(session, spec: Spec, plateau, state: LoopState, row: dict, epoch: int, lr: float) -> None:
    """The callbacks after an epoch (plateau, early stopping), leaving the state to checkpoint."""
    if plateau is not None and isinstance(spec.schedule, Plateau):  # (a plateau callback has a Plateau)
        lr = plateau.update(row.get(spec.schedule.monitor, row["loss"]), lr)
        state.plateau = {"best": plateau.best, "wait": plateau.wait, "cooldown": plateau.cooldown}
    state.lr = lr
    if spec.train.early_stopping is not None:
        _early_stopping(session, spec.train.early_stopping, state, row, epoch)
    state.epoch = epoch + 1


def _early_stopping(session, es, state: LoopState, row: dict, epoch: int) -> None:
    """Keras' EarlyStopping after an epoch: the best so far (and its weights, with restore_best), the wait."""
    current = row.get(es.monitor)
    if current is None:
        raise TrainingFailed(f"early_stopping monitors '{es.monitor}', which this run does not compute")
    state.es_wait += 1
    assert state.es_best is not None  # set wherever early stopping is: by _fresh_state, or a checkpoint
    if improved(current, state.es_best, monitor_mode(es.mode, es.monitor), es.min_delta):
        state.es_best = current
        state.history.best_epoch = epoch + 1
        state.es_wait = 0
        if es.restore_best:
            state.best_weights = session.get_weights()
    elif state.es_wait >= es.patience and epoch > 0:
        state.history.stopped_early = True
