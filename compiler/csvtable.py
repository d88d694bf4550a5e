"""dlc's CSV reader: the one walk over a CSV file's rows and cells. `dlc check` (csv_problem, which
compiler/sourcechecks.py calls for a file of at most MAX_CSV_SCANNED_BYTES, and the first-row checks there;
datarows.py counts rows and classes through numbered_rows and target_index) and the runtime
(dlc/runtime/data/files.py's read_table, target_column, table_numbers, target_values, which a run, `dlc
predict` and `dlc evaluate` read through, and the emitted scripts copy) both call it, so a rule (the
encodings, the header rule, blank lines, a quote left open, rows of other widths, trailing commas, which cell
is no number, a target of numbers and names) is made here once, and said in one wording (README, "Data
files"). The standard library only: the runtime makes arrays of the cells judged here, and `dlc check`
imports no more than the compiler.

The stages, each raising CsvProblem (its text without the file's name, which each caller puts before it):
parse_table (the text, the rows, the layout and the header rule), target_index, scan_features (the first
feature cell that is not a number, and the count of those that are nan or infinite: the run finds those in
its arrays, dlc/runtime/data/normalize.py, in nonfinite_wording's words), target_cells. table_problem runs
them in the order a run meets them: what `dlc check` says of a file's cells."""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import DlcError

# the largest CSV file whose every cell `dlc check` judges as the runtime will (csv_problem: about 0.4 s for
# 4 MB); a larger one's cells are judged by the run
MAX_CSV_SCANNED_BYTES = 4 * 2**20


class CsvProblem(DlcError, ValueError):
    """What a CSV file breaks, in the words of `dlc check` and the runtime, without the file's name: `lead`
    joins it to the name ("d.csv: row 3 ...", "d.csv has 2 columns named ..."). `stage`: "layout" (the text,
    not CSV, rows of other widths, trailing commas), "empty" (no rows, or a header alone), "target" (a named
    target column that is not there, or is there twice: `dlc check` says it at the argument) or "cells"."""

    def __init__(self, text: str, stage: str, lead: str = ": ") -> None:
        super().__init__(text)
        self.stage, self.lead = stage, lead


def text_encoding(head: bytes) -> str:
    """The encoding of a text file from its first bytes: UTF-16 by its byte-order mark, or without one by
    its zero bytes (a spreadsheet's "Unicode text" export; ASCII in UTF-16 has every other byte 0), else
    UTF-8 (a UTF-8 byte-order mark skipped). UTF-32 (by its mark or its zero bytes) is named "utf-32", which
    decoded_text refuses: read as UTF-16 or UTF-8 its text was rows of NULs."""
    if head[:4] in (b"\xff\xfe\0\0", b"\0\0\xfe\xff"):  # (UTF-32's marks; FF FE starts UTF-16's too)
        return "utf-32"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    quads = head[:len(head) // 4 * 4]
    if quads and not any(quads[1::4] + quads[2::4]) and (
            (all(quads[0::4]) and not any(quads[3::4])) or (all(quads[3::4]) and not any(quads[0::4]))):
        return "utf-32"  # (ASCII in UTF-32: three zero bytes to each character's one)
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


def header_of(first: list[str]) -> list[str] | None:
    """The column names (stripped) when the first row is a header by the header rule, else None (data)."""
    return [c.strip() for c in first] if is_header(first) else None


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
    if encoding == "utf-32":  # (read as UTF-16 it made rows of NULs: "row 62 has 1 column")
        raise ValueError("UTF-32 text, which dlc does not read; save the file as UTF-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        if encoding.startswith("utf-16"):
            raise ValueError(f"not valid UTF-16 text (it starts as UTF-16, but byte {e.start} is not); save "
                             "the file as UTF-8") from None
        row = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} in row {row}); save the file as "
                         "UTF-8") from None


# the longest line a CSV row may be, in characters (150,528 features of 224x224x3 pixels take ~1.5 MB): the
# reader makes a string per cell, so a 200 MB line of "1," took 4 GB before it was found to be no table
MAX_ROW_CHARS = 16 * 2**20


