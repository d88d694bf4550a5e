"""Run directories after the fact: whether a run finished (the one notion `--resume`, `evaluate`, `predict`,
`export` and `runs` share), find them under a folder, describe each (spec, backend, date, epochs, final
metrics, status), and overlay the curves of several in one PNG (`dlc runs`, `dlc plot`).

A `dlc run` folder is finished when its run.json says so (`finished`, written after every other file; a
folder from before that field: when it has metrics.json and model.json) and its final files are readable; a
cross-validation folder when it has cv.json; a tune folder when it has tune.json."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlc.compiler.diagnostics import DlcError
from dlc.runtime.rundir import (
    DLC_DIRS,
    KIND_NAMES,
    STAMP,
    OutFolderError,
    drawn_literally,
    epoch_axis,
    figure,
    folder_kind,
    foreign_entries,
    loss_axis,
    lr_axis,
    matplotlib_config,
    output_file,
    prepare_out,
)
from dlc.runtime.runlock import holder as lock_holder
from dlc.runtime.trials import COUNTED

PLOT_SKIP = {"epoch", "lr", "time_s", "samples_per_s"}


class RunDirError(DlcError):
    """A folder that is not a run directory (or not one the command can use): one line, exit 1."""


def read_json(path: Path, kind: type = dict):
    """The JSON in `path`, of type `kind`; RunDirError naming the file when it is missing, empty, truncated
    or of another shape."""
    if path.exists() and not path.is_file() and not path.is_dir():  # (reading a pipe would wait forever)
        raise RunDirError(f"{path} is not a regular file (a pipe, a socket or a device)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise RunDirError(f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at {e.start}: "
                          "damaged?)") from None
    if not text.strip():
        raise RunDirError(f"{path} is empty")
    try:
        obj = json.loads(text)
    except ValueError as e:
        msg = str(getattr(e, "msg", e)).removesuffix(" at")  # ("Unterminated string starting at")
        raise RunDirError(f"{path} is not valid JSON ({msg} at line "
                          f"{getattr(e, 'lineno', '?')}: truncated?)") from None
    except RecursionError:  # (`[[[[...` 100,000 deep: "maximum recursion depth exceeded", and no listing)
        raise RunDirError(f"{path} is not JSON dlc wrote (its values nest too deeply to read: "
                          "damaged?)") from None
    if not isinstance(obj, kind):
        raise RunDirError(f"{path} holds {_json_kind(obj)}, not an {'object' if kind is dict else 'array'}")
    return obj


def _json_kind(value) -> str:
    """What a JSON value is, in JSON's words ("a JSON NoneType" was Python's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), "a value")


def shown_value(value, most: int = 40) -> str:
    """A JSON value in a message, cut to `most` characters."""
    text = json.dumps(value)
    return text if len(text) <= most else text[:most - 3] + "..."


def backend_problem(info: dict) -> str | None:
    """What is wrong with run.json's backend (one dlc has), or None: what `dlc evaluate` refuses the run for
    (serve), and `dlc runs` shows."""
    backend = info.get("backend")
    if backend in ("torch", "keras"):
        return None
    said = f"is {shown_value(backend)}" if "backend" in info else "is missing"
    return f"its backend {said}, not torch or keras"


def retrain(run: Path) -> str:
    """What to do with a run that cannot be continued."""
    return f"train the spec again (`dlc run SPEC --out {run} --replace`)"


def _short(e: RunDirError, run: Path) -> str:
    """The message of a read_json error with the file named relative to the run."""
    return str(e).replace(f"{run}/", "", 1)


# --------------------------------------------------------------------------------------------- run state


@dataclass
class RunState:
    """Where a run folder stands: `state` is finished, unfinished, failed or damaged; `detail` says how many
    epochs, why it failed or what is damaged (the file, relative to the run); `repairable`: the damage is in
    the files a run writes at its end (history, metrics, model), which `--resume` writes again."""

    kind: str  # run | cv | tune
    state: str
    detail: str = ""
    repairable: bool = False
    epochs_done: int | None = None
    epochs_total: int | None = None
    info: dict | None = None  # run.json
    ir: dict | None = None  # ir.json

    @property
    def finished(self) -> bool:
        return self.state == "finished"


def not_a_run(run: Path) -> RunDirError:
    """The error for a run directory that is no folder: a file (a spec: how to train it), or nothing."""
    if run.is_file():
        hint = (f"; train the spec with `dlc run {run}`" if run.suffix == ".dlspec" else "")
        return RunDirError(f"'{run}' is a file, not a run directory (the folder `dlc run` wrote){hint}")
    if run.is_symlink():  # (a link to a folder that was moved or deleted, or to itself)
        return RunDirError(f"'{run}' is a link to '{os.readlink(run)}', which is no folder: no run directory "
                           "there")
    if run.exists():
        return RunDirError(f"'{run}' is not a run directory: a special file (a pipe, a socket or a device), "
                           "not a folder")
    return RunDirError(f"no such run directory '{run}'")


