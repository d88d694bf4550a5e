"""The third hostile sweep of the command line and the Python API (not spec syntax, not data files): counts
beyond what a spec holds, options that were silently ignored or silently overridden, an output folder inside
another run's folder (or a current folder that is one, or cannot be written), folder names that are not
UTF-8 or that matplotlib read as mathtext, and API arguments of the wrong type that failed deep inside."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import dlc
from dlc import api

from conftest import ROOT, edited_spec, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = ROOT / "specs" / "iris.dlspec"
TUNE = ROOT / "specs" / "tune" / "iris_tune.dlspec"
NOT_UTF8 = os.fsdecode(b"run-\xff\xfe")  # a name in another encoding, as Python sees it (surrogates)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    """iris for 2 epochs."""
    path = tmp_path_factory.mktemp("spec") / "iris2.dlspec"
    path.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 2")))
    return path


@pytest.fixture(scope="module")
def run(spec, tmp_path_factory) -> Path:
    """A finished run of `spec`, in a folder of its own."""
    out = tmp_path_factory.mktemp("runs") / "iris"
    rc, _, err = run_cli("run", spec, "--out", out, "--quiet")
    assert rc == 0, err
    return out


def _listed(folder: Path) -> list[str]:
    rc, out, err = run_cli("runs", folder, "--json")
    assert rc == 0, err
    return sorted(Path(r["run"]).name for r in json.loads(out))


# ------------------------------------------------------------------------------------ counts and options

@pytest.mark.parametrize("command", ["run", "cv"])
def test_epochs_beyond_what_a_spec_holds_are_a_usage_error(spec, tmp_path, command):
    """`--epochs 99999999999999999999999` trained (a spec's `epochs:` of that size is E209: 64 bits)."""
    rc, _, err = run_cli(command, spec, "--epochs", "99999999999999999999999", "--out", tmp_path / "r")
    assert rc == 2 and "--epochs" in err and "at most 9223372036854775807" in err
    assert not (tmp_path / "r").exists()


def test_a_node_rank_beyond_the_machines_is_a_usage_error(spec, tmp_path):
    """`--node-rank 3` on one machine and one process was ignored: the run trained as machine 0."""
    rc, _, err = run_cli("run", spec, "--node-rank", "3", "--out", tmp_path / "r")
    assert rc == 2 and "--node-rank must be between 0 and 0" in err
    assert not (tmp_path / "r").exists()


def test_doctor_refuses_two_formats(run):
    """`--format text --json` printed JSON: the --json silently won."""
    rc, out, err = run_cli("doctor", run, "--format", "text", "--json")
    assert rc == 2 and "--format text and --json" in err and out == ""
    rc, out, _ = run_cli("doctor", run, "--format", "json", "--json")
    assert rc == 0 and json.loads(out)["diagnoses"]


def test_tune_threads_beyond_the_cores_are_refused_before_any_trial(tmp_path):
    """`--threads 99999999999999999999999`: every trial failed ("Overflow when unpacking long long")."""
    rc, _, err = run_cli("tune", TUNE, "--threads", "99999999999999999999999", "--out", tmp_path / "t",
                         "--quiet")
    assert rc == 2 and "--threads" in err and "threads per core" in err
    assert not (tmp_path / "t").exists()
    with pytest.raises(api.TuneError, match="threads per core"):
        api.tune(api.checked(TUNE), out=str(tmp_path / "t"), threads=10**6)


@pytest.mark.parametrize("env", [{"COLUMNS": "0"}, {"COLUMNS": "0", "LINES": "0"}])
def test_a_terminal_size_of_zero_still_shows_the_run(spec, tmp_path, monkeypatch, env):
    """COLUMNS=0, as some environments without a terminal set it: rich drew at a width of 0, and `dlc run`
    printed nothing on stderr, neither its header, its epoch table nor its final metrics."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rc, out, err = run_cli("run", spec, "--out", tmp_path / "r", "--epochs", "1")
    assert rc == 0 and out.strip() == str(tmp_path / "r")
    assert "run directory:" in err and "epoch" in err and "test" in err


# --------------------------------------------------------------------------------- where runs are written

@pytest.mark.parametrize("command,inner", [("run", "inner"), ("cv", "a/b"), ("tune", "t")])
def test_an_out_inside_a_run_folder_is_refused(run, spec, command, inner):
    """A run written inside another hid the outer one from `dlc runs` and left it impossible to --replace."""
    target = TUNE if command == "tune" else spec
    rc, _, err = run_cli(command, target, "--out", run / inner, "--quiet")
    assert rc == 2 and f"is inside {run}, which holds a dlc run" in err
    assert not (run / inner.split("/")[0]).exists()
    assert "iris" in _listed(run.parent)


def test_a_fold_of_a_cross_validation_is_not_replaced(spec, tmp_path):
    """`--out CV/fold_1 --replace` deleted a fold of a finished cross-validation and trained a run there."""
    cv = tmp_path / "cv"
    rc, _, err = run_cli("cv", spec, "--k", "2", "--epochs", "1", "--out", cv, "--quiet")
    assert rc == 0, err
    before = (cv / "fold_1" / "history.json").read_bytes()
    rc, _, err = run_cli("run", spec, "--out", cv / "fold_1", "--replace", "--quiet")
    assert rc == 2 and "which holds a dlc cross-validation run" in err
    assert (cv / "fold_1" / "history.json").read_bytes() == before


def test_without_out_from_inside_a_run_folder_nothing_is_written(run, spec, monkeypatch):
    """The default runs/ went inside the run folder the command was started in."""
    monkeypatch.chdir(run)
    rc, _, err = run_cli("run", spec, "--quiet")
    assert rc == 2 and "without --out, the default folder runs/ is inside" in err
    assert not (run / "runs").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_without_out_in_a_folder_that_cannot_be_written_is_a_usage_error(spec, monkeypatch):
    """From /proc: `dlc: error: [Errno 2] No such file or directory: 'runs'`, exit 1."""
    monkeypatch.chdir("/proc")
    rc, _, err = run_cli("run", spec, "--quiet")
    assert rc == 2 and err.count("\n") == 1
    assert "the default folder runs/ (no --out): cannot write in /proc" in err and "give --out DIR" in err


def test_the_api_refuses_a_folder_inside_a_run_folder(run, spec):
    model = dlc.Model(spec)
    with pytest.raises(api.OutFolderError, match="is inside"):
        model.save(run / "saved")
    with pytest.raises(api.OutFolderError, match="is inside"):
        api.run(dlc.load(spec), out=str(run / "again"))
    assert not (run / "saved").exists() and not (run / "again").exists()


# ------------------------------------------------------------------------------------------ folder names

def test_a_run_folder_not_named_in_utf8_trains_plots_and_exports(run, spec, tmp_path):
    """A folder named in another encoding: the run failed writing log.txt (UnicodeEncodeError, exit 1), its
    plot failed in matplotlib and its export in torch's exporter (TypeError: incompatible arguments)."""
    out = tmp_path / NOT_UTF8
    rc, stdout, err = run_cli("run", spec, "--out", out, "--epochs", "1")
    assert rc == 0, err
    assert "run directory:" in (out / "log.txt").read_text(encoding="utf-8", errors="surrogateescape")
    rc, _, err = run_cli("plot", out, run, "--out", out / "both.png")
    assert rc == 0 and (out / "both.png").stat().st_size > 0, err
    pytest.importorskip("onnx")
    rc, _, err = run_cli("export", out)
    assert rc == 0 and (out / "model.onnx").stat().st_size > 0, err


def test_tune_refuses_an_out_not_named_in_utf8(tmp_path):
    rc, _, err = run_cli("tune", TUNE, "--out", tmp_path / NOT_UTF8, "--trials", "1", "--quiet")
    assert rc == 2 and "not UTF-8" in err
    assert not (tmp_path / NOT_UTF8).exists()


def test_a_control_character_in_the_run_folder_s_name_is_shown_escaped(spec, tmp_path):
    """An ESC in --out's name went to the terminal (colouring it) and to log.txt as it was, in the header's
    `run directory:` line (the error lines escaped it already)."""
    out = tmp_path / "e\x1b[31mX"
    rc, stdout, err = run_cli("run", spec, "--out", out, "--epochs", "1")
    assert rc == 0 and stdout.strip() == str(out)  # (stdout: the path itself, for RUN=$(dlc run ...))
    assert "\x1b" not in err and f"run directory: {tmp_path}/e\\x1b[31mX" in err
    assert "\x1b" not in (out / "log.txt").read_text()


@pytest.mark.parametrize("name", ["r$x^$", r"r$\frac$"])
def test_plot_draws_a_run_name_with_dollars_as_it_is(run, tmp_path, name):
    """matplotlib read `$x^$` in a run folder's name as mathtext: `cannot write --out plot.png: x^ ^`."""
    copy = tmp_path / name
    shutil.copytree(run, copy)
    rc, _, err = run_cli("plot", copy, run, "--out", tmp_path / "p.png")
    assert rc == 0 and (tmp_path / "p.png").stat().st_size > 0, err


# ------------------------------------------------------------------------------------------------- the API

def test_api_counts_beyond_64_bits_are_refused(spec):
    model = dlc.Model(spec)
    for kwargs in ({"epochs": 2**63}, {"max_steps": 10**30}):
        with pytest.raises(ValueError, match="at most 9223372036854775807"):
            model.fit(**kwargs)
    assert model.history.rows == []


@pytest.mark.parametrize("kwargs,error,fact", [
    ({"seed": -1}, ValueError, "seed must be between 0 and 4294967295"),
    ({"seed": 2**40}, ValueError, "seed must be between 0 and 4294967295"),
    ({"seed": "7"}, TypeError, "seed must be a whole number"),
    ({"epochs": 0}, ValueError, "epochs must be between 1 and"),
    ({"epochs": 1.5}, TypeError, "epochs must be a whole number"),
    ({"dtype": "x"}, ValueError, "dtype='x'"),
])
def test_trainable_refuses_overrides_no_spec_holds(spec, kwargs, error, fact):
    """They were put in the IR as they were (`seed=-1`, `dtype='x'`), to fail later or train on."""
    with pytest.raises(error, match=fact):
        api.trainable(api.checked(spec), **kwargs)


@pytest.mark.parametrize("call,fact", [
    (lambda s, r: api.run(dlc.load(s), out=5), "out must be the path of a folder"),
    (lambda s, r: api.run(dlc.load(s), out=""), "out must be the path of a folder"),
    (lambda s, r: api.run(42), r"run\(\) takes a spec"),
    (lambda s, r: api.cross_validate(dlc.load(s), out=5), "out must be the path of a folder"),
    (lambda s, r: api.run(dlc.load(s), replace="no"), "replace must be True or False"),
    (lambda s, r: api.doctor(r, target_accuracy="0.9"), "target_accuracy must be a number"),
    (lambda s, r: api.doctor(5), r"doctor\(\) takes the path of a run directory"),
    (lambda s, r: api.list_runs(5), "the folder of runs must be a path"),
    (lambda s, r: api.plot_runs([r, 5], "p.png"), "each run directory must be a path"),
    (lambda s, r: api.plot_runs([r], None), "the output file must be a path"),
    (lambda s, r: api.resumable(None), "the run directory must be a path"),
])
def test_api_arguments_of_the_wrong_type_are_named(spec, run, tmp_path, monkeypatch, call, fact):
    """Each was an obscure error from inside (AttributeError: 'str' object has no attribute 'source_file';
    '<=' not supported between 'int' and 'str'; expected str, bytes or os.PathLike object), or made a
    folder named "5"."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=fact):
        call(spec, run)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call", [lambda out: api.run(str(TUNE), out=out),
                                  lambda out: api.cross_validate(dlc.load(TUNE), k=2, out=out)])
def test_api_training_refuses_a_spec_of_search_spaces(tmp_path, call):
    """api.run trained a spec of search spaces, each space silently at its first option (Model refused it)."""
    with pytest.raises(ValueError, match="has search spaces"):
        call(tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_api_run_takes_a_spec_file_s_path(spec, tmp_path):
    """As Model, load_data and epoch_order do (it failed: 'str' object has no attribute 'source_file')."""
    done = api.run(str(spec), out=tmp_path / "r")
    assert done.run == tmp_path / "r" and len(done.history.rows) == 2


def test_an_interrupted_cross_validation_names_its_folder(spec, tmp_path, monkeypatch):
    """Ctrl-C during `dlc cv --out DIR` said `dlc: interrupted` alone: not which folder kept the folds, nor
    that it does not resume."""
    out = tmp_path / "cv"

    def interrupted(*args, **kwargs):
        out.mkdir()
        (out / "ir.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "cross_validate", interrupted)
    rc, _, err = run_cli("cv", spec, "--out", out, "--quiet")
    assert rc == 130
    assert err.strip() == (f"dlc: interrupted; the folds so far are kept in {out} (a cross-validation does "
                           f"not resume: `--out {out} --replace` starts it again)")


# ------------------------------------------------------------------------------------ damaged run folders

def test_a_run_json_nested_too_deeply_is_damaged_not_a_failed_listing(run, tmp_path):
    """`[[[[...` 100,000 deep in run.json: `dlc runs` of its folder failed whole, every command said
    "maximum recursion depth exceeded while decoding a JSON array from a unicode string"."""
    copy = tmp_path / "deep"
    shutil.copytree(run, copy)
    (copy / "run.json").write_text("[" * 100_000)
    shutil.copytree(run, tmp_path / "good")
    rc, out, err = run_cli("runs", tmp_path, "--json")
    assert rc == 0, err
    status = {Path(r["run"]).name: r["status"] for r in json.loads(out)}
    assert status["good"] == "done" and "nest too deeply" in status["deep"]
    rc, _, err = run_cli("evaluate", copy)
    assert rc == 1 and "run.json is not JSON dlc wrote (its values nest too deeply" in err
    assert "recursion" not in err


def test_a_model_json_that_names_no_file_says_so(run, tmp_path):
    """model.json `{}` beside model.pt was reported as "the model file is missing"."""
    copy = tmp_path / "r"
    shutil.copytree(run, copy)
    (copy / "model.json").write_text("{}")
    rc, _, err = run_cli("evaluate", copy)
    assert rc == 1 and "model.json is damaged (it names no model file)" in err and "missing" not in err


# ------------------------------------------------------------------------------------------------ signals

def test_a_second_ctrl_c_does_not_cut_the_last_history_write_short(spec, tmp_path, monkeypatch):
    """An impatient second Ctrl-C landed in the write of the finished epochs' history that the first one
    started: history.json kept only the epochs of the last paced write (520 of 605 logged)."""
    import signal

    from dlc.runtime import epochfiles

    stopped = []

    class StopAt4(api.Observer):
        def epoch(self, row):
            if row["epoch"] == 4:
                stopped.append(True)
                raise KeyboardInterrupt

    written = epochfiles.write_history

    def second_ctrl_c_then_write(folder, rows):
        if stopped:  # (Python raises it at its next instruction, unless it is held)
            os.kill(os.getpid(), signal.SIGINT)
        written(folder, rows)

    monkeypatch.setattr(epochfiles, "write_history", second_ctrl_c_then_write)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        api.run(api.trainable(api.checked(spec), epochs=50), out=tmp_path / "r", observer=StopAt4())
    assert signal.getsignal(signal.SIGINT) is before
    assert [r["epoch"] for r in json.loads((tmp_path / "r" / "history.json").read_text())] == [1, 2, 3, 4]


@pytest.mark.parametrize("argv,stdout", [
    (["predict", "RUN", "--input", "X", "--output", "-"], True),
    (["compile", "SPEC", "-o", "-"], True),
    (["export", "RUN", "--output", "-"], False),
])
def test_a_dash_for_the_output_is_not_a_file_named_dash(run, spec, tmp_path, monkeypatch, argv, stdout):
    """`--output -` (the Unix name of the standard output) wrote a file named '-' in the current folder,
    and printed nothing."""
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((2, 4)))
    monkeypatch.chdir(tmp_path)
    given = {"RUN": str(run), "SPEC": str(spec), "X": "x.npy"}
    rc, out, err = run_cli(*[given.get(a, a) for a in argv])
    assert rc == 2 and out == "" and "does not take `-` for the standard output" in err
    assert ("leave out" in err) == stdout
    assert not (tmp_path / "-").exists()


# ---------------------------------------------------- what the sweep left to the owners of other modules

@pytest.mark.parametrize("name", ["r$x^$", NOT_UTF8])
def test_doctor_plots_a_run_named_with_dollars_or_not_in_utf8(run, tmp_path, name):
    """doctor --plot's title is the run's name: `$x^$` failed as mathtext ("ValueError: x^"), a name not in
    UTF-8 as a TypeError."""
    copy = tmp_path / name
    shutil.copytree(run, copy)
    rc, _, err = run_cli("doctor", copy, "--plot")
    assert rc == 0, err
    assert (copy / "gradients.png").stat().st_size > 0


@pytest.mark.parametrize("kwargs, fact", [
    ({"steps": "5"}, "steps must be a whole number, not str"),
    ({"steps": 5.0}, "steps must be a whole number, not float"),
    ({"start": "1e-3"}, "start must be a number (a learning rate), not str"),
    ({"end": True}, "end must be a number (a learning rate), not bool"),
])
def test_lr_find_arguments_of_the_wrong_type_are_named(spec, kwargs, fact):
    """`lr_find(steps="5")` failed in a comparison: "'<' not supported between 'str' and 'int'"."""
    with pytest.raises(TypeError) as e:
        api.lr_find(api.lr_find_spec(api.checked(spec)), **kwargs)
    assert fact in str(e.value)


@pytest.mark.parametrize("content, fact", [
    ("[" * 100_000 + "]" * 100_000, "nest too deeply"),
    ('{"spec_file": 5}', "names no spec file"),
    ("[1, 2]", "tune.json holds an array, not an object"),
    ("{}", "no tune.json with the spec there"),
])
def test_refine_of_a_damaged_tune_json_is_one_line(tmp_path, content, fact):
    """`dlc tune --refine RUN` read tune.json with json.loads: a RecursionError, a TypeError."""
    folder = tmp_path / "tune"
    folder.mkdir()
    (folder / "tune.json").write_text(content)
    rc, _, err = run_cli("tune", "--refine", folder)
    assert rc in (1, 2) and fact in err and "Traceback" not in err, err


def test_refine_of_a_tune_json_whose_spaces_are_damaged_is_one_line(tmp_path):
    folder = tmp_path / "tune"
    folder.mkdir()
    (folder / "tune.json").write_text(json.dumps({"spec_file": str(TUNE), "spaces": [{"name": 5}],
                                                  "trials": "x"}))
    rc, _, err = run_cli("tune", TUNE, "--refine", folder, "--trials", "1", "--out", tmp_path / "t2")
    assert rc == 1 and "tune.json is damaged" in err and "Traceback" not in err, err


def test_a_second_ctrl_c_does_not_cut_a_fold_s_last_history_write_short(tmp_path, monkeypatch):
    """As dlc run's (above): cv's fold loop wrote its history after a first Ctrl-C, and a second one cut
    that write short."""
    import signal

    from dlc.runtime import epochfiles, loop

    cv_spec = tmp_path / "cv.dlspec"
    cv_spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 50"),
                                   ("split: holdout(val=0.2, test=0.2, stratify=true)", "split: kfold(k=2)")))
    stopped = []
    epoch_rows = loop.train

    def stop_at_4(*args, on_epoch=None, **kwargs):
        def on(row):
            on_epoch(row)
            if row["epoch"] == 4:
                stopped.append(True)
                raise KeyboardInterrupt
        return epoch_rows(*args, on_epoch=on, **kwargs)

    written = epochfiles.write_history

    def second_ctrl_c_then_write(folder, rows):
        if stopped:
            os.kill(os.getpid(), signal.SIGINT)
        written(folder, rows)

    monkeypatch.setattr(loop, "train", stop_at_4)
    monkeypatch.setattr(epochfiles, "write_history", second_ctrl_c_then_write)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        api.cross_validate(api.trainable(api.checked(cv_spec)), out=tmp_path / "cv")
    assert signal.getsignal(signal.SIGINT) is before
    history = json.loads((tmp_path / "cv" / "fold_1" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]


def test_epoch_order_of_more_samples_than_memory_holds_is_a_value_error():
    """`epoch_order(spec, 0, 10**12)` raised numpy's MemoryError ("Unable to allocate 7.28 TiB")."""
    with pytest.raises(ValueError, match="does not fit in memory"):
        dlc.epoch_order(IRIS, 0, 10**12)
    with pytest.raises(ValueError, match="epoch must be at most"):
        dlc.epoch_order(IRIS, 2**70, 10)
    assert sorted(dlc.epoch_order(IRIS, 3, 5)) == [0, 1, 2, 3, 4]
