"""The tuning guides' experiments in specs/guide/ show what they are meant to show."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dlc.backends import session_class
from dlc.compiler import compile_file
from dlc.reference.weights import initial_weights
from dlc.runtime.data import prepare
from dlc.runtime.loop import train

from conftest import ROOT

GUIDE = ROOT / "specs" / "guide"


def _train(name: str, backend: str = "torch", epochs: int | None = None):
    path = GUIDE / f"{name}.dlspec"
    spec = compile_file(path).spec
    data = prepare(spec, path.parent)
    w0 = initial_weights(spec)
    s = session_class(backend)(spec, device="cpu", weights=w0)
    hist = train(s, spec, data, epochs=epochs)
    return w0, s.get_weights(), hist


def _first_layer_change(w0, w1) -> float:
    first = next(iter(w0))
    k0, k1 = w0[first]["kernel"], w1[first]["kernel"]
    return float(np.linalg.norm(k1 - k0) / np.linalg.norm(k0))


def test_deep_sigmoid_first_layer_learns_far_more_slowly():
    sig = _first_layer_change(*_train("deep_sigmoid", epochs=3)[:2])
    relu = _first_layer_change(*_train("deep_relu", epochs=3)[:2])
    assert sig < 0.05 * relu, (sig, relu)


def test_lr_too_high_stops_with_one_clear_line(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "dlc", "run", str(GUIDE / "lr_too_high.dlspec"), "--out",
                        str(out), "--quiet"], capture_output=True, text=True, check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "loss became nan at epoch 1, step" in lines[0] and "lr=0.1 or lr=0.01" in lines[0]
    assert (out / "history.json").is_file() and json.loads((out / "history.json").read_text()) == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_guide_experiments_full(backend):
    """Measured on this CPU (torch): deep sigmoid stays at chance (val acc ~0.10) while deep ReLU reaches
    ~0.95; he_normal/glorot reach ~0.93 val accuracy where random_normal(0.05) reaches ~0.83 after 10 epochs;
    dropout lowers the overfit net's val_loss (0.295 -> 0.270)."""
    acc = {n: _train(n, backend)[2].rows[-1]["val_accuracy"] for n in
           ("deep_sigmoid", "deep_relu", "init_random_normal", "init_he_normal")}
    assert acc["deep_sigmoid"] < 0.3
    assert acc["deep_relu"] > 0.9
    assert acc["init_he_normal"] > acc["init_random_normal"]
    none = _train("overfit_none", backend)[2].rows[-1]
    drop = _train("overfit_dropout", backend)[2].rows[-1]
    assert none["loss"] < 0.01 and none["val_loss"] > 10 * none["loss"]  # overfits: the variance gap
    assert drop["val_loss"] < none["val_loss"]
