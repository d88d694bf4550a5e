"""What a CLI user and a notebook user tripped on, walking dlc as its README says: the help pages named
arguments by Python's types (`SPEC <str>`, `RUN <list[str]>`), wrote required arguments in braces (`dlc
predict [OPTIONS] {RUN}`, also in every usage error), showed 2^63 - 1 as a bound (`--epochs N
[1<=x<=9223372036854775807]`) and gave no example; `dlc.api.tune` took only `checked(path)` (a path or a
loaded spec, as `Model` and `run` take, failed with AttributeError); `dlc.compare` ignored, silently, the
arguments of its other mode (`seeds=3, steps=50` trained to the end)."""

from __future__ import annotations

import re
import shlex

import pytest

from dlc.cli import COMMANDS

from conftest import ROOT, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"
NAMES = [m.NAME for m in COMMANDS]


def help_page(name: str | None, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    rc, out, err = run_cli(*([name] if name else []), "--help")
    assert rc == 0, err
    return out


# ------------------------------------------------------------------------------------------------ help

@pytest.mark.parametrize("name", NAMES)
def test_help_names_arguments_without_python_types_or_braces(name, monkeypatch):
    text = help_page(name, monkeypatch)
    assert not re.search(r"<(str|int|float|list\[[a-z]+\])>", text), text
    usage = next(ln for ln in text.splitlines() if "Usage:" in ln)
    assert "{" not in usage, usage
    assert "9223372036854775807" not in text


def test_a_usage_error_shows_the_argument_as_unix_usage_lines_do():
    rc, _, err = run_cli("predict")
    assert rc == 2
    assert "Usage: dlc predict [OPTIONS] RUN\n" in err, err
    rc, _, err = run_cli("plot", "--bogus")
    assert rc == 2 and "Usage: dlc plot [OPTIONS] RUN...\n" in err, err


def test_a_range_up_to_the_integer_limit_shows_its_minimum_only(monkeypatch):
    text = help_page("run", monkeypatch)
    assert re.search(r"--epochs\s+N \[x>=1\]", text), text
    assert "0<=x<=4294967295" in text  # (a bound a user may type stays)


@pytest.mark.parametrize("argv,said", [
    (("run", str(IRIS), "--epochs", "1.5"), "Invalid value for '--epochs': must be a whole number"),
    (("compare", str(IRIS), "--steps", "1e3"), "Invalid value for '--steps': must be a whole number"),
    (("compare", str(IRIS), "--seeds", "2", "--margin", "abc"),
     "Invalid value for '--margin': must be a number"),
])
def test_a_value_that_is_no_number_is_said_in_plain_words(argv, said):
    rc, _, err = run_cli(*argv)
    assert rc == 2
    # (not pydantic's "Input should be a valid integer, unable to parse string as an integer")
    assert err.splitlines()[-1] == f"dlc: error: {said}", err


@pytest.mark.parametrize("argv,said", [
    (("run", "x.dlspec", "-epochs", "3"), "no such option: -epochs; did you mean --epochs?"),  # (was "-e")
    (("run", "x.dlspec", "-out=o"), "no such option: -out; did you mean --out?"),
    (("run", "x.dlspec", "--backend", "tourch"),
     "Invalid value for '--backend': 'tourch' is not one of 'torch', 'keras'; did you mean torch?"),
    (("doctor", "r", "--format", "txt"),
     "Invalid value for '--format': 'txt' is not one of 'text', 'json'; did you mean text?"),
    (("run", "x.dlspec", "--dtype", "float"),  # (float32 or float64: no guess)
     "Invalid value for '--dtype': 'float' is not one of 'float32', 'float64'."),
    (("predict", "r", "--json"), "no such option: --json; predict writes JSON with --output FILE.json"),
])
def test_a_mistyped_option_or_value_gets_the_close_one(argv, said):
    rc, _, err = run_cli(*argv)
    assert rc == 2
    assert err.splitlines()[-1] == f"dlc: error: {said}", err


@pytest.mark.parametrize("name", NAMES)
def test_help_ends_with_examples_that_parse(name, monkeypatch):
    """Every command's help has examples, and each one is a command line that command takes: its options
    are that command's (a renamed option would leave an example that fails)."""
    from dlc.cli.examples import EXAMPLES

    text = help_page(name, monkeypatch)
    assert "Examples" in text, text
    import typer

    from dlc.cli import app

    command = typer.main.get_command(app).commands[name]
    options = {o for p in command.params for o in getattr(p, "opts", []) if o.startswith("-")}
    for line, _ in EXAMPLES[name]:
        assert line in text, (line, text)
        words = shlex.split(line.split(">")[0])
        assert words[:2] == ["dlc", name], line
        assert {w for w in words if w.startswith("-")} <= options, line


def test_dlc_help_says_where_to_start(monkeypatch):
    text = help_page(None, monkeypatch).replace("\n", " ")
    assert "dlc check specs/iris.dlspec" in text and "dlc run specs/iris.dlspec" in text, text


# ------------------------------------------------------------------------------------------------- api

def test_api_tune_takes_a_spec_file_s_path_or_its_loaded_spec():
    import dlc
    from dlc import api

    # a path, or a spec read from a file: the search is on that file (not AttributeError: no attribute 'spec')
    for target in (str(IRIS), IRIS, dlc.load(IRIS)):
        with pytest.raises(dlc.SpecError, match="no search"):
            api.tune(target, trials=1)
    with pytest.raises(TypeError, match=r"tune\(\) takes the path of a \.dlspec file.*not int"):
        api.tune(3)
    tuned = dlc.load(ROOT / "specs" / "tune" / "iris_tune.dlspec")
    changed = tuned.model_copy(update={"seed": tuned.seed + 1})
    with pytest.raises(ValueError, match="not what .* says now"):
        api.tune(changed, trials=1)


@pytest.mark.parametrize("kwargs,named", [
    ({"seeds": 3, "steps": 50}, "steps=50 does not apply"),
    ({"seeds": 3, "dtype": "float32"}, "dtype='float32' does not apply"),
    ({"margin": 0.1}, "margin=0.1 does not apply"),
    ({"steps": 5, "alpha": 0.1, "rel_margin": 0.2}, "rel_margin=0.2, alpha=0.1 do not apply"),
])
def test_compare_refuses_the_arguments_of_its_other_mode(kwargs, named):
    import dlc

    with pytest.raises(ValueError, match=re.escape(named)):
        dlc.compare(IRIS, **kwargs)


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """A finished iris run of 2 epochs."""
    from dlc import api

    out = tmp_path_factory.mktemp("walk") / "iris"
    api.run(api.trainable(api.checked(IRIS), epochs=2), out=out)
    return out


def test_api_functions_take_a_spec_file_s_path_as_model_does(tmp_path):
    """`summary`, `emit` and `lr_find` took only a Spec: a path failed with AttributeError ('str' object has
    no attribute 'input'); a wrong type is a TypeError naming the function, a wrong target a ValueError."""
    import dlc
    from dlc import api

    assert api.summary(str(IRIS)) == api.summary(dlc.load(IRIS))
    assert api.emit(IRIS, "torch") == api.emit(dlc.load(IRIS), "torch")
    with pytest.raises(ValueError, match=r"target='jax': expected one of 'keras', 'torch'"):
        api.emit(IRIS, "jax")
    with pytest.raises(TypeError, match=r"summary\(\) takes a spec .* not int"):
        api.summary(3)
    found = api.lr_find(str(IRIS), steps=10)
    assert found.suggested_lr is None or found.suggested_lr > 0
    with pytest.raises(TypeError, match="markdown must be True or False"):
        api.catalogue("no")


def test_api_resume_takes_a_run_folder_s_path(iris_run):
    from dlc import api

    with pytest.raises(api.RunDirError, match="already finished; nothing to resume"):
        api.resume(str(iris_run))  # (not AttributeError: 'str' object has no attribute 'spec')
    with pytest.raises(api.RunDirError, match="already finished"):
        api.resume(api.resumable(iris_run))
    with pytest.raises(TypeError, match=r"resume\(\) takes what resumable\(RUN\) returns"):
        api.resume(3)


def test_api_plot_runs_writes_only_a_png_name(iris_run, tmp_path):
    from dlc import api

    with pytest.raises(ValueError, match=r"must be a name ending in \.png"):
        api.plot_runs([iris_run], tmp_path / "curves.jpg")
    assert not (tmp_path / "curves.jpg").exists()
    assert api.plot_runs([iris_run], tmp_path / "curves.png").is_file()


@pytest.mark.parametrize("call", ["run", "cross_validate", "tune"])
def test_an_unknown_backend_is_a_value_error_before_any_folder_is_made(call, tmp_path):
    """`cross_validate(backend="jax")` made an empty run folder and raised RunFailed; `tune` ran its trials,
    each failing; both now refuse it as `Model` does, before any work."""
    from dlc import api

    spec = ROOT / "specs" / "tune" / "iris_tune.dlspec" if call == "tune" else IRIS
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"backend='jax': expected one of 'torch', 'keras'"):
        getattr(api, call)(spec, backend="jax", out=out)
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ ctrl-c

