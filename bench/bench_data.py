"""The data path's time and peak memory: what `dlc run` does before training starts, on the 50,000 x 784
float32 npz of make_data.py with `normalize: standard`, each case in a fresh process.

    .venv/bin/python bench/bench_data.py [--rounds 3] [--normalize standard|none] [--backends torch,keras]
                                         [--data FILE.npz]   (e.g. make_data.py --n 185000: a 0.58 GB x)

Per case: `import` (the framework, alone: the baseline RSS), `prepare` (load, split, normalize: wall s),
`load_data` (the session's tensors of the training and validation parts: wall s), and the process's peak RSS
(ru_maxrss) over its RSS with the framework and the model built before any data is read ("framework"), as a
multiple of the data file's array (150 MB). `--variants` runs other versions of the data path, interleaved:
`git show HEAD:dlc/runtime/data.py > /tmp/data_head.py` and `--variants /tmp/data_head.py,dlc-run`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = (HERE / "mlp.dlspec").read_text()

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
backend, spec_path = sys.argv[1], Path(sys.argv[2])
if backend == "torch":
    import torch
else:
    import os; os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2"); import keras
import numpy as np
from dlc.compiler import compile_file
from dlc.runtime.data import prepare
variant = sys.argv[3]
if variant.endswith(".py"):  # another version of dlc/runtime/data.py (e.g. git show HEAD:dlc/runtime/data.py)
    import importlib.util
    m = importlib.util.spec_from_file_location("dlc.runtime.data_other", variant)
    mod = importlib.util.module_from_spec(m); sys.modules[m.name] = mod
    m.loader.exec_module(mod); prepare = mod.prepare
from dlc.backends import session_class
spec = compile_file(spec_path).spec
session = session_class(backend)(spec)  # the framework and the model, before any data
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
data = (prepare(spec, spec_path.parent, dtype=spec.dtype) if variant == "dlc-run"
        else prepare(spec, spec_path.parent))
t_prepare = time.perf_counter() - t1
t2 = time.perf_counter()
h = session.load_data(data.train.x, data.train.y)
v = session.load_data(data.val.x, data.val.y)
t_load = time.perf_counter() - t2
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"import_s": t_import, "prepare_s": t_prepare, "load_data_s": t_load, "base_mb": base,
                  "peak_mb": peak, "dtype": str(data.train.x.dtype),
                  "x_sum": float(np.float64(data.train.x[:1000].astype(np.float64).sum()))}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--normalize", default="standard")
    ap.add_argument("--backends", default="torch,keras")
    ap.add_argument("--variants", default="dlc-run",
                    help="dlc-run (prepare as `dlc run` calls it), float64 (prepare without a dtype: the "
                         "float64 Dataset), or the path of another version of dlc/runtime/data.py")
    ap.add_argument("--data", type=Path, default=HERE / "data" / "mnist_synth.npz",
                    help="the npz to read (x, y); default make_data.py's file")
    ap.add_argument("--json")
    args = ap.parse_args()
    data = args.data.resolve()
    if not data.exists():
        sys.exit("make the data first: .venv/bin/python bench/make_data.py")
    import numpy as np

    with np.load(data) as f:
        data_mb = f["x"].nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "mlp.dlspec"
        spec.write_text(SPEC.replace('npz("data/mnist_synth.npz")', f'npz("{data}")')
                        .replace("normalize: none", f"normalize: {args.normalize}"))
        rows = []
        for r in range(args.rounds):
            for backend in args.backends.split(","):
                for variant in args.variants.split(","):
                    out = subprocess.run([sys.executable, "-c", CHILD, backend, str(spec), variant],
                                         capture_output=True, text=True)
                    if out.returncode:
                        sys.exit(out.stderr)
                    row = json.loads(out.stdout.strip().splitlines()[-1]) | {"backend": backend, "round": r,
                                                                              "variant": variant}
                    row["extra_x_data"] = (row["peak_mb"] - row["base_mb"]) / data_mb
                    rows.append(row)
                    print(f"{backend:6} {Path(variant).name:12} round {r}: prepare {row['prepare_s']:.2f} s, "
                          f"load_data {row['load_data_s']:.2f} s, peak {row['peak_mb']:.0f} MB "
                          f"(framework alone "
                          f"{row['base_mb']:.0f} MB; data {data_mb:.0f} MB: peak - framework = "
                          f"{row['extra_x_data']:.2f}x the data), x {row['dtype']}, check {row['x_sum']:.6f}",
                          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"data_mb": data_mb, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
