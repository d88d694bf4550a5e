"""`dlc check` knows the rows of a CSV file and of an MNIST folder (compiler/datarows.py): a split they cannot
make is a spec error (E303) before training, as for a bundled set or an .npy header; counted as the runtime
reads the data (the header rule, blank lines, quoted line breaks), cheaply, and not at all for a file too
large or not readable so (the run then says what the data allows)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler import compile_text, datarows
from dlc.compiler.diagnostics import Diagnostic
from dlc.runtime.data import DataError, folds, prepare, read_table, target_values

CSV_SPEC = """\
model rows {{
  data {{
    source: {source}
    split: {split}
  }}
  input: ({features})
  layers {{
    Dense({classes}, activation=softmax)
  }}
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {{
    epochs: 2
  }}
}}
"""


def _spec(split: str, source: str = 'csv("d.csv", target="label")', features: int = 2,
          classes: int = 2) -> str:
    return CSV_SPEC.format(source=source, split=split, features=features, classes=classes)


def _diags(text: str, base: Path) -> list[Diagnostic]:
    return compile_text(text, "t.dlspec", base).diagnostics.sorted()


def _errors(text: str, base: Path) -> list[Diagnostic]:
    return [x for x in _diags(text, base) if x.severity == "error"]


def _where(d: Diagnostic) -> tuple[int, int]:
    assert d.span is not None
    return d.span.line, d.span.col


def _at(text: str, needle: str, line_with: str) -> tuple[int, int]:
    for n, line in enumerate(text.split("\n"), 1):
        if line_with in line and needle in line:
            return n, line.index(needle, line.index(line_with)) + 1
    raise AssertionError(f"{needle!r} not in the spec")


def _write_csv(path: Path, labels: list[str], header: bool = True, tail: str = "") -> None:
    rows = [f"{i},{i % 7}.5,{label}" for i, label in enumerate(labels)]
    path.write_text("\n".join((["a,b,label"] if header else []) + rows) + "\n" + tail)


@pytest.fixture(autouse=True)
def _fresh_counts():
    """Files are rewritten within a second: the counts' cache is keyed on the file's time and size."""
    datarows._csv_counts.cache_clear()


# ------------------------------------------------------------------------------------------------ csv


@pytest.mark.parametrize("header", [True, False])
def test_a_kfold_of_more_folds_than_csv_rows_is_an_error(tmp_path, header):
    _write_csv(tmp_path / "d.csv", ["0", "1"] * 6, header, tail="\n   \n")
    source = 'csv("d.csv", target="label")' if header else 'csv("d.csv")'
    text = _spec("kfold(k=13)", source)
    (e,) = _errors(text, tmp_path)
    assert (e.code, e.message) == ("E303", "13-fold split: only 12 rows")
    assert _where(e) == _at(text, "13", "kfold")
    assert "k can be 12 at most" in (e.hint or "")
    assert not _errors(_spec("kfold(k=12)", source), tmp_path)


def test_a_stratified_class_with_fewer_rows_than_k(tmp_path):
    _write_csv(tmp_path / "d.csv", ["cat"] * 9 + ["dog"] * 3)
    text = _spec("kfold(k=5, stratify=true)")
    (e,) = _errors(text, tmp_path)
    assert e.message == ("stratified 5-fold split: class 1 has 3 row(s) (rows per class: 9 of class 0, 3 of "
                         "class 1) ('d.csv' has 12 rows)")
    assert (e.hint or "").endswith("k can be 3 at most")
    assert not _errors(_spec("kfold(k=3, stratify=true)"), tmp_path)


def test_an_empty_holdout_part(tmp_path):
    _write_csv(tmp_path / "d.csv", ["0", "1", "1"])
    (e,) = _errors(_spec("holdout(val=0.4, test=0.3)"), tmp_path)
    assert e.message.startswith("holdout(val=0.4, test=0.3) of 3 rows leaves 0 to train on")


SPLITS = ["kfold(k=4)", "kfold(k=5)", "kfold(k=3, stratify=true)", "kfold(k=4, stratify=true)",
          "kfold(k=2, stratify=true, test=0.3)", "holdout(val=0.1, stratify=true)",
          "holdout(val=0.5, test=0.4)", "holdout(val=0.2, test=0.2, stratify=true)"]
LABELS = {"names": ["b", "a", "b", "c", "a", "b", "c", "b", "a"], "numbers": ["1", "0", "2.0", "1", "1", "0"]}


def _runtime_refuses(text: str, split: str, base: Path) -> bool:
    """Whether the runtime's split of the spec's data fails (a DataError), as `dlc check` should say first."""
    spec = _unchecked(text, base)
    try:
        folds(spec, base) if "kfold" in split else prepare(spec, base)
    except DataError:
        return True
    return False


@pytest.mark.parametrize("labels", LABELS)
@pytest.mark.parametrize("split", SPLITS)
def test_check_refuses_what_the_runtime_refuses(tmp_path, split, labels):
    """The same rows and classes both sides: `dlc check` errs exactly when the runtime's split fails."""
    _write_csv(tmp_path / "d.csv", LABELS[labels])
    text = _spec(split, classes=3)
    errors = _errors(text, tmp_path)
    assert bool(errors) == _runtime_refuses(text, split, tmp_path), [x.message for x in errors]


