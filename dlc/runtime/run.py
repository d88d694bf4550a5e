"""What `dlc run` does to a run directory: train a spec on one backend, writing the history and a checkpoint
after every epoch and, at the end, the final metrics, the model and the curves; and continue a killed run from
its last checkpoint (`--resume`). Nothing here prints: progress goes to an Observer (the command line's
display)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dlc.runtime import rundir
from dlc.runtime.runs import RunDirError


class RunFailed(Exception):
    """A failure after the run directory was made: the cause, and the directory (kept, with the history)."""

    def __init__(self, cause: BaseException, run: Path):
        super().__init__(str(cause))
        self.cause = cause
        self.run = run


# -------------------------------------------------------------------------------------------------- specs


def apply_overrides(spec, seed: int | None = None, dtype: str | None = None, epochs: int | None = None):
    """The spec with the command line's --seed, --dtype and --epochs (None: the spec's own)."""
    update: dict[str, Any] = {}
    if seed is not None:
        update["seed"] = seed
    if dtype is not None:
        update["dtype"] = dtype
    if epochs is not None:
        update["train"] = spec.train.model_copy(update={"epochs": epochs})
    return spec.model_copy(update=update) if update else spec


def trainable(result, seed: int | None = None, dtype: str | None = None, epochs: int | None = None):
    """The spec of a compiled, error-free result, ready to train with the overrides; SpecError (the
    diagnostics, positioned in the spec) when it cannot be trained as it is (search spaces, ...)."""
    from dlc.compiler.diagnostics import SpecError
    from dlc.runtime.support import run_blockers

    blockers = run_blockers(result)
    if blockers:
        raise SpecError(blockers, result.source, result.file)
    return apply_overrides(result.spec, seed, dtype, epochs)


def final_metrics(session, spec, data) -> dict[str, dict[str, float]]:
    """Loss and metrics of the trained model on each part of the data, in inference mode."""
    from dlc.runtime.loop import evaluate

    out = {}
    for part in ("train", "val", "test"):
        split = getattr(data, part)
        if split is not None:
            out[part] = evaluate(session, spec, session.load_data(split.x, split.y), spec.train.batch_size)
    return out


# ----------------------------------------------------------------------------------------------- resuming


@dataclass
class Resumable:
    """A run directory `--resume` can continue (finished: it has metrics.json, nothing is left to do)."""

    run: Path
    info: dict
    finished: bool
    spec: object = None  # the run's exact spec (ir.json), when not finished
    spec_file: str = ""  # the spec copy in the run directory (ir.json when there is none)

    @property
    def backend(self) -> str:
        return self.info["backend"]

    @property
    def base_dir(self) -> Path:
        """Where the spec's relative data paths live: the folder of the spec the run was started from."""
        return Path(self.info["spec_dir"])

    def device(self, asked: str = "auto") -> str:
        """The device to continue on: the one asked for, else the one the run was started with."""
        return self.info.get("device", "auto") if asked == "auto" else asked


def resume_target(run: str | Path) -> Resumable:
    from dlc.compiler.spec import Spec

    run = Path(run)
    if not (run / "ir.json").is_file() or not (run / "run.json").is_file():
        raise RunDirError(f"'{run}' is not a dlc run directory (no ir.json/run.json)")
    info = json.loads((run / "run.json").read_text())
    if (run / "metrics.json").is_file():
        return Resumable(run, info, finished=True)
    spec_file = str(next(iter(sorted(run.glob("*.dlspec"))), run / "ir.json"))
    return Resumable(run, info, finished=False, spec=Spec.model_validate_json((run / "ir.json").read_text()),
                     spec_file=spec_file)


# ----------------------------------------------------------------------------------------------- training


