"""What `dlc run` does to a run directory: train a spec on one backend, writing the history and a checkpoint
after every epoch and, at the end, the final metrics, the model and the curves; and continue a killed run from
its last checkpoint (`--resume`). Nothing here prints: progress goes to an Observer (the command line's
display)."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from dlc.backends.session import device_refusal
from dlc.compiler.diagnostics import DlcError
from dlc.runtime import rundir, runlock
from dlc.runtime.runs import RunDirError, check_out, retrain, shown_value


class RunFailed(DlcError):
    """A failure after the run directory was made: the cause, and the directory (kept, with the history)."""

    def __init__(self, cause: BaseException, run: Path, where: str | None = None):
        super().__init__(str(cause))
        self.cause = cause
        self.run = run
        self.where = where  # the part of the run that failed ("fold 2 of 5"), if it has parts


# -------------------------------------------------------------------------------------------------- specs


def apply_overrides(spec, seed: int | None = None, dtype: str | None = None, epochs: int | None = None):
    """The spec with the command line's --seed, --dtype and --epochs (None: the spec's own). TypeError or
    ValueError for an override no spec could hold (a seed of -1 or 2**40, dtype 'x', epochs 0 or beyond 64
    bits were put in the IR as they were, and failed later or trained on)."""
    from dlc.compiler.spec import SEED_MAX

    for name, value, least, most in (("seed", seed, 0, SEED_MAX), ("epochs", epochs, 1, 2**63 - 1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a whole number, not {type(value).__name__}")
        if not least <= value <= most:
            raise ValueError(f"{name} must be between {least} and {most}, not {value}")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r}: expected one of 'float32', 'float64'")
    seed, epochs = (None if v is None else int(v) for v in (seed, epochs))
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
    from dlc.runtime.support import dtype_blockers, run_blockers

    blockers = run_blockers(result) + dtype_blockers(result, dtype)
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
    """A run directory `--resume` can continue (`finished`: nothing is left to do). `epochs_done` epochs
    of `epochs_total` are in its checkpoint; `complete`: all of them, only the final files are left to
    write (the run was stopped while writing them)."""

    run: Path
    info: dict
    finished: bool
    spec: object = None  # the run's exact spec (ir.json), when not finished
    spec_file: str = ""  # the spec copy in the run directory (ir.json when there is none)
    checkpoint: tuple | None = None  # (session state, loop state) of the last finished epoch
    epochs_total: int = 0

    @property
    def backend(self) -> str:
        return self.info["backend"]

    @property
    def base_dir(self) -> Path:
        """Where the spec's relative data paths live: the folder of the spec the run was started from."""
        return Path(self.info["spec_dir"])

    def __repr__(self) -> str:
        """The folder and how far it got, not run.json and the checkpoint's weights."""
        where = "finished" if self.finished else (
            f"{self.epochs_done} of {self.epochs_total} epochs done" + (
                ", only its final files left to write" if self.complete else ""))
        return f"Resumable({str(self.run)!r}, {self.info.get('backend', '?')}, {where})"

    @property
    def epochs_done(self) -> int:
        return self.checkpoint[1].epoch if self.checkpoint is not None else 0

    @property
    def rows(self) -> list[dict]:
        """The history rows of the epochs done."""
        return list(self.checkpoint[1].history.rows) if self.checkpoint is not None else []

    @property
    def stopped_early(self) -> bool:
        return self.checkpoint is not None and self.checkpoint[1].history.stopped_early

    @property
    def complete(self) -> bool:
        """Every epoch is trained (or early stopping ended the run): only the final files are left."""
        if self.checkpoint is None:
            return False
        loop = self.checkpoint[1]
        return loop.epoch >= self.epochs_total or loop.history.stopped_early

    def device(self, asked: str = "auto") -> str:
        """The device to continue on: the one asked for, else the one the run was started with; a GPU it was
        started on that is not here is a RuntimeError saying so (the backend's own words blamed an option the
        user never gave: "--device cuda was asked for")."""
        if asked != "auto":
            return asked
        started = self.info.get("device", "auto")
        if started not in ("auto", "cpu"):
            from dlc.backends import check_device
            from dlc.backends.session import DeviceUnavailable

            try:
                check_device(self.backend, started)
            except DeviceUnavailable as e:
                raise RuntimeError(f"{self.run} was started on --device {started}, but {e.why}; add --device "
                                   "cpu (or auto) to continue it here") from None
        return started

    @property
    def compiled(self) -> bool:
        """Whether the run was started with --compile (and continues compiled)."""
        return bool(self.info.get("compile", False))


