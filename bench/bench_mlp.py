"""dlc against hand-written Keras and PyTorch: the seed MLP (784-512-Dropout(0.3)-10, RMSprop, batch 128)
on the same 45,000 training samples, in one run.

Variants (each in a fresh Python process, one after the other, with the frameworks' default threads):
  dlc-torch         dlc's torch backend through the Python API, as `dlc run` does
                    (compile_file, prepare, Session(weights=initial_weights), loop.train)
  dlc-keras         dlc's keras backend, likewise
  dlc-torch-compile dlc-torch with `--compile` (torch.compile of the step; only with --variants)
  dlc-torch-graphs  dlc-torch with DLC_CUDA_GRAPHS=1 (full batches replayed as one CUDA graph; cuda only)
  keras-fit         hand-written Keras: keras.Sequential + compile + model.fit(shuffle=True, verbose=0)
  torch-dataloader  hand-written PyTorch: DataLoader(TensorDataset, shuffle=True), nn.Linear/nn.Dropout,
                    nn.CrossEntropyLoss, torch.optim.RMSprop
  torch-slicing     hand-written PyTorch, data kept as (device) tensors, batches cut by randperm indexing

Every variant times its training passes only (no validation, no data loading), epoch by epoch. Epoch 1 is
the warm-up (tracing, allocator, caches) and is reported separately; throughput is train samples per second
over epochs 2..E. The hand-written loops accumulate loss and accuracy on the device and read them once per
epoch, like dlc; they are the loops one would write, nothing slowed down or sped up on purpose.

    .venv/bin/python bench/make_data.py                   # once: bench/data/mnist_synth.npz
    .venv/bin/python bench/bench_mlp.py --epochs 3 --rounds 3
    .venv/bin/python bench/bench_mlp.py --device cuda --batch-size 1024   # GPU: the three torch variants
    .venv/bin/python bench/bench_mlp.py --spec bench/cnn.dlspec            # the small CNN instead of the MLP
    .venv/bin/python bench/bench_mlp.py --spec bench/lstm.dlspec           # an LSTM(64) over 28 rows of 28
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = HERE / "mlp.dlspec"
VARIANTS = ("dlc-torch", "dlc-keras", "keras-fit", "torch-dataloader", "torch-slicing")
TORCH_VARIANTS = ("dlc-torch", "torch-dataloader", "torch-slicing", "dlc-torch+fixes", "dlc-torch-compile",
                  "dlc-torch-graphs")
# only when asked for: bench/fixes.py's candidates, and `dlc run --compile` (its first epoch compiles)
EXTRA_VARIANTS = ("dlc-torch+fixes", "dlc-keras+fixes", "dlc-torch-compile", "dlc-torch-graphs")
RATIOS = (("dlc-keras", "keras-fit"), ("dlc-torch", "torch-dataloader"), ("dlc-torch", "keras-fit"),
          ("dlc-torch", "torch-slicing"), ("dlc-keras+fixes", "keras-fit"),
          ("dlc-torch+fixes", "torch-dataloader"), ("dlc-torch+fixes", "keras-fit"),
          ("dlc-torch-compile", "dlc-torch"), ("dlc-torch-compile", "torch-slicing"),
          ("dlc-torch-graphs", "dlc-torch"), ("dlc-torch-graphs", "torch-slicing"),
          ("dlc-torch-graphs", "torch-dataloader"))
# issue 13 on a GPU at batch 1024: >= 0.9x the hand-written resident loop, >= 6x the DataLoader loop
CUDA_TARGETS = {"dlc-torch / torch-slicing": 0.9, "dlc-torch / torch-dataloader": 6.0,
                "dlc-torch-graphs / torch-slicing": 0.9, "dlc-torch-graphs / torch-dataloader": 6.0}
TARGETS = {"dlc-keras / keras-fit": 0.95, "dlc-torch / torch-dataloader": 1.0,  # from the issue
           "dlc-keras+fixes / keras-fit": 0.95, "dlc-torch+fixes / torch-dataloader": 1.0}


# ----------------------------------------------------------------------------------------------- shared setup

def compiled(spec_path: Path, batch_size: int | None):
    """The compiled spec, its batch size overridden if asked."""
    from dlc.compiler import compile_file

    result = compile_file(spec_path)
    if not result.ok:
        sys.exit(result.render())
    spec = result.spec
    if batch_size is not None:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"batch_size": batch_size})})
    return spec


def load(spec_path: Path, batch_size: int | None):
    """The compiled spec (batch size overridden if asked) and dlc's prepared data: one split for all."""
    from dlc.runtime.data import prepare

    spec = compiled(spec_path, batch_size)
    data = prepare(spec, spec_path.resolve().parent)
    return spec, data


