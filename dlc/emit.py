"""`dlc compile SPEC --emit torch|keras`: a readable standalone Python script that builds and trains the spec's model
with the same numbers as `dlc run` (dlc's seeded data split, initial weights, shuffles and dropout masks, Keras'
optimizer and loss formulas), importing only numpy, scikit-learn and the framework, never dlc.

Only the subset below is emitted; anything else raises EmitUnsupported naming the item (never wrong code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .compiler.checks import final_activation, resolve_path
from .compiler.spec import BUNDLED, Bundled, Csv, Holdout, Mnist, Npz, Spec
from .rng import STREAM_SPLIT, dropout_base, dropout_threshold


class EmitUnsupported(Exception):
    """The spec uses something the emitter cannot write yet; the message names it."""


LAYERS = {"Dense", "Dropout", "Activation", "Flatten", "Conv2D", "MaxPool2D", "BatchNorm"}
ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "softmax", "softsign", "swish", "relu6"}
INITS = {"glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "zeros",
         "ones", "constant", "random_normal", "random_uniform", "truncated_normal"}
LOSSES = {"categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "mse", "mae"}
OPTIMIZERS = {"SGD", "RMSprop", "Adam"}
METRICS = {"accuracy", "precision", "recall", "f1", "mse", "mae"}
SCHEDULES = {"step", "exponential", "cosine", "plateau"}


def _check(spec: Spec, backend: str) -> None:
    def no(what: str):
        raise EmitUnsupported(f"--emit {backend} does not support {what} yet")

    if spec.search_spaces:
        raise EmitUnsupported(f"--emit {backend} does not support search spaces: run `dlc tune`, then emit the "
                              "best.dlspec it writes")
    if spec.data is None:
        no("a spec without a data block")
    src = spec.data.source
    if not isinstance(src, (Bundled, Csv, Npz, Mnist)):
        no(f"data source {src.name}")
    if not isinstance(spec.data.split, Holdout):
        no(f"split {spec.data.split.kind}")
    if spec.data.augment:
        no("augment")
    for info in spec.walk():
        layer = info.layer
        if layer.kind not in LAYERS:
            no(f"layer {layer.kind}")
        act = getattr(layer, "activation", None)
        if act is not None and act.name not in ACTIVATIONS:
            no(f"activation {act.name}")
        if getattr(layer, "activity_reg", None) is not None:
            no("activity_reg")
        for w in info.weights:
            if w.init.name not in INITS:
                no(f"initializer {w.init.name}")
            if w.constraint is not None:
                no(f"constraint {w.constraint.name}")
    if spec.loss.name not in LOSSES:
        no(f"loss {spec.loss.name}")
    opt = spec.optimizer
    if opt.kind not in OPTIMIZERS:
        no(f"optimizer {opt.kind}")
    for k in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay"):
        if getattr(opt, k):
            no(f"optimizer {k}")
    if getattr(opt, "centered", False):
        no("RMSprop(centered=true)")
    if getattr(opt, "amsgrad", False):
        no("Adam(amsgrad=true)")
    for m in spec.metrics:
        if m.name not in METRICS:
            no(f"metric {m.name}")
    if spec.schedule is not None and spec.schedule.kind not in SCHEDULES:
        no(f"schedule {spec.schedule.kind}")


# ------------------------------------------------------------------------------------------------ shared parts

HEADER = '''#!/usr/bin/env python3
"""{name}: train the model of {spec_path} with {framework}.

Written by `dlc compile {spec_path} --emit {backend}`; standalone (numpy, scikit-learn and {framework} only).
It reproduces dlc's numbers: the seeded data split, the initial weights drawn in numpy, the epoch shuffles,
the hashed dropout masks and Keras' optimizer and loss formulas.
It {where}.

    python {script} [--epochs N] [--losses losses.json]
