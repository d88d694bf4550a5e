"""An emitted script stops where `dlc run` stops, with one line and exit 1: a nan or inf loss (dlc's own
message, the fold named in k-fold, the per-step losses so far still written; it printed a notice and went on,
to the next fold in k-fold), and data `dlc run` refuses: a missing file, nan or inf features, features that do
not fit the spec's input, labels the output layer has no class for, targets of the wrong width (they were
tracebacks, or trained silently on nan). The torch scripts run in this process (torch imports once); the
keras script of the same spec runs in a subprocess, marked slow."""

from __future__ import annotations

import io
import json
import runpy
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest

DIVERGING = """\
model diverge {{
  seed: 1
  data {{
    source: diabetes
    normalize: standard
    split: {split}
  }}
  input: (10)
  layers {{
    Dense(4, activation=relu)
    Dense(1)
  }}
  loss: mse
  metrics: [mae]
  optimizer: SGD(lr=100.0)
  train {{
    epochs: 2
    batch_size: 64
  }}
}}
"""

HOSTILE = """\
model hostile {{
  seed: 3
  data {{
    source: {source}
    normalize: standard
    split: holdout(val=0.25)
  }}
  input: (4)
  layers {{
    Dense(8, activation=relu)
    Dense({units}, activation={activation})
  }}
  loss: {loss}
  optimizer: Adam(lr=0.01)
  train {{
    epochs: 1
    batch_size: 16
  }}
}}
"""

CLASSES = {"units": 3, "activation": "softmax", "loss": "sparse_categorical_crossentropy"}
REGRESSION = {"units": 1, "activation": "linear", "loss": "mse"}


def _emit(spec: Path, backend: str = "torch") -> Path:
    from dlc.backends.emit.script import emit
    from dlc.compiler import compile_file

    script = spec.with_name(f"{spec.stem}_{backend}.py")
    script.write_text(emit(compile_file(spec).raise_for_errors(), backend, spec))
    return script


def run_script(script: Path, *args: str, replace: dict | None = None) -> tuple[int, str, str]:
    """main() of an emitted script in this process, with its functions named in `replace` replaced: (exit
    code, stdout, stderr)."""
    ns = runpy.run_path(str(script), run_name="emitted")
    ns["main"].__globals__.update(replace or {})
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    with patch.object(sys, "argv", [script.name, *args]), redirect_stdout(out), redirect_stderr(err):
        try:
            ns["main"]()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def _one_error_line(script: Path, err: str) -> str:
    """The single stderr line of a failed script, without its `name: error: ` prefix."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{script.name}: error: "), lines[0]
    return lines[0].removeprefix(f"{script.name}: error: ")


# ------------------------------------------------------------------------------------- a nan or inf loss


def _dlc_failure(spec_path: Path) -> str:
    """The message dlc's training loop stops with on this spec (torch)."""
    from test_emit import _dlc_losses

    from dlc.runtime.loop import TrainingFailed

    with pytest.raises(TrainingFailed) as e:
        _dlc_losses(spec_path, "torch")
    return str(e.value)


@pytest.mark.parametrize("split", ["holdout(val=0.2)", "kfold(k=3)"])
def test_non_finite_loss_stops_the_script_as_it_stops_dlc(tmp_path, split):
    spec = tmp_path / "diverge.dlspec"
    spec.write_text(DIVERGING.format(split=split))
    script = _emit(spec)
    losses = tmp_path / "losses.json"
    rc, out, err = run_script(script, "--losses", str(losses))
    assert rc == 1
    why = _one_error_line(script, err)
    kfold = split.startswith("kfold")
    assert why == _dlc_failure(spec) + (" (fold 1 of 3)" if kfold else "")
    assert why.startswith("loss became inf at epoch 1, step 3 ")
    assert "fold 2/3" not in out and "test" not in out  # it stopped: no next fold, no evaluation
    # the first epoch's losses, kept, the non-finite ones as null (valid JSON)
    kept = json.loads(losses.read_text())
    assert len(kept) > 2 and all(np.isfinite(kept[:2])) and kept[2:] == [None] * (len(kept) - 2)


