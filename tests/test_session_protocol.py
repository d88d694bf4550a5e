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
              "training.py", "probe.py"}
    for backend in BACKENDS:
        names = {p.name for p in (root / backend).glob("*.py")}
        assert shared <= names, f"backends/{backend} lacks {sorted(shared - names)}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_probe_reports_every_layer_and_changes_nothing(backend):
    """Session.probe (the training evidence's numbers): every layer of the spec with the five fields, and the
    session's state (weights, optimizer slots, dropout step) exactly as before."""
    import numpy as np

    from dlc.reference.evidence import PROBE_FIELDS
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare

    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    spec = compile_file(ROOT / "specs" / "digits_mlp.dlspec").raise_for_errors()
    data = prepare(spec, ROOT / "specs")
    session = session_class(backend)(spec, device="cpu", weights=initial_weights(spec))
    session.train_epoch(session.load_data(data.train.x, data.train.y), np.arange(256), 128)
    before = session.get_state()
    out = session.probe(data.train.x[:64], data.train.y[:64])
    assert list(out) == [info.layer.name for info in spec.walk()]
    assert all(set(v) == set(PROBE_FIELDS) for v in out.values())
    assert out["dropout_1"]["grad_norm"] is None and out["dense_0"]["dead_fraction"] is not None
    after = session.get_state()
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
