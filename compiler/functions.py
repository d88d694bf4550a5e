"""Activations, initializers, regularizers and constraints: their parameters, defaults and exact formulas.

Initial weights are drawn here, in numpy, from dlc's seeded streams (Keras' formulas and fan rules, not Keras'
random numbers), so both backends start from bit-identical weights.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from .catalog import Catalogued, register

# --------------------------------------------------------------------------------------------- activations


class Activation(Catalogued):
    family: ClassVar[str] = "activation"


@register("linear")
class Linear(Activation):
    """f(x) = x."""

    name: Literal["linear"] = "linear"


@register("sigmoid")
class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    name: Literal["sigmoid"] = "sigmoid"


@register("hard_sigmoid")
class HardSigmoid(Activation):
    """relu6(x + 3) / 6 (Keras 3's definition)."""

    name: Literal["hard_sigmoid"] = "hard_sigmoid"


@register("tanh")
class Tanh(Activation):
    """tanh(x)."""

    name: Literal["tanh"] = "tanh"


@register("relu")
class Relu(Activation):
    """max(x, 0)."""

    name: Literal["relu"] = "relu"


@register("relu6")
class Relu6(Activation):
    """min(max(x, 0), 6)."""

    name: Literal["relu6"] = "relu6"


@register("selu")
class Selu(Activation):
    """scale * elu(x, alpha) with Klambauer's constants."""

    name: Literal["selu"] = "selu"


@register("gelu")
class Gelu(Activation):
    """x * Φ(x), the exact erf form (TensorFlow's 0.5·x·erfc(-x/√2))."""

    name: Literal["gelu"] = "gelu"


@register("swish", "silu")
class Swish(Activation):
    """x * sigmoid(x) (silu)."""

    name: Literal["swish"] = "swish"


@register("softplus")
class Softplus(Activation):
    """log(1 + exp(x)), returning x above TensorFlow's threshold."""

    name: Literal["softplus"] = "softplus"


@register("softsign")
class Softsign(Activation):
    """x / (1 + |x|)."""

    name: Literal["softsign"] = "softsign"


@register("softmax")
class Softmax(Activation):
    """exp(x) / Σ exp(x) over the last axis."""

    name: Literal["softmax"] = "softmax"


@register("leaky_relu")
class LeakyReluActivation(Activation):
    """max(x, alpha*x); the function form defaults to Keras' 0.2 (the LeakyReLU layer to 0.3)."""

    name: Literal["leaky_relu"] = "leaky_relu"
    positional: ClassVar = ("alpha",)
    aliases: ClassVar = {"negative_slope": "alpha"}
    alpha: float = Field(0.2, ge=0)


@register("elu")
class EluActivation(Activation):
    name: Literal["elu"] = "elu"
    positional: ClassVar = ("alpha",)
    alpha: float = 1.0


ActivationT = Annotated[
    Union[Linear, Sigmoid, HardSigmoid, Tanh, Relu, Relu6, Selu, Gelu, Swish, Softplus, Softsign, Softmax,
          LeakyReluActivation, EluActivation],
    Field(discriminator="name"),
]

LINEAR = Linear()


# -------------------------------------------------------------------------------------------- initializers

TRUNC_STD = 0.87962566103423978  # stddev of a standard normal truncated to [-2, 2], as Keras corrects for


def fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """Keras' fan rule: dense [in, out]; conv [*kernel, in, out] scaled by the receptive field."""
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def truncated_normal(rng: np.random.Generator, shape, mean: float, stddev: float) -> np.ndarray:
    """Normal(mean, stddev) with draws beyond 2 stddev redrawn."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return mean + stddev * out


def random_normal(rng: np.random.Generator, shape, mean: float = 0.0, stddev: float = 0.05) -> np.ndarray:
    return mean + stddev * rng.standard_normal(shape)


def random_uniform(rng: np.random.Generator, shape, minval: float = -0.05,
                   maxval: float = 0.05) -> np.ndarray:
    return rng.uniform(minval, maxval, shape)


def variance_scaling(rng: np.random.Generator, shape, scale: float, mode: str,
                     distribution: str) -> np.ndarray:
    """Keras' VarianceScaling (glorot_*, he_*, lecun_*): variance scale / fan, uniform or truncated normal."""
    fan_in, fan_out = fans(tuple(shape))
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    variance = scale / max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, shape)
    return truncated_normal(rng, shape, 0.0, math.sqrt(variance) / TRUNC_STD)


def orthogonal(rng: np.random.Generator, shape, gain: float = 1.0) -> np.ndarray:
    """Keras' orthogonal: QR of a normal matrix of shape (prod(shape[:-1]), shape[-1]), sign-corrected."""
    if len(shape) < 2:
        return gain * rng.standard_normal(shape)
    rows, cols = math.prod(shape[:-1]), shape[-1]
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


class Initializer(Catalogued):
    family: ClassVar[str] = "initializer"

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


@register("zeros")
class Zeros(Initializer):
    name: Literal["zeros"] = "zeros"

    def draw(self, rng, shape):
        return np.zeros(shape)


@register("ones")
class Ones(Initializer):
    name: Literal["ones"] = "ones"

    def draw(self, rng, shape):
        return np.ones(shape)


@register("constant")
class Constant(Initializer):
    name: Literal["constant"] = "constant"
    positional: ClassVar = ("value",)
    value: float = 0.0

    def draw(self, rng, shape):
        return np.full(shape, float(self.value))


