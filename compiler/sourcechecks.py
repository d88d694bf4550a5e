"""A data source's files against the spec, checked before training: that each file (or MNIST's folder) is
there and is a regular file, and that it is what the source reads: an .npy file's or an .npz archive's
arrays (their headers: numbers, one value per input value, as many targets as samples), MNIST's mnist.npz or
its four IDX files, a CSV file's columns (a target and one feature per input value). Once a file reads, its
targets go to targetchecks.py. check_partial uses the file checks alone for a spec that could not be built.
Apart from datachecks.py, which calls in here, because this is the part that opens files and knows their
formats (the reading itself: datafiles.py)."""

from __future__ import annotations

import math
from pathlib import Path

from . import ast as A
from .checkshared import find_assign, kwarg_span, layout_refusal, resolve_path, shape_text, shown_path
from .csvtable import (
    DUPLICATE_HINT,
    CsvProblem,
    CsvTable,
    columns_text,
    csv_layout_problem,
    csv_problem,
    decoded_text,
    duplicate_target,
    header_of,
    is_header,
    nonfinite_wording,
    other_separator,
    target_index,
)
from .datafiles import (
    FORTRAN_ORDER,
    NO_FEATURES_HINT,
    PICKLED,
    NpyLayout,
    NpzHeads,
    csv_first_record,
    is_pickled,
    no_features,
    nonfinite_feature_values,
    npy_cut_short,
    npy_layout,
    npz_arrays,
    small_target_values,
)
from .datarows import (
    MNIST_STEMS,
    csv_target_names,
    csv_target_numbers,
    idx_problem,
    mnist_candidates,
    mnist_counts,
    mnist_parts_problem,
)
from .diagnostics import Diagnostics, Span, did_you_mean
from .spec import Csv, Data, Mnist, Npy, Npz, Spec
from .targetchecks import (
    check_csv_target_names,
    check_labels,
    check_target_dtype,
    check_target_shape,
    csv_column,
)


def check_file_source(spec: Spec, src: Csv | Npz | Mnist, m: A.Model, st: A.Assign | None, d: Diagnostics,
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
            check_csv_target_names(spec, src, path, m, d)
        if d.error_count == before:
            check_labels(spec, csv_target_numbers(path, src.target), csv_column(src), m, d)
    elif isinstance(src, Npz):
        _check_npz(spec, src, path, m, st, at_path, d)
    else:
        _check_mnist(spec, written, path, m, at_path, d)
        counted = mnist_counts(path) if d.error_count == before else None
        if counted is not None and counted[1] is not None:
            check_labels(spec, [float(c) for c, _ in counted[1] if isinstance(c, int)],
                          f"the MNIST folder '{written}'", m, d)
    return True


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
    if not written.strip():  # (`csv("")` read the spec's own folder: "'' is a folder, not a file")
        what = "folder" if folder_ok else "file"
        d.add("E401", "the data path is empty", where,
              f"write the data {what}'s path (relative paths start at the spec's folder)")
        return True
    try:
        if path.is_file() or (folder_ok and path.is_dir()):
            return False
    except OSError:  # (a name too long for the file system: _not_a_file says so)
        pass
    d.add("E401", f"cannot read data file '{written}': {_not_a_file(path, folder_ok)}", where,
          f"looked for {shown_path(path)} (relative paths start at the spec's folder)")
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
                              {src.x: kwarg_span(call, "x"), src.y: kwarg_span(call, "y")})
    if heads is None:
        return
    x_at = kwarg_span(call, "x") or where
    for key in keys:
        if key in heads and not heads[key][1]:
            d.add("E401", f"'{src.path}': array '{key}' is a single value, not one entry per sample",
                  kwarg_span(call, "y" if key == src.y and key != src.x else "x") or where)
            return
    if _pickled_array(src.path, heads, keys, where, d,
                      {src.x: kwarg_span(call, "x"), src.y: kwarg_span(call, "y")}):
        return
    if src.x in heads:
        descr, shape = heads[src.x]
        if descr == "structured" or descr[1:2] not in tuple("biuf"):
            d.add("E401", f"'{src.path}': array '{src.x}' holds {descr} values, not numbers", x_at,
                  "the features must be numbers (bool, integer or float)")
            return
        if (empty := no_features(shape)) is not None:
            d.add("E401", f"'{src.path}': array '{src.x}' {empty}", x_at, NO_FEATURES_HINT)
            return
        _input_matches(spec, math.prod(shape[1:]), f"'{src.path}' samples have", shape, m, where, d)
        _finite_features(f"'{src.path}'", path, src.x, descr, shape, x_at, d)
    if src.x in heads and src.y in heads and heads[src.x][1][0] != heads[src.y][1][0]:
        d.add("E401", f"'{src.path}': '{src.x}' has {heads[src.x][1][0]} samples but '{src.y}' has "
              f"{heads[src.y][1][0]}; they must match one to one", where)
    elif src.y in heads and spec is not None:
        before, what = d.error_count, f"array '{src.y}' of '{src.path}'"
        if not check_target_dtype(spec, heads[src.y][0], what, kwarg_span(call, "y") or where, d):
            return
        check_target_shape(spec, heads[src.y][1], what, m, d)
        if d.error_count == before:
            check_labels(spec, small_target_values(path, src.y, *heads[src.y]), what, m, d)


