"""Saved models reload, for every catalogue item: each equivalence fixture, trained a few steps on each
backend through the Python API and saved as a run directory, is loaded back the way `dlc evaluate`,
`dlc predict` and `dlc export` load it, and gives the in-memory model's numbers.

Per fixture and backend:
  - load_run (what evaluate and predict use: the model rebuilt from ir.json, the weights read from model.keras
    or model.pt) has the trained model's weights, bit for bit (BatchNorm's moving statistics included);
  - `dlc evaluate`'s numbers (api.evaluate_run) are metrics.json's, computed from the in-memory model;
  - `dlc predict` on raw features (api.predict_file: the saved preprocessing applied) agrees with the trained
    model on the normalised ones (measured: |Δ| = 0 on every fixture, both backends; the bound allows the
    normalisation's rounding);
  - keras: model.keras is also a complete Keras model that `keras.saving.load_model` (safe mode: it refuses a
    lambda) reads after importing dlc.backends.keras.library, as model.json and the README say: the same
    layers and weights;
  - `dlc export` writes an ONNX model that onnxruntime runs to the same outputs (float32: within 1e-5,
    relative; measured ≤ 4e-7), or, without the onnx package, fails with one line naming the extra to
    install.

The whole sweep (every fixture on both backends: 9.5 minutes, 4 of CPU, on a busy 2-core machine) runs with
`pytest -m slow`. The default run (80 s there, 35 s of CPU) trains three composite specs (COMPOSITES) on
both backends, which together hold every layer, activation, regularizer, constraint and kind of output the
fixtures use (a test keeps it so), with parametrized activations in every place one can go (Dense, Maxout,
Activation, convolutions, recurrent layers, inside Bidirectional), plus, on keras, where the unserializable
activations were reported, the fixtures KERAS_DEFAULT.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

import dlc
from dlc import api
from dlc.compiler import compile_file, compile_text
from dlc.compiler import functions as fn
from dlc.compiler import layers as L
from dlc.runtime.serve import load_run

from conftest import EQUIVALENCE_SPECS, FIXTURE_DIR, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the models are tiny

FIXTURES = sorted(FIXTURE_DIR.glob("*.dlspec"))
STEPS = 2  # trained a little: the weights (and BatchNorm's moving statistics) are not the initial ones
N_SAMPLES = 32
RAW_TOL = {"float64": 1e-12, "float32": 1e-6}  # predict on raw features: the normalisation's rounding
ONNX_TOL = 1e-5  # float32 ONNX vs the trained model (relative, or absolute near 0)
HAS_ONNX = importlib.util.find_spec("onnx") is not None
# the reported failures (elu, leaky_relu with alpha), integer inputs, a sigmoid output
KERAS_DEFAULT = ("act_elu", "act_leaky_relu", "embedding", "loss_binary_crossentropy")

_TRAIN = """
  optimizer: SGD(lr=0.01)
  train {
    epochs: 1
    batch_size: 32
  }
}
"""
COMPOSITES = {
    "kinds_dense": """
