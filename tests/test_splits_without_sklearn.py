"""A run's data path without scikit-learn: the bundled sets read from scikit-learn's installed files, and the
stratified holdout and k-fold splits computed by dlc itself, each equal to scikit-learn's, bit for bit (its
train_test_split(stratify=...), StratifiedKFold and load_<name>() are the reference here), and a `dlc run` of
a bundled, stratified spec that never imports it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from dlc.runtime.data.base import DataError
from dlc.runtime.data.bundled import bundled_from_files, read_bundled
from dlc.runtime.data.splits import (
    holdout,
    holdout_indices,
    kfold_indices,
    split_seed,
    stratified_holdout,
    stratified_kfold_splits,
)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2**31, 2**32 - 1)  # (the ends of RandomState's seeds, and others drawn below)


def _labels(rng: np.random.Generator, n: int, classes: int, how: str) -> np.ndarray:
    """n labels of `classes` classes: balanced (ties in every share), uneven (a Dirichlet draw) or with a
    rare class; as small integers, as scattered (negative, unsorted) integers, or as strings."""
    if how == "balanced":
        y = np.arange(n) % classes
        rng.shuffle(y)
    else:
        p = rng.dirichlet(np.full(classes, 0.3 if how == "uneven" else 2.0))
        if how == "rare":
            p[0] = 0.01
            p /= p.sum()
        y = rng.choice(classes, n, p=p)
    kind = rng.integers(3)
    if kind == 1:
        values = rng.choice(np.arange(-1000, 1000), classes, replace=False)
        dtype = rng.choice([np.int64, np.int32, np.uint16]) if values.min() >= 0 else np.int64
        return values[y].astype(dtype)
    if kind == 2:
        names = np.array([f"class-{c}" for c in rng.permutation(classes)])
        return names[y]
    return y.astype(np.int64)


def _case(rng: np.random.Generator):
    n = int(rng.choice([int(rng.integers(2, 40)), int(rng.integers(2, 2001))]))
    classes = int(rng.integers(1, 13))
    y = _labels(rng, n, classes, str(rng.choice(["balanced", "uneven", "rare"])))
    seed = int(rng.choice([*SEEDS, int(rng.integers(0, 2**32))]))
    return n, y, seed


def test_stratified_holdout_equals_train_test_split():
    """stratified_holdout gives train_test_split(idx, test_size=frac, random_state=seed, stratify=labels)'s
    parts (sorted) wherever scikit-learn makes the split, and None wherever it refuses it."""
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(20261130)
    made = refused = 0
    for _ in range(1500):
        n, y, seed = _case(rng)
        frac = float(rng.choice([0.1, 0.2, 0.25, 1 / 3, 0.5, 0.8, 0.9, 1e-3, 0.999, rng.uniform(0.01, 0.99)]))
        idx = np.sort(rng.choice(10 * n, n, replace=False))
        try:
            want = train_test_split(idx, test_size=frac, random_state=seed, stratify=y)
        except ValueError:
            assert stratified_holdout(idx, frac, y, seed) is None
            refused += 1
            continue
        got = stratified_holdout(idx, frac, y, seed)
        assert got is not None, (n, frac, seed, y)
        for a, b in zip(got, (np.sort(want[0]), np.sort(want[1])), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), (n, frac, seed)
        made += 1
    print(f"stratified holdout: {made} splits equal, {refused} refused by both")
    assert made > 600 and refused > 300, (made, refused)  # (both kinds of case are met)


def test_stratified_kfold_equals_scikit_learns():
    """stratified_kfold_splits gives StratifiedKFold(k, shuffle, random_state).split's folds exactly wherever
    scikit-learn makes them without a word, and None where it refuses or warns (a class short of k rows)."""
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(7)
    made = refused = 0
    for _ in range(1200):
        n, y, seed = _case(rng)
        k = int(rng.integers(2, 11))
        fold_seed = seed if rng.integers(2) else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                want = list(StratifiedKFold(k, shuffle=fold_seed is not None, random_state=fold_seed)
                            .split(np.zeros(n), y))
        except (ValueError, UserWarning):
            assert stratified_kfold_splits(y, k, fold_seed) is None
            refused += 1
            continue
        got = stratified_kfold_splits(y, k, fold_seed)
        assert got is not None and len(got) == k, (n, k, fold_seed)
        for (tr, va), (wtr, wva) in zip(got, want, strict=True):
            assert tr.dtype == wtr.dtype and np.array_equal(tr, wtr)
            assert va.dtype == wva.dtype and np.array_equal(va, wva)
        made += 1
    print(f"stratified k-fold: {made} fold sets equal, {refused} refused by both")
    assert made > 500 and refused > 100, (made, refused)


def test_holdout_and_kfold_indices_equal_the_scikit_learn_calls():
    """holdout_indices and kfold_indices (stratified) give what they gave when they called scikit-learn: the
    test part by train_test_split, then the validation part or the k folds of the rest."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    def tts(idx, frac, y, seed):
        rest, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=y[idx])
        return np.sort(rest), np.sort(held)

    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(30, 2001))
        y = _labels(rng, n, int(rng.integers(2, 13)), str(rng.choice(["balanced", "uneven"])))
        _, y = np.unique(y, return_inverse=True)  # (dlc's labels: 0..classes-1)
        seed = int(rng.choice([*SEEDS, int(rng.integers(0, 2**32))]))
        val, test = float(rng.choice([0.1, 0.2, 0.25])), float(rng.choice([0.0, 0.1, 0.2]))
        k, shuffle = int(rng.integers(2, 11)), bool(rng.integers(2))
        try:
            got = holdout_indices(n, y, val, test, True, seed)
            got_folds = kfold_indices(n, y, k, shuffle, True, test, seed)
        except DataError:
            continue
        rest, held = tts(np.arange(n), test, y, split_seed(seed)) if test else (np.arange(n), np.array([]))
        train, valid = tts(rest, val / (1 - test), y, split_seed(seed) + 1)
        for a, b in zip(got[0], (train, valid, held), strict=True):
            assert np.array_equal(a, b)
        fold_seed = split_seed(seed, 2) if shuffle else None
        want = StratifiedKFold(k, shuffle=shuffle, random_state=fold_seed).split(rest, y[rest])
        for (gtr, gva, gte), (tr, va) in zip(got_folds, want, strict=True):
            assert np.array_equal(gtr, rest[tr]) and np.array_equal(gva, rest[va])
            assert np.array_equal(gte, held)
        checked += 1
    print(f"holdout_indices and kfold_indices: {checked} cases equal")
    assert checked > 150, checked