def _pickled_array(written: str, heads: NpzHeads, keys: tuple[str, ...], where: Span | None, d: Diagnostics,
                   key_at: dict[str, Span | None] | None = None) -> bool:
    """E401 for the first array of `keys` in an archive that holds Python objects (np.load refuses them
    without unpickling, which dlc never does); True if so."""
    key = next((k for k in keys if k in heads and is_pickled(heads[k][0])), None)
    if key is None:
        return False
    d.add("E401", f"'{written}': array '{key}' {PICKLED}", (key_at or {}).get(key) or where)
    return True


def _input_matches(spec: Spec | None, feats: int, whose: str, shape, m: A.Model, where: Span | None,
                   d: Diagnostics) -> None:
    """E303 when the data's samples have another number of values than the input, or as many in a layout
    that a reshape would scramble (layout_refusal; not known: spec None)."""
    if spec is None:
        return
    inp = find_assign(m, "input")
    if feats != math.prod(spec.input):
        shown = f"(shape {shape_text(shape[1:])})" if len(shape) > 1 else "(a 1-D array: one value each)"
        d.add("E303", f"input {shape_text(spec.input)} has {math.prod(spec.input)} values, but {whose} "
              f"{feats} feature{'s' * (feats != 1)} {shown}", inp.value.span if inp else where,
              f"use input: ({feats})")
    else:
        _layout_matches(spec, tuple(shape[1:]), whose, inp.value.span if inp else where, d)


def _finite_features(shown: str, path: Path, key: str | None, descr: str, shape: tuple[int, ...],
                     where: Span | None, d: Diagnostics) -> None:
    """E401 for nan or infinite features in a small float array, in the run's words (its finite check
    refused them after `dlc check` said ok; a CSV's empty cell was found here already)."""
    if (bad := nonfinite_feature_values(path, key, descr, shape)) is not None:
        count, row, col = bad
        d.add("E401", f"{shown}: {nonfinite_wording(count, f'sample {row + 1}', col + 1)}", where)


def _layout_matches(spec: Spec, got: tuple[int, ...], whose: str, where: Span | None, d: Diagnostics) -> None:
    """E303 for samples that hold as many values as the input in a layout a reshape would scramble
    (channels first for a channels-last input): the run would train on them scrambled, predict refuses
    them. `whose`: "'x.npz' samples have"."""
    if (refusal := layout_refusal(got, tuple(spec.input), f"{whose} shape")) is not None:
        what, _, fix = refusal.partition("; ")
        d.add("E303", what, where,
              f"{fix} in the file (images are channels last), or write input: {shape_text(got)}")


