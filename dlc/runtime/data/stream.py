"""An npy source, memory-mapped: its features are never read whole."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.compiler.checkshared import resolve_path
from dlc.compiler.datafiles import FORTRAN_ORDER
from dlc.compiler.spec import KFold, Npy, Spec
from dlc.runtime.data.base import DataError, Dataset, Folds, Samples, Split, data_block
from dlc.runtime.data.files import open_npy
from dlc.runtime.data.normalize import (
    check_finite_targets,
    check_model_inputs,
    check_statistics,
    chunk_rows,
    nonfinite_features,
    normalized,
    normalizer,
    streamed_normalizer,
)
from dlc.runtime.data.splits import kfold_indices, split_indices
from dlc.runtime.data.targets import checked_targets

# ------------------------------------------------------------------------------------- npy: memory-mapped
# The features of an npy source are never read whole: they are memory-mapped, checked and their statistics
# taken a chunk at a time, and each part of the split is a StreamedRows that reads and normalises the rows a
# batch asks for. The mapped pages are handed back to the kernel as reading goes on (they stay in the page
# cache, not in the process), so a file bigger than memory trains in a bounded footprint. A page fault maps
# more than the row it reads (the kernel maps a whole folio of the page cache, up to 2 MB: measured, 2000
# random batches of 128 rows of a 3 GB file mapped all of it), so random rows are counted at FAULT_BYTES each.

RELEASE_BYTES = 1 << 28  # what may be mapped before the pages are handed back (256 MB)


FAULT_BYTES = 1 << 21  # what one page fault may map, at most (a 2 MB folio)


class MappedRows:
    """An .npy file's features, memory-mapped, as (samples, features) rows: `m[rows]` (rows: a slice or an
    index array) reads those rows, a copy. What may be mapped is counted, and handed back to the kernel at
    RELEASE_BYTES (reads of many scattered rows are cut so that none maps more); a file no bigger than that is
    left mapped."""

    def __init__(self, path: Path, mapped: np.ndarray):
        self.path = path
        n = len(mapped)
        if mapped.ndim > 1 and not mapped.flags.c_contiguous:  # (a sample's values lie across the whole file)
            raise DataError(f"{path}: {FORTRAN_ORDER}")
        self.flat = mapped.reshape(n, -1)
        self._map = getattr(mapped, "_mmap", None)
        self._whole = self.flat.nbytes <= RELEASE_BYTES
        self._row_bytes = max(1, self.flat.strides[0]) if self.flat.ndim else 1
        self._mapped = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.flat.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.flat.dtype

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):  # (a view of the map: copied)
            out = np.array(self.flat[rows])
            self._count(out.nbytes)
            return out
        rows = np.asarray(rows)
        if self._whole or len(rows) == 0:
            return np.asarray(self.flat[rows])
        step = RELEASE_BYTES // FAULT_BYTES
        parts = []
        for lo in range(0, len(rows), step):
            part = rows[lo:lo + step]
            parts.append(np.asarray(self.flat[part]))  # (fancy indexing copies)
            # the 2 MB stretches of the file these rows lie in: what their faults may have mapped
            self._count(FAULT_BYTES * len(np.unique(part * self._row_bytes // FAULT_BYTES)))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _count(self, mapped: int) -> None:
        if self._whole:
            return
        self._mapped += mapped
        if self._mapped >= RELEASE_BYTES:
            self.release()

    def release(self) -> None:
        """Hand the mapped pages back to the kernel (read again from the page cache or file when used)."""
        self._mapped = 0
        if self._map is not None and hasattr(self._map, "madvise"):
            import contextlib
            import mmap

            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._map.madvise(mmap.MADV_DONTNEED)


class StreamedRows:
    """One part of a memory-mapped data set, as its features normalised and shaped to the spec's input, read
    on request: `x.take(indices)` (also `x[indices]`, `x[a:b]`, `x[i]`) reads those rows of the part and
    gives (len(indices), *input) in `dtype`, normalised as prepare() normalises in-memory data (in float64,
    then rounded to the dtype), so the values are bit for bit those of the same arrays in an .npz file.
    `np.asarray(x)` reads the whole part. Backends find it by `streamed` (they cannot import this module)."""

    streamed = True

    def __init__(self, source: MappedRows, index: np.ndarray, shift: np.ndarray | None,
                 scale: np.ndarray | None, dtype: str, input_shape: tuple[int, ...]):
        self.source, self.index = source, np.asarray(index, dtype=np.int64)
        self.shift, self.scale = shift, scale
        self.dtype = np.dtype(dtype)
        self.input_shape = tuple(input_shape)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.input_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.input_shape)

    def take(self, indices) -> np.ndarray:
        rows = self.index[np.asarray(indices, dtype=np.int64)]
        c = self.source[rows]
        if self.shift is not None and self.scale is not None:
            c = normalized(c, self.shift, self.scale)
        elif c.dtype != self.dtype:
            c = c.astype(np.float64, copy=False)  # (as the in-memory data: float64 first, then the dtype)
        return c.astype(self.dtype, copy=False).reshape((len(rows), *self.input_shape))

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self.take(np.arange(len(self.index))[key])
        if isinstance(key, (int, np.integer)):
            return self.take([int(key)])[0]
        return self.take(key)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.take(np.arange(len(self.index)))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (f"StreamedRows({len(self)} rows of {self.source.path}, shape {self.shape}, "
                f"dtype {self.dtype})")


@dataclass
class Streamed:
    """An npy source, opened and checked: the mapped features and the targets (read whole)."""

    rows: MappedRows
    targets: np.ndarray
    labels: np.ndarray | None
    num_classes: int | None
    samples: Samples
    # each feature's smallest and largest value, as float64: normalisation is monotone in each feature, so the
    # normalised values' extremes are those of these two rows (check_model_inputs needs no pass of its own)
    low: np.ndarray
    high: np.ndarray


def open_streamed(spec: Spec, base_dir: Path) -> Streamed:
    """The npy source's features memory-mapped and its targets read, checked as load() checks in-memory data
    (one row count, numbers, one feature per input value, finite values a chunk at a time, targets the loss
    takes), without reading the features whole."""
    src = data_block(spec).source
    assert isinstance(src, Npy)
    x_path, y_path = resolve_path(base_dir, src.x), resolve_path(base_dir, src.y)
    mapped, y = open_npy(x_path, mmap=True), open_npy(y_path, mmap=False)
    if mapped.dtype.kind not in "biuf":
        raise DataError(f"{x_path}: holds {mapped.dtype} values, not numbers")
    n = len(mapped)
    if n == 0:
        raise DataError(f"{x_path}: no samples")
    if len(y) != n:
        raise DataError(f"{x_path} has {n} samples but {y_path} has {len(y)}; they must match one to one")
    rows = MappedRows(x_path, mapped)
    need = math.prod(spec.input)
    if rows.shape[1] != need:
        raise DataError(f"{x_path}: samples have {rows.shape[1]} features, input {tuple(spec.input)} needs "
                        f"{need}")
    s = Samples(rows.flat, y, str(x_path), targets_where=str(y_path))
    low, high = _finite_extremes(rows, s)
    check_finite_targets(s.of_targets())
    targets, labels, num_classes = checked_targets(spec, s.of_targets())
    return Streamed(rows, targets, labels, num_classes, s, low, high)


def _finite_extremes(rows: MappedRows, s: Samples) -> tuple[np.ndarray, np.ndarray]:
    """check_finite_features, a chunk of the map at a time, and in the same pass each feature's extremes."""
    step = chunk_rows(rows.flat)
    low = high = None
    for lo in range(0, len(rows), step):
        c = rows[lo:lo + step]
        if c.dtype.kind == "f":
            bad = ~np.isfinite(c)
            if bad.any():
                row, col = (int(v) for v in np.argwhere(bad)[0])
                rest = sum(int((~np.isfinite(rows[at:at + step])).sum())
                           for at in range(lo + step, len(rows), step))
                raise nonfinite_features(s, int(bad.sum()) + rest, lo + row, col)
        cl, ch = c.min(axis=0), c.max(axis=0)
        low = cl if low is None else np.minimum(low, cl)
        high = ch if high is None else np.maximum(high, ch)
    rows.release()
    assert low is not None and high is not None  # (no samples is refused before)
    return low.astype(np.float64), high.astype(np.float64)


