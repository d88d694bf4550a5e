"""`dlc doctor`: the tuning guides' diagnosis of a run folder, ranked, with the evidence each finding rests on
and the remedy; the remedy as a spec (`--fix`: RUN/doctor.dlspec, a minimal text edit of the run's spec); and
the live check `dlc run` makes after every epoch (LiveDoctor).

A `dlc run` folder is judged on its history.json, its evidence.json (per-layer gradient norms, update ratios,
activation statistics, step losses; absent in runs from before it was recorded: the per-layer rules are then
skipped and the report says so), run.json's `failed` and metrics.json. A cross-validation folder: each fold,
and the findings of at least half the folds as the whole's. A tune folder: its best trial, with the spread of
the trials. The rules and their thresholds are in dlc.runtime.doctor.rules (and docs/DOCTOR.md).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from dlc.runtime.doctor.fix import Change, SpecText, apply, moved_paths, plan
from dlc.runtime.doctor.importance import Importance, analyse
from dlc.runtime.doctor.rules import (
    IDS,
    THRESHOLDS,
    TITLES,
    Case,
    Diagnosis,
    Model,
    Scans,
    diagnose_case,
    live_case,
    live_findings,
    num,
    ranked,
)
from dlc.runtime.rundir import folder_kind, write_text
from dlc.runtime.runs import (
    RunDirError,
    fold_failures,
    lock_holder,
    not_a_run,
    read_history,
    read_json,
    trial_folder,
    tune_without_best,
)

EVIDENCE = "evidence.json"
FIXED = "doctor.dlspec"
# where --fix writes when the run was itself started from a doctor.dlspec (whose copy it keeps)
FIXED_AGAIN = "doctor.fix.dlspec"
SKIP_SPECS = (FIXED, FIXED_AGAIN, "best.dlspec")
FOLD = re.compile(r"fold_\d+")

__all__ = ["FIXED", "IDS", "THRESHOLDS", "TITLES", "Diagnosis", "Fixed", "Importance", "LiveDoctor", "Report",
           "diagnose", "rules_summary", "write_fix", "write_plots"]


@dataclass
class Report:
    """What `dlc doctor RUN` prints: the diagnoses, most severe first (for a cv folder the findings of at
    least half the folds, for a tune folder its best trial's), each with its planned `spec_change`; notes
    (what could not be judged, a run's state); per-fold diagnoses of a cv folder; the spread of the folds or
    trials. `spec_file`, `base_dir` and `text`: the spec the fixes edit."""

    run: Path
    kind: str
    diagnoses: list[Diagnosis]
    notes: list[str] = field(default_factory=list)
    folds: list[tuple[int, list[Diagnosis]]] = field(default_factory=list)
    spread: dict | None = None
    trial: int | None = None
    trial_dir: Path | None = None  # the best trial's folder (of a tune run)
    evidence: bool = False
    spec_file: Path | None = None
    base_dir: Path | None = None
    text: SpecText | None = None
    changes: dict[int, Change] = field(default_factory=dict)  # index in diagnoses -> its change
    overrides: dict = field(default_factory=dict)  # what the run trained with instead of the spec file's
    backend: str | None = None
    importance: Importance | None = None  # a tune folder: which hyperparameter matters (importance.py)
    fold: int | None = None  # a fold's folder (CV/fold_2: 2), judged alone

    def __repr__(self) -> str:
        """The run and its findings by name and severity in a line (the dataclass' repr held every diagnosis'
        evidence and the spec's text); `dlc doctor` prints them whole, `to_json()` has them all."""
        found = ", ".join(f"{d.id} ({d.severity})" for d in self.diagnoses) or "no finding"
        trial = f", best trial {self.trial}" if self.trial is not None else ""
        return f"Report({str(self.run)!r}, {self.kind}{trial}: {found})"

    def to_json(self) -> dict:
        """The report as JSON data (non-finite numbers as null)."""
        out: dict = {"run": str(self.run), "kind": self.kind, "per_layer_evidence": self.evidence,
                     "diagnoses": [d.to_json() for d in self.diagnoses], "notes": self.notes}
        if self.kind == "cv" or self.folds:
            out["folds"] = [{"fold": i, "diagnoses": [d.to_json() for d in ds]} for i, ds in self.folds]
        if self.spread is not None:
            out["spread"] = self.spread
        if self.trial is not None:
            out["trial"] = self.trial
        if self.fold is not None:
            out["fold"] = self.fold
        if self.importance is not None:
            out["importance"] = self.importance.importance
            out["best_region"] = self.importance.best_region
            out["search"] = self.importance.to_json()
        return _plain(out)

    def top_fix(self) -> tuple[Diagnosis, Change] | None:
        """The most severe diagnosis with an automatic spec change, and the change."""
        for i, d in enumerate(self.diagnoses):
            if i in self.changes:
                return d, self.changes[i]
        return None


def _plain(obj):
    """JSON data with every non-finite float as None (json.dumps would write NaN or Infinity)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------------------------------------ reading


def _json(path: Path, kind: type = dict):
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        return read_json(path, kind)
    except RunDirError:
        return None


def _rows(folder: Path) -> list[dict]:
    """The history's epochs (none when it has no history.json); RunDirError when it is damaged."""
    path = folder / "history.json"
    if not path.exists():
        return []
    rows = read_history(folder)
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("epoch"), int)]


def _info(run: Path, notes: list[str]) -> dict:
    """run.json, or {} with a note when it is missing or damaged: then whether the run finished is unknown
    (not "did not finish", which would send the user to --resume a run that ended)."""
    if not (run / "run.json").exists() and not (run / "ir.json").exists():
        return {}  # (a tune trial's folder: it keeps neither)
    try:
        return read_json(run / "run.json")
    except RunDirError as e:
        notes.append(f"{str(e).replace(f'{run}/', '', 1)}: whether the run finished or failed is not known "
                     "(judged on its history)")
        return {}


def _evidence(folder: Path, notes: list[str], label: str = "", info: dict | None = None,
              why: str | None = None) -> dict | None:
    """evidence.json, or None with a note saying why it is missing or unread. `info`: the run's run.json,
    whose `evidence` is false for a run trained with --no-evidence (a run.json without it: an older dlc);
    `why`: the reason to give instead (a fold's: its cv.json does not say which)."""
    path = folder / EVIDENCE
    where = f" of {label}" if label else ""
    if not path.exists():
        if why is None:
            why = "the run was trained with --no-evidence" if (info or {}).get("evidence") is False \
                else "a run from before dlc recorded it"
        notes.append(f"no {EVIDENCE}{where} ({why}): the per-layer evidence is "
                     "missing, so vanishing and exploding gradients, dead ReLUs, saturation and a learning "
                     "rate too low are not judged; the rest comes from the history")
        return None
    ev = _json(path)
    if ev is None or not isinstance(ev.get("epochs", []), list):
        notes.append(f"{EVIDENCE}{where} is damaged and was not read: the per-layer rules are not judged")
        return None
    return ev


def _spec_ir(folder: Path):
    """The spec the run trained (ir.json), or None."""
    from pydantic import ValidationError

    from dlc.compiler.spec import Spec

    path = folder / "ir.json"
    if not path.is_file():
        return None
    try:
        return Spec.model_validate_json(path.read_text())
    except (ValidationError, OSError, ValueError):
        return None


def _spec_copy(folder: Path, info: dict) -> Path | None:
    """The copy of the spec in the run folder (the file the run was started from)."""
    named = Path(str(info.get("spec") or "")).name
    if named.endswith(".dlspec") and named != "best.dlspec" and (folder / named).is_file():
        return folder / named  # (a run of a doctor.dlspec keeps its copy under that name)
    found = next((p for p in sorted(folder.glob("*.dlspec")) if p.name not in SKIP_SPECS), None)
    if found is not None:
        return found
    # a folder whose record does not name its spec (a cv folder) started from a doctor.dlspec keeps its copy
    # under that name: the older of doctor.dlspec and doctor.fix.dlspec (a fix is written after the run)
    fixed = [p for p in (folder / FIXED, folder / FIXED_AGAIN) if p.is_file()]
    return min(fixed, key=lambda p: p.stat().st_mtime_ns) if fixed else None


def _spec_text(report: Report, path: Path | None, base_dir: Path, ran=None) -> None:
    """Compile the spec the fixes edit; a note when it cannot be."""
    from dlc.compiler import compile_file, compile_text

    if path is None:
        report.notes.append(_no_spec_note(report.run))
        return
    source = compile_file(path).source  # (read by the compiler's rules: UTF-8, size)
    result = compile_text(source, str(path), base_dir)
    if result.tree is None or result.spec is None or not result.tree.models:
        report.notes.append(f"{path.name} does not compile: no spec change can be planned")
        return
    report.spec_file, report.base_dir = path, base_dir
    report.text = SpecText(result.source, result.tree, result.spec, ran)


def _no_spec_note(run: Path) -> str:
    """Why no fix is planned for a folder without a spec copy; a tune trial's: where one is."""
    if (tune := _tune_of(run)) is not None:
        return (f"a tune trial keeps no copy of its spec: no spec change can be planned here; `dlc doctor "
                f"{tune}` diagnoses the best trial and plans one on best.dlspec")
    return "the run folder has no copy of its spec: no spec change can be planned"


def _tune_of(run: Path) -> Path | None:
    """The tune folder whose trial `run` is, or a fold of whose k-fold trial (TUNE/trials/NNNN/fold_1)."""
    whole = Path(os.path.abspath(run))  # (`dlc doctor .` in it too)
    trial = whole.parent if FOLD.fullmatch(whole.name) else whole
    tune = trial.parent.parent
    if trial.parent.name != "trials" or not (tune / "tune.json").is_file():
        return None
    return tune if run.is_absolute() else Path(os.path.relpath(tune))


def _plan(report: Report) -> None:
    if report.text is None:
        return
    for i, d in enumerate(report.diagnoses):
        try:
            change = plan(report.text, d)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError):  # a spec shape no plan expected
            change = None
        if change is not None and change.edits:
            report.changes[i] = change
            assert report.spec_file is not None
            d.spec_change = change.to_json(report.text.source, report.spec_file.name, _fixed_name(report))


