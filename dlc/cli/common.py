"""Compiling a spec on the command line: its warnings go to stderr, its errors raise SpecError (exit 2)."""

import sys
from pathlib import Path

from dlc import api
from dlc.cli.errors import CommandError, error_line


def show_diagnostics(result) -> None:
    """Every diagnostic of a compiled spec (errors and warnings, in spec order) on stderr."""
    if result.diagnostics.items:
        print(result.render(), file=sys.stderr)


def compiled(path: str):
    """The compiled spec, its warnings printed; SpecError with every diagnostic when it has errors."""
    result = api.checked(path)
    show_diagnostics(result)
    return result


def training_spec(path: str, seed=None, dtype=None, epochs=None):
    """The spec as `dlc run` trains it: compiled, runnable as it is, with the command line's overrides."""
    return api.trainable(compiled(path), seed=seed, dtype=dtype, epochs=epochs)


def check_output_file(option: str, output: str, example: str) -> None:
    """An output FILE that cannot be written (a folder, a parent that is missing or is a file) is one line,
    found before any work is done. `example`: a file name to suggest inside a folder."""
    path = Path(output)
    if path.is_dir():
        raise CommandError(error_line(f"{option} {output} is a folder; give a file, such as "
                                      f"{path / example}"))
    parent = path.parent
    if not parent.is_dir():
        why = "is a file, not a folder" if parent.exists() else "does not exist"
        raise CommandError(error_line(f"{option} {output}: {parent} {why}"))


def write_output(option: str, output: str, text: str) -> None:
    """`text` written to the file `output` (checked first), an OSError as one line."""
    check_output_file(option, output, "out.txt")
    try:
        Path(output).write_text(text)
    except OSError as e:
        raise CommandError(error_line(f"cannot write {option} {output}: {e.strerror or e}")) from None
