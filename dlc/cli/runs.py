"""`dlc runs [DIR]`: list the run directories under a folder (`dlc run`, cross-validation and tune runs)."""

import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import check_run_folder, named
from dlc.cli.jsonout import print_json
from dlc.cli.tables import print_table

NAME = "runs"
COLUMNS = ("run", "spec", "backend", "date", "epochs", "final metrics", "status")
DEFAULT = "runs"  # where `dlc run` makes its run folders


def command(
    given: Annotated[str | None, typer.Argument(
        metavar="DIR", help="the folder to look in (or a run directory); default: runs", show_default=False)]
    = None,
    as_json: o.Json = False,
) -> None:
    """List run directories.

    One row per run: spec, backend, date, epochs (folds of a cross-validation run, trials of a tune run),
    final metrics (mean ± std over the folds; the best trial's value), status (done, incomplete, failed or
    damaged, with why). Plain aligned text when stdout is not a terminal. Without DIR and without a runs/
    folder here (nothing trained yet) it says so and lists nothing (exit 0); a DIR that is not there is an
    error."""
    named(("DIR", given))
    check_run_folder("DIR", given, "a folder of runs", made_by=None)
    folder = DEFAULT if given is None else given
    if given is None and not os.path.lexists(folder):  # (a first-time user's `dlc runs`: not an error)
        if as_json:  # (as for a folder without runs: the empty list, and no line)
            print_json([], indent=2)
            return
        print(f"dlc runs: no runs yet: there is no {DEFAULT}/ folder here (`dlc run SPEC` makes one)",
              file=sys.stderr)
        return
    runs = api.list_runs(folder)
    if as_json:
        print_json(runs, indent=2)
        return
    if not runs:  # (a header over nothing reads like a listing that failed)
        print(f"dlc runs: no run folders in {api.escaped(folder)} (a run folder holds run.json or ir.json, "
              "cv.json or tune.json; looked for in the folder and two levels down)", file=sys.stderr)
        return
    # (a name with a newline or a terminal control in it would break its row or act on the terminal)
    rows = [[api.escaped(_name(r["run"], folder)), api.escaped(str(r["spec"])), r["backend"], r["date"],
             _epochs(r), final_text(r), api.escaped(r["status"])] for r in runs]
    print_table(f"runs in {api.escaped(str(Path(folder)))}", COLUMNS, rows, right=("epochs",))


def _name(run: str, folder: str) -> str:
    """The run folder relative to the folder listed (its name when it is the folder itself)."""
    try:
        rel = Path(run).relative_to(folder)
    except ValueError:
        return run
    return str(rel) if str(rel) != "." else Path(run).name


def _epochs(r: dict) -> str:
    return "-" if r["epochs"] is None else str(r["epochs"])


def _number(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def final_text(r: dict) -> str:
    """The final metrics: `loss 0.1234  accuracy 0.9667`, `cv_accuracy 0.9533±0.0183`, or the best trial's
    objective `val_loss 0.0712 (trial 3)`."""
    std = r.get("std") or {}
    parts = []
    for k, v in r["final"].items():
        if not isinstance(v, (int, float)):
            continue
        parts.append(f"{k} {_number(v)}" + (f"±{_number(std[k])}" if k in std else ""))
    text = "  ".join(parts)
    if r.get("best_trial") is not None:
        text += f" (trial {r['best_trial']})"
    return text
