"""A large CSV file of plain numbers read by numpy's C parser instead of the csv module's walk.

files.csv_samples reads a CSV file through compiler/csvtable.py, a Python string per cell: a 92 MB file of
500,000 rows x 21 columns took 15.6 s and 1.37 GB there, against 3.7 s and 110 MB for np.loadtxt. Most
large files are the plain kind: UTF-8 (ASCII after the header), no quotes, no blank lines, no '_', every row
as wide as the first. For those, `plain_csv` gives the same arrays with np.loadtxt, whose float parsing is
correctly rounded as float()'s (the same bits on 500,000 random numbers of every form: tests); a file that
is not plain, or any cell numpy does not read as a number, gets None, and csv_samples reads it the usual way,
which says what is wrong with it in the usual words. So every rule (the header rule, the target column, its
class names) stays csvtable's, and this is only a faster path to the same result.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.compiler.csvtable import (
    MAX_ROW_CHARS,
    CsvProblem,
    CsvTable,
    feature_columns,
    header_of,
    is_blank,
    is_number,
    target_index,
    text_encoding,
)

# files smaller than this are read the usual way (its speed is no matter there; one path is simpler to trust)
PLAIN_FROM_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"
# a line the csv module would skip as blank: spaces only (str.strip()'s ASCII whitespace)
_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c\x1c-\x1f]*(?:\n|$)")
_NOT_ASCII = re.compile(rb"[\x80-\xff]")
# a cell of digits that starts with a zero, after a comma: maybe a number split at a decimal comma
_LEADING_ZERO = re.compile(rb",[ \t]*0\d")
# a letter no number has (numbers have e, and inf, infinity and nan in any case): class names, or a bad cell
_NOT_A_NUMBER = re.compile(rb"[b-dg-hj-mo-su-xzB-DG-HJ-MO-SU-XZ]")


@dataclass
class PlainCsv:
    header: list[str] | None
    x: np.ndarray  # (rows, features) float64
    y: np.ndarray  # float64 numbers, or int64 class numbers
    class_names: list[str] | None
    lines: list[int]  # each row's line in the file


@dataclass
class PlainTable:
    """A plain file of numbers only, every column read: what `dlc predict` and `dlc evaluate --data` take,
    whose target column (if any) is decided by the model's inputs after reading."""

    header: list[str] | None
    cells: np.ndarray  # (rows, columns) float64
    lines: list[int]

    @property
    def width(self) -> int:
        return int(self.cells.shape[1])


def plain_csv(path: Path, target: str | None) -> PlainCsv | None:
    """The file's features and targets as files.csv_samples would read them, or None where the file is not
    plain (see the module's docstring) or not large; never an error of its own."""
    read = _read_plain(path)
    if read is None:
        return None
    raw, header, first, body_from, rows = read
    columns = _columns(header, first, target)
    if columns is None:
        return None
    classes = None
    if _NOT_A_NUMBER.search(raw, body_from, len(raw)):  # (a target of class names, or a bad cell)
        classes = _classes(raw[body_from:].splitlines(), columns[1])
        if classes is None:
            return None
    x = _numbers(raw, header is not None, rows, columns[0] if classes else None)
    if x is None:
        return None
    lines = _lines(header, len(x))
    if classes is not None:
        return PlainCsv(header, x, classes[0], classes[1], lines)
    features, t = columns
    return PlainCsv(header, np.ascontiguousarray(x[:, features]), np.ascontiguousarray(x[:, t]), None, lines)


def plain_numbers(path: Path) -> PlainTable | None:
    """Every cell of a large plain file of numbers only, as serve.read_features' walk reads them (the same
    header rule, the same float64 values), or None where the file is not plain, not large, or holds a cell
    that is not a number (a class name: the walk reads it and says what it is); never an error of its own."""
    read = _read_plain(path)
    if read is None:
        return None
    raw, header, _, body_from, rows = read
    if _NOT_A_NUMBER.search(raw, body_from, len(raw)):
        return None
    cells = _numbers(raw, header is not None, rows, None)
    return None if cells is None else PlainTable(header, cells, _lines(header, len(cells)))


