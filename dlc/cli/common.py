"""Compiling a spec on the command line: its warnings go to stderr, its errors raise SpecError (exit 2)."""

import sys

from dlc import api


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
