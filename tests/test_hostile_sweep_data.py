"""A hostile-input sweep of the data and run-folder paths: each defect it found, pinned. Every answer is one
clear line naming the file (a spec error from `dlc check`, exit 2; a DataError or RunDirError at run time,
exit 1), never a traceback, a generic "TypeError: ..." line, or a silently wrong result."""

from __future__ import annotations

import io
import json
import os
import struct
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler.csvtable import CsvProblem, parse_table, text_encoding
from dlc.compiler.datafiles import npy_layout
from dlc.compiler.datarows import mnist_parts_problem
from dlc.runtime import checkpoint
from dlc.runtime.data import DataError, npz_array, open_npy, read_table
from dlc.runtime.rundir import OutFolderError, prepare_out
from dlc.runtime.runs import RunDirError

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_spec(folder: Path, source: str, *, inputs: str = "(4)", units: int = 3) -> Path:
    spec = folder / "m.dlspec"
    spec.write_text(textwrap.dedent(f"""\
        model m {{
          seed: 1
          data {{
            source: {source}
            normalize: standard
            split: holdout(val=0.2)
          }}
          input: {inputs}
          layers {{
            Dense({units}, activation=softmax)
          }}
          loss: sparse_categorical_crossentropy
          optimizer: Adam(lr=0.01)
          train {{
            epochs: 1
            batch_size: 8
          }}
        }}
        """))
    return spec


def one_line(result: tuple[int, str, str], code: int, *facts: str) -> str:
    rc, _, err = result
    assert rc == code, err
    assert "Traceback" not in err and "DLC_TRACEBACK" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    text = err if code == 2 else lines[-1]
    if code == 1:
        assert len(lines) == 1, err
    for fact in facts:
        assert fact in text, err
    return text


def forged_npy(path: Path, header: str, data: bytes) -> None:
    """An .npy file with this header dict literal (numpy's layout: magic, version 1.0, length, padding)."""
    head = header.encode("latin1")
    head += b" " * (63 - (10 + len(head)) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + data)


# ----------------------------------------------------------------------------- .npy headers dlc check passed


def test_an_npy_header_whose_fortran_order_is_no_bool_is_damaged_for_check_and_run(tmp_path):
    # (`dlc check` passed it as C order; the run then failed in numpy's words: "fortran_order is not a valid
    # bool: 'yes'; a damaged file, or one of Python objects?")
    x = np.zeros((40, 4))
    header = "{'descr': '<f8', 'fortran_order': 'yes', 'shape': (40, 4), }"
    forged_npy(tmp_path / "x.npy", header, x.tobytes())
    np.save(tmp_path / "y.npy", np.arange(40) % 3)
    with pytest.raises(ValueError, match="fortran_order 'yes' is not True or False"):
        npy_layout(tmp_path / "x.npy")
    with pytest.raises(DataError, match="x.npy: damaged .npy header: its fortran_order 'yes'"):
        open_npy(tmp_path / "x.npy", mmap=False)
    spec = write_spec(tmp_path, 'npy("x.npy", "y.npy")')
    one_line(run_cli("check", spec), 2, "E401", "fortran_order 'yes' is not True or False")


def test_an_npy_file_of_a_subarray_dtype_is_structured_values_not_a_file_cut_short(tmp_path):
    # (np.load read it as "Failed to read all data ... (file seems not fully written?)")
    x = np.zeros((40, 4))
    forged_npy(tmp_path / "x.npy", "{'descr': ('<f8', (4,)), 'fortran_order': False, 'shape': (40,), }",
               x.tobytes())
    with pytest.raises(DataError, match=r"x.npy: holds structured values, not numbers$"):
        open_npy(tmp_path / "x.npy", mmap=False)


def test_an_array_of_many_named_fields_is_named_in_a_short_line(tmp_path):
    # (its dtype's repr, every field listed, was the message)
    fields = np.dtype([(f"field_number_{i}", "<f8") for i in range(200)])
    np.savez(tmp_path / "d.npz", x=np.zeros(3, dtype=fields), y=np.zeros(3))
    with np.load(tmp_path / "d.npz") as f, pytest.raises(DataError) as e:
        npz_array(tmp_path / "d.npz", f, "x")
    assert str(e.value).endswith("array 'x' holds structured values, not numbers")
    assert len(str(e.value)) < 200


