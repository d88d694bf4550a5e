"""IR layers → torch modules, one `lower_<kind>` each. Activations flow channels-last (Keras' layout); convolution
and pooling modules permute to channels-first internally, so Flatten, Dropout masks and BatchNorm need no layout
bookkeeping. Parameters are stored in the layout that makes the weight exchange with the IR a plain copy or a
fixed transpose (see `to_torch` / `from_torch`)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlc.backends import LoweringMissing
from dlc.compiler import layers as L
from dlc.compiler.spec import LayerInfo
from dlc.rng import _C1, _C2, M32, dropout_base, dropout_threshold, fmix32

from . import recurrent

BACKEND = "torch"


def activation(act) -> callable:
    name = act.name
    simple = {
        "linear": lambda x: x,
        "sigmoid": torch.sigmoid,
        "hard_sigmoid": lambda x: F.relu6(x + 3.0) / 6.0,
        "tanh": torch.tanh,
        "relu": F.relu,
        "relu6": F.relu6,
        "selu": F.selu,
        # tf.nn.gelu: 0.5·x·erfc(−x·c), c = 1/√2 cast through float32 (math_ops.cast of a Python float)
        "gelu": lambda x: 0.5 * x * torch.special.erfc(-x * _F32_SQRT_HALF),
        "swish": F.silu,
        # TF's softplus returns x above -(log(eps) + 2) (34.04 in float64, 13.94 in float32), torch above 20
        "softplus": lambda x: F.softplus(x, threshold=-(math.log(torch.finfo(x.dtype).eps) + 2.0)),
        "softsign": F.softsign,
        "softmax": lambda x: torch.softmax(x, dim=-1),
    }
    if name in simple:
        return simple[name]
    if name == "leaky_relu":
        return leaky_relu(act.alpha)
    if name == "elu":
        return lambda x, a=act.alpha: F.elu(x, a)
    raise LoweringMissing(f"activation '{name}'", BACKEND)


_F32_SQRT_HALF = float(np.float32(0.7071067811865476))


def leaky_relu(alpha: float):
    """tf.nn.leaky_relu takes alpha as a float32 attribute, so a float64 model uses float32(alpha)."""
    a = float(np.float32(alpha))
    return lambda x: F.leaky_relu(x, a)


class StepCounter:
    """The global optimizer step, a device tensor shared by every dropout module (no host sync)."""

    def __init__(self, device):
        self.value = torch.zeros((), dtype=torch.int64, device=device)


class Act(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class DenseT(nn.Module):
    """y = act(x @ kernel + bias), kernel kept as Keras' [in, out]."""

    def __init__(self, layer: L.Dense, info: LayerInfo, fuse_out: bool):
        super().__init__()
        n_in = info.in_shape[-1]
        units = info.weights[0].shape[1]
        self.kernel = nn.Parameter(torch.empty(n_in, units))
        self.bias = nn.Parameter(torch.empty(units)) if layer.use_bias else None
        self.act = activation(L.LINEAR if fuse_out else layer.activation)

    def forward(self, x):
        y = x @ self.kernel
        if self.bias is not None:
            y = y + self.bias
        return self.act(y)


class Conv2DT(nn.Module):
    """Keras Conv2D in NHWC; TF's 'same' padding (extra on the bottom/right) reproduced with an explicit pad."""

    def __init__(self, layer: L.Conv2D, info: LayerInfo, fuse_out: bool):
        super().__init__()
        (kh, kw), (sh, sw) = layer._ks()
        cin = info.in_shape[-1]
        self.weight = nn.Parameter(torch.empty(layer.filters, cin, kh, kw))  # OIHW
        self.bias = nn.Parameter(torch.empty(layer.filters)) if layer.use_bias else None
        self.stride = (sh, sw)
        self.pad = None
        if layer.padding == "same":
            ph = _same_pad(info.in_shape[0], kh, sh)
            pw = _same_pad(info.in_shape[1], kw, sw)
            self.pad = (pw[0], pw[1], ph[0], ph[1])
        self.act = activation(L.LINEAR if fuse_out else layer.activation)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        if self.pad is not None and any(self.pad):
            x = F.pad(x, self.pad)
        y = F.conv2d(x, self.weight, self.bias, self.stride)
        return self.act(y.permute(0, 2, 3, 1))