MNIST_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _check_mnist(spec: Spec | None, written: str, path: Path, m: A.Model, where: Span | None,
                 d: Diagnostics) -> None:
    """An MNIST source as the runtime reads it (dlc/runtime/data/files.py's read_mnist): a file or a folder's
    mnist.npz, an archive with Keras' four arrays; else the folder's four IDX files (optionally .gz), each
    of unsigned bytes with the dimensions of images or labels (their headers are read, not the data); and
    the images' size against the input (not with `spec` None: a spec that could not be built)."""
    npz = path if path.is_file() else path / "mnist.npz" if (path / "mnist.npz").is_file() else None
    if npz is not None:
        _check_mnist_npz(spec, written if npz is path else (Path(written) / "mnist.npz").as_posix(), npz, m,
                         where, d)
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
    shapes = []
    for stem, f in zip(MNIST_STEMS, found, strict=True):
        assert f is not None
        problem, got = idx_problem(f, 3 if "images" in stem else 1)
        if problem is not None or got is None:
            d.add("E401", f"'{(Path(written) / f.name).as_posix()}': {problem}", where,
                  "MNIST's IDX files hold unsigned bytes (type 0x08): images (count, rows, columns), "
                  "labels (one per image)")
            return
        shapes.append(got)
    names = tuple(f.name for f in found if f is not None)
    if _mnist_parts_error(f"'{written}'", names, shapes, where, d) or \
            _no_pixels(f"'{(Path(written) / names[0]).as_posix()}'", shapes[0], where, d):
        return
    _input_matches(spec, math.prod(shapes[0][1:]), "MNIST's images have", shapes[0], m, where, d)


def _check_mnist_npz(spec: Spec | None, shown: str, npz: Path, m: A.Model, where: Span | None,
                     d: Diagnostics) -> None:
    """An mnist.npz as the runtime reads it: Keras' four arrays, numbers, one label per image, the images'
    size against the input, and (with a spec) the labels against the loss and the output."""
    before = d.error_count
    heads = _npz_arrays_error(shown, npz, MNIST_ARRAYS, where, d,
                              "mnist(path) reads Keras' mnist.npz (x_train, y_train, x_test, y_test) or "
                              "a folder of MNIST's IDX files")
    if heads is None:
        return
    single = next((k for k in MNIST_ARRAYS if k in heads and not heads[k][1]), None)
    if single is not None:  # (as the runtime's reader says it; the parts check indexed it: IndexError)
        d.add("E401", f"'{shown}': array '{single}' is a single value, not one entry per sample", where)
        return
    if _pickled_array(shown, heads, MNIST_ARRAYS, where, d):
        return
    for key in ("x_train", "x_test"):
        descr = heads[key][0] if key in heads else "|u1"
        if descr == "structured" or descr[1:2] not in tuple("biuf"):
            d.add("E401", f"'{shown}': array '{key}' holds {descr} values, not numbers", where,
                  "MNIST's images are numbers (unsigned bytes 0..255, or floats)")
            return
    if all(k in heads for k in MNIST_ARRAYS) and _mnist_parts_error(
            f"'{shown}'", MNIST_ARRAYS, [heads[k][1] for k in MNIST_ARRAYS], where, d):
        return
    if "x_train" in heads:
        shape = heads["x_train"][1]
        if not _no_pixels(f"'{shown}': array 'x_train'", shape, where, d):
            _input_matches(spec, math.prod(shape[1:]), f"'{shown}' images have", shape, m, where, d)
    if spec is not None and d.error_count == before:
        _check_mnist_labels(spec, shown, npz, heads, m, where, d)


def _check_mnist_labels(spec: Spec, shown: str, npz: Path, heads: NpzHeads, m: A.Model, where: Span | None,
                        d: Diagnostics) -> None:
    """The labels of an mnist.npz (y_train, y_test) against the loss and the output, as an IDX folder's are
    (text labels, or labels beyond the outputs, failed only when the run read them)."""
    values: set[float] = set()
    for key in ("y_train", "y_test"):
        if key not in heads:
            return
        if not check_target_dtype(spec, heads[key][0], f"array '{key}' of '{shown}'", where, d):
            return
        found = small_target_values(npz, key, *heads[key])
        if found is None:
            return
        values.update(found)
    check_labels(spec, sorted(values), f"the MNIST archive '{shown}'", m, d)


