"""`dlc compile SPEC --emit keras|torch`: the emitted standalone script (no dlc import, valid Python) trains
the spec's model with exactly dlc's per-step losses on its backend (|Δ| = 0: the same computations in the same
order), for the specs below (run as a user runs them) and for every equivalence fixture and example spec (run
in one process per backend by tests/emit_harness.py); a missing lowering is one clear error line with exit
2."""

from __future__ import annotations

import ast
import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import EQUIVALENCE_SPECS, ROOT, run_cli

SWEEP_EPOCHS = 1

SPECS = {
    # dropout, an l2 kernel penalty, RMSprop, plateau schedule, early stopping with restore_best, recall
    "mlp": """\
model emit_mlp {
  seed: 42
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (64)
  layers {
    Dense(32, activation=relu, kernel_init=he_normal, kernel_reg=l2(1e-3))
    Dropout(0.3)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy, recall]
  optimizer: RMSprop(lr=0.001)
  schedule: plateau(factor=0.5, patience=1, min_lr=1e-5)
  train {
    epochs: 2
    batch_size: 64
    early_stopping: (monitor=val_loss, patience=1, restore_best=true)
  }
}
""",
    # Conv2D same/valid with strides, BatchNorm, MaxPool2D, Flatten, l1, SGD nesterov, step schedule, sparse
    # CE
    "cnn": """\
model emit_cnn {
  seed: 7
  data {
    source: digits
    normalize: minmax
    split: holdout(val=0.25, stratify=true)
  }
  input: (8, 8, 1)
  layers {
    Conv2D(6, 3, padding=same, activation=relu, kernel_reg=l1(1e-4))
    BatchNorm()
    MaxPool2D(2)
    Conv2D(8, 2, strides=2, activation=tanh, kernel_init=glorot_normal)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=0.05, momentum=0.9, nesterov=true)
  schedule: step(every=1, factor=0.5)
  train {
    epochs: 2
    batch_size: 32
  }
}
""",
    # binary with Adam, an explicit Activation layer, csv data
    "csv": """\
model emit_csv {
  seed: 3
  data {
    source: csv("data.csv", target="label")
    normalize: standard
    split: holdout(val=0.3, stratify=true)
  }
  input: (5)
  layers {
    Dense(8, kernel_init=random_uniform, bias_init=ones)
    Activation(sigmoid)
    Dense(1, activation=sigmoid, kernel_init=he_uniform)
  }
  loss: binary_crossentropy
  metrics: [accuracy, precision, f1]
  optimizer: Adam(lr=0.01)
  train {
    epochs: 2
    batch_size: 16
  }
}
""",
    # float64 regression: l1_l2 penalty, plain SGD, cosine schedule, early stopping on a metric, a test part
    "reg": """\
model emit_reg {
  seed: 11
  dtype: float64
  data {
    source: diabetes
    normalize: standard
    split: holdout(val=0.2, test=0.1)
  }
  input: (10)
  layers {
    Dense(16, activation=tanh, kernel_init=lecun_normal, kernel_reg=l1_l2(l1=1e-4, l2=1e-3))
    Dense(1, kernel_init=random_normal)
  }
  loss: mse
  metrics: [mae, mse]
  optimizer: SGD(lr=0.01)
  schedule: cosine(epochs=3)
  train {
    epochs: 3
    batch_size: 32
    early_stopping: (monitor=val_mae, patience=1)
  }
}
""",
    # MNIST from tiny gzipped IDX files: Flatten, a small MLP with dropout, Adam
    "mnist": """\
model emit_mnist {
  seed: 2
  data {
    source: mnist("mnist")
    normalize: minmax
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (28, 28, 1)
  layers {
    Flatten()
    Dense(16, activation=relu)
    Dropout(0.2)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.005)
  train {
    epochs: 2
    batch_size: 32
  }
}
""",
}

SPECS["kfold_aug"] = """\
model emit_kfold_aug {
  seed: 5
  data {
    source: npz("images.npz", x="images", y="labels")
    normalize: minmax
    split: kfold(k=3, stratify=true)
    augment: [flip(horizontal=true), shift(0.2), crop(8, padding=1)]
  }
  input: (8, 8, 1)
  layers {
    Conv2D(4, 3, padding=same, activation=elu)
    residual {
      Conv2D(4, 3, padding=same, activation=leaky_relu(alpha=0.1))
    }
    GlobalAvgPool2D()
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy, f1]
  optimizer: Adam(lr=0.01, clipnorm=1.0)
  schedule: warmup(epochs=1, then=exponential(rate=0.9))
  train {
    epochs: 2
    batch_size: 16
  }
}
"""

