"""`dlc cv`: k-fold cross-validation with dlc's seeded folds (the same folds on every backend).

Each fold trains a fresh model from the spec's initial weights; its validation part is the held-out fold. A
test fraction, if the split asks for one, is held out before folding and is evaluated by every fold's model.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from dlc.runtime import rundir, runlock
from dlc.runtime.runs import check_out


def cross_validate(spec, spec_file: str, backend: str, device: str = "auto", k: int | None = None,
                   out: str | None = None, on_fold=None, replace: bool = False,
                   evidence: bool = True, compile: bool = False) -> tuple[Path, dict]:
    """`dlc cv`: a run directory (`out`, default: a fresh one under runs/; a folder that is not empty is
    refused unless `replace`, see rundir.prepare_out) with the spec, ir.json, fold_N/ and, last, cv.json;
    returns it and the summary. A failure once the directory exists is raised as RunFailed. Folds the data
    cannot make (`k` above its rows, a stratified class with fewer rows than k) are SpecError E303, as in
    `dlc check`, before the directory is made."""
    from dlc.compiler.datachecks import cv_fold_errors
    from dlc.compiler.diagnostics import SpecError
    from dlc.runtime.run import RunFailed

    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
        # (k=0 fell back to the spec's k silently, k=1 reached scikit-learn's own error)
        raise ValueError(f"k must be a whole number of at least 2 folds, not {k!r}")
    if errors := cv_fold_errors(spec, k, Path(spec_file).resolve().parent):
        raise SpecError(errors, None, spec_file)
    if device not in ("auto", "cpu"):  # (else every fold fails, the first after the folder is made)
        from dlc.backends import check_device

        check_device(backend, device)
    if out:  # (refused before any folder is made, in the words runs.check_out finds for it)
        check_out(out, replace, spec_file, kind="cv")
    run = rundir.new_run_dir(f"{spec.name}-cv", backend, out, replace=replace, kind="cv", spec_file=spec_file)
    if Path(spec_file).is_file():
        rundir.copy_spec(run, spec_file)
    rundir.write_text(run / "ir.json", spec.model_dump_json(indent=2))
    rundir.write_json(run / "env.json", rundir.env_info(backend, device))  # (the backend of a cut-short cv)
    began = rundir.stamp()  # (cv.json's `started`: `dlc runs`' date for the folder)
    started: list[tuple[int, int]] = []  # (fold, k) of each fold begun
    try:
        with runlock.held(run):
            return run, run_cv(spec, Path(spec_file).resolve().parent, backend, device, k, run, on_fold,
                               evidence, compile, on_fold_start=lambda i, n: started.append((i, n)),
                               started=began)
    except runlock.FolderBusy as e:  # (another dlc made the same folder at the same moment)
        raise rundir.OutFolderError(str(e)) from None
    except Exception as e:
        where = f"fold {started[-1][0]} of {started[-1][1]}" if started else None
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        # cv.json marks the folder's end: here, that it failed and why (dlc runs: "failed: ...")
        with contextlib.suppress(OSError):
            rundir.write_json(run / "cv.json", {"backend": backend, "started": began,
                                                "failed": f"{where}: {why}" if where else why})
        raise RunFailed(e, run, where) from e


def run_cv(spec, base_dir: Path, backend: str, device: str = "auto", k: int | None = None,
           out: Path | None = None, on_fold=None, evidence: bool = True, compile: bool = False,
           on_fold_start=None, started: str | None = None) -> dict:
    """Train one model per fold and evaluate it, in inference mode, on its train part, its held-out fold and
    the test part, if any (fold_N/metrics.json, as `dlc run`'s); the summary has per-fold rows, mean and std
    of each validation metric, cv_<metric> (the mean) and test_mean. With
    `out` and `evidence`, each fold_N/ gets its training evidence (evidence.json, dlc.runtime.evidence).
    `on_fold_start(i, k)` is called as fold i of k begins. cv.json records `started` (the time given, else
    the time this call began), which `dlc runs` shows as the folder's date."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import folds
    from dlc.runtime.epochfiles import EpochFiles
    from dlc.runtime.evidence import Recorder
    from dlc.runtime.loop import train
    from dlc.runtime.run import SecondStopHeld, final_metrics

    started = started or rundir.stamp()
    Session = session_class(backend)
    parts = folds(spec, base_dir, k, dtype=spec.dtype)  # each fold assembled as it begins
    init = initial_weights(spec)
    results: list[dict[str, Any]] = []
    for i, data in enumerate(parts, start=1):
        val = data.val
        assert val is not None  # a fold's held-out part: never empty
        if on_fold_start:
            on_fold_start(i, len(parts))
        session = Session(spec, device=device, weights=init, compile=compile)
        fdir = out / f"fold_{i}" if out is not None else None
        # with evidence, fold_N/ is made at the first epoch's end (a fold that fails keeps its evidence and
        # history); its files are written at EpochFiles' pace
        recorder = Recorder(spec, fdir) if fdir is not None and evidence else None
        files = EpochFiles(fdir, [], recorder)
        stops = SecondStopHeld()  # (a second Ctrl-C cut the fold's last history write short, as dlc run's)
        try:
            with files.flushed(), stops.after_a_stop():
                hist = train(session, spec, data, on_epoch=files.append, evidence=recorder)
        finally:
            stops.release()
        row: dict[str, Any] = {"fold": i, "epochs": len(hist.rows), "train_samples": len(data.train.x),
                               "val_samples": len(val.x)}
        # train, val and test in inference mode, as `dlc run`'s metrics.json: the doctor compares the
        # train and validation figures, which must be measured alike (not the running, dropout-on train one)
        final = final_metrics(session, spec, data)
        row.update(final)
        results.append(row)
        if fdir is not None:
            fdir.mkdir(parents=True, exist_ok=True)
            rundir.write_history(fdir, hist.rows)
            rundir.write_json(fdir / "metrics.json", final)
        if on_fold:
            on_fold(row)
        del data, val, session, hist, final  # (the next fold is assembled before these names are rebound)
    keys = list(results[0]["val"])
    summary: dict[str, Any] = {"k": len(parts), "backend": backend, "folds": results, "mean": {}, "std": {}}
    for key in keys:
        vals = np.array([r["val"][key] for r in results])
        summary["mean"][key] = float(vals.mean())
        summary["std"][key] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        summary[f"cv_{key}"] = float(vals.mean())
    if "test" in results[0]:
        summary["test_mean"] = {key: float(np.mean([r["test"][key] for r in results]))
                                for key in results[0]["test"]}
    if out is not None:
        # (and the spec's folder, which its relative data paths start from: `dlc doctor --fix` rewrites them
        # for the doctor.dlspec it writes in this folder, as it does from a run's run.json)
        rundir.write_json(out / "cv.json", {**summary, "started": started,
                                            "spec_dir": str(Path(base_dir).resolve())})
    return summary