def test_refusals_still_say_scikit_learns_words():
    """What dlc does not compute itself still goes to scikit-learn, and its refusal reads as before."""
    y = np.arange(100) % 4
    with pytest.raises(DataError, match=r"cannot hold out 0.2 of 100 rows: .*random_state"):
        holdout(np.arange(100), 0.2, y, True, 2**32)  # (split_seed(...) + 1 can be 2**32)
    with pytest.raises(DataError, match=r"class 3 has 1 row of 13"):
        holdout(np.arange(13), 0.2, np.r_[np.arange(12) % 3, 3], True, 5)  # (check_stratifiable's words)
    assert stratified_holdout(np.arange(10), 0.5, y[:10].astype(float), 1) is None  # (float labels)
    assert stratified_kfold_splits(y, 1, None) is None and stratified_kfold_splits(y, 3, 2**32) is None


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer", "diabetes"])
def test_bundled_sets_equal_scikit_learns(name):
    """Each bundled set read from the files equals load_<name>()'s arrays: dtype, shape, strides and bits."""
    from sklearn import datasets

    raw = bundled_from_files(name)
    assert raw is not None  # (read from the files, not by scikit-learn)
    b = getattr(datasets, f"load_{name}")()
    x, y = read_bundled(name)
    for got, want in ((raw[0], b.data), (raw[1], b.target), (x, np.asarray(b.data, dtype=np.float64)),
                      (y, np.asarray(b.target))):
        assert got.dtype == want.dtype and got.shape == want.shape and got.strides == want.strides
        assert got.tobytes() == want.tobytes()


def test_a_bundled_stratified_run_does_not_import_scikit_learn(tmp_path):
    """`dlc run` of iris (holdout(stratify=true)), every bundled set and a stratified k-fold split: no
    scikit-learn in the process."""
    code = f"""
import sys
import numpy as np
from dlc.cli import main
rc = main(["run", {str(ROOT / "specs" / "iris.dlspec")!r}, "--backend", "torch", "--quiet", "--epochs", "1",
           "--out", {str(tmp_path / "run")!r}])
assert rc == 0, rc
from dlc.runtime.data.bundled import read_bundled
from dlc.runtime.data.splits import kfold_indices
for name in ("digits", "iris", "wine", "breast_cancer", "diabetes"):
    read_bundled(name)
kfold_indices(1000, np.arange(1000) % 7, 5, True, True, 0.2, 3)
kfold_indices(1000, np.arange(1000) % 7, 5, False, True, 0.0, 3)
print("sklearn" in sys.modules, sorted(m for m in sys.modules if m.startswith("sklearn"))[:3])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False []", out.stdout


def test_held_rows_match_the_compilers_count():
    """The rows held out are ceil(frac * n), the count compiler/splitsizes.py's held_rows gives dlc check."""
    from dlc.compiler.splitsizes import held_rows

    y = np.arange(500) % 5
    for frac in (0.1, 0.2, 1 / 3, 0.37):
        got = stratified_holdout(np.arange(500), frac, y, 11)
        assert got is not None and len(got[1]) == held_rows(500, frac) == math.ceil(frac * 500)


def _keras_run_then(tmp_path, command: bool, after: str) -> str:
    """A keras `dlc run` of iris in a fresh process (as the `dlc` command's own when `command`), then `after`;
    its last line of output."""
    code = f"""
import sys
from dlc import api
from dlc.cli import main
if {command}:
    api.as_the_command()
rc = main(["run", {str(ROOT / "specs" / "iris.dlspec")!r}, "--backend", "keras", "--quiet", "--epochs", "1",
           "--out", {str(tmp_path / "run")!r}])
assert rc == 0, rc
{after}
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_dlc_command_imports_keras_without_scikit_learn(tmp_path):
    """Keras imports scikit-learn (0.7-1.1 s) for its scikit-learn wrappers alone; in the `dlc` command's
    process it is hidden while Keras is imported, and imports as usual afterwards."""
    after = """
print("sklearn" in sys.modules, end=" ")
import sklearn.model_selection
print(len(sklearn.model_selection.train_test_split([1, 2, 3, 4], test_size=2, random_state=0)[1]))
"""
    assert _keras_run_then(tmp_path, True, after) == "False 2"


def test_a_library_user_keeps_keras_scikit_learn_wrappers(tmp_path):
    """A notebook or script that trains through dlc, then uses Keras' wrappers: they are whole."""
    after = """
import keras
import sklearn.base
print(issubclass(keras.wrappers.SKLearnClassifier, sklearn.base.BaseEstimator))
"""
    assert _keras_run_then(tmp_path, False, after) == "True"
