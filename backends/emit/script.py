"""`dlc compile SPEC --emit torch|keras`: a standalone, readable training script for a spec.

The script is assembled from lowerings, never from a second copy of dlc's formulas: the model, loss, optimizer
and training step are the target backend's lowering (backends/<backend>/lower.py) rendered as Python, the
data, initial weights and schedules the shared emit lowerings (backends/emit/lower.py), and every function or
class those expressions name is copied from dlc's source by the bundler. So the script computes what `dlc run`
does on that backend, operation for operation, and imports numpy, scikit-learn and the framework only."""

from __future__ import annotations

from pathlib import Path

from dlc.backends.lowering import REGISTRY, LoweringMissing, call, load_target, ref, render
from dlc.backends.torch.lower import one_thread_is_faster
from dlc.compiler.checkshared import resolve_path
from dlc.compiler.spec import BUNDLED, Bundled, Spec
from dlc.reference.rng import STREAM_INIT

from .bundle import Bundle, import_block
from .lower import DrawContext

# where the names of the shared part are defined (dlc's numpy reference code)
SHARED_MODULES = ("dlc.reference.rng", "dlc.compiler.functions", "dlc.compiler.training",
                  "dlc.compiler.layers", "dlc.runtime.data",
                  "dlc.runtime.augment", "dlc.reference.metrics", "dlc.reference.callbacks")
FRAMEWORK = {"torch": "PyTorch", "keras": "Keras"}
# module names generated code may use, and the import that defines each
MODULE_ALIASES = {"np": "import numpy as np", "math": "import math", "json": "import json",
                  "argparse": "import argparse", "partial": "from functools import partial",
                  "torch": "import torch",
                  "F": "import torch.nn.functional as F", "nn": "from torch import nn",
                  "keras": "import keras", "tf": "import tensorflow as tf"}
RULE = "# " + "-" * 108


class EmitUnsupported(Exception):
    """The spec cannot be written as a script; the message names the item and the target."""


HEADER = '''#!/usr/bin/env python3
"""{name}: train the model of {spec_file} with {framework}.

Written by `dlc compile {spec_file} --emit {backend}`; standalone (numpy, scikit-learn and {framework}).
It computes what `dlc run --backend {backend}{device}` computes, step for step: dlc's seeded split, initial
weights, epoch shuffles, dropout masks and augmentations, and Keras' layer, loss and optimizer formulas (the
definitions below are copied from dlc).

    python {script} [--epochs N] [--losses losses.json]
"""

from __future__ import annotations
'''


def in_docstring(text: str) -> str:
    """`text` written so that, inside the script's docstring, it reads as itself: backslashes, double quotes
    and characters that do not print (a newline, an undecodable byte of a file name) escaped."""
    return "".join("\\" + ch if ch in '\\"' else ch if ch.isprintable()
                   else ch.encode("unicode_escape", "backslashreplace").decode("ascii") for ch in text)


def section(title: str) -> str:
    return RULE[:len(RULE) - len(title) - 1] + " " + title


# ----------------------------------------------------------------------------------------------- the parts


def constants(spec: Spec, backend: str) -> str:
    dtype = f"torch.{spec.dtype}" if backend == "torch" else repr(spec.dtype)
    return "\n".join([
        f"SEED = {spec.seed}",
        f"EPOCHS = {spec.train.epochs}",
        f"BATCH_SIZE = {spec.train.batch_size}",
        f"SHUFFLE = {spec.train.shuffle}",
        f"INPUT_SHAPE = {tuple(spec.input)!r}",
        f"LEARNING_RATE = {float(spec.optimizer.learning_rate)!r}",
        f"DTYPE = {dtype}"])


class DataContext:
    """What a data lowering needs: the target and where relative paths start."""

    def __init__(self, target: str, base_dir: Path):
        self.target, self.base_dir = target, base_dir

    def resolve(self, path: str) -> Path:
        return resolve_path(self.base_dir, path).resolve()


