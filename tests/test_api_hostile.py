"""The Python API and `dlc predict`/`evaluate`/`export` misused as a notebook or a shell user would: each
wrong argument, file or damaged run folder is one clear error in dlc's words (a specific class in Python,
one line and exit 2 or 1 on the command line), never numpy's, pydantic's or Path's words, nor a folder made
or a file written for nothing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"


@pytest.fixture(scope="module")
def iris():
    """An untrained iris Model on torch (its seeded initial weights: enough to predict, evaluate, save)."""
    import dlc

    return dlc.Model(IRIS, backend="torch", dtype="float64")


@pytest.fixture(scope="module")
def run(iris, tmp_path_factory) -> Path:
    """A finished run folder, saved without training (fast): what evaluate, predict and export load."""
    return iris.save(tmp_path_factory.mktemp("hostile") / "run")


def _damaged_copy(run: Path, tmp_path: Path, edit) -> Path:
    """A copy of `run` whose run.json `edit(info)` changed."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    info = json.loads((copy / "run.json").read_text())
    edit(info)
    (copy / "run.json").write_text(json.dumps(info))
    return copy


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------------- load

@pytest.mark.parametrize("given,error,fact", [
    ("", ValueError, "not an empty string"),  # was "cannot read spec file '': it is a directory"
    ("model m {\n  input: (4)\n}", ValueError, "not the text of a spec"),  # was "No such file"
    (f"{IRIS}\n", ValueError, "a line break around it"),  # (read from a list of paths)
], ids=["empty", "spec text", "newline"])
def test_load_names_an_empty_path_and_spec_text(given, error, fact):
    import dlc

    with pytest.raises(error, match=fact):
        dlc.load(given)


def test_load_of_a_loaded_spec_says_so(iris):
    import dlc

    with pytest.raises(TypeError, match="not a spec already loaded"):
        dlc.load(iris.spec)


# ------------------------------------------------------------------------------------------------ Model

@pytest.mark.parametrize("x,error,fact", [
    ([[1, 2, 3, 4], [1, 2]], ValueError, "ragged"),  # numpy's "inhomogeneous shape after 1 dimensions"
    ({"a": [1, 2, 3, 4]}, TypeError, "array of numbers, not dict"),  # "float() argument must be ..."
    ((r for r in np.ones((2, 4))), TypeError, "array of numbers, not generator"),
    ([[10**400, 1, 2, 3]], ValueError, "too large for a float"),  # OverflowError
    (np.ma.masked_array(np.ones((2, 4)), mask=np.eye(2, 4)), ValueError, "2 masked"),  # hidden values used
    (np.ones(4), ValueError, r"one sample\? give x.reshape\(1, -1\)"),
], ids=["ragged", "dict", "generator", "huge int", "masked", "one sample flat"])
def test_predict_names_inputs_numpy_would_misread(iris, x, error, fact):
    with pytest.raises(error, match=fact):
        iris.predict(x)


@pytest.mark.parametrize("y,fact", [
    (np.eye(5)[[0, 1]], r"targets of shape \(2, 5\): one-hot rows for this model have 3 columns"),
    (np.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]]), "not one-hot rows"),  # probabilities: argmax was taken
    ([[0, 1], [1]], "ragged"),
], ids=["5 wide", "probabilities", "ragged"])
def test_evaluate_refuses_targets_that_are_not_one_hot_rows_of_the_output(iris, y, fact):
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match=fact):
        iris.evaluate(x, y)
    assert set(iris.evaluate(x, np.eye(3)[[0, 1]])) >= {"loss", "accuracy"}  # one-hot rows still work


def test_yes_no_arguments_must_be_booleans(iris, tmp_path):
    """`replace="no"` is truthy: it deleted the run; `compile="yes"` compiled."""
    import dlc

    with pytest.raises(TypeError, match="replace must be True or False, not 'no'"):
        iris.save(tmp_path / "r", replace="no")
    with pytest.raises(TypeError, match="compile must be True or False"):
        dlc.Model(iris.spec, compile="yes")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("folder,error,fact", [
    (None, TypeError, "not NoneType"), (3, TypeError, "not int"), ("", ValueError, "not ''")],
    ids=["None", "int", "empty"])
