"""An npy source, read as training goes: its features are never read whole."""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from dlc.compiler.checkshared import resolve_path
from dlc.compiler.datafiles import FORTRAN_ORDER, no_features, npy_layout
from dlc.compiler.spec import KFold, Npy, Spec
from dlc.runtime.data.base import DataError, Dataset, Folds, Samples, Split, data_block
from dlc.runtime.data.files import dtype_text, open_npy
from dlc.runtime.data.normalize import (
    check_finite_targets,
    check_model_inputs,
    check_sample_shape,
    check_statistics,
    chunk_rows,
    nonfinite_features,
    normalized,
    normalizer,
    streamed_normalizer,
)
from dlc.runtime.data.splits import kfold_indices, split_indices
from dlc.runtime.data.targets import checked_targets

# ------------------------------------------------------------------------------------- npy: read as it goes
# The features of an npy source are never read whole: they are checked and their statistics taken a chunk at a
# time, and each part of the split is a StreamedRows that reads and normalises the rows a batch asks for. The
# rows are read with positioned reads into the batch's own array, not memory-mapped: the process holds only
# what it asked for (the file's pages stay in the kernel's page cache), and a file cut short or rewritten
# while a run reads it is a DataError, where a memory map would die of SIGBUS (exit 135, no word).


class FileRows:
    """An .npy file's features as (samples, features) rows, read on request: `r[rows]` (a slice or an index
    array) reads those rows from the file, one read per run of consecutive rows, into a new array. Every read
    checks that the file is still the one opened (same size and modification time): a run that trains on data
    half old, half new would be wrong without a word."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...], data_start: int):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = (shape[0], math.prod(shape[1:]))
        self.sample_shape = tuple(shape[1:])  # (as the file holds each sample)
        self._start = data_start
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._open()

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise DataError(f"cannot read data file {self.path}: {e.strerror or e}") from None
        weakref.finalize(self, os.close, self._fd)
        stamp = self._stamp()
        if getattr(self, "stamp", stamp) != stamp:  # (reopened in another process: the file must be the same)
            raise DataError(self._changed())
        self.stamp = stamp

    def _stamp(self) -> tuple[int, int]:
        st = os.fstat(self._fd)
        return st.st_size, st.st_mtime_ns

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_fd"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        n = len(self)
        if isinstance(rows, slice):
            lo, hi, step = rows.indices(n)
            rows = np.arange(lo, hi, step)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        if len(rows) == 0 or out.size == 0:
            return out
        if rows.min() < -n or rows.max() >= n:
            raise IndexError(f"row {int(rows.max() if rows.max() >= n else rows.min())} of {n}")
        rows = np.where(rows < 0, rows + n, rows)
        # one read per run of consecutive rows, in the order asked (a shuffled batch: a read per row; a slice
        # or a chunk: one read); as Python ints, which a loop of reads takes faster than numpy's
        cuts = np.flatnonzero(np.diff(rows) != 1) + 1
        ends = np.r_[0, cuts, len(rows)].tolist()
        view, size, start, fd = out.data.cast("B"), self._row_bytes, self._start, self._fd
        for first, a, b in zip(rows[ends[:-1]].tolist(), ends, ends[1:], strict=False):
            part = view[a * size:b * size]
            got = _pread_into(fd, part, start + first * size)
            if got < len(part):  # (a read may stop short: go on from there)
                self._read_rest(part, start + first * size, got)
        if self._stamp() != self.stamp:
            raise DataError(self._changed())
        return out

    def _read_rest(self, view: memoryview, at: int, got: int) -> None:
        """Fill the rest of `view`, from byte `got` on, with the file's bytes from offset `at` on."""
        while got < len(view):
            n = _pread_into(self._fd, view[got:], at + got)
            if n == 0:  # (the file ends before the rows its header promised)
                raise DataError(self._changed())
            got += n

    def _changed(self) -> str:
        return (f"{self.path} changed while this run was reading it (a run reads an npy source's features "
                f"a batch at a time as it trains); leave the file as it is until the run ends, or save new "
                f"data to another file")


def _preadv(fd: int, view: memoryview, at: int) -> int:
    return os.preadv(fd, [view], at)


def _pread_copy(fd: int, view: memoryview, at: int) -> int:
    got = os.pread(fd, len(view), at)
    view[:len(got)] = got
    return len(got)


# straight into the array where the system has preadv, else a read and a copy
_pread_into = _preadv if hasattr(os, "preadv") else _pread_copy


