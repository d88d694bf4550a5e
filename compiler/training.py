"""Optimizers, schedules, losses, metrics and training settings: parameters, defaults, formulas.

Keras' definitions are the reference (shared/EQUIVALENCE.md); backends reproduce them exactly.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import BeforeValidator, Field, model_validator

from .catalog import Catalogued, IRNode, lookup, register


def canonical_metric_key(key: object) -> object:
    """A monitored or objective quantity with its metric's Keras alias written as dlc names it in histories:
    `val_acc` is `val_accuracy` (`acc` is a name of accuracy in `metrics:`, so Keras users monitor `val_acc`),
    `cv_binary_accuracy` is `cv_accuracy`. Anything else is left for the checks to judge."""
    if not isinstance(key, str):
        return key
    for prefix in ("cv_val_", "cv_", "val_", ""):
        if key.startswith(prefix):
            metric = lookup("metric", key[len(prefix):])
            if metric is not None:
                return prefix + metric.model_fields["name"].default
    return key


# a history key (loss, val_accuracy, ...): metric aliases canonical
MetricKey = Annotated[str, BeforeValidator(canonical_metric_key)]

# --------------------------------------------------------------------------------------------- optimizers


class Optimizer(Catalogued):
    family: ClassVar[str] = "optimizer"
    aliases: ClassVar = {"lr": "learning_rate"}
    positional: ClassVar[tuple[str, ...]] = ("learning_rate",)
    learning_rate: float = Field(0.001, gt=0)
    clipnorm: Optional[float] = Field(None, gt=0)
    clipvalue: Optional[float] = Field(None, gt=0)
    global_clipnorm: Optional[float] = Field(None, gt=0)
    weight_decay: Optional[float] = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_clip(self):
        if sum(x is not None for x in (self.clipnorm, self.clipvalue, self.global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm may be set")
        return self


@register("SGD")
class SGD(Optimizer):
    """v = momentum·v − lr·g; w += v (nesterov: w += momentum·v − lr·g). lr folded into v, as Keras does."""

    kind: Literal["SGD"] = "SGD"
    positional: ClassVar = ("learning_rate", "momentum", "nesterov")  # Keras' order, as all below
    learning_rate: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False


@register("RMSprop")
class RMSprop(Optimizer):
    """v = ρv + (1−ρ)g²; w −= lr·g/√(v + ε) (ε inside the root, Keras' form)."""

    kind: Literal["RMSprop"] = "RMSprop"
    positional: ClassVar = ("learning_rate", "rho", "momentum", "epsilon", "centered")
    rho: float = Field(0.9, gt=0, lt=1)
    momentum: float = Field(0.0, ge=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)
    centered: bool = False


@register("Adam")
class Adam(Optimizer):
    """Keras' Adam: ε added to the uncorrected √v, bias corrections computed in the variable dtype."""

    kind: Literal["Adam"] = "Adam"
    positional: ClassVar[tuple[str, ...]] = ("learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad")
    beta_1: float = Field(0.9, gt=0, lt=1)
    beta_2: float = Field(0.999, gt=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)
    amsgrad: bool = False


@register("AdamW")
class AdamW(Adam):
    # an Adam with weight decay, told apart by its own discriminator value (a Literal that narrows no base)
    kind: Literal["AdamW"] = "AdamW"  # type: ignore[assignment]
    positional: ClassVar = ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon", "amsgrad")
    weight_decay: Optional[float] = Field(0.004, ge=0)


@register("Adagrad")
class Adagrad(Optimizer):
    kind: Literal["Adagrad"] = "Adagrad"
    positional: ClassVar = ("learning_rate", "initial_accumulator_value", "epsilon")
    initial_accumulator_value: float = Field(0.1, ge=0)
    epsilon: float = Field(1e-7, gt=0)


@register("Adadelta")
class Adadelta(Optimizer):
    kind: Literal["Adadelta"] = "Adadelta"
    positional: ClassVar = ("learning_rate", "rho", "epsilon")
    rho: float = Field(0.95, gt=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)


@register("Nadam")
class Nadam(Optimizer):
    kind: Literal["Nadam"] = "Nadam"
    positional: ClassVar = ("learning_rate", "beta_1", "beta_2", "epsilon")
    beta_1: float = Field(0.9, gt=0, lt=1)
    beta_2: float = Field(0.999, gt=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)


OptimizerT = Annotated[Union[SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Nadam],
                       Field(discriminator="kind")]

# ---------------------------------------------------------------------------------------------- schedules


def step_decay(epoch: int, base_lr: float, every: int, factor: float = 0.5) -> float:
    return base_lr * factor ** (epoch // every)


def exponential_decay(epoch: int, base_lr: float, rate: float, every: int = 1) -> float:
    return base_lr * rate ** (epoch / every)


def cosine_decay(epoch: int, base_lr: float, epochs: int, min_lr: float = 0.0) -> float:
    e = min(epoch, epochs)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * e / epochs))


