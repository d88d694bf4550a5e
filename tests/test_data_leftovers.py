"""Data-source leftovers: features of no values (shape (n, 0)) in an npz or npy source, CSV column names used
twice, and CSV details a user meets (a byte-order mark, CRLF, quoted cells, blank lines, a comma at the end of
every line, missing-value markers, decimal commas, numbers beyond float64, a target of numbers and names,
class names that differ only in case or spaces, gzip'd and Latin-1 files). What the run would refuse,
`dlc check` refuses first (a small file), in the runtime's words; what reads, reads as its plain twin."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from test_data_sources_hostile import write_spec as source_spec

import dlc
from dlc.runtime.data import DataError, prepare, read_npy, read_npz

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_RNG = np.random.default_rng(0)
ROWS = 30
VALUES = np.round(_RNG.normal(size=(ROWS, 3)), 3)
LABELS = np.arange(ROWS) % 2


def write_spec(folder: Path, source: str, *, units: int = 2) -> Path:
    """The data-source tests' spec (test_data_sources_hostile.write_spec), over this file's 3 features."""
    return source_spec(folder, source, inputs="(3)", units=units)


def csv_text(header: str | None = "a,b,c,label", labels=LABELS, end: str = "\n") -> str:
    lines = [header] if header else []
    lines += [",".join(f"{v:g}" for v in row) + f",{y}" for row, y in zip(VALUES, labels, strict=True)]
    return end.join(lines) + end


def with_cell(text: str, line: int, column: int, cell: str) -> str:
    """`text` with the cell at `line` (from 1) and `column` (from 1) replaced."""
    lines = text.split("\n")
    cells = lines[line - 1].split(",")
    cells[column - 1] = cell
    lines[line - 1] = ",".join(cells)
    return "\n".join(lines)


def check(spec: Path) -> tuple[int, str]:
    rc, _, err = run_cli("check", "-q", spec)
    assert "Traceback" not in err, err
    return rc, err


# ------------------------------------------------------------------- 1. features of no values (shape (n, 0))

NO_FEATURES = "holds samples with no features (shape (10, 0)): each sample has 0 values"


@pytest.mark.parametrize("source", ['npz("d.npz")', 'npy("x.npy", "y.npy")'])
def test_features_of_no_values_are_named_not_an_input_of_zero(tmp_path, source):
    x, y = np.zeros((10, 0)), np.arange(10) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    rc, err = check(write_spec(tmp_path, source))
    assert rc == 2 and "error[E401]" in err and NO_FEATURES in err, err
    assert "use input: (0)" not in err and "E303" not in err, err
    assert ":4:" in err.splitlines()[1], err  # (at the source, not at input:)


def test_the_readers_say_it_in_the_same_words(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 0)), y=np.arange(10))
    np.save(tmp_path / "x.npy", np.zeros((10, 0)))
    np.save(tmp_path / "y.npy", np.arange(10))
    with pytest.raises(DataError, match=r"d\.npz: array 'x' holds samples with no features \(shape \(10, 0"):
        read_npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"x\.npy: holds samples with no features \(shape \(10, 0\)\)"):
        read_npy(tmp_path / "x.npy", tmp_path / "y.npy")


# ------------------------------------------------------------------------------- 2. column names used twice


def test_a_target_name_used_twice_names_both_columns_in_check_and_run(tmp_path):
    fact = "2 columns named 'label' (columns 2 and 4): the target is ambiguous"
    spec = write_spec(tmp_path, 'csv("d.csv", target="label")')
    (tmp_path / "d.csv").write_text(csv_text())
    loaded = dlc.load(spec)
    (tmp_path / "d.csv").write_text(csv_text("a,label,c,label"))
    rc, err = check(spec)
    assert rc == 2 and "error[E401]" in err and fact in err, err
    assert "rename the columns so that each name is used once" in err
    with pytest.raises(DataError, match=r"d\.csv has 2 columns named 'label' \(columns 2 and 4\)"):
        prepare(loaded, tmp_path)


def test_a_feature_name_used_twice_is_a_warning(tmp_path):
    """Features are read by position, so the run is not wrong; but one column written twice (a join, a copy)
    or a name mistyped is the likely cause, and is said."""
    (tmp_path / "d.csv").write_text(csv_text("a,b,a,label"))
    rc, err = check(write_spec(tmp_path, 'csv("d.csv", target="label")'))
    assert rc == 0 and "warning[W017]" in err and "'a' (columns 1 and 3)" in err, err
    (tmp_path / "d.csv").write_text(csv_text("a,b,c,label"))
    assert "W017" not in check(tmp_path / "m.dlspec")[1]


# ------------------------------------------------------- 3. CSV files the run refuses: check says it first

BAD = {
    "NA": (with_cell(csv_text(), 7, 2, "NA"), "row 7, column 2 ('b') is 'NA', a missing value; fill or drop"),
    "question mark": (with_cell(csv_text(), 7, 2, "?"), "row 7, column 2 ('b') is '?', a missing value"),
    "empty": (with_cell(csv_text(), 7, 2, ""), "row 7, column 2 ('b') is empty (a missing value)"),
    "decimal comma": (with_cell(csv_text(), 3, 1, '"1,5"'),
                      "row 3, column 1 ('a') is not a number ('1,5'): a thousands separator or a decimal"),
    "nan": (with_cell(csv_text(), 5, 3, "nan"),
            "1 feature value(s) are missing or not finite (the first in row 5, feature 3)"),
    "1e400": (with_cell(csv_text(), 4, 2, "1e400"),
              "1 feature value(s) are missing or not finite (the first in row 4, feature 2)"),
    "names and numbers": (with_cell(csv_text(), 8, 4, "cat"),
                          "the target column mixes numbers and names (row 2: '0', row 8: 'cat')"),
    "a comma ending every line": ("".join(line + ",\n" for line in csv_text().splitlines()),
                                  "every row ends with a comma (an empty last column"),
    "a quote left open": (csv_text() + '0.5,"1,2,1\n',
                          f"rows have different numbers of columns: row {ROWS + 2} has 2, row 1 has 4"),
    "an empty header cell": (csv_text("a,,c,label"), "the spec names the target column 'label', but the file "
                             "has no header row (row 1 has a number or an empty cell, so it is data)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_what_the_run_refuses_check_refuses_in_its_words(tmp_path, case):
    text, fact = BAD[case]
    spec = write_spec(tmp_path, 'csv("d.csv", target="label")')
    (tmp_path / "d.csv").write_text(csv_text())
    loaded = dlc.load(spec)  # (the file as it was, then changed: the run reads the new one)
    (tmp_path / "d.csv").write_text(text)
    rc, err = check(spec)
    assert rc == 2 and "error[E401]" in err and f"'d.csv': {fact}" in err, err
    with pytest.raises(DataError) as e:
        prepare(loaded, tmp_path)
    assert f"d.csv: {fact}" in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("content, fact", [
    (gzip.compress(csv_text().encode()), "gzip-compressed, not CSV text; decompress it first"),
    (csv_text(labels=["caf\u00e9", "th\u00e9"] * (ROWS // 2)).encode("latin-1"),
     "not UTF-8 text (byte 0xe9 in row 2); save the file as UTF-8"),
])
def test_a_file_that_is_not_csv_text_is_named_alike(tmp_path, content, fact):
    spec = write_spec(tmp_path, 'csv("d.csv", target="label")')
    (tmp_path / "d.csv").write_text(csv_text())
    loaded = dlc.load(spec)
    (tmp_path / "d.csv").write_bytes(content)
    rc, err = check(spec)
    assert rc == 2 and fact in err and "codec" not in err, err
    with pytest.raises(DataError, match=fact.replace("(", r"\(").replace(")", r"\)")):
        prepare(loaded, tmp_path)


# ---------------------------------------------------------------------- CSV details that read as they should


def test_bom_crlf_blank_lines_and_a_quoted_header_read_as_the_plain_file(tmp_path):
    plain = write_spec(tmp_path, 'csv("plain.csv", target="label")')
    (tmp_path / "plain.csv").write_text(csv_text())
    want = prepare(dlc.load(plain), tmp_path)
    lines = csv_text('"a,1",b,c,label').splitlines()
    odd = "\ufeff" + "\r\n".join(lines[:5] + ["", "  "] + lines[5:]) + "\r\n\r\n\n"
    (tmp_path / "odd.csv").write_bytes(odd.encode("utf-8"))
    spec = write_spec(tmp_path, 'csv("odd.csv", target="label")')
    rc, err = check(spec)
    assert rc == 0, err
    got = prepare(dlc.load(spec), tmp_path)
    assert got.read["rows"] == ROWS and got.read["header"] is True
    np.testing.assert_array_equal(got.train.x, want.train.x)
    np.testing.assert_array_equal(got.train.y, want.train.y)


def test_class_names_that_differ_only_in_spaces_are_one_class_in_case_two_and_said(tmp_path):
    names = ["cat", "cat ", " dog"] * (ROWS // 3)
    (tmp_path / "d.csv").write_text(csv_text(labels=names))
    spec = write_spec(tmp_path, 'csv("d.csv", target="label")')
    rc, err = check(spec)
    assert rc == 0 and "W018" not in err, err
    assert prepare(dlc.load(spec), tmp_path).class_names == ["cat", "dog"]
    (tmp_path / "d.csv").write_text(csv_text(labels=["cat", "Cat", "dog"] * (ROWS // 3)))
    spec = write_spec(tmp_path, 'csv("d.csv", target="label")', units=3)
    rc, err = check(spec)
    assert rc == 0 and "warning[W018]" in err and "'Cat' and 'cat'" in err, err
    with pytest.warns(UserWarning, match="W018"):
        loaded = dlc.load(spec)
    assert prepare(loaded, tmp_path).class_names == ["Cat", "cat", "dog"]