"""

import argparse
import json
import math

import numpy as np
{imports}
SEED = {seed}
EPOCHS = {epochs}
BATCH_SIZE = {batch_size}
SHUFFLE = {shuffle}
LEARNING_RATE = {lr!r}
'''


MNIST_CODE = '''
def read_idx(path):
    """An IDX file (optionally gzipped) as a uint8 array."""
    import gzip
    import struct

    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
        magic = fh.read(4)
        dims = struct.unpack(">" + "I" * magic[3], fh.read(4 * magic[3]))
        return np.frombuffer(fh.read(), dtype=np.uint8).reshape(dims)


def read_mnist(path):
    """MNIST train+test (in that order), flat, from mnist.npz or a folder with the four IDX files."""
    import os

    npz = path if os.path.isfile(path) else os.path.join(path, "mnist.npz")
    if os.path.isfile(npz):
        with np.load(npz) as f:
            x = np.concatenate([f["x_train"], f["x_test"]]).astype(np.float64)
            y = np.concatenate([f["y_train"], f["y_test"]])
        return x.reshape(len(x), -1), y
    parts = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        names = [stem, stem + ".gz", stem.replace("-idx", ".idx")]
        parts.append(read_idx(next(os.path.join(path, c) for c in names if os.path.isfile(os.path.join(path, c)))))
    x = np.concatenate([parts[0], parts[2]]).astype(np.float64)
    y = np.concatenate([parts[1], parts[3]])
    return x.reshape(len(x), -1), y
'''


def _data_code(spec: Spec, base_dir: Path) -> str:
    d = spec.data
    src = d.source
    task = type(spec.loss).task
    kind = type(spec.loss).targets
    lines = ["# ---------------------------------------------------------------------------------------------- data", "",
             ""]
    if isinstance(src, Mnist):
        lines += [MNIST_CODE.strip("\n"), "", ""]
    lines += ["def load_data():",
              '    """Train and validation arrays: dlc\'s seeded split, normalised with statistics of the train part."""']
    if isinstance(src, Bundled):
        lines += ["    from sklearn import datasets", "",
                  f"    bunch = datasets.load_{src.name}()",
                  "    x = np.asarray(bunch.data, dtype=np.float64)",
                  "    y = np.asarray(bunch.target)"]
    elif isinstance(src, Csv):
        path = resolve_path(base_dir, src.path)
        lines += ["    import csv", "",
                  f"    with open({str(path)!r}, newline='') as fh:",
                  "        rows = list(csv.reader(fh))",
                  "    header = [h.strip() for h in rows[0]]",
                  f"    t = header.index({src.target!r})" if src.target else "    t = len(header) - 1  # the last column",
                  "    body = [r for r in rows[1:] if r]",
                  "    x = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in body], dtype=np.float64)",
                  "    raw_y = [r[t].strip() for r in body]",
                  "    try:",
                  "        y = np.array([float(v) for v in raw_y])",
                  "    except ValueError:  # class names: numbered in sorted order",
                  "        names = sorted(set(raw_y))",
                  "        y = np.array([names.index(v) for v in raw_y])"]
    elif isinstance(src, Mnist):
        lines += [f"    x, y = read_mnist({str(resolve_path(base_dir, src.path))!r})"]
    else:
        path = resolve_path(base_dir, src.path)
        lines += [f"    with np.load({str(path)!r}, allow_pickle=False) as f:",
                  f"        x = np.asarray(f[{src.x!r}], dtype=np.float64)",
                  f"        y = np.asarray(f[{src.y!r}])"]
    lines += ["    n = len(x)", "    x = x.reshape(n, -1)"]
    if task in ("categorical", "binary"):
        lines.append("    labels = y.astype(np.int64)")
        if kind == "onehot" and isinstance(src, Bundled):
            lines.append(f"    num_classes = {BUNDLED[src.name][1]}")
        elif kind == "onehot":
            lines.append("    num_classes = int(labels.max()) + 1")
    else:
        lines.append("    labels = None")
    if kind == "onehot":
        lines.append("    targets = np.eye(num_classes)[labels]  # one-hot for categorical_crossentropy")
    elif kind == "int":
        lines.append("    targets = y.astype(np.int64)")
    else:
        lines.append("    targets = y.astype(np.float64).reshape(n, -1)")
    split = d.split
    seed = int(np.random.SeedSequence([spec.seed, STREAM_SPLIT]).generate_state(1)[0])
    strat = "labels" if (split.stratify and task in ("categorical", "binary")) else "None"
    lines += ["",
              "    # seeded split: the test part, then the validation part of the rest (fractions of the whole set);",
              f"    # the seeds are SeedSequence([SEED, {STREAM_SPLIT}]).generate_state(1)[0] and that plus one",
              "    from sklearn.model_selection import train_test_split", "",
              "    def holdout(idx, frac, seed):",
              "        if frac <= 0:",
              "            return idx, np.array([], dtype=np.int64)",
              f"        strat = {strat}[idx]" if strat != "None" else "        strat = None",
              "        rest, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)",
              "        return np.sort(rest), np.sort(held)", "",
              f"    rest, _test = holdout(np.arange(n), {split.test!r}, {seed})",
              f"    train, val = holdout(rest, {(split.val / (1 - split.test)) if split.val else 0.0!r}, {seed + 1})"]
    if d.normalize == "standard":
        lines += ["    mu, sd = x[train].mean(axis=0), x[train].std(axis=0)  # standardise with train statistics",
                  "    x = (x - mu) / np.where(sd > 0, sd, 1.0)"]
    elif d.normalize == "minmax":
        lines += ["    lo, hi = x[train].min(axis=0), x[train].max(axis=0)  # min-max with train statistics",
                  "    x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)"]
    lines += [f"    x = x.reshape((n,) + {tuple(spec.input)!r})",
              "    return (x[train], targets[train]), ((x[val], targets[val]) if len(val) else None)", "", ""]
    return "\n".join(lines)


