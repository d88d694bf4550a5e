"""IR → Keras 3, one lowering per IR class (the keras backend and the emitted keras script share them).

Each function returns an expression over `keras.*` and backends/keras/library.py's names (HashDropout, Maxout,
Residual, LeakyRelu, Elu, the loss functions, partial); `ref("DTYPE")` is the float dtype string and
`ref("step")` the int64 step variable that keys the dropout masks. Keras is the reference semantics, so almost
everything is Keras' own layer with the IR's parameters. This module imports no framework."""

from __future__ import annotations

from dlc.backends.lowering import KERAS, Context, LoweringMissing, call, lowers, ref
from dlc.compiler import functions as fn
from dlc.compiler import layers as L
from dlc.compiler import training as T
from dlc.reference.rng import dropout_base

DTYPE = ref("DTYPE")


def _opt(ctx: Context, node):
    """A lowered optional argument (regularizer, constraint): None is left out of the call."""
    return None if node is None else ctx.lower(node)


def _common(layer) -> dict:
    return {"dtype": DTYPE, "name": layer.name}


def _kernel_kwargs(layer, ctx: Context) -> dict:
    """The arguments every layer with a kernel and a bias takes (Dense, Conv*, Maxout)."""
    return {"activation": ctx.activation(layer.activation), "use_bias": layer.use_bias,
            "kernel_regularizer": _opt(ctx, layer.kernel_reg), "bias_regularizer": _opt(ctx, layer.bias_reg),
            "activity_regularizer": _opt(ctx, layer.activity_reg),
            "kernel_constraint": _opt(ctx, layer.kernel_constraint),
            "bias_constraint": _opt(ctx, layer.bias_constraint), **_common(layer)}


# -------------------------------------------------------------------------------------------------- layers


@lowers(L.Dense, targets=KERAS)
def dense(layer: L.Dense, ctx: Context):
    return call("keras.layers.Dense", layer.units, **_kernel_kwargs(layer, ctx))


@lowers(L.Maxout, targets=KERAS)
def maxout(layer: L.Maxout, ctx: Context):
    return call("Maxout", layer.units, layer.pieces, **_kernel_kwargs(layer, ctx))


CONVS: dict[type[L.Layer], str] = {L.Conv1D: "keras.layers.Conv1D", L.Conv2D: "keras.layers.Conv2D"}


@lowers(*CONVS, targets=KERAS)
def conv(layer, ctx: Context):
    return call(CONVS[type(layer)], layer.filters, layer.kernel_size, strides=layer.strides,
                padding=layer.padding, **_kernel_kwargs(layer, ctx))


POOLS: dict[type[L.Layer], str] = {
    L.MaxPool1D: "keras.layers.MaxPooling1D", L.MaxPool2D: "keras.layers.MaxPooling2D",
    L.AvgPool1D: "keras.layers.AveragePooling1D", L.AvgPool2D: "keras.layers.AveragePooling2D"}


@lowers(*POOLS, targets=KERAS)
def pool(layer, ctx: Context):
    return call(POOLS[type(layer)], layer.pool_size, strides=layer.strides, padding=layer.padding,
                **_common(layer))


GLOBAL_POOLS: dict[type[L.Layer], str] = {L.GlobalAvgPool1D: "keras.layers.GlobalAveragePooling1D",
                                          L.GlobalAvgPool2D: "keras.layers.GlobalAveragePooling2D",
                                          L.GlobalMaxPool1D: "keras.layers.GlobalMaxPooling1D",
                                          L.GlobalMaxPool2D: "keras.layers.GlobalMaxPooling2D"}


@lowers(*GLOBAL_POOLS, targets=KERAS)
def global_pool(layer, ctx: Context):
    return call(GLOBAL_POOLS[type(layer)], **_common(layer))


@lowers(L.Flatten, targets=KERAS)
def flatten(layer: L.Flatten, ctx: Context):
    return call("keras.layers.Flatten", **_common(layer))


@lowers(L.Reshape, targets=KERAS)
def reshape(layer: L.Reshape, ctx: Context):
    return call("keras.layers.Reshape", layer.target_shape, **_common(layer))


@lowers(L.Dropout, targets=KERAS)
def dropout(layer: L.Dropout, ctx: Context):
    """dlc's hash masks: the per-layer base is hashed here, the step comes from the shared variable."""
    return call("HashDropout", layer.rate, dropout_base(ctx.spec.seed, ctx.info.index), step=ref("step"),
                **_common(layer))


