"""Whether a split can be made of n rows: the arithmetic that both `dlc check` (from the row counts it
knows without reading the data: a bundled set's, an .npy or .npz header's) and the runtime
(dlc/runtime/data/splits.py, from the data itself) apply, so that they refuse the same splits in the same
words. Pure Python (no numpy): the emitted scripts copy these functions with the runtime's split code."""

from __future__ import annotations

import math


def held_rows(n: int, frac: float) -> int:
    """The rows a hold-out of `frac` of n rows takes (scikit-learn's count: the ceiling), 0 for none."""
    return math.ceil(frac * n) if frac > 0 else 0


def class_counts_text(counts: list[tuple[object, int]]) -> str:
    """ "30 of class 0, 2 of class 1, 1 of class 2" from (class, rows) pairs."""
    return ", ".join(f"{n} of class {c}" for c, n in counts)


def holdout_counts_problem(n: int, val: float, test: float) -> str | None:
    """Why holdout(val, test) of n rows leaves no row to train on (the rows each part takes, counted as the
    split counts them: ceil of the fraction), or None."""
    test_n = held_rows(n, test)
    rest = n - test_n
    frac = val / (1 - test) if val and test < 1 else 0.0
    val_n = math.ceil(frac * rest) if frac > 0 and rest > 0 else 0
    if rest - val_n < 1:
        return (f"holdout(val={val:g}, test={test:g}) of {n} row{'s' if n != 1 else ''} leaves "
                f"{max(rest - val_n, 0)} to train on ({val_n} for validation, {min(test_n, n)} for test); "
                "add rows or hold out smaller fractions")
    return None


def stratify_problem(counts: list[tuple[object, int]], frac: float) -> str | None:
    """Why a stratified hold-out of `frac` cannot be made of rows with these (class, rows) counts, or None: it
    puts every class in both parts, so each class needs 2 rows and each part a row per class (scikit-learn's
    conditions, said with the counts)."""
    n, k = sum(c for _, c in counts), len(counts)
    least, fewest = min(counts, key=lambda x: x[1])
    if fewest < 2:
        return (f"stratified split: class {least} has {fewest} row of {n} (rows per class: "
                f"{class_counts_text(counts)}); each class needs at least 2 rows: add rows or set "
                "stratify=false")
    return stratified_parts_problem(n, k, frac, f" (rows per class: {class_counts_text(counts)})")


def stratified_parts_problem(n: int, k: int, frac: float, per_class: str = "") -> str | None:
    """Why a stratified hold-out of `frac` of n rows of k classes leaves a part with fewer rows than classes,
    or None: the part of stratify_problem that the row count decides alone (`dlc check` knows no more where
    the rows per class left by an earlier hold-out depend on a random tie-break)."""
    held = math.ceil(frac * n)
    if held < k or n - held < k:
        return (f"stratified split: {n} rows split {n - held} / {held} cannot give each part a row of each "
                f"of the {k} classes{per_class}; use more rows, another fraction or stratify=false")
    return None


def fold_problem(n: int, k: int, counts: list[tuple[object, int]] | None, test_rows: int = 0) -> str | None:
    """Why k folds cannot be made of n rows (those left after `test_rows` were held out for test), or None:
    each fold needs a row, and when stratified (`counts`: the (class, rows) pairs) a row of every class, so
    every class needs k rows."""
    after = f" (after the {test_rows} test rows)" if test_rows else ""
    if n < k:
        return f"{k}-fold split: only {n} rows{after}; each fold needs at least one"
    if counts:
        least, fewest = min(counts, key=lambda x: x[1])
        if fewest < k:
            return (f"stratified {k}-fold split: class {least} has {fewest} row(s){after} (rows per class: "
                    f"{class_counts_text(counts)}); each class needs at least {k}: add rows, use a smaller "
                    "k or set stratify=false")
    return None


def stratified_rest(counts: list[tuple[object, int]], frac: float) -> list[tuple[object, int]] | None:
    """The (class, rows) left after a stratified hold-out of `frac`, as scikit-learn's StratifiedShuffleSplit
    counts them (approximate_counts of the rows kept); None when that depends on how it breaks a tie between
    equal remainders (a random choice)."""
    n = sum(c for _, c in counts)
    kept = approximate_counts([c for _, c in counts], n - held_rows(n, frac),
                            lambda tied, k: tied if len(tied) == k else None)
    return None if kept is None else [(c, f) for (c, _), f in zip(counts, kept, strict=True)]


def approximate_counts(counts: list[int], n_draws: int, choose) -> list[int] | None:
    """scikit-learn's _approximate_mode: the rows of each class among n_draws, each class its share rounded
    down and the rows left over to the classes with the largest remainders; among equal remainders,
    `choose(tied, k)` picks k of the tied classes' indices (scikit-learn: its RandomState's choice, called
    for every remainder it reaches, as the runtime's split does; None: it cannot be told, and so neither can
    the result)."""
    n = sum(counts)
    continuous = [c / n * n_draws for c in counts]
    floored = [math.floor(x) for x in continuous]
    need = n_draws - sum(floored)
    remainders = [x - f for x, f in zip(continuous, floored, strict=True)]
    for value in sorted(set(remainders), reverse=True):
        if need <= 0:
            break
        tied = [i for i, r in enumerate(remainders) if r == value]
        picked = choose(tied, min(len(tied), need))
        if picked is None:
            return None
        for i in picked:
            floored[i] += 1
        need -= len(picked)
    return floored