def test_an_npz_member_of_a_header_too_long_is_not_called_python_objects(tmp_path):
    # (numpy's refusal of a header beyond its max_header_size names allow_pickle: it was "holds Python objects
    # (dtype object) ...", of an array of numbers)
    fields = np.dtype([(f"f{i}", "<f8") for i in range(2000)])
    np.savez(tmp_path / "d.npz", x=np.zeros(3, dtype=fields), y=np.zeros(3))
    with np.load(tmp_path / "d.npz") as f, pytest.raises(DataError) as e:
        npz_array(tmp_path / "d.npz", f, "x")
    assert "array 'x' cannot be read: its header is longer than numpy reads (10,000 bytes)" in str(e.value)
    assert "Python objects" not in str(e.value)


# ------------------------------------------------------------------------------------------------ csv text


@pytest.mark.parametrize("codec", ["utf-32", "utf-32-le", "utf-32-be"])
def test_utf32_csv_is_named_not_read_as_rows_of_nuls(tmp_path, codec):
    # (its byte-order mark starts as UTF-16's: read so, it was "rows have different numbers of columns: row 62
    # has 1"; without one it read as UTF-8 text full of NULs)
    text = "a,b,c,d,label\n" + "".join(f"{i},1,2,3,{i % 3}\n" for i in range(30))
    raw = text.encode(codec)
    assert text_encoding(raw[:64]) == "utf-32"
    with pytest.raises(CsvProblem, match="UTF-32 text, which dlc does not read; save the file as UTF-8"):
        parse_table(raw)
    (tmp_path / "d.csv").write_bytes(raw)
    with pytest.raises(DataError, match="d.csv: UTF-32 text"):
        read_table(tmp_path / "d.csv")
    one_line(run_cli("check", write_spec(tmp_path, 'csv("d.csv")')), 2, "E401", "UTF-32 text")


def test_utf16_and_utf8_are_still_read():
    text = "a,b,label\n1,2,0\n3,4,1\n"
    for codec in ("utf-16", "utf-16-le", "utf-16-be", "utf-8", "utf-8-sig"):
        table = parse_table(text.encode(codec))
        assert table.header == ["a", "b", "label"] and table.rows == [["1", "2", "0"], ["3", "4", "1"]]


def test_a_quote_left_open_is_named_with_the_row_that_opens_it(tmp_path):
    rows = "".join(f"{i},1,2,3,{i % 3}\n" for i in range(20))
    raw = ("a,b,c,d,label\n" + rows[:40] + '"9,9,9,9,0\n' + rows[40:]).encode()
    with pytest.raises(CsvProblem) as e:
        parse_table(raw)
    assert "row 6 has 1, row 1 has 5; row 6 has a quote left open" in str(e.value)
    assert "close or remove the quote" in str(e.value)
    with pytest.raises(CsvProblem) as e:  # (a row of another width without one: as before)
        parse_table(b"a,b,c\n1,2,3\n1,2\n")
    assert str(e.value) == "rows have different numbers of columns: row 3 has 2, row 1 has 3"


# ---------------------------------------------------------------------------------------------- mnist.npz


def mnist_npz(folder: Path, **change) -> Path:
    x, y = np.zeros((20, 4, 4), np.uint8), (np.arange(20) % 10).astype(np.uint8)
    arrays = {"x_train": x, "y_train": y, "x_test": x[:10], "y_test": y[:10], **change}
    np.savez(folder / "mnist.npz", **arrays)
    return write_spec(folder, 'mnist("mnist.npz")', inputs="(16)", units=10)


def test_a_mnist_npz_of_single_values_is_a_spec_error_not_an_index_error(tmp_path):
    # (`dlc check` and `dlc run` ended in "IndexError: tuple index out of range", exit 1)
    spec = mnist_npz(tmp_path, x_train=np.array(1.0), y_train=np.array(1), x_test=np.array(1.0),
                     y_test=np.array(1))
    one_line(run_cli("check", spec), 2, "E401", "array 'x_train' is a single value, not one entry per sample")
    assert mnist_parts_problem(("a", "b", "c", "d"), ((), (), (), ())) == \
        "a is a single value, not one entry per sample"


