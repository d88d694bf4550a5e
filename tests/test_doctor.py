"""`dlc doctor`: each diagnosis id on a run folder built to show it (synthetic history.json and evidence.json,
the schema dlc.runtime.evidence writes), the ranking, the remedy as a minimal edit of the spec's text that
compiles (`--fix`), cv and tune folders, old runs without evidence, the live warnings, the command line's
errors; and a few tiny real runs: a diverging one that --fix cures, a healthy one, the live warning in `dlc
run`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from dlc import api
from dlc.runtime.doctor import LiveDoctor, diagnose, rules, write_fix

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
# doc.dlspec — the doctor's test spec; this comment must survive --fix
model doc {
  seed: 1
  data {
    source: digits
    normalize: none
    split: holdout(val=0.2, test=0.2)
  }
  input: (64)
  layers {
    Dense(64, activation=sigmoid)   # the first layer
    Dense(32, activation=relu)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=0.1)
  train {
    epochs: 10
    batch_size: 32
  }
}
"""

LAYERS = [{"name": "dense_0", "kind": "Dense", "activation": "sigmoid", "family": "sigmoid"},
          {"name": "dense_1", "kind": "Dense", "activation": "relu", "family": "relu"},
          {"name": "dense_2", "kind": "Dense", "activation": "softmax", "family": None}]
STEPS = 10  # steps per epoch in the synthetic evidence


def evidence(epochs: int, layer=None, step_losses=None) -> dict:
    """evidence.json (version 1) of a healthy run of `epochs` epochs; `layer(epoch, name)` overrides a
    layer's numbers."""
    out = []
    for e in range(1, epochs + 1):
        stats = {}
        for x in LAYERS:
            s = {"grad_norm": 0.1, "weight_norm": 5.0, "update_ratio": 1e-2, "act_mean": 0.2, "act_std": 0.5,
                 "dead_fraction": 0.0 if x["family"] == "relu" else None,
                 "saturated_fraction": 0.0 if x["family"] in ("sigmoid", "tanh") else None}
            s.update((layer or (lambda e, n: {}))(e, x["name"]))
            stats[x["name"]] = s
        out.append({"epoch": e, "first_step": (e - 1) * STEPS + 1, "last_step": e * STEPS, "lr": 0.1,
                    "layers": stats})
    if step_losses is None:
        step_losses = [2.3 * 0.97 ** i for i in range(epochs * STEPS)]
    return {"version": 1, "probe_samples": 256, "definitions": {}, "layers": LAYERS, "epochs": out,
            "step_losses": step_losses}


def history(loss, val_loss=None, acc=None, val_acc=None, lr=0.1) -> list[dict]:
    rows = []
    for i, v in enumerate(loss):
        r = {"epoch": i + 1, "loss": v}
        if acc is not None:
            r["accuracy"] = acc[i]
        if val_loss is not None:
            r["val_loss"] = val_loss[i]
        if val_acc is not None:
            r["val_accuracy"] = val_acc[i]
        r.update(lr=lr, time_s=0.1, samples_per_s=1000.0)
        rows.append(r)
    return rows


def healthy_rows(n: int = 10) -> list[dict]:
    acc = [min(0.995, 0.5 + 0.06 * i) for i in range(n)]
    return history([2.0 * 0.65 ** i for i in range(n)], [2.0 * 0.7 ** i + 0.05 for i in range(n)], acc,
                   [a - 0.02 for a in acc])


def write_run(folder: Path, rows, ev="healthy", *, spec: str = SPEC, failed: str | None = None,
              metrics: dict | None = None, data_rows: int = 1797) -> Path:
    """A `dlc run` folder as the runtime writes it: the spec copy, ir.json, run.json, history.json, and
    evidence.json ("healthy": a healthy one for the rows; None: none, as in an old run)."""
    folder.mkdir(parents=True)
    (folder / "doc.dlspec").write_text(spec)
    result = api.checked(folder / "doc.dlspec")
    (folder / "ir.json").write_text(result.spec.model_dump_json(indent=2))
    (folder / "run.json").write_text(json.dumps({
        "spec": str(folder.parent / "src" / "doc.dlspec"), "spec_dir": str(folder), "backend": "torch",
        "data_read": {"file": "digits", "rows": data_rows, "header": None},
        "finished": None if failed else "2026-11-29T10:00:00", "failed": failed}))
    (folder / "history.json").write_text(json.dumps(rows))
    if ev == "healthy":
        ev = evidence(len(rows))
    if ev is not None:
        (folder / "evidence.json").write_text(json.dumps(ev))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def ids(report) -> list[str]:
    return [d.id for d in report.diagnoses]


def fixed_text(report) -> str:
    fixed = write_fix(report)
    assert fixed is not None
    assert run_cli("check", fixed.path, "--quiet")[0] == 0, fixed.path.read_text()
    return fixed.path.read_text()


# ------------------------------------------------------------------------------------------ each diagnosis


def test_healthy(tmp_path):
    report = diagnose(write_run(tmp_path / "run", healthy_rows()))
    assert ids(report) == ["healthy"]
    d = report.diagnoses[0]
    assert d.severity == "none" and d.spec_change is None
    assert "val_loss lowest at epoch 10" in d.evidence
    assert "no dead layer, no saturated hidden layer" in d.evidence
    assert write_fix(report) is None and not (tmp_path / "run" / "doctor.dlspec").exists()
    assert "give --target-accuracy" in d.remedy
    given = diagnose(tmp_path / "run", target_accuracy=0.5).diagnoses[0]  # (not suggested once given)
    assert given.id == "healthy" and "--target-accuracy" not in given.remedy