def data_code(spec: Spec, target: str, base_dir: Path) -> str:
    """load_data(): the splits [(train, val, test)] of (x, y) pairs, as dlc.runtime.data.prepare/folds do."""
    d = spec.data
    ctx = DataContext(target, base_dir)
    task, kind = type(spec.loss).task, type(spec.loss).targets
    src = d.source
    classes = BUNDLED[src.name][1] if isinstance(src, Bundled) else None
    lines = ["def load_data():",
             '    """[(train, val, test)], each an (x, y) pair or None: dlc\'s seeded split, normalised',
             '    with statistics of the training part only."""',
             f"    x, y = {render(REGISTRY.lower(target, src, ctx), 4)}",
             "    n = len(x)",
             "    x = x.reshape(n, -1)"]
    if task in ("categorical", "binary"):
        # one label per sample, as dlc.runtime.data.class_labels takes them: a one-column array's column,
        # one-hot rows' class for categorical_crossentropy only (an (n, 1) or one-hot y failed in the script)
        lines.append("    y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y")
        onehot_rows = "(y.argmax(axis=1) if y.ndim > 1 else y)" if kind == "onehot" else "y"
        lines.append(f"    labels = {onehot_rows}.astype(np.int64)")
        # the output layer's classes, as dlc.runtime.data.checked_targets numbers them
        num = repr(spec.output_shape()[-1] if task == "categorical" else classes or 2)
        lines.append(f"    targets = class_targets(labels, {kind!r}, {num})")
    else:
        lines += ["    labels = None", f"    targets = class_targets(y, {kind!r})"]
    lines += [f"    splits = {render(REGISTRY.lower(target, d.split, ctx), 4)}",
              "    out = []",
              "    for train, val, test in splits:",
              f"        shift, scale = normalizer({d.normalize!r}, x[train])",
              "        xs = x if shift is None else (x - shift) / scale",
              "        xs = xs.reshape((n,) + INPUT_SHAPE)",
              "        out.append(tuple((xs[ix], targets[ix]) if len(ix) else None"
              " for ix in (train, val, test)))",
              "    return out"]
    return "\n".join(lines)


def weights_code(spec: Spec, target: str) -> str:
    """initial_weights(): weight j of layer i drawn from stream(SEED, 1, i, j), as dlc/weights.py draws it."""
    lines = ["def initial_weights():",
             '    """{layer: {weight: float64 array}} in Keras\' layouts; weight j of layer i is drawn from',
             f'    stream(SEED, {STREAM_INIT}, i, j), with Keras\' formulas."""',
             "    return {"]
    for info in spec.walk():
        if not info.weights:
            continue
        lines.append(f"        {info.layer.name!r}: {{")
        for j, w in enumerate(info.weights):
            ctx = DrawContext(target, tuple(w.shape), call("stream", ref("SEED"), STREAM_INIT, info.index, j))
            expr = REGISTRY.lower(target, w.init, ctx)
            adjust = getattr(info.layer, "initial_adjustment", lambda _name: None)(w.name)
            if adjust is not None:  # e.g. an LSTM's forget-gate bias starts at one
                expr = call(adjust[0], expr, **adjust[1])
            lines.append(f"            {w.name!r}: {render(expr, 12)},")
        lines.append("        },")
    lines.append("    }")
    return "\n".join(lines)


LOOP_HEAD = '''def train(model, train_part, val_part, epochs):
    """Epochs of seeded shuffles, as dlc's training loop runs them; returns the per-step losses."""
    x_train, y_train = train_part
    n = len(x_train)
    step_losses = []
    lr = LEARNING_RATE'''

LOOP_EPOCH = '''        model.set_lr(lr)
        order = epoch_permutation(SEED, epoch, n, SHUFFLE)
        losses, stats, sizes = model.train_epoch({x_epoch}, y_train, order)
        step_losses.extend(float(v) for v in losses)
        if not np.all(np.isfinite(losses)):
            print(f"loss became non-finite in epoch {{epoch + 1}}; stopping")
            break
        row = {{"epoch": epoch + 1, "loss": float(np.sum(losses * sizes) / np.sum(sizes))}}
        row.update(compute(METRICS, TASK, stats))
        if val_part is not None:
            val_loss, val_stats = model.evaluate(*val_part)
            row["val_loss"] = val_loss
            row.update({{"val_" + k: v for k, v in compute(METRICS, TASK, val_stats).items()}})
        row["lr"] = lr
        print("  ".join(f"{{k}} {{v:.6g}}" if isinstance(v, float) else f"{{k}} {{v}}"
                        for k, v in row.items()), flush=True)'''

