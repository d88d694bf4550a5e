"""`dlc tune`: search a spec's hyperparameters with Optuna, each trial in a process of its own.

The parent process owns the study: it samples every trial's parameters (`study.ask` with the spaces'
distributions, so all sampling happens in one place and is seeded from the spec's seed), starts one worker
process per trial (dlc/runtime/tune_worker.py), keeps at most --workers of them running, and marks trials
whose process died. Workers write their results to the study's storage themselves.

- Samplers: `random` and `tpe`, seeded for each trial with the spec's seed plus the trial's number in the
  study (the number of trials in it when it is asked for, under the study lock), so a resumed search draws new
  points, and two `dlc tune` processes on one study do not draw the same points in turn; `grid` enumerates
  the grid of compiler/search.py in the parent and enqueues each point once (`enqueue_trial`): workers only
  ever run enqueued points, so no point runs twice, whatever the number of workers. The grid has
  min(trials, grid size) points; `--trials` with more runs the rest.
- Pruning (`prune: median`): Optuna's MedianPruner on the objective reported after every epoch (every fold for
  a cv_ objective); see tune_worker.PRUNE_* for when it starts.
- Objective value: the metric in the history row of the epoch whose weights the run ends with (the last epoch,
  or the best one when early stopping restores it); a cv_ metric is the mean over the folds
  (dlc.runtime.cv.run_cv).
- Storage: `sqlite:///DIR/study.db` in the run directory unless the search block names one; a relative sqlite
  path is relative to the spec's folder (as every path in a spec is); a postgresql:// URL lets many machines
  share one study (run `dlc tune` on each, with the same storage and study name).
- Several `dlc tune` processes on one study (machines sharing PostgreSQL, or two commands on one SQLite file)
  take turns, through a study lock, to queue grid points, count trials and ask for the next one: no grid point
  runs twice and --trials is not overshot.
- Resume: running `dlc tune` again with the same --out (or storage) continues the study up to --trials. A
  trial left RUNNING by a process that is gone is marked FAIL (user attribute `dlc_interrupted`) and queued
  again with the same parameters. A trial of this machine is gone when neither its worker nor its parent
  process is alive; one of another machine when its parent's heartbeat (user attribute `dlc_heartbeat`, every
  HEARTBEAT_S) is older than STALE_S.
- Which trials count towards --trials (`outcome`): complete, pruned, and `failed` ones, whose failure is
  what their parameters give (tune_worker's `failure_kind` RESULT: a non-finite loss or objective, a spec
  error with these values: running them again would give it again). A data error (DataError, a lowering
  the backend lacks) is what the parameters give too (an output layer with fewer units than the data has
  classes: the compiler cannot foresee it), unless trials with other parameters fail alike: its worker
  leaves the trial to this process (trials.LEFT_TO_PARENT), which holds it until the next trial ends
  otherwise (then it is `failed`) or until STOP_AFTER_SAME_FAILURE trials in a row, with different
  parameters, have failed with the same message (a data file that cannot be read): then they are `crashed`,
  and so is any later trial with that message. A `crashed` trial (an error in its process: out of memory, a
  bug, the process killed, such a data error) and an `interrupted` one do not count: their parameters are
  queued again at once (a new trial with user attribute `dlc_rerun_of`, behind the trials queued already),
  so a search whose trials crashed for a reason fixed since is continued by the same command. A rerun that
  crashes again is queued when this `dlc tune` ends, to run in the next one (no parameters run more than
  twice in one). A `dlc tune` starts no more trials once STOP_AFTER_CRASHES trials in a row have crashed, or
  STOP_AFTER_SAME_FAILURE have failed alike (whatever --trials: a broken environment costs that many
  trials, an occasional crash among results does not stop a long search) and says why (TuneResult.stopped,
  tune.json's `stopped`).
- A study keeps the search and the backend it was made with (user attributes `dlc_config`, `dlc_backend`): a
  `dlc tune` with other spaces or another --backend on it is refused (TuneError), never mixed into it.
- --trial-nproc N: each trial is N processes of one data-parallel group on this machine (_Group; as `dlc run
  --nproc N`, dlc.runtime.parallel: the same per-epoch numbers as one process), of which rank 0 is the trial's
  worker as one process is (it alone talks to the study and writes the trial's folder) and the others train
  along; this process watches them as `dlc run --nproc`'s launcher does. A trial that loses a process is
  crashed (its `failure` the launcher's line naming it); a pruned one's rank 0 ends and the others are
  stopped. So trials, pruning, failures, trial folders and tune.json are those of one process per trial.
  What `dlc run --nproc` refuses (parallel.blockers), and a cv_ objective, is refused before the first trial
  (check_trial_nproc).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dlc.compiler.diagnostics import Diagnostic, DlcError
from dlc.compiler.search import (
    Space,
    concretize,
    grid_points,
    home_problem,
    refine,
    shown_storage,
    space_size,
    spaces_of,
    storage_problem,
    top_trials,
    value_text,
)
from dlc.runtime import rundir, runlock
from dlc.runtime.runlock import locked
from dlc.runtime.runs import RunDirError, read_json
from dlc.runtime.trials import COUNTED, ERROR, RESULT, outcome, point_key

if TYPE_CHECKING:  # imported where used, when used (a worker's process, a study)
    import subprocess
    from multiprocessing.process import BaseProcess

    import optuna

HEARTBEAT_S = 20.0
STALE_S = 120.0
STOP_AFTER_CRASHES = 3  # trials crashed in a row after which a `dlc tune` starts no more (module docstring)
# trials in a row, with different parameters, whose data error has the same message: the data's fault, not
# the parameters' (module docstring)
STOP_AFTER_SAME_FAILURE = 3
HOST = socket.gethostname()
# the most other `choice` options compiled to check that --trial-nproc can train them (check_trial_nproc)
MAX_OPTION_CHECKS = 64


class TuneError(DlcError):
    """A problem with the tune set-up (not the spec): one line, exit 2."""


# ------------------------------------------------------------------------------------------------- set-up


def _search_section(result):
    from dlc.compiler import ast as A

    model = result.tree.models[0]
    return next((st for st in model.body if isinstance(st, A.Section) and st.name == "search"), None)


def _blockers(result) -> list[Diagnostic]:
    """What stops this spec from being tuned (beyond spec errors): a run blocker other than its search spaces,
    a search block without spaces, a cv_ objective without dlc.runtime.cv."""
    from dlc.runtime.support import run_blockers

    spec = result.spec
    out = [d for d in run_blockers(result) if d.code != "E502"]
    sec = _search_section(result)
    if spec.search is None:
        out.append(Diagnostic("E505", "this spec has no search { } block; `dlc tune` has nothing to search",
                              None,
                              "add search { method: tpe  trials: 20  objective: minimize val_loss } and "
                              "search spaces such as lr=loguniform(1e-4, 1e-1)"))
    elif not spec.search_spaces:
        out.append(Diagnostic("E505", "the search block has no search spaces to search",
                              sec.name_span if sec is not None else None,
                              "write choice(...), uniform(lo, hi), loguniform(lo, hi) or int_uniform(lo, hi) "
                              "in an argument, e.g. optimizer: Adam(lr=loguniform(1e-4, 1e-1))"))
    elif spec.search.objective.metric.startswith("cv_"):
        try:
            from dlc.runtime.cv import run_cv  # noqa: F401
        except ImportError:
            out.append(Diagnostic("E504",
                                  f"objective '{spec.search.objective.metric}' needs cross-validation, "
                                  "which this dlc does not have", sec.name_span if sec is not None else None,
                                  "use a val_ metric, e.g. val_accuracy"))
    return out


def _storage_url(spec_storage: str | None, run: Path, base_dir: Path) -> str:
    """The study's storage URL: `run`/study.db by default; a relative sqlite path is relative to the spec's
    folder `base_dir` (as every path in a spec is) and made absolute."""
    from sqlalchemy.engine import URL, make_url

    if not spec_storage:
        # (a URL, so a folder named `a?b` or `a#b` is escaped: `sqlite:///…/a?b/study.db` kept the study in a
        # file `a` beside the tune folder, which another --out `a?c` shared)
        return URL.create("sqlite", database=str((run / "study.db").resolve())).render_as_string(
            hide_password=False)

    url = make_url(spec_storage)
    driver = url.drivername.lower()  # (`SQLITE:///x.db`: SQLAlchemy knows its drivers by lowercase names)
    if driver.startswith("sqlite") and url.database and url.database != ":memory:":
        db = _sqlite_file(url.database, spec_storage, base_dir)
        return url.set(drivername=driver, database=str(db)).render_as_string(hide_password=False)
    if driver != url.drivername:
        return url.set(drivername=driver).render_as_string(hide_password=False)
    return spec_storage


def _sqlite_file(database: str, spec_storage: str, base_dir: Path) -> Path:
    """A SQLite storage's file: `~` and `~user` expanded as a shell expands them, a relative path relative
    to the spec's folder; its folder made. TuneError (one line) when it cannot be."""
    problem = home_problem(database)  # (the spec's check, E506, for any caller)
    if problem:
        raise TuneError(f"storage {spec_storage}: {problem}")
    db = Path(database).expanduser()
    if not db.is_absolute():
        db = (base_dir / db).resolve()
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # (it said only `[Errno 2] No such file or directory: '/proc/x'`, exit 1)
        if rundir.disk_full(e):
            raise
        raise TuneError(f"storage {spec_storage}: cannot make its folder {db.parent}: "
                        f"{e.strerror or e}") from None
    return db


