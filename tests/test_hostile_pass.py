"""A fresh hostile pass (issue 10): each class of input it found answered badly now gets one clear line (or a
positioned spec diagnostic) — CSV files the spec check counted differently from the reader, output paths that
cannot be written, options that were silently ignored or silently replaced, npz headers that lie, run folders
whose files come from two runs, and line endings that hid the whole spec in a comment."""

from __future__ import annotations

import json
import shutil
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = ROOT / "specs" / "iris.dlspec"


def csv_spec(folder: Path, source: str, inputs: str = "(4)") -> Path:
    spec = folder / "m.dlspec"
    spec.write_text(textwrap.dedent(f"""\
        model m {{
          seed: 1
          data {{
            source: {source}
            split: holdout(val=0.2)
          }}
          input: {inputs}
          layers {{
            Dense(3, activation=softmax)
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


def rows(n: int = 12, sep: str = ",") -> str:
    return "".join(sep.join(f"{(i * 7 + j) % 5}.5" for j in range(4)) + f"{sep}{i % 3}\n" for i in range(n))


def only_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "DLC_TRACEBACK" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ specs


def test_lone_cr_line_endings_are_line_ends(tmp_path):
    spec = tmp_path / "cr.dlspec"
    spec.write_bytes(IRIS.read_bytes().replace(b"\n", b"\r"))
    rc, out, err = run_cli("check", "-q", spec)
    assert rc == 0, err


@pytest.mark.parametrize("text, sep", [("a;b;c;d;label\n" + rows(sep=";"), "semicolons"),
                                       ("a\tb\tc\td\tlabel\n" + rows(sep="\t"), "tabs"),
                                       ("# a comment\na,b,c,d,label\n" + rows(), None)])
def test_a_csv_of_one_column_is_named_not_counted_as_zero_features(tmp_path, text, sep):
    (tmp_path / "d.csv").write_text(text)
    rc, _, err = run_cli("check", "-q", csv_spec(tmp_path, 'csv("d.csv")'))
    assert rc == 2 and "error[E401]" in err and "has one column" in err and "use input: (0)" not in err, err
    if sep:
        assert f"separated by {sep}, not commas; save it as comma-separated values" in err


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_csv_is_called_empty(tmp_path, text):
    (tmp_path / "d.csv").write_text(text)
    rc, _, err = run_cli("check", "-q", csv_spec(tmp_path, 'csv("d.csv")'))
    assert rc == 2 and "is empty: it has no rows" in err, err


def test_the_spec_check_reads_a_quoted_header_as_the_reader_does(tmp_path):
    body = "".join(",".join(f'"{c}"' for c in r.split(",")) + "\n" for r in rows().splitlines())
    (tmp_path / "d.csv").write_text('"a,1",b,c,d,label\n' + body)
    rc, _, err = run_cli("check", "-q", csv_spec(tmp_path, 'csv("d.csv")'))
    assert rc == 0, err


def test_a_target_name_used_by_two_columns_is_ambiguous(tmp_path):
    from dlc.runtime.data import DataError, read_csv

    (tmp_path / "d.csv").write_text("a,b,label,d,label\n" + rows())
    rc, _, err = run_cli("check", "-q", csv_spec(tmp_path, 'csv("d.csv", target="label")'))
    assert rc == 2 and "2 columns named 'label'" in err, err
    with pytest.raises(DataError, match=r"has 2 columns named 'label' \(columns 3 and 5\)"):
        read_csv(tmp_path / "d.csv", target="label")


# ------------------------------------------------------------------------------------------------ data


def test_a_line_of_spaces_is_a_blank_line(tmp_path):
    from dlc.runtime.data import read_csv

    (tmp_path / "d.csv").write_text("a,b,c,d,label\n" + rows() + "\n   \n\t\n")
    x, y = read_csv(tmp_path / "d.csv")
    assert x.shape == (12, 4) and len(y) == 12


def test_an_npz_header_that_claims_more_than_memory_is_a_data_error(tmp_path):
    from dlc.runtime.data import DataError, read_npz

    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 4), }"
    header += " " * (118 - len(header)) + "\n"
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        magic = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
        z.writestr("x.npy", magic + header.encode() + b"\0" * 64)
        z.writestr("y.npy", b"")
    with pytest.raises(DataError, match="d.npz: array 'x' cannot be read"):
        read_npz(tmp_path / "d.npz")


# ------------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu0"])
def test_an_unknown_device_is_a_usage_error(tmp_path, device):
    rc, _, err = run_cli("run", IRIS, "--device", device, "--out", tmp_path / "r")
    assert rc == 2 and "is not a device" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("option", ["--trials", "--workers", "--threads"])
def test_tune_counts_below_one_are_usage_errors(tmp_path, option):
    spec = ROOT / "specs" / "tune" / "iris_tune.dlspec"
    rc, _, err = run_cli("tune", spec, option, "0", "--out", tmp_path / "t")
    assert rc == 2 and option in err, err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("extra", [["--epochs", "3"], ["--seed", "1"], ["--backend", "torch"], ["--replace"],
                                   ["--dtype", "float64"]])
def test_resume_refuses_settings_it_would_ignore(tmp_path, extra):
    rc, _, err = run_cli("run", "--resume", tmp_path / "nowhere", *extra)
    assert rc == 2 and "cannot be given with it" in only_line(err), err


def test_outputs_that_cannot_be_written_are_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    under_file = tmp_path / "afile" / "x"
    for argv in (["compile", IRIS, "--emit", "torch", "-o", tmp_path], ["compile", IRIS, "-o", under_file],
                 ["export", tmp_path, "--output", tmp_path], ["export", tmp_path, "--output", under_file],
                 ["predict", tmp_path, "--input", "x.csv", "--output", under_file]):
        rc, _, err = run_cli(*argv)
        line = only_line(err)
        # (a path given that cannot be the file: a usage error, exit 2, before any work)
        assert rc == 2 and ("is a folder; give a file" in line or "is a file, not a folder" in line), argv


# ------------------------------------------------------------------------------------------------ run folders


def test_a_run_folder_with_another_runs_ir_json_says_so(tmp_path):
    rc, out, err = run_cli("run", IRIS, "--backend", "torch", "--epochs", "1", "--quiet", "--no-evidence",
                           "--out", tmp_path / "r")
    assert rc == 0, err
    other = shutil.copytree(tmp_path / "r", tmp_path / "other")
    ir = json.loads((other / "ir.json").read_text())
    ir["input"] = [5]
    (other / "ir.json").write_text(json.dumps(ir))
    rc, _, err = run_cli("evaluate", other)
    assert rc == 1 and "ir.json is not this run's" in only_line(err), err
    # the same input but another layer size: the loader says what does not fit, not just its first line
    wider = (tmp_path / "r" / "ir.json").read_text().replace('"units": 16', '"units": 17', 1)
    (other / "ir.json").write_text(wider)
    rc, _, err = run_cli("predict", other, "--input", _features(tmp_path))
    assert rc == 1 and "size mismatch" in only_line(err) and "another run" in err, err
    assert np.isfinite(json.loads((tmp_path / "r" / "metrics.json").read_text())["train"]["loss"])


def _features(folder: Path) -> Path:
    p = folder / "in.csv"
    p.write_text("5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n")
    return p


@pytest.mark.parametrize("cell", ["1_0.5", "١٢", "１２"])
def test_numbers_are_ascii_decimals_not_python_literals(tmp_path, cell):
    """Python's float() reads '1_0.5' as 10.5 and other scripts' digits as numbers; a CSV means text."""
    from dlc.runtime.data import DataError, read_csv

    f = tmp_path / "d.csv"
    f.write_text(f"1.0,2.0,0\n{cell},3.0,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 2, column 1 is not a number"):
        read_csv(f)