def _same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class MaxPool2DT(nn.Module):
    def __init__(self, layer: L.MaxPool2D, info: LayerInfo):
        super().__init__()
        ps, ss = layer._ps()
        self.k, self.s = ps, ss
        self.pad = None
        if layer.padding == "same":
            ph = _same_pad(info.in_shape[0], ps[0], ss[0])
            pw = _same_pad(info.in_shape[1], ps[1], ss[1])
            self.pad = (pw[0], pw[1], ph[0], ph[1])

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        if self.pad is not None and any(self.pad):
            x = F.pad(x, self.pad, value=-math.inf)
        return F.max_pool2d(x, self.k, self.s).permute(0, 2, 3, 1)


class Conv1DT(nn.Module):
    """Keras Conv1D in NLC: kernel (k, in, out) kept as torch's (out, in, k); TF's asymmetric 'same' padding."""

    def __init__(self, layer: L.Conv1D, info: LayerInfo, fuse_out: bool):
        super().__init__()
        (k,), (s,) = layer._ks()
        cin = info.in_shape[-1]
        self.weight = nn.Parameter(torch.empty(layer.filters, cin, k))
        self.bias = nn.Parameter(torch.empty(layer.filters)) if layer.use_bias else None
        self.stride = s
        self.pad = _same_pad(info.in_shape[0], k, s) if layer.padding == "same" else (0, 0)
        self.act = activation(L.LINEAR if fuse_out else layer.activation)

    def forward(self, x):
        x = x.permute(0, 2, 1)
        if any(self.pad):
            x = F.pad(x, self.pad)
        return self.act(F.conv1d(x, self.weight, self.bias, self.stride).permute(0, 2, 1))


class PoolT(nn.Module):
    """Max/avg pooling, 1-D (NLC, run as a 1xL image) or 2-D (NHWC). 'same': TF's asymmetric pad; max pads with
    -inf, avg divides each window's sum by its number of valid (unpadded) elements, as TF does."""

    def __init__(self, layer, info: LayerInfo, mode: str):
        super().__init__()
        ps, ss = layer._ps()
        spatial = tuple(info.in_shape[:-1])
        if layer.rank == 1:
            ps, ss, spatial = (1,) + tuple(ps), (1,) + tuple(ss), (1,) + spatial
        self.one_d = layer.rank == 1
        self.k, self.s, self.mode = tuple(ps), tuple(ss), mode
        self.pad = None
        if layer.padding == "same":
            ph = _same_pad(spatial[0], ps[0], ss[0])
            pw = _same_pad(spatial[1], ps[1], ss[1])
            if any(ph + pw):
                self.pad = (pw[0], pw[1], ph[0], ph[1])
        if mode == "avg" and self.pad is not None:
            ones = F.pad(torch.ones((1, 1) + spatial, dtype=torch.float64), self.pad)
            count = F.avg_pool2d(ones, self.k, self.s, divisor_override=1)
            self.register_buffer("count", count, persistent=False)

    def forward(self, x):
        if self.one_d:
            x = x.unsqueeze(1)
        x = x.permute(0, 3, 1, 2)
        if self.mode == "max":
            if self.pad is not None:
                x = F.pad(x, self.pad, value=-math.inf)
            y = F.max_pool2d(x, self.k, self.s)
        elif self.pad is not None:
            y = F.avg_pool2d(F.pad(x, self.pad), self.k, self.s, divisor_override=1) / self.count
        else:
            y = F.avg_pool2d(x, self.k, self.s)
        y = y.permute(0, 2, 3, 1)
        return y.squeeze(1) if self.one_d else y


