"""The IR's root: a whole validated spec, plus the data description and shape inference over its layers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Optional, Union, get_args

from pydantic import Field, PrivateAttr, field_validator, model_validator

from .catalog import Catalogued, IRNode, register
from .layers import Embedding, Flatten, Layer, LayerT, Reshape, Residual, Shape, ShapeError, WeightSpec
from .training import (
    EarlyStopping,
    LossT,
    MetricT,
    OptimizerT,
    ScheduleT,
    Search,
    SearchSpace,
    Train,
)

# ------------------------------------------------------------------------------------------------ sources

# features, classes (None: regression) of the bundled sets, known without importing scikit-learn
BUNDLED = {
    "digits": ((64,), 10),
    "iris": ((4,), 3),
    "wine": ((13,), 3),
    "breast_cancer": ((30,), 2),
    "diabetes": ((10,), None),
}
# the rows of each bundled set, and of each class of the classification sets (classes 0, 1, ...), as
# scikit-learn's load_*() gives them (tests/test_check_rules.py compares); `dlc check` checks splits with them
BUNDLED_ROWS = {"digits": 1797, "iris": 150, "wine": 178, "breast_cancer": 569, "diabetes": 442}
BUNDLED_CLASS_ROWS: dict[str, tuple[int, ...]] = {
    "digits": (178, 182, 177, 183, 181, 182, 181, 179, 174, 180),
    "iris": (50, 50, 50),
    "wine": (59, 71, 48),
    "breast_cancer": (212, 357),
}

# what each bundled set's features hold, for an Embedding that reads them as token indices (normalize: none):
# the largest of a set of whole numbers 0 and up, or the first value that is not one (its first sample's
# first feature); tests/test_check_gaps.py compares them with scikit-learn's
BUNDLED_LARGEST_TOKEN: dict[str, int] = {"digits": 16}
# the smallest and largest target of each bundled regression set (targets are not normalised)
BUNDLED_TARGET_RANGE: dict[str, tuple[float, float]] = {"diabetes": (25.0, 346.0)}
BUNDLED_FIRST_FRACTION: dict[str, float] = {"iris": 5.1, "wine": 14.23, "breast_cancer": 17.99,
                                            "diabetes": 0.038075906433423026}


class Source(Catalogued):
    family: ClassVar[str] = "source"


@register(*BUNDLED)
class Bundled(Source):
    """One of scikit-learn's bundled data sets."""

    # BUNDLED's keys, in its order (spelled out: a type checker cannot evaluate Literal[tuple(BUNDLED)])
    name: Literal["digits", "iris", "wine", "breast_cancer", "diabetes"]


assert get_args(Bundled.model_fields["name"].annotation) == tuple(BUNDLED), "Bundled.name != BUNDLED"


@register("csv")
class Csv(Source):
    """A CSV file with a header row; `target` names the label column (default: the last one)."""

    name: Literal["csv"] = "csv"
    positional: ClassVar = ("path",)
    path: str
    target: Optional[str] = None


@register("npz")
class Npz(Source):
    name: Literal["npz"] = "npz"
    positional: ClassVar = ("path",)
    path: str
    x: str = "x"
    y: str = "y"


@register("mnist")
class Mnist(Source):
    """MNIST from local files: IDX (optionally gzipped) or Keras' mnist.npz in a folder."""

    name: Literal["mnist"] = "mnist"
    positional: ClassVar = ("path",)
    path: str


@register("npy")
class Npy(Source):
    """Features and targets in two .npy files (np.save), one sample per row of each; the features are
    read from the file a batch at a time, for data bigger than memory."""

    name: Literal["npy"] = "npy"
    positional: ClassVar = ("x", "y")
    x: str
    y: str


SourceT = Annotated[Union[Bundled, Csv, Npz, Mnist, Npy], Field(discriminator="name")]


class Split(Catalogued):
    family: ClassVar[str] = "split"


