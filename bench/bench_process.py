"""Whole-process time of the seed MLP: `dlc run` on each backend against hand-written Keras `fit` and a
hand-written torch loop (bench/hand/), each a fresh process from start to exit (imports, data, training,
validation, run folder), variants interleaved round after round, on a quiet machine and with --busy N other
processes spinning on a core each.

    .venv/bin/python bench/bench_process.py [--epochs 5] [--rounds 2] [--busy 0,1] [--variants ...]

Variants: dlc-torch, dlc-keras (`dlc run bench/mlp.dlspec` with E epochs), dlc-torch-fixed (the same with
DLC_THREAD_GOVERNOR=0: torch's default threads, as before the governor), keras-fit, torch-loop; with
`--baseline DIR` also dlc-keras@base and dlc-torch@base: `python -P -m dlc run ...` with PYTHONPATH=DIR,
another version of dlc (a copy of the repository's dlc/, backends/, compiler/, grammar/ in DIR, e.g. `git
worktree add` or `cp -a` of a checkout) to compare against in the same interleaved rounds. Printed per
run: wall s, CPU s, peak RSS, and `others`: the share of the machine's CPUs used by other processes (the
spinners included) during the run, from /proc/stat. Then, per load, the ratio of each variant's median wall
time to keras-fit's (hand Keras time / variant time: above 1 is faster than hand Keras)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
DLC = str(Path(PY).parent / "dlc")


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except OSError:
        return 0, 0
    return sum(fields) - fields[3] - fields[4], sum(fields)


def commands(spec: Path, epochs: int, out: Path, baseline: str | None = None
             ) -> dict[str, tuple[list[str], dict]]:
    run = [DLC, "run", str(spec), "--out", str(out), "--backend"]
    # -P: not the working directory (this repository) first on sys.path, PYTHONPATH's dlc instead
    base_run = [PY, "-P", "-m", "dlc", "run", str(spec), "--out", str(out), "--backend"]
    base_env = {"PYTHONPATH": str(Path(baseline).resolve())} if baseline else {}
    return {
        "dlc-keras@base": ([*base_run, "keras"], base_env),
        "dlc-torch@base": ([*base_run, "torch", "--device", "cpu"], base_env),
        "dlc-torch": ([*run, "torch", "--device", "cpu"], {}),
        "dlc-torch-fixed": ([*run, "torch", "--device", "cpu"], {"DLC_THREAD_GOVERNOR": "0"}),
        "dlc-keras": ([*run, "keras"], {}),
        "keras-fit": ([PY, str(HERE / "hand" / "keras_fit.py"), "--epochs", str(epochs)], {}),
        "torch-loop": ([PY, str(HERE / "hand" / "torch_loop.py"), "--epochs", str(epochs)], {}),
    }


def run_one(cmd: list[str], env: dict, timeout: float) -> dict:
    hz = os.sysconf("SC_CLK_TCK")
    b0, t0 = machine_busy()
    w0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ | env,
                         cwd=ROOT)
    deadline = w0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - w0
    b1, t1 = machine_busy()
    cpu = ru.ru_utime + ru.ru_stime
    cpus = os.cpu_count() or 1
    others = max(0.0, (b1 - b0) / hz - cpu) / (wall * cpus) if t1 > t0 else None
    err = p.stderr.read().decode()[-400:] if p.stderr else ""
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": ru.ru_maxrss / 1024, "others": others,
            "ok": os.waitstatus_to_exitcode(status) == 0, "timed_out": wall >= timeout, "stderr": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busy", default="0,1", help="numbers of spinning processes, one condition each")
    ap.add_argument("--variants", default="dlc-torch,dlc-keras,keras-fit,torch-loop,dlc-torch-fixed")
    ap.add_argument("--timeout", type=float, default=300.0, help="per process, s")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another version of dlc for the @base variants (a folder holding its dlc/ package)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if "@base" in args.variants and not args.baseline:
        sys.exit("the @base variants need --baseline DIR")
    if not (HERE / "data" / "mnist_synth.npz").exists():
        sys.exit("make the data first: .venv/bin/python bench/make_data.py")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "mlp.dlspec"
        spec.write_text((HERE / "mlp.dlspec").read_text()
                        .replace('npz("data/', f'npz("{HERE}/data/')
                        .replace("epochs: 3", f"epochs: {args.epochs}"))
        for busy in [int(b) for b in args.busy.split(",")]:
            spinners = [subprocess.Popen([PY, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                time.sleep(1.0 if busy else 0.0)
                for r in range(args.rounds):
                    for v in args.variants.split(","):
                        out = Path(tmp) / f"run_{busy}_{r}_{v}"
                        cmd, env = commands(spec, args.epochs, out, args.baseline)[v]
                        row = run_one(cmd, env, args.timeout) | {"variant": v, "busy": busy, "round": r}
                        results.append(row)
                        bad = " TIMED OUT" if row["timed_out"] else " FAILED " + row["stderr"]
                        flag = "" if row["ok"] else bad
                        print(f"busy={busy} round {r} {v:16} wall {row['wall_s']:7.2f} s  "
                              f"cpu {row['cpu_s']:7.2f} s  peak {row['peak_mb']:6.0f} MB  "
                              f"others {row['others'] or 0:.2f}{flag}", flush=True)
            finally:
                for s in spinners:
                    s.kill()
                    s.wait()
    print()
    for busy in sorted({r["busy"] for r in results}):
        rows = [r for r in results if r["busy"] == busy]
        med = {v: statistics.median(r["wall_s"] for r in rows if r["variant"] == v)
               for v in dict.fromkeys(r["variant"] for r in rows)}
        others = statistics.median(r["others"] or 0 for r in rows)
        base = med.get("keras-fit")
        print(f"busy={busy} (others' median CPU share {others:.2f}): median wall s, keras-fit / variant")
        for v, m in med.items():
            print(f"  {v:16} {m:7.2f} s  {base / m if base else float('nan'):.2f}x")
    if args.json:
        meta = {"uname": " ".join(os.uname()), "cpus": os.cpu_count(), "args": vars(args)}
        Path(args.json).write_text(json.dumps(meta | {"results": results}, indent=1))


if __name__ == "__main__":
    main()
