"""The training evidence (dlc/runtime/evidence.py, Session.probe): the same numbers on both backends in
float64, evidence.json in its exact schema after `dlc run` (none with --no-evidence), kept by a run that
diverges and continued by a resumed one, written by cv folds, and dead ReLUs seen as dead."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from dlc.compiler import compile_file, compile_text
from dlc.reference.evidence import probe_indices
from dlc.reference.weights import initial_weights
from dlc.runtime.data import prepare
from dlc.runtime.evidence import FIELDS, Recorder
from dlc.runtime.loop import History, train

from conftest import FIXTURE_DIR, ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BN_DROPOUT = """
model bn_dropout {
  seed: 5
  data {
    source: wine
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (13)
  layers {
    Dense(16, use_bias=false)
    BatchNorm()
    Activation(relu)
    Dropout(0.3)
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 2
    batch_size: 32
  }
}
"""

DEAD_RELU = """
model dead_relu {
  seed: 3
  data {
    source: wine
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (13)
  layers {
    Dense(16, activation=relu, bias_init=constant(-10))
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD(lr=0.05)
  train {
    epochs: 2
    batch_size: 32
  }
}
"""

SPECS = {
    "relu_mlp": FIXTURE_DIR / "act_relu.dlspec",
    "sigmoid_tanh": FIXTURE_DIR / "activation_layers_basic.dlspec",  # Activation(relu/sigmoid/tanh) layers
    "tanh": FIXTURE_DIR / "act_tanh.dlspec",
    "cnn_bn_residual": ROOT / "specs" / "guide" / "cnn_bn_residual.dlspec",
    "lstm": FIXTURE_DIR / "rnn_lstm.dlspec",
    "embedding": FIXTURE_DIR / "embedding.dlspec",  # (Keras' gradient of an Embedding: IndexedSlices)
    "bn_dropout": BN_DROPOUT,
}


def _spec(what, **train):
    result = compile_text(what) if isinstance(what, str) else compile_file(what)
    spec = result.raise_for_errors().model_copy(update={"dtype": "float64"})
    return spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 2, **train})})


def _evidence(spec, backend: str, base: Path, max_steps: int | None = None) -> dict:
    from dlc.backends import session_class

    session = session_class(backend)(spec, device="cpu", weights=initial_weights(spec))
    rec = Recorder(spec)
    train(session, spec, prepare(spec, base), max_steps=max_steps, evidence=rec)
    return rec.to_json()


def _rel(a: float, b: float, scale: float) -> float:
    return 0.0 if a == b else abs(a - b) / scale


# the largest relative difference of each check, for the report (printed with -s)
MEASURED: dict[str, float] = {}


@pytest.mark.parametrize("name", SPECS)
def test_both_backends_record_the_same_evidence_in_float64(name):
    """Every number within 1e-12 relative (measured: at most 1.9e-15, cnn_bn_residual). act_mean and act_std
    are compared relative to the activations' size, sqrt(mean² + std²): a mean that is 0 in exact arithmetic
    (after BatchNorm) comes out as ~1e-17, and the std of equal outputs as 0 or 1e-16; the others relative to
    their own size."""
    what = SPECS[name]
    spec = _spec(what)
    base = what.parent if isinstance(what, Path) else ROOT
    max_steps = 12 if name in ("cnn_bn_residual", "lstm") else None  # two (partial) epochs are enough
    if max_steps is not None:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})})
    k, t = _evidence(spec, "keras", base, max_steps), _evidence(spec, "torch", base, max_steps)
    assert k["layers"] == t["layers"] and k["probe_samples"] == t["probe_samples"]
    assert len(k["epochs"]) == len(t["epochs"]) >= 1
    worst = 0.0
    for ek, et in zip(k["epochs"], t["epochs"], strict=True):
        assert {key: ek[key] for key in ("epoch", "first_step", "last_step", "lr")} == \
            {key: et[key] for key in ("epoch", "first_step", "last_step", "lr")}
        for layer, vk in ek["layers"].items():
            vt = et["layers"][layer]
            for f in FIELDS:
                a, b = vk[f], vt[f]
                assert (a is None) == (b is None), (layer, f, a, b)
                if a is None:
                    continue
                rms = math.hypot(vk["act_mean"], vk["act_std"]) if f in ("act_mean", "act_std") else 0.0
                scale = max(abs(a), abs(b), rms, 1e-300)
                d = _rel(a, b, scale)
                assert d <= 1e-12, f"epoch {ek['epoch']} {layer}.{f}: keras {a!r}, torch {b!r}"
                worst = max(worst, d)
    losses = np.abs(np.array(k["step_losses"]) - np.array(t["step_losses"]))
    assert losses.max() <= 1e-10
    MEASURED[name] = worst
    print(f"{name}: max relative difference {worst:.2e}")


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_recording_changes_no_training_number(backend):
    """With BatchNorm (moving statistics) and Dropout (the mask step): the same step losses, bit for bit."""
    from dlc.backends import session_class

    spec = _spec(BN_DROPOUT)
    data = prepare(spec, ROOT)
    runs = []
    for rec in (None, Recorder(spec)):
        session = session_class(backend)(spec, device="cpu", weights=initial_weights(spec))
        runs.append((train(session, spec, data, evidence=rec).step_losses, session.get_weights()))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(runs[0][1][k][w], runs[1][1][k][w]) for k in runs[0][1] for w in runs[0][1][k])


def test_families_and_nulls():
    spec = _spec(SPECS["sigmoid_tanh"], epochs=1)
    ev = _evidence(spec, "torch", FIXTURE_DIR)
    families = {layer["name"]: layer["family"] for layer in ev["layers"]}
    layers = ev["epochs"][0]["layers"]
    for name, fam in families.items():
        v = layers[name]
        assert (v["dead_fraction"] is not None) == (fam == "relu")
        assert (v["saturated_fraction"] is not None) == (fam in ("sigmoid", "tanh"))
        has_weights = name.startswith("dense")
        assert (v["grad_norm"] is not None) == has_weights, name
        assert (v["weight_norm"] is not None) == has_weights, name
    assert sorted(f for f in families.values() if f) == ["relu", "sigmoid", "tanh"]
    assert ev["probe_samples"] == len(prepare(spec, FIXTURE_DIR).train.x)  # fewer than 512: all of them


def test_dead_relu_units_are_dead():
    spec = _spec(DEAD_RELU)
    ev = _evidence(spec, "torch", ROOT)
    for epoch in ev["epochs"]:
        hidden = epoch["layers"]["dense_0"]
        assert hidden["dead_fraction"] == 1.0
        assert hidden["grad_norm"] == 0.0 and hidden["update_ratio"] == 0.0
        assert hidden["act_mean"] == 0.0 and hidden["act_std"] == 0.0


def test_probe_set_is_seeded_and_bounded():
    a = probe_indices(7, 10_000)
    assert len(a) == 512 and len(set(a.tolist())) == 512 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, probe_indices(7, 10_000)) and not np.array_equal(a, probe_indices(8, 10_000))
    assert np.array_equal(probe_indices(7, 100), np.arange(100))


# ------------------------------------------------------------------------------------------- dlc run

LAYER_KEYS = {"name", "kind", "activation", "family"}
EPOCH_KEYS = {"epoch", "first_step", "last_step", "lr", "layers"}


def _check_schema(ev: dict, epochs: int) -> None:
    assert set(ev) == {"version", "probe_samples", "definitions", "layers", "epochs", "step_losses"}
    assert ev["version"] == 1 and isinstance(ev["probe_samples"], int)
    assert all(isinstance(v, str) for v in ev["definitions"].values())
    assert all(set(layer) == LAYER_KEYS for layer in ev["layers"])
    assert [e["epoch"] for e in ev["epochs"]] == list(range(1, epochs + 1))
    step = 1
    for e in ev["epochs"]:
        assert set(e) == EPOCH_KEYS and e["first_step"] == step
        step = e["last_step"] + 1
        assert set(e["layers"]) == {layer["name"] for layer in ev["layers"]}
        assert all(set(v) == set(FIELDS) for v in e["layers"].values())
    assert len(ev["step_losses"]) == ev["epochs"][-1]["last_step"]


def test_dlc_run_writes_evidence_and_tensorboard_tags(tmp_path):
    rc, out, err = run_cli("run", ROOT / "specs" / "iris.dlspec", "--backend", "torch", "--epochs", "3",
                           "--out", tmp_path / "r", "--quiet")
    assert rc == 0, err
    ev = json.loads((tmp_path / "r" / "evidence.json").read_text())
    _check_schema(ev, 3)
    assert ev["probe_samples"] == 90 and ev["layers"][0]["family"] == "relu"
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [e["lr"] for e in ev["epochs"]] == [r["lr"] for r in history]
    events = b"".join(p.read_bytes() for p in (tmp_path / "r").glob("events.out.tfevents.*"))
    for tag in ("evidence/dense_0/grad_norm", "evidence/dense_1/update_ratio",
                "evidence/dense_0/dead_fraction"):
        assert tag.encode() in events


def test_no_evidence_writes_none(tmp_path):
    rc, _, err = run_cli("run", ROOT / "specs" / "iris.dlspec", "--backend", "torch", "--epochs", "1",
                         "--out", tmp_path / "r", "--quiet", "--no-evidence")
    assert rc == 0, err
    assert (tmp_path / "r" / "history.json").is_file()
    assert not (tmp_path / "r" / "evidence.json").exists()
    assert b"evidence/" not in b"".join(p.read_bytes() for p in (tmp_path / "r").glob("events.*"))


def test_a_diverged_run_keeps_its_evidence(tmp_path):
    """lr_too_high fails with a non-finite loss in its first epoch: evidence.json has that epoch, its step
    losses up to the first non-finite one (null) and nulls where the probe saw non-finite numbers."""
    rc, _, err = run_cli("run", ROOT / "specs" / "guide" / "lr_too_high.dlspec", "--backend", "torch",
                         "--out", tmp_path / "r", "--quiet")
    assert rc == 1 and "loss became" in err
    ev = json.loads((tmp_path / "r" / "evidence.json").read_text())
    _check_schema(ev, len(ev["epochs"]))
    assert ev["epochs"], "the failing epoch is recorded"
    losses = ev["step_losses"]
    assert losses[0] is not None and math.isfinite(losses[0]) and None in losses


def test_resumed_evidence_keeps_the_checkpointed_epochs(tmp_path):
    """A resumed run continues evidence.json from its checkpoint: later epochs of the file are dropped and
    the steps keep counting."""
    spec = _spec(ROOT / "specs" / "iris.dlspec", epochs=3)
    from dlc.backends import session_class

    data = prepare(spec, ROOT / "specs")
    session = session_class("torch")(spec, device="cpu", weights=initial_weights(spec))
    rec = Recorder(spec, tmp_path)
    train(session, spec, data, evidence=rec)
    full = json.loads((tmp_path / "evidence.json").read_text())
    resumed = Recorder(spec, tmp_path)
    resumed.begin(session, data, 2, History())
    assert resumed.epochs == full["epochs"][:2]
    assert resumed.step_losses == full["step_losses"][:full["epochs"][1]["last_step"]]


KFOLD = """
model iris_cv {
  seed: 7
  data {
    source: iris
    normalize: standard
    split: kfold(k=2)
  }
  input: (4)
  layers {
    Dense(8, activation=relu)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 1
    batch_size: 16
  }
}
"""


def test_cv_folds_write_evidence(tmp_path):
    from dlc.runtime.cv import run_cv

    run_cv(compile_text(KFOLD).raise_for_errors(), ROOT, "torch", "cpu", out=tmp_path)
    for fold in ("fold_1", "fold_2"):
        _check_schema(json.loads((tmp_path / fold / "evidence.json").read_text()), 1)
        assert (tmp_path / fold / "history.json").is_file()


def test_keras_probe_traced_for_a_long_run_gives_the_eager_bits():
    """Keras' probe is a traced tf.function for a run of TRACED_FROM_EPOCHS epochs or more (2 ms an epoch
    against 10 eagerly; a shorter run does not pay the ~0.45 s trace back), eager below: the same numbers,
    bit for bit."""
    import tensorflow as tf

    from dlc.backends import session_class
    from dlc.backends.keras.probe import TRACED_FROM_EPOCHS

    spec = _spec(SPECS["cnn_bn_residual"])
    data = prepare(spec, SPECS["cnn_bn_residual"].parent)
    x, y = data.train.x[:64], data.train.y[:64]
    seen = []
    for epochs in (TRACED_FROM_EPOCHS - 1, TRACED_FROM_EPOCHS):
        run = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
        session = session_class("keras")(run, device="cpu", weights=initial_weights(run))
        seen += [session.probe(x, y), session.probe(x, y)]
        traced = isinstance(session._prober.numbers, tf.types.experimental.PolymorphicFunction)
        assert traced == (epochs >= TRACED_FROM_EPOCHS)
    assert all(s == seen[0] for s in seen), "a traced probe gave other numbers than the eager one"
