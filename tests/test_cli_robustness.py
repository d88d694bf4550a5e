"""The command line where the world is not as expected: the reader of its output goes away
(`dlc schema | head -1`), user text that looks like rich markup, `dlc export` without onnx, and a tune
study's storage path and lock."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import FIXTURE_DIR, ROOT, run_cli

DLC = str(ROOT / ".venv" / "bin" / "dlc")
MARKUP = "a[/]b[bold]c"  # a closing tag with nothing to close, then an opening one: both must show as text

pytestmark = pytest.mark.skipif(not Path(DLC).exists(), reason="needs the repository's .venv")


def _clean(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


# ------------------------------------------------------------------------------------------- a closed pipe


def test_schema_into_head_prints_no_error():
    """`dlc schema | head -1` (the schema is ~200 kB: far more than a pipe holds, so dlc is still writing
    when head leaves)."""
    r = subprocess.run(f"{DLC} schema | head -1", shell=True, capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.stdout == "{\n"
    assert r.stderr == ""


@pytest.mark.parametrize("args", [["schema"], ["compile", "specs/iris.dlspec", "--emit", "ir"],
                                  ["compile", "specs/iris.dlspec", "--emit", "torch"],
                                  ["check", "specs/iris.dlspec"], ["--help"], ["run", "--help"],
                                  ["tune", "--help"]], ids=lambda a: " ".join(a[:3]))
def test_output_to_a_closed_pipe_exits_quietly(args):
    """Whatever the timing: the pipe's reader is gone before dlc writes a byte (small outputs included, which
    a pipe would otherwise buffer until dlc's exit flushes them). Exit 141, as a Unix tool killed by
    SIGPIPE, and nothing on stderr (no error line, no traceback, no 'Exception ignored' at exit)."""
    read, write = os.pipe()
    os.close(read)
    try:
        r = subprocess.run([DLC, *args], stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           timeout=120)
    finally:
        os.close(write)
    assert r.returncode == 141
    assert r.stderr == ""


def test_a_broken_pipe_that_is_not_the_output_is_an_error(capsys):
    """A BrokenPipeError from elsewhere (a worker's pipe) is an error line, exit 1, not a quiet exit."""
    from dlc.cli import errors

    def command():
        raise BrokenPipeError(32, "Broken pipe")

    assert errors.exits(command)() == 1
    err = capsys.readouterr().err
    assert err.startswith("dlc: error: ") and len(err.splitlines()) == 1
    _clean(err)


# ------------------------------------------------------------------------------ text that looks like markup


def test_run_shows_a_path_with_brackets_as_it_is(tmp_path):
    out = tmp_path / MARKUP
    code, stdout, stderr = run_cli("run", FIXTURE_DIR / "dense.dlspec", "--backend", "torch", "--epochs", "1",
                                   "--out", out)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    assert f"run directory: {out}" in stderr
    _clean(stderr)


def test_tables_show_brackets_as_they_are(monkeypatch):
    """On a terminal the tables are rich tables: their title, headers and cells are text, not markup."""
    from dlc.cli.tables import print_table

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    print_table(f"runs in {MARKUP}", ["run", "[bold]x"], [[MARKUP, "[red]1"]])
    text = screen.getvalue()
    assert f"runs in {MARKUP}" in text and MARKUP in text and "[bold]x" in text and "[red]1" in text


def test_tune_lines_show_brackets_as_they_are():
    from rich.console import Console

    from dlc.cli import tune

    screen = io.StringIO()
    display = tune._Display(Console(file=screen, width=300, soft_wrap=True))
    plan = SimpleNamespace(spec_name="m", method="grid", grid_size=None, points=None, earlier=0,
                           target=2, trials=2,
                           backend="torch", workers=1, direction="minimize", metric="val_loss", prune="none",
                           run=Path("/tmp") / MARKUP, study=f"study{MARKUP}", storage=f"sqlite:///{MARKUP}.db",
                           refined=None, spaces=[], done_before=0, requeued=0, trial_nproc=1)
    display.started(plan)
    trial = SimpleNamespace(number=3, params={}, state=SimpleNamespace(name="FAIL"),
                            user_attrs={"failure": f"cannot read {MARKUP}.csv"}, datetime_start=None,
                            datetime_complete=None)
    display.trial(trial)
    text = screen.getvalue()
    assert str(Path("/tmp") / MARKUP) in text and f"study{MARKUP}" in text
    assert f"sqlite:///{MARKUP}.db" in text
    assert f"failed: cannot read {MARKUP}.csv" in text


# ------------------------------------------------------------------------------------------ export, no onnx


def test_export_without_onnx_names_the_extra(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import dlc

    run = dlc.Model(dlc.load(FIXTURE_DIR / "dense.dlspec"), backend="torch").save(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` fails, as when it is not installed
    code, stdout, stderr = run_cli("export", run, "--output", tmp_path / "m.onnx")
    assert code == 1 and stdout == ""
    assert len(stderr.splitlines()) == 1 and "onnx is missing" in stderr
    assert "pip install 'dlc[torch]'" in stderr
    _clean(stderr)
    assert not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------------------------------- tune storage and lock

SEARCH = """
  search {
    method: grid
    trials: 1
    objective: minimize val_loss
    storage: "sqlite:///studies/s.db"
  }
"""


def test_relative_storage_is_relative_to_the_spec(tmp_path, monkeypatch):
    from dlc.runtime.tune import _storage_url

    monkeypatch.chdir(tmp_path)
    specs, run = tmp_path / "specs", tmp_path / "runs" / "r"
    url = _storage_url("sqlite:///studies/s.db", run, specs)
    assert url == f"sqlite:///{specs / 'studies' / 's.db'}"
    assert (specs / "studies").is_dir() and not (tmp_path / "studies").exists()
    assert _storage_url(f"sqlite:///{tmp_path}/abs.db", run, specs) == f"sqlite:///{tmp_path}/abs.db"
    assert _storage_url(None, run, specs) == f"sqlite:///{run.resolve() / 'study.db'}"
    pg = "postgresql://u:p@host/db"
    assert _storage_url(pg, run, specs) == pg


def test_study_lock_is_never_beside_a_file_that_is_not_dlcs(tmp_path, monkeypatch):
    from dlc.runtime.tune import _StudyLock, lock_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run, mine = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    mine.mkdir()
    # dlc's own study.db, in the run folder: the lock beside it, in the run folder
    assert lock_path(run / "study.db", run) == run / "study.db.dlc-lock"
    # a database of the user's: the lock in dlc's folder of locks, the same for every process
    with _StudyLock(None, f"sqlite:///{mine / 'mine.db'}", "s", run):
        assert list(mine.iterdir()) == []
        locks = list((tmp_path / "cache" / "dlc" / "locks").iterdir())
    assert len(locks) == 1 and locks[0].name.endswith(".dlc-lock")
    assert lock_path(mine / "mine.db", run) == locks[0]
    assert not locks[0].exists()  # (removed when let go: none piles up)
    assert lock_path(mine / "other.db", run) != locks[0]


def test_tune_with_a_relative_storage(tmp_path, monkeypatch):
    """`storage: "sqlite:///studies/s.db"` in a spec run from another folder: the study is beside the spec,
    and no lock file is left beside it."""
    specs, elsewhere = tmp_path / "specs", tmp_path / "elsewhere"
    specs.mkdir()
    elsewhere.mkdir()
    spec = specs / "tiny.dlspec"
    spec.write_text((FIXTURE_DIR / "dense.dlspec").read_text()
                    .replace("Dense(8", "Dense(choice(4, 8)").replace("\n}", SEARCH + "}"))
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, stdout, stderr = run_cli("tune", spec, "--out", tmp_path / "run", "--threads", "1", "--quiet")
    assert code == 0, stderr
    assert sorted(p.name for p in (specs / "studies").iterdir()) == ["s.db"]
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_for_the_output_is_one_line(tmp_path):
    """It is the standard output that cannot be written, and no "free some space and run again": `dlc run
    spec > /dev/full` has trained and kept its run, only the line naming it was lost."""
    said = "dlc: error: cannot write the output to the standard output: No space left on device"
    for argv in (["schema"], ["run", "specs/iris.dlspec", "--out", str(tmp_path / "run"), "--epochs", "1",
                              "--quiet"]):
        with open("/dev/full", "w") as full:
            r = subprocess.run([DLC, *argv], stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               timeout=300)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip() == said, r.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_closed_stdout_is_an_error_once_output_is_lost():
    """`dlc check s.dlspec >&-`: Python gives the command no stdout at all (None); dlc does its work, and
    says the output was lost, exit 1, as `cat file >&-` does (predict's predictions went nowhere, exit
    0)."""
    r = subprocess.run(f"{DLC} check specs/iris.dlspec >&-", shell=True, stderr=subprocess.PIPE, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr == "dlc: error: cannot write the output: the standard output is closed\n", r.stderr


def test_usage_errors_in_plain_words():
    rc, _, err = run_cli("run", "specs/iris.dlspec", "--epoch", "3")
    assert rc == 2 and "no such option: --epoch; did you mean --epochs?" in err
    rc, _, err = run_cli("run", "specs/iris.dlspec", "--bogus")
    assert rc == 2 and "no such option: --bogus" in err and "--out" not in err.splitlines()[-1]
    rc, _, err = run_cli("run", "specs/iris.dlspec", "--epochs", "0")
    assert rc == 2 and "'--epochs': must be at least 1" in err
    rc, _, err = run_cli("run", "specs/iris.dlspec", "--backend", "bogus")
    assert rc == 2 and "'bogus' is not one of 'torch', 'keras'" in err and "Value error" not in err
    rc, _, err = run_cli("run", "--resume", "specs/iris.dlspec")
    assert rc == 2 and "is a file, not a run directory" in err and "dlc run specs/iris.dlspec" in err


def test_a_successful_keras_run_prints_no_native_tensorflow_errors(tmp_path):
    """A Conv2D with a leaky_relu(alpha=...) activation made TensorFlow's grappler print an 'E0000 ...
    remapper failed' line on stderr of a run that succeeded; --quiet prints nothing but the run folder."""
    spec = tmp_path / "lr.dlspec"
    spec.write_text("model m {\n  data {\n    source: digits\n  }\n  input: (8, 8, 1)\n  layers {\n"
                    "    Conv2D(4, (3, 3), activation=leaky_relu(alpha=0.1))\n    Flatten()\n"
                    "    Dense(10, activation=softmax)\n  }\n  loss: sparse_categorical_crossentropy\n"
                    "  optimizer: Adam()\n  train {\n    epochs: 1\n  }\n}\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([DLC, "run", str(spec), "--backend", "keras", "--quiet", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr


# ------------------------------------------------------------------------------------- the temporary folder


def test_a_keras_run_leaves_nothing_in_the_temporary_folder(tmp_path):
    """The console command ends with os._exit (no interpreter teardown), but the atexit handlers still run:
    TensorFlow's autograph writes the modules it converts to the temporary folder and removes them there
    (9 files a run were left behind before)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    r = subprocess.run([DLC, "run", str(FIXTURE_DIR / "dense.dlspec"), "--backend", "keras", "--epochs", "1",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT,
                       timeout=300,
                       env={**os.environ, "TMPDIR": str(temp)})
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in temp.iterdir()) == []