def _overrides(report: Report, ir) -> None:
    """What the run trained with instead of its spec file's values (--epochs, --seed, --dtype)."""
    if report.text is None or ir is None:
        return
    copy = report.text.spec
    for key, ran, wrote in (("epochs", ir.train.epochs, copy.train.epochs), ("seed", ir.seed, copy.seed),
                            ("dtype", ir.dtype, copy.dtype)):
        if ran != wrote:
            report.overrides[key] = ran


# ---------------------------------------------------------------------------------------------- diagnose


def diagnose(run: str | Path, target_accuracy: float | None = None) -> Report:
    """The diagnosis of a `dlc run`, `dlc cv` or `dlc tune` folder (see the module); RunDirError when it is
    not one, or has nothing to judge yet."""
    run = Path(run)
    if target_accuracy is not None and not 0 <= target_accuracy <= 1:  # (NaN too)
        raise ValueError(f"target_accuracy must be a number between 0 and 1, not {target_accuracy!r}")
    if not run.is_dir():
        raise not_a_run(run)
    if (cv := _cv_of(run)) is not None:
        return _fold(run, cv, target_accuracy)
    kind = folder_kind(run)
    if kind not in DIAGNOSE:
        raise RunDirError(f"'{run}' is not a dlc run directory (no history.json, cv.json or tune.json)")
    report = DIAGNOSE[kind](run, target_accuracy)
    if target_accuracy is not None and report.text is not None:
        _unused_target(report, target_accuracy, [m.name for m in report.text.spec.metrics])
    return report