def resume_target(run: str | Path) -> Resumable:
    """The run folder as `--resume` sees it (dlc.runtime.runs.run_state); RunDirError saying why it cannot be
    continued (a cv or tune folder, a damaged run.json/ir.json/checkpoint, a lost checkpoint)."""
    from pydantic import ValidationError

    from dlc.compiler.spec import Spec
    from dlc.runtime import checkpoint
    from dlc.runtime.runs import path_argument, run_state

    run = path_argument(run, "the run directory")  # (Path(5): "expected str, bytes or os.PathLike object")
    st = run_state(run)
    if st.kind == "cv":
        raise RunDirError(f"'{run}' is a cross-validation run: --resume continues `dlc run` runs; run "
                          f"`dlc cv SPEC --out {run} --replace` again")
    if st.kind == "tune":
        raise RunDirError(f"'{run}' is a tune run: run the same `dlc tune SPEC --out {run}` again to "
                          "continue its search")
    if st.state == "damaged" and not st.repairable:
        raise RunDirError(f"'{run}' cannot be resumed: {st.detail}; {retrain(run)}")
    info = st.info or {}
    missing = [k for k in ("backend", "spec_dir") if not isinstance(info.get(k), str)]
    if missing:
        k = missing[0]
        said = f"no '{k}'" if k not in info else f"its {k} is {shown_value(info[k])}, not text"
        raise RunDirError(f"'{run}' cannot be resumed: run.json is damaged ({said}); {retrain(run)}")
    # (writing the run's files would fail on it; a checkpoint that is a folder is named by checkpoint.load)
    if (folder := rundir.folder_in_the_way(run, but=(checkpoint.FILE,))) is not None:
        raise RunDirError(f"'{run}' cannot be resumed: {folder} is a folder, where the run writes a file of "
                          "that name; move it out of the run folder and resume again")
    if st.finished:
        return Resumable(run, info, finished=True)
    if (busy := runlock.busy(run)) is not None:  # (before "resuming ...": the process training it says so)
        raise RunDirError(str(busy))
    if damage := _settings_damage(info):
        raise RunDirError(f"'{run}' cannot be resumed: run.json is damaged ({damage}); {retrain(run)}")
    try:
        spec = Spec.model_validate_json((run / "ir.json").read_text())
    except ValidationError as e:
        n = e.error_count()
        raise RunDirError(f"'{run}' cannot be resumed: ir.json is damaged (not a dlc spec: "
                          f"{n} error{'s' if n != 1 else ''}); {retrain(run)}") from None
    saved = checkpoint.load(run)
    if saved is None and (st.epochs_done or 0) > 1:
        raise RunDirError(f"'{run}' cannot be resumed: checkpoint.npz is missing although history.json has "
                          f"{st.epochs_done} epochs; {retrain(run)}")
    spec_file = str(next(iter(sorted(run.glob("*.dlspec"))), run / "ir.json"))
    return Resumable(run, info, finished=False, spec=spec, spec_file=spec_file, checkpoint=saved,
                     epochs_total=spec.train.epochs)


def _settings_damage(info: dict) -> str | None:
    """What of run.json's settings a resumed run cannot continue with (an edit by hand): a backend dlc does
    not have, a device that is none, a `compile` that is not true or false; None when they are sound. (They
    reached the framework: "unknown backend 'jax'", torch's list of its 20 device types.)"""
    from dlc.backends import BACKENDS

    if info["backend"] not in BACKENDS:
        return f"its backend {info['backend']!r} is not one of {', '.join(BACKENDS)}"
    if "device" in info and (refusal := device_refusal(info["device"])):
        return f"its device {refusal}"
    if not isinstance(info.get("compile", False), bool):
        return f"its compile {info['compile']!r} is not true or false"
    return None


# ----------------------------------------------------------------------------------------------- training


