"""The rows (and, where cheap and exact, the rows of each class) of a CSV file or an MNIST folder, counted
without numpy and without reading what `dlc check` need not: so that a split the data cannot make (compiler/
splitsizes.py) is a spec error before training, for these sources too.

A CSV file is counted as dlc.runtime.data reads it (the header rule, blank lines skipped): a small one is
parsed whole (rows and the target column's classes), a larger one has its lines counted in bytes (rows only;
only when it has no quotes, which could hide a line break inside a cell). A file above MAX_CSV_BYTES is not
counted: `dlc check` says nothing of its split, and the run says what the data allows. Each file is counted
once per `dlc check` (options.py resolves the spec again per searched option). MNIST's IDX files say their
item count in their header; the labels (a byte each) are counted when there are not too many.

The rows are walked by compiler/csvtable.py, the CSV reader dlc.runtime.data reads with (the header rule,
blank lines, the target column), so that both sides count the same rows. MNIST's file names live here, and
dlc.runtime.data uses them."""

from __future__ import annotations

import functools
import gzip
import math
import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from .csvtable import (
    CsvProblem,
    CsvTable,
    file_state,
    header_of,
    is_blank,
    is_header,
    is_number,
    numbered_rows,
    target_index,
    text_encoding,
)

ClassRows = list[tuple[object, int]]  # (class, rows) of each class, in the order of the classes
Counted = tuple[int, ClassRows | None]  # (rows, the rows of each class or None)
Read = tuple[int, Counter[str] | None]  # (rows, the rows of each target value as written, or None)

# the largest CSV file counted (by its lines: about 0.6 s for 256 MB, 1.2 s with CRLF line breaks)
MAX_CSV_BYTES = 256 * 2**20
# the largest CSV file parsed as the runtime parses it (about 0.3 s for 16 MB), which gives its classes too
MAX_CSV_PARSED_BYTES = 16 * 2**20
READ_BYTES = 2**20  # bytes read at a time when counting lines
MAX_LINE_BYTES = 16 * 2**20  # the longest line of a file counted by its lines

# the most labels an IDX labels file may hold for its classes to be counted (MNIST's: 60,000 and 10,000)
MAX_IDX_LABELS = 2**24

# MNIST's four IDX files, each found as the name, name.gz or with ".idx" for "-idx"
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")

# a line without a comma (what follows a line break, up to the next), in a block of whole lines with a line
# break put before it
_NO_COMMA_LINE = re.compile(rb"\n([^,\n]*)(?=\n)")


def home_expanded(path: Path) -> Path:
    """`~/x` and `~user/x` expanded as a shell expands them; `~nobody/x` of a user that does not exist is
    kept as written, as a shell keeps it (pathlib raises RuntimeError): then a missing file, reported."""
    try:
        return path.expanduser()
    except RuntimeError:
        return path


def mnist_candidates(folder: Path, stem: str) -> list[Path]:
    """Where MNIST's file `stem` may be in `folder`, in the order looked for."""
    return [folder / stem, folder / (stem + ".gz"), folder / stem.replace("-idx", ".idx")]


# ------------------------------------------------------------------------------------------------ csv files


def csv_counts(path: Path, target: str | None) -> Counted | None:
    """(rows, classes or None) of a CSV file as the runtime reads it, `target` naming the target column
    (default: the last); None when not counted (too large, quoted and not small, unreadable)."""
    read = _csv_read(path, target)
    if read is None:
        return None
    rows, labels = read
    return rows, (_classes(labels) if labels is not None and rows else None)


def csv_target_names(path: Path, target: str | None) -> list[str] | None:
    """The names a CSV file's target column holds (sorted, as the runtime numbers them as classes) when it is
    known to hold names only (a small file, parsed: none empty, none a number), else None (numbers, a mix the
    runtime refuses, or not known)."""
    read = _csv_read(path, target)
    labels = read[1] if read is not None else None
    if not labels or "" in labels or any(is_number(v) for v in labels):
        return None
    return sorted(labels)


def csv_target_numbers(path: Path, target: str | None) -> list[float] | None:
    """The distinct numbers a CSV file's target column holds (sorted) when it is known to hold finite numbers
    only (a small file, parsed), else None (names, a mix, a missing or infinite one, or not known)."""
    read = _csv_read(path, target)
    labels = read[1] if read is not None else None
    if not labels or not all(is_number(v) for v in labels):
        return None
    values = {float(v) for v in labels}
    return sorted(values) if all(math.isfinite(v) for v in values) else None


