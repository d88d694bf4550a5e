"""Reading data files: scikit-learn's bundled sets, CSV (the header rule), .npz, .npy and MNIST's IDX files;
each problem one DataError line naming the file, the row (or sample) and the column."""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlc.compiler.csvtable import (
    CsvProblem,
    CsvTable,
    feature_columns,
    is_number,
    parse_table,
    scan_features,
    split_decimal,
    target_cells,
    target_index,
)

# (an .npy file's header, MNIST's file names, and what is said of an array that is not read: dlc check says it
# in the same words)
from dlc.compiler.datafiles import (
    NPY_MAX_HEADER,
    PICKLED,
    is_pickled,
    no_features,
    npy_cut_short,
    npy_layout,
)
from dlc.compiler.datarows import MNIST_STEMS, idx_length_problem, mnist_candidates, mnist_parts_problem
from dlc.runtime.data.base import DataError, Samples

# (CSV files are read by the compiler's CSV reader, which `dlc check` judges them with: one walk, one wording)
from dlc.runtime.data.plaincsv import plain_csv

# ------------------------------------------------------------------------------------------------ csv files
# The rules (the encodings, the header rule, blank lines, the layout, which cell is bad, the target column)
# are compiler/csvtable.py's, which `dlc check` judges a file by as well; here its cells become arrays, and
# its problems DataErrors naming the file.


def _plain_numbers(cells: list[list[str]]) -> bool:
    return all(v.isascii() and "_" not in v for r in cells for v in r)


@dataclass
class Table(CsvTable):
    """A CSV file's table (csvtable.CsvTable: the column names or None, the data rows, their row numbers) and
    the file it was read from."""

    path: Path = field(kw_only=True)


def _refused(path: Path, e: CsvProblem) -> DataError:
    return DataError(f"{path}{e.lead}{e}")


def read_table(path: str | Path) -> Table:
    """The cells of a UTF-8 or UTF-16 CSV file, every row as wide as the first, with at least one data row."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    try:
        table = parse_table(raw)
    except CsvProblem as e:
        raise _refused(path, e) from None
    return Table(table.header, table.rows, table.lines, path=path)


def table_numbers(table: Table, columns: list[int]) -> np.ndarray:
    """The cells of `columns` as float64 (rows, columns); the first cell that is not a number (empty, 'NA',
    text) is an error naming its row and column (csvtable.scan_features; nan and inf are the finite check's:
    nonfinite_features)."""
    cells = [[r[j] for j in columns] for r in table.rows]
    if (split := split_decimal(table, columns)) is not None:  # (every cell a number: the fast path took it)
        raise DataError(f"{table.path}: {split}")
    if _plain_numbers(cells):
        try:
            return np.array(cells, dtype=np.float64).reshape(len(cells), len(columns))
        except ValueError:
            pass
    problem = scan_features(table, columns).problem
    if problem is not None:
        raise DataError(f"{table.path}: {problem}")
    numbers = [[float(v) for v in r] for r in cells]
    return np.array(numbers, dtype=np.float64).reshape(len(cells), len(columns))


def read_csv(path: str | Path, target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features, targets) of a CSV file (the header rule decides whether its first row names the columns);
    `target` names the target column (default: the last); class names are numbered in sorted order."""
    s = csv_samples(path, target)
    return s.x, s.y


def csv_samples(path: str | Path, target: str | None = None) -> Samples:
    """A CSV file's samples: a large plain file by numpy's parser (plaincsv.py: the same arrays, 4x faster
    and in a fifth of the memory), every other file by csvtable's walk, which says what is wrong with one."""
    plain = plain_csv(Path(path), target)
    if plain is not None:
        return Samples(plain.x, plain.y, str(Path(path)), plain.lines, plain.class_names,
                       plain.header is not None)
    return walked_csv_samples(path, target)


def walked_csv_samples(path: str | Path, target: str | None = None) -> Samples:
    """A CSV file's samples read cell by cell (csvtable's walk)."""
    table = read_table(path)
    t = target_column(table, target)
    x = table_numbers(table, feature_columns(table.width, t))
    y, names = target_values(table, t)
    return Samples(x, y, str(table.path), table.lines, names, table.header is not None)


def target_column(table: Table, target: str | None) -> int:
    """The index of the target column: the one named `target`, else the last (csvtable.target_index)."""
    try:
        return target_index(table, target)
    except CsvProblem as e:
        raise _refused(table.path, e) from None