class Observer:
    """What a run reports while it trains; the command line prints it, other callers may ignore it."""

    def started(self, run: Path, data, device_name: str) -> None:
        """The data is ready and the run directory made (before the first epoch)."""

    def training(self):
        """A context around the training loop (the command line's progress display)."""
        return contextlib.nullcontext()

    def progress(self, epoch: int, done: int, total: int, running: dict | None = None) -> None:
        """`done` of `total` steps of epoch `epoch` (from 0) are finished (0: the epoch starts); `running`:
        the loss and metrics of those steps so far, when the backend could tell them."""

    def epoch(self, row: dict) -> None:
        """An epoch's history row (loss, metrics, val_*, lr, time_s, samples_per_s)."""

    def evidence(self, recorder) -> None:
        """Before `started`: the run's training evidence as it is recorded (a dlc.runtime.evidence.Recorder,
        its `to_json()` is evidence.json so far, kept in memory: the live doctor reads it instead of
        re-reading the file every epoch); None when the run records none."""


@dataclass
class Finished:
    run: Path
    history: object  # dlc.runtime.loop.History
    final: dict  # metrics.json: train/val/test metrics, epochs_run, stopped_early, best_epoch, restored_best

    def __repr__(self) -> str:
        """The run folder, its history in a line and its final metrics on the last part measured (test, else
        val, else train), not every epoch's row (a notebook printed 14,000 characters for iris)."""
        from dlc.runtime.reprs import history_line, number

        part = next((p for p in ("test", "val", "train") if isinstance(self.final.get(p), dict)), None)
        final = "" if part is None else f"; {part} " + ", ".join(
            f"{k} {number(v)}" for k, v in self.final[part].items())
        rows = getattr(self.history, "rows", [])
        return f"Finished({str(self.run)!r}: {history_line(rows)}{final})"


def train_run(spec, backend: str, spec_file: str, base_dir: Path, *, device: str = "auto",
              out: str | None = None, replace: bool = False,
              resume: Resumable | None = None, observer: Observer | None = None,
              evidence: bool = True, compile: bool = False) -> Finished:
    """Train `spec` on `backend` into a run directory: `out` (default: a fresh one under runs/; a folder
    that is not empty is refused unless `replace`, see rundir.prepare_out), or the one being resumed. A
    failure before the directory exists is raised as it is; one after it as RunFailed (the history so far
    and its curves are written first, and run.json says why it failed). `evidence`: record the training
    evidence (evidence.json, dlc.runtime.evidence; a resumed run only continues one it has). In a worker of
    a data-parallel run (dlc.runtime.parallel: `dlc run --nproc`), rank 0 does all of this and the other
    ranks only train with it. `compile`: the backend compiles the training step (torch.compile), recorded in
    run.json so that a resumed run compiles too."""
    from dlc.runtime import parallel

    worker = parallel.from_env()
    args = (spec, backend, spec_file, base_dir, device, out, replace, resume, observer, evidence, compile)
    if worker is None:
        return _train_run(*args)
    if compile:  # (a compiled run resumed with --nproc, or started by torchrun)
        raise ValueError("a compiled run (--compile) cannot train data-parallel yet: the data-parallel step "
                         "is not compiled; train it in one process")
    with parallel.joined(worker, spec, backend, device) as dp:
        return _train_run(*args, (worker, dp))


def _train_run(spec, backend: str, spec_file: str, base_dir: Path, device: str, out: str | None,
               replace: bool, resume: Resumable | None, observer: Observer | None, evidence: bool,
               compile: bool, data_parallel=None) -> Finished:
    from dlc.backends import session_class

    observer = observer or Observer()
    session_cls = session_class(backend)
    # the folder is rank 0's alone: the other ranks taking its lock to check it, even for a moment, refused
    # each other's and rank 0's --out (`--nproc 4 --out RUN --replace` failed three times in four)
    writes = data_parallel is None or data_parallel[0].rank == 0
    if resume is None and out and writes:  # refuse a folder in use before loading any data (replace it after)
        check_out(out, replace, spec_file)
    with contextlib.ExitStack() as lock:
        if resume is not None and writes:
            _hold(lock, resume.run)
        return _train_locked(spec, backend, spec_file, base_dir, device, out, replace, resume, observer,
                             evidence, compile, data_parallel, session_cls, lock)


