"""Keras' activations in torch, with TensorFlow's own constants where torch's defaults differ."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlc.backends.torch.losses import in_dtype

SQRT_HALF_F32 = 0.7071067690849304  # 1/√2 cast through float32, as tf.nn.gelu's math_ops.cast does
SELU_SCALE = 1.0507009873554804934193349852946  # tf.nn.selu's and F.selu's scale
SELU_SCALE_ALPHA = 1.7580993408473768599402175208123  # TensorFlow's literal scale·alpha (its Selu kernels)


def linear(x):
    return x


def hard_sigmoid(x):
    """Keras 3: relu6(x + 3) / 6."""
    return F.relu6(x + 3.0) / 6.0


def gelu(x):
    """tf.nn.gelu (exact): 0.5·x·erfc(−x·c), c = 1/√2 in float32."""
    return 0.5 * x * torch.special.erfc(-x * SQRT_HALF_F32)


class TFElu(torch.autograd.Function):
    """tf.nn.elu as TensorFlow computes it: y = exp(x) − 1 below 0 (not expm1, which F.elu uses), and its
    gradient from the output, g·(y + 1) (EluGrad), not g·exp(x): below x ≈ −20 the two gradients differ
    relatively by more than 1e-9 (1.7e-4 at x = −30), which an l1 penalty's sign or Adam's normalisation
    turns into a different step."""

    @staticmethod
    def forward(ctx, x):
        y = torch.where(x < 0, torch.exp(x) - 1, x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return torch.where(y < 0, g * (y + 1), g)


class TFSelu(torch.autograd.Function):
    """tf.nn.selu: scale·alpha·(exp(x) − 1) below 0, scale·x from 0 on (at exactly 0 TensorFlow's gradient is
    the scale, F.selu's scale·alpha; an exact 0 is common: a zero input to a layer without bias, a dropped or
    zero-padded one), and its gradient from the output, g·(y + scale·alpha) below 0 (SeluGrad), not F.selu's
    g·scale·alpha·exp(x) (relatively 1e-9 apart below x ≈ −20)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.where(x < 0, SELU_SCALE_ALPHA * (torch.exp(x) - 1), SELU_SCALE * x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return torch.where(y < 0, g * (y + SELU_SCALE_ALPHA), g * SELU_SCALE)


def selu(x):
    return TFSelu.apply(x)


class TFSoftsign(torch.autograd.Function):
    """tf.nn.softsign, x / (1 + |x|), with TensorFlow's gradient g / (1 + |x|)² (SoftsignGrad): autograd of
    F.softsign's quotient subtracts two terms of size ~1/|x| and keeps a rounding error that grows with |x|
    (2.7e-14 relative at x = −1000, an unnormalised input's range)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x / (torch.abs(x) + 1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / torch.square(1 + torch.abs(x))


def softsign(x):
    return TFSoftsign.apply(x)


def softplus(x):
    """TF returns x above −(log(eps) + 2) (34.04 in float64, 13.94 in float32); torch's default is 20."""
    return F.softplus(x, threshold=-(math.log(torch.finfo(x.dtype).eps) + 2.0))


def softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)


def leaky_relu(x, alpha):
    """max(x, alpha·x); the lowering gives alpha cast through float32, as tf.nn.leaky_relu's attribute is."""
    return F.leaky_relu(x, alpha)


def elu(x, alpha):
    """Keras' elu on TensorFlow: tf.nn.elu, scaled by alpha below 0 (where(x > 0, y, alpha·y)) when alpha is
    not 1."""
    y = TFElu.apply(x)
    return y if alpha == 1 else torch.where(x > 0, y, in_dtype(alpha, x.dtype) * y)
