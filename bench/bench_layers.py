"""dlc's training step per layer kind against a hand-written step of the same model, on the CPU, one thread.

Each case is a small model around one catalogue item (BatchNorm, LayerNorm, Maxout, Conv1D, LSTM, ...) on
20,000 seeded synthetic samples (`bench/data/layers/`, written on first use), batch 128, float32. For each
case and backend, in a fresh process: dlc's step (`Model.fit(max_steps=N)`, validation included) and a
hand-written one (torch: stock nn modules, a stock torch.optim optimizer, a loop over shuffled index
slices; keras: `model.fit` of the same layers for N steps), rounds interleaved, the minimum process CPU time
per step reported. CPU time at one thread moves little when other processes share the machine, so the
ratios hold on a busy box; a ratio above 1 is dlc slower. It finds where dlc's lowering of an item costs more
than the framework's own (the perf sweep of 2026-12-01: README, "Speed per layer kind").

    .venv/bin/python bench/bench_layers.py                          # every case, torch (~4 min)
    .venv/bin/python bench/bench_layers.py --cases maxout,mlp_ln --backends torch,keras --rounds 5
    .venv/bin/python bench/bench_layers.py --dlc DIR                # another checkout's dlc (before/after)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "layers"
N_SAMPLES, BATCH = 20_000, 128
SHAPES = {
    "flat": "(64)",
    "bin": "(64)",
    "reg": "(64)",
    "img": "(16, 16, 3)",
    "seq": "(20, 16)",
    "tok": "(40)",
}
MLP2 = ["Dense(256, activation=relu)", "Dense(256, activation=relu)", "Dense(10, activation=softmax)"]


def _case(data: str, layers: list[str], opt: str = "Adam(lr=0.001)", loss: str = "categorical_crossentropy"):
    return {"data": data, "layers": layers, "opt": opt, "loss": loss}


CASES = {
    "mlp_adam": _case("flat", MLP2),
    "mlp_bn": _case(
        "flat", ["Dense(256)", "BatchNorm()", "Activation(relu)", "Dense(10, activation=softmax)"]
    ),
    "mlp_ln": _case("flat", ["Dense(256, activation=relu)", "LayerNorm()", "Dense(10, activation=softmax)"]),
    "mlp_dropout": _case(
        "flat", ["Dense(256, activation=relu)", "Dropout(0.3)", "Dense(10, activation=softmax)"]
    ),
    "mlp_sgdm": _case("flat", MLP2, opt="SGD(lr=0.01, momentum=0.9, nesterov=true)"),
    "mlp_nadam": _case("flat", MLP2, opt="Nadam(lr=0.001)"),
    "mlp_mse": _case("reg", MLP2[:2] + ["Dense(1)"], loss="mse"),
    "maxout": _case("flat", ["Maxout(128, pieces=4)", "Dense(10, activation=softmax)"]),
    "prelu": _case("flat", ["Dense(256)", "PReLU()", "Dense(10, activation=softmax)"]),
    "conv2d_pool": _case(
        "img",
        [
            "Conv2D(32, (3, 3), padding=same, activation=relu)",
            "MaxPool2D((2, 2))",
            "Conv2D(64, (3, 3), padding=same, activation=relu)",
            "AvgPool2D((2, 2))",
            "GlobalAvgPool2D()",
            "Dense(10, activation=softmax)",
        ],
    ),
    "sepconv": _case(
        "img",
        [
            "SeparableConv2D(32, (3, 3), padding=same, activation=relu)",
            "MaxPool2D((2, 2))",
            "Flatten()",
            "Dense(10, activation=softmax)",
        ],
    ),
    "convT_up": _case(
        "img",
        [
            "Conv2D(16, (3, 3), strides=(2, 2), padding=same, activation=relu)",
            "Conv2DTranspose(16, (3, 3), strides=(2, 2), padding=same, activation=relu)",
            "UpSampling2D((2, 2))",
            "GlobalMaxPool2D()",
            "Dense(10, activation=softmax)",
        ],
    ),
    "gmax24": _case(
        "img",
        [
            "Conv2D(24, (3, 3), padding=same, activation=relu)",
            "GlobalMaxPool2D()",
            "Dense(10, activation=softmax)",
        ],
    ),
    "residual_bn": _case(
        "img",
        [
            "Conv2D(32, (3, 3), padding=same)",
            "residual {\n      Conv2D(32, (3, 3), padding=same)\n      BatchNorm()\n"
            "      Activation(relu)\n    }",
            "MaxPool2D((2, 2))",
            "Flatten()",
            "Dense(10, activation=softmax)",
        ],
    ),
    "conv1d": _case(
        "seq",
        [
            "Conv1D(32, 3, activation=relu)",
            "MaxPool1D(2)",
            "Conv1D(32, 3, activation=relu)",
            "GlobalAvgPool1D()",
            "Dense(10, activation=softmax)",
        ],
    ),
    "textcnn": _case(
        "tok",
        [
            "Embedding(1000, 32)",
            "Conv1D(64, 5, activation=relu)",
            "GlobalMaxPool1D()",
            "Dense(10, activation=softmax)",
        ],
    ),
    "emb_lstm": _case("tok", ["Embedding(1000, 32)", "LSTM(64)", "Dense(10, activation=softmax)"]),
    "lstm": _case("seq", ["LSTM(64)", "Dense(10, activation=softmax)"]),
    "gru": _case("seq", ["GRU(64)", "Dense(10, activation=softmax)"]),
    "simplernn": _case("seq", ["SimpleRNN(64)", "Dense(10, activation=softmax)"]),
    "bilstm": _case(
        "seq",
        [
            "Bidirectional(LSTM(32, return_sequences=true))",
            "GlobalAvgPool1D()",
            "Dense(10, activation=softmax)",
        ],
    ),
}


def make_data() -> None:
    """The cases' npz files (seeded: the same every time)."""
    DATA.mkdir(parents=True, exist_ok=True)
    r = np.random.default_rng(0)
    y = r.integers(0, 10, N_SAMPLES)
    arrays = {
        "flat": (r.standard_normal((N_SAMPLES, 64)) + y[:, None] * 0.1).astype("float32"),
        "reg": r.standard_normal((N_SAMPLES, 64)).astype("float32"),
        "img": r.random((N_SAMPLES, 16, 16, 3)).astype("float32"),
        "seq": r.standard_normal((N_SAMPLES, 20, 16)).astype("float32"),
        "tok": r.integers(0, 1000, (N_SAMPLES, 40)).astype("int64"),
    }
    for name, x in arrays.items():
        target = r.standard_normal(N_SAMPLES).astype("float32") if name == "reg" else y
        if not (DATA / f"{name}.npz").exists():
            np.savez(DATA / f"{name}.npz", x=x, y=target)


