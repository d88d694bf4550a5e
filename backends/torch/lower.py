"""IR → PyTorch, one lowering per IR class, side by side (the torch backend and the emitted torch script).

Each function returns an expression over backends/torch/library.py's names (layers.py, recurrent.py,
activations.py, losses.py, optimizers.py, plus torch, F and partial); `ref("step")` is the dropout step
counter. This module imports no framework: the support matrix is computed from these registrations alone."""

from __future__ import annotations

from dlc.backends.lowering import TORCH, Context, call, lowers, ref
from dlc.compiler import functions as fn
from dlc.compiler import layers as L
from dlc.compiler import training as T
from dlc.reference.metrics import error_row, stats_size
from dlc.reference.rng import dropout_base, dropout_threshold
from dlc.reference.semantics import as_float32, same_pad


def _partial(name: str, **kwargs):
    return call("partial", ref(name), **kwargs)


def _act(ctx: Context, act):
    """An activation argument: None for linear (the module skips it)."""
    lowered = ctx.activation(act)
    return None if lowered == ref("linear") else lowered


def _no_fused_output(layer, ctx: Context) -> None:
    from dlc.backends.lowering import LoweringMissing

    if ctx.fused:
        raise LoweringMissing(f"{layer.kind} as the output layer", ctx.target, layer.at,
                              "not supported (its activation cannot be fused into the loss; add a Dense)")


# -------------------------------------------------------------------------------------------------- layers


@lowers(L.Dense, targets=TORCH)
def dense(layer: L.Dense, ctx: Context):
    return call("Dense", ctx.in_shape[-1], layer.units, use_bias=layer.use_bias,
                activation=_act(ctx, layer.activation))


@lowers(L.Maxout, targets=TORCH)
def maxout(layer: L.Maxout, ctx: Context):
    return call("Maxout", ctx.in_shape[-1], layer.units, layer.pieces, use_bias=layer.use_bias,
                activation=_act(ctx, layer.activation))


@lowers(L.Conv2D, targets=TORCH)
def conv2d(layer: L.Conv2D, ctx: Context):
    ks, ss = layer._ks()
    return call("Conv2D", ctx.in_shape[-1], layer.filters, ks, strides=ss, pad=_pad2d(layer, ctx, ks, ss),
                use_bias=layer.use_bias, activation=_act(ctx, layer.activation))


@lowers(L.Conv1D, targets=TORCH)
def conv1d(layer: L.Conv1D, ctx: Context):
    (k,), (s,) = layer._ks()
    pad = same_pad(ctx.in_shape[0], k, s) if layer.padding == "same" else (0, 0)
    return call("Conv1D", ctx.in_shape[-1], layer.filters, k, strides=s, pad=pad, use_bias=layer.use_bias,
                activation=_act(ctx, layer.activation))


def _pad2d(layer, ctx: Context, ks, ss) -> tuple[int, int, int, int]:
    """(left, right, top, bottom): TF's 'same' split on a 2-D (or a 1×L) input, zeros for 'valid'."""
    if layer.padding != "same":
        return (0, 0, 0, 0)
    spatial = ctx.in_shape[:-1] if len(ctx.in_shape) == 3 else (1,) + ctx.in_shape[:-1]
    (top, bottom), (left, right) = same_pad(spatial[0], ks[0], ss[0]), same_pad(spatial[1], ks[1], ss[1])
    return (left, right, top, bottom)


def _pool(layer, ctx: Context, mode: str):
    ps, ss = layer._ps()
    one_d = layer.rank == 1
    if one_d:
        ps, ss = (1,) + tuple(ps), (1,) + tuple(ss)
    spatial = (1,) + ctx.in_shape[:-1] if one_d else ctx.in_shape[:-1]
    pad = _pad2d(layer, ctx, ps, ss)
    return call("Pool", mode, tuple(ps), tuple(ss), pad=pad if any(pad) else None,
                spatial=spatial if any(pad) and mode == "avg" else None, one_d=one_d or None)