def _unused_target(report: Report, target: float, metrics: list[str]) -> None:
    """A note when --target-accuracy has nothing to judge (a regression run), rather than ignoring it."""
    if "accuracy" not in metrics:
        report.notes.append(f"--target-accuracy {target:g} is not used: the run measures no accuracy (its "
                            f"metrics: {', '.join(metrics) or 'none'}); the bias is judged on the training "
                            "loss")


def _run(run: Path, target: float | None) -> Report:
    ir = _spec_ir(run)
    notes: list[str] = []
    info = _info(run, notes)
    rows = _rows(run)
    failure = info.get("failed") if isinstance(info.get("failed"), str) else None
    if not rows and not failure:
        held = "is empty" if (run / "history.json").exists() else "is missing"
        raise RunDirError(f"'{run}' has no finished epoch to diagnose yet (history.json {held})")
    ev = _evidence(run, notes, info=info)
    final = _json(run / "metrics.json")
    report = Report(run, "run", [], notes, evidence=ev is not None, backend=info.get("backend"))
    spec_dir = info.get("spec_dir")
    base = Path(spec_dir) if isinstance(spec_dir, str) and Path(spec_dir).is_dir() else run
    _spec_text(report, _spec_copy(run, info), base, ir)
    spec = ir if ir is not None else (report.text.spec if report.text else None)
    case = Case(rows, ev, failure, final, Model.of(spec), target, val_samples=_val_samples(info, spec),
                train_samples=_train_samples(info, spec))
    report.diagnoses = diagnose_case(case)
    if failure and not any(d.id == "divergence" for d in report.diagnoses):
        notes.insert(0, f"the run failed: {failure}")
    elif not failure and info and not info.get("finished") and ir is not None:
        pid = lock_holder(run)
        how = "did not finish" if pid is None else f"is still training (pid {pid})"
        notes.insert(0, f"the run {how}: {len(rows)} of {ir.train.epochs} epochs trained (judged on those)")
    _overrides(report, ir)
    _plan(report)
    return report


def _train_samples(info: dict, spec) -> int | None:
    """About how many samples a holdout run trains on: the rows read (run.json) less the validation and test
    fractions."""
    rows = (info.get("data_read") or {}).get("rows") if isinstance(info.get("data_read"), dict) else None
    split = spec.data.split if spec is not None and spec.data is not None else None
    if not isinstance(rows, int) or split is None or split.kind != "holdout":
        return None
    return round(rows * (1 - split.val - split.test)) or None


def _val_samples(info: dict, spec) -> int | None:
    """About how many samples the validation metrics of a run are measured on: the rows read (run.json)
    times the split's validation fraction."""
    rows = (info.get("data_read") or {}).get("rows") if isinstance(info.get("data_read"), dict) else None
    split = spec.data.split if spec is not None and spec.data is not None else None
    if not isinstance(rows, int) or split is None:
        return None
    n = round(rows * split.val) if split.kind == "holdout" else round(rows * (1 - split.test) / split.k)
    return n or None


