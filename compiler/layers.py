"""Layers: parameters, defaults, validation, shape rule and weights (canonical = Keras layout) on each class.

Shapes exclude the batch axis and are channels-last (NHWC), as in Keras; backends convert layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from .catalog import Catalogued, register
from .diagnostics import DlcError
from .functions import (
    GLOROT_UNIFORM,
    LINEAR,
    ONES,
    ZEROS,
    ActivationT,
    Constraint,
    ConstraintT,
    Initializer,
    InitializerT,
    Orthogonal,
    RandomUniform,
    Regularizer,
    RegularizerT,
    Sigmoid,
    Tanh,
)

Shape = tuple[int, ...]


def unit_forget_bias(bias, units: int):
    """Keras' LSTM: the forget gate's bias (gate order i, f, c, o) starts at one more than drawn."""
    bias[units:2 * units] += 1.0
    return bias


ADJUSTMENTS = {"unit_forget_bias": unit_forget_bias}


class ShapeError(DlcError, ValueError):
    """A layer cannot take the shape it is given; the message says what it needs."""


@dataclass(frozen=True)
class WeightSpec:
    name: str
    shape: Shape
    init: Initializer
    trainable: bool = True
    regularizer: Regularizer | None = None
    constraint: Constraint | None = None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _reshape_example(shape: tuple, rank: int) -> str:
    """A Reshape that gives a flat input of `shape` the rank a convolution needs, one channel."""
    n = shape[0]
    if rank == 1:
        return f"({n}, 1)"
    side = math.isqrt(n)
    return f"({side}, {side}, 1)" if side * side == n else "(height, width, 1)"


def _conv_len(n: int, k: int, s: int, padding: str) -> int:
    if padding == "same":
        return -(-n // s)
    return (n - k) // s + 1


# the largest stride, window or padded length the frameworks index: TensorFlow's int32 attributes, torch's int
INDEX_MAX = 2**31 - 1


def _check_strides(kind: str, shape, strides: tuple[int, ...]) -> None:
    """A stride the frameworks take: one beyond INDEX_MAX failed inside TensorFlow ("out of range for an
    int32") and torch's pooling. A stride above the input's size is fine (Keras takes it: one window, as with
    a stride of the input's size), so that is the hint."""
    if any(s > INDEX_MAX for s in strides):
        fits = tuple(min(s, n) for n, s in zip(shape[:-1], strides, strict=False))
        most = fits[0] if len(fits) == 1 else _shown(fits)
        raise ShapeError(f"{kind} strides {_shown(strides)} are beyond {INDEX_MAX:,}, the largest the "
                         f"frameworks take; use strides of at most {most}: a larger one takes the same "
                         "window")


class Layer(Catalogued):
    family: ClassVar[str] = "layer"
    # instance name, assigned by the resolver in traversal order (dense_0, dropout_1, ...)
    name: str = ""
    at: Optional[tuple[int, int]] = Field(None, exclude=True, repr=False)  # (line, col) in the spec
    if TYPE_CHECKING:
        # every concrete layer declares `kind: Literal["<its name>"]`, the discriminator of LayerT; declared
        # here for the type checker only, so Pydantic's field order (kind first in each class) stays as is
        kind: str

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def weights(self, shape: Shape) -> list[WeightSpec]:
        return []

    def initial_value(self, wname: str, arr):
        """A weight as drawn from its initializer (float64, Keras layout), adjusted where Keras adjusts it."""
        adjust = self.initial_adjustment(wname)
        return arr if adjust is None else ADJUSTMENTS[adjust[0]](arr, **adjust[1])

    def initial_adjustment(self, wname: str) -> tuple[str, dict] | None:
        """(function name in ADJUSTMENTS, its keyword arguments) that turns the drawn weight into Keras'
        initial value, or None: data, so an emitted script can call the same function."""
        return None


class _Dense(Layer):
    """Common parameters of layers with a kernel and a bias."""

    activation: ActivationT = LINEAR
    use_bias: bool = True
    kernel_init: InitializerT = GLOROT_UNIFORM
    bias_init: InitializerT = ZEROS
    kernel_reg: Optional[RegularizerT] = None
    bias_reg: Optional[RegularizerT] = None
    activity_reg: Optional[RegularizerT] = None
    kernel_constraint: Optional[ConstraintT] = None
    bias_constraint: Optional[ConstraintT] = None
    aliases: ClassVar = {
        "kernel_initializer": "kernel_init", "bias_initializer": "bias_init",
        "kernel_regularizer": "kernel_reg", "bias_regularizer": "bias_reg",
        "activity_regularizer": "activity_reg",
    }

    def _kernel_and_bias(self, kshape: Shape, n_out: int) -> list[WeightSpec]:
        w = [WeightSpec("kernel", kshape, self.kernel_init, True, self.kernel_reg, self.kernel_constraint)]
        if self.use_bias:
            w.append(WeightSpec("bias", (n_out,), self.bias_init, True, self.bias_reg, self.bias_constraint))
        return w


@register("Dense")
class Dense(_Dense):
    kind: Literal["Dense"] = "Dense"
    positional: ClassVar = ("units",)
    units: int = Field(gt=0)

    def out_shape(self, shape):
        if len(shape) < 1:
            raise ShapeError("Dense needs an input of rank 1 or more")
        return shape[:-1] + (self.units,)

    def weights(self, shape):
        return self._kernel_and_bias((shape[-1], self.units), self.units)


class _Conv(_Dense):
    filters: int = Field(gt=0)
    padding: Literal["valid", "same"] = "valid"
    rank: ClassVar[int] = 2

    @field_validator("kernel_size", "strides", check_fields=False)
    @classmethod
    def _positive(cls, v, info):
        return _positive_pair(v, info.field_name)

    def out_shape(self, shape):
        if len(shape) != self.rank + 1:
            want = "(height, width, channels)" if self.rank == 2 else "(steps, channels)"
            raise ShapeError(
                f"{self.kind} needs an input of rank {self.rank + 1} {want}, got {shape}"
                + (f"; give {'images' if self.rank == 2 else 'sequences'} as input: {want} or add "
                   f"Reshape({_reshape_example(shape, self.rank)})" if len(shape) == 1 else "")
            )
        ks, ss = self._ks()
        spatial = []
        for n, k, s in zip(shape[:-1], ks, ss, strict=True):
            out = _conv_len(n, k, s, self.padding)
            if out <= 0:
                raise ShapeError(f"{self.kind} kernel {ks} does not fit the input {shape} with "
                                 f"padding={self.padding}")
            spatial.append(out)
        _check_strides(self.kind, shape, ss)
        return tuple(spatial) + (self.filters,)

    def weights(self, shape):
        ks, _ = self._ks()
        return self._kernel_and_bias(tuple(ks) + (shape[-1], self.filters), self.filters)


@register("Conv2D", "Convolution2D")
class Conv2D(_Conv):
    kind: Literal["Conv2D"] = "Conv2D"
    positional: ClassVar = ("filters", "kernel_size", "strides")
    aliases: ClassVar = {**_Dense.aliases, "kernel": "kernel_size"}
    kernel_size: Union[int, tuple[int, int]]
    strides: Union[int, tuple[int, int]] = 1

    def _ks(self):
        return _pair(self.kernel_size), _pair(self.strides)


@register("Conv1D", "Convolution1D")
class Conv1D(_Conv):
    kind: Literal["Conv1D"] = "Conv1D"
    positional: ClassVar = ("filters", "kernel_size", "strides")
    aliases: ClassVar = {**_Dense.aliases, "kernel": "kernel_size"}
    rank: ClassVar = 1
    kernel_size: Union[int, tuple[int]]
    strides: Union[int, tuple[int]] = 1

    def _ks(self):
        k = self.kernel_size if isinstance(self.kernel_size, int) else self.kernel_size[0]
        s = self.strides if isinstance(self.strides, int) else self.strides[0]
        return (k,), (s,)


def _positive_pair(v, what: str):
    if any(x <= 0 for x in _pair(v)):
        raise ValueError(f"{what} must be positive, got {_shown(v)}")
    return v


def _shown(v) -> str:
    """A value as a spec writes it: (3) for a one-element tuple, not Python's (3,)."""
    return "(" + ", ".join(map(str, v)) + ")" if isinstance(v, tuple) else str(v)


class _Conv2DLike(Layer):
    """kernel_size, strides, padding of a 2-D convolution over (height, width, channels); Keras' defaults."""

    positional: ClassVar[tuple[str, ...]] = ("kernel_size", "strides")
    kernel_size: Union[int, tuple[int, int]]
    strides: Union[int, tuple[int, int]] = 1
    padding: Literal["valid", "same"] = "valid"

    @field_validator("kernel_size", "strides")
    @classmethod
    def _positive(cls, v, info):
        return _positive_pair(v, info.field_name)

    def _ks(self):
        return _pair(self.kernel_size), _pair(self.strides)

    def _equal_strides(self):
        sh, sw = _pair(self.strides)
        if sh != sw:
            raise ValueError(f"{self.kind} needs equal strides on both axes, got {self.strides} "
                             "(TensorFlow's depthwise convolution supports no other)")
        return self

    def _check_rank(self, shape) -> None:
        if len(shape) != 3:
            raise ShapeError(
                f"{self.kind} needs an input of rank 3 (height, width, channels), got {shape}"
                + ("; give images as input: (height, width, channels) or add Reshape(...)"
                   if len(shape) == 1 else ""))

    def _spatial(self, shape) -> tuple[int, int]:
        """The output height and width of the (depthwise) convolution, as Keras computes them."""
        self._check_rank(shape)
        ks, ss = self._ks()
        oh, ow = (_conv_len(n, k, s, self.padding) for n, k, s in zip(shape[:-1], ks, ss, strict=True))
        if min(oh, ow) <= 0:
            raise ShapeError(f"{self.kind} kernel {ks} does not fit the input {shape} with "
                             f"padding={self.padding}")
        _check_strides(self.kind, shape, ss)
        return oh, ow


@register("Conv2DTranspose", "Convolution2DTranspose")
class Conv2DTranspose(_Conv2DLike, _Dense):
    """Keras' transposed convolution (TF's conv_transpose); kernel (kh, kw, filters, in).

    Output size per axis (n: input size, k: kernel, s: stride, p: output_padding): 'valid' (n − 1)·s + k +
    (p if given else max(s − k, 0)); 'same' n·s, or (n − 1)·s + k mod 2 + p when p is given (Keras' rule).
    Initial weights: Keras' fan rule on the kernel's own shape (fan_in = kh·kw·filters, fan_out =
    kh·kw·in)."""

    kind: Literal["Conv2DTranspose"] = "Conv2DTranspose"
    positional: ClassVar = ("filters", "kernel_size", "strides")
    aliases: ClassVar = {**_Dense.aliases, "kernel": "kernel_size"}
    filters: int = Field(gt=0)
    output_padding: Union[None, int, tuple[int, int]] = None

    @field_validator("output_padding")
    @classmethod
    def _non_negative(cls, v):
        if v is not None and any(x < 0 for x in _pair(v)):
            raise ValueError(f"output_padding must be 0 or more, got {v}")
        return v

    @model_validator(mode="after")
    def _padding_below_strides(self):
        if self.output_padding is not None:
            for p, s in zip(_pair(self.output_padding), _pair(self.strides), strict=True):
                if p >= s:
                    raise ValueError(f"output_padding {self.output_padding} must be smaller than strides "
                                     f"{self.strides} on every axis (as in Keras)")
        return self

    def out_len(self, n: int, k: int, s: int, p: int | None) -> int:
        if self.padding == "valid":
            return (n - 1) * s + k + (max(k, s) - k if p is None else p)
        return n * s if p is None else (n - 1) * s + k % 2 + p

    def out_shape(self, shape):
        self._check_rank(shape)
        ks, ss = self._ks()
        ps = (None, None) if self.output_padding is None else _pair(self.output_padding)
        out = tuple(self.out_len(n, k, s, p) for n, k, s, p in zip(shape[:-1], ks, ss, ps, strict=True))
        if min(out) <= 0:
            raise ShapeError(f"{self.kind} gives an empty output for the input {shape}")
        for n, o, k, s in zip(shape[:-1], out, ks, ss, strict=True):
            # TF computes the transposed convolution as the gradient of the convolution out -> n; Keras'
            # 'same' size with output_padding and an even kernel can miss it, and Keras then fails at run time
            if (-(-o // s) if self.padding == "same" else (o - k) // s + 1) != n:
                raise ShapeError(f"{self.kind} with padding=same and output_padding={self.output_padding} "
                                 f"gives an output of size {o} for an input of size {n}, which TensorFlow "
                                 "cannot compute (a 'same' convolution maps it back to another size); choose "
                                 "another output_padding or leave it out")
        return out + (self.filters,)

    def weights(self, shape):
        ks, _ = self._ks()
        return self._kernel_and_bias(tuple(ks) + (self.filters, shape[-1]), self.filters)


@register("DepthwiseConv2D")
class DepthwiseConv2D(_Conv2DLike, _Dense):
    """Keras' depthwise convolution; kernel (kh, kw, in, depth_multiplier), output channel c·depth_multiplier
    + m.

    Each input channel is convolved with its own depth_multiplier filters. Keras 3 names the kernel variable
    `kernel` and its arguments depthwise_initializer/_regularizer/_constraint (aliases of kernel_* here)."""

    kind: Literal["DepthwiseConv2D"] = "DepthwiseConv2D"
    positional: ClassVar = ("kernel_size", "strides")
    aliases: ClassVar = {
        **_Dense.aliases, "kernel": "kernel_size",
        "depthwise_initializer": "kernel_init", "depthwise_init": "kernel_init",
        "depthwise_regularizer": "kernel_reg", "depthwise_reg": "kernel_reg",
        "depthwise_constraint": "kernel_constraint",
    }
    depth_multiplier: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _strides_equal(self):
        return self._equal_strides()

    def out_shape(self, shape):
        return self._spatial(shape) + (shape[-1] * self.depth_multiplier,)

    def weights(self, shape):
        ks, _ = self._ks()
        return self._kernel_and_bias(tuple(ks) + (shape[-1], self.depth_multiplier),
                                     shape[-1] * self.depth_multiplier)


@register("SeparableConv2D", "SeparableConvolution2D")
class SeparableConv2D(_Conv2DLike):
    """Keras' separable convolution: depthwise (strides, padding), then a 1x1 convolution to `filters`
    channels.

    Weights: depthwise_kernel (kh, kw, in, depth_multiplier), pointwise_kernel (1, 1, in·depth_multiplier,
    filters), bias (filters)."""

    kind: Literal["SeparableConv2D"] = "SeparableConv2D"
    positional: ClassVar = ("filters", "kernel_size", "strides")
    aliases: ClassVar = {
        "kernel": "kernel_size",
        "depthwise_initializer": "depthwise_init", "pointwise_initializer": "pointwise_init",
        "bias_initializer": "bias_init", "depthwise_regularizer": "depthwise_reg",
        "pointwise_regularizer": "pointwise_reg", "bias_regularizer": "bias_reg",
        "activity_regularizer": "activity_reg",
    }
    filters: int = Field(gt=0)
    depth_multiplier: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _strides_equal(self):
        return self._equal_strides()
    activation: ActivationT = LINEAR
    use_bias: bool = True
    depthwise_init: InitializerT = GLOROT_UNIFORM
    pointwise_init: InitializerT = GLOROT_UNIFORM
    bias_init: InitializerT = ZEROS
    depthwise_reg: Optional[RegularizerT] = None
    pointwise_reg: Optional[RegularizerT] = None
    bias_reg: Optional[RegularizerT] = None
    activity_reg: Optional[RegularizerT] = None
    depthwise_constraint: Optional[ConstraintT] = None
    pointwise_constraint: Optional[ConstraintT] = None
    bias_constraint: Optional[ConstraintT] = None

    def out_shape(self, shape):
        return self._spatial(shape) + (self.filters,)

    def weights(self, shape):
        ks, _ = self._ks()
        mid = shape[-1] * self.depth_multiplier
        w = [WeightSpec("depthwise_kernel", tuple(ks) + (shape[-1], self.depth_multiplier),
                        self.depthwise_init, True, self.depthwise_reg, self.depthwise_constraint),
             WeightSpec("pointwise_kernel", (1, 1, mid, self.filters), self.pointwise_init, True,
                        self.pointwise_reg, self.pointwise_constraint)]
        if self.use_bias:
            w.append(WeightSpec("bias", (self.filters,), self.bias_init, True, self.bias_reg,
                                self.bias_constraint))
        return w


@register("UpSampling2D")
class UpSampling2D(Layer):
    """Keras' UpSampling2D: rows and columns repeated (nearest) or half-pixel bilinear resizing.

    Bilinear is TensorFlow's ResizeBilinear kernel, which computes in float32 even in a float64 model."""

    kind: Literal["UpSampling2D"] = "UpSampling2D"
    positional: ClassVar = ("size",)
    size: Union[int, tuple[int, int]] = (2, 2)
    interpolation: Literal["nearest", "bilinear"] = "nearest"

    @field_validator("size")
    @classmethod
    def _positive(cls, v):
        return _positive_pair(v, "size")

    def out_shape(self, shape):
        if len(shape) != 3:
            raise ShapeError(f"{self.kind} needs an input of rank 3 (height, width, channels), got {shape}")
        sh, sw = _pair(self.size)
        return (shape[0] * sh, shape[1] * sw, shape[2])


class _Pool(Layer):
    positional: ClassVar = ("pool_size", "strides", "padding")
    aliases: ClassVar = {"pool": "pool_size"}
    padding: Literal["valid", "same"] = "valid"
    rank: ClassVar[int] = 2

    @field_validator("pool_size", "strides", check_fields=False)
    @classmethod
    def _positive(cls, v, info):
        return v if v is None else _positive_pair(v, info.field_name)

    def _ps(self):
        p = self.pool_size
        s = self.strides if self.strides is not None else p
        if self.rank == 1:
            return (p if isinstance(p, int) else p[0],), (s if isinstance(s, int) else s[0],)
        return _pair(p), _pair(s)

    def out_shape(self, shape):
        if len(shape) != self.rank + 1:
            raise ShapeError(f"{self.kind} needs an input of rank {self.rank + 1}, got {shape}")
        ps, ss = self._ps()
        out = tuple(_conv_len(n, k, s, self.padding) for n, k, s in zip(shape[:-1], ps, ss, strict=True))
        if min(out) <= 0 or self._pads_beyond_index(shape, ps):
            raise ShapeError(self._window_problem(shape, ps))
        _check_strides(self.kind, shape, ss)
        return out + (shape[-1],)

    def _pads_beyond_index(self, shape, ps) -> bool:
        """A padding=same window so much larger than the input that one sample padded to it holds more than
        INDEX_MAX values (a pool of 2**31 asked torch for a terabyte); a window somewhat larger than the input
        is fine (Keras takes it: one window of the input and its padding)."""
        if self.padding != "same":
            return False
        padded = math.prod(n + k - 1 for n, k in zip(shape[:-1], ps, strict=False)) * shape[-1]
        return padded > INDEX_MAX

    def _window_problem(self, shape, ps) -> str:
        """A window larger than the input: valid padding leaves no output; same padding beyond what the
        frameworks index (a global pool reads the whole input)."""
        fits = tuple(min(k, n) for n, k in zip(shape[:-1], ps, strict=False))
        return (f"{self.kind} window {ps} does not fit the input {shape}; use a window of at most "
                f"{fits[0] if self.rank == 1 else fits}, or Global{self.kind[:3]}Pool{self.rank}D() to pool "
                "the whole input")


@register("MaxPool2D", "MaxPooling2D")
class MaxPool2D(_Pool):
    kind: Literal["MaxPool2D"] = "MaxPool2D"
    pool_size: Union[int, tuple[int, int]] = (2, 2)
    strides: Union[None, int, tuple[int, int]] = None


@register("AvgPool2D", "AveragePooling2D")
class AvgPool2D(_Pool):
    kind: Literal["AvgPool2D"] = "AvgPool2D"
    pool_size: Union[int, tuple[int, int]] = (2, 2)
    strides: Union[None, int, tuple[int, int]] = None


@register("MaxPool1D", "MaxPooling1D")
class MaxPool1D(_Pool):
    kind: Literal["MaxPool1D"] = "MaxPool1D"
    rank: ClassVar = 1
    pool_size: Union[int, tuple[int]] = 2
    strides: Union[None, int, tuple[int]] = None


@register("AvgPool1D", "AveragePooling1D")
class AvgPool1D(_Pool):
    kind: Literal["AvgPool1D"] = "AvgPool1D"
    rank: ClassVar = 1
    pool_size: Union[int, tuple[int]] = 2
    strides: Union[None, int, tuple[int]] = None


class _GlobalPool(Layer):
    rank: ClassVar[int] = 2

    def out_shape(self, shape):
        if len(shape) != self.rank + 1:
            raise ShapeError(f"{self.kind} needs an input of rank {self.rank + 1}, got {shape}")
        return (shape[-1],)


@register("GlobalAvgPool2D", "GlobalAveragePooling2D")
class GlobalAvgPool2D(_GlobalPool):
    kind: Literal["GlobalAvgPool2D"] = "GlobalAvgPool2D"


@register("GlobalMaxPool2D", "GlobalMaxPooling2D")
class GlobalMaxPool2D(_GlobalPool):
    kind: Literal["GlobalMaxPool2D"] = "GlobalMaxPool2D"


@register("GlobalAvgPool1D", "GlobalAveragePooling1D")
class GlobalAvgPool1D(_GlobalPool):
    kind: Literal["GlobalAvgPool1D"] = "GlobalAvgPool1D"
    rank: ClassVar = 1


@register("GlobalMaxPool1D", "GlobalMaxPooling1D")
class GlobalMaxPool1D(_GlobalPool):
    kind: Literal["GlobalMaxPool1D"] = "GlobalMaxPool1D"
    rank: ClassVar = 1


@register("Flatten")
class Flatten(Layer):
    """Flattens in channels-last (H, W, C) order, as Keras does, on every backend."""

    kind: Literal["Flatten"] = "Flatten"

    def out_shape(self, shape):
        return (math.prod(shape),)


@register("Reshape")
class Reshape(Layer):
    kind: Literal["Reshape"] = "Reshape"
    positional: ClassVar = ("target_shape",)
    target_shape: tuple[int, ...]

    @field_validator("target_shape", mode="before")
    @classmethod
    def _tuple(cls, v):
        """One int or a sequence (a JSON array when ir.json is read back) → a tuple."""
        return (v,) if isinstance(v, int) else tuple(v) if isinstance(v, list) else v

    @field_validator("target_shape")
    @classmethod
    def _dimensions(cls, v):
        if not v:
            raise ValueError("target_shape needs at least one dimension")
        if any(x == 0 or x < -1 for x in v) or v.count(-1) > 1:
            raise ValueError(f"every dimension of target_shape must be positive (one may be -1: inferred), "
                             f"got {_shown(v)}")
        return v

    def out_shape(self, shape):
        target = list(self.target_shape)
        total = math.prod(shape)
        if target.count(-1) == 1:
            known = math.prod(t for t in target if t != -1)
            if known <= 0 or total % known:
                raise ShapeError(f"cannot reshape {shape} ({total} values) to {tuple(target)}")
            target[target.index(-1)] = total // known
        if math.prod(target) != total:
            raise ShapeError(f"cannot reshape {shape} ({total} values) to {tuple(target)} "
                             f"({math.prod(target)} values)")
        return tuple(target)


@register("Dropout")
class Dropout(Layer):
    """Inverted dropout with masks from dlc's counter-based hash (see dlc/rng.py), equal on every backend."""

    kind: Literal["Dropout"] = "Dropout"
    positional: ClassVar = ("rate",)
    rate: float = Field(ge=0, lt=1)


@register("Activation")
class ActivationLayer(Layer):
    kind: Literal["Activation"] = "Activation"
    positional: ClassVar = ("activation",)
    activation: ActivationT


@register("BatchNorm", "BatchNormalization")
class BatchNorm(Layer):
    """Keras semantics: momentum weighs the old moving value, biased batch variance, inference at eval."""

    kind: Literal["BatchNorm"] = "BatchNorm"
    momentum: float = Field(0.99, ge=0, le=1)
    epsilon: float = Field(1e-3, gt=0)
    center: bool = True
    scale: bool = True

    def weights(self, shape):
        c = (shape[-1],)
        w = []
        if self.scale:
            w.append(WeightSpec("gamma", c, ONES))
        if self.center:
            w.append(WeightSpec("beta", c, ZEROS))
        w += [WeightSpec("moving_mean", c, ZEROS, False), WeightSpec("moving_variance", c, ONES, False)]
        return w


@register("LayerNorm", "LayerNormalization")
class LayerNorm(Layer):
    kind: Literal["LayerNorm"] = "LayerNorm"
    epsilon: float = Field(1e-3, gt=0)
    center: bool = True
    scale: bool = True

    def weights(self, shape):
        c = (shape[-1],)
        return ([WeightSpec("gamma", c, ONES)] if self.scale else []) + (
            [WeightSpec("beta", c, ZEROS)] if self.center else [])


@register("Embedding")
class Embedding(Layer):
    kind: Literal["Embedding"] = "Embedding"
    positional: ClassVar = ("input_dim", "output_dim")
    aliases: ClassVar = {"embeddings_initializer": "embeddings_init"}
    input_dim: int = Field(gt=0)
    output_dim: int = Field(gt=0)
    embeddings_init: InitializerT = RandomUniform()

    def out_shape(self, shape):
        return shape + (self.output_dim,)

    def weights(self, shape):
        return [WeightSpec("embeddings", (self.input_dim, self.output_dim), self.embeddings_init)]


class RecurrentLayer(Layer):
    positional: ClassVar = ("units",)
    units: int = Field(gt=0)
    activation: ActivationT = Tanh()
    return_sequences: bool = False
    use_bias: bool = True
    kernel_init: InitializerT = GLOROT_UNIFORM
    recurrent_init: InitializerT = Orthogonal()
    bias_init: InitializerT = ZEROS
    kernel_reg: Optional[RegularizerT] = None
    recurrent_reg: Optional[RegularizerT] = None
    bias_reg: Optional[RegularizerT] = None
    # Keras' RNN layers take these as Dense does: the activity term on the layer's output (the sequence with
    # return_sequences, else the last output), the constraints applied to each weight after every step
    activity_reg: Optional[RegularizerT] = None
    kernel_constraint: Optional[ConstraintT] = None
    recurrent_constraint: Optional[ConstraintT] = None
    bias_constraint: Optional[ConstraintT] = None
    aliases: ClassVar = {"kernel_initializer": "kernel_init", "recurrent_initializer": "recurrent_init",
                         "bias_initializer": "bias_init", "kernel_regularizer": "kernel_reg",
                         "recurrent_regularizer": "recurrent_reg", "bias_regularizer": "bias_reg",
                         "activity_regularizer": "activity_reg"}
    gates: ClassVar[int] = 1

    def out_shape(self, shape):
        if len(shape) != 2:
            raise ShapeError(f"{self.kind} needs an input of rank 2 (steps, features), got {shape}")
        return (shape[0], self.units) if self.return_sequences else (self.units,)

    def _bias_shape(self) -> Shape:
        return (self.gates * self.units,)

    def weights(self, shape):
        g = self.gates * self.units
        w = [WeightSpec("kernel", (shape[-1], g), self.kernel_init, True, self.kernel_reg,
                        self.kernel_constraint),
             WeightSpec("recurrent_kernel", (self.units, g), self.recurrent_init, True, self.recurrent_reg,
                        self.recurrent_constraint)]
        if self.use_bias:
            w.append(WeightSpec("bias", self._bias_shape(), self.bias_init, True, self.bias_reg,
                                self.bias_constraint))
        return w


@register("SimpleRNN")
class SimpleRNN(RecurrentLayer):
    kind: Literal["SimpleRNN"] = "SimpleRNN"


@register("LSTM")
class LSTM(RecurrentLayer):
    """Gate order i, f, c, o (Keras); unit_forget_bias adds 1 to the forget gate's initial bias."""

    kind: Literal["LSTM"] = "LSTM"
    gates: ClassVar = 4
    unit_forget_bias: bool = True
    recurrent_activation: ActivationT = Sigmoid()

    def initial_adjustment(self, wname):
        if wname == "bias" and self.unit_forget_bias:
            return "unit_forget_bias", {"units": self.units}
        return None


@register("GRU")
class GRU(RecurrentLayer):
    """Gate order z, r, h with reset_after=True (Keras 3 default): bias shape (2, 3·units)."""

    kind: Literal["GRU"] = "GRU"
    gates: ClassVar = 3
    recurrent_activation: ActivationT = Sigmoid()

    def _bias_shape(self):
        return (2, 3 * self.units)


@register("Bidirectional")
class Bidirectional(Layer):
    """Keras' Bidirectional: a recurrent layer run forward and (a copy with its own weights) backward, merged.

    With return_sequences the backward outputs are reversed back to time order; merge_mode concat (along
    features, forward first), sum, mul, or ave = (forward + backward) / 2. Weights: the forward layer's, then
    the backward layer's, each prefixed (forward_kernel, ..., backward_bias)."""

    kind: Literal["Bidirectional"] = "Bidirectional"
    positional: ClassVar = ("layer", "merge_mode")
    layer: Annotated[Union[SimpleRNN, LSTM, GRU], Field(discriminator="kind")]
    merge_mode: Literal["concat", "sum", "mul", "ave"] = "concat"

    @field_validator("layer", mode="before")
    @classmethod
    def _recurrent(cls, v):
        if isinstance(v, Layer) and not isinstance(v, RecurrentLayer):
            # a ValueError: pydantic reports it as this field's error (a TypeError would escape)
            raise ValueError(f"Bidirectional wraps a recurrent layer (SimpleRNN, LSTM or GRU), got {v.kind}")  # noqa: TRY004
        return v

    def out_shape(self, shape):
        out = self.layer.out_shape(shape)
        return out[:-1] + (2 * out[-1],) if self.merge_mode == "concat" else out

    def weights(self, shape):
        inner = self.layer.weights(shape)
        return [WeightSpec(f"{d}_{w.name}", w.shape, w.init, w.trainable, w.regularizer, w.constraint)
                for d in ("forward", "backward") for w in inner]

    def initial_adjustment(self, wname):
        _direction, _, inner = wname.partition("_")
        return self.layer.initial_adjustment(inner)


@register("LeakyReLU")
class LeakyReLU(Layer):
    kind: Literal["LeakyReLU"] = "LeakyReLU"
    positional: ClassVar = ("alpha",)
    aliases: ClassVar = {"negative_slope": "alpha"}
    alpha: float = Field(0.3, ge=0)


@register("PReLU")
class PReLU(Layer):
    """Learned slope per element (Keras default: no shared axes), initialised to zeros."""

    kind: Literal["PReLU"] = "PReLU"
    aliases: ClassVar = {"alpha_initializer": "alpha_init"}
    alpha_init: InitializerT = ZEROS

    def weights(self, shape):
        return [WeightSpec("alpha", shape, self.alpha_init)]


@register("ELU")
class ELU(Layer):
    kind: Literal["ELU"] = "ELU"
    positional: ClassVar = ("alpha",)
    alpha: float = 1.0


@register("Softmax")
class Softmax(Layer):
    kind: Literal["Softmax"] = "Softmax"
    axis: int = -1

    def out_shape(self, shape):
        rank = len(shape) + 1  # Keras' axes count the batch axis
        if not -rank <= self.axis < rank:
            raise ShapeError(f"Softmax axis {self.axis} is out of range for an input of shape {shape}; "
                             f"the axes (the batch axis first) are {-rank} to {rank - 1}")
        return shape


@register("Maxout")
class Maxout(_Dense):
    """Goodfellow's maxout: a Dense of units·pieces outputs, then the max over each group of `pieces`."""

    kind: Literal["Maxout"] = "Maxout"
    positional: ClassVar = ("units", "pieces")
    units: int = Field(gt=0)
    pieces: int = Field(2, ge=1)

    def out_shape(self, shape):
        return shape[:-1] + (self.units,)

    def weights(self, shape):
        return self._kernel_and_bias((shape[-1], self.units * self.pieces), self.units * self.pieces)


@register("residual")
class Residual(Layer):
    """output = input + body(input); the body must keep the shape (no implicit projection)."""

    kind: Literal["Residual"] = "Residual"
    body: list[LayerT] = Field(default_factory=list)

    def out_shape(self, shape):
        return shape


LayerT = Annotated[
    Union[Dense, Conv1D, Conv2D, MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D, GlobalAvgPool1D, GlobalAvgPool2D,
          GlobalMaxPool1D, GlobalMaxPool2D, Flatten, Reshape, Dropout, ActivationLayer, BatchNorm, LayerNorm,
          Embedding, SimpleRNN, LSTM, GRU, LeakyReLU, PReLU, ELU, Softmax, Maxout, Residual, Conv2DTranspose,
          DepthwiseConv2D, SeparableConv2D, UpSampling2D, Bidirectional],
    Field(discriminator="kind"),
]
Residual.model_rebuild()
