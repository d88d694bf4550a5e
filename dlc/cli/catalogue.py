"""`dlc catalogue`: every catalogue item, its support on each target and its measured Keras/PyTorch |Δ|."""

from typing import Annotated

import typer

NAME = "catalogue"


def command(
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="a Markdown page instead of text (docs/CATALOGUE.md is this output)")] = False,
) -> None:
    """List every catalogue item: layers, activations, optimizers, ...

    Each with its parameters and defaults, which target lowers it (the support matrix, computed from the
    registered lowerings) and the measured Keras-vs-PyTorch |Δ| of the fixtures that use it."""
    from dlc import api

    print(api.catalogue(markdown), end="")