def assemble_streamed(spec: Spec, data: Streamed, dtype: str, train: np.ndarray, val: np.ndarray,
                      test: np.ndarray) -> Dataset:
    """assemble() for mapped features: statistics of the training part a chunk at a time (bit for bit
    normalizer()'s), every normalised value checked as the model will take it, and the parts as
    StreamedRows."""
    rows, s = data.rows, data.samples
    how = data_block(spec).normalize
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if rows.shape[1] >= 2:
            shift, scale = streamed_normalizer(how, rows, train)  # type: ignore[arg-type]
        else:
            shift, scale = normalizer(how, rows[train].astype(np.float64))
        check_statistics(spec, shift, scale, s.where)
    rows.release()
    every = StreamedRows(rows, np.arange(len(rows)), shift, scale, "float64", (rows.shape[1],))
    same = shift is None and np.can_cast(rows.dtype, dtype) and spec.input_vocabulary() is None
    if not same and not _extremes_fit(spec, data, shift, scale):
        # (features the run's dtype holds, unnormalised, need no check; others are checked by their extremes,
        # and the whole pass, which names the first value that does not fit, runs only when one does not)
        step = chunk_rows(rows.flat)
        for lo in range(0, len(rows), step):
            check_model_inputs(spec, every.take(np.arange(lo, min(lo + step, len(rows)))), s.where,
                               lambda i, lo=lo: s.row(lo + i))
        rows.release()

    def part(ix):
        if len(ix) == 0:
            return None
        return Split(StreamedRows(rows, ix, shift, scale, dtype, tuple(spec.input)), data.targets[ix],
                     data.labels[ix] if data.labels is not None else None)

    return Dataset(part(train), part(val), part(test), data.num_classes, shift=shift, scale=scale,
                   read=s.read(), class_names=s.class_names)


