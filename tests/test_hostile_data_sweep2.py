"""A second hostile data-file sweep (CSV, npy/npz, IDX, and the files `dlc predict` / `dlc evaluate` read):
each defect it found, pinned. Every answer is one clear line (a spec error from `dlc check`, exit 2; a
run-time error, exit 1), never a traceback, an absurd number, a memory spike, or a silently wrong result."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlc.compiler.csvtable import MAX_ROW_CHARS, CsvProblem, parse_table
from dlc.compiler.wording import number_text
from dlc.runtime.data.plaincsv import plain_numbers

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_spec(folder: Path, source: str, *, units: int = 3) -> Path:
    spec = folder / "m.dlspec"
    spec.write_text(textwrap.dedent(f"""\
        model m {{
          seed: 1
          data {{
            source: {source}
            normalize: standard
            split: holdout(val=0.2)
          }}
          input: (4)
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
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for fact in facts:
        assert fact in lines[0], lines[0]
    return lines[0]


def table(rows: int = 40, header: str = "a,b,c,d,label", label=lambda i: i % 3) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4)).round(3)
    return header + "\n" + "".join(",".join(map(str, r)) + f",{label(i)}\n" for i, r in enumerate(x))


# ------------------------------------------------------------------------------------ labels beyond reason


def test_a_huge_label_is_written_as_a_float_and_no_dense_of_that_size_is_suggested(tmp_path):
    """Label 1e300 was "class labels 1000000000000000052504760255204420248704...", 301 digits, and the hint
    "use Dense(10000000000000000525...)"; a uint64 label 2**64-1 was shown as 18446744073709551616 (one more
    than it is: a float's rounding printed as an exact integer)."""
    data = tmp_path / "big.csv"
    data.write_text(table(label=lambda i: "1e300"))
    rc, _, err = run_cli("check", "-q", write_spec(tmp_path, f'csv("{data}", target="label")'))
    assert rc == 2 and "Traceback" not in err, err
    assert "holds class labels 1e+300..1e+300" in err and "0000000000" not in err, err
    assert "labels this large are no class numbers" in err, err
    assert "Dense(1" not in err.replace("Dense(1)", ""), err
    np.save(tmp_path / "x.npy", np.zeros((40, 4), np.float32))
    np.save(tmp_path / "y.npy", np.full(40, 2**64 - 1, np.uint64))
    spec = write_spec(tmp_path, f'npy("{tmp_path / "x.npy"}", "{tmp_path / "y.npy"}")')
    rc, _, err = run_cli("check", "-q", spec)
    assert rc == 2 and "1.8446744073709552e+19" in err and "18446744073709551616" not in err, err
    # labels a Dense can hold still get the Dense that fits them
    data.write_text(table(label=lambda i: i % 7))
    rc, _, err = run_cli("check", "-q", write_spec(tmp_path, f'csv("{data}", target="label")'))
    assert rc == 2 and "use Dense(7, activation=softmax)" in err, err


def test_number_text_keeps_exact_integers_and_writes_floats_beyond_them():
    assert number_text(3.0) == "3" and number_text(-2) == "-2" and number_text(0.5) == "0.5"
    assert number_text(2.0**53 - 1) == "9007199254740991"
    assert number_text(1e300) == "1e+300" and number_text(float(2**64)) == "1.8446744073709552e+19"


# ------------------------------------------------------------------------------------ a line of no table