def test_save_refuses_what_is_not_a_folder_path(iris, folder, error, fact, tmp_path, monkeypatch):
    """save(None) made ./None, save(3) made ./3 and save("") a fresh runs/iris-torch-<time>/."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=fact):
        iris.save(folder)
    assert list(tmp_path.iterdir()) == []


def test_save_refusals_speak_of_its_arguments(run, iris):
    import dlc

    with pytest.raises(dlc.api.OutFolderError) as e:
        iris.save(run)
    assert "pass replace=True" in str(e.value) and "--" not in str(e.value)


@pytest.mark.parametrize("kwargs,error,fact", [
    ({"steps": 2, "backends": "torch"}, TypeError, "a pair of backend names"),  # "unknown backend 't'"
    ({"steps": 2, "backends": ("torch", "torch")}, ValueError, "two different backends"),  # passed
    ({"steps": 2, "backends": ("keras", "jax")}, ValueError, "backend 'jax'"),
    ({"seeds": 1}, ValueError, "seeds must be at least 2"),  # was "--seeds must be ..."
    ({"seeds": 2, "margin": "0.1"}, TypeError, "margin must be a number"),  # "'<' not supported"
], ids=["one string", "same twice", "unknown", "seeds 1", "margin text"])
def test_compare_names_wrong_arguments_before_any_work(kwargs, error, fact):
    import dlc

    with pytest.raises(error, match=fact):
        dlc.compare(IRIS, **kwargs)


# -------------------------------------------------------------------------------------- using a run

def test_run_functions_name_arguments_that_are_not_paths(run):
    import dlc

    with pytest.raises(TypeError, match="the run directory must be a path"):
        dlc.api.predict_file(None, "x.csv")
    with pytest.raises(TypeError, match="the input file must be a path .* not ndarray"):
        dlc.api.predict_file(run, np.ones((2, 4)))
    with pytest.raises(TypeError, match="the data file must be a path"):
        dlc.api.evaluate_run(run, 3)
    with pytest.raises(dlc.api.ServeError, match="the input file is an empty name"):
        dlc.api.predict_file(run, "")


@pytest.mark.parametrize("edit,fact", [
    (lambda info: info.pop("backend"), "its backend is missing"),  # KeyError: 'backend'
    (lambda info: info.update(backend="jax"), 'its backend is "jax"'),  # "unknown backend 'jax'"
], ids=["no backend", "unknown backend"])
def test_a_damaged_backend_in_run_json_is_named(run, tmp_path, edit, fact):
    rc, _, err = run_cli("predict", _damaged_copy(run, tmp_path, edit), "--input", tmp_path / "x.csv")
    assert rc == 1 and fact in _one_line(err) and "run.json is damaged" in err


def test_evaluate_names_a_run_json_without_its_spec_folder(run, tmp_path):
    """Path(None) said "TypeError: expected str, bytes or os.PathLike object"."""
    copy = _damaged_copy(run, tmp_path, lambda info: info.update(spec_dir=None))
    rc, _, err = run_cli("evaluate", copy)
    assert rc == 1 and "(spec_dir)" in _one_line(err)


def test_an_ir_json_that_is_not_dlcs_ir_is_named(run, tmp_path):
    """It was "ValidationError: 5 validation errors for Spec (set DLC_TRACEBACK=1 ...)"."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "ir.json").write_text('{"name": 3}')
    rc, _, err = run_cli("export", copy)
    assert rc == 1 and "ir.json is damaged (not dlc's IR: name:" in _one_line(err)