def _unchecked(text: str, base: Path):
    """The spec of `text` as the runtime would get it, though `dlc check` finds a split error in it."""
    compiled = compile_text(text, "t.dlspec", base)
    assert compiled.spec is not None
    return compiled.spec


@pytest.mark.parametrize(("name", "content"), [
    ("quoted line breaks", 'a,b,label\n1,"x\ny",0\n2,"p\n\nq",1\n3,z,1\n'),
    ("crlf and blank lines", "a,b,label\r\n1,2,0\r\n\r\n  \r\n3,4,1\r\n5,6,1"),
    ("a byte-order mark", "\ufeffa,b,label\n1,2,0\n3,4,1\n"),
    ("no header", "1,2,0\n3,4,1\n\n"),
    ("a row of empty cells", "a,b,label\n,,\n1,2,0\n"),
    ("a header with a number", "a,2,label\n1,2,0\n"),
    ("no line break at the end", "a,b,label\n1,2,0\n3,4,1"),
    ("blank lines first and between", "\n \n\t\na,b,label\n1,2,0\n\u00a0\n\n3,4,1\n,,\n"),
    ("a lone carriage return", "a,b,label\r1,2,0\r3,4,1\r"),
])
@pytest.mark.parametrize("how", ["parsed", "lines", "lines read 5 bytes at a time"])
def test_rows_counted_as_the_runtime_reads_them(tmp_path, monkeypatch, name, content, how):
    path = tmp_path / "d.csv"
    path.write_bytes(content.encode("utf-8"))
    if how != "parsed":
        monkeypatch.setattr(datarows, "MAX_CSV_PARSED_BYTES", 0)
    if how.endswith("at a time"):
        monkeypatch.setattr(datarows, "READ_BYTES", 5)
    counted = datarows.csv_counts(path, None)
    if how != "parsed" and ('"' in content or "\r1" in content):
        assert counted is None  # (a quoted cell may hold a line break, a lone CR ends a row)
        return
    assert counted is not None
    assert counted[0] == len(read_table(path).rows)
    if how != "parsed":
        assert counted[1] is None
    elif counted[1] is not None:  # (the classes as the runtime numbers them)
        table = read_table(path)
        values, rows = np.unique(target_values(table, table.width - 1)[0], return_counts=True)
        assert counted[1] == [(int(v), int(n)) for v, n in zip(values, rows, strict=True)]


def test_utf16_rows(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("a,b,label\n1,2,0\n3,4,1\n5,6,1\n".encode("utf-16"))
    assert datarows.csv_counts(path, None) == (3, [(0, 1), (1, 2)])


def test_a_large_csv_has_its_rows_counted_and_not_its_classes(tmp_path, monkeypatch):
    monkeypatch.setattr(datarows, "MAX_CSV_PARSED_BYTES", 10)
    _write_csv(tmp_path / "d.csv", ["cat"] * 9 + ["dog"] * 3)
    assert not _errors(_spec("kfold(k=5, stratify=true)"), tmp_path)  # (its classes are not known)
    (e,) = _errors(_spec("kfold(k=13, stratify=true)"), tmp_path)
    assert e.message == "13-fold split: only 12 rows"


def test_a_csv_too_large_to_count_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(datarows, "MAX_CSV_BYTES", 10)
    _write_csv(tmp_path / "d.csv", ["0", "1"] * 3)
    assert not _errors(_spec("kfold(k=13)"), tmp_path)


def test_a_missing_csv_keeps_its_own_error(tmp_path):
    errors = _errors(_spec("kfold(k=13)"), tmp_path)
    assert [x.code for x in errors] == ["E401"]


def test_a_searched_k_counts_the_csv_once(tmp_path, monkeypatch):
    _write_csv(tmp_path / "d.csv", ["0", "1"] * 6)
    calls = []
    parsed = datarows._parsed_counts
    monkeypatch.setattr(datarows, "_parsed_counts", lambda *a: calls.append(a) or parsed(*a))
    search = "  search {\n    trials: 3\n    objective: minimize cv_loss\n  }\n  train {"
    text = _spec("kfold(k=choice(3, 13, 20))").replace("  train {", search)
    assert [x.message for x in _errors(text, tmp_path)] == [
        "when data.split.k is 13: 13-fold split: only 12 rows",
        "when data.split.k is 20: 20-fold split: only 12 rows"]
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------------ mnist


def _idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    data = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data += arr.tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def _mnist(folder: Path, train: list[int], test: list[int], gz: bool = False) -> None:
    folder.mkdir()
    for prefix, labels in (("train", train), ("t10k", test)):
        y = np.array(labels, np.uint8)
        _idx(folder / f"{prefix}-images-idx3-ubyte", np.zeros((len(y), 28, 28), np.uint8), gz)
        _idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)