def tune_without_best(run: Path, instead: str) -> RunDirError:
    """The error for a tune folder without a best trial to show; `instead`: what to do with a trial folder
    (`diagnose`, `plot`). Without tune.json the search was stopped (killed) before it wrote one: the same
    `dlc tune` command continues it and writes it."""
    if not (run / "tune.json").is_file() and (run / "trials").is_dir():
        return RunDirError(f"'{run}' is a tune run stopped before it wrote tune.json: run the same "
                           f"`dlc tune` command again (it continues the search and writes it), or "
                           f"{instead} a trial folder, e.g. its trials/0000")
    ended = _no_trial_completed(run, instead)
    if ended is not None:
        return ended
    # (a search stopped before its first trial wrote a history was sent to trials/0000, which was not there:
    # a second error)
    folder = next((f for f in sorted((run / "trials").glob("[0-9]*")) if (f / "history.json").is_file()),
                  None)
    try:
        read_json(run / "tune.json")
    except RunDirError as e:  # (it was "no tune.json with a completed trial", the file there but damaged)
        look = f"; {instead} a trial folder, e.g. its {folder.relative_to(run)}" if folder is not None else ""
        return RunDirError(f"'{run}' is a tune run whose {e}{look}")
    if folder is None:
        then = f"its search is running (pid {pid})" if (pid := lock_holder(run)) is not None else \
            "run the same `dlc tune` command again to continue the search"
        return RunDirError(f"'{run}' is a tune run without a best trial yet: no trial has ended; {then}")
    return RunDirError(f"'{run}' is a tune run without a best trial yet (no tune.json with a completed "
                       f"trial); {instead} a trial folder, e.g. its {folder.relative_to(run)}")


def _no_trial_completed(run: Path, instead: str) -> RunDirError | None:
    """The error for a search that ended with no completed trial (every one failed or was pruned): how many,
    the first failure's reason, and a trial folder with a history to look at, if any (a trial that failed in
    its first epoch has none: pointing at it would be a second error)."""
    trials = (_load(run / "tune.json") or {}).get("trials")
    trials = [t for t in trials if isinstance(t, dict)] if isinstance(trials, list) else []
    ended = [t for t in trials if t.get("state") in ("FAIL", "PRUNED")]
    if not ended or any(t.get("state") == "COMPLETE" for t in trials):
        return None
    counts = {state: sum(t["state"] == state for t in ended) for state in ("FAIL", "PRUNED")}
    shown = ", ".join(f"{n} {'failed' if state == 'FAIL' else 'pruned'}" for state, n in counts.items() if n)
    why = next((f"; trial {t.get('number')}: {t['failure']}" for t in ended
                if isinstance(t.get("failure"), str)), "")
    folders = [trial_folder(run, t) for t in ended if isinstance(t.get("number"), int)]
    look = next((f"; {instead} a trial folder with a history, e.g. {f}" for f in folders
                 if (f / "history.json").is_file()), "")
    return RunDirError(f"'{run}' is a tune run in which no trial completed ({shown}{why}){look}; change the "
                       "search spaces that fail and run `dlc tune` again")


def _part_of_a_run(run: Path) -> RunDirError | None:
    """The error for a fold of a cv run or a trial of a tune run, named as dlc's folder it is (they were
    "not a dlc run directory", and `dlc runs TUNE/trials` called every trial damaged); None otherwise."""
    if re.fullmatch(r"fold_\d+", run.name) and _marked_kind(run.parent) == "cv":
        cv = run.parent
        return RunDirError(f"'{run}' is a fold of the cross-validation {cv}, which keeps no model per fold: "
                           f"`dlc runs {cv}` lists the folds, `dlc doctor {cv}` diagnoses each")
    if run.parent.name == "trials" and _marked_kind(run.parent.parent) == "tune":
        tune = run.parent.parent
        return RunDirError(f"'{run}' is a trial of the tune run {tune}, which keeps no model per trial: "
                           f"`dlc runs {tune}` shows the best")
    return None


def run_state(run: Path) -> RunState:
    """How far the run folder `run` got (see RunState); RunDirError when it is not a dlc run folder."""
    run = Path(run)
    if not run.is_dir():
        raise not_a_run(run)
    kind = folder_kind(run)
    if kind == "cv":
        return _summary_state(run, "cv", "cv.json")
    if kind == "tune":
        return _summary_state(run, "tune", "tune.json")
    if kind is None or not ((run / "run.json").exists() or (run / "ir.json").exists()):
        raise _part_of_a_run(run) or RunDirError(f"'{run}' is not a dlc run directory (no ir.json/run.json)")
    try:
        info, ir = read_json(run / "run.json"), read_json(run / "ir.json")
    except RunDirError as e:
        return RunState("run", "damaged", _short(e, run))
    total = ir.get("train", {}).get("epochs") if isinstance(ir.get("train"), dict) else None
    state = RunState("run", "unfinished", info=info, ir=ir, epochs_total=total)
    try:
        has_history = (run / "history.json").exists()
        state.epochs_done = len(read_history_rows(run)) if has_history else 0
    except RunDirError as e:
        state.state, state.detail, state.repairable = "damaged", _short(e, run), True
        return state
    finished = info["finished"] if "finished" in info else \
        (run / "metrics.json").is_file() and (run / "model.json").is_file()  # a folder from before the field
    if info.get("failed"):
        state.state, state.detail = "failed", str(info["failed"])
    elif finished:
        problem = _final_files_problem(run) or _history_short(run, state.epochs_done)
        if problem:
            state.state, state.detail, state.repairable = "damaged", problem, True
        else:
            state.state = "finished"
    else:
        state.detail = f"{state.epochs_done} of {total} epochs" if total else f"{state.epochs_done} epochs"
    return state


