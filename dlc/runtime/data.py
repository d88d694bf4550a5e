"""Loading, splitting and normalising data: numpy only, seeded, the same arrays for every backend."""

from __future__ import annotations

import csv
import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.compiler.checks import resolve_path
from dlc.compiler.spec import BUNDLED, Bundled, Csv, Data, Holdout, KFold, Mnist, Npz, Spec
from dlc.reference.rng import STREAM_SPLIT


class DataError(Exception):
    """A data file is missing or unreadable at run time: one clear line, exit 1."""


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray  # targets as the loss wants them (one-hot, int, or float column)
    labels: np.ndarray | None  # integer class labels (classification), for stratification and metrics


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

    def preprocessing(self) -> dict:
        return {"shift": None if self.shift is None else self.shift.tolist(),
                "scale": None if self.scale is None else self.scale.tolist()}


def data_block(spec: Spec) -> Data:
    """The spec's data block (the IR allows a spec without one, which has nothing to load)."""
    if spec.data is None:
        raise DataError(f"spec '{spec.name}' has no data block")
    return spec.data


def load_raw(spec: Spec, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    src = data_block(spec).source
    if isinstance(src, Bundled):
        return read_bundled(src.name)
    path = resolve_path(base_dir, src.path)
    if isinstance(src, Csv):
        return read_csv(path, src.target)
    if isinstance(src, Npz):
        return read_npz(path, src.x, src.y)
    if isinstance(src, Mnist):
        return read_mnist(path)
    raise DataError(f"unsupported data source {src!r}")


def read_bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One of scikit-learn's bundled sets: (features as float64, targets)."""
    from sklearn import datasets

    b = getattr(datasets, f"load_{name}")()
    return np.asarray(b.data, dtype=np.float64), np.asarray(b.target)


def read_csv(path: str | Path, target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A CSV with a header row; `target` names the label column (default: the last); class names are numbered
    in sorted order."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    t = header.index(target) if target is not None and target in header else len(header) - 1
    if target is not None and target not in header:
        raise DataError(f"{path}: no column '{target}'")
    body = [r for r in rows[1:] if r]
    try:
        x = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in body], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path}: a feature value is not a number ({e})") from None
    raw_y = [r[t].strip() for r in body]
    try:
        y = np.array([float(v) for v in raw_y])
    except ValueError:
        names = sorted(set(raw_y))
        y = np.array([names.index(v) for v in raw_y])
    return x, y


def read_npz(path: str | Path, xk: str = "x", yk: str = "y") -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (xk, yk) if k not in f.files]
            if missing:
                raise DataError(f"{path}: no array '{missing[0]}' (arrays: {', '.join(f.files)})")
            return np.asarray(f[xk], dtype=np.float64), np.asarray(f[yk])
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read data file {path}: {e}") from None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        magic = fh.read(4)
        if len(magic) != 4 or magic[:2] != b"\0\0":
            raise DataError(f"{path}: not an IDX file")
        ndim = magic[3]
        dims = struct.unpack(">" + "I" * ndim, fh.read(4 * ndim))
        data = np.frombuffer(fh.read(), dtype=np.uint8)
    if data.size != math.prod(dims):
        raise DataError(f"{path}: truncated IDX file")
    return data.reshape(dims)