INIT_CODE = '''# ------------------------------------------------------------------------------------------- initial weights


def stream(*keys):
    """dlc's numpy random stream for (SEED, *keys)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([SEED & 0xFFFFFFFFFFFF, *keys])))


def fans(shape):
    """Keras' fan rule: dense [in, out]; conv [*kernel, in, out] scaled by the receptive field."""
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def truncated_normal(rng, shape, mean, stddev):
    """Normal(mean, stddev) with draws beyond 2 stddev redrawn."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return mean + stddev * out


def variance_scaling(rng, shape, scale, mode, distribution):
    """Keras' VarianceScaling (glorot_*, he_*, lecun_*)."""
    fan_in, fan_out = fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    variance = scale / max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, shape)
    return truncated_normal(rng, shape, 0.0, math.sqrt(variance) / 0.87962566103423978)


def initial_weights():
    """Layer name -> weight name -> float64 array in Keras' layout; weight j of layer i is drawn from
    stream(1, i, j) (i counts the layers in order)."""
    w = {}
'''


def _init_expr(init, shape) -> str:
    n = init.name
    vs = {"glorot_uniform": (1.0, "fan_avg", "uniform"), "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
          "he_normal": (2.0, "fan_in", "truncated_normal"), "he_uniform": (2.0, "fan_in", "uniform"),
          "lecun_normal": (1.0, "fan_in", "truncated_normal"), "lecun_uniform": (1.0, "fan_in", "uniform")}
    if n in vs:
        s, m, d = vs[n]
        return f"variance_scaling(rng, {shape!r}, {s!r}, {m!r}, {d!r})"
    if n == "zeros":
        return f"np.zeros({shape!r})"
    if n == "ones":
        return f"np.ones({shape!r})"
    if n == "constant":
        return f"np.full({shape!r}, {float(init.value)!r})"
    if n == "random_normal":
        return f"{init.mean!r} + {init.stddev!r} * rng.standard_normal({shape!r})"
    if n == "random_uniform":
        return f"rng.uniform({init.minval!r}, {init.maxval!r}, {shape!r})"
    if n == "truncated_normal":
        return f"truncated_normal(rng, {shape!r}, {init.mean!r}, {init.stddev!r})"
    raise EmitUnsupported(f"initializer {n}")


def _init_code(spec: Spec) -> str:
    lines = [INIT_CODE.rstrip("\n")]
    for info in spec.walk():
        if not info.weights:
            continue
        lines.append(f"    w[{info.layer.name!r}] = {{}}  # layer {info.index}: {info.layer.kind}")
        for j, w in enumerate(info.weights):
            shape = tuple(w.shape)
            expr = _init_expr(w.init, shape)
            if "rng" in expr:
                lines.append(f"    rng = stream(1, {info.index}, {j})")
            lines.append(f"    w[{info.layer.name!r}][{w.name!r}] = {expr}")
    lines += ["    return w", "", ""]
    return "\n".join(lines)


DROPOUT_HASH = '''# ------------------------------------------------------------------------------------------- dropout masks

M32 = 0xFFFFFFFF


def mul32(x, c):
    """(x * c) mod 2^32 in int64 arithmetic (the multiplicand split in 16-bit halves)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def fmix32(x):
    """The lowbias32 hash finalizer (on ints, numpy or framework int64 tensors)."""
    x = x ^ (x >> 16)
    x = mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


'''


def _metrics_code(spec: Spec) -> str:
    names = [m.name for m in spec.metrics]
    task = type(spec.loss).task
    lines = ["# ------------------------------------------------------------------------------------------------ metrics",
             "", "", "def metrics(stats):"]
    if task == "regression":
        lines += ['    """From [sum of squared errors, sum of absolute errors, count]."""',
                  "    sse, sae, count = stats", "    out = {}"]
        for n in names:
            if n == "mse":
                lines.append("    out['mse'] = float(sse / max(count, 1))")
            elif n == "mae":
                lines.append("    out['mae'] = float(sae / max(count, 1))")
    else:
        pick = ("float(v[1])  # of the positive class" if task == "binary"
                else "float(v.mean())  # macro average over classes")
        lines += ['    """From the confusion matrix (rows: true class, columns: predicted)."""',
                  "    cm = stats", "    tp = np.diag(cm)", "    out = {}"]
        need = set(names)
        if need & {"precision", "recall", "f1"}:
            lines += ["", "    def safe(a, b):",
                      "        return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)", "",
                      "    def pick(v):", f"        return {pick}", ""]
            if need & {"precision", "f1"}:
                lines.append("    prec = safe(tp, cm.sum(axis=0))  # per class: true positives / predicted")
            if need & {"recall", "f1"}:
                lines.append("    rec = safe(tp, cm.sum(axis=1))  # per class: true positives / actual")
        for n in names:
            if n == "accuracy":
                lines.append("    out['accuracy'] = float(tp.sum() / max(cm.sum(), 1))")
            elif n == "precision":
                lines.append("    out['precision'] = pick(prec)")
            elif n == "recall":
                lines.append("    out['recall'] = pick(rec)")
            elif n == "f1":
                lines.append("    out['f1'] = pick(safe(2 * prec * rec, prec + rec))")
    lines += ["    return out", "", ""]
    return "\n".join(lines)