def _read_plain(path: Path) -> tuple[bytes, list[str] | None, list[str], int, int] | None:
    """(the file's bytes, its header or None, the first row's cells, where the data rows start, how many
    there are) of a large plain file, else None."""
    try:
        if path.stat().st_size < PLAIN_FROM_BYTES:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    plain = _plain_layout(raw)
    return None if plain is None else (raw, *plain)


def _lines(header: list[str] | None, rows: int) -> list[int]:
    """Each data row's line in the file (a plain file has no blank line)."""
    first_line = 2 if header is not None else 1
    return list(range(first_line, first_line + rows))


def _plain_layout(raw: bytes) -> tuple[list[str] | None, list[str], int, int] | None:
    """(header or None, the first row's cells, where the data rows start, the data rows' count) of a plain
    file, else None: UTF-8,
    no quotes, ASCII without '_' after the first row, every line ending in \\n, no blank line, as many commas
    in each row as the first has (counted over the whole file: a row with fewer cells fails numpy's read), no
    cell of digits that starts with a zero after a comma (csvtable.split_decimal's to judge)."""
    start = len(UTF8_BOM) if raw.startswith(UTF8_BOM) else 0
    first_end = raw.find(b"\n", start)
    if text_encoding(raw[:64]) != "utf-8-sig" or first_end < 0 or b'"' in raw:
        return None
    if first_end - start > MAX_ROW_CHARS:  # (a string per cell of it: the walk names the line)
        return None
    if _LEADING_ZERO.search(raw, first_end):  # ("3,07": a decimal comma? csvtable.split_decimal judges it)
        return None
    try:
        first = next(csv.reader([raw[start:first_end].decode("utf-8").rstrip("\r")]), [])
    except (UnicodeDecodeError, csv.Error):
        return None
    header = header_of(first)
    body_from = first_end + 1 if header is not None else start
    if is_blank(first) or len(first) < 2:
        return None
    rows = _plain_rows(raw, first_end, body_from, len(first))
    return None if rows is None else (header, first, body_from, rows)


def _plain_rows(raw: bytes, first_end: int, body_from: int, width: int) -> int | None:
    """How many rows there are from `body_from` when they are plain (ASCII without '_', lines ending in \\n,
    \\r\\n included, no blank one, width - 1 commas a row on average: a row with fewer cells fails numpy's
    read), else None."""
    end = len(raw) - raw.endswith(b"\n")
    rows = raw.count(b"\n", body_from, end) + 1
    plain = not (_NOT_ASCII.search(raw, body_from) or raw.find(b"_", body_from) >= 0
                 or raw.count(b"\r") != raw.count(b"\r\n") or _BLANK_LINE.search(raw, first_end, end)
                 or raw.count(b",", body_from) != rows * (width - 1))
    return rows if plain else None


def _columns(header: list[str] | None, first: list[str], target: str | None) -> tuple[list[int], int] | None:
    """(the feature columns, the target column) by csvtable's rules, or None where it has a problem."""
    try:
        t = target_index(CsvTable(header, [first], [1]), target)
    except CsvProblem:
        return None
    return feature_columns(len(first), t), t


def _numbers(raw: bytes, header: bool, rows: int, columns: list[int] | None) -> np.ndarray | None:
    """The cells of `columns` (all of them: None) as float64 (rows, columns), or None where one is not a
    number, or a row has fewer cells (numpy read another count than the file's `rows`). (From the bytes
    read once: the file may change meanwhile.)"""
    try:
        x = np.loadtxt(io.BytesIO(raw), delimiter=",", comments=None, quotechar=None, dtype=np.float64,
                       ndmin=2, usecols=columns, skiprows=int(header), encoding="utf-8-sig")
    except (ValueError, OSError):
        return None
    return x if len(x) == rows else None


def _classes(lines: list[bytes], t: int) -> tuple[np.ndarray, list[str]] | None:
    """Column t of the lines: class names numbered in sorted order (files.target_values), or None where one
    is empty, a number (csvtable.target_cells says which) or missing."""
    try:
        cells = [line.split(b",")[t].decode("ascii").strip() for line in lines]
    except IndexError:
        return None
    if any(not c or is_number(c) for c in cells):
        return None
    names = sorted(set(cells))
    number = {name: k for k, name in enumerate(names)}
    return np.array([number[v] for v in cells]), names
