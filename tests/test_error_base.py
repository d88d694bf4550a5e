"""`dlc.Error`: one base for every error dlc raises on purpose, so a notebook catches them all and no more."""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from pathlib import Path

import pytest

import dlc
import dlc.api as api

ROOT = Path(__file__).resolve().parents[1]
# raised and caught inside dlc, never reaching a caller (each is turned into one of the public errors or a
# control flow of its own), or the command line's own (CommandError: its exit code; Terminated: Ctrl-C)
INTERNAL = {"DlcError", "_TooManyLayers", "NotCapturable", "FolderBusy", "_EnvironmentFailure", "_Pruned",
            "_Found", "Terminated", "HungUp", "CommandError", "OutputClosed"}


def test_every_error_the_api_names_is_a_dlc_error():
    public = ["SpecError", "DataError", "RunFailed", "TrainingFailed", "TuneError", "ServeError",
              "RunDirError", "OutFolderError", "LRFindError", "BackendUnavailable", "LoweringMissing",
              "EmitUnsupported"]
    assert [n for n in public if not issubclass(getattr(api, n), dlc.Error)] == []


def test_every_exception_class_in_the_source_derives_from_it_or_is_internal():
    """A new error class that forgets the base would slip past `except dlc.Error`: found from the source."""
    forgot = []
    for folder in ("compiler", "backends", "dlc/runtime", "dlc/reference", "dlc/cli"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef) or node.name in INTERNAL:
                    continue
                bases = [ast.unparse(b) for b in node.bases]
                builtin = [b for b in bases if isinstance(getattr(builtins, b, None), type)
                           and issubclass(getattr(builtins, b), BaseException)]
                if builtin and "DlcError" not in bases:
                    forgot.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({', '.join(bases)})")
    assert forgot == []


def test_a_spec_error_and_a_data_error_are_caught_by_it_and_a_wrong_argument_is_not(tmp_path):
    with pytest.raises(dlc.Error) as e:
        dlc.load(tmp_path / "missing.dlspec")
    assert isinstance(e.value, dlc.SpecError)
    spec = tmp_path / "s.dlspec"
    spec.write_text('data: csv("gone.csv", target: "y")\nmodel: Dense(1)\nloss: mse\n')
    with pytest.raises(dlc.Error):
        dlc.load(spec)
    with pytest.raises(ValueError) as wrong:
        dlc.Model(ROOT / "specs/iris.dlspec", backend="pytorch")
    assert not isinstance(wrong.value, dlc.Error)


def test_dlc_error_is_reached_without_importing_the_api_or_a_framework():
    code = ("import sys, dlc; E = dlc.Error; assert 'Error' in dir(dlc); "
            "print(E.__name__, [m for m in ('dlc.api', 'torch', 'tensorflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["DlcError", "[]"]