def csv_feature_range(path: Path, target: str | None) -> tuple[float, float, float | None] | None:
    """(smallest, largest, the first that is not a whole number or None) of a CSV file's feature values, all
    but the target column's, when it is small enough to be parsed (MAX_CSV_PARSED_BYTES) and they are all
    finite numbers, as the runtime reads them; else None (the runtime says what it finds)."""
    key = file_state(path, MAX_CSV_PARSED_BYTES)
    return _csv_feature_range(*key, target) if key is not None else None


def _file_encoding(path: str) -> str:
    """A text file's encoding, from its first bytes (text_encoding)."""
    with open(path, "rb") as raw:
        return text_encoding(raw.read(64))


@functools.lru_cache(maxsize=16)
def _csv_feature_range(path: str, size: int, mtime_ns: int, target: str | None
                       ) -> tuple[float, float, float | None] | None:
    """csv_feature_range of a file of this size and time (read once per `dlc check`)."""
    lo, hi, fraction = math.inf, -math.inf, None
    column = None
    try:
        with open(path, newline="", encoding=_file_encoding(path)) as fh:
            for cells, column, is_head in _csv_rows(fh, target):
                if is_head:
                    continue
                for j, cell in enumerate(cells):
                    if j == column:
                        continue
                    if not is_number(cell):
                        return None
                    v = float(cell)
                    if not math.isfinite(v):
                        return None
                    lo, hi = min(lo, v), max(hi, v)
                    if fraction is None and not v.is_integer():
                        fraction = v
    except (OSError, ValueError):  # (ValueError: not UTF-8 or UTF-16, not CSV)
        return None
    if column is None or lo > hi:
        return None
    return lo, hi, fraction


def _csv_read(path: Path, target: str | None) -> Read | None:
    """(rows, the rows of each target value or None) of a CSV file (see _csv_counts), None when not read."""
    key = file_state(path, MAX_CSV_BYTES)
    return _csv_counts(*key, target) if key is not None else None


@functools.lru_cache(maxsize=16)
def _csv_counts(path: str, size: int, mtime_ns: int, target: str | None) -> Read | None:
    """(rows, the rows of each target value, or None where not known) of a file of this size and time
    (options.py resolves the spec once per searched option: the file is counted once). The counter is
    shared: not to be changed."""
    try:
        encoding = _file_encoding(path)
        if size <= MAX_CSV_PARSED_BYTES:
            return _parsed_counts(Path(path), encoding, target)
        return _line_counts(Path(path), encoding)
    except (OSError, ValueError):  # (ValueError: not UTF-8 or UTF-16, not CSV)
        return None


def _parsed_counts(path: Path, encoding: str, target: str | None) -> Read | None:
    """(rows, the rows of each target value) of a CSV file parsed as the runtime parses it; the values None
    where the target column does not give them (no such column, a ragged row)."""
    rows, labels, column, seen, ragged = 0, Counter[str](), None, False, False
    with open(path, newline="", encoding=encoding) as fh:
        for cells, column, is_head in _csv_rows(fh, target):
            seen = True
            if is_head:
                continue
            rows += 1
            if column is not None and not ragged:
                if column < len(cells):
                    labels[cells[column].strip()] += 1
                else:
                    ragged = True
    if not seen:
        return None
    return rows, (labels if column is not None and not ragged else None)


def _csv_rows(fh, target: str | None) -> Iterator[tuple[list[str], int | None, bool]]:
    """Each row of a CSV file that is not blank, as the runtime reads it (csvtable.numbered_rows): (its cells,
    the target column's index, whether it is the header), the header and the target column judged from the
    first row (csvtable.target_index; None where it is refused)."""
    column: int | None = None
    first = True
    for line, cells in numbered_rows(fh):
        header = header_of(cells) if first else None
        if first:
            try:
                column = target_index(CsvTable(header, [cells], [line]), target)
            except CsvProblem:
                column = None
            first = False
        yield cells, column, header is not None


def _classes(labels: Counter[str]) -> ClassRows | None:
    """(class, rows) as the runtime numbers the labels: numbers as they are (whole ones only), names in
    sorted order from 0; None for labels it refuses (empty, fractional, numbers mixed with names)."""
    if "" in labels:
        return None
    numeric = [is_number(v) for v in labels]
    if all(numeric):
        values = Counter[float]()
        for v, n in labels.items():
            values[float(v)] += n
        if not all(math.isfinite(v) and v.is_integer() for v in values):
            return None
        return [(int(v), n) for v, n in sorted(values.items())]
    if any(numeric):
        return None
    return [(i, labels[name]) for i, name in enumerate(sorted(labels))]