def hparams(spec) -> dict:
    """The benchmark model's settings: the seed MLP (mlp.dlspec) or the small CNN (cnn.dlspec)."""
    opt = spec.optimizer
    hp = {"lr": opt.learning_rate, "rho": opt.rho, "eps": opt.epsilon, "batch_size": spec.train.batch_size,
          "classes": spec.layers[-1].units,
          "rate": next(la.rate for la in spec.layers if la.kind == "Dropout"),
          "input": tuple(spec.input)}
    first = spec.layers[0]
    if first.kind == "Conv2D":
        return {**hp, "model": "cnn", "filters": first.filters, "kernel": tuple(first.kernel_size),
                "pool": tuple(spec.layers[1].pool_size)}
    if first.kind == "LSTM":
        return {**hp, "model": "lstm", "units": first.units}
    return {**hp, "model": "mlp", "units": first.units}


def model_title(hp: dict) -> str:
    if hp["model"] == "cnn":
        return (f"small CNN Conv2D({hp['filters']}, {hp['kernel']})-MaxPool{hp['pool']}-"
                f"Dropout({hp['rate']})-{hp['classes']}")
    if hp["model"] == "lstm":
        return f"LSTM({hp['units']}) over {hp['input']}-Dropout({hp['rate']})-{hp['classes']}"
    return f"seed MLP 784-{hp['units']}-Dropout({hp['rate']})-{hp['classes']}"


def torch_inputs(hp: dict, x):
    """The training features as a torch loop holds them: NCHW for the CNN (the PyTorch layout)."""
    import numpy as np
    import torch

    x = np.asarray(x, dtype=np.float32)
    if hp["model"] == "cnn":
        x = np.ascontiguousarray(x.reshape((len(x),) + hp["input"]).transpose(0, 3, 1, 2))
    elif hp["model"] == "lstm":
        x = x.reshape((len(x),) + hp["input"])  # (batch, steps, features): batch_first
    return torch.from_numpy(x)


