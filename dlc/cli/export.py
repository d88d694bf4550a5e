"""`dlc export RUN`: a trained run as an ONNX model."""

import sys
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import check_output_file, check_output_target, check_run_folder, named, run_inputs
from dlc.cli.errors import CommandError, error_line

NAME = "export"


class Format(StrEnum):
    onnx = "onnx"


def command(
    run: o.Run,
    fmt: Annotated[Format, typer.Option("--format", help="the model format")] = Format.onnx,
    output: Annotated[Optional[str], typer.Option(
        "--output", metavar="FILE", show_default=False,
        help="the .onnx file to write (default: RUN/model.onnx)")] = None,
) -> None:
    """Export a trained run as an ONNX model.

    Through the torch lowering, with the weights of the run's own model and the training preprocessing folded
    in."""
    named(("RUN", run), ("--output", output))
    check_run_folder("RUN", run)
    out = Path(output) if output is not None else Path(run) / "model.onnx"
    if output is not None:  # (an ONNX model under another name, `x.csv`, was written without a word)
        check_output_file("--output", output, "model.onnx")
        check_output_target("--output", output, "model.onnx", inputs=run_inputs(run), suffix=".onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = api.export_onnx(run, out)
    except ImportError as e:
        raise CommandError(error_line(f"ONNX export needs PyTorch and onnx ({e.name} is missing): "
                                      "pip install 'dlc[torch]'")) from None
    if "note" in info:
        print(f"note: {info['note']}", file=sys.stderr)
    print(info["file"])
