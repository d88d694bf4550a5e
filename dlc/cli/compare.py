"""`dlc compare SPEC`: train on both backends from the same start and compare them step for step."""

import json
from typing import Annotated

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import training_spec
from dlc.cli.errors import EXIT_OK, EXIT_RUNTIME

NAME = "compare"


def command(
    spec: o.Spec,
    steps: Annotated[int, typer.Option("--steps", metavar="N", help="optimizer steps to compare")] = 50,
    dtype: Annotated[o.Dtype, typer.Option("--dtype", help="the floating-point type of both runs")]
    = o.Dtype.float64,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole comparison as JSON")] = False,
    seed: o.Seed = None,
) -> int:
    """Train on both backends and compare them step for step.

    Both start from the same weights, batches and dropout masks; reports max |Δ| of the per-step loss, the
    validation loss and the initial and final weights, and both backends' final metrics; exit 1 when over
    tolerance."""
    loaded = training_spec(spec, seed)
    c = api.compare(loaded, steps, o.value(dtype))
    if as_json:
        print(json.dumps(c))
    else:
        _show(loaded.name, c)
    return EXIT_OK if c["passed"] else EXIT_RUNTIME


def _show(name: str, c: dict) -> None:
    print(f"{name}: {c['steps']} steps in {c['dtype']}")
    print(f"  initial weights  max |Δ| = {c['initial_weight_max_abs_diff']:.3g}")
    print(f"  per-step loss    max |Δ| = {c['max_abs_loss_diff']:.3g}")
    print(f"  epoch val_loss   max |Δ| = {c['max_abs_val_loss_diff']:.3g}")
    print(f"  final weights    max |Δ| = {c['final_weight_max_abs_diff']:.3g}")
    for backend, row in c["final_metrics"].items():
        shown = "  ".join(f"{k} {v:.6g}" for k, v in row.items()
                          if k not in ("epoch", "time_s", "samples_per_s"))
        print(f"  {backend:<6} {shown}")
    print("  PASSED" if c["passed"] else "  FAILED: " + "; ".join(c["reasons"]))
