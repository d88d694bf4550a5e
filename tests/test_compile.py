"""`dlc run --compile` (torch): the step's forward pass, loss and backward compiled by torch.compile train to
the eager run's numbers within rounding (float64: relative 1e-12 per epoch, measured 4e-16), a killed compiled
run resumes compiled (run.json's `compile`), and the backends and options that cannot take it say so before
any work (exit 2). The first compilation takes about a minute on 2 cores (then torch's cache)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, kill_after_epochs, run_cli

SPEC = """
model compiled {
  seed: 7
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, stratify=true)
  }
  input: (64)
  layers {
    Dense(32, activation=relu, kernel_reg=l2(1e-3), activity_reg=l1(1e-5), kernel_constraint=max_norm(2))
    BatchNorm()
    Dropout(0.2)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.003)
  train {
    epochs: 40
    batch_size: 32
  }
}
"""


def _dlc(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlc", "run", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _history(run) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def test_a_compiled_run_trains_to_the_eager_numbers_and_resumes_compiled(tmp_path):
    spec = tmp_path / "compiled.dlspec"
    spec.write_text(SPEC)
    eager, cut = tmp_path / "eager", tmp_path / "cut"
    ref = _dlc(spec, "--out", eager, "--quiet", "--dtype", "float64")
    assert ref.wait(timeout=600) == 0, ref.stderr.read()
    victim = _dlc(spec, "--compile", "--out", cut, "--quiet", "--dtype", "float64")
    kill_after_epochs(victim, cut, 2, timeout=400)
    assert json.loads((cut / "run.json").read_text())["compile"] is True
    assert len(_history(cut)) < 40

    resumed = subprocess.run([sys.executable, "-m", "dlc", "run", "--resume", str(cut)], capture_output=True,
                             text=True, check=False, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "torch.compile" in resumed.stderr  # the header names how it trains
    a, b = _history(cut), _history(eager)
    assert len(a) == len(b) == 40
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        x, y = np.array([r[key] for r in a]), np.array([r[key] for r in b])
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, err_msg=key)
    from dlc.runtime.serve import load_run

    wa, wb = load_run(cut)[1].get_weights(), load_run(eager)[1].get_weights()
    for lname in wb:
        for wname in wb[lname]:
            np.testing.assert_allclose(wa[lname][wname], wb[lname][wname], rtol=1e-10, atol=1e-12)


def test_compile_where_it_cannot_be_used_is_a_usage_error(tmp_path):
    spec = tmp_path / "compiled.dlspec"
    spec.write_text(SPEC)
    rc, _, err = run_cli("run", spec, "--backend", "keras", "--compile", "--out", tmp_path / "k")
    assert rc == 2 and "torch.compile, for --backend torch" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "k").exists()
    rc, _, err = run_cli("cv", spec, "--backend", "keras", "--compile", "--out", tmp_path / "kcv")
    assert rc == 2 and "--backend torch" in err and not (tmp_path / "kcv").exists()
    rc, _, err = run_cli("run", "--resume", tmp_path / "k", "--compile")
    assert rc == 2 and "--compile cannot be given with it" in err


def test_compile_with_nproc_is_refused_not_ignored(tmp_path):
    """The data-parallel step is not compiled: --compile with --nproc is a usage error, not silently eager."""
    spec = tmp_path / "compiled.dlspec"
    spec.write_text(SPEC)
    rc, _, err = run_cli("run", spec, "--compile", "--nproc", "2", "--out", tmp_path / "p")
    assert rc == 2 and "--compile and --nproc cannot be used together" in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(("backend", "name"), [("torch", "torch.py"), ("keras", "keras.py"),
                                               ("torch", "numpy.py"), ("keras", "math.py")])
def test_a_script_named_as_a_module_it_imports_is_refused(tmp_path, backend, name):
    """`-o torch.py`: the script would import itself instead of PyTorch (its folder comes first in sys.path)
    and fail at its first line; refused before anything is written."""
    out = tmp_path / name
    rc, _, err = run_cli("compile", ROOT / "specs" / "iris.dlspec", "--emit", backend, "-o", out)
    stem = name.removesuffix(".py")
    assert (rc, err) == (2, f"dlc: error: --output {out}: the script imports {stem}, and saved as {name} it "
                            "would import itself instead (Python looks in the script's folder first): give "
                            f"it another name, e.g. {stem}_model.py\n")
    assert not out.exists()


def _iris_of_width(units: int):
    from dlc.compiler import compile_text

    text = (ROOT / "specs" / "iris.dlspec").read_text().replace("Dense(16,", f"Dense({units},")
    spec = compile_text(text.replace("epochs: 40", "epochs: 1")).raise_for_errors()
    return spec


def test_each_compiled_model_compiles_its_own_step():
    """Dynamo keeps 8 compiled entries per function, one per Trainer: a notebook's 9th compiled model of
    another shape ran eagerly, with only torch's "hit config.recompile_limit (8)" warning on stderr. Each
    compiled session now starts from a reset dynamo: the 10th of 10 models of other widths compiles too."""
    import warnings

    from torch._dynamo.utils import counters

    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    graphs = []
    for units in range(16, 26):
        spec = _iris_of_width(units)
        before = counters["stats"]["unique_graphs"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = session_class("torch")(spec, device="cpu", weights=initial_weights(spec), compile=True)
            train(session, spec, prepare(spec, ROOT / "specs"))
        graphs.append(counters["stats"]["unique_graphs"] - before)
    assert graphs == [1] * 10, graphs