@lowers(L.ActivationLayer, targets=KERAS)
def activation_layer(layer: L.ActivationLayer, ctx: Context):
    return call("keras.layers.Activation", ctx.activation(layer.activation), **_common(layer))


@lowers(L.Softmax, targets=KERAS)
def softmax_layer(layer: L.Softmax, ctx: Context):
    if ctx.fused:  # the loss applies it to the logits
        return call("keras.layers.Activation", ctx.lower(fn.LINEAR), **_common(layer))
    return call("keras.layers.Softmax", axis=layer.axis, **_common(layer))


@lowers(L.BatchNorm, targets=KERAS)
def batch_norm(layer: L.BatchNorm, ctx: Context):
    return call("keras.layers.BatchNormalization", momentum=layer.momentum, epsilon=layer.epsilon,
                center=layer.center, scale=layer.scale, **_common(layer))


@lowers(L.LayerNorm, targets=KERAS)
def layer_norm(layer: L.LayerNorm, ctx: Context):
    return call("keras.layers.LayerNormalization", axis=-1, epsilon=layer.epsilon, center=layer.center,
                scale=layer.scale, **_common(layer))


@lowers(L.Embedding, targets=KERAS)
def embedding(layer: L.Embedding, ctx: Context):
    return call("keras.layers.Embedding", layer.input_dim, layer.output_dim, **_common(layer))


@lowers(L.LeakyReLU, targets=KERAS)
def leaky_relu_layer(layer: L.LeakyReLU, ctx: Context):
    return call("keras.layers.LeakyReLU", negative_slope=layer.alpha, **_common(layer))


@lowers(L.ELU, targets=KERAS)
def elu_layer(layer: L.ELU, ctx: Context):
    return call("keras.layers.ELU", alpha=layer.alpha, **_common(layer))


@lowers(L.PReLU, targets=KERAS)
def prelu(layer: L.PReLU, ctx: Context):
    return call("keras.layers.PReLU", **_common(layer))


@lowers(L.Residual, targets=KERAS)
def residual(layer: L.Residual, ctx: Context):
    """A marker; backends/network.py appends the lowered body as `name=layer` arguments, and
    library.apply_layers adds the input to the body's output."""
    return call("Residual", **_common(layer))


# ----------------------------------------------------------------------------------------------- recurrent
# Keras' own layers (the reference). use_cudnn=False pins the standard implementation so that a GPU never
# swaps in the fused cuDNN kernel; GRU keeps reset_after=True, LSTM unit_forget_bias (dlc draws the bias
# itself).


def _recurrent_kwargs(layer, ctx: Context) -> dict:
    if ctx.fused:
        raise LoweringMissing(f"{layer.kind} as the output layer", ctx.target, layer.at,
                              "not supported (its activation cannot be fused into the loss; add a Dense)")
    return {"activation": ctx.lower(layer.activation), "use_bias": layer.use_bias,
            "kernel_regularizer": _opt(ctx, layer.kernel_reg),
            "recurrent_regularizer": _opt(ctx, layer.recurrent_reg),
            "bias_regularizer": _opt(ctx, layer.bias_reg), "return_sequences": layer.return_sequences,
            "activity_regularizer": _opt(ctx, layer.activity_reg),
            "kernel_constraint": _opt(ctx, layer.kernel_constraint),
            "recurrent_constraint": _opt(ctx, layer.recurrent_constraint),
            "bias_constraint": _opt(ctx, layer.bias_constraint), **_common(layer)}


@lowers(L.SimpleRNN, targets=KERAS)
def simple_rnn(layer: L.SimpleRNN, ctx: Context):
    # (library.SimpleRNN: Keras' own drops an activity regularizer)
    return call("SimpleRNN" if layer.activity_reg is not None else "keras.layers.SimpleRNN", layer.units,
                **_recurrent_kwargs(layer, ctx))


@lowers(L.LSTM, targets=KERAS)
def lstm(layer: L.LSTM, ctx: Context):
    return call("keras.layers.LSTM", layer.units, recurrent_activation=ctx.lower(layer.recurrent_activation),
                unit_forget_bias=layer.unit_forget_bias, use_cudnn=False, **_recurrent_kwargs(layer, ctx))


@lowers(L.GRU, targets=KERAS)
def gru(layer: L.GRU, ctx: Context):
    return call("keras.layers.GRU", layer.units, recurrent_activation=ctx.lower(layer.recurrent_activation),
                reset_after=True, use_cudnn=False, **_recurrent_kwargs(layer, ctx))