def check_out(out: str, replace: bool, spec_file: str | Path | None, kind: str = "run") -> None:
    """rundir.prepare_out's check of --out (nothing made or deleted), whose refusal of a run folder it would
    tell to `--resume` says instead what keeps --resume from it (run.json a pipe, ir.json not JSON): that
    hint was refused in turn. Here, not in rundir, which the run folders' reading (this module) builds on.
    An --out inside a folder dlc wrote is refused too (inside_run)."""
    if (why := inside_run(out)) is not None:
        raise OutFolderError(why)
    try:
        prepare_out(out, replace=replace, kind=kind, spec_file=spec_file, check_only=True)
    except OutFolderError:
        why = None if replace else _resume_refused(Path(out))
        if why is None:
            raise
        raise OutFolderError(f"--out {out} holds a dlc run that cannot be resumed: {why}; give a new folder, "
                             "or add --replace to delete it first") from None


def inside_run(out: str | Path, option: str = "--out", fix: str = "give a folder outside it") -> str | None:
    """The refusal of an output folder inside a folder dlc wrote (a run, cv or tune folder, or one of its
    folds or trials), None when it is not in one: a run written there hid the outer run from `dlc runs`
    (listed as a folder of runs), left it impossible to `--replace` (it held a folder dlc did not write
    there), and `--out CV/fold_1 --replace` replaced a fold of a finished cross-validation."""
    try:
        path = Path(os.path.abspath(out))
    except (OSError, ValueError):
        return None
    for folder in path.parents:
        kind = _marked_kind(folder)
        if kind is not None:
            return (f"{option} {out} is inside {folder}, which holds {KIND_NAMES[kind]}: a run folder "
                    f"holds one run; {fix}")
    return None


def _marked_kind(folder: Path) -> str | None:
    """"run", "cv" or "tune" when `folder` holds the files that mark it from when it is made (tune.json, or
    study.db with trials/; cv.json, or ir.json with fold_1/; run.json with ir.json): a few lookups, not a
    listing of what may be a large folder, and never a lone file of a common name (a project's run.json)."""
    marks = (("tune", ("tune.json",)), ("tune", ("study.db", "trials/")), ("cv", ("cv.json",)),
             ("cv", ("ir.json", "fold_1/")), ("run", ("run.json", "ir.json")))
    try:
        for kind, names in marks:
            if all((folder / n).is_dir() if n.endswith("/") else (folder / n).is_file() for n in names):
                return kind
    except OSError:
        return None
    return None


def _resume_refused(folder: Path) -> str | None:
    """resume_blocker of a folder that holds a dlc run alone, which no process trains into (prepare_out's
    other refusals stand as they are)."""
    try:
        if folder_kind(folder) != "run" or foreign_entries(folder) or lock_holder(folder):
            return None
    except OSError:
        return None
    return resume_blocker(folder)


def resume_blocker(run: Path) -> str | None:
    """What in the `dlc run` folder `run` keeps `--resume` from it whatever is done (run.json or ir.json not
    a regular file, not JSON, missing), None otherwise: where a hint to resume it would be refused in turn."""
    try:
        st = run_state(run)
    except (RunDirError, OSError):
        return None
    return st.detail if st.kind == "run" and st.state == "damaged" and not st.repairable else None


def _final_files_problem(run: Path) -> str | None:
    """What is wrong with the files a finished run wrote last (metrics.json, model.json, the model), if
    anything."""
    try:
        if (run / "metrics.json").exists() or (run / "history.json").exists() and \
                read_json(run / "history.json", list):
            read_json(run / "metrics.json")  # (an untrained Model.save has no metrics)
        model = read_json(run / "model.json")
    except RunDirError as e:
        return _short(e, run)
    name = model.get("file", "")
    if not isinstance(name, str) or name and (Path(name).name != name or name in (".", "..")):
        return f"model.json is damaged (its file is {shown_value(name)}, not the name of a file in the run)"
    if name and (run / name).is_dir():
        return f"{name} is a folder, not the model file"
    if not name:  # (model.json `{}`: "the model file is missing", with model.pt beside it)
        return "model.json is damaged (it names no model file)"
    if not (run / name).is_file():
        return f"{name} is missing"
    if (run / name).stat().st_size == 0:
        return f"{name} is empty"
    return None


def digest_problem(run: Path) -> str | None:
    """Why the model file or ir.json is not the one the run saved (model.json's `sha256`, recorded by
    rundir.save_model), or None: a file copied from another run of the same shapes loads without error and
    would give that run's numbers silently, a damaged one fails later with the framework's words. A run
    saved before digests were recorded has none, and is trusted. `dlc evaluate` (serve.check_digests) and
    `dlc runs` say it alike; reading the files costs no framework."""
    from dlc.runtime.rundir import file_digest

    try:
        recorded = read_json(run / "model.json").get("sha256")
    except RunDirError as e:
        return _short(e, run)
    if recorded is None:
        return None
    if not isinstance(recorded, dict) or not all(isinstance(k, str) and isinstance(v, str) and k
                                                 and Path(k).name == k for k, v in recorded.items()):
        return f"model.json is damaged (its sha256 is not a table of file digests); {retrain(run)}"
    for name, digest in recorded.items():
        try:
            same = file_digest(run / name) == digest
        except OSError as e:
            return f"cannot read {name}: {e.strerror or e}"
        if not same:
            return (f"{name} is not the file this run saved (its digest differs from the one recorded then): "
                    "damaged, or copied from another run?")
    return None


