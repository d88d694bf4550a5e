"""Seeded holdout and k-fold splits (scikit-learn's, without importing it where it is not needed)."""

from __future__ import annotations

import math

import numpy as np

from dlc.compiler.spec import Holdout, Spec
from dlc.compiler.splitsizes import (
    approximate_counts,
    class_counts_text,
    fold_problem,
    holdout_counts_problem,
    stratify_problem,
)
from dlc.reference.rng import STREAM_SPLIT
from dlc.runtime.data.base import DataError, data_block

# --------------------------------------------------------------------------------------------------- splits


def split_seed(seed: int, *keys: int) -> int:
    """The seed of the split's scikit-learn splitters: SeedSequence([seed, STREAM_SPLIT, *keys])."""
    return int(np.random.SeedSequence([seed, STREAM_SPLIT, *keys]).generate_state(1)[0])


def class_rows(labels: np.ndarray) -> list[tuple[object, int]]:
    """(class, rows) of each class among the labels, in the order of the classes."""
    classes, counts = np.unique(labels, return_counts=True)
    return list(zip(classes.tolist(), counts.tolist(), strict=True))


def class_counts(labels: np.ndarray) -> str:
    """ "30 of class 0, 2 of class 1, 1 of class 2": how many rows each class has."""
    return class_counts_text(class_rows(labels))


def check_stratifiable(labels: np.ndarray, frac: float) -> None:
    """A stratified holdout puts every class in both parts: each class needs 2 rows, each part a row per
    class (the rule dlc check applies too: dlc.compiler.splitsizes)."""
    problem = stratify_problem(class_rows(labels), frac)
    if problem:
        raise DataError(problem)


def holdout(idx: np.ndarray, frac: float, labels: np.ndarray | None, stratify: bool, seed: int):
    """(rest, held) with `frac` of the whole set `idx` held out, seeded, stratified on the labels if asked."""
    if frac <= 0:
        return idx, np.array([], dtype=np.int64)
    strat = labels[idx] if (stratify and labels is not None) else None
    if strat is not None:
        check_stratifiable(strat, frac)
    n, held_n = len(idx), math.ceil(frac * len(idx))
    if strat is None and 0 < frac < 1 and 0 < held_n < n and 0 <= seed < 2**32:
        # scikit-learn's train_test_split without stratification (its ShuffleSplit), without importing it:
        # the first ceil(frac * n) of RandomState(seed).permutation(n) are held out, the rest kept
        perm = np.random.RandomState(seed).permutation(n)
        return np.sort(idx[perm[held_n:]]), np.sort(idx[perm[:held_n]])
    if strat is not None:
        parts = stratified_holdout(idx, frac, strat, seed)
        if parts is not None:
            return parts
    from sklearn.model_selection import train_test_split

    try:
        rest, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
    except ValueError as e:
        raise DataError(f"cannot hold out {frac:g} of {len(idx)} rows: {e}") from None
    return np.sort(rest), np.sort(held)