@lowers(L.Conv2DTranspose, targets=KERAS)
def conv2d_transpose(layer: L.Conv2DTranspose, ctx: Context):
    return call("keras.layers.Conv2DTranspose", layer.filters, layer.kernel_size, strides=layer.strides,
                padding=layer.padding, output_padding=layer.output_padding,
                activation=ctx.activation(layer.activation), use_bias=layer.use_bias,
                kernel_regularizer=_opt(ctx, layer.kernel_reg), bias_regularizer=_opt(ctx, layer.bias_reg),
                activity_regularizer=_opt(ctx, layer.activity_reg),
                kernel_constraint=_opt(ctx, layer.kernel_constraint),
                bias_constraint=_opt(ctx, layer.bias_constraint), **_common(layer))


@lowers(L.DepthwiseConv2D, targets=KERAS)
def depthwise_conv2d(layer: L.DepthwiseConv2D, ctx: Context):
    """The IR's kernel_* are Keras' depthwise_* arguments (Keras 3 names the variable `kernel`)."""
    return call("keras.layers.DepthwiseConv2D", layer.kernel_size, strides=layer.strides,
                padding=layer.padding,
                depth_multiplier=layer.depth_multiplier, activation=ctx.activation(layer.activation),
                use_bias=layer.use_bias, depthwise_regularizer=_opt(ctx, layer.kernel_reg),
                bias_regularizer=_opt(ctx, layer.bias_reg),
                activity_regularizer=_opt(ctx, layer.activity_reg),
                depthwise_constraint=_opt(ctx, layer.kernel_constraint),
                bias_constraint=_opt(ctx, layer.bias_constraint), **_common(layer))


@lowers(L.SeparableConv2D, targets=KERAS)
def separable_conv2d(layer: L.SeparableConv2D, ctx: Context):
    return call("keras.layers.SeparableConv2D", layer.filters, layer.kernel_size, strides=layer.strides,
                padding=layer.padding, depth_multiplier=layer.depth_multiplier,
                activation=ctx.activation(layer.activation), use_bias=layer.use_bias,
                depthwise_regularizer=_opt(ctx, layer.depthwise_reg),
                pointwise_regularizer=_opt(ctx, layer.pointwise_reg),
                bias_regularizer=_opt(ctx, layer.bias_reg),
                activity_regularizer=_opt(ctx, layer.activity_reg),
                depthwise_constraint=_opt(ctx, layer.depthwise_constraint),
                pointwise_constraint=_opt(ctx, layer.pointwise_constraint),
                bias_constraint=_opt(ctx, layer.bias_constraint), **_common(layer))


@lowers(L.UpSampling2D, targets=KERAS)
def up_sampling2d(layer: L.UpSampling2D, ctx: Context):
    return call("keras.layers.UpSampling2D", layer.size, interpolation=layer.interpolation, **_common(layer))


@lowers(L.Bidirectional, targets=KERAS)
def bidirectional(layer: L.Bidirectional, ctx: Context):
    """The wrapped layer lowered as on its own (Keras copies it into forward_<name> and backward_<name>, the
    backward one with go_backwards=True), named as Keras would name it and with the model's dtype."""
    inner = layer.layer.model_copy(update={"name": layer.layer.kind.lower()})
    return call("keras.layers.Bidirectional", ctx.for_layer(ctx.info, fused=False).lower(inner),
                merge_mode=layer.merge_mode, **_common(layer))


# --------------------------------------------------------------------------------------------- activations

ACTIVATIONS: dict[type[fn.Activation], str] = {
    fn.Linear: "linear", fn.Sigmoid: "sigmoid", fn.HardSigmoid: "hard_sigmoid", fn.Tanh: "tanh",
    fn.Relu: "relu", fn.Relu6: "relu6", fn.Selu: "selu", fn.Gelu: "gelu", fn.Swish: "silu",
    fn.Softplus: "softplus", fn.Softsign: "softsign", fn.Softmax: "softmax"}


@lowers(*ACTIVATIONS, targets=KERAS)
def activation(act, ctx: Context):
    """Keras' own function (gelu: the exact erf form, Keras' default)."""
    return ref(f"keras.activations.{ACTIVATIONS[type(act)]}")


@lowers(fn.LeakyReluActivation, targets=KERAS)
def leaky_relu(act: fn.LeakyReluActivation, ctx: Context):
    return call("LeakyRelu", act.alpha)


