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
from dlc.compiler.diagnostics import DlcError
from dlc.compiler.spec import Bundled, Csv, Npy, Spec
from dlc.reference.rng import STREAM_INIT

from .bundle import Bundle, import_block
from .lower import DrawContext

# where the names of the shared part are defined (dlc's numpy reference code)
SHARED_MODULES = ("dlc.reference.rng", "dlc.compiler.functions", "dlc.compiler.training",
                  "dlc.compiler.layers", "dlc.runtime.data", "dlc.runtime.data.normalize",
                  "dlc.runtime.augment", "dlc.reference.metrics", "dlc.reference.callbacks",
                  "dlc.runtime.loop")
FRAMEWORK = {"torch": "PyTorch", "keras": "Keras"}
# module names generated code may use, and the import that defines each
MODULE_ALIASES = {"np": "import numpy as np", "math": "import math", "json": "import json",
                  "argparse": "import argparse", "partial": "from functools import partial",
                  "torch": "import torch",
                  "F": "import torch.nn.functional as F", "nn": "from torch import nn",
                  "keras": "import keras", "tf": "import tensorflow as tf"}
RULE = "# " + "-" * 108


class EmitUnsupported(DlcError):
    """The spec cannot be written as a script; the message names the item and the target."""


HEADER = '''#!/usr/bin/env python3
"""{name}: train the model of {spec_file} with {framework}.

Written by `dlc compile {spec_file} --emit {backend}`; standalone (numpy, scikit-learn and {framework}).
It computes what `dlc run --backend {backend}{device}` computes, step for step: dlc's seeded split, initial
weights, epoch shuffles, dropout masks and augmentations, and Keras' layer, loss and optimizer formulas. This
spec's data, model and training come first; the definitions they use are copied from dlc after them.

    python {script} [--epochs N] [--losses losses.json]

It stops where `dlc run` stops, with one line and exit 1: at a nan or inf loss, or on data `dlc run`
refuses (the per-step losses so far are still written).
"""

from __future__ import annotations
'''


def _fit(text: str, width: int = 110) -> str:
    """`text` with each line longer than `width` (a long spec or model name) broken at its spaces, indented as
    it was: the script keeps the project's line length (ruff's E501)."""
    import textwrap

    def fit(line: str) -> list[str]:
        indent = line[:len(line) - len(line.lstrip())]
        return textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False) if len(line) > width else [line]

    return "\n".join(out for line in text.split("\n") for out in fit(line))


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
    """load_data(): the splits [(train, val, test)] of (x, y) pairs, as dlc.runtime.data.prepare/folds make
    them, checked by dlc's own functions (load(), check_statistics(), check_model_inputs(): copied, so the
    script refuses the data `dlc run` refuses, in its words)."""
    d = spec.data
    assert d is not None  # (check() refuses a spec without a data block)
    ctx = DataContext(target, base_dir)
    split = render(REGISTRY.lower(target, d.split, ctx), 4, used=len("splits = "))
    lines = ["def load_data():",
             '    """[(train, val, test)], each an (x, y) pair or None: the data checked as `dlc run`',
             "    checks it, dlc's seeded split, normalised with statistics of the training part only.\"\"\"",
             "    spec = Spec()",
             "    data = load(spec, base_dir=None)  # (load_samples reads the files by their full paths)",
             "    s, n, labels = data.samples, len(data.x), data.labels",
             f"    splits = {split}",
             "    out = []",
             "    for train, val, test in splits:",
             '        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):',
             "            shift, scale = normalizer(spec.data.normalize, data.x[train])",
             "            check_statistics(spec, shift, scale, s.where)",
             "        flat = data.x if shift is None or scale is None else normalized(data.x, shift, scale)",
             "        check_model_inputs(spec, flat, s.where, s.row)",
             "        xs = flat.reshape((n,) + INPUT_SHAPE)",
             "        out.append(tuple((xs[ix], data.targets[ix]) if len(ix) else None"
             " for ix in (train, val, test)))",
             "    return out"]
    return "\n".join(lines)


# the names the script defines for the copied data checks to use, in place of dlc's (which need the compiler)
STAND_INS = frozenset({"Spec", "load_samples"})

SPEC_FACTS = '''class Spec:
    """What dlc's data checks (copied above: load, checked_targets, check_model_inputs) read of the spec."""

    class Loss:
        name = {loss!r}

    class Data:
        normalize = {normalize!r}

    loss, data, dtype, input = Loss(), Data(), {dtype!r}, {input!r}
    task, targets = {task!r}, {targets!r}  # (dlc's Spec.task, Spec.targets)

    def output_shape(self):
        return {output!r}

    def input_vocabulary(self):
        return {vocabulary!r}


def load_samples(spec, base_dir, keep_float32=False):
    """The spec's data as its source holds it, with the file the messages name (and a CSV file's rows)."""
{read}'''


