"""`dlc runs [DIR]`: list the run directories under a folder."""

import json
from pathlib import Path
from typing import Annotated

import typer

from dlc import api
from dlc.cli import options as o

NAME = "runs"


def command(
    folder: Annotated[str, typer.Argument(metavar="DIR", help="the folder to look in (or a run directory)")]
    = "runs",
    as_json: o.Json = False,
) -> None:
    """List run directories.

    One row per run: spec, backend, date, epochs, final metrics, status."""
    from rich.console import Console
    from rich.table import Table

    runs = api.list_runs(folder)
    if as_json:
        print(json.dumps(runs, indent=2))
        return
    table = Table(title=f"runs in {Path(folder)}")
    for col in ("run", "spec", "backend", "date", "epochs", "final metrics", "status"):
        table.add_column(col, no_wrap=True)
    for r in runs:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in r["final"].items() if isinstance(v, (int, float)))
        table.add_row(Path(r["run"]).name, r["spec"], r["backend"], r["date"], str(r["epochs"]), shown,
                      r["status"])
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