def test_a_line_longer_than_any_row_is_one_line_before_it_is_split_into_cells(tmp_path):
    """A 200 MB file of one line ("1.5,1.5,...") took `dlc check` 42 s and 4 GB (a Python string per cell of
    50,000,000) to say "has 50000000 feature columns", and `dlc predict` more than 3.8 GB before it was
    stopped: a line beyond MAX_ROW_CHARS is now refused by the reader before the CSV module splits it (4 s,
    450 MB for the 200 MB file)."""
    data = tmp_path / "line.csv"
    data.write_text("1.5," * (MAX_ROW_CHARS // 4 + 1) + "2\n")
    with pytest.raises(CsvProblem, match=r"row 1 is 16,777,2\d\d characters long, more than the 16,777,216"):
        parse_table(data.read_bytes())
    assert plain_numbers(data) is None  # (the numpy path leaves it to the reader, which names it)
    rc, _, err = run_cli("check", "-q", write_spec(tmp_path, f'csv("{data}")'))
    assert rc == 2 and "Traceback" not in err, err
    assert "characters long" in err and "save one sample per line" in err, err
    # a long line inside the limit is still a row
    ok = tmp_path / "wide.csv"
    ok.write_text("1," * 3000 + "2\n" + "1," * 3000 + "0\n")
    assert parse_table(ok.read_bytes()).width == 3001


# ------------------------------------------------------------------------------------ predict / evaluate


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A run trained on a CSV file of columns a, b, c, d and a target `label`."""
    folder = tmp_path_factory.mktemp("csvrun")
    data = folder / "train.csv"
    data.write_text(table())
    spec = write_spec(folder, 'csv("train.csv", target="label")')
    rc, _, err = run_cli("run", spec, "--backend", "torch", "--out", folder / "run", "--quiet")
    assert rc == 0, err
    return folder / "run"


def features(header: str, order=(0, 1, 2, 3), label: bool = False) -> str:
    x = np.random.default_rng(3).normal(size=(6, 4)).round(3)
    return header + "\n" + "".join(",".join(str(r[j]) for j in order) + (",1" if label else "") + "\n"
                                   for r in x)


def test_predict_and_evaluate_refuse_the_training_columns_in_another_order(csv_run, tmp_path):
    """A file headed d,c,b,a (the training file's a,b,c,d) was read by position: each value met another
    feature's weights and statistics, and the predictions were written without a word."""
    f = tmp_path / "swapped.csv"
    f.write_text(features("d,c,b,a", (3, 2, 1, 0)))
    line = one_line(run_cli("predict", csv_run, "--input", f), 1, "swapped.csv",
                    "the training file's in another order", "(d, c, b, a; the run was trained on a, b, c, d)")
    assert "read by position" in line
    g = tmp_path / "swapped_with_label.csv"
    g.write_text(features("b,a,c,d,label", (1, 0, 2, 3), label=True))
    one_line(run_cli("evaluate", csv_run, "--data", g), 1, "another order", "(b, a, c, d;")


def test_the_training_order_and_a_moved_target_column_still_read(csv_run, tmp_path):
    same = tmp_path / "same.csv"
    same.write_text(features("a,b,c,d"))
    rc, out, err = run_cli("predict", csv_run, "--input", same)
    assert rc == 0 and len(out.splitlines()) == 7, err
    first = tmp_path / "label_first.csv"
    first.write_text("label,a,b,c,d\n" + "".join("1," + line + "\n"
                                                 for line in features("a,b,c,d").splitlines()[1:]))
    rc, out, err = run_cli("predict", csv_run, "--input", first)
    assert rc == 0 and "column 'label' (the target) left out" in err, err
    other = tmp_path / "other_names.csv"  # (other names: nothing to compare, read by position as before)
    other.write_text(features("p,q,r,s"))
    assert run_cli("predict", csv_run, "--input", other)[0] == 0


def test_a_link_that_leads_nowhere_is_named_so_by_predict_and_evaluate(csv_run, tmp_path):
    """A symlink loop (or a link to a removed file) was "no such file: loop.csv", a name `ls` lists; `dlc
    check` says "a symbolic link that leads nowhere (or in a loop)"."""
    loop, other = tmp_path / "loop.csv", tmp_path / "loop2.csv"
    loop.symlink_to(other)
    other.symlink_to(loop)
    dangling = tmp_path / "gone.csv"
    dangling.symlink_to(tmp_path / "removed.csv")
    for f in (loop, dangling):
        one_line(run_cli("predict", csv_run, "--input", f), 1, f"{f}: a symbolic link that leads nowhere")
        one_line(run_cli("evaluate", csv_run, "--data", f), 1, f"{f}: a symbolic link that leads nowhere")
    one_line(run_cli("predict", csv_run, "--input", tmp_path / "none.csv"), 1, "no such file:")


# ------------------------------------------------------------------------------------ decimal commas


def decimal_comma_rows(rows: int) -> str:
    """Two features written with decimal commas (3,45), then a class: 5 cells a row, as wide as each other."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 9, size=(rows, 2))
    return "".join(",".join(f"{v:.2f}".replace(".", ",") for v in r) + f",{i % 3}\n" for i, r in enumerate(x))


def test_a_headerless_file_of_decimal_commas_is_refused_not_trained_on_twice_the_features(tmp_path, csv_run):
    """"3,45,7,08,0" without a header: every row as wide as the first and every cell a number, so `dlc check`
    passed and `dlc run` trained on 4 features, the integer and fraction parts apart; `dlc predict` wrote
    predictions for them."""
    data = tmp_path / "dc.csv"
    data.write_text(decimal_comma_rows(40))
    rc, _, err = run_cli("check", "-q", write_spec(tmp_path, f'csv("{data}")'))
    assert rc == 2 and "Traceback" not in err, err
    assert "look like one number written with a decimal comma" in err, err
    assert "write numbers with a decimal point" in err, err
    from dlc.runtime.data import DataError, read_csv

    with pytest.raises(DataError, match=r"columns \d and \d \('\d' and '0\d'\) look like one number"):
        read_csv(data)
    big = tmp_path / "big.csv"  # (1 MiB or more: numpy's parser would read it; it leaves it to the walk)
    big.write_text(decimal_comma_rows(100_000))
    assert big.stat().st_size >= 2**20 and plain_numbers(big) is None
    with pytest.raises(DataError, match="decimal comma"):
        read_csv(big)
    given = tmp_path / "predict.csv"
    given.write_text("".join(line.rsplit(",", 1)[0] + "\n" for line in decimal_comma_rows(10).splitlines()))
    one_line(run_cli("predict", csv_run, "--input", given), 1, "predict.csv: row", "decimal comma")


def test_decimal_commas_under_a_header_are_named_beside_the_ragged_rows(tmp_path):
    """"a,b,y" then "3,07,1,25,0": only "rows have different numbers of columns: row 2 has 5, row 1 has 3"
    was said. A wider row of whole numbers now names the decimal comma; a row with a decimal point in it
    does not."""
    data = tmp_path / "dc.csv"
    data.write_text("a,b,c,y\n" + decimal_comma_rows(20))
    rc, _, err = run_cli("check", "-q", write_spec(tmp_path, f'csv("{data}", target="y")'))
    assert rc == 2 and "Traceback" not in err, err
    assert "row 2 has 5, row 1 has 4; row 2 holds whole numbers only: numbers written with a decimal " \
        "comma (" in err and "each split in two? write numbers with a decimal point (" in err, err
    with pytest.raises(CsvProblem, match=r"row 3 has 5, row 1 has 4$"):
        parse_table(b"a,b,c,y\n1,2,3,0\n1.5,2,3,4,0\n")


def test_zero_padded_numbers_under_a_header_and_plain_numbers_still_read(tmp_path):
    from dlc.runtime.data import read_csv

    dated = tmp_path / "dated.csv"
    dated.write_text("year,month,day,t,label\n" + "".join(f"2020,0{m},1{m},0.5,{m % 2}\n"
                                                           for m in range(1, 9)))
    x, _ = read_csv(dated)
    assert x[:, 1].tolist() == list(range(1, 9))
    plain = tmp_path / "plain.csv"
    plain.write_text("".join(f"{i},0.05,-3,10,{i % 2}\n" for i in range(8)))
    x, _ = read_csv(plain)
    assert x.shape == (8, 4) and x[0, 1] == 0.05


# ------------------------------------------------------------------------------------ gzipped IDX files


def test_a_gzipped_idx_file_cut_short_is_a_spec_error_as_the_run_says_it(tmp_path):
    """`dlc check` took a .gz IDX file at its header's word, so a download cut short passed and the run
    failed ("a damaged gzip file (Compressed file ended before the end-of-stream marker was reached)")."""
    import gzip
    import struct

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(20, 28, 28), dtype=np.uint8)
    labels = (np.arange(20) % 10).astype(np.uint8)

    def idx(dims, data: bytes) -> bytes:
        return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", v) for v in dims) + data

    folder = tmp_path / "mnist"
    folder.mkdir()
    img, lab = gzip.compress(idx((20, 28, 28), images.tobytes())), gzip.compress(idx((20,), labels.tobytes()))
    for stem, data in (("train-images-idx3-ubyte", img[: len(img) // 2]), ("train-labels-idx1-ubyte", lab),
                       ("t10k-images-idx3-ubyte", img), ("t10k-labels-idx1-ubyte", lab)):
        (folder / f"{stem}.gz").write_bytes(data)
    spec = write_spec(tmp_path, f'mnist("{folder}")', units=10)
    spec.write_text(spec.read_text().replace("input: (4)", "input: (784)"))
    rc, _, err = run_cli("check", "-q", spec)
    assert rc == 2 and "Traceback" not in err, err
    assert "train-images-idx3-ubyte.gz': a damaged gzip file (Compressed file ended" in err, err
    # a whole gzip stream of an IDX file cut short before it was compressed: the values are counted
    short = idx((20, 28, 28), images.tobytes())[:-100]
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(short))
    rc, _, err = run_cli("check", "-q", spec)
    assert rc == 2 and "truncated IDX file (15,580 of 15,680 values)" in err, err
    (folder / "train-images-idx3-ubyte.gz").write_bytes(img)
    rc, _, err = run_cli("check", "-q", spec)
    assert rc == 0, err


def test_one_feature_per_sample_is_said_in_the_singular(tmp_path):
    """An npz whose x holds one value per sample against input (4): "1 features" was the wording."""
    np.savez(tmp_path / "d.npz", x=np.zeros(20), y=np.zeros(20, dtype=np.int64))
    spec = write_spec(tmp_path, f'npz("{tmp_path / "d.npz"}")')
    rc, out, err = run_cli("check", str(spec))
    assert rc == 2 and "samples have 1 feature (a 1-D array: one value each)" in out + err, out + err