def _extremes_fit(spec: Spec, data: Streamed, shift: np.ndarray | None, scale: np.ndarray | None) -> bool:
    """Whether every normalised value fits the run's dtype, from each feature's extremes alone: (x - shift) /
    scale, in float64 with scale > 0, never decreases as x grows, so no value lies beyond the normalised
    extremes. An Embedding's whole-number check needs every value: False."""
    if spec.input_vocabulary() is not None:
        return False
    ends = np.stack([data.low, data.high])
    if shift is not None and scale is not None:
        ends = normalized(ends, shift, scale)
    try:
        check_model_inputs(spec, ends, data.samples.where, lambda i: "")
    except DataError:
        return False
    return True


def prepare_streamed(spec: Spec, base_dir: Path, dtype: str) -> Dataset:
    """prepare() for an npy source: the same seeded split and statistics, the parts read a batch at a time."""
    data = open_streamed(spec, base_dir)
    return assemble_streamed(spec, data, dtype, *split_indices(spec, data.labels, len(data.rows)))


def folds_streamed(spec: Spec, base_dir: Path, k: int | None = None, dtype: str | None = None) -> Folds:
    """folds() for an npy source (float64 parts unless `dtype` asks for another, as folds() gives)."""
    data = open_streamed(spec, base_dir)
    split = data_block(spec).split
    k = k or (split.k if isinstance(split, KFold) else 5)
    shuffle = split.shuffle if isinstance(split, KFold) else True
    parts = kfold_indices(len(data.rows), data.labels, k, shuffle, getattr(split, "stratify", False),
                          split.test, spec.seed)
    return Folds(lambda i: assemble_streamed(spec, data, dtype or "float64", *parts[i]), len(parts))