def _schedule_code(spec: Spec) -> str:
    s = spec.schedule
    lines = ["def lr_at(epoch):", '    """The learning rate of epoch `epoch` (from 0)."""']
    if s is None or s.kind == "plateau":
        lines.append("    return LEARNING_RATE")
    elif s.kind == "step":
        lines.append(f"    return LEARNING_RATE * {s.factor!r} ** (epoch // {s.every})  # step decay")
    elif s.kind == "exponential":
        lines.append(f"    return LEARNING_RATE * {s.rate!r} ** (epoch / {s.every})  # exponential decay")
    elif s.kind == "cosine":
        lines += [f"    e = min(epoch, {s.epochs})",
                  (f"    return {s.min_lr!r} + (LEARNING_RATE - {s.min_lr!r}) * 0.5 * (1 + math.cos(math.pi * e / "
                  f"{s.epochs}))  # cosine decay")]
    return "\n".join(lines + ["", ""])


def _improved_mode(mode: str, monitor: str) -> str:
    if mode == "auto":
        return "max" if any(k in monitor for k in ("acc", "precision", "recall", "f1")) else "min"
    return mode


def _loop_code(spec: Spec) -> str:
    """The epoch loop (dlc.loop.train): backend-neutral, calling the backend's train_epoch/evaluate/set_lr."""
    es = spec.train.early_stopping
    sched = spec.schedule
    L = ["# ------------------------------------------------------------------------------------------------ training",
         "", "", _schedule_code(spec).rstrip("\n"), "", "",
         "def train(model, data, epochs):",
         '    """Epochs of seeded shuffles; returns the per-step losses."""',
         "    (x_train, y_train), val = data",
         "    n = len(x_train)",
         "    step_losses = []",
         "    lr = LEARNING_RATE"]
    if sched is not None and sched.kind == "plateau":
        pmode = sched.mode if sched.mode != "auto" else ("max" if "acc" in sched.monitor else "min")
        L += [f"    # ReduceLROnPlateau on {sched.monitor}: factor {sched.factor}, patience {sched.patience}",
              f"    plateau = {{'best': {'math.inf' if pmode == 'min' else '-math.inf'}, 'wait': 0, 'cooldown': 0}}"]
    if es is not None:
        emode = _improved_mode(es.mode, es.monitor)
        L += [f"    # early stopping on {es.monitor} ({emode}), patience {es.patience}",
              (f"    es_best, es_wait, best_weights, best_epoch = {'math.inf' if emode == 'min' else '-math.inf'}, "
              "0, None, None")]
    L += ["    for epoch in range(epochs):"]
    if sched is not None and sched.kind != "plateau":
        L.append("        lr = lr_at(epoch)")
    L += ["        model.set_lr(lr)",
          "        # the epoch's order: SeedSequence([SEED, 2, epoch]).permutation"]
    if spec.train.shuffle:
        L.append("        perm = stream(2, epoch).permutation(n)")
    else:
        L.append("        perm = np.arange(n)")
    L += ["        losses, stats, sizes = model.train_epoch(x_train, y_train, perm)",
          "        step_losses.extend(float(v) for v in losses)",
          "        if not np.all(np.isfinite(losses)):",
          "            print(f'loss became non-finite in epoch {epoch + 1}; stopping')",
          "            break",
          "        row = {'epoch': epoch + 1, 'loss': float(np.sum(losses * sizes) / np.sum(sizes))}",
          "        row.update(metrics(stats))",
          "        if val is not None:",
          "            vloss, vstats = model.evaluate(*val)",
          "            row['val_loss'] = vloss",
          "            row.update({'val_' + k: v for k, v in metrics(vstats).items()})",
          "        row['lr'] = lr",
          ("        print('  '.join(f'{k} {v:.6g}' if isinstance(v, float) else f'{k} {v}' for k, v in row.items()),"
          " flush=True)")]
    if sched is not None and sched.kind == "plateau":
        pmode = sched.mode if sched.mode != "auto" else ("max" if "acc" in sched.monitor else "min")
        better = (f"current < plateau['best'] - {sched.min_delta!r}" if pmode == "min"
                  else f"current > plateau['best'] + {sched.min_delta!r}")
        L += [f"        current = row.get({sched.monitor!r}, row['loss'])",
              "        if plateau['cooldown'] > 0:",
              "            plateau['cooldown'] -= 1",
              "            plateau['wait'] = 0",
              f"        if {better}:",
              "            plateau['best'], plateau['wait'] = current, 0",
              "        elif plateau['cooldown'] <= 0:",
              "            plateau['wait'] += 1",
              f"            if plateau['wait'] >= {sched.patience} and lr > {sched.min_lr!r}:",
              f"                lr = max(lr * {sched.factor!r}, {sched.min_lr!r})",
              f"                plateau['cooldown'], plateau['wait'] = {sched.cooldown}, 0"]
    if es is not None:
        emode = _improved_mode(es.mode, es.monitor)
        better = (f"current < es_best - {es.min_delta!r}" if emode == "min"
                  else f"current > es_best + {es.min_delta!r}")
        L += [f"        current = row[{es.monitor!r}]",
              "        es_wait += 1",
              f"        if {better}:",
              "            es_best, es_wait, best_epoch = current, 0, epoch + 1"]
        if es.restore_best:
            L.append("            best_weights = model.get_weights()")
        L += [f"        elif es_wait >= {es.patience} and epoch > 0:",
              "            print(f'early stopping after epoch {epoch + 1} (best epoch {best_epoch})')",
              "            break"]
        if es.restore_best:
            L += ["    if best_weights is not None:",
                  "        model.set_weights(best_weights)  # restore the best epoch's weights"]
    L += ["    return step_losses", "", ""]
    return "\n".join(L)


