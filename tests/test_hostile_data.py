"""Every hostile input gets a clear answer: CSV files by the header rule (README "Data files"), npz files,
labels the output layer cannot take, values the model's dtype cannot hold, and option values that would train
nothing. Each failure is one line on stderr (exit 1; usage errors exit 2), never a traceback or a silent
wrong result; what was read is always reported."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 30 samples, 4 features, classes 0..2 (10 each), well separated
_RNG = np.random.default_rng(0)
LABELS = np.arange(30) % 3
FEATURES = _RNG.normal(size=(30, 4)) + LABELS[:, None]


def csv_text(x: np.ndarray, y: np.ndarray | None = None, header: str | None = None) -> str:
    rows = [",".join(f"{v:.4f}" for v in r) + ("" if y is None else f",{y[i]}") for i, r in enumerate(x)]
    return "\n".join(([header] if header else []) + rows) + "\n"


def write_spec(folder: Path, source: str = 'csv("d.csv")', *, units: int = 3, act: str = "softmax",
               loss: str = "sparse_categorical_crossentropy", inputs: str = "(4)", first: str = "",
               normalize: str = "standard", split: str = "holdout(val=0.2)", seed: int = 1) -> Path:
    spec = folder / "m.dlspec"
    spec.write_text(textwrap.dedent(f"""\
        model m {{
          seed: {seed}
          data {{
            source: {source}
            normalize: {normalize}
            split: {split}
          }}
          input: {inputs}
          layers {{
            {first}
            Dense({units}, activation={act})
          }}
          loss: {loss}
          optimizer: Adam(lr=0.01)
          train {{
            epochs: 1
            batch_size: 8
          }}
        }}
        """))
    return spec


def one_line(result: tuple[int, str, str], code: int = 1, *facts: str) -> str:
    """The command's only stderr line, after checking its exit code, that it names every fact and that no
    traceback came out."""
    rc, _, err = result
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, err
    assert len(lines) == 1, err
    for fact in facts:
        assert fact in lines[0], lines[0]
    return lines[0]


def train(folder: Path, *extra) -> tuple[int, str, str]:
    return run_cli("run", folder / "m.dlspec", "--backend", "torch", "--out", folder / "run", "--quiet",
                   *extra)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run trained on a header-less CSV (sparse labels, 3 classes, standardised inputs)."""
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "d.csv").write_text(csv_text(FEATURES, LABELS))
    write_spec(folder)
    rc, _, err = train(folder)
    assert rc == 0, err
    return folder / "run"


def predict(run: Path, content: str | bytes, name: str = "in.csv", *extra) -> tuple[int, str, str]:
    f = run.parent / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run_cli("predict", run, "--input", f, *extra)


def evaluate(run: Path, path: Path) -> tuple[int, str, str]:
    return run_cli("evaluate", run, "--data", path, "--json")


# ------------------------------------------------------------------------------------ the header rule


def test_training_reads_every_row_of_a_headerless_csv_and_says_so(run):
    info = json.loads((run / "run.json").read_text())
    assert info["data_read"]["rows"] == 30 and info["data_read"]["header"] is False


def test_training_skips_a_header_row_and_says_so_on_the_console(tmp_path):
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS, header="a,b,c,d,label"))
    write_spec(tmp_path)
    rc, _, err = run_cli("run", tmp_path / "m.dlspec", "--backend", "torch", "--out", tmp_path / "run")
    assert rc == 0, err
    assert "read 30 rows from" in err and "the first row is a header" in err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data_read"]["rows"] == 30


@pytest.mark.parametrize("first, facts", [
    ("1.0,,2.0,3.0", ["row 1, column 2 is empty"]),  # a first row with an empty cell is data, not a header
    ("1.0,abc,2.0,3.0", ["row 1, column 2 is not a number ('abc')", "a header row has only names"]),
    ("a,b,,d", ["row 1, column 1 is not a number ('a')", "a header row has only names"]),
])
def test_predict_never_drops_a_first_row_that_is_not_a_header(run, first, facts):
    one_line(predict(run, first + "\n" + csv_text(FEATURES[:2])), 1, *facts)