def _mnist_spec(split: str) -> str:
    return _spec(split, 'mnist("m")', features=784, classes=10)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_rows_from_the_idx_headers(tmp_path, gz):
    _mnist(tmp_path / "m", [0, 1] * 10, [0, 1, 2] * 3, gz)
    text = _mnist_spec("kfold(k=30)")
    (e,) = _errors(text, tmp_path)
    assert e.message == "30-fold split: only 29 rows"
    assert _where(e) == _at(text, "30", "kfold")
    assert not _errors(_mnist_spec("kfold(k=29)"), tmp_path)


def test_mnist_classes_from_the_labels(tmp_path):
    _mnist(tmp_path / "m", [0, 1] * 10, [0, 1, 2] * 3)
    (e,) = _errors(_mnist_spec("kfold(k=4, stratify=true)"), tmp_path)
    assert e.message == ("stratified 4-fold split: class 2 has 3 row(s) (rows per class: 13 of class 0, "
                         "13 of class 1, 3 of class 2) ('m' has 29 rows)")
    with pytest.raises(DataError) as raised:
        folds(_unchecked(_mnist_spec("kfold(k=4, stratify=true)"), tmp_path), tmp_path)
    assert e.message.split(" ('m'")[0] == str(raised.value).split("; ")[0]


def test_mnist_npz_rows_from_its_headers(tmp_path):
    (tmp_path / "m").mkdir()
    x = np.zeros((5, 28, 28), np.uint8)
    np.savez(tmp_path / "m" / "mnist.npz", x_train=x, y_train=np.zeros(5), x_test=x[:2], y_test=np.zeros(2))
    (e,) = _errors(_mnist_spec("kfold(k=8)"), tmp_path)
    assert e.message == "8-fold split: only 7 rows"


def test_a_truncated_or_foreign_idx_file_is_not_counted(tmp_path):
    _mnist(tmp_path / "m", [0, 1] * 10, [0, 1, 2] * 3)
    images = tmp_path / "m" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1])
    # (not counted, so no split error; the file itself is one, as the runtime would refuse it)
    assert [(x.code, x.message) for x in _errors(_mnist_spec("kfold(k=30)"), tmp_path)] == [
        ("E401", "'m/t10k-images-idx3-ubyte': truncated IDX file (7,055 of 7,056 values)")]
    images.write_bytes(b"not an idx file")
    assert [(x.code, x.message) for x in _errors(_mnist_spec("kfold(k=30)"), tmp_path)] == [
        ("E401", "'m/t10k-images-idx3-ubyte': not an IDX file")]


def test_a_missing_mnist_folder_keeps_its_own_error(tmp_path):
    assert [x.code for x in _errors(_mnist_spec("kfold(k=30)"), tmp_path)] == ["E401"]


# ------------------------------------------------------------------------------------------- npz, npy

NPZ_LABELS = [1, 0, 2, 1, 1, 0, 2, 1, 0]


@pytest.mark.parametrize("source", ['npz("d.npz")', 'npy("x.npy", "y.npy")'])
@pytest.mark.parametrize("split", SPLITS + ["kfold(k=2, stratify=true)"])
def test_check_refuses_what_the_runtime_refuses_of_npz_and_npy_labels(tmp_path, split, source):
    """An .npz archive's or .npy file's small label array is read for its classes: a stratified split it
    cannot make is E303 before training (`dlc cv --k 21` of a class of 20 rows failed after making the
    run folder), exactly when the runtime refuses it."""
    y = np.array(NPZ_LABELS, dtype=np.int64)
    x = np.arange(2 * len(y), dtype=np.float32).reshape(len(y), 2)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    text = _spec(split, source, classes=3)
    errors = _errors(text, tmp_path)
    assert bool(errors) == _runtime_refuses(text, split, tmp_path), [x.message for x in errors]
    if split == "kfold(k=4, stratify=true)":  # (class 2 has 2 rows)
        assert "class 2 has 2 row(s)" in errors[0].message and "k can be 2 at most" in (errors[0].hint or "")