def _distributions(spaces: list[Space], grid: bool) -> dict[str, optuna.distributions.BaseDistribution]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for sp in spaces:
        if grid or sp.kind == "choice":
            out[sp.name] = CategoricalDistribution(grid_points(sp) if grid else sp.options)
        elif sp.kind == "int_uniform":
            low, high = sp.bounds()
            out[sp.name] = IntDistribution(int(low), int(high))
        else:
            low, high = sp.bounds()
            out[sp.name] = FloatDistribution(low, high, log=sp.kind == "loguniform")
    return out


def _sampler(method: str, seed: int, trials: int):
    import optuna

    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 4)),
                                          multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)  # grid: every trial is an enqueued point


def _grid(spaces: list[Space]) -> list[dict]:
    import itertools

    names = [sp.name for sp in spaces]
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(grid_points(sp) for sp in spaces))]


def _counted(t) -> bool:
    """Does a trial count towards --trials?"""
    return outcome(t) in COUNTED


def _runs_again(t) -> bool:
    """A trial whose parameters are to run again: it crashed or was interrupted."""
    return outcome(t) in ("crashed", "interrupted")


def _left_to_parent(ft, exitcode: int) -> bool:
    """A trial its worker left RUNNING, with its data error in `failure`, for this process to end
    (trials.LEFT_TO_PARENT); a worker that died leaves no `failure`, or exits otherwise."""
    from optuna.trial import TrialState

    return exitcode == 0 and ft.state == TrialState.RUNNING and "failure" in ft.user_attrs


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (a killed process not yet reaped) is not alive
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _stale(t) -> bool:
    ua = t.user_attrs
    if ua.get("dlc_host") == HOST:
        return not (_alive(ua.get("dlc_worker_pid")) or _alive(ua.get("dlc_parent_pid")))
    last = ua.get("dlc_heartbeat")
    if last is None and t.datetime_start is not None:
        last = t.datetime_start.timestamp()
    return last is None or time.time() - float(last) > STALE_S


def _interrupt(study, storage, t, why: str) -> None:
    """Mark a trial that will never finish as failed (interrupted) and queue its parameters again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        storage.set_trial_user_attr(t._trial_id, "dlc_interrupted", why)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    except (UpdateFinishedTrialError, RuntimeError):
        return  # it finished after all
    _run_again(study, t)


def _run_again(study, t) -> None:
    """Queue a crashed or interrupted trial's parameters again (`ask` takes the oldest queued trial)."""
    params = t.params or t.system_attrs.get("fixed_params")
    if params:
        study.enqueue_trial(params, user_attrs={"dlc_rerun_of": t.number})


def _not_queued_again(trials) -> list:
    """The crashed and interrupted trials no rerun was queued for yet (an earlier `dlc tune` was killed
    before it queued it, or stopped queueing a rerun that crashed again, or the trial is from a dlc that
    counted crashes)."""
    rerun = {t.user_attrs.get("dlc_rerun_of") for t in trials}
    return [t for t in trials if _runs_again(t) and t.number not in rerun]


def lock_path(db: Path, run: Path) -> Path:
    """Where the flock of a SQLite study lives: beside the database when it is dlc's own (study.db in the run
    folder), else, never beside a file that is not dlc's, in dlc's own folder of locks (the user's cache:
    $XDG_CACHE_HOME/dlc/locks or ~/.cache/dlc/locks), named by a hash of the database's absolute path, so
    every `dlc tune` of this user on this machine takes the same lock for the same file."""
    db = db.resolve()
    if db.parent == run.resolve():
        return db.with_name(db.name + ".dlc-lock")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "dlc" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha256(str(db).encode()).hexdigest()[:24]}.dlc-lock"


class _StudyLock:
    """Mutual exclusion between the `dlc tune` processes of one study: an flock on a lock file of dlc's
    (lock_path) for a SQLite file, a PostgreSQL advisory lock, nothing for other storages (Optuna's own row
    locking is all they get)."""

    def __init__(self, storage, url: str, study_name: str, run: Path):
        self.storage, self.url, self.study_name, self.run = storage, url, study_name, run
        self._flock: contextlib.ExitStack | None = None  # (holds the flock of a SQLite study)
        self._conn = None
        self._key = int.from_bytes(hashlib.sha256(f"dlc tune {study_name}".encode()).digest()[:8], "big",
                                   signed=True)

    def __enter__(self):
        if self.url.startswith("sqlite"):
            from sqlalchemy.engine import make_url

            db = make_url(self.url).database
            if db and db != ":memory:":
                stack = contextlib.ExitStack()
                try:  # (the lock file is removed when let go: dlc.runtime.runlock.locked)
                    stack.enter_context(locked(lock_path(Path(db), self.run)))
                except ImportError:  # (no flock: not POSIX)
                    return self
                self._flock = stack
        elif self.url.startswith(("postgresql", "postgres")) and self.storage is not None:
            from sqlalchemy import text

            self._conn = self.storage.engine.connect()
            self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        return self

    def __exit__(self, *exc):
        if self._flock is not None:
            self._flock.close()
            self._flock = None
        if self._conn is not None:
            from sqlalchemy import text

            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            finally:
                self._conn.close()
                self._conn = None
        return False


# -------------------------------------------------------------------------------------------- the workers