def _line_counts(path: Path, encoding: str) -> Read | None:
    """(rows, None) of a UTF-8 CSV file without quotes or lone carriage returns, where a line is a row: its
    lines counted in bytes, less the blank ones and a header; None for another file."""
    if encoding.startswith(("utf-16", "utf-32")):
        return None
    lines = blanks = 0
    first: list[str] | None = None
    tail = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(READ_BYTES)
            data = tail + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            block, tail = data[:cut], data[cut:]
            if len(tail) > MAX_LINE_BYTES:  # (no table: the tail would be copied again at each read)
                return None
            if not chunk and block and not block.endswith(b"\n"):
                block += b"\n"  # (the last line, without a line break)
            if not _lines_are_rows(block):
                return None
            first = first or _first_cells(block, encoding)
            n = block.count(b"\n")
            lines += n
            blanks += _blank_lines(block, n, first, encoding)
            if not chunk:
                break
    if first is None:
        return None
    return lines - blanks - (1 if is_header(first) else 0), None


def _lines_are_rows(block: bytes) -> bool:
    """Whether each line of `block` is a row as the CSV reader reads it: no quotes (a quoted cell may hold a
    line break), no carriage return but before a line break (one alone ends a row)."""
    return b'"' not in block and (b"\r" not in block or block.count(b"\r") == block.count(b"\r\n"))


def _blank_lines(block: bytes, lines: int, first: list[str] | None, encoding: str) -> int:
    """The blank lines among the `lines` of `block`, `first` the file's first row that is not blank (None:
    none yet, so every line is blank). A block with as many commas as its lines have in the first row's
    width has none (or has a row of another width, which the runtime refuses); else its lines without a
    comma are looked at, as the reader does (spaces only)."""
    if first is None:
        return lines
    if len(first) > 1 and block.count(b",") == lines * (len(first) - 1):
        return 0
    return sum(1 for line in _NO_COMMA_LINE.findall(b"\n" + block)
               if not line.decode(encoding, "replace").strip())


def _first_cells(block: bytes, encoding: str) -> list[str] | None:
    """The cells of the first row of `block` (whole lines of a file without quotes) that is not blank."""
    for line in block.split(b"\n"):
        cells = line.rstrip(b"\r").decode(encoding, "replace").split(",")
        if not is_blank(cells):
            return cells
    return None


# ------------------------------------------------------------------------------------------------ mnist


def mnist_counts(folder: Path) -> Counted | None:
    """(rows, classes or None) of an MNIST folder of IDX files: the train and test images' counts from their
    headers, the classes from the labels; None when not counted so (a folder holding mnist.npz, a file
    missing or not as the runtime reads it: the runtime says why)."""
    if not folder.is_dir() or (folder / "mnist.npz").is_file():
        return None
    found = [next((c for c in mnist_candidates(folder, stem) if c.is_file()), None) for stem in MNIST_STEMS]
    train_x, train_y, test_x, test_y = found
    if train_x is None or train_y is None or test_x is None or test_y is None:
        return None
    train, test = _idx_part(train_x, train_y), _idx_part(test_x, test_y)
    if train is None or test is None or train[0][1:] != test[0][1:]:  # (one size of image)
        return None
    classes = train[1] + test[1] if train[1] is not None and test[1] is not None else None
    return train[0][0] + test[0][0], sorted(classes.items()) if classes is not None else None


def _idx_part(images: Path, labels: Path) -> tuple[tuple[int, ...], Counter[int] | None] | None:
    """(the images' sizes, the rows of each label or None) of MNIST's train or test part, whose files the
    runtime reads (unsigned bytes, images of 3 dimensions, one label per image); None otherwise."""
    dims, label_dims = _idx_dims(images, 3), _idx_dims(labels, 1)
    if dims is None or label_dims != dims[:1]:
        return None
    return dims, _idx_labels(labels, dims[0])


def idx_header(fh) -> tuple[int, int, tuple[int, ...]] | None:
    """(type, dimensions, sizes) from an IDX file's header (two zero bytes, the type, the number of
    dimensions, then each size as 4 bytes, big-endian), or None for a file that is not one."""
    magic = fh.read(4)
    if len(magic) != 4 or magic[:2] != b"\0\0":
        return None
    head = fh.read(4 * magic[3])
    if len(head) != 4 * magic[3]:
        return None
    return magic[2], magic[3], struct.unpack(">" + "I" * magic[3], head)


