"""What the data files tell about the spec, checked before training. check_data is the entry check_spec calls
for the data block: a bundled set against the input and (for regression) the output's range, a source's files
(sourcechecks.py: there, and what they hold; their targets: targetchecks.py), the features as the first layer
and the augmentation take them (inputchecks.py). Here too, the split against the rows of the data, where they
are known (source_rows): a split or fold the data cannot make is E303 before training, for `dlc check`
(check_split_rows, which check_partial calls as well) and for `dlc cv --k` (cv_fold_errors). The data checks
are apart from checks.py because they read files and are most of the whole-spec checks."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from . import ast as A
from .checkshared import find_assign, kwarg_span, resolve_path, shape_text
from .datafiles import npy_header, npz_arrays, npz_rows, target_class_rows
from .datarows import csv_counts, mnist_counts
from .diagnostics import Diagnostic, Diagnostics, Span
from .inputchecks import check_augment, check_token_inputs
from .layers import ShapeError
from .sourcechecks import check_file_source, check_npy
from .spec import (
    BUNDLED,
    BUNDLED_CLASS_ROWS,
    BUNDLED_ROWS,
    BUNDLED_TARGET_RANGE,
    Bundled,
    Csv,
    Data,
    Holdout,
    KFold,
    Mnist,
    Npy,
    Npz,
    Spec,
)
from .splitsizes import (
    fold_problem,
    held_rows,
    holdout_counts_problem,
    stratified_parts_problem,
    stratified_rest,
    stratify_problem,
)
from .targetchecks import check_output_range
from .wording import number_text


def _check_stratify(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    """stratify=true with a regression loss: there are no classes to keep in proportion, so the split is a
    plain shuffled one; say so rather than ignore it silently."""
    split = spec.data.split if spec.data is not None else None
    if split is None or not getattr(split, "stratify", False) or spec.task != "regression":
        return
    st = find_assign(m, "split", "data")
    where = (kwarg_span(st.value, "stratify") or st.value.span) if st else None
    d.warn("W004", f"stratify=true has no effect: {spec.loss.name} is a regression loss, and stratifying "
           "keeps the proportions of classes", where, "remove stratify=true (the split is a seeded shuffle)")


def check_data(spec: Spec, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    if spec.data is None:
        return
    _check_stratify(spec, m, d)
    check_token_inputs(spec, m, d, base_dir)
    if spec.data.augment:
        check_augment(spec, spec.data.augment, m, d)
    src = spec.data.source
    st = find_assign(m, "source", "data")
    where = st.value.span if st else None
    if isinstance(src, Bundled):
        feats = BUNDLED[src.name][0]
        need = math.prod(spec.input)
        if need != math.prod(feats):
            d.add("E303", f"input {shape_text(spec.input)} has {need} values, but '{src.name}' samples have "
                  f"{math.prod(feats)} features",
                  inp.value.span if (inp := find_assign(m, "input")) else where,
                  f"use input: ({math.prod(feats)})" + (" or (8, 8, 1)" if src.name == "digits" else ""))
        if src.name in BUNDLED_TARGET_RANGE and spec.task == "regression":
            check_output_range(spec, *BUNDLED_TARGET_RANGE[src.name], f"the target of '{src.name}'", m, d)
        elif src.name in BUNDLED_TARGET_RANGE:
            _check_classes_of_a_regression_set(spec, src.name, *BUNDLED_TARGET_RANGE[src.name], m, d)
        check_split_rows(spec.data, spec.task, m, d, base_dir)
        return
    before = d.error_count
    if isinstance(src, Npy):
        check_npy(spec, src, m, st, base_dir, d)
    elif isinstance(src, (Csv, Npz, Mnist)) and not check_file_source(spec, src, m, st, d, base_dir):
        return
    if d.error_count == before:  # (a source reported already would only be reported again)
        check_split_rows(spec.data, spec.task, m, d, base_dir)


def _check_classes_of_a_regression_set(spec: Spec, name: str, lo: float, hi: float, m: A.Model,
                                       d: Diagnostics) -> None:
    """A classification loss on a bundled regression set (diabetes: a number 25..346 per sample) passed
    `dlc check` and failed at the first epoch, where the runtime reads the targets as class labels ("label
    151 in sample 1 but the output layer has 3 units"): E302 now, wherever those labels do not fit the
    output (0..units-1; 0 and 1 for binary_crossentropy), by the runtime's rules."""
    try:
        units = spec.output_shape()[-1]
    except (ShapeError, IndexError):
        return
    if spec.task == "categorical" and (units < 2 or hi < units):
        return  # (one output: the loss's own E302 says it; labels that fit train as classes)
    need = f"class labels 0..{units - 1}" if spec.task == "categorical" else "labels 0 and 1"
    st = find_assign(m, "loss")
    values = f"{number_text(lo)}..{number_text(hi)}"
    d.add("E302", f"'{name}' is a regression set (its target is a number, {values}), but {spec.loss.name} "
          f"needs {need}", st.value.span if st else None,
          "use a regression loss (mse, mae or huber) with Dense(1)")


def source_rows(src, base_dir: Path) -> tuple[int, list[tuple[object, int]] | None] | None:
    """(rows, (class, rows) of each class or None) of a data source whose size is known cheaply: a bundled
    set's (and its classes'), an .npy file's or an .npz array's from its header, MNIST's from its IDX files'
    headers or its mnist.npz's (and its classes' from its labels), a CSV file's by counting its rows as the
    runtime reads them (compiler/datarows.py: and its classes', for a small file); None when not known."""
    if isinstance(src, Bundled):
        counts = BUNDLED_CLASS_ROWS.get(src.name)
        return BUNDLED_ROWS[src.name], (list(enumerate(counts)) if counts else None)
    if isinstance(src, Npy):
        try:
            shape = npy_header(resolve_path(base_dir, src.x))[1]
        except (OSError, ValueError):
            return None
        if not shape:
            return None
        y = resolve_path(base_dir, src.y)
        try:
            head = npy_header(y)
        except (OSError, ValueError):
            return shape[0], None
        return shape[0], target_class_rows(y, None, *head, shape[0])
    if isinstance(src, Npz):
        path = resolve_path(base_dir, src.path)
        n = npz_rows(path, src.x)
        if n is None:
            return None
        arrays = npz_arrays(path, (src.y,))
        heads = arrays[1] if not isinstance(arrays, str) else {}
        return n, (target_class_rows(path, src.y, *heads[src.y], n) if src.y in heads else None)
    if isinstance(src, Csv):
        return csv_counts(resolve_path(base_dir, src.path), src.target)
    if isinstance(src, Mnist):
        return _mnist_rows(resolve_path(base_dir, src.path))
    return None


def _mnist_rows(path: Path) -> tuple[int, list[tuple[object, int]] | None] | None:
    """source_rows of an MNIST source: its mnist.npz's train and test images (the file, or in the folder),
    else its IDX files'."""
    npz = path if path.is_file() else path / "mnist.npz"
    if not npz.is_file():
        return mnist_counts(path)
    train, test = npz_rows(npz, "x_train"), npz_rows(npz, "x_test")
    return (train + test, None) if train is not None and test is not None else None


def check_split_rows(data: Data, task: str | None, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    """The split against the rows of the data, where they are known (source_rows): the runtime's rules
    (compiler/splitsizes.py, which dlc/runtime/data/splits.py applies to the data), so that a kfold(k=391) of
    150 rows, or a stratified fraction that leaves a part without a class, is a spec error before training.
    `task`: the loss's (a regression loss is never stratified); None when not known (the stratified rules
    are then left out, the others still apply)."""
    known = source_rows(data.source, base_dir)
    if known is None:
        return
    n, classes = known
    split = data.split
    st = find_assign(m, "split", "data")
    call = st.value if st is not None and isinstance(st.value, A.Call) else None
    # (a split left out, the default holdout: its error points at the source whose rows cannot make it)
    written = st or find_assign(m, "source", "data")
    whole = written.value.span if written is not None else None

    def at(key: str, index: int) -> Span | None:
        """Where argument `key` (positional `index`) of the split is written, else the split."""
        arg = A.argument(call, key, index)
        return arg.span if arg is not None else whole

    source = data.source
    shown = source.name if isinstance(source, Bundled) else source.x if isinstance(source, Npy) \
        else getattr(source, "path", source.name)
    if n == 0:  # (the file, not the split, is what to fix)
        at_source = find_assign(m, "source", "data")
        d.add("E401", f"'{shown}' holds no samples (0 rows): there is nothing to train on",
              at_source.value.span if at_source is not None else None,
              "a CSV file: a header row (optional), then a row per sample" if isinstance(source, Csv)
              else None)
        return
    if classes is not None and len(classes) == 1 and task in ("categorical", "binary"):
        _one_class(source, shown, n, find_assign(m, "source", "data"), d)
    rows = f"'{shown}' has {n:,} row{'s' if n != 1 else ''}"
    strat = classes if getattr(split, "stratify", False) and task not in (None, "regression") else None
    n_classes = len(strat) if strat else 0
    if strat is not None and split.test > 0:
        if (problem := stratify_problem(strat, split.test)) is not None:
            _split_error(problem, rows, at("test", 1), None, d)
            return
        strat = stratified_rest(strat, split.test)  # (None: it depends on a random tie-break)
    if isinstance(split, Holdout):
        if (problem := holdout_counts_problem(n, split.val, split.test)) is not None:
            _split_error(problem, rows, at("val", 0) if split.val else at("test", 1), None, d)
        elif n_classes and split.val and (problem := _validation_stratify_problem(
                strat, n - held_rows(n, split.test), n_classes, split.val / (1 - split.test))) is not None:
            _split_error(problem, rows, at("val", 0), None, d)
        return
    test_rows = held_rows(n, split.test)
    if (problem := fold_problem(n - test_rows, split.k, strat, test_rows)) is not None:
        most = min(c for _, c in strat) if strat and n - test_rows >= split.k else n - test_rows
        _split_error(problem, rows, at("k", 0), f"k can be {most:,} at most" if most >= 2 else None, d)


def _one_class(source, shown: str, n: int, st: A.Assign | None, d: Diagnostics) -> None:
    """Labels of one class only train without a fault and score accuracy 1.0 by always answering that class:
    a target column mistaken, or a file cut to one class's rows, said before training rather than hidden
    by a perfect score. Named where the labels are: an npy source's labels file, not its features'."""
    where, what = f"'{shown}'", "the labels"
    if isinstance(source, Npy):
        where, what = f"'{source.y}'", "the labels file"
    elif isinstance(source, Npz):
        where, what = f"'{shown}' array '{source.y}'", "the labels array (npz's y=...)"
    elif isinstance(source, Csv):
        what = "the target column (csv's target=...)"
    d.warn("W019", f"{where} holds one class only (all {n:,} rows): a classifier scores accuracy 1.0 by "
           "always answering it, and learns nothing",
           st.value.span if st is not None else None,
           f"check {what} or the rows of the file: a classifier needs labels of two classes or more")


def _validation_stratify_problem(rest: list[tuple[object, int]] | None, n: int, n_classes: int,
                                 frac: float) -> str | None:
    """stratify_problem of the validation hold-out from the `n` rows the test one left; where their rows per
    class are not known (`rest` None: a random tie-break decides them), what the row count decides alone, so
    that `holdout(val=1e-9, test=0.45, stratify=true)` (a validation part of 1 row for 10 classes) is still
    refused before training, as the runtime refuses it."""
    if rest is not None:
        return stratify_problem(rest, frac)
    return stratified_parts_problem(n, n_classes, frac)


def cv_fold_errors(spec: Spec, k: int | None, base_dir: Path) -> list[Diagnostic]:
    """The E303 that `dlc check` gives a split the data cannot make, for the folds `dlc cv` makes of `spec`'s
    data with `k` (its --k; None: the spec's kfold k, else 5) as dlc/runtime/data/dataset.py's folds() makes
    them (the spec's test fraction held out first, stratified as the spec's split is): so that `--k 500` on
    150 rows is refused as `kfold(k=500)` written in the spec is, before a run folder is made. Unplaced (the
    k is not in the file); empty when the rows are not known or the folds can be made."""
    if spec.data is None or (k is not None and k < 2):
        return []
    split = spec.data.split
    folds = KFold(k=k or (split.k if isinstance(split, KFold) else 5),
                  shuffle=split.shuffle if isinstance(split, KFold) else True,
                  stratify=getattr(split, "stratify", False), test=split.test)
    d = Diagnostics()
    nowhere = Span(0, 0, 0, 0)
    check_split_rows(spec.data.model_copy(update={"split": folds}), spec.task,
                      A.Model(spec.name, nowhere, [], nowhere), d, base_dir)
    return d.errors


def without_split_row_errors(d: Diagnostics, tree: A.File | None) -> Diagnostics:
    """`d` less the E303 that the written split gets against the data's rows (check_split_rows): for `dlc cv
    --k N`, which makes N folds in its place (cv_fold_errors checks those), so that a spec whose kfold(k=5)
    the data cannot make runs with `--k 4`, as it says it does."""
    st = find_assign(tree.models[0], "split", "data") if tree is not None and tree.models else None
    if st is None:
        return d

    def written_there(item: Diagnostic) -> bool:
        return item.code == "E303" and item.span is not None \
            and st.span.line <= item.span.line <= st.span.end_line

    return replace(d, items=[item for item in d.items if not written_there(item)])


def _split_error(problem: str, rows: str, where: Span | None, fix: str | None, d: Diagnostics) -> None:
    """A split rule's "what is wrong; what to do" as an error's message and hint, with the data's rows."""
    text, _, hint = problem.partition("; ")
    if rows.split(" has ")[1] not in text:  # (the rows of the whole data, unless the rule says them)
        text += f" ({rows})"
    d.add("E303", text, where, "; ".join(x for x in (hint, fix) if x) or None)