def test_divergence_names_the_epoch_and_step_and_lowers_the_learning_rate(tmp_path):
    steps = [2.3 - 0.01 * i for i in range(2 * STEPS)] + [5.0, 50.0, 1e4, None] + [None] * 6
    ev = evidence(3, lambda e, n: {"dead_fraction": 1.0} if e == 3 and n == "dense_1" else {}, steps)
    run = write_run(tmp_path / "run", healthy_rows(2), ev, failed="loss became nan at epoch 3, step 4 "
                    "(learning rate 0.1); training diverged: try a smaller learning rate, e.g. lr=0.01")
    report = diagnose(run)
    assert ids(report) == ["divergence"]  # (epoch 3's dead ReLUs come from NaN weights: not judged)
    d = report.diagnoses[0]
    assert d.severity == "critical"
    assert "the loss became nan at epoch 3, step 4" in d.evidence
    assert "it began at epoch 3, step 1" in d.evidence  # 5.0 > 2 x the first step's 2.3
    assert d.facts["began_epoch"] == 3 and d.facts["began_step"] == 1
    assert "3-10x" in d.remedy and "from 0.1 to 0.01" in d.remedy and "epoch 3, step 1" in d.remedy
    assert d.spec_change["summary"].startswith("optimizer SGD: lr 0.1 -> 0.01")
    text = fixed_text(report)
    assert "optimizer: SGD(lr=0.01)" in text and "this comment must survive --fix" in text


def test_divergence_from_an_exploding_finite_loss(tmp_path):
    steps = [2.3] * 15 + [3.0, 5.5, 9.0, 30.0, 80.0]  # over 2x at step 17 (epoch 2, step 7), 10x at step 19
    run = write_run(tmp_path / "run", history([2.3, 20.0], [2.3, 25.0]), evidence(2, None, steps))
    report = diagnose(run)
    d = report.diagnoses[0]
    assert d.id == "divergence" and d.facts["kind"] == "exploding"
    assert (d.facts["epoch"], d.facts["step"]) == (2, 9)
    assert (d.facts["began_epoch"], d.facts["began_step"]) == (2, 7)


def test_exploding_gradients_adds_clipping(tmp_path):
    ev = evidence(4, lambda e, n: {"grad_norm": 0.1 * 10 ** (e - 1)} if n == "dense_1" else {})
    report = diagnose(write_run(tmp_path / "run", healthy_rows(4), ev))
    d = report.diagnoses[0]
    assert d.id == "exploding_gradients" and d.severity == "high"
    assert "dense_1's gradient norm grew 1000x, from 0.1 at epoch 1 to 100 at epoch 4" in d.evidence
    assert "gradient clipping" in d.remedy
    assert "optimizer: SGD(lr=0.1, clipnorm=1.0)" in fixed_text(report)


def test_vanishing_gradients_switches_the_sigmoid_layers_to_relu_with_he(tmp_path):
    ev = evidence(10, lambda e, n: {"grad_norm": {"dense_0": 1e-4, "dense_1": 1e-2, "dense_2": 0.1}[n],
                                    "update_ratio": 5e-5 if n == "dense_0" else 1e-2})
    report = diagnose(write_run(tmp_path / "run", healthy_rows(), ev))
    d = report.diagnoses[0]
    assert d.id == "vanishing_gradients" and d.severity == "high"
    assert d.facts["ratio"] == pytest.approx(1000)
    assert "1000x smaller than the last layer's (dense_2)" in d.evidence and "ReLU family" in d.remedy
    text = fixed_text(report)
    assert "    Dense(64, activation=relu, kernel_init=he_normal)   # the first layer\n" in text
    assert "    Dense(32, activation=relu)\n" in text  # untouched


def test_dead_relu_becomes_leaky_relu(tmp_path):
    ev = evidence(10, lambda e, n: {"dead_fraction": 0.8} if n == "dense_1" and e >= 2 else {})
    report = diagnose(write_run(tmp_path / "run", healthy_rows(), ev))
    d = report.diagnoses[0]
    assert d.id == "dead_relu" and d.severity == "medium"
    assert "dense_1 (Dense, relu): 80% of its units never fire (over the limit since epoch 2)" in d.evidence
    assert d.epoch == 2 and "leaky_relu" in d.remedy
    assert "    Dense(32, activation=leaky_relu)\n" in fixed_text(report)


def test_saturation_standardizes_the_inputs(tmp_path):
    ev = evidence(10, lambda e, n: {"saturated_fraction": 0.95} if n == "dense_0" else {})
    report = diagnose(write_run(tmp_path / "run", healthy_rows(), ev))
    d = report.diagnoses[0]
    assert d.id == "saturation" and d.severity == "high" and "95% saturated" in d.evidence
    assert "Standardize the inputs" in d.remedy
    assert "    normalize: standard\n" in fixed_text(report)


def test_plateau_adds_a_plateau_schedule(tmp_path):
    loss = [2.0, 1.5, 1.2, 1.0, 1.0, 0.999, 0.998, 0.997, 0.996, 0.995]
    rows = history(loss, [v + 0.05 for v in loss], [0.6] * 10, [0.58] * 10)
    report = diagnose(write_run(tmp_path / "run", rows))
    assert set(ids(report)) == {"plateau", "underfitting"}
    d = next(d for d in report.diagnoses if d.id == "plateau")
    assert "from 1 at epoch 5 to at best 0.995 over epochs 6-10: 0.5% better (the rule: less than 1% over " \
        "5 epochs) at a constant learning rate 0.1" in d.evidence
    assert "factor=0.1-0.5" in d.remedy
    report.changes = {i: c for i, c in report.changes.items() if report.diagnoses[i].id == "plateau"}
    assert "  optimizer: SGD(lr=0.1)\n  schedule: plateau(monitor=loss, factor=0.5, patience=3)\n" in \
        fixed_text(report)