def _history_short(run: Path, epochs_done: int | None) -> str | None:
    """A finished run's history.json with fewer epochs than metrics.json says were run (cut by hand, or an
    empty list written over it): the curves, `dlc plot` and `dlc doctor` would show a shorter run."""
    metrics = _load(run / "metrics.json") or {}
    ran = metrics.get("epochs_run")
    if not isinstance(ran, int) or isinstance(ran, bool) or epochs_done is None or epochs_done >= ran:
        return None
    return f"history.json has {epochs_done} of the {ran} epoch{'s' * (ran != 1)} metrics.json says were run"


def _summary_state(run: Path, kind: str, name: str) -> RunState:
    """A cv or tune folder: finished when its summary file is there and readable."""
    if not (run / name).exists():
        return RunState(kind, "unfinished", f"no {name} yet")
    try:
        summary = read_json(run / name)
    except RunDirError as e:
        return RunState(kind, "damaged", _short(e, run))
    if kind == "tune" and (damage := trials_damage(summary)) is not None:
        return RunState(kind, "damaged", f"{name}: {damage}")
    if summary.get("failed"):
        return RunState(kind, "failed", str(summary["failed"]))
    return RunState(kind, "finished")


TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")  # (Optuna's TrialState names)


def trials_damage(tune: dict) -> str | None:
    """What is wrong with tune.json's `trials` (a list of objects, each a trial number and state): a search
    whose trials cannot be read was listed as done with 0 trials. None when sound (or absent: counted from
    the trial folders)."""
    trials = tune.get("trials")
    if trials is None:
        return None
    if not isinstance(trials, list):
        return f"trials are {shown_value(trials)}, not a list"
    for i, t in enumerate(trials, 1):
        if not isinstance(t, dict):
            return f"trial entry {i} is {shown_value(t)}, not an object"
        number = t.get("number")
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            return f"trial entry {i} has no trial number ({shown_value(t)})"
        if t.get("state") not in TRIAL_STATES:
            return f"trial {number} has no state ({shown_value(t)})" if "state" not in t else \
                f"trial {number} has state {shown_value(t['state'])}, none of {', '.join(TRIAL_STATES)}"
    return None


def require_finished(run: str | Path) -> RunState:
    """The state of a finished `dlc run` folder that evaluate, predict and export can load; RunDirError
    saying why not and what to do otherwise."""
    run = Path(run)
    if run.is_dir() and folder_kind(run) is None:
        raise RunDirError(f"'{run}' is not a finished run directory (no ir.json/run.json)")
    st = run_state(run)
    if st.kind == "cv":
        mark = "cv.json" if (run / "cv.json").exists() else "fold_N folders, no cv.json yet"
        # (`dlc runs` shows only the mean ± std over the folds: each fold's own figures are in its folder)
        raise RunDirError(f"'{run}' is a cross-validation run ({mark}): its folds keep no model to load; "
                          f"each fold's metrics are in {run / 'fold_N' / 'metrics.json'} (their mean ± std: "
                          f"`dlc runs {run}`); to use a model, train the spec with `dlc run` (a holdout "
                          "split)")
    if st.kind == "tune":
        best = run / "best.dlspec"
        if not best.is_file():  # (no trial completed, or the search has not written its end yet)
            raise RunDirError(f"'{run}' is a tune run: its trials keep no model to load, and it has no "
                              f"best.dlspec to train (no trial completed, or the search has not ended: "
                              f"`dlc runs {run}` shows where it stands)")
        raise RunDirError(f"'{run}' is a tune run: its trials keep no model to load; train its best spec "
                          f"with `dlc run {best}` and use that run")
    if st.state == "finished":
        return st
    if st.state == "unfinished":
        raise RunDirError(f"'{run}' did not finish ({st.detail} trained; no final model): continue it with "
                          f"`dlc run --resume {run}`")
    if st.state == "failed":
        raise RunDirError(f"'{run}' failed ({st.detail}); it has no final model")
    if st.repairable:
        raise RunDirError(f"'{run}' cannot be used: {st.detail}; `dlc run --resume {run}` writes its final "
                          "files again from its last checkpoint")
    raise RunDirError(f"'{run}' cannot be used: {st.detail}; {retrain(run)}")


# --------------------------------------------------------------------------------------------- listing


def find_runs(root: Path) -> list[Path]:
    """Run folders (`dlc run`, cv and tune) under root, or root itself if it is one: its subfolders and
    theirs, never inside a run folder (cv folds and tune trials belong to theirs). A folder is a run folder
    by the files that mark it (rundir.folder_kind) and holds no other run folder: a run never holds runs
    beside its own folds and trials, so a folder of runs with a stray run file in it (an ir.json copied
    there) is still the folder of runs it is, not one damaged run."""
    if _run_folder(root):
        return [root]
    found = []
    for child in _subfolders(root):
        if _run_folder(child):
            found.append(child)
        elif not _inside_of(root, child):  # (a link to the folder, or one above it: its runs are listed)
            found.extend(g for g in _subfolders(child) if _kind(g) is not None)
    once: dict[Path, Path] = {}  # (a run reached through a link too is listed once, by its first name)
    for p in found:
        once.setdefault(p.resolve(), p)
    return sorted(once.values(), key=_order)


