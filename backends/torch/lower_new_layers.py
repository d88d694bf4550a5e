"""IR → PyTorch for Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, UpSampling2D and Bidirectional: expressions
over conv_layers.py and bidirectional.py (gathered in backends/torch/library.py's namespace). No framework import."""

from __future__ import annotations

from dlc.backends.lowering import TORCH, Context, call, lowers, ref
from dlc.compiler import layers as L
from dlc.semantics import same_pad


def _act(ctx: Context, act):
    """An activation argument: None for linear (the module skips it)."""
    lowered = ctx.activation(act)
    return None if lowered == ref("linear") else lowered


def _same_pad2d(layer, ctx: Context) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) of TF's 'same' padding on the layer's input, zeros for 'valid'."""
    if layer.padding != "same":
        return (0, 0, 0, 0)
    (kh, kw), (sh, sw) = layer._ks()
    (top, bottom), (left, right) = same_pad(ctx.in_shape[0], kh, sh), same_pad(ctx.in_shape[1], kw, sw)
    return (left, right, top, bottom)


def transpose_crop(n: int, k: int, s: int, out: int, padding: str) -> tuple[int, int]:
    """(before, after) to pad (negative: crop) the full transposed output ((n − 1)·s + k) to Keras' size `out`:
    TF's conv_transpose places it at the 'same' offset of the convolution it transposes (out → n), the odd
    extra after, and leaves uncovered positions zero."""
    full = (n - 1) * s + k
    before = max((n - 1) * s + k - out, 0) // 2 if padding == "same" else 0
    return -before, out - full + before


@lowers(L.Conv2DTranspose, targets=TORCH)
def conv2d_transpose(layer: L.Conv2DTranspose, ctx: Context):
    ks, ss = layer._ks()
    (top, bottom), (left, right) = (transpose_crop(n, k, s, o, layer.padding)
                                    for n, k, s, o in zip(ctx.in_shape[:2], ks, ss, ctx.out_shape[:2]))
    return call("Conv2DTranspose", ctx.in_shape[-1], layer.filters, ks, strides=ss, pad=(left, right, top, bottom),
                use_bias=layer.use_bias, activation=_act(ctx, layer.activation))


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
