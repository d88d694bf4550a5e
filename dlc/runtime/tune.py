"""`dlc tune`: search a spec's hyperparameters with Optuna, each trial in a process of its own.

The parent process owns the study: it samples every trial's parameters (`study.ask` with the spaces'
distributions, so all sampling happens in one place and is seeded from the spec's seed), starts one worker
process per trial (dlc/tune_worker.py), keeps at most --workers of them running, and marks trials whose process
died. Workers write their results to the study's storage themselves.

- Samplers: `random` and `tpe` (seeded with the spec's seed plus the number of trials already in the study, so a
  resumed search draws new points); `grid` enumerates the grid of compiler/search.py in the parent and enqueues
  each point once (`enqueue_trial`): workers only ever run enqueued points, so no point runs twice, whatever the
  number of workers. The grid has min(trials, grid size) points; `--trials` with more runs the rest.
- Pruning (`prune: median`): Optuna's MedianPruner on the objective reported after every epoch (every fold for a
  cv_ objective); see tune_worker.PRUNE_* for when it starts.
- Objective value: the metric in the history row of the epoch whose weights the run ends with (the last epoch, or
  the best one when early stopping restores it); a cv_ metric is the mean over the folds (dlc.runtime.cv.run_cv).
- Storage: `sqlite:///DIR/study.db` in the run directory unless the search block names one; a relative sqlite
  path is relative to the current directory (as SQLAlchemy reads it); a postgresql:// URL lets many machines
  share one study (run `dlc tune` on each, with the same storage and study name).
- Several `dlc tune` processes on one study (machines sharing PostgreSQL, or two commands on one SQLite file) take
  turns, through a study lock, to queue grid points, count trials and ask for the next one: no grid point runs
  twice and --trials is not overshot.
- Resume: running `dlc tune` again with the same --out (or storage) continues the study up to --trials. A trial
  left RUNNING by a process that is gone is marked FAIL (user attribute `dlc_interrupted`) and queued again with
  the same parameters. A trial of this machine is gone when neither its worker nor its parent process is alive;
  one of another machine when its parent's heartbeat (user attribute `dlc_heartbeat`, every
  HEARTBEAT_S) is older than STALE_S.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from dlc.cli import EXIT_RUNTIME, EXIT_SPEC, _compile
from dlc.compiler.diagnostics import Diagnostic, Span
from dlc.compiler.search import Space, concretize, grid_points, refine, spaces_of, top_trials, value_text
from dlc.runtime import rundir

HEARTBEAT_S = 20.0
STALE_S = 120.0
TABLE_ROWS = 10
HOST = socket.gethostname()


class TuneError(Exception):
    """A problem with the tune set-up (not the spec): one line, exit 2."""


# ------------------------------------------------------------------------------------------------- set-up


def _spec_error(result, code: str, message: str, span: Span | None, hint: str | None = None) -> int:
    print(Diagnostic(code, message, span, hint).render(result.source, result.file), file=sys.stderr)
    return EXIT_SPEC


def _search_section(result):
    from dlc.compiler import ast as A

    model = result.tree.models[0]
    return next((st for st in model.body if isinstance(st, A.Section) and st.name == "search"), None)


def _blockers(result) -> list[Diagnostic]:
    """What stops this spec from being tuned (beyond spec errors): a run blocker other than its search spaces, a
    search block without spaces, a cv_ objective without dlc.runtime.cv."""
    from dlc.runtime.support import run_blockers

    spec = result.spec
    out = [d for d in run_blockers(result) if d.code != "E502"]
    sec = _search_section(result)
    if spec.search is None:
        out.append(Diagnostic("E505", "this spec has no search { } block; `dlc tune` has nothing to search",
                              None, "add search { method: tpe  trials: 20  objective: minimize val_loss } and "
                              "search spaces such as lr=loguniform(1e-4, 1e-1)"))
    elif not spec.search_spaces:
        out.append(Diagnostic("E505", "the search block has no search spaces to search",
                              sec.name_span if sec is not None else None,
                              "write choice(...), uniform(lo, hi), loguniform(lo, hi) or int_uniform(lo, hi) in "
                              "an argument, e.g. optimizer: Adam(lr=loguniform(1e-4, 1e-1))"))
    elif spec.search.objective.metric.startswith("cv_"):
        try:
            from dlc.runtime.cv import run_cv  # noqa: F401
        except ImportError:
            out.append(Diagnostic("E504", f"objective '{spec.search.objective.metric}' needs cross-validation, "
                                  "which this dlc does not have", sec.name_span if sec is not None else None,
                                  "use a val_ metric, e.g. val_accuracy"))
    return out


def _storage_url(spec_storage: str | None, run: Path) -> str:
    """The study's storage URL, with a relative sqlite path made absolute (relative to the current directory)."""
    if not spec_storage:
        return f"sqlite:///{(run / 'study.db').resolve()}"
    from sqlalchemy.engine import make_url

    url = make_url(spec_storage)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        db = Path(url.database)
        if not db.is_absolute():
            db = db.resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return url.set(database=str(db)).render_as_string(hide_password=False)
    return spec_storage


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url