def warmup(epoch: int, base_lr: float, epochs: int, then=None) -> float:
    """Linear warm-up over `epochs` (epoch e uses base·(e+1)/epochs), then `then(epoch, base_lr)` from 0."""
    if epoch < epochs:
        return base_lr * (epoch + 1) / epochs
    return then(epoch - epochs, base_lr) if then else base_lr


class Schedule(Catalogued):
    """Per-epoch learning-rate rule; epochs count from 0; the lr used in epoch e is what `lr_at` gives."""

    family: ClassVar[str] = "schedule"

    def lr_at(self, epoch: int, base_lr: float) -> float:
        return base_lr


@register("step")
class StepDecay(Schedule):
    kind: Literal["step"] = "step"
    positional: ClassVar = ("every", "factor")
    every: int = Field(gt=0)
    factor: float = Field(0.5, gt=0)

    def lr_at(self, epoch, base_lr):
        return step_decay(epoch, base_lr, self.every, self.factor)


@register("exponential")
class ExponentialDecay(Schedule):
    kind: Literal["exponential"] = "exponential"
    positional: ClassVar = ("rate", "every")
    rate: float = Field(gt=0)
    every: int = Field(1, gt=0)

    def lr_at(self, epoch, base_lr):
        return exponential_decay(epoch, base_lr, self.rate, self.every)


@register("cosine")
class CosineDecay(Schedule):
    kind: Literal["cosine"] = "cosine"
    positional: ClassVar = ("epochs",)
    epochs: int = Field(gt=0)
    min_lr: float = Field(0.0, ge=0)

    def lr_at(self, epoch, base_lr):
        return cosine_decay(epoch, base_lr, self.epochs, self.min_lr)


