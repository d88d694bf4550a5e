"""Does torch's thread count change dlc-torch's results? The seed MLP (bench/mlp.dlspec) trained for --steps
steps on the first --n samples in float64 and float32 with 1 thread, 2 threads, and the governor (which
switches between them), each in a fresh process; prints whether the per-step losses and final weights are
bit-identical.

    .venv/bin/python bench/check_threads.py [--steps 200] [--n 12800]"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import hashlib, json, sys
from pathlib import Path
import numpy as np, torch
from dlc.compiler import compile_file
from dlc.runtime.data import prepare
from dlc.backends import session_class
from dlc.reference.weights import initial_weights
mode, dtype, steps, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
spec = compile_file(Path(sys.argv[5])).spec.model_copy(update={"dtype": dtype})
data = prepare(spec, Path(sys.argv[5]).parent, dtype=dtype)
session = session_class("torch")(spec, weights=initial_weights(spec))
if mode != "governor":
    session.governor = None
    torch.set_num_threads(int(mode))
h = session.load_data(data.train.x[:n], data.train.y[:n])
perm = np.random.default_rng(0).permutation(n)
losses = []
seen = set()
while len(losses) < steps:
    out = session.train_epoch(h, perm, 128, progress=lambda *a: seen.add(torch.get_num_threads()))
    losses += out[0].tolist()
w = session.get_weights()
digest = hashlib.sha256(b"".join(a.tobytes() for ws in w.values() for a in ws.values())).hexdigest()[:16]
print(json.dumps({"losses": losses[:steps], "weights": digest, "threads_seen": sorted(seen),
                  "changes": getattr(session.governor, "changes", 0)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--n", type=int, default=12800)
    ap.add_argument("--dtypes", default="float64,float32")
    args = ap.parse_args()
    for dtype in args.dtypes.split(","):
        runs = {}
        for mode in ("1", "2", "governor"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, dtype, str(args.steps), str(args.n),
                                  str(HERE / "mlp.dlspec")], capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        ref = runs["1"]
        for mode, r in runs.items():
            same = r["losses"] == ref["losses"]
            diff = max(abs(a - b) for a, b in zip(r["losses"], ref["losses"], strict=True))
            verdict = "bit-identical to 1 thread" if same else f"max |Δ| {diff:.3g}"
            print(f"{dtype} threads={mode:8}: losses {verdict}"
                  f", weights {'identical' if r['weights'] == ref['weights'] else 'differ'}; threads seen "
                  f"{r['threads_seen']}, governor changes {r['changes']}", flush=True)


if __name__ == "__main__":
    main()
