"""`dlc check` and a run read a CSV file with one reader (compiler/csvtable.py): on each bad file of the table
below, check's E401 and the run's one error line name the same row, column and problem, in the same words.

The run is `dlc run --backend torch --epochs 1` with check's cell scan turned off (MAX_CSV_SCANNED_BYTES 0, as
for a file over 4 MB), so that the runtime's reader, not the check inside `dlc run`, meets the bad cell. A
problem of the first row (the header, the target's name, the encoding) is refused by that check at any size,
so there the runtime's words come from the API's prepare() on a spec loaded while the file was still good."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from test_data_leftovers import ROWS, csv_text, with_cell, write_spec

import dlc
from dlc.compiler import csvtable
from dlc.runtime.data import DataError, prepare

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crlf_with_blank_lines(text: str) -> str:
    """`text` with CRLF line breaks and two blank lines after the header: rows are still numbered as lines."""
    lines = text.split("\n")
    return "\r\n".join(lines[:1] + ["", "  "] + lines[1:])


def _open_quote() -> str:
    return csv_text() + '0.5,"1,2,1\n'


def _target_second(text: str) -> str:
    """`text` with its last column (the target) moved to be the second."""
    rows = [line.split(",") for line in text.split("\n")]
    return "\n".join(",".join([r[0], r[-1], *r[1:-1]]) if len(r) > 1 else r[0] for r in rows)


def _extra_cell() -> str:
    lines = csv_text().split("\n")
    lines[10] += ",9"
    return "\n".join(lines)


# case: (the file's content, its source in the spec, the fact both must say, without the file's name)
CELLS = {
    "NA": (with_cell(csv_text(), 7, 2, "NA"), None,
           "row 7, column 2 ('b') is 'NA', a missing value; fill or drop it"),
    "question mark": (with_cell(csv_text(), 9, 1, "?"), None,
                      "row 9, column 1 ('a') is '?', a missing value"),
    "N/A": (with_cell(csv_text(), 12, 3, "N/A"), None, "row 12, column 3 ('c') is 'N/A', a missing value"),
    "empty feature": (with_cell(csv_text(), 4, 3, ""), None,
                      "row 4, column 3 ('c') is empty (a missing value); fill or drop it"),
    "decimal comma": (with_cell(csv_text(), 3, 1, '"1,5"'), None,
                      "row 3, column 1 ('a') is not a number ('1,5'): a thousands separator or a decimal "
                      "comma?"),
    "thousands separator": (with_cell(csv_text(), 5, 2, '"1,234.5"'), None,
                            "row 5, column 2 ('b') is not a number ('1,234.5'): a thousands separator"),
    "text": (with_cell(csv_text(), 6, 2, "abc"), None, "row 6, column 2 ('b') is not a number ('abc')"),
    "underscore": (with_cell(csv_text(), 6, 1, "1_000"), None,
                   "row 6, column 1 ('a') is not a number ('1_000')"),
    "other script's digit": (with_cell(csv_text(), 8, 3, "\u0661"), None,
                             "row 8, column 3 ('c') is not a number ('\u0661')"),
    "nan": (with_cell(csv_text(), 5, 3, "nan"), None,
            "1 feature value(s) are missing or not finite (the first in row 5, feature 3)"),
    "two infinities": (with_cell(with_cell(csv_text(), 12, 2, "inf"), 8, 1, "-inf"), None,
                       "2 feature value(s) are missing or not finite (the first in row 8, feature 1)"),
    "1e400": (with_cell(csv_text(), 4, 2, "1e400"), None,
              "1 feature value(s) are missing or not finite (the first in row 4, feature 2)"),
    "target of numbers and names": (with_cell(csv_text(), 8, 4, "cat"), None,
                                    "the target column mixes numbers and names (row 2: '0', row 8: 'cat')"),
    "empty target": (with_cell(csv_text(), 10, 4, ""), None,
                     "row 10, column 4 ('label') is empty: the target is missing"),
    "a quote left open": (_open_quote(), None,
                          f"rows have different numbers of columns: row {ROWS + 2} has 2, row 1 has 4"),
    "a row with a cell more": (_extra_cell(), None,
                               "rows have different numbers of columns: row 11 has 5, row 1 has 4"),
    "UTF-16": (with_cell(csv_text(), 7, 2, "NA").encode("utf-16"), None,
               "row 7, column 2 ('b') is 'NA', a missing value"),
    "CRLF and blank lines": (_crlf_with_blank_lines(with_cell(csv_text(), 7, 2, "x")), None,
                             "row 9, column 2 ('b') is not a number ('x')"),
    "target in the middle": (with_cell(_target_second(csv_text()), 6, 4, "nan"), None,
                             "1 feature value(s) are missing or not finite (the first in row 6, feature 3)"),
    "no header, a bad first row": (with_cell(csv_text(None), 1, 2, "x"), 'csv("d.csv")',
                                   "row 1, column 2 is not a number ('x'); the first row is read as data"),
}

# problems of the first row: `dlc check` (and so `dlc run`) refuses them at any size
FIRST_ROW = {
    "an empty header cell": (csv_text("a,,c,label"), None,
                             "the spec names the target column 'label', but the file has no header row "
                             "(row 1 has a number or an empty cell, so it is data)"),
    "no header after blank lines": ("\n\n" + csv_text(None), None,
                                    "the spec names the target column 'label', but the file has no header "
                                    "row (row 3 has"),
    "the target named twice": (csv_text("a,label,c,label"), None,
                               "2 columns named 'label' (columns 2 and 4): the target is ambiguous"),
    "gzip": (gzip.compress(csv_text().encode()), None, "gzip-compressed, not CSV text; decompress it first"),
    "Latin-1": (csv_text(labels=["caf\u00e9", "th\u00e9"] * (ROWS // 2)).encode("latin-1"), None,
                "not UTF-8 text (byte 0xe9 in row 2); save the file as UTF-8"),
}


def _write(folder: Path, content: str | bytes) -> None:
    path = folder / "d.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode())


def _check(spec: Path, fact: str) -> None:
    rc, _, err = run_cli("check", "-q", spec)
    assert "Traceback" not in err, err
    assert rc == 2 and "error[E401]" in err, err
    said = err.replace("' has ", "': ")  # ("'d.csv' has 2 columns named ...", at target=)
    assert f"'d.csv': {fact}" in said, err


@pytest.mark.parametrize("case", list(CELLS))
def test_check_and_run_name_the_same_cell(tmp_path, monkeypatch, case):
    content, source, fact = CELLS[case]
    spec = write_spec(tmp_path, source or 'csv("d.csv", target="label")')
    _write(tmp_path, content)
    _check(spec, fact)
    monkeypatch.setattr(csvtable, "MAX_CSV_SCANNED_BYTES", 0)  # (as for a file over 4 MB)
    rc, _, err = run_cli("run", spec, "--backend", "torch", "--epochs", "1", "--out", tmp_path / "run")
    lines = [line for line in err.splitlines() if line.startswith("dlc: error:")]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "d.csv: " + fact in lines[0].replace("d.csv has ", "d.csv: "), err


@pytest.mark.parametrize("case", list(FIRST_ROW))
def test_check_and_the_runtime_name_the_same_first_row_problem(tmp_path, case):
    content, source, fact = FIRST_ROW[case]
    spec = write_spec(tmp_path, source or 'csv("d.csv", target="label")')
    _write(tmp_path, csv_text())
    loaded = dlc.load(spec)  # (the file as it was, then changed: the run reads the new one)
    _write(tmp_path, content)
    _check(spec, fact)
    with pytest.raises(DataError) as e:
        prepare(loaded, tmp_path)
    said = str(e.value).replace("d.csv has ", "d.csv: ")
    assert "d.csv: " + fact in said and "\n" not in said, said


def test_the_check_and_the_runtime_call_one_reader():
    """Neither side keeps a walk of its own: the runtime's reader and check's scan are csvtable's."""
    import inspect

    from dlc.compiler import datarows, sourcechecks
    from dlc.runtime.data import files

    for module in (datarows, sourcechecks, files):
        source = inspect.getsource(module)
        assert "csv.reader(" not in source and "feature_cell_problem(" not in source, module.__name__
        assert "from dlc.compiler.csvtable import" in source or "from .csvtable import" in source