@pytest.mark.parametrize("damage,said", [
    (lambda ir: ir.update(layers=[]), "ir.json is damaged (it has no layers)"),
    (lambda ir: ir.update(input=[2, 2]), "ir.json is not this run's"),
    (lambda ir: ir["layers"].insert(0, {"name": "reshape_x", "kind": "Reshape", "target_shape": [3]}),
     "ir.json is damaged (its layers do not fit its input"),
])
def test_an_ir_json_that_reads_as_dlcs_but_cannot_be_built_is_named(run, tmp_path, damage, said):
    """`"layers": []` was "IndexError: list index out of range (set DLC_TRACEBACK=1 to see where)"."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    ir = json.loads((copy / "ir.json").read_text())
    damage(ir)
    (copy / "ir.json").write_text(json.dumps(ir))
    (tmp_path / "x.csv").write_text("1,2,3,4\n")
    for argv in (["evaluate", copy], ["predict", copy, "--input", tmp_path / "x.csv"]):
        rc, _, err = run_cli(*argv)
        assert rc == 1 and said in _one_line(err), err


# ------------------------------------------------------------------------------------------------ CLI

@pytest.mark.parametrize("argv,option", [
    (["predict", "", "--input", "x.csv"], "RUN"),  # "'.' is not a finished run directory"
    (["predict", "{run}", "--input", ""], "--input"),  # ". is a folder"
    (["predict", "{run}", "--input", "x.csv", "--output", ""], "--output"),  # "--output  is a folder"
    (["evaluate", "{run}", "--data", ""], "--data"),
    (["export", "{run}", "--output", ""], "--output"),  # wrote RUN/model.onnx
], ids=["predict run", "predict input", "predict output", "evaluate data", "export output"])
def test_an_empty_path_is_a_usage_error(run, argv, option):
    rc, out, err = run_cli(*[a.replace("{run}", str(run)) for a in argv])
    assert rc == 2 and out == "" and _one_line(err) == f"dlc: error: {option} is empty; give a path"
    assert not (run / "model.onnx").exists()


def test_export_writes_onnx_only_under_an_onnx_name(run, tmp_path):
    """`--output x.csv` wrote an ONNX model named x.csv without a word."""
    rc, _, err = run_cli("export", run, "--output", tmp_path / "x.csv")
    assert rc == 2 and "give a name ending in .onnx" in _one_line(err)
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("name,fact", [
    ("/dev/null", "is not a regular file"),  # was "no such file: /dev/null"
    ("{tmp}", "is a folder, not a .csv, .npz or .npy file"),
], ids=["device", "folder"])
def test_an_input_that_is_not_a_file_says_what_it_is(run, tmp_path, name, fact):
    rc, _, err = run_cli("predict", run, "--input", name.replace("{tmp}", str(tmp_path)))
    assert rc == 2 and fact in _one_line(err)  # (a path of the wrong kind given: a usage error)


def test_predict_leaves_out_the_spec_s_target_column_and_says_so(tmp_path):
    """A CSV with the training file's target column: "row 2, column 5 ('species') is not a number"."""
    import dlc

    (tmp_path / "f.csv").write_text("a,b,c,d,species\n" + "".join(
        f"{i},{i + 1},{i + 2},{i + 3},{'ab'[i % 2]}\n" for i in range(12)))
    (tmp_path / "m.dlspec").write_text(IRIS.read_text().replace("source: iris ", 'source: csv("f.csv", '
                                                                 'target="species") ', 1))
    run = dlc.Model(tmp_path / "m.dlspec").save(tmp_path / "run")
    rc, out, err = run_cli("predict", run, "--input", tmp_path / "f.csv")
    assert rc == 0 and len(out.splitlines()) == 13, err
    assert "column 'species' (the target) left out" in _one_line(err)


def test_predict_of_one_column_too_many_says_to_leave_out_the_target(run, tmp_path):
    (tmp_path / "x.csv").write_text("1,2,3,4,0\n")
    rc, _, err = run_cli("predict", run, "--input", tmp_path / "x.csv")
    assert rc == 1 and "if the last is the target, leave it out" in _one_line(err)


def test_export_to_a_file_it_cannot_write_names_that_file(run, tmp_path, monkeypatch):
    """It named the temporary file (`x.onnx.tmp.onnx: permission denied`)."""
    import dlc.runtime.rundir as rundir

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path) + ".tmp.onnx")

    pytest.importorskip("onnx")
    monkeypatch.setattr(rundir, "output_file", refused)
    rc, _, err = run_cli("export", run, "--output", tmp_path / "x.onnx")
    assert rc == 1 and _one_line(err) == f"dlc: error: cannot write {tmp_path / 'x.onnx'}: Permission denied"


def test_the_history_a_user_edits_is_a_copy(tmp_path):
    """Editing the rows `fit` returned, or `model.history`, changed what `save` wrote to history.json."""
    import dlc

    model = dlc.Model(IRIS, backend="torch")
    rows = model.fit(epochs=1).rows
    rows[0]["loss"] = -1.0
    model.history.rows.clear()
    assert len(model.history.rows) == 1 and model.history.rows[0]["loss"] > 0
    saved = json.loads((model.save(tmp_path / "run") / "history.json").read_text())
    assert len(saved) == 1 and saved[0]["loss"] > 0


@pytest.mark.parametrize("got,want,fact", [
    ((3, 4, 4), (4, 4, 3), r"channels first\? .*np.moveaxis\(x, 1, -1\)"),
    ((2, 8), (8, 2), r"give them as \(N, 8, 2\) or flat, \(N, 16\)"),
    ((2, 3, 4), (3, 2, 4), r"give them as \(N, 3, 2, 4\) or flat, \(N, 24\)"),
])
def test_samples_of_another_layout_are_refused_not_scrambled(got, want, fact):
    """A reshape read (3, 32, 32), channels first, as (32, 32, 3): every image scrambled, without a word."""
    from dlc.compiler.checkshared import layout_refusal

    assert re.search(fact, layout_refusal(got, want))


