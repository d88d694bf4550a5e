"""Loading, splitting and normalising data: numpy only, seeded, the same arrays for every backend.

What a data file must hold is checked here, before any backend sees it, so every problem is one line naming
the file, the row (or sample) and the column: the header rule of CSV files, numbers where numbers belong,
labels the output layer can take, inputs the model's dtype can hold (README, "Data files")."""

from __future__ import annotations

import csv
import gzip
import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.compiler.checks import resolve_path
from dlc.compiler.layers import Embedding, Flatten, Reshape
from dlc.compiler.spec import Bundled, Csv, Data, Holdout, KFold, Mnist, Npz, Spec
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
    read: dict | None = None  # what was read: {"file", "rows", "header"} (Samples.read)
    class_names: list[str] | None = None  # a CSV target of names: class k is class_names[k]

    def preprocessing(self) -> dict:
        return {"shift": None if self.shift is None else self.shift.tolist(),
                "scale": None if self.scale is None else self.scale.tolist()}

    def read_line(self) -> str:
        """What was read, in one line for the console ("" when not known)."""
        return read_summary(self.read) if self.read else ""


@dataclass
class Samples:
    """Features and targets as a source holds them, with what messages about them need: where they come from
    and, for a CSV file, the row of the file each sample is on."""

    x: np.ndarray
    y: np.ndarray
    where: str  # the file (or bundled set) the messages name
    lines: list[int] | None = None  # each sample's row in a CSV file; None: samples are numbered from 1
    class_names: list[str] | None = None  # a CSV target column of names, numbered in sorted order
    header: bool | None = None  # a CSV file: whether its first row was a header

    @property
    def has_targets(self) -> bool:
        """False for a file of features only (its y has no columns)."""
        return not (self.y.ndim == 2 and self.y.shape[1] == 0)

    def row(self, i: int) -> str:
        """Where sample i is, as its file shows it: "row 7" of a CSV file, else "sample 7"."""
        return f"row {self.lines[i]}" if self.lines is not None else f"sample {i + 1}"

    def read(self) -> dict:
        """What was read, for run.json and the console."""
        return {"file": self.where, "rows": int(len(self.x)), "header": self.header}


def read_summary(read: dict) -> str:
    """One line saying what was read: "read 150 rows from d.csv (the first row is a header)"."""
    n = read["rows"]
    if read.get("header") is None:
        return f"read {n} sample{'s' * (n != 1)} from {read['file']}"
    first = "the first row is a header" if read["header"] else "no header: the first row is data"
    return f"read {n} row{'s' * (n != 1)} from {read['file']} ({first})"


def data_block(spec: Spec) -> Data:
    """The spec's data block (the IR allows a spec without one, which has nothing to load)."""
    if spec.data is None:
        raise DataError(f"spec '{spec.name}' has no data block")
    return spec.data


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


def read_bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One of scikit-learn's bundled sets: (features as float64, targets)."""
    from sklearn import datasets

    b = getattr(datasets, f"load_{name}")()
    return np.asarray(b.data, dtype=np.float64), np.asarray(b.target)


# ------------------------------------------------------------------------------------------------ csv files
# The header rule: the first row is a header (column names) when every cell of it is non-empty and none is a
# number; a first row with a number or an empty cell is data. Rows are numbered as lines of the file (the
# first line is row 1, header or not); blank lines are skipped.


def is_number(cell: str) -> bool:
    """A decimal number as a CSV writes one: ASCII digits, no '_' (Python's float() also reads '1_0.5' as 10.5
    and other scripts' digits, which a data file means as text)."""
    if not cell.isascii() or "_" in cell:
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _plain_numbers(cells: list[list[str]]) -> bool:
    return all(v.isascii() and "_" not in v for r in cells for v in r)


def is_header(cells: list[str]) -> bool:
    """The header rule: names only, none empty, none a number."""
    return bool(cells) and all(c.strip() and not is_number(c) for c in cells)


@dataclass
class Table:
    """A CSV file's cells by the header rule: the column names (None when the first row is data) and the data
    rows, each with its row number in the file."""

    path: Path
    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]

    @property
    def width(self) -> int:
        return len(self.rows[0])

    def column(self, j: int) -> str:
        """ "column 3", with its name when the file has a header."""
        return f"column {j + 1}" + (f" ('{self.header[j]}')" if self.header else "")


