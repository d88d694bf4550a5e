"""dlc.cli.errors: which exception means which exit code, and the one line each prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlc.cli import errors


def _exc(kind: str) -> BaseException:
    from dlc.backends import BackendUnavailable, LoweringMissing
    from dlc.backends.emit.script import EmitUnsupported
    from dlc.runtime.data import DataError
    from dlc.runtime.loop import TrainingFailed
    from dlc.runtime.runs import RunDirError
    from dlc.runtime.serve import ServeError
    from dlc.runtime.tune import TuneError

    return {"data": DataError("cannot read data file 'x.csv'"),
            "training": TrainingFailed("the loss became nan"), "lowering": LoweringMissing("Maxout", "keras"),
            "backend": BackendUnavailable("torch is not installed"),
            "serve": ServeError("no such file: in.csv"), "rundir": RunDirError("'r' is not a run directory"),
            "missing": FileNotFoundError("no such file"), "tune": TuneError("no tune.json there"),
            "emit": EmitUnsupported("X cannot be emitted")}[kind]


@pytest.mark.parametrize("kind,code,start", [
    ("data", 1, "dlc: error: cannot read"), ("training", 1, "dlc: error: the loss"),
    ("lowering", 1, "dlc: error: Maxout is not supported yet on the keras target"),
    ("backend", 1, "dlc: error: torch"), ("serve", 1, "dlc: error: no such file"),
    ("rundir", 1, "dlc: error: 'r'"), ("missing", 1, "dlc: error: no such file"),
    ("tune", 2, "dlc: error: no tune.json"), ("emit", 2, "dlc: error: X cannot"),
])
def test_known_errors_are_one_line(kind, code, start, capsys):
    assert errors.report(_exc(kind)) == code
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1, err


def test_spec_error_prints_the_diagnostics_as_they_are(capsys):
    from dlc.compiler import compile_text
    from dlc.compiler.diagnostics import SpecError

    result = compile_text("model m {\n  input: (4,)\n  layers: [Dense(3, activation=rleu)]\n}\n", "m.dlspec")
    assert not result.ok
    assert errors.report(SpecError(result.diagnostics.sorted(), result.source, result.file)) == 2
    assert capsys.readouterr().err == result.render() + "\n"


def test_a_failure_after_the_run_directory_was_made_names_it(capsys):
    from dlc.runtime.run import RunFailed

    assert errors.report(RunFailed(_exc("training"), Path("runs/x"))) == 1
    assert capsys.readouterr().err == "dlc: error: the loss became nan (run directory kept: runs/x)\n"


def test_unexpected_errors(capsys, monkeypatch):
    monkeypatch.delenv("DLC_TRACEBACK", raising=False)
    assert errors.report(ValueError("bad value\nmore detail")) == 1
    assert capsys.readouterr().err == ("dlc: error: ValueError: bad value (set DLC_TRACEBACK=1 to see "
                                       "where)\n")
    assert errors.report(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")) == 1
    assert capsys.readouterr().err == ("dlc: error: out of memory: PyTorch could not allocate 2 GiB on the "
                                       "GPU; try a smaller batch_size or model\n")
    assert errors.report(MemoryError()) == 1
    assert capsys.readouterr().err == "dlc: error: out of memory; try a smaller batch_size or model\n"
    monkeypatch.setenv("DLC_TRACEBACK", "1")
    with pytest.raises(ValueError):
        errors.report(ValueError("bad value"))


def test_exits_wraps_a_command(capsys):
    def ok():
        return None

    def interrupted():
        raise KeyboardInterrupt

    def failed():
        raise errors.CommandError(errors.error_line("it broke"), errors.EXIT_SPEC)

    assert errors.exits(ok)() == 0
    assert errors.exits(interrupted)() == 130
    assert capsys.readouterr().err == "dlc: interrupted\n"
    assert errors.exits(failed)() == 2
    assert capsys.readouterr().err == "dlc: error: it broke\n"


@pytest.mark.parametrize("command", ["run", "cv"])
def test_an_empty_out_is_a_usage_error(tmp_path, command, monkeypatch):
    """`--out ""` fell back to a fresh folder under runs/, as if no --out was given."""
    from conftest import ROOT, run_cli

    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(command, ROOT / "specs" / "iris.dlspec", "--backend", "torch", "--out", " ")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.splitlines()[-1] == ("dlc: error: Invalid value for '--out': an empty name is not "
                                    "a folder; give --out DIR, or no --out for a fresh one under runs/")
    assert not (tmp_path / "runs").exists()