MAIN = '''def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--losses", help="write the per-step training losses to this JSON file")
    args = parser.parse_args()
    data = load_data()
    model = Model(initial_weights())
    step_losses = train(model, data, args.epochs)
    if args.losses:
        with open(args.losses, "w") as fh:
            json.dump(step_losses, fh)


if __name__ == "__main__":
    main()
'''


# ------------------------------------------------------------------------------------------------------- torch

TORCH_ACT = {"linear": "{x}", "relu": "F.relu({x})", "sigmoid": "torch.sigmoid({x})", "tanh": "torch.tanh({x})",
             "softmax": "torch.softmax({x}, dim=-1)", "softsign": "F.softsign({x})", "swish": "F.silu({x})",
             "relu6": "F.relu6({x})"}


def _same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _torch_model(spec: Spec) -> str:
    final = final_activation(spec)
    fused = type(spec.loss).output_activation == final and final in ("softmax", "sigmoid")
    last = spec.layers[-1].name
    init_lines, fwd, params = [], [], []
    uses_dropout = False
    for info in spec.walk():
        layer, name, k = info.layer, info.layer.name, info.layer.kind
        act = getattr(layer, "activation", None)
        act_name = act.name if act is not None else None
        if fused and name == last and act_name is not None:
            act_name = "linear"
        attr = name.replace("-", "_")
        fwd.append(f"        # {name}: {k} {tuple(info.in_shape)} -> {tuple(info.out_shape)}")
        if k == "Dense":
            params.append((name, "kernel", f"self.{attr}_kernel"))
            init_lines.append(f"        self.{attr}_kernel = nn.Parameter(torch.empty({info.weights[0].shape!r}))")
            fwd.append(f"        x = x @ self.{attr}_kernel")
            if layer.use_bias:
                params.append((name, "bias", f"self.{attr}_bias"))
                init_lines.append(f"        self.{attr}_bias = nn.Parameter(torch.empty({info.weights[1].shape!r}))")
                fwd.append(f"        x = x + self.{attr}_bias")
        elif k == "Conv2D":
            (kh, kw), (sh, sw) = layer._ks()
            cin = info.in_shape[-1]
            params.append((name, "kernel", f"self.{attr}_kernel"))
            init_lines.append(f"        self.{attr}_kernel = nn.Parameter(torch.empty({(layer.filters, cin, kh, kw)!r}))"
                              "  # OIHW")
            fwd.append("        x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW")
            if layer.padding == "same":
                ph, pw = _same_pad(info.in_shape[0], kh, sh), _same_pad(info.in_shape[1], kw, sw)
                if any(ph + pw):
                    fwd.append(f"        x = F.pad(x, {(pw[0], pw[1], ph[0], ph[1])!r})  # TF's 'same' padding")
            b = "None"
            if layer.use_bias:
                params.append((name, "bias", f"self.{attr}_bias"))
                init_lines.append(f"        self.{attr}_bias = nn.Parameter(torch.empty({layer.filters}))")
                b = f"self.{attr}_bias"
            fwd.append(f"        x = F.conv2d(x, self.{attr}_kernel, {b}, {(sh, sw)!r}).permute(0, 2, 3, 1)")
        elif k == "MaxPool2D":
            ps, ss = layer._ps()
            fwd.append("        x = x.permute(0, 3, 1, 2)")
            if layer.padding == "same":
                ph, pw = _same_pad(info.in_shape[0], ps[0], ss[0]), _same_pad(info.in_shape[1], ps[1], ss[1])
                if any(ph + pw):
                    fwd.append(f"        x = F.pad(x, {(pw[0], pw[1], ph[0], ph[1])!r}, value=-math.inf)")
            fwd.append(f"        x = F.max_pool2d(x, {tuple(ps)!r}, {tuple(ss)!r}).permute(0, 2, 3, 1)")
        elif k == "Flatten":
            fwd.append("        x = x.reshape(x.shape[0], -1)")
        elif k == "Dropout":
            uses_dropout = True
            fwd += ["        if self.training:",
                    (f"            x = dropout(x, {dropout_base(spec.seed, info.index)}, {dropout_threshold(layer.rate)}, "
                    f"{1.0 / (1.0 - layer.rate)!r}, self.step)  # rate {layer.rate}")]
        elif k == "BatchNorm":
            c = info.in_shape[-1]
            wnames = [w.name for w in info.weights]
            for wn in wnames:
                if wn in ("gamma", "beta"):
                    params.append((name, wn, f"self.{attr}_{wn}"))
                    init_lines.append(f"        self.{attr}_{wn} = nn.Parameter(torch.empty({c}))")
                else:
                    params.append((name, wn, f"self.{attr}_{wn}"))
                    init_lines.append(f"        self.register_buffer('{attr}_{wn}', torch.empty({c}))")
            fwd += ["        if self.training:  # batch statistics (biased variance); moving averages updated",
                    "            dims = tuple(range(x.dim() - 1))",
                    "            mean = x.mean(dim=dims)",
                    "            var = ((x - mean.detach()) ** 2).mean(dim=dims)",
                    "            with torch.no_grad():",
                    (f"                self.{attr}_moving_mean.mul_({layer.momentum!r}).add_(mean.detach() * "
                    f"(1 - {layer.momentum!r}))"),
                    (f"                self.{attr}_moving_variance.mul_({layer.momentum!r}).add_(var.detach() * "
                    f"(1 - {layer.momentum!r}))"),
                    "        else:",
                    f"            mean, var = self.{attr}_moving_mean, self.{attr}_moving_variance",
                    f"        inv = torch.rsqrt(var + {layer.epsilon!r})"]
            if "gamma" in wnames:
                fwd.append(f"        inv = inv * self.{attr}_gamma")
            fwd.append("        shift = -mean * inv")
            if "beta" in wnames:
                fwd.append(f"        shift = self.{attr}_beta + shift")
            fwd.append("        x = x * inv + shift")
        if act_name not in (None, "linear"):
            fwd.append("        x = " + TORCH_ACT[act_name].format(x="x"))
        if fused and name == last:
            fwd.append(f"        # the final {final} is applied inside the loss (from logits)")
    L = ["# -------------------------------------------------------------------------------------------------- model",
         "", ""]
    if uses_dropout:
        L += ["def dropout(x, base, threshold, scale, step):",
              '    """Inverted dropout with dlc\'s hash mask: keep element i where fmix32(i ^ fmix32(base ^ step)) >> 8',
              '    >= threshold (i counts the elements in channels-last order)."""',
              "    idx = torch.arange(x.numel(), dtype=torch.int64) & M32",
              "    keep = (fmix32(idx ^ fmix32(base ^ (step & M32))) >> 8) >= threshold",
              "    return torch.where(keep.view(x.shape), x * scale, torch.zeros((), dtype=x.dtype))", "", ""]
    L += ["class Net(nn.Module):",
          '    """The layers in order; activations are channels-last (Keras\' layout), weights in torch layouts."""', "",
          "    def __init__(self):",
          "        super().__init__()",
          "        self.step = 0  # the optimizer step, which keys the dropout masks"]
    L += init_lines
    L += ["", "    def forward(self, x):"] + fwd + ["        return x", "", ""]
    L.append("# (layer, weight, attribute) in the order of the spec; conv kernels are HWIO in Keras, OIHW here")
    L.append("WEIGHTS = [")
    for lname, wname, a in params:
        L.append(f"    ({lname!r}, {wname!r}, {a.replace('self.', '')!r}),")
    L += ["]", "", ""]
    return "\n".join(L), fused, final


