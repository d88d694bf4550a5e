"""`dlc run SPEC`: train a spec on one backend into a run directory, with a progress display; `dlc run
--resume RUN` continues a killed run. A spec with a kfold split runs cross-validation (`dlc cv`)."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dlc import api
from dlc.cli import cv
from dlc.cli import options as o
from dlc.cli.common import training_spec
from dlc.cli.errors import EXIT_SPEC, CommandError, error_line

if TYPE_CHECKING:
    from dlc.cli.display import EpochTable

NAME = "run"


def command(
    spec: Annotated[Optional[str], typer.Argument(
        metavar="SPEC", show_default=False, help="the .dlspec file to train (not with --resume)")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="RUN", show_default=False,
        help="continue a killed run from its last finished epoch")] = None,
    backend: o.BackendOpt = o.Backend.torch,
    device: o.Device = "auto",
    out: o.Out = None,
    epochs: o.Epochs = None,
    seed: o.Seed = None,
    dtype: o.DtypeOpt = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet",
        help="no progress display, epoch table or summary (the run directory is still printed)")] = False,
) -> int:
    """Train a spec and write its run directory.

    The run directory holds the spec, ir.json, history.csv/json, curves.png, metrics.json, env.json,
    run.json, TensorBoard events, checkpoint.npz and the model. A failure while training is one line on
    stderr, exit 1, with the run directory kept. A spec with a kfold split runs cross-validation (`dlc
    cv`)."""
    backend_name, dtype_name = o.value(backend), o.value(dtype)
    if resume:
        return _resume(resume, device, quiet)
    if not spec:
        raise CommandError(error_line("dlc run needs a SPEC (or --resume RUN)"), EXIT_SPEC)
    loaded = training_spec(spec, seed, dtype_name, epochs)
    if loaded.data is not None and loaded.data.split.kind == "kfold":
        # kfold: cross-validation
        return cv.cross_validate(loaded, backend_name, device, out, None, quiet)
    return _train(loaded, backend_name, quiet, lambda observer: api.run(
        loaded, backend_name, device=device, out=out, observer=observer))


def _resume(run: str, device: str, quiet: bool) -> int:
    target = api.resumable(run)
    if target.finished:
        print(f"{target.run}: this run already finished; nothing to resume")
        return 0
    return _train(target.spec, target.backend, quiet,
                  lambda observer: api.resume(target, device=device, observer=observer))


def _train(spec, backend: str, quiet: bool, train: "Callable[[api.Observer], api.Finished]") -> int:
    """Train with the display watching: `train(observer)` is api.run or api.resume."""
    from rich.console import Console

    from dlc.cli.display import run_summary

    console = Console(stderr=True, quiet=quiet, highlight=False)
    done = train(_Display(console, spec, backend))
    run_summary(console, spec, done.history, done.final)
    print(done.run)
    return 0


class _Display(api.Observer):
    """What the run reports, printed: a header, the epoch table, the progress bar."""

    def __init__(self, console, spec, backend: str):
        from dlc.cli.display import Progress

        self.console, self.spec, self.backend = console, spec, backend
        self.table: EpochTable | None = None
        self.bar = Progress(console, spec.train.epochs)

    def started(self, run: Path, data, device_name: str) -> None:
        from dlc.cli.display import EpochTable

        sizes = " / ".join(f"{len(s.x):,} {part}" for part, s in
                           (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None)
        self.console.print(f"[bold]{self.spec.name}[/] on [cyan]{self.backend}[/] ({device_name}): "
                           f"{sizes} samples", soft_wrap=True)
        self.console.print(f"[dim]run directory:[/] {run}", soft_wrap=True)
        self.table = EpochTable(self.console, self.spec, has_val=data.val is not None)
        self.table.header()

    def training(self):
        return self.bar

    def progress(self, epoch: int, done: int, total: int) -> None:
        self.bar(epoch, done, total)

    def epoch(self, row: dict) -> None:
        assert self.table is not None  # made by started(), which the run calls first
        self.table.row(row)
