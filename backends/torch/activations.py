"""Keras' activations in torch, with TensorFlow's own constants where torch's defaults differ."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlc.backends.torch.losses import in_dtype

SQRT_HALF_F32 = 0.7071067690849304  # 1/√2 cast through float32, as tf.nn.gelu's math_ops.cast does
SELU_SCALE = 1.0507009873554804934193349852946  # tf.nn.selu's and F.selu's scale


def linear(x):
    return x


def hard_sigmoid(x):
    """Keras 3: relu6(x + 3) / 6."""
    return F.relu6(x + 3.0) / 6.0


def gelu(x):
    """tf.nn.gelu (exact): 0.5·x·erfc(−x·c), c = 1/√2 in float32."""
    return 0.5 * x * torch.special.erfc(-x * SQRT_HALF_F32)


def selu(x):
    """tf.nn.selu: at exactly 0 TensorFlow's gradient is the scale (its x < 0 branch excludes 0), F.selu's is
    scale·alpha; an exact 0 is common (a zero input to a layer without bias, a dropped or zero-padded one)."""
    return torch.where(x < 0, F.selu(x), SELU_SCALE * x)


def softplus(x):
    """TF returns x above −(log(eps) + 2) (34.04 in float64, 13.94 in float32); torch's default is 20."""
    return F.softplus(x, threshold=-(math.log(torch.finfo(x.dtype).eps) + 2.0))


def softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)


def leaky_relu(x, alpha):
    """max(x, alpha·x); the lowering gives alpha cast through float32, as tf.nn.leaky_relu's attribute is."""
    return F.leaky_relu(x, alpha)


def elu(x, alpha):
    return F.elu(x, in_dtype(alpha, x.dtype))