def _fold_dirs(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(p.name.split("_")[1]), p) for p in folder.glob("fold_*")
             if p.is_dir() and p.name.split("_")[1].isdigit()]
    return sorted(found)


def _fold_case(fdir: Path, i: int, model: Model, target: float | None, notes: list[str],
               sizes: dict | None = None, failures: dict[int, str] | None = None) -> Case | None:
    """What the rules judge of fold `i` (its folder `fdir`), as `dlc doctor CV` and `dlc doctor CV/fold_i`
    both judge it; None when it has nothing to judge yet. Why its evidence is missing goes to `notes`."""
    rows = _rows(fdir)
    failure = (failures or {}).get(i)
    if not rows and not failure:
        return None
    n = (sizes or {}).get(i)
    why = "trained with --no-evidence, or by a dlc from before it recorded it"
    return Case(rows, _evidence(fdir, notes, why=why), failure, _json(fdir / "metrics.json"), model, target,
                val_samples=n if isinstance(n, int) else None)


def _cv_sizes(cv: dict | None) -> dict:
    """Each fold's validation samples, from cv.json: fold -> samples."""
    return {f.get("fold"): f.get("val_samples") for f in (cv or {}).get("folds", []) if isinstance(f, dict)}


def _folds(folder: Path, model: Model, target: float | None, notes: list[str], label: str = "",
           sizes: dict | None = None, failures: dict[int, str] | None = None,
           ) -> tuple[list[tuple[int, list[Diagnosis]]], bool]:
    """Each fold's diagnosis (`sizes`: fold -> its validation samples, from cv.json; `failures`: fold -> why
    its training failed), and whether every fold had its evidence."""
    out, all_evidence, missing, no_train = [], True, 0, 0
    for i, fdir in _fold_dirs(folder):
        case = _fold_case(fdir, i, model, target, [], sizes, failures)
        if case is None:
            continue
        if case.evidence is None:
            all_evidence = False
            missing += 1
        no_train += case.final is not None and not isinstance(case.final.get("train"), dict)
        out.append((i, diagnose_case(case)))
    if missing:
        notes.append(f"{missing} of {len(out)} folds{label} have no {EVIDENCE}: the per-layer evidence is "
                     "missing there, so vanishing and exploding gradients, dead ReLUs, saturation and a "
                     "learning rate too low are not judged; the rest comes from the history")
    if no_train:
        notes.append(_no_final_train_note(no_train, len(out), label))
    return out, all_evidence and bool(out)


def _no_final_train_note(n: int, k: int, label: str) -> str:
    """Why the train-validation gap of folds from before dlc measured a fold's train part is less sure."""
    return (f"{n} of {k} folds{label} have no inference-mode train metrics in metrics.json (a cv run from "
            "before dlc recorded them): their train figures are the last epoch's running ones, measured in "
            "training mode (dropout on, the weights moving), so the train-validation gap and the bias are "
            "judged against a worse train figure than the validation's; rerun `dlc cv` to compare like with "
            "like")


def _aggregate(folds: list[tuple[int, list[Diagnosis]]], notes: list[str],
               failed: Collection[int] = ()) -> list[Diagnosis]:
    """The findings of at least half the folds (each as its worst fold shows it), and those of a fold that
    `failed` (its failure stopped the cross-validation); the others as notes."""
    k = len(folds)
    by_id: dict[str, list[tuple[int, Diagnosis]]] = {}
    for i, ds in folds:
        for d in ds:
            if d.id != "healthy":
                by_id.setdefault(d.id, []).append((i, d))
    out = []
    for ident, hits in by_id.items():
        shown = ", ".join(str(i) for i, _ in hits)
        if 2 * len(hits) < k and not any(i in failed for i, _ in hits):
            notes.append(f"{TITLES[ident]} in fold{'s' * (len(hits) > 1)} {shown} only ({len(hits)} of {k}): "
                         "not counted for the whole")
            continue
        i, worst = min(hits, key=lambda t: t[1].rank())
        out.append(Diagnosis(ident, worst.severity, f"in {len(hits)} of {k} folds ({shown}); fold {i}: "
                             f"{worst.evidence}", worst.remedy, line=worst.line, epoch=worst.epoch,
                             facts={**worst.facts, "folds": [j for j, _ in hits]}))
    if out:
        return ranked(out)
    return [Diagnosis("healthy", "none", f"no finding in at least half of the {k} folds",
                      "Nothing to fix by the guides' rules. To do better, tune the learning rate and the "
                      "size (dlc tune), or give --target-accuracy to judge the bias against a target.")]


