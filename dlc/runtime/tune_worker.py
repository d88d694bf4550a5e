"""One `dlc tune` trial, in a process of its own (so memory cannot grow across trials).

`dlc tune` asks Optuna for a trial (its parameters are sampled in the parent) and starts one process per
trial: forked from a fork server that has already imported the backend (`multiprocessing`'s forkserver: every
trial is a fresh child process, without paying the framework import again), or, with
DLC_TUNE_WORKER=subprocess or where there is no fork server, `python -m dlc.runtime.tune_worker JOB.json`. The
worker opens the study's storage itself, compiles the spec with the trial's values, trains, reports the
objective after every epoch (or every fold, for a cv_ objective) so the pruner can stop it, and tells Optuna
the result: COMPLETE, PRUNED, or FAIL with the reason in the trial's user attribute `failure` and its kind in
`failure_kind`: RESULT when the failure is what these parameters give (a non-finite loss or objective, a spec
error with these values: running them again gives it again), ERROR for anything else (an exception in the
trial's process: out of memory, a missing backend, a bug), which `dlc tune` does not count and runs again. A
data error (DataError, a lowering the backend lacks) is left to the parent (trials.LEFT_TO_PARENT): the trial
stays RUNNING with its `failure`, and `dlc tune` ends it as RESULT unless trials with other parameters fail
alike, which shows the data, not the parameters, at fault. Its output goes to the trial's folder, with the
history.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from pathlib import Path

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
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def make_pruner(prune: str):
    import optuna

    if prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS,
                                           n_warmup_steps=PRUNE_WARMUP_STEPS)
    return optuna.pruners.NopPruner()


def _quiet_optuna() -> None:
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


def run_trial(job: dict) -> None:
    """Entry point of a trial process (the target of the forked process, or `python -m
    dlc.runtime.tune_worker`)."""
    import time

    t0 = time.perf_counter()
    trial_dir = Path(job["trial_dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    _redirect(str(trial_dir / "log.txt"))
    os.chdir(job["cwd"])
    import optuna

    _quiet_optuna()
    storage = make_storage(job["storage"])
    study = optuna.load_study(study_name=job["study"], storage=storage, pruner=make_pruner(job["prune"]))
    trial = optuna.trial.Trial(study, job["trial_id"])
    trial.set_user_attr("pid", os.getpid())
    print(f"trial {trial.number}: {json.dumps(trial.params)} (process {os.getpid()}, storage open in "
          f"{time.perf_counter() - t0:.2f} s)", flush=True)
    try:
        state, value, failure = _run(job, trial)
        kind = RESULT
    except (KeyboardInterrupt, SystemExit):
        raise  # the parent marks the trial interrupted and queues it again
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


def _run(job: dict, trial) -> tuple[str, float | None, str | None]:
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
            value = _run_holdout(job, trial, spec, base_dir, metric, prune, trial_dir)
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
    except (BackendUnavailable, FileNotFoundError, MemoryError) as e:
        # the environment's failure, not the parameters': one line, and run again when the search continues
        raise _EnvironmentFailure(str(e) or type(e).__name__) from e
    rundir.write_json(trial_dir / "result.json", {"number": trial.number, "params": params, metric: value})
    if value is None or not math.isfinite(value):
        return "FAIL", None, f"the objective {metric} is {value}"
    return "COMPLETE", float(value), None


def _run_holdout(job, trial, spec, base_dir, metric, prune, trial_dir) -> float | None:
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime import rundir
    from dlc.runtime.data import prepare
    from dlc.runtime.evidence import Recorder
    from dlc.runtime.loop import train

    data = prepare(spec, base_dir, dtype=spec.dtype)
    session = session_class(job["backend"])(spec, device=job["device"], weights=initial_weights(spec))
    rows: list[dict] = []

    def on_epoch(row):
        rows.append(row)
        rundir.write_history(trial_dir, rows)
        v = row.get(metric)
        if v is None or not math.isfinite(v):
            return
        trial.report(float(v), row["epoch"])
        if prune and trial.should_prune():
            raise _Pruned(row["epoch"])

    hist = train(session, spec, data, on_epoch=on_epoch, evidence=Recorder(spec, trial_dir))
    row = hist.rows[hist.best_epoch - 1] if hist.restored_best and hist.best_epoch else hist.rows[-1]
    trial.set_user_attr("epochs", len(hist.rows))
    return row.get(metric)


def _run_cv(job, trial, spec, base_dir, metric, prune) -> float | None:
    from dlc.runtime.cv import run_cv

    key = metric[len("cv_"):]
    seen: list[float] = []

    def on_fold(row):
        seen.append(row["val"][key])
        v = sum(seen) / len(seen)
        trial.report(float(v), row["fold"])
        if prune and trial.should_prune():
            raise _Pruned(row["fold"])

    summary = run_cv(spec, base_dir, job["backend"], job["device"], out=Path(job["trial_dir"]),
                     on_fold=on_fold)
    return summary.get(metric)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dlc.runtime.tune_worker JOB.json   (started by `dlc tune`)", file=sys.stderr)
        return 2
    run_trial(json.loads(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