@lowers(L.MaxPool2D, L.MaxPool1D, targets=TORCH)
def max_pool(layer, ctx: Context):
    return _pool(layer, ctx, "max")


@lowers(L.AvgPool2D, L.AvgPool1D, targets=TORCH)
def avg_pool(layer, ctx: Context):
    return _pool(layer, ctx, "avg")


@lowers(L.GlobalAvgPool1D, L.GlobalAvgPool2D, targets=TORCH)
def global_avg_pool(layer, ctx: Context):
    return call("GlobalPool", "avg")


@lowers(L.GlobalMaxPool1D, L.GlobalMaxPool2D, targets=TORCH)
def global_max_pool(layer, ctx: Context):
    return call("GlobalPool", "max")


@lowers(L.Flatten, targets=TORCH)
def flatten(layer, ctx: Context):
    return call("Flatten")


@lowers(L.Reshape, targets=TORCH)
def reshape(layer: L.Reshape, ctx: Context):
    return call("Reshape", ctx.out_shape)


@lowers(L.Dropout, targets=TORCH)
def dropout(layer: L.Dropout, ctx: Context):
    return call("HashDropout", layer.rate, dropout_base(ctx.spec.seed, ctx.info.index),
                dropout_threshold(layer.rate), ref("step"))


@lowers(L.ActivationLayer, targets=TORCH)
def activation_layer(layer: L.ActivationLayer, ctx: Context):
    return call("Activation", ctx.activation(layer.activation))


@lowers(L.Softmax, targets=TORCH)
def softmax_layer(layer: L.Softmax, ctx: Context):
    return call("Activation", ref("linear") if ctx.fused else _partial("softmax", dim=layer.axis))


@lowers(L.BatchNorm, targets=TORCH)
def batch_norm(layer: L.BatchNorm, ctx: Context):
    return call("BatchNorm", ctx.in_shape[-1], momentum=layer.momentum, epsilon=layer.epsilon,
                center=layer.center, scale=layer.scale)


@lowers(L.LayerNorm, targets=TORCH)
def layer_norm(layer: L.LayerNorm, ctx: Context):
    return call("LayerNorm", ctx.in_shape[-1], epsilon=layer.epsilon, center=layer.center, scale=layer.scale)


@lowers(L.Embedding, targets=TORCH)
def embedding(layer: L.Embedding, ctx: Context):
    return call("Embedding", layer.input_dim, layer.output_dim)


@lowers(L.LeakyReLU, targets=TORCH)
def leaky_relu_layer(layer: L.LeakyReLU, ctx: Context):
    return call("Activation", _partial("leaky_relu", alpha=as_float32(layer.alpha)))


@lowers(L.ELU, targets=TORCH)
def elu_layer(layer: L.ELU, ctx: Context):
    return call("Activation", _partial("elu", alpha=layer.alpha))


@lowers(L.PReLU, targets=TORCH)
def prelu(layer: L.PReLU, ctx: Context):
    return call("PReLU", ctx.in_shape)


@lowers(L.SimpleRNN, L.LSTM, L.GRU, targets=TORCH)
def recurrent(layer, ctx: Context):
    _no_fused_output(layer, ctx)
    ract = getattr(layer, "recurrent_activation", None)
    return call(layer.kind, ctx.in_shape[-1], layer.units, use_bias=layer.use_bias,
                activation=ctx.lower(layer.activation),
                recurrent_activation=ctx.lower(ract) if ract is not None else None,
                return_sequences=layer.return_sequences or None)


@lowers(L.Residual, targets=TORCH)
def residual(layer: L.Residual, ctx: Context):
    """The body's lowered layers arrive from the network builder (backends/torch/library.build_network)."""
    return call("Residual")


def _same_pad2d(layer, ctx: Context) -> tuple[int, int, int, int]:
    return _pad2d(layer, ctx, *layer._ks())


