"""IR → Keras 3 for Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, UpSampling2D and Bidirectional: Keras' own
layers with the IR's parameters (Keras is the reference semantics). No framework import."""

from __future__ import annotations

from dlc.backends.lowering import KERAS, Context, call, lowers, ref
from dlc.compiler import layers as L

DTYPE = ref("DTYPE")


def _opt(ctx: Context, node):
    """A lowered optional argument (regularizer, constraint): None is left out of the call."""
    return None if node is None else ctx.lower(node)


def _common(layer) -> dict:
    return {"dtype": DTYPE, "name": layer.name}


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
    return call("keras.layers.DepthwiseConv2D", layer.kernel_size, strides=layer.strides, padding=layer.padding,
                depth_multiplier=layer.depth_multiplier, activation=ctx.activation(layer.activation),
                use_bias=layer.use_bias, depthwise_regularizer=_opt(ctx, layer.kernel_reg),
                bias_regularizer=_opt(ctx, layer.bias_reg), activity_regularizer=_opt(ctx, layer.activity_reg),
                depthwise_constraint=_opt(ctx, layer.kernel_constraint),
                bias_constraint=_opt(ctx, layer.bias_constraint), **_common(layer))


@lowers(L.SeparableConv2D, targets=KERAS)
def separable_conv2d(layer: L.SeparableConv2D, ctx: Context):
    return call("keras.layers.SeparableConv2D", layer.filters, layer.kernel_size, strides=layer.strides,
                padding=layer.padding, depth_multiplier=layer.depth_multiplier,
                activation=ctx.activation(layer.activation), use_bias=layer.use_bias,
                depthwise_regularizer=_opt(ctx, layer.depthwise_reg),
                pointwise_regularizer=_opt(ctx, layer.pointwise_reg), bias_regularizer=_opt(ctx, layer.bias_reg),
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