def test_predict_counts_every_row_it_reads(run):
    rc, out, err = predict(run, csv_text(FEATURES[:3]))
    assert rc == 0, err
    assert len(out.splitlines()) == 1 + 3  # a header, then one prediction per row
    assert "read 3 rows from" in err and "no header" in err
    rc, out, err = predict(run, csv_text(FEATURES[:3], header="a,b,c,d"))
    assert rc == 0 and len(out.splitlines()) == 1 + 3 and "the first row is a header" in err


@pytest.mark.parametrize("content, facts", [
    ("1,2,3,4\n5,6,7\n8,9,10,11\n", ["rows have different numbers of columns", "row 2 has 3, row 1 has 4"]),
    (b"a,b,c,d\n1,2,3,4\n\xff\xfe,2,3,4\n", ["not UTF-8 text", "byte 0xff in row 3"]),
    ("a,b,c,d\n", ["no data rows, only a header row"]),
    ("", ["the file is empty"]),
])
def test_predict_unreadable_csv(run, content, facts):
    one_line(predict(run, content), 1, *facts)


def test_training_csv_problems(tmp_path):
    spec_path = write_spec(tmp_path)
    rows = csv_text(FEATURES, LABELS).splitlines()
    cases = [
        (rows[:5] + ["1,2,3"] + rows[5:], ["rows have different numbers of columns", "row 6 has 3"]),
        (["1.0,x,2.0,3.0,0"] + rows, ["row 1, column 2 is not a number ('x')", "header row has only names"]),
        (rows[:3] + ["1,2,3,4,"] + rows[3:], ["row 4, column 5 is empty", "target is missing"]),
        (rows[:3] + ["1,2,3,4,cat"] + rows[3:], ["target column mixes numbers and names", "row 4: 'cat'"]),
    ]
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, prepare

    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    spec = compile_file(spec_path).spec
    for lines, facts in cases:
        (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
        rc, _, err = train(tmp_path)  # (`dlc run` checks every cell of a small file first: E401)
        assert rc == 2 and "Traceback" not in err and all(f in err for f in ("d.csv", *facts)), err
        with pytest.raises(DataError) as e:  # (and the run says the same of a file changed since the check)
            prepare(spec, tmp_path)
        assert all(fact in str(e.value) for fact in facts) and "\n" not in str(e.value), str(e.value)
    (tmp_path / "d.csv").write_bytes(b"\xff" + csv_text(FEATURES, LABELS).encode())
    rc, _, err = train(tmp_path)
    assert rc in (1, 2) and "Traceback" not in err and "d.csv" in err  # (`dlc run` checks the file first)


def test_a_named_target_needs_a_header(tmp_path):
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, prepare

    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS, header="a,b,c,d,label"))
    spec = compile_file(write_spec(tmp_path, 'csv("d.csv", target="label")')).spec
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS))  # the header is gone since the check
    with pytest.raises(DataError, match="names the target column 'label', but the file has no header row"):
        prepare(spec, tmp_path)


# ------------------------------------------------------------------------------------------------ npz files


def test_predict_npz_problems(run, tmp_path):
    np.savez(tmp_path / "none.npz")
    np.savez(tmp_path / "two.npz", a=FEATURES, b=FEATURES)
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 4)))
    np.savez(tmp_path / "text.npz", x=np.array([["a", "b", "c", "d"]]))
    np.savez(tmp_path / "whole.npz", x=FEATURES)
    whole = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "fake.npz").write_text("1,2,3,4\n")
    cases = {"none.npz": "holds no arrays", "two.npz": "no array 'x' (arrays: a, b)",
             "empty.npz": "array 'x' has no samples", "text.npz": "holds <U1 values, not numbers",
             "cut.npz": "truncated or corrupt", "fake.npz": "not an .npz archive"}
    for name, fact in cases.items():
        one_line(run_cli("predict", run, "--input", tmp_path / name), 1, name, fact)
    np.savez(tmp_path / "only.npz", features=FEATURES[:5])  # one array, whatever its name: the features
    rc, out, err = run_cli("predict", run, "--input", tmp_path / "only.npz")
    assert rc == 0 and len(out.splitlines()) == 6 and "read 5 samples from" in err