def _order(run: Path) -> tuple[float, float]:
    """By when each run started; runs of the same second by their folders' last-modified times."""
    return started_time(run), _mtime(run)


def _mtime(run: Path) -> float:
    try:
        return run.stat().st_mtime
    except OSError:
        return 0.0


_STARTED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?")


def started_time(run: Path) -> float:
    """When the run in `run` started (seconds since the epoch, local time as recorded): started_text's; for a
    folder of an older dlc that recorded none, the folder's last-modified time (which a file put in changes).
    `dlc runs` orders its rows by it."""
    if (started := started_text(run)) is not None:
        try:
            return time.mktime(time.strptime(started, STAMP if len(started) > 16
                                             else "%Y-%m-%dT%H:%M"))
        except (ValueError, OverflowError):
            pass
    return _mtime(run)


def started_text(run: Path) -> str | None:
    """The `started` its run.json, cv.json or tune.json (by the folder's kind) records, when it is a time
    (`2026-11-30T21:37:05`); None otherwise."""
    kind = _kind(run)
    info = _load(run / f"{kind}.json") if kind is not None else None
    started = info.get("started") if isinstance(info, dict) else None
    return started if isinstance(started, str) and _STARTED.fullmatch(started) else None


def _inside_of(root: Path, folder: Path) -> bool:
    """`root` is `folder` or inside it (links resolved)."""
    try:
        root.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _subfolders(p: Path) -> list[Path]:
    """The folders in `p` (links to folders too), by name; none where it cannot be read."""
    try:
        return sorted(c for c in p.iterdir() if c.is_dir())
    except OSError:
        return []


def _run_folder(p: Path) -> bool:
    """`p` is one run's folder: marked as one (folder_kind), and with no run folder among its subfolders
    other than its own folds and trials."""
    return _kind(p) is not None and not any(not _own_folder(c.name) and _kind(c) is not None
                                            for c in _subfolders(p))


def _kind(p: Path) -> str | None:
    """folder_kind, None for a folder that cannot be read."""
    try:
        return folder_kind(p)
    except OSError:
        return None


def _own_folder(name: str) -> bool:
    """A folder a run writes in itself: fold_N, trials, model.tmp (trials/NNNN are inside trials/: a folder
    of runs named 1, 2, 3 is not a run's)."""
    return bool(DLC_DIRS.fullmatch(name)) and not name.isdigit()


def _load(path: Path, kind: type = dict):
    try:
        return read_json(path, kind)
    except RunDirError:
        return None


def describe(run: Path) -> dict:
    """One run folder for `dlc runs`: kind, spec, backend, date, epochs (or folds, trials), final metrics,
    status ("done", "incomplete: ...", "failed: ...", "damaged: ...")."""
    try:
        st = run_state(run)
    except RunDirError as e:
        st = RunState("run", "damaged", str(e))
    # (the recorded start, not the folder's time, which a file put in changes: started_time)
    started = started_text(run)
    date = started[:16].replace("T", " ") if started is not None else \
        time.strftime("%Y-%m-%d %H:%M", time.localtime(_mtime(run)))
    out: dict[str, Any] = {"run": str(run), "kind": st.kind, "spec": "?", "backend": "?", "date": date,
                           "epochs": None, "final": {}}
    if st.kind == "cv":
        _describe_cv(run, out)
    elif st.kind == "tune":
        ended = _describe_tune(run, out)
        if ended and st.state == "finished":
            st = RunState(st.kind, *ended)
    else:
        ir, env = st.ir or _load(run / "ir.json") or {}, _load(run / "env.json") or {}
        info = st.info or _load(run / "run.json") or {}
        backend = env.get("backend") if isinstance(env, dict) else None
        if not isinstance(backend, str):
            backend = info.get("backend") if isinstance(info, dict) else None
        out.update(spec=_text(ir.get("name") if isinstance(ir, dict) else None),
                   backend=_text(backend), epochs=st.epochs_done)
        metrics = _load(run / "metrics.json") or {}
        final = metrics.get("test") or metrics.get("val") or metrics.get("train") or {}
        out["final"] = final if isinstance(final, dict) else {}
    if st.kind == "run" and st.state == "finished":  # (what `dlc evaluate` would refuse it for)
        problem = digest_problem(run)
        if problem is None and (why := backend_problem(st.info or {})) is not None:
            problem = f"run.json is damaged: {why}"
        if problem is not None:
            st = RunState(st.kind, "damaged", problem)
    state = {"finished": "done", "unfinished": "incomplete"}.get(st.state, st.state)
    if st.state == "unfinished" and (pid := lock_holder(run)) is not None:
        state = f"running (pid {pid})"  # (not "incomplete": --resume would be refused while it trains)
    out["status"] = state + (f": {st.detail}" if st.detail else "")
    return out


def _text(value) -> str:
    """A name read from a run's JSON for its row: "?" when it is not text (a damaged file)."""
    return value if isinstance(value, str) and value else "?"