def _cv(run: Path, target: float | None) -> Report:
    notes: list[str] = []
    ir = _spec_ir(run)
    cv = _json(run / "cv.json")
    report = Report(run, "cv", [], notes, backend=(cv or {}).get("backend"))
    spec_dir = (cv or {}).get("spec_dir")  # (a cv.json written before it was kept: the folder itself)
    base = Path(spec_dir) if isinstance(spec_dir, str) and Path(spec_dir).is_dir() else run
    _spec_text(report, _spec_copy(run, {}), base, ir)
    spec = ir if ir is not None else (report.text.spec if report.text else None)
    failures = fold_failures(cv)
    report.folds, report.evidence = _folds(run, Model.of(spec), target, notes, sizes=_cv_sizes(cv),
                                           failures=failures)
    for i, why in failures.items():
        notes.insert(0, f"the cross-validation stopped: fold {i} failed ({why})")
    if not report.folds:
        raise RunDirError(f"'{run}' is a cross-validation run with no finished fold to diagnose yet")
    if cv is None:
        notes.insert(0, _unfinished_cv_note(run, report.folds))
    report.diagnoses = _aggregate(report.folds, notes, failures)
    if cv is not None and cv.get("folds"):
        folds = [f for f in cv["folds"] if isinstance(f, dict) and isinstance(f.get("val"), dict)]
        val = {key: {"mean": mean, "std": cv.get("std", {}).get(key),
                     "min": min(f["val"][key] for f in folds), "max": max(f["val"][key] for f in folds)}
               for key, mean in cv.get("mean", {}).items() if all(key in f["val"] for f in folds)}
        report.spread = {"k": cv.get("k", len(folds)), "val": val}
        shown = "; ".join(f"val {k} {num(v['mean'])} ± {num(v['std'])} (from {num(v['min'])} to "
                          f"{num(v['max'])})" for k, v in val.items())
        if shown:
            notes.append(f"the spread over {report.spread['k']} folds: {shown}")
    _overrides(report, ir)
    _plan(report)
    return report


def _tune(run: Path, target: float | None) -> Report:
    tune = _json(run / "tune.json")
    best = (tune or {}).get("best")
    if not tune or not best or not isinstance(best.get("number"), int):
        raise tune_without_best(run, "diagnose")
    n = best["number"]
    trial = trial_folder(run, best)
    notes: list[str] = []
    report = Report(run, "tune", [], notes, trial=n, trial_dir=trial, backend=tune.get("backend"))
    _spec_text(report, run / "best.dlspec" if (run / "best.dlspec").is_file() else None, run)
    model = Model.of(report.text.spec if report.text else None)
    if _fold_dirs(trial):
        report.folds, report.evidence = _folds(trial, model, target, notes, f" of trial {n}")
        report.diagnoses = _aggregate(report.folds, notes)
    else:
        rows = _rows(trial) if trial.is_dir() else []
        if not rows:
            raise RunDirError(f"'{run}': the best trial's folder {trial} has no history to diagnose")
        ev = _evidence(trial, notes, f"trial {n}")
        report.evidence = ev is not None
        report.diagnoses = diagnose_case(Case(rows, ev, None, None, model, target))
    report.spread = _tune_spread(tune, n)
    notes.append(report.spread["text"])
    report.importance = analyse(run, tune)
    if report.importance is None:
        notes.append("tune.json lists no search spaces (a tune run of an older dlc): which hyperparameter "
                     "matters is not judged")
    _plan(report)
    return report


def _cv_of(run: Path) -> Path | None:
    """The cross-validation folder `run` is a fold of (CV for CV/fold_2: a fold keeps no run.json, its cv
    folder has cv.json, or ir.json while the folds train), None when it is not a fold."""
    whole = Path(os.path.abspath(run))  # (`dlc doctor .` in a fold too)
    if not FOLD.fullmatch(whole.name) or (run / "run.json").exists():
        return None
    cv = run.parent if FOLD.fullmatch(run.name) else whole.parent
    marked = (cv / "cv.json").is_file() or (cv / "ir.json").is_file() and folder_kind(cv) == "cv"
    return cv if marked else None


def _fold(run: Path, cv_dir: Path, target: float | None) -> Report:
    """A fold of a cross-validation folder, judged as `dlc doctor CV` judges it (the cv folder's ir.json, its
    cv.json's fold size and failure); the fix is planned for the whole, on the cv folder's spec copy."""
    i = int(Path(os.path.abspath(run)).name.split("_")[1])
    cv = _json(cv_dir / "cv.json")
    ir = _spec_ir(cv_dir)
    notes: list[str] = []
    failures = fold_failures(cv)
    case = _fold_case(run, i, Model.of(ir), target, notes, _cv_sizes(cv), failures)
    if case is None:
        held = "is empty" if (run / "history.json").exists() else "is missing"
        raise RunDirError(f"'{run}' has no finished epoch to diagnose yet (history.json {held})")
    report = Report(run, "run", diagnose_case(case), notes, evidence=case.evidence is not None,
                    backend=(cv or {}).get("backend"), fold=i)
    if i in failures and not any(d.id == "divergence" for d in report.diagnoses):
        notes.insert(0, f"the fold failed: {failures[i]}")
    copy = _spec_copy(cv_dir, {})
    where = f" and plans one on its spec copy {copy}" if copy is not None else ""
    if copy is None and _tune_of(run) is not None:  # (a k-fold tune trial's fold: its spec is best.dlspec)
        notes.append(_no_spec_note(run))
    else:
        notes.append(f"fold {i} of the cross-validation in {cv_dir}: no spec change is planned for one fold; "
                     f"`dlc doctor {shlex.quote(str(cv_dir))}` diagnoses every fold{where}")
    if target is not None and ir is not None:
        _unused_target(report, target, [m.name for m in ir.metrics])
    return report