def test_x_and_y_of_different_lengths(run, tmp_path):
    np.savez(tmp_path / "d.npz", x=FEATURES, y=LABELS[:-1])
    one_line(evaluate(run, tmp_path / "d.npz"), 1, "'x' has 30 samples but 'y' has 29")
    write_spec(tmp_path, 'npz("d.npz")')
    # (the archive's headers say it before training: a spec error at the file, as for npy(x, y))
    rc, _, err = train(tmp_path)
    assert rc == 2 and "Traceback" not in err, err
    assert "error[E401]: 'd.npz': 'x' has 30 samples but 'y' has 29" in err and "m.dlspec:4:" in err


@pytest.mark.parametrize("where", ["folder", "missing parent"])
def test_predict_output_that_cannot_be_written(run, tmp_path, where):
    out = tmp_path if where == "folder" else tmp_path / "nope" / "p.csv"
    fact = "is a folder" if where == "folder" else "does not exist"
    one_line(predict(run, csv_text(FEATURES[:3]), "in.csv", "--output", out), 2, "--output", fact)


# --------------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("label, facts", [
    ("-1", ["label -1 in row 3 is negative", "needs integer class labels 0..2"]),
    ("0.5", ["label 0.5 in row 3 is not a whole number"]),
    ("3", ["label 3 in row 3 but the output layer has 3 units (classes 0..2)"]),
    ("cat", ["the target column mixes numbers and names", "row 3: 'cat'"]),
])
def test_evaluate_rejects_labels_the_model_cannot_take(run, tmp_path, label, facts):
    rows = csv_text(FEATURES[:5], LABELS[:5]).splitlines()
    rows[2] = rows[2].rsplit(",", 1)[0] + "," + label
    (tmp_path / "xy.csv").write_text("\n".join(rows) + "\n")
    one_line(evaluate(run, tmp_path / "xy.csv"), 1, "xy.csv", *facts)


def test_evaluate_with_class_names_the_run_never_numbered(run, tmp_path):
    (tmp_path / "xy.csv").write_text(csv_text(FEATURES[:5], np.array(["a", "b", "c"])[LABELS[:5]]))
    one_line(evaluate(run, tmp_path / "xy.csv"), 1, "holds names ('a' in row 1)",
             "the run was trained on class numbers")


def test_evaluate_with_one_hot_labels_for_a_sparse_loss(run, tmp_path):
    np.savez(tmp_path / "d.npz", x=FEATURES, y=np.eye(3)[LABELS])
    one_line(evaluate(run, tmp_path / "d.npz"), 1, "sparse_categorical_crossentropy needs one integer class "
             "label per sample", "use categorical_crossentropy")


@pytest.mark.parametrize("label, facts", [
    (3, ["label 3 in row 18 but the output layer has 3 units (classes 0..2)"]),
    (-1, ["label -1 in row 18 is negative"]),
    (0.5, ["label 0.5 in row 18 is not a whole number", "regression loss"]),
])
def test_training_checks_labels_before_any_backend_sees_them(tmp_path, label, facts):
    y = LABELS.astype(object)
    y[17] = label
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, y))
    _refused_before_training(tmp_path, write_spec(tmp_path), *facts)
    assert not (tmp_path / "run").exists()


def _refused_before_training(tmp_path: Path, spec: Path, *facts: str) -> None:
    """A spec error (E302, exit 2) now: `dlc check` reads a small CSV file's target column; the data path's
    own check (a DataError in its words, for a file too large to be read before training) still says it."""
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, prepare

    rc, _, err = train(tmp_path)
    assert rc == 2 and "error[E302]" in err and "Traceback" not in err, err
    with pytest.raises(DataError) as e:
        prepare(compile_file(spec).spec, tmp_path)
    assert all(f in str(e.value) for f in facts), str(e.value)