def _describe_cv(run: Path, out: dict) -> None:
    cv = _load(run / "cv.json") or {}
    ir = _load(run / "ir.json") or {}
    folds = cv.get("folds")
    # (a fold's folder is made when it begins; a finished one has its metrics.json)
    done = len(folds) if isinstance(folds, list) else sum((f / "metrics.json").is_file()
                                                          for f in run.glob("fold_*"))
    k = cv.get("k") or ((ir.get("data") or {}).get("split") or {}).get("k")
    shown = f"{done} fold{'' if done == 1 else 's'}" if done == k or not isinstance(k, int) \
        else f"{done} of {k} folds"
    env = _load(run / "env.json") or {}
    out.update(spec=ir.get("name", "?"), backend=cv.get("backend") or env.get("backend", "?"), epochs=shown,
               final={f"cv_{k}": v for k, v in cv.get("mean", {}).items()},
               std={f"cv_{k}": v for k, v in cv.get("std", {}).items()})


def _study_backend(db: Path) -> str:
    """The backend a search records in its SQLite study (`dlc_backend`, tune.py's _check_study) for a search
    without tune.json yet (running, or killed): its row said backend "?". Read only, in a moment; "?" when
    the file is not such a study, is locked, or its studies disagree."""
    import sqlite3

    if not db.is_file():
        return "?"
    try:
        read_only = f"{db.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(read_only, uri=True, timeout=0.2)) as c:
            rows = c.execute("SELECT value_json FROM study_user_attributes WHERE key = ?",
                             ("dlc_backend",)).fetchall()
    except sqlite3.Error:
        return "?"
    names = {_json_text(v) for (v,) in rows}
    return _text(names.pop()) if len(names) == 1 else "?"


def _json_text(value: object) -> object:
    """A JSON value as a study stores it, read; None for anything else."""
    try:
        return json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _describe_tune(run: Path, out: dict) -> tuple[str, str] | None:
    """Fills in a tune folder's row; returns (state, detail) when the search did not end well: no trial
    completed ("failed"), or fewer trials ended than asked for ("unfinished": an interrupted `dlc tune` writes
    tune.json too); None when it did."""
    tune = _load(run / "tune.json") or {}
    trials = tune.get("trials")
    # (a queued or running trial has not ended; a crashed or interrupted one ended but does not count)
    ended = [t for t in trials if isinstance(t, dict) and t.get("state") in ("COMPLETE", "PRUNED", "FAIL")] \
        if isinstance(trials, list) else []
    n = sum(_counted_trial(t) for t in ended) if isinstance(trials, list) \
        else len(list((run / "trials").glob("[0-9]*")))
    spec = tune.get("spec") or next((p.stem for p in sorted(run.glob("*.dlspec")) if p.name != "best.dlspec"),
                                    "?")
    backend = tune.get("backend") or _study_backend(run / "study.db")
    out.update(spec=spec, backend=backend, epochs=f"{n} trial{'s' * (n != 1)}")
    best, metric = tune.get("best"), (tune.get("objective") or {}).get("metric")
    if best and metric:
        out["final"] = {metric: best.get("value")} if isinstance(best, dict) else {}
        number = best.get("number") if isinstance(best, dict) else None
        out["best_trial"] = number if isinstance(number, int) else None
    target = tune.get("trials_target")
    states = [t.get("state") for t in trials if isinstance(t, dict)] if isinstance(trials, list) else []
    if ended and not {"COMPLETE", "PRUNED"} & set(states):
        return "failed", f"no trial completed ({len(ended)} failed)"
    if isinstance(trials, list) and isinstance(target, int) and n < target:
        # (the reruns still waiting: a crashed or interrupted trial whose rerun has run was said queued too)
        again = sum(isinstance(t, dict) and t.get("state") == "WAITING" and "rerun_of" in t for t in trials)
        return "unfinished", f"{n} of {target} trials ended" + \
            (f" ({again} crashed or interrupted, queued to run again)" if again else "")
    return None


def _counted_trial(t: dict) -> bool:
    """Whether a trial of tune.json counts towards its target (its `outcome`: dlc.runtime.trials.outcome;
    a tune.json of an older dlc has none: there a failed trial counted unless it was interrupted)."""
    if "outcome" in t:
        return t["outcome"] in COUNTED
    return t.get("state") in ("COMPLETE", "PRUNED") or (t.get("state") == "FAIL" and not t.get("interrupted"))


def trial_folder(run: Path, trial: dict) -> Path:
    """The folder of a trial of the tune run `run` (an entry of its tune.json): RUN/trials/NNNN, or where
    another `dlc tune --out` of the same shared study ran it (its recorded `folder`). RunDirError for an
    entry without a trial number (a damaged tune.json)."""
    number = trial.get("number") if isinstance(trial, dict) else None
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise RunDirError(f"{run / 'tune.json'} is damaged (a trial {shown_value(trial)} without a trial "
                          "number); run the same `dlc tune` command again to write it again")
    here = run / "trials" / f"{number:04d}"
    folder = trial.get("folder")
    if not here.is_dir() and isinstance(folder, str) and Path(folder).is_dir():
        return Path(folder)
    return here


def list_runs(root: str | Path) -> list[dict]:
    """describe() of every run folder under root, oldest first."""
    root = path_argument(root, "the folder of runs")
    if root.is_file():
        raise RunDirError(f"'{root}' is a file, not a folder of runs")
    if not root.is_dir():
        missing = not root.exists() and not root.is_symlink()
        raise RunDirError(f"no such folder '{root}'") if missing else not_a_run(root)
    if root.name == "trials" and _marked_kind(root.parent) == "tune":  # (each trial was listed "damaged")
        tune = root.parent
        raise RunDirError(f"'{root}' holds the trials of the tune run {tune}, which keeps no model per "
                          f"trial: `dlc runs {tune}` lists the tune run and its best trial")
    return [describe(r) for r in find_runs(root)]