EARLY_STOPPING = '''        current = row[{monitor!r}]  # early stopping ({mode}, patience {patience})
        es_wait += 1
        if improved(current, es_best, {mode!r}, {min_delta!r}):
            es_best, es_wait = current, 0{keep}
        elif es_wait >= {patience} and epoch > 0:
            print(f"early stopping after epoch {{epoch + 1}}")
            break'''


def loop_code(spec: Spec, target: str) -> str:
    """train(): dlc's epoch loop (dlc/loop.py) for this spec's schedule, augmentation and early stopping."""
    from dlc.reference.callbacks import monitor_mode

    s, es = spec.schedule, spec.train.early_stopping
    augs = [REGISTRY.lower(target, op, None) for op in (spec.data.augment if spec.data else [])]
    lowered = render(REGISTRY.lower(target, s, DataContext(target, Path("."))), 4) if s is not None else None
    lines = [LOOP_HEAD]
    if s is not None:
        lines.append(f"    {'plateau' if s.kind == 'plateau' else 'lr_at'} = {lowered}")
    if augs:
        lines.append(f"    augmentations = {render(augs, 4)}")
    if es is not None:
        mode = monitor_mode(es.mode, es.monitor)
        worst = "math.inf" if mode == "min" else "-math.inf"
        lines.append(f"    es_best, es_wait, best_weights = {worst}, 0, None" if es.restore_best else
                     f"    es_best, es_wait = {worst}, 0")
    lines.append("    for epoch in range(epochs):")
    if s is not None and s.kind != "plateau":
        lines.append("        lr = lr_at(epoch, LEARNING_RATE)")
    if augs:
        lines.append("        x_epoch = apply_augmentations(x_train, augmentations, SEED, epoch)")
    lines.append(LOOP_EPOCH.format(x_epoch="x_epoch" if augs else "x_train"))
    if s is not None and s.kind == "plateau":
        lines.append(f"        lr = plateau.update(row.get({s.monitor!r}, row['loss']), lr)")
    if es is not None:
        keep = "\n            best_weights = model.get_weights()" if es.restore_best else ""
        lines.append(EARLY_STOPPING.format(monitor=es.monitor, mode=monitor_mode(es.mode, es.monitor),
                                           min_delta=es.min_delta, patience=es.patience, keep=keep))
        if es.restore_best:
            lines.append("    if best_weights is not None:  # restore the best epoch's weights\n"
                         "        model.set_weights(best_weights)")
    lines.append("    return step_losses")
    return "\n".join(lines)


MAIN = '''def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--losses", help="write the per-step training losses to this JSON file")
    args = parser.parse_args()
    step_losses, results = [], []
    splits = load_data()
    for fold, (train_part, val_part, test_part) in enumerate(splits):
        if len(splits) > 1:
            print(f"fold {fold + 1}/{len(splits)}")
        model = Model(initial_weights())
        step_losses += train(model, train_part, val_part, args.epochs)
        if test_part is not None:
            loss, stats = model.evaluate(*test_part)
            test = {"loss": loss, **compute(METRICS, TASK, stats)}
            print("test  " + "  ".join(f"{k} {v:.6g}" for k, v in test.items()))
        if val_part is not None:
            loss, stats = model.evaluate(*val_part)
            results.append({"loss": loss, **compute(METRICS, TASK, stats)})
    if len(splits) > 1:
        for k in results[0]:
            vals = np.array([r[k] for r in results])
            # (the sample standard deviation, ddof=1, as `dlc cv` reports it)
            print(f"cv {k}: {vals.mean():.6g} ± {vals.std(ddof=1) if len(vals) > 1 else 0.0:.6g}")
    if args.losses:
        with open(args.losses, "w") as fh:
            json.dump(step_losses, fh)


if __name__ == "__main__":
    main()
'''


# ---------------------------------------------------------------------------------------------- assembly


def check(spec: Spec, backend: str) -> None:
    if spec.search_spaces:
        raise EmitUnsupported(f"--emit {backend} does not support search spaces: run `dlc tune`, then emit "
                              "the best.dlspec it writes")
    if spec.data is None:
        raise EmitUnsupported(f"--emit {backend} needs a data block")
    if spec.train.mixed:
        raise EmitUnsupported(f"--emit {backend} does not support precision: {spec.train.precision}: an "
                              "emitted script reproduces `dlc run`'s per-step losses, and mixed precision is "
                              "outside that contract; emit the spec with precision: float32")