def _distributions(spaces: list[Space], grid: bool) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for sp in spaces:
        if grid or sp.kind == "choice":
            out[sp.name] = CategoricalDistribution(grid_points(sp) if grid else sp.options)
        elif sp.kind == "int_uniform":
            out[sp.name] = IntDistribution(int(sp.low), int(sp.high))
        else:
            out[sp.name] = FloatDistribution(sp.low, sp.high, log=sp.kind == "loguniform")
    return out


def _sampler(method: str, seed: int, trials: int):
    import optuna

    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 4)),
                                          multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)  # grid: every trial is an enqueued point


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def _grid(spaces: list[Space]) -> list[dict]:
    import itertools

    names = [sp.name for sp in spaces]
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid_points(sp) for sp in spaces))]


def _counted(t) -> bool:
    """Does a finished trial count towards --trials? (not an interrupted one: it is queued again)"""
    from optuna.trial import TrialState

    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and not t.user_attrs.get("dlc_interrupted")


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
    params = t.params or t.system_attrs.get("fixed_params")
    if params:
        study.enqueue_trial(params, user_attrs={"dlc_rerun_of": t.number})


class _StudyLock:
    """Mutual exclusion between the `dlc tune` processes of one study: an flock next to a SQLite file, a
    PostgreSQL advisory lock, nothing for other storages (Optuna's own row locking is all they get)."""

    def __init__(self, storage, url: str, study_name: str):
        self.storage, self.url, self.study_name = storage, url, study_name
        self._fh = None
        self._conn = None
        self._key = int.from_bytes(hashlib.sha256(f"dlc tune {study_name}".encode()).digest()[:8], "big",
                                   signed=True)

    def __enter__(self):
        if self.url.startswith("sqlite"):
            from sqlalchemy.engine import make_url

            db = make_url(self.url).database
            try:
                import fcntl
            except ImportError:
                return self
            if db and db != ":memory:":
                self._fh = open(f"{db}.dlc-lock", "a+")
                fcntl.flock(self._fh, fcntl.LOCK_EX)
        elif self.url.startswith(("postgresql", "postgres")) and self.storage is not None:
            from sqlalchemy import text

            self._conn = self.storage.engine.connect()
            self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        if self._conn is not None:
            from sqlalchemy import text

            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            finally:
                self._conn.close()
                self._conn = None
        return False


# -------------------------------------------------------------------------------------------- the workers