@pytest.mark.parametrize("got,want", [((4, 4, 3), (4, 4, 3)), ((48,), (4, 4, 3)), ((8, 8), (8, 8, 1)),
                                      ((1, 8, 8), (8, 8, 1)), ((28, 28), (784,)), ((3, 4, 4), (48,)),
                                      ((8, 8), (64, 1)), ((4, 4, 3), (16, 3))])
def test_flat_samples_and_axes_of_one_are_read_as_they_are(got, want):
    """A flat input flattens any sample, as training does (mnist_mlp.dlspec: (28, 28) images, input
    (784)), and any shape that merges neighbouring axes of the other ((8, 8) images as 64 steps of 1)."""
    from dlc.compiler.checkshared import layout_refusal

    assert layout_refusal(got, want) is None


CHANNELS_FIRST_SPEC = """\
model cf {
  data { source: npz("cf.npz") }
  input: (4, 4, 3)
  layers {
    Flatten()
    Dense(2, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam()
  train { epochs: 1 }
}
"""


def test_training_refuses_samples_a_reshape_would_scramble(tmp_path):
    """(N, 3, 4, 4) samples, channels first, for input (4, 4, 3) trained reshaped, every image scrambled,
    and predict then refused the arrays the model was trained on: E303 at check, a DataError at run time
    (an npz and an npy source alike)."""
    from dlc.compiler import compile_file
    from dlc.runtime.data import DataError, prepare

    x, y = np.random.default_rng(0).random((40, 3, 4, 4)), np.arange(40) % 2
    np.savez(tmp_path / "cf.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    for source in ('npz("cf.npz")', 'npy("x.npy", "y.npy")'):
        spec = tmp_path / "cf.dlspec"
        spec.write_text(CHANNELS_FIRST_SPEC.replace('npz("cf.npz")', source))
        rc, _, err = run_cli("check", spec)
        assert rc == 2 and "samples have shape (3, 4, 4), the model takes (4, 4, 3) (channels first?" in err
        assert "cf.dlspec:3:10" in err, err
        written = compile_file(tmp_path / "cf.dlspec")
        runnable = compile_file(_flat_twin(tmp_path, source)).raise_for_errors()
        with pytest.raises(DataError, match=r"samples of shape \(3, 4, 4\), the model takes \(4, 4, 3\)"):
            prepare(runnable.model_copy(update={"input": written.spec.input}), tmp_path)


def _flat_twin(folder: Path, source: str) -> Path:
    """The spec with input (48): it checks (a flat input takes any layout)."""
    twin = folder / "flat.dlspec"
    twin.write_text(CHANNELS_FIRST_SPEC.replace('npz("cf.npz")', source).replace("(4, 4, 3)", "(48)"))
    return twin


def test_a_flat_input_takes_samples_of_any_layout_as_training_does(iris, run, tmp_path):
    """Training flattens (3, 2, 2) samples for input (4); predict refused the same arrays ("samples of shape
    (2, 2), the model takes (4,)"): an MLP trained on (N, 28, 28) images could not predict them."""
    x = np.arange(12.0).reshape(3, 2, 2)
    np.testing.assert_array_equal(iris.predict(x), iris.predict(x.reshape(3, 4)))
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "flat.npz", x=x.reshape(3, 4))
    rc, out, err = run_cli("predict", run, "--input", tmp_path / "x.npz")
    assert rc == 0, err
    assert out == run_cli("predict", run, "--input", tmp_path / "flat.npz")[1]


@pytest.mark.parametrize("text,name", [("1;2;3;4\n", "semicolons"), ("a\tb\tc\td\n1\t2\t3\t4\n", "tabs")])
def test_a_csv_of_another_separator_is_named(run, tmp_path, text, name):
    """A lone row "1;2;3;4" was "no data rows, only a header row (1;2;3;4)"."""
    (tmp_path / "x.csv").write_text(text)
    rc, _, err = run_cli("predict", run, "--input", tmp_path / "x.csv")
    assert rc == 1 and f"separated by {name}, not commas" in _one_line(err)