def _torch_loss(spec: Spec) -> list[str]:
    n = spec.loss.name
    body = {
        "categorical_crossentropy": "return -(y * F.log_softmax(out, dim=-1)).sum(dim=-1).mean()",
        "sparse_categorical_crossentropy": "return F.cross_entropy(out, y)",
        "binary_crossentropy": "return F.binary_cross_entropy_with_logits(out, y)",
        "mse": "return ((y - out) ** 2).mean(dim=-1).mean()",
        "mae": "return (y - out).abs().mean(dim=-1).mean()",
    }[n]
    return ["    def loss(self, out, y):", f'        """{n}."""', "        " + body]


def _torch_optimizer(spec: Spec) -> list[str]:
    o = spec.optimizer
    L = ["    def const(self, x):",
         '        """A Python constant as Keras casts it (through float32)."""',
         "        return torch.tensor(float(torch.tensor(x, dtype=torch.float32)), dtype=DTYPE)", "",
         "    @torch.no_grad()", "    def optimizer_step(self):",
         f'        """Keras\' {o.kind} update, operation for operation."""',
         "        lr = torch.tensor(self.lr, dtype=DTYPE)"]
    if o.kind == "SGD":
        if o.momentum:
            L += [f"        momentum = self.const({o.momentum!r})",
                  "        for p, s in zip(self.params, self.slots):",
                  "            g, m = p.grad, s['m']",
                  "            m.copy_(m * momentum - g * lr)"]
            L += ["            p.add_(m * momentum - g * lr)  # nesterov" if o.nesterov else "            p.add_(m)"]
        else:
            L += ["        for p in self.params:", "            p.sub_(p.grad * lr)"]
        slots = "{'m': torch.zeros_like(p)}" if o.momentum else "{}"
    elif o.kind == "RMSprop":
        L += ["        for p, s in zip(self.params, self.slots):",
              "            g, v = p.grad, s['v']",
              f"            v.copy_({o.rho!r} * v + (1 - {o.rho!r}) * (g * g))",
              f"            inc = (lr * g) / torch.sqrt(v + {o.epsilon!r})"]
        if o.momentum:
            L += [f"            s['m'].copy_({o.momentum!r} * s['m'] + inc)", "            p.sub_(s['m'])"]
            slots = "{'v': torch.zeros_like(p), 'm': torch.zeros_like(p)}"
        else:
            L += ["            p.sub_(inc)"]
            slots = "{'v': torch.zeros_like(p)}"
    else:  # Adam
        L += ["        t = torch.tensor(float(self.iterations + 1), dtype=DTYPE)",
              f"        b1p = torch.pow(self.const({o.beta_1!r}), t)",
              f"        b2p = torch.pow(self.const({o.beta_2!r}), t)",
              "        for p, s in zip(self.params, self.slots):",
              "            g, m, v = p.grad, s['m'], s['v']",
              "            alpha = lr * torch.sqrt(1 - b2p) / (1 - b1p)",
              f"            m.add_((g - m) * (1 - {o.beta_1!r}))",
              f"            v.add_((g * g - v) * (1 - {o.beta_2!r}))",
              f"            p.sub_((m * alpha) / (torch.sqrt(v) + {o.epsilon!r}))"]
        slots = "{'m': torch.zeros_like(p), 'v': torch.zeros_like(p)}"
    L += ["        self.iterations += 1"]
    return L, slots


