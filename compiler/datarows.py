"""The rows (and, where cheap and exact, the rows of each class) of a CSV file or an MNIST folder, counted
without numpy and without reading what `dlc check` need not: so that a split the data cannot make (compiler/
splitsizes.py) is a spec error before training, for these sources too.

A CSV file is counted as dlc.runtime.data reads it (the header rule, blank lines skipped): a small one is
parsed whole (rows and the target column's classes), a larger one has its lines counted in bytes (rows only;
only when it has no quotes, which could hide a line break inside a cell). A file above MAX_CSV_BYTES is not
counted: `dlc check` says nothing of its split, and the run says what the data allows. Each file is counted
once per `dlc check` (options.py resolves the spec again per searched option). MNIST's IDX files say their
item count in their header; the labels (a byte each) are counted when there are not too many.

The header rule (is_number, is_header) and MNIST's file names live here, and dlc.runtime.data uses them, so
that both sides count the same rows."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ClassRows = list[tuple[object, int]]  # (class, rows) of each class, in the order of the classes
Counted = tuple[int, ClassRows | None]  # (rows, the rows of each class or None)
Read = tuple[int, Counter[str] | None]  # (rows, the rows of each target value as written, or None)

# the largest CSV file counted (by its lines: about 0.6 s for 256 MB, 1.2 s with CRLF line breaks)
MAX_CSV_BYTES = 256 * 2**20
# the largest CSV file parsed as the runtime parses it (about 0.3 s for 16 MB), which gives its classes too
MAX_CSV_PARSED_BYTES = 16 * 2**20
# the largest CSV file whose every cell `dlc check` judges as the runtime will (csv_problem: about 0.4 s for
# 4 MB); a larger one's cells are judged by the run
MAX_CSV_SCANNED_BYTES = 4 * 2**20
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


def text_encoding(head: bytes) -> str:
    """The encoding of a text file from its first bytes: UTF-16 by its byte-order mark, or without one by
    its zero bytes (a spreadsheet's "Unicode text" export; ASCII in UTF-16 has every other byte 0), else
    UTF-8 (a UTF-8 byte-order mark skipped)."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    pairs = head[:len(head) // 2 * 2]
    if pairs and b"\0" in pairs:
        if not any(pairs[1::2]) and all(pairs[0::2]):
            return "utf-16-le"
        if not any(pairs[0::2]) and all(pairs[1::2]):
            return "utf-16-be"
    return "utf-8-sig"


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


def is_header(cells: list[str]) -> bool:
    """The header rule: names only, none empty, none a number."""
    return bool(cells) and all(c.strip() and not is_number(c) for c in cells)


def is_blank(cells: list[str]) -> bool:
    """A row the CSV reader skips: no cells, or one of spaces only."""
    return not cells or (len(cells) == 1 and not cells[0].strip())


# separators a CSV file may use instead of commas, by name
OTHER_SEPARATORS = (("\t", "tabs"), (";", "semicolons"), ("|", "vertical bars"))


def other_separator(first_row: list[str]) -> str | None:
    """Why a CSV file's first row reads as one cell, when it is a separator other than commas: "its first row
    is separated by semicolons, not commas; save it as comma-separated values" (the one wording of `dlc
    check` and of `dlc predict` and `dlc evaluate`, which would otherwise say "one column" or "only a header
    row"); None for a row of several cells, or of one without such a separator."""
    if len(first_row) != 1:
        return None
    name = next((name for sep, name in OTHER_SEPARATORS if sep in first_row[0]), None)
    if name is None:
        return None
    return f"its first row is separated by {name}, not commas; save it as comma-separated values"


# ------------------------------------------------------------------------------- what is said of a CSV file
# The runtime (dlc/runtime/data/files.py) and `dlc check` (csv_problem, below) judge a CSV file by these
# rules, in these words; each caller puts the file's name before them.

# cells a spreadsheet or a statistics package writes for a missing value
MISSING_MARKERS = frozenset({"na", "n/a", "null", "none", "?", "-", ".", "#n/a"})
GZIP_MAGIC = b"\x1f\x8b"
# a number written with a comma inside it: a thousands separator (1,234.5) or a decimal comma (1,5)
_COMMA_NUMBER = re.compile(r"[+-]?\d+(,\d+)+(\.\d*)?")


def decoded_text(raw: bytes) -> str:
    """A CSV file's text: UTF-8 (a byte-order mark allowed) or UTF-16 (text_encoding); ValueError saying why
    not, a gzip file included (csv() reads plain text)."""
    if raw[:2] == GZIP_MAGIC:
        raise ValueError("gzip-compressed, not CSV text; decompress it first (gunzip) and read the .csv "
                         "file")
    encoding = text_encoding(raw[:64])
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        if encoding.startswith("utf-16"):
            raise ValueError(f"not valid UTF-16 text (it starts as UTF-16, but byte {e.start} is not); save "
                             "the file as UTF-8") from None
        row = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} in row {row}); save the file as "
                         "UTF-8") from None


