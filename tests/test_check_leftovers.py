"""`dlc check` findings that only a run used to make: a softmax of one value (W011, always 1.0), a CSV target
column of names under a regression loss (E302 at the loss) or against the output's units, a seed too long for
64 bits (E209 in the seed's own terms), and `dlc cv --k` folds the data cannot make (E303 before any run
folder, as a spec's kfold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlc.compiler import compile_text
from dlc.compiler.diagnostics import Diagnostic

from conftest import ROOT, edited_spec, run_cli

DIABETES = ROOT / "specs" / "diabetes.dlspec"
IRIS = ROOT / "specs" / "iris.dlspec"


def _diags(text: str, base_dir: Path = DIABETES.parent) -> list[Diagnostic]:
    return compile_text(text, "t.dlspec", base_dir).diagnostics.sorted()


def _codes(items: list[Diagnostic]) -> list[tuple[str, str]]:
    return [(x.code, x.severity) for x in items]


def _at(text: str, needle: str, line_with: str) -> tuple[int, int]:
    for n, line in enumerate(text.split("\n"), 1):
        if line_with in line and needle in line:
            return n, line.index(needle, line.index(line_with)) + 1
    raise AssertionError(f"{needle!r} not in the spec")


def _where(d: Diagnostic) -> tuple[int, int]:
    assert d.span is not None
    return d.span.line, d.span.col


# ------------------------------------------------------------------------------------- softmax of one value


def test_a_softmax_output_of_one_unit_is_a_warning_at_its_activation():
    text = edited_spec(DIABETES, ("Dense(1)  ", "Dense(1, activation=softmax)  "))
    found = _diags(text)
    assert _codes(found) == [("W011", "warning")]
    w = found[0]
    assert _where(w) == _at(text, "softmax", "Dense(1, activation=softmax)")
    assert "always 1.0" in w.message and "Dense(1)" in w.message
    hint = w.hint_text() or ""
    assert "linear" in hint and "sigmoid" in hint
    assert compile_text(text, "t.dlspec", DIABETES.parent).ok  # (a warning: the spec still compiles)


def test_a_softmax_of_one_value_anywhere_is_a_warning():
    text = """model t {
  data { source: diabetes }
  input: (10)
  layers {
    Dense(1, activation=softmax)
    Dense(4)
    Activation(softmax)
    Dense(1)
    Activation(softmax)
    Softmax()
  }
  loss: mse
  optimizer: Adam()
}
"""
    found = [x for x in _diags(text) if x.code == "W011"]
    # the first Dense(1), the Activation after the second Dense(1) and the Softmax layer; not the one over 4
    assert [x.span.line for x in found if x.span] == [5, 9, 10]


def test_a_softmax_over_several_values_or_a_sigmoid_of_one_is_no_warning():
    assert not [x for x in _diags(DIABETES.read_text()) if x.code == "W011"]
    assert not [x for x in _diags(IRIS.read_text(), IRIS.parent) if x.code == "W011"]
    text = edited_spec(DIABETES, ("Dense(1)  ", "Dense(1, activation=sigmoid)  "))
    assert not [x for x in _diags(text) if x.code == "W011"]


def test_a_categorical_loss_on_one_softmax_unit_stays_one_error():
    text = edited_spec(IRIS, ("Dense(3, activation=softmax)", "Dense(1, activation=softmax)"))
    assert [x.code for x in _diags(text, IRIS.parent)] == ["E302"]


def test_dlc_check_prints_the_softmax_warning(tmp_path):
    spec = tmp_path / "s.dlspec"
    spec.write_text(edited_spec(DIABETES, ("Dense(1)  ", "Dense(1, activation=softmax)  ")))
    rc, _, err = run_cli("check", "-q", spec)
    assert rc == 0
    assert "warning[W011]: activation=softmax on Dense(1): a softmax of one value is always 1.0" in err


# ---------------------------------------------------------------------------------- csv target of names


def _names_csv(tmp_path: Path, classes=("setosa", "versicolor", "virginica"), rows: int = 30) -> Path:
    lines = ["a,b,c,species"] + [f"{i},{i * 2},{i % 7},{classes[i % len(classes)]}" for i in range(rows)]
    path = tmp_path / "names.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _csv_spec(loss: str, target: str = ", target=species", units: int | str = 1) -> str:
    return f"""model t {{
  data {{
    source: csv("names.csv"{target})
    split: holdout(val=0.2)
  }}
  input: (3)
  layers {{
    Dense(8, activation=relu)
    Dense({units})
  }}
  loss: {loss}
  optimizer: Adam()
}}
"""


def test_a_csv_target_of_names_with_a_regression_loss_is_e302_at_the_loss(tmp_path):
    _names_csv(tmp_path)
    for target in (", target=species", ""):
        text = _csv_spec("mse", target)
        found = _diags(text, tmp_path)
        assert [x.code for x in found] == ["E302"], [(x.code, x.message) for x in found]
        e = found[0]
        assert _where(e) == _at(text, "mse", "loss:")
        assert "holds names (setosa, versicolor, virginica: 3 classes)" in e.message
        assert "mse is a regression loss" in e.message
        assert "sparse_categorical_crossentropy" in (e.hint_text() or "")


def test_a_csv_target_of_two_names_suggests_binary_crossentropy(tmp_path):
    _names_csv(tmp_path, ("no", "yes"))
    (e,) = _diags(_csv_spec("huber"), tmp_path)
    assert e.code == "E302" and "binary_crossentropy" in (e.hint_text() or "")


def test_a_csv_target_of_numbers_or_a_classification_loss_is_no_error(tmp_path):
    _names_csv(tmp_path)
    ok = _csv_spec("sparse_categorical_crossentropy").replace("Dense(1)", "Dense(3, activation=softmax)")
    assert not [x for x in _diags(ok, tmp_path) if x.severity == "error"]
    numbers = "".join(f"{i},{i},{i},{i / 3}\n" for i in range(20))
    (tmp_path / "names.csv").write_text("a,b,c,species\n" + numbers)
    assert not [x for x in _diags(_csv_spec("mse"), tmp_path) if x.severity == "error"]


@pytest.mark.parametrize("loss, units, where, message", [
    ("sparse_categorical_crossentropy", "2, activation=softmax", "Dense(2",
     "holds names (setosa, versicolor, virginica: 3 classes), but the last layer has 2 outputs"),
    ("categorical_crossentropy", "2, activation=softmax", "Dense(2",
     "holds names (setosa, versicolor, virginica: 3 classes), but the last layer has 2 outputs"),
    ("binary_crossentropy", "1, activation=sigmoid", "binary_crossentropy",
     "holds names (setosa, versicolor, virginica: 3 classes), but binary_crossentropy needs two classes"),
])
def test_a_csv_target_of_names_against_the_output_is_e302(tmp_path, loss, units, where, message):
    """Three class names with a 2-unit softmax, or with binary_crossentropy: `dlc check` said ok and the run
    stopped after building the model ("class 'virginica' (number 2) in row 3 but the output layer has 2
    units"); now E302 at the output layer (at the loss for binary_crossentropy)."""
    _names_csv(tmp_path)
    text = _csv_spec(loss, units=units)
    found = [x for x in _diags(text, tmp_path) if x.severity == "error"]
    line_with = "loss:" if where == loss else where
    assert [(x.code, _where(x)) for x in found] == [("E302", _at(text, where, line_with))], \
        [x.message for x in found]
    assert message in found[0].message


def test_dlc_check_refuses_a_regression_loss_on_csv_names(tmp_path):
    _names_csv(tmp_path)
    spec = tmp_path / "s.dlspec"
    spec.write_text(_csv_spec("mse"))
    rc, _, err = run_cli("check", "-q", spec)
    assert rc == 2 and "error[E302]: the target column 'species' of 'names.csv' holds names" in err


# ------------------------------------------------------------------------------------------------- seed


def test_a_seed_beyond_64_bits_says_the_seeds_limit():
    text = edited_spec(DIABETES, ("seed: 5", "seed: 18446744073709551615"))
    (e,) = _diags(text)
    assert e.code == "E209" and _where(e) == _at(text, "18446744073709551615", "seed:")
    assert e.message == "seed 18446744073709551615 overflows: it does not fit in 64 bits"
    assert e.hint_text() == "a seed may be at most 4,294,967,295"
    assert "9,223,372,036,854,775,807" not in e.render(text)


def test_a_negative_seed_beyond_64_bits_and_a_searched_one_say_the_seeds_limit():
    text = edited_spec(DIABETES, ("seed: 5", "seed: -99999999999999999999"))
    (e,) = _diags(text)
    assert e.code == "E209" and e.hint_text() == "a seed may be 0 to 4,294,967,295"
    text = edited_spec(DIABETES, ("seed: 5", "seed: choice(1, 99999999999999999999)"))
    found = [x for x in _diags(text) if x.code == "E209"]
    assert [x.hint_text() for x in found] == ["a seed may be at most 4,294,967,295"]


def test_another_integer_beyond_64_bits_keeps_the_general_limit():
    text = edited_spec(DIABETES, ("epochs: 60", "epochs: 18446744073709551615"))
    (e,) = [x for x in _diags(text) if x.code == "E209"]
    assert "9,223,372,036,854,775,807" in (e.hint_text() or "")


# ---------------------------------------------------------------------------------------------- cv --k


def test_cv_k_beyond_the_rows_is_e303_before_any_run_folder(tmp_path):
    spec = tmp_path / "iris.dlspec"
    spec.write_text(IRIS.read_text())
    out = tmp_path / "cv"
    rc, _, err = run_cli("cv", spec, "--k", "500", "--out", out, "--epochs", "1")
    assert rc == 2, err
    assert "error[E303]: 500-fold split: only 120 rows (after the 30 test rows)" in err
    assert "k can be 120 at most" in err
    assert not out.exists()
    # the same words as the k written in the spec
    written = edited_spec(IRIS, ("holdout(val=0.2, test=0.2, stratify=true)", "kfold(k=500, test=0.2)"))
    (e,) = [x for x in _diags(written, IRIS.parent) if x.code == "E303"]
    assert e.message.startswith("500-fold split: only 120 rows (after the 30 test rows)")


def test_cv_k_a_stratified_class_cannot_fill_is_e303(tmp_path):
    spec = tmp_path / "iris.dlspec"
    spec.write_text(IRIS.read_text())
    rc, _, err = run_cli("cv", spec, "--k", "45", "--out", tmp_path / "cv", "--epochs", "1")
    assert rc == 2 and "error[E303]: stratified 45-fold split" in err
    assert not (tmp_path / "cv").exists()


def test_cv_k_replaces_a_kfold_k_the_data_cannot_make(tmp_path):
    """`dlc cv --k 4` of a spec whose kfold(k=200) 150 rows cannot make was refused with the spec's k (its
    E303 at `k=200`) though --k replaces it; `dlc check` and `dlc cv` without --k still refuse it, and --k
    is checked in its place."""
    spec = tmp_path / "iris.dlspec"
    kfold = ("holdout(val=0.2, test=0.2, stratify=true)", "kfold(k=200, test=0.2)")
    spec.write_text(edited_spec(IRIS, kfold))
    rc, _, err = run_cli("check", spec)
    assert rc == 2 and "200-fold split" in err, err
    rc, _, err = run_cli("cv", spec, "--out", tmp_path / "no", "--epochs", "1")
    assert rc == 2 and "200-fold split" in err and not (tmp_path / "no").exists(), err
    rc, _, err = run_cli("cv", spec, "--k", "500", "--out", tmp_path / "no", "--epochs", "1")
    assert rc == 2 and "500-fold split" in err and "200-fold" not in err, err
    rc, out, err = run_cli("cv", spec, "--k", "2", "--out", tmp_path / "cv", "--epochs", "1", "--quiet")
    assert rc == 0, err
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["k"] == 2


@pytest.mark.parametrize("where, written", [
    ("early_stopping", "    early_stopping: (monitor=val_acc, patience=2)"),
    ("plateau", "  schedule: plateau(monitor=val_acc, patience=1)"),
])
def test_a_keras_metric_alias_may_be_monitored(where, written):
    """`metrics: [acc]` then `monitor=val_acc` (what Keras users write) was E201 "cannot monitor 'val_acc'",
    though `acc` is a name of accuracy: an alias is monitored as its metric (`val_accuracy` in the IR and the
    histories), as is a search objective's (`maximize val_acc`)."""
    text = IRIS.read_text().replace("metrics: [accuracy]", "metrics: [acc]")
    if where == "early_stopping":
        text = text.replace("    epochs: 40\n", "    epochs: 40\n" + written + "\n")
    else:
        text = text.replace("  optimizer: Adam(lr=0.01)\n", "  optimizer: Adam(lr=0.01)\n" + written + "\n")
    result = compile_text(text, "t.dlspec", IRIS.parent)
    assert result.ok, result.render()
    spec = result.spec
    monitor = spec.train.early_stopping.monitor if where == "early_stopping" else spec.schedule.monitor
    assert monitor == "val_accuracy"