@register("holdout")
class Holdout(Split):
    """Seeded train/val/test split (fractions of the whole set); stratified on the labels when asked."""

    kind: Literal["holdout"] = "holdout"
    positional: ClassVar = ("val", "test")
    val: float = Field(0.2, ge=0, lt=1)
    test: float = Field(0.0, ge=0, lt=1)
    stratify: bool = False

    @model_validator(mode="after")
    def _leaves_training_data(self):
        if self.val + self.test >= 1:
            total = self.val + self.test
            raise ValueError(f"val + test = {self.val:g} + {self.test:g} = {total:g} leaves no training "
                             "data; the fractions must add up to less than 1")
        return self


@register("kfold")
class KFold(Split):
    kind: Literal["kfold"] = "kfold"
    positional: ClassVar = ("k",)
    k: int = Field(5, ge=2)
    shuffle: bool = True
    stratify: bool = False
    test: float = Field(0.0, ge=0, lt=1)


SplitT = Annotated[Union[Holdout, KFold], Field(discriminator="kind")]


class Augment(Catalogued):
    family: ClassVar[str] = "augment"


@register("flip")
class Flip(Augment):
    name: Literal["flip"] = "flip"
    horizontal: bool = True
    vertical: bool = False


@register("shift")
class Shift(Augment):
    name: Literal["shift"] = "shift"
    positional: ClassVar = ("fraction",)
    fraction: float = Field(0.1, gt=0, lt=1)


@register("crop")
class Crop(Augment):
    """Pad-and-crop: zero padding, then a random window of the image's size (a number, or (height, width))."""

    name: Literal["crop"] = "crop"
    positional: ClassVar = ("size", "padding")
    size: Union[int, tuple[int, int]]
    padding: int = Field(0, ge=0)

    @field_validator("size")
    @classmethod
    def _positive(cls, v):
        if any(x <= 0 for x in ((v,) if isinstance(v, int) else v)):
            raise ValueError(f"size must be positive, got {v}")
        return v

    @property
    def window(self) -> tuple[int, int]:
        """The crop's (height, width)."""
        return (self.size, self.size) if isinstance(self.size, int) else (self.size[0], self.size[1])


AugmentT = Annotated[Union[Flip, Shift, Crop], Field(discriminator="name")]


class Data(IRNode):
    source: SourceT
    normalize: Literal["standard", "minmax", "none"] = "none"
    split: SplitT = Holdout()
    augment: list[AugmentT] = Field(default_factory=list)
    aliases: ClassVar = {}


# ---------------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class LayerInfo:
    """One layer in traversal order with its shapes and weights (the summary and the backends use this)."""

    index: int
    layer: Layer
    in_shape: Shape
    out_shape: Shape
    weights: list[WeightSpec]
    depth: int


SEED_MAX = 2**32 - 1  # seeds are 0 .. 2^32-1: what numpy's and Optuna's seeded generators all take


def data_classes(data: Data | None) -> int | None:
    """The number of classes of the data's target when the spec says it (a bundled classification set), else
    None."""
    if data is not None and isinstance(data.source, Bundled):
        return BUNDLED[data.source.name][1]
    return None


def task_for(loss, data: Data | None, units: int | None) -> str:
    """The task, defined once: "categorical", "binary" or "regression". A crossentropy's own; a regression
    loss (mse, mae, huber) on class labels (`data_classes`: the sets the E302 check calls classification
    sets) is a classification, as Keras' `compile(loss="mse")` on one-hot labels: one output per class is
    "categorical" (one-hot targets, argmax accuracy), one output of two classes "binary" (a 0/1 column,
    accuracy at 0.5). `units`: the output layer's, None when not known (then "categorical"). An MNIST source's
    targets are labels too, their count known only from its files: more than one output makes them one-hot
    (a label beyond the outputs is refused as a crossentropy's is), one output keeps a regression."""
    task = type(loss).task
    if task != "regression":
        return task
    if data is not None and isinstance(data.source, Mnist) and units is not None and units > 1:
        return "categorical"  # (MNIST's targets are labels, whatever their count: one-hot to the outputs)
    if (classes := data_classes(data)) is None:
        return task
    return "binary" if units == 1 and classes == 2 else "categorical"