def test_a_loss_that_rose_is_no_plateau(tmp_path):
    """'the loss improved -68.94%' was a plateau finding: a training loss that only rose over the window (at a
    constant rate) is not flat."""
    loss = [2.0, 1.5, 1.2, 1.0, 1.0, 1.2, 1.4, 1.5, 1.6, 1.7]
    rows = history(loss, [v + 0.05 for v in loss], [0.6] * 10, [0.58] * 10)
    report = diagnose(write_run(tmp_path / "run", rows))
    assert "plateau" not in ids(report)
    assert not any("-" in (d.line or "") and "improved" in (d.line or "") for d in report.diagnoses)


def test_lr_too_low_ranks_before_the_underfitting_it_explains(tmp_path):
    rows = history([2.30, 2.29, 2.28, 2.27, 2.26], [2.31, 2.30, 2.29, 2.28, 2.27], [0.2] * 5, [0.2] * 5)
    report = diagnose(write_run(tmp_path / "run", rows, evidence(5, lambda e, n: {"update_ratio": 1e-5})))
    assert ids(report) == ["lr_too_low", "underfitting"]
    low, under = report.diagnoses
    assert "largest update/weight ratio of any layer is 1e-05" in low.evidence and low.facts["factor"] == 10
    assert "likely a consequence of the learning rate too low above" in under.evidence
    assert "optimizer: SGD(lr=1.0)" in fixed_text(report)


def test_overfitting_inserts_dropout_after_the_widest_hidden_layer(tmp_path):
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    rows = history([1.0 * 0.6 ** i for i in range(10)], val, [0.9] + [0.99] * 9, [0.9] * 10)
    report = diagnose(write_run(tmp_path / "run", rows))
    d = report.diagnoses[0]
    assert ids(report) == ["overfitting"]
    assert "val_loss rose in each of epochs 6-8 (0.45 -> 0.55)" in d.evidence
    assert "val_loss was lowest at epoch 5 (0.45) and ended 46.67% higher" in d.evidence
    for remedy in ("augmentation", "dropout 0.2-0.5", "kernel_reg=l2(1e-4)", "early stopping"):
        assert remedy in d.remedy
    text = fixed_text(report)
    assert "    Dense(64, activation=sigmoid)   # the first layer\n    Dropout(0.3)\n    Dense(32," in text
    # the change, minimal: one line added besides the header
    assert len(text.splitlines()) == len(SPEC.splitlines()) + 2


@pytest.mark.parametrize("rows_read,fires", [(150, False), (5000, True)])
def test_the_accuracy_gap_must_be_more_than_the_validation_noise(tmp_path, rows_read, fires):
    """A 0.1 gap on 30 validation samples is 3 of them (within 2 standard errors, 0.11): no finding; on
    1000 it is overfitting."""
    metrics = {"train": {"loss": 0.01, "accuracy": 1.0}, "val": {"loss": 0.3, "accuracy": 0.9}}
    report = diagnose(write_run(tmp_path / "run", healthy_rows(), metrics=metrics, data_rows=rows_read))
    assert ids(report) == (["overfitting"] if fires else ["healthy"])
    if fires:
        found = report.diagnoses[0].evidence
        assert "a gap of 0.1" in found and "1000 samples" in found


def test_underfitting_against_a_target_accuracy(tmp_path):
    acc = [0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.93, 0.94, 0.95, 0.955]
    rows = history([2.0 * 0.8 ** i for i in range(10)], [2.0 * 0.8 ** i + 0.1 for i in range(10)], acc,
                   [a - 0.01 for a in acc])
    run = write_run(tmp_path / "run", rows)
    assert ids(diagnose(run)) == ["healthy"]  # a train error of 0.045 is not above 0.05
    report = diagnose(run, target_accuracy=0.98)
    d = report.diagnoses[0]
    assert ids(report) == ["underfitting"] and d.severity == "medium"
    assert "train accuracy 0.955 (epoch 10) against the target 0.98: 0.025 short" in d.evidence
    assert "bigger model" in d.remedy and "train longer" in d.remedy and "less regularization" in d.remedy


def test_underfitting_with_validation_above_training_says_no_variance(tmp_path):
    """Dropout makes the training accuracy the lower one: "validation accuracy 0.8 (variance -0.03)" read as
    a negative variance."""
    acc = [0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.75, 0.76, 0.77, 0.77]
    rows = history([2.0 * 0.9 ** i for i in range(10)], [2.0 * 0.9 ** i - 0.1 for i in range(10)], acc,
                   [a + 0.03 for a in acc])
    d = diagnose(write_run(tmp_path / "run", rows)).diagnoses[0]
    assert d.id == "underfitting" and "validation accuracy 0.8 (0.03 above the training accuracy: no " \
        "variance)" in d.evidence, d.evidence


def test_a_train_error_of_exactly_the_threshold_is_not_underfitting(tmp_path):
    """1 - 0.95 is 0.050000000000000044 in floats: a train accuracy of 0.95 (19 of 20 right) was judged a
    train error above 0.05; the shortfall is rounded like the gap."""
    metrics = {"train": {"loss": 0.2, "accuracy": 0.95}, "val": {"loss": 0.2, "accuracy": 0.95}}
    run = write_run(tmp_path / "run", healthy_rows(), metrics=metrics)
    assert "underfitting" not in ids(diagnose(run)), [d.evidence for d in diagnose(run).diagnoses]
    # against a target: 0.97 - 0.95 is 0.020000000000000018, not above the margin of 0.02 either
    assert "underfitting" not in ids(diagnose(run, target_accuracy=0.97))