def read_table(path: str | Path) -> Table:
    """The cells of a UTF-8 CSV file, every row as wide as the first, with at least one data row."""
    path = Path(path)
    records = csv_records(path, utf8_text(path))
    if not records:
        raise DataError(f"{path}: the file is empty (no rows)")
    check_rectangular(path, records)
    header = [c.strip() for c in records[0][1]] if is_header(records[0][1]) else None
    body = records[1:] if header is not None else records
    if header is not None and not body:
        raise DataError(f"{path}: no data rows, only a header row ({', '.join(header)})")
    return Table(path, header, [cells for _, cells in body], [line for line, _ in body])


def utf8_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        row = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} in row {row}); save the file as "
                        "UTF-8") from None


def csv_records(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """(row number, cells) of every row that is not a blank line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records, line = [], 1
    try:
        for cells in reader:
            if cells and (len(cells) > 1 or cells[0].strip()):  # (a line of spaces is blank too)
                records.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{path}: row {line} is not valid CSV ({e})") from None
    return records


def check_rectangular(path: Path, records: list[tuple[int, list[str]]]) -> None:
    first, width = records[0][0], len(records[0][1])
    for line, cells in records:
        if len(cells) != width:
            raise DataError(f"{path}: rows have different numbers of columns: row {line} has {len(cells)}, "
                            f"row {first} has {width}")


def table_numbers(table: Table, columns: list[int]) -> np.ndarray:
    """The cells of `columns` as float64 (rows, columns); the first empty cell or non-number is an error
    naming its row and column."""
    cells = [[r[j] for j in columns] for r in table.rows]
    if _plain_numbers(cells):
        try:
            return np.array(cells, dtype=np.float64).reshape(len(cells), len(columns))
        except ValueError:
            pass
    for i, r in enumerate(cells):
        for k, v in enumerate(r):
            if not is_number(v):
                raise DataError(bad_cell(table, i, columns[k], v))
    numbers = [[float(v) for v in r] for r in cells]
    return np.array(numbers, dtype=np.float64).reshape(len(cells), len(columns))


def bad_cell(table: Table, i: int, j: int, cell: str) -> str:
    where = f"{table.path}: row {table.lines[i]}, {table.column(j)}"
    if not cell.strip():
        return f"{where} is empty (a missing value); fill or drop it"
    text = f"{where} is not a number ({cell!r})"
    if i == 0 and table.header is None:
        text += ("; the first row is read as data because it has a number or an empty cell (a header row has "
                 "only names)")
    return text


def read_csv(path: str | Path, target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features, targets) of a CSV file (the header rule decides whether its first row names the columns);
    `target` names the target column (default: the last); class names are numbered in sorted order."""
    s = csv_samples(path, target)
    return s.x, s.y


def csv_samples(path: str | Path, target: str | None = None) -> Samples:
    table = read_table(path)
    t = target_column(table, target)
    x = table_numbers(table, [j for j in range(table.width) if j != t])
    y, names = target_values(table, t)
    return Samples(x, y, str(table.path), table.lines, names, table.header is not None)


def target_column(table: Table, target: str | None) -> int:
    """The index of the target column: the one named `target`, else the last."""
    if target is None:
        return table.width - 1
    if table.header is None:
        raise DataError(f"{table.path}: the spec names the target column '{target}', but the file has no "
                        f"header row (row {table.lines[0]} has a number or an empty cell, so it is data)")
    if target not in table.header:
        raise DataError(f"{table.path}: no column '{target}' (columns: {', '.join(table.header)})")
    if table.header.count(target) > 1:
        raise DataError(f"{table.path}: {table.header.count(target)} columns are named '{target}': the "
                        "target is ambiguous; rename the columns so that each name is used once")
    return table.header.index(target)


def target_values(table: Table, t: int) -> tuple[np.ndarray, list[str] | None]:
    """The target column as numbers, or as class names numbered in sorted order (names); an empty cell, or a
    column of both numbers and names, is an error."""
    cells = [r[t].strip() for r in table.rows]
    for i, v in enumerate(cells):
        if not v:
            raise DataError(f"{table.path}: row {table.lines[i]}, {table.column(t)} is empty: the target is "
                            "missing")
    numeric = [is_number(v) for v in cells]
    if all(numeric):
        return np.array([float(v) for v in cells]), None
    if any(numeric):
        i = numeric.index(not numeric[0])
        raise DataError(f"{table.path}: the target column mixes numbers and names (row {table.lines[0]}: "
                        f"{cells[0]!r}, row {table.lines[i]}: {cells[i]!r})")
    names = sorted(set(cells))
    number = {name: k for k, name in enumerate(names)}
    return np.array([number[v] for v in cells]), names


# ------------------------------------------------------------------------------------------------ npz files


def open_npz(path: Path):
    """The open .npz archive (a context manager); DataError for a missing, foreign, truncated or corrupt
    file."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataError(f"{path}: not an .npz archive (save one with np.savez(file, x=..., y=...))")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: the .npz archive is truncated or corrupt ({e})") from None


def npz_array(path: Path, f, key: str) -> np.ndarray:
    """Array `key` of an open archive: one entry per sample, numbers or (for labels) strings."""
    try:
        a = f[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        damaged = isinstance(e, (EOFError, zipfile.BadZipFile, zlib.error))
        raise DataError(f"{path}: array '{key}' cannot be read"
                        f"{', the archive is truncated or corrupt' if damaged else ''} "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    except MemoryError:  # (a header that claims a shape no memory holds: a damaged or forged file)
        raise DataError(f"{path}: array '{key}' cannot be read: its header claims more values than memory "
                        "holds (a damaged file?)") from None
    if a.ndim == 0:
        raise DataError(f"{path}: array '{key}' is a single value, not one entry per sample")
    if a.dtype.kind not in "biufUS":
        raise DataError(f"{path}: array '{key}' holds {a.dtype} values, not numbers")
    return a


def numeric_features(path: Path, x: np.ndarray, key: str, keep_float32: bool = False) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: array '{key}' holds {x.dtype} values, not numbers")
    if len(x) == 0:
        raise DataError(f"{path}: array '{key}' has no samples")
    if keep_float32 and x.dtype == np.float32:
        return x
    return np.asarray(x, dtype=np.float64)


def check_same_length(path: Path, x: np.ndarray, y: np.ndarray, xk: str, yk: str) -> None:
    if len(y) != len(x):
        raise DataError(f"{path}: '{xk}' has {len(x)} samples but '{yk}' has {len(y)}; they must match one "
                        "to one")


def read_npz(path: str | Path, xk: str = "x", yk: str = "y",
             keep_float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(features, targets): arrays `xk` and `yk` of an .npz file, one sample per entry of each; features as
    float64 (float32 ones kept as they are with `keep_float32`)."""
    path = Path(path)
    with open_npz(path) as f:
        missing = [k for k in (xk, yk) if k not in f.files]
        if missing:
            raise DataError(f"{path}: no array '{missing[0]}' (arrays: {', '.join(f.files) or 'none'})")
        x, y = npz_array(path, f, xk), npz_array(path, f, yk)
    check_same_length(path, x, y, xk, yk)
    return numeric_features(path, x, xk, keep_float32), y


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        magic = fh.read(4)
        if len(magic) != 4 or magic[:2] != b"\0\0":
            raise DataError(f"{path}: not an IDX file")
        ndim = magic[3]
        head = fh.read(4 * ndim)
        if len(head) != 4 * ndim:
            raise DataError(f"{path}: truncated IDX file")
        dims = struct.unpack(">" + "I" * ndim, head)
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
        with open_npz(npz) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
            if missing:
                raise DataError(f"{npz}: no array '{missing[0]}' (arrays: {', '.join(f.files) or 'none'})")
            x = np.concatenate([npz_array(npz, f, "x_train"), npz_array(npz, f, "x_test")]).astype(np.float64)
            y = np.concatenate([npz_array(npz, f, "y_train"), npz_array(npz, f, "y_test")])
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


# -------------------------------------------------------------------------------------------------- targets


def class_targets(y: np.ndarray, kind: str, num_classes: int | None = None) -> np.ndarray:
    """Targets as the loss wants them: "onehot" rows, "int" labels or a "float" column per sample."""
    if kind == "onehot":
        if num_classes is None:
            raise ValueError("one-hot targets need the number of classes")
        return np.eye(num_classes)[y.astype(np.int64)]
    if kind == "int":
        return y.astype(np.int64)
    return y.astype(np.float64).reshape(len(y), -1)


def checked_targets(spec: Spec, s: Samples) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """(targets as the loss wants them, integer class labels or None, number of classes or None), after
    checking every target against the loss and the output layer: a bad one is a DataError naming its value,
    its row and what is expected, before any backend could fail on it with an index error."""
    task = type(spec.loss).task
    units = spec.output_shape()[-1]
    if task == "regression":
        return regression_targets(spec, s, units), None, None
    labels = class_labels(spec, s, units)
    classes = units if task == "categorical" else 2
    return class_targets(labels, type(spec.loss).targets, classes), labels, classes


def regression_targets(spec: Spec, s: Samples, units: int) -> np.ndarray:
    """One number per output unit and sample (a target of another width would be broadcast, silently)."""
    name = spec.loss.name
    if s.class_names is not None:
        raise DataError(f"{s.where}: the target column holds names ({', '.join(s.class_names[:3])}"
                        f"{', ...' if len(s.class_names) > 3 else ''}), but {name} is a regression loss; for "
                        "classes use sparse_categorical_crossentropy with a softmax output")
    if s.y.dtype.kind not in "biuf":
        raise DataError(f"{s.where}: target {_first(s.y)!r} in {s.row(0)} is not a number; {name} needs "
                        "numeric targets")
    y = s.y.astype(np.float64).reshape(len(s.y), -1)
    if y.shape[1] != units:
        raise DataError(f"{s.where}: the targets have {y.shape[1]} column(s) but the output layer has "
                        f"{units} units; {name} compares one target with each output (use "
                        f"Dense({y.shape[1]}) or targets with {units} columns)")
    return y


def class_labels(spec: Spec, s: Samples, units: int) -> np.ndarray:
    """Integer labels 0..classes-1 (0 and 1 for binary_crossentropy), one per sample; one-hot rows become
    labels for categorical_crossentropy, and are an error for a loss that needs one label per sample."""
    y = s.y[:, 0] if s.y.ndim == 2 and s.y.shape[1] == 1 else s.y
    if y.ndim > 1:
        y = onehot_labels(spec, s, y, units)
    hi = units - 1 if type(spec.loss).task == "categorical" else 1
    if y.dtype.kind not in "biuf":
        raise DataError(f"{s.where}: label {_first(y)!r} in {s.row(0)} is not a class number; "
                        f"{spec.loss.name} needs integer class labels 0..{hi}")
    v = y.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v != np.round(v)) | (v < 0) | (v > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(bad_label(spec, s, i, float(v[i]), units))
    return v.astype(np.int64)


def bad_label(spec: Spec, s: Samples, i: int, v: float, units: int) -> str:
    """What is wrong with label v of sample i, and what is expected."""
    binary = type(spec.loss).task == "binary"
    need = (f"{spec.loss.name} needs labels 0 and 1" if binary
            else f"{spec.loss.name} needs integer class labels 0..{units - 1}")
    shown = f"class {s.class_names[int(v)]!r} (number {int(v)})" if s.class_names else f"label {v:g}"
    where = f"{s.where}: {shown} in {s.row(i)}"
    if not np.isfinite(v):
        return f"{s.where}: the label in {s.row(i)} is missing or not finite ({v}); {need}"
    if v != round(v):
        return (f"{where} is not a whole number; {need} (for a numeric target use a regression loss such as "
                "mse)")
    if v < 0:
        return f"{where} is negative; {need}"
    if binary:
        return f"{where}, but {need}; for more classes use categorical_crossentropy with a softmax output"
    return f"{where} but the output layer has {units} units (classes 0..{units - 1})"


def onehot_labels(spec: Spec, s: Samples, y: np.ndarray, units: int) -> np.ndarray:
    """The labels of one-hot target rows, which only categorical_crossentropy takes."""
    name = spec.loss.name
    if type(spec.loss).targets != "onehot":
        one = "one label 0 or 1" if type(spec.loss).task == "binary" else "one integer class label"
        hint = ("; use categorical_crossentropy for one-hot targets, or give y.argmax(axis=1)"
                if type(spec.loss).task == "categorical" else "")
        raise DataError(f"{s.where}: the targets have shape {y.shape} (one-hot rows?) but {name} needs {one} "
                        f"per sample{hint}")
    if y.ndim != 2 or y.shape[1] != units:
        raise DataError(f"{s.where}: the targets have shape {y.shape} but the output layer has {units} "
                        f"units; give one-hot rows of {units} or class labels 0..{units - 1}")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{s.where}: the targets hold {y.dtype} values, not numbers")
    ok = np.isin(y, (0, 1)).all(axis=1) & (y.sum(axis=1) == 1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(f"{s.where}: the target of {s.row(i)} is not one-hot ({np.array2string(y[i])}); "
                        f"give one-hot rows (a single 1) or class labels 0..{units - 1}")
    return y.argmax(axis=1)


# --------------------------------------------------------------------------------------------------- splits


def split_seed(seed: int, *keys: int) -> int:
    """The seed of the split's scikit-learn splitters: SeedSequence([seed, STREAM_SPLIT, *keys])."""
    return int(np.random.SeedSequence([seed, STREAM_SPLIT, *keys]).generate_state(1)[0])


def class_counts(labels: np.ndarray) -> str:
    """ "30 of class 0, 2 of class 1, 1 of class 2": how many rows each class has."""
    classes, counts = np.unique(labels, return_counts=True)
    return ", ".join(f"{n} of class {c}" for c, n in zip(classes.tolist(), counts.tolist(), strict=True))


def check_stratifiable(labels: np.ndarray, frac: float) -> None:
    """A stratified holdout puts every class in both parts: each class needs 2 rows, each part a row per
    class (scikit-learn's conditions, said with the counts)."""
    classes, counts = np.unique(labels, return_counts=True)
    n, k = len(labels), len(classes)
    held = math.ceil(frac * n)
    if counts.min() < 2:
        raise DataError(f"stratified split: class {classes[counts.argmin()]} has {counts.min()} row of {n} "
                        f"(rows per class: {class_counts(labels)}); each class needs at least 2 rows: add "
                        "rows or set stratify=false")
    if held < k or n - held < k:
        raise DataError(f"stratified split: {n} rows split {n - held} / {held} cannot give each part a row "
                        f"of each of the {k} classes (rows per class: {class_counts(labels)}); use more "
                        "rows, another fraction or stratify=false")


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
    from sklearn.model_selection import train_test_split

    try:
        rest, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
    except ValueError as e:
        raise DataError(f"cannot hold out {frac:g} of {len(idx)} rows: {e}") from None
    return np.sort(rest), np.sort(held)


def holdout_indices(n: int, labels: np.ndarray | None, val: float, test: float, stratify: bool, seed: int):
    """[(train, val, test)] indices: test, then val of the rest (both fractions of the whole set)."""
    rest, held = holdout(np.arange(n), test, labels, stratify, split_seed(seed))
    train, valid = holdout(rest, val / (1 - test) if val else 0.0, labels, stratify, split_seed(seed) + 1)
    return [(train, valid, held)]


def check_foldable(n: int, labels: np.ndarray | None, k: int) -> None:
    """k folds need k rows, and k rows of every class when stratified (else a fold misses a class)."""
    if n < k:
        raise DataError(f"{k}-fold split: only {n} rows (after the test part); each fold needs at least one")
    if labels is not None:
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < k:
            raise DataError(f"stratified {k}-fold split: class {classes[counts.argmin()]} has {counts.min()} "
                            f"row(s) (rows per class: {class_counts(labels)}); each class needs at least "
                            f"{k}: add rows, use a smaller k or set stratify=false")


def kfold_indices(n: int, labels: np.ndarray | None, k: int, shuffle: bool, stratify: bool, test: float,
                  seed: int):
    """k seeded (stratified if asked) folds as [(train, val, test)]: a test fraction is held out first and
    stays out of every fold."""
    strat = stratify and labels is not None
    rest, held = holdout(np.arange(n), test, labels, strat, split_seed(seed))
    check_foldable(len(rest), labels[rest] if (strat and labels is not None) else None, k)
    fold_seed = split_seed(seed, 2) if shuffle else None
    if strat and labels is not None:
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


def _split_indices(spec: Spec, labels: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    """train/val/test indices of a holdout split (a kfold split's test part and everything else as train)."""
    split = data_block(spec).split
    val = split.val if isinstance(split, Holdout) else 0.0
    return holdout_indices(n, labels, val, split.test, getattr(split, "stratify", False), spec.seed)[0]


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
    need = math.prod(spec.input)
    if flat.shape[1] != need:
        raise DataError(f"samples have {flat.shape[1]} features, input {tuple(spec.input)} needs {need}")
    if len(s.y) != n:
        raise DataError(f"{s.where}: {n} samples but {len(s.y)} targets")
    check_finite_targets(s)
    targets, labels, num_classes = checked_targets(spec, s)
    return Loaded(flat, targets, labels, num_classes, s)


def _first(a: np.ndarray):
    """The first value as a plain Python value (its repr is 'a', not np.str_('a'))."""
    return a.reshape(-1)[0].item() if a.size else None


def check_finite_features(flat: np.ndarray, s: Samples) -> None:
    """Missing (nan) or infinite values would only show up later as a nan loss; name them now."""
    rows = chunk_rows(flat)
    if all(np.isfinite(flat[lo:lo + rows]).all() for lo in range(0, len(flat), rows)):
        return  # one pass, a chunk at a time: no copy of the data
    bad = ~np.isfinite(flat)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{s.where}: {int(bad.sum())} feature value(s) are missing or not finite "
                        f"(the first in {s.row(int(row))}, feature {col + 1}); fill or drop them first")


def check_finite_targets(s: Samples) -> None:
    if s.y.dtype.kind == "f" and not np.all(np.isfinite(s.y)):
        row = int(np.flatnonzero(~np.isfinite(s.y.reshape(len(s.y), -1)).any(axis=1))[0])
        raise DataError(f"{s.where}: a target is missing or not finite (the first in {s.row(row)})")


def embedding_vocabulary(spec: Spec) -> int | None:
    """input_dim of an Embedding that reads the model's input (first, or after reshapes only), else None."""
    for layer in spec.layers:
        if isinstance(layer, Embedding):
            return layer.input_dim
        if not isinstance(layer, (Flatten, Reshape)):
            return None
    return None


def check_model_inputs(spec: Spec, flat: np.ndarray, where: str, row) -> None:
    """Normalised inputs the model can take: finite in its dtype (1e308 is a float64 but overflows float32 or
    a normalisation), and whole-number indices 0..input_dim-1 for an Embedding that reads them (a larger one
    is an index error inside the backend). `row(i)` names sample i."""
    limit = float(np.finfo(spec.dtype).max)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(flat) | (np.abs(flat) > limit)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{where}: {row(i)}, feature {j + 1} is {flat[i, j]:.3g} after normalize: "
                        f"{data_normalize(spec)}, beyond what {spec.dtype} holds (±{limit:.3g}); rescale "
                        "that feature")
    vocab = embedding_vocabulary(spec)
    if vocab is not None:
        bad = (flat != np.trunc(flat)) | (flat < 0) | (flat >= vocab)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            hint = "" if data_normalize(spec) == "none" else " (normalize: none keeps token indices whole)"
            raise DataError(f"{where}: {row(i)}, feature {j + 1} is {flat[i, j]:g}, but the first layer, "
                            f"Embedding({vocab}, ...), takes token indices: whole numbers 0..{vocab - 1}"
                            + hint)


def data_normalize(spec: Spec) -> str:
    return spec.data.normalize if spec.data is not None else "none"


def assemble(spec: Spec, data: Loaded, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Dataset:
    """Normalise with statistics of the training part only (no leakage), shape to the spec's input."""
    s = data.samples or Samples(data.x, data.targets, "the data")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        shift, scale = normalizer(data_block(spec).normalize, data.x[train])
        check_statistics(spec, shift, scale, s.where)
        flat = data.x if shift is None else (data.x - shift) / scale
    check_model_inputs(spec, flat, s.where, s.row)
    xs = flat.reshape((len(flat),) + tuple(spec.input))

    def part(ix):
        if len(ix) == 0:
            return None
        return Split(xs[ix], data.targets[ix], data.labels[ix] if data.labels is not None else None)

    return Dataset(part(train), part(val), part(test), data.num_classes, shift=shift, scale=scale,
                   read=s.read(), class_names=s.class_names)


def check_statistics(spec: Spec, shift: np.ndarray | None, scale: np.ndarray | None, where: str) -> None:
    """Statistics that overflowed (features near 1e308) would scale every value to 0 or nan, silently."""
    if shift is None or scale is None:
        return
    bad = ~(np.isfinite(shift) & np.isfinite(scale))
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"{where}: normalize: {data_normalize(spec)} overflows on feature {j + 1} (its "
                        "values are too large to average); rescale that feature")


def normalizer(how: str, fit: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(shift, scale) per feature: standard = mean, std; minmax = min, range; constant features scale 1."""
    if how == "standard":
        mu, sd = fit.mean(axis=0), fit.std(axis=0)
        return mu, np.where(sd > 0, sd, 1.0)
    if how == "minmax":
        lo, hi = fit.min(axis=0), fit.max(axis=0)
        return lo, np.where(hi > lo, hi - lo, 1.0)
    return None, None


def prepare(spec: Spec, base_dir: Path, dtype: str | None = None) -> Dataset:
    """Load, split (seeded), normalise with the training part's statistics only, shape to the spec's input.

    `dtype`: the dtype the data will be trained in ("float32", "float64"): then the data is held once, in
    place: an npz file's float32 features stay float32 for a float32 run (without augmentation), normalised
    a chunk at a time in float64 and rounded back, and the parts are consecutive blocks of one array. The
    values are those a float64 Dataset (dtype None) gives, rounded to the dtype (tests/test_data_path.py)."""
    if dtype is None:
        data = load(spec, base_dir)
        return assemble(spec, data, *_split_indices(spec, data.labels, len(data.x)))
    augmented = spec.data is not None and bool(spec.data.augment)
    data = load(spec, base_dir, keep_float32=dtype == "float32" and not augmented)
    parts = _split_indices(spec, data.labels, len(data.x))
    if data.x.shape[1] < 2 or embedding_vocabulary(spec) is not None or not data.x.flags.writeable:
        return assemble(spec, data, *parts)
    return assemble_in_place(spec, data, *parts)


CHUNK_BYTES = 1 << 24  # the float64 working set of the data path's chunked passes


def chunk_rows(x: np.ndarray) -> int:
    """Rows per chunk of the chunked passes over x (at least one)."""
    return max(1, CHUNK_BYTES // (8 * max(1, math.prod(x.shape[1:]))))


def streamed_normalizer(how: str, x: np.ndarray, rows: np.ndarray, chunk: int | None = None):
    """normalizer(how, x[rows].astype(np.float64)), bit for bit, a chunk of rows at a time (no copy of the
    data): numpy sums a 2-D array over axis 0 row after row, so each chunk's rows are added to the running
    sums in the same order (tests/test_data_path.py checks the equality; x needs 2 or more columns)."""
    if how not in ("standard", "minmax"):
        return None, None
    chunk = chunk or chunk_rows(x)

    def chunks():
        for lo in range(0, len(rows), chunk):
            yield x[rows[lo:lo + chunk]].astype(np.float64)

    if how == "minmax":
        parts = chunks()
        first = next(parts)
        lo_, hi_ = first.min(axis=0), first.max(axis=0)
        for c in parts:
            lo_, hi_ = np.minimum(lo_, c.min(axis=0)), np.maximum(hi_, c.max(axis=0))
        return lo_, np.where(hi_ > lo_, hi_ - lo_, 1.0)
    n = len(rows)

    def running_sum(parts):
        total = None
        for c in parts:
            total = c.sum(axis=0) if total is None else np.concatenate([total[None], c]).sum(axis=0)
        return total

    mu = np.true_divide(running_sum(chunks()), n)

    def squares():
        for c in chunks():
            c -= mu
            yield np.multiply(c, c, out=c)

    sd = np.sqrt(np.true_divide(running_sum(squares()), n))
    return mu, np.where(sd > 0, sd, 1.0)


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
        if shift is not None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                c = c.astype(np.float64)
                c -= shift
                c /= scale
        check_model_inputs(spec, c, s.where, lambda i, lo=lo: s.row(lo + i))
        if shift is not None:
            flat[lo:lo + rows] = c
    order = np.concatenate([train, val, test]).astype(np.int64)
    _reorder_rows(flat, order, rows)
    xs = flat.reshape((len(flat),) + tuple(spec.input))
    bounds = np.cumsum([0, len(train), len(val), len(test)])

    def part(k, ix):
        if len(ix) == 0:
            return None
        return Split(xs[bounds[k]:bounds[k + 1]], data.targets[ix],
                     data.labels[ix] if data.labels is not None else None)

    return Dataset(part(0, train), part(1, val), part(2, test), data.num_classes, shift=shift, scale=scale,
                   read=s.read(), class_names=s.class_names)


def _reorder_rows(x: np.ndarray, order: np.ndarray, chunk: int) -> None:
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