def _no_pixels(what: str, shape: tuple[int, ...], where: Span | None, d: Diagnostics) -> bool:
    """E401 for MNIST images with no pixels (0 rows or 0 columns), in the words of an npz source's features
    of no values (datafiles.no_features); True if so."""
    empty = no_features(shape)
    if empty is not None:
        d.add("E401", f"{what} {empty}", where, "MNIST's images are rows × columns of pixels (28 × 28)")
    return empty is not None


def _mnist_parts_error(written: str, names: tuple[str, ...], shapes: list[tuple[int, ...]],
                       where: Span | None, d: Diagnostics) -> bool:
    """E401 for MNIST train and test arrays that do not make one data set (images of two sizes, a label
    count that is not the images'), as the runtime finds it; True if so."""
    problem = mnist_parts_problem((names[0], names[1], names[2], names[3]),
                                  (shapes[0], shapes[1], shapes[2], shapes[3]))
    if problem is not None:
        d.add("E401", f"{written}: {problem}", where,
              "MNIST's train and test images are one size, with one label per image")
    return problem is not None


def check_npy(spec: Spec, src: Npy, m: A.Model, st: A.Assign | None, base_dir: Path,
               d: Diagnostics) -> None:
    """An npy source: two files, features of a numeric dtype with one value per input value, and as many
    targets as samples (their headers are read, never the data, and their lengths against them)."""
    call = st.value if st is not None and isinstance(st.value, A.Call) else None
    heads = {}
    for key, (written, where, _) in zip(("x", "y"), _source_files(src, st), strict=True):
        path = resolve_path(base_dir, written)
        if _missing_file(written, path, where, d):
            continue
        try:
            head = npy_layout(path)
        except (OSError, ValueError) as e:
            d.add("E401", f"cannot read data file '{written}': {e}", where,
                  "npy(x, y) takes two files written by np.save: the features and the targets")
            continue
        problem = _npy_problem(path, head, features=key == "x")
        if problem is not None:
            d.add("E401", f"'{written}' {problem[0]}", where, problem[1])
            continue
        if key == "y" and not check_target_dtype(spec, head.descr, f"'{written}'", where, d):
            continue
        if key == "x" and (empty := no_features(head.shape)) is not None:
            d.add("E401", f"'{written}' {empty}", where, NO_FEATURES_HINT)
            continue
        heads[key] = head.descr, head.shape
    if "x" in heads:
        feats = math.prod(heads["x"][1][1:])
        inp = find_assign(m, "input")
        at = inp.value.span if inp else (call.span if call is not None else None)
        if feats != math.prod(spec.input):
            d.add("E303", f"input {shape_text(spec.input)} has {math.prod(spec.input)} values, but '{src.x}' "
                  f"samples have {feats} feature{'s' * (feats != 1)} (shape {heads['x'][1]})", at,
                  f"use input: ({feats})")
        else:
            _layout_matches(spec, tuple(heads["x"][1][1:]), f"'{src.x}' samples have", at, d)
        _finite_features(f"'{src.x}'", resolve_path(base_dir, src.x), None, *heads["x"],
                         call.span if call is not None else None, d)
    if "x" in heads and "y" in heads and heads["x"][1][0] != heads["y"][1][0]:
        d.add("E401", f"'{src.x}' has {heads['x'][1][0]} samples but '{src.y}' has {heads['y'][1][0]}; they "
              "must match one to one", call.span if call is not None else None)
    elif "y" in heads:
        before = d.error_count
        check_target_shape(spec, heads["y"][1], f"'{src.y}'", m, d)
        if d.error_count == before:
            values = small_target_values(resolve_path(base_dir, src.y), None, *heads["y"])
            check_labels(spec, values, f"'{src.y}'", m, d)


