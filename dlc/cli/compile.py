"""`dlc compile SPEC`: the validated IR as JSON, or a standalone Keras or PyTorch training script."""

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import check_output_file, check_output_target, compiled, write_output
from dlc.cli.errors import EXIT_SPEC, CommandError, error_line

NAME = "compile"


class Emit(StrEnum):
    ir = "ir"
    keras = "keras"
    torch = "torch"


def command(
    spec: o.Spec,
    emit: Annotated[Emit, typer.Option(
        "--emit", help="ir: the validated IR as JSON; keras or torch: a standalone training script for that "
        "framework")] = Emit.ir,
    output: Annotated[Optional[str], typer.Option(
        "-o", "--output", metavar="FILE", show_default=False,
        help="write the script (or the IR) to FILE instead of stdout")] = None,
) -> None:
    """Print the validated IR, or write a standalone training script.

    `--emit ir` prints the IR as JSON; `--emit keras` or `--emit torch` writes a readable script (numpy,
    scikit-learn and the framework; no dlc import) that gives exactly `dlc run`'s per-step losses on that
    backend."""
    if output:
        check_output_file("--output", output, "model.py", stdout=True)
    result = compiled(spec)
    if output:
        reads = api.data_files(result.spec.with_source_file(spec))
        check_output_target("--output", output, "model.py", inputs=[spec, *reads])
    target = o.value(emit)
    if target == "ir":
        text = result.spec.model_dump_json(indent=2)
        if output:
            write_output("--output", output, text + "\n")
        else:
            print(text)
        return
    script = api.emit(result.spec.with_source_file(spec), target)
    if output:
        check_not_shadowing(output, script)
        write_output("--output", output, script)
        Path(output).chmod(0o755)
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(script)


def check_not_shadowing(output: str, script: str) -> None:
    """A script saved as `torch.py` (or under the name of anything else it imports) imports itself instead:
    Python looks in the script's own folder first. Refused before it is written."""
    import re

    modules = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", script, re.MULTILINE))
    stem = Path(output).stem
    if Path(output).suffix == ".py" and stem in modules:
        raise CommandError(error_line(
            f"--output {output}: the script imports {stem}, and saved as {Path(output).name} it would import "
            f"itself instead (Python looks in the script's folder first): give it another name, e.g. "
            f"{stem}_model.py"), EXIT_SPEC)