def target_values(table: Table, t: int) -> tuple[np.ndarray, list[str] | None]:
    """The target column as numbers, or as class names numbered in sorted order (names); an empty cell, or a
    column of both numbers and names, is an error (csvtable.target_cells)."""
    try:
        cells = target_cells(table, t)
    except CsvProblem as e:
        raise _refused(table.path, e) from None
    if all(is_number(v) for v in cells):
        return np.array([float(v) for v in cells]), None
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


READ_CHUNK = 1 << 22  # bytes per read of an npz member into its array
ALIGN = 64  # bytes: TensorFlow wraps a host array without a copy only when its data is aligned to this


def aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-order array whose data starts on a 64-byte boundary (numpy's own large arrays
    start 16 bytes past a page boundary), so that a backend can use it as a tensor without copying it."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + ALIGN, np.uint8)
    start = -buf.ctypes.data % ALIGN
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def read_member_aligned(f, key: str):
    """Array `key` of an open NpzFile read straight into an aligned buffer (one copy of the data, as
    f[key] makes, but aligned); None where the member is not a plain C-order numeric array (read f[key])."""
    name = key + ".npy"
    if name not in f.zip.namelist():
        return None
    with f.zip.open(name) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            return None
        if fortran or dtype.hasobject or dtype.kind not in "biuf" or not shape:
            return None
        a = aligned_empty(shape, dtype)
        view = a.reshape(-1).view(np.uint8).data  # (a memoryview of the buffer)
        done = 0
        while done < len(view):
            n = fh.readinto(view[done:done + READ_CHUNK])  # (a zip member reads a request into a temporary)
            if not n:
                raise ValueError(f"the array holds {done} of its {len(view)} bytes (the file is truncated)")
            done += n
    return a