@register("plateau")
class Plateau(Schedule):
    """Keras ReduceLROnPlateau: after `patience` epochs without improvement by min_delta, lr·factor."""

    kind: Literal["plateau"] = "plateau"
    monitor: MetricKey = "val_loss"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(10, ge=0)
    min_lr: float = Field(0.0, ge=0)
    min_delta: float = Field(1e-4, ge=0)
    cooldown: int = Field(0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"


@register("warmup")
class Warmup(Schedule):
    """Linear warm-up to the base lr over `epochs` (epoch e: base·(e+1)/epochs), then `then` (step,
    exponential or cosine; none: the base lr) from epoch 0."""

    kind: Literal["warmup"] = "warmup"
    positional: ClassVar = ("epochs", "then")
    epochs: int = Field(gt=0)
    then: Optional[Annotated[Union[StepDecay, ExponentialDecay, CosineDecay],
                             Field(discriminator="kind")]] = None

    def lr_at(self, epoch, base_lr):
        return warmup(epoch, base_lr, self.epochs, self.then.lr_at if self.then else None)


ScheduleT = Annotated[Union[StepDecay, ExponentialDecay, CosineDecay, Plateau, Warmup],
                      Field(discriminator="kind")]

# ------------------------------------------------------------------------------------------ losses, metrics


class Loss(Catalogued):
    """Mean over the batch of the per-sample loss. Crossentropies are computed from the logits of a softmax or
    sigmoid output layer (log-softmax / log-sigmoid: no clipping), the exact counterpart of Keras' fused
    path."""

    family: ClassVar[str] = "loss"
    # the loss's own task and targets; the spec's (a regression loss on class labels is a classification) are
    # Spec.task and Spec.targets, which every check, target, metric and backend asks
    task: ClassVar[str] = "regression"  # "categorical" | "binary" | "regression"
    targets: ClassVar[str] = "float"  # "onehot" | "int" | "float"
    output_activation: ClassVar[str | None] = None  # the activation the last layer must end in


@register("categorical_crossentropy", "categorical_cross_entropy")
class CategoricalCrossentropy(Loss):
    name: Literal["categorical_crossentropy"] = "categorical_crossentropy"
    task: ClassVar = "categorical"
    targets: ClassVar = "onehot"
    output_activation: ClassVar = "softmax"


@register("sparse_categorical_crossentropy")
class SparseCategoricalCrossentropy(Loss):
    name: Literal["sparse_categorical_crossentropy"] = "sparse_categorical_crossentropy"
    task: ClassVar = "categorical"
    targets: ClassVar = "int"
    output_activation: ClassVar = "softmax"


@register("binary_crossentropy")
class BinaryCrossentropy(Loss):
    name: Literal["binary_crossentropy"] = "binary_crossentropy"
    task: ClassVar = "binary"
    output_activation: ClassVar = "sigmoid"


@register("mse", "mean_squared_error")
class MSE(Loss):
    """Squared error, mean over the outputs then the batch (Keras'). Regression targets; on a bundled
    classification set's labels one-hot targets (a 0/1 column for one output), a classification
    (Spec.task)."""

    name: Literal["mse"] = "mse"


@register("mae", "mean_absolute_error")
class MAE(Loss):
    """Absolute error, mean over the outputs then the batch (Keras'). Regression targets; on a bundled
    classification set's labels one-hot targets (a 0/1 column for one output), a classification
    (Spec.task)."""

    name: Literal["mae"] = "mae"


@register("huber")
class Huber(Loss):
    """Huber loss (squared below delta, linear above), mean over the outputs then the batch (Keras').
    Regression targets; on a bundled classification set's labels one-hot targets (a 0/1 column for one
    output), a classification (Spec.task)."""

    name: Literal["huber"] = "huber"
    positional: ClassVar = ("delta",)
    delta: float = Field(1.0, gt=0)


LossT = Annotated[Union[CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy, MSE, MAE,
                        Huber],
                  Field(discriminator="name")]


class Metric(Catalogued):
    """Metrics are computed once, in numpy, from statistics each backend accumulates on its device: a
    confusion matrix for classification, sums of squared and absolute errors for regression
    (dlc/reference/metrics.py)."""

    family: ClassVar[str] = "metric"
    tasks: ClassVar[tuple[str, ...]] = ("categorical", "binary")


# Keras' task-specific accuracies are names of the one accuracy, which follows the loss's task
@register("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy")
class Accuracy(Metric):
    name: Literal["accuracy"] = "accuracy"


@register("precision")
class Precision(Metric):
    """Binary: of the positive class. Multi-class: macro average over classes."""

    name: Literal["precision"] = "precision"


@register("recall")
class Recall(Metric):
    """Binary: of the positive class. Multi-class: macro average over classes."""

    name: Literal["recall"] = "recall"


@register("f1")
class F1(Metric):
    """Binary: of the positive class. Multi-class: macro average of per-class F1."""

    name: Literal["f1"] = "f1"


@register("mse", "mean_squared_error")
class MSEMetric(Metric):
    """Regression: of the outputs. With a classification loss (as Keras' metrics=["mse"]): between the
    one-hot (or 0/1) targets and the output probabilities, sparse labels one-hot encoded (Brier score / k)."""

    name: Literal["mse"] = "mse"
    tasks: ClassVar = ("regression", "categorical", "binary")


@register("mae", "mean_absolute_error")
class MAEMetric(Metric):
    """Regression: of the outputs. With a classification loss: between the one-hot (or 0/1) targets and the
    output probabilities, sparse labels one-hot encoded."""

    name: Literal["mae"] = "mae"
    tasks: ClassVar = ("regression", "categorical", "binary")


MetricT = Annotated[Union[Accuracy, Precision, Recall, F1, MSEMetric, MAEMetric], Field(discriminator="name")]

# ----------------------------------------------------------------------------------------------- training


class EarlyStopping(IRNode):
    """Keras EarlyStopping; restore_best restores the best epoch's weights at the end of training."""

    monitor: MetricKey = "val_loss"
    patience: int = Field(0, ge=0)
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = False
    mode: Literal["auto", "min", "max"] = "auto"
    aliases: ClassVar = {"restore_best_weights": "restore_best"}


# `precision:` in train { }: the arithmetic of the layers. float32 is the spec's dtype throughout (the only
# setting the equivalence contract covers); mixed_* compute the layers in bfloat16 / float16 with float32
# weights (master weights), float32 optimizer steps and the loss computed in float32 from float32 outputs, as
# Keras' mixed dtype policies do; mixed_float16 scales the loss dynamically (LOSS_SCALE).
PrecisionSetting = Literal["float32", "mixed_bfloat16", "mixed_float16"]


class LossScale(IRNode):
    """Keras' LossScaleOptimizer's dynamic loss scaling (mixed_float16), the rule both backends follow: the
    loss is multiplied by `scale` before the gradients are taken and they are divided by it after; a step
    with a non-finite gradient is skipped (the optimizer's step count not advanced) and halves the scale;
    `growth_steps` finite steps in a row double it."""

    initial_scale: float = 2.0**15
    growth_steps: int = 2000


LOSS_SCALE = LossScale()


class Train(IRNode):
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(32, gt=0)
    shuffle: bool = True
    early_stopping: Optional[EarlyStopping] = None
    precision: PrecisionSetting = "float32"
    aliases: ClassVar = {}

    @property
    def mixed(self) -> bool:
        """Whether the layers compute in a 16-bit type (precision mixed_bfloat16 or mixed_float16)."""
        return self.precision != "float32"

    @property
    def compute_dtype(self) -> str | None:
        """The layers' 16-bit compute dtype ("bfloat16" / "float16"), None for full precision."""
        return self.precision.removeprefix("mixed_") if self.mixed else None


# ------------------------------------------------------------------------------------------------- search


def higher_is_better(metric: str) -> bool:
    """Accuracy-like quantities (accuracy, precision, recall, f1) improve upwards, losses and errors
    downwards, as Keras' mode='auto' decides: the one rule for monitors and search objectives."""
    return any(k in metric for k in ("acc", "precision", "recall", "f1"))


class Objective(IRNode):
    direction: Literal["minimize", "maximize"] = "minimize"
    metric: MetricKey = "val_loss"

    @model_validator(mode="before")
    @classmethod
    def _direction_of_the_metric(cls, data):
        """`objective: val_accuracy` (no direction) maximises it: minimising it made the worst trial best."""
        if isinstance(data, dict) and data.get("direction") is None:
            metric = str(data.get("metric", "val_loss"))
            data = {**data, "direction": "maximize" if higher_is_better(metric) else "minimize"}
        return data


class Search(IRNode):
    method: Literal["grid", "random", "tpe"] = "tpe"
    trials: int = Field(20, gt=0)
    objective: Objective = Objective()
    prune: Literal["median", "none"] = "none"
    storage: Optional[str] = None
    aliases: ClassVar = {}


class SearchSpace(IRNode):
    """One searchable argument: where it sits in the spec and what it may take."""

    kind: Literal["choice", "uniform", "loguniform", "int_uniform"]
    path: str
    options: list[Union[int, float, str, bool]] = Field(default_factory=list)
    low: Optional[float] = None
    high: Optional[float] = None
    at: tuple[int, int]  # (line, column) where the call starts: the key a tuner's overrides use
    end: tuple[int, int]  # (line, column) just past its closing parenthesis, to rewrite the call's text