def test_underfitting_widens_a_bottleneck(tmp_path):
    hidden = "    Dense(64, activation=sigmoid)   # the first layer\n    Dense(32, activation=relu)\n"
    spec = SPEC.replace(hidden, "    Dense(2, activation=relu)\n")
    rows = history([2.0, 1.8, 1.7, 1.69, 1.68], [2.0, 1.8, 1.7, 1.69, 1.68], [0.3, 0.35, 0.38, 0.39, 0.4],
                   [0.3, 0.35, 0.38, 0.39, 0.4])
    report = diagnose(write_run(tmp_path / "run", rows, None, spec=spec))
    d = report.diagnoses[0]
    assert ids(report) == ["underfitting"] and d.severity == "high" and d.facts["bottleneck"] == "dense_0"
    assert "dense_0 with 2 units, is a bottleneck" in d.remedy
    assert "    Dense(40, activation=relu)\n" in fixed_text(report)


@pytest.mark.parametrize("block", ["parameter", "body"])
def test_a_bottleneck_whose_width_a_block_gives_is_not_edited(tmp_path, block):
    """A width given by a block's parameter, or written in a block's body, is every use's: editing it widened
    all of them (and was shown as '? -> 40 units'); the fix falls back to the next remedy."""
    hidden = "    Dense(64, activation=sigmoid)   # the first layer\n    Dense(32, activation=relu)\n"
    body, call = ("Dense(n, activation=relu)", "narrow(2)") if block == "parameter" else \
        ("Dense(2, activation=relu)", "narrow(0)")
    spec = SPEC.replace(hidden, f"    {call}\n    Dense(16, activation=relu)\n")
    spec = f"block narrow(n) {{\n  {body}\n}}\n\n" + spec
    if block == "body":
        spec = spec.replace("Dense(n, activation=relu)", "Dense(2, activation=relu)")
    rows = history([2.0, 1.8, 1.7, 1.69, 1.68], [2.0, 1.8, 1.7, 1.69, 1.68], [0.3, 0.35, 0.38, 0.39, 0.4],
                   [0.3, 0.35, 0.38, 0.39, 0.4])
    report = diagnose(write_run(tmp_path / "run", rows, None, spec=spec))
    d = report.diagnoses[0]
    assert d.id == "underfitting" and d.facts["bottleneck"] == "dense_0"
    text = fixed_text(report) if report.changes else ""
    assert "?" not in "".join(c.summary for c in report.changes.values())
    assert body in text or not text  # the block is as it was
    assert "Dense(40" not in text


def test_a_run_without_evidence_is_judged_on_its_history(tmp_path):
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    report = diagnose(write_run(tmp_path / "run", history([0.6 ** i for i in range(10)], val), None))
    assert ids(report) == ["overfitting"] and not report.evidence
    assert any("per-layer evidence is missing" in n for n in report.notes)
    assert "per-layer evidence missing" in run_cli("doctor", tmp_path / "run")[1]


def test_every_id_is_documented_and_in_the_help():
    doc = (ROOT / "docs" / "DOCTOR.md").read_text()
    text = run_cli("doctor", "--help")[1]
    for ident in rules.IDS:
        assert f"`{ident}`" in doc and ident in text
    for name, value in rules.THRESHOLDS.items():
        assert name in doc, f"docs/DOCTOR.md does not state {name} = {value}"


# --------------------------------------------------------------------------------------- the command line


def test_json_lists_the_diagnoses_most_severe_first(tmp_path):
    ev = evidence(10, lambda e, n: {"dead_fraction": 0.95} if n == "dense_1" else {})
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    write_run(tmp_path / "run", history([0.6 ** i for i in range(10)], val), ev)
    rc, out, err = run_cli("doctor", tmp_path / "run", "--format", "json")
    assert rc == 0, err
    got = json.loads(out)
    assert [d["id"] for d in got["diagnoses"]] == ["dead_relu", "overfitting"]
    for d in got["diagnoses"]:
        assert {"id", "severity", "evidence", "remedy", "spec_change"} <= set(d)
    change = got["diagnoses"][0]["spec_change"]
    assert change["spec"] == "doc.dlspec" and change["writes"] == "doctor.dlspec"
    assert change["edits"] == [{"line": 12, "col": 26, "old": "relu", "new": "leaky_relu"}]


def test_fix_prints_the_diff_and_how_to_run_it(tmp_path):
    steps = [2.3] * 20 + [None] * 10
    write_run(tmp_path / "run", healthy_rows(2), evidence(3, None, steps),
              failed="loss became inf at epoch 3, step 1 (learning rate 0.1); training diverged")
    rc, out, err = run_cli("doctor", tmp_path / "run", "--fix")
    assert rc == 0, err
    assert "1. divergence (critical)" in out
    assert f"wrote {tmp_path / 'run' / 'doctor.dlspec'}" in out
    assert "-  optimizer: SGD(lr=0.1)\n+  optimizer: SGD(lr=0.01)\n" in out
    assert f"run it: dlc run {tmp_path / 'run' / 'doctor.dlspec'} --backend torch" in out
    rc, out, err = run_cli("doctor", tmp_path / "run", "--fix", "--format", "json")
    fix = json.loads(out)["fix"]
    assert fix["id"] == "divergence" and fix["file"].endswith("doctor.dlspec")
    assert "+  optimizer" in fix["diff"]


def test_fix_with_nothing_to_fix_writes_nothing(tmp_path):
    write_run(tmp_path / "run", healthy_rows())
    rc, out, err = run_cli("doctor", tmp_path / "run", "--fix")
    assert rc == 0 and "1. healthy" in out and "nothing to fix" in err
    assert not (tmp_path / "run" / "doctor.dlspec").exists()