def _reg_terms(spec: Spec) -> list[tuple[str, str, float, float]]:
    out = []
    for info in spec.walk():
        for w in info.weights:
            if w.regularizer is not None:
                out.append((info.layer.name, w.name, float(np.float32(w.regularizer.l1 or 0.0)),
                            float(np.float32(w.regularizer.l2 or 0.0))))
    return out


def _emit_torch(spec: Spec) -> str:
    model_code, fused, _final = _torch_model(spec)
    task = type(spec.loss).task
    k = spec.output_shape()[-1]
    regs = _reg_terms(spec)
    opt_lines, slots = _torch_optimizer(spec)
    trainable, _ = spec.param_counts()
    L = [model_code,
         "class Model:",
         '    """The network, its loss and optimizer: what one training step and one evaluation need."""', "",
         "    def __init__(self, weights):",
         "        if torch.cuda.is_available():  # TF32 would change the numbers",
         "            torch.backends.cuda.matmul.allow_tf32 = False",
         "            torch.backends.cudnn.allow_tf32 = False",
         "        self.net = Net().to(DTYPE)",
         "        self.set_weights(weights)",
         "        self.params = list(self.net.parameters())",
         f"        self.slots = [{slots} for p in self.params]",
         "        self.iterations = 0",
         "        self.lr = LEARNING_RATE", "",
         "    def set_lr(self, lr):", "        self.lr = float(lr)", "",
         "    def tensor(self, lname, wname):",
         "        return next(getattr(self.net, a) for ln, wn, a in WEIGHTS if (ln, wn) == (lname, wname))", "",
         "    def set_weights(self, weights):",
         "        with torch.no_grad():",
         "            for lname, wname, attr in WEIGHTS:",
         "                arr = weights[lname][wname]",
         "                if arr.ndim == 4:",
         "                    arr = arr.transpose(3, 2, 0, 1)  # conv kernel HWIO -> OIHW",
         "                getattr(self.net, attr).copy_(torch.as_tensor(np.ascontiguousarray(arr), dtype=DTYPE))", "",
         "    def get_weights(self):",
         "        out = {}",
         "        for lname, wname, attr in WEIGHTS:",
         "            arr = getattr(self.net, attr).detach().double().numpy().copy()",
         "            out.setdefault(lname, {})[wname] = arr.transpose(2, 3, 1, 0) if arr.ndim == 4 else arr",
         "        return out", ""]
    L += ["    def regularization(self):"]
    if regs:
        L.append('        """Kernel penalties l1·Σ|w| + l2·Σw² (coefficients cast through float32, as Keras does)."""')
        first = True
        for lname, wname, l1, l2 in regs:
            t = f"self.tensor({lname!r}, {wname!r})"
            parts = []
            if l1:
                parts.append(f"{l1!r} * {t}.abs().sum()")
            if l2:
                parts.append(f"{l2!r} * ({t} * {t}).sum()")
            if parts:
                term = " + ".join(parts) if len(parts) == 1 else f"({' + '.join(parts)})"
                L.append(f"        total = {term}" if first else f"        total = total + {term}")
                first = False
        L.append("        return total" if not first else "        return None")
    else:
        L.append("        return None")
    L.append("")
    L += _torch_loss(spec) + [""]
    L += ["    def stats(self, out, y):"]
    if task == "regression":
        L += ['        """[Σ(y−ŷ)², Σ|y−ŷ|, count] for the regression metrics."""',
              "        err = y - out",
              ("        return torch.stack([(err * err).sum(), err.abs().sum(), "
              "torch.tensor(float(err.numel()), dtype=err.dtype)])")]
        size = "(3,)"
    else:
        L.append('        """The confusion matrix (rows: true class, columns: predicted)."""')
        if task == "binary":
            thr = "0" if fused else "0.5"
            L += [f"        pred = (out > {thr}).long().view(-1)", "        true = y.long().view(-1)", "        k = 2"]
            size = "(2, 2)"
        else:
            L += ["        pred = out.argmax(dim=-1)", "        true = y if y.dim() == 1 else y.argmax(dim=-1)",
                  f"        k = {k}"]
            size = f"({k}, {k})"
        L.append("        return torch.bincount(true * k + pred, minlength=k * k).view(k, k).to(out.dtype)")
    L.append("")
    L += opt_lines + [""]
    L += ["    def tensors(self, x, y):",
          "        xt = torch.as_tensor(x, dtype=DTYPE)",
          "        yt = torch.as_tensor(y)",
          "        return xt, (yt.long() if yt.dtype in (torch.int64, torch.int32) else yt.to(DTYPE))", "",
          "    def train_epoch(self, x, y, perm):",
          '        """One epoch of steps over the batches of `perm`; per-step losses, metric statistics, batch sizes."""',
          "        x, y = self.tensors(x, y)",
          "        self.net.train()",
          "        n = len(perm)",
          "        steps = -(-n // BATCH_SIZE)",
          "        perm = torch.as_tensor(perm, dtype=torch.int64)",
          "        losses = torch.zeros(steps, dtype=DTYPE)",
          f"        stats = torch.zeros({size}, dtype=DTYPE)",
          "        sizes = np.array([min(BATCH_SIZE, n - i * BATCH_SIZE) for i in range(steps)], dtype=np.float64)",
          "        for i in range(steps):",
          "            idx = perm[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]",
          "            xb, yb = x[idx], y[idx]",
          "            out = self.net(xb)",
          "            loss = self.loss(out, yb)",
          "            reg = self.regularization()",
          "            if reg is not None:",
          "                loss = loss + reg",
          "            for p in self.params:",
          "                p.grad = None",
          "            loss.backward()",
          "            self.optimizer_step()",
          "            self.net.step += 1",
          "            with torch.no_grad():",
          "                losses[i] = loss.detach()",
          "                stats += self.stats(out.detach(), yb)",
          "        return losses.double().numpy(), stats.double().numpy(), sizes", "",
          "    @torch.no_grad()",
          "    def evaluate(self, x, y):",
          '        """Mean loss (plus the penalties) and metric statistics over batches, in inference mode."""',
          "        x, y = self.tensors(x, y)",
          "        self.net.eval()",
          "        total = torch.zeros((), dtype=DTYPE)",
          f"        stats = torch.zeros({size}, dtype=DTYPE)",
          "        for i in range(0, len(x), BATCH_SIZE):",
          "            xb, yb = x[i:i + BATCH_SIZE], y[i:i + BATCH_SIZE]",
          "            out = self.net(xb)",
          "            total += self.loss(out, yb) * len(xb)",
          "            stats += self.stats(out, yb)",
          "        loss = float(total) / len(x)",
          "        reg = self.regularization()",
          "        if reg is not None:",
          "            loss += float(reg)",
          "        return loss, stats.double().numpy()", "", ""]
    threads = ""
    if trainable * spec.train.batch_size < 2e7:
        threads = "torch.set_num_threads(1)  # a small model: one CPU thread is faster (and what dlc uses)\n"
    imports = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
               + threads + f"DTYPE = torch.{spec.dtype}\n")
    return imports, "\n".join(L)