@pytest.mark.parametrize("change, facts", [
    ({"x_train": np.zeros((20, 4, 4), complex)}, ("E401", "array 'x_train' holds <c16 values, not numbers")),
    ({"y_train": np.array(["1"] * 20)}, ("E302", "array 'y_train' of 'mnist.npz' holds <U1 values")),
    ({"y_test": np.full(10, 12)},
     ("E302", "'mnist.npz' holds class labels 0..12, but the last layer has 10")),
    ({"y_train": np.full(20, 0.5)}, ("E302", "holds 0.5, not a whole number")),
])
def test_a_mnist_npz_is_checked_as_the_run_reads_it(tmp_path, change, facts):
    # (each passed `dlc check` and failed only once the run read the arrays)
    one_line(run_cli("check", mnist_npz(tmp_path, **change)), 2, *facts)


def test_a_sound_mnist_npz_still_checks(tmp_path):
    rc, _, err = run_cli("check", "-q", mnist_npz(tmp_path))
    assert rc == 0, err


# ------------------------------------------------------------------------------------------- checkpoints


def _loop(**change) -> dict:
    return {"epoch": 1, "lr": 0.01, "plateau": None, "es_best": None, "es_wait": 0,
            "rows": [{"epoch": 1, "loss": 1.0, "lr": 0.01, "samples_per_s": float("nan")}],
            "stopped_early": False, "best_epoch": None, "has_best_weights": False, **change}


def _checkpoint(run: Path, loop=None, loop_text: str | None = None, compressed: bool = False, **arrays):
    text = json.dumps(_loop() if loop is None else loop) if loop_text is None else loop_text
    state = {"s:w/dense_0/kernel": np.ones((4, 3)), "s:w/dense_0/bias": np.zeros(3), "s:step": np.array(1),
             "loop": np.frombuffer(text.encode(), np.uint8), **arrays}
    (np.savez_compressed if compressed else np.savez)(run / checkpoint.FILE, **state)


def test_a_sound_checkpoint_still_loads(tmp_path):
    _checkpoint(tmp_path)
    state, loop = checkpoint.load(tmp_path)
    assert loop.epoch == 1 and set(state) == {"w/dense_0/kernel", "w/dense_0/bias", "step"}


@pytest.mark.parametrize("loop, fact", [
    (_loop(epoch="x"), "its loop state's epoch is \"x\", not a count of epochs"),
    (_loop(epoch=-5), "its loop state's epoch is -5"),
    (_loop(epoch=10**30), "its loop state's epoch is 1000000000000000000000000000000"),
    (_loop(es_wait=True), "its loop state's es_wait is true"),
    (_loop(lr="fast"), "its loop state's lr is \"fast\", not a learning rate"),
    (_loop(lr=float("nan")), "its loop state's lr is NaN"),
    (_loop(rows=5), "its loop state's rows are 5, not a list of epochs"),
    (_loop(rows=[1, "x", None]), "its history row 1 is 1, not an epoch's numbers"),
    (_loop(rows=[{"epoch": 1, "loss": "x"}]), "its history row 1 is"),
    (_loop(plateau={"best": 1.0}), "its loop state's plateau is"),
    (_loop(stopped_early="no"), "its loop state's stopped_early is \"no\""),
    ({"epoch": 1}, "its loop state has no 'lr'"),
    ([1, 2], "its loop state is [1, 2], not an object"),
])
def test_a_checkpoint_loop_state_of_the_wrong_kind_is_damage_named_by_the_file(tmp_path, loop, fact):
    # (each reached the loop and ended as "TypeError: '>=' not supported ..." or "OverflowError: ...", with
    # no file named)
    _checkpoint(tmp_path, loop)
    with pytest.raises(RunDirError) as e:
        checkpoint.load(tmp_path)
    assert f"checkpoint.npz is damaged ({fact}" in str(e.value)