def _hold(lock: contextlib.ExitStack, run: Path) -> None:
    """The run folder's lock (runlock) until `lock` closes; a busy folder is RunDirError: one line, exit 1."""
    try:
        lock.enter_context(runlock.held(run))
    except runlock.FolderBusy as e:
        raise RunDirError(str(e)) from None


def _train_locked(spec, backend: str, spec_file: str, base_dir: Path, device: str, out: str | None,
                  replace: bool, resume: Resumable | None, observer: Observer, evidence: bool,
                  compile: bool, data_parallel, session_cls, lock: contextlib.ExitStack) -> Finished:
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import TrainingFailed

    data = prepare(spec, base_dir, dtype=spec.dtype)  # held once, in the run's dtype
    if resume is not None and (why := data_change(resume.info, data)):
        raise RunDirError(f"'{resume.run}' cannot be resumed: its data changed since the run started "
                          f"({why}); put the data back as it was, or {retrain(resume.run)}")
    session = session_cls(spec, device=device, weights=initial_weights(spec), compile=compile)
    if data_parallel is not None:
        from dlc.runtime.parallel import follow

        worker, dp = data_parallel
        dp.wrap(session, worker)
        session.device_name = f"{session.device_name}, {worker.world} processes"  # (the header, env.json)
        if worker.rank > 0:  # trains along, writes nothing
            history, final = follow(session, spec, data, resume)
            return Finished(resume.run if resume is not None else Path(out or ""), history, final)
    rows: list[dict] = []
    state = None
    title = f"{spec.name} ({backend})"
    if resume is not None:
        run = resume.run
    else:
        run = _new_run(spec, backend, device, spec_file, out, data, replace, compile, evidence)
        _hold(lock, run)  # (another dlc that made the same folder at the same moment is refused here)
    if data_parallel is not None:
        from dlc.runtime.parallel import note_run_folder

        note_run_folder(run)
    try:
        if resume is not None:
            state, rows = _restore(run, session, resume)
        return _train(session, spec, data, backend, run, rows, state, observer, title, evidence)
    except CheckpointMisfit as e:  # (refused before anything changed: the run is not marked failed)
        raise RunFailed(e, run) from e
    except TrainingFailed as e:
        rundir.write_history(run, rows)
        if rows:
            rundir.plot_curves(run, rows, title + " — failed")
        _mark(run, failed=str(e))
        raise RunFailed(e, run) from e
    except Exception as e:
        _mark(run, failed=str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise RunFailed(e, run) from e


class SecondStopHeld:
    """Once training stops on Ctrl-C or SIGTERM, another of them (an impatient second Ctrl-C) is held off
    until the history and evidence of the finished epochs are written and the display is closed: it cut
    that write short, and the epochs since the last paced write were lost from history.json (a run of
    677 epochs kept 520). Only in the main thread, the one that may set signal handlers."""

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}

    @contextlib.contextmanager
    def after_a_stop(self):
        try:
            yield
        except KeyboardInterrupt:  # (Terminated, SIGTERM's and SIGHUP's, too)
            self._hold()
            raise

    def _hold(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                self.saved[sig] = signal.signal(sig, lambda *_: None)  # (the run is stopping already)

    def release(self) -> None:
        import signal

        for sig, handler in self.saved.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)
        self.saved.clear()


