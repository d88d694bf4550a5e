"""Loading, splitting and normalising data: numpy only, seeded, the same arrays for every backend."""

from __future__ import annotations

import csv
import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compiler.checks import resolve_path
from .compiler.spec import BUNDLED, Bundled, Csv, Holdout, KFold, Mnist, Npz, Spec
from .rng import STREAM_SPLIT


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
    class_names: list[str] | None = None


def load_raw(spec: Spec, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    src = spec.data.source
    if isinstance(src, Bundled):
        from sklearn import datasets

        loader = {"digits": datasets.load_digits, "iris": datasets.load_iris, "wine": datasets.load_wine,
                  "breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}[src.name]
        b = loader()
        return np.asarray(b.data, dtype=np.float64), np.asarray(b.target)
    path = resolve_path(base_dir, src.path)
    if isinstance(src, Csv):
        return _read_csv(path, src.target)
    if isinstance(src, Npz):
        return _read_npz(path, src.x, src.y)
    if isinstance(src, Mnist):
        return read_mnist(path)
    raise DataError(f"unsupported data source {src!r}")


def _read_csv(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
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


def _read_npz(path: Path, xk: str, yk: str) -> tuple[np.ndarray, np.ndarray]:
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


def read_mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST train+test from a folder with IDX files (optionally .gz) or mnist.npz, or from the npz itself."""
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
    kind = type(spec.loss).targets
    if kind == "onehot":
        return np.eye(num_classes)[y.astype(np.int64)]
    if kind == "int":
        return y.astype(np.int64)
    return y.astype(np.float64).reshape(len(y), -1)


def _split_indices(spec: Spec, labels: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    split = spec.data.split
    idx = np.arange(n)
    seed = int(np.random.SeedSequence([spec.seed, STREAM_SPLIT]).generate_state(1)[0])
    test_frac = split.test
    val_frac = split.val if isinstance(split, Holdout) else 0.0
    strat = labels if (getattr(split, "stratify", False) and labels is not None) else None
    test = np.array([], dtype=np.int64)
    if test_frac > 0:
        idx, test = train_test_split(idx, test_size=test_frac, random_state=seed, stratify=strat)
    val = np.array([], dtype=np.int64)
    if val_frac > 0:
        rest_strat = strat[idx] if strat is not None else None
        idx, val = train_test_split(idx, test_size=val_frac / (1 - test_frac), random_state=seed + 1,
                                    stratify=rest_strat)
    return np.sort(idx), np.sort(val), np.sort(test)


def prepare(spec: Spec, base_dir: Path) -> Dataset:
    """Load, split (seeded), normalise with statistics of the training part only, shape to the spec's input."""
    x, y = load_raw(spec, base_dir)
    task = type(spec.loss).task
    num_classes = None
    labels = None
    if task in ("categorical", "binary"):
        labels = y.astype(np.int64)
        if not np.allclose(labels, y):
            raise DataError("classification targets must be integer class labels")
        num_classes = BUNDLED[spec.data.source.name][1] if isinstance(spec.data.source, Bundled) \
            else int(labels.max()) + 1
    n = len(x)
    need = math.prod(spec.input)
    if x.reshape(n, -1).shape[1] != need:
        raise DataError(f"samples have {x.reshape(n, -1).shape[1]} features, input {tuple(spec.input)} needs {need}")
    tr, va, te = _split_indices(spec, labels, n)
    flat = x.reshape(n, -1)
    norm = spec.data.normalize
    if norm != "none":
        fit = flat[tr]
        if norm == "standard":
            mu, sd = fit.mean(axis=0), fit.std(axis=0)
            flat = (flat - mu) / np.where(sd > 0, sd, 1.0)
        else:
            lo, hi = fit.min(axis=0), fit.max(axis=0)
            flat = (flat - lo) / np.where(hi > lo, hi - lo, 1.0)
    xs = flat.reshape((n,) + tuple(spec.input))
    targets = _targets(spec, y, num_classes)

    def part(ix):
        if len(ix) == 0:
            return None
        return Split(xs[ix], targets[ix], labels[ix] if labels is not None else None)

    return Dataset(part(tr), part(va), part(te), num_classes)


def kfold_indices(spec: Spec, labels: np.ndarray | None, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold as SkKFold
    from sklearn.model_selection import StratifiedKFold

    split = spec.data.split
    assert isinstance(split, KFold)
    seed = int(np.random.SeedSequence([spec.seed, STREAM_SPLIT, 2]).generate_state(1)[0]) if split.shuffle else None
    if split.stratify and labels is not None:
        kf = StratifiedKFold(split.k, shuffle=split.shuffle, random_state=seed)
        return list(kf.split(np.zeros(n), labels))
    return list(SkKFold(split.k, shuffle=split.shuffle, random_state=seed).split(np.zeros(n)))