def _npy_problem(path: Path, head: NpyLayout, features: bool) -> tuple[str, str | None] | None:
    """(what is wrong, a hint) with an .npy file of an npy source, as the runtime would find it reading the
    file (dlc/runtime/data/files.py's open_npy, stream.py's MappedRows): a single value, Python objects,
    features that are not numbers or are stored column by column (read a batch of samples at a time), or
    less data than the header says (a copy cut short); None when it reads."""
    if not head.shape:
        return "holds a single value, not one entry per sample", None
    if is_pickled(head.descr):
        return PICKLED, None
    if features and (head.descr == "structured" or head.descr[1:2] not in tuple("biuf")):
        return (f"holds {head.descr} values, not numbers",
                "the features must be numbers (bool, integer or float)")
    if features and head.fortran:
        return FORTRAN_ORDER, "npy(x, y) reads the features from the file a batch of samples at a time"
    cut = npy_cut_short(path, head)
    if cut is not None:
        return f"is {cut}", "a copy or a download cut short? write the file again with np.save"
    return None


def _check_csv(spec: Spec, src: Csv, path: Path, m: A.Model, st: A.Assign | None, where: Span | None,
               d: Diagnostics) -> None:
    """A CSV source against the spec: its first row read as dlc.runtime.data reads it (quotes, blank lines),
    the target column, one feature per input value, and (a small file) every row and cell as the runtime
    reads them (csv_problem), in its words."""
    try:
        first = csv_first_record(path)
    except (OSError, ValueError) as e:  # (ValueError: not UTF-8 or UTF-16 text, not CSV)
        d.add("E401", f"cannot read data file '{src.path}': {_unreadable(path, e)}", where)
        return
    at_target = kwarg_span(st.value if st else None, "target") or where
    line, cols = first if first is not None else (0, [])
    if first is None:
        d.add("E401", f"'{src.path}' is empty: it has no rows", where,
              "a CSV file: a header row of column names (optional), then a row per sample")
    elif len(cols) < 2:
        d.add("E401", f"'{src.path}' has one column ({cols[0][:40]!r}): a target and no features", where,
              other_separator(cols) or "a CSV file has its features and its target in columns separated by "
              "commas")
    elif (layout := csv_layout_problem(path, src.target)) is not None:
        d.add("E401", f"'{src.path}': {layout}", where, _cells_hint(layout))
    elif _target_refused(src, line, cols, at_target, d):
        return
    else:
        _check_csv_rows(spec, src, path, cols, m, where, d)


def _target_refused(src: Csv, line: int, cols: list[str], at_target: Span | None, d: Diagnostics) -> bool:
    """The spec's target column found in the first row (row `line`, its cells `cols`) by the runtime's rule
    (csvtable.target_index: a header, then the name, once), else E401 at target= (True)."""
    target = src.target
    try:
        target_index(CsvTable(header_of(cols), [cols], [line]), target)
    except CsvProblem as e:
        if e.stage != "target" or target is None:  # (a first row of data)
            d.add("E401", f"'{src.path}': {e}", at_target, "a header row names every column (no number, no "
                  "empty cell); or leave target= out: the last column is the target")
        elif target not in cols:
            d.add("E401", f"'{src.path}' has no column '{target}'", at_target,
                  did_you_mean(target, cols) or f"columns: {', '.join(cols[:12])}")
        else:
            d.add("E401", f"'{src.path}' has {duplicate_target(cols, target)}", at_target, DUPLICATE_HINT)
        return True
    return False