STARTING = """
import os, signal, sys, time
sys.argv[0] = {arg0!r}
import dlc.cli
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the command is still starting (before main())
time.sleep(10)
print("not interrupted")
"""


def test_ctrl_c_while_the_command_starts_is_one_line_and_exit_130():
    """The `dlc` command's first half second is its imports, before main() handles Ctrl-C: a Python
    traceback ending in KeyboardInterrupt (exit -2 or 1). Now the command's one line and 130."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", STARTING.format(arg0=str(ROOT / ".venv" / "bin" / "dlc"))],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert proc.returncode == 130, proc
    assert proc.stderr == "dlc: interrupted\n" and proc.stdout == "False\n", proc


def test_a_program_that_imports_the_cli_keeps_its_ctrl_c():
    """Only the command itself sets that handler: a program importing dlc.cli (the tests, a notebook) keeps
    Python's KeyboardInterrupt."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", STARTING.format(arg0="my_script.py")], capture_output=True,
                          text=True, timeout=60, check=False, cwd=ROOT)
    assert proc.stdout == "True\n" and "KeyboardInterrupt" in proc.stderr, proc


def test_main_gives_ctrl_c_back_to_the_commands():
    """main() restores KeyboardInterrupt, which each command handles (its run folder kept, resumable)."""
    import signal

    import dlc.cli as cli

    previous = signal.signal(signal.SIGINT, cli._interrupted_while_starting)
    try:
        assert cli.main(["--version"]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("call,kwargs,said", [
    ("run", {"observer": 3}, "observer must be a dlc.api.Observer"),
    ("cross_validate", {"on_fold": 3, "k": 2}, "on_fold must be a function"),
    ("compare", {"on_phase": 3, "steps": 2}, "on_phase must be a function"),
])
def test_a_callback_that_is_not_one_is_a_type_error_before_any_work(call, kwargs, said, tmp_path):
    """`run(observer=3)` made a run folder and raised RunFailed ('int' object has no attribute 'evidence');
    `on_fold=3`, `on_phase=3`: 'int' object is not callable, after the folder or a training."""
    from dlc import api

    out = {"out": tmp_path / "out"} if call != "compare" else {}
    with pytest.raises(TypeError, match=said):
        getattr(api, call)(IRIS, **kwargs, **out)
    assert not (tmp_path / "out").exists()


def test_resume_refuses_an_observer_that_is_not_one_before_touching_the_run(iris_run):
    from dlc import api

    before = (iris_run / "run.json").read_bytes()
    with pytest.raises(TypeError, match="observer must be a dlc.api.Observer"):
        api.resume(str(iris_run), observer=3)
    assert (iris_run / "run.json").read_bytes() == before


# --------------------------------------------------------------------------------- folds and trials

def _cv_and_tune_folders(tmp_path):
    """A cv run's folder and a tune run's, as dlc makes them (their marks; a fold and a trial hold their
    history, no model)."""
    cv, tune = tmp_path / "cv", tmp_path / "tune"
    (cv / "fold_1").mkdir(parents=True)
    (cv / "cv.json").write_text("{}")
    (cv / "fold_1" / "history.json").write_text("[]")
    (tune / "trials" / "0000").mkdir(parents=True)
    (tune / "tune.json").write_text("{}")
    (tune / "trials" / "0000" / "history.json").write_text("[]")
    return cv, tune


def test_a_fold_or_a_trial_is_named_as_the_part_of_a_run_it_is(tmp_path):
    """`dlc evaluate CV/fold_1` said "not a dlc run directory"; `dlc runs TUNE/trials` listed each trial as
    damaged."""
    cv, tune = _cv_and_tune_folders(tmp_path)
    rc, _, err = run_cli("evaluate", str(cv / "fold_1"))
    assert rc == 1 and "is a fold of the cross-validation" in err and f"dlc runs {cv}" in err, err
    rc, _, err = run_cli("evaluate", str(tune / "trials" / "0000"))
    assert rc == 1 and "is a trial of the tune run" in err and f"dlc runs {tune}" in err, err
    rc, out, err = run_cli("runs", str(tune / "trials"))
    assert rc == 1 and "holds the trials of the tune run" in err and "damaged" not in out + err, out + err
    rc, _, err = run_cli("evaluate", str(tmp_path))
    assert rc == 1 and "run directory (no ir.json/run.json)" in err and "is a fold" not in err, err
