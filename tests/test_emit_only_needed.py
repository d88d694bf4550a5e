"""An emitted script copies only what its spec uses: the Trainers know features read from the host by their
`on_host` mark and keras_layers knows a Residual by its `body`, never by class, so a script of an in-memory
spec gets no streaming reader and one of a network without a residual block no Residual; each still comes
where a spec needs it (the session's streaming: tests/test_npy_source.py, test_device_paths.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_npy_source import NPY, _spec, _write

from conftest import ROOT

STREAMING = {"HostBatches", "BatchReader", "_HostTensors", "StreamedRows", "FileRows", "StreamedFeatures"}


def _defined(path: Path, backend: str) -> set[str]:
    """The top-level names the script emitted for `path` defines (emitting imports no framework)."""
    from dlc.backends.emit.script import emit
    from dlc.compiler import compile_file

    script = emit(compile_file(str(path)).raise_for_errors(), backend, path)
    names = set()
    for node in ast.parse(script).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_an_in_memory_spec_gets_no_streaming_reader(backend):
    assert not _defined(ROOT / "specs" / "digits_mlp.dlspec", backend) & STREAMING


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_an_npy_spec_reads_its_files_whole_without_the_reader(tmp_path, backend):
    """The script trains from memory (read_npy); the run streams the same rows (same numbers)."""
    _write(tmp_path)
    names = _defined(_spec(tmp_path, "a", NPY), backend)
    assert "read_npy" in names and not names & STREAMING


def test_residual_is_copied_only_for_a_residual_block():
    assert "Residual" not in _defined(ROOT / "specs" / "digits_mlp.dlspec", "keras")
    assert "Residual" in _defined(ROOT / "specs" / "guide" / "cnn_bn_residual.dlspec", "keras")