@register("random_normal")
class RandomNormal(Initializer):
    name: Literal["random_normal"] = "random_normal"
    positional: ClassVar = ("mean", "stddev")
    mean: float = 0.0
    stddev: float = Field(0.05, gt=0)

    def draw(self, rng, shape):
        return random_normal(rng, shape, self.mean, self.stddev)


@register("random_uniform")
class RandomUniform(Initializer):
    name: Literal["random_uniform"] = "random_uniform"
    positional: ClassVar = ("minval", "maxval")
    minval: float = -0.05
    maxval: float = 0.05

    @model_validator(mode="after")
    def _ordered(self):
        # (reversed bounds passed the check and failed drawing the weights: "ValueError: high - low < 0")
        if self.minval > self.maxval:
            lo, hi = f"{self.maxval:g}", f"{self.minval:g}"
            raise ValueError(f"minval {hi} is above maxval {lo}: the bounds are minval <= maxval, e.g. "
                             f"random_uniform(minval={lo}, maxval={hi})")
        return self

    def draw(self, rng, shape):
        return random_uniform(rng, shape, self.minval, self.maxval)


@register("truncated_normal")
class TruncatedNormal(Initializer):
    name: Literal["truncated_normal"] = "truncated_normal"
    positional: ClassVar = ("mean", "stddev")
    mean: float = 0.0
    stddev: float = Field(0.05, gt=0)

    def draw(self, rng, shape):
        return truncated_normal(rng, shape, self.mean, self.stddev)


class VarianceScaling(Initializer):
    """Keras' VarianceScaling family: scale / fan, uniform or truncated normal."""

    scale: ClassVar[float] = 1.0
    mode: ClassVar[str] = "fan_in"
    distribution: ClassVar[str] = "truncated_normal"

    def draw(self, rng, shape):
        return variance_scaling(rng, shape, self.scale, self.mode, self.distribution)


@register("glorot_uniform", "xavier_uniform")
class GlorotUniform(VarianceScaling):
    name: Literal["glorot_uniform"] = "glorot_uniform"
    mode: ClassVar = "fan_avg"
    distribution: ClassVar = "uniform"


@register("glorot_normal", "xavier_normal")
class GlorotNormal(VarianceScaling):
    name: Literal["glorot_normal"] = "glorot_normal"
    mode: ClassVar = "fan_avg"


@register("he_normal", "kaiming_normal")
class HeNormal(VarianceScaling):
    name: Literal["he_normal"] = "he_normal"
    scale: ClassVar = 2.0


@register("he_uniform", "kaiming_uniform")
class HeUniform(VarianceScaling):
    name: Literal["he_uniform"] = "he_uniform"
    scale: ClassVar = 2.0
    distribution: ClassVar = "uniform"


@register("lecun_normal")
class LecunNormal(VarianceScaling):
    name: Literal["lecun_normal"] = "lecun_normal"


@register("lecun_uniform")
class LecunUniform(VarianceScaling):
    name: Literal["lecun_uniform"] = "lecun_uniform"
    distribution: ClassVar = "uniform"


@register("orthogonal")
class Orthogonal(Initializer):
    """Keras' orthogonal: QR of a normal matrix of shape (prod(shape[:-1]), shape[-1]), sign-corrected."""

    name: Literal["orthogonal"] = "orthogonal"
    positional: ClassVar = ("gain",)
    gain: float = 1.0

    def draw(self, rng, shape):
        return orthogonal(rng, shape, self.gain)


InitializerT = Annotated[
    Union[Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, GlorotUniform, GlorotNormal,
          HeNormal, HeUniform, LecunNormal, LecunUniform, Orthogonal],
    Field(discriminator="name"),
]

GLOROT_UNIFORM = GlorotUniform()
ZEROS = Zeros()
ONES = Ones()

# -------------------------------------------------------------------------------------------- regularizers


class Regularizer(Catalogued):
    """A penalty added to the loss: l1·Σ|w| + l2·Σw² (Keras' definition, coefficients as Keras casts them)."""

    family: ClassVar[str] = "regularizer"
    l1: float = 0.0
    l2: float = 0.0


@register("l1")
class L1(Regularizer):
    name: Literal["l1"] = "l1"
    positional: ClassVar = ("l1",)
    l1: float = Field(0.01, ge=0)


@register("l2")
class L2(Regularizer):
    name: Literal["l2"] = "l2"
    positional: ClassVar = ("l2",)
    l2: float = Field(0.01, ge=0)


@register("l1_l2")
class L1L2(Regularizer):
    name: Literal["l1_l2"] = "l1_l2"
    positional: ClassVar = ("l1", "l2")
    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)


RegularizerT = Annotated[Union[L1, L2, L1L2], Field(discriminator="name")]

# --------------------------------------------------------------------------------------------- constraints


class Constraint(Catalogued):
    family: ClassVar[str] = "constraint"


@register("max_norm")
class MaxNorm(Constraint):
    name: Literal["max_norm"] = "max_norm"
    positional: ClassVar = ("max_value",)
    max_value: float = Field(2.0, gt=0)
    axis: int = 0


@register("non_neg")
class NonNeg(Constraint):
    name: Literal["non_neg"] = "non_neg"


@register("unit_norm")
class UnitNorm(Constraint):
    name: Literal["unit_norm"] = "unit_norm"
    axis: int = 0


ConstraintT = Annotated[Union[MaxNorm, NonNeg, UnitNorm], Field(discriminator="name")]
