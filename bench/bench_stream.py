"""Training from an npy source bigger than the process may hold: peak RSS and wall time.

    .venv/bin/python bench/bench_stream.py [--rows 1000000] [--features 784] [--steps N] [--backend torch]
                                           [--small-rows 20000] [--small-steps 100] [--rounds R]
                                           [--skip-big] [--dir TMP] [--keep] [--json FILE]

Writes x.npy (rows x features float32, ~3.1 GB at the defaults, written a chunk at a time) and y.npy
(labels 0-9) in a temporary folder (deleted afterwards unless --keep), then trains a small MLP (784-128-10,
Adam, batch 128, `normalize: standard`, holdout(val=0.05, test=0.05), float32) from it in a fresh process:

- without --steps: `dlc run SPEC --epochs 1` (one whole epoch, the final metrics of train, val and test, the
  evidence, the model saved): the real command;
- with --steps N: the same spec through the API in a fresh process (`dlc.Model(spec).fit(max_steps=N)`, then
  the validation loss), for a bounded time on a busy machine (`dlc run` has no step limit).

Each case's peak RSS is the child's own (os.wait4's ru_maxrss: the process and nothing else), its wall time
the whole process (import, data checks and statistics, training). The streaming overhead per step: the
same model for --small-steps steps on a small file (--small-rows) as npy (streamed) and as npz (in memory),
each in a fresh process, time per step from the history (train_epoch only). Target: peak < 1.6 GB for the
big file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DLC = ROOT / ".venv" / "bin" / "dlc"

SPEC = """\
model bench_stream {
  seed: 1
  data {
    source: SOURCE
    normalize: standard
    split: holdout(val=0.05, test=0.05)
  }
  input: (FEATURES)
  layers {
    Dense(128, activation=relu)
    Dense(10, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.001)
  train {
    epochs: 1
    batch_size: 128
  }
}
"""

# the API child: fit for a fixed number of steps, then the validation loss; prints the history as JSON
STEPS_CHILD = r"""
import json, sys, time
import dlc
t0 = time.perf_counter()
spec = dlc.load(sys.argv[1])
model = dlc.Model(spec, backend=sys.argv[2])
hist = model.fit(max_steps=int(sys.argv[3]))
print(json.dumps({"rows": hist.rows, "steps": len(hist.step_losses), "wall_in_s": time.perf_counter() - t0}))
"""


def write_data(folder: Path, rows: int, features: int, chunk: int = 20000, seed: int = 0) -> None:
    """x.npy (float32, MNIST-like values in [0, 1]: a class template plus noise) and y.npy, a chunk at a time
    with plain writes: this process never holds x, nor maps it (Linux carries a parent's peak RSS into the
    ru_maxrss of the children it starts, so the parent stays small)."""
    rng = np.random.default_rng(seed)
    templates = rng.random((10, features), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    with open(folder / "x.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                  "fortran_order": False, "shape": (rows, features)})
        for lo in range(0, rows, chunk):
            hi = min(lo + chunk, rows)
            noise = rng.random((hi - lo, features), dtype=np.float32)
            fh.write((0.5 * templates[y[lo:hi]] + 0.5 * noise).tobytes())
    np.save(folder / "y.npy", y)


def write_spec(folder: Path, name: str, source: str, features: int) -> Path:
    path = folder / f"{name}.dlspec"
    path.write_text(SPEC.replace("SOURCE", source).replace("FEATURES", str(features)))
    return path


def measure(cmd: list[str]) -> dict:
    """Run `cmd` as a child: its wall time, its own peak RSS (MB; os.wait4's rusage of that child), exit code,
    stdout and the end of stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024, "rc": proc.returncode,
                "stdout": out.read(), "stderr": err.read()[-3000:]}


def run_case(spec: Path, backend: str, steps: int | None, out: Path) -> dict:
    """One training in a fresh process; adds "rows" (the history) and "steps" when it succeeded."""
    if steps is None:
        r = measure([str(DLC), "run", str(spec), "--backend", backend, "--out", str(out), "--epochs", "1",
                     "--quiet"])
        if r["rc"] == 0:
            r["rows"] = json.loads((out / "history.json").read_text())
            r["steps"] = sum(-(-round(row["samples_per_s"] * row["time_s"]) // 128) for row in r["rows"])
    else:
        r = measure([sys.executable, "-c", STEPS_CHILD, str(spec), backend, str(steps)])
        if r["rc"] == 0:
            r.update(json.loads(r["stdout"].strip().splitlines()[-1]))
    return r


def per_step_ms(r: dict) -> float | None:
    """Milliseconds per training step: train_epoch's own time (the history's time_s) over the steps."""
    if not r.get("rows"):
        return None
    return 1000 * sum(row["time_s"] for row in r["rows"]) / max(1, r["steps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=784)
    ap.add_argument("--steps", type=int, default=None, help="a fixed number of steps (the API), not 1 epoch")
    ap.add_argument("--backend", default="torch", choices=["torch", "keras"])
    ap.add_argument("--small-rows", type=int, default=20000)
    ap.add_argument("--small-steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=1, help="small cases: rounds, interleaved (the median)")
    ap.add_argument("--skip-big", action="store_true", help="only the small cases (the per-step overhead)")
    ap.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    ap.add_argument("--keep", action="store_true", help="keep the data files")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dlc-stream-", dir=args.dir))
    results: dict = {"rows": args.rows, "features": args.features, "backend": args.backend,
                     "steps": args.steps}
    try:
        if not args.skip_big:
            big_case(args, folder, results)
        small_cases(args, folder, results)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


def big_case(args, folder: Path, results: dict) -> None:
    """The big file through `dlc run` (or --steps through the API): wall time and peak RSS."""
    t0 = time.perf_counter()
    big = folder / "big"
    big.mkdir()
    write_data(big, args.rows, args.features)
    size = (big / "x.npy").stat().st_size
    results["x_gb"] = size / 1e9
    results["write_s"] = time.perf_counter() - t0
    print(f"wrote {size / 1e9:.2f} GB x.npy ({args.rows:,} x {args.features} float32) in "
          f"{results['write_s']:.0f} s", flush=True)

    spec = write_spec(big, "big", 'npy("x.npy", "y.npy")', args.features)
    r = run_case(spec, args.backend, args.steps, big / "run")
    results["big"] = {k: v for k, v in r.items() if k not in ("stdout",)}
    ms = per_step_ms(r)
    what = "1 epoch (dlc run)" if args.steps is None else f"{args.steps} steps"
    print(f"npy {args.rows:,} rows, {what}: "
          f"rc {r['rc']}, wall {r['wall_s']:.1f} s, peak RSS {r['peak_mb']:.0f} MB"
          + (f", {ms:.2f} ms/step" if ms else "") + ("" if r["rc"] == 0 else f"\n{r['stderr']}"),
          flush=True)
    shutil.rmtree(big / "run", ignore_errors=True)
    (big / "x.npy").unlink()  # (the disk space back before the small cases)


def small_cases(args, folder: Path, results: dict) -> None:
    """The same model on a small file as npz (in memory) and npy (streamed): time per step, interleaved."""
    small = folder / "small"
    small.mkdir()
    write_data(small, args.small_rows, args.features, seed=1)
    to_npz = ("import numpy as np, sys; f = sys.argv[1]; "
              "np.savez(f + '/d.npz', x=np.load(f + '/x.npy'), y=np.load(f + '/y.npy'))")
    subprocess.run([sys.executable, "-c", to_npz, str(small)], check=True)  # (this process stays small)
    times: dict[str, list[float]] = {"npz": [], "npy": []}
    for _ in range(args.rounds):
        for name, source in (("npz", 'npz("d.npz")'), ("npy", 'npy("x.npy", "y.npy")')):
            spec = write_spec(small, name, source, args.features)
            r = run_case(spec, args.backend, args.small_steps, small / f"run_{name}")
            ms = per_step_ms(r)
            results.setdefault(f"small_{name}", []).append(
                {k: v for k, v in r.items() if k != "stdout"} | {"ms_per_step": ms})
            if ms:
                times[name].append(ms)
            print(f"{name} {args.small_rows:,} rows, {args.small_steps} steps: rc {r['rc']}, wall "
                  f"{r['wall_s']:.1f} s, peak RSS {r['peak_mb']:.0f} MB, "
                  + (f"{ms:.2f} ms/step" if ms else "no history")
                  + ("" if r["rc"] == 0 else f"\n{r['stderr']}"),
                  flush=True)
    if times["npy"] and times["npz"]:
        a, b = float(np.median(times["npy"])), float(np.median(times["npz"]))
        results["overhead_ms_per_step"] = a - b
        print(f"streaming overhead (medians of {args.rounds}): {a - b:+.2f} ms/step ({a / b:.2f}x the "
              "in-memory step)")


if __name__ == "__main__":
    main()
