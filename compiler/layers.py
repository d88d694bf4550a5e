"""Layers: parameters, defaults, validation, shape rule and weights (canonical = Keras layout) on each class.

Shapes exclude the batch axis and are channels-last (NHWC), as in Keras; backends convert layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator

from .catalog import Catalogued, register
from .functions import (
    GLOROT_UNIFORM,
    LINEAR,
    ONES,
    ZEROS,
    ActivationT,
    ConstraintT,
    InitializerT,
    Orthogonal,
    RandomUniform,
    RegularizerT,
    SimpleActivation,
)

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A layer cannot take the shape it is given; the message says what it needs."""


@dataclass(frozen=True)
class WeightSpec:
    name: str
    shape: Shape
    init: object
    trainable: bool = True
    regularizer: object = None
    constraint: object = None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_len(n: int, k: int, s: int, padding: str) -> int:
    if padding == "same":
        return -(-n // s)
    return (n - k) // s + 1


class Layer(Catalogued):
    family: ClassVar[str] = "layer"
    # instance name, assigned by the resolver in traversal order (dense_0, dropout_1, ...)
    name: str = ""
    at: Optional[tuple[int, int]] = Field(None, exclude=True, repr=False)  # (line, col) in the spec

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def weights(self, shape: Shape) -> list[WeightSpec]:
        return []

    def activation_fn(self):
        return getattr(self, "activation", None)


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

    def out_shape(self, shape):
        if len(shape) != self.rank + 1:
            want = "(height, width, channels)" if self.rank == 2 else "(steps, channels)"
            raise ShapeError(
                f"{self.kind} needs an input of rank {self.rank + 1} {want}, got {shape}"
                + ("; give images as input: (height, width, channels) or add Reshape(...)" if len(shape) == 1 else "")
            )
        ks, ss = self._ks()
        spatial = []
        for n, k, s in zip(shape[:-1], ks, ss):
            out = _conv_len(n, k, s, self.padding)
            if out <= 0:
                raise ShapeError(f"{self.kind} kernel {ks} does not fit the input {shape} with padding={self.padding}")
            spatial.append(out)
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


class _Pool(Layer):
    positional: ClassVar = ("pool_size", "strides", "padding")
    aliases: ClassVar = {"pool": "pool_size"}
    padding: Literal["valid", "same"] = "valid"
    rank: ClassVar[int] = 2

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
        out = tuple(_conv_len(n, k, s, self.padding) for n, k, s in zip(shape[:-1], ps, ss))
        if min(out) <= 0:
            raise ShapeError(f"{self.kind} window {ps} does not fit the input {shape}")
        return out + (shape[-1],)


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
        return (v,) if isinstance(v, int) else v

    def out_shape(self, shape):
        target = list(self.target_shape)
        total = math.prod(shape)
        if target.count(-1) == 1:
            known = math.prod(t for t in target if t != -1)
            if known <= 0 or total % known:
                raise ShapeError(f"cannot reshape {shape} ({total} values) to {tuple(target)}")
            target[target.index(-1)] = total // known
        if math.prod(target) != total:
            raise ShapeError(f"cannot reshape {shape} ({total} values) to {tuple(target)} ({math.prod(target)} values)")
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
    """Keras semantics: momentum weighs the old moving value, biased batch variance, inference mode at eval."""

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


class _Recurrent(Layer):
    positional: ClassVar = ("units",)
    units: int = Field(gt=0)
    activation: ActivationT = SimpleActivation(name="tanh")
    return_sequences: bool = False
    use_bias: bool = True
    kernel_init: InitializerT = GLOROT_UNIFORM
    recurrent_init: InitializerT = Orthogonal()
    bias_init: InitializerT = ZEROS
    kernel_reg: Optional[RegularizerT] = None
    recurrent_reg: Optional[RegularizerT] = None
    bias_reg: Optional[RegularizerT] = None
    aliases: ClassVar = {"kernel_initializer": "kernel_init", "recurrent_initializer": "recurrent_init",
                         "bias_initializer": "bias_init", "kernel_regularizer": "kernel_reg",
                         "recurrent_regularizer": "recurrent_reg", "bias_regularizer": "bias_reg"}
    gates: ClassVar[int] = 1

    def out_shape(self, shape):
        if len(shape) != 2:
            raise ShapeError(f"{self.kind} needs an input of rank 2 (steps, features), got {shape}")
        return (shape[0], self.units) if self.return_sequences else (self.units,)

    def _bias_shape(self) -> Shape:
        return (self.gates * self.units,)

    def weights(self, shape):
        g = self.gates * self.units
        w = [WeightSpec("kernel", (shape[-1], g), self.kernel_init, True, self.kernel_reg),
             WeightSpec("recurrent_kernel", (self.units, g), self.recurrent_init, True, self.recurrent_reg)]
        if self.use_bias:
            w.append(WeightSpec("bias", self._bias_shape(), self.bias_init, True, self.bias_reg))
        return w


@register("SimpleRNN")
class SimpleRNN(_Recurrent):
    kind: Literal["SimpleRNN"] = "SimpleRNN"


@register("LSTM")
class LSTM(_Recurrent):
    """Gate order i, f, c, o (Keras); unit_forget_bias adds 1 to the forget gate's initial bias."""

    kind: Literal["LSTM"] = "LSTM"
    gates: ClassVar = 4
    unit_forget_bias: bool = True
    recurrent_activation: ActivationT = SimpleActivation(name="sigmoid")


@register("GRU")
class GRU(_Recurrent):
    """Gate order z, r, h with reset_after=True (Keras 3 default): bias shape (2, 3·units)."""

    kind: Literal["GRU"] = "GRU"
    gates: ClassVar = 3
    recurrent_activation: ActivationT = SimpleActivation(name="sigmoid")

    def _bias_shape(self):
        return (2, 3 * self.units)


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
          Embedding, SimpleRNN, LSTM, GRU, LeakyReLU, PReLU, ELU, Softmax, Maxout, Residual],
    Field(discriminator="kind"),
]
Residual.model_rebuild()
