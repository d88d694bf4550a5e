"""`dlc cv`: k-fold cross-validation with dlc's seeded folds (the same folds on every backend).

Each fold trains a fresh model from the spec's initial weights; its validation part is the held-out fold. A test
fraction, if the split asks for one, is held out before folding and is evaluated by every fold's model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from dlc.cli import EXIT_RUNTIME, EXIT_SPEC
from dlc.runtime import rundir


def run_cv(spec, base_dir: Path, backend: str, device: str = "auto", k: int | None = None,
           out: Path | None = None, console=None, on_fold=None) -> dict:
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import folds
    from dlc.runtime.loop import evaluate, train

    Session = session_class(backend)
    parts = folds(spec, base_dir, k)
    init = initial_weights(spec)
    results = []
    for i, data in enumerate(parts, start=1):
        session = Session(spec, device=device, weights=init)
        hist = train(session, spec, data)
        row = {"fold": i, "epochs": len(hist.rows), "train_samples": len(data.train.x),
               "val_samples": len(data.val.x)}
        row["val"] = evaluate(session, spec, session.load_data(data.val.x, data.val.y), data.num_classes,
                              spec.train.batch_size)
        if data.test is not None:
            row["test"] = evaluate(session, spec, session.load_data(data.test.x, data.test.y), data.num_classes,
                                   spec.train.batch_size)
        results.append(row)
        if out is not None:
            fdir = out / f"fold_{i}"
            fdir.mkdir(parents=True, exist_ok=True)
            rundir.write_history(fdir, hist.rows)
            rundir.write_json(fdir / "metrics.json", {k2: v for k2, v in row.items() if k2 in ("val", "test")})
        if on_fold:
            on_fold(row)
    keys = list(results[0]["val"])
    summary = {"k": len(parts), "backend": backend, "folds": results, "mean": {}, "std": {}}
    for key in keys:
        vals = np.array([r["val"][key] for r in results])
        summary["mean"][key] = float(vals.mean())
        summary["std"][key] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        summary[f"cv_{key}"] = float(vals.mean())
    if "test" in results[0]:
        summary["test_mean"] = {key: float(np.mean([r["test"][key] for r in results])) for key in results[0]["test"]}
    if out is not None:
        rundir.write_json(out / "cv.json", summary)
    return summary


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from dlc.backends import BackendUnavailable, LoweringMissing
    from dlc.run_cmd import load_for_training
    from dlc.runtime.data import DataError
    from dlc.runtime.loop import TrainingFailed

    spec, _ = load_for_training(args.spec, args.seed, getattr(args, "dtype", None), args.epochs)
    if spec is None:
        return EXIT_SPEC
    console = Console(stderr=True, quiet=bool(getattr(args, "quiet", False)))
    out = rundir.new_run_dir(f"{spec.name}-cv", args.backend, args.out)
    rundir.copy_spec(out, args.spec)
    (out / "ir.json").write_text(spec.model_dump_json(indent=2))

    def on_fold(row):
        shown = "  ".join(f"{key} {v:.4f}" for key, v in row["val"].items())
        console.print(f"fold {row['fold']}: {row['epochs']} epochs, val {shown}")

    try:
        summary = run_cv(spec, Path(args.spec).resolve().parent, args.backend, args.device, args.k, out,
                         console, on_fold)
    except (DataError, LoweringMissing, BackendUnavailable, TrainingFailed) as e:
        print(f"dlc: error: {e} (run directory kept: {out})", file=sys.stderr)
        return EXIT_RUNTIME
    table = Table(title=f"{spec.name}: {summary['k']}-fold cross-validation on {args.backend}")
    keys = list(summary["mean"])
    table.add_column("fold")
    for key in keys:
        table.add_column(f"val {key}", justify="right")
    for r in summary["folds"]:
        table.add_row(str(r["fold"]), *(f"{r['val'][key]:.4f}" for key in keys))
    table.add_row("mean ± std", *(f"{summary['mean'][key]:.4f} ± {summary['std'][key]:.4f}" for key in keys))
    Console(quiet=bool(getattr(args, "quiet", False))).print(table)
    if "test_mean" in summary:
        console.print("held-out test (mean over fold models): " +
                      "  ".join(f"{key} {v:.4f}" for key, v in summary["test_mean"].items()))
    print(out)
    return 0