class Observer:
    """What a run reports while it trains; the command line prints it, other callers may ignore it."""

    def started(self, run: Path, data, device_name: str) -> None:
        """The data is ready and the run directory made (before the first epoch)."""

    def training(self):
        """A context around the training loop (the command line's progress display)."""
        return contextlib.nullcontext()

    def progress(self, epoch: int, done: int, total: int) -> None:
        """`done` of `total` steps of epoch `epoch` (from 0) are finished."""

    def epoch(self, row: dict) -> None:
        """An epoch's history row (loss, metrics, val_*, lr, time_s, samples_per_s)."""


@dataclass
class Finished:
    run: Path
    history: object  # dlc.runtime.loop.History
    final: dict  # metrics.json: train/val/test metrics, epochs_run, stopped_early, best_epoch, restored_best


def train_run(spec, backend: str, spec_file: str, base_dir: Path, *, device: str = "auto",
              out: str | None = None,
              resume: Resumable | None = None, observer: Observer | None = None) -> Finished:
    """Train `spec` on `backend` into a run directory: `out` (default: a fresh one under runs/), or the one
    being resumed. A failure before the directory exists is raised as it is; one after it as RunFailed (the
    history so far and its curves are written first)."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import TrainingFailed

    observer = observer or Observer()
    session_cls = session_class(backend)
    data = prepare(spec, base_dir)
    session = session_cls(spec, device=device, weights=initial_weights(spec))
    run, rows, state = None, [], None
    title = f"{spec.name} ({backend})"
    try:
        if resume is not None:
            run = resume.run
            state, rows = _restore(run, session)
        else:
            run = _new_run(spec, backend, device, spec_file, out, data)
        return _train(session, spec, data, backend, run, rows, state, observer, title)
    except TrainingFailed as e:
        if run is None:
            raise
        rundir.write_history(run, rows)
        if rows:
            rundir.plot_curves(run, rows, title + " — failed")
        raise RunFailed(e, run) from e
    except Exception as e:
        if run is None:
            raise
        raise RunFailed(e, run) from e


def _restore(run: Path, session):
    """(loop state, history rows) of the run's last checkpoint, its weights and optimizer state set on the
    session; (None, []) when it has none (killed before its first epoch ended)."""
    from dlc.runtime import checkpoint

    saved = checkpoint.load(run)
    if saved is None:
        return None, []
    session.set_state(saved[0])
    return saved[1], list(saved[1].history.rows)


def _new_run(spec, backend: str, device: str, spec_file: str, out: str | None, data) -> Path:
    run = rundir.new_run_dir(spec.name, backend, out)
    rundir.copy_spec(run, spec_file)
    (run / "ir.json").write_text(spec.model_dump_json(indent=2))
    where = SimpleNamespace(spec=spec_file, backend=backend, device=device)
    rundir.write_json(run / "run.json", rundir.run_info(where, spec, data))
    return run


def _train(session, spec, data, backend: str, run: Path, rows: list[dict], state, observer: Observer,
           title: str) -> Finished:
    from dlc.runtime import checkpoint
    from dlc.runtime.loop import train
    from dlc.runtime.tensorboard import EventWriter

    rundir.write_json(run / "env.json", rundir.env_info(backend, session.device_name))
    rundir.write_history(run, rows)
    tb = EventWriter(run)
    observer.started(run, data, session.device_name)

    def on_epoch(row):
        rows.append(row)
        rundir.write_history(run, rows)
        tb.scalars(row["epoch"], row)
        observer.epoch(row)

    with observer.training():
        hist = train(session, spec, data, on_epoch=on_epoch, on_progress=observer.progress, resume=state,
                     on_checkpoint=lambda st: checkpoint.save(run, session, st))
    final: dict = final_metrics(session, spec, data)
    final["epochs_run"] = len(hist.rows)
    final["stopped_early"] = hist.stopped_early
    final["best_epoch"] = hist.best_epoch
    final["restored_best"] = hist.restored_best
    rundir.write_json(run / "metrics.json", final)
    session.save(run)
    rundir.plot_curves(run, hist.rows, title, best_epoch=hist.best_epoch)
    return Finished(run, hist, final)
