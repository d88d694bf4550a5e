"""Hostile data files for the npy, npz, csv and mnist sources: each is one clear answer, the same from
`dlc check` (a spec error at the source's argument, exit 2) and from the data path when the file changed after
the check (one DataError line, exit 1), never a traceback; Python objects are refused without being
unpickled; the targets' problems name the targets' file; a CSV file of another separator is named in one
wording by `dlc check` and `dlc predict`."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.runtime.data import DataError, prepare, read_mnist

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_RNG = np.random.default_rng(0)
LABELS = np.arange(40) % 3
FEATURES = _RNG.normal(size=(40, 4)) + LABELS[:, None]
NPY = 'npy("x.npy", "y.npy")'


def write_spec(folder: Path, source: str = NPY, *, inputs: str = "(4)", units: int = 3,
               act: str = "softmax", loss: str = "sparse_categorical_crossentropy",
               split: str = "holdout(val=0.2)", dtype: str = "float32") -> Path:
    spec = folder / "m.dlspec"
    spec.write_text(textwrap.dedent(f"""\
        model m {{
          seed: 1
          data {{
            source: {source}
            normalize: standard
            split: {split}
          }}
          input: {inputs}
          layers {{
            Dense({units}, activation={act})
          }}
          loss: {loss}
          optimizer: Adam(lr=0.01)
          dtype: {dtype}
          train {{
            epochs: 2
            batch_size: 8
          }}
        }}
        """))
    return spec


def spec_error(spec: Path, code: str, message: str) -> str:
    """`dlc check`'s answer: exit 2, the error with its code, placed at line 4 (the source) with a caret."""
    rc, _, err = run_cli("check", spec)
    assert rc == 2 and "Traceback" not in err, err
    assert f"error[{code}]: {message}" in err, err
    assert f"{spec.name}:4:" in err and "^" in err, err
    return err


def one_line(result: tuple[int, str, str], code: int, *facts: str) -> str:
    rc, _, err = result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code and len(lines) == 1 and "Traceback" not in err, err
    assert all(f in lines[0] for f in facts), lines[0]
    return lines[0]


def train(folder: Path) -> tuple[int, str, str]:
    """`dlc run` of an npy spec on the files as they are (torch)."""
    return run_cli("run", write_spec(folder), "--backend", "torch", "--out", folder / "run", "--quiet")


def save_npy(folder: Path, x=FEATURES, y=LABELS) -> None:
    np.save(folder / "x.npy", x, allow_pickle=True)
    np.save(folder / "y.npy", y, allow_pickle=True)


def cut_short(path: Path, nbytes: int) -> None:
    path.write_bytes(path.read_bytes()[:-nbytes])