def spec_code(spec: Spec, target: str, base_dir: Path) -> str:
    """Spec and load_samples(): the stand-ins (STAND_INS) the copied checks call
    where dlc's take the compiled spec, with the values dlc's own functions give for this spec."""
    d = spec.data
    assert d is not None
    ctx = DataContext(target, base_dir)
    read = REGISTRY.lower(target, d.source, ctx)
    if isinstance(d.source, Csv):  # (its reader gives the samples, with each one's row in the file)
        lines = f"    return {render(read, 4, used=len('return '))}"
    else:  # (named as dlc.runtime.data.load_samples names them: an npy source by its two files)
        where = d.source.name if isinstance(d.source, Bundled) else str(ctx.resolve(
            d.source.x if isinstance(d.source, Npy) else d.source.path))
        targets = str(ctx.resolve(d.source.y)) if isinstance(d.source, Npy) else None
        samples = render(call("Samples", ref("x"), ref("y"), where, targets_where=targets), 4,
                         used=len("return "))
        lines = f"    x, y = {render(read, 4, used=len('x, y = '))}\n    return {samples}"
    return SPEC_FACTS.format(loss=spec.loss.name, task=spec.task, targets=spec.targets, normalize=d.normalize,
                             dtype=spec.dtype, input=tuple(spec.input), output=tuple(spec.output_shape()),
                             vocabulary=spec.input_vocabulary(), read=lines)


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
            lines.append(f"            {w.name!r}: {render(expr, 12, used=len(repr(w.name)) + 3)},")
        lines.append("        },")
    lines.append("    }")
    return "\n".join(lines)


LOOP_HEAD = '''def train(model, train_part, val_part, epochs, step_losses):
    """Epochs of seeded shuffles, as dlc's training loop runs them, each step's loss appended to step_losses
    (kept when training fails); a nan or inf loss stops it as it stops `dlc run` (TrainingFailed)."""
    x_train, y_train = train_part
    n = len(x_train)
    lr = LEARNING_RATE'''

LOOP_EPOCH = '''        model.set_lr(lr)
        order = epoch_permutation(SEED, epoch, n, SHUFFLE)
        losses, stats, sizes = model.train_epoch({x_epoch}, y_train, order)
        step_losses.extend(float(v) for v in losses)
        _check_finite(History(), losses, epoch, lr, LEARNING_RATE)  # (dlc's own checks and messages)
        _check_finite_weights(model, History(), epoch, lr, LEARNING_RATE)
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
    lines = [LOOP_HEAD]
    if s is not None:
        name = "plateau" if s.kind == "plateau" else "lr_at"
        lowered = render(REGISTRY.lower(target, s, DataContext(target, Path("."))), 4, used=len(name) + 3)
        lines.append(f"    {name} = {lowered}")
    if augs:
        lines.append(f"    augmentations = {render(augs, 4, used=len('augmentations = '))}")
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
    return "\n".join(lines)


MAIN = '''def train_and_evaluate(epochs, step_losses):
    """A model trained and evaluated on each split (one holdout, or k folds), as `dlc run` and `dlc cv` do."""
    results = []
    splits = load_data()
    for fold, (train_part, val_part, test_part) in enumerate(splits):
        if len(splits) > 1:
            print(f"fold {fold + 1}/{len(splits)}")
        model = Model(initial_weights())
        try:
            train(model, train_part, val_part, epochs, step_losses)
        except TrainingFailed as e:
            if len(splits) > 1:  # which fold, as `dlc cv` says
                raise TrainingFailed(f"{e} (fold {fold + 1} of {len(splits)})") from None
            raise
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs to train (default: the spec's, "
                        "%(default)s)")
    parser.add_argument("--losses", help="write the per-step training losses to this JSON file")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: give 1 or more")
    if args.losses:  # a file that cannot be written is said before training, not after
        try:
            open(args.losses, "w").close()
        except OSError as e:
            parser.error(f"--losses {args.losses}: {e.strerror or e}")
    step_losses = []
    try:
        train_and_evaluate(args.epochs, step_losses)
    except (DataError, TrainingFailed) as e:  # one line, as `dlc run` says it (exit 1)
        parser.exit(1, f"{parser.prog}: error: {e}\\n")
    except KeyboardInterrupt:  # Ctrl-C: one line, as `dlc run` says it
        parser.exit(130, f"{parser.prog}: interrupted\\n")
    finally:  # the losses so far, also of a run that failed or was stopped (nan and inf as null)
        if args.losses:
            with open(args.losses, "w") as fh:
                json.dump([v if math.isfinite(v) else None for v in step_losses], fh)