def npz_array(path: Path, f, key: str) -> np.ndarray:
    """Array `key` of an open archive: one entry per sample, numbers or (for labels) strings. Numbers are
    read into an aligned buffer (read_member_aligned), so the keras backend holds them without a copy."""
    try:
        a = read_member_aligned(f, key)
        if a is None:
            a = f[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if "max_header_size" in str(e):  # (numpy's refusal of a long header names allow_pickle too)
            raise DataError(f"{path}: array '{key}' cannot be read: its header is longer than numpy reads "
                            f"({NPY_MAX_HEADER:,} bytes); a damaged file, or an array of very many named "
                            "fields?") from None
        if "allow_pickle" in str(e):  # (numpy's refusal to unpickle an array of Python objects)
            raise DataError(f"{path}: array '{key}' {PICKLED}") from None
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
        raise DataError(f"{path}: array '{key}' holds {dtype_text(a.dtype)} values, not numbers")
    return a


def dtype_text(dtype: np.dtype) -> str:
    """A dtype in a message: "structured" for one of named fields (whose repr lists every field: a crafted one
    of 10,000 fields made a message of 200,000 characters), as `dlc check` says it; else its name."""
    return "structured" if dtype.names is not None or dtype.subdtype is not None else str(dtype)


def numeric_features(path: Path, x: np.ndarray, key: str, keep_float32: bool = False) -> np.ndarray:
    # (an .npy file is one array, of no name: "x.npy: array 'x' has no samples" named one it does not have)
    what = "" if Path(path).suffix == ".npy" else f"array '{key}' "
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {what}holds {dtype_text(x.dtype)} values, not numbers")
    if len(x) == 0:
        raise DataError(f"{path}: {what}has no samples" if what else f"{path}: no samples")
    if (empty := no_features(x.shape)) is not None:
        raise DataError(f"{path}: {what}{empty}")
    if keep_float32 and x.dtype == np.float32:
        return x
    if x.dtype == np.float64:
        return x
    out = aligned_empty(x.shape, np.float64)  # (aligned, as read_member_aligned's)
    np.copyto(out, x)
    return out


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


# ------------------------------------------------------------------------------------------------ npy files


def open_npy(path: Path, mmap: bool) -> np.ndarray:
    """An .npy file's array, memory-mapped (`mmap`: read only where used) or read whole; DataError for a
    missing, foreign or damaged file."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    if magic != b"\x93NUMPY":
        raise DataError(f"{path}: not an .npy file (save one with np.save(file, array))")
    _check_npy_header(path)
    try:
        a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: the .npy file cannot be read ({str(e).splitlines()[0] if str(e) else ''}); "
                        "a damaged file, or one of Python objects?") from None
    except MemoryError:
        raise DataError(f"{path}: its header claims more values than memory holds (a damaged file?)"
                        ) from None
    if a.ndim == 0:
        raise DataError(f"{path}: a single value, not one entry per sample")
    return a


def _check_npy_header(path: Path) -> None:
    """What the header says that np.load would only say in its own words, or not at all: Python objects
    (which it refuses to unpickle: "allow_pickle=False"), and less data than the header claims (numpy's
    "mmap length is greater than file size"), each in `dlc check`'s words (compiler/sourcechecks.py)."""
    try:
        head = npy_layout(path)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    if is_pickled(head.descr):
        raise DataError(f"{path}: {PICKLED}")
    if head.descr == "structured":  # (named fields or a subarray: np.load failed on some in its own words,
        # "Failed to read all data for array", as if the file were cut short)
        raise DataError(f"{path}: holds structured values, not numbers")
    cut = npy_cut_short(path, head)
    if cut is not None:
        raise DataError(f"{path}: {cut}")


def read_npy(x_path: str | Path, y_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(features as float64, targets) of two .npy files, read whole (the emitted scripts' reader; a run
    reads the features a batch at a time instead: prepare_streamed)."""
    x_path, y_path = Path(x_path), Path(y_path)
    x, y = open_npy(x_path, mmap=False), open_npy(y_path, mmap=False)
    if len(y) != len(x):
        raise DataError(f"{x_path} has {len(x)} samples but {y_path} has {len(y)}; they must match one "
                        "to one")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{x_path}: holds {dtype_text(x.dtype)} values, not numbers")
    if len(x) == 0:
        raise DataError(f"{x_path}: no samples")
    if (empty := no_features(x.shape)) is not None:
        raise DataError(f"{x_path}: {empty}")
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1), y


IDX_TYPES = {0x08: "unsigned bytes", 0x09: "signed bytes", 0x0B: "16-bit integers", 0x0C: "32-bit integers",
             0x0D: "float32", 0x0E: "float64"}


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's type) with `ndim` dimensions (3 for images, 1 for labels)."""
    import zlib

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            magic = fh.read(4)
            if len(magic) != 4 or magic[:2] != b"\0\0":
                raise DataError(f"{path}: not an IDX file")
            if magic[2] != 0x08:
                kind = IDX_TYPES.get(magic[2], "an unknown type")
                raise DataError(f"{path}: IDX type 0x{magic[2]:02X} ({kind}) is not read; MNIST's files hold "
                                "unsigned bytes (type 0x08)")
            if magic[3] != ndim:
                what = "images (count, rows, columns)" if ndim == 3 else "labels (one per image)"
                raise DataError(f"{path}: {magic[3]} dimension(s), but MNIST's {what} have {ndim}")
            head = fh.read(4 * ndim)
            if len(head) != 4 * ndim:
                raise DataError(f"{path}: truncated IDX file")
            dims = struct.unpack(">" + "I" * ndim, head)
            data = np.frombuffer(fh.read(), dtype=np.uint8)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: a damaged gzip file ({e})") from None
    problem = idx_length_problem(data.size, math.prod(dims))
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    return data.reshape(dims)


def _mnist_parts(where: str, names: tuple[str, str, str, str], parts: list[np.ndarray]) -> None:
    """Train and test images of one size, and one label per image in each."""
    xa, ya, xb, yb = (p.shape for p in parts)
    problem = mnist_parts_problem(names, (xa, ya, xb, yb))
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    if (empty := no_features(xa)) is not None:  # (images of 0 rows or columns: as `dlc check` says it)
        raise DataError(f"{where}: {names[0]} {empty}")


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
            keys = ("x_train", "y_train", "x_test", "y_test")
            arrays = [npz_array(npz, f, k) for k in keys]
        _mnist_parts(str(npz), keys, arrays)
        x = np.concatenate([arrays[0], arrays[2]]).astype(np.float64)
        y = np.concatenate([arrays[1], arrays[3]])
        return x.reshape(len(x), -1), y
    parts, names = [], []
    for stem in MNIST_STEMS:
        found = next((c for c in mnist_candidates(path, stem) if c.is_file()), None)
        if found is None:
            raise DataError(f"cannot find MNIST file {path / stem}[.gz] (or mnist.npz) in {path}")
        parts.append(_read_idx(found, 3 if "images" in stem else 1))
        names.append(found.name)
    _mnist_parts(str(path), (names[0], names[1], names[2], names[3]), parts)
    x = np.concatenate([parts[0], parts[2]]).astype(np.float64)
    y = np.concatenate([parts[1], parts[3]])
    return x.reshape(len(x), -1), y