def test_training_npz_labels(tmp_path):
    spec = write_spec(tmp_path, 'npz("d.npz")')
    np.savez(tmp_path / "d.npz", x=FEATURES, y=np.eye(3)[LABELS])  # (its header says: E302 before training)
    _refused_before_training(tmp_path, spec, "d.npz", "use categorical_crossentropy for one-hot targets")
    np.savez(tmp_path / "d.npz", x=FEATURES, y=np.array(["a", "b", "c"])[LABELS])  # (its header: text)
    _refused_before_training(tmp_path, spec, "d.npz", "label 'a' in sample 1 is not a class number")


def test_one_hot_labels_suit_categorical_crossentropy(tmp_path):
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, prepare

    np.savez(tmp_path / "d.npz", x=FEATURES, y=np.eye(3)[LABELS])
    spec = compile_file(write_spec(tmp_path, 'npz("d.npz")', loss="categorical_crossentropy")).spec
    d = prepare(spec, tmp_path)
    assert np.array_equal(np.sort(np.concatenate([d.train.labels, d.val.labels])), np.sort(LABELS))
    y = np.eye(3)[LABELS]
    y[4] = [0.5, 0.5, 0]
    np.savez(tmp_path / "d.npz", x=FEATURES, y=y)
    with pytest.raises(DataError, match=r"the target of sample 5 is not one-hot"):
        prepare(spec, tmp_path)


def test_binary_labels(tmp_path):
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS))
    spec = write_spec(tmp_path, units=1, act="sigmoid", loss="binary_crossentropy")
    _refused_before_training(tmp_path, spec, "label 2 in row 3, but binary_crossentropy needs labels 0 and 1")


def test_regression_targets_must_match_the_output_units(tmp_path):
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS))
    spec = write_spec(tmp_path, units=3, act="linear", loss="mse")
    _refused_before_training(tmp_path, spec, "the targets have 1 column(s) but the output layer has 3 units")
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, np.array(["a", "b", "c"])[LABELS]))
    write_spec(tmp_path, units=1, act="linear", loss="mse")
    rc, _, err = train(tmp_path)  # (a spec error now, found before training: dlc check reads a small CSV's
    # target column; the run's own words, "the target column holds names (a, b, c)", are for a large one)
    assert rc == 2 and "E302" in err, err
    assert "holds names (a, b, c: 3 classes), but mse is a regression loss" in err


def test_embedding_indices_beyond_the_vocabulary(tmp_path):
    x = np.arange(30 * 4).reshape(30, 4) % 5
    x[6, 2] = 9
    np.savez(tmp_path / "d.npz", x=x, y=LABELS)
    write_spec(tmp_path, 'npz("d.npz")', first="Embedding(5, 2)\n    Flatten()", normalize="none")
    one_line(train(tmp_path), 1, "sample 7, feature 3 is 9", "Embedding(5, ...)", "whole numbers 0..4")
    write_spec(tmp_path, 'npz("d.npz")', first="Embedding(10, 2)\n    Flatten()", normalize="standard")
    rc, _, err = train(tmp_path)  # (a spec error now, found before the data is read: dlc check finds it)
    assert rc == 2 and "E303" in err and "takes token indices" in err, err
    assert "normalize: none keeps token indices whole" in err


@pytest.mark.parametrize("split, facts", [
    ("holdout(val=0.2, stratify=true)", ["stratified split: class 2 has 1 row of 21",
                                        "rows per class: 10 of class 0, 10 of class 1, 1 of class 2"]),
    ("holdout(val=0.05, stratify=true)", ["cannot give each part a row of each of the 3 classes"]),
    ("kfold(k=5, stratify=true)", ["stratified 5-fold split: class 2 has 1 row(s)"]),
])
def test_too_few_rows_for_a_stratified_split(tmp_path, monkeypatch, split, facts):
    from dlc.compiler import datarows

    keep = np.flatnonzero(LABELS != 2)[:20].tolist() + [2]  # classes 0 and 1: 10 rows each; class 2: 1
    if "0.05" in split:
        keep = list(range(30))
    (tmp_path / "d.csv").write_text(csv_text(FEATURES[keep], LABELS[keep]))
    write_spec(tmp_path, split=split)
    rc, _, err = train(tmp_path)  # (a spec error, found before training: dlc check counts the file's classes)
    assert rc == 2 and "error[E303]" in err and all(f in err for f in facts), err
    monkeypatch.setattr(datarows, "MAX_CSV_BYTES", 0)  # (a file dlc check does not count: the run refuses it)
    one_line(train(tmp_path), 1, *facts)


