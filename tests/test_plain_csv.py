"""A large plain CSV file is read by numpy's parser (dlc/runtime/data/plaincsv.py): the same samples as
csvtable's cell-by-cell walk, bit for bit; a file that is not plain is read by the walk, with its messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlc.runtime.data import DataError
from dlc.runtime.data.files import csv_samples, walked_csv_samples
from dlc.runtime.data.plaincsv import PLAIN_FROM_BYTES, plain_csv

ROWS = 14_000  # (over PLAIN_FROM_BYTES with 8 columns of numbers)


def _numbers(rng, n: int, d: int) -> list[list[str]]:
    """Cells of numbers in the forms CSV writers use: %.17g, %.6g, fixed, exponents, signs, integers."""
    v = rng.standard_normal((n, d)) * 10.0 ** rng.integers(-8, 8, (n, d))
    forms = ["{:.17g}", "{:.6g}", "{:.3f}", "{:.4e}", "{:+.2E}", "{:.0f}", "{!r}"]
    pick = rng.integers(0, len(forms), (n, d))
    return [[forms[pick[i, j]].format(float(v[i, j])) for j in range(d)] for i in range(n)]


def _write(path: Path, header: list[str] | None, rows: list[list[str]], newline: str = "\n",
           bom: bool = False, end: str = "\n") -> Path:
    lines = ([",".join(header)] if header else []) + [",".join(r) for r in rows]
    data = newline.join(lines) + end
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    assert path.stat().st_size >= PLAIN_FROM_BYTES
    return path


def _same(path: Path, target: str | None = None) -> None:
    assert plain_csv(path, target) is not None  # (the fast path was taken)
    fast, walked = csv_samples(path, target), walked_csv_samples(path, target)
    assert fast.x.dtype == walked.x.dtype and fast.y.dtype == walked.y.dtype
    assert fast.x.tobytes() == walked.x.tobytes() and fast.y.tobytes() == walked.y.tobytes()
    assert fast.x.shape == walked.x.shape and fast.x.flags.c_contiguous
    assert (fast.where, fast.lines, fast.class_names, fast.header) == \
           (walked.where, walked.lines, walked.class_names, walked.header)


@pytest.fixture(scope="module")
def cells():
    return _numbers(np.random.default_rng(5), ROWS, 8)


def test_numbers_with_a_header_and_the_last_column_the_target(tmp_path, cells):
    _same(_write(tmp_path / "a.csv", [f"f{j}" for j in range(8)], cells))


def test_a_named_target_in_the_middle_without_a_trailing_newline(tmp_path, cells):
    _same(_write(tmp_path / "a.csv", [f"f{j}" for j in range(8)], cells, end=""), target="f3")


def test_no_header_crlf_and_a_byte_order_mark(tmp_path, cells):
    _same(_write(tmp_path / "a.csv", None, cells, newline="\r\n", bom=True, end="\r\n"))


def test_class_names_as_the_target(tmp_path, cells):
    rng = np.random.default_rng(1)
    names = np.array(["setosa", "versicolor", " virginica ", "Zebra"])[rng.integers(0, 4, ROWS)]
    rows = [r[:7] + [str(n)] for r, n in zip(cells, names, strict=True)]
    _same(_write(tmp_path / "a.csv", [f"f{j}" for j in range(7)] + ["species"], rows), target="species")


def test_nan_and_inf_cells_are_read_as_the_walk_reads_them(tmp_path, cells):
    rows = [list(r) for r in cells]
    rows[3][2], rows[70][0], rows[900][5] = "nan", "-inf", "Infinity"
    _same(_write(tmp_path / "a.csv", [f"f{j}" for j in range(8)], rows))


@pytest.mark.parametrize("edit,message", [
    (lambda rows: rows[500].__setitem__(2, "NA"), "row 502"),  # a missing value
    (lambda rows: rows[500].__setitem__(2, ""), "row 502"),  # an empty cell
    (lambda rows: rows[500].append("1"), "row 502"),  # a row of another width
    (lambda rows: rows[500].pop(), "row 502"),
    (lambda rows: rows[500].__setitem__(7, "cat"), "row 502"),  # a target of numbers and a name
    (lambda rows: rows[500].__setitem__(1, "1_000"), "row 502"),  # float() reads it; a CSV means text
    (lambda rows: rows[500].__setitem__(1, "\u0663"), "row 502"),  # an Arabic-Indic 3
])
def test_a_file_that_is_not_plain_gets_the_walks_message(tmp_path, cells, edit, message):
    rows = [list(r) for r in cells]
    edit(rows)
    path = _write(tmp_path / "a.csv", [f"f{j}" for j in range(8)], rows)
    assert plain_csv(path, None) is None
    with pytest.raises(DataError) as fast:
        csv_samples(path)
    with pytest.raises(DataError) as walked:
        walked_csv_samples(path)
    assert str(fast.value) == str(walked.value) and message in str(fast.value)


@pytest.mark.parametrize("edit", ["quotes", "blank line", "spaces line", "lone cr"])
def test_files_the_walk_reads_otherwise_are_left_to_it(tmp_path, cells, edit):
    rows = [list(r) for r in cells]
    text = "\n".join(",".join(r) for r in [[f"f{j}" for j in range(8)], *rows]) + "\n"
    text = {"quotes": text.replace("\n1", '\n"1"', 3), "blank line": text.replace("\n", "\n\n", 1),
            "spaces line": text.replace("\n", "\n  \n", 1), "lone cr": text.replace("\n", "\r", 2)}[edit]
    path = tmp_path / "a.csv"
    path.write_text(text)
    assert plain_csv(path, None) is None
    walked = walked_csv_samples(path)
    fast = csv_samples(path)
    assert fast.x.tobytes() == walked.x.tobytes() and fast.lines == walked.lines


def test_a_large_file_is_read_in_less_memory_and_time(tmp_path):
    """A measured claim kept honest without timing: the fast path makes no Python object per cell."""
    import tracemalloc

    rows = _numbers(np.random.default_rng(2), 30_000, 10)
    path = _write(tmp_path / "a.csv", [f"f{j}" for j in range(10)], rows)
    size = path.stat().st_size
    tracemalloc.start()
    csv_samples(path)
    fast_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    walked_csv_samples(path)
    walked_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # (measured: 3.2x and 13x the file; the file's bytes, the table and its features are the 3.2)
    assert fast_peak < 4 * size and 3 * fast_peak < walked_peak, (fast_peak, walked_peak, size)


def _features_both_ways(monkeypatch, path: Path, n_features: int | None, target: str | None):
    """serve.read_features of `path` by numpy's parser, and by the walk (the fast path switched off)."""
    from dlc.runtime import serve
    from dlc.runtime.data import plaincsv

    fast = serve.read_features(path, n_features, target)
    with monkeypatch.context() as m:
        m.setattr(plaincsv, "plain_numbers", lambda _path: None)
        walked = serve.read_features(path, n_features, target)
    return fast, walked


