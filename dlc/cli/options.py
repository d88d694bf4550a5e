"""The options several commands share, with their help texts (one definition each)."""

from enum import Enum, StrEnum
from typing import Annotated, Optional, overload

import typer


class Backend(StrEnum):
    torch = "torch"
    keras = "keras"


class Dtype(StrEnum):
    float32 = "float32"
    float64 = "float64"


@overload
def value(choice: Enum | str) -> str: ...


@overload
def value(choice: None) -> None: ...


@overload
def value(choice: Enum | str | None) -> Optional[str]: ...


def value(choice: Enum | str | None) -> Optional[str]:
    """The plain string of a choice (None stays None)."""
    return choice.value if isinstance(choice, Enum) else choice


Spec = Annotated[str, typer.Argument(metavar="SPEC", help="the .dlspec file", show_default=False)]
Run = Annotated[str, typer.Argument(metavar="RUN", help="a run directory written by `dlc run`",
                                    show_default=False)]
BackendOpt = Annotated[Backend, typer.Option(
    "--backend", help="the framework to train on: torch (PyTorch) or keras (Keras 3 on TensorFlow)")]
def _device(text: str) -> str:
    """auto, cpu, cuda or cuda:N; anything else is a usage error (exit 2) before any work."""
    from dlc import api

    refusal = api.device_refusal(text)
    if refusal:
        raise typer.BadParameter(refusal)
    return text


Device = Annotated[str, typer.Option(
    "--device", metavar="DEVICE", callback=_device,
    help="where to train: auto, cpu, cuda or cuda:N (auto: the first GPU if there is one, else the CPU)")]
Compile = Annotated[bool, typer.Option(
    "--compile", help="torch: compile the training step's forward pass, loss and backward with torch.compile "
    "(a slow first step, then faster steps on a GPU; the same results within rounding, not bit for bit)")]
def _out(text: Optional[str]) -> Optional[str]:
    """An empty --out names no folder (it fell back to a fresh one under runs/): a usage error."""
    if text is not None and not text.strip():
        raise typer.BadParameter("an empty name is not a folder; give --out DIR, or no --out for a "
                                 "fresh one under runs/")
    return text


Out = Annotated[Optional[str], typer.Option("--out", metavar="DIR", show_default=False, callback=_out,
                                            help="the run directory (default: a fresh one under runs/); "
                                            "one that is not empty is refused unless --replace")]
Replace = Annotated[bool, typer.Option(
    "--replace", help="delete the --out folder first when it holds an earlier dlc run (never a folder with "
    "other files)")]


def require_out_for_replace(replace: bool, out: str | None) -> None:
    """--replace names nothing to replace without --out (a fresh run directory is always new): say so."""
    from dlc.cli.errors import EXIT_SPEC, CommandError, error_line

    if replace and not out:
        raise CommandError(error_line("--replace replaces the --out folder; give --out DIR with it"),
                           EXIT_SPEC)


def require_compiles(compile: bool, backend: str) -> None:
    """--compile on a backend that does not take it is a usage error (exit 2) before any work."""
    from dlc import api
    from dlc.cli.errors import EXIT_SPEC, CommandError, error_line

    refusal = api.compile_refusal(backend) if compile else None
    if refusal:
        raise CommandError(error_line(refusal), EXIT_SPEC)


# an untrained model's metrics mean nothing: at least one epoch (a usage error otherwise, exit 2); at most
# what a spec's `epochs:` takes (a 64-bit integer, compiler.syntax.INT_MAX: a larger one was trained on)
Epochs = Annotated[Optional[int], typer.Option("--epochs", metavar="N", show_default=False, min=1,
                                               max=2**63 - 1,
                                               help="train for N epochs instead of the spec's")]
# a spec's seed is 0 .. 2^32-1 too (dlc.compiler.spec.SEED_MAX)
Seed = Annotated[Optional[int], typer.Option("--seed", metavar="N", show_default=False, min=0, max=2**32 - 1,
                                             help="the seed of every random draw instead of the spec's "
                                             "(initial weights, splits, shuffles, dropout, augmentation)")]
DtypeOpt = Annotated[Optional[Dtype], typer.Option(
    "--dtype", show_default=False, help="the floating-point type to train in instead of the spec's")]
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
