"""One `dlc tune` trial, in a process of its own (so memory cannot grow across trials).

`dlc tune` asks Optuna for a trial (its parameters are sampled in the parent) and starts one process per
trial: forked from a fork server that has already imported the backend (`multiprocessing`'s forkserver: every
trial is a fresh child process, without paying the framework import again), or, with
DLC_TUNE_WORKER=subprocess or where there is no fork server, `python -m dlc.runtime.tune_worker JOB.json`. The
worker opens the study's storage itself, compiles the spec with the trial's values, trains, reports the
objective after every epoch (or every fold, for a cv_ objective) so the pruner can stop it (its decisions
taken in this process from the completed trials read once a second: dlc.runtime.pruning), and tells Optuna
the result: COMPLETE, PRUNED, or FAIL with the reason in the trial's user attribute `failure` and its kind in
`failure_kind`: RESULT when the failure is what these parameters give (a non-finite loss or objective, a spec
error with these values: running them again gives it again), ERROR for anything else (an exception in the
trial's process: out of memory, a missing backend, a bug), which `dlc tune` does not count and runs again. A
data error (DataError, a lowering the backend lacks) is left to the parent (trials.LEFT_TO_PARENT): the trial
stays RUNNING with its `failure`, and `dlc tune` ends it as RESULT unless trials with other parameters fail
alike, which shows the data, not the parameters, at fault. Its output goes to the trial's folder, with the
history.

With `dlc tune --trial-nproc N` a trial is N processes of one data-parallel group (dlc.runtime.parallel, as
`dlc run --nproc N`: the same per-epoch numbers as one process), started by `dlc tune` with the group's
variables (RANK, WORLD_SIZE, ...): rank 0 is the trial's worker as above (it alone opens the study, reports,
prunes and writes the trial's folder); the ranks above 0 (`_help`) compile the spec with the trial's values
(in the job), train along and write nothing, their output going to a file of `dlc tune`'s. A pruned trial's
rank 0 simply ends (dlc tune stops the others); a rank 0 that loses another process (WorkerLost) tells the
study nothing and exits with parallel.EXIT_WORKER_LOST: `dlc tune` ends the trial as crashed, with the line
that says which process stopped.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import traceback
from pathlib import Path

from dlc.backends.distributed import WorkerLost
from dlc.backends.exhausted import out_of_memory, out_of_memory_line
from dlc.runtime.trials import ERROR, LEFT_TO_PARENT, RESULT

PRUNE_STARTUP_TRIALS = 3  # the median pruner prunes nothing until this many trials have completed
PRUNE_WARMUP_STEPS = 2  # ... nor before the trial's second epoch (steps are epochs, counted from 1)
SQLITE_TIMEOUT_S = 60


class _EnvironmentFailure(Exception):
    """A failure of the trial's environment (data, memory, a backend), told in one line (no type name)."""


class _Pruned(Exception):
    def __init__(self, step: int):
        self.step = step


def driver_url(url: str) -> str:
    """`postgresql://` with the driver that is installed: SQLAlchemy 2.1 means psycopg (3) by it, 2.0
    psycopg2; dlc's `postgres` extra installs psycopg2-binary."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")):
        rest = url.split("://", 1)[1]
        for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
            if importlib.util.find_spec(module) is not None:
                return f"postgresql+{driver}://{rest}"
    return url


def make_storage(url: str):
    import optuna

    url = driver_url(url)
    kwargs: dict[str, object]
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        kwargs = {"pool_pre_ping": True}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    if url.startswith("sqlite"):
        _write_ahead(storage, url)
    return storage


# file systems whose SQLite databases take a write-ahead log: local ones (its index is shared memory, which
# every process must see on one host; SQLite: "WAL does not work over a network filesystem")
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs",
                               "jfs", "reiserfs", "bcachefs", "apfs", "hfs"})


def _write_ahead(storage, url: str) -> None:
    """A SQLite study on a local disk in write-ahead-log mode, synchronous=NORMAL: in its default rollback
    journal every `trial.report` (after every epoch) fsynced the file several times, 17-19 ms a report here,
    more than an epoch of a small model (iris: 8 ms); with the log, 3 ms a report with should_prune. A
    commit then survives a killed process as before; a power cut may lose the last ones, never the file. On
    a network file system, or one that cannot be told, the database is left as it is."""
    from sqlalchemy import event
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    if not db or db == ":memory:" or filesystem(Path(db)) not in LOCAL_FILESYSTEMS:
        return

    def pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # (the connections Optuna made to set the study up: reopened with the log)


def filesystem(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the file system holding `path`: that of the longest mount point above it in /proc/mounts
    (its names' blanks written \\040); None where it cannot be told."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    where = os.path.realpath(path.parent if not path.exists() else path)
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best is not None else None


def make_pruner(prune: str):
    import optuna

    if prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS,
                                           n_warmup_steps=PRUNE_WARMUP_STEPS)
    return optuna.pruners.NopPruner()


def quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _redirect(log: str) -> None:
    """Send this process' output (Python's and the framework's) to the trial's log file."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _limit_threads(backend: str, threads: int | None) -> None:
    if threads:
        from dlc.backends import limit_threads

        limit_threads(backend, threads)