def numbered_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every row of a CSV text that is not blank, rows numbered as lines of the file;
    ValueError for text that is not CSV."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        for cells in reader:
            if not is_blank(cells):  # (a line of spaces is blank too)
                yield line, cells
            line = reader.line_num + 1
    except csv.Error as e:
        raise ValueError(f"row {line} is not valid CSV ({e})") from None


def ragged_row(first: tuple[int, int], line: int, width: int) -> str:
    """A row of another width than the first ((row, width) of the first)."""
    return (f"rows have different numbers of columns: row {line} has {width}, row {first[0]} has "
            f"{first[1]}")


TRAILING_COLUMN = ("every row ends with a comma (an empty last column, as some spreadsheets write); remove "
                   "the trailing commas")


def cell_place(line: int, j: int, header: list[str] | None) -> str:
    """Where a cell is, as its file shows it: "row 7, column 2 ('b')"."""
    return f"row {line}, column {j + 1}" + (f" ('{header[j]}')" if header else "")


def feature_cell_problem(cell: str) -> str | None:
    """Why a feature cell is not a number (what follows its place), None when it is one: empty or a
    missing-value marker ('NA', '?'), a comma inside a number, text. ('nan', 'inf' and '1e400' are numbers
    here: the run's finite check names them, nonfinite_features.)"""
    text = cell.strip()
    if not text:
        return "is empty (a missing value); fill or drop it"
    if is_number(cell):
        return None
    if text.lower() in MISSING_MARKERS:
        return f"is {cell!r}, a missing value; fill or drop it"
    if _COMMA_NUMBER.fullmatch(text):
        return (f"is not a number ({cell!r}): a thousands separator or a decimal comma? write numbers "
                "without separators, with a decimal point (1234.5)")
    return f"is not a number ({cell!r})"


def nonfinite_wording(count: int, row: str, feature: int) -> str:
    """`count` feature values that are nan or infinite ('nan', 'inf', '1e400' read as numbers), the first at
    `row` ("row 7", "sample 7"), `feature` (from 1, the target column left out)."""
    return (f"{count} feature value(s) are missing or not finite (the first in {row}, feature {feature}); "
            "fill or drop them first")


def bad_feature_cell(place: str, problem: str, headerless_first: bool) -> str:
    """A feature cell's problem at its place; in a first row read as data, why it was not a header."""
    text = f"{place} {problem}"
    if headerless_first:
        text += ("; the first row is read as data because it has a number or an empty cell (a header row has "
                 "only names)")
    return text


def no_header(target: str, first_line: int) -> str:
    """A target named in the spec, in a file whose first row is data."""
    return (f"the spec names the target column '{target}', but the file has no header row (row {first_line} "
            "has a number or an empty cell, so it is data)")


def duplicate_target(header: list[str], target: str) -> str | None:
    """The target named by more than one column: "2 columns named 'label' (columns 2 and 4)"."""
    at = [j + 1 for j, name in enumerate(header) if name == target]
    if len(at) < 2:
        return None
    return f"{len(at)} columns named '{target}' ({columns_text(at)}): the target is ambiguous"


def columns_text(at: list[int]) -> str:
    """Columns by their numbers (from 1): "columns 2 and 4", "columns 1, 3 and 5"."""
    return f"columns {', '.join(map(str, at[:-1]))} and {at[-1]}" if len(at) > 1 else f"column {at[0]}"


DUPLICATE_HINT = "rename the columns so that each name is used once"


def empty_target(place: str) -> str:
    """A target cell left empty: no class or value to learn for that row."""
    return f"{place} is empty: the target is missing"


def mixed_target(first: tuple[int, str], other: tuple[int, str]) -> str:
    """A target column of numbers and names, by its first row and the first row of the other kind."""
    return (f"the target column mixes numbers and names (row {first[0]}: {first[1]!r}, row {other[0]}: "
            f"{other[1]!r})")


def csv_problem(path: Path, target: str | None) -> str | None:
    """What the runtime would refuse in a CSV file small enough to be judged cell by cell
    (MAX_CSV_SCANNED_BYTES), in its words, without the file's name: its layout (csv_layout_problem), a named
    target without a header, a feature cell that is no finite number, an empty target or one mixing numbers
    and names; None when none (or not judged), so that `dlc check` says what a run would fail on."""
    key = _file_state(path, MAX_CSV_SCANNED_BYTES)
    found = _csv_problems(*key, target) if key is not None else None
    return (found[0] or found[1]) if found is not None else None


def csv_layout_problem(path: Path, target: str | None) -> str | None:
    """What the runtime refuses of a small CSV file before it looks for the target: text that is not UTF-8
    or UTF-16 (or is gzip'd), not CSV, rows of other widths, an empty last column (`target`: as csv_problem's,
    so that the file is read once for both)."""
    key = _file_state(path, MAX_CSV_SCANNED_BYTES)
    return _csv_problems(*key, target)[0] if key is not None else None


@functools.lru_cache(maxsize=16)
def _csv_problems(path: str, size: int, mtime_ns: int, target: str | None) -> tuple[str | None, str | None]:
    """(the layout's problem, the cells' problem) of a file of this size and time, read once per check."""
    try:
        rows = list(numbered_rows(decoded_text(Path(path).read_bytes())))
    except ValueError as e:
        return str(e), None
    except OSError:
        return None, None
    layout = layout_problem(rows)
    return layout, (_cells_problem(rows, target) if layout is None else None)


