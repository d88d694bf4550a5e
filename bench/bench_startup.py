"""Whole-process wall time of `dlc run` on a small spec (the bundled iris, 40 epochs: training is ~0.1 s of
it on torch), where the start-up is the run: imports, data, the run folder and its curves. `--baseline DIR`
times another checkout of dlc (e.g. `git worktree add --detach /tmp/old REV`) in the same rounds,
interleaved, so that the machine's load falls on both alike. `--epochs N` trains N epochs instead of the
spec's: with many short epochs, what each epoch costs besides its training (the run folder's per-epoch files,
the evidence, the epoch table) is the run.

    .venv/bin/python bench/bench_startup.py --rounds 3 [--baseline /tmp/old] [--spec specs/iris.dlspec]
    .venv/bin/python bench/bench_startup.py --rounds 3 --epochs 1500 --backends torch [--baseline /tmp/old]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def once(tree: Path, backend: str, spec: Path, out: Path, epochs: int | None = None) -> float:
    """Seconds from start to exit of `python -m dlc run` of `tree`'s dlc (run from a neutral folder, so the
    current directory does not put another dlc first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    more = ["--epochs", str(epochs)] if epochs else []
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dlc", "run", str(spec), "--backend", backend, "--out", str(out),
                    "--quiet", "--replace", *more], check=True, env=env, cwd=out.parent,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="torch,keras")
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "iris.dlspec")
    parser.add_argument("--baseline", type=Path, help="another checkout of dlc, timed in the same rounds")
    parser.add_argument("--epochs", type=int, help="train this many epochs (default: the spec's)")
    args = parser.parse_args()
    trees = {"dlc": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, tree in trees.items():
                for backend in args.backends.split(","):
                    t = once(tree, backend, args.spec.resolve(), Path(tmp) / "run", args.epochs)
                    times.setdefault((name, backend), []).append(t)
                    print(f"round {r}  {name:8}  {backend:5}  {t:6.2f} s", flush=True)
    print("\nmedian whole-process wall time")
    for (name, backend), ts in times.items():
        base = times.get(("baseline", backend))
        ratio = f"  {statistics.median(base) / statistics.median(ts):.2f}x the baseline" \
            if base and name == "dlc" else ""
        spread = f"({min(ts):.2f}-{max(ts):.2f})"
        print(f"  {name:8}  {backend:5}  {statistics.median(ts):6.2f} s  {spread}{ratio}")


if __name__ == "__main__":
    main()