CASES = [(name, backend) for name in SPECS for backend in ("torch", "keras")]


def _write_npz(path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 60)
    images = rng.uniform(0, 1, (60, 8, 8)) + labels[:, None, None] * np.eye(8)[None]
    np.savez(path, images=images, labels=labels)


def _write_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    lines = ["a,b,c,d,e,label"] + [",".join(f"{v:.6f}" for v in row) + f",{t}"
                                   for row, t in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def _write_mnist(folder: Path) -> None:
    """The four MNIST IDX files, gzipped, with 200 + 50 random 28x28 images (a bright bar per class)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 50)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 250
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + arr.tobytes()))


def _dlc_losses(spec_path: Path, backend: str) -> list[float]:
    from dlc.compiler import compile_file
    from dlc.runtime.run import trainable

    spec = trainable(compile_file(str(spec_path)))
    return _losses(spec, spec_path.parent, backend)


def _losses(spec, base_dir: Path, backend: str, epochs: int | None = None) -> list[float]:
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import folds, prepare
    from dlc.runtime.loop import train

    parts = folds(spec, base_dir) if spec.data.split.kind == "kfold" else [prepare(spec, base_dir)]
    losses = []
    for data in parts:
        session = session_class(backend)(spec, device="cpu", weights=initial_weights(spec))
        losses += train(session, spec, data, epochs=epochs).step_losses
    return losses


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """Every case's script emitted and started at once (the scripts run in parallel while dlc trains)."""
    tmp = tmp_path_factory.mktemp("emit")
    _write_csv(tmp / "data.csv")
    _write_mnist(tmp / "mnist")
    _write_npz(tmp / "images.npz")
    procs = {}
    for name, backend in CASES:
        spec = tmp / f"{name}.dlspec"
        spec.write_text(SPECS[name])
        script = tmp / f"{name}_{backend}.py"
        rc, _, err = run_cli("compile", spec, "--emit", backend, "-o", script)
        assert rc == 0, err
        out = tmp / f"{name}_{backend}.json"
        procs[name, backend] = (script, out, subprocess.Popen(
            [sys.executable, str(script), "--losses", str(out)], cwd=tmp, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    return tmp, procs


@pytest.mark.parametrize("name,backend", CASES)
def test_emitted_script_matches_dlc(emitted, name, backend):
    tmp, procs = emitted
    script, out, proc = procs[name, backend]
    text = script.read_text()
    assert_standalone(text, script)
    mine = _dlc_losses(tmp / f"{name}.dlspec", backend)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert "epoch 1" in stdout and "val_loss" in stdout
    theirs = json.loads(out.read_text())
    assert len(theirs) == len(mine) > 0
    diff = float(np.max(np.abs(np.array(theirs, dtype=np.float64) - np.array(mine, dtype=np.float64))))
    print(f"\n{name} {backend}: {len(mine)} steps, max |Δ loss| = {diff:.3g}")
    assert diff == 0.0
    if "kfold" in name:
        _assert_cv_spread_as_dlc_cv(stdout)


def _assert_cv_spread_as_dlc_cv(stdout: str) -> None:
    """A k-fold script's `cv loss: mean ± std` is over the folds' last val_loss with dlc cv's sample
    standard deviation (ddof=1; it printed numpy's population std, √(k/(k-1)) smaller)."""
    import re

    folds = stdout.split("fold ")[1:]
    last = [float(re.findall(r"val_loss (\S+)", f)[-1]) for f in folds]
    mean, std = (float(v) for v in re.search(r"cv loss: (\S+) ± (\S+)", stdout).groups())
    assert len(last) > 1 and mean == pytest.approx(np.mean(last), rel=1e-5)
    # (the epoch lines are rounded to 6 digits: a 2% tolerance, far from the population std's √(k/(k-1)))
    assert std == pytest.approx(np.std(last, ddof=1), rel=0.02)


def assert_standalone(text: str, script: Path) -> None:
    """Valid Python that imports nothing of dlc and names no dlc module."""
    tree = ast.parse(text, str(script))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "dlc" for a in node.names), "the script imports dlc"
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "dlc", "the script imports dlc"
        assert not (isinstance(node, ast.Name) and node.id == "dlc"), "the script names dlc"


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_missing_lowering_is_one_clear_error(tmp_path, backend, monkeypatch):
    from dlc.backends.lowering import REGISTRY, load_target
    from dlc.compiler import layers as L

    load_target(f"emit_{backend}")
    monkeypatch.delitem(REGISTRY.table[f"emit_{backend}"], L.Dropout)
    spec = tmp_path / "s.dlspec"
    spec.write_text(SPECS["mlp"])
    rc, out, err = run_cli("compile", spec, "--emit", backend)
    assert rc == 2 and out == ""
    # (the spec's warnings, if any, come first; the error is the last line)
    last = err.strip().splitlines()[-1]
    assert last == (f"dlc: error: --emit {backend}: layer Dropout (line 11, column 5) is not supported "
                    f"yet on the emit_{backend} target")
    assert "Traceback" not in err


# ------------------------------------------------------------------------------- every fixture, both targets


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Every fixture and example spec emitted for both backends; the scripts of a backend trained for
    SWEEP_EPOCHS epochs in one process (started at once, running while the tests train dlc)."""
    from dlc.backends.emit.script import emit
    from dlc.compiler import compile_file

    tmp = tmp_path_factory.mktemp("sweep")
    procs = {}
    for backend in ("torch", "keras"):
        folder = tmp / backend
        folder.mkdir()
        for path in EQUIVALENCE_SPECS:
            spec = compile_file(path).raise_for_errors()
            (folder / f"{path.stem}.py").write_text(emit(spec, backend, path))
        out = tmp / f"{backend}.json"
        procs[backend] = (out, subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "emit_harness.py"), str(folder), str(SWEEP_EPOCHS),
             str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    results = {}

    def get(backend):
        if backend not in results:
            out, proc = procs[backend]
            _, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-2000:]
            results[backend] = json.loads(out.read_text())
        return results[backend]

    return get


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("path", EQUIVALENCE_SPECS, ids=lambda p: p.stem)
def test_every_fixture_emits_step_equal(sweep, path, backend):
    from dlc.compiler import compile_file

    theirs = sweep(backend)[path.stem]
    assert not isinstance(theirs, str), theirs
    spec = compile_file(path).raise_for_errors()
    mine = _losses(spec, path.parent, backend, epochs=min(SWEEP_EPOCHS, spec.train.epochs))
    assert len(theirs) == len(mine) > 0
    assert np.array_equal(np.array(theirs), np.array(mine)), float(np.max(np.abs(np.array(theirs) - mine)))


def test_emit_ir_still_works(tmp_path):
    spec = tmp_path / "s.dlspec"
    spec.write_text(SPECS["mlp"])
    rc, out, _ = run_cli("compile", spec)
    assert rc == 0 and json.loads(out)["name"] == "emit_mlp"


# ------------------------------------------------------------------------------------------- the bundler

FAKE_MODULES = {  # two dlc modules the bundler reads as it reads dlc's own (parsed, never imported)
    "dlc.fake_user": (
        "import functools\n\nfrom dlc.fake_base import Base, SCALE\n\n\n"
        "class User(Base):\n    def value(self):\n        return twice(SCALE)\n\n\n"
        "@functools.cache\ndef twice(x):\n    return 2 * x\n"),
    "dlc.fake_base": "import math\n\nSCALE = math.sqrt(4.0)\n\n\nclass Base:\n    pass\n",
}


@pytest.fixture
def fake_modules(tmp_path, monkeypatch):
    from dlc.backends.emit import bundle

    files = {}
    for name, source in FAKE_MODULES.items():
        files[name] = tmp_path / (name.split(".")[-1] + ".py")
        files[name].write_text(source)
    real = bundle.module_file
    monkeypatch.setattr(bundle, "module_file", lambda name: files[name] if name in files else real(name))
    bundle.parse_module.cache_clear()
    yield bundle
    bundle.parse_module.cache_clear()


def test_bundle_copies_definitions_dependencies_first_with_decorators(fake_modules):
    """A class whose base comes from a later module is still defined after its base, decorators come along,
    and the third-party imports the copies use are collected: the code runs on its own."""
    imports, code = fake_modules.Bundle(("dlc.fake_user", "dlc.fake_base")).add("User").render()
    assert sorted(imports) == ["import functools", "import math"]
    assert code.index("class Base") < code.index("class User(Base)")
    assert code.index("SCALE = ") < code.index("class User(Base)")
    assert "@functools.cache\ndef twice(x):" in code
    ns: dict = {}
    exec("\n".join(imports) + "\n" + code, ns)
    assert ns["User"]().value() == 4.0
    assert ns["twice"].cache_info().hits == 0  # the decorator was applied