model kinds_dense {
  seed: 7
  data {
    source: diabetes
    normalize: standard
    split: holdout(val=0.2, test=0.2)
  }
  input: (10)
  layers {
    Dense(8, activation=linear, kernel_reg=l1(1e-4), bias_reg=l2(1e-4))
    Dense(8, activation=sigmoid, kernel_constraint=max_norm(2.0), bias_constraint=non_neg)
    Dense(8, activation=hard_sigmoid, activity_reg=l1_l2(l1=1e-4, l2=1e-4))
    Dense(8, activation=tanh, kernel_constraint=unit_norm)
    Dense(8, activation=relu)
    Dense(8, activation=relu6)
    Dense(8, activation=selu)
    Dense(8, activation=gelu)
    Dense(8, activation=swish)
    Dense(8, activation=softplus)
    Dense(8, activation=softsign)
    Dense(8, activation=leaky_relu(alpha=0.05))
    Dense(8, activation=elu(alpha=0.3))
    Maxout(8, pieces=2, activation=leaky_relu(alpha=0.1))
    Activation(elu(alpha=2.0))
    Dense(8, activation=softmax)
    Dense(8)
    Softmax()
    Dense(8)
    LeakyReLU(0.1)
    Dense(8)
    ELU(0.5)
    Dense(8)
    PReLU()
    BatchNorm()
    Dropout(0.2)
    residual {
      Dense(8, activation=leaky_relu)
      LayerNorm()
    }
    Dense(1)
  }
  loss: mse
  metrics: [mae]""" + _TRAIN,
    "kinds_image": """
model kinds_image {
  seed: 8
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (8, 8, 1)
  layers {
    Conv2D(4, (3, 3), padding=same, activation=elu(alpha=0.5))
    AvgPool2D((2, 2), strides=(1, 1), padding=same)
    DepthwiseConv2D((3, 3), padding=same, activation=leaky_relu(alpha=0.1))
    SeparableConv2D(4, (3, 3), padding=same, activation=relu)
    MaxPool2D((2, 2))
    Conv2DTranspose(3, (3, 3), strides=(2, 2), padding=same, activation=tanh)
    UpSampling2D((2, 2), interpolation=bilinear)
    AvgPool2D((2, 2))
    BatchNorm()
    Reshape((64, 3))
    Conv1D(4, 3, padding=same, activation=leaky_relu(alpha=0.2))
    MaxPool1D(2)
    AvgPool1D(2, strides=1, padding=same)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]""" + _TRAIN,
    "kinds_sequence": """
model kinds_sequence {
  seed: 9
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (8, 8)
  layers {
    Bidirectional(SimpleRNN(4, return_sequences=true, activation=elu(alpha=0.5)), merge_mode=sum)
    GRU(4, return_sequences=true, activation=leaky_relu(alpha=0.1), recurrent_activation=hard_sigmoid)
    LSTM(4, return_sequences=true, activation=leaky_relu)
    GlobalAvgPool1D()
    Dense(16)
    Reshape((4, 4))
    GlobalMaxPool1D()
    Dense(8)
    Reshape((2, 2, 2))
    GlobalAvgPool2D()
    Dense(8)
    Reshape((2, 2, 2))
    GlobalMaxPool2D()
    Dense(10, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]""" + _TRAIN,
}


@functools.cache
def load(path: Path):
    return compile_file(path).raise_for_errors().with_source_file(path)


@functools.cache
def composite(name: str):
    return compile_text(COMPOSITES[name], file=f"<{name}>").raise_for_errors()


def kinds(spec) -> frozenset[str]:
    """What a saved model is made of: every layer (nested ones included), activation, regularizer and
    constraint class in the network, and the kind of output (categorical, binary, regression). Initializers
    are left out: dlc sets every weight itself, a saved model holds none."""
    out = {type(spec.loss).task}

    def walk(v):
        if isinstance(v, (L.Layer, fn.Activation, fn.Regularizer, fn.Constraint)):
            out.add(type(v).__name__)
        if isinstance(v, BaseModel):
            for name in type(v).model_fields:
                walk(getattr(v, name))
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)

    walk(spec.layers)
    return frozenset(out)


def _cases():
    for name in COMPOSITES:
        for backend in ("keras", "torch"):
            yield pytest.param(name, backend, id=f"{name}-{backend}")
    for path in FIXTURES:
        for backend in ("keras", "torch"):
            default = backend == "keras" and path.stem in KERAS_DEFAULT
            yield pytest.param(path.stem, backend, id=f"{path.stem}-{backend}",
                               marks=() if default else (pytest.mark.slow,))


def _spec(name: str):
    return composite(name) if name in COMPOSITES else load(FIXTURE_DIR / f"{name}.dlspec")


def _inputs(data) -> np.ndarray:
    part = data.test or data.val or data.train
    return part.x[:N_SAMPLES]


def _raw(data, x: np.ndarray) -> np.ndarray:
    """Normalised inputs back to raw features (what `dlc predict` reads), flat (N, features)."""
    flat = x.reshape(len(x), -1)
    return flat if data.shift is None else flat * data.scale + data.shift


@pytest.mark.parametrize("name, backend", list(_cases()))
def test_saved_model_reloads(name, backend, tmp_path):
    spec = _spec(name)
    model = dlc.Model(spec, backend=backend)
    model.fit(max_steps=STEPS)
    run = model.save(tmp_path / "run")
    x = _inputs(model.data)
    want = model.predict(x)

    # what `dlc evaluate` and `dlc predict` load: the same weights, to the last bit
    _, session, _ = load_run(run)
    _assert_same_weights(session.get_weights(), model.get_weights())

    # `dlc evaluate`: the in-memory model's metrics (metrics.json)
    saved = json.loads((run / "metrics.json").read_text())
    assert api.evaluate_run(run) == {part: saved[part] for part in ("train", "val", "test") if part in saved}

    # `dlc predict` on raw features
    raw = tmp_path / "raw.npz"
    np.savez(raw, x=_raw(model.data, x))
    pred = api.predict_file(run, raw)
    np.testing.assert_allclose(pred.outputs, want, rtol=0, atol=RAW_TOL[spec.dtype])

    if backend == "keras":
        _check_keras_file(run, model)
    _check_export(run, tmp_path / "model.onnx", _raw(model.data, x).reshape(x.shape), want)


def _assert_same_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for layer, ws in want.items():
        assert got[layer].keys() == ws.keys(), layer
        for w, arr in ws.items():
            assert np.array_equal(got[layer][w], arr), f"{layer}.{w}"


def _check_keras_file(run: Path, model) -> None:
    """model.keras, read by Keras itself (architecture and all, in safe mode: a lambda would be refused)
    after importing dlc's custom objects, is the trained model: the same layers and weights."""
    import keras

    import dlc.backends.keras.library  # noqa: F401 (registers dlc's layers and activations with Keras)

    trained = model.session.model
    loaded = keras.saving.load_model(run / "model.keras")
    assert [type(v).__name__ for v in loaded.layers] == [type(v).__name__ for v in trained.layers]
    got, want = loaded.get_weights(), trained.get_weights()
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def _check_export(run: Path, out: Path, raw: np.ndarray, want: np.ndarray) -> None:
    code, stdout, stderr = run_cli("export", run, "--format", "onnx", "--output", out)
    if not HAS_ONNX:
        assert code == 1 and "pip install 'dlc[torch]'" in stderr and len(stderr.splitlines()) == 1, stderr
        return
    assert code == 0 and stderr == "", stderr
    assert stdout.strip() == str(out)
    ort = pytest.importorskip("onnxruntime")
    got = ort.InferenceSession(str(out)).run(None, {"x": raw.astype(np.float32)})[0]
    np.testing.assert_allclose(got, want, rtol=ONNX_TOL, atol=ONNX_TOL)


def test_default_cases_hold_every_kind_the_fixtures_use():
    """The default run's cases (the composites, the keras fixtures) hold every kind the fixtures hold: a
    fixture with a new kind of layer or activation needs a place in a composite."""
    every = set().union(*(kinds(load(p)) for p in FIXTURES))
    default = set().union(*(kinds(composite(n)) for n in COMPOSITES),
                          *(kinds(load(FIXTURE_DIR / f"{s}.dlspec")) for s in KERAS_DEFAULT))
    assert every - default == set()
    assert {"LeakyReluActivation", "EluActivation", "Maxout", "Bidirectional", "Residual"} <= every


@pytest.mark.parametrize("path", EQUIVALENCE_SPECS, ids=lambda p: p.stem)
def test_ir_json_round_trips(path):
    """ir.json (what a run is reloaded from) reads back to the same IR, for every fixture and example."""
    from dlc.compiler.spec import Spec

    spec = load(path)
    assert Spec.model_validate_json(spec.model_dump_json()).model_dump() == spec.model_dump()


def test_torch_weights_load_with_weights_only(tmp_path, monkeypatch):
    """model.pt is read with weights_only=True (tensors, never pickled code), and model.json says so."""
    import torch

    model = dlc.Model(load(FIXTURE_DIR / "dense.dlspec"), backend="torch")
    run = model.save(tmp_path / "run")
    assert "weights_only=True" in json.loads((run / "model.json").read_text())["load"]
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_run(run)
    assert seen == [True]


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_model_file_of_another_model_is_one_line(backend, tmp_path):
    """A run whose model file holds another model's weights (copied over): one error line, exit 1."""
    import shutil

    runs = [dlc.Model(load(FIXTURE_DIR / f"{name}.dlspec"), backend=backend).save(tmp_path / name)
            for name in ("act_elu", "act_relu")]
    name = "model.keras" if backend == "keras" else "model.pt"
    shutil.copy(runs[1] / name, runs[0] / name)
    code, stdout, stderr = run_cli("evaluate", runs[0])
    assert code == 1 and stdout == ""
    assert stderr.startswith(f"dlc: error: cannot load the model in '{runs[0]}'")
    assert len(stderr.splitlines()) == 1
    assert "Traceback" not in stderr


def _two_runs(tmp_path: Path, backend: str) -> tuple[Path, Path]:
    """Two saved runs of one architecture (act_relu), with different initial weights (seeds 44 and 45)."""
    spec = load(FIXTURE_DIR / "act_relu.dlspec")
    other = spec.model_copy(update={"seed": spec.seed + 1})
    return (dlc.Model(spec, backend=backend).save(tmp_path / "a"),
            dlc.Model(other, backend=backend).save(tmp_path / "b"))


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_model_file_or_ir_json_of_a_run_of_the_same_shapes_is_refused(backend, tmp_path):
    """The model file and ir.json of another run of the same shapes would load without error and give that
    run's numbers: model.json records their SHA-256 when the run saves its model, and loading refuses a file
    that differs (one line, exit 1), for evaluate, predict and export alike."""
    import shutil

    a, b = _two_runs(tmp_path, backend)
    name = "model.keras" if backend == "keras" else "model.pt"
    recorded = json.loads((a / "model.json").read_text())["sha256"]
    assert set(recorded) == {name, "ir.json"}
    assert recorded != json.loads((b / "model.json").read_text())["sha256"]
    assert run_cli("evaluate", a)[0] == 0
    for swapped in (name, "ir.json"):
        copy = Path(shutil.copytree(a, tmp_path / f"swap-{swapped}"))
        shutil.copy(b / swapped, copy / swapped)
        want = (f"dlc: error: '{copy}': {swapped} is not the file this run saved (its digest differs from "
                "the one recorded then): damaged, or copied from another run?\n")
        assert run_cli("evaluate", copy) == (1, "", want)
        x = copy / "x.csv"
        x.write_text(",".join(["1"] * 13) + "\n")
        assert run_cli("predict", copy, "--input", x) == (1, "", want)


def test_a_run_saved_before_digests_were_recorded_still_loads(tmp_path):
    """A run from before model.json had `sha256` is loaded as it was (nothing to compare with)."""
    a, _ = _two_runs(tmp_path, "torch")
    meta = json.loads((a / "model.json").read_text())
    del meta["sha256"]
    (a / "model.json").write_text(json.dumps(meta))
    assert run_cli("evaluate", a)[0] == 0


@pytest.mark.parametrize("into", ["torch", "keras"])
def test_the_other_backends_model_file_is_named(tmp_path, into):
    """A Keras .keras archive copied over a torch run's model.pt (or model.pt over a keras run's model.keras):
    said in those words, not as the framework's archive internals."""
    import shutil

    runs = {backend: _two_runs(tmp_path / backend, backend)[0] for backend in ("keras", "torch")}
    names = {"keras": "model.keras", "torch": "model.pt"}
    source = "keras" if into == "torch" else "torch"
    shutil.copy(runs[source] / names[source], runs[into] / names[into])
    rc, out, err = run_cli("evaluate", runs[into])
    what = ("model.pt is not a PyTorch model file (a Keras .keras archive?)" if into == "torch" else
            "model.keras is not a Keras model file (a PyTorch model.pt?)")
    assert (rc, out, err) == (1, "", f"dlc: error: cannot load the model in '{runs[into]}': {what}\n")