def _unfinished_cv_note(run: Path, folds: list[tuple[int, list[Diagnosis]]]) -> str:
    """What a cv folder without cv.json holds: the folds that finished (their metrics.json) and the one cut
    short, judged on its epochs so far (as `dlc runs` counts them)."""
    done = [i for i, _ in folds if (run / f"fold_{i}" / "metrics.json").is_file()]
    cut = [i for i, _ in folds if i not in done]
    folds_done = f"{len(done)} fold{'s' * (len(done) != 1)} finished"
    text = f"no cv.json: the cross-validation did not finish ({folds_done}"
    return text + (f"; fold {', '.join(map(str, cut))} judged on its epochs so far)" if cut else ")")


DIAGNOSE = {"run": _run, "cv": _cv, "tune": _tune}


def _tune_spread(tune: dict, n: int) -> dict:
    """The objective over the trials: best, median, worst, how many completed, failed (diverged) or were
    pruned."""
    import statistics

    metric = (tune.get("objective") or {}).get("metric", "objective")
    direction = (tune.get("objective") or {}).get("direction", "minimize")
    trials = [t for t in tune.get("trials") or [] if isinstance(t, dict)]
    values = [float(t["value"]) for t in trials if t.get("state") == "COMPLETE" and
              isinstance(t.get("value"), (int, float))]
    counts: dict[str, int] = {}
    for t in trials:
        counts[str(t.get("state", "?")).lower()] = counts.get(str(t.get("state", "?")).lower(), 0) + 1
    diverged = sum(1 for t in trials if "became nan" in str(t.get("failure", ""))
                   or "became inf" in str(t.get("failure", "")))
    best_v = (tune.get("best") or {}).get("value")
    out = {"metric": metric, "direction": direction, "best": best_v, "trials": len(trials),
           "completed": len(values), "counts": counts, "diverged": diverged}
    text = f"trial {n} is the best of {len(trials)} ({metric} {num(best_v)}, {direction})"
    if values:
        worst = max(values) if direction == "minimize" else min(values)
        out.update(median=float(statistics.median(values)), worst=worst)
        text += f"; over the {len(values)} completed: median {num(out['median'])}, worst {num(worst)}"
    others = {k: v for k, v in counts.items() if k != "complete"}
    if others:
        text += "; " + ", ".join(f"{v} {k}" for k, v in sorted(others.items()))
        if diverged:
            text += f" ({diverged} diverged: a non-finite loss)"
    out["text"] = text
    return out


# ---------------------------------------------------------------------------------------------------- fix


@dataclass
class Fixed:
    """RUN/doctor.dlspec as written: the diagnosis it treats, the change, the unified diff and a command to
    run it."""

    path: Path
    diagnosis: Diagnosis
    change: Change
    diff: str
    command: str
    notes: list[str] = field(default_factory=list)


def _fixed_name(report: Report) -> str:
    """doctor.dlspec, or doctor.fix.dlspec when the run's own spec copy has that name (it is kept)."""
    again = report.spec_file is not None and report.spec_file.resolve() == (report.run / FIXED).resolve()
    return FIXED_AGAIN if again else FIXED


def write_fix(report: Report) -> Fixed | None:
    """Write RUN/doctor.dlspec: the run's spec with the change of the most severe diagnosis that has one,
    checked by compiling it; None when no diagnosis has one (nothing is written). RunDirError when it cannot
    be written or does not compile (a bug, said as such)."""
    from dlc.compiler import compile_text

    top = report.top_fix()
    if top is None or report.text is None or report.spec_file is None or report.base_dir is None:
        return None
    d, change = top
    st = report.text
    out = report.run / _fixed_name(report)
    edits = list(change.edits) + moved_paths(st, report.base_dir, report.run)
    header = f"# {out.name}: `dlc doctor --fix` of {report.run.name} ({d.id}): {change.summary}{st.newline}"
    text = header + apply(st.source, edits)
    result = compile_text(text, str(out), report.run)
    notes: list[str] = []
    if not result.ok:
        moved = apply(st.source, moved_paths(st, report.base_dir, report.run))
        before = compile_text(moved, str(out), report.run)
        old = {(x.code, x.message) for x in before.diagnostics.errors}
        new = [x for x in result.diagnostics.errors if (x.code, x.message) not in old]
        if new or result.spec is None:
            why = new[0].message if new else "no spec"
            raise RunDirError(f"the fixed spec does not compile (a dlc doctor bug): {why} ({d.id}: "
                              f"{change.summary})")
        notes.append(f"{FIXED} has the errors {report.spec_file.name} has from here: "
                     + "; ".join(x.message for x in result.diagnostics.errors))
    try:
        write_text(out, text)
    except OSError as e:
        raise RunDirError(f"cannot write {out}: {e.strerror or e}") from None
    diff = "".join(difflib.unified_diff(st.source.splitlines(keepends=True), text.splitlines(keepends=True),
                                        fromfile=str(report.spec_file), tofile=str(out)))
    command = f"dlc {'cv' if report.kind == 'cv' else 'run'} {shlex.quote(str(out))}"
    if report.backend:
        command += f" --backend {report.backend}"
    for key, value in report.overrides.items():
        if key not in change.sets:
            command += f" --{key} {value}"
    k = (report.spread or {}).get("k") if report.kind == "cv" else None
    if k and not (result.spec is not None and result.spec.data is not None
                  and getattr(result.spec.data.split, "k", None) == k):
        command += f" --k {k}"
    return Fixed(out, d, change, diff, command, notes)


