"""`dlc doctor` on the textbook situations of a practitioner's sweep, each a defect it had:

- a learning rate far too low (SGD at 1e-5): the update ratios (1.1e-4) sat just above lr_too_low's 1e-4, so
  the report called it a plateau whose --fix added a plateau schedule (lowering the rate further) and an
  underfitting whose fix was a bigger model; now the loss that fell steadily but barely moved is lr_too_low;
- kernel_init=zeros (or constant): dead_relu's fix (leaky_relu) and underfitting's (a wider layer) changed
  nothing, the units stay identical; now both name the symmetric initialization and --fix initializes at
  random;
- Dropout(0.9) or l2(0.1): underfitting's fix doubled the epochs or the widest layer; now it weakens them;
- batch_size 2048 on 1,077 samples (one step an epoch): underfitting's fix doubled the epochs (30 steps); now
  it cuts the batch size;
- overfitting ranked (and fixed, with more dropout) before the underfitting found with it: bias first now;
- a training-loss spike the run recovered from (a cv fold) was a critical divergence that hid the rest;
- a plateau at a rate a schedule had already cut 100x got a fix that cut it sooner;
- a cv folder started from a doctor.dlspec had "no copy of its spec";
- saturation's fix of a repeated statement named only its first layer.

A few tiny real runs (torch, CPU, each well under a second), trained once per module; the rest on synthetic
run folders (history.json, evidence.json as dlc.runtime.evidence writes them).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from dlc import api
from dlc.runtime.doctor import LiveDoctor, diagnose, rules, write_fix

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec_text(name: str, layers: str, *, optimizer: str = "Adam(lr=0.001)", epochs: int = 10,
              batch: int = 32, schedule: str = "", split: str = "holdout(val=0.2, test=0.2, stratify=true)",
              normalize: str = "standard") -> str:
    sched = f"  schedule: {schedule}\n" if schedule else ""
    return (f"model {name} {{\n  seed: 1\n  data {{\n    source: digits\n    normalize: {normalize}\n"
            f"    split: {split}\n  }}\n  input: (64)\n  layers {{\n    {layers}\n  }}\n"
            f"  loss: sparse_categorical_crossentropy\n  metrics: [accuracy]\n"
            f"  optimizer: {optimizer}\n{sched}"
            f"  train {{\n    epochs: {epochs}\n    batch_size: {batch}\n  }}\n}}\n")


OUT = "Dense(10, activation=softmax)"
REAL = {
    "lr_low": spec_text("lr_low", f"Dense(64, activation=relu, kernel_init=he_normal)\n    {OUT}",
                        optimizer="SGD(lr=1e-5)", epochs=6),
    "zero_init": spec_text("zero_init", "Dense(64, activation=relu, kernel_init=zeros)\n    "
                           f"Dense(64, activation=relu, kernel_init=zeros)\n    {OUT}", epochs=4),
}

_runs: dict[str, Path] = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("doctor_sweep")


def trained(root: Path, name: str, source: str | None = None, epochs: int | None = None) -> Path:
    """The run folder of a spec (REAL[name], or the text `source`), trained once per module."""
    if name not in _runs:
        path = root / "specs" / f"{name}.dlspec"
        path.parent.mkdir(exist_ok=True)
        path.write_text(source if source is not None else REAL[name])
        out = root / name
        with contextlib.suppress(api.RunFailed):
            api.run(api.trainable(api.checked(path), epochs=epochs), "torch", device="cpu", out=out)
        _runs[name] = out
    return _runs[name]


def ids(report) -> list[str]:
    return [d.id for d in report.diagnoses]


def checked_fix(report) -> str:
    fixed = write_fix(report)
    assert fixed is not None
    assert run_cli("check", fixed.path, "--quiet")[0] == 0, fixed.path.read_text()
    return fixed.path.read_text()


def train_accuracy(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["train"]["accuracy"]


# ----------------------------------------------------------------------------------------------- real runs


def test_a_rate_far_too_low_is_lr_too_low_not_a_plateau_to_decay(root):
    report = diagnose(trained(root, "lr_low"))
    assert ids(report) == ["lr_too_low", "underfitting", "plateau"]
    low, under, flat = report.diagnoses
    assert low.facts["stuck"] and low.facts["factor"] == 10
    # (the update ratios are above lr_too_low's first test: the second one fired, a loss that barely moved)
    assert low.facts["max_update_ratio"] >= rules.LR_LOW_RATIO
    assert low.facts["loss_fraction"] > rules.LR_LOW_STUCK and "barely moved" in low.evidence
    assert "Decaying it now" in low.remedy
    # the consequences have no change of their own: neither a decay nor a bigger model
    assert under.spec_change is None and flat.spec_change is None
    assert flat.facts["from_start"] and "flat from the start" in flat.evidence
    assert "optimizer: SGD(lr=0.0001)" in checked_fix(report)


def test_the_live_doctor_warns_of_the_rate_too_low(root):
    run = trained(root, "lr_low")
    live = LiveDoctor(api.checked(run / "lr_low.dlspec").spec, run)
    lines = [line for row in json.loads((run / "history.json").read_text()) for line in live.epoch(row)]
    assert any("learning rate too low" in line for line in lines), lines


def test_a_zero_kernel_is_named_and_fixed_by_a_random_init(root):
    run = trained(root, "zero_init")
    report = diagnose(run)
    dead = report.diagnoses[0]
    assert dead.id == "dead_relu" and dead.facts["symmetric"] == ["dense_0", "dense_1"]
    assert "kernel_init=zeros" in dead.evidence and "symmetry" in dead.evidence
    text = checked_fix(report)
    assert text.count("kernel_init=he_normal") == 2 and "leaky_relu" not in text
    # the fix cures it (leaky_relu left it at chance: 0.10)
    fixed = trained(root, "zero_init_fixed", text)
    assert train_accuracy(run) < 0.2 < 0.9 < train_accuracy(fixed)


# ------------------------------------------------------------------------------------- synthetic run folders


def evidence(n: int, steps: int = 10, ratio: float = 1e-2, first_loss: float = 2.3,
             layers: tuple[str, ...] = ("dense_0", "dense_1")) -> dict:
    """evidence.json of a healthy-looking run: `steps` steps an epoch, every update ratio `ratio`."""
    out = []
    for e in range(1, n + 1):
        stats = {name: {"grad_norm": 0.1, "weight_norm": 5.0, "update_ratio": ratio, "act_mean": 0.2,
                        "act_std": 0.5, "dead_fraction": 0.0 if i < len(layers) - 1 else None,
                        "saturated_fraction": None} for i, name in enumerate(layers)}
        out.append({"epoch": e, "first_step": (e - 1) * steps + 1, "last_step": e * steps, "lr": 0.1,
                    "layers": stats})
    info = [{"name": name, "kind": "Dense", "activation": "relu" if i < len(layers) - 1 else "softmax",
             "family": "relu" if i < len(layers) - 1 else None} for i, name in enumerate(layers)]
    return {"version": 1, "probe_samples": 256, "definitions": {}, "layers": info, "epochs": out,
            "step_losses": [first_loss] + [first_loss * 0.99] * (n * steps - 1)}


def rows(loss, val_loss=None, acc=None, val_acc=None, lr=0.001) -> list[dict]:
    out = []
    for i, v in enumerate(loss):
        r = {"epoch": i + 1, "loss": v}
        if acc is not None:
            r["accuracy"] = acc[i]
        if val_loss is not None:
            r["val_loss"] = val_loss[i]
        if val_acc is not None:
            r["val_accuracy"] = val_acc[i]
        r["lr"] = lr[i] if isinstance(lr, list) else lr
        out.append(r)
    return out


def write_run(folder: Path, history: list[dict], source: str, ev: dict | None = None,
              metrics: dict | None = None, name: str = "doc.dlspec") -> Path:
    """A finished `dlc run` folder (1,797 digits read)."""
    folder.mkdir(parents=True)
    (folder / name).write_text(source)
    (folder / "ir.json").write_text(api.checked(folder / name).spec.model_dump_json())
    (folder / "run.json").write_text(json.dumps({
        "spec": str(folder / name), "spec_dir": str(folder), "backend": "torch",
        "data_read": {"file": "digits", "rows": 1797, "header": None}, "finished": "2026-12-01T08:00:00",
        "failed": None}))
    (folder / "history.json").write_text(json.dumps(history))
    if ev is not None:
        (folder / "evidence.json").write_text(json.dumps(ev))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def underfit_rows(n: int = 10) -> list[dict]:
    loss = [2.0 - 0.1 * i for i in range(n)]
    return rows(loss, [v + 0.01 for v in loss], [0.3 + 0.01 * i for i in range(n)],
                [0.3 + 0.01 * i for i in range(n)])


@pytest.mark.parametrize(("layers", "old", "new"), [
    ("Dense(64, activation=relu)\n    Dropout(0.9)\n    " + OUT, "Dropout(0.9)", "Dropout(0.3)"),
    ("Dense(64, activation=relu, kernel_reg=l2(1e-1))\n    " + OUT, "l2(1e-1)", "l2(0.001)"),
    ("Dense(64, activation=relu, kernel_reg=l1_l2(l1=0.05, l2=1e-5))\n    " + OUT, "l1=0.05", "l1=0.001"),
])
def test_underfitting_with_strong_regularization_weakens_it(tmp_path, layers, old, new):
    run = write_run(tmp_path / "run", underfit_rows(), spec_text("reg", layers), evidence(10))
    report = diagnose(run)
    d = report.diagnoses[0]
    assert d.id == "underfitting" and d.facts["regularized"], ids(report)
    assert "strong regularization" in d.evidence and d.remedy.startswith("Reduce the bias: weaker regul")
    text = checked_fix(report)
    assert old not in text and new in text and "epochs: 10" in text  # (not the epochs doubled)


def test_a_dropout_in_the_guides_range_is_not_strong(tmp_path):
    layers = "Dense(64, activation=relu, kernel_reg=l2(1e-4))\n    Dropout(0.5)\n    " + OUT
    report = diagnose(write_run(tmp_path / "run", underfit_rows(), spec_text("reg", layers), evidence(10)))
    assert "regularized" not in report.diagnoses[0].facts


def test_underfitting_with_one_step_an_epoch_cuts_the_batch_size(tmp_path):
    src = spec_text("big", f"Dense(64, activation=relu)\n    {OUT}", batch=2048)
    report = diagnose(write_run(tmp_path / "run", underfit_rows(), src, evidence(10, steps=1)))
    d = report.diagnoses[0]
    assert d.id == "underfitting" and d.facts["few_steps"] == {"per_epoch": 1, "batch_size": 2048,
                                                               "samples": 1078}
    assert "only 1 optimizer step an epoch at batch_size 2048, 10 in all" in d.evidence
    # 1,078 training samples (60% of 1,797): 64 is the largest power of two with 10 or more steps
    assert d.spec_change["summary"] == "train: batch_size 2048 -> 64 (17 steps an epoch instead of 1)"
    assert "batch_size: 64" in checked_fix(report)


def test_enough_steps_an_epoch_is_not_few(tmp_path):
    src = spec_text("ok", f"Dense(64, activation=relu)\n    {OUT}", batch=256)
    report = diagnose(write_run(tmp_path / "run", underfit_rows(), src, evidence(10, steps=5)))
    assert "few_steps" not in report.diagnoses[0].facts


def test_a_constant_kernel_is_named_in_underfitting_and_fixed_first(tmp_path):
    src = spec_text("const", "Dense(64, activation=tanh, kernel_init=constant(0.1))\n    Dense(32, "
                    f"activation=relu, kernel_init=ones)\n    {OUT}")
    report = diagnose(write_run(tmp_path / "run", underfit_rows(), src,
                                evidence(10, layers=("dense_0", "dense_1", "dense_2"))))
    d = report.diagnoses[0]
    assert d.id == "underfitting" and d.facts["symmetric"] == ["dense_0", "dense_1"]
    assert "the kernels of dense_0 (kernel_init=constant), dense_1 (kernel_init=ones) start constant" in \
        d.evidence
    text = checked_fix(report)
    assert "Dense(64, activation=tanh, kernel_init=glorot_uniform)" in text
    assert "Dense(32, activation=relu, kernel_init=he_normal)" in text


def test_overfitting_found_with_underfitting_comes_after_it(tmp_path):
    loss = [2.0 - 0.1 * i for i in range(10)]
    val = [1.5, 1.4, 1.3, 1.35, 1.4, 1.45, 1.5, 1.55, 1.6, 1.65]
    src = spec_text("both", f"Dense(64, activation=relu)\n    {OUT}")
    metrics = {"train": {"loss": 1.0, "accuracy": 0.62}, "val": {"loss": 1.65, "accuracy": 0.38}}
    report = diagnose(write_run(tmp_path / "run", rows(loss, val, [0.5] * 10, [0.4] * 10), src, evidence(10),
                                metrics))
    assert ids(report) == ["underfitting", "overfitting"]
    assert report.diagnoses[0].severity == "high" and report.diagnoses[1].severity == "high"
    assert report.diagnoses[1].facts["bias_first"]
    assert "reduce the bias first" in report.diagnoses[1].evidence
    assert write_fix(report).diagnosis.id == "underfitting"


def test_a_loss_spike_the_run_recovered_from_is_no_divergence(tmp_path):
    # (a cv fold of a 512-512 net on wine: epoch 1 already fit, a noisy epoch 3, then down to 0)
    loss = [0.18, 0.45, 0.75, 0.025, 0.0005, 0.0001, 0.0001, 0.0001]
    src = spec_text("spike", f"Dense(64, activation=relu)\n    {OUT}")
    history = rows(loss, [0.8, 0.26, 0.34, 0.08, 0.04, 0.03, 0.03, 0.03], [0.9, 0.97, 0.96] + [1.0] * 5,
                   [0.97] * 8)
    report = diagnose(write_run(tmp_path / "run", history, src, evidence(8, first_loss=1.1)))
    assert "divergence" not in ids(report)
    # while it trains, the spike is news (nothing says yet that it will come back)
    live = LiveDoctor(api.checked(tmp_path / "run" / "doc.dlspec").spec, tmp_path / "run")
    lines = [line for r in history[:3] for line in live.epoch(r)]
    assert any("divergence" in line for line in lines), lines
    # a loss that stays up is one
    up = rows(loss[:3] + [0.8] * 5)
    report = diagnose(write_run(tmp_path / "up", up, src, evidence(8, first_loss=1.1)))
    assert ids(report)[0] == "divergence"


def test_a_loss_that_blew_up_and_came_down_is_no_rate_too_low_live(tmp_path):
    """lr_too_low's "barely moved" test compared a loss that had exploded (1e8) with the first step's and
    warned "learning rate too low" after the divergence warning."""
    ev = evidence(8, ratio=1e-2)
    ev["step_losses"][5] = 5e8
    history = rows([1e8, 9e7, 8e7, 7.9e7, 7.8e7, 7.7e7, 7.6e7, 7.5e7], acc=[0.4] * 8)
    run = write_run(tmp_path / "run", history, spec_text("d", f"Dense(64, activation=relu)\n    {OUT}"), ev)
    live = LiveDoctor(api.checked(run / "doc.dlspec").spec, run)
    lines = [line for r in history for line in live.epoch(r)]
    assert not any("too low" in line for line in lines), lines
    assert "lr_too_low" not in ids(diagnose(run))


def test_a_warm_up_is_no_rate_too_low(tmp_path):
    history = rows([2.30, 2.29, 2.28, 2.27, 2.26], acc=[0.1] * 5, lr=[1e-4, 2e-4, 3e-4, 4e-4, 5e-4])
    run = write_run(tmp_path / "run", history, spec_text("w", f"Dense(64, activation=relu)\n    {OUT}"),
                    evidence(5))
    assert "lr_too_low" not in ids(diagnose(run))
    # the same at a constant rate is one
    run = write_run(tmp_path / "flat", rows([2.30, 2.29, 2.28, 2.27, 2.26], acc=[0.1] * 5),
                    spec_text("w", f"Dense(64, activation=relu)\n    {OUT}"), evidence(5))
    assert ids(diagnose(run))[0] == "lr_too_low"


def test_a_plateau_at_a_rate_decayed_already_is_not_decayed_more(tmp_path):
    loss = [1.0, 0.8, 0.7, 0.65, 0.64, 0.639, 0.638, 0.637, 0.636, 0.635]
    lr = [0.1, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6, 1e-6, 1e-6, 1e-6]
    lr[4:] = [1e-6] * 6
    src = spec_text("p", f"Dense(64, activation=relu)\n    {OUT}", optimizer="SGD(lr=0.1)",
                    schedule="plateau(monitor=val_loss, factor=0.1, patience=0, min_lr=1e-6)")
    report = diagnose(write_run(tmp_path / "run", rows(loss, acc=[0.8] * 10, lr=lr), src, evidence(10)))
    d = next(d for d in report.diagnoses if d.id == "plateau")
    assert d.facts["decayed_from"] == 0.1 and "decayed from 0.1 at epoch 1" in d.evidence
    assert d.remedy.startswith("The learning rate was decayed already") and d.spec_change is None


def test_a_cv_folder_started_from_a_doctor_dlspec_has_its_spec(tmp_path):
    run = tmp_path / "cv"
    src = spec_text("cv", f"Dense(64, activation=relu)\n    {OUT}", split="kfold(k=2)")
    history = underfit_rows()
    for i in (1, 2):
        (run / f"fold_{i}").mkdir(parents=True)
        (run / f"fold_{i}" / "history.json").write_text(json.dumps(history))
        (run / f"fold_{i}" / "evidence.json").write_text(json.dumps(evidence(10)))
    (run / "doctor.dlspec").write_text(src)
    (run / "ir.json").write_text(api.checked(run / "doctor.dlspec").spec.model_dump_json())
    report = diagnose(run)
    assert not any("no copy of its spec" in n for n in report.notes), report.notes
    assert report.spec_file == run / "doctor.dlspec"
    fixed = write_fix(report)
    assert fixed is not None and fixed.path.name == "doctor.fix.dlspec"
    # and the older of the two is the run's copy, the next time
    assert diagnose(run).spec_file == run / "doctor.dlspec"


def test_saturation_fix_of_a_repeated_statement_names_every_layer(tmp_path):
    src = spec_text("s", "Dense(64, activation=tanh, kernel_init=random_normal(stddev=1.0)) * 3\n    " + OUT)
    layers = ("dense_0", "dense_1", "dense_2", "dense_3")
    ev = evidence(6, layers=layers)
    for e in ev["epochs"]:
        for name in layers[:-1]:
            e["layers"][name]["saturated_fraction"] = 0.7
    for x in ev["layers"][:-1]:
        x.update(activation="tanh", family="tanh")
    loss = [2.0 * 0.6 ** i for i in range(6)]
    report = diagnose(write_run(tmp_path / "run", rows(loss, [v + 0.05 for v in loss], [0.995] * 6,
                                                       [0.98] * 6), src, ev))
    d = next(d for d in report.diagnoses if d.id == "saturation")
    assert d.spec_change["summary"].startswith("kernel_init=glorot_uniform in dense_0, dense_1, dense_2 ")


def test_a_val_loss_rise_without_an_accuracy_gap_is_low(tmp_path):
    """specs/wine: val_loss 0.074 -> 0.088 on 36 samples at 100% train and validation accuracy was a medium
    overfitting; the rise is in the confidence, not in the errors: low. With a gap it stays medium."""
    loss = [0.5, 0.3, 0.2, 0.15, 0.12, 0.1, 0.09, 0.08, 0.07, 0.06]
    val = [0.5, 0.3, 0.2, 0.1, 0.074, 0.078, 0.08, 0.082, 0.085, 0.088]
    src = spec_text("w", f"Dense(64, activation=relu)\n    {OUT}")
    history = rows(loss, val, [1.0] * 10, [1.0] * 10)
    same = {"train": {"loss": 0.05, "accuracy": 1.0}, "val": {"loss": 0.088, "accuracy": 1.0}}
    d = diagnose(write_run(tmp_path / "same", history, src, evidence(10), same)).diagnoses[0]
    assert (d.id, d.severity) == ("overfitting", "low") and d.facts["no_accuracy_gap"]
    assert "the rise is in the confidence, not yet in the errors" in d.evidence
    gap = {"train": {"loss": 0.05, "accuracy": 1.0}, "val": {"loss": 0.088, "accuracy": 0.9}}
    d = diagnose(write_run(tmp_path / "gap", history, src, evidence(10), gap)).diagnoses[0]
    assert (d.id, d.severity) == ("overfitting", "medium") and "no_accuracy_gap" not in d.facts


def test_a_divergence_began_where_its_last_climb_began(tmp_path):
    """SGD at lr 1.5: a spike at step 2 (the run got over it, trained to 96%), the blow-up at epoch 13; the
    report said it "began at epoch 1, step 2"."""
    steps = [2.3, 6.0] + [1.0] * 38 + [0.5] * 8 + [5.0, 9.0, 40.0, None, None]
    ev = evidence(5, steps=10)
    ev["step_losses"] = steps
    src = spec_text("o", f"Dense(64, activation=relu)\n    {OUT}", optimizer="SGD(lr=1.5)")
    history = rows([1.2, 0.9, 0.8, 0.5], acc=[0.7, 0.8, 0.85, 0.9])
    (tmp_path / "run").mkdir()
    run = write_run(tmp_path / "run" / "r", history, src, ev)
    d = diagnose(run).diagnoses[0]
    assert d.id == "divergence" and (d.facts["began_epoch"], d.facts["began_step"]) == (5, 9), d.evidence
    assert "it began at epoch 5, step 9, where the step loss (5) passed 2x the first step's (2.3) to stay " \
        "above it" in d.evidence
