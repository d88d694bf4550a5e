"""Kernel launches per training step, counted on the CPU: dlc's torch step against the hand-written resident
loop of bench_mlp.py (torch-slicing), on the seed MLP or the small CNN.

On a GPU a small model's step costs its launches (a few µs each) more than its arithmetic, and no GPU is
needed to count them: every aten operation that is not a view is one kernel on CUDA. dlc's CUDA-only paths
are forced (the optimizers' torch._foreach_* updates), so the count is the one a GPU step launches; the hand
loop's torch.optim.RMSprop runs per variable here (on CUDA it takes its foreach path too, ~15 fewer).
`--by line` attributes dlc's operations to the lines of dlc that issue them.

    .venv/bin/python bench/count_ops.py [--spec bench/cnn.dlspec] [--batch-size 1024] [--by line]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# operations that make no kernel: views and bookkeeping
VIEWS = {"detach", "view", "t", "expand", "slice", "select", "unsqueeze", "lift_fresh", "alias",
         "_unsafe_view", "as_strided", "squeeze", "transpose", "permute", "reshape",
         "_record_function_enter_new", "_record_function_exit"}


def counter(by_line: bool):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: collections.Counter = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = str(func.overloadpacket).split(".")[-1]
            if name not in VIEWS:
                self.ops[_where() if by_line else name] += 1
            return func(*args, **(kwargs or {}))

    return Count()


def _where() -> str:
    frames = [f for f in traceback.extract_stack() if "/dlc/" in f.filename or "/backends/" in f.filename]
    if not frames:
        return "(outside dlc)"
    f = frames[-1]
    return f"{os.path.relpath(f.filename, HERE.parent)}:{f.lineno} {f.name}"


def dlc_ops(spec, x, y, steps: int, by_line: bool):
    from dlc.backends import session_class
    from dlc.backends.torch import optimizers
    from dlc.reference.weights import initial_weights

    optimizers.KerasOptimizer.foreach = property(lambda self: True)  # (the CUDA path)
    session = session_class("torch")(spec, weights=initial_weights(spec))
    handle, perm, bs = session.load_data(x, y), np.arange(len(x)), spec.train.batch_size
    session.train_epoch(handle, perm, bs)  # (buffers made, caches filled)
    with counter(by_line) as c:
        session.train_epoch(handle, perm, bs)
    return c.ops


def hand_ops(spec, x, labels, steps: int):
    import bench_mlp as B
    import torch

    hp = B.hparams(spec)
    model, opt, loss_fn = B._torch_model(hp, torch.device("cpu"))
    xt, yt, bs = B.torch_inputs(hp, x), torch.from_numpy(labels), hp["batch_size"]

    def epoch():
        B.slicing_epoch(model, opt, loss_fn, xt, yt, bs)

    epoch()
    with counter(False) as c:
        epoch()
    return c.ops


def main(argv=None) -> int:
    import bench_mlp as B

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=B.SPEC)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--by", choices=("op", "line"), default="op", help="count dlc's by operation or by line")
    args = ap.parse_args(argv)
    spec = B.compiled(args.spec, args.batch_size)
    n = args.batch_size * args.steps
    rng = np.random.default_rng(0)
    x = rng.random((n, *spec.input), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    y = np.eye(10, dtype=np.float32)[labels] if type(spec.loss).__name__.startswith("Categorical") else labels
    for name, ops in (("dlc-torch", dlc_ops(spec, x, y, args.steps, args.by == "line")),
                      ("torch-slicing", hand_ops(spec, x, labels, args.steps))):
        print(f"{name}: {sum(ops.values()) / args.steps:.1f} kernel launches per step "
              f"({args.spec.name}, batch {args.batch_size})")
        for op, k in ops.most_common(12 if args.by == "op" or name != "dlc-torch" else 40):
            print(f"  {k / args.steps:6.2f}  {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