def read_mnist(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST train+test from a folder with IDX files (optionally .gz) or mnist.npz, or from the npz itself."""
    path = Path(path)
    if path.is_file():
        npz = path
    elif (path / "mnist.npz").is_file():
        npz = path / "mnist.npz"
    else:
        npz = None
    if npz is not None:
        with np.load(npz) as f:
            x = np.concatenate([f["x_train"], f["x_test"]]).astype(np.float64)
            y = np.concatenate([f["y_train"], f["y_test"]])
        return x.reshape(len(x), -1), y
    parts = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        cands = [path / stem, path / (stem + ".gz"), path / stem.replace("-idx", ".idx")]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            raise DataError(f"cannot find MNIST file {path / stem}[.gz] (or mnist.npz) in {path}")
        parts.append(_read_idx(found))
    x = np.concatenate([parts[0], parts[2]]).astype(np.float64)
    y = np.concatenate([parts[1], parts[3]])
    return x.reshape(len(x), -1), y


def _targets(spec: Spec, y: np.ndarray, num_classes: int | None) -> np.ndarray:
    return class_targets(y, type(spec.loss).targets, num_classes)


def class_targets(y: np.ndarray, kind: str, num_classes: int | None = None) -> np.ndarray:
    """Targets as the loss wants them: "onehot" rows, "int" labels or a "float" column per sample."""
    if kind == "onehot":
        if num_classes is None:
            raise ValueError("one-hot targets need the number of classes")
        return np.eye(num_classes)[y.astype(np.int64)]
    if kind == "int":
        return y.astype(np.int64)
    return y.astype(np.float64).reshape(len(y), -1)


def split_seed(seed: int, *keys: int) -> int:
    """The seed of the split's scikit-learn splitters: SeedSequence([seed, STREAM_SPLIT, *keys])."""
    return int(np.random.SeedSequence([seed, STREAM_SPLIT, *keys]).generate_state(1)[0])


def holdout(idx: np.ndarray, frac: float, labels: np.ndarray | None, stratify: bool, seed: int):
    """(rest, held) with `frac` of the whole set `idx` held out, seeded, stratified on the labels if asked."""
    from sklearn.model_selection import train_test_split

    if frac <= 0:
        return idx, np.array([], dtype=np.int64)
    strat = labels[idx] if (stratify and labels is not None) else None
    rest, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
    return np.sort(rest), np.sort(held)


def holdout_indices(n: int, labels: np.ndarray | None, val: float, test: float, stratify: bool, seed: int):
    """[(train, val, test)] indices: test, then val of the rest (both fractions of the whole set)."""
    rest, held = holdout(np.arange(n), test, labels, stratify, split_seed(seed))
    train, valid = holdout(rest, val / (1 - test) if val else 0.0, labels, stratify, split_seed(seed) + 1)
    return [(train, valid, held)]


def kfold_indices(n: int, labels: np.ndarray | None, k: int, shuffle: bool, stratify: bool, test: float,
                  seed: int):
    """k seeded (stratified if asked) folds as [(train, val, test)]: a test fraction is held out first and
    stays out of every fold."""
    from sklearn.model_selection import KFold as SkKFold
    from sklearn.model_selection import StratifiedKFold

    strat = stratify and labels is not None
    rest, held = holdout(np.arange(n), test, labels, strat, split_seed(seed))
    fold_seed = split_seed(seed, 2) if shuffle else None
    if strat and labels is not None:
        it = StratifiedKFold(k, shuffle=shuffle, random_state=fold_seed).split(rest, labels[rest])
    else:
        it = SkKFold(k, shuffle=shuffle, random_state=fold_seed).split(rest)
    return [(rest[tr], rest[va], held) for tr, va in it]


def _split_indices(spec: Spec, labels: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    """train/val/test indices of a holdout split (a kfold split's test part and everything else as train)."""
    split = data_block(spec).split
    val = split.val if isinstance(split, Holdout) else 0.0
    return holdout_indices(n, labels, val, split.test, getattr(split, "stratify", False), spec.seed)[0]


@dataclass
class Loaded:
    """The whole data set, flat and unnormalised, with targets as the loss wants them."""

    x: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None
    num_classes: int | None


def load(spec: Spec, base_dir: Path) -> Loaded:
    x, y = load_raw(spec, base_dir)
    task = type(spec.loss).task
    _check_finite(x, y, spec)
    num_classes = None
    labels = None
    if task in ("categorical", "binary"):
        labels = y.astype(np.int64)
        if not np.allclose(labels, y):
            raise DataError(f"{_where(spec)}: classification targets must be integer class labels "
                            f"(found {_first(y[labels != y])}); for a numeric target use a regression loss "
                            "such as mse")
        if labels.min() < 0:
            raise DataError(f"{_where(spec)}: class labels must be 0, 1, 2, ... (found {labels.min()})")
        if task == "binary" and labels.max() > 1:
            raise DataError(f"{_where(spec)}: {spec.loss.name} needs labels 0 and 1, found "
                            f"{len(np.unique(labels))} classes (up to {labels.max()}); use "
                            "categorical_crossentropy with a softmax output for more than two classes")
        src = data_block(spec).source
        num_classes = BUNDLED[src.name][1] if isinstance(src, Bundled) else int(labels.max()) + 1
    n = len(x)
    flat = x.reshape(n, -1)
    need = math.prod(spec.input)
    if flat.shape[1] != need:
        raise DataError(f"samples have {flat.shape[1]} features, input {tuple(spec.input)} needs {need}")
    return Loaded(flat, _targets(spec, y, num_classes), labels, num_classes)


def _where(spec: Spec) -> str:
    src = data_block(spec).source
    return src.name if isinstance(src, Bundled) else str(getattr(src, "path", src))


def _first(a: np.ndarray):
    return a.reshape(-1)[0] if a.size else None


def _check_finite(x: np.ndarray, y: np.ndarray, spec: Spec) -> None:
    """Missing (nan) or infinite values would only show up later as a nan loss; name them now."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x.reshape(len(x), -1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{_where(spec)}: {int(bad.sum())} feature value(s) are missing or not finite "
                        f"(the first in sample {row + 1}, feature {col + 1}); fill or drop them first")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        row = int(np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).any(axis=1))[0])
        raise DataError(f"{_where(spec)}: a target is missing or not finite (the first in sample {row + 1})")


def assemble(spec: Spec, data: Loaded, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Dataset:
    """Normalise with statistics of the training part only (no leakage), shape to the spec's input."""
    shift, scale = normalizer(data_block(spec).normalize, data.x[train])
    flat = data.x if shift is None else (data.x - shift) / scale
    xs = flat.reshape((len(flat),) + tuple(spec.input))

    def part(ix):
        if len(ix) == 0:
            return None
        return Split(xs[ix], data.targets[ix], data.labels[ix] if data.labels is not None else None)

    return Dataset(part(train), part(val), part(test), data.num_classes, shift=shift, scale=scale)


def normalizer(how: str, fit: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(shift, scale) per feature: standard = mean, std; minmax = min, range; constant features scale 1."""
    if how == "standard":
        mu, sd = fit.mean(axis=0), fit.std(axis=0)
        return mu, np.where(sd > 0, sd, 1.0)
    if how == "minmax":
        lo, hi = fit.min(axis=0), fit.max(axis=0)
        return lo, np.where(hi > lo, hi - lo, 1.0)
    return None, None


def prepare(spec: Spec, base_dir: Path) -> Dataset:
    """Load, split (seeded), normalise with the training part's statistics only, shape to the spec's input."""
    data = load(spec, base_dir)
    return assemble(spec, data, *_split_indices(spec, data.labels, len(data.x)))


def folds(spec: Spec, base_dir: Path, k: int | None = None) -> list[Dataset]:
    """k seeded (stratified if asked) folds; each Dataset's val is the held-out fold. A test fraction, if the
    split asks for one, is held out first and stays out of every fold (each Dataset's test is that part)."""
    data = load(spec, base_dir)
    split = data_block(spec).split
    k = k or (split.k if isinstance(split, KFold) else 5)
    shuffle = split.shuffle if isinstance(split, KFold) else True
    parts = kfold_indices(len(data.x), data.labels, k, shuffle, getattr(split, "stratify", False), split.test,
                          spec.seed)
    return [assemble(spec, data, *p) for p in parts]
