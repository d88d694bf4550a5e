"""`dlc compare SPEC`: train on both backends from the same start and compare them step for step, or, with
--seeds, where their trainings end (dlc.api.compare does the work)."""

import math
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import training_spec
from dlc.cli.errors import EXIT_OK, EXIT_RUNTIME, EXIT_SPEC, CommandError, error_line
from dlc.cli.jsonout import print_json

NAME = "compare"
DEFAULT_STEPS = 200  # the API's (dlc.api.compare), and the length the equivalence bounds were measured over
# the API's bounds (dlc.runtime.compare; tests/test_compare_cli_limits.py checks they agree)
MAX_STEPS = 100_000
MAX_SEEDS = 1_000


def command(
    spec: o.Spec,
    steps: Annotated[Optional[int], typer.Option(
        "--steps", metavar="N", min=1, max=MAX_STEPS, show_default=False,
        help=f"optimizer steps to compare, 1 to {MAX_STEPS:,} [default: {DEFAULT_STEPS}]")] = None,
    dtype: Annotated[Optional[o.Dtype], typer.Option(
        "--dtype", show_default=False,
        help="the floating-point type of both runs [default: float64; float32 with --seeds]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole comparison as JSON")] = False,
    seed: o.Seed = None,
    seeds: Annotated[Optional[int], typer.Option(
        "--seeds", metavar="N", min=2, max=MAX_SEEDS, show_default=False,
        help=f"train both backends to the end of the spec's training on N seeds (2 to {MAX_SEEDS:,}: the "
             "seed, + 1, ...) in float32 and test their final test metrics for equivalence (TOST)")] = None,
    margin: Annotated[float, typer.Option(
        "--margin", metavar="X",
        help="with --seeds: the equivalence margin of accuracy, precision, recall and f1 (absolute)")] = 0.02,
    rel_margin: Annotated[float, typer.Option(
        "--rel-margin", metavar="X",
        help="with --seeds: the equivalence margin of the loss, mse and mae, relative to their mean")] = 0.05,
    alpha: Annotated[float, typer.Option(
        "--alpha", metavar="P",
        help="with --seeds: the level of the two one-sided tests (0 < P < 0.5)")] = 0.05,
) -> int:
    """Train on both backends and compare them step for step (or, with --seeds, where training ends).

    Both start from the same weights, batches and dropout masks. float64 is held to |Δloss| ≤
    1e-10·max(1, |loss|) per step; float32 to 2e-6 + 1e-6·|loss| until a near-tie separates the runs: then
    both are rerun in float64 from the same start, through that step and at least 200 steps (at most the
    steps compared), which decides. Verdicts: equivalent, equivalent_near_tie (exit 0), or
    mismatch with the first step and layer that disagree (exit 1). --seeds N: the final metrics over N seeds,
    equivalent within the margins by two one-sided paired t-tests (exit 0), else exit 1. A spec with
    precision: mixed_* (outside the equivalence contract) is compared step by step in full precision, with a
    note saying so; --seeds trains it in mixed precision, as the spec says. A kfold spec compares the
    training of its fold 1 (as `dlc cv` builds it), with a note saying so. A loss that stops being finite
    ends the comparison with one line naming the backend that diverged (or both) and the step (exit 1)."""
    if seeds is not None:
        _check_seed_options(steps, dtype, margin, rel_margin, alpha)
    elif (margin, rel_margin, alpha) != SEED_DEFAULTS:  # (they were ignored, even invalid ones)
        raise CommandError(error_line("--margin, --rel-margin and --alpha judge the final metrics over "
                                      "seeds: they apply only with --seeds N"), EXIT_SPEC)
    loaded = training_spec(spec, seed)
    from dlc.cli.display import say_in_a_terminal

    on_phase = say_in_a_terminal(loaded.name)  # (a comparison is silent for seconds to minutes otherwise)
    if seeds is not None:
        c = api.compare(loaded, seeds=seeds, margin=margin, rel_margin=rel_margin, alpha=alpha,
                        on_phase=on_phase)
    else:
        c = api.compare(loaded, DEFAULT_STEPS if steps is None else steps,
                        o.value(dtype) if dtype is not None else "float64", on_phase=on_phase)
    if as_json:
        print_json(c)
    elif seeds is not None:
        _show_seeds(loaded.name, c)
    else:
        _show(loaded.name, c)
    return EXIT_OK if c["passed"] else EXIT_RUNTIME


SEED_DEFAULTS = (0.02, 0.05, 0.05)  # --margin, --rel-margin, --alpha


def _check_seed_options(steps, dtype, margin: float, rel_margin: float, alpha: float) -> None:
    """Usage errors (exit 2) of the --seeds options."""
    problem = None
    if steps is not None or dtype not in (None, o.Dtype.float32):
        problem = ("--seeds trains in float32 to the end of the spec's training: --steps and --dtype do not "
                   "apply")
    elif not (0 < margin < math.inf and 0 < rel_margin < math.inf):  # (an infinite margin passes anything)
        problem = (f"the margins must be positive numbers, finite and above 0 (--margin {margin:g}, "
                   f"--rel-margin {rel_margin:g})")
    elif not 0 < alpha < 0.5:
        problem = f"--alpha must be between 0 and 0.5, got {alpha:g}"
    if problem:
        raise CommandError(error_line(problem), EXIT_SPEC)


def _show(name: str, c: dict) -> None:
    print(f"{name}: {c['steps']} steps in {c['dtype']} ({c['bound']})")
    if c.get("note"):
        print(f"  note: {c['note']}")
    print(f"  initial weights  max |Δ| = {c['initial_weight_max_abs_diff']:.3g}")
    print(f"  per-step loss    max |Δ| = {c['max_abs_loss_diff']:.3g}  "
          f"(relative to max(1, |loss|): {c['max_rel_loss_diff']:.3g})")
    print(f"  epoch val_loss   max |Δ| = {c['max_abs_val_loss_diff']:.3g}")
    print(f"  final weights    max |Δ| = {c['final_weight_max_abs_diff']:.3g}")
    for backend, row in c["final_metrics"].items():
        shown = "  ".join(f"{k} {v:.6g}" for k, v in row.items()
                          if k not in ("epoch", "time_s", "samples_per_s"))
        print(f"  {backend:<6} {shown}")
    for reason in c["reasons"]:
        print(f"  - {reason}")
    for layer, diff in c["mismatch_layers"].items():
        print(f"  layer {layer}: weights max |Δ|/max(1, |w|) = {diff:.3g} after step "
              f"{c['first_weight_mismatch_step']}")
    print(f"  => {c['summary']}")


def _show_seeds(name: str, c: dict) -> None:
    a, b = c["backends"]
    print(f"{name}: final {c['split']} metrics in {c['dtype']} over seeds {', '.join(map(str, c['seeds']))}")
    if c.get("note"):
        print(f"  note: {c['note']}")
    for metric, t in c["tests"].items():
        print(f"  {metric}  (margin ±{t['margin']:.3g}, {t['margin_kind']})")
        for seed, x, y in zip(c["seeds"], (m[metric] for m in c["metrics"][a]),
                              (m[metric] for m in c["metrics"][b]), strict=True):
            print(f"    seed {seed:<10} {a} {x:<12.6g} {b} {y:<12.6g} Δ {y - x:+.3g}")
        lo, hi = t["ci"]
        print(f"    mean Δ {t['mean_difference']:+.3g}, {t['ci_level']:.0%} interval [{lo:+.3g}, {hi:+.3g}], "
              f"TOST p = {t['p_value']:.3g}: {t['verdict']}")
    print(f"  => {c['summary']}")
