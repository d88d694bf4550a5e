"""The world around a run going wrong: a full disk while a run folder is written, SIGTERM during training, a
locale that is not UTF-8, a model file cut short, an option out of its range. Each is one clear line and an
exit code, with nothing of the run lost and nothing half-written left behind."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import ROOT, edited_spec, kill_after_epochs, run_cli

IRIS = ROOT / "specs" / "iris.dlspec"


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# -------------------------------------------------------------------------------------------- a full disk


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    """A full disk while rewriting run.json (or history.json, evidence.json, ...): the half-written
    `run.json.tmp` stayed in the run folder, taking the space that `--resume` then needed to write it again.
    Now the old file is intact and the temporary one is gone."""
    from dlc.runtime import rundir

    target = tmp_path / "run.json"
    target.write_text('{"finished": null}')

    def half_then_full(self, text, encoding=None, errors=None):
        with open(self, "w", encoding=encoding, errors=errors) as fh:
            fh.write(text[:3])
        _no_space()

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError):
        rundir.write_json(target, {"finished": "now"})
    monkeypatch.undo()
    assert target.read_text() == '{"finished": null}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_checkpoint_that_does_not_fit_leaves_the_last_one(tmp_path, monkeypatch):
    """A full disk while writing an epoch's checkpoint: `checkpoint.npz.tmp.npz` (as big as the model and
    its optimizer state) stayed beside the last good checkpoint. Now only that one is left."""
    from dlc.runtime import checkpoint

    session = SimpleNamespace(get_state=lambda: {"w": np.arange(4.0)})
    state = SimpleNamespace(best_weights=None, to_json=lambda: {"epoch": 1})
    checkpoint.save(tmp_path, session, state)
    before = (tmp_path / checkpoint.FILE).read_bytes()

    def part_then_full(fh, **_arrays):
        fh.write(b"PK\x03\x04" + b"\0" * 100)
        _no_space()

    monkeypatch.setattr(checkpoint.np, "savez", part_then_full)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, session, state)
    assert (tmp_path / checkpoint.FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.FILE]


def test_a_model_that_does_not_fit_leaves_no_temporary_folder(tmp_path):
    """A backend that fails while saving the model (a full disk): `model.tmp/` with the half-written model
    stayed in the run folder."""
    from dlc.runtime import rundir

    def save(folder):
        (folder / "model.pt").write_bytes(b"half")
        _no_space()

    with pytest.raises(OSError):
        rundir.save_model(tmp_path, SimpleNamespace(save=save))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ SIGTERM


def test_sigterm_ends_a_run_as_ctrl_c_does_and_it_resumes(tmp_path):
    """`kill PID` (or `timeout`, a job scheduler's stop) during training ended the run silently: exit 143,
    nothing on stderr, log.txt cut off. Now it ends as Ctrl-C does: one line naming the command that
    continues it, exit 143 (128 + SIGTERM), and `--resume` finishes the run."""
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 150")))
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "run", str(spec), "--out", str(run), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    kill_after_epochs(proc, run, 2, timeout=240, signum=signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [f"dlc: terminated (SIGTERM); `dlc run --resume {run}` continues it"]
    assert (run / "log.txt").read_text().rstrip().endswith("interrupted")
    r = subprocess.run([sys.executable, "-m", "dlc", "run", "--resume", str(run), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    assert len(json.loads((run / "history.json").read_text())) == 150


def test_the_sigterm_handler_is_put_back(capsys):
    """`dlc.cli.main` in a process of its own (a notebook, the tests) leaves SIGTERM and SIGHUP as it found
    them."""
    from dlc.cli import main

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert main(["check", str(IRIS), "-q"]) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


def test_sighup_ends_a_run_with_its_epochs_written(tmp_path):
    """The terminal closed (SIGHUP): its default ended the process at once, exit 129, nothing said, the
    history as of its last paced write. It now ends as SIGTERM does: the epochs trained so far written,
    one line, exit 129, and `--resume` goes on; under nohup (SIGHUP ignored) the run is left to go on."""
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 3000")))
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "run", str(spec), "--out", str(run), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    kill_after_epochs(proc, run, 2, timeout=240, signum=signal.SIGHUP)
    err = proc.stderr.read()
    assert proc.returncode == 129, err
    assert err.strip().splitlines() == [
        f"dlc: terminated (SIGHUP: the terminal was closed); `dlc run --resume {run}` continues it"]
    epochs = [r["epoch"] for r in json.loads((run / "history.json").read_text())]
    state = json.loads((run / "run.json").read_text())
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 2, state
    code = ("import signal; from dlc.cli import errors; r = errors.stop_on_sigterm(); "
            "print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN); r()")
    nohup = subprocess.run(["nohup", sys.executable, "-c", code],
                           capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert nohup.stdout.strip() == "True", nohup.stdout + nohup.stderr


# ------------------------------------------------------------------------------------- a non-UTF-8 locale


def test_a_locale_that_is_not_utf8(tmp_path):
    """LC_ALL=C with Python's UTF-8 mode off (PYTHONUTF8=0; as in a latin-1 or Windows locale, Python reads
    and writes files in the locale's encoding): every command failed with `UnicodeDecodeError: 'ascii'
    codec can't decode byte 0xe2` reading dlc's own grammar, and `dlc compile -o` writing a script. dlc's
    files are UTF-8 whatever the locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIOENCODING", "PYTHONUTF8"))}
    env.update(LC_ALL="C", LANG="C", PYTHONUTF8="0")
    script = tmp_path / "iris.py"
    for args in (["check", str(IRIS), "-q"], ["compile", str(IRIS), "--emit", "torch", "-o", str(script)]):
        r = subprocess.run([sys.executable, "-m", "dlc", *args], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0 and "Error" not in r.stderr, r.stderr
    assert script.read_text(encoding="utf-8").startswith(("#", '"""'))


# ------------------------------------------------------------------------------------ a damaged model file


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_model_file_cut_short_is_named(tmp_path, backend):
    """model.pt cut to half its size (a copy that stopped, a full disk outside dlc): the error was torch's
    three sentences about its zip reader ('... This is an internal miniz error. If you are seeing this
    error, ...'); Keras' said 'File is not a zip file'. Now: which file, that it is damaged, what to do."""
    import dlc

    run = dlc.Model(dlc.load(IRIS), backend=backend).save(tmp_path / "run")
    name = "model.keras" if backend == "keras" else "model.pt"
    whole = (run / name).read_bytes()
    (run / name).write_bytes(whole[: len(whole) // 2])
    x = tmp_path / "x.csv"
    x.write_text("5.1,3.5,1.4,0.2\n")
    rc, out, err = run_cli("predict", run, "--input", x)
    assert (rc, out) == (1, "")
    assert err.splitlines() == [f"dlc: error: cannot load the model in '{run}': {name} is damaged (not a "
                                f"complete archive: cut short or written over); train the spec again "
                                f"(`dlc run SPEC --out {run} --replace`)"]


# ------------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_a_master_port_out_of_range_is_a_usage_error(port):
    """`dlc run --nproc 2 --master-port 99999` started both workers, which failed to bind and reported
    'the 2 workers of this data-parallel run lost contact with each other' (exit 1) after several seconds."""
    rc, out, err = run_cli("run", IRIS, "--nproc", "2", "--master-port", port)
    assert rc == 2 and "--master-port" in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------ the Python API


@pytest.fixture(scope="module")
def iris_model():
    import dlc

    return dlc.Model(IRIS, backend="torch", dtype="float64")


@pytest.mark.parametrize("x,error,fact", [
    (np.zeros((0, 4)), ValueError, "no samples"),  # was numpy's "need at least one array to concatenate"
    (np.zeros((2, 4), complex), TypeError, "real numbers"),  # was a warning, the imaginary parts dropped
    (None, TypeError, "not None"),  # was "the inputs hold values that are not finite"
    (np.array([["a", "b", "c", "d"]]), TypeError, "real numbers"),  # was "could not convert string to float"
], ids=["no rows", "complex", "None", "text"])
def test_model_predict_names_inputs_it_cannot_take(iris_model, x, error, fact):
    """`Model.predict(x)` with inputs that are no samples of real numbers: an error that says so, not
    numpy's words from deep inside, nor a prediction from the real parts of complex numbers."""
    with pytest.raises(error, match=fact):
        iris_model.predict(x)


def test_model_evaluate_names_missing_targets(iris_model):
    """`Model.evaluate(x, None)` said "len() of unsized object"; `evaluate` of no rows was a
    ZeroDivisionError."""
    with pytest.raises(TypeError, match="targets must be an array"):
        iris_model.evaluate(np.zeros((3, 4)), None)
    with pytest.raises(ValueError, match="no samples"):
        iris_model.evaluate(np.zeros((0, 4)), np.zeros(0, int))


def test_model_set_weights_of_text_names_the_weight(iris_model):
    """A weight given as text said only "could not convert string to float: 'abc'"."""
    with pytest.raises(TypeError, match="dense_0.kernel must be real numbers"):
        iris_model.set_weights({"dense_0": {"kernel": "abc"}})


def test_a_device_that_is_not_one_is_named():
    """`Model(spec, device="tpu")` raised torch's RuntimeError listing its 20 device types."""
    import dlc

    with pytest.raises(ValueError, match="'tpu' is not a device; use auto, cpu, cuda or cuda:N"):
        dlc.Model(IRIS, device="tpu")


@pytest.mark.parametrize("call,error,fact", [
    (lambda dlc: dlc.epoch_order(IRIS, -1, 10), ValueError, "epoch must be at least 0"),  # numpy's seed error
    (lambda dlc: dlc.epoch_order(IRIS, 0, -1), ValueError, "n must be at least 0"),  # was [] silently
    (lambda dlc: dlc.compare(str(IRIS), steps=0), ValueError, "steps must be at least 1"),  # AttributeError
    (lambda dlc: dlc.compare(IRIS, seeds=1.5), TypeError, "seeds must be a whole number"),
    (lambda dlc: dlc.compare(IRIS, seeds=2, margin=float("inf")), ValueError, "positive numbers"),
    (lambda dlc: dlc.api.cross_validate(dlc.load(IRIS), "torch", k=0), ValueError, "at least 2"),  # spec's k
    (lambda dlc: dlc.api.cross_validate(dlc.load(IRIS), "torch", k=1), ValueError, "at least 2"),  # sklearn's
    (lambda dlc: dlc.api.plot_runs([], "p.png"), ValueError, "list of run directories"),  # IndexError
    (lambda dlc: dlc.api.doctor(".", target_accuracy=5), ValueError, "between 0 and 1"),  # was taken
], ids=["epoch -1", "n -1", "compare path, steps 0", "seeds 1.5", "margin inf", "k 0", "k 1", "no runs",
        "target 5"])
def test_api_arguments_out_of_range(call, error, fact):
    """Arguments the CLI refuses as usage errors, given to the API: a ValueError naming them before any
    work, instead of a framework's error, a silent default or a run folder made for nothing."""
    import dlc
    import dlc.api

    with pytest.raises(error, match=fact):
        call(dlc)


def test_compare_margins_must_be_finite():
    """`dlc compare --seeds 2 --rel-margin inf` ran both backends and called anything equivalent."""
    rc, out, err = run_cli("compare", IRIS, "--seeds", "2", "--rel-margin", "inf")
    assert rc == 2 and "margins must be positive numbers" in err, err


@pytest.mark.parametrize("command", ["doctor", "plot"])
def test_a_file_given_as_a_run_is_named_a_file(tmp_path, command):
    """`dlc doctor FILE` and `dlc plot FILE` said "no such run directory" of a file that exists."""
    f = tmp_path / "notes.txt"
    f.write_text("x")
    rc, out, err = run_cli(command, f)
    assert rc == 2  # (a path of the wrong kind: a usage error, as every run folder argument)
    assert err == f"dlc: error: RUN {f} is a file, not a run directory (the folder `dlc run` wrote)\n"


# ----------------------------------------------------------------------------- resuming an edited run folder


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> Path:
    """An iris run (150 epochs) killed with SIGKILL after its second epoch's checkpoint."""
    tmp = tmp_path_factory.mktemp("killed")
    spec = tmp / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 150")))
    run = tmp / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "run", str(spec), "--out", str(run), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    kill_after_epochs(proc, run, 2, timeout=240)
    return run


def _edited_copy(run: Path, into: Path, name: str, **changes) -> Path:
    import shutil

    copy = Path(shutil.copytree(run, into / "copy"))
    (copy / ".dlc-lock").unlink(missing_ok=True)
    obj = json.loads((copy / name).read_text())
    for key, value in changes.items():
        where = obj
        *path, last = key.split(".")
        for k in path:
            where = where[k]
        where[last] = value
    (copy / name).write_text(json.dumps(obj, indent=2))
    return copy


@pytest.mark.parametrize("key,value,fact", [
    ("backend", "jax", "its backend 'jax' is not one of torch, keras"),  # was "ValueError: unknown backend"
    ("device", "tpu", "its device 'tpu' is not a device"),  # was torch's list of its 20 device types
    ("compile", "yes", "its compile 'yes' is not true or false"),  # was taken as true: the run compiled
])
def test_resume_names_a_run_json_edited_by_hand(killed_run, tmp_path, key, value, fact):
    """run.json's settings edited by hand: `--resume` reached the framework with them."""
    copy = _edited_copy(killed_run, tmp_path, "run.json", **{key: value})
    rc, out, err = run_cli("run", "--resume", copy, "--quiet")
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"dlc: error: '{copy}' cannot be resumed: run.json is damaged ({fact}"), err


@pytest.mark.parametrize("key,value", [("seed", 8), ("train.batch_size", 7),
                                       ("optimizer.learning_rate", 0.5)])
def test_resume_refuses_a_checkpoint_of_another_ir_json(killed_run, tmp_path, key, value):
    """ir.json edited (or copied from a run of the same shapes) after the checkpoint was written: `--resume`
    loaded the checkpoint without error and went on training with another seed or batch size than the
    epochs before, a result no uninterrupted run gives. The checkpoint now keeps ir.json's digest."""
    copy = _edited_copy(killed_run, tmp_path, "ir.json", **{key: value})
    rc, out, err = run_cli("run", "--resume", copy, "--quiet")
    assert rc == 1 and err.splitlines() == [
        f"dlc: error: {copy / 'checkpoint.npz'} was written for another ir.json (the run's was edited, or "
        f"files were copied between runs); it cannot be resumed from: train the spec again (`dlc run SPEC "
        f"--out {copy} --replace`)"], err


# ------------------------------------------------------------------------------------------------- links


def test_replace_through_a_link_to_a_run_folder(tmp_path):
    """`dlc run SPEC --out LINK --replace`, LINK a symbolic link to an earlier run's folder: 'OSError: Cannot
    call rmtree on a symbolic link' (exit 1). Now the run it points to is replaced and the link kept."""
    real, link = tmp_path / "real", tmp_path / "link"
    assert run_cli("run", IRIS, "--epochs", "1", "--out", real, "--quiet")[0] == 0
    link.symlink_to(real)
    rc, out, err = run_cli("run", IRIS, "--epochs", "2", "--out", link, "--replace", "--quiet")
    assert rc == 0, err
    assert link.is_symlink() and len(json.loads((real / "history.json").read_text())) == 2


# ---------------------------------------------------------------------------- class names in an ASCII locale


def test_predicted_class_names_are_written_as_utf8_in_any_locale(tmp_path):
    """A run trained on class names with accents (`café`), `dlc predict --output p.csv` under LC_ALL=C with
    Python's UTF-8 mode off: UnicodeEncodeError: 'ascii' codec can't encode character '\\xe9'."""
    rows = [f"{i % 5}.{i},{(i * 7) % 3}.5,{['café', 'thé', 'eau'][i % 3]}" for i in range(60)]
    (tmp_path / "d.csv").write_text("a,b,drink\n" + "\n".join(rows) + "\n", encoding="utf-8")
    spec = tmp_path / "s.dlspec"
    spec.write_text(edited_spec(IRIS, ("source: iris", 'source: csv("d.csv", target="drink")'),
                                ("input: (4)", "input: (2)")))
    run = tmp_path / "run"
    assert run_cli("run", spec, "--epochs", "1", "--out", run, "--quiet")[0] == 0
    (tmp_path / "x.csv").write_text("1.0,2.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIOENCODING", "PYTHONUTF8"))}
    env.update(LC_ALL="C", LANG="C", PYTHONUTF8="0")
    r = subprocess.run([sys.executable, "-m", "dlc", "predict", str(run), "--input", str(tmp_path / "x.csv"),
                        "--output", str(tmp_path / "p.csv")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    header, row = (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()
    assert header == "class,p_café,p_eau,p_thé" and row.split(",")[0] in ("café", "eau", "thé")


def test_a_study_storage_on_a_full_disk_is_said_so():
    """`dlc tune --out DIR` on a full disk: Optuna's commit failed as 'StorageInternalError: An exception is
    raised during the commit. This typically happens due to invalid data in the commit, e.g. exceeding max
    length.' (exit 1), and opening the study as 'dlc tune: cannot open storage ...' (exit 2, a usage
    error). SQLite's reason under it is what the user needs: the disk is full."""
    import sqlite3

    from optuna.exceptions import StorageInternalError

    from dlc.cli.errors import classify

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as e:
            raise StorageInternalError("An exception is raised during the commit.") from e
    except StorageInternalError as e:
        failure = e
    assert classify(failure) == (1, "dlc: error: cannot write: the database or disk is full; free some space "
                                    "and run again")


# ------------------------------------------------------------------------------ output files on a full disk


def test_an_output_that_does_not_fit_keeps_the_file_it_would_replace(tmp_path):
    """`dlc export RUN --output m.onnx` (or predict --output, plot --out, compile -o) on a full disk wrote
    into m.onnx itself: the model exported before was cut to what fitted (61,440 bytes of a 155 kB model
    on a 60 kB tmpfs), and predict left an empty p.csv. Now each is written beside its target and renamed
    over it: a failure keeps the old file and leaves nothing half-written."""
    from dlc import api

    out = tmp_path / "m.onnx"
    out.write_bytes(b"the model exported before")
    with pytest.raises(OSError), api.output_file(out) as tmp:
        tmp.write_bytes(b"half a mod")
        _no_space()
    assert out.read_bytes() == b"the model exported before"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    with api.output_file(tmp_path / "p.npz") as tmp:
        assert tmp.name.endswith(".npz")  # (np.savez adds .npz to any other name)
        np.savez(tmp, x=np.zeros(2))
    assert np.load(tmp_path / "p.npz")["x"].shape == (2,)
    with api.output_file(os.devnull) as tmp:  # (a device is written as it is, never replaced)
        assert str(tmp) == os.devnull


def test_predict_to_dev_stdout_into_a_closed_pipe_is_quiet(tmp_path):
    """`dlc predict RUN --input F --output /dev/stdout | head -1`: 'dlc: error: cannot write /dev/stdout:
    Broken pipe', exit 1, where `--output` left out exits quietly (141)."""
    import dlc

    run = dlc.Model(dlc.load(IRIS)).save(tmp_path / "run")
    x = tmp_path / "x.csv"
    x.write_text("5.1,3.5,1.4,0.2\n" * 20000)
    read, write = os.pipe()
    os.close(read)
    try:
        r = subprocess.run([sys.executable, "-m", "dlc", "predict", str(run), "--input", str(x), "--output",
                            "/dev/stdout"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (r.returncode, r.stderr) == (141, ""), r.stderr


def test_predict_writes_json_and_refuses_a_format_it_does_not_write(tmp_path):
    """`--output p.json` wrote CSV under a .json name, without a word, and `p.parquet` too: .json is now a
    list of objects keyed as the CSV's header (the same values), another ending a usage error (exit 2)
    before the model runs."""
    import json

    import dlc

    run = dlc.Model(dlc.load(IRIS)).save(tmp_path / "run")
    x = tmp_path / "x.csv"
    x.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    rc, _, err = run_cli("predict", run, "--input", x, "--output", tmp_path / "p.json")
    assert rc == 0, err
    rc, _, err = run_cli("predict", run, "--input", x, "--output", tmp_path / "p.csv")
    assert rc == 0, err
    rows = json.loads((tmp_path / "p.json").read_text())
    header, *lines = (tmp_path / "p.csv").read_text().split()
    assert [list(r) for r in rows] == [header.split(",")] * 2
    for r, line in zip(rows, lines, strict=True):
        cells = line.split(",")
        assert str(r["class"]) == cells[0]
        assert [f"{v:.8g}" for v in list(r.values())[1:]] == cells[1:]
    rc, _, err = run_cli("predict", run, "--input", x, "--output", tmp_path / "p.parquet")
    assert rc == 2 and "dlc writes predictions as .csv, .json, .npz, .txt" in err, err
    assert not (tmp_path / "p.parquet").exists()


# ----------------------------------------------------------------------------------- a home of no use


def test_a_home_that_cannot_be_written_gives_no_matplotlib_warning(tmp_path):
    """HOME unset or read-only (a container run as another user; here a HOME under a file, which not even
    root can create): every command that draws (`dlc run`'s curves.png, `dlc plot`, doctor --plot) printed
    matplotlib's 'mkdir -p failed for path .../.config/matplotlib ... Matplotlib created a temporary cache
    directory at /tmp/matplotlib-kke05epw ... it is highly recommended to set the MPLCONFIGDIR ...' on
    stderr, on success too."""
    (tmp_path / "file").write_text("x")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "MPLCONFIGDIR")}
    env.update(HOME=str(tmp_path / "file" / "home"), OMP_NUM_THREADS="1")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "dlc", "run", str(IRIS), "--epochs", "1", "--out", str(run),
                        "--quiet"], capture_output=True, text=True, env=env, timeout=240)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert (run / "curves.png").stat().st_size > 0


def _wait_for(path: Path, text: str, proc, timeout: float = 120) -> None:
    """Until file `path` holds `text` (the process still running), else the test fails."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and text in path.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"it ended before it could be stopped: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail(f"no {text!r} in {path} after {timeout} s")


def test_sigterm_ends_a_search_as_terminated(tmp_path):
    """SIGTERM to `dlc tune` mid-trial: said as `terminated (SIGTERM)` and exit 143, as `dlc run` (it said
    `interrupted`, 130, the Ctrl-C wording); the running trial is queued again as after Ctrl-C."""
    spec = tmp_path / "t.dlspec"
    spec.write_text(edited_spec(ROOT / "specs" / "tune" / "iris_tune.dlspec", ("epochs: 60", "epochs: 3000"),
                                ("trials: 30", "trials: 2")))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "tune", str(spec), "--out", str(run),
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    _wait_for(run / "trials" / "0000" / "log.txt", "trial 0:", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM): run the same command again to continue" in err
    assert "Traceback" not in err and "interrupted:" not in err
    trial = json.loads((run / "tune.json").read_text())["trials"][0]
    assert trial["state"] == "FAIL" and trial["interrupted"]


def test_sigterm_to_a_data_parallel_run_says_so_and_how_to_continue(tmp_path):
    """SIGTERM to the launcher of `dlc run --nproc 2` stopped its workers and ended with exit 143 but no
    line; now the line names the command that continues it, and that command finishes the run."""
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(IRIS, ("epochs: 40", "epochs: 3000")))
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "run", str(spec), "--out", str(run), "--quiet",
                             "--nproc", "2", "--backend", "torch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    kill_after_epochs(proc, run, 2, timeout=240, signum=signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [f"dlc: terminated (SIGTERM); `dlc run --resume {run} --nproc 2` "
                                        "continues it"]
    json.loads((run / "run.json").read_text())  # (whole: the workers' files are written beside and renamed)


def test_resume_of_a_run_started_on_a_gpu_that_is_not_here_says_so(killed_run, tmp_path):
    """A run started on cuda, resumed where there is none: it said "--device cuda was asked for", an option
    the user never gave; now what the run was started on, and the way to continue here."""
    copy = _edited_copy(killed_run, tmp_path, "run.json", device="cuda")
    rc, out, err = run_cli("run", "--resume", copy, "--quiet")
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert f"{copy} was started on --device cuda, but PyTorch sees no CUDA device" in err, err
    assert "add --device cpu (or auto) to continue it here" in err and "was asked for" not in err
    rc, out, err = run_cli("run", "--resume", copy, "--device", "cpu", "--quiet")
    assert rc == 0, err