@contextlib.contextmanager
def epoch_end_whole() -> Iterator[None]:
    """An epoch's end (its row into the history, the event file, the epoch table and log.txt) as one step for
    a Ctrl-C, SIGTERM or SIGHUP: one that comes in the middle is raised once the step is done. A Ctrl-C after
    the row was kept but before it was printed left the table and log.txt a row short of history.json
    (which the interrupted run writes with every finished epoch). A second one is raised at once (a display
    blocked on a full pipe still stops). Only a signal with a Python handler (the command line's, Python's
    Ctrl-C), and only in the main thread, the one that may set them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[int, Any] = {}
    got: list[int] = []

    def hold(signum, frame):
        if got:  # (the second: at once)
            saved[signum](signum, frame)
        got.append(signum)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                if callable(handler := signal.getsignal(sig)):
                    saved[sig] = handler
                    signal.signal(sig, hold)
        yield
    finally:
        for signum, handler in saved.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
    if got:
        saved[got[0]](got[0], None)


def targets_digest(data) -> str:
    """A digest of the targets of every part of the data (train, val, test), in their order: kept in
    run.json, so that `--resume` knows the samples are those the run started on."""
    h = hashlib.blake2b(digest_size=16)
    for part in (data.train, data.val, data.test):
        if part is not None:
            y = np.ascontiguousarray(part.y)
            h.update(f"{y.dtype.str}{y.shape}".encode())
            h.update(y.tobytes())
    return h.hexdigest()


# features_digest: a part of at most SAMPLED_BLOCKS blocks of about BLOCK_BYTES is hashed whole; a bigger one
# in SAMPLED_BLOCKS evenly spaced blocks (its first and last included), so that an npy source streamed from
# disk is not read a second time (a 3 GB file: 16 MiB read)
BLOCK_BYTES = 1 << 16
SAMPLED_BLOCKS = 256


def features_digest(data) -> str | None:
    """A digest of the feature values of every part (train, val, test), kept in run.json as `features`, so
    that `--resume` knows the values are those the run started on where no normalization statistics stand for
    them (`normalize: none`; None otherwise: normalized values may differ in the last bit on another machine,
    and the statistics are compared instead). Each part's shape and dtype and its values, all of them up to
    SAMPLED_BLOCKS x BLOCK_BYTES (16 MiB), above that a sample of that many evenly spaced blocks of rows: a
    change confined to rows between the sampled blocks of a bigger part is not seen."""
    if data.shift is not None or data.scale is not None:
        return None
    h = hashlib.blake2b(digest_size=16)
    for part in (data.train, data.val, data.test):
        if part is None:
            continue
        x = part.x
        h.update(f"{np.dtype(x.dtype).str}{tuple(x.shape)}".encode())
        n = len(x)
        rows = max(1, BLOCK_BYTES // max(1, math.prod(x.shape[1:]) * np.dtype(x.dtype).itemsize))
        blocks = -(-n // rows)
        starts = range(blocks) if blocks <= SAMPLED_BLOCKS else \
            np.unique(np.linspace(0, blocks - 1, SAMPLED_BLOCKS).round().astype(np.int64)).tolist()
        for b in starts:
            h.update(np.ascontiguousarray(x[b * rows:(b + 1) * rows]).tobytes())
    return h.hexdigest()


def data_change(info: dict, data) -> str | None:
    """How the data read now differs from the data the run (its run.json `info`) started on, which the
    epochs left would train on instead: another number of samples or a header row gained or lost (read_change,
    as `dlc evaluate` asks it), other targets, other normalization statistics (other feature values), other
    feature values without normalization (features_digest); None when it does not differ in these."""
    from dlc.runtime.data import read_change

    read = read_change(data.read, info.get("data_read"))
    if read is not None:
        return read
    if isinstance(info.get("targets"), str) and info["targets"] != targets_digest(data):
        return "the targets differ"
    if isinstance(info.get("preprocessing"), dict) and not _same_statistics(info["preprocessing"],
                                                                             data.preprocessing()):
        return "the normalization statistics differ: the feature values changed"
    if isinstance(info.get("features"), str) and info["features"] != features_digest(data):
        return "the feature values differ"
    return None


def _same_statistics(then: dict, now: dict) -> bool:
    """Whether two runs' normalization shift and scale agree (to 1e-9, relative: a resume on another
    machine may sum in another order)."""
    for key in ("shift", "scale"):
        a, b = then.get(key), now.get(key)
        if a is None or b is None:
            if (a is None) != (b is None):
                return False
            continue
        try:
            x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        if x.shape != y.shape or not np.allclose(x, y, rtol=1e-9, atol=0.0, equal_nan=True):
            return False
    return True


def _mark(run: Path, **changes) -> None:
    """Record in run.json how the run ended (never hiding the failure being reported)."""
    with contextlib.suppress(OSError, ValueError):
        rundir.update_json(run / "run.json", **changes)


def _restore(run: Path, session, resume: Resumable):
    """(loop state, history rows) of the run's last checkpoint, its weights and optimizer state set on the
    session; (None, []) when it has none (killed before its first epoch ended). A checkpoint that does not
    fit the model is refused with the folder as it was; else the files of an unfinished end (metrics.json)
    go first: run.json's `finished` is written again only once every file is."""
    from dlc.runtime import checkpoint

    saved = resume.checkpoint if resume.checkpoint is not None else checkpoint.load(run)
    if saved is not None:
        try:
            checkpoint.restore(session, saved[0])  # (what does not fit, in words)
        except Exception as e:  # noqa: BLE001 - arrays of another model: one line
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointMisfit(f"{run / checkpoint.FILE} does not fit the run's model ({why}); it cannot "
                                   f"be resumed from: {retrain(run)}") from None
    with contextlib.suppress(FileNotFoundError):
        (run / "metrics.json").unlink()
    rundir.update_json(run / "run.json", finished=None, failed=None)
    return (saved[1], list(saved[1].history.rows)) if saved is not None else (None, [])


