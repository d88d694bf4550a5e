"""Keras' Conv2DTranspose, DepthwiseConv2D, SeparableConv2D and UpSampling2D as torch modules, built from
plain arguments (backends/torch/lower.py maps the IR to them).

As in layers.py: activations flow channels-last (NHWC; each module permutes to NCHW around the torch op),
every parameter is named as the IR weight and kept in the IR's (Keras') layout, permuted inside `forward`, and
'same' padding is TensorFlow's (computed by the lowering; the odd extra row/column goes after). The numbers
follow the TensorFlow kernels Keras runs:

  Conv2DTranspose  tf.nn.conv_transpose: the full transposed convolution ((n − 1)·s + k per axis),
                   cropped from TF's 'same' offset (or zero-extended) to Keras' output size, then the bias,
                   then the activation
  DepthwiseConv2D  tf.nn.depthwise_conv2d: output channel c·depth_multiplier + m (torch's grouped convolution
                   with groups = input channels orders them the same way)
  SeparableConv2D  tf.nn.separable_conv2d: the depthwise convolution (strides, padding), then a
                   1x1 convolution
  UpSampling2D     nearest: rows and columns repeated (ops.repeat); bilinear: TF's ResizeBilinear kernel,
                   which computes in float32 whatever the input dtype (half-pixel centres), and its gradient
                   kernel, both reproduced operation by operation so that a float64 model agrees with Keras to
                   rounding
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Conv2DTranspose(nn.Module):
    """Keras Conv2DTranspose on NHWC; kernel (kh, kw, filters, in). `pad` = (left, right, top, bottom) applied
    to the full transposed output: negative entries crop (TF's 'same' offset), positive ones extend with
    zeros."""

    def __init__(self, c_in: int, filters: int, kernel_size: tuple[int, int],
                 strides: tuple[int, int] = (1, 1),
                 pad: tuple[int, int, int, int] = (0, 0, 0, 0), use_bias: bool = True, activation=None):
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(*kernel_size, filters, c_in))
        self.bias = nn.Parameter(torch.zeros(filters)) if use_bias else None
        self.strides, self.pad, self.activation = tuple(strides), tuple(pad), activation

    def forward(self, x):
        y = F.conv_transpose2d(x.permute(0, 3, 1, 2), self.kernel.permute(3, 2, 0, 1).contiguous(), None,
                               self.strides)
        if any(self.pad):
            y = F.pad(y, self.pad)
        y = y.permute(0, 2, 3, 1)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y if self.activation is None else self.activation(y)


class DepthwiseConv2D(nn.Module):
    """Keras DepthwiseConv2D, NHWC; kernel (kh, kw, in, depth_multiplier); pad: left, right, top, bottom."""

    def __init__(self, c_in: int, kernel_size: tuple[int, int], depth_multiplier: int = 1,
                 strides: tuple[int, int] = (1, 1), pad: tuple[int, int, int, int] = (0, 0, 0, 0),
                 use_bias: bool = True, activation=None):
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(*kernel_size, c_in, depth_multiplier))
        self.bias = nn.Parameter(torch.zeros(c_in * depth_multiplier)) if use_bias else None
        self.strides, self.pad, self.activation = tuple(strides), tuple(pad), activation

    def forward(self, x):
        y = depthwise_conv2d(x, self.kernel, self.strides, self.pad)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y if self.activation is None else self.activation(y)


def depthwise_conv2d(x, kernel, strides, pad):
    """NHWC in and out; kernel (kh, kw, in, m) as torch's grouped (in·m, 1, kh, kw): channel c·m + j."""
    kh, kw, c_in, m = kernel.shape
    x = x.permute(0, 3, 1, 2)
    if any(pad):
        x = F.pad(x, pad)
    w = kernel.reshape(kh, kw, 1, c_in * m).permute(3, 2, 0, 1).contiguous()
    return F.conv2d(x, w, None, strides, groups=c_in).permute(0, 2, 3, 1)


class SeparableConv2D(nn.Module):
    """Keras SeparableConv2D on NHWC: depthwise_kernel (kh, kw, in, m) with the strides and padding, then
    pointwise_kernel (1, 1, in·m, filters), then the bias and the activation."""

    def __init__(self, c_in: int, filters: int, kernel_size: tuple[int, int], depth_multiplier: int = 1,
                 strides: tuple[int, int] = (1, 1), pad: tuple[int, int, int, int] = (0, 0, 0, 0),
                 use_bias: bool = True, activation=None):
        super().__init__()
        self.depthwise_kernel = nn.Parameter(torch.zeros(*kernel_size, c_in, depth_multiplier))
        self.pointwise_kernel = nn.Parameter(torch.zeros(1, 1, c_in * depth_multiplier, filters))
        self.bias = nn.Parameter(torch.zeros(filters)) if use_bias else None
        self.strides, self.pad, self.activation = tuple(strides), tuple(pad), activation

    def forward(self, x):
        y = depthwise_conv2d(x, self.depthwise_kernel, self.strides, self.pad)
        y = F.conv2d(y.permute(0, 3, 1, 2), self.pointwise_kernel.permute(3, 2, 0, 1)).permute(0, 2, 3, 1)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y if self.activation is None else self.activation(y)


class UpSampling2D(nn.Module):
    """Keras UpSampling2D on NHWC: `size` = (rows, cols) factors; `in_size` = the input (height, width),
    needed for bilinear (its interpolation tables are computed once, in float32, as TF computes them)."""

    def __init__(self, size: tuple[int, int] = (2, 2), interpolation: str = "nearest",
                 in_size: tuple[int, int] | None = None):
        super().__init__()
        self.size, self.interpolation = tuple(size), interpolation
        if interpolation == "bilinear":
            for axis, (n, f) in enumerate(zip(in_size, self.size, strict=True)):
                lower, upper, lerp = resize_bilinear_table(n, n * f)
                self.register_buffer(f"lower{axis}", torch.as_tensor(lower), persistent=False)
                self.register_buffer(f"upper{axis}", torch.as_tensor(upper), persistent=False)
                # float32 values; a float64 network holds them as float64, which converts back exactly
                self.register_buffer(f"lerp{axis}", torch.as_tensor(lerp), persistent=False)

    def forward(self, x):
        if self.interpolation == "nearest":
            return x.repeat_interleave(self.size[0], dim=1).repeat_interleave(self.size[1], dim=2)
        return ResizeBilinear.apply(x, self.lower0, self.upper0, self.lerp0.float(), self.lower1, self.upper1,
                                    self.lerp1.float())


def resize_bilinear_table(n_in: int, n_out: int):
    """TF's half-pixel bilinear table for one axis, in float32 as its kernel computes it:
    in = (i + 0.5)·(n_in / n_out) − 0.5; lower = max(floor(in), 0); upper = min(ceil(in), n_in − 1);
    lerp = in − floor(in)."""
    scale = np.float32(n_in) / np.float32(n_out)
    pos = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(pos)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(pos).astype(np.int64), n_in - 1)
    return lower, upper, (pos - floor).astype(np.float32)