def spec_text(name: str) -> str:
    c = CASES[name]
    layers = "\n    ".join(c["layers"])
    return f"""model {name} {{
  seed: 42
  data {{
    source: npz("{DATA / (c["data"] + ".npz")}")
    normalize: none
    split: holdout(val=0.05)
  }}
  input: {SHAPES[c["data"]]}
  layers {{
    {layers}
  }}
  loss: {c["loss"]}
  optimizer: {c["opt"]}
  train {{
    epochs: 1000
    batch_size: {BATCH}
  }}
}}
"""


# ------------------------------------------------------------------------------------- hand-written torch


def torch_model(name: str):
    from torch import nn

    class Fn(nn.Module):
        def __init__(self, f):
            super().__init__()
            self.f = f

        def forward(self, x):
            return self.f(x)

    class Res(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x)

    class Maxout(nn.Module):
        def __init__(self, n_in, units, pieces):
            super().__init__()
            self.lin, self.units, self.pieces = nn.Linear(n_in, units * pieces), units, pieces

        def forward(self, x):
            return self.lin(x).view(-1, self.units, self.pieces).amax(-1)

    class Last(nn.Module):
        def __init__(self, rnn, mean=False):
            super().__init__()
            self.rnn, self.mean = rnn, mean

        def forward(self, x):
            out, _ = self.rnn(x)
            return out.mean(1) if self.mean else out[:, -1]

    R = nn.ReLU
    models = {
        "mlp_adam": lambda: nn.Sequential(
            nn.Linear(64, 256), R(), nn.Linear(256, 256), R(), nn.Linear(256, 10)
        ),
        "mlp_mse": lambda: nn.Sequential(
            nn.Linear(64, 256), R(), nn.Linear(256, 256), R(), nn.Linear(256, 1)
        ),
        "mlp_bn": lambda: nn.Sequential(
            nn.Linear(64, 256), nn.BatchNorm1d(256, eps=1e-3, momentum=0.01), R(), nn.Linear(256, 10)
        ),
        "mlp_ln": lambda: nn.Sequential(
            nn.Linear(64, 256), R(), nn.LayerNorm(256, eps=1e-3), nn.Linear(256, 10)
        ),
        "mlp_dropout": lambda: nn.Sequential(nn.Linear(64, 256), R(), nn.Dropout(0.3), nn.Linear(256, 10)),
        "maxout": lambda: nn.Sequential(Maxout(64, 128, 4), nn.Linear(128, 10)),
        "prelu": lambda: nn.Sequential(nn.Linear(64, 256), nn.PReLU(256, init=0.0), nn.Linear(256, 10)),
        "conv2d_pool": lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            R(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            R(),
            nn.AvgPool2d(2),
            Fn(lambda x: x.mean((2, 3))),
            nn.Linear(64, 10),
        ),
        "sepconv": lambda: nn.Sequential(
            nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False),
            nn.Conv2d(3, 32, 1),
            R(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 64, 10),
        ),
        "convT_up": lambda: nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            R(),
            nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, output_padding=1),
            R(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            Fn(lambda x: x.amax((2, 3))),
            nn.Linear(16, 10),
        ),
        "gmax24": lambda: nn.Sequential(
            nn.Conv2d(3, 24, 3, padding=1), R(), Fn(lambda x: x.amax((2, 3))), nn.Linear(24, 10)
        ),
        "residual_bn": lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            Res(
                nn.Sequential(
                    nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3, momentum=0.01), R()
                )
            ),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 64, 10),
        ),
        "conv1d": lambda: nn.Sequential(
            Fn(lambda x: x.transpose(1, 2)),
            nn.Conv1d(16, 32, 3),
            R(),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 32, 3),
            R(),
            Fn(lambda x: x.mean(2)),
            nn.Linear(32, 10),
        ),
        "textcnn": lambda: nn.Sequential(
            nn.Embedding(1000, 32),
            Fn(lambda x: x.transpose(1, 2)),
            nn.Conv1d(32, 64, 5),
            R(),
            Fn(lambda x: x.amax(2)),
            nn.Linear(64, 10),
        ),
        "emb_lstm": lambda: nn.Sequential(
            nn.Embedding(1000, 32), Last(nn.LSTM(32, 64, batch_first=True)), nn.Linear(64, 10)
        ),
        "lstm": lambda: nn.Sequential(Last(nn.LSTM(16, 64, batch_first=True)), nn.Linear(64, 10)),
        "gru": lambda: nn.Sequential(Last(nn.GRU(16, 64, batch_first=True)), nn.Linear(64, 10)),
        "simplernn": lambda: nn.Sequential(Last(nn.RNN(16, 64, batch_first=True)), nn.Linear(64, 10)),
        "bilstm": lambda: nn.Sequential(
            Last(nn.LSTM(16, 32, batch_first=True, bidirectional=True), mean=True), nn.Linear(64, 10)
        ),
    }
    models["mlp_sgdm"] = models["mlp_nadam"] = models["mlp_adam"]
    return models[name]()


