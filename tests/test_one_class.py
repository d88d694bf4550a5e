"""Labels of one class only: training runs and scores accuracy 1.0 by always answering that class, so
`dlc check` says so (W019) where the classes are known before training (bundled sets, small CSV files,
small npy/npz label arrays); a regression on a constant target is not a classifier and gets no warning."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_leftovers import check, csv_text, write_spec
from test_data_sources_hostile import write_spec as source_spec

ROWS = 30


@pytest.mark.parametrize("label", ["0", "cat"])
def test_a_csv_of_one_class_is_warned(tmp_path, label):
    (tmp_path / "d.csv").write_text(csv_text(labels=[label] * ROWS))
    rc, err = check(write_spec(tmp_path, 'csv("d.csv", target="label")'))
    assert rc == 0 and "warning[W019]" in err, err
    assert "one class only (all 30 rows)" in err and "d.csv" in err, err


def test_two_classes_are_not_warned(tmp_path):
    (tmp_path / "d.csv").write_text(csv_text(labels=["0", "1"] * (ROWS // 2)))
    rc, err = check(write_spec(tmp_path, 'csv("d.csv", target="label")'))
    assert rc == 0 and "W019" not in err, err


def test_binary_npy_labels_of_one_class_are_warned(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((20, 4), np.float32))
    np.save(tmp_path / "y.npy", np.ones(20, np.int64))
    spec = source_spec(tmp_path, 'npy("x.npy", "y.npy")', units=1, act="sigmoid", loss="binary_crossentropy")
    rc, err = check(spec)
    assert rc == 0 and "warning[W019]: 'y.npy' holds one class only (all 20 rows)" in err, err
    assert "check the labels file or the rows" in err, err
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 4), np.float32), labels=np.ones(20, np.int64))
    spec = source_spec(tmp_path, 'npz("d.npz", y="labels")', units=1, act="sigmoid",
                       loss="binary_crossentropy")
    rc, err = check(spec)
    assert rc == 0 and "warning[W019]: 'd.npz' array 'labels' holds one class only" in err, err


def test_a_regression_on_a_constant_target_is_not_a_class_warning(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((20, 4), np.float32))
    np.save(tmp_path / "y.npy", np.ones(20, np.float32))
    spec = source_spec(tmp_path, 'npy("x.npy", "y.npy")', units=1, act="linear", loss="mse")
    rc, err = check(spec)
    assert "W019" not in err, err


def test_a_file_too_large_for_check_to_count_is_warned_when_the_run_reads_it(tmp_path, monkeypatch):
    """A CSV over 16 MiB is only line-counted by `dlc check` (its classes unknown), so W019 could not be
    said; the run, which holds the labels, says it once, on the console and in log.txt."""
    from dlc.compiler import datarows

    from conftest import run_cli

    (tmp_path / "d.csv").write_text(csv_text(labels=["cat"] * ROWS))
    spec = write_spec(tmp_path, 'csv("d.csv", target="label")')
    rc, _, err = run_cli("run", spec, "--out", tmp_path / "small")
    assert rc == 0 and err.count("one class only") == 1 and "training labels are all" not in err, err
    monkeypatch.setattr(datarows, "MAX_CSV_PARSED_BYTES", 0)  # (counted by its lines only, as a large file)
    (tmp_path / "large").mkdir()  # (another file: the first one's count is cached)
    (tmp_path / "large" / "d.csv").write_text(csv_text(labels=["cat"] * ROWS))
    spec = write_spec(tmp_path / "large", 'csv("d.csv", target="label")')
    rc, _, err = run_cli("run", spec, "--out", tmp_path / "large" / "run")
    said = "warning: the 24 training labels are all class 'cat': a classifier scores accuracy 1.0 by " \
           "always answering it, and learns nothing"
    assert rc == 0 and "W019]" not in err and said in err, err
    assert said in (tmp_path / "large" / "run" / "log.txt").read_text()
    import dlc

    assert dlc.load_data(spec).warnings == [said.removeprefix("warning: ") + "; check which column or array "
                                            "holds the labels, and the rows of the file (W019)"]


def test_two_classes_get_no_warning_at_run_time(tmp_path):
    import dlc

    (tmp_path / "d.csv").write_text(csv_text(labels=["0", "1"] * (ROWS // 2)))
    assert dlc.load_data(write_spec(tmp_path, 'csv("d.csv", target="label")')).warnings == []
