"""Measure how far Keras and PyTorch are apart on every equivalence fixture and write
tests/equivalence/RESULTS.md and dlc/equivalence_results.json (the same figures plus the catalogue items each
fixture's IR uses; it ships in the package and `dlc catalogue` reads it).

    .venv/bin/python tests/equivalence/measure.py            # the default suite's runs (float64, float32
                                                             # 200 steps)
    .venv/bin/python tests/equivalence/measure.py --long     # also the 1000-step runs of the slow suite
    .venv/bin/python tests/equivalence/measure.py -k conv    # only some fixtures (merged into the JSON)

Runs exactly what tests/test_equivalence.py runs (it imports that module for the fixture list and the run
plan). Then regenerate the catalogue page: .venv/bin/dlc catalogue --markdown > docs/CATALOGUE.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


NOTES = [
    ("- Max-pool fixtures (maxpool1d, maxpool2d, maxpool2d_same_s2, specs/digits_cnn) are held to the "
    "float32 per-step bound like every other fixture and stay at ~0.1 of it here, but they are the most "
    "exposed to near-ties: two window values ~1e-7 apart can order differently after float32 rounding "
    "and the gradient then goes to another position (shared/EQUIVALENCE.md). The bigger "
    "slow/digits_cnn_bn does separate (see the long runs). In float64 they agree to ~1e-15."),
    ("- depthwiseconv2d_same_s2 (measured on 2026-11-30, a 2-core AMD EPYC with AVX-512): its float32 run "
    "meets a near-tie at step 55 and the step losses jump apart there (1e-4, then up to 7e-3); `dlc compare "
    "--dtype float32` says `equivalent`: float64 agrees to 8.2e-16 over all 200 steps, 145 past step 55, and "
    "the suite then holds where training ends over seeds. The same code and fixture measured 0.24 of the "
    "bound on the CPU of 2026-11-29: which value lands within rounding of a tie depends on the CPU's "
    "float32 kernels."),
    ("- batchnorm_after_bias (a Dense bias right before BatchNorm, W001): exact in float64 and per step in "
    "float32, but the bias has a true gradient of zero, Adam turns the backends' different float32 rounding "
    "noise into a random walk of size ~lr, and the bias and BN moving mean drift apart; inference uses the "
    "moving mean, so the float32 validation loss differs (an xfail in the suite, with the measured "
    "numbers)."),
    ("- loss_mse, specs/diabetes, slow/diabetes_rmsprop: the diabetes targets are not normalised (25 to "
    "346), so per-sample squared errors are 1e3 to 1e5 while the batch mean falls to a few hundred; TF's and "
    "torch's reductions round those large terms differently by a few ulps, which is a large share of a bound "
    "relative to the (smaller) mean. In float64 the same effect gives ~4e-12 on losses of ~3e4 (1e-16 "
    "relative)."),
    ("- Long float32 runs: besides max-pool, other kinks act like near-ties over 1000 steps (clipvalue's "
    "clip threshold, max_norm's clip, ReLU at 0), so the slow suite compares float32 per step only for the "
    "first 200 steps and then where training ends up. Over 1000 float64 steps (measure_bounds.py --steps "
    "1000) every run held 1e-13·max(1, |loss|) but two: separableconv2d_same_s2 (rounding amplified to "
    "1.9e-11) and upsampling2d_bilinear, whose |Δ| jumped in one step (570) from 4e-16 to 4.8e-12, a "
    "near-tie, and reached 5.9e-8 (the slow suite's test_long_float64 fails there)."),
]


def load_suite():
    sys.path.insert(0, str(ROOT / "tests"))  # as pytest does: the suite imports conftest
    spec = importlib.util.spec_from_file_location("test_equivalence", ROOT / "tests" / "test_equivalence.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rel(c) -> float:
    k, t = np.array(c.losses["keras"]), np.array(c.losses["torch"])
    return float(np.max(np.abs(k - t) / np.maximum(np.abs(k), 1e-12))) if len(k) else 0.0


def f32_excess(c) -> float:
    """max over steps of |Δ| / (2e-6 + 1e-6·|loss|): ≤ 1 means within the float32 bound at every step."""
    k, t = np.array(c.losses["keras"]), np.array(c.losses["torch"])
    return float(np.max(np.abs(k - t) / (2e-6 + 1e-6 * np.abs(k)))) if len(k) else 0.0


def fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.2g}"


def fixture_record(c64, c32, note: str, spec) -> dict:
    """One fixture's entry in dlc/equivalence_results.json."""
    from dlc.runtime.catalogue import items_used

    return {
        "f64_steps": c64.steps, "f64_step_loss": c64.max_abs_loss_diff,
        "f64_val_loss": c64.max_abs_val_loss_diff, "f64_weights": c64.final_weight_max_abs_diff,
        "f32_steps": c32.steps, "f32_step_loss": c32.max_abs_loss_diff,
        "f32_of_bound": round(f32_excess(c32), 4),
        "f32_val_loss": c32.max_abs_val_loss_diff, "f32_weights": c32.final_weight_max_abs_diff,
        "initial_weights": max(c64.initial_weight_max_abs_diff, c32.initial_weight_max_abs_diff),
        "note": note,
        "items": sorted([fam, name] for fam, name in items_used(spec)),
    }