def path_argument(value: Any, what: str) -> Path:
    """A path given to the API: TypeError naming `what` for anything else (Path(None) said only "expected
    str, bytes or os.PathLike object, not NoneType"). (serve.given_path refuses an empty one as well.)"""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or pathlib.Path), not {type(value).__name__}")
    return Path(value)


# --------------------------------------------------------------------------------------------- plotting


def read_history_rows(run: Path) -> list[dict]:
    """history.json's rows: a list of objects, each an epoch's number (`epoch`) and its values (numbers, or
    null); RunDirError naming the file and the first row that is not."""
    path = run / "history.json"
    rows = read_json(path, list)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            why = f"is {shown_value(row)}, not an epoch's values"
        elif not isinstance(row.get("epoch"), int) or isinstance(row.get("epoch"), bool):
            why = "has no epoch number" if "epoch" not in row else f"has epoch {shown_value(row['epoch'])}"
        else:
            bad = next((k for k, v in row.items()
                        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))), None)
            if bad is None:
                continue
            why = f"has {bad}: {shown_value(row[bad])}, not a number"
        raise RunDirError(f"{path} is damaged (row {i} {why})")
    return rows


def read_history(run: Path) -> list:
    """history.json's rows (read_history_rows); RunDirError naming the damage and, when the run has a
    checkpoint to rebuild it from, the command that writes it again."""
    try:
        return read_history_rows(run)
    except RunDirError as e:
        fix = f"; `dlc run --resume {run}` writes it again from the run's last checkpoint" \
            if (run / "checkpoint.npz").is_file() else ""
        raise RunDirError(f"{e}{fix}") from None


def _history(run: Path, failed: str | None = None, doctor: Path | None = None) -> list[dict]:
    """The rows to plot; `failed`: why the run stopped, when its folder does not say (a cv fold's is in
    cv.json); `doctor`: the folder `dlc doctor` diagnoses it in (a fold's: its cv folder)."""
    rows = read_history(run) if (run / "history.json").exists() else None
    if rows:
        return rows
    why = failed or (_load(run / "run.json") or {}).get("failed")
    if isinstance(why, str):
        raise RunDirError(f"'{run}' failed before it finished an epoch ({why}): no curve to plot; "
                          f"`dlc doctor {doctor or run}` diagnoses it from its step losses")
    if rows is None:
        raise RunDirError(f"'{run}' is not a run directory (no history.json)")
    raise RunDirError(f"'{run}' has no finished epoch to plot (history.json is empty)")


FOLD_FAILED = re.compile(r"fold (\d+) of \d+: (.+)", re.S)


def fold_failures(cv: dict | None) -> dict[int, str]:
    """The fold whose training failed, from cv.json's `failed` ("fold 1 of 3: loss became nan at ..."): {1:
    "loss became nan at ..."}; a fold that diverged in its first epoch has no history, only that message and
    its evidence."""
    m = FOLD_FAILED.match(str((cv or {}).get("failed") or ""))
    return {int(m.group(1)): m.group(2)} if m else {}


def _cv_histories(p: Path, label: str) -> list[tuple[Path, str, list[dict]]]:
    """Each fold of a cross-validation folder with a curve; the fold that failed in its first epoch left out
    when another has one (cv.json names it)."""
    folds = sorted((f for f in p.glob("fold_*") if f.name.split("_")[1].isdigit()),
                   key=lambda f: int(f.name.split("_")[1]))
    if not folds:
        raise RunDirError(f"'{p}' is a cross-validation run with no fold to plot yet")
    failed = {f"fold_{i}": why for i, why in fold_failures(_load(p / "cv.json")).items()}
    drawn = [f for f in folds if f.name not in failed or (f / "history.json").is_file()]
    return [(f, f"{label}/{f.name}", _history(f, failed.get(f.name), p)) for f in drawn or folds]


def histories(paths: Sequence[str | Path]) -> list[tuple[str, list[dict]]]:
    """(label, history rows) of each run to plot: a `dlc run` folder; each fold of a cross-validation
    folder; the best trial of a tune folder. RunDirError for a folder with nothing to plot."""
    runs: list[tuple[Path, str, list[dict]]] = []
    for p in map(Path, paths):
        kind = folder_kind(p) if p.is_dir() else None
        if not p.is_dir():
            raise not_a_run(p)
        if kind == "cv":
            runs.extend(_cv_histories(p, p.name))
        elif kind == "tune":
            best = (_load(p / "tune.json") or {}).get("best")
            if not best:
                raise tune_without_best(p, "plot")
            trial = trial_folder(p, best)
            if (trial / "cv.json").exists() or list(trial.glob("fold_*")):
                runs.extend(_cv_histories(trial, f"{p.name} trial {best['number']}"))
            else:
                runs.append((trial, f"{p.name} trial {best['number']} (best)", _history(trial)))
        else:
            runs.append((p, p.name, _history(p)))
    names = [label for _, label, _ in runs]
    if len(set(names)) < len(names):
        names = [str(path) for path, _, _ in runs]
    return [(name, rows) for name, (_, _, rows) in zip(names, runs, strict=True)]