@pytest.mark.parametrize("make,args,code,text", [
    (None, ["{tmp}/none"], 1, "no such run directory"),
    ("empty", ["{tmp}/run"], 1, "is not a dlc run directory"),
    ("no_epochs", ["{tmp}/run"], 1, "no finished epoch to diagnose yet"),
    ("healthy", ["{tmp}/run", "--target-accuracy", "1.5"], 2, "--target-accuracy"),
    ("healthy", ["{tmp}/run", "--format", "xml"], 2, "--format"),
])
def test_errors_are_one_line(tmp_path, make, args, code, text):
    if make == "empty":
        (tmp_path / "run").mkdir()
    elif make == "no_epochs":
        write_run(tmp_path / "run", [], None)
    elif make == "healthy":
        write_run(tmp_path / "run", healthy_rows())
    rc, out, err = run_cli("doctor", *[a.format(tmp=tmp_path) for a in args])
    assert rc == code and text in err and "Traceback" not in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1 and err.startswith("dlc: error: ")


# --------------------------------------------------------------------------------------------- cv and tune


def _cv_folder(folder: Path, kinds: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "doc.dlspec").write_text(SPEC)
    (folder / "ir.json").write_text(api.checked(folder / "doc.dlspec").spec.model_dump_json())
    val_over = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    folds = []
    for i, kind in enumerate(kinds, start=1):
        rows = healthy_rows() if kind == "healthy" else history([0.6 ** j for j in range(10)], val_over)
        f = folder / f"fold_{i}"
        f.mkdir()
        (f / "history.json").write_text(json.dumps(rows))
        (f / "evidence.json").write_text(json.dumps(evidence(10)))
        val = {"loss": rows[-1]["val_loss"], "accuracy": rows[-1].get("val_accuracy", 0.9)}
        (f / "metrics.json").write_text(json.dumps({"val": val}))
        folds.append({"fold": i, "epochs": 10, "train_samples": 400, "val_samples": 100, "val": val})
    mean = {k: sum(f["val"][k] for f in folds) / len(folds) for k in ("loss", "accuracy")}
    (folder / "cv.json").write_text(json.dumps({"k": len(kinds), "backend": "torch", "folds": folds,
                                                "mean": mean, "std": {"loss": 0.1, "accuracy": 0.01}}))
    return folder


def test_cv_diagnoses_each_fold_and_the_findings_of_most(tmp_path):
    report = diagnose(_cv_folder(tmp_path / "cv", ["over", "over", "healthy"]))
    assert report.kind == "cv" and ids(report) == ["overfitting"]
    assert report.diagnoses[0].evidence.startswith("in 2 of 3 folds (1, 2); fold 1: val_loss rose")
    assert [(i, [d.id for d in ds]) for i, ds in report.folds] == \
        [(1, ["overfitting"]), (2, ["overfitting"]), (3, ["healthy"])]
    assert any(n.startswith("the spread over 3 folds: val loss") for n in report.notes)
    got = report.to_json()
    assert len(got["folds"]) == 3 and got["spread"]["k"] == 3
    assert "Dropout(0.3)" in fixed_text(report)
    assert run_cli("doctor", tmp_path / "cv")[1].count("fold ") >= 3


def test_cv_finding_of_one_fold_in_three_is_a_note(tmp_path):
    report = diagnose(_cv_folder(tmp_path / "cv", ["over", "healthy", "healthy"]))
    assert ids(report) == ["healthy"]
    assert any(n.startswith("overfitting in fold 1 only (1 of 3)") for n in report.notes)


def test_cv_fold_from_before_train_metrics_says_its_gap_is_unlike(tmp_path):
    """An old cv folder (a fold's metrics.json with the validation only): the train accuracy is the running,
    training-mode one, and the report says so."""
    report = diagnose(_cv_folder(tmp_path / "cv", ["healthy", "healthy", "healthy"]))
    assert any(n.startswith("3 of 3 folds have no inference-mode train metrics in metrics.json") and
               "training mode (dropout on, the weights moving)" in n for n in report.notes), report.notes
    evidence = " ".join(d.evidence for _, ds in report.folds for d in ds)
    assert "epoch 10's running figure, in training mode; validation from metrics.json" in evidence


DROPOUT_CV = """model iris_drop {
  seed: 7
  data {
    source: iris
    normalize: standard
    split: kfold(k=3)
  }
  input: (4)
  layers {
    Dense(32, activation=relu, kernel_init=he_normal)
    Dropout(0.5)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.01)
  train {
    epochs: 20
    batch_size: 16
  }
}
"""


def test_cv_folds_compare_inference_train_accuracy_with_validation(tmp_path):
    """The bug: a cv fold's train accuracy was the last epoch's running one, with Dropout(0.5) active (0.9 in
    fold 1 here), set against an inference-mode validation accuracy: underfitting in 3 of 3 folds. Each fold
    now records its train metrics in inference mode (metrics.json, as `dlc run` does), and the doctor
    compares those (0.97 in fold 1)."""
    spec = tmp_path / "iris_drop.dlspec"
    spec.write_text(DROPOUT_CV)
    rc, _, err = run_cli("cv", spec, "--backend", "torch", "--out", tmp_path / "cv", "--quiet")
    assert rc == 0, err
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    report = diagnose(tmp_path / "cv")
    running_below = 0
    for (i, ds), row in zip(report.folds, cv["folds"], strict=True):
        fold = tmp_path / "cv" / f"fold_{i}"
        final = json.loads((fold / "metrics.json").read_text())
        assert set(final) == {"train", "val"}
        assert final["train"] == row["train"] and final["val"] == row["val"]
        running = json.loads((fold / "history.json").read_text())[-1]["accuracy"]
        running_below += running < final["train"]["accuracy"]
        train = rules.num(final["train"]["accuracy"])
        assert any(f"train accuracy {train}" in d.evidence and "(metrics.json, inference mode)" in d.evidence
                   for d in ds), [d.evidence for d in ds]
    assert running_below == 3  # dropout lowers the running figure in every fold: the bias it made
    assert ids(report) == ["healthy"], [d.evidence for d in report.diagnoses]
    assert not any("no inference-mode train metrics" in n for n in report.notes)


