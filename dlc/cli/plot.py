"""`dlc plot RUN...`: overlay the curves of several runs in one PNG."""

from typing import Annotated

import typer

from dlc import api
from dlc.cli.common import check_output_file, check_output_target, check_run_folder, named

NAME = "plot"


def command(
    runs: Annotated[list[str], typer.Argument(
        metavar="RUN", show_default=False,
        help="one or more run directories (a cross-validation run: each fold; a tune run: its best trial)")],
    out: Annotated[str, typer.Option("--out", metavar="FILE.png",
                                     help="the PNG to write, a name ending in .png (its folder is made if "
                                          "missing; never a file of a dlc run folder)")] = "plot.png",
) -> None:
    """Overlay the curves of several runs in one PNG.

    Train solid, validation dashed, one panel per quantity and one for the learning rate; prints the file.
    A cross-validation run adds a curve per fold, a tune run its best trial's."""
    named(*(("RUN", run) for run in runs), ("--out", out))
    for run in runs:
        check_run_folder("RUN", run)
    check_output_file("--out", out, "plot.png", makes_folder=True)
    check_output_target("--out", out, "plot.png", inputs=runs, suffix=".png")
    print(api.plot_runs(runs, out))
