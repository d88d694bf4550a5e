"""The training evidence's cost on the seed MLP (bench/mlp.dlspec: 784-512-Dropout(0.3)-10, RMSprop, batch
128, 45,000 training samples): dlc's loop with and without the evidence recorder, each backend, in one
process.

Two numbers per backend:
  direct   the time spent in the recorder (probe, get_weights, norms, writing evidence.json) over the time of
           the rest of the loop (training steps and validation), summed over epochs 2..E of every round;
  A/B      wall time of epochs 2..E with the recorder over without it (rounds interleaved; noisier on a
           shared machine, since it differences two long runs).

    .venv/bin/python bench/make_data.py          # once
    .venv/bin/python bench/evidence_overhead.py --epochs 3 --rounds 3 [--backends torch,keras]
    .venv/bin/python bench/evidence_overhead.py --threads 1      # one thread each: robust to other load
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Timed:
    """A Recorder that times its own calls."""

    def __init__(self, rec):
        self.rec, self.spent = rec, []

    def begin(self, *args):
        t0 = time.perf_counter()
        self.rec.begin(*args)
        self.begin_s = time.perf_counter() - t0

    def record(self, *args):
        t0 = time.perf_counter()
        out = self.rec.record(*args)
        self.spent.append(time.perf_counter() - t0)
        return out


def one(spec, data, backend: str, evidence: bool, folder: Path) -> tuple[list[float], list[float], float]:
    """(wall seconds per epoch, recorder seconds per epoch, begin seconds)."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.evidence import Recorder
    from dlc.runtime.loop import train

    session = session_class(backend)(spec, device="cpu", weights=initial_weights(spec))
    rec = Timed(Recorder(spec, folder)) if evidence else None
    walls: list[float] = []
    last = [time.perf_counter()]

    def on_epoch(_row):
        now = time.perf_counter()
        walls.append(now - last[0])
        last[0] = now

    t0 = time.perf_counter()
    last[0] = t0
    train(session, spec, data, on_epoch=on_epoch, evidence=rec)
    return walls, (rec.spent if rec else [0.0] * len(walls)), (rec.begin_s if rec else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", default="torch,keras")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads per framework (1: robust to other load on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        from dlc.backends import limit_threads

        for backend in args.backends.split(","):
            limit_threads(backend, args.threads)
    from dlc.compiler import compile_file
    from dlc.runtime.data import prepare

    spec = compile_file(HERE / "mlp.dlspec").raise_for_errors()
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": args.epochs})})
    data = prepare(spec, HERE)
    print(f"seed MLP, {len(data.train.x)} training samples, {args.epochs} epochs (the first is the warm-up), "
          f"{args.rounds} rounds")
    for backend in args.backends.split(","):
        with_w, without_w, spent, rest, begins = [], [], [], [], []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                w, s, b = one(spec, data, backend, True, Path(tmp))
            with_w += w[1:]
            spent += s[1:]
            begins.append(b)
            rest += [a - c for a, c in zip(w[1:], s[1:], strict=True)]
            w0, _, _ = one(spec, data, backend, False, Path("."))
            without_w += w0[1:]
        direct = sum(spent) / sum(rest)
        ab = sum(with_w) / sum(without_w) - 1
        print(f"{backend}: recorder {1000 * sum(spent) / len(spent):.1f} ms/epoch (begin "
              f"{1000 * min(begins):.1f} ms), epoch {sum(rest) / len(rest):.2f} s without it: "
              f"direct overhead "
              f"{100 * direct:.2f}%; A/B wall {sum(with_w) / len(with_w):.2f} s vs "
              f"{sum(without_w) / len(without_w):.2f} s per epoch: {100 * ab:+.2f}%")


if __name__ == "__main__":
    main()