def test_tune_diagnoses_the_best_trial_and_tells_the_spread(tmp_path):
    folder = tmp_path / "tune"
    (folder / "trials" / "0002").mkdir(parents=True)
    (folder / "best.dlspec").write_text(SPEC)
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    (folder / "trials" / "0002" / "history.json").write_text(json.dumps(history([0.6 ** i for i in range(10)],
                                                                                val)))
    trials = [{"number": 0, "state": "COMPLETE", "value": 0.9}, {"number": 1, "state": "FAIL", "value": None,
              "failure": "loss became nan at epoch 1, step 3 (learning rate 3)"},
              {"number": 2, "state": "COMPLETE", "value": 0.45},
              {"number": 3, "state": "COMPLETE", "value": 0.5}]
    (folder / "tune.json").write_text(json.dumps({
        "spec": "doc", "backend": "torch", "objective": {"direction": "minimize", "metric": "val_loss"},
        "trials": trials, "best": {"number": 2, "value": 0.45, "params": {}, "spec": "best.dlspec"}}))
    report = diagnose(folder)
    assert report.kind == "tune" and report.trial == 2 and ids(report) == ["overfitting"]
    assert report.spread["median"] == 0.5 and report.spread["worst"] == 0.9 and report.spread["diverged"] == 1
    assert any("trial 2 is the best of 4 (val_loss 0.45, minimize); over the 3 completed: median 0.5, worst "
               "0.9; 1 fail (1 diverged" in n for n in report.notes)
    assert any("no evidence.json of trial 2" in n for n in report.notes)
    assert "Dropout(0.3)" in fixed_text(report)


# ------------------------------------------------------------------------------------------------- live


def test_live_warns_once_the_first_time(tmp_path):
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    rows = history([0.6 ** i for i in range(10)], val)
    spec = api.checked(write_run(tmp_path / "run", rows, None) / "doc.dlspec").spec
    doctor = LiveDoctor(spec)
    said = {r["epoch"]: doctor.epoch(r) for r in rows}
    assert {e: w for e, w in said.items() if w} == \
        {8: ["epoch 8: val_loss rising for 3 epochs while loss falls: overfitting, see dlc doctor"]}
    resumed = LiveDoctor(spec, before=rows[:8])  # what showed before a resume is not said again
    assert [resumed.epoch(r) for r in rows[8:]] == [[], []]
    assert all(not LiveDoctor(spec).epoch(r) for r in healthy_rows())


def test_live_reads_the_evidence_as_written(tmp_path):
    ev = evidence(3, lambda e, n: {"dead_fraction": 0.7} if n == "dense_1" and e == 3 else {})
    run = write_run(tmp_path / "run", healthy_rows(3), ev)
    doctor = LiveDoctor(api.checked(run / "doc.dlspec").spec, run)
    said = [doctor.epoch(r) for r in healthy_rows(3)]
    assert said == [[], [], ["epoch 3: 70% of dense_1's ReLUs are dead: dead ReLUs, see dlc doctor"]]
    assert LiveDoctor(None).epoch({"epoch": 1}) == []  # never raises


# ---------------------------------------------------------------------------------------------- real runs


