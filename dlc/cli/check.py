"""`dlc check SPEC...`: validate specs and print a summary of each."""

import sys
from typing import Annotated

import typer

from dlc import api
from dlc.cli.common import named, show_diagnostics
from dlc.cli.errors import EXIT_OK, EXIT_SPEC

NAME = "check"


def command(
    specs: Annotated[list[str], typer.Argument(metavar="SPEC", help="one or more .dlspec files",
                                               show_default=False)],
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="no summary: just 'ok' or the errors")] = False,
) -> int:
    """Validate specs and print a summary of each.

    The summary lists every layer with its output shape and parameter count (counted as Keras counts them).
    Every error in a file is reported with file:line:col, a caret and a hint; exit 2 on a spec error.
    Imports neither TensorFlow nor PyTorch."""
    named(*(("SPEC", path) for path in specs))
    status = EXIT_OK
    for path in specs:
        result = api.compile_spec(path)
        show_diagnostics(result)
        if result.spec is None or not result.ok:
            n = result.diagnostics.error_count
            print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            status = EXIT_SPEC
            continue
        if not quiet:
            print(api.summary(result.spec))
            if (search := api.search_summary(result)) is not None:
                print(search)
            print()
        print(f"{path}: ok")
    return status
