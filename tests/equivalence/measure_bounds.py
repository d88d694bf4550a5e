"""Measure the figures behind `dlc compare`'s bounds (README.md, "Equivalence"; dlc/runtime/compare.py).

    .venv/bin/python tests/equivalence/measure_bounds.py                # fixtures, float64, 200 steps
    .venv/bin/python tests/equivalence/measure_bounds.py --steps 1000   # 1000 steps, fixtures/slow too
    .venv/bin/python tests/equivalence/measure_bounds.py --stress 0:20  # + a training on the edge

1. Every equivalence fixture (and example spec; with --steps 1000 also fixtures/slow) in float64: the largest
   per-step |Δloss| / max(1, |loss|) and per-epoch val_loss likewise, against FLOAT64_REL_TOL.
2. --stress A:B: a ReLU MLP with SGD-nesterov (lr 0.1, momentum 0.9, l2) on digits, seeds A..B−1: float64
   |Δ| / max(1, |loss|) after 50, 200 and 1000 steps (rounding amplified by a sensitive training), and what
   `dlc compare --dtype float32 --steps 200` concludes for each seed (how often float32 leaves its bound, and
   what the float64 rerun says).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STRESS = """
model nesterov_stress {
  seed: SEED
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (64)
  layers {
    Dense(64, activation=relu, kernel_reg=l2(1e-3))
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=0.1, momentum=0.9, nesterov=true)
  train {
    epochs: 1
    batch_size: 32
  }
}
"""


def fixtures(steps: int) -> None:
    import measure

    from dlc.runtime.compare import FLOAT64_REL_TOL, compare_spec, rel_diffs

    suite = measure.load_suite()
    paths = suite.ALL + (suite.SLOW_FIXTURES if steps >= suite.LONG_STEPS else [])
    worst: tuple[float, str] = (0.0, "")
    worst_val: tuple[float, str] = (0.0, "")
    for path in paths:
        t0 = time.perf_counter()
        fid = suite._id(path)
        n = None if suite.is_es_fixture(path) else steps
        c = compare_spec(suite.load(path), path.parent, n, "float64")
        rel = rel_diffs(np.array(c.losses["keras"]), np.array(c.losses["torch"]))
        vk, vt = np.array(c.val_losses["keras"]), np.array(c.val_losses["torch"])
        vrel = float(rel_diffs(vk, vt).max()) if len(vk) else 0.0
        worst, worst_val = max(worst, (float(rel.max()), fid)), max(worst_val, (vrel, fid))
        print(f"{fid:40s} {c.steps:5d} steps  loss {rel.max():.2g}  val_loss {vrel:.2g}  weights "
              f"{c.final_weight_max_abs_diff:.2g}  {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"float64, {steps} steps, {len(paths)} specs: worst |Δ|/max(1, |loss|) {worst[0]:.2g} "
          f"({worst[1]}), val_loss {worst_val[0]:.2g} ({worst_val[1]}); bound {FLOAT64_REL_TOL:g}")


def stress(first: int, last: int) -> None:
    from dlc.compiler import compile_text
    from dlc.runtime.compare import _train_both, compare_spec, rel_diffs

    verdicts: dict[str, int] = {}
    worst = {50: 0.0, 200: 0.0, 1000: 0.0}
    for seed in range(first, last):
        spec = compile_text(STRESS.replace("SEED", str(seed))).raise_for_errors()
        r = _train_both(spec, Path("."), 1000, "float64", ("keras", "torch"))
        rel = rel_diffs(np.array(r.losses["keras"]), np.array(r.losses["torch"]))
        at = {s: float(rel[:s].max()) for s in worst}
        worst = {s: max(worst[s], at[s]) for s in worst}
        c = compare_spec(spec, Path("."), 200, "float32")
        verdicts[c.verdict] = verdicts.get(c.verdict, 0) + 1
        rerun = "" if c.float64_max_rel_diff is None else f" (float64 rerun {c.float64_max_rel_diff:.2g})"
        where = f"{c.separation} at step {c.separated_at_step}" if c.separation else ""
        print(f"seed {seed:3d}  float64 " + "  ".join(f"{s}: {v:.1g}" for s, v in at.items())
              + f"  | float32: {c.verdict} {where}{rerun}", flush=True)
    print(f"stress, seeds {first}..{last - 1}: float64 worst |Δ|/max(1, |loss|) "
          + ", ".join(f"{v:.2g} within {s} steps" for s, v in worst.items())
          + f"; dlc compare float32 200 steps: {verdicts}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="float64 steps per fixture")
    ap.add_argument("--stress", default="", metavar="A:B", help="also the stress model on seeds A..B-1")
    ap.add_argument("--no-fixtures", action="store_true", help="only the stress model")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import torch

    torch.set_num_threads(1)  # as the test suite
    if not args.no_fixtures:
        fixtures(args.steps)
    if args.stress:
        a, b = (int(v) for v in args.stress.split(":"))
        stress(a, b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