# -------------------------------------------------------------------------------------- huge values


def test_predict_rejects_inputs_that_overflow(run):
    x = FEATURES[:3].copy()
    x[1, 2] = 1e308
    one_line(predict(run, csv_text(x)), 1, "row 2, feature 3", "beyond what float32 holds")


def test_evaluate_rejects_inputs_that_overflow(run, tmp_path):
    x = FEATURES.copy()
    x[4, 0] = 1e300
    np.savez(tmp_path / "d.npz", x=x, y=LABELS)
    one_line(evaluate(run, tmp_path / "d.npz"), 1, "sample 5, feature 1", "beyond what float32 holds")


def test_non_finite_predictions_are_errors():
    from dlc.runtime.serve import ServeError, check_finite_outputs

    with pytest.raises(ServeError, match=r"in.csv: the model's output for row 3 is not finite"):
        check_finite_outputs(np.array([[0.5, 0.5], [0.2, 0.8], [np.nan, np.nan]]), "in.csv",
                             lambda i: f"row {i + 1}")


@pytest.mark.parametrize("value, normalize, fact", [
    (1e308, "standard", "normalize: standard overflows on feature 2"),
    (1e39, "none", "feature 2 is 1e+39 after normalize: none, beyond what float32 holds"),
])
def test_training_rejects_values_that_overflow(tmp_path, value, normalize, fact):
    x = FEATURES.copy()
    x[:, 1] = np.where(LABELS == 0, value, -value)
    np.savez(tmp_path / "d.npz", x=x, y=LABELS)
    write_spec(tmp_path, 'npz("d.npz")', normalize=normalize)
    one_line(train(tmp_path), 1, fact)


# ----------------------------------------------------------------------------------- options and seeds


@pytest.mark.parametrize("argv, option", [
    (["run", "--epochs", "0"], "--epochs"), (["run", "--epochs", "-3"], "--epochs"),
    (["cv", "--epochs", "0"], "--epochs"), (["run", "--seed", "-1"], "--seed"),
    (["cv", "--seed", "-1"], "--seed"), (["compare", "--seed", "-1"], "--seed"),
    (["run", "--seed", str(2**32)], "--seed"), (["cv", "--k", "1"], "--k"),
    (["compare", "--steps", "0"], "--steps"),
])
def test_options_that_would_train_nothing_are_usage_errors(tmp_path, argv, option):
    spec = write_spec(tmp_path, "iris")
    rc, out, err = run_cli(argv[0], spec, *argv[1:])
    assert rc == 2 and "Traceback" not in err and out == ""
    assert err.splitlines()[-1].startswith(f"dlc: error: Invalid value for '{option}'")
    assert not (tmp_path / "runs").exists()


def test_a_negative_seed_in_a_spec_is_a_spec_error(tmp_path):
    spec = write_spec(tmp_path, "iris", seed=-1)
    rc, _, err = run_cli("check", spec)
    assert rc == 2 and "invalid value for 'seed'" in err and "m.dlspec:2:" in err


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_a_utf16_csv_reads_as_its_utf8_twin(tmp_path, encoding):
    """A spreadsheet's "Unicode text" export is UTF-16, with or without a byte-order mark: its named target is
    found by `dlc check` and training reads the same rows and trains to the same losses as the UTF-8 file."""
    text = csv_text(FEATURES, LABELS, header="a,b,c,d,label")
    histories = []
    for name, data in (("utf8", text.encode()), (encoding, text.encode(encoding))):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "d.csv").write_bytes(data)
        write_spec(folder, 'csv("d.csv", target="label")')
        rc, _, err = train(folder)
        assert rc == 0, err
        histories.append(json.loads((folder / "run" / "history.json").read_text()))
        assert json.loads((folder / "run" / "run.json").read_text())["data_read"]["rows"] == 30
    assert [r["loss"] for r in histories[0]] == [r["loss"] for r in histories[1]]