class GlobalPoolT(nn.Module):
    """Mean or max over the spatial axes (channels-last); max shares the gradient among ties, as tf.reduce_max."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        dims = tuple(range(1, x.dim() - 1))
        return x.mean(dim=dims) if self.mode == "avg" else x.amax(dim=dims)


class ReshapeT(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.shape)


class LayerNormT(nn.Module):
    """Keras LayerNormalization over the last axis: tf.nn.moments (variance about the stop-gradient mean),
    inv = rsqrt(var + eps)·gamma, y = x·inv + (beta − mean·inv)."""

    def __init__(self, layer: L.LayerNorm, info: LayerInfo):
        super().__init__()
        c = info.in_shape[-1]
        self.gamma = nn.Parameter(torch.empty(c)) if layer.scale else None
        self.beta = nn.Parameter(torch.empty(c)) if layer.center else None
        self.eps = layer.epsilon

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean.detach()) ** 2).mean(dim=-1, keepdim=True)
        inv = torch.rsqrt(var + self.eps)
        if self.gamma is not None:
            inv = inv * self.gamma
        res = -mean * inv
        if self.beta is not None:
            res = res + self.beta
        return x * inv + res


class EmbeddingT(nn.Module):
    """Keras Embedding: inputs (floats on dlc's data path) truncated to integer indices, as Keras' cast does."""

    def __init__(self, layer: L.Embedding):
        super().__init__()
        self.embeddings = nn.Parameter(torch.empty(layer.input_dim, layer.output_dim))

    def forward(self, x):
        return F.embedding(x.long(), self.embeddings)


class PReLUT(nn.Module):
    """Keras PReLU: relu(x) − alpha·relu(−x), alpha of the input's shape."""

    def __init__(self, info: LayerInfo):
        super().__init__()
        self.alpha = nn.Parameter(torch.empty(tuple(info.in_shape)))

    def forward(self, x):
        return F.relu(x) - self.alpha * F.relu(-x)


class MaxoutT(DenseT):
    """Dense to units·pieces, viewed as (..., units, pieces) (Keras layout), max over the pieces, then activation."""

    def __init__(self, layer: L.Maxout, info: LayerInfo, fuse_out: bool):
        super().__init__(layer, info, fuse_out)
        self.units, self.pieces = layer.units, layer.pieces

    def forward(self, x):
        y = x @ self.kernel
        if self.bias is not None:
            y = y + self.bias
        y = y.reshape(y.shape[:-1] + (self.units, self.pieces)).amax(dim=-1)
        return self.act(y)


class FlattenT(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


def _mul32_(x: torch.Tensor, c: int, tmp: torch.Tensor) -> None:
    """x <- (x * c) mod 2^32 in place, with the int64 operations of dlc.rng.mul32."""
    lo, hi = c & 0xFFFF, c >> 16
    torch.mul(x, hi, out=tmp)
    tmp.bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    x.mul_(lo).add_(tmp).bitwise_and_(M32)


class DropoutT(nn.Module):
    """Inverted dropout with dlc's hash masks: keep where fmix32(i ^ fmix32(base ^ step)) >> 8 >= threshold."""

    def __init__(self, layer: L.Dropout, info: LayerInfo, seed: int, counter: StepCounter):
        super().__init__()
        self.rate = layer.rate
        self.base = dropout_base(seed, info.index)
        self.threshold = dropout_threshold(layer.rate)
        self.scale = 1.0 / (1.0 - layer.rate)
        self.counter = counter
        self._idx = None

    def forward(self, x):
        if not self.training or self.rate == 0:
            return x
        n = x.numel()
        if self._idx is None or self._idx.numel() != n or self._idx.device != x.device:
            self._idx = torch.arange(n, dtype=torch.int64, device=x.device) & 0xFFFFFFFF
            self._h, self._t = torch.empty_like(self._idx), torch.empty_like(self._idx)
        key = fmix32(self.base ^ (self.counter.value & 0xFFFFFFFF))
        # fmix32(idx ^ key), the operations of dlc.rng in place in two preallocated buffers
        h, t = self._h, self._t
        torch.bitwise_xor(self._idx, key, out=h)
        h ^= h >> 16
        _mul32_(h, _C1, t)
        h ^= h >> 15
        _mul32_(h, _C2, t)
        h ^= h >> 16
        keep = (h >> 8) >= self.threshold
        return torch.where(keep.view(x.shape), x * self.scale, torch.zeros((), dtype=x.dtype, device=x.device))


class BatchNormT(nn.Module):
    """Keras BatchNormalization: biased batch variance, momentum on the old value, eps 1e-3 by default."""

    def __init__(self, layer: L.BatchNorm, info: LayerInfo):
        super().__init__()
        c = info.in_shape[-1]
        self.gamma = nn.Parameter(torch.empty(c)) if layer.scale else None
        self.beta = nn.Parameter(torch.empty(c)) if layer.center else None
        self.register_buffer("moving_mean", torch.empty(c))
        self.register_buffer("moving_variance", torch.empty(c))
        self.momentum = layer.momentum
        self.eps = layer.epsilon

    def forward(self, x):
        if self.training:
            dims = tuple(range(x.dim() - 1))
            mean = x.mean(dim=dims)
            var = ((x - mean.detach()) ** 2).mean(dim=dims)
            with torch.no_grad():
                m = self.momentum
                self.moving_mean.mul_(m).add_(mean.detach() * (1 - m))
                self.moving_variance.mul_(m).add_(var.detach() * (1 - m))
        else:
            mean, var = self.moving_mean, self.moving_variance
        inv = torch.rsqrt(var + self.eps)
        if self.gamma is not None:
            inv = inv * self.gamma
        shift = -mean * inv
        if self.beta is not None:
            shift = self.beta + shift
        return x * inv + shift


def lower(info: LayerInfo, seed: int, counter: StepCounter, fuse_out: bool) -> nn.Module:
    """The torch module for one IR layer; `fuse_out`: the last layer's activation is left to the loss."""
    layer = info.layer
    kind = layer.kind
    if kind == "Dense":
        return DenseT(layer, info, fuse_out)
    if kind == "Conv2D":
        return Conv2DT(layer, info, fuse_out)
    if kind == "MaxPool2D":
        return MaxPool2DT(layer, info)
    if kind == "Conv1D":
        return Conv1DT(layer, info, fuse_out)
    if kind in ("MaxPool1D", "AvgPool1D", "AvgPool2D"):
        return PoolT(layer, info, "max" if kind.startswith("Max") else "avg")
    if kind in ("GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D"):
        return GlobalPoolT("max" if "Max" in kind else "avg")
    if kind == "Reshape":
        return ReshapeT(info.out_shape)
    if kind == "LayerNorm":
        return LayerNormT(layer, info)
    if kind == "Embedding":
        return EmbeddingT(layer)
    if kind == "LeakyReLU":
        return Act(leaky_relu(layer.alpha))
    if kind == "ELU":
        return Act(lambda x, a=layer.alpha: F.elu(x, a))
    if kind == "PReLU":
        return PReLUT(info)
    if kind == "Maxout":
        return MaxoutT(layer, info, fuse_out)
    if kind == "Flatten":
        return FlattenT()
    if kind == "Dropout":
        return DropoutT(layer, info, seed, counter)
    if kind == "Activation":
        return Act(activation(L.LINEAR if fuse_out else layer.activation))
    if kind == "Softmax":
        return Act(activation(L.LINEAR) if fuse_out else (lambda x, a=layer.axis: torch.softmax(x, dim=a)))
    if kind == "BatchNorm":
        return BatchNormT(layer, info)
    if kind in recurrent.KINDS:
        if fuse_out:
            raise LoweringMissing(f"{kind} as the output layer", BACKEND, layer.at,
                                  "not supported (its activation cannot be fused into the loss; add a Dense)")
        return recurrent.lower(info, activation)
    raise LoweringMissing(f"layer {kind}", BACKEND, layer.at)


# weight exchange: IR canonical (Keras) layout <-> torch parameter layout
def to_torch(kind: str, wname: str, arr):
    if kind == "Conv2D" and wname == "kernel":
        return arr.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if kind == "Conv1D" and wname == "kernel":
        return arr.transpose(2, 1, 0)  # (k, in, out) -> (out, in, k)
    return arr


def from_torch(kind: str, wname: str, arr):
    if kind == "Conv2D" and wname == "kernel":
        return arr.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if kind == "Conv1D" and wname == "kernel":
        return arr.transpose(2, 1, 0)
    return arr


def torch_axis(kind: str, wname: str, axis: int, ndim: int) -> int:
    """The torch dimension of a canonical (Keras-layout) weight axis."""
    axis = axis % ndim
    if kind == "Conv2D" and wname == "kernel":
        return (3, 2, 0, 1).index(axis)  # OIHW dimension j holds HWIO axis (3, 2, 0, 1)[j]
    if kind == "Conv1D" and wname == "kernel":
        return 2 - axis
    return axis


class KerasConstraint:
    """A weight constraint applied after every optimizer step, as Keras' optimizer does, with Keras' formulas:
    max_norm: w·clip(n, 0, max)/(eps + n); unit_norm: w/(eps + n) (n: the L2 norm along the axis, eps 1e-7);
    non_neg: max(w, 0)."""

    def __init__(self, tensor: torch.Tensor, c, kind: str, wname: str):
        self.t, self.c = tensor, c
        self.dim = torch_axis(kind, wname, getattr(c, "axis", 0), tensor.dim())

    @torch.no_grad()
    def apply(self):
        w, c = self.t, self.c
        if c.name == "non_neg":
            w.copy_(torch.clamp(w, min=0))
            return
        norms = torch.sqrt((w * w).sum(dim=self.dim, keepdim=True))
        if c.name == "max_norm":
            w.copy_(w * (torch.clamp(norms, 0, c.max_value) / (1e-7 + norms)))
        elif c.name == "unit_norm":
            w.copy_(w / (1e-7 + norms))
        else:
            raise LoweringMissing(f"constraint {c.name}", BACKEND)


def tensor_for(module: nn.Module, kind: str, wname: str) -> torch.Tensor:
    if kind in ("Conv2D", "Conv1D") and wname == "kernel":
        return module.weight
    return getattr(module, wname)