'''

RUN = '''if __name__ == "__main__":  # (after the definitions copied from dlc, which main() uses)
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
    body = "\n\n\n".join(part for part in parts.values() if part)
    imports, copied = _copied(body, model_code, model_modules)
    imports = guarded_imports(imports, backend)
    head = _fit(HEADER.format(
        name=spec.name, spec_file=in_docstring(spec_path.name), framework=FRAMEWORK[backend], backend=backend,
        script=f"{spec.name}_{backend}.py", device=" --device cpu" if backend == "torch" else ""))
    threads = "torch.set_num_threads(1)  # a small model: one CPU thread is faster, and what dlc uses\n" \
        if backend == "torch" and one_thread_is_faster(spec) else ""
    # (the spec's own code first, where a reader starts; what it calls, copied from dlc, after it)
    return "\n\n\n".join([
        head + "\n" + imports + "\n\n" + threads + constants(spec, backend) + "\n" + _task_constants(spec),
        section("data and initial weights") + "\n\n\n" + body,
        section("model") + "\n\n\n" + model_code,
        section("main") + "\n\n\n" + MAIN.rstrip("\n"),
        section("copied from dlc") + "\n\n\n" + copied.rstrip("\n"),
        RUN.rstrip("\n")]) + "\n"


TF_LOG_LEVEL = '''\
# TensorFlow's native log: no notices or ERROR lines from runs that succeed (as dlc's keras backend sets it)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")'''

TF_QUIET_IMPORT = '''try:  # TensorFlow's start-up notices reach stderr before a log level applies: not shown
    _stderr, _null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(_null, 2)
{imports}
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)
    os.close(_null)'''

INTERRUPTIBLE_IMPORT = '''try:  # a Ctrl-C while the libraries load (seconds): one line and exit 130, as later
{imports}
except KeyboardInterrupt:
    sys.stderr.write(f"{{os.path.basename(sys.argv[0])}}: interrupted\\n")
    raise SystemExit(130) from None'''


def guarded_imports(imports: str, backend: str) -> str:
    """The script's imports: the standard library's, then the third-party ones, which take seconds to load,
    in a try that makes a Ctrl-C among them one line (as main() says it later); a keras script's Keras and
    TensorFlow imported as dlc imports them (quiet_tensorflow)."""
    first, _, third = imports.partition("\n\n")
    first = import_block([*first.splitlines(), "import os", "import sys"])
    if backend == "keras":
        third, first = quiet_tensorflow(third), first + "\n\n" + TF_LOG_LEVEL
    inner = "\n".join("    " + line if line else "" for line in third.splitlines())
    return first + "\n\n" + INTERRUPTIBLE_IMPORT.format(imports=inner)


def quiet_tensorflow(imports: str) -> str:
    """Third-party import lines with Keras and TensorFlow imported as dlc imports them
    (backends/keras/quiet.py): their start-up notices silenced, so that a script that fails says one line."""
    lines = imports.splitlines()
    framework = [line for line in lines if line and line.split()[1].split(".")[0] in ("keras", "tensorflow")]
    rest = "\n".join(line for line in lines if line not in framework).strip("\n")
    quiet = TF_QUIET_IMPORT.format(imports="\n".join("    " + line for line in framework))
    return rest + "\n\n" + quiet


def _copied(body: str, model_code: str, model_modules: tuple[str, ...]) -> tuple[str, str]:
    """(import block, copied definitions) for the generated code: the model's names looked up in the backend's
    library first, the rest in dlc's shared code first."""
    bundle = Bundle(SHARED_MODULES + model_modules, provided=STAND_INS)
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
    return {"spec": spec_code(spec, target, base_dir), "data": data_code(spec, target, base_dir),
            "weights": weights_code(spec, target),
            "loop": loop_code(spec, target), "model": model.model_code(spec)}


def _task_constants(spec: Spec) -> str:
    return f"TASK = {spec.task!r}\nMETRICS = {render([m.name for m in spec.metrics], used=10)}"


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
            local |= {n.name for n in ast.walk(scope) if isinstance(n, ast.ExceptHandler) and n.name}
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
