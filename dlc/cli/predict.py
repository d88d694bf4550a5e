"""`dlc predict RUN --input FILE`: predictions of a trained run for raw features."""

import contextlib
import csv
import sys
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o

NAME = "predict"


def command(
    run: o.Run,
    input_file: Annotated[str, typer.Option("--input", metavar="FILE", show_default=False,
                                            help="a .csv of raw features (header optional) or .npz (x)")],
    output: Annotated[Optional[str], typer.Option(
        "--output", metavar="FILE", show_default=False,
        help="a .csv or .npz file (default: CSV on stdout)")] = None,
) -> None:
    """Predict with a trained run.

    Class and probabilities, or values, for raw features: the training preprocessing (saved in run.json) is
    applied. Wrong shapes, non-numbers and NaN are one clear error line."""
    import numpy as np

    p = api.predict_file(run, input_file)
    if output and output.endswith(".npz"):
        classes = p.table[:, 0] if p.task != "regression" else p.outputs
        np.savez(output, predictions=p.outputs, classes=classes)
        return
    with (open(output, "w", newline="") if output else contextlib.nullcontext(sys.stdout)) as fh:
        w = csv.writer(fh)
        w.writerow(p.columns)
        for row in p.table:
            w.writerow([int(row[0]) if p.task != "regression" else f"{row[0]:.8g}"] +
                       [f"{v:.8g}" for v in row[1:]])