def idx_problem(path: Path, ndim: int) -> tuple[str | None, tuple[int, ...] | None]:
    """(why the runtime would refuse an MNIST IDX file, in its words, or None; its sizes) from its header (and
    an uncompressed file's length): not an IDX file, another type than unsigned bytes, other dimensions than
    `ndim`, or too short for its sizes."""
    try:
        with _open_idx(path) as fh:
            head = idx_header(fh)
    except (OSError, EOFError, zlib.error) as e:
        return f"cannot be read ({getattr(e, 'strerror', None) or e})", None
    if head is None:
        return "not an IDX file", None
    kind, n, dims = head
    if kind != 0x08:
        return f"IDX type 0x{kind:02X} is not read; MNIST's files hold unsigned bytes (type 0x08)", None
    if n != ndim:
        what = "images (count, rows, columns)" if ndim == 3 else "labels (one per image)"
        return f"{n} dimension(s), but MNIST's {what} have {ndim}", None
    if path.suffix != ".gz":
        have = path.stat().st_size - 4 - 4 * ndim
    else:
        try:
            have = _gz_values(path, ndim, math.prod(dims))
        except (OSError, EOFError, zlib.error) as e:  # (as the runtime's _read_idx says it)
            return f"a damaged gzip file ({e})", None
    problem = idx_length_problem(have, math.prod(dims))
    return (problem, None) if problem is not None else (None, dims)


def _gz_values(path: Path, ndim: int, need: int) -> int:
    """How many values a gzipped IDX file holds after its header, read through (a chunk at a time, never
    whole) when its header says at most MAX_CSV_BYTES: a download cut short passed `dlc check` and failed
    the run ("a damaged gzip file"). A larger file is taken at its header's word. EOFError, zlib.error or
    OSError (gzip.BadGzipFile) for a damaged stream."""
    if need > MAX_CSV_BYTES:
        return need
    have = 0
    with gzip.open(path, "rb") as fh:
        fh.read(4 + 4 * ndim)
        while chunk := fh.read(READ_BYTES):
            have += len(chunk)
    return have


def idx_length_problem(have: int, need: int) -> str | None:
    """Why an IDX file of `have` values is not the `need` its header says (cut short, or more than it says:
    another file appended, a damaged header), in the words of `dlc check` and the runtime; None when it is."""
    if have < need:
        return f"truncated IDX file ({have:,} of {need:,} values)"
    if have > need:
        return f"an IDX file longer than its header says ({have:,} values, its header says {need:,})"
    return None


def mnist_parts_problem(names: tuple[str, str, str, str],
                        shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]
                        ) -> str | None:
    """Why MNIST's train and test arrays (images, labels, images, labels: their `names` and `shapes`) do not
    make one data set: images of two sizes, or not one label per image; None when they do. The runtime
    (dlc/runtime/data/files.py) says it of the arrays it read, `dlc check` of the files' headers."""
    (na, la, nb, lb), (xa, ya, xb, yb) = names, shapes
    single = next((n for n, shape in zip(names, shapes, strict=True) if not shape), None)
    if single is not None:  # (a 0-d array: no samples to count)
        return f"{single} is a single value, not one entry per sample"
    if xa[1:] != xb[1:]:
        return f"{nb} holds samples of shape {xb[1:]}, but {na} of shape {xa[1:]}; they must be one size"
    for x, y, nx, ny in ((xa, ya, na, la), (xb, yb, nb, lb)):
        if len(y) != 1 or y[0] != x[0]:
            return (f"{ny} holds labels of shape {y}, but {nx} has {x[0]} samples: one label per sample is "
                    "needed")
    return None


def _open_idx(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_dims(path: Path, ndim: int) -> tuple[int, ...] | None:
    """The sizes of an IDX file of unsigned bytes with `ndim` dimensions, from its header (of an uncompressed
    file, only when its length holds them all); None otherwise."""
    try:
        with _open_idx(path) as fh:
            head = idx_header(fh)
    except (OSError, EOFError, zlib.error):
        return None
    if head is None or head[0] != 0x08 or head[1] != ndim:
        return None
    dims = head[2]
    if path.suffix != ".gz" and path.stat().st_size != 4 + 4 * ndim + math.prod(dims):
        return None
    return dims


def _idx_labels(path: Path, count: int) -> Counter[int] | None:
    """The rows of each label of an IDX labels file of `count` labels, when it has no more than
    MAX_IDX_LABELS and holds them all; None otherwise."""
    if count > MAX_IDX_LABELS:
        return None
    try:
        with _open_idx(path) as fh:
            fh.read(8)
            data = fh.read(count + 1)
    except (OSError, EOFError, zlib.error):
        return None
    return Counter(data) if len(data) == count else None