def test_a_broken_utf16_csv_is_one_line(run):
    one_line(predict(run, "a,b,c,d\n1,2,3,4\n".encode("utf-16") + b"\x00\xd8"), 1, "not valid UTF-16 text")


def test_a_holdout_that_leaves_nothing_to_train_on_is_said_in_the_specs_terms(tmp_path, monkeypatch):
    """Two rows with holdout(val=0.2, test=0.2): the spec's fractions and the rows each part takes, not
    scikit-learn's internal 'test_size=0.25 ... of 1 rows'."""
    from dlc.compiler import datarows

    (tmp_path / "d.csv").write_text(csv_text(FEATURES[:2], LABELS[:2]))
    write_spec(tmp_path, split="holdout(val=0.2, test=0.2)")
    facts = ["holdout(val=0.2, test=0.2) of 2 rows leaves 0 to train on", "1 for validation, 1 for test"]
    rc, _, err = train(tmp_path)  # (a spec error, found before training: dlc check counts the file's rows)
    assert rc == 2 and "error[E303]" in err and all(f in err for f in facts), err
    monkeypatch.setattr(datarows, "MAX_CSV_BYTES", 0)  # (a file dlc check does not count: the run refuses it)
    line = one_line(train(tmp_path), 1, *facts)
    assert "test_size" not in line and (tmp_path / "run").exists() is False


@pytest.mark.parametrize("kind, why", [("folder", "it is a folder, not a file"),
                                       ("fifo", "it is not a regular file"),
                                       ("loop", "it is a symbolic link that leads nowhere"),
                                       ("missing", "no such file")])
def test_a_data_path_that_is_not_a_file_says_what_it_is(tmp_path, kind, why):
    """`csv("d.csv")` naming a folder, a pipe or a dangling link is not 'no such file'."""
    target = tmp_path / "d.csv"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "loop":
        target.symlink_to(target)
    spec = write_spec(tmp_path)
    rc, _, err = run_cli("check", spec)
    assert rc == 2 and f"cannot read data file 'd.csv': {why}" in err, err


# ------------------------------------------------------------------------------------- a run edited after


def test_predict_names_a_sample_of_one_feature_in_the_singular(run):
    one_line(predict(run, "1\n2\n"), 1, "samples have 1 feature, the model takes 4")


def _edited_run(run: Path, tmp_path: Path, preprocessing) -> Path:
    """A copy of `run` whose run.json's preprocessing is `preprocessing`."""
    import shutil

    copy = Path(shutil.copytree(run, tmp_path / "edited"))
    info = json.loads((copy / "run.json").read_text())
    info["preprocessing"] = preprocessing(info["preprocessing"])
    (copy / "run.json").write_text(json.dumps(info))
    return copy


@pytest.mark.parametrize("edit, fact", [
    (lambda pre: None, "preprocessing is null, not the shift and scale of normalize: standard"),
    (lambda pre: {}, "preprocessing is {}, not the shift and scale"),
    (lambda pre: {**pre, "shift": pre["shift"][:1]}, "preprocessing's shift has 1 value, the model takes 4 "
                                                     "features"),
    (lambda pre: {**pre, "scale": "abc"}, "preprocessing's scale is \"abc\", not a list of numbers"),
    (lambda pre: {**pre, "scale": [1, 1, 0, 1]}, "preprocessing's scale has a 0 (feature 3)"),
    (lambda pre: {**pre, "shift": [1, float("nan"), 1, 1]}, "shift has a value that is not finite "
                                                             "(feature 2)"),
], ids=["null", "empty", "short", "text", "zero", "nan"])
def test_a_damaged_preprocessing_in_run_json_is_named_never_used(run, tmp_path, edit, fact):
    """Normalisation statistics that are missing, short (numpy would broadcast them), not numbers or not
    usable: predict and export refuse the run in one line instead of predicting from other inputs."""
    copy = _edited_run(run, tmp_path, edit)
    line = one_line(predict(copy, csv_text(FEATURES[:3])), 1, f"'{copy}': run.json is damaged: ", fact,
                    "train the spec again")
    assert line == one_line(run_cli("export", copy, "--output", tmp_path / "m.onnx"), 1)
    assert not (tmp_path / "m.onnx").exists()