@pytest.mark.slow
def test_non_finite_loss_stops_the_keras_script_too(tmp_path):
    spec = tmp_path / "diverge.dlspec"
    spec.write_text(DIVERGING.format(split="kfold(k=3)"))
    script = _emit(spec, "keras")
    proc = subprocess.run([sys.executable, str(script), "--losses", "l.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "fold 2/3" not in proc.stdout
    assert _one_error_line(script, proc.stderr).startswith("loss became ")
    assert "(fold 1 of 3)" in proc.stderr and (tmp_path / "l.json").read_text().startswith("[")


def test_keras_script_imports_tensorflow_with_its_notices_silenced(tmp_path):
    """TensorFlow's native start-up notices (absl, oneDNN) went to stderr, around the one error line: the
    script imports Keras and TensorFlow with file descriptor 2 pointed away, as dlc does (keras/quiet.py)."""
    import ast

    spec = tmp_path / "diverge.dlspec"
    spec.write_text(DIVERGING.format(split="holdout(val=0.2)"))
    tree = ast.parse(_emit(spec, "keras").read_text())
    quiet = [node for node in ast.walk(tree) if isinstance(node, ast.Try) and "os.dup2(_null, 2)" in
             ast.unparse(node.body) and node.finalbody]  # (inside the try that makes a Ctrl-C one line)
    assert len(quiet) == 1
    inside = {a.name for node in quiet[0].body if isinstance(node, ast.Import) for a in node.names}
    outside = {a.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               for a in node.names} | {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert inside == {"keras", "tensorflow"} and not outside & inside


def test_an_unwritable_losses_file_is_said_before_training(tmp_path):
    spec = tmp_path / "diverge.dlspec"
    spec.write_text(DIVERGING.format(split="holdout(val=0.2)"))
    losses = tmp_path / "no" / "l.json"
    rc, out, err = run_script(_emit(spec), "--losses", str(losses))
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"--losses {losses}: No such file or directory")


def test_ctrl_c_is_one_line_and_keeps_the_losses(tmp_path):
    spec = tmp_path / "diverge.dlspec"
    spec.write_text(DIVERGING.format(split="holdout(val=0.2)"))
    script = _emit(spec)

    def interrupted(model, train_part, val_part, epochs, step_losses):
        step_losses.append(0.5)
        raise KeyboardInterrupt

    losses = tmp_path / "l.json"
    rc, _, err = run_script(script, "--losses", str(losses), replace={"train": interrupted})
    assert (rc, err) == (130, f"{script.name}: interrupted\n")
    assert json.loads(losses.read_text()) == [0.5]


def test_epochs_below_one_are_refused(tmp_path):
    """`dlc run --epochs 0` is refused; the script trained nothing and reported the untrained model."""
    spec = tmp_path / "diverge.dlspec"
    spec.write_text(DIVERGING.format(split="holdout(val=0.2)"))
    rc, out, err = run_script(_emit(spec), "--epochs", "0")
    assert rc == 2 and out == "" and err.strip().endswith("error: --epochs 0: give 1 or more")


# ------------------------------------------------------------------------------------------- hostile data


def _csv(path: Path, x: np.ndarray, y) -> None:
    rows = [",".join([*(f"{v:g}" for v in r), str(t)]) for r, t in zip(x, y, strict=True)]
    path.write_text("a,b,c,d,label\n" + "\n".join(rows) + "\n")


def _good(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)), np.arange(n) % 3


def _spec(tmp_path: Path, source: str, **kw) -> Path:
    spec = tmp_path / "hostile.dlspec"
    spec.write_text(HOSTILE.format(source=source, **(kw or CLASSES)))
    return spec


def _break_csv(path: Path, case: str) -> None:
    x, y = _good()
    if case == "missing":
        path.unlink()
    elif case == "nan":
        x[4, 2] = np.nan
        _csv(path, x, y)
    elif case == "columns":
        path.write_text("a,b,c,label\n" + "".join(",".join(f"{v:g}" for v in r[:3]) + f",{t}\n"
                                                   for r, t in zip(x, y, strict=True)))
    elif case == "label":
        _csv(path, x, [*y[:6], 3, *y[7:]])


CSV_CASES = ["missing", "nan", "columns", "label"]


def _dlc_refusal(spec: Path) -> str:
    """The one line dlc's data path (dlc.runtime.data.prepare, which `dlc run` trains from) refuses the data
    of `spec` with: the script copies its checks, so it says the same."""
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, prepare

    ir = compile_file(spec).spec  # (built also where `dlc check` sees the data's problem first, exit 2)
    assert ir is not None
    with pytest.raises(DataError) as e:
        prepare(ir, spec.parent)
    return str(e.value)


@pytest.mark.parametrize("case", CSV_CASES)
def test_csv_data_dlc_run_refuses_is_one_line_naming_the_row(tmp_path, case):
    """The rows are the file's (a header is row 1), as `dlc run` names them."""
    path = tmp_path / "d.csv"
    _csv(path, *_good())
    spec = _spec(tmp_path, 'csv("d.csv", target="label")')
    script = _emit(spec)
    _break_csv(path, case)
    rc, out, err = run_script(script)
    assert rc == 1 and out == ""
    why = _one_error_line(script, err)
    assert why == _dlc_refusal(spec)
    assert why.startswith(f"{path}: ") or why == f"cannot read data file {path}: No such file or directory"


def test_csv_class_names_beyond_the_output_layer_are_named(tmp_path):
    path = tmp_path / "d.csv"
    x, y = _good()
    names = np.array(["ant", "bee", "cat"])
    _csv(path, x, names[y])
    spec = _spec(tmp_path, 'csv("d.csv", target="label")', units=3, activation="softmax",
                 loss="categorical_crossentropy")
    script = _emit(spec)
    _csv(path, x, [*names[y][:5], "dog", *names[y][6:]])
    rc, _, err = run_script(script)
    assert rc == 1
    assert _one_error_line(script, err) == _dlc_refusal(spec)
    assert "class 'dog' (number 3) in row 7" in _dlc_refusal(spec)


def _npz_case(case: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _good()
    if case == "inf":
        x[9, 0] = np.inf
    elif case == "shape":
        x = x[:, :3]
    elif case == "text":
        y = y.astype(str)
    elif case == "onehot":
        y = np.eye(3)[y]
    elif case == "fraction":
        y = np.where(np.arange(len(y)) == 2, 0.5, y)
    return x, y


NPZ_CASES = ["inf", "shape", "text", "onehot", "fraction"]


@pytest.mark.parametrize("case", NPZ_CASES)
def test_npz_data_dlc_run_refuses_is_one_line(tmp_path, case):
    path = tmp_path / "d.npz"
    np.savez(path, x=_good()[0], y=_good()[1])
    spec = _spec(tmp_path, 'npz("d.npz")')
    script = _emit(spec)
    x, y = _npz_case(case)
    np.savez(path, x=x, y=y)
    rc, out, err = run_script(script)
    assert rc == 1 and out == ""
    assert _one_error_line(script, err) == _dlc_refusal(spec)


def test_npy_labels_are_named_as_dlc_names_them(tmp_path):
    """By the targets' own file, as `dlc run` (which reads the features a batch at a time) and load() (which
    reads them whole, as the script does) name them."""
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, load

    x, y = _good()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y % 2)
    spec = _spec(tmp_path, 'npy("x.npy", "y.npy")', units=1, activation="sigmoid", loss="binary_crossentropy")
    script = _emit(spec)
    np.save(tmp_path / "y.npy", y)  # 0, 1 and 2: not a binary label
    rc, _, err = run_script(script)
    assert rc == 1
    with pytest.raises(DataError) as e:
        load(compile_file(spec).spec, tmp_path)
    assert _one_error_line(script, err) == str(e.value) == _dlc_refusal(spec)
    assert str(e.value).startswith(f"{tmp_path / 'y.npy'}: label 2 in sample 3")


@pytest.mark.parametrize("case", ["width", "nan"])
def test_regression_targets_of_the_wrong_width_or_not_finite_are_one_line(tmp_path, case):
    x, y = _good()
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y.astype(float))
    spec = _spec(tmp_path, 'npz("d.npz")', **REGRESSION)
    script = _emit(spec)
    bad = np.stack([y, y], axis=1) if case == "width" else np.where(np.arange(40) == 5, np.nan, y)
    np.savez(path, x=x, y=bad)
    rc, _, err = run_script(script)
    assert rc == 1
    assert _one_error_line(script, err) == _dlc_refusal(spec)


def test_checked_data_trains_as_before(tmp_path):
    """The checks change no number: labels stored as floats, one column or one-hot rows give the same
    targets (tests/test_emit*.py compare every fixture's losses with dlc's)."""
    path = tmp_path / "d.npz"
    x, y = _good()
    np.savez(path, x=x, y=y.astype(float)[:, None])
    script = _emit(_spec(tmp_path, 'npz("d.npz")'))
    ns = runpy.run_path(str(script), run_name="emitted")
    (train, val, test), = ns["load_data"]()
    assert test is None and train[1].dtype == np.int64 and set(train[1]) | set(val[1]) == {0, 1, 2}
