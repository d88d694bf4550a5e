"""What the data checks read of a data file, without numpy where a header says it (an .npy file's, an .npz
archive's members') and without the runtime: the dtype and shape of an array, the arrays of an archive, the
values and classes of a small target array, a CSV file's first row. Apart from the checks that use them
(sourcechecks.py, datachecks.py) because these only read and report nothing: each returns what it found, or
None (or an exception, or a reason) when the file is not so read, and the caller decides what to say."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .csvtable import numbered_rows, text_encoding

# the longest .npy header read: numpy's limit (np.load's max_header_size), which the runtime's reader keeps
NPY_MAX_HEADER = 10_000


# what the checks and the runtime's readers say of an array they will not read, in the same words
PICKLED = ("holds Python objects (dtype object), which dlc does not load: that would unpickle them, and "
           "unpickling can run code; save an array of numbers")
FORTRAN_ORDER = ("is stored in Fortran order (column by column), which cannot be read a sample at a time; "
                 "save it with np.save(file, np.ascontiguousarray(x))")


def no_features(shape: tuple[int, ...]) -> str | None:
    """Why features of this shape cannot be trained on: samples of no values (shape (n, 0)), which no
    input: takes; None when each sample has values. The checks and the runtime's readers say it alike."""
    if len(shape) < 2 or math.prod(shape[1:]) != 0:
        return None
    return (f"holds samples with no features (shape {tuple(shape)}): each sample has 0 values, so there is "
            "nothing to learn from")


NO_FEATURES_HINT = "save the features as one row of values per sample: shape (samples, features)"


def is_pickled(descr: str) -> bool:
    """Whether a header's dtype descr is Python objects, which only unpickling reads."""
    return descr.lstrip("|<>=") == "O"


def npy_header(path: Path) -> tuple[str, tuple[int, ...]]:
    """(dtype descr, shape) from an .npy file's header, read without numpy (the format: a magic string, a
    version, the header's length, then a Python dict literal); ValueError when the file is not one. A header
    numpy would refuse (too long, a shape that is no tuple of sizes) is refused here, before training."""
    head = npy_layout(path)
    return head.descr, head.shape


@dataclass(frozen=True)
class NpyLayout:
    """What an .npy file's header says of its data: the dtype, the shape, whether it is stored column by
    column (Fortran order), and where the data starts; enough to tell a file cut short from its length."""

    descr: str  # the dtype's descr, or "structured"
    shape: tuple[int, ...]
    fortran: bool
    data_start: int  # bytes before the data

    def data_bytes(self) -> int | None:
        """The bytes the data takes, by the header; None for a dtype numpy does not know."""
        import numpy as np

        try:
            itemsize = np.dtype(self.descr).itemsize
        except (TypeError, ValueError):
            return None
        return math.prod(self.shape) * itemsize


def npy_layout(path: Path) -> NpyLayout:
    """npy_header, with the storage order and where the data starts."""
    with open(path, "rb") as fh:
        descr, shape, fortran = _read_npy_header(fh)
        return NpyLayout(descr, shape, fortran, fh.tell())


def npy_cut_short(path: Path, head: NpyLayout) -> str | None:
    """Why an .npy file holds less data than its header says (a copy or a download cut short), in the
    runtime's words; None when it holds it all (more, as numpy reads it, is not a problem)."""
    need = head.data_bytes()
    have = path.stat().st_size - head.data_start
    if need is None or have >= need:
        return None
    return (f"truncated: its header says shape {head.shape} of {head.descr} ({need:,} bytes of data), but "
            f"the file holds {max(have, 0):,}")


def _read_npy_header(fh: IO[bytes]) -> tuple[str, tuple[int, ...], bool]:
    """(dtype descr, shape, Fortran order) of an open file (a file, or an .npz archive's member), read from
    its start; the file is left where the data starts."""
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
    descr, shape, fortran = _npy_header_fields(text, "latin1" if magic[6] < 3 else "utf-8")
    return (descr if isinstance(descr, str) else "structured"), shape, fortran


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
                        heads[key] = _read_npy_header(fh)[:2]
    except (EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error) as e:
        return f"the .npz archive is truncated or corrupt ({e})"
    return names, heads


