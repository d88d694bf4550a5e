"""The data of a spec in memory: loaded, split (seeded), normalised with the training part's statistics and
shaped to the input; prepare() and folds() are the entry points (an npy source goes to stream.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dlc.compiler.checkshared import resolve_path
from dlc.compiler.spec import Bundled, Csv, KFold, Mnist, Npy, Npz, Spec
from dlc.runtime.data.base import DataError, Dataset, Folds, Samples, Split, data_block
from dlc.runtime.data.bundled import read_bundled
from dlc.runtime.data.files import csv_samples, read_mnist, read_npy, read_npz
from dlc.runtime.data.normalize import (
    check_finite_features,
    check_finite_targets,
    check_model_inputs,
    check_sample_shape,
    check_statistics,
    chunk_rows,
    normalized,
    normalizer,
    streamed_normalizer,
)
from dlc.runtime.data.splits import kfold_indices, split_indices
from dlc.runtime.data.stream import folds_streamed, prepare_streamed
from dlc.runtime.data.targets import checked_targets


def load_raw(spec: Spec, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, targets) of the spec's source, as the file holds them."""
    s = load_samples(spec, base_dir)
    return s.x, s.y


def load_samples(spec: Spec, base_dir: Path, keep_float32: bool = False) -> Samples:
    """The source's samples; `keep_float32`: an npz file's float32 features as the file holds them (else
    float64)."""
    src = data_block(spec).source
    if isinstance(src, Bundled):
        x, y = read_bundled(src.name)
        return Samples(x, y, src.name)
    if isinstance(src, Npy):  # (whole: a run reads them a batch at a time instead, prepare_streamed)
        x_path, y_path = resolve_path(base_dir, src.x), resolve_path(base_dir, src.y)
        x, y = read_npy(x_path, y_path)
        return Samples(x, y, str(x_path), targets_where=str(y_path))
    path = resolve_path(base_dir, src.path)
    if isinstance(src, Csv):
        return csv_samples(path, src.target)
    if isinstance(src, Npz):
        x, y = read_npz(path, src.x, src.y, keep_float32)
        return Samples(x, y, str(path))
    if isinstance(src, Mnist):
        x, y = read_mnist(path)
        return Samples(x, y, str(path))
    raise DataError(f"unsupported data source {src!r}")


# ----------------------------------------------------------------------------------------------- the data


@dataclass
class Loaded:
    """The whole data set, flat and unnormalised, with targets as the loss wants them."""

    x: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None
    num_classes: int | None
    samples: Samples | None = None  # as read: where from, and which row each sample is on


def load(spec: Spec, base_dir: Path, keep_float32: bool = False) -> Loaded:
    """The whole data set; features as float64, or (`keep_float32`) float32 ones as the file holds them."""
    s = load_samples(spec, base_dir, keep_float32)
    n = len(s.x)
    if n == 0:
        raise DataError(f"{s.where}: no samples")
    kept = keep_float32 and s.x.dtype == np.float32
    flat = (s.x if kept else np.asarray(s.x, dtype=np.float64)).reshape(n, -1)
    check_finite_features(flat, s)
    check_sample_shape(spec, tuple(s.x.shape[1:]), s.where)
    if len(s.y) != n:
        raise DataError(f"{s.where}: {n} samples but {len(s.y)} targets")
    check_finite_targets(s.of_targets())
    targets, labels, num_classes = checked_targets(spec, s.of_targets())
    return Loaded(flat, targets, labels, num_classes, s)


