"""What the data path gives and says: the Dataset and its parts, the samples as read, the one error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from dlc.backends.session import StreamedFeatures
from dlc.compiler.diagnostics import DlcError
from dlc.compiler.spec import Data, Spec


class DataError(DlcError):
    """A data file is missing or unreadable at run time: one clear line, exit 1."""


class Rows(Protocol):
    """A source's features as (samples, features) rows: an array, or an npy file's rows read on request
    (stream.FileRows), which the chunked passes read a slice at a time."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, rows: Any) -> np.ndarray: ...


@dataclass
class Split:
    # the features, normalised and shaped to the spec's input; for an npy source a StreamedRows, which reads
    # them a batch at a time (x[indices], x[a:b], x.take(indices)) instead of holding them
    x: np.ndarray | StreamedFeatures
    y: np.ndarray  # targets as the loss wants them (one-hot, int, or float column)
    labels: np.ndarray | None  # integer class labels (classification), for stratification and metrics

    def __repr__(self) -> str:
        """Shapes and dtypes, not every value (a notebook printed the whole arrays)."""
        from dlc.runtime.reprs import shape

        labels = "" if self.labels is None else ", labels"
        return f"Split({len(self.y)} samples: x {shape(self.x)}, y {shape(self.y)}{labels})"


@dataclass
class Dataset:
    train: Split
    val: Split | None
    test: Split | None
    num_classes: int | None
    # x_normalised = (x - shift) / scale per flat feature, fitted on the training part; saved with a run so
    # `dlc predict` and `dlc evaluate` apply exactly what training saw
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    read: dict | None = None  # what was read: {"file", "rows", "header"} (Samples.read)
    class_names: list[str] | None = None  # a CSV target of names: class k is class_names[k]
    # what the data turned out to hold that training should not start without saying (dataset.prepare)
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """Each part's shape and dtype and the classes, not every value (a notebook printed the whole
        arrays)."""
        from dlc.runtime.reprs import shape

        parts = ", ".join(f"{name} {shape(part.x)}" for name, part in self._parts())
        return f"Dataset({parts}{self._classes()})"

    def _repr_html_(self) -> str:
        """The parts as a small table in a notebook."""
        from dlc.runtime.reprs import shape, table

        rows = [[name, len(part.y), shape(part.x), shape(part.y)] for name, part in self._parts()]
        return table(["part", "samples", "x", "y"], rows, caption=repr(self))

    def _parts(self) -> list[tuple[str, Split]]:
        """The parts this split has, by name (val and test may be absent)."""
        return [(name, part) for name, part in (("train", self.train), ("val", self.val), ("test", self.test))
                if part is not None]

    def _classes(self) -> str:
        """"; 10 classes (a, b, …)": a few names, enough to recognise the targets."""
        if self.num_classes is None:
            return ""
        names = self.class_names or []
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        return f"; {self.num_classes} classes" + (f" ({shown})" if shown else "")

    def preprocessing(self) -> dict:
        return {"shift": None if self.shift is None else self.shift.tolist(),
                "scale": None if self.scale is None else self.scale.tolist()}

    def read_line(self) -> str:
        """What was read, in one line for the console ("" when not known)."""
        return read_summary(self.read) if self.read else ""


@dataclass
class Samples:
    """Features and targets as a source holds them, with what messages about them need: where they come from
    and, for a CSV file, the row of the file each sample is on."""

    x: np.ndarray
    y: np.ndarray
    where: str  # the file (or bundled set) the messages name
    lines: list[int] | None = None  # each sample's row in a CSV file; None: samples are numbered from 1
    class_names: list[str] | None = None  # a CSV target column of names, numbered in sorted order
    header: bool | None = None  # a CSV file: whether its first row was a header
    targets_where: str | None = None  # the targets' own file (an npy source's y), when not `where`

    @property
    def has_targets(self) -> bool:
        """False for a file of features only (its y has no columns)."""
        return not (self.y.ndim == 2 and self.y.shape[1] == 0)

    def of_targets(self) -> Samples:
        """These samples named by their targets' file, for the messages about the targets."""
        return self if self.targets_where is None else replace(self, where=self.targets_where)

    def row(self, i: int) -> str:
        """Where sample i is, as its file shows it: "row 7" of a CSV file, else "sample 7"."""
        return f"row {self.lines[i]}" if self.lines is not None else f"sample {i + 1}"

    def read(self) -> dict:
        """What was read, for run.json and the console."""
        return {"file": self.where, "rows": int(len(self.x)), "header": self.header}


def read_summary(read: dict) -> str:
    """One line saying what was read: "read 150 rows from d.csv (the first row is a header)"."""
    n = read["rows"]
    if read.get("header") is None:
        return f"read {n} sample{'s' * (n != 1)} from {read['file']}"
    first = "the first row is a header" if read["header"] else "no header: the first row is data"
    return f"read {n} row{'s' * (n != 1)} from {read['file']} ({first})"


def read_change(now, then, when: str = "") -> str | None:
    """How the data read `now` differs from what was read `then` (Samples.read's record, as run.json keeps it
    in `data_read`): another row count, or a first row that was a header and is data (or the other way);
    None when neither, or when there is no record to compare. `when`: the moment `then` names ("when the run
    was trained"), in the words."""
    if not isinstance(now, dict) or not isinstance(then, dict) or "rows" not in then:
        return None
    file, unit = now.get("file"), "rows" if now.get("header") is not None else "samples"
    if now.get("rows") != then["rows"]:
        return f"{file} has {now.get('rows')} {unit}, it had {then['rows']}" + (f" {when}" if when else "")
    if now.get("header") != then.get("header"):
        was = ("data", "a header")
        return (f"the first row of {file} is {was[bool(now.get('header'))]}, {when + ' ' if when else ''}it "
                f"was {was[bool(then.get('header'))]}")
    return None


def data_block(spec: Spec) -> Data:
    """The spec's data block (the IR allows a spec without one, which has nothing to load)."""
    if spec.data is None:
        raise DataError(f"spec '{spec.name}' has no data block")
    return spec.data


class Folds:
    """The k folds of a kfold split, each assembled when asked for: `dlc cv` trains one at a time and
    `dlc compare` uses fold 1, so one fold's arrays are held at a time, not k."""

    def __init__(self, make: Callable[[int], Dataset], k: int):
        self._make, self._k = make, k

    def __len__(self) -> int:
        return self._k

    def __getitem__(self, i: int) -> Dataset:
        if not -self._k <= i < self._k:
            raise IndexError(f"fold {i} of {self._k}")
        return self._make(i % self._k)

    def __iter__(self) -> Iterator[Dataset]:
        return (self._make(i) for i in range(self._k))