class Meter:
    """Per epoch: wall time, this process's CPU time (all threads), its minor page faults, and the share of
    the machine's CPU capacity other processes used meanwhile (from /proc/stat; None where unreadable)."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.faults: list[int] = []
        self.others: list[float | None] = []

    def start(self):
        self._b = system_busy_s()
        self._t, self._c, self._f = time.perf_counter(), time.process_time(), _faults()

    def stop(self):
        wall, cpu = time.perf_counter() - self._t, time.process_time() - self._c
        self.faults.append(_faults() - self._f)
        busy = system_busy_s()
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.others.append(None if busy is None or self._b is None
                           else max(0.0, (busy - self._b - cpu) / (wall * (os.cpu_count() or 1))))

    def result(self, **extra) -> dict:
        return {"epoch_s": self.wall, "epoch_cpu_s": self.cpu, "epoch_minor_faults": self.faults,
                "epoch_others_busy": self.others, **extra}


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def system_busy_s() -> float | None:
    """CPU seconds all processes have used since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(max_busy: float, max_wait_s: float, window_s: float = 3.0) -> float | None:
    """Wait until other processes use less than `max_busy` of the machine over `window_s`; returns the last
    share measured (None where /proc/stat is unreadable). Gives up after `max_wait_s`."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = system_busy_s(), time.perf_counter()
        time.sleep(window_s)
        b1 = system_busy_s()
        if b0 is None or b1 is None:
            return None
        share = (b1 - b0) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))
        if share <= max_busy or time.monotonic() > deadline:
            return share


# ----------------------------------------------------------------------------------------------- variants

def run_dlc(backend: str, spec, data, epochs: int, device: str, fixed: bool = False,
            compile: bool = False) -> dict:
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.loop import train

    session = session_class(backend)(spec, device=device, weights=initial_weights(spec), compile=compile)
    if fixed:  # the candidate fixes of bench/fixes.py, patched into this session only
        import fixes

        if (fixes.apply_torch(session) if backend == "torch" else fixes.apply_keras(session)) is None:
            raise SystemExit(f"bench/fixes.py no longer matches dlc's {backend} session; update it")
    meter = Meter()
    timed = session.train_epoch

    def train_epoch(*a, **k):  # the call dlc's loop times (time_s), measured here as well for CPU and faults
        meter.start()
        out = timed(*a, **k)
        meter.stop()
        return out

    session.train_epoch = train_epoch
    hist = train(session, spec, data, epochs=epochs)
    res = meter.result()
    res["epoch_s"] = [r["time_s"] for r in hist.rows]  # dlc's own timing of the same calls
    return {**res, "samples": len(data.train.x), "loss": hist.rows[-1]["loss"],
            "accuracy": hist.rows[-1].get("accuracy"), "device": session.device_name}


class _EpochTimer:
    """A Keras callback: each epoch measured from on_epoch_begin to on_epoch_end."""

    def __init__(self):
        import keras

        class CB(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                self.meter.start()

            def on_epoch_end(cb, epoch, logs=None):
                self.meter.stop()

        self.meter = Meter()
        self.callback = CB()


def run_keras_fit(spec, data, epochs: int, device: str) -> dict:
    import keras

    hp = hparams(spec)
    x = data.train.x.astype("float32").reshape((len(data.train.x),) + hp["input"])
    y = data.train.y.astype("float32")  # one-hot, as categorical_crossentropy wants
    if hp["model"] == "cnn":
        body = [keras.layers.Conv2D(hp["filters"], hp["kernel"], activation="relu"),
                keras.layers.MaxPooling2D(hp["pool"]), keras.layers.Flatten()]
    elif hp["model"] == "lstm":
        body = [keras.layers.LSTM(hp["units"])]
    else:
        body = [keras.layers.Dense(hp["units"], activation="relu")]
    model = keras.Sequential([
        keras.Input(x.shape[1:]),
        *body,
        keras.layers.Dropout(hp["rate"]),
        keras.layers.Dense(hp["classes"], activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.RMSprop(hp["lr"], rho=hp["rho"], epsilon=hp["eps"]),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    timer = _EpochTimer()
    h = model.fit(x, y, batch_size=hp["batch_size"], epochs=epochs, shuffle=True, verbose=0,
                  callbacks=[timer.callback])
    return timer.meter.result(samples=len(x), loss=float(h.history["loss"][-1]),
                              accuracy=float(h.history["accuracy"][-1]), device="cpu")


def _torch_model(hp, device):
    import torch
    from torch import nn

    if hp["model"] == "cnn":
        h, w, c = hp["input"]
        kh, kw = hp["kernel"]
        flat = hp["filters"] * ((h - kh + 1) // hp["pool"][0]) * ((w - kw + 1) // hp["pool"][1])
        model = nn.Sequential(nn.Conv2d(c, hp["filters"], hp["kernel"]), nn.ReLU(), nn.MaxPool2d(hp["pool"]),
                              nn.Flatten(), nn.Dropout(hp["rate"]), nn.Linear(flat, hp["classes"])).to(device)
    elif hp["model"] == "lstm":
        model = nn.Sequential(_LastState(hp["input"][-1], hp["units"]), nn.Dropout(hp["rate"]),
                              nn.Linear(hp["units"], hp["classes"])).to(device)
    else:
        model = nn.Sequential(nn.Linear(784, hp["units"]), nn.ReLU(), nn.Dropout(hp["rate"]),
                              nn.Linear(hp["units"], hp["classes"])).to(device)
    # Keras' RMSprop constants (rho 0.9, eps 1e-7); torch's defaults are 0.99 and 1e-8. Speed is the same.
    opt = torch.optim.RMSprop(model.parameters(), lr=hp["lr"], alpha=hp["rho"], eps=hp["eps"])
    return model, opt, nn.CrossEntropyLoss()  # softmax fused into the loss, the PyTorch way


def _LastState(n_in: int, units: int):
    """nn.LSTM (batch_first) keeping only the last step's output, as Keras' LSTM without return_sequences."""
    from torch import nn

    class LastState(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(n_in, units, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0][:, -1]

    return LastState()


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_torch_dataloader(spec, data, epochs: int, device: str) -> dict:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    hp = hparams(spec)
    dev = torch.device(device)
    x = torch_inputs(hp, data.train.x)
    y = torch.from_numpy(data.train.labels)
    cuda = dev.type == "cuda"
    loader = DataLoader(TensorDataset(x, y), batch_size=hp["batch_size"], shuffle=True, pin_memory=cuda)
    model, opt, loss_fn = _torch_model(hp, dev)
    meter, loss_v, acc_v = Meter(), 0.0, 0.0
    for _ in range(epochs):
        model.train()
        _sync(dev)
        meter.start()
        total = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        for xb, yb in loader:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                total += loss.detach() * len(xb)
                correct += (out.argmax(1) == yb).sum()
        loss_v, acc_v = total.item() / len(x), correct.item() / len(x)  # the epoch's one host sync
        meter.stop()
    return meter.result(samples=len(x), loss=loss_v, accuracy=acc_v, device=str(dev))


def run_torch_slicing(spec, data, epochs: int, device: str) -> dict:
    import torch

    hp = hparams(spec)
    bs = hp["batch_size"]
    dev = torch.device(device)
    x = torch_inputs(hp, data.train.x).to(dev)
    y = torch.from_numpy(data.train.labels).to(dev)
    n = len(x)
    model, opt, loss_fn = _torch_model(hp, dev)
    meter, loss_v, acc_v = Meter(), 0.0, 0.0
    for _ in range(epochs):
        model.train()
        _sync(dev)
        meter.start()
        total, correct = slicing_epoch(model, opt, loss_fn, x, y, bs)
        loss_v, acc_v = total.item() / n, correct.item() / n
        meter.stop()
    return meter.result(samples=n, loss=loss_v, accuracy=acc_v, device=str(dev))


def slicing_epoch(model, opt, loss_fn, x, y, bs: int):
    """One epoch of the hand-written resident loop: batches cut from the device tensors by a randperm, the
    loss sum and correct count accumulated on the device (read by the caller)."""
    import torch

    n, dev = len(x), x.device
    perm = torch.randperm(n, device=dev)
    total = torch.zeros((), device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    for i in range(0, n, bs):
        idx = perm[i:i + bs]
        xb, yb = x[idx], y[idx]
        out = model(xb)
        loss = loss_fn(out, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            total += loss.detach() * len(idx)
            correct += (out.argmax(1) == yb).sum()
    return total, correct


RUNNERS = {
    "dlc-torch": lambda s, d, e, dev: run_dlc("torch", s, d, e, dev),
    "dlc-keras": lambda s, d, e, dev: run_dlc("keras", s, d, e, dev),
    "dlc-torch+fixes": lambda s, d, e, dev: run_dlc("torch", s, d, e, dev, fixed=True),
    "dlc-torch-compile": lambda s, d, e, dev: run_dlc("torch", s, d, e, dev, compile=True),
    "dlc-torch-graphs": lambda s, d, e, dev: run_dlc("torch", s, d, e, dev),  # (DLC_CUDA_GRAPHS=1)
    "dlc-keras+fixes": lambda s, d, e, dev: run_dlc("keras", s, d, e, dev, fixed=True),
    "keras-fit": run_keras_fit,
    "torch-dataloader": run_torch_dataloader,
    "torch-slicing": run_torch_slicing,
}


def summarize(res: dict) -> dict:
    times = res["epoch_s"]
    steady = times[1:] or times  # with one epoch there is no steady state: report the warm-up epoch
    res["warmup_s"] = times[0]
    res["warmup_samples_per_s"] = res["samples"] / times[0]
    res["steady_epochs"] = len(steady)
    res["samples_per_s"] = res["samples"] * len(steady) / sum(steady)
    cpu = res["epoch_cpu_s"][1:] or res["epoch_cpu_s"]
    res["samples_per_cpu_s"] = res["samples"] * len(cpu) / sum(cpu)
    others = [o for o in (res["epoch_others_busy"][1:] or res["epoch_others_busy"]) if o is not None]
    res["others_busy"] = max(others) if others else None
    faults = res["epoch_minor_faults"][1:] or res["epoch_minor_faults"]
    steps = -(-res["samples"] // res["batch_size"])
    res["minor_faults_per_step"] = sum(faults) / len(faults) / steps
    return res


def set_threads(name: str, threads: int | None) -> dict:
    """Leave the frameworks' default thread counts alone unless --threads says otherwise; report them."""
    if "keras" in name:
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        return {"tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
                "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default"}
    import torch

    if threads:
        torch.set_num_threads(threads)
    return {"torch_threads": torch.get_num_threads()}


