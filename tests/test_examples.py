"""The example specs in specs/: every one passes `dlc check`, and each trains on both backends to a sensible
result through the real `dlc run` code path (called in-process, so the frameworks are imported once).

The default suite trains the examples briefly (--epochs) with thresholds a short run clears, except
digits_mlp, which is trained fully and must reach 0.95 test accuracy on both backends. `pytest -m slow` trains
every example for its full epochs with tighter thresholds. Both backends start from the same weights and see
the same batches and dropout masks, so their final metrics must also agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlc.compiler import compile_file

from conftest import ROOT, run_cli

# specs/mnist/ reads MNIST from the user's own files (tests/test_mnist.py runs it on tiny generated ones)
SPECS = sorted(p for p in (ROOT / "specs").rglob("*.dlspec") if p.parent.name != "mnist")
EXAMPLE_SPECS = sorted((ROOT / "specs").glob("*.dlspec"))  # specs/tune/ holds specs for `dlc tune`
BACKENDS = ("torch", "keras")

# spec -> (epochs for the default suite (None: the spec's own), thresholds on the test metrics after those,
# thresholds after the full run); ("mae", "<", 50.0) means test mae < 50. Measured with the specs' seeds, the
# same on both backends to 4 decimals:      short run                      full run
#   digits_mlp     20 epochs                accuracy 0.967                 (the same)
#   digits_cnn      4 / 15 epochs           accuracy 0.903, f1 0.903       accuracy 0.989, f1 0.989
#   digits_lstm     6 / 15                  accuracy 0.922, f1 0.922       accuracy 0.936, f1 0.935
#   iris           15 / 40                  accuracy 0.900                 accuracy 0.967
#   wine           10 / 40                  accuracy 1.000                 accuracy 1.000
#   breast_cancer  10 / 40                  accuracy 0.965, f1 0.973       accuracy 0.974, f1 0.979
#   diabetes       20 / 60                  mae 39.3, mse 2,682            mae 40.7, mse 2,750
# The thresholds leave room for a change of seed or of split.
EXAMPLES = {
    "digits_mlp": (None, [("accuracy", ">=", 0.95)], [("accuracy", ">=", 0.95), ("recall", ">=", 0.95)]),
    "digits_cnn": (4, [("accuracy", ">=", 0.80)], [("accuracy", ">=", 0.97), ("f1", ">=", 0.97)]),
    "digits_lstm": (6, [("accuracy", ">=", 0.85)], [("accuracy", ">=", 0.92), ("f1", ">=", 0.92)]),
    "iris": (15, [("accuracy", ">=", 0.80)], [("accuracy", ">=", 0.90)]),
    "wine": (10, [("accuracy", ">=", 0.90)], [("accuracy", ">=", 0.94), ("precision", ">=", 0.94)]),
    "breast_cancer": (10, [("accuracy", ">=", 0.90), ("f1", ">=", 0.90)],
                      [("accuracy", ">=", 0.95), ("precision", ">=", 0.93), ("recall", ">=", 0.95)]),
    # predicting the mean gives mae 64 (mse 5,900); a linear model about 43
    "diabetes": (20, [("mae", "<", 50.0), ("loss", "<", 4000.0)],
                 [("mae", "<", 45.0), ("loss", "<", 3300.0)]),
}


_cache: dict[tuple[str, str, int | None], dict] = {}


def trained(name: str, backend: str, epochs: int | None, tmp_root: Path) -> dict:
    """metrics.json of `dlc run specs/<name>.dlspec --backend <backend> [--epochs N]` (each run once)."""
    key = (name, backend, epochs)
    if key not in _cache:
        out = tmp_root / f"{name}-{backend}-{epochs}"
        argv = ["run", str(ROOT / "specs" / f"{name}.dlspec"), "--backend", backend, "--out", str(out),
                "--quiet"]
        if epochs is not None:
            argv += ["--epochs", str(epochs)]
        rc, stdout, err = run_cli(*argv)
        assert rc == 0, err
        assert stdout.strip() == str(out)
        _cache[key] = json.loads((out / "metrics.json").read_text())
    return _cache[key]


def _check(metrics: dict, thresholds, what: str):
    for key, op, bound in thresholds:
        value = metrics["test"][key]
        ok = value >= bound if op == ">=" else value < bound
        assert ok, f"{what}: test {key} {value:.4f}, expected {op} {bound} (all: {metrics['test']})"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("example_runs")


def test_every_example_is_trained_here():
    assert {p.stem for p in EXAMPLE_SPECS} == set(EXAMPLES), "add thresholds for new specs to EXAMPLES"
    for path in EXAMPLE_SPECS:
        assert not compile_file(str(path)).spec.search_spaces, \
            f"{path}: a spec for `dlc tune` goes in specs/tune/"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT / "specs")))
def test_every_spec_checks(path: Path):
    result = compile_file(str(path))
    assert result.ok, result.render()
    assert not result.diagnostics.items, result.render()  # not even a warning in an example
    assert result.spec.name == path.stem  # the model is named like its file
    text = path.read_text()
    assert text.startswith(f"# {path.name} — "), "an example starts with a comment saying what it is"
    assert sum(line.strip().startswith("#") or " # " in line for line in text.splitlines()) >= 5


def test_dlc_check_cli_on_all_examples():
    rc = subprocess.run([sys.executable, "-m", "dlc", "check", "-q", *map(str, SPECS)], check=False,
                        capture_output=True, text=True, cwd=ROOT)
    assert rc.returncode == 0, rc.stderr
    assert rc.stdout.splitlines() == [f"{p}: ok" for p in SPECS]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_trains(name: str, backend: str, runs_root: Path):
    epochs, short, _ = EXAMPLES[name]
    metrics = trained(name, backend, epochs, runs_root)
    _check(metrics, short, f"{name} on {backend} ({epochs or 'all'} epochs)")
    assert set(metrics) >= {"train", "val", "test"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_backends_agree_on_examples(name: str, runs_root: Path):
    """Same weights, batches and dropout masks: the final metrics agree to float32 rounding."""
    epochs = EXAMPLES[name][0]
    t, k = (trained(name, b, epochs, runs_root) for b in BACKENDS)
    for part in ("train", "val", "test"):
        for key, v in t[part].items():
            assert k[part][key] == pytest.approx(v, rel=1e-3, abs=1e-3), (part, key)
    assert t["epochs_run"] == k["epochs_run"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_trains_fully(name: str, backend: str, runs_root: Path):
    metrics = trained(name, backend, None, runs_root)
    _check(metrics, EXAMPLES[name][2], f"{name} on {backend} (full run)")
