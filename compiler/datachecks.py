"""What the data files tell about the spec, checked before training: the data block against the model (input
vs features, targets vs output and loss, labels vs the last activation, split and fold sizes) and a source's
files (there, and what it reads: .npy/.npz headers, MNIST's IDX files, a CSV's columns). Apart from checks.py
because these read files and are most of the whole-spec checks; check_spec and check_partial call in here."""

from __future__ import annotations

import contextlib
import csv
import math
from pathlib import Path
from typing import IO

from . import ast as A
from .checkshared import (
    _argument_span,
    _find_assign,
    _kwarg_span,
    _layer_span,
    _positional_span,
    _shape,
    _shown_path,
    final_activation,
    resolve_path,
)
from .datarows import (
    MNIST_STEMS,
    csv_counts,
    csv_feature_range,
    csv_target_names,
    csv_target_numbers,
    idx_problem,
    mnist_candidates,
    mnist_counts,
    text_encoding,
)
from .diagnostics import Diagnostic, Diagnostics, Span, did_you_mean
from .layers import ActivationLayer, ShapeError
from .spec import (
    BUNDLED,
    BUNDLED_CLASS_ROWS,
    BUNDLED_FIRST_FRACTION,
    BUNDLED_LARGEST_TOKEN,
    BUNDLED_ROWS,
    BUNDLED_TARGET_RANGE,
    AugmentT,
    Bundled,
    Crop,
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
from .wording import number_text


def _check_stratify(spec: Spec, m: A.Model, d: Diagnostics) -> None:
    """stratify=true with a regression loss: there are no classes to keep in proportion, so the split is a
    plain shuffled one; say so rather than ignore it silently."""
    split = spec.data.split if spec.data is not None else None
    if split is None or not getattr(split, "stratify", False) or type(spec.loss).task != "regression":
        return
    st = _find_assign(m, "split", "data")
    where = (_kwarg_span(st.value, "stratify") or st.value.span) if st else None
    d.warn("W004", f"stratify=true has no effect: {spec.loss.name} is a regression loss, and stratifying "
           "keeps the proportions of classes", where, "remove stratify=true (the split is a seeded shuffle)")


def _check_augment(spec: Spec, augment: list[AugmentT], m: A.Model, d: Diagnostics) -> None:
    aug = _find_assign(m, "augment", "data")
    where = aug.value.span if aug else None
    if len(spec.input) != 3:
        d.add("E303", "augment applies to image data; input must be (height, width, channels)", where)
        return
    h, w = spec.input[0], spec.input[1]
    written = aug.value.items if aug is not None and isinstance(aug.value, A.List) else []
    for i, op in enumerate(augment):
        if not isinstance(op, Crop):
            continue
        at = written[i].span if i < len(written) else where  # (the call itself, not the whole list)
        if op.size != h or op.size != w:
            d.add("E303", f"crop({op.size}, ...) must keep the image size {h}x{w}", at,
                  f"pad-and-crop: crop({h}, padding=...)")
        elif op.padding >= min(h, w):
            _crop_padding_error(op, h, w, written[i] if i < len(written) else None, at, d)


def _crop_padding_error(op: Crop, h: int, w: int, call: A.Value | None, at: Span | None,
                        d: Diagnostics) -> None:
    """A crop's padding as large as the image: a window could hold padding only (no pixel of the image), and
    every batch is padded in memory first (padding=100000 would ask for terabytes)."""
    d.add("E303", f"crop padding {op.padding} is not smaller than the image ({h}x{w}): a window could hold "
          "no pixel of the image", getattr(A.argument(call, "padding", 1), "span", None) or at,
          f"a padding below {min(h, w)}, e.g. crop({h}, padding={max(1, min(h, w) // 8)})")


def _check_token_inputs(spec: Spec, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    """An Embedding reading the model's input takes whole-number token indices: standard normalisation makes
    fractions of them (an error: the run would fail when it reads its data); minmax does unless every feature
    takes two values only (a warning)."""
    from .layers import Embedding, Flatten, Reshape

    how = spec.data.normalize if spec.data is not None else "none"
    first = next((x for x in spec.layers if not isinstance(x, (Flatten, Reshape))), None)
    if not isinstance(first, Embedding):
        return
    if how == "none":
        _check_token_values(spec, first, m, d, base_dir)
        return
    st = _find_assign(m, "normalize", "data")
    what = (f"the first layer, Embedding({first.input_dim}, ...), takes token indices, whole numbers "
            f"0..{first.input_dim - 1}")
    if how == "standard":
        d.add("E303", f"normalize: standard turns token indices into fractions, but {what}",
              st.value.span if st else None, "normalize: none keeps token indices whole")
    else:
        d.warn("W005", f"normalize: {how} turns token indices into fractions (unless every feature takes two "
               f"values only), but {what}", st.value.span if st else None,
               "normalize: none keeps token indices whole")


def _check_token_values(spec: Spec, first, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    """An Embedding reading the features as they are (normalize: none): the runtime refuses a value that is
    not a whole number 0..input_dim-1 (dlc/runtime/data/normalize.py). Where the values are known (a bundled
    set's: spec.BUNDLED_LARGEST_TOKEN, BUNDLED_FIRST_FRACTION; a small CSV file's, parsed) it is E303 now,
    not when the data is read."""
    src = spec.data.source if spec.data is not None else None
    if isinstance(src, Bundled):
        name = f"'{src.name}'"
        largest = BUNDLED_LARGEST_TOKEN.get(src.name)
        lo, hi = (0.0, float(largest)) if largest is not None else (0.0, 0.0)
        fraction = BUNDLED_FIRST_FRACTION.get(src.name)
    elif isinstance(src, Csv):
        known = csv_feature_range(resolve_path(base_dir, src.path), src.target)
        if known is None:
            return
        name, (lo, hi, fraction) = f"'{src.path}'", known
    else:
        return
    where = (_argument_span(m, first, "input_dim") or _positional_span(m, first, "input_dim", 0)
             or _layer_span(first))
    takes = f"Embedding({first.input_dim}, ...) takes token indices, whole numbers 0..{first.input_dim - 1}"
    if fraction is not None:
        d.add("E303", f"{name} features are not token indices (they hold {number_text(fraction)}), but the "
              f"first layer, {takes}", _layer_span(first),
              "an Embedding reads whole-number tokens; begin with Dense(...) for measurements")
    elif lo < 0:
        d.add("E303", f"{name} features hold {number_text(lo)}, a negative number, but the first layer, "
              f"{takes}", _layer_span(first), "number the tokens 0, 1, 2, ...")
    elif hi >= first.input_dim:
        top = int(hi)
        d.add("E303", f"{name} features are whole numbers {number_text(lo)}..{top}, but the first layer, "
              f"{takes}", where, f"use input_dim={top + 1} or more (input_dim >= {top + 1})")


def _check_data(spec: Spec, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    if spec.data is None:
        return
    _check_stratify(spec, m, d)
    _check_token_inputs(spec, m, d, base_dir)
    if spec.data.augment:
        _check_augment(spec, spec.data.augment, m, d)
    src = spec.data.source
    st = _find_assign(m, "source", "data")
    where = st.value.span if st else None
    if isinstance(src, Bundled):
        feats = BUNDLED[src.name][0]
        need = math.prod(spec.input)
        if need != math.prod(feats):
            d.add("E303", f"input {_shape(spec.input)} has {need} values, but '{src.name}' samples have "
                  f"{math.prod(feats)} features",
                  inp.value.span if (inp := _find_assign(m, "input")) else where,
                  f"use input: ({math.prod(feats)})" + (" or (8, 8, 1)" if src.name == "digits" else ""))
        if src.name in BUNDLED_TARGET_RANGE and type(spec.loss).task == "regression":
            _check_output_range(spec, *BUNDLED_TARGET_RANGE[src.name], f"the target of '{src.name}'", m, d)
        _check_split_rows(spec.data, type(spec.loss).task, m, d, base_dir)
        return
    before = d.error_count
    if isinstance(src, Npy):
        _check_npy(spec, src, m, st, base_dir, d)
    elif isinstance(src, (Csv, Npz, Mnist)) and not _check_file_source(spec, src, m, st, d, base_dir):
        return
    if d.error_count == before:  # (a source reported already would only be reported again)
        _check_split_rows(spec.data, type(spec.loss).task, m, d, base_dir)


def _check_file_source(spec: Spec, src: Csv | Npz | Mnist, m: A.Model, st: A.Assign | None, d: Diagnostics,
                       base_dir: Path) -> bool:
    """A csv, npz or mnist source's file (or folder) against the spec; False when it is not there."""
    before = d.error_count
    (written, at_path, folder_ok), = _source_files(src, st)
    path = resolve_path(base_dir, src.path)
    if _missing_file(written, path, at_path, d, folder_ok):
        return False
    if isinstance(src, Csv):
        _check_csv(spec, src, path, m, st, st.value.span if st else None, d)
        if d.error_count == before:
            _check_csv_target_names(spec, src, path, m, d)
        if d.error_count == before:
            _check_labels(spec, csv_target_numbers(path, src.target), _csv_column(src), m, d)
    elif isinstance(src, Npz):
        _check_npz(spec, src, path, m, st, at_path, d)
    else:
        _check_mnist(spec, written, path, m, at_path, d)
        counted = mnist_counts(path) if d.error_count == before else None
        if counted is not None and counted[1] is not None:
            _check_labels(spec, [float(c) for c, _ in counted[1] if isinstance(c, int)],
                          f"the MNIST folder '{written}'", m, d)
    return True


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
        return shape[0], _target_class_rows(y, None, *head, shape[0])
    if isinstance(src, Npz):
        path = resolve_path(base_dir, src.path)
        n = npz_rows(path, src.x)
        if n is None:
            return None
        arrays = npz_arrays(path, (src.y,))
        heads = arrays[1] if not isinstance(arrays, str) else {}
        return n, (_target_class_rows(path, src.y, *heads[src.y], n) if src.y in heads else None)
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


def _check_split_rows(data: Data, task: str | None, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
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
    st = _find_assign(m, "split", "data")
    call = st.value if st is not None and isinstance(st.value, A.Call) else None
    # (a split left out, the default holdout: its error points at the source whose rows cannot make it)
    written = st or _find_assign(m, "source", "data")
    whole = written.value.span if written is not None else None

    def at(key: str, index: int) -> Span | None:
        """Where argument `key` (positional `index`) of the split is written, else the split."""
        arg = A.argument(call, key, index)
        return arg.span if arg is not None else whole

    source = data.source
    shown = source.name if isinstance(source, Bundled) else source.x if isinstance(source, Npy) \
        else getattr(source, "path", source.name)
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
    _check_split_rows(spec.data.model_copy(update={"split": folds}), type(spec.loss).task,
                      A.Model(spec.name, nowhere, [], nowhere), d, base_dir)
    return d.errors


def _split_error(problem: str, rows: str, where: Span | None, fix: str | None, d: Diagnostics) -> None:
    """A split rule's "what is wrong; what to do" as an error's message and hint, with the data's rows."""
    text, _, hint = problem.partition("; ")
    if rows.split(" has ")[1] not in text:  # (the rows of the whole data, unless the rule says them)
        text += f" ({rows})"
    d.add("E303", text, where, "; ".join(x for x in (hint, fix) if x) or None)


def _source_files(src, st: A.Assign | None) -> list[tuple[str, Span | None, bool]]:
    """(path as written, where to report it, whether a folder will do) of each file a data source reads: the
    path argument, or the whole call when the path is a keyword."""
    call = st.value if st is not None and isinstance(st.value, A.Call) else None
    if isinstance(src, Npy):
        return [(getattr(src, key), arg.span if (arg := A.argument(call, key, i)) is not None
                 else (call.span if call is not None else None), False) for i, key in enumerate(("x", "y"))]
    if isinstance(src, (Csv, Npz, Mnist)):
        where = call.args[0].span if call is not None and call.args else (st.value.span if st else None)
        return [(src.path, where, isinstance(src, Mnist))]
    return []


def _missing_file(written: str, path: Path, where: Span | None, d: Diagnostics,
                  folder_ok: bool = False) -> bool:
    """Report a data file (a folder, for MNIST) that is not there or cannot be read as one; True if so."""
    try:
        if path.is_file() or (folder_ok and path.is_dir()):
            return False
    except OSError:  # (a name too long for the file system: _not_a_file says so)
        pass
    d.add("E401", f"cannot read data file '{written}': {_not_a_file(path, folder_ok)}", where,
          f"looked for {_shown_path(path)} (relative paths start at the spec's folder)")
    return True


def _not_a_file(path: Path, folder_ok: bool = False) -> str:
    """Why `path` cannot be read as a data file: missing, a folder, a link that leads nowhere, or not a
    regular file (a pipe or a device, which would block or never end)."""
    try:
        if path.is_symlink() and not path.exists():
            return "it is a symbolic link that leads nowhere (or in a loop)"
        if not path.exists():
            return f"no such {'folder' if folder_ok else 'file'}"
    except OSError as e:
        return f"it cannot be looked at ({e.strerror or e})"
    if path.is_dir():
        return "it is a folder, not a file"
    return "it is not a regular file (a pipe, socket or device)"


# the longest .npy header read: numpy's limit (np.load's max_header_size), which the runtime's reader keeps
NPY_MAX_HEADER = 10_000


def npy_header(path: Path) -> tuple[str, tuple[int, ...]]:
    """(dtype descr, shape) from an .npy file's header, read without numpy (the format: a magic string, a
    version, the header's length, then a Python dict literal); ValueError when the file is not one. A header
    numpy would refuse (too long, a shape that is no tuple of sizes) is refused here, before training."""
    with open(path, "rb") as fh:
        return _read_npy_header(fh)


def _read_npy_header(fh: IO[bytes]) -> tuple[str, tuple[int, ...]]:
    """npy_header of an open file (a file, or an .npz archive's member), read from its start."""
    import struct

    magic = fh.read(8)
    if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
        raise ValueError("not an .npy file (save one with np.save)")
    size_bytes = 2 if magic[6] == 1 else 4
    raw = fh.read(size_bytes)
    if len(raw) != size_bytes:
        raise ValueError("truncated .npy header")
    (size,) = struct.unpack("<H" if size_bytes == 2 else "<I", raw)
    if size > NPY_MAX_HEADER:
        raise ValueError(f"damaged .npy header: it is {size:,} bytes long, and numpy reads at most "
                         f"{NPY_MAX_HEADER:,}")
    text = fh.read(size)
    descr, shape = _npy_header_fields(text, "latin1" if magic[6] < 3 else "utf-8")
    return (descr if isinstance(descr, str) else "structured"), shape


def npz_rows(path: Path, key: str) -> int | None:
    """The entries of array `key` of an .npz archive, from its member's header (the data is not read); None
    when the archive or the member cannot be read so (the runtime's reader says why)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as fh:
            shape = _read_npy_header(fh)[1]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError):
        return None
    return shape[0] if shape else None


NpzHeads = dict[str, tuple[str, tuple[int, ...]]]  # (dtype descr, shape) of an archive's arrays, by name


def npz_arrays(path: Path, keys: tuple[str, ...]) -> tuple[list[str], NpzHeads] | str:
    """(the arrays of an .npz archive, (dtype descr, shape) of those of `keys` it holds and whose headers
    read) from the archive's directory and those members' headers, the data unread; or why the file is no
    archive numpy reads, in the runtime's words (dlc/runtime/data/files.py's open_npz)."""
    import zipfile
    import zlib

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        return "it is not an .npz archive"
    heads: NpzHeads = {}
    try:
        with zipfile.ZipFile(path) as z:
            names = [n[:-4] if n.endswith(".npy") else n for n in z.namelist()]
            for key in keys:
                if f"{key}.npy" in z.NameToInfo:
                    with contextlib.suppress(ValueError), z.open(f"{key}.npy") as fh:
                        heads[key] = _read_npy_header(fh)
    except (EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error) as e:
        return f"the .npz archive is truncated or corrupt ({e})"
    return names, heads


def _npz_arrays_error(written: str, path: Path, keys: tuple[str, ...], where: Span | None, d: Diagnostics,
                      what: str, key_at: dict[str, Span | None] | None = None) -> NpzHeads | None:
    """npz_arrays of a data file, its problems reported (E401 at `where`, a missing array's at `key_at`'s
    span when written): None when it is not read, or lacks an array of `keys`. `what`: how the source reads
    it, for a hint."""
    try:
        found = npz_arrays(path, keys)
    except OSError as e:
        d.add("E401", f"cannot read data file '{written}': {e.strerror or e}", where)
        return None
    if isinstance(found, str):
        d.add("E401", f"cannot read data file '{written}': {found}", where, what)
        return None
    names, heads = found
    missing = next((k for k in keys if k not in names), None)
    if missing is not None:
        d.add("E401", f"'{written}' has no array '{missing}' (arrays: {', '.join(names[:12]) or 'none'})",
              (key_at or {}).get(missing) or where, did_you_mean(missing, names) or what)
        return None
    return heads


def _check_npz(spec: Spec | None, src: Npz, path: Path, m: A.Model, st: A.Assign | None, where: Span | None,
               d: Diagnostics) -> None:
    """An npz source: an archive (not a CSV file named .npz) holding arrays x and y, the features numbers,
    one value per input value, and as many targets as samples (the members' headers are read, not the
    data), the targets against the loss and the output (a small array read); with `spec` None (a spec that
    could not be built) what needs only the source."""
    call = st.value if st is not None and isinstance(st.value, A.Call) else None
    keys = (src.x, src.y)
    heads = _npz_arrays_error(src.path, path, keys, where, d,
                              "npz(file) reads an archive written by np.savez(file, x=..., y=...); name "
                              "other arrays with npz(file, x=\"features\", y=\"targets\")",
                              {src.x: _kwarg_span(call, "x"), src.y: _kwarg_span(call, "y")})
    if heads is None:
        return
    x_at = _kwarg_span(call, "x") or where
    for key in keys:
        if key in heads and not heads[key][1]:
            d.add("E401", f"'{src.path}': array '{key}' is a single value, not one entry per sample",
                  _kwarg_span(call, "y" if key == src.y and key != src.x else "x") or where)
            return
    if src.x in heads:
        descr, shape = heads[src.x]
        if descr == "structured" or descr[1:2] not in tuple("biuf"):
            d.add("E401", f"'{src.path}': array '{src.x}' holds {descr} values, not numbers", x_at,
                  "the features must be numbers (bool, integer or float)")
            return
        _input_matches(spec, math.prod(shape[1:]), f"'{src.path}' samples have", shape, m, where, d)
    if src.x in heads and src.y in heads and heads[src.x][1][0] != heads[src.y][1][0]:
        d.add("E401", f"'{src.path}': '{src.x}' has {heads[src.x][1][0]} samples but '{src.y}' has "
              f"{heads[src.y][1][0]}; they must match one to one", where)
    elif src.y in heads and spec is not None:
        before, what = d.error_count, f"array '{src.y}' of '{src.path}'"
        _check_target_shape(spec, heads[src.y][1], what, m, d)
        if d.error_count == before:
            _check_labels(spec, _target_values(path, src.y, *heads[src.y]), what, m, d)


# the most target values read to check them (an .npy file's or an .npz array's): a few tenths of a second
MAX_TARGETS_READ = 2**22


def _small_targets(path: Path, key: str | None, descr: str, shape: tuple[int, ...]):
    """A target array of numbers, one per sample (shape (n) or (n, 1)), as float64 values in one row, when it
    holds no more than MAX_TARGETS_READ: an .npy file (`key` None) or array `key` of an .npz archive, read as
    the runtime reads it; None when not read so (too large, another shape or kind, unreadable: the runtime
    says what it finds)."""
    import zipfile

    import numpy as np

    if (len(shape) != 1 and shape[1:] != (1,)) or math.prod(shape) > MAX_TARGETS_READ \
            or descr[1:2] not in tuple("biuf"):
        return None
    try:
        if key is None:
            y = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as f:
                y = f[key]
        return np.asarray(y, dtype=np.float64).reshape(-1)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError, RuntimeError):
        return None


def _target_values(path: Path, key: str | None, descr: str, shape: tuple[int, ...]) -> list[float] | None:
    """The distinct values (sorted) of a small target array (_small_targets), when they are all finite."""
    import numpy as np

    y = _small_targets(path, key, descr, shape)
    if y is None:
        return None
    values = np.unique(y)
    return [float(v) for v in values] if np.isfinite(values).all() else None


def _target_class_rows(path: Path, key: str | None, descr: str, shape: tuple[int, ...],
                       n: int) -> list[tuple[object, int]] | None:
    """(class, rows) of each class of a small target array (_small_targets) of whole-number labels for the
    `n` samples: what a stratified split needs of every class, so that kfold(k=21, stratify=true) over a
    class of 20 rows is E303 before training (and `dlc cv --k 21`), as for the bundled sets. None when not
    known so (one-hot rows, fractions, too large, unreadable)."""
    import numpy as np

    labels = _small_targets(path, key, descr, shape) if shape and shape[0] == n else None
    if labels is None or not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
        return None
    classes, counts = np.unique(labels, return_counts=True)
    return [(int(c), int(k)) for c, k in zip(classes, counts, strict=True)]


def _check_target_shape(spec: Spec, shape: tuple[int, ...], what: str, m: A.Model, d: Diagnostics) -> None:
    """Targets of a known shape (an .npy file's or an .npz array's header) against the loss and the output,
    by the runtime's rules (dlc/runtime/data/targets.py): a regression loss compares one target column with
    each output; a classification loss takes one label per sample, or (categorical_crossentropy only)
    one-hot rows of one value per output. E302 now, not when the data is read."""
    if len(shape) < 1:
        return
    try:
        units = spec.output_shape()[-1]
    except (ShapeError, IndexError):
        return
    width = math.prod(shape[1:])
    task, name = type(spec.loss).task, spec.loss.name
    st = _find_assign(m, "loss")
    last = _layer_span(spec.layers[-1])
    if task == "regression":
        if width != units:
            outputs = f"{units} output{'s' if units != 1 else ''}"
            d.add("E302", f"{what} holds {width} target value(s) per sample (shape {_shape(shape)}), but the "
                  f"last layer has {outputs}; {name} compares one target with each output", last,
                  f"use Dense({width})" if width else None)
        return
    if task not in ("categorical", "binary") or len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return
    if type(spec.loss).targets != "onehot":
        d.add("E302", f"{what} has shape {_shape(shape)} (one-hot rows?), but {name} needs one label per "
              "sample", st.value.span if st else None,
              "use categorical_crossentropy for one-hot targets, or save y.argmax(axis=1)"
              if task == "categorical" else "save one label 0 or 1 per sample")
    elif len(shape) != 2 or shape[1] != units:
        d.add("E302", f"{what} has shape {_shape(shape)}, but the last layer has {units} outputs", last,
              f"give one-hot rows of {units}, or use Dense({width}, activation=softmax)" if len(shape) == 2
              else f"give one-hot rows of {units} or class labels 0..{units - 1}")


def _input_matches(spec: Spec | None, feats: int, whose: str, shape, m: A.Model, where: Span | None,
                   d: Diagnostics) -> None:
    """E303 when the data's samples have another number of values than the input (not known: spec None)."""
    if spec is not None and feats != math.prod(spec.input):
        inp = _find_assign(m, "input")
        d.add("E303", f"input {_shape(spec.input)} has {math.prod(spec.input)} values, but {whose} {feats} "
              f"features (shape {_shape(shape[1:])})", inp.value.span if inp else where,
              f"use input: ({feats})")


MNIST_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _check_mnist(spec: Spec | None, written: str, path: Path, m: A.Model, where: Span | None,
                 d: Diagnostics) -> None:
    """An MNIST source as the runtime reads it (dlc/runtime/data/files.py's read_mnist): a file or a folder's
    mnist.npz, an archive with Keras' four arrays; else the folder's four IDX files (optionally .gz), each
    of unsigned bytes with the dimensions of images or labels (their headers are read, not the data); and
    the images' size against the input (not with `spec` None: a spec that could not be built)."""
    npz = path if path.is_file() else path / "mnist.npz" if (path / "mnist.npz").is_file() else None
    if npz is not None:
        shown = written if npz is path else (Path(written) / "mnist.npz").as_posix()
        heads = _npz_arrays_error(shown, npz, MNIST_ARRAYS, where, d,
                                  "mnist(path) reads Keras' mnist.npz (x_train, y_train, x_test, y_test) or "
                                  "a folder of MNIST's IDX files")
        if heads is not None and "x_train" in heads:
            shape = heads["x_train"][1]
            _input_matches(spec, math.prod(shape[1:]), f"'{shown}' images have", shape, m, where, d)
        return
    found = [next((c for c in mnist_candidates(path, stem) if c.is_file()), None) for stem in MNIST_STEMS]
    files = ", ".join(MNIST_STEMS)
    if not any(found):
        d.add("E401", f"'{written}' holds no MNIST files", where,
              f"mnist(folder) reads MNIST's IDX files ({files}; each may end in .gz) or Keras' mnist.npz")
        return
    missing = next((stem for stem, f in zip(MNIST_STEMS, found, strict=True) if f is None), None)
    if missing is not None:
        d.add("E401", f"'{written}' has no {missing}[.gz] (or mnist.npz)", where,
              f"mnist(folder) reads MNIST's four IDX files: {files}")
        return
    dims = None
    for stem, f in zip(MNIST_STEMS, found, strict=True):
        assert f is not None
        ndim = 3 if "images" in stem else 1
        problem, got = idx_problem(f, ndim)
        if problem is not None:
            d.add("E401", f"'{(Path(written) / f.name).as_posix()}': {problem}", where,
                  "MNIST's IDX files hold unsigned bytes (type 0x08): images (count, rows, columns), "
                  "labels (one per image)")
            return
        dims = got if dims is None else dims
    if dims is not None:
        _input_matches(spec, math.prod(dims[1:]), "MNIST's images have", dims, m, where, d)


def _npy_header_fields(text: bytes, encoding: str) -> tuple[object, tuple[int, ...]]:
    """(descr, shape) of a header's dict literal; ValueError("damaged .npy header") for anything else. A
    crafted literal (50,000 unary minuses) makes Python's parser run out of stack: MemoryError or
    RecursionError, which would otherwise pass for a training that ran out of memory."""
    import ast as pyast

    try:
        head = pyast.literal_eval(text.decode(encoding))
        descr, shape = head["descr"], head["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
        raise ValueError("damaged .npy header") from None
    if not isinstance(shape, tuple) or not all(_is_size(v) for v in shape):
        raise ValueError(f"damaged .npy header: its shape {_shown_shape(shape)} is not a tuple of sizes "
                         "(integers, 0 or more)")
    return descr, shape


def _is_size(v: object) -> bool:
    """An axis length as numpy writes one: a non-negative int (not a bool, not 2.5)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _shown_shape(shape: object) -> str:
    """A header's shape as quoted in a message: a crafted one of 10,000 characters is cut."""
    text = repr(shape)
    return text if len(text) <= 40 else text[:40] + "..."


def _check_npy(spec: Spec, src: Npy, m: A.Model, st: A.Assign | None, base_dir: Path,
               d: Diagnostics) -> None:
    """An npy source: two files, features of a numeric dtype with one value per input value, and as many
    targets as samples (their headers are read, never the data)."""
    call = st.value if st is not None and isinstance(st.value, A.Call) else None
    heads = {}
    for key, (written, where, _) in zip(("x", "y"), _source_files(src, st), strict=True):
        path = resolve_path(base_dir, written)
        if _missing_file(written, path, where, d):
            continue
        try:
            heads[key] = npy_header(path)
        except (OSError, ValueError) as e:
            d.add("E401", f"cannot read data file '{written}': {e}", where,
                  "npy(x, y) takes two files written by np.save: the features and the targets")
            continue
        descr, shape = heads[key]
        if not shape:
            d.add("E401", f"'{written}' holds a single value, not one entry per sample", where)
            heads.pop(key)
        elif key == "x" and (descr == "structured" or descr[1:2] not in tuple("biuf")):
            d.add("E401", f"'{written}' holds {descr} values, not numbers", where,
                  "the features must be numbers (bool, integer or float)")
            heads.pop(key)
    if "x" in heads:
        feats = math.prod(heads["x"][1][1:])
        if feats != math.prod(spec.input):
            inp = _find_assign(m, "input")
            d.add("E303", f"input {_shape(spec.input)} has {math.prod(spec.input)} values, but '{src.x}' "
                  f"samples have {feats} features (shape {heads['x'][1]})",
                  inp.value.span if inp else (call.span if call is not None else None),
                  f"use input: ({feats})")
    if "x" in heads and "y" in heads and heads["x"][1][0] != heads["y"][1][0]:
        d.add("E401", f"'{src.x}' has {heads['x'][1][0]} samples but '{src.y}' has {heads['y'][1][0]}; they "
              "must match one to one", call.span if call is not None else None)
    elif "y" in heads:
        before = d.error_count
        _check_target_shape(spec, heads["y"][1], f"'{src.y}'", m, d)
        if d.error_count == before:
            values = _target_values(resolve_path(base_dir, src.y), None, *heads["y"])
            _check_labels(spec, values, f"'{src.y}'", m, d)


def _check_csv(spec: Spec, src: Csv, path: Path, m: A.Model, st: A.Assign | None, where: Span | None,
               d: Diagnostics) -> None:
    """A CSV source against the spec: its first row read as dlc.runtime.data reads it (quotes, blank lines),
    the target column, and one feature per input value."""
    try:
        cols = _csv_first_row(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        d.add("E401", f"cannot read data file '{src.path}': {e}", where)
        return
    inp = _find_assign(m, "input")
    if cols is None:
        d.add("E401", f"'{src.path}' is empty: it has no rows", where,
              "a CSV file: a header row of column names (optional), then a row per sample")
    elif len(cols) < 2:
        sep = next((c for c in ";\t|" if c in cols[0]), None)
        d.add("E401", f"'{src.path}' has one column ({cols[0][:40]!r}): a target and no features",
              where,
              f"dlc reads comma-separated values; this file seems separated by {sep!r}" if sep else
              "a CSV file has its features and its target in columns separated by commas")
    elif src.target is not None and src.target not in cols:
        d.add("E401", f"'{src.path}' has no column '{src.target}'",
              _kwarg_span(st.value if st else None, "target") or where,
              did_you_mean(src.target, cols) or f"columns: {', '.join(cols[:12])}")
    elif src.target is not None and cols.count(src.target) > 1:
        d.add("E401", f"'{src.path}' has {cols.count(src.target)} columns named '{src.target}': the "
              "target is ambiguous", _kwarg_span(st.value if st else None, "target") or where,
              "rename the columns so that each name is used once")
    elif len(cols) - 1 != math.prod(spec.input):
        d.add("E303", f"input {_shape(spec.input)} has {math.prod(spec.input)} values, but "
              f"'{src.path}' has {len(cols) - 1} feature columns", inp.value.span if inp else where,
              f"use input: ({len(cols) - 1})")


def _check_csv_target_names(spec: Spec, src: Csv, path: Path, m: A.Model, d: Diagnostics) -> None:
    """A CSV target column of names (classes), when the file is small enough for it to be known
    (compiler/datarows.py), against the loss and the output: a regression loss (the runtime refuses it when
    it reads the data, dlc/runtime/data/targets.py, in the same words), fewer softmax outputs than names, or
    binary_crossentropy for other than two names (the runtime stops at the first row of a class past the
    outputs): E302 now, not after the model is built."""
    task = type(spec.loss).task
    if task not in ("regression", "categorical", "binary"):
        return
    names = csv_target_names(path, src.target)
    if not names:
        return
    column = f"the target column '{src.target}' of '{src.path}'" if src.target is not None else \
        f"the target column of '{src.path}' (its last)"
    shown = ", ".join(n if len(n) <= 24 else n[:20] + "..." for n in names[:3]) + (", ..." if len(names) > 3
                                                                                   else "")
    n = len(names)
    holds = f"{column} holds names ({shown}: {n:,} class{'es' if n != 1 else ''})"
    st = _find_assign(m, "loss")
    if task == "regression":
        fix = ("binary_crossentropy with Dense(1, activation=sigmoid)" if n == 2 else
               f"sparse_categorical_crossentropy with Dense({n}, activation=softmax)")
        d.add("E302", f"{holds}, but {spec.loss.name} is a regression loss", st.value.span if st else None,
              f"for classes use {fix}; for regression the target column must hold numbers")
        return
    try:
        units = spec.output_shape()[-1]
    except (ShapeError, IndexError):
        return
    last = spec.layers[-1]
    if task == "categorical" and 2 <= units < n:
        d.add("E302", f"{holds}, but the last layer has {units} outputs", _layer_span(last),
              f"use Dense({n}, activation=softmax)")
    elif task == "binary" and n != 2:
        d.add("E302", f"{holds}, but binary_crossentropy needs two classes", st.value.span if st else None,
              f"use sparse_categorical_crossentropy with Dense({n}, activation=softmax)")


def _csv_column(src: Csv) -> str:
    return f"the target column '{src.target}' of '{src.path}'" if src.target is not None else \
        f"the target column of '{src.path}' (its last)"


def _check_labels(spec: Spec, values: list[float] | None, column: str, m: A.Model, d: Diagnostics) -> None:
    """A target of one number per sample whose values are known (a small CSV file's column, parsed; MNIST's
    labels, counted) against the loss and the output, by the runtime's rules (dlc/runtime/data/targets.py):
    a regression loss compares it with one output; class labels are whole numbers 0..units-1 (0 and 1 for
    binary_crossentropy). E302 now, not when the data is read."""
    if not values:
        return
    try:
        units = spec.output_shape()[-1]
    except (ShapeError, IndexError):
        return
    task = type(spec.loss).task
    st = _find_assign(m, "loss")
    at_loss = st.value.span if st else None
    last = _layer_span(spec.layers[-1])
    lo, hi = values[0], values[-1]
    if task == "regression":
        if units != 1:
            d.add("E302", f"{column} holds one number per sample, but the last layer has {units} outputs; "
                  f"{spec.loss.name} compares one target with each output", last, "use Dense(1)")
        else:
            _check_output_range(spec, lo, hi, column, m, d)
        return
    if task not in ("categorical", "binary"):
        return
    top = units - 1 if task == "categorical" else 1
    need = (f"{spec.loss.name} needs integer class labels 0..{top}" if task == "categorical" else
            "binary_crossentropy needs labels 0 and 1")
    fraction = next((v for v in values if not v.is_integer()), None)
    if fraction is not None:
        d.add("E302", f"{column} holds {number_text(fraction)}, not a whole number, but {need}", at_loss,
              "for a numeric target use a regression loss such as mse, with Dense(1)")
    elif lo < 0:
        d.add("E302", f"{column} holds {number_text(lo)}, a negative label, but {need}", at_loss,
              "number the classes 0, 1, 2, ...")
    elif hi > top and task == "binary":
        n = int(hi) + 1
        d.add("E302", f"{column} holds labels {number_text(lo)}..{number_text(hi)}, but {need}", at_loss,
              f"for {n} classes use sparse_categorical_crossentropy with Dense({n}, activation=softmax)")
    elif hi > top and units >= 2:  # (one unit: the loss's own error says it)
        d.add("E302", f"{column} holds class labels {number_text(lo)}..{number_text(hi)}, but the last layer "
              f"has {units} outputs (classes 0..{top})", last,
              f"use Dense({int(hi) + 1}, activation=softmax)")


# the values each bounded activation can output (closed: a float rounds to the ends), for W015
ACTIVATION_RANGE = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0),
                    "softsign": (-1.0, 1.0), "relu6": (0.0, 6.0), "relu": (0.0, math.inf),
                    "softplus": (0.0, math.inf), "selu": (-1.7580993408473766, math.inf)}


def _check_output_range(spec: Spec, lo: float, hi: float, column: str, m: A.Model, d: Diagnostics) -> None:
    """W015: a regression output whose activation cannot reach the targets (known: a bundled set's, a small
    CSV file's), e.g. sigmoid's (0, 1) for diabetes' 25..346: the targets are not normalised, so the loss
    cannot fall below what the nearest reachable value leaves, and the run trains silently wrong."""
    act = final_activation(spec)
    last = spec.layers[-1]
    alpha = getattr(getattr(last, "activation", None), "alpha", None)
    if act == "elu":
        reach = (-(alpha if alpha is not None else 1.0), math.inf)
    elif act in ACTIVATION_RANGE:
        reach = ACTIVATION_RANGE[act]
    else:
        return
    if reach[0] <= lo and hi <= reach[1]:
        return
    shown = (f"lie in ({number_text(reach[0])}, {number_text(reach[1])})" if math.isfinite(reach[1])
             else f"are {number_text(reach[0])} or more")
    where = (_positional_span(m, last, "activation", 0) if isinstance(last, ActivationLayer)
             else _argument_span(m, last, "activation")) or _layer_span(last)
    d.warn("W015", f"the output ends in {act}, whose values {shown}, but {column} holds "
           f"{number_text(lo)}..{number_text(hi)} (targets are not normalised)", where,
           "leave the last layer linear (no activation) for a regression target")


def _csv_first_row(path: Path) -> list[str] | None:
    """The cells of a CSV file's first row that is not blank, as dlc.runtime.data reads them (quotes, blank
    lines; names stripped), or None for a file without rows. Reads no more than that row."""
    with open(path, "rb") as raw:
        encoding = text_encoding(raw.read(64))
    with open(path, newline="", encoding=encoding) as fh:
        for cells in csv.reader(fh):
            if any(c.strip() for c in cells):
                return [c.strip() for c in cells]
    return None


def _check_source_files_exist(m: A.Model, data: Data | None, d: Diagnostics, base_dir: Path) -> None:
    """The data files are there: the resolved source's, else the paths written in the source call."""
    st = _find_assign(m, "source", "data")
    src = data.source if data is not None else _source_as_written(st)
    for written, where, folder_ok in _source_files(src, st):
        _missing_file(written, resolve_path(base_dir, written), where, d, folder_ok)


def _check_source_kind(src, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    """An npz or mnist source's files are what it reads (an archive with its arrays, MNIST's IDX files), for
    a spec that could not be built (the checks that need the spec left out)."""
    st = _find_assign(m, "source", "data")
    if isinstance(src, (Npz, Mnist)):
        (written, at_path, _), = _source_files(src, st)
        path = resolve_path(base_dir, src.path)
        if isinstance(src, Npz):
            _check_npz(None, src, path, m, st, at_path, d)
        else:
            _check_mnist(None, written, path, m, at_path, d)


def _source_as_written(st: A.Assign | None):
    """A file source built from the strings written in its call, None when a path is no string (the call's
    own errors are reported already): csv("x.csv", sep=1) still names its file."""
    from .catalog import lookup

    call = st.value if st is not None and isinstance(st.value, A.Call) else None
    cls = lookup("source", call.name) if call is not None else None
    if call is None or cls not in (Csv, Npz, Mnist, Npy):
        return None
    keys = ("x", "y") if cls is Npy else ("path",)
    given = dict(zip(keys, call.args, strict=False)) | {kw.key: kw.value for kw in call.kwargs}
    paths = {k: v.value for k in keys if isinstance(v := given.get(k), A.Str)}
    if len(paths) != len(keys):
        return None
    if cls is Npy:
        return Npy.model_construct(x=paths["x"], y=paths["y"])
    if cls is Mnist:  # (its path may be a folder)
        return Mnist.model_construct(path=paths["path"])
    return Csv.model_construct(path=paths["path"])  # (csv and npz: one file, the same check)