class Payload:
    """Unpickled, it makes a folder: loading an array of these with allow_pickle would leave the folder."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


# ------------------------------------------------------------------------------------------------ npy files

FORTRAN = "is stored in Fortran order (column by column), which cannot be read a sample at a time"
PICKLED = "holds Python objects (dtype object), which dlc does not load"


@pytest.mark.parametrize("case, code, message", [
    ("fortran", "E401", f"'x.npy' {FORTRAN}"),
    ("fortran_3d", "E401", f"'x.npy' {FORTRAN}"),
    ("objects_y", "E401", f"'y.npy' {PICKLED}"),
    ("text_y", "E302", "'y.npy' holds <U1 values, not numbers, but sparse_categorical_crossentropy needs "
                       "integer class labels 0..2"),
    ("short_x", "E401", "'x.npy' is truncated: its header says shape (40, 4) of <f8 (1,280 bytes of data), "
                        "but the file holds 1,180"),
    ("short_y", "E401", "'y.npy' is truncated: its header says shape (40,) of <i8 (320 bytes of data), but "
                        "the file holds 311"),
    ("empty", "E401", "'x.npy' holds no samples (0 rows): there is nothing to train on"),
])
def test_npy_files_the_runtime_cannot_read_are_spec_errors(tmp_path, case, code, message):
    """Each was `dlc check` OK, then (all but empty) a run-time error: Fortran order only for 3-D features
    (2-D ones trained, but each batch mapped pages across the whole file: 300 random batches of a 1.25 GB
    file held 1.25 GB of RSS, 0.48 GB in C order), the others in numpy's words ("mmap length
    is greater than file size", "Object arrays cannot be loaded when allow_pickle=False") or naming x.npy
    for a label of y.npy; empty was a split error ("holdout of 0 rows leaves 0 to train on")."""
    x, y = FEATURES, LABELS
    if case == "fortran":
        x = np.asfortranarray(x)
    elif case == "fortran_3d":
        x = np.asfortranarray(x.reshape(40, 2, 2))
    elif case == "objects_y":
        y = y.astype(object)
    elif case == "text_y":
        y = np.array(["a", "b", "c"])[y]
    elif case == "empty":
        x, y = x[:0], y[:0]
    save_npy(tmp_path, x, y)
    if case == "short_x":
        cut_short(tmp_path / "x.npy", 100)
    elif case == "short_y":
        cut_short(tmp_path / "y.npy", 9)
    spec_error(write_spec(tmp_path), code, message)


@pytest.mark.parametrize("case, facts", [
    ("fortran", [f"x.npy: {FORTRAN}"]),
    ("objects_x", [f"x.npy: {PICKLED}"]),
    ("objects_y", [f"y.npy: {PICKLED}"]),
    ("short_x", ["x.npy: truncated: its header says shape (40, 4)"]),
    ("nan_target", ["y.npy: a target is missing or not finite (the first in sample 2)"]),
])
def test_a_file_changed_after_the_check_is_one_line_in_the_same_words(tmp_path, case, facts):
    """The data path reads what `dlc check` read (a file may change in between): its one DataError line."""
    spec = write_spec(tmp_path, units=1, act="linear", loss="mse") if case == "nan_target" else \
        write_spec(tmp_path)
    save_npy(tmp_path)
    loaded = dlc.load(spec)  # (`dlc check`'s checks pass)
    if case == "fortran":
        save_npy(tmp_path, np.asfortranarray(FEATURES))
    elif case == "objects_x":
        save_npy(tmp_path, FEATURES.astype(object))
    elif case == "objects_y":
        save_npy(tmp_path, FEATURES, LABELS.astype(object))
    elif case == "short_x":
        cut_short(tmp_path / "x.npy", 100)
    else:
        save_npy(tmp_path, FEATURES, np.where(LABELS == 1, np.nan, LABELS))
    with pytest.raises(DataError) as e:
        prepare(loaded, tmp_path, "float32")
    assert all(f in str(e.value) for f in facts) and "\n" not in str(e.value), str(e.value)


def test_nan_in_a_mapped_float16_file_is_found_by_the_streaming_pass(tmp_path):
    """By `dlc check` (a small file is read whole: E401 in the run's words) and, where the file changed after
    the check (or is too large to read there), by the run's streaming pass."""
    save_npy(tmp_path, FEATURES.astype(np.float16))
    loaded = dlc.load(write_spec(tmp_path))
    x = FEATURES.astype(np.float16)
    x[33, 2] = np.inf
    save_npy(tmp_path, x)
    said = "1 feature value(s) are missing or not finite (the first in sample 34, feature 3)"
    spec_error(write_spec(tmp_path), "E401", f"'x.npy': {said}")
    with pytest.raises(DataError, match=re.escape(f"x.npy: {said}")):
        prepare(loaded, tmp_path, "float32")


def test_nan_features_in_an_npz_file_are_a_check_error(tmp_path):
    """`dlc check` said ok and the run then refused the file; a CSV's empty cell was found at check."""
    x = FEATURES.copy()
    x[7, 1], x[8, 2] = np.nan, np.inf
    np.savez(tmp_path / "d.npz", x=x, y=LABELS)
    spec_error(write_spec(tmp_path, 'npz("d.npz")'), "E401",
               "'d.npz': 2 feature value(s) are missing or not finite (the first in sample 8, feature 2)")


def test_python_objects_are_never_unpickled(tmp_path):
    """An array of objects whose unpickling makes a folder: refused by `dlc check`, `dlc run`, the data path
    and `dlc predict`, and the folder is never made."""
    marker = tmp_path / "unpickled"
    objects = np.array([Payload(marker)] * 40, dtype=object)
    sources = {NPY: f"'y.npy' {PICKLED}", 'npz("d.npz")': f"'d.npz': array 'y' {PICKLED}"}
    save_npy(tmp_path)
    np.savez(tmp_path / "d.npz", x=FEATURES, y=LABELS)
    loaded = {source: dlc.load(write_spec(tmp_path, source)) for source in sources}
    save_npy(tmp_path, FEATURES, objects)
    np.savez(tmp_path / "d.npz", x=FEATURES, y=objects)
    for source, what in sources.items():
        spec = write_spec(tmp_path, source)
        spec_error(spec, "E401", what)
        rc, _, err = run_cli("run", spec, "--backend", "torch", "--out", tmp_path / "run", "--quiet")
        assert rc == 2 and what in err
        with pytest.raises(DataError, match="does not load"):
            prepare(loaded[source], tmp_path)
    save_npy(tmp_path)
    assert train(tmp_path)[0] == 0
    np.save(tmp_path / "in.npy", np.array([Payload(marker)] * 3, dtype=object), allow_pickle=True)
    one_line(run_cli("predict", tmp_path / "run", "--input", tmp_path / "in.npy"), 1, f"in.npy: {PICKLED}")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ npz files


def test_npz_text_targets_are_a_spec_error_at_the_key(tmp_path):
    """Was `dlc check` OK, then "label 'a' in sample 1 is not a class number" at run time."""
    np.savez(tmp_path / "d.npz", x=FEATURES, labels=np.array(["a", "b", "c"])[LABELS])
    err = spec_error(write_spec(tmp_path, 'npz("d.npz", y="labels")'), "E302",
                     "array 'labels' of 'd.npz' holds <U1 values, not numbers, but "
                     "sparse_categorical_crossentropy needs integer class labels 0..2")
    assert "np.unique(y, return_inverse=True)[1]" in err


@pytest.mark.parametrize("source", ['npz("d.npz")', 'csv("d.csv")'])
def test_a_source_without_samples_names_the_file_not_the_split(tmp_path, source):
    np.savez(tmp_path / "d.npz", x=FEATURES[:0], y=LABELS[:0])
    (tmp_path / "d.csv").write_text("a,b,c,d,label\n\n")
    name = source.split('"')[1]
    spec_error(write_spec(tmp_path, source), "E401",
               f"'{name}' holds no samples (0 rows): there is nothing to train on")


# ---------------------------------------------------------------------------------------------------- mnist


def _idx(path: Path, arr: np.ndarray, extra: bytes = b"") -> None:
    import struct

    head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(head + arr.astype(np.uint8).tobytes() + extra)


def _mnist_folder(folder: Path, train_labels: int = 30, extra: bytes = b"") -> None:
    rng = np.random.default_rng(0)
    _idx(folder / "train-images-idx3-ubyte", rng.integers(0, 255, (30, 28, 28)))
    _idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, train_labels), extra)
    _idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 28, 28)))
    _idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 10))


