"""Both backends implement the one Session protocol the runtime uses, with the same method signatures."""

from __future__ import annotations

import inspect

import pytest

from dlc.backends import BACKENDS, Session, session_class
from dlc.compiler import compile_file

from conftest import ROOT

PROTOCOL = [n for n, v in vars(Session).items() if callable(v) and not n.startswith("_")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_session_implements_the_protocol(backend):
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    cls = session_class(backend)
    for name in PROTOCOL:
        want = list(inspect.signature(getattr(Session, name)).parameters)
        have = list(inspect.signature(getattr(cls, name)).parameters)
        assert have[: len(want)] == want, \
            f"{backend} Session.{name}{tuple(have)} differs from the protocol {want}"
    spec = compile_file("specs/iris.dlspec").raise_for_errors()
    assert isinstance(cls(spec, device="cpu"), Session)


def test_backend_folders_mirror_each_other():
    """The same module names for the same concerns in backends/torch and backends/keras."""

    root = ROOT / "backends"
    shared = {"lower.py", "library.py", "session.py", "layers.py", "activations.py", "losses.py",
              "training.py"}
    for backend in BACKENDS:
        names = {p.name for p in (root / backend).glob("*.py")}
        assert shared <= names, f"backends/{backend} lacks {sorted(shared - names)}"