def plot_runs(paths: Sequence[str | Path], out: str | Path) -> Path:
    """One PNG: a panel per quantity every run has (train solid, validation dashed) and the learning rate,
    scaled as curves.png scales them (the loss on a log axis when it spans more than a factor of 10, a
    constant learning rate as its one value), and below the panels a legend of the runs' colours and the two
    line styles, outside every panel so that it covers no curve. The folder of `out` is made when missing."""
    out = path_argument(out, "the output file")
    if isinstance(paths, (str, os.PathLike)) or not paths:  # (a string would be plotted letter by letter)
        raise ValueError(f"plot_runs() takes a list of run directories, not {paths!r}")
    paths = [path_argument(p, "each run directory") for p in paths]
    matplotlib_config()
    import matplotlib

    if out.is_dir():
        raise RunDirError(f"--out {out} is a folder; give a file name, such as {out / 'plot.png'}")
    runs = [(drawn_literally(label), rows) for label, rows in histories(paths)]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create the folder of --out {out}: {e.strerror or e}") from None
    keys = [k for k in runs[0][1][0] if k not in PLOT_SKIP and not k.startswith("val_")]
    left = sorted({k for _, h in runs for k in h[0] if k not in PLOT_SKIP and not k.startswith("val_")
                   and k != "lr" and not all(k in g[0] for _, g in runs)})
    keys = [k for k in keys if all(k in h[0] for _, h in runs)] + ["lr"]
    colors = _run_colors(len(runs), matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
    handles = _legend_handles([label for label, _ in runs], colors)
    width = 4.4 * len(keys)
    ncol = _legend_columns([h.get_label() for h in handles], width)
    legend_h = 0.22 * -(-len(handles) // ncol) + 0.08  # (inches: a row per ncol entries, and a margin)
    note_h = 0.25 if left else 0.0
    height = 3.8 + legend_h + note_h
    fig, axes = figure(1, len(keys), figsize=(width, height))
    for i, (label, hist) in enumerate(runs):
        _plot_run(axes[0], keys, hist, label, colors[i % len(colors)])
    epochs = sorted({r["epoch"] for _, h in runs for r in h})
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_title("learning rate" if key == "lr" else key)
        if key == "lr":
            lr_axis(ax, [r["lr"] for _, h in runs for r in h])
        elif key == "loss":
            loss_axis(ax, [r.get(k) for _, h in runs for r in h for k in ("loss", "val_loss")])
        epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, note_h / height), ncol=ncol,
               fontsize=8, frameon=False)
    if left:  # (a panel per quantity every run has: say which were left out, on the figure itself)
        fig.text(0.01, 0.01, f"not drawn (not in every run): {', '.join(left)}", fontsize=8, color="dimgray")
    fig.tight_layout(rect=(0, (legend_h + note_h) / height, 1, 1))
    try:
        with output_file(out) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    except (OSError, ValueError) as e:
        raise RunDirError(f"cannot write --out {out}: {getattr(e, 'strerror', None) or e}") from None
    return out


def _run_colors(n: int, cycle: list) -> list:
    """A colour per run, none repeated: matplotlib's cycle (10) as far as it goes, then tab20's 20, then
    turbo sampled evenly (the 11th run of 12 drew in the 1st's blue: two runs one colour in the legend)."""
    import matplotlib

    if n <= len(cycle):
        return list(cycle)
    if n <= 20:
        tab20 = matplotlib.colormaps["tab20"]
        return [tab20(i) for i in range(20)]  # (an int picks the i-th of a listed colormap's colours)
    turbo = matplotlib.colormaps["turbo"]
    return [turbo(0.05 + 0.9 * i / (n - 1)) for i in range(n)]


def _legend_handles(labels: list[str], colors: list[str]) -> list:
    """A line per run in its colour, then the two styles: train solid, validation dashed."""
    from matplotlib.lines import Line2D

    return ([Line2D([], [], color=colors[i % len(colors)], label=label) for i, label in enumerate(labels)]
            + [Line2D([], [], color="dimgray", label="train"),
               Line2D([], [], color="dimgray", linestyle="--", label="validation")])


def _legend_columns(labels: list[str], width_in: float) -> int:
    """As many legend columns as the figure's width holds at the longest label (8-point text: ~0.07 inch a
    character, and the line sample and spacing: ~0.6 inch)."""
    per = 0.07 * max(len(s) for s in labels) + 0.6
    return max(1, min(len(labels), int(width_in / per)))


def _plot_run(axes, keys: list[str], hist: list[dict], label: str, color) -> None:
    ep = [r["epoch"] for r in hist]
    dot = {"marker": "o", "markersize": 4} if len(hist) == 1 else {}  # (a line through 1 point shows nothing)
    for ax, key in zip(axes, keys, strict=True):
        if key == "lr":
            ax.plot(ep, [r["lr"] for r in hist], color=color, label=label, **dot)
            continue
        ax.plot(ep, [r.get(key) for r in hist], color=color, label=f"{label} train", **dot)
        if f"val_{key}" in hist[0]:  # (a single val point hollow: a dashed line through it shows nothing)
            ax.plot(ep, [r.get(f"val_{key}") for r in hist], color=color, linestyle="--",
                    label=f"{label} val", **dot, **({"markerfacecolor": "none"} if dot else {}))