def test_a_checkpoint_nested_too_deeply_or_compressed_and_damaged_is_named(tmp_path):
    _checkpoint(tmp_path, loop_text="[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunDirError, match="checkpoint.npz is damaged .*nested too deeply"):
        checkpoint.load(tmp_path)
    _checkpoint(tmp_path, compressed=True, **{"s:big": np.arange(20_000.0)})  # (an array load reads)
    raw = bytearray((tmp_path / checkpoint.FILE).read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.getinfo("s:big.npy")
    at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[at:at + 64] = bytes(64)
    (tmp_path / checkpoint.FILE).write_bytes(bytes(raw))
    with pytest.raises(RunDirError, match="checkpoint.npz is damaged"):  # (was "error: Error -3 while ...")
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("arrays, fact", [
    ({"s:w/dense_0/kernel": np.ones((4, 3), complex)}, "its w/dense_0/kernel holds complex128 values"),
    ({"s:step": np.array("x")}, "its step holds <U1 values, not numbers"),
    ({"s:w/dense_0/bias": np.array([0.0, np.nan, 0.0])}, "its w/dense_0/bias holds nan or infinite weights"),
    ({"b:dense_0/kernel": np.full((4, 3), np.inf)}, "its best weights dense_0/kernel holds nan or infinite"),
])
def test_checkpoint_arrays_that_are_no_real_finite_weights_are_refused(tmp_path, arrays, fact):
    # (complex weights reached torch, which warned over 3 lines and cast them; nan weights resumed to a model
    # of nan weights and nan metrics, exit 0)
    _checkpoint(tmp_path, **arrays)
    with pytest.raises(RunDirError) as e:
        checkpoint.load(tmp_path)
    assert f"checkpoint.npz is damaged ({fact}" in str(e.value)


def test_a_checkpoint_that_is_a_pipe_or_a_dangling_link_is_named_as_such(tmp_path):
    # (both were "checkpoint.npz is missing although history.json has 4 epochs")
    os.mkfifo(tmp_path / checkpoint.FILE)
    with pytest.raises(RunDirError, match="checkpoint.npz is not a regular file"):
        checkpoint.load(tmp_path)
    (tmp_path / checkpoint.FILE).unlink()
    (tmp_path / checkpoint.FILE).symlink_to(tmp_path / "nowhere.npz")
    with pytest.raises(RunDirError, match="checkpoint.npz is a symbolic link that leads nowhere"):
        checkpoint.load(tmp_path)
    (tmp_path / checkpoint.FILE).unlink()
    assert checkpoint.load(tmp_path) is None  # (none at all: a run killed before its first epoch ended)


def test_resume_from_a_checkpoint_of_a_damaged_loop_state_is_one_line_and_keeps_the_folder(tmp_path):
    spec = tmp_path / "iris.dlspec"
    spec.write_text(textwrap.dedent("""\
        model iris {
          seed: 1
          data {
            source: iris
            split: holdout(val=0.2)
          }
          input: (4)
          layers {
            Dense(3, activation=softmax)
          }
          loss: sparse_categorical_crossentropy
          optimizer: Adam(lr=0.01)
          train {
            epochs: 2
            batch_size: 32
          }
        }
        """))
    run = tmp_path / "run"
    rc, _, err = run_cli("run", spec, "--out", run, "--quiet", "--epochs", "2")
    assert rc == 0, err
    info = json.loads((run / "run.json").read_text())
    info["finished"] = None
    (run / "run.json").write_text(json.dumps(info))
    with np.load(run / checkpoint.FILE) as f:
        arrays = dict(f)
    loop = json.loads(arrays["loop"].tobytes().decode())
    arrays["loop"] = np.frombuffer(json.dumps({**loop, "epoch": "x"}).encode(), np.uint8)
    np.savez(run / checkpoint.FILE, **arrays)
    before = sorted(p.name for p in run.iterdir())
    history = (run / "history.json").read_text()
    one_line(run_cli("run", "--resume", run, "--quiet"), 1, "checkpoint.npz is damaged",
             "its loop state's epoch is \"x\"")
    assert sorted(p.name for p in run.iterdir()) == before
    assert (run / "history.json").read_text() == history


# ------------------------------------------------------------------------------------------------ --out


def test_an_out_that_is_a_dangling_link_is_named_as_such(tmp_path):
    # (mkdir said "cannot create --out ...: File exists")
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutFolderError, match="is a symbolic link that leads nowhere"):
        prepare_out(tmp_path / "out")
    assert not (tmp_path / "nowhere").exists()