def worker(name: str, spec_path: Path, epochs: int, device: str, batch_size: int | None,
           threads: int | None = None) -> dict:
    spec, data = load(spec_path, batch_size)
    info = set_threads(name, threads)
    load0 = os.getloadavg()[0]
    res = RUNNERS[name](spec, data, epochs, device)
    res.update(variant=name, batch_size=spec.train.batch_size, epochs=epochs,
               loadavg_1min=[load0, os.getloadavg()[0]], **info)
    return summarize(res)


# ----------------------------------------------------------------------------------------------- driver

def _run_isolated(name: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", str(args.spec),
           "--epochs", str(args.epochs), "--device", args.device]
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if name == "dlc-torch-graphs":
        env["DLC_CUDA_GRAPHS"] = "1"
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"variant {name} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    for dist in ("torch", "tensorflow", "tensorflow-cpu", "keras"):
        with contextlib.suppress(PackageNotFoundError):
            info[dist] = version(dist)
    return info


def aggregate(runs: list[dict]) -> dict:
    """One variant over the rounds: the best round's numbers (other processes only ever slow a run down, so
    the fastest round is the least disturbed one), the median round's throughput, and every round."""
    ordered = sorted(runs, key=lambda r: r["samples_per_s"])
    out = dict(ordered[-1])
    out["median_samples_per_s"] = ordered[len(ordered) // 2]["samples_per_s"] if len(ordered) % 2 else \
        (ordered[len(ordered) // 2 - 1]["samples_per_s"] + ordered[len(ordered) // 2]["samples_per_s"]) / 2
    out["rounds_samples_per_s"] = [r["samples_per_s"] for r in runs]
    out["rounds_samples_per_cpu_s"] = [r["samples_per_cpu_s"] for r in runs]
    out["rounds_others_busy"] = [r["others_busy"] for r in runs]
    return out


def ratios(results: list[dict], key: str) -> dict[str, float]:
    by = {r["variant"]: r[key] for r in results}
    return {f"{a} / {b}": by[a] / by[b] for a, b in RATIOS if a in by and b in by}


CONTENDED = 0.15  # other processes' share of the machine above which a round is flagged


def table(results: list[dict], threads: int | None = None, targets: dict | None = None) -> str:
    """The results table and ratios; a round counts as disturbed where other processes used more of the CPUs
    than this run leaves free (all of them with default threads) plus a margin."""
    cpus = os.cpu_count() or 1
    free = max(0.0, 1 - min(threads or cpus, cpus) / cpus)
    limit = max(CONTENDED, free + 0.05) if free else CONTENDED
    head = (f"{'variant':<18}{'samples/s':>11}{'median':>9}{'per CPU-s':>11}{'warm-up s':>11}"
            f"{'faults/step':>12}{'others':>8}{'loss':>8}{'acc':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        o = r["others_busy"]
        others = "  n/a" if o is None else f"{o:>6.0%}" + ("!" if o > limit else " ")
        lines.append(f"{r['variant']:<18}{r['samples_per_s']:>11,.0f}{r['median_samples_per_s']:>9,.0f}"
                     f"{r['samples_per_cpu_s']:>11,.0f}{r['warmup_s']:>11.2f}"
                     f"{r['minor_faults_per_step']:>12.0f}"
                     f"{others:>8}{r['loss']:>8.4f}{(r['accuracy'] or 0):>7.3f}")
    best, med = ratios(results, "samples_per_s"), ratios(results, "median_samples_per_s")
    if best:
        lines += ["", f"{'ratio':<36}{'best':>8}{'median':>8}  target (on best)"]
        for k in best:
            target = (TARGETS if targets is None else targets).get(k)
            verdict = "" if target is None else \
                f"  >= {target:.2f}: {'met' if best[k] >= target else 'NOT met'}"
            lines.append(f"{k:<36}{best[k]:>7.2f}x{med[k]:>7.2f}x{verdict}")
    flagged = [r["variant"] for r in results if (r["others_busy"] or 0) > limit]
    if flagged:
        lines.append("")
        lines.append(f"! other processes used more than {limit:.0%} of the CPUs during the best round of "
                     f"{', '.join(flagged)}: those numbers are disturbed (torch's default OpenMP threads "
                     "slow down many times over on shared cores); rerun with --wait-idle or more --rounds, "
                     "or compare --threads 1 and the per CPU-s column")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="dlc vs hand-written Keras and PyTorch on the seed MLP")
    ap.add_argument("--epochs", type=int, default=3,
                    help="epochs per variant; the first is the warm-up (default 3)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (runs the torch variants only)")
    ap.add_argument("--batch-size", type=int, default=None, help="override the spec's batch size (128)")
    ap.add_argument("--variants", default=None,
                    help=f"comma-separated, from {','.join(VARIANTS + EXTRA_VARIANTS)} "
                         "(default: the first five)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat all variants, interleaved; report each one's median round (default 1)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    ap.add_argument("--wait-idle", type=float, default=None, metavar="SHARE",
                    help="before each variant, wait until other processes use at most this share of the CPUs "
                         "(e.g. 0.1), at most --wait-max seconds")
    ap.add_argument("--wait-max", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=None,
                    help="set torch / TensorFlow thread counts (default: leave the frameworks' defaults)")
    ap.add_argument("--spec", type=Path, default=SPEC)
    ap.add_argument("--same-process", action="store_true",
                    help="run every variant in this process instead of a fresh one each (for profiling)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        res = worker(args.worker, args.spec, args.epochs, args.device, args.batch_size, args.threads)
        print(json.dumps(res))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cuda = args.device.startswith("cuda")
    default = [n for n in VARIANTS if n in TORCH_VARIANTS] if cuda else list(VARIANTS)
    names = args.variants.split(",") if args.variants else default
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)} (known: {', '.join(RUNNERS)})")
    if cuda and not set(names) <= set(TORCH_VARIANTS):
        ap.error("on cuda only the torch variants run (TensorFlow here is CPU-only)")
    data_file = args.spec.resolve().parent / "data" / "mnist_synth.npz"
    if args.spec.resolve() == SPEC and not data_file.exists():
        ap.error(f"{data_file} is missing: run  .venv/bin/python bench/make_data.py  first")

    runs: dict[str, list[dict]] = {n: [] for n in names}
    for k in range(args.rounds):
        for name in names:
            if args.wait_idle is not None:
                share = wait_for_idle(args.wait_idle, args.wait_max)
                if share is not None:
                    print(f"    (other processes: {share:.0%} of the CPUs)", file=sys.stderr, flush=True)
            print(f"[round {k + 1}/{args.rounds}] {name} ...", file=sys.stderr, flush=True)
            if args.same_process:
                res = worker(name, args.spec, args.epochs, args.device, args.batch_size, args.threads)
            else:
                res = _run_isolated(name, args)
            epochs = ", ".join(f"{t:.2f}" for t in res["epoch_s"])
            others = "n/a" if res["others_busy"] is None else f"{res['others_busy']:.0%}"
            print(f"    {res['samples_per_s']:,.0f} samples/s (epochs {epochs} s; other processes up to "
                  f"{others} of the CPUs)", file=sys.stderr, flush=True)
            runs[name].append(res)
    results = [aggregate(runs[n]) for n in names]

    bs = results[0]["batch_size"]
    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    title = model_title(hparams(compiled(args.spec, args.batch_size)))
    print(f"{title}, RMSprop, batch {bs}, {results[0]['samples']} train samples, "
          f"{args.device}, {threads}, {os.cpu_count()} CPUs; {args.epochs} epochs each (1 warm-up), "
          f"{args.rounds} round(s): samples/s = best round, median = median round; others = share of the "
          f"CPUs other processes used (max over the best round's timed epochs)")
    print(table(results, args.threads, CUDA_TARGETS if cuda and bs >= 1024 else None))
    if args.json:
        out = {"machine": machine_info(), "device": args.device, "epochs": args.epochs, "batch_size": bs,
               "threads": args.threads or "default", "rounds": args.rounds, "results": results,
               "ratios_best": ratios(results, "samples_per_s"),
               "ratios_median": ratios(results, "median_samples_per_s"), "runs": runs}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