@pytest.mark.parametrize("command", ["predict", "export", "compile"])
def test_an_output_named_as_a_missing_folder_writes_no_file(run, tmp_path, command):
    """`--output new/` wrote a file named `new` (the rule is check_output_file's, for every output FILE)."""
    (tmp_path / "x.csv").write_text("1,2,3,4\n")
    first = {"predict": [run, "--input", tmp_path / "x.csv"], "export": [run],
             "compile": [IRIS, "--emit", "torch"]}[command]
    rc, _, err = run_cli(command, *first, "--output", f"{tmp_path / 'new'}/")
    assert rc == 2 and "names a folder (it ends in /)" in _one_line(err)
    assert not (tmp_path / "new").exists()


def test_a_device_this_machine_lacks_is_said_in_the_api_s_words():
    """It said "--device cuda was asked for" to a notebook."""
    import torch

    import dlc

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(RuntimeError, match=r"^device=cuda was asked for, but PyTorch sees no CUDA device$"):
        dlc.Model(IRIS, backend="torch", device="cuda")


def test_export_onnx_of_no_path_names_the_argument(run):
    """dlc.api.export_onnx(run, None) said Path's "expected str, bytes or os.PathLike object"."""
    from dlc import api

    with pytest.raises(TypeError, match="the output file must be a path"):
        api.export_onnx(run, None)


# ---------------------------------------------------------------------------------- tune and lr_find


@pytest.mark.parametrize("given,error,said", [
    ({"trials": 1.5}, TypeError, "trials must be a whole number, not float"),
    ({"trials": "2"}, TypeError, "trials must be a whole number, not str"),
    ({"trials": 0}, ValueError, "trials must be at least 1, not 0"),
    ({"workers": 1.5}, TypeError, "workers must be a whole number"),
    ({"out": 7}, TypeError, "out must be the path of a folder"),
    ({"study": 3}, TypeError, "study must be a name or None"),
    ({"threads": 10**6}, "TuneError", "threads=1000000: this machine has"),
])
def test_tune_s_arguments_are_checked_and_named_in_python_s_words(tmp_path, given, error, said):
    """trials=1.5 ran 2 trials and wrote 1.5 in tune.json; trials="2" and out=7 were TypeErrors from deep
    inside; the API's errors said `--threads`."""
    from dlc import api

    error = api.TuneError if error == "TuneError" else error
    with pytest.raises(error, match=re.escape(said)) as e:
        api.tune(ROOT / "specs" / "tune" / "iris_tune.dlspec", **given)
    assert "--" not in str(e.value)


def test_lr_find_s_errors_name_its_keywords():
    from dlc import api

    with pytest.raises(ValueError, match=r"^steps must be at least 10 \(got 5\)"):
        api.lr_find(IRIS, steps=5)
    with pytest.raises(ValueError, match=r"^start must be below end \(got start=1, end=0.1\)"):
        api.lr_find(IRIS, start=1, end=0.1)


# ------------------------------------------------------------------------------- a diverged model


def test_a_diverged_model_is_neither_scored_nor_saved(tmp_path):
    """After a fit that diverged, evaluate gave {'loss': nan, 'accuracy': 1.0} (the nan outputs' argmax),
    save wrote a run that `dlc evaluate` reported as trained and `dlc predict` blamed on its inputs ("too
    large for this model")."""
    import dlc

    model = dlc.Model(ROOT / "specs" / "guide" / "lr_too_high.dlspec", backend="torch")
    with pytest.raises(dlc.TrainingFailed):
        model.fit(epochs=1)
    x = np.zeros((2, 64))
    for call in (lambda: model.evaluate(x, [0, 1]), lambda: model.predict(x),
                 lambda: model.save(tmp_path / "run")):
        with pytest.raises(dlc.TrainingFailed, match=r"the weight \w+\.\w+ is not finite \(a fit that"):
            call()
    assert not (tmp_path / "run").exists()
    fresh = dlc.Model(ROOT / "specs" / "guide" / "lr_too_high.dlspec", backend="torch")
    model.set_weights(fresh.get_weights())
    assert np.isfinite(model.predict(x)).all()  # (weights set again: used again)


def test_a_run_whose_weights_are_not_finite_is_named_so(run, tmp_path):
    import torch

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    state = torch.load(copy / "model.pt", weights_only=True)
    first = next(iter(state))
    state[first] = torch.full_like(state[first], float("nan"))
    torch.save(state, copy / "model.pt")
    (tmp_path / "x.csv").write_text("1,2,3,4\n")
    for argv in (["evaluate", copy], ["predict", copy, "--input", tmp_path / "x.csv"]):
        rc, _, err = run_cli(*argv)
        assert rc == 1 and "is not finite (its training diverged: a lower" in _one_line(err), err