class _Worker:
    """One trial's process: forked from the fork server (the backend already imported), or a fresh interpreter."""

    def __init__(self, job: dict, mode: str):
        self.job = job
        self.mode = mode
        if mode == "fork":
            import multiprocessing as mp

            from dlc.runtime import tune_worker

            self.proc = mp.get_context("forkserver").Process(target=tune_worker.run_trial, args=(job,),
                                                              name=f"dlc-trial-{job['number']}")
            self.proc.start()
            self.pid = self.proc.pid
        else:
            import subprocess

            path = Path(job["trial_dir"]) / "job.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(job))
            self.proc = subprocess.Popen([sys.executable, "-m", "dlc.runtime.tune_worker", str(path)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.pid = self.proc.pid

    def exitcode(self) -> int | None:
        if self.mode == "fork":
            return self.proc.exitcode
        return self.proc.poll()

    def stop(self) -> None:
        if self.exitcode() is None:
            self.proc.terminate()
        if self.mode == "fork":
            self.proc.join(5)
        else:
            try:
                self.proc.wait(5)
            except Exception:  # noqa: BLE001
                self.proc.kill()


def _worker_mode() -> str:
    import multiprocessing as mp

    want = os.environ.get("DLC_TUNE_WORKER", "fork")
    if want == "subprocess" or "forkserver" not in mp.get_all_start_methods():
        return "subprocess"
    return "fork"


# what each trial's process needs, imported once by the fork server (a missing optional one is skipped)
_PRELOAD = ["dlc.runtime.tune_worker", "dlc.compiler", "dlc.runtime.data", "dlc.runtime.loop", "dlc.reference.weights", "dlc.runtime.cv", "optuna",
            "optuna.storages._rdb.storage", "optuna.storages._rdb.models", "sqlalchemy", "sqlalchemy.orm",
            "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "psycopg2", "alembic.command",
            "alembic.config", "alembic.migration", "alembic.script", "sklearn.datasets", "sklearn.model_selection"]


def _start_fork_server(backend: str) -> None:
    import multiprocessing as mp

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ctx = mp.get_context("forkserver")
    # imported once by the fork server, so each trial's process starts with the framework loaded (a fork server
    # that is already running, from an earlier tune in this process, keeps what it has)
    ctx.set_forkserver_preload(_PRELOAD + [f"dlc.backends.{backend}.session"])
    from multiprocessing import forkserver

    forkserver.ensure_running()  # start importing now, while the parent sets the study up


# ---------------------------------------------------------------------------------------------- reporting


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _trial_json(t) -> dict:
    dur = None
    if t.datetime_start and t.datetime_complete:
        dur = (t.datetime_complete - t.datetime_start).total_seconds()
    out = {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
           "duration_s": dur}
    if t.intermediate_values:
        out["last_step"] = max(t.intermediate_values)
        out["intermediate"] = {str(k): v for k, v in sorted(t.intermediate_values.items())}
    for k in ("pid", "failure", "pruned_at", "epochs", "dlc_interrupted", "dlc_rerun_of"):
        if k in t.user_attrs:
            out[k.removeprefix("dlc_")] = t.user_attrs[k]
    return out


def _short(sp: Space, value) -> str:
    """A value for display: floats to 4 significant digits (best.dlspec and tune.json keep them exact)."""
    return f"{value:.4g}" if isinstance(value, float) else value_text(sp, value)


def _labels(spaces: list[Space]) -> list[str]:
    """Column labels: the shortest ending of each parameter's path that no other parameter shares."""
    parts = [sp.name.split(".") for sp in spaces]
    out = []
    for p in parts:
        for k in range(1, len(p) + 1):
            tail = p[-k:]
            if sum(q[-k:] == tail for q in parts) == 1:
                break
        out.append(".".join(tail))
    return out


def _trial_line(t, metric: str, spaces: list[Space]) -> str:
    params = "  ".join(f"{label}={_short(sp, t.params[sp.name])}" for sp, label in zip(spaces, _labels(spaces))
                       if sp.name in t.params)
    state = t.state.name.lower()
    if state == "complete":
        what = f"{metric} {t.value:.4f}"
    elif state == "pruned":
        what = f"pruned at step {t.user_attrs.get('pruned_at', '?')}"
    elif t.user_attrs.get("dlc_interrupted"):
        what = f"interrupted ({t.user_attrs['dlc_interrupted']}); queued again"
    else:
        what = f"failed: {t.user_attrs.get('failure', 'unknown reason')}"
    dur = ""
    if t.datetime_start and t.datetime_complete:
        dur = f"  [dim]{(t.datetime_complete - t.datetime_start).total_seconds():.1f} s[/]"
    return f"trial {t.number:>3}  {what}  [dim]{params}[/]{dur}"


def _sorted_complete(trials, direction: str):
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    return sorted(done, key=lambda t: t.value, reverse=direction == "maximize")


# ------------------------------------------------------------------------------------------------- refine


def _load_refine(run: str, spaces: list[Space], direction: str) -> tuple[list[Space], dict]:
    path = Path(run) / "tune.json"
    if not path.is_file():
        raise TuneError(f"--refine {run}: no tune.json there (a run directory of `dlc tune` has one)")
    prev = json.loads(path.read_text())
    old = {d["name"]: Space.from_json(d) for d in prev.get("spaces", [])}
    missing = [sp.name for sp in spaces if sp.name not in old]
    if missing:
        raise TuneError(f"--refine {run}: the earlier search has no parameter {', '.join(missing)}; "
                        "refine the spec that run searched")
    for sp in spaces:
        if old[sp.name].kind != sp.kind:
            raise TuneError(f"--refine {run}: {sp.name} was {old[sp.name].kind} there, {sp.kind} here")
    top = top_trials(prev.get("trials", []), direction)
    if not top:
        raise TuneError(f"--refine {run}: the earlier search has no completed trial")
    # the earlier run's ranges (they may be refined already), at this spec's positions
    base = [replace(old[sp.name], at=sp.at, end=sp.end, option_texts=old[sp.name].option_texts
                    or sp.option_texts) for sp in spaces]
    return refine(base, top), {"run": str(Path(run)), "top_trials": [t["number"] for t in top],
                               "from": {sp.name: sp.describe() for sp in base}}


# --------------------------------------------------------------------------------------------------- main


def main(args) -> int:
    from rich.console import Console

    console = Console(stderr=True, quiet=bool(args.quiet))
    spec_path = args.spec
    if spec_path is None:
        if not args.refine:
            print("dlc tune: give a SPEC (or --refine RUN to refine the spec an earlier tune searched)",
                  file=sys.stderr)
            return EXIT_SPEC
        try:
            spec_path = json.loads((Path(args.refine) / "tune.json").read_text())["spec_file"]
        except (OSError, KeyError, ValueError):
            print(f"dlc tune: --refine {args.refine}: no tune.json with the spec there", file=sys.stderr)
            return EXIT_SPEC
        copy = Path(args.refine) / Path(spec_path).name
        if not Path(spec_path).exists() and copy.exists():
            spec_path = str(copy)  # the spec has moved: the copy the earlier run kept
    result = _compile(spec_path)
    if not result.ok:
        return EXIT_SPEC
    blockers = _blockers(result)
    if blockers:
        print("\n\n".join(d.render(result.source, result.file) for d in blockers), file=sys.stderr)
        return EXIT_SPEC
    spec = result.spec
    search = spec.search
    spaces = spaces_of(result)
    refined = None
    try:
        if args.refine:
            spaces, refined = _load_refine(args.refine, spaces, search.objective.direction)
        return _tune(args, console, spec_path, result, spaces, refined)
    except TuneError as e:
        print(f"dlc tune: {e}", file=sys.stderr)
        return EXIT_SPEC


def _tune(args, console, spec_path: str, result, spaces: list[Space], refined: dict | None) -> int:
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from dlc.runtime.tune_worker import _quiet_optuna, make_pruner, make_storage

    _quiet_optuna()
    spec = result.spec
    search = spec.search
    metric, direction = search.objective.metric, search.objective.direction
    method = search.method
    trials = args.trials or search.trials
    workers = max(1, args.workers)
    grid = _grid(spaces) if method == "grid" else None
    target = min(trials, len(grid)) if grid is not None else trials

    run = rundir.new_run_dir(f"{spec.name}-tune", args.backend, args.out)
    spec_file = Path(spec_path).resolve()
    if not (run / spec_file.name).exists():
        rundir.copy_spec(run, spec_path)
    url = _storage_url(search.storage, run)
    study_name = args.study or (f"{spec.name}-refined" if refined else spec.name)
    config = {"spaces": [{k: v for k, v in sp.to_json().items() if k not in ("at", "end", "option_texts")}
                         for sp in spaces],
              "method": method, "objective": [direction, metric], "prune": search.prune}
    lock = _StudyLock(None, url, study_name)
    for attempt in range(4):
        try:
            with lock:  # SQLite: one process creates the schema and the study at a time
                storage = make_storage(url)
                study = optuna.create_study(study_name=study_name, storage=storage, direction=direction,
                                            load_if_exists=True, pruner=make_pruner(search.prune))
            break
        except ImportError as e:
            raise TuneError(f"storage {_shown_url(url)} needs a driver: {e} (pip install 'dlc[postgres]')") \
                from None
        except Exception as e:  # noqa: BLE001 - sqlalchemy/optuna errors: one line
            if attempt == 3:  # (a first creation of the schema can race with another machine's: try again)
                raise TuneError(f"cannot open storage {_shown_url(url)}: {str(e).splitlines()[0]}") from None
            time.sleep(0.5 + attempt)
    lock.storage = storage
    have = study.user_attrs.get("dlc_config")
    if have is None:
        study.set_user_attr("dlc_config", config)
    elif json.loads(json.dumps(have)) != json.loads(json.dumps(config)):
        raise TuneError(f"study '{study_name}' in {_shown_url(url)} was made with other search spaces, method "
                        "or objective; use a new --out (or --study NAME) for this search")
    study.sampler = _sampler(method, spec.seed + len(study.trials), trials)
    distributions = _distributions(spaces, grid is not None)

    # resume: trials a dead process left RUNNING are failed and queued again
    requeued = 0
    with lock:  # other `dlc tune` processes on this study wait: none sees a half-done queue
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if _stale(t):
                _interrupt(study, storage, t, "its process is gone")
                requeued += 1
        if grid is not None:
            existing = set()
            for t in study.get_trials(deepcopy=False):
                if t.state == TrialState.FAIL and t.user_attrs.get("dlc_interrupted"):
                    continue
                existing.add(_key(t.params or t.system_attrs.get("fixed_params", {})))
            for point in grid[:target]:
                if _key(point) not in existing:
                    study.enqueue_trial(point)
                    existing.add(_key(point))

    done_before = sum(_counted(t) for t in study.get_trials(deepcopy=False))
    mode = _worker_mode()
    if mode == "fork":
        _start_fork_server(args.backend)
    threads = args.threads or (max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    what = f"{method} search" + (f" over a grid of {len(grid)} points" if grid is not None else "")
    console.print(f"[bold]{spec.name}[/]: {what}, {target} trials on [cyan]{args.backend}[/] "
                  f"({workers} worker{'s' if workers > 1 else ''}), {direction} {metric}"
                  + (", median pruning" if search.prune == "median" else "") + f" → {run}")
    console.print(f"[dim]study '{study_name}' in {_shown_url(url)}[/]")
    if refined:
        for sp in spaces:
            console.print(f"  refine {sp.name}: {refined['from'][sp.name]} → {sp.describe()}")
    if grid is not None and len(grid) > trials:
        console.print(f"[yellow]the grid has {len(grid)} points; running the first {trials} "
                      f"(--trials {len(grid)} runs them all)[/]")
    if done_before:
        console.print(f"resuming: {done_before} of {target} trials done"
                      + (f", {requeued} interrupted trial{'s' if requeued > 1 else ''} queued again" if requeued
                         else ""))

    job_base = {"spec": str(spec_file), "storage": url, "study": study_name, "backend": args.backend,
                "device": args.device, "metric": metric, "prune": search.prune, "cwd": str(Path.cwd()),
                "spaces": [(sp.name, list(sp.at)) for sp in spaces], "threads": threads}
    running: dict[int, tuple[_Worker, int]] = {}  # trial id -> (worker, number)
    last_beat = 0.0
    interrupted = False
    try:
        while True:
            for tid, (w, number) in list(running.items()):
                code = w.exitcode()
                if code is None:
                    continue
                del running[tid]
                ft = storage.get_trial(tid)
                if ft.state == TrialState.RUNNING:
                    log = Path(w.job["trial_dir"]) / "log.txt"
                    with contextlib.suppress(UpdateFinishedTrialError):
                        storage.set_trial_user_attr(tid, "failure", f"its process exited with code {code} (see {log})")
                        storage.set_trial_state_values(tid, TrialState.FAIL)
                    ft = storage.get_trial(tid)
                console.print(_trial_line(ft, metric, spaces))
            trial = None
            if len(running) < workers:
                with lock:  # count and take a trial atomically with respect to other tune processes
                    all_trials = study.get_trials(deepcopy=False)
                    n_done = sum(_counted(t) for t in all_trials)
                    n_running = sum(t.state == TrialState.RUNNING for t in all_trials)
                    n_waiting = sum(t.state == TrialState.WAITING for t in all_trials)
                    left = target - n_done - n_running
                    # grid: only queued points, so a point can never run twice (ask pops a queued one)
                    if left > 0 and (grid is None or n_waiting):
                        trial = study.ask(distributions)
                        trial.set_user_attr("dlc_host", HOST)
                        trial.set_user_attr("dlc_parent_pid", os.getpid())
                        trial.set_user_attr("dlc_heartbeat", time.time())
            if trial is not None:
                job = dict(job_base, trial_id=trial._trial_id, number=trial.number,
                           trial_dir=str((run / "trials" / f"{trial.number:04d}").resolve()))
                w = _Worker(job, mode)
                trial.set_user_attr("dlc_worker_pid", w.pid)
                running[trial._trial_id] = (w, trial.number)
                continue
            if not running:
                break
            while all(w.exitcode() is None for w, _ in running.values()):  # until a worker is done
                now = time.time()
                if now - last_beat > HEARTBEAT_S:
                    for tid in running:
                        with contextlib.suppress(UpdateFinishedTrialError):  # it has just finished
                            storage.set_trial_user_attr(tid, "dlc_heartbeat", now)
                    last_beat = now
                time.sleep(0.02)
    except KeyboardInterrupt:
        interrupted = True
        for tid, (w, _) in running.items():
            w.stop()
            ft = storage.get_trial(tid)
            if ft.state == TrialState.RUNNING:
                _interrupt(study, storage, ft, "dlc tune was interrupted")
        console.print("[yellow]interrupted: run the same command again to continue[/]")

    return _finish(console, result, spec_file, run, study, storage, url, study_name, spaces, refined, grid,
                   target, args, interrupted)


def _finish(console, result, spec_file: Path, run: Path, study, storage, url, study_name, spaces, refined, grid,
            target, args, interrupted: bool) -> int:
    from rich.table import Table

    from dlc.compiler import compile_text

    spec = result.spec
    metric, direction = spec.search.objective.metric, spec.search.objective.direction
    all_trials = study.get_trials(deepcopy=False)
    ranked = _sorted_complete(all_trials, direction)
    counts: dict[str, int] = {}
    for t in all_trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    summary = {
        "spec": spec.name, "spec_file": str(spec_file), "backend": args.backend, "study": study_name,
        "storage": _shown_url(url), "method": spec.search.method, "objective": {"direction": direction,
                                                                                "metric": metric},
        "prune": spec.search.prune, "trials_target": target, "grid_size": len(grid) if grid is not None else None,
        "spaces": [sp.to_json() for sp in spaces], "refined_from": refined, "counts": counts,
        "trials": [_trial_json(t) for t in all_trials], "best": None,
    }
    best = ranked[0] if ranked else None
    if best is not None:
        note = (f"search {{ }} removed by dlc tune: trial {best.number} of study '{study_name}' was best, "
                f"{metric} = {best.value:.6g}")
        text = concretize(result, spaces, best.params, note, base_dir=spec_file.parent, new_dir=run)
        text = f"# the best trial of `dlc tune {spec_file.name}`, with every search space replaced by its value\n" \
            + text
        best_path = run / "best.dlspec"
        best_path.write_text(text)
        check = compile_text(text, str(best_path), run)
        if not check.ok or check.spec.search_spaces:
            console.print(f"[red]dlc tune: the best spec does not check (a bug):[/]\n{check.render()}")
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "spec": "best.dlspec"}
    rundir.write_json(run / "tune.json", summary)

    out = __import__("rich.console", fromlist=["Console"]).Console(quiet=bool(args.quiet))
    table = Table(title=f"{spec.name}: best trials ({direction} {metric})")
    table.add_column("trial", justify="right")
    table.add_column(metric, justify="right")
    for label in _labels(spaces):
        table.add_column(label, justify="right")
    table.add_column("time", justify="right")
    for t in ranked[:TABLE_ROWS]:
        dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else float("nan")
        table.add_row(str(t.number), f"{t.value:.4f}", *(_short(sp, t.params[sp.name]) for sp in spaces),
                      f"{dur:.1f} s")
    out.print(table)
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    console.print(f"{len(all_trials)} trials: {shown}")
    if best is None:
        fails = [t.user_attrs.get("failure") for t in all_trials if t.user_attrs.get("failure")]
        why = f" (e.g. {fails[0]})" if fails else ""
        print(f"dlc: error: no trial completed{why} (run directory kept: {run})", file=sys.stderr)
        return 130 if interrupted else EXIT_RUNTIME
    console.print(f"[bold green]best[/] trial {best.number}: {metric} {best.value:.4f}")
    for sp in spaces:
        console.print(f"  {sp.name} = {value_text(sp, best.params[sp.name])}")
    console.print(f"best spec: {run / 'best.dlspec'}")
    print(run)
    return 130 if interrupted else 0