def _group_worker(job: dict):
    """This process's place in the trial's data-parallel group (--trial-nproc above 1), else None."""
    if job.get("nproc", 1) <= 1:
        return None
    from dlc.runtime.parallel import from_env

    return from_env()


def run_trial(job: dict, env: dict | None = None, log: str | None = None) -> None:
    """Entry point of a trial process (the target of the forked process, or `python -m
    dlc.runtime.tune_worker`). `env`: the variables of its place in the trial's data-parallel group (a
    forked process; a fresh interpreter has them in its environment); `log`: where a rank above 0 writes its
    output (a forked process; a fresh interpreter's output is sent there by `dlc tune`)."""
    import time

    if env:
        os.environ.update(env)
    worker = _group_worker(job)
    if worker is not None and worker.rank > 0:
        _help(job, worker, log)
        return
    t0 = time.perf_counter()
    trial_dir = Path(job["trial_dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    _redirect(str(trial_dir / "log.txt"))
    os.chdir(job["cwd"])
    import optuna

    quiet_optuna()
    storage = make_storage(job["storage"])
    study = optuna.load_study(study_name=job["study"], storage=storage, pruner=make_pruner(job["prune"]))
    trial = optuna.trial.Trial(study, job["trial_id"])
    trial.set_user_attr("pid", os.getpid())
    print(f"trial {trial.number}: {json.dumps(trial.params)} (process {os.getpid()}, storage open in "
          f"{time.perf_counter() - t0:.2f} s)", flush=True)
    try:
        state, value, failure = _run(job, trial, worker)
        kind = RESULT
    except (KeyboardInterrupt, SystemExit):
        raise  # the parent marks the trial interrupted and queues it again
    except WorkerLost as e:  # another process of the trial's group: dlc tune says which, the trial crashed
        from dlc.runtime.parallel import EXIT_WORKER_LOST

        print(f"{e} ({time.perf_counter() - t0:.2f} s)", flush=True)
        raise SystemExit(EXIT_WORKER_LOST) from None
    except Exception as e:  # noqa: BLE001 - a bug or a library error: this trial failed, the search goes on
        traceback.print_exc()
        state, value, failure, kind = "FAIL", None, _one_line(e), ERROR
    if failure:
        trial.set_user_attr("failure", failure)
        trial.set_user_attr("failure_kind", kind)
        print(f"failed ({kind}): {failure}", flush=True)
    if state == LEFT_TO_PARENT:
        print(f"left to dlc tune to end ({time.perf_counter() - t0:.2f} s)", flush=True)
        return
    if state == "COMPLETE":
        study.tell(trial, value)
    else:
        study.tell(trial, state=getattr(optuna.trial.TrialState, state))
    print(f"{state.lower()}: {value} ({time.perf_counter() - t0:.2f} s)", flush=True)


def _first_line(e: Exception) -> str:
    """The first line of dlc's own message (a data error), or the exception's type without one."""
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


def _one_line(e: Exception) -> str:
    """A failure in one line: the exception's type and first line (an _EnvironmentFailure's message alone, as
    the framework or dlc wrote it)."""
    first_line = str(e).splitlines()[0] if str(e) else ""
    return first_line if isinstance(e, _EnvironmentFailure) else f"{type(e).__name__}: {first_line}"


def _run(job: dict, trial, worker=None) -> tuple[str, float | None, str | None]:
    from dlc.compiler import compile_file

    _limit_threads(job["backend"], job.get("threads"))
    params = trial.params
    overrides = {tuple(at): params[name] for name, at in job["spaces"]}
    result = compile_file(job["spec"], overrides)
    if not result.ok:
        first = result.diagnostics.sorted()[0]
        where = f" (line {first.span.line})" if first.span else ""
        return "FAIL", None, f"spec error with these values{where}: {first.message}"
    spec = result.spec
    if worker is not None:
        problem = _not_parallel(spec, job)
        if problem:  # (dlc tune refuses a spec whose options it finds blocked; this is a pair of them)
            return "FAIL", None, f"these values cannot train data-parallel (--trial-nproc): {problem}"
    base_dir = Path(job["spec"]).parent
    metric = job["metric"]
    trial_dir = Path(job["trial_dir"])
    from dlc.backends import BackendUnavailable, LoweringMissing
    from dlc.runtime import rundir
    from dlc.runtime.data import DataError
    from dlc.runtime.loop import TrainingFailed

    prune = job["prune"] == "median"
    try:
        if metric.startswith("cv_"):
            value = _run_cv(job, trial, spec, base_dir, metric, prune)
        else:
            value = _run_holdout(job, trial, spec, base_dir, metric, prune, trial_dir, worker)
    except _Pruned as p:
        trial.set_user_attr("pruned_at", p.step)
        return "PRUNED", None, None
    except TrainingFailed as e:  # (a non-finite loss: what these parameters give)
        return "FAIL", None, str(e)
    except (DataError, LoweringMissing) as e:
        # what these parameters give (an output layer with fewer units than the data has classes, a layer
        # the backend lacks), unless trials with other parameters fail alike: the parent judges
        # (trials.LEFT_TO_PARENT)
        return LEFT_TO_PARENT, None, _first_line(e)
    except (BackendUnavailable, FileNotFoundError) as e:
        # the environment's failure, not the parameters': one line, and run again when the search continues
        raise _EnvironmentFailure(str(e) or type(e).__name__) from e
    except Exception as e:
        if (what := out_of_memory(e)) is None:
            raise
        # a model or batch too big for these parameters (a smaller one may fit), unless trials with other
        # parameters run out alike (the machine's memory taken): the parent judges, by this message, so the
        # detail (what could not be allocated) goes to the trial's log
        print(f"dlc: {out_of_memory_line(what)}", file=sys.stderr, flush=True)
        return LEFT_TO_PARENT, None, out_of_memory_line("")
    rundir.write_json(trial_dir / "result.json", {"number": trial.number, "params": params, metric: value})
    if value is None or not math.isfinite(value):
        return "FAIL", None, f"the objective {metric} is {value}"
    return "COMPLETE", float(value), None


def _not_parallel(spec, job: dict) -> str | None:
    """Why these values cannot train data-parallel (dlc.runtime.parallel.blockers), or a cv_ objective."""
    from dlc.runtime.parallel import blockers

    if job["metric"].startswith("cv_"):
        return "a cv_ objective cross-validates each trial, which is not split across processes"
    problems = blockers(spec, job["backend"])
    return problems[0] if problems else None


def _session(job: dict, spec, worker, stack):
    """The trial's session: this process's own, or (in a data-parallel group) one in the group's process
    group, joined here (and left when `stack` closes), training on its share of every batch."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights

    dp = None
    if worker is not None:
        from dlc.runtime.parallel import joined

        dp = stack.enter_context(joined(worker, spec, job["backend"], job["device"]))
    session = session_class(job["backend"])(spec, device=job["device"], weights=initial_weights(spec))
    if dp is not None:
        dp.wrap(session, worker)
    return session


def _run_holdout(job, trial, spec, base_dir, metric, prune, trial_dir, worker=None) -> float | None:
    import contextlib

    from dlc.runtime.data import prepare

    data = prepare(spec, base_dir, dtype=spec.dtype)
    with contextlib.ExitStack() as stack:
        session = _session(job, spec, worker, stack)
        return _train_holdout(trial, spec, data, session, metric, prune, trial_dir)


def _train_holdout(trial, spec, data, session, metric, prune, trial_dir) -> float | None:
    from dlc.runtime.epochfiles import EpochFiles
    from dlc.runtime.evidence import Recorder
    from dlc.runtime.loop import train
    from dlc.runtime.pruning import Reports

    reports = Reports(trial)
    recorder = Recorder(spec, trial_dir)
    files = EpochFiles(trial_dir, [], recorder)  # (written at its pace; all of them however the trial ends)

    def on_epoch(row):
        files.append(row)
        v = row.get(metric)
        if v is None or not math.isfinite(v):
            return
        reports.report(float(v), row["epoch"])
        if prune and reports.should_prune():
            raise _Pruned(row["epoch"])

    with files.flushed():
        hist = train(session, spec, data, on_epoch=on_epoch, evidence=recorder)
    row = hist.rows[hist.best_epoch - 1] if hist.restored_best and hist.best_epoch else hist.rows[-1]
    trial.set_user_attr("epochs", len(hist.rows))
    return row.get(metric)


def _run_cv(job, trial, spec, base_dir, metric, prune) -> float | None:
    from dlc.runtime.cv import run_cv
    from dlc.runtime.pruning import Reports

    reports = Reports(trial)
    key = metric[len("cv_"):]
    seen: list[float] = []

    def on_fold(row):
        seen.append(row["val"][key])
        v = sum(seen) / len(seen)
        reports.report(float(v), row["fold"])
        if prune and reports.should_prune():
            raise _Pruned(row["fold"])

    summary = run_cv(spec, base_dir, job["backend"], job["device"], out=Path(job["trial_dir"]),
                     on_fold=on_fold)
    return summary.get(metric)


def _help(job: dict, worker, log: str | None) -> None:
    """A rank above 0 of a trial's data-parallel group: the same training as rank 0 (the spec with the
    trial's values, from the job; the loop's decisions follow from the same summed numbers), writing nothing
    and telling the study nothing. Where rank 0 reports the failure itself (a spec error, a data error, a
    non-finite loss) it ends quietly (exit 0); a lost peer is exit EXIT_WORKER_LOST; any other error exit 1,
    its last line saying why (dlc tune quotes it)."""
    from dlc.runtime.parallel import EXIT_WORKER_LOST

    if log:
        _redirect(log)
    os.chdir(job["cwd"])
    try:
        _follow(job, worker)
    except (KeyboardInterrupt, SystemExit):
        raise
    except WorkerLost as e:
        print(e, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_WORKER_LOST) from None
    except Exception as e:  # noqa: BLE001 - this process's own failure: dlc tune says which process stopped
        traceback.print_exc()
        print(f"dlc: error: {_one_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _follow(job: dict, worker) -> None:
    import contextlib

    from dlc.backends import LoweringMissing
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, prepare
    from dlc.runtime.loop import TrainingFailed
    from dlc.runtime.parallel import follow

    _limit_threads(job["backend"], job.get("threads"))
    params = job["params"]
    result = compile_file(job["spec"], {tuple(at): params[name] for name, at in job["spaces"]})
    spec = result.spec
    if not result.ok or spec is None or _not_parallel(spec, job):
        return  # (rank 0 reports it)
    try:
        data = prepare(spec, Path(job["spec"]).parent, dtype=spec.dtype)
        with contextlib.ExitStack() as stack:
            session = _session(job, spec, worker, stack)
            follow(session, spec, data, None)
    except (DataError, LoweringMissing, TrainingFailed) as e:
        print(f"ended as rank 0 does: {_first_line(e)}", flush=True)  # (rank 0 reports it)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dlc.runtime.tune_worker JOB.json   (started by `dlc tune`)", file=sys.stderr)
        return 2
    run_trial(json.loads(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