def _npy_header_fields(text: bytes, encoding: str) -> tuple[object, tuple[int, ...], bool]:
    """(descr, shape, fortran_order) of a header's dict literal; ValueError("damaged .npy header") for
    anything else. A crafted literal (50,000 unary minuses) makes Python's parser run out of stack:
    MemoryError or RecursionError, which would otherwise pass for a training that ran out of memory."""
    import ast as pyast

    try:
        head = pyast.literal_eval(text.decode(encoding))
        descr, shape, fortran = head["descr"], head["shape"], head.get("fortran_order", False)
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
        raise ValueError("damaged .npy header") from None
    if not isinstance(shape, tuple) or not all(_is_size(v) for v in shape):
        raise ValueError(f"damaged .npy header: its shape {_shown_shape(shape)} is not a tuple of sizes "
                         "(integers, 0 or more)")
    if not isinstance(fortran, bool):  # (np.load refuses it too: "fortran_order is not a valid bool")
        raise ValueError(f"damaged .npy header: its fortran_order {_shown_shape(fortran)} is not True or "
                         "False")
    return descr, shape, fortran


def _is_size(v: object) -> bool:
    """An axis length as numpy writes one: a non-negative int (not a bool, not 2.5)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _shown_shape(shape: object) -> str:
    """A header's shape as quoted in a message: a crafted one of 10,000 characters is cut."""
    text = repr(shape)
    return text if len(text) <= 40 else text[:40] + "..."


# the most target values read to check them (an .npy file's or an .npz array's): a few tenths of a second
MAX_TARGETS_READ = 2**22


def _small_targets(path: Path, key: str | None, descr: str, shape: tuple[int, ...]):
    """A target array of numbers, one per sample (shape (n) or (n, 1)), as float64 values in one row, when it
    holds no more than MAX_TARGETS_READ: an .npy file (`key` None) or array `key` of an .npz archive, read as
    the runtime reads it; None when not read so (too large, another shape or kind, unreadable: the runtime
    says what it finds)."""
    import numpy as np

    if (len(shape) != 1 and shape[1:] != (1,)) or math.prod(shape) > MAX_TARGETS_READ \
            or descr[1:2] not in tuple("biuf"):
        return None
    y = _small_array(path, key)
    return None if y is None else np.asarray(y, dtype=np.float64).reshape(-1)


def _small_array(path: Path, key: str | None):
    """An .npy file (`key` None, memory-mapped) or array `key` of an .npz archive, read without unpickling;
    None when it cannot be read (the runtime says why)."""
    import zipfile

    import numpy as np

    try:
        if key is None:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with np.load(path, allow_pickle=False) as f:
            return f[key]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError, RuntimeError):
        return None


# the most feature values read to check that they are finite (an .npy file's or an .npz array's of floats):
# 32 MB in float64, a few tenths of a second; a larger array is checked by the run, as it reads it
MAX_FEATURES_READ = 2**22


def nonfinite_feature_values(path: Path, key: str | None, descr: str,
                             shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(how many, first sample, its feature), from 0, of the nan or infinite values of a small float feature
    array (an .npy file, `key` None, or array `key` of an .npz archive), as the runtime's finite check finds
    them; None when all are finite or the array is not read (not floats, too large, unreadable)."""
    import numpy as np

    if descr[1:2] != "f" or len(shape) < 2 or math.prod(shape) > MAX_FEATURES_READ:
        return None
    x = _small_array(path, key)
    if x is None or x.shape != tuple(shape) or not x.size:
        return None
    bad = ~np.isfinite(np.asarray(x).reshape(len(x), -1))
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    return int(bad.sum()), int(row), int(col)


def small_target_values(path: Path, key: str | None, descr: str,
                        shape: tuple[int, ...]) -> list[float] | None:
    """The distinct values (sorted) of a small target array (_small_targets), when they are all finite."""
    import numpy as np

    y = _small_targets(path, key, descr, shape)
    if y is None:
        return None
    values = np.unique(y)
    return [float(v) for v in values] if np.isfinite(values).all() else None


def target_class_rows(path: Path, key: str | None, descr: str, shape: tuple[int, ...],
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


def csv_first_row(path: Path) -> list[str] | None:
    """The cells of a CSV file's first row that is not blank, as dlc.runtime.data reads them (quotes, blank
    lines; names stripped: csvtable.numbered_rows), or None for a file without rows. Reads no more than that
    row. ValueError (a UnicodeDecodeError among them) for text that is not CSV."""
    first = csv_first_record(path)
    return first[1] if first is not None else None


def csv_first_record(path: Path) -> tuple[int, list[str]] | None:
    """(its row number, its cells stripped) of csv_first_row's row: row 3 after two blank lines."""
    with open(path, "rb") as raw:
        encoding = text_encoding(raw.read(64))
    with open(path, newline="", encoding=encoding) as fh:
        for line, cells in numbered_rows(fh):
            return line, [c.strip() for c in cells]
    return None