@contextlib.contextmanager
def _main_left_out() -> Iterator[None]:
    """Start a trial's process without the caller's `__main__`: multiprocessing has each child run the main
    script again (as `__mp_main__`, to find what it unpickles), so a script that called `dlc.api.tune()` at
    its top level, without `if __name__ == "__main__":`, started its search again in every trial, which
    crashed ("An attempt has been made to start a new process before ... bootstrapping"), and a guarded one
    still ran its imports and top-level code once per trial. A trial needs nothing of it (its target is
    tune_worker.run_trial, its job plain data), so the child is told of a bare `__main__` (as a notebook's,
    which has no file to run)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is None:
            del sys.modules["__main__"]
        else:
            sys.modules["__main__"] = main


class _Worker:
    """One trial's process: forked from the fork server (backend already imported), or a fresh interpreter.
    `env` and `log`: its place in a trial's data-parallel group and, above rank 0, where its output goes
    (_Group)."""

    def __init__(self, job: dict, mode: str, env: dict[str, str] | None = None, log: str | None = None):
        self.job = job
        self.mode = mode
        # the process: the fork server's child (mode "fork") or a fresh interpreter (mode "subprocess")
        self.forked: BaseProcess | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        if mode == "fork":
            import multiprocessing as mp

            from dlc.runtime import tune_worker

            args = (job,) if env is None else (job, env, log)
            self.forked = mp.get_context("forkserver").Process(target=tune_worker.run_trial, args=args,
                                                                name=f"dlc-trial-{job['number']}")
            with _main_left_out():
                self.forked.start()
            self.pid = self.forked.pid
        else:
            import subprocess

            path = Path(job["trial_dir"]) / "job.json"
            if env is None or env.get("RANK") == "0":  # (a group's rank 0 starts first and writes it)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(job))
            out = open(log, "ab") if log else None  # noqa: SIM115 - the child holds it; closed below
            try:
                self.popen = subprocess.Popen([sys.executable, "-m", "dlc.runtime.tune_worker", str(path)],
                                              stdin=subprocess.DEVNULL, stdout=out or subprocess.DEVNULL,
                                              stderr=out or subprocess.DEVNULL,
                                              env=None if env is None else {**os.environ, **env})
            finally:
                if out is not None:
                    out.close()
            self.pid = self.popen.pid

    def exitcode(self) -> int | None:
        if self.forked is not None:
            return self.forked.exitcode
        assert self.popen is not None
        return self.popen.poll()

    def stop(self) -> None:
        if self.forked is not None:
            if self.forked.exitcode is None:
                self.forked.terminate()
            self.forked.join(5)
            return
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(5)
        except Exception:  # noqa: BLE001
            self.popen.kill()

    def terminate(self) -> None:
        """SIGTERM, without waiting (a group's processes are signalled first, then waited for)."""
        proc = self.forked or self.popen
        if proc is not None and self.exitcode() is None:
            with contextlib.suppress(OSError, ValueError):
                proc.terminate()

    def end(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the process to end, then kill it."""
        if self.forked is not None:
            self.forked.join(max(0.0, timeout))
            if self.forked.exitcode is None:
                self.forked.kill()
                self.forked.join()
            return
        assert self.popen is not None
        try:
            self.popen.wait(max(0.0, timeout))
        except Exception:  # noqa: BLE001 - it does not end: kill it
            self.popen.kill()
            self.popen.wait()


class _Group:
    """One trial trained data-parallel (--trial-nproc N): N processes of one data-parallel group on this
    machine (dlc.runtime.parallel, as `dlc run --nproc N`), each a _Worker with the group's variables. Rank 0
    is the trial's worker as one process is (it alone opens the study, reports, prunes, writes the trial's
    folder); the others train along and write nothing (their output goes to a temporary file). Watched as
    `dlc run --nproc`'s launcher watches its workers, without blocking: once rank 0 has ended (its result
    told, pruned, or a lost peer) the others are stopped; when another one fails, rank 0 gets
    parallel.GRACE_S to end on its own, then is stopped. `line` says which process stopped the trial
    (parallel.verdict; "" when rank 0 ended on its own), and their output is added to the trial's log.txt."""

    def __init__(self, job: dict, mode: str, nproc: int):
        import tempfile

        from dlc.runtime import parallel

        self.job, self.mode, self.nproc = job, mode, nproc
        self.line = ""
        self.order: list[int] = []  # the processes in the order they ended on their own
        self.deadline: float | None = None
        self.code: int | None = None
        self.logs: list[str | None] = [None]
        for rank in range(1, nproc):
            fd, name = tempfile.mkstemp(prefix=f"dlc-trial-{job['number']}-rank{rank}-", suffix=".log")
            os.close(fd)
            self.logs.append(name)
        self.procs: list[_Worker] = []
        try:
            for env, path in zip(parallel.group_vars(nproc), self.logs, strict=True):
                self.procs.append(_Worker(job, mode, env, path))
        except BaseException:
            self.stop()
            raise
        self.pid = self.procs[0].pid

    def exitcode(self) -> int | None:
        """Rank 0's exit code once the group has ended (None while it runs): see the class."""
        from dlc.runtime.parallel import GRACE_S

        if self.code is not None:
            return self.code
        codes = [w.exitcode() for w in self.procs]
        self.order += [i for i, c in enumerate(codes) if c is not None and i not in self.order]
        if codes[0] is None:
            if not any(c not in (None, 0) for c in codes[1:]):
                return None  # (a rank that ended well ended with rank 0's training, or as rank 0 will)
            if self.deadline is None:
                self.deadline = time.monotonic() + GRACE_S
            if time.monotonic() < self.deadline:
                return None
        self._end()
        return self.code

    def _end(self) -> None:
        from dlc.runtime.parallel import verdict

        self._stop_all()
        codes = [w.exitcode() if i in self.order else None for i, w in enumerate(self.procs)]
        logs = [open(p, encoding="utf-8", errors="replace") if p else None  # noqa: SIM115 - closed below
                for p in self.logs]
        try:
            _, self.line = verdict(codes, self.order, logs, self.nproc)
        finally:
            for fh in logs:
                if fh is not None:
                    fh.close()
        if self.line:
            self._keep_output()
        self.code = self.procs[0].exitcode()
        self._remove_logs()

    def _keep_output(self) -> None:
        """The other processes' output, after rank 0's in the trial's log.txt (the trial's only log)."""
        with contextlib.suppress(OSError), open(Path(self.job["trial_dir"]) / "log.txt", "a",
                                                encoding="utf-8") as out:
            out.write(f"\n{self.line}\n")
            for rank, path in enumerate(self.logs):
                if path is None:
                    continue
                text = Path(path).read_text(encoding="utf-8", errors="replace")
                out.write(f"--- the output of process {rank} of {self.nproc} ---\n{text}")

    def _stop_all(self) -> None:
        for w in self.procs:
            w.terminate()
        end = time.monotonic() + 3.0
        for w in self.procs:
            w.end(end - time.monotonic())

    def _remove_logs(self) -> None:
        for path in self.logs:
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def stop(self) -> None:
        self._stop_all()
        self._remove_logs()


class _DataFailures:
    """The data errors of one `dlc tune`'s trials in a row (module docstring): each is its parameters' result
    unless STOP_AFTER_SAME_FAILURE trials in a row, with different parameters, fail with the same message,
    which shows the data at fault; so a trial is held, RUNNING, until the next one tells."""

    def __init__(self) -> None:
        self.held: list = []  # the trials in a row with the same data error, oldest first
        self.not_the_parameters: set[str] = set()  # the messages shown to be the data's fault

    def judge(self, ft) -> tuple[list, list]:
        """Take a trial ended by a data error; returns the trials judged now: (their parameters' results,
        the data's faults)."""
        failure = ft.user_attrs["failure"]
        if failure in self.not_the_parameters:
            return [], [ft]
        results = self.release() if self.held and self.held[-1].user_attrs["failure"] != failure else []
        self.held.append(ft)
        if len({point_key(t.params) for t in self.held}) < STOP_AFTER_SAME_FAILURE:
            return results, []
        self.not_the_parameters.add(failure)
        return results, self.release()

    def release(self) -> list:
        """The held trials, now judged their parameters' results (another outcome came, or no trial will)."""
        held, self.held = self.held, []
        return held


WORKER_MODES = ("fork", "subprocess")  # DLC_TUNE_WORKER's values: how each trial's process starts


def _worker_mode() -> str:
    """How each trial's process starts: DLC_TUNE_WORKER (`fork`, from the fork server: the default;
    `subprocess`, a fresh `python -m dlc.runtime.tune_worker`), `subprocess` where there is no fork server.
    TuneError for another value (a typo such as `subproces` silently forked)."""
    import multiprocessing as mp

    want = os.environ.get("DLC_TUNE_WORKER", "").strip() or "fork"
    if want not in WORKER_MODES:
        raise TuneError(f"DLC_TUNE_WORKER={want!r} is not one of {', '.join(WORKER_MODES)} (how each trial's "
                        "process starts: fork, from a fork server that imported the framework once, the "
                        "default; subprocess, a fresh Python for each); set one of them, or unset it")
    if want == "subprocess" or "forkserver" not in mp.get_all_start_methods():
        return "subprocess"
    return "fork"


# what each trial's process needs, imported once by the fork server (a missing optional one is skipped)
_PRELOAD = ["dlc.runtime.tune_worker", "dlc.compiler", "dlc.runtime.data", "dlc.runtime.loop",
            "dlc.reference.weights", "dlc.runtime.cv", "optuna",
            "optuna.storages._rdb.storage", "optuna.storages._rdb.models", "sqlalchemy", "sqlalchemy.orm",
            "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "psycopg2", "alembic.command",
            "alembic.config", "alembic.migration", "alembic.script"]