def transpose_crop(n: int, k: int, s: int, out: int, padding: str) -> tuple[int, int]:
    """(before, after) to pad (negative: crop) the full transposed output ((n − 1)·s + k) to Keras' size
    `out`: TF's conv_transpose places it at the 'same' offset of the convolution it transposes (out → n), the
    odd extra after, and leaves uncovered positions zero."""
    full = (n - 1) * s + k
    before = max((n - 1) * s + k - out, 0) // 2 if padding == "same" else 0
    return -before, out - full + before


@lowers(L.Conv2DTranspose, targets=TORCH)
def conv2d_transpose(layer: L.Conv2DTranspose, ctx: Context):
    ks, ss = layer._ks()
    axes = zip(ctx.in_shape[:2], ks, ss, ctx.out_shape[:2], strict=True)
    (top, bottom), (left, right) = (transpose_crop(n, k, s, o, layer.padding) for n, k, s, o in axes)
    return call("Conv2DTranspose", ctx.in_shape[-1], layer.filters, ks, strides=ss,
                pad=(left, right, top, bottom), use_bias=layer.use_bias,
                activation=_act(ctx, layer.activation))


@lowers(L.DepthwiseConv2D, targets=TORCH)
def depthwise_conv2d(layer: L.DepthwiseConv2D, ctx: Context):
    ks, ss = layer._ks()
    return call("DepthwiseConv2D", ctx.in_shape[-1], ks, layer.depth_multiplier, strides=ss,
                pad=_same_pad2d(layer, ctx), use_bias=layer.use_bias, activation=_act(ctx, layer.activation))


@lowers(L.SeparableConv2D, targets=TORCH)
def separable_conv2d(layer: L.SeparableConv2D, ctx: Context):
    ks, ss = layer._ks()
    return call("SeparableConv2D", ctx.in_shape[-1], layer.filters, ks, layer.depth_multiplier, strides=ss,
                pad=_same_pad2d(layer, ctx), use_bias=layer.use_bias, activation=_act(ctx, layer.activation))


@lowers(L.UpSampling2D, targets=TORCH)
def up_sampling2d(layer: L.UpSampling2D, ctx: Context):
    size = L._pair(layer.size)
    return call("UpSampling2D", size, layer.interpolation,
                in_size=tuple(ctx.in_shape[:2]) if layer.interpolation == "bilinear" else None)


@lowers(L.Bidirectional, targets=TORCH)
def bidirectional(layer: L.Bidirectional, ctx: Context):
    """Two copies of the wrapped layer's lowering (evaluated separately: two modules, two sets of weights)."""
    inner = ctx.for_layer(ctx.info, fused=False).lower(layer.layer)
    return call("Bidirectional", inner, inner, merge_mode=layer.merge_mode)


# --------------------------------------------------------------------------------------------- activations


def _named(name: str):
    """The lowering of an item that is one library function, named `name`."""

    def lower(node, ctx: Context):
        return ref(name)

    lower.__name__ = lower.__qualname__ = name.split(".")[-1]
    return lower


for _cls, _name in [(fn.Linear, "linear"), (fn.Sigmoid, "torch.sigmoid"), (fn.HardSigmoid, "hard_sigmoid"),
                    (fn.Tanh, "torch.tanh"), (fn.Relu, "F.relu"), (fn.Relu6, "F.relu6"), (fn.Selu, "selu"),
                    (fn.Gelu, "gelu"), (fn.Swish, "F.silu"), (fn.Softplus, "softplus"),
                    (fn.Softsign, "softsign"), (fn.Softmax, "softmax")]:
    lowers(_cls, targets=TORCH)(_named(_name))


@lowers(fn.LeakyReluActivation, targets=TORCH)
def leaky_relu(act, ctx: Context):
    return _partial("leaky_relu", alpha=as_float32(act.alpha))


@lowers(fn.EluActivation, targets=TORCH)
def elu(act, ctx: Context):
    return _partial("elu", alpha=act.alpha)


# ---------------------------------------------------------------------------------- regularizers, constraints


@lowers(fn.L1, fn.L2, fn.L1L2, targets=TORCH)
def penalty(reg, ctx: Context):
    """Coefficients cast through float32, as Keras casts them."""
    return _partial("penalty", l1=as_float32(reg.l1) if reg.l1 else None,
                    l2=as_float32(reg.l2) if reg.l2 else None)