def emit(spec: Spec, backend: str, spec_path: str | Path) -> str:
    """The standalone training script for `spec` on `backend` ("torch" or "keras")."""
    if backend not in ("torch", "keras"):
        raise EmitUnsupported(f"--emit {backend} is not a backend")
    _check(spec, backend)
    spec_path = Path(spec_path)
    base_dir = spec_path.resolve().parent
    if backend == "torch":
        imports, backend_code = _emit_torch(spec)
        framework = "PyTorch"
    else:
        from .emit_keras import emit_keras

        imports, backend_code = emit_keras(spec)
        framework = "Keras"
    where = ("runs on the CPU, like `dlc run --backend torch --device cpu`" if backend == "torch"
             else "runs on the CPU, like `dlc run --backend keras`")
    head = HEADER.format(where=where, name=spec.name, spec_path=spec_path.name, framework=framework, backend=backend,
                         script=f"{spec.name}_{backend}.py", imports=imports, seed=spec.seed, epochs=spec.train.epochs,
                         batch_size=spec.train.batch_size, shuffle=spec.train.shuffle,
                         lr=float(spec.optimizer.learning_rate))
    uses_dropout = any(info.layer.kind == "Dropout" for info in spec.walk())
    hash_code = DROPOUT_HASH if backend == "torch" and uses_dropout else ""
    parts = [head, "", _data_code(spec, base_dir), _init_code(spec), hash_code, backend_code,
             _metrics_code(spec), _loop_code(spec), MAIN]
    return "\n\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"


__all__ = ["EmitUnsupported", "emit"]