class ResizeBilinear(torch.autograd.Function):
    """TF's ResizeBilinear (half_pixel_centers) and ResizeBilinearGrad on NHWC, with their float32 arithmetic:
    forward  top = tl + (tr − tl)·lx; bottom = bl + (br − bl)·lx; out = top + (bottom − top)·ly (in float32,
             cast to the input's dtype);
    backward each incoming gradient g (float32) adds (g·(1 − ly))·(1 − lx), (g·(1 − ly))·lx,
             (g·ly)·(1 − lx) and (g·ly)·lx, each rounded to float32 and then cast to the input's dtype, to its
             four source pixels."""

    @staticmethod
    def forward(ctx, x, y_lo, y_hi, ly, x_lo, x_hi, lx):
        ctx.save_for_backward(y_lo, y_hi, ly, x_lo, x_hi, lx)
        ctx.in_shape, ctx.in_dtype = x.shape, x.dtype
        v = x.float()
        top_rows, bottom_rows = v[:, y_lo], v[:, y_hi]
        lx4 = lx.view(1, 1, -1, 1)
        top = top_rows[:, :, x_lo] + (top_rows[:, :, x_hi] - top_rows[:, :, x_lo]) * lx4
        bottom = bottom_rows[:, :, x_lo] + (bottom_rows[:, :, x_hi] - bottom_rows[:, :, x_lo]) * lx4
        return (top + (bottom - top) * ly.view(1, -1, 1, 1)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        y_lo, y_hi, ly, x_lo, x_hi, lx = ctx.saved_tensors
        n, h, _, c = ctx.in_shape
        g = grad.float()
        ly4, lx4 = ly.view(1, -1, 1, 1), lx.view(1, 1, -1, 1)
        g_top, g_bottom = g * (1.0 - ly4), g * ly4
        out = torch.zeros(ctx.in_shape, dtype=ctx.in_dtype, device=grad.device)
        for rows, gy in ((y_lo, g_top), (y_hi, g_bottom)):
            for cols, wx in ((x_lo, 1.0 - lx4), (x_hi, lx4)):
                term = (gy * wx).to(ctx.in_dtype)
                by_row = torch.zeros((n, h, term.shape[2], c), dtype=ctx.in_dtype, device=grad.device)
                by_row.index_add_(1, rows, term)
                out.index_add_(2, cols, by_row)
        return out, None, None, None, None, None, None