def _bounded_lines(lines: Iterable[str]) -> Iterator[str]:
    """The lines, each no longer than MAX_ROW_CHARS, else ValueError naming it, before the CSV reader splits
    it into cells."""
    for n, line in enumerate(lines, 1):
        if len(line) > MAX_ROW_CHARS:
            raise ValueError(f"row {n} is {len(line):,} characters long, more than the {MAX_ROW_CHARS:,} a "
                             "CSV row may be; save one sample per line")
        yield line


def numbered_rows(text: str | Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every row of a CSV text (or an open file's lines) that is not blank, rows
    numbered as lines of the file; ValueError for text that is not CSV, or of a line beyond MAX_ROW_CHARS."""
    reader = csv.reader(_bounded_lines(io.StringIO(text, newline="") if isinstance(text, str) else text))
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


def _open_quote(line: int, cells: list[str]) -> str:
    """Why a row of another width may be so: a cell that runs on across line breaks, which a quote left open
    makes (the reader joins every line up to the next quote, or the end of the file, into that cell)."""
    broken = next((c for c in cells if "\n" in c or "\r" in c), None)
    if broken is None:
        return ""
    lines = broken.count("\n") + broken.replace("\r\n", "\n").count("\r")
    breaks = f"{lines} line break{'s' * (lines != 1)}"
    return f"; row {line} has a quote left open (one cell runs on across {breaks}): close or remove the quote"


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


# ------------------------------------------------------------------------------------------------ the walk


@dataclass
class CsvTable:
    """A CSV file's cells by the header rule: the column names (None when the first row is data) and the data
    rows, each with its row number in the file."""

    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]

    @property
    def width(self) -> int:
        return len(self.rows[0])


def layout_problem(rows: list[tuple[int, list[str]]]) -> str | None:
    """Rows of another width than the first, or an empty last column (a trailing comma on every line)."""
    if not rows:
        return None
    first, width = rows[0][0], len(rows[0][1])
    ragged = next(((n, c) for n, c in rows if len(c) != width), None)
    if ragged is not None:
        return (ragged_row((first, width), ragged[0], len(ragged[1])) + _open_quote(ragged[0], ragged[1])
                + _split_at_decimal_commas(rows[0][1], *ragged))
    if width > 1 and all(not c[-1].strip() for _, c in rows):
        return TRAILING_COLUMN
    return None


def _split_at_decimal_commas(first: list[str], line: int, cells: list[str]) -> str:
    """Why a data row may be wider than the header: its numbers written with decimal commas ('3,07'), each
    split into two cells. Said when every cell of the row is a whole number (a row with a decimal point in
    it was not written so); split_decimal judges a file without a header."""
    if len(cells) <= len(first) or header_of(first) is None \
            or not all(_WHOLE_CELL.fullmatch(c) for c in cells):
        return ""
    k = next((k for k in range(len(cells) - 1) if _LEADING_ZERO_CELL.fullmatch(cells[k + 1])), 0)
    a, b = cells[k].strip(), cells[k + 1].strip()
    return (f"; row {line} holds whole numbers only: numbers written with a decimal comma ({a},{b}), each "
            f"split in two? write numbers with a decimal point ({a}.{b})")


def parse_table(raw: bytes) -> CsvTable:
    """A CSV file's bytes as a table: UTF-8 or UTF-16 text (decoded_text), CSV (numbered_rows), every row as
    wide as the first and a last column not empty in every row (layout_problem), the header rule, at least
    one data row. CsvProblem saying why not."""
    try:
        records = list(numbered_rows(decoded_text(raw)))
    except ValueError as e:
        raise CsvProblem(str(e), "layout") from None
    if not records:
        raise CsvProblem("the file is empty (no rows)", "empty")
    layout = layout_problem(records)
    if layout is not None:
        raise CsvProblem(layout, "layout")
    header = header_of(records[0][1])
    body = records[1:] if header is not None else records
    if header is not None and not body:
        raise CsvProblem(f"no data rows, only a header row ({', '.join(header)})", "empty")
    return CsvTable(header, [cells for _, cells in body], [line for line, _ in body])


def target_index(table: CsvTable, target: str | None) -> int:
    """The index of the target column: the one named `target` (in a header, once), else the last."""
    if target is None:
        return table.width - 1
    if table.header is None:
        raise CsvProblem(no_header(target, table.lines[0]), "cells")
    if target not in table.header:
        raise CsvProblem(f"no column '{target}' (columns: {', '.join(table.header)})", "target")
    twice = duplicate_target(table.header, target)
    if twice is not None:
        raise CsvProblem(f"{twice}; {DUPLICATE_HINT}", "target", " has ")
    return table.header.index(target)


# a row of finite numbers as float() reads them (ASCII digits, at most 200 before an exponent of 2 digits:
# never beyond float64), cells joined by commas; a row that does not match is judged a cell at a time
_PLAIN_CELL = r"\s*[+-]?(?:\d{1,200}(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,2})?\s*"
_PLAIN_ROW = re.compile(rf"(?:{_PLAIN_CELL},)*{_PLAIN_CELL}", re.ASCII)


def _plain_row(features: list[str]) -> bool:
    """Every feature a finite number: a row judged at once (_PLAIN_ROW), not a cell at a time; a cell with a
    comma in it ("1,5", quoted) is judged alone."""
    joined = ",".join(features)
    return joined.count(",") == len(features) - 1 and _PLAIN_ROW.fullmatch(joined) is not None


@dataclass
class FeatureScan:
    """What scan_features found: the first feature cell that is not a number (its words, with its place), and
    the feature values that are numbers but nan or infinite (how many; the first's row and feature)."""

    problem: str | None
    nonfinite: int
    first_nonfinite: tuple[int, int]  # (row, feature from 1, the target column left out)

    def nonfinite_problem(self) -> str | None:
        if not self.nonfinite:
            return None
        return nonfinite_wording(self.nonfinite, f"row {self.first_nonfinite[0]}", self.first_nonfinite[1])


_WHOLE_CELL = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
_LEADING_ZERO_CELL = re.compile(r"\s*0\d+\s*", re.ASCII)


def split_decimal(table: CsvTable, columns: list[int]) -> str | None:
    """A whole number, then a cell of digits that starts with a zero ('3', '07'): one number written with a
    decimal comma (3,07) and split at it, as no program writes 7 as '07'. Every cell was a number, so a file
    without a header, its rows as wide as each other, trained on twice the features without a word. (With a
    header, the rows are wider than it: the layout's error; zero-padded whole numbers under a header, such as
    a month '01' after a year, are not judged.)"""
    pairs = [k for k in range(len(columns) - 1) if columns[k + 1] == columns[k] + 1]
    if not pairs or table.header is not None:
        return None
    for i, cells in enumerate(table.rows):
        if ",0" not in ",".join(cells).replace(" ", ""):
            continue
        for k in pairs:
            a, b = cells[columns[k]], cells[columns[k] + 1]
            if _LEADING_ZERO_CELL.fullmatch(b) and _WHOLE_CELL.fullmatch(a):
                a, b = a.strip(), b.strip()
                return (f"row {table.lines[i]}, columns {columns[k] + 1} and {columns[k] + 2} ({a!r} and "
                        f"{b!r}) look like one number written with a decimal comma ({a},{b}), split at it; "
                        f"write numbers with a decimal point ({a}.{b})")
    return None


def scan_features(table: CsvTable, columns: list[int]) -> FeatureScan:
    """The feature cells (`columns` of every data row), walked in the file's order: the first that is not a
    number ends the walk (feature_cell_problem, at its place); a number split at a decimal comma
    (split_decimal) is named first."""
    if (split := split_decimal(table, columns)) is not None:
        return FeatureScan(split, 0, (0, 0))
    count, first_bad = 0, (0, 0)
    for i, cells in enumerate(table.rows):
        features = [cells[j] for j in columns]
        if _plain_row(features):
            continue
        for k, cell in enumerate(features):
            if (problem := feature_cell_problem(cell)) is not None:
                place = cell_place(table.lines[i], columns[k], table.header)
                return FeatureScan(bad_feature_cell(place, problem, i == 0 and table.header is None), count,
                                   first_bad)
            if not math.isfinite(float(cell)):
                first_bad = first_bad if count else (table.lines[i], k + 1)
                count += 1
    return FeatureScan(None, count, first_bad)


def target_cells(table: CsvTable, t: int) -> list[str]:
    """The target column's cells, stripped; CsvProblem for an empty one, or a column of numbers and names."""
    cells = [r[t].strip() for r in table.rows]
    if "" in cells:
        line = table.lines[cells.index("")]
        raise CsvProblem(empty_target(cell_place(line, t, table.header)), "cells")
    if cells:
        numeric = is_number(cells[0])
        other = next((i for i, v in enumerate(cells) if is_number(v) != numeric), None)
        if other is not None:
            raise CsvProblem(mixed_target((table.lines[0], cells[0]), (table.lines[other], cells[other])),
                             "cells")
    return cells


def feature_columns(width: int, t: int | None) -> list[int]:
    """Every column but the target's."""
    return [j for j in range(width) if j != t]


def table_problem(table: CsvTable, target: str | None) -> str | None:
    """What a run refuses in a table's cells, in its order: a named target without a header, the first
    feature cell that is not a number, an empty or mixed target column, then features that are nan or
    infinite. A named target that is missing or there twice is None here (`dlc check` says it at the
    argument)."""
    try:
        t = target_index(table, target)
        scan = scan_features(table, feature_columns(table.width, t))
        if scan.problem is not None:
            return scan.problem
        target_cells(table, t)
    except CsvProblem as e:
        return str(e) if e.stage == "cells" else None
    return scan.nonfinite_problem()


# ------------------------------------------------------------------------------------------ for `dlc check`


def file_state(path: Path, limit: int) -> tuple[str, int, int] | None:
    """(path, size, modification time): a cache key that changes with the file, when it is at most `limit`
    bytes; else None, or when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns) if st.st_size <= limit else None


def csv_problem(path: Path, target: str | None) -> str | None:
    """What the runtime would refuse in a CSV file small enough to be judged cell by cell
    (MAX_CSV_SCANNED_BYTES), in its words, without the file's name: its layout (csv_layout_problem), a named
    target without a header, a feature cell that is no finite number, an empty target or one mixing numbers
    and names; None when none (or not judged), so that `dlc check` says what a run would fail on."""
    key = file_state(path, MAX_CSV_SCANNED_BYTES)
    found = _csv_problems(*key, target) if key is not None else None
    return (found[0] or found[1]) if found is not None else None


def csv_layout_problem(path: Path, target: str | None) -> str | None:
    """What the runtime refuses of a small CSV file before it looks for the target: text that is not UTF-8
    or UTF-16 (or is gzip'd), not CSV, rows of other widths, an empty last column (`target`: as csv_problem's,
    so that the file is read once for both)."""
    key = file_state(path, MAX_CSV_SCANNED_BYTES)
    return _csv_problems(*key, target)[0] if key is not None else None


@functools.lru_cache(maxsize=16)
def _csv_problems(path: str, size: int, mtime_ns: int, target: str | None) -> tuple[str | None, str | None]:
    """(the layout's problem, the cells' problem) of a file of this size and time, read once per check (an
    empty file, or a header alone, is said by the checks of the first row and of the rows)."""
    try:
        table = parse_table(Path(path).read_bytes())
    except CsvProblem as e:
        return (str(e) if e.stage == "layout" else None), None
    except OSError:
        return None, None
    return None, table_problem(table, target)