class CheckpointMisfit(RunDirError):
    """A checkpoint that does not fit the run's model: refused before the folder is touched (the run is not
    marked failed; metrics.json of a run killed while finishing stays)."""


def _new_run(spec, backend: str, device: str, spec_file: str, out: str | None, data, replace: bool,
             compile: bool, evidence: bool = True) -> Path:
    run = rundir.new_run_dir(spec.name, backend, out, replace=replace, spec_file=spec_file)
    if Path(spec_file).is_file() and Path(spec_file).resolve().parent != run.resolve():
        rundir.copy_spec(run, spec_file)
    rundir.write_text(run / "ir.json", spec.model_dump_json(indent=2))
    from dlc.runtime import parallel

    worker = parallel.from_env()
    where = SimpleNamespace(spec=spec_file, backend=backend, device=device, compile=compile,
                            processes=worker.world if worker is not None else 1)
    # `evidence`: whether the training evidence is recorded (false: --no-evidence; the doctor says so where
    # evidence.json is missing, not that the run is from before dlc recorded it)
    info = {**rundir.run_info(where, spec, data), "targets": targets_digest(data),
            "features": features_digest(data), "evidence": evidence}
    rundir.write_json(run / "run.json", info)
    return run


def _train(session, spec, data, backend: str, run: Path, rows: list[dict], state, observer: Observer,
           title: str, evidence: bool = True) -> Finished:
    from dlc.runtime import checkpoint
    from dlc.runtime.epochfiles import EpochFiles
    from dlc.runtime.evidence import FILE, Recorder
    from dlc.runtime.loop import train
    from dlc.runtime.tensorboard import EventWriter

    rundir.write_json(run / "env.json", rundir.env_info(backend, session.device_name))
    rundir.write_history(run, rows)
    tb = EventWriter(run)
    # the evidence of a resumed run continues its evidence.json (a run without one stays without)
    keep = evidence and (state is None or state.epoch == 0 or (run / FILE).is_file())
    recorder = Recorder(spec, run, tb) if keep else None
    observer.evidence(recorder)
    observer.started(run, data, session.device_name)

    # history, evidence and checkpoint: after the first and last epochs, between them at EpochFiles' pace
    files = EpochFiles(run, rows, recorder, save=lambda st: checkpoint.save(run, session, st))

    def on_epoch(row):
        with epoch_end_whole():
            rows.append(row)
            tb.scalars(row["epoch"], row)
            observer.epoch(row)

    def on_checkpoint(st) -> None:
        files.after_epoch(st, last=st.epoch >= spec.train.epochs or st.history.stopped_early)

    stops = SecondStopHeld()
    try:
        with observer.training(), files.flushed(), stops.after_a_stop():
            hist = train(session, spec, data, on_epoch=on_epoch, on_progress=observer.progress,
                         resume=state, on_checkpoint=on_checkpoint, evidence=recorder)
    finally:
        stops.release()
    final: dict = final_metrics(session, spec, data)
    final["epochs_run"] = len(hist.rows)
    final["stopped_early"] = hist.stopped_early
    final["best_epoch"] = hist.best_epoch
    final["restored_best"] = hist.restored_best
    # the end, in an order a kill cannot confuse: the model, the curves, metrics.json, then run.json's
    # `finished` (the one mark of a finished run; see dlc.runtime.runs.run_state)
    rundir.write_history(run, hist.rows)
    rundir.save_model(run, session)
    rundir.plot_curves(run, hist.rows, title, best_epoch=hist.best_epoch)
    rundir.write_json(run / "metrics.json", final)
    rundir.update_json(run / "run.json", finished=rundir.stamp(), failed=None)
    return Finished(run, hist, final)
