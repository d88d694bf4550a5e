"""The doctor on the tuning guides' examples, real runs: specs/guide/deep_sigmoid is diagnosed
vanishing_gradients with the measured first-to-last-layer gradient ratio, lr_too_high divergence,
overfit_none overfitting (and its --fix lowers the validation loss), bottleneck underfitting (its --fix, a
wider layer, makes it healthy), dead_relu dead_relu; specs/digits_mlp is healthy. The same diagnosis, with
the same numbers, on both backends.

Measured on this CPU (torch; keras gives the same numbers to 4 digits), each in-process run's seconds:
  deep_sigmoid  15 epochs  vanishing_gradients: dense_0's gradient norm 723x smaller than dense_6's at epoch
                           15 (443x at epoch 2, 748x at epoch 1): the README's report          ~3 s
  lr_too_high               divergence: nan at epoch 1, step 8; began at step 2                 ~0.2 s
  overfit_none   8 epochs  overfitting (train-validation accuracy gap 0.078 on 809 samples)    ~1.3 s
                           --fix (Dropout(0.3) after both 512s): val_loss 0.2946 -> 0.2859      ~1.3 s
                 60        (the spec's): val_loss 0.2948 -> 0.2705 (slow)                      ~10 s
  bottleneck     5 epochs  underfitting (train accuracy 0.46); --fix 2 -> 64 units: healthy   ~1.4 s
  dead_relu      3 epochs  dead_relu (95% of dense_1's units never fire)                       ~0.7 s
  digits_mlp    10 epochs  healthy                                                             ~1.6 s
The --epochs overrides keep the default suite short; each diagnosis already holds after them.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest

from dlc import api
from dlc.runtime.doctor import diagnose, write_fix

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GUIDE = ROOT / "specs" / "guide"
SPECS = {name: GUIDE / f"{name}.dlspec" for name in
         ("deep_sigmoid", "lr_too_high", "overfit_none", "bottleneck", "dead_relu")}
SPECS["digits_mlp"] = ROOT / "specs" / "digits_mlp.dlspec"
# the epochs of the default suite's runs (None: the spec's own) and the diagnosis each must get
CASES = {"deep_sigmoid": (None, "vanishing_gradients"), "lr_too_high": (None, "divergence"),
         "overfit_none": (8, "overfitting"), "bottleneck": (5, "underfitting"), "dead_relu": (3, "dead_relu"),
         "digits_mlp": (10, "healthy")}

_runs: dict[tuple, Path] = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("doctor_examples")


def trained(root: Path, name: str, backend: str = "torch", epochs: int | None = None) -> Path:
    """The run folder of SPECS[name] on `backend` (trained once per module); a run stopped by a non-finite
    loss is kept, as `dlc run` keeps it."""
    key = (name, backend, epochs)
    if key not in _runs:
        out = root / f"{name}-{backend}-{epochs}"
        spec = api.trainable(api.checked(SPECS[name]), epochs=epochs)
        with contextlib.suppress(api.RunFailed):
            api.run(spec, backend, device="cpu", out=out)
        _runs[key] = out
    return _runs[key]


def ids(report) -> list[str]:
    return [d.id for d in report.diagnoses]


def val_loss(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["val"]["loss"]


# ------------------------------------------------------------------------------------------ each example


def test_deep_sigmoid_has_vanishing_gradients(root):
    run = trained(root, "deep_sigmoid")
    report = diagnose(run)
    d = report.diagnoses[0]
    assert d.id == "vanishing_gradients" and d.severity == "high", ids(report)
    f = d.facts
    assert (f["first_layer"], f["last_layer"], f["epoch"]) == ("dense_0", "dense_6", 15)
    # measured: 723x (the guides say about 100x); every layer's norm below the next one's: the fan
    assert 300 < f["ratio"] < 3000, f["ratio"]
    norms = list(f["grad_norms"].values())
    assert norms == sorted(norms) and len(norms) == 7
    assert f"{f['ratio']:.4g}x smaller than the last layer's (dense_6)" in d.evidence
    assert "the first layer barely moves" in d.evidence  # its update ratio is below 1e-4
    # the README pastes this run's report
    shown = re.search(r"the first layer's \(dense_0\) gradient norm is [\d.]+, ([\d.]+)x smaller",
                      (ROOT / "README.md").read_text())
    assert shown and float(shown.group(1)) == pytest.approx(f["ratio"], rel=1e-2), f["ratio"]
    assert "6 hidden layers (line 16): activation sigmoid -> relu with kernel_init=he_normal" in \
        d.spec_change["summary"]
    rc, out, err = run_cli("doctor", run, "--plot")
    assert rc == 0 and "1. vanishing_gradients (high)" in out, err
    assert (run / "gradients.png").read_bytes()[:4] == b"\x89PNG"


def test_lr_too_high_diverges(root):
    report = diagnose(trained(root, "lr_too_high"))
    d = report.diagnoses[0]
    assert ids(report) == ["divergence"] and d.severity == "critical"
    assert (d.facts["epoch"], d.facts["step"], d.facts["began_epoch"], d.facts["began_step"]) == (1, 8, 1, 2)
    assert "from 5 to 0.5" in d.remedy and d.spec_change["summary"].startswith("optimizer SGD: lr 5 -> 0.5")


def test_overfit_none_overfits_and_its_fix_lowers_the_validation_loss(root):
    run = trained(root, "overfit_none", epochs=8)
    report = diagnose(run)
    d = report.diagnoses[0]
    assert ids(report) == ["overfitting"], ids(report)
    assert d.facts["gap"] > 0.05
    fixed = write_fix(report)
    assert fixed is not None and fixed.path.read_text().count("    Dropout(0.3)\n") == 2
    after = root / "overfit_none-fixed"
    api.run(api.trainable(api.checked(fixed.path), epochs=8), "torch", device="cpu", out=after)
    assert val_loss(after) < val_loss(run)  # measured: 0.2946 -> 0.2859


def test_bottleneck_underfits_and_its_fix_widens_it(root):
    run = trained(root, "bottleneck", epochs=5)
    report = diagnose(run)
    d = report.diagnoses[0]
    assert ids(report) == ["underfitting"] and d.severity == "high"
    assert d.facts["bottleneck"] == "dense_1" and "dense_1 with 2 units, is a bottleneck" in d.remedy
    fixed = write_fix(report)
    assert fixed is not None
    assert "    Dense(64)                        # the bottleneck" in fixed.path.read_text()
    after = root / "bottleneck-fixed"
    api.run(api.trainable(api.checked(fixed.path), epochs=5), "torch", device="cpu", out=after)
    assert ids(diagnose(after)) == ["healthy"] and val_loss(after) < 0.5 * val_loss(run)


def test_dead_relu(root):
    report = diagnose(trained(root, "dead_relu", epochs=3))
    d = report.diagnoses[0]
    assert d.id == "dead_relu" and d.severity == "high", ids(report)
    assert list(d.facts["layers"]) == ["dense_1"] and d.facts["layers"]["dense_1"] > 0.9
    assert "leaky_relu" in d.spec_change["summary"]


def test_digits_mlp_is_healthy(root):
    report = diagnose(trained(root, "digits_mlp", epochs=10))
    assert ids(report) == ["healthy"], [d.evidence for d in report.diagnoses]
    assert report.evidence


# ----------------------------------------------------------------------------------------- both backends


def _key_numbers(report) -> dict:
    """The numbers each diagnosis rests on (ratios, fractions, epochs and steps), by id."""
    out = {}
    for d in report.diagnoses:
        f = d.facts
        out[d.id] = {k: f[k] for k in ("ratio", "first_grad_norm", "last_grad_norm", "epoch", "step",
                                         "began_epoch", "began_step", "began_loss", "gap", "shortfall",
                                         "layers") if k in f}
    return out


def _same_numbers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for ident in a:
        for k, v in a[ident].items():
            w = b[ident][k]
            if k == "layers":  # the dead fraction of each layer: whole units of the probe, equal
                assert w == v, (ident, v, w)
            else:
                assert w == pytest.approx(v, rel=1e-3), (ident, k, v, w)


@pytest.mark.parametrize("name,epochs", [("deep_sigmoid", 2), ("lr_too_high", None), ("dead_relu", 3)])
def test_the_same_diagnosis_on_both_backends(root, name, epochs):
    """Same weights, batches and evidence probe: the same ids in the same order and the same numbers
    (measured: deep_sigmoid 443.1x at epoch 2 on both; lr_too_high nan at epoch 1, step 8 on both; dead_relu
    95.31% of dense_1 dead on both)."""
    torch_report = diagnose(trained(root, name, "torch", epochs))
    keras_report = diagnose(trained(root, name, "keras", epochs))
    assert ids(torch_report) == ids(keras_report)
    assert ids(torch_report)[0] == CASES[name][1]
    _same_numbers(_key_numbers(torch_report), _key_numbers(keras_report))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_every_example_full_on_both_backends(root, backend):
    """Every example at the epochs of the default suite on both backends, and overfit_none's --fix cure over
    its full 60 epochs (measured: val_loss 0.2948 -> 0.2705 on both backends)."""
    for name, (epochs, expected) in CASES.items():
        assert ids(diagnose(trained(root, name, backend, epochs)))[0] == expected, (name, backend)
    run = trained(root, "overfit_none", backend)
    report = diagnose(run)
    assert report.diagnoses[0].id == "overfitting"
    fixed = write_fix(report)
    assert fixed is not None
    after = root / f"overfit_none-{backend}-fixed-full"
    api.run(api.trainable(api.checked(fixed.path)), backend, device="cpu", out=after)
    assert val_loss(after) < val_loss(run)


# ------------------------------------------------------------------------------------------------ --plot


def test_plot_in_each_fold_and_a_note_without_evidence(root, tmp_path):
    from test_doctor import _cv_folder, healthy_rows, write_run

    cv = _cv_folder(tmp_path / "cv", ["healthy", "healthy"])
    rc, out, err = run_cli("doctor", cv, "--plot")
    assert rc == 0, err
    for i in (1, 2):
        assert f"wrote {cv / f'fold_{i}' / 'gradients.png'}" in out
    old = write_run(tmp_path / "old", healthy_rows(), None)
    rc, out, err = run_cli("doctor", old, "--plot", "--format", "json")
    assert rc == 0 and json.loads(out)["plots"] == [] and not (old / "gradients.png").exists()
    assert "no gradient norms to plot" in err and "no readable evidence.json" in err
    rc, out, err = run_cli("doctor", trained(root, "lr_too_high"), "--plot")  # diverged in epoch 1
    assert rc == 0 and "has no finite one" in err