@pytest.mark.parametrize("header, n_features, target, targets", [
    (True, 7, None, True),  # (a last column beyond the model's features: the target)
    (True, 8, None, False),  # (features only: predict's file)
    (True, None, "f3", True),  # (the column the spec names)
    (False, 7, None, True),  # (no header)
])
def test_predict_and_evaluate_read_a_large_plain_file_as_the_walk_does(tmp_path, monkeypatch, cells, header,
                                                                       n_features, target, targets):
    path = _write(tmp_path / "a.csv", [f"f{j}" for j in range(8)] if header else None, cells)
    from dlc.runtime.data.plaincsv import plain_numbers

    assert plain_numbers(path) is not None
    fast, walked = _features_both_ways(monkeypatch, path, n_features, target)
    assert fast.x.tobytes() == walked.x.tobytes() and fast.x.shape == walked.x.shape
    assert fast.y.dtype == walked.y.dtype and fast.y.tobytes() == walked.y.tobytes()
    assert fast.y.shape == walked.y.shape and (fast.y.size > 0) == targets
    assert fast.lines == walked.lines and fast.header == walked.header


def test_predict_leaves_a_file_with_class_names_to_the_walk(tmp_path, monkeypatch, cells):
    rows = [r[:7] + [("setosa", "virginica")[i % 2]] for i, r in enumerate(cells)]
    path = _write(tmp_path / "a.csv", [f"f{j}" for j in range(8)], rows)
    from dlc.runtime.data.plaincsv import plain_numbers

    assert plain_numbers(path) is None
    fast, walked = _features_both_ways(monkeypatch, path, 7, None)
    assert fast.x.tobytes() == walked.x.tobytes() and list(fast.y[:2]) == ["setosa", "virginica"]
