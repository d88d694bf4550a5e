"""Keras' Conv2DTranspose, DepthwiseConv2D, SeparableConv2D and UpSampling2D as torch modules, built from
plain arguments (backends/torch/lower.py maps the IR to them).

As in layers.py: activations flow channels-last (NHWC; a module that calls a torch op permutes to NCHW
around it), every parameter is named as the IR weight and kept in the IR's (Keras') layout, permuted inside
`forward`, and 'same' padding is TensorFlow's (computed by the lowering; the odd extra row/column goes
after). The numbers follow the TensorFlow kernels Keras runs:

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

In float64, Conv2D (layers.py), DepthwiseConv2D and SeparableConv2D compute every output position with the
same arithmetic, as TensorFlow does (TiedConv, rows_matmul), so identical windows (constant areas, tiled or
integer-valued images, a token repeated through Embedding → Reshape) give exactly equal outputs: a max-pool
after them sees the exact tie Keras sees and sends the gradient to the same position. F.conv2d in float64 on
the CPU (im2col and MKL's product; grouped for the depthwise kernel) rounds some such positions 1 ulp apart,
which made Embedding → Reshape → Conv2D/DepthwiseConv2D/SeparableConv2D → max-pool part from Keras at step 1
under Adam, Adagrad and RMSprop (tests/test_conv_ties.py). float32 and 16 bits keep F.conv2d, whose oneDNN
kernel broke no tie on the same probes; F.conv_transpose2d kept every tie in float64 too, so Conv2DTranspose
calls it in every dtype.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlc.backends.torch.eager import eager_under_compile


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
        y = _conv_transpose_eager(x, self.kernel, self.strides)
        if any(self.pad):
            y = F.pad(y, self.pad)
        y = y.permute(0, 2, 3, 1)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y if self.activation is None else self.activation(y)


@eager_under_compile
def _conv_transpose_eager(x, kernel, strides):
    """The transposed convolution of NHWC `x` (NCHW out), run eagerly under torch.compile too (a graph
    break): with dynamic batch sizes inductor failed to compile it (torch 2.13: "cannot determine truth value
    of Relational: 1 < s27", ordering the symbolic strides of the NHWC input seen as NCHW)."""
    return F.conv_transpose2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1).contiguous(), None, strides)


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