# -------------------------------------------------------------------------------------------------- plots


def write_plots(report: Report) -> tuple[list[Path], list[str]]:
    """`--plot`: gradients.png (each layer's gradient norm and update ratio per epoch, from evidence.json) in
    the run folder, in each fold of a cv folder, in a tune folder's best trial (or its folds); and a tune
    folder's importance.png (which hyperparameter matters). The files written, and a note for each folder
    without anything to draw. A folder that cannot be written is RunDirError."""
    try:
        return _write_plots(report)
    except OSError as e:
        raise RunDirError(f"cannot write a plot into {report.run}: {e.strerror or e}") from None


def _write_plots(report: Report) -> tuple[list[Path], list[str]]:
    from dlc.runtime.doctor.gradients import plot_gradients as draw
    from dlc.runtime.doctor.importance import plot as draw_importance

    if report.kind == "run":
        folders = [report.run]
    else:
        base = report.trial_dir if report.kind == "tune" and report.trial_dir is not None else report.run
        folders = [p for _, p in _fold_dirs(base)] or [base]
    written, notes = [], []
    for folder in folders:
        ev = _json(folder / EVIDENCE)
        label = report.run.name if folder == report.run else \
            f"{report.run.name}/{folder.relative_to(report.run)}"
        path = draw(folder, ev, label) if ev is not None else None
        if path is not None:
            written.append(path)
        elif ev is None:
            notes.append(f"no gradient norms to plot in {folder}: no readable {EVIDENCE}")
        else:
            notes.append(f"no gradient norms to plot in {folder}: its {EVIDENCE} has no finite one (as in a "
                         "run that diverged in its first epoch)")
    if report.importance is not None:
        path = draw_importance(report.run, report.importance)
        if path is None:
            notes.append("no importance to plot: " + (report.importance.note or "not measured"))
        else:
            written.append(path)
    return written, notes


# -------------------------------------------------------------------------------------------------- rules


