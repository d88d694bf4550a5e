"""scikit-learn's bundled sets (digits, iris, wine, breast_cancer, diabetes) as its load_<name>() gives them,
read from the data files it installs without importing it: importing scikit-learn took most of a small run's
start (0.8 s). Their own file formats, not a user's CSV (that is compiler/csvtable.py's)."""

from __future__ import annotations

import csv
import gzip
import zlib
from importlib.util import find_spec
from pathlib import Path

import numpy as np


def read_bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One of scikit-learn's bundled sets: (features as float64, targets), as its load_<name>() gives them.
    Read from the files scikit-learn installs, without importing it (importing it takes most of a small
    run's start), the way its loaders read them (scikit-learn 1.x); its own loader where they are not
    found."""
    found = bundled_from_files(name)
    if found is None:
        from sklearn import datasets

        b = getattr(datasets, f"load_{name}")()
        found = b.data, b.target
    return np.asarray(found[0], dtype=np.float64), np.asarray(found[1])


# the files of scikit-learn's bundled sets (under sklearn/datasets/data/), as its load_<name>() reads them
BUNDLED_CSV = {"iris": "iris.csv", "wine": "wine_data.csv", "breast_cancer": "breast_cancer.csv"}


def bundled_from_files(name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(data, target) of sklearn.datasets.load_<name>() with its default arguments, read from its data
    files with its loaders' steps (datasets/_base.py), found without importing scikit-learn; None where
    they are not there (not installed, another layout) or do not read (ask scikit-learn then)."""
    try:
        spec = find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    try:
        if name in BUNDLED_CSV:
            return bundled_csv(folder / BUNDLED_CSV[name])
        if name == "digits":
            data = bundled_gzip_csv(folder / "digits.csv.gz", delimiter=",")
            return data[:, :-1], data[:, -1].astype(int, copy=False)
        if name == "diabetes":
            data = bundled_gzip_csv(folder / "diabetes_data_raw.csv.gz")
            target = bundled_gzip_csv(folder / "diabetes_target.csv.gz")
            if not standard_scaled_like_sklearn(data):
                return None
            data /= data.shape[0] ** 0.5  # (load_diabetes(scaled=True): unit length columns)
            return data, target
    except (OSError, ValueError, IndexError, StopIteration, EOFError, zlib.error):
        return None
    return None


def bundled_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """sklearn.datasets.load_csv_data: a first row (samples, features, class names), then rows of features and
    an integer class."""
    with path.open("r", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        head = next(rows)
        data = np.empty((int(head[0]), int(head[1])))
        target = np.empty((int(head[0]),), dtype=int)
        for i, row in enumerate(rows):
            data[i] = np.asarray(row[:-1], dtype=np.float64)
            target[i] = np.asarray(row[-1], dtype=int)
    return data, target


def bundled_gzip_csv(path: Path, **kwargs) -> np.ndarray:
    """sklearn.datasets.load_gzip_compressed_csv_data: np.loadtxt of the gzipped text."""
    with path.open("rb") as compressed:
        return np.loadtxt(gzip.open(compressed, mode="rt", encoding="utf-8"), **kwargs)


def standard_scaled_like_sklearn(x: np.ndarray) -> bool:
    """x (float64) standardised in place as sklearn.preprocessing.scale(x, copy=False) does it; False (x is
    then spoiled) where scikit-learn would warn of numerical trouble and correct its result."""
    mean, scale = np.nanmean(x, 0), np.nanstd(x, 0)
    x -= mean
    if not np.allclose(np.nanmean(x, axis=0), 0):
        return False
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0  # (_handle_zeros_in_scale)
    x /= scale
    return bool(np.allclose(np.nanmean(x, axis=0), 0))