def test_statistics_for_a_spec_that_does_not_normalise_are_damage(tmp_path):
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS))
    write_spec(tmp_path, normalize="none")
    assert train(tmp_path)[0] == 0
    copy = _edited_run(tmp_path / "run", tmp_path, lambda pre: {"shift": [1.0] * 4, "scale": [2.0] * 4})
    one_line(predict(copy, csv_text(FEATURES[:3])), 1, "preprocessing holds statistics",
             "the spec does not normalise")
    assert predict(tmp_path / "run", csv_text(FEATURES[:3]))[0] == 0


def test_evaluate_refuses_a_data_file_that_changed_since_training(tmp_path):
    """`dlc evaluate RUN` re-reads the spec's data to split it as training did: a file with other rows would
    give other splits (a "test" part holding rows the model trained on), so it is refused, saying how to
    evaluate the file as it is."""
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS))
    write_spec(tmp_path)
    assert train(tmp_path)[0] == 0
    rc, out, err = run_cli("evaluate", tmp_path / "run")
    assert rc == 0 and "test" not in out and "val" in out, err
    (tmp_path / "d.csv").write_text(csv_text(FEATURES[:20], LABELS[:20]))
    rc, out, err = run_cli("evaluate", tmp_path / "run")
    one_line((rc, out, err), 1, f"{tmp_path / 'd.csv'} has 20 rows, it had 30 when the run was trained",
             "its splits would not be the run's", "--data FILE")
    assert out == ""
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, LABELS, header="a,b,c,d,y"))  # 30 rows, and a header
    one_line(run_cli("evaluate", tmp_path / "run"), 1, "the first row of", "is a header, when the run was "
             "trained it was data")
    rc, out, err = evaluate(tmp_path / "run", tmp_path / "d.csv")  # the file as it is: --data
    assert rc == 0 and "data" in json.loads(out), err


def test_predict_to_a_closed_pipe_exits_quietly(run):
    """`dlc predict RUN --input F | head -1`: the reader has gone; exit 141 and nothing on stderr, as every
    command's output."""
    import subprocess
    import sys

    f = run.parent / "many.csv"
    f.write_text(csv_text(np.tile(FEATURES, (200, 1))))
    read, write = os.pipe()
    os.close(read)
    try:
        r = subprocess.run([sys.executable, "-m", "dlc", "predict", str(run), "--input", str(f)],
                           stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert r.returncode == 141 and r.stderr == "", r.stderr


def test_predict_names_the_classes_a_run_was_trained_on_by_name(tmp_path):
    """Targets that were names (alpha, beta, gamma): predict writes those names and p_<name> columns (it
    wrote 0, 1, 2 and p0..p2), and the .npz holds class_names beside the class numbers."""
    names = np.array(["alpha", "beta", "gamma"])
    (tmp_path / "d.csv").write_text(csv_text(FEATURES, names[LABELS]))
    write_spec(tmp_path)
    rc, _, err = train(tmp_path)
    assert rc == 0, err
    run = tmp_path / "run"
    rc, out, err = predict(run, csv_text(FEATURES[:4]))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "class,p_alpha,p_beta,p_gamma"
    assert all(line.split(",")[0] in names for line in lines[1:]) and len(lines) == 5
    rc, _, err = run_cli("predict", run, "--input", tmp_path / "in.csv", "--output", tmp_path / "p.npz")
    assert rc == 0, err
    with np.load(tmp_path / "p.npz") as f:
        assert f["class_names"].tolist() == names.tolist() and f["classes"].shape == (4,)