def _start_fork_server(backend: str) -> None:
    import multiprocessing as mp

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # (as backends/keras/quiet.py: no native ERROR lines)
    ctx = mp.get_context("forkserver")
    # imported once by the fork server, so each trial's process starts with the framework loaded (a fork
    # server that is already running, from an earlier tune in this process, keeps what it has)
    import dlc.backends

    command = ["dlc.backends.command"] if dlc.backends.COMMAND else []  # (the `dlc` command's tune)
    ctx.set_forkserver_preload(command + _PRELOAD + [f"dlc.backends.{backend}.session"])
    from multiprocessing import forkserver

    forkserver.ensure_running()  # start importing now, while the parent sets the study up


# ---------------------------------------------------------------------------------------------- reporting


def _trial_json(t) -> dict:
    dur = None
    if t.datetime_start and t.datetime_complete:
        dur = (t.datetime_complete - t.datetime_start).total_seconds()
    earlier = t.user_attrs.get("dlc_earlier")
    if isinstance(earlier, dict):  # (carried over by a refined search: its time in the search it came from)
        dur = earlier.get("duration_s")
    out = {"number": t.number, "state": t.state.name, "outcome": outcome(t), "value": t.value,
           "params": t.params, "duration_s": dur}
    if t.intermediate_values:
        out["last_step"] = max(t.intermediate_values)
        out["intermediate"] = {str(k): v for k, v in sorted(t.intermediate_values.items())}
    for k in ("pid", "failure", "failure_kind", "pruned_at", "epochs", "dlc_interrupted", "dlc_rerun_of",
              "dlc_folder", "dlc_earlier"):
        if k in t.user_attrs:
            out[k.removeprefix("dlc_")] = t.user_attrs[k]
    return out


