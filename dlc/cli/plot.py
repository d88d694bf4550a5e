"""`dlc plot RUN...`: overlay the curves of several runs in one PNG."""

from typing import Annotated

import typer

from dlc import api

NAME = "plot"


def command(
    runs: Annotated[list[str], typer.Argument(
        metavar="RUN", show_default=False,
        help="one or more run directories (a cross-validation run: each fold; a tune run: its best trial)")],
    out: Annotated[str, typer.Option("--out", metavar="FILE.png",
                                     help="the PNG to write (its folder is made if missing)")] = "plot.png",
) -> None:
    """Overlay the curves of several runs in one PNG.

    Train solid, validation dashed, one panel per quantity and one for the learning rate; prints the file.
    A cross-validation run adds a curve per fold, a tune run its best trial's."""
    print(api.plot_runs(runs, out))