# a row of finite numbers as float() reads them (ASCII digits, at most 200 before an exponent of 2 digits:
# never beyond float64), cells joined by commas; a row that does not match is judged a cell at a time
_PLAIN_CELL = r"\s*[+-]?(?:\d{1,200}(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,2})?\s*"
_PLAIN_ROW = re.compile(rf"(?:{_PLAIN_CELL},)*{_PLAIN_CELL}", re.ASCII)


def _plain_row(features: list[str]) -> bool:
    """Every feature a finite number: a row judged at once (_PLAIN_ROW), not a cell at a time; a cell with a
    comma in it ("1,5", quoted) is judged alone."""
    joined = ",".join(features)
    return joined.count(",") == len(features) - 1 and _PLAIN_ROW.fullmatch(joined) is not None


def layout_problem(rows: list[tuple[int, list[str]]]) -> str | None:
    """Rows of another width than the first, or an empty last column (a trailing comma on every line): the
    runtime's check_rectangular and `dlc check` alike."""
    if not rows:
        return None
    first, width = rows[0][0], len(rows[0][1])
    ragged = next(((n, len(c)) for n, c in rows if len(c) != width), None)
    if ragged is not None:
        return ragged_row((first, width), *ragged)
    if width > 1 and all(not c[-1].strip() for _, c in rows):
        return TRAILING_COLUMN
    return None


def _cells_problem(rows: list[tuple[int, list[str]]], target: str | None) -> str | None:
    """A named target without a header, then the first feature cell that is not a number, then an empty or
    mixed target column, then features that are nan or infinite: in the order the runtime finds them."""
    if not rows:
        return None
    first, head = rows[0]
    header = [c.strip() for c in head] if is_header(head) else None
    t = len(head) - 1
    if target is not None:
        if header is None:
            return no_header(target, first)
        if header.count(target) != 1:
            return None  # (`dlc check` says so at the argument)
        t = header.index(target)
    body = rows[1:] if header is not None else rows
    count, first_bad = 0, (0, 0)
    for i, (line, cells) in enumerate(body):
        if _plain_row(cells[:t] + cells[t + 1:]):
            continue
        for j, cell in enumerate(cells):
            if j == t:
                continue
            if (problem := feature_cell_problem(cell)) is not None:
                return bad_feature_cell(cell_place(line, j, header), problem, i == 0 and header is None)
            if not math.isfinite(float(cell)):
                first_bad = first_bad if count else (line, j + (j < t))  # (the feature's number, from 1)
                count += 1
    return target_cells_problem([(line, cells[t].strip()) for line, cells in body], t, header) or (
        nonfinite_wording(count, f"row {first_bad[0]}", first_bad[1]) if count else None)


def target_cells_problem(cells: list[tuple[int, str]], t: int, header: list[str] | None) -> str | None:
    """An empty target cell, or a column of numbers and names ((row, stripped cell) of each row)."""
    empty = next((line for line, v in cells if not v), None)
    if empty is not None:
        return empty_target(cell_place(empty, t, header))
    if not cells:
        return None
    numeric = is_number(cells[0][1])
    other = next(((line, v) for line, v in cells if is_number(v) != numeric), None)
    return mixed_target(cells[0], other) if other is not None else None


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
    key = _file_state(path, MAX_CSV_PARSED_BYTES)
    return _csv_feature_range(*key, target) if key is not None else None


def _file_state(path: Path, limit: int) -> tuple[str, int, int] | None:
    """(path, size, modification time): a cache key that changes with the file, when it is at most `limit`
    bytes; else None, or when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns) if st.st_size <= limit else None


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
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if column is None or lo > hi:
        return None
    return lo, hi, fraction


def _csv_read(path: Path, target: str | None) -> Read | None:
    """(rows, the rows of each target value or None) of a CSV file (see _csv_counts), None when not read."""
    key = _file_state(path, MAX_CSV_BYTES)
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
    except (OSError, UnicodeDecodeError, csv.Error):
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
    """Each row of a CSV file that is not blank, as the runtime reads it: (its cells, the target column's
    index, whether it is the header), the header and the target column judged from the first row."""
    column: int | None = None
    first = True
    for cells in csv.reader(fh):
        if is_blank(cells):
            continue
        header = first and is_header(cells)
        if first:
            column, first = _target_index(cells, header, target), False
        yield cells, column, header


def _target_index(first: list[str], header: bool, target: str | None) -> int | None:
    """The target column's index: the one named `target` (once, in a header), else the last."""
    if target is None:
        return len(first) - 1
    names = [c.strip() for c in first]
    return names.index(target) if header and names.count(target) == 1 else None


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
    if encoding.startswith("utf-16"):
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
    have = path.stat().st_size - 4 - 4 * ndim if path.suffix != ".gz" else math.prod(dims)
    problem = idx_length_problem(have, math.prod(dims))
    return (problem, None) if problem is not None else (None, dims)


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
