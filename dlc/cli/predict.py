"""`dlc predict RUN --input FILE`: predictions of a trained run for raw features."""

import csv
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TextIO

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import (
    check_input_file,
    check_output_file,
    check_output_target,
    check_run_folder,
    named,
    run_inputs,
)
from dlc.cli.errors import EXIT_SPEC, CommandError, error_line

NAME = "predict"
INPUT_KINDS = "a .csv, .npz or .npy file"


def command(
    run: o.Run,
    input_file: Annotated[str, typer.Option("--input", metavar="FILE", show_default=False,
                                            help="a .csv of raw features (a first row of names only is "
                                            "a header; a column named as the spec's target is left out), "
                                            ".npz (x) or .npy (np.save)")],
    output: Annotated[Optional[str], typer.Option(
        "--output", metavar="FILE", show_default=False,
        help="a .csv, .json or .npz file, not the --input or a file of a dlc run folder (default: CSV on "
             "stdout)")] = None,
) -> None:
    """Predict with a trained run.

    Class and probabilities (p0, p1, ...; score0, score1, ... for a model trained with a regression loss on
    classes: not probabilities), or values, for raw features: the training preprocessing (saved in run.json)
    is applied. Wrong shapes, non-numbers, NaN and values too large for the model are one clear error line;
    stderr says how many rows were read."""
    named(("RUN", run), ("--input", input_file), ("--output", output))
    check_run_folder("RUN", run)
    check_input_file("--input", input_file, INPUT_KINDS)
    if output is not None:
        check_output(output, input_file, run)
    p = api.predict_file(run, input_file)
    try:
        write(p, output)
    except OSError as e:
        if isinstance(e, BrokenPipeError):  # (--output /dev/stdout too)
            raise  # the reader of stdout has gone (`| head -1`): dlc.cli.main ends quietly, exit 141
        raise CommandError(error_line(f"cannot write {output or 'the predictions to stdout'}: "
                                      f"{e.strerror or e}")) from None
    print(p.read + (f"; wrote {len(p.table)} predictions to {output}" if output else ""), file=sys.stderr)


def check_output(output: str, input_file: str, run: str) -> None:
    """An --output that cannot be written, or must not be (the --input, the run's spec or data file, one of
    the run's own files), is found before the model runs, not after."""
    check_output_file("--output", output, "predictions.csv", stdout=True)
    check_output_target("--output", output, "predictions.csv", inputs=[input_file, *run_inputs(run)])
    suffix = Path(output).suffix.lower()
    if suffix and suffix not in WRITERS:  # (`p.json` was written as CSV, without a word)
        raise CommandError(error_line(f"--output {output}: dlc writes predictions as {', '.join(WRITERS)} "
                                      f"(by the name's ending; none: CSV), not {suffix}"), EXIT_SPEC)


def write(p, output: Optional[str]) -> None:
    """The predictions to stdout as CSV, or to `output` as its name's ending says (WRITERS)."""
    if output is None:
        write_csv(p, sys.stdout)
        return
    with api.output_file(output) as tmp:  # (a full disk keeps the file it would replace)
        WRITERS[Path(output).suffix.lower() or ".csv"](p, tmp)


def write_npz(p, path) -> None:
    """The predictions as .npz: `predictions`, `classes` (and `class_names`)."""
    import numpy as np

    classes = p.table[:, 0] if p.task != "regression" else p.outputs
    arrays = {"predictions": p.outputs, "classes": classes}
    if p.class_names:
        arrays["class_names"] = np.array(p.class_names)
    np.savez(path, **arrays)


def write_json(p, fh) -> None:
    """The predictions as JSON: a list of objects, one per sample, keyed as the CSV's header."""
    import json

    rows = [dict(zip(p.columns, [_first(p, row[0]), *(float(v) for v in row[1:])], strict=True))
            for row in p.table]
    json.dump(rows, fh, indent=1)
    fh.write("\n")


def _first(p, value):
    """The first column's value: a class name, a class number, or a regression value."""
    if p.task == "regression":
        return float(value)
    return p.class_names[int(value)] if p.class_names else int(value)


def write_csv(p, fh) -> None:
    """The predictions as CSV: a header, then a row per sample."""
    w = csv.writer(fh, lineterminator="\n")  # (csv's default \r\n leaves a \r on each line for cut, awk)
    w.writerow(p.columns)
    for row in p.table:
        first = f"{row[0]:.8g}" if p.task == "regression" else _first(p, row[0])
        w.writerow([first] + [f"{v:.8g}" for v in row[1:]])


def _text_file(writer: Callable[[Any, TextIO], None]) -> Callable[[Any, str], None]:
    """`writer` to a text file (UTF-8 whatever the locale: class names are text)."""
    def to_file(p, path: str) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer(p, fh)
    return to_file


# what --output writes, by its name's ending (none: CSV)
WRITERS: dict[str, Callable[[Any, str], None]] = {
    ".csv": _text_file(write_csv), ".json": _text_file(write_json), ".npz": write_npz,
    ".txt": _text_file(write_csv)}