def write_json(path: Path, records: dict[str, dict], meta: dict, known: list[str]) -> None:
    """Merge this run's fixtures into the JSON (a -k run updates only its fixtures); fixtures that no longer
    exist are dropped."""
    old = json.loads(path.read_text()).get("fixtures", {}) if path.exists() else {}
    merged = {f: r for f, r in {**old, **records}.items() if f in known}
    rows = ",\n".join(f"  {json.dumps(f)}: {json.dumps(merged[f], ensure_ascii=False)}"
                      for f in sorted(merged))
    # a line per fixture
    path.write_text(f'{{\n "meta": {json.dumps(meta)},\n "fixtures": {{\n{rows}\n }}\n}}\n')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", action="store_true", help="also the 1000-step runs (slow fixtures included)")
    ap.add_argument("-k", default="", help="only fixtures whose id contains this")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--json", default=str(ROOT / "dlc" / "equivalence_results.json"))
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    import torch

    torch.set_num_threads(1)  # as in the test suite
    suite = load_suite()
    paths = [p for p in suite.ALL if args.k in suite._id(p)]
    rows, long_rows = [], []
    records: dict[str, dict] = {}
    t_all = time.perf_counter()
    for path in paths:
        fid = suite._id(path)
        t0 = time.perf_counter()
        c64 = suite.run(path, "float64")
        c32 = suite.run(path, "float32")
        maxpool = suite.has_maxpool(suite.load(path))
        note = []
        if fid in suite.FLOAT32_VAL_DRIFT:
            note.append("float32 val_loss drift: xfail, documented")
        if c64.initial_weight_max_abs_diff or c32.initial_weight_max_abs_diff:
            note.append("INITIAL WEIGHTS DIFFER")
        vk, vt = np.array(c32.val_losses["keras"]), np.array(c32.val_losses["torch"])
        if np.any(np.abs(vk - vt) > 2e-6 + 1e-6 * np.abs(vk)):
            note.append("float32 val_loss over the bound")
        rows.append((fid, c64, c32, "; ".join(note), maxpool))
        records[fid] = fixture_record(c64, c32, "; ".join(note), suite.load(path))
        print(f"{fid:40s} f64 {fmt(c64.max_abs_loss_diff):>8} {fmt(c64.final_weight_max_abs_diff):>8}  "
              f"f32 {fmt(c32.max_abs_loss_diff):>8} ({f32_excess(c32):.2f} of bound)  "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    if args.long:
        for path in [p for p in suite.ALL + suite.SLOW_FIXTURES if args.k in suite._id(p)]:
            fid = suite._id(path)
            t0 = time.perf_counter()
            c64 = suite.run(path, "float64", long=True)
            c32 = suite.run(path, "float32", long=True)
            long_rows.append((fid, c64, c32, suite.has_maxpool(suite.load(path))))
            print(f"long {fid:35s} f64 {fmt(c64.max_abs_loss_diff):>8}  f32 {fmt(c32.max_abs_loss_diff):>8}  "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
    elapsed = time.perf_counter() - t_all

    out = [
        "# Equivalence results: Keras vs PyTorch, per fixture",
        "",
        (f"Written by `tests/equivalence/measure.py{' --long' if args.long else ''}` on "
        f"{datetime.date.today().isoformat()}: Keras {keras.__version__} (TensorFlow {tf.__version__}), "
        f"PyTorch {torch.__version__}, {platform.machine()} CPU, Python {platform.python_version()}; "
        f"{elapsed:.0f} s. The runs are the ones `tests/test_equivalence.py` makes."),
        "",
        ("Columns: max |Δ| of the per-step training loss over all steps; of the per-epoch validation loss; "
        "of every weight after training (BatchNorm moving statistics included). Initial weights were "
        "bit-identical (|Δ| = 0) in every run (a note says so where not). Bounds: float64 step loss ≤ "
        "1e-10·max(1, |loss|), final weights ≤ 1e-8; float32 step loss ≤ 2e-6 + 1e-6·|loss| (\"of bound\": "
        "the worst step's |Δ| as a fraction of its bound; ≤ 1 passes)."),
        "",
        ("| fixture | f64 steps | f64 step loss | f64 val_loss | f64 final weights | f32 steps | f32 step "
        "loss | of bound | f32 val_loss | f32 final weights | note |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for fid, c64, c32, note, _ in rows:
        out.append(f"| {fid} | {c64.steps} | {fmt(c64.max_abs_loss_diff)} | {fmt(c64.max_abs_val_loss_diff)} "
                   f"| {fmt(c64.final_weight_max_abs_diff)} | {c32.steps} | {fmt(c32.max_abs_loss_diff)} | "
                   f"{f32_excess(c32):.2f} | {fmt(c32.max_abs_val_loss_diff)} | "
                   f"{fmt(c32.final_weight_max_abs_diff)} | {note} |")
    worst64 = max((r[1].max_abs_loss_diff for r in rows), default=0.0)
    worstw = max((r[1].final_weight_max_abs_diff for r in rows), default=0.0)
    worst32 = max((f32_excess(r[2]) for r in rows), default=0.0)
    out += ["",
            (f"Worst over all fixtures: float64 step loss {fmt(worst64)}, float64 final weights "
            f"{fmt(worstw)}, float32 {worst32:.2f} of the bound.")]
    out += ["", "## Notes", "", *NOTES]
    if long_rows:
        out += [
            "",
            f"## Long runs ({suite.LONG_STEPS} steps, `pytest -m slow`)",
            "",
            ("Over long float32 runs a single near-tie can make the step losses jump apart, so the slow "
            "suite holds float32 to the per-step bound for the first 200 steps (max-pool models aside) and "
            "compares where training ends up (final loss and val_loss within 1e-3 relative, accuracy within "
            "2 points)."),
            "",
            ("| fixture | f64 steps | f64 step loss | f64 final weights | f32 step loss (first 200) | f32 "
            "step loss (all) | f32 final val_loss keras / torch |"),
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for fid, c64, c32, _ in long_rows:
            d = np.abs(np.array(c32.losses["keras"]) - np.array(c32.losses["torch"]))
            vk = c32.final_metrics["keras"].get("val_loss", float("nan"))
            vt = c32.final_metrics["torch"].get("val_loss", float("nan"))
            out.append(f"| {fid} | {c64.steps} | {fmt(c64.max_abs_loss_diff)} | "
                       f"{fmt(c64.final_weight_max_abs_diff)} | {fmt(float(d[:200].max()))} | "
                       f"{fmt(float(d.max()))} | {vk:.6g} / {vt:.6g} |")
    if args.k:  # a partial run: RESULTS.md keeps the whole table (add the printed rows by hand, or rerun all)
        print("\n".join(line for line in out if line.startswith("| ") and "fixture" not in line))
    else:
        Path(args.out).write_text("\n".join(out) + "\n")
    meta = {"date": datetime.date.today().isoformat(), "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "torch": torch.__version__, "machine": platform.machine(), "python": platform.python_version()}
    write_json(Path(args.json), records, meta, [suite._id(p) for p in suite.ALL])
    print(f"wrote {args.json}" + ("" if args.k else f" and {args.out}") + f" ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