def _check_csv_rows(spec: Spec, src: Csv, path: Path, cols: list[str], m: A.Model, where: Span | None,
                    d: Diagnostics) -> None:
    """A CSV file whose target column is found: what the runtime would refuse in its rows (a small file),
    its features against the input, and column names used twice (W017)."""
    problem = csv_problem(path, src.target)
    if problem is not None:
        d.add("E401", f"'{src.path}': {problem}", where, _cells_hint(problem))
    if len(cols) - 1 != math.prod(spec.input):
        inp = find_assign(m, "input")
        d.add("E303", f"input {shape_text(spec.input)} has {math.prod(spec.input)} values, but "
              f"'{src.path}' has {len(cols) - 1} feature columns", inp.value.span if inp else where,
              f"use input: ({len(cols) - 1})")
    if is_header(cols):
        _check_duplicate_names(src, cols, where, d)
    if problem is None and spec.task != "regression":
        _check_class_case(src, path, where, d)


def _cells_hint(problem: str) -> str | None:
    """What to do about a row or cell the runtime would refuse, where the problem does not say it."""
    if "different numbers of columns" in problem:
        return "every row has one cell per column (a quote left open joins the lines after it into one cell)"
    if "is not a number" in problem and "first row is read as data" not in problem:
        return "every feature cell is a number (the target column may hold class names)"
    return None


def _check_duplicate_names(src: Csv, cols: list[str], where: Span | None, d: Diagnostics) -> None:
    """W017: a column name used twice. The features are read by position, so training is not changed, but
    two columns of one name are most often one column written twice (a join, a copy) or a name mistyped,
    and a later `dlc predict` file laid out by name cannot tell them apart."""
    seen: dict[str, list[int]] = {}
    for j, name in enumerate(cols):
        seen.setdefault(name, []).append(j + 1)
    twice = [(name, at) for name, at in seen.items() if len(at) > 1 and name != src.target]
    if not twice:
        return
    shown = "; ".join(f"'{name}' ({columns_text(at)})" for name, at in twice[:3])
    d.warn("W017", f"'{src.path}' names {'a column' if len(twice) == 1 else 'columns'} twice: {shown}", where,
           f"{DUPLICATE_HINT}; training reads the features by position, but check that no column was "
           "written twice")


def _check_class_case(src: Csv, path: Path, where: Span | None, d: Diagnostics) -> None:
    """W018: class names that differ only in case ('cat', 'Cat'), which the runtime numbers as two classes
    (it keeps case: 'US' and 'us' may be meant apart), most often one class typed two ways. Spaces around a
    name are not part of it: 'cat ' is 'cat'."""
    groups: dict[str, list[str]] = {}
    for name in csv_target_names(path, src.target) or []:
        groups.setdefault(name.casefold(), []).append(name)
    alike = [names for names in groups.values() if len(names) > 1]
    if not alike:
        return
    shown = "; ".join(" and ".join(repr(n) for n in names) for names in alike[:3])
    d.warn("W018", f"'{src.path}': class names that differ only in case are different classes: {shown}",
           where, "write each class one way, if they are one class")


def _unreadable(path: Path, e: Exception) -> str:
    """Why a CSV file's first row cannot be read, in the runtime's words where it has them (not UTF-8 text,
    a gzip file)."""
    if isinstance(e, (UnicodeDecodeError, ValueError)):
        try:
            with open(path, "rb") as fh:
                decoded_text(fh.read(FIRST_ROW_BYTES))
        except ValueError as problem:
            return str(problem)
        except OSError:
            pass
    return str(getattr(e, "strerror", None) or e)


FIRST_ROW_BYTES = 4 * 2**20  # read to word why a first row does not decode (it is in these bytes)


def check_source_files_exist(m: A.Model, data: Data | None, d: Diagnostics, base_dir: Path) -> None:
    """The data files are there: the resolved source's, else the paths written in the source call."""
    st = find_assign(m, "source", "data")
    src = data.source if data is not None else _source_as_written(st)
    for written, where, folder_ok in _source_files(src, st):
        _missing_file(written, resolve_path(base_dir, written), where, d, folder_ok)


def check_source_kind(src, m: A.Model, d: Diagnostics, base_dir: Path) -> None:
    """An npz or mnist source's files are what it reads (an archive with its arrays, MNIST's IDX files), for
    a spec that could not be built (the checks that need the spec left out)."""
    st = find_assign(m, "source", "data")
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
