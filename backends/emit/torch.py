"""The model part of an emitted PyTorch script: the torch backend's own lowering of the spec, rendered."""

from __future__ import annotations

from dlc.backends.lowering import Call, Context, Ref, call, ref, render
from dlc.backends.network import network_expr
from dlc.backends.torch.lower import metric_stats
from dlc.compiler.checkshared import fused_output
from dlc.compiler.layers import Bidirectional
from dlc.compiler.spec import Spec

from .bundle import parse_module

TARGET = "emit_torch"

MODEL = '''class Model:
    """The network, loss, optimizer and training step dlc's torch backend builds for this spec."""

    def __init__(self, weights):
        step = self.step = StepCounter()  # the optimizer step, which keys the dropout masks
        self.net = {net}.to(DTYPE)
        set_weights(self.net, weights){layers}
        self.optimizer = {optimizer}
        self.trainer = Trainer(
            self.net,
            loss={loss},
            optimizer=self.optimizer,
            stats={stats},
            stats_shape={stats_shape!r},
            step=step,
            penalties={penalties},
            activity={activity},
            constraints={constraints},
        )

    def set_lr(self, lr):
        self.optimizer.lr = float(lr)

    def train_epoch(self, x, y, perm):
        return self.trainer.train_epoch(*to_tensors(x, y, DTYPE), perm, BATCH_SIZE)

    def evaluate(self, x, y):
        return self.trainer.evaluate(*to_tensors(x, y, DTYPE), BATCH_SIZE)

    def get_weights(self):
        return get_weights(self.net, {names})

    def set_weights(self, weights):
        set_weights(self.net, weights)'''


def library_modules() -> tuple[str, ...]:
    """The modules backends/torch/library.py gathers (read from its imports: one list, kept there)."""
    lib = parse_module("dlc.backends.torch.library")
    return tuple(f"dlc.backends.torch.{name}" for name, (mod, attr, level) in lib.imports.items()
                 if level == 1 and attr is not None and mod == "")


def applied(expr, *args):
    """`partial(f, **kw)` called with `args`, written as `f(*args, **kw)`."""
    if isinstance(expr, Call) and expr.fn == Ref("partial"):
        return Call(expr.args[0], tuple(args) + expr.args[1:], expr.kwargs)
    return Call(expr, tuple(args), ())


def _tensor(layer: str, weight: str):
    return call("weight_tensor", ref(f"layers[{layer!r}]"), weight)


def regularization(spec: Spec, ctx: Context) -> tuple[list, list, list]:
    """(penalties, activity, constraints) as the torch session builds them, in expressions."""
    penalties, activity, constraints = [], [], []
    for info in spec.walk():
        name = info.layer.name
        for w in info.weights:
            if w.regularizer is not None:
                penalties.append((_tensor(name, w.name), ctx.lower(w.regularizer)))
            if w.constraint is not None:
                constraints.append((_tensor(name, w.name), ctx.lower(w.constraint)))
        reg = getattr(info.layer, "activity_reg", None)  # (the layers that take one: Dense, Conv*, RNNs, ...)
        if reg is not None:
            activity.append((ref(f"layers[{name!r}]"), ctx.lower(reg)))
        # Bidirectional: each direction's output (the session's)
        if isinstance(info.layer, Bidirectional) and info.layer.layer.activity_reg is not None:
            activity += [(ref(f"layers[{name!r}].{d}_layer"), ctx.lower(info.layer.layer.activity_reg))
                         for d in ("forward", "backward")]
    return penalties, activity, constraints


def model_code(spec: Spec) -> tuple[str, tuple[str, ...]]:
    ctx = Context(TARGET, spec)
    stats, stats_shape = metric_stats(spec, fused_output(spec))
    penalties, activity, constraints = regularization(spec, ctx)
    names = {i.layer.name: [w.name for w in i.weights] for i in spec.walk() if i.weights}
    code = MODEL.format(
        net=render(network_expr(spec, TARGET), 8, used=len("self.net = .to(DTYPE)")),
        optimizer=render(applied(ctx.lower(spec.optimizer), ref("list(self.net.parameters())")), 8,
                         used=len("self.optimizer = ")),
        loss=render(ctx.lower(spec.loss), 12, used=len("loss=,")),
        stats=render(stats, 12, used=len("stats=,")),
        stats_shape=stats_shape, penalties=render(penalties, 12, used=len("penalties=,")),
        activity=render(activity, 12, used=len("activity=,")),
        constraints=render(constraints, 12, used=len("constraints=,")),
        names=render(names, 8, used=len("return get_weights(self.net, )")),
        layers="\n        layers = layer_modules(self.net)" if penalties or activity or constraints else "")
    return code, library_modules()