def open_rows(path: Path) -> FileRows:
    """An .npy file's features, checked as open_npy checks every .npy file (header, Python objects, a file cut
    short), then read on request."""
    checked = open_npy(path, mmap=True)  # (mapped, never read: dropped before any row is)
    shape, dtype = checked.shape, checked.dtype
    scattered = checked.ndim > 1 and not checked.flags.c_contiguous
    del checked
    if scattered:  # (a sample's values lie across the whole file)
        raise DataError(f"{path}: {FORTRAN_ORDER}")
    if (empty := no_features(shape)) is not None:
        raise DataError(f"{path}: {empty}")
    return FileRows(path, dtype, shape, npy_layout(path).data_start)


class StreamedRows:
    """One part of an npy source's data set, as its features normalised and shaped to the spec's input, read
    on request: `x.take(indices)` (also `x[indices]`, `x[a:b]`, `x[i]`) reads those rows of the part and
    gives (len(indices), *input) in `dtype`, normalised as prepare() normalises in-memory data (in float64,
    then rounded to the dtype), so the values are bit for bit those of the same arrays in an .npz file.
    `np.asarray(x)` reads the whole part. Backends find it by `streamed` (they cannot import this module)."""

    streamed = True

    def __init__(self, source: FileRows, index: np.ndarray, shift: np.ndarray | None,
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
    """An npy source, opened and checked: its features (read on request) and its targets (read whole)."""

    rows: FileRows
    targets: np.ndarray
    labels: np.ndarray | None
    num_classes: int | None
    samples: Samples
    # each feature's smallest and largest value, as float64: normalisation is monotone in each feature, so the
    # normalised values' extremes are those of these two rows (check_model_inputs needs no pass of its own)
    low: np.ndarray
    high: np.ndarray


def open_streamed(spec: Spec, base_dir: Path) -> Streamed:
    """The npy source's features opened and its targets read, checked as load() checks in-memory data
    (one row count, numbers, one feature per input value, finite values a chunk at a time, targets the loss
    takes), without reading the features whole."""
    src = data_block(spec).source
    assert isinstance(src, Npy)
    x_path, y_path = resolve_path(base_dir, src.x), resolve_path(base_dir, src.y)
    rows, y = open_rows(x_path), open_npy(y_path, mmap=False)
    if rows.dtype.kind not in "biuf":
        raise DataError(f"{x_path}: holds {dtype_text(rows.dtype)} values, not numbers")
    n = len(rows)
    if n == 0:
        raise DataError(f"{x_path}: no samples")
    if len(y) != n:
        raise DataError(f"{x_path} has {n} samples but {y_path} has {len(y)}; they must match one to one")
    check_sample_shape(spec, rows.sample_shape, str(x_path))
    # (the messages read only how many samples x has: the rows stand in for the array)
    s = Samples(cast(np.ndarray, rows), y, str(x_path), targets_where=str(y_path))
    low, high = _finite_extremes(rows, s)
    check_finite_targets(s.of_targets())
    targets, labels, num_classes = checked_targets(spec, s.of_targets())
    return Streamed(rows, targets, labels, num_classes, s, low, high)


def _finite_extremes(rows: FileRows, s: Samples) -> tuple[np.ndarray, np.ndarray]:
    """check_finite_features, a chunk of the file at a time, and in the same pass each feature's extremes."""
    step = chunk_rows(rows)
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
    assert low is not None and high is not None  # (no samples is refused before)
    return low.astype(np.float64), high.astype(np.float64)


def assemble_streamed(spec: Spec, data: Streamed, dtype: str, train: np.ndarray, val: np.ndarray,
                      test: np.ndarray) -> Dataset:
    """assemble() for features read on request: statistics of the training part a chunk at a time (bit for bit
    normalizer()'s), every normalised value checked as the model will take it, and the parts as
    StreamedRows."""
    rows, s = data.rows, data.samples
    how = data_block(spec).normalize
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if rows.shape[1] >= 2:
            shift, scale = streamed_normalizer(how, rows, train)
        else:
            shift, scale = normalizer(how, rows[train].astype(np.float64))
        check_statistics(spec, shift, scale, s.where)
    every = StreamedRows(rows, np.arange(len(rows)), shift, scale, "float64", (rows.shape[1],))
    same = shift is None and np.can_cast(rows.dtype, dtype) and spec.input_vocabulary() is None
    if not same and not _extremes_fit(spec, data, shift, scale):
        # (features the run's dtype holds, unnormalised, need no check; others are checked by their extremes,
        # and the whole pass, which names the first value that does not fit, runs only when one does not)
        step = chunk_rows(rows)
        for lo in range(0, len(rows), step):
            check_model_inputs(spec, every.take(np.arange(lo, min(lo + step, len(rows)))), s.where,
                               lambda i, lo=lo: s.row(lo + i))

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
