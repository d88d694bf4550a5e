"""Where dlc's training step spends its time, against hand-written loops, on the seed MLP (bench/mlp.dlspec).

Each variant trains the same steps; the cost is reported in milliseconds per step, as process CPU time and as
wall time (minimum and median over rounds, the variants interleaved). CPU time with one thread (the default
here) hardly moves when other processes share the machine, so it attributes costs reliably on a busy 2-core
box; wall time with the frameworks' default threads is what bench_mlp.py reports.

"(fix)" variants would be dlc with a candidate change from fixes.py applied to one session in this process
(none is left: the keras ones, uint32-dropout and graph-slicing, landed in backends/keras); the script checks
that each gives bit-identical losses and weights to dlc as it is. "(ref)" variants are not equivalent and
only show a cost (torch.optim.RMSprop, stock dropout, no dropout); the hand-written loops are those of
bench_mlp.py. Page faults and denormals depend on the whole process and on later epochs: bench_mlp.py (a fresh
process per variant) shows those.

    .venv/bin/python bench/profile_dlc.py --backend torch [--threads 1] [--steps 150] [--rounds 5]
    .venv/bin/python bench/profile_dlc.py --backend keras
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mlp import SPEC, hparams, load

# ----------------------------------------------------------------------------------------------- torch


def _torch_variants(spec, data, perm, bs):
    import torch
    import torch.nn.functional as F

    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights

    class TorchRMSprop:
        def __init__(self, params):
            self.o = torch.optim.RMSprop(params, lr=spec.optimizer.learning_rate, alpha=spec.optimizer.rho,
                                         eps=spec.optimizer.epsilon)
            self.lr = spec.optimizer.learning_rate

        def zero_grad(self):
            self.o.zero_grad()

        def step(self):
            self.o.step()

    dropout = next(layer for layer in spec.layers if layer.kind == "Dropout")

    class StockDropout(torch.nn.Module):
        def forward(self, x):
            return F.dropout(x, dropout.rate, self.training)

    def dlc(opt=None, drop=None):
        S = session_class("torch")(spec, device="cpu", weights=initial_weights(spec))
        if opt == "torch":
            S.opt = TorchRMSprop(list(S.net.parameters()))
        if drop is not None:
            # S.net (backends/torch/layers.Sequential) holds each layer as a child named after the spec's
            # layer, in order: replacing the child keeps its place; S.layers maps the names to the modules
            module = StockDropout() if drop == "stock" else torch.nn.Identity()
            setattr(S.net, dropout.name, module)
            S.layers[dropout.name] = module
        h = S.load_data(data.train.x, data.train.y)

        def epoch():
            losses, _, _ = S.train_epoch(h, perm, bs)
            return losses

        epoch.session = S
        return epoch

    return {
        "dlc as is": dlc(),
        "dlc + torch-rmsprop (ref)": dlc(opt="torch"),
        "dlc + stock-dropout (ref)": dlc(drop="stock"),
        "dlc + no-dropout (ref)": dlc(drop="none"),
        "hand torch slicing": _torch_hand_slicing(spec, data, perm, bs),
    }


def _torch_hand_slicing(spec, data, perm, bs):
    """bench_mlp.py's hand-written torch loop over the same number of samples (its own random order)."""
    import torch
    from bench_mlp import _torch_model

    x = torch.from_numpy(data.train.x.astype("float32"))
    y = torch.from_numpy(data.train.labels)
    model, opt, loss_fn = _torch_model(hparams(spec), torch.device("cpu"))
    n = len(perm)

    def epoch():
        p = torch.randperm(len(x))[:n]
        total = torch.zeros(())
        for i in range(0, n, bs):
            idx = p[i:i + bs]
            xb, yb = x[idx], y[idx]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                total += loss.detach() * len(idx)
        return total.item()

    return epoch


# ----------------------------------------------------------------------------------------------- keras