def _held(run: Path, key: str) -> str | None:
    """A text of the tune.json already in `run` (a search resumed there: its `started`, its `study`), None
    where there is none (no tune.json, unreadable, not a string)."""
    try:
        value = json.loads((run / "tune.json").read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _sorted_complete(trials, direction: str):
    from optuna.trial import TrialState

    done = [t for t in trials
            if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    return sorted(done, key=lambda t: t.value, reverse=direction == "maximize")


# ------------------------------------------------------------------------------------------------- refine


def _load_refine(run: str, spaces: list[Space], direction: str) -> tuple[list[Space], dict]:
    path = Path(run) / "tune.json"
    if not path.is_file():
        raise RunDirError(f"--refine {run}: no tune.json there (a run directory of `dlc tune` has one)")
    prev = read_json(path)  # (not JSON, nested 100,000 deep, not an object: one line naming the file)
    try:
        old = {d["name"]: Space.from_json(d) for d in prev.get("spaces", [])}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RunDirError(f"--refine {run}: {path} is damaged (its spaces are not those dlc tune wrote)") \
            from None
    missing = [sp.name for sp in spaces if sp.name not in old]
    if missing:
        raise TuneError(f"--refine {run}: the earlier search has no parameter {', '.join(missing)}; "
                        "refine the spec that run searched")
    for sp in spaces:
        if old[sp.name].kind != sp.kind:
            raise TuneError(f"--refine {run}: {sp.name} was {old[sp.name].kind} there, {sp.kind} here")
        if not _inside_space(old[sp.name], sp):  # (refining would search values this spec does not allow)
            raise TuneError(f"--refine {run}: {sp.name} was {old[sp.name].describe()} there, which this "
                            f"spec's {sp.describe()} does not hold; refine the spec that run searched")
    try:
        top = top_trials(prev.get("trials", []), direction)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RunDirError(f"--refine {run}: {path} is damaged (its trials are not those dlc tune wrote)") \
            from None
    if not top:
        raise TuneError(f"--refine {run}: the earlier search has no completed trial")
    # the earlier run's ranges (they may be refined already), at this spec's positions
    base = [replace(old[sp.name], at=sp.at, end=sp.end, option_texts=old[sp.name].option_texts
                    or sp.option_texts) for sp in spaces]
    try:
        refined = refine(base, top)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RunDirError(f"--refine {run}: {path} is damaged (its trials' parameters are not those dlc tune "
                          "wrote)") from None
    return refined, {"run": str(Path(run)), "top_trials": [t["number"] for t in top],
                               "from": {sp.name: sp.describe() for sp in base}}


def _inside_space(old: Space, new: Space) -> bool:
    """Whether every value the earlier search's space (refined already, perhaps) may take is one the spec's
    space allows: its options among the spec's, its range within the spec's."""
    if new.kind == "choice":
        return all(any(type(o) is type(n) and o == n for n in new.options) for o in old.options)
    (lo, hi), (nlo, nhi) = old.bounds(), new.bounds()
    return nlo <= lo and hi <= nhi


def earlier_trials(run: str, spaces: list[Space], backend: str) -> list[dict]:
    """The completed trials of the search `run` whose values all lie in the refined `spaces`, one per point
    (the first, where an older dlc ran a point twice): a refined search starts from their scores, which the
    same spec, seed and values would only give again. None from a search on another backend (its float32
    scores are the same only statistically)."""
    prev = read_json(Path(run) / "tune.json")  # (_load_refine has read it: damage is said there)
    if prev.get("backend", backend) != backend:
        return []
    best: dict[str, dict] = {}
    for t in prev.get("trials") or []:
        # (one it carried over itself has a score too)
        if not isinstance(t, dict) or t.get("state") != "COMPLETE" \
                or t.get("outcome", "complete") not in ("complete", "earlier"):
            continue
        params, value = t.get("params"), t.get("value")
        if not isinstance(params, dict) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not all(sp.name in params and _holds(sp, params[sp.name]) for sp in spaces):
            continue
        point = {sp.name: params[sp.name] for sp in spaces}
        number = t.get("number")
        folder = t.get("folder") or (str((Path(run) / "trials" / f"{number:04d}").resolve())
                                     if isinstance(number, int) else None)
        took = t.get("duration_s")
        entry = {"number": number, "value": float(value), "params": point, "folder": folder,
                 "duration_s": took if isinstance(took, (int, float)) else None}
        best.setdefault(point_key(point), entry)  # (a point an older dlc ran twice: its first run)
    return list(best.values())


def _holds(space: Space, value) -> bool:
    """Whether a value is one of a refined space's: an option of a choice (of the same type: 1 is no
    True), within a range (a whole number for int_uniform)."""
    if space.kind == "choice":
        return any(type(o) is type(value) and o == value for o in space.options)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if space.kind == "int_uniform" and not isinstance(value, int):
        return False
    low, high = space.bounds()
    return low <= value <= high


# ---------------------------------------------------------------------------------------------- the search


def spec_to_tune(spec: str | None, refine_run: str | None) -> str:
    """The spec file to search: the one given; else, with --refine, the one the earlier tune searched (its
    copy in that run directory when the spec has moved)."""
    if spec is not None:
        return spec
    if not refine_run:
        raise TuneError("give a SPEC (or --refine RUN to refine the spec an earlier tune searched)")
    path = Path(refine_run) / "tune.json"
    missing = RunDirError(f"--refine {refine_run}: no tune.json with the spec there")
    if not path.is_file():
        raise missing
    try:
        spec_path = read_json(path)["spec_file"]
    except RunDirError as e:  # (not JSON, nested too deeply, not an object: the file's own words)
        raise RunDirError(f"--refine {refine_run}: {e}") from None
    except KeyError:
        raise missing from None
    if not isinstance(spec_path, str):
        raise RunDirError(f"--refine {refine_run}: its tune.json names no spec file (spec_file is "
                          f"{type(spec_path).__name__})")
    copy = Path(refine_run) / Path(spec_path).name
    if not Path(spec_path).exists() and copy.exists():
        spec_path = str(copy)  # the spec has moved: the copy the earlier run kept
    return spec_path


def check_tunable(result) -> None:
    """SpecError (positioned in the spec) when a compiled spec cannot be tuned: no search block or spaces, a
    run blocker other than its search spaces, a cv_ objective without cross-validation."""
    from dlc.compiler.diagnostics import SpecError

    blockers = _blockers(result)
    if blockers:
        raise SpecError(blockers, result.source, result.file)


@dataclass
class Plan:
    """What a search is about to do (for the display): the study, where it lives, what is done already."""

    spec_name: str
    method: str
    grid_size: int | None
    trials: int
    points: int | None  # how many points a finite space has (not a grid's): none is trained twice
    target: int
    backend: str
    workers: int
    direction: str
    metric: str
    prune: str | None
    run: Path
    study: str
    storage: str  # the URL as shown (password hidden)
    spaces: list[Space]
    refined: dict | None
    done_before: int
    requeued: int
    trial_nproc: int = 1  # processes per trial (--trial-nproc: each trial data-parallel)
    earlier: int = 0  # a refined search: the earlier search's trials carried over (their scores)


@dataclass
class Standing:
    """Where a search stands (for a live line): the trials that count so far (the study's: other processes'
    too), the target, this process' running trials (number -> time.monotonic() at their start; only those
    Optuna still has RUNNING: one whose result is in is done, though its process may not have exited yet),
    the best trial so far (number, value)."""

    done: int
    target: int
    running: dict[int, float]
    best: tuple[int, float] | None


class Reporter:
    """What `tune` reports as it goes; the command line prints it."""

    outcome = staticmethod(outcome)  # (what a trial is to the search, for the reporters)

    def started(self, plan: Plan) -> None:
        """The study is open, its queue ready, and the first trial about to start."""

    def standing(self, standing: Standing) -> None:
        """Trials have started or ended: where the search stands now."""

    def trial(self, trial) -> None:
        """A trial (an Optuna FrozenTrial) has ended: see `outcome`."""

    def interrupted(self, stop: KeyboardInterrupt) -> None:
        """Ctrl-C or SIGTERM (`stop`): the running trials are stopped and queued again for the next
        `dlc tune`."""


@dataclass
class TuneResult:
    run: Path
    spaces: list[Space]
    metric: str
    direction: str
    trials: list  # every trial of the study (FrozenTrial)
    ranked: list  # the complete ones, best first
    counts: dict[str, int]  # trials per state
    interrupted: KeyboardInterrupt | None  # the Ctrl-C or SIGTERM that ended this `dlc tune`
    stopped: str | None = None  # why this `dlc tune` started no more trials (STOP_AFTER_CRASHES crashes)
    problem: str | None = None  # best.dlspec does not compile (a bug): the diagnostics

    @property
    def best(self):
        return self.ranked[0] if self.ranked else None

    @property
    def ran_again(self) -> dict[str, int]:
        """Of the crashed and the interrupted trials, how many have had their rerun start (in this or an
        earlier `dlc tune`; the others' waits in the queue): a resumed search's summary said each earlier
        interruption was "queued again" after its rerun had finished."""
        started = {t.user_attrs.get("dlc_rerun_of") for t in self.trials if t.state.name != "WAITING"}
        out: dict[str, int] = {}
        for t in self.trials:
            if _runs_again(t) and t.number in started:
                out[outcome(t)] = out.get(outcome(t), 0) + 1
        return out

    def __repr__(self) -> str:
        """The folder, the trials by state and the best one, not every trial's FrozenTrial (a notebook printed
        every trial's parameters, distributions and timestamps)."""
        from dlc.runtime.reprs import clipped, number

        states = ", ".join(f"{n} {state}" for state, n in self.counts.items())
        n = len(self.trials)
        parts = [f"{n} trial{'s' * (n != 1)}" + (f" ({states})" if states else "")]
        best = self.best
        if best is not None:
            parts.append(f"best {self.metric} {number(best.value)} (trial {best.number}: "
                         + clipped(", ".join(f"{k}={number(v) if isinstance(v, float) else v}"
                                   for k, v in best.params.items()), 160)
                         + ")")
        for what, why in (("interrupted", self.interrupted is not None and "yes"),
                          ("stopped", self.stopped), ("problem", self.problem)):
            if why:
                parts.append(what if why == "yes" else f"{what}: {clipped(why)}")
        return f"TuneResult({str(self.run)!r}: {'; '.join(parts)})"


def tune(result, spec_path: str, *, backend: str = "torch", device: str = "auto", out: str | None = None,
         trials: int | None = None, workers: int = 1, threads: int | None = None,
         refine_run: str | None = None,
         study: str | None = None, reporter: Reporter | None = None, trial_nproc: int = 1) -> TuneResult:
    """Search the spaces of a compiled, tunable spec (see check_tunable) with Optuna into a run directory
    (`out`, default: a fresh one under runs/; the same one resumes): tune.json, best.dlspec, trials/NNNN/.
    `trial_nproc`: each trial trains data-parallel on that many processes of this machine, as `dlc run
    --nproc` (the same results as one process). TuneError for a problem with the set-up (storage, refine
    run, a study made with other spaces, a spec that cannot train data-parallel)."""
    from dlc.runtime.tune_worker import quiet_optuna

    quiet_optuna()
    # a device the trials cannot use (or too few GPUs for --trial-nproc): else every trial crashes, and the
    # search stops after a few
    if device != "cpu" and (device != "auto" or trial_nproc > 1):
        from dlc.backends import check_device

        try:  # (a RuntimeError, exit 1, as `dlc run` says it: the spec and options are sound, the machine
            # lacks the hardware)
            check_device(backend, device, trial_nproc)
        except RuntimeError as e:
            raise RuntimeError(str(e).replace("processes,", "processes (--trial-nproc),", 1)) from None
    reporter = reporter or Reporter()
    spaces = spaces_of(result)
    refined, earlier = None, []
    if refine_run:
        spaces, refined = _load_refine(refine_run, spaces, result.spec.search.objective.direction)
        earlier = earlier_trials(refine_run, spaces, backend)
    if trial_nproc != 1:
        check_trial_nproc(result, spec_path, spaces, backend, trial_nproc, workers)
    search = _Search(result, spec_path, spaces, refined, backend=backend, device=device, out=out,
                     trials=trials, workers=workers, threads=threads, study=study, trial_nproc=trial_nproc,
                     earlier=earlier)
    try:
        search.open()
        with contextlib.ExitStack() as stack:
            # the folder's run lock while this process searches, as `dlc run` holds its own: `dlc runs`
            # listed a running search as `incomplete: no tune.json yet` (now `running (pid N)`, and `--out
            # DIR --replace` is refused); a second `dlc tune` on the same --out (a shared study) searches
            # without it
            with contextlib.suppress(runlock.FolderBusy):
                stack.enter_context(runlock.held(search.run))
            try:
                try:
                    requeued = search.queue()
                    done_before = sum(_counted(t) for t in search.study.get_trials(deepcopy=False))
                    search.start_workers()
                    reporter.started(search.plan(done_before, requeued))
                except KeyboardInterrupt as e:
                    # (while the fork server imports the framework, seconds: a bare `dlc: interrupted`, no
                    # tune.json, and `dlc doctor` sent to a trials/0000 that was not there)
                    done = search.finish(e)
                    reporter.interrupted(e)
                    return done
                interrupted = search.loop(reporter)
            except BaseException:  # (the display failed, its output closed: tune.json still says where the
                # search stands, and the same command continues it)
                with contextlib.suppress(Exception):
                    search.finish(None)
                raise
            return search.finish(interrupted)
    finally:
        search.close()


def check_trial_nproc(result, spec_path: str, spaces: list[Space], backend: str, nproc: int,
                      workers: int = 1) -> None:
    """TuneError (one line, before anything is written) when the trials cannot train data-parallel on
    `nproc` processes: what `dlc run --nproc` refuses (parallel.blockers) for the spec with its spaces at
    their first values or with any other option of a `choice` (MAX_OPTION_CHECKS of them at most), a cv_
    objective (cross-validation is not split across processes), more processes than the cores can share, a
    DLC_COLLECTIVE_TIMEOUT that is no number of seconds."""
    from dlc.compiler import compile_file
    from dlc.runtime.parallel import OVERSUBSCRIBE, blockers, collective_timeout, usable_cores

    if nproc < 1:
        raise TuneError(f"--trial-nproc must be at least 1 (got {nproc})")
    try:  # (as `dlc run --nproc` checks it: else every trial's processes fail on it, one by one)
        collective_timeout()
    except ValueError as e:
        raise TuneError(str(e)) from None
    metric = result.spec.search.objective.metric
    if metric.startswith("cv_"):
        raise TuneError(f"--trial-nproc trains each trial as one data-parallel run, and the objective "
                        f"{metric} cross-validates each trial (dlc cv's folds), which is not split across "
                        "processes: use a val_ objective, or --trial-nproc 1")
    cores = usable_cores()
    if nproc * workers > OVERSUBSCRIBE * cores:
        raise TuneError(f"--workers {workers} × --trial-nproc {nproc} is {nproc * workers} processes; this "
                        f"machine has {cores} CPU core{'s' if cores != 1 else ''} for dlc, and more than "
                        f"{OVERSUBSCRIBE} processes per core only wait for each other")
    specs = [("", result.spec)]
    others = [(sp, v) for sp in spaces if sp.kind == "choice" for v in sp.options[1:]]
    for sp, value in others[:MAX_OPTION_CHECKS]:
        other = compile_file(spec_path, {sp.at: value})
        if other.ok and other.spec is not None:  # (an option that does not compile is the check's to report)
            specs.append((f"when {sp.name} is {value_text(sp, value)}: ", other.spec))
    for when, spec in specs:
        problems = blockers(spec, backend)
        if problems:
            raise TuneError(when + problems[0].replace("--nproc", "--trial-nproc", 1))


def _check_same_study(out: Path, study: str) -> None:
    """A tune folder holds one study: its trials/NNNN are numbered per study and tune.json and best.dlspec are
    the study's, so another study's search there would overwrite them (TuneError before anything is
    written)."""
    held = _held(out, "study")
    if held is not None and held != study:
        raise TuneError(f"--out {out} holds the search of study '{held}' (its tune.json, best.dlspec and "
                        f"trials/); this search is study '{study}' and would overwrite them: give a new "
                        "--out")


class _Search:
    """One `dlc tune` process's part of a study: open it, queue grid points and interrupted trials, keep
    --workers trial processes running, write tune.json and best.dlspec."""

    def __init__(self, result, spec_path: str, spaces: list[Space], refined: dict | None, *, backend: str,
                 device: str, out: str | None, trials: int | None, workers: int, threads: int | None,
                 study: str | None, trial_nproc: int = 1, earlier: list[dict] | None = None):
        for option, n in (("--trials", trials), ("--workers", workers), ("--threads", threads),
                          ("--trial-nproc", trial_nproc)):
            if n is not None and n < 1:  # (0 trials would silently fall back to the search block's)
                raise TuneError(f"{option} must be at least 1 (got {n})")
        _worker_mode()  # (a DLC_TUNE_WORKER that is no mode: refused before any folder is made)
        spec = result.spec
        search = spec.search
        self.result, self.spec, self.spaces, self.refined = result, spec, spaces, refined
        self.metric, self.direction = search.objective.metric, search.objective.direction
        self.method, self.prune = search.method, search.prune
        self.trials = trials or search.trials
        self.workers = max(1, workers)
        self.trial_nproc = trial_nproc  # processes per trial: each trial data-parallel (_Group) above 1
        self.grid = _grid(spaces) if self.method == "grid" else None
        # a finite space's points (every space a choice or int_uniform): no search trains one twice
        self.points = space_size(spaces) if self.grid is None else None
        # a refined search's start: the trials of the search it refines that lie in its spaces (their scores)
        self.earlier = earlier or []
        if self.grid is not None:  # (a grid takes those on it: its points are all it may hold)
            on_grid = {point_key(p) for p in self.grid}
            self.earlier = [e for e in self.earlier if point_key(e["params"]) in on_grid]
        size = len(self.grid) if self.grid is not None else self.points
        if size is not None:  # (the points scored already are not trained again)
            size -= len(self.earlier)
        self.target = min(self.trials, size) if size is not None else self.trials
        self.backend, self.device, self.threads = backend, device, threads
        self.fresh = not (out and Path(out).is_dir() and any(Path(out).iterdir()))
        self.study_name = study or (f"{spec.name}-refined" if refined else spec.name)
        if out:
            _check_same_study(Path(out), self.study_name)
        self.run = rundir.new_run_dir(f"{spec.name}-tune", backend, out, kind="tune", spec_file=spec_path)
        # when the folder's search began (tune.json's `started`, `dlc runs`' date): a resumed one keeps it
        self.started = _held(self.run, "started") or rundir.stamp()
        self.spec_file = Path(spec_path).resolve()
        # set by open()
        self.url: str
        self.lock: _StudyLock
        self.study: optuna.Study
        self.storage: optuna.storages.BaseStorage
        self.distributions: dict[str, optuna.distributions.BaseDistribution]
        self.mode = "subprocess"
        self.last_beat = 0.0
        self.started_at: dict[int, float] = {}  # trial number -> time.monotonic() at its start
        self.crashed_here: set[int] = set()  # the trials that crashed in this `dlc tune`
        self.crashes_in_row = 0
        self.stopped: str | None = None  # why no more trials start (see _note_crash)
        self.data_failures = _DataFailures()

    # ---------------------------------------------------------------------------------------- set-up

    def open(self) -> None:
        """Open (or create) the study and check it was made for this search (its sampler is set for each
        trial, _start_next). A set-up refused (TuneError: the storage, the study) leaves no folder behind
        when this search made it; a resumed one keeps its own."""
        try:
            self.url = _storage_url(self.spec.search.storage, self.run, self.spec_file.parent)
            self.lock = _StudyLock(None, self.url, self.study_name, self.run)
            self._open_study()
        except TuneError:
            if self.fresh:
                shutil.rmtree(self.run, ignore_errors=True)
            raise
        # (once the study is this search's: a spec refused for a folder's other study was copied into it)
        if not (self.run / self.spec_file.name).exists():
            rundir.copy_spec(self.run, str(self.spec_file))

    def _open_study(self) -> None:
        import optuna

        from dlc.runtime.tune_worker import make_pruner, make_storage

        config = {"spaces": [{k: v for k, v in sp.to_json().items() if k not in ("at", "end", "option_texts")}
                             for sp in self.spaces],
                  "method": self.method, "objective": [self.direction, self.metric], "prune": self.prune}
        problem = storage_problem(self.url)  # (the spec's check, E506: the one rule, for any caller)
        if problem:
            raise TuneError(f"storage {shown_storage(self.url)}: {problem}")
        for attempt in range(4):
            try:
                with self.lock:  # SQLite: one process creates the schema and the study at a time
                    self.storage = make_storage(self.url)
                    self.study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                                     direction=self.direction, load_if_exists=True,
                                                     pruner=make_pruner(self.prune))
                break
            except ImportError as e:
                raise TuneError(f"storage {shown_storage(self.url)} needs a driver: {e} "
                                "(pip install 'dlc[postgres]')") from None
            except Exception as e:  # noqa: BLE001 - sqlalchemy/optuna errors: one line
                if rundir.disk_full(e):  # (not the set-up's fault: a failure while running, exit 1)
                    raise
                # (a first creation of the schema can race with another machine's: try again)
                if attempt == 3:
                    first = str(e).splitlines()[0]
                    raise TuneError(f"cannot open storage {shown_storage(self.url)}: {first}") from None
                time.sleep(0.5 + attempt)
        self.lock.storage = self.storage
        with self.lock:  # of two processes opening a new study, one records it, the other checks it
            self._check_study(config)
        self.distributions = _distributions(self.spaces, self.grid is not None)

    def close(self) -> None:
        """The storage's connections closed: the last connection to a SQLite study folds its write-ahead log
        into study.db and removes study.db-wal and -shm (tune_worker._write_ahead), which `dlc` ending with
        os._exit would leave beside it."""
        engine = getattr(getattr(self, "storage", None), "engine", None)
        if engine is not None:
            engine.dispose()

    def _check_study(self, config: dict) -> None:
        """Record the search and the backend in a new study (user attributes `dlc_config`, `dlc_backend`);
        refuse one made with another: its trials are not this search's. A study from before dlc recorded the
        backend is taken to be this backend's."""
        shown = shown_storage(self.url)
        have = self.study.user_attrs.get("dlc_config")
        if have is None:
            self.study.set_user_attr("dlc_config", config)
        elif json.loads(json.dumps(have)) != json.loads(json.dumps(config)):
            # (a storage the spec names is shared by every --out: there only another study name helps)
            way = "--study NAME" if self.spec.search.storage else "a new --out (or --study NAME)"
            raise TuneError(f"study '{self.study_name}' in {shown} was made with other search "
                            f"spaces, method or objective; use {way} for this search")
        backend = self.study.user_attrs.get("dlc_backend")
        if backend is None:
            self.study.set_user_attr("dlc_backend", self.backend)
        elif backend != self.backend:
            own = "--study NAME" if self.spec.search.storage else "a new --out or --study NAME"
            raise TuneError(f"study '{self.study_name}' in {shown} holds {backend} trials, not "
                            f"{self.backend} ones: continue it with --backend {backend}, or give the "
                            f"{self.backend} search a study of its own ({own})")

    def queue(self) -> int:
        """Resume: trials a dead process left RUNNING are failed and queued again, so are crashed trials not
        queued again yet; grid points not in the study yet are queued (after those, which hold their points).
        Returns how many trials were queued again."""
        from optuna.trial import TrialState

        requeued = 0
        with self.lock:  # other `dlc tune` processes on this study wait: none sees a half-done queue
            if self.earlier and not self.study.get_trials(deepcopy=False):
                self._carry_over()
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if _stale(t):
                    _interrupt(self.study, self.storage, t, "its process is gone")
                    requeued += 1
            for t in _not_queued_again(self.study.get_trials(deepcopy=False)):
                _run_again(self.study, t)
                requeued += 1
            if self.grid is not None:
                self._queue_grid(self.grid)
        return requeued

    def _carry_over(self) -> None:
        """A new refined study starts with the earlier search's trials that lie in its spaces, as completed
        trials (user attribute `dlc_earlier`; `dlc_folder`, their folder there): the sampler learns from
        them, a finite space or grid does not train their points again, and one may be the best. They do
        not count towards --trials (trials.outcome: `earlier`)."""
        import optuna

        run = str(self.refined["run"]) if self.refined else ""
        for e in self.earlier:
            attrs: dict = {"dlc_earlier": {"run": run, "number": e["number"], "duration_s": e["duration_s"]}}
            if e["folder"]:
                attrs["dlc_folder"] = e["folder"]
            self.study.add_trial(optuna.trial.create_trial(
                params=e["params"], distributions=self.distributions, value=e["value"], user_attrs=attrs))

    def _queue_grid(self, grid: list[dict]) -> None:
        existing = set()
        for t in self.study.get_trials(deepcopy=False):
            if _runs_again(t):  # (its rerun holds its point)
                continue
            existing.add(point_key(t.params or t.system_attrs.get("fixed_params", {})))
        scored = {point_key(e["params"]) for e in self.earlier}  # (a refined search's carried-over points)
        for point in [p for p in grid if point_key(p) not in scored][:self.target]:
            if point_key(point) not in existing:
                self.study.enqueue_trial(point)
                existing.add(point_key(point))

    def start_workers(self) -> None:
        self.mode = _worker_mode()
        if self.mode == "fork":
            _start_fork_server(self.backend)
        processes = self.workers * self.trial_nproc  # (each trial's processes share its cores)
        self.threads = self.threads or (max(1, (os.cpu_count() or 1) // processes) if processes > 1 else None)

    def plan(self, done_before: int, requeued: int) -> Plan:
        return Plan(spec_name=self.spec.name, method=self.method,
                    grid_size=len(self.grid) if self.grid is not None else None, trials=self.trials,
                    points=self.points, target=self.target, backend=self.backend, workers=self.workers,
                    direction=self.direction, metric=self.metric, prune=self.prune, run=self.run,
                    study=self.study_name, storage=shown_storage(self.url), spaces=self.spaces,
                    refined=self.refined, done_before=done_before, requeued=requeued,
                    trial_nproc=self.trial_nproc, earlier=len(self.earlier))

    # ---------------------------------------------------------------------------------------- trials

    def loop(self, reporter: Reporter) -> KeyboardInterrupt | None:
        """Run trials until --trials are done (counting other processes' trials) or STOP_AFTER_CRASHES crashes
        in a row stop it (self.stopped); the Ctrl-C (or SIGTERM, as the command line raises it) that
        interrupted it, if one did."""
        running: dict[int, tuple[_Worker | _Group, int]] = {}  # trial id -> (worker, number)
        try:
            while True:
                ended = self._reap(running, reporter)
                started = self._fill(running)
                if ended or started:
                    reporter.standing(self._standing(running))
                if not running:
                    # (no later trial can show them the data's fault)
                    self._end_trials(self.data_failures.release(), RESULT, reporter)
                    return None
                self._wait(running)
        except KeyboardInterrupt as e:
            self._stop_running(running, "dlc tune was interrupted")
            self._end_trials(self.data_failures.release(), RESULT, reporter)
            reporter.interrupted(e)
            return e
        except BaseException:  # (the display failed: its output closed, `dlc tune ... | head`)
            self._stop_running(running, "dlc tune stopped before it ended (e.g. its output was closed)")
            raise

    def _stop_running(self, running: dict, why: str) -> None:
        """The running trials' processes stopped; their trials interrupted and queued again."""
        from optuna.trial import TrialState

        for tid, (w, _) in running.items():
            w.stop()
            ft = self.storage.get_trial(tid)
            if ft.state == TrialState.RUNNING:
                _interrupt(self.study, self.storage, ft, why)

    def _reap(self, running: dict, reporter: Reporter) -> int:
        """Report the trials whose process has ended (one that died without telling Optuna has crashed);
        returns how many."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        ended = 0
        for tid, (w, number) in list(running.items()):
            code = w.exitcode()
            if code is None:
                continue
            del running[tid]
            self.started_at.pop(number, None)
            ended += 1
            ft = self.storage.get_trial(tid)
            if _left_to_parent(ft, code):
                self._judge_data_failure(ft, reporter)
                continue
            # (another outcome ends a run of data failures: they were their parameters')
            self._end_trials(self.data_failures.release(), RESULT, reporter)
            if ft.state == TrialState.RUNNING:
                log = Path(w.job["trial_dir"]) / "log.txt"
                why = getattr(w, "line", "") or f"its process exited with code {code}"  # (_Group: which one)
                with contextlib.suppress(UpdateFinishedTrialError):
                    self.storage.set_trial_user_attr(tid, "failure", f"{why} (see {log})")
                    self.storage.set_trial_user_attr(tid, "failure_kind", ERROR)
                    self.storage.set_trial_state_values(tid, TrialState.FAIL)
                ft = self.storage.get_trial(tid)
            self._note_crash(ft)
            reporter.trial(ft)
        return ended

    def _note_crash(self, ft) -> None:
        """Count the crashes in a row (STOP_AFTER_CRASHES of them stop the search) and queue a crashed trial's
        parameters again, unless it is a rerun that crashed in this `dlc tune` already (finish() queues
        it, for the next one)."""
        if outcome(ft) != "crashed":
            self.crashes_in_row = 0
            return
        if ft.user_attrs.get("dlc_rerun_of") not in self.crashed_here:
            self._queue_again([ft.number])
        self.crashed_here.add(ft.number)
        self.crashes_in_row += 1
        if self.crashes_in_row >= STOP_AFTER_CRASHES and self.stopped is None:
            self.stopped = (f"the last {self.crashes_in_row} trials failed "
                            f"({ft.user_attrs.get('failure', 'unknown reason')})")

    def _judge_data_failure(self, ft, reporter: Reporter) -> None:
        """A trial its worker left with a data error (see _DataFailures): end the trials judged now; those
        shown to be the data's fault crash (queued again) and stop the search."""
        results, faults = self.data_failures.judge(ft)
        self._end_trials(results, RESULT, reporter)
        if faults and self.stopped is None:
            self.stopped = (f"the last {len(faults)} trials failed alike, whatever their parameters "
                            f"({ft.user_attrs['failure']})")
        self._end_trials(faults, ERROR, reporter)

    def _end_trials(self, trials: list, kind: str, reporter: Reporter) -> None:
        """End trials left to this process, as `kind` (RESULT or ERROR), oldest first."""
        for ft in trials:
            self._end_trial(ft, kind, reporter)

    def _end_trial(self, ft, kind: str, reporter: Reporter) -> None:
        """Tell Optuna a trial left to this process failed, with its `failure_kind`, and report it."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        with contextlib.suppress(UpdateFinishedTrialError):
            self.storage.set_trial_user_attr(ft._trial_id, "failure_kind", kind)
            self.storage.set_trial_state_values(ft._trial_id, TrialState.FAIL)
        ft = self.storage.get_trial(ft._trial_id)
        self._note_crash(ft)
        reporter.trial(ft)

    def _queue_again(self, numbers: list[int] | None = None) -> None:
        """Queue the parameters of the crashed or interrupted trials not queued again yet (only those of
        `numbers`, if given), under the study lock, so no other `dlc tune` queues them too."""
        with self.lock:
            for t in _not_queued_again(self.study.get_trials(deepcopy=False)):
                if numbers is None or t.number in numbers:
                    _run_again(self.study, t)

    def _fill(self, running: dict) -> int:
        """Start trials while a worker is free, the search wants more and it is not stopped; returns how
        many started."""
        started = 0
        while len(running) < self.workers and self.stopped is None and self._start_next(running):
            started += 1
        return started

    def _standing(self, running: dict) -> Standing:
        """Where the search stands, from one reading of the study: a trial whose worker has told Optuna its
        result but whose process has not exited yet is done, not running (counted once: never `4/4 done ·
        trial 3 running`)."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        ranked = _sorted_complete(trials, self.direction)
        still = {t.number for t in trials if t.state == TrialState.RUNNING}
        return Standing(done=sum(_counted(t) for t in trials), target=self.target,
                        running={number: self.started_at[number] for _, number in running.values()
                                 if number in still},
                        best=(ranked[0].number, ranked[0].value) if ranked else None)

    def _start_next(self, running: dict) -> bool:
        """Ask for the next trial and start its process; False when there is none to run now."""
        from optuna.trial import TrialState

        from dlc.runtime.tune_sampler import Unrepeated, tried_points

        trial = None
        with self.lock:  # count and take a trial atomically with respect to other tune processes
            all_trials = self.study.get_trials(deepcopy=False)
            n_done = sum(_counted(t) for t in all_trials)
            n_running = sum(t.state == TrialState.RUNNING for t in all_trials)
            n_waiting = sum(t.state == TrialState.WAITING for t in all_trials)
            left = self.target - n_done - n_running
            if self.points is not None and not n_waiting and len(tried_points(all_trials)) >= self.points:
                left = 0  # every point tried or queued: nothing is left to draw, whatever --trials says
            # grid: only queued points, so a point can never run twice (ask pops a queued one)
            if left > 0 and (self.grid is None or n_waiting):
                # (seeded by the trial's number: two processes that opened the study together, each with
                # a sampler of its own, drew the same points in turn)
                seed = self.spec.seed + len(all_trials)
                self.study.sampler = _sampler(self.method, seed, self.trials)
                if self.points is not None:
                    self.study.sampler = Unrepeated(self.study.sampler, self.distributions, seed)
                trial = self.study.ask(self.distributions)
                trial.set_user_attr("dlc_host", HOST)
                trial.set_user_attr("dlc_parent_pid", os.getpid())
                trial.set_user_attr("dlc_heartbeat", time.time())
        if trial is None:
            return False
        folder = str((self.run / "trials" / f"{trial.number:04d}").resolve())
        trial.set_user_attr("dlc_folder", folder)  # (a study shared by several --out: where its files are)
        job = dict(self._job_base(), trial_id=trial._trial_id, number=trial.number, trial_dir=folder)
        w: _Worker | _Group
        if self.trial_nproc > 1:  # (the ranks above 0 take the trial's values from the job, not the study)
            job.update(nproc=self.trial_nproc, params=trial.params)
            w = _Group(job, self.mode, self.trial_nproc)
        else:
            w = _Worker(job, self.mode)
        trial.set_user_attr("dlc_worker_pid", w.pid)
        running[trial._trial_id] = (w, trial.number)
        self.started_at[trial.number] = time.monotonic()
        return True

    def _job_base(self) -> dict:
        return {"spec": str(self.spec_file), "storage": self.url, "study": self.study_name,
                "backend": self.backend,
                "device": self.device, "metric": self.metric, "prune": self.prune, "cwd": str(Path.cwd()),
                "spaces": [(sp.name, list(sp.at)) for sp in self.spaces], "threads": self.threads}

    def _wait(self, running: dict) -> None:
        """Until a worker is done, with a heartbeat on the running trials (for other machines' resume)."""
        from optuna.exceptions import UpdateFinishedTrialError

        while all(w.exitcode() is None for w, _ in running.values()):
            now = time.time()
            if now - self.last_beat > HEARTBEAT_S:
                for tid in [*running, *(t._trial_id for t in self.data_failures.held)]:
                    with contextlib.suppress(UpdateFinishedTrialError):  # it has just finished
                        self.storage.set_trial_user_attr(tid, "dlc_heartbeat", now)
                self.last_beat = now
            time.sleep(0.02)

    # ------------------------------------------------------------------------------------------ end

    def finish(self, interrupted: KeyboardInterrupt | None) -> TuneResult:
        """Queue the crashed trials' parameters left unqueued (see _note_crash); write best.dlspec (the spec
        with the best trial's values) and tune.json."""
        self._queue_again()
        all_trials = self.study.get_trials(deepcopy=False)
        ranked = _sorted_complete(all_trials, self.direction)
        counts: dict[str, int] = {}
        for t in all_trials:
            counts[outcome(t)] = counts.get(outcome(t), 0) + 1
        spec = self.spec
        summary = {
            "spec": spec.name, "spec_file": str(self.spec_file), "backend": self.backend,
            "started": self.started, "study": self.study_name, "storage": shown_storage(self.url),
            "method": self.method,
            "objective": {"direction": self.direction, "metric": self.metric}, "prune": self.prune,
            "trials_target": self.target, "grid_size": len(self.grid) if self.grid is not None else None,
            "spaces": [sp.to_json() for sp in self.spaces], "refined_from": self.refined, "counts": counts,
            "stopped": self.stopped, "trials": [_trial_json(t) for t in all_trials], "best": None,
        }
        out = TuneResult(self.run, self.spaces, self.metric, self.direction, all_trials, ranked, counts,
                         interrupted, self.stopped)
        if out.best is not None:
            out.problem = self._write_best(out.best)
            summary["best"] = {"number": out.best.number, "value": out.best.value, "params": out.best.params,
                               "spec": "best.dlspec", **({"folder": out.best.user_attrs["dlc_folder"]}
                                                         if "dlc_folder" in out.best.user_attrs else {})}
        rundir.write_json(self.run / "tune.json", summary)
        return out

    def _write_best(self, best) -> str | None:
        """best.dlspec; the diagnostics when it does not compile to a concrete spec (a bug), else None."""
        from dlc.compiler import compile_text

        note = (f"search {{ }} removed by dlc tune: trial {best.number} of study '{self.study_name}' was "
                f"best, {self.metric} = {best.value:.6g}")
        text = concretize(self.result, self.spaces, best.params, note, base_dir=self.spec_file.parent,
                          new_dir=self.run)
        text = (f"# the best trial of `dlc tune {self.spec_file.name}`, with every search space replaced by "
                "its value\n") + text
        best_path = self.run / "best.dlspec"
        rundir.write_text(best_path, text)
        check = compile_text(text, str(best_path), self.run)
        if check.spec is None or not check.ok or check.spec.search_spaces:
            return check.render()
        return None