@lowers(fn.EluActivation, targets=KERAS)
def elu(act: fn.EluActivation, ctx: Context):
    return call("Elu", act.alpha)


# ---------------------------------------------------------------------------------- regularizers, constraints


@lowers(fn.L1, targets=KERAS)
def l1(reg: fn.L1, ctx: Context):
    return call("keras.regularizers.L1", reg.l1)


@lowers(fn.L2, targets=KERAS)
def l2(reg: fn.L2, ctx: Context):
    return call("keras.regularizers.L2", reg.l2)


@lowers(fn.L1L2, targets=KERAS)
def l1_l2(reg: fn.L1L2, ctx: Context):
    return call("keras.regularizers.L1L2", l1=reg.l1, l2=reg.l2)


@lowers(fn.MaxNorm, targets=KERAS)
def max_norm(c: fn.MaxNorm, ctx: Context):
    return call("keras.constraints.MaxNorm", c.max_value, axis=c.axis)


@lowers(fn.NonNeg, targets=KERAS)
def non_neg(c: fn.NonNeg, ctx: Context):
    return call("keras.constraints.NonNeg")


@lowers(fn.UnitNorm, targets=KERAS)
def unit_norm(c: fn.UnitNorm, ctx: Context):
    return call("keras.constraints.UnitNorm", axis=c.axis)


# ---------------------------------------------------------------------------------------------- optimizers


def _clip(opt: T.Optimizer) -> dict:
    """The options every Keras optimizer takes; unset ones (None) are left out of the call."""
    return {"clipnorm": opt.clipnorm, "clipvalue": opt.clipvalue, "global_clipnorm": opt.global_clipnorm,
            "weight_decay": opt.weight_decay}


@lowers(T.SGD, targets=KERAS)
def sgd(opt: T.SGD, ctx: Context):
    return call("keras.optimizers.SGD", opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov,
                **_clip(opt))


@lowers(T.RMSprop, targets=KERAS)
def rmsprop(opt: T.RMSprop, ctx: Context):
    return call("keras.optimizers.RMSprop", opt.learning_rate, rho=opt.rho, momentum=opt.momentum,
                epsilon=opt.epsilon, centered=opt.centered, **_clip(opt))


ADAMS = {T.Adam: "keras.optimizers.Adam", T.AdamW: "keras.optimizers.AdamW"}


@lowers(*ADAMS, targets=KERAS)
def adam(opt: T.Adam, ctx: Context):
    """AdamW's decoupled weight decay (default 0.004) is its weight_decay, passed like any optimizer's."""
    return call(ADAMS[type(opt)], opt.learning_rate, beta_1=opt.beta_1, beta_2=opt.beta_2,
                epsilon=opt.epsilon, amsgrad=opt.amsgrad, **_clip(opt))


@lowers(T.Adagrad, targets=KERAS)
def adagrad(opt: T.Adagrad, ctx: Context):
    return call("keras.optimizers.Adagrad", opt.learning_rate,
                initial_accumulator_value=opt.initial_accumulator_value, epsilon=opt.epsilon, **_clip(opt))


@lowers(T.Adadelta, targets=KERAS)
def adadelta(opt: T.Adadelta, ctx: Context):
    return call("keras.optimizers.Adadelta", opt.learning_rate, rho=opt.rho, epsilon=opt.epsilon,
                **_clip(opt))


@lowers(T.Nadam, targets=KERAS)
def nadam(opt: T.Nadam, ctx: Context):
    return call("keras.optimizers.Nadam", opt.learning_rate, beta_1=opt.beta_1, beta_2=opt.beta_2,
                epsilon=opt.epsilon, **_clip(opt))


# -------------------------------------------------------------------------------------------------- losses

LOSSES: dict[type[T.Loss], str] = {T.CategoricalCrossentropy: "categorical_crossentropy",
                                   T.SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
                                   T.BinaryCrossentropy: "binary_crossentropy", T.MSE: "mean_squared_error",
                                   T.MAE: "mean_absolute_error"}


@lowers(*LOSSES, targets=KERAS)
def loss(node, ctx: Context):
    """library.py's function of (targets, network output); crossentropies take the logits."""
    return ref(LOSSES[type(node)])


@lowers(T.Huber, targets=KERAS)
def huber(node: T.Huber, ctx: Context):
    return call("partial", ref("huber"), delta=node.delta)