def _keras_variants(spec, data, perm, bs):
    import keras

    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights

    def dlc(drop=None):
        S = session_class("keras")(spec, device="cpu", weights=initial_weights(spec))
        if drop == "none":
            S.klayers[spec.layers[1].name].step_var = None
        h = S.load_data(data.train.x, data.train.y)

        def epoch():
            losses, _, _ = S.train_epoch(h, perm, bs)
            return losses

        epoch.session = S
        return epoch

    def fit(rate):
        hp = hparams(spec)
        x = data.train.x[:len(perm)].astype("float32")
        y = data.train.y[:len(perm)].astype("float32")
        model = keras.Sequential([keras.Input((x.shape[1],)),
                                  keras.layers.Dense(hp["units"], activation="relu"),
                                  keras.layers.Dropout(rate),
                                  keras.layers.Dense(hp["classes"], activation="softmax")])
        model.compile(optimizer=keras.optimizers.RMSprop(hp["lr"], rho=hp["rho"], epsilon=hp["eps"]),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        return lambda: model.fit(x, y, batch_size=bs, epochs=1, shuffle=True, verbose=0)

    out = {
        "dlc as is": dlc(),  # (fixes.py's keras candidates, uint32-dropout and graph-slicing, landed)
        "dlc + no-dropout (ref)": dlc("none"),
        "keras-fit": fit(hparams(spec)["rate"]),
        "keras-fit Dropout(0) (ref)": fit(0.0),
    }
    return {k: v for k, v in out.items() if v is not None}


# ----------------------------------------------------------------------------------------------- driver


def _faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _same(a, b) -> bool:
    wa, wb = a.session.get_weights(), b.session.get_weights()
    return all(np.array_equal(wa[k][w], wb[k][w]) for k in wa for w in wa[k])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="per-step cost of dlc's training step vs hand-written loops")
    ap.add_argument("--backend", choices=("torch", "keras"), default="torch")
    ap.add_argument("--threads", type=int, default=1, help="framework threads (0: the frameworks' defaults)")
    ap.add_argument("--steps", type=int, default=150, help="steps per timed pass")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profiler", action="store_true",
                    help="also print torch.profiler's top ops for dlc as is (torch)")
    args = ap.parse_args(argv)

    spec, data = load(SPEC, None)
    bs = spec.train.batch_size
    from dlc.reference.rng import epoch_permutation

    perm = epoch_permutation(spec.seed, 0, len(data.train.x))[:args.steps * bs]
    if args.backend == "torch":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        variants = _torch_variants(spec, data, perm, bs)
        threads = torch.get_num_threads()
    else:
        import tensorflow as tf

        if args.threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        variants = _keras_variants(spec, data, perm, bs)
        threads = args.threads or "default"

    # equivalence of the fixes: one pass each from the same initial weights, bit for bit
    ref = variants["dlc as is"]
    ref_losses = ref()
    for name, f in variants.items():
        if name == "dlc as is":
            continue
        out = f()  # also the warm-up pass
        if "(fix)" in name or "both fixes" in name:
            same = np.array_equal(out, ref_losses) and _same(ref, f)
            verdict = "bit-identical" if same else "DIFFER"
            print(f"{name}: losses and weights after {args.steps} steps {verdict}")

    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    faults = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, f in variants.items():
            t0, c0, f0 = time.perf_counter(), time.process_time(), _faults()
            f()
            wall[name].append((time.perf_counter() - t0) / args.steps * 1e3)
            cpu[name].append((time.process_time() - c0) / args.steps * 1e3)
            faults[name].append((_faults() - f0) / args.steps)
    base = min(cpu["dlc as is"])
    print(f"\n{args.backend}: batch {bs}, {args.steps} steps x {args.rounds} rounds, threads {threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    head = (f"{'variant':<30}{'CPU ms/step':>12}{'median':>8}{'wall ms/step':>13}{'median':>8}"
            f"{'faults/step':>12}{'vs as is':>10}")
    print(head)
    print("-" * len(head))
    for name in variants:
        c, w = cpu[name], wall[name]
        print(f"{name:<30}{min(c):>12.2f}{np.median(c):>8.2f}{min(w):>13.2f}{np.median(w):>8.2f}"
              f"{np.median(faults[name]):>12.0f}{base / min(c):>9.2f}x")

    if args.profiler and args.backend == "torch":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ref()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    return 0


if __name__ == "__main__":
    sys.exit(main())
