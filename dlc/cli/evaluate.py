"""`dlc evaluate RUN`: a trained run's loss and metrics on its data splits or on a file."""

import sys
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import check_input_file, check_run_folder, named
from dlc.cli.jsonout import print_json

NAME = "evaluate"


def command(
    run: o.Run,
    data: Annotated[Optional[str], typer.Option(
        "--data", metavar="FILE", show_default=False,
        help="a .csv (target in the last column or the spec's target column) or .npz (x, y) instead of the "
        "spec's splits")] = None,
    as_json: o.Json = False,
) -> None:
    """Evaluate a trained run on its data splits or on a file.

    The model is reloaded on its backend; a file gets the training preprocessing first."""
    named(("RUN", run), ("--data", data))
    check_run_folder("RUN", run)
    check_input_file("--data", data, "a .csv or .npz file")
    results = api.evaluate_run(run, data, on_read=lambda line: print(line, file=sys.stderr))
    if as_json:
        print_json(results, indent=2)
        return
    for part, vals in results.items():
        print(f"{part:<6} " + "  ".join(f"{k} {v:.4f}" for k, v in vals.items()))
