"""`dlc cv SPEC`: k-fold cross-validation with dlc's seeded folds (the same folds on both backends)."""

from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import training_spec

NAME = "cv"


def command(
    spec: o.Spec,
    backend: o.BackendOpt = o.Backend.torch,
    device: o.Device = "auto",
    out: o.Out = None,
    k: Annotated[Optional[int], typer.Option(
        "--k", metavar="N", show_default=False,
        help="the number of folds (default: the spec's kfold k, else 5)")] = None,
    epochs: o.Epochs = None,
    seed: o.Seed = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", help="no per-fold lines or table (the run directory is still printed)")] = False,
) -> int:
    """K-fold cross-validation of a spec.

    dlc's seeded (stratified if asked) folds, the same on both backends; a test fraction of the split stays
    out of every fold. Prints per-fold metrics and mean ± std; writes cv.json and fold_N/."""
    loaded = training_spec(spec, seed, None, epochs)
    return cross_validate(loaded, o.value(backend), device, out, k, quiet)


def cross_validate(spec, backend: str, device: str, out, k, quiet: bool) -> int:
    """Run the folds with a line per fold, then the table of every fold and the mean ± std."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, quiet=quiet)

    def on_fold(row):
        shown = "  ".join(f"{key} {v:.4f}" for key, v in row["val"].items())
        console.print(f"fold {row['fold']}: {row['epochs']} epochs, val {shown}")

    run, summary = api.cross_validate(spec, backend, device=device, k=k, out=out, on_fold=on_fold)
    table = Table(title=f"{spec.name}: {summary['k']}-fold cross-validation on {backend}")
    keys = list(summary["mean"])
    table.add_column("fold")
    for key in keys:
        table.add_column(f"val {key}", justify="right")
    for r in summary["folds"]:
        table.add_row(str(r["fold"]), *(f"{r['val'][key]:.4f}" for key in keys))
    table.add_row("mean ± std", *(f"{summary['mean'][key]:.4f} ± {summary['std'][key]:.4f}" for key in keys))
    Console(quiet=quiet).print(table)
    if "test_mean" in summary:
        console.print("held-out test (mean over fold models): " +
                      "  ".join(f"{key} {v:.4f}" for key, v in summary["test_mean"].items()))
    print(run)
    return 0