def emit(spec: Spec, backend: str, spec_path: str | Path) -> str:
    """The standalone training script for `spec` on `backend` ("torch" or "keras")."""
    if backend not in FRAMEWORK:
        raise EmitUnsupported(f"--emit {backend} is not a backend")
    check(spec, backend)
    target = f"emit_{backend}"
    load_target(target)
    spec_path = Path(spec_path)
    try:
        parts = _parts(spec, backend, target, spec_path.resolve().parent)
    except LoweringMissing as e:
        raise EmitUnsupported(f"--emit {backend}: {e}") from None
    model_code, model_modules = parts.pop("model")
    body = "\n\n\n".join(parts.values())
    imports, copied = _copied(body, model_code, model_modules)
    if backend == "keras":  # TensorFlow's start-up notices, before it is imported
        imports = 'import os\n\nos.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")\n\n' + imports
    head = HEADER.format(name=spec.name, spec_file=in_docstring(spec_path.name), framework=FRAMEWORK[backend],
                         backend=backend, script=f"{spec.name}_{backend}.py",
                         device=" --device cpu" if backend == "torch" else "")
    threads = "torch.set_num_threads(1)  # a small model: one CPU thread is faster, and what dlc uses\n" \
        if backend == "torch" and one_thread_is_faster(spec) else ""
    return "\n\n\n".join([
        head + "\n" + imports + "\n\n" + threads + constants(spec, backend) + "\n" + _task_constants(spec),
        section("copied from dlc") + "\n\n\n" + copied.rstrip("\n"),
        section("data and initial weights") + "\n\n\n" + body,
        section("model") + "\n\n\n" + model_code,
        section("main") + "\n\n\n" + MAIN.rstrip("\n")]) + "\n"


def _copied(body: str, model_code: str, model_modules: tuple[str, ...]) -> tuple[str, str]:
    """(import block, copied definitions) for the generated code: the model's names looked up in the backend's
    library first, the rest in dlc's shared code first."""
    bundle = Bundle(SHARED_MODULES + model_modules)
    free = _free_names(f"{body}\n\n{model_code}\n\n{MAIN}")
    aliases = free & set(MODULE_ALIASES)
    free -= aliases
    bundle.add(*sorted(free & _free_names(model_code)), search=model_modules + SHARED_MODULES)
    bundle.add(*sorted(free - set(bundle.names())))
    imports, copied = bundle.render()
    fixed = ["import argparse", "import json", "import math", "import numpy as np"]
    return import_block(imports + fixed + [MODULE_ALIASES[name] for name in aliases]), copied


def _parts(spec: Spec, backend: str, target: str, base_dir: Path) -> dict:
    from importlib import import_module

    model = import_module(f"dlc.backends.emit.{backend}")
    return {"data": data_code(spec, target, base_dir), "weights": weights_code(spec, target),
            "loop": loop_code(spec, target), "model": model.model_code(spec)}


def _task_constants(spec: Spec) -> str:
    return f"TASK = {type(spec.loss).task!r}\nMETRICS = {[m.name for m in spec.metrics]!r}"


def _free_names(code: str) -> set[str]:
    """Names the generated code uses but does not define, scope by scope: what the bundle must copy."""
    import ast
    import builtins

    tree = ast.parse(code)
    module_defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    module_defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                       if isinstance(t, ast.Name)}
    free = set()
    for node in tree.body:
        for scope in _scopes(node):
            local = {n.id for n in ast.walk(scope)
                     if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            local |= {a.arg for n in ast.walk(scope) if isinstance(n, ast.arguments)
                      for a in n.posonlyargs + n.args + n.kwonlyargs + [n.vararg, n.kwarg] if a is not None}
            used = {n.id for n in ast.walk(scope) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            free |= used - local
    constants = {"SEED", "EPOCHS", "BATCH_SIZE", "SHUFFLE", "INPUT_SHAPE", "LEARNING_RATE", "DTYPE", "TASK",
                 "METRICS"}
    return {u for u in free - module_defined - constants if not hasattr(builtins, u)}


def _scopes(node):
    """A top-level function, each method of a class, or a module-level statement."""
    import ast

    if isinstance(node, ast.ClassDef):
        return [n for n in node.body if isinstance(n, ast.FunctionDef)] or [node]
    return [node]


__all__ = ["EmitUnsupported", "emit"]