def _iris(folder: Path, optimizer: str, epochs: int) -> Path:
    text = (ROOT / "specs" / "iris.dlspec").read_text()
    text = text.replace("optimizer: Adam(lr=0.01)", f"optimizer: {optimizer}").replace("epochs: 40",
                                                                                        f"epochs: {epochs}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "iris.dlspec").write_text(text)
    return folder / "iris.dlspec"


def test_a_diverging_run_is_diagnosed_and_its_fix_cures_it(tmp_path):
    spec = _iris(tmp_path / "src", "SGD(lr=30.0)", 6)
    with pytest.raises(api.RunFailed):
        api.run(api.trainable(api.checked(spec)), "torch", device="cpu", out=tmp_path / "run")
    report = diagnose(tmp_path / "run")
    d = report.diagnoses[0]
    assert d.id == "divergence" and d.severity == "critical"
    m = re.search(r"the loss became (nan|inf) at epoch (\d+), step (\d+)", d.evidence)
    assert m and d.facts["epoch"] == int(m.group(2)) and d.facts["step"] == int(m.group(3))
    rc, out, err = run_cli("doctor", tmp_path / "run", "--fix")
    assert rc == 0, err
    fixed = tmp_path / "run" / "doctor.dlspec"
    assert "optimizer: SGD(lr=3.0)" in fixed.read_text() and "-  optimizer: SGD(lr=30.0)" in out
    assert run_cli("check", fixed)[0] == 0
    done = api.run(api.trainable(api.checked(fixed)), "torch", device="cpu", out=tmp_path / "fixed")
    losses = [r["loss"] for r in done.history.rows]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_a_good_run_is_healthy(tmp_path):
    spec = api.trainable(api.checked(ROOT / "specs" / "iris.dlspec"))
    api.run(spec, "torch", device="cpu", out=tmp_path / "run")
    report = diagnose(tmp_path / "run")
    assert ids(report) == ["healthy"] and report.evidence, [d.evidence for d in report.diagnoses]


def test_dlc_run_warns_live_unless_quiet(tmp_path):
    spec = _iris(tmp_path / "src", "SGD(lr=0.00001)", 7)
    rc, out, err = run_cli("run", spec, "--out", tmp_path / "run", "--device", "cpu")
    assert rc == 0, err
    line = "learning rate too low, see dlc doctor"
    shown = r"^epoch \d: the updates are .* of the weights while the loss falls slowly: "
    assert re.search(shown + line, err, re.M), err
    assert line in (tmp_path / "run" / "log.txt").read_text()
    rc, out, err = run_cli("run", spec, "--out", tmp_path / "quiet", "--device", "cpu", "--quiet")
    assert rc == 0 and "see dlc doctor" not in err
    assert diagnose(tmp_path / "run").diagnoses[0].id == "lr_too_low"


@pytest.mark.slow
def test_the_overfitting_fix_lowers_the_guide_nets_validation_loss(tmp_path):
    """specs/guide/overfit_none.dlspec (512-512 on 180 samples): overfitting; --fix puts Dropout(0.3) after
    both 512s, which lowers the final val_loss (measured on torch: 0.295 -> 0.271)."""
    spec = api.trainable(api.checked(ROOT / "specs" / "guide" / "overfit_none.dlspec"))
    before = api.run(spec, "torch", device="cpu", out=tmp_path / "run").final["val"]["loss"]
    report = diagnose(tmp_path / "run")
    assert report.diagnoses[0].id == "overfitting"
    fixed = write_fix(report)
    assert fixed is not None and fixed.path.read_text().count("    Dropout(0.3)\n") == 2
    after = api.run(api.trainable(api.checked(fixed.path)), "torch", device="cpu",
                    out=tmp_path / "fixed").final["val"]["loss"]
    assert after < before


def test_json_has_no_nan_or_infinity(tmp_path):
    ev = evidence(3, lambda e, n: {"grad_norm": {"dense_0": 0.0, "dense_1": 1e-2, "dense_2": 0.1}[n]})
    write_run(tmp_path / "run", healthy_rows(3), ev)
    rc, out, err = run_cli("doctor", tmp_path / "run", "--format", "json")
    assert rc == 0, err
    got = json.loads(out)  # (json.loads takes NaN and Infinity; the check is that they are not there)
    assert "Infinity" not in out and "NaN" not in out
    first = got["diagnoses"][0]
    assert first["id"] == "vanishing_gradients" and first["facts"]["ratio"] is None


def test_a_run_of_a_doctor_spec_keeps_its_copy(tmp_path):
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    run = write_run(tmp_path / "run", history([0.6 ** i for i in range(10)], val))
    (run / "doc.dlspec").rename(run / "doctor.dlspec")
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "spec": str(tmp_path / "first" / "doctor.dlspec")}))
    report = diagnose(run)
    assert report.spec_file == run / "doctor.dlspec"
    fixed = write_fix(report)
    assert fixed is not None and fixed.path == run / "doctor.fix.dlspec"
    assert (run / "doctor.dlspec").read_text() == SPEC


def _diverged_run_beside(tmp_path: Path, src: Path, spec: str, data: str) -> Path:
    """A run folder tmp_path/run of `spec` (its data at `data` in `src`), trained from src's folder: its IR
    reads ../src/`data`, its spec copy `data` as written (relative to the spec's folder, run.json's spec_dir),
    and its loss became nan in epoch 3 (so the doctor fixes the lr)."""
    steps = [2.3] * 20 + [None] * 10
    run = write_run(tmp_path / "run", healthy_rows(2), evidence(3, None, steps), spec=spec.replace(
        data, f"../src/{data}"), failed="loss became nan at epoch 3, step 1 (learning rate 0.1)")
    (run / "doc.dlspec").write_text(spec)  # the copy, as dlc run copies it: relative to the spec's folder
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()),
                                              "spec_dir": str(src)}))
    return run


def test_the_fix_keeps_relative_data_paths_right(tmp_path):
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "t.csv").write_text("a,b,c,d,label\n" + "".join(
        f"{i % 5},{i % 3},{i % 7},{i % 2},{i % 3}\n" for i in range(60)))
    spec = SPEC.replace("source: digits", 'source: csv("data/t.csv")').replace("input: (64)", "input: (4)") \
        .replace("Dense(10, activation=softmax)", "Dense(3, activation=softmax)")
    text = fixed_text(diagnose(_diverged_run_beside(tmp_path, src, spec, "data/t.csv")))
    assert 'source: csv("../src/data/t.csv")' in text and "SGD(lr=0.01)" in text


def test_a_run_cut_short_by_epochs_is_fixed_back_to_the_spec_s_epochs(tmp_path):
    """`--epochs 3` on a 40-epoch spec whose loss still falls: train the spec's own 40 (not 40 -> 6), and the
    rerun command drops the override."""
    assert run_cli("run", ROOT / "specs" / "iris.dlspec", "--epochs", "3", "--out", tmp_path / "r",
                   "--quiet")[0] == 0
    rc, out, err = run_cli("doctor", tmp_path / "r", "--fix")
    assert rc == 0, err
    assert "epochs 40, as the spec says (the run trained 3 with --epochs" in out + err
    assert "epochs: 40" in (tmp_path / "r" / "doctor.dlspec").read_text()
    assert "--epochs" not in (out + err).split("run it:")[-1]


@pytest.mark.parametrize("value", ["nan", "-0.5", "1.5", "inf"])
def test_doctor_target_accuracy_must_be_a_number_between_0_and_1(tmp_path, value):
    """A NaN is neither above 1 nor below 0: one message for every value out of range, nan included."""
    rc, _, err = run_cli("doctor", tmp_path, "--target-accuracy", value)
    assert rc == 2 and "--target-accuracy': must be a number between 0 and 1" in err, err