def test_an_idx_file_longer_than_its_header_is_not_called_truncated(tmp_path):
    """Was "truncated IDX file (32 of 30 values)", from `dlc check` and the reader alike."""
    _mnist_folder(tmp_path, extra=b"\0\0")
    want = "an IDX file longer than its header says (32 values, its header says 30)"
    spec_error(write_spec(tmp_path, 'mnist(".")', inputs="(784)", units=10), "E401",
               f"'train-labels-idx1-ubyte': {want}")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: an IDX file longer than its header"):
        read_mnist(tmp_path)


def test_mnist_labels_that_do_not_match_the_images_are_a_spec_error(tmp_path):
    """Was `dlc check` OK, then the reader's error at run time (exit 1): the headers say it."""
    _mnist_folder(tmp_path, train_labels=29)
    spec_error(write_spec(tmp_path, 'mnist(".")', inputs="(784)", units=10), "E401",
               "'.': train-labels-idx1-ubyte holds labels of shape (29,), but train-images-idx3-ubyte has 30 "
               "samples: one label per sample is needed")


# ------------------------------------------------------------------------------------------------------ csv


def test_a_csv_of_vertical_bars_is_named_alike_by_check_and_predict(tmp_path):
    """One wording (compiler/datarows.py's other_separator): predict named tabs and semicolons only."""
    rows = "\n".join("|".join(f"{v:.3f}" for v in r) + f"|{c}" for r, c in zip(FEATURES, LABELS, strict=True))
    (tmp_path / "d.csv").write_text("a|b|c|d|label\n" + rows + "\n")
    advice = "its first row is separated by vertical bars, not commas; save it as comma-separated values"
    err = spec_error(write_spec(tmp_path, 'csv("d.csv")'), "E401", "'d.csv' has one column")
    assert advice in err
    save_npy(tmp_path)
    assert train(tmp_path)[0] == 0
    one_line(run_cli("predict", tmp_path / "run", "--input", tmp_path / "d.csv"), 1, f"d.csv: {advice}")


# ------------------------------------------------------------------------------------- npy and npz: the same


def test_kfold_on_keras_equals_the_npz_run_in_float64(tmp_path):
    """Streamed (npy) and in memory (npz): the same per-epoch losses of every fold, on keras (torch's:
    tests/test_npy_source.py)."""
    save_npy(tmp_path)
    np.savez(tmp_path / "d.npz", x=FEATURES, y=LABELS)
    losses = []
    for name, source in (("a", NPY), ("b", 'npz("d.npz")')):
        spec = write_spec(tmp_path, source, split="kfold(k=3)", dtype="float64")
        out = tmp_path / f"cv_{name}"
        rc, _, err = run_cli("cv", spec, "--backend", "keras", "--out", out, "--quiet")
        assert rc == 0, err
        losses.append([[(r["loss"], r["val_loss"]) for r in json.loads((out / f"fold_{k}" / "history.json")
                                                                       .read_text())] for k in (1, 2, 3)])
    assert losses[0] == losses[1]