def stratified_holdout(idx: np.ndarray, frac: float, strat: np.ndarray,
                       seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """scikit-learn's train_test_split(idx, test_size=frac, random_state=seed, stratify=strat), sorted,
    without importing it: its StratifiedShuffleSplit's one split (scikit-learn 1.x), the same
    RandomState(seed) draws in the same order. None where scikit-learn would refuse the split (it says why)
    or the labels are not plain integers or strings, one per row: the caller asks scikit-learn then."""
    n = len(idx)
    if not (isinstance(frac, float) and 0 < frac < 1 and isinstance(seed, int) and 0 <= seed < 2**32
            and strat.ndim == 1 and strat.dtype.kind in "iuU" and len(strat) == n):
        return None
    n_test = math.ceil(frac * n)  # (_validate_shuffle_split's sizes)
    n_train = n - n_test
    if not 0 < n_test < n:
        return None
    classes, y_indices, class_counts = np.unique(strat, return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        return None
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = approximate_mode(class_counts, n_train, rng)
    t_i = approximate_mode(class_counts - n_i, n_test, rng)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for i in range(len(classes)):
        rows = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.append(rows[:n_i[i]])
        test.append(rows[n_i[i]:n_i[i] + t_i[i]])
    # (scikit-learn then permutes each part once more: an order that sorting undoes)
    return np.sort(idx[np.concatenate(train)]), np.sort(idx[np.concatenate(test)])


def approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """scikit-learn's _approximate_mode (compiler/splitsizes.py's, which `dlc check` counts with), its ties
    broken by rng's choice as scikit-learn's are."""
    mode = approximate_counts(
        [int(c) for c in class_counts], n_draws,
        lambda tied, k: rng.choice(np.asarray(tied), size=k, replace=False).tolist())
    assert mode is not None  # (a choice is always made)
    return np.asarray(mode, dtype=int)


def check_holdout_counts(n: int, val: float, test: float) -> None:
    """A holdout that leaves no row to train on, said in the spec's terms (the rows each part takes, counted
    as the split counts them: ceil of the fraction), not in scikit-learn's."""
    problem = holdout_counts_problem(n, val, test)
    if problem:
        raise DataError(problem)


def holdout_indices(n: int, labels: np.ndarray | None, val: float, test: float, stratify: bool, seed: int):
    """[(train, val, test)] indices: test, then val of the rest (both fractions of the whole set)."""
    check_holdout_counts(n, val, test)
    rest, held = holdout(np.arange(n), test, labels, stratify, split_seed(seed))
    train, valid = holdout(rest, val / (1 - test) if val else 0.0, labels, stratify, split_seed(seed) + 1)
    return [(train, valid, held)]


def check_foldable(n: int, labels: np.ndarray | None, k: int, test_rows: int = 0) -> None:
    """k folds need k rows, and k rows of every class when stratified (else a fold misses a class); `n`: the
    rows left after `test_rows` were held out."""
    problem = fold_problem(n, k, class_rows(labels) if labels is not None else None, test_rows)
    if problem:
        raise DataError(problem)


def kfold_indices(n: int, labels: np.ndarray | None, k: int, shuffle: bool, stratify: bool, test: float,
                  seed: int):
    """k seeded (stratified if asked) folds as [(train, val, test)]: a test fraction is held out first and
    stays out of every fold."""
    strat = stratify and labels is not None
    rest, held = holdout(np.arange(n), test, labels, strat, split_seed(seed))
    check_foldable(len(rest), labels[rest] if (strat and labels is not None) else None, k, len(held))
    fold_seed = split_seed(seed, 2) if shuffle else None
    if strat and labels is not None:
        it = stratified_kfold_splits(labels[rest], k, fold_seed) if isinstance(shuffle, bool) else None
        if it is None:
            from sklearn.model_selection import StratifiedKFold

            it = StratifiedKFold(k, shuffle=shuffle, random_state=fold_seed).split(rest, labels[rest])
    else:
        it = kfold_splits(len(rest), k, fold_seed)
    return [(rest[tr], rest[va], held) for tr, va in it]


def kfold_splits(n: int, k: int, seed: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's KFold(k, shuffle=seed is not None, random_state=seed).split of n rows, without importing
    it: the rows (shuffled by RandomState(seed) if seeded) cut into k consecutive folds, the first n % k of
    them one row longer; each fold's rows and the others', in ascending order."""
    order = np.arange(n)
    if seed is not None:
        np.random.RandomState(seed).shuffle(order)
    sizes = np.full(k, n // k, dtype=int)
    sizes[:n % k] += 1
    out, start = [], 0
    for size in sizes:
        held = np.zeros(n, dtype=bool)
        held[order[start:start + size]] = True
        out.append((np.flatnonzero(~held), np.flatnonzero(held)))
        start += size
    return out


def stratified_kfold_splits(labels: np.ndarray, k: int,
                            seed: int | None) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """scikit-learn's StratifiedKFold(k, shuffle=seed is not None, random_state=seed).split of rows with these
    labels, without importing it (its _make_test_folds, scikit-learn 1.x): the classes numbered in order of
    first appearance, the rows of the sorted labels dealt round-robin to the folds for each fold's count of
    each class, each class's fold numbers in blocks (shuffled by RandomState(seed) if seeded). None where
    scikit-learn would refuse or warn (a class with fewer than k rows) or the labels are not plain integers or
    strings, one per row: the caller asks scikit-learn then."""
    n = len(labels)
    if not (isinstance(k, int) and 2 <= k <= n and labels.ndim == 1 and labels.dtype.kind in "iuU"
            and (seed is None or (isinstance(seed, int) and 0 <= seed < 2**32))):
        return None
    _, y_idx, y_inv = np.unique(labels, return_index=True, return_inverse=True)
    _, class_perm = np.unique(y_idx, return_inverse=True)
    y_encoded = class_perm[y_inv]
    n_classes = len(y_idx)
    if np.bincount(y_encoded).min() < k:
        return None
    y_order = np.sort(y_encoded)
    allocation = np.asarray([np.bincount(y_order[i::k], minlength=n_classes) for i in range(k)])
    rng = np.random.RandomState(seed) if seed is not None else None
    test_folds = np.empty(n, dtype="i")
    for c in range(n_classes):
        folds_for_class = np.arange(k).repeat(allocation[:, c])
        if rng is not None:
            rng.shuffle(folds_for_class)
        test_folds[y_encoded == c] = folds_for_class
    return [(np.flatnonzero(test_folds != i), np.flatnonzero(test_folds == i)) for i in range(k)]


def split_indices(spec: Spec, labels: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    """train/val/test indices of a holdout split (a kfold split's test part and everything else as train)."""
    split = data_block(spec).split
    val = split.val if isinstance(split, Holdout) else 0.0
    return holdout_indices(n, labels, val, split.test, getattr(split, "stratify", False), spec.seed)[0]