@pytest.mark.parametrize("n", [2, 3, 5])
def test_underfitting_says_still_falling_only_over_two_epochs_or_more(tmp_path, n):
    """A 2-epoch run said 'the training loss was still falling ... over the last 1 epoch': one drop is no
    trend (the first epochs' fall). It now says the run was too short to tell (and the fix still trains
    longer); from 3 epochs the window is the last 2 (up to LR_LOW_EPOCHS) epochs, plural."""
    losses = [2.0 * 0.8 ** i for i in range(n)]
    acc = [0.3 + 0.02 * i for i in range(n)]
    spec = SPEC.replace("epochs: 10", f"epochs: {n}")
    report = diagnose(write_run(tmp_path / "run", history(losses, losses, acc, acc), None, spec=spec))
    d = report.diagnoses[0]
    assert d.id == "underfitting"
    window = min(n - 1, rules.LR_LOW_EPOCHS)
    if n == 2:
        assert "the run trained only 2 epochs, too few to tell whether the training loss was still falling" \
            in d.evidence
        assert "still falling at the end" not in d.evidence and "over the last 1 epoch" not in d.evidence
        assert d.facts.get("short_run") and not d.facts.get("still_improving")
        assert "(the loss was still falling)" not in d.remedy
        assert "epochs: 10" in fixed_text(report)  # (doubled, 4, is still too short to show a trend)
        assert "too short to tell" in next(iter(report.changes.values())).summary
    else:
        assert (f"the training loss was still falling at the end ({rules.num(losses[-window - 1])} -> "
                f"{rules.num(losses[-1])} over the last {window} epochs)") in d.evidence
        assert d.facts.get("still_improving") and "only" not in d.evidence


def test_the_fix_of_a_crlf_spec_keeps_its_line_endings(tmp_path):
    """A spec saved with CRLF line endings (and a byte-order mark) got the lines --fix adds (the Dropout, the
    header comment) ending in LF, and the line before each added one in CR LF LF order: a file of mixed line
    endings. Every line of the fixed file now ends as the spec's do."""
    val = [1.0, 0.8, 0.6, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6, 0.66]
    run = write_run(tmp_path / "run", history([0.6 ** i for i in range(10)], val))
    (run / "doc.dlspec").write_bytes(b"\xef\xbb\xbf" + SPEC.replace("\n", "\r\n").encode())
    report = diagnose(run)
    assert ids(report)[0] == "overfitting"
    fixed = write_fix(report)
    assert fixed is not None
    data = fixed.path.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") and b"\r\r" not in data
    assert b"    Dropout(0.3)\r\n" in data
    assert run_cli("check", fixed.path, "--quiet")[0] == 0


def _data_files(src: Path) -> None:
    """src/data/: t.csv and x.npy, y.npy (60 rows of 4 features, 3 classes)."""
    import numpy as np

    (src / "data").mkdir(parents=True)
    x = np.array([[i % 5, i % 3, i % 7, i % 2] for i in range(60)], dtype=np.float64)
    y = np.arange(60) % 3
    (src / "data" / "t.csv").write_text("a,b,c,d,label\n" + "".join(
        f"{','.join(str(int(v)) for v in row)},{c}\n" for row, c in zip(x, y, strict=True)))
    np.save(src / "data" / "x.npy", x)
    np.save(src / "data" / "y.npy", y)


def _small(source: str) -> str:
    return SPEC.replace("source: digits", f"source: {source}").replace("input: (64)", "input: (4)") \
        .replace("Dense(10, activation=softmax)", "Dense(3, activation=softmax)")


def test_the_fix_moves_both_paths_of_an_npy_source(tmp_path):
    """`npy("data/x.npy", "data/y.npy")`: doctor.dlspec had the first path made relative to the run folder
    and the second left as it was (`npy("../src/data/x.npy", "data/y.npy")`), a spec that did not compile.
    Both are files (npz's x= and y= name arrays and stay)."""
    src = tmp_path / "src"
    _data_files(src)
    spec = _small('npy("data/x.npy", y="data/y.npy")')
    text = fixed_text(diagnose(_diverged_run_beside(tmp_path, src, spec, "data/")))
    assert 'source: npy("../src/data/x.npy", y="../src/data/y.npy")' in text and "SGD(lr=0.01)" in text


def test_the_fix_of_a_cv_folder_keeps_relative_data_paths_right(tmp_path):
    """A cv folder (`dlc cv`, or `dlc run` of a kfold spec) has no run.json: its doctor.dlspec kept the spec's
    relative data paths as written, now relative to the cv folder, where no data is (`cannot read data file
    'data/t.csv'`). cv.json records the spec's folder, and --fix rewrites the paths from it."""
    src = tmp_path / "src"
    _data_files(src)
    spec = _small('csv("data/t.csv")')
    (src / "doc.dlspec").write_text(spec.replace("epochs: 10", "epochs: 1"))
    rc, _, err = run_cli("cv", src / "doc.dlspec", "--backend", "torch", "--k", "2",
                         "--out", tmp_path / "real", "--quiet")
    assert rc == 0, err
    assert json.loads((tmp_path / "real" / "cv.json").read_text())["spec_dir"] == str(src.resolve())
    folder = _cv_folder(tmp_path / "cv", ["over", "over", "healthy"])
    (folder / "doc.dlspec").write_text(spec)
    cv = json.loads((folder / "cv.json").read_text())
    (folder / "cv.json").write_text(json.dumps({**cv, "spec_dir": str(src)}))
    text = fixed_text(diagnose(folder))
    assert 'source: csv("../src/data/t.csv")' in text and "Dropout(0.3)" in text