@lowers(fn.MaxNorm, targets=TORCH)
def max_norm(c: fn.MaxNorm, ctx: Context):
    return _partial("max_norm", max_value=c.max_value, axis=c.axis)


@lowers(fn.UnitNorm, targets=TORCH)
def unit_norm(c: fn.UnitNorm, ctx: Context):
    return _partial("unit_norm", axis=c.axis)


@lowers(fn.NonNeg, targets=TORCH)
def non_neg(c, ctx: Context):
    return ref("non_neg")


# ------------------------------------------------------------------------------------------------- optimizers


def _optimizer(name: str, opt, *fields: str):
    common = {k: getattr(opt, k) for k in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay")}
    return _partial(name, learning_rate=opt.learning_rate, **{f: getattr(opt, f) for f in fields}, **common)


@lowers(T.SGD, targets=TORCH)
def sgd(opt: T.SGD, ctx: Context):
    return _optimizer("SGD", opt, "momentum", "nesterov")


@lowers(T.RMSprop, targets=TORCH)
def rmsprop(opt: T.RMSprop, ctx: Context):
    return _optimizer("RMSprop", opt, "rho", "momentum", "epsilon", "centered")


@lowers(T.Adam, T.AdamW, targets=TORCH)
def adam(opt: T.Adam, ctx: Context):
    return _optimizer("Adam", opt, "beta_1", "beta_2", "epsilon", "amsgrad")


@lowers(T.Adagrad, targets=TORCH)
def adagrad(opt: T.Adagrad, ctx: Context):
    return _optimizer("Adagrad", opt, "initial_accumulator_value", "epsilon")


@lowers(T.Adadelta, targets=TORCH)
def adadelta(opt: T.Adadelta, ctx: Context):
    return _optimizer("Adadelta", opt, "rho", "epsilon")


@lowers(T.Nadam, targets=TORCH)
def nadam(opt: T.Nadam, ctx: Context):
    return _optimizer("Nadam", opt, "beta_1", "beta_2", "epsilon")


# ----------------------------------------------------------------------------------------------------- losses


for _cls, _name in [(T.CategoricalCrossentropy, "categorical_crossentropy"),
                    (T.SparseCategoricalCrossentropy, "sparse_categorical_crossentropy"),
                    (T.BinaryCrossentropy, "binary_crossentropy"), (T.MSE, "mse"), (T.MAE, "mae")]:
    lowers(_cls, targets=TORCH)(_named(_name))


@lowers(T.Huber, targets=TORCH)
def huber(loss: T.Huber, ctx: Context):
    return _partial("huber", delta=loss.delta)


SMALL_STEP_WORK = 2e7  # a step's work (Spec.work_per_sample × batch) under which one CPU thread is faster


def one_thread_is_faster(spec) -> bool:
    """Small models: torch's worker threads spin-wait between tiny ops, so on 2 cores (or a busy machine)
    several threads made small models 4-30x slower (measured); bigger steps keep torch's default. The work,
    not the parameter count: bench/cnn.dlspec has 54k parameters but a convolution at 676 positions, and
    forced to one thread it trained at 0.57x a hand-written torch loop (1.04x with the governor)."""
    return spec.work_per_sample() * spec.train.batch_size < SMALL_STEP_WORK


def metric_stats(spec, fused: str | None):
    """The metric statistics the task needs (dlc/reference/metrics.py turns them into metrics): with mse or
    mae on a classification loss, the error row of the probabilities under the confusion matrix."""
    task = spec.task
    if task == "regression":
        return ref("regression_stats"), (3,)
    names = [m.name for m in spec.metrics]
    errors = ({"errors": "logits" if fused else "probabilities"} if error_row(task, names) else {})
    if task == "binary":
        return _partial("binary_stats", threshold=0.0 if fused else 0.5, **errors), stats_size(task, 2, names)
    k = spec.output_shape()[-1]
    return _partial("confusion_stats", k=k, **errors), stats_size(task, k, names)