def assemble(spec: Spec, data: Loaded, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Dataset:
    """Normalise with statistics of the training part only (no leakage), shape to the spec's input."""
    s = data.samples or Samples(data.x, data.targets, "the data")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # (in float64 whatever the data's dtype: a float32 run's one-feature float32 npz features, kept
        # float32 and not held in place, took float32 statistics: other values than the float64 path's and
        # than an npy source's)
        shift, scale = normalizer(data_block(spec).normalize, data.x[train].astype(np.float64, copy=False))
        check_statistics(spec, shift, scale, s.where)
    flat = data.x if shift is None or scale is None else normalized(data.x, shift, scale)
    check_model_inputs(spec, flat, s.where, s.row)
    xs = flat.reshape((len(flat),) + tuple(spec.input))

    def part(ix):
        if len(ix) == 0:
            return None
        return Split(xs[ix], data.targets[ix], data.labels[ix] if data.labels is not None else None)

    return Dataset(part(train), part(val), part(test), data.num_classes, shift=shift, scale=scale,
                   read=s.read(), class_names=s.class_names)


def prepare(spec: Spec, base_dir: Path, dtype: str | None = None) -> Dataset:
    """Load, split (seeded), normalise with the training part's statistics only, shape to the spec's input;
    with the warnings of what the data turned out to hold (Dataset.warnings). See _prepare."""
    data = _prepare(spec, base_dir, dtype)
    one = one_class_warning(spec, base_dir, data)
    return replace(data, warnings=[one]) if one is not None else data


def one_class_warning(spec: Spec, base_dir: Path, data: Dataset) -> str | None:
    """dlc check's W019 for the training labels, at run time: all of one class, which a classifier learns
    nothing from (it scores accuracy 1.0 by always answering it). Said here of what check could not count
    (a file too large to count its labels, or a split that left one class in the training part); not again
    of a file check already said it of."""
    from dlc.compiler.datachecks import source_rows

    labels = data.train.labels
    if labels is None or not len(labels) or spec.task == "regression" or not (labels == labels[0]).all():
        return None
    counted = source_rows(data_block(spec).source, base_dir)
    if counted is not None and counted[1] is not None and len(counted[1]) == 1:
        return None  # (W019 said it)
    k = int(labels[0])
    named = f"class {data.class_names[k]!r}" if data.class_names and k < len(data.class_names) \
        else f"class {k}"
    return (f"the {len(labels):,} training labels are all {named}: a classifier scores accuracy 1.0 by "
            "always answering it, and learns nothing; check which column or array holds the labels, and the "
            "rows of the file (W019)")


def _prepare(spec: Spec, base_dir: Path, dtype: str | None = None) -> Dataset:
    """Load, split (seeded), normalise with the training part's statistics only, shape to the spec's input.

    `dtype`: the dtype the data will be trained in ("float32", "float64"): then the data is held once, in
    place: an npz file's float32 features stay float32 for a float32 run (without augmentation), normalised
    a chunk at a time in float64 and rounded back, and the parts are consecutive blocks of one array. The
    values are those a float64 Dataset (dtype None) gives, rounded to the dtype (tests/test_data_path.py)."""
    if isinstance(data_block(spec).source, Npy):
        return prepare_streamed(spec, base_dir, dtype or "float64")
    if dtype is None:
        data = load(spec, base_dir)
        return assemble(spec, data, *split_indices(spec, data.labels, len(data.x)))
    data = _load_for(spec, base_dir, dtype)
    parts = split_indices(spec, data.labels, len(data.x))
    if not _held_in_place(spec, data):
        return assemble(spec, data, *parts)
    return assemble_in_place(spec, data, *parts)


def _load_for(spec: Spec, base_dir: Path, dtype: str) -> Loaded:
    """The data for a run in `dtype`: an npz file's float32 features kept float32 for a float32 run without
    augmentation (augmentation works in float64)."""
    augmented = spec.data is not None and bool(spec.data.augment)
    return load(spec, base_dir, keep_float32=dtype == "float32" and not augmented)


def _held_in_place(spec: Spec, data: Loaded) -> bool:
    """Whether assemble_in_place() can hold this data (2 or more columns, no token ids, a writable array)."""
    return data.x.shape[1] >= 2 and spec.input_vocabulary() is None and data.x.flags.writeable


def assemble_in_place(spec: Spec, data: Loaded, train: np.ndarray, val: np.ndarray,
                      test: np.ndarray) -> Dataset:
    """assemble(), with the data held once: statistics and normalisation a chunk at a time (in float64, then
    rounded to data.x's dtype, in place), then the rows reordered in place so that train, val and test are
    consecutive blocks, each in assemble()'s order. Overwrites data.x."""
    s = data.samples or Samples(data.x, data.targets, "the data")
    flat = data.x
    how = data_block(spec).normalize
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        shift, scale = streamed_normalizer(how, flat, train)
        check_statistics(spec, shift, scale, s.where)
    rows = chunk_rows(flat)
    for lo in range(0, len(flat), rows):
        c = flat[lo:lo + rows]
        if shift is not None and scale is not None:
            c = normalized(c, shift, scale)
        check_model_inputs(spec, c, s.where, lambda i, lo=lo: s.row(lo + i))
        if shift is not None:
            flat[lo:lo + rows] = c
    order = np.concatenate([train, val, test]).astype(np.int64)
    reorder_rows(flat, order, rows)
    xs = flat.reshape((len(flat),) + tuple(spec.input))
    bounds = np.cumsum([0, len(train), len(val), len(test)])

    def part(k, ix):
        if len(ix) == 0:
            return None
        return Split(xs[bounds[k]:bounds[k + 1]], data.targets[ix],
                     data.labels[ix] if data.labels is not None else None)

    return Dataset(part(0, train), part(1, val), part(2, test), data.num_classes, shift=shift, scale=scale,
                   read=s.read(), class_names=s.class_names)


def reorder_rows(x: np.ndarray, order: np.ndarray, chunk: int) -> None:
    """x[:len(order)] = x[order] in place, for `order` = ascending runs (train, val, test) of distinct rows:
    the rows after the first run are set aside (a copy of those only), the first run is moved forward a chunk
    at a time (each row to a place at or before its own, so nothing is overwritten before it is read), and the
    rows set aside follow it."""
    if len(order) == 0:
        return
    falls = np.flatnonzero(np.diff(order) <= 0)
    first = int(falls[0]) + 1 if len(falls) else len(order)
    rest = x[order[first:]]
    head = order[:first]
    for lo in range(0, len(head), chunk):
        x[lo:min(lo + chunk, first)] = x[head[lo:lo + chunk]]
    x[first:first + len(rest)] = rest


def folds(spec: Spec, base_dir: Path, k: int | None = None, dtype: str | None = None) -> Folds:
    """k seeded (stratified if asked) folds; each Dataset's val is the held-out fold. A test fraction, if the
    split asks for one, is held out first and stays out of every fold (each Dataset's test is that part).
    `dtype`: as prepare()'s: each fold is then a copy of the data normalised in place with its training part's
    statistics (the data once, plus one fold)."""
    if isinstance(data_block(spec).source, Npy):
        return folds_streamed(spec, base_dir, k, dtype)
    data = load(spec, base_dir) if dtype is None else _load_for(spec, base_dir, dtype)
    split = data_block(spec).split
    k = k or (split.k if isinstance(split, KFold) else 5)
    shuffle = split.shuffle if isinstance(split, KFold) else True
    parts = kfold_indices(len(data.x), data.labels, k, shuffle, getattr(split, "stratify", False), split.test,
                          spec.seed)
    if dtype is None or not _held_in_place(spec, data):
        return Folds(lambda i: assemble(spec, data, *parts[i]), len(parts))
    return Folds(lambda i: assemble_in_place(spec, replace(data, x=data.x.copy()), *parts[i]), len(parts))