def rules_summary() -> list[tuple[str, str]]:
    """(id, its rule with the thresholds and the fix --fix writes), most severe kind first: what `dlc doctor
    --help` lists (docs/DOCTOR.md says the same at length)."""
    from dlc.runtime.doctor import fix as F  # noqa: N812 - short names for a table of f-strings
    from dlc.runtime.doctor import rules as R  # noqa: N812

    g = num
    return [
        ("divergence", f"a non-finite loss, a step loss above {g(R.DIVERGE_STEP_FACTOR)}x the first step's, "
         f"or an epoch's above {g(R.DIVERGE_EPOCH_FACTOR)}x the first epoch's; it began at the first step "
         f"above {g(R.DIVERGE_ONSET_FACTOR)}x the first step's loss. Fix: lr / {g(R.LR_DOWN)}."),
        ("exploding_gradients", "a layer's gradient norm non-finite, or "
         f"{g(R.EXPLODE_GROWTH)}x its first epoch's, or the first layer's {g(R.EXPLODE_RATIO)}x the last's. "
         f"Fix: clipnorm={F.CLIPNORM!r} (lr / {g(R.LR_DOWN)} when it clips already)."),
        ("vanishing_gradients", f"the first weighted layer's gradient norm {g(R.VANISH_RATIO)}x smaller than "
         f"the last's (high from {g(R.VANISH_HIGH)}x). Fix: sigmoid/tanh hidden layers to relu with "
         "kernel_init=he_normal (else He initialization)."),
        ("dead_relu", f"more than {g(100 * R.DEAD_FRACTION)}% of a ReLU layer's units never fire over the "
         f"probe samples (high above {g(100 * R.SEVERE_FRACTION)}%). Fix: relu to leaky_relu there "
         "(a hidden kernel that starts constant: a random kernel_init instead)."),
        ("saturation", f"more than {g(100 * R.SATURATED_FRACTION)}% of a sigmoid/tanh layer's units "
         f"saturated (high above {g(100 * R.SEVERE_FRACTION)}%). Fix: normalize: standard, else "
         "kernel_init=glorot_uniform."),
        ("lr_too_low", f"the training loss falling in each of the last {R.LR_LOW_EPOCHS} epochs, the train "
         "metric far from the target (underfitting's test), and every layer's update/weight ratio below "
         f"{g(R.LR_LOW_RATIO)} or the loss still above {g(R.LR_LOW_STUCK)} of the first step's (it barely "
         f"moved; no per-layer cause). Fix: lr x 3-10 (toward a ratio of {g(R.HEALTHY_UPDATE_RATIO)})."),
        ("plateau", f"the training loss improving less than {g(100 * R.PLATEAU_IMPROVEMENT)}% over "
         f"{R.PLATEAU_EPOCHS} epochs at a constant learning rate, train accuracy below {g(R.FIT_ACCURACY)}. "
         f"Fix: schedule: {F.PLATEAU_FIX} (an existing plateau schedule: patience 2, factor 0.5; none for "
         f"a loss flat from the start, or at a rate decayed {g(R.PLATEAU_DECAYED)}x already)."),
        ("overfitting", f"val_loss rising {R.OVERFIT_RISING_EPOCHS} epochs in a row while the training loss "
         f"falls, or ending {g(100 * R.OVERFIT_VAL_RISE)}% above its minimum reached "
         f"{R.OVERFIT_RISING_EPOCHS}+ epochs before the end, or a train-validation accuracy gap above "
         f"{g(R.OVERFIT_GAP)} (high above {g(R.OVERFIT_GAP_HIGH)}). Fix: Dropout({g(F.DROPOUT_RATE)}) "
         f"after each of the widest hidden layers (one there raised by {g(F.DROPOUT_STEP)}, to at least "
         f"{g(F.DROPOUT_RATE)} and at most 0.5; else early stopping)."),
        ("underfitting", f"train accuracy more than {g(R.UNDERFIT_MARGIN)} below --target-accuracy; without "
         f"it the train metric is its own reference: a train error above {g(R.UNDERFIT_TRAIN_ERROR)}; "
         f"without an accuracy metric, the final training loss above {g(R.UNDERFIT_LOSS_FRACTION)} of the "
         "first step's. Fix: a random kernel_init for a hidden kernel that starts constant, else widen a "
         f"bottleneck layer, else weaken strong regularization (dropout above {g(R.HEAVY_DROPOUT)}, L1/L2 "
         f"from {g(R.HEAVY_WEIGHT_DECAY)}), else a smaller batch (fewer than {R.FEW_STEPS_PER_EPOCH} steps "
         "an epoch), else double the epochs while the loss still fell, else double the widest hidden "
         "layer."),
        ("healthy", "no rule fired."),
    ]


# ---------------------------------------------------------------------------------------------------- live


def warning_line(d: Diagnosis, epoch: int) -> str:
    """The one-line warning of a live finding: 'epoch 6: val_loss rising for 3 epochs while loss falls:
    overfitting, see dlc doctor'."""
    return f"epoch {d.epoch or epoch}: {d.line}: {d.title}, see dlc doctor"


class LiveDoctor:
    """The doctor during `dlc run`: after each epoch, `epoch(row)` gives a one-line warning for each pathology
    that shows for the first time (every rule but underfitting, on the rows so far and the evidence so far).
    `evidence`: a callable giving the evidence recorded so far (evidence.json's content, e.g.
    `Recorder.to_json`: kept in memory, so a long run does not re-read and re-parse a growing file every
    epoch); without it, the run's evidence.json is read. It never raises: a check that fails says nothing."""

    def __init__(self, spec, run: str | Path | None = None, before: list[dict] | None = None,
                 evidence: Callable[[], dict | None] | None = None):
        self.model = Model.of(spec)
        self.run = Path(run) if run is not None else None
        self.source = evidence
        self.rows: list[dict] = list(before or [])
        self.warned: set[str] = set()
        self.scans = Scans()  # the rules' scans of the rows and evidence so far, gone on with each epoch
        # a resumed run: what showed before is not news; judged at the first epoch, once the recorder holds
        # the evidence of the epochs before it
        self.resumed = bool(self.rows)

    def _findings(self, evidence: dict | None) -> list[Diagnosis]:
        return live_findings(live_case(self.rows, evidence, self.model, self.scans))

    def _evidence(self) -> dict | None:
        if self.source is not None:
            return self.source()
        if self.run is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            ev = json.loads((self.run / EVIDENCE).read_text())
            return ev if isinstance(ev, dict) else None
        return None

    def epoch(self, row: dict, evidence: dict | None = None) -> list[str]:
        try:
            ev = evidence if evidence is not None else self._evidence()
            if self.resumed:
                self.resumed = False
                self.warned = {d.id for d in self._findings(ev)}
            self.rows.append(row)
            new = [d for d in self._findings(ev) if d.id not in self.warned]
        except Exception:  # noqa: BLE001 - a warning that cannot be worked out never stops the run
            return []
        self.warned.update(d.id for d in new)
        return [warning_line(d, row.get("epoch", 0)) for d in new]