def torch_optimizer(name: str, params):
    import torch

    opt = CASES[name]["opt"]
    if opt.startswith("SGD"):
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
    if opt.startswith("Nadam"):
        return torch.optim.NAdam(params, lr=0.001, eps=1e-7)
    return torch.optim.Adam(params, lr=0.001, eps=1e-7)


def torch_hand(name: str, x: np.ndarray, y: np.ndarray):
    """A function training `steps` steps of the hand-written torch model on shuffled slices."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = torch_model(name)
    opt = torch_optimizer(name, model.parameters())
    if CASES[name]["data"] == "img":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    X = torch.from_numpy(x)
    regression = CASES[name]["loss"] == "mse"
    Y = torch.from_numpy(y.astype("float32").reshape(-1, 1) if regression else y.astype("int64"))
    loss_fn = F.mse_loss if regression else F.cross_entropy
    order = np.random.default_rng(1)

    def train(steps: int) -> None:
        model.train()
        perm = torch.from_numpy(
            np.concatenate([order.permutation(len(X)) for _ in range(-(-steps * BATCH // len(X)))])
        )
        for i in range(steps):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            loss = loss_fn(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return train


# ------------------------------------------------------------------------------------- hand-written keras


def keras_hand(name: str, x: np.ndarray, y: np.ndarray):
    import keras

    L = keras.layers
    c = CASES[name]
    softmax = lambda: L.Dense(10, activation="softmax")  # noqa: E731
    mlp2 = lambda: [L.Dense(256, activation="relu"), L.Dense(256, activation="relu")]  # noqa: E731
    stacks = {
        "mlp_adam": lambda: mlp2() + [softmax()],
        "mlp_mse": lambda: mlp2() + [L.Dense(1)],
        "mlp_bn": lambda: [L.Dense(256), L.BatchNormalization(), L.Activation("relu"), softmax()],
        "mlp_ln": lambda: [L.Dense(256, activation="relu"), L.LayerNormalization(epsilon=1e-3), softmax()],
        "mlp_dropout": lambda: [L.Dense(256, activation="relu"), L.Dropout(0.3), softmax()],
        "maxout": lambda: [
            L.Dense(512),
            L.Reshape((128, 4)),
            L.Lambda(lambda t: keras.ops.max(t, axis=-1)),
            softmax(),
        ],
        "prelu": lambda: [L.Dense(256), L.PReLU(), softmax()],
        "conv2d_pool": lambda: [
            L.Conv2D(32, 3, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, padding="same", activation="relu"),
            L.AveragePooling2D(2),
            L.GlobalAveragePooling2D(),
            softmax(),
        ],
        "sepconv": lambda: [
            L.SeparableConv2D(32, 3, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            softmax(),
        ],
        "convT_up": lambda: [
            L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
            L.UpSampling2D(2),
            L.GlobalMaxPooling2D(),
            softmax(),
        ],
        "gmax24": lambda: [
            L.Conv2D(24, 3, padding="same", activation="relu"),
            L.GlobalMaxPooling2D(),
            softmax(),
        ],
        "conv1d": lambda: [
            L.Conv1D(32, 3, activation="relu"),
            L.MaxPooling1D(2),
            L.Conv1D(32, 3, activation="relu"),
            L.GlobalAveragePooling1D(),
            softmax(),
        ],
        "textcnn": lambda: [
            L.Embedding(1000, 32),
            L.Conv1D(64, 5, activation="relu"),
            L.GlobalMaxPooling1D(),
            softmax(),
        ],
        "emb_lstm": lambda: [L.Embedding(1000, 32), L.LSTM(64), softmax()],
        "lstm": lambda: [L.LSTM(64), softmax()],
        "gru": lambda: [L.GRU(64), softmax()],
        "simplernn": lambda: [L.SimpleRNN(64), softmax()],
        "bilstm": lambda: [
            L.Bidirectional(L.LSTM(32, return_sequences=True)),
            L.GlobalAveragePooling1D(),
            softmax(),
        ],
    }
    stacks["mlp_sgdm"] = stacks["mlp_nadam"] = stacks["mlp_adam"]
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:], dtype="int64" if c["data"] == "tok" else "float32")
    if name == "residual_bn":
        h = L.Conv2D(32, 3, padding="same")(inputs)
        b = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(32, 3, padding="same")(h)))
        out = softmax()(L.Flatten()(L.MaxPooling2D(2)(L.Add()([h, b]))))
    else:
        out = inputs
        for layer in stacks[name]():
            out = layer(out)
    model = keras.Model(inputs, out)
    opt = c["opt"]
    optimizer = (
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True)
        if opt.startswith("SGD")
        else keras.optimizers.Nadam(0.001)
        if opt.startswith("Nadam")
        else keras.optimizers.Adam(0.001)
    )
    regression = c["loss"] == "mse"
    model.compile(optimizer=optimizer, loss="mse" if regression else "sparse_categorical_crossentropy")
    target = y.astype("float32").reshape(-1, 1) if regression else y.astype("int64")

    def train(steps: int) -> None:
        n = steps * BATCH
        reps = -(-n // len(x))
        model.fit(
            np.concatenate([x] * reps)[:n],
            np.concatenate([target] * reps)[:n],
            batch_size=BATCH,
            epochs=1,
            shuffle=True,
            verbose=0,
        )

    return train


# ------------------------------------------------------------------------------------------------- one run


def one(name: str, backend: str, steps: int, rounds: int) -> dict:
    """In this (fresh) process: dlc's and the hand-written step of `name`, interleaved, min CPU ms/step."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if backend == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import torch

    torch.set_num_threads(1)
    import dlc

    with tempfile.NamedTemporaryFile("w", suffix=".dlspec", delete=False) as f:
        f.write(spec_text(name))
    model = dlc.Model(dlc.load(f.name), backend=backend, device="cpu")
    os.unlink(f.name)
    with np.load(DATA / f"{CASES[name]['data']}.npz") as d:
        x, y = d["x"], d["y"]
    hand = (torch_hand if backend == "torch" else keras_hand)(name, x, y)
    model.fit(max_steps=20)
    hand(20)
    times: dict[str, list[float]] = {"dlc": [], "hand": []}
    for _ in range(rounds):
        for variant, train in (("dlc", lambda: model.fit(max_steps=steps)), ("hand", lambda: hand(steps))):
            start = time.process_time()
            train()
            times[variant].append((time.process_time() - start) * 1e3 / steps)
    return {
        "case": name,
        "backend": backend,
        **{k: round(min(v), 3) for k, v in times.items()},
        "dlc_module": dlc.__file__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated (default: all)")
    ap.add_argument("--backends", default="torch", help="torch, keras or torch,keras")
    ap.add_argument("--steps", type=int, default=200, help="steps per timed pass")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the minimum is reported")
    ap.add_argument("--dlc", help="a checkout whose dlc to measure (default: this one)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--one", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one(*args.one, args.steps, args.rounds)), flush=True)
        return 0
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}: choose from {', '.join(CASES)}")
    make_data()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = Path(args.dlc).resolve() if args.dlc else HERE.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    results = []
    print(f"{'case':<14}{'backend':<8}{'dlc ms/step':>12}{'hand ms/step':>13}{'dlc/hand':>10}")
    for name in args.cases.split(","):
        for backend in args.backends.split(","):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    name,
                    backend,
                    "--steps",
                    str(args.steps),
                    "--rounds",
                    str(args.rounds),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                cwd=root,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"{name:<14}{backend:<8} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(line[7:])
            results.append(r)
            print(
                f"{name:<14}{backend:<8}{r['dlc']:>12.3f}{r['hand']:>13.3f}{r['dlc'] / r['hand']:>9.2f}x",
                flush=True,
            )
    if results:
        print(f"dlc: {results[0]['dlc_module']}; CPU ms per step at one thread, min of {args.rounds} rounds")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
