"""`dlc cv SPEC`: k-fold cross-validation with dlc's seeded folds (the same folds on both backends)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import check_out_folder, training_spec
from dlc.cli.tables import print_table

NAME = "cv"


def command(
    spec: o.Spec,
    backend: o.BackendOpt = o.Backend.torch,
    device: o.Device = "auto",
    out: o.Out = None,
    replace: o.Replace = False,
    k: Annotated[Optional[int], typer.Option(
        "--k", metavar="N", show_default=False, min=2,
        help="the number of folds (default: the spec's kfold k, else 5)")] = None,
    epochs: o.Epochs = None,
    seed: o.Seed = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", help="no per-fold lines or table (the run directory is still printed)")] = False,
    no_evidence: Annotated[bool, typer.Option(
        "--no-evidence", help="do not record each fold's training evidence (fold_N/evidence.json)")] = False,
    compile: o.Compile = False,
) -> int:
    """K-fold cross-validation of a spec.

    dlc's seeded (stratified if asked) folds, the same on both backends; a test fraction of the split stays
    out of every fold. Prints per-fold metrics and mean ± std; writes cv.json and fold_N/."""
    o.require_out_for_replace(replace, out)
    check_out_folder(out)
    loaded = training_spec(spec, seed, None, epochs, folds_given=k is not None)
    o.require_compiles(compile, o.value(backend))
    return cross_validate(loaded, o.value(backend), device, out, k, quiet, replace, evidence=not no_evidence,
                          compile=compile, table_on_stdout=True)


def cross_validate(spec, backend: str, device: str, out, k, quiet: bool, replace: bool = False,
                   evidence: bool = True, compile: bool = False, table_on_stdout: bool = False) -> int:
    """Run the folds with a line per fold, then the table of every fold and the mean ± std: on stdout for
    `dlc cv` (its result), on stderr for `dlc run` of a kfold spec, whose stdout is the run directory alone
    (`RUN=$(dlc run spec)`), as for every other spec."""
    from rich.console import Console

    console = Console(stderr=True, quiet=quiet, soft_wrap=True)

    def on_fold(row):
        shown = "  ".join(f"{key} {v:.4f}" for key, v in row["val"].items())
        console.print(f"fold {row['fold']}: {row['epochs']} epoch{'s' * (row['epochs'] != 1)}, val {shown}")

    try:
        run, summary = api.cross_validate(spec, backend, device=device, k=k, out=out, replace=replace,
                                          on_fold=on_fold, evidence=evidence, compile=compile)
    except KeyboardInterrupt as e:  # ("dlc: interrupted" alone: which folder is kept, and what now?)
        if out and (Path(out) / "ir.json").is_file():
            e.hint = (f"; the folds so far are kept in {out} (a cross-validation does not "  # type: ignore[attr-defined]
                      f"resume: `--out {out} --replace` starts it again)")
        raise
    keys = list(summary["mean"])
    columns = ["fold"] + [f"val {key}" for key in keys]
    rows = [[str(r["fold"])] + [f"{r['val'][key]:.4f}" for key in keys] for r in summary["folds"]]
    rows.append(["mean ± std"] + [f"{summary['mean'][key]:.4f} ± {summary['std'][key]:.4f}" for key in keys])
    print_table(f"{spec.name}: {summary['k']}-fold cross-validation on {backend}", columns, rows,
                right=columns[1:], quiet=quiet, stderr=not table_on_stdout)
    if "test_mean" in summary:
        console.print("held-out test (mean over fold models): " +
                      "  ".join(f"{key} {v:.4f}" for key, v in summary["test_mean"].items()))
    print(run)
    return 0