def _named(node: IRNode) -> str:
    """A catalogue item as a spec names it (`sparse_categorical_crossentropy`, `RMSprop`)."""
    names = getattr(type(node), "spec_names", ())
    return names[0] if names else type(node).__name__


class Spec(IRNode):
    name: str
    seed: int = Field(0, ge=0, le=SEED_MAX)
    dtype: Literal["float32", "float64"] = "float32"
    data: Optional[Data] = None
    input: tuple[int, ...]
    layers: list[LayerT]
    loss: LossT
    metrics: list[MetricT] = Field(default_factory=list)
    optimizer: OptimizerT
    schedule: Optional[ScheduleT] = None
    train: Train = Train()
    search: Optional[Search] = None
    search_spaces: list[SearchSpace] = Field(default_factory=list)
    @model_validator(mode="after")
    def _cross_validated_objective(self) -> Spec:
        """Under a kfold split every trial is cross-validated, so a validation objective (`val_loss`, the
        default, or `val_accuracy`) is its mean over the folds, `cv_loss`, `cv_accuracy`: LANGUAGE.md's
        `split: kfold(...)` and `objective: minimize val_loss` written together were an error (E504). (Set
        while the spec is built, the one time a frozen node is written; a before-validator would have taken
        ir.json's arrays as Python lists, which strict tuples refuse.)"""
        search = self.search
        if search is None or self.data is None or self.data.split.kind != "kfold" \
                or not search.objective.metric.startswith("val_"):
            return self
        base = search.objective.metric.removeprefix("val_")
        if base not in ("loss", *(m.name for m in self.metrics)):
            return self  # (`val_accuracy` without the metric: E504 says so of the name written)
        cv = "cv_" + base
        objective = search.objective.model_copy(update={"metric": cv})
        object.__setattr__(self, "search", search.model_copy(update={"objective": objective}))
        return self

    # the file the spec was read from (dlc.load sets it; model_copy keeps it), so relative data paths resolve
    # against its folder: not part of the IR — not in its JSON, its schema or its equality
    _source_file: Optional[Path] = PrivateAttr(default=None)

    @property
    def source_file(self) -> Path | None:
        """The spec file this spec was loaded from (absolute), or None."""
        return self._source_file

    def with_source_file(self, path: str | Path | None) -> Spec:
        """A copy that remembers `path` as its spec file."""
        out = self.model_copy()
        out._source_file = None if path is None else Path(path).resolve()
        return out

    def __eq__(self, other: object) -> bool:
        # the IR's fields only (pydantic's own __eq__ would compare the private source file too)
        if not isinstance(other, Spec):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __repr__(self) -> str:
        """One line a notebook can read: what the spec trains and how (pydantic's repr of every node ran to
        1.5 KB for the 3-layer digits MLP, and grew with every layer); `model_dump_json()` has it all."""
        kinds = [type(layer).__name__ for layer in self.layers]
        layers = ", ".join(kinds[:6]) + (", …" if len(kinds) > 6 else "")
        where = f" from {self._source_file.name}" if self._source_file is not None else ""
        search = (f"; searches {len(self.search_spaces)} space{'s' * (len(self.search_spaces) != 1)} "
                  f"({self.search.method}, {self.search.trials} trials)") if self.search is not None else ""
        return (f"Spec({self.name}{where}: input {self.input}, {len(kinds)} layer{'s' * (len(kinds) != 1)} "
                f"({layers}), loss {_named(self.loss)}, {_named(self.optimizer)}, "
                f"{self.train.epochs} epoch{'s' * (self.train.epochs != 1)} of batch "
                f"{self.train.batch_size}, {self.dtype}, seed {self.seed}{search})")

    def walk(self) -> Iterator[LayerInfo]:
        """Every layer (residual bodies included) with shapes; raises ShapeError naming the bad layer."""
        counter = [0]
        # the first layer that is not a Flatten or Reshape: what an Embedding after it would read instead of
        # the model's input (token indices)
        computed: list[str | None] = [None]

        def go(layers, shape, depth):
            for layer in layers:
                idx = counter[0]
                counter[0] += 1
                try:
                    if isinstance(layer, Embedding) and computed[0] is not None:
                        raise ShapeError(
                            "Embedding takes token indices (whole numbers), so it must read the model's "
                            f"input, but it comes after {computed[0]}, whose outputs are not indices; make "
                            "it the first layer (only Flatten or Reshape may come before it)")
                    if not isinstance(layer, (Flatten, Reshape)) and computed[0] is None:
                        computed[0] = layer.kind
                    out = layer.out_shape(shape)
                    weights = layer.weights(shape)
                except ShapeError as e:
                    e.layer = layer
                    raise
                yield LayerInfo(idx, layer, shape, out, weights, depth)
                if isinstance(layer, Residual):
                    inner = shape
                    for info in go(layer.body, shape, depth + 1):
                        inner = info.out_shape if info.depth == depth + 1 else inner
                        yield info
                    if inner != shape:
                        err = ShapeError(
                            f"residual body changes the shape {shape} to {inner}; the sum needs equal shapes "
                            "(a projection is not added implicitly)")
                        err.layer = layer
                        raise err
                shape = out

        yield from go(self.layers, tuple(self.input), 0)

    def output_shape(self) -> Shape:
        shape = tuple(self.input)
        for info in self.walk():
            if info.depth == 0:
                shape = info.out_shape
        return shape

    @property
    def classes(self) -> int | None:
        """The number of classes the data's target holds when the spec itself says it (a bundled
        classification set: iris, digits, wine, breast_cancer), else None (regression data, or classes known
        only from a file, which the loss decides)."""
        return data_classes(self.data)

    @property
    def task(self) -> str:
        """"categorical", "binary" or "regression" (task_for): the loss's own task for a crossentropy; for a
        regression loss on class labels a classification. Every check, target, metric and backend asks it."""
        try:
            units: int | None = self.output_shape()[-1]
        except (ShapeError, IndexError):
            units = None
        return task_for(self.loss, self.data, units)

    @property
    def targets(self) -> str:
        """How the targets reach the loss: "onehot" rows, "int" labels or a "float" column (a 0/1 column for a
        binary task) per sample; a regression loss on classes takes them as the crossentropies do."""
        loss = type(self.loss)
        if loss.task != "regression":
            return loss.targets
        return "onehot" if self.task == "categorical" else "float"

    def input_embedding(self) -> Embedding | None:
        """The Embedding that reads the model's input (first, or after reshapes only), else None: such an
        input is token ids (checked against its input_dim, never normalised), not features."""
        first = next((layer for layer in self.layers if not isinstance(layer, (Flatten, Reshape))), None)
        return first if isinstance(first, Embedding) else None

    def input_vocabulary(self) -> int | None:
        """input_dim of the input's Embedding (input_embedding), else None."""
        embedding = self.input_embedding()
        return None if embedding is None else embedding.input_dim

    def param_counts(self) -> tuple[int, int]:
        """(trainable, non-trainable), as Keras counts them."""
        t = n = 0
        for info in self.walk():
            for w in info.weights:
                if w.trainable:
                    t += math.prod(w.shape)
                else:
                    n += math.prod(w.shape)
        return t, n

    def work_per_sample(self) -> int:
        """A rough count of a training step's arithmetic per sample: each layer's weights times the positions
        they are applied at (a Dense once per sample or per time step, a convolution at every output pixel, a
        recurrent layer at every time step), plus every layer's output elements (elementwise work). Parameter
        counts alone call a convolution on a big image small; the torch backend's thread choice needs the
        work."""
        work = 0
        for info in self.walk():
            out = info.out_shape
            work += math.prod(out)
            if info.weights:
                # the same rank in and out: applied per output position (Dense, Conv, pools of features);
                # a rank change (a recurrent layer's last state, an Embedding) : per input position
                lead = out[:-1] if len(out) == len(info.in_shape) else info.in_shape[:-1]
                work += sum(math.prod(w.shape) for w in info.weights) * math.prod(lead)
        return work


__all__ = ["BUNDLED", "BUNDLED_CLASS_ROWS", "BUNDLED_ROWS", "Data", "EarlyStopping", "LayerInfo", "Spec",
           "data_classes", "task_for"]
