"""`dlc lr-find SPEC`: the learning-rate range test (dlc.api.lr_find does the work): the loss against an
exponentially rising learning rate from the spec's initial weights, as a PNG, and a suggested starting lr."""

import time
from typing import Annotated

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import check_output_target, compiled
from dlc.cli.errors import EXIT_SPEC, CommandError, error_line
from dlc.cli.jsonout import print_json

NAME = "lr-find"
# the API's defaults (dlc.runtime.lr_find; tests/test_lr_find.py checks they agree)
DEFAULT_STEPS = 200
DEFAULT_START = 1e-7
DEFAULT_END = 10.0
MIN_STEPS = 10
MAX_STEPS = 100_000
DEFAULT_OUT = "lr_find.png"
REDRAW_S = 0.1  # the progress bar is redrawn at most this often


def command(
    spec: o.Spec,
    backend: o.BackendOpt = o.Backend.torch,
    steps: Annotated[int, typer.Option(
        "--steps", metavar="N",
        help=f"steps of the test, one batch each ({MIN_STEPS} to {MAX_STEPS:,})")] = DEFAULT_STEPS,
    start: Annotated[float, typer.Option(
        "--start", metavar="LR", help="the learning rate of the first step")] = DEFAULT_START,
    end: Annotated[float, typer.Option(
        "--end", metavar="LR", help="the learning rate of the last step, above --start")] = DEFAULT_END,
    out: Annotated[str, typer.Option(
        "--out", metavar="FILE.png",
        help="where to write the plot, a name ending in .png (its folder is made if missing; an existing "
             "file is replaced, but never the spec, its data or a file of a dlc run folder)")]
        = DEFAULT_OUT,
    as_json: Annotated[bool, typer.Option(
        "--json", help="print {\"lrs\", \"losses\", \"suggested_lr\", \"rule\", \"min_loss_lr\", "
                       "\"stopped_at_step\", ...} instead of the text (the plot is written either way)")] \
        = False,
    seed: o.Seed = None,
    dtype: o.DtypeOpt = None,
    device: o.Device = "auto",
) -> int:
    """Find a starting learning rate: the learning-rate range test (Leslie Smith; fastai's lr_find).

    From the spec's seeded initial weights, with its optimizer (every other setting kept) and dlc's seeded
    batch order, each step trains one batch at a learning rate rising exponentially from --start to --end;
    the spec's schedule, validation and early stopping are off. The steps draw from the training part of a
    holdout split, or from every row but the test part of a kfold split. Each step's loss is smoothed
    (an exponential moving average with bias correction, beta 0.98) and the test stops when the smoothed
    loss exceeds 4 × its minimum or a loss is not finite. The same spec, seed and dtype give the same curve
    on either backend.

    Prints the suggested starting lr and its rule: the middle of the half-decade of lr over which the
    smoothed loss falls fastest (between the first tenth of the steps and the minimum), with the lr of the
    minimum smoothed loss and a tenth of it (the minimum/10 rule) for comparison. The plot (--out) shows the
    smoothed loss and, faint, each step's loss against the lr on a log axis, the suggestion marked. A spec
    whose only search space is the optimizer's learning rate is accepted (the test sets the lr)."""
    loaded = api.lr_find_spec(compiled(spec), seed, o.value(dtype))
    check_output_target("--out", out, DEFAULT_OUT, inputs=[spec, *api.data_files(loaded)], suffix=".png")
    try:
        result = _range_test(loaded, o.value(backend), steps, start, end, device, out)
    except api.LRFindError as e:
        raise CommandError(error_line(str(e)), EXIT_SPEC) from None
    if as_json:
        print_json(result.to_json())
    else:
        _show(result)
    return 0


def _range_test(spec, backend: str, steps: int, start: float, end: float, device: str, out: str):
    """api.lr_find, its progress shown as `dlc run` shows an epoch's when stderr is a terminal (a line as it
    starts, then a bar over the steps with the lr and the loss: the test is tens of seconds of silence
    otherwise); in a pipe or a file, nothing: stdout is the result alone."""
    from rich.console import Console

    from dlc.cli.display import Progress, say_in_a_terminal

    say = say_in_a_terminal(spec.name)
    if say is not None:
        say(f"lr range test on {backend}, lr {start:g} → {end:g} over {steps} steps")
    bar = Progress(Console(stderr=True, highlight=False), None, word="lr range test")
    shown = [0.0]  # when the bar was last redrawn

    def on_step(step: int, lr: float, loss: float) -> None:
        now = time.monotonic()
        if step == 1:  # (the bar's clock starts with the steps, not with the backend's import)
            bar(0, 0, steps)
        elif now - shown[0] < REDRAW_S:  # (a step takes milliseconds: a redraw each would slow the test)
            return
        shown[0] = now
        bar(0, step, steps, {"lr": lr, "loss": loss})

    with bar:
        return api.lr_find(spec, backend, steps=steps, start=start, end=end, device=device, out=out,
                           on_step=on_step)


def _show(r) -> None:
    print(f"{r.spec_name}: lr range test on {r.backend} in {r.dtype}, {r.optimizer} (its other settings "
          f"kept), batch_size {r.batch_size}, seed {r.seed}")
    print(f"  data: {r.data}")
    print(f"  lr {r.start:g} → {r.end:g} over {r.steps} steps; ran {len(r.lrs)}")
    print(f"  stopped at step {r.stopped_at_step}: {r.stop_reason}" if r.stopped_at_step is not None
          else "  the loss did not diverge: every step ran (a larger --end would show where it does)")
    for note in r.notes:
        print(f"  note: {note}")
    if r.min_loss_lr is not None:
        print(f"  minimum smoothed loss {r.min_loss:.4g} at lr {r.min_loss_lr:.3g}; "
              f"minimum/10: {r.min_over_10_lr:.3g}")
    if r.steepest_lr is not None:
        print(f"  steepest descent of the smoothed loss at lr {r.steepest_lr:.3g}")
    if r.suggested_lr is not None:
        print(f"suggested lr: {r.suggested_lr:.3g}  (rule: {r.rule})")
    else:
        print(f"no suggestion ({r.rule})")
    print(f"wrote {r.plot}")