def windows2d(x, kh: int, kw: int, strides):
    """NHWC → N, H', W', kh·kw·C: each output position's window, its taps in the order of Keras' HWIO kernel
    (row, column, channel), so that `rows_matmul(windows2d(...), kernel.reshape(kh·kw·C, filters))` is Keras'
    Conv2D ('valid'; pad first), every position by the same arithmetic. Slices, not Tensor.unfold, which ONNX
    export refuses."""
    sh, sw = strides
    last_r, last_c = sh * ((x.shape[1] - kh) // sh), sw * ((x.shape[2] - kw) // sw)  # the last window's start
    taps = [x[:, i:i + last_r + 1:sh, j:j + last_c + 1:sw] for i in range(kh) for j in range(kw)]
    return taps[0] if len(taps) == 1 else torch.cat(taps, dim=3)


def rows_matmul(a, w):
    """a (..., K) @ w (K, N) with every row of `a` by the same arithmetic, so equal rows (equal windows) give
    bit-equal outputs. MKL's product, which torch's CPU matmul calls, rounds the last rows (float64: the
    rows beyond a multiple of 8) and, where N is not a multiple of 4, other rows 1 ulp apart from the rest
    (measured with torch 2.13 and MKL 2024.2 on AVX-512, rows of random normals; rows of small integers hide
    it, their products being exact): a is widened with zero rows to a multiple of 8 and w with zero columns
    to a multiple of 4, the extra outputs dropped. So padded, no tie broke in 7,744 shapes (1 to 86,528
    rows, 1 to 576 deep, 1 to 128 columns; float64 and float32; 1 and 2 threads), where the plain product
    broke 2,816 (float64)."""
    lead, (m, k), n = a.shape[:-1], (a[..., 0].numel(), a.shape[-1]), w.shape[1]
    a = a.reshape(m, k)
    if m % 8:
        a = F.pad(a, (0, 0, 0, -m % 8))
    if n % 4:
        w = F.pad(w, (0, -n % 4))
    y = a @ w
    if m % 8 or n % 4:
        y = y[:m, :n]
    return y.reshape(lead + (n,))


def conv2d(x, kernel, bias, strides, pad):
    """Keras' Conv2D: NHWC in and out, kernel HWIO, bias or None, pad (left, right, top, bottom). float64:
    TiedConv, identical windows giving identical outputs as in TensorFlow, where F.conv2d (im2col and MKL's
    product on the CPU) rounds some of them 1 ulp apart; other dtypes: F.conv2d, whose oneDNN kernel broke
    no such tie (float32, the probes of tests/test_conv_ties.py, 1 and 2 threads) and is faster there."""
    if x.dtype == torch.float64:
        y = _tied(x, kernel, strides, pad, False)
        return y if bias is None else y + bias
    x = x.permute(0, 3, 1, 2)
    if any(pad):
        x = F.pad(x, pad)
    # (contiguous: a 1-filter kernel permuted reads as channels-last, which float16 on the CPU refused in the
    # backward, "slow_conv2d: grad_weight must be contiguous", as float64 did in TiedConv)
    return F.conv2d(x, kernel.permute(3, 2, 0, 1).contiguous(), bias, strides).permute(0, 2, 3, 1)


def depthwise_conv2d(x, kernel, strides, pad):
    """NHWC in and out; kernel (kh, kw, in, m): output channel c·m + j. float64: TiedConv (its taps' products
    added in TF's DepthwiseConv2dNative order, every position alike); other dtypes: F.conv2d with groups =
    input channels (oneDNN: no tie broken in float32 on the probes), which orders the channels alike."""
    if x.dtype == torch.float64:
        return _tied(x, kernel, strides, pad, True)
    kh, kw, c_in, m = kernel.shape
    x = x.permute(0, 3, 1, 2)
    if any(pad):
        x = F.pad(x, pad)
    w = kernel.reshape(kh, kw, 1, c_in * m).permute(3, 2, 0, 1).contiguous()
    return F.conv2d(x, w, None, strides, groups=c_in).permute(0, 2, 3, 1)


def tied_conv(x, kernel, strides, depthwise: bool):
    """TiedConv's forward, differentiable as it is (what ONNX export traces)."""
    kh, kw, c_in, n = kernel.shape
    if not depthwise:
        return rows_matmul(windows2d(x, kh, kw, strides), kernel.reshape(kh * kw * c_in, n))
    sh, sw = strides
    last_r, last_c = sh * ((x.shape[1] - kh) // sh), sw * ((x.shape[2] - kw) // sw)

    def tap(i: int, j: int):  # (N, H', W', C, m)
        return x[:, i:i + last_r + 1:sh, j:j + last_c + 1:sw].unsqueeze(4) * kernel[i, j]

    y = tap(0, 0)  # then the other taps added to it in place, in row-major order
    for i in range(kh):
        for j in range(kw):
            if i or j:
                y.add_(tap(i, j))
    return y.reshape(y.shape[:3] + (c_in * n,))


def _tied(x, kernel, strides, pad, depthwise: bool):
    if any(pad):
        x = F.pad(x, (0, 0) + tuple(pad))
    if torch.onnx.is_in_onnx_export():  # (plain differentiable operations: it refuses an autograd.Function)
        return tied_conv(x, kernel, tuple(strides), depthwise)
    return _tied_eager(x, kernel, tuple(strides), depthwise)


@eager_under_compile
def _tied_eager(x, kernel, strides, depthwise: bool):
    """TiedConv, run eagerly under torch.compile too (a graph break): traced into the graph, its backward
    beside an Embedding's sparse gradient made inductor fail (torch 2.13: "Cannot access storage of
    SparseTensorImpl", with the autograd.Function or with tied_conv's plain operations)."""
    return TiedConv.apply(x, kernel, strides, depthwise)


class TiedConv(torch.autograd.Function):
    """A 'valid' convolution on NHWC whose forward computes every output position with the same arithmetic,
    as TensorFlow does, so that identical windows give bit-identical outputs (an exact tie, which a max-pool
    after it breaks towards the first position, as Keras' does): Conv2D as rows_matmul(windows2d(x), kernel),
    DepthwiseConv2D (`depthwise`) as its taps' products added one by one in row-major tap order, as TF's
    DepthwiseConv2dNative CPU kernel adds them. The backward is F.conv2d's own (aten.convolution_backward:
    the same gradients to rounding, at its speed; no decision is taken on a gradient). Forward and backward
    against F.conv2d's, float64, one thread, batches of 64-128 at 8x8 to 32x32 (two runs on a busy 2-core
    machine): Conv2D 0.8-1.3x the time, DepthwiseConv2D 0.6-0.8x, SeparableConv2D 0.9-1.1x (in float32 it
    would be 1.0-3.5x: float32 keeps F.conv2d)."""

    @staticmethod
    def forward(ctx, x, kernel, strides, depthwise):
        ctx.save_for_backward(x, kernel)
        ctx.strides, ctx.depthwise = strides, depthwise
        return tied_conv(x, kernel, strides, depthwise)

    @staticmethod
    def backward(ctx, grad):
        x, kernel = ctx.saved_tensors
        kh, kw, c_in, n = kernel.shape
        # the kernel as torch's OIHW (depthwise: grouped, (in·m, 1, kh, kw), output channel c·m + j)
        # (contiguous: the permuted kernel of a 1-filter Conv2D, (1, in, kh, kw), reads as channels-last, and
        # float64's slow_conv2d then refused the gradient it allocates like it, "grad_weight must be
        # contiguous")
        w = kernel.reshape(kh, kw, 1, c_in * n) if ctx.depthwise else kernel
        w = w.permute(3, 2, 0, 1).contiguous()
        gx, gw, _ = torch.ops.aten.convolution_backward(
            grad.permute(0, 3, 1, 2), x.permute(0, 3, 1, 2), w, None, list(ctx.strides),
            [0, 0], [1, 1], False, [0, 0], c_in if ctx.depthwise else 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        gx = None if gx is None else gx.permute(0, 2, 3, 1)
        gw = None if gw is None else gw.permute(2, 3, 1, 0).reshape(kernel.shape)
        return gx, gw, None, None


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
        if y.dtype == torch.float64:  # (every position alike, as conv2d's float64 path)
            y = rows_matmul(y, self.pointwise_kernel.reshape(self.pointwise_kernel.shape[2:]))
        else:
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
            if in_size is None:
                raise ValueError("a bilinear UpSampling2D needs in_size, its input's (height, width)")
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
        # (x itself, not x.shape on ctx: a shape kept on ctx is no tensor torch.compile can trace with dynamic
        # batch sizes, and backward needs only its shape, dtype and device)
        ctx.save_for_backward(x, y_lo, y_hi, ly, x_lo, x_hi, lx)
        v = x.float()
        top_rows, bottom_rows = v[:, y_lo], v[:, y_hi]
        lx4 = lx.view(1, 1, -1, 1)
        top = top_rows[:, :, x_lo] + (top_rows[:, :, x_hi] - top_rows[:, :, x_lo]) * lx4
        bottom = bottom_rows[:, :, x_lo] + (bottom_rows[:, :, x_hi] - bottom_rows[:, :, x_lo]) * lx4
        return (top + (bottom - top) * ly.view(1, -1, 1, 1)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, y_lo, y_hi, ly, x_lo, x_hi, lx = ctx.saved_tensors
        n, h, _, c = x.shape
        g = grad.float()
        ly4, lx4 = ly.view(1, -1, 1, 1), lx.view(1, 1, -1, 1)
        g_top, g_bottom = g * (1.0 - ly4), g * ly4
        out = torch.zeros_like(x)
        for rows, gy in ((y_lo, g_top), (y_hi, g_bottom)):
            for cols, wx in ((x_lo, 1.0 - lx4), (x_hi, lx4)):
                term = (gy * wx).to(x.dtype)
                by_row = x.new_zeros((n, h, term.shape[2], c))
                by_row.index_add_(1, rows, term)
                out.index_add_(2, cols, by_row)
        return out, None, None, None, None, None, None
