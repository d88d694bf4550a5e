"""The API as a script or a notebook meets it: `tune()` called at a script's top level, without `if __name__
== "__main__":` (every trial crashed, re-running the script), and the reprs of what the API returns (a
notebook printed whole arrays and every epoch's row)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import dlc
from dlc.runtime.data import Dataset
from dlc.runtime.data.base import Split
from dlc.runtime.loop import History
from dlc.runtime.lr_find import LRFind
from dlc.runtime.run import Finished, Resumable
from dlc.runtime.serve import Predictions
from dlc.runtime.tune import TuneResult, _main_left_out

from conftest import ROOT, edited_spec

# ------------------------------------------------------------------------ tune() from an unguarded script

_SCRIPT = """\
import dlc.api
with open("top-level-runs.txt", "a") as f:
    f.write("ran\\n")
result = dlc.api.tune("tiny.dlspec", out="search")
print("RESULT", repr(result))
"""


def test_tune_at_a_scripts_top_level_runs_every_trial_once(tmp_path):
    """Each trial's process used to run the script again (multiprocessing's re-import of __main__), whose
    tune() call then crashed it: 3 failed trials and `stopped`. Now the script runs once and every trial
    completes."""
    spec = edited_spec(ROOT / "specs" / "tune" / "iris_tune.dlspec", ("trials: 30", "trials: 2"),
                       ("epochs: 60", "epochs: 1"))
    (tmp_path / "tiny.dlspec").write_text(spec)
    (tmp_path / "script.py").write_text(_SCRIPT)
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("DLC_TUNE_WORKER", None)  # (the default: trials forked from the fork server)
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bootstrapping phase" not in done.stderr
    assert (tmp_path / "top-level-runs.txt").read_text() == "ran\n"
    trials = json.loads((tmp_path / "search" / "tune.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    result_line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    assert "2 trials (2 complete); best val_loss" in result_line and len(result_line) < 400


def test_main_left_out_puts_main_back():
    main = sys.modules["__main__"]
    with pytest.raises(KeyError), _main_left_out():
        assert sys.modules["__main__"] is not main
        assert getattr(sys.modules["__main__"], "__file__", None) is None
        raise KeyError("x")
    assert sys.modules["__main__"] is main


# ------------------------------------------------------------------------------------------------ reprs

def _rows(n: int) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / (4 * n), "val_loss": abs(e - n / 2) + 0.1,
             "val_accuracy": 0.9 if e == 3 else 0.5, "lr": 0.01, "time_s": 0.1, "samples_per_s": 900.0}
            for e in range(1, n + 1)]


def test_history_repr_is_a_line():
    h = History(rows=_rows(20), step_losses=[0.5] * 300, stopped_early=True, best_epoch=10,
                restored_best=True)
    assert repr(h) == ("History(20 epochs, 300 steps, loss 1→0.05, val_loss best 0.1 at epoch 10, "
                       "val_accuracy best 0.9 at epoch 3; best epoch 10 restored; stopped early)")
    assert repr(History()) == "History(no epochs)"
    failed = History(rows=_rows(2), failure="the loss became nan\nat step 7 " + "x" * 300)
    assert "\n" not in repr(failed) and "failed: the loss became nan at step 7" in repr(failed)
    assert len(repr(failed)) < 260
    no_val = History(rows=[{"epoch": 1, "loss": float("nan"), "mae": 2.0}])
    assert repr(no_val) == "History(1 epoch, loss nan→nan, mae best 2 at epoch 1)"
    # the fields, equality and the dataclass' constructor are unchanged
    assert History(rows=_rows(3)) == History(rows=_rows(3)) and h.rows[0]["epoch"] == 1


def test_history_html_shows_the_first_and_last_epochs():
    html = History(rows=_rows(30))._repr_html_()
    assert html.count("<tr>") == 1 + 11  # the header, 5 epochs, "…", 5 epochs
    assert "<td>…</td>" in html and "<td>30</td>" in html and "<td>6</td>" not in html
    assert "<th>val_accuracy</th>" in html and "time_s" not in html
    assert "<script>" not in History(rows=[{"epoch": 1, "<script>": 1.0}])._repr_html_()


def test_dataset_and_split_reprs_show_shapes_not_values():
    rng = np.random.default_rng(0)
    part = Split(x=rng.normal(size=(1257, 64)).astype(np.float32), y=rng.integers(0, 10, 1257),
                 labels=rng.integers(0, 10, 1257))
    small = Split(x=np.zeros((270, 64), np.float32), y=np.zeros((270, 10), np.float32), labels=None)
    data = Dataset(train=part, val=small, test=None, num_classes=10,
                   class_names=[f"c{k}" for k in range(10)])
    assert repr(part) == "Split(1257 samples: x 1257×64 float32, y 1257 int64, labels)"
    assert repr(data) == ("Dataset(train 1257×64 float32, val 270×64 float32; 10 classes "
                          "(c0, c1, c2, c3, c4, …))")
    html = data._repr_html_()
    assert "<td>val</td><td>270</td><td>270×64 float32</td><td>270×10 float32</td>" in html
    assert "test" not in html.split("</caption>")[1]
    assert data.train is part and data.val is small  # (attributes as they were)


def test_load_data_repr():
    data = dlc.load_data(ROOT / "specs" / "iris.dlspec")
    assert repr(data) == "Dataset(train 90×4 float64, val 30×4 float64, test 30×4 float64; 3 classes)"


def test_a_spec_repr_is_a_line():
    """dlc.load's Spec printed pydantic's every node: 1.5 KB for the digits MLP, more for every layer."""
    spec = dlc.load(ROOT / "specs" / "digits_cnn.dlspec")
    assert repr(spec) == ("Spec(digits_cnn from digits_cnn.dlspec: input (8, 8, 1), 7 layers (Conv2D, "
                          "MaxPool2D, Conv2D, MaxPool2D, Flatten, Dense, …), loss categorical_crossentropy, "
                          "Adam, 15 epochs of batch 64, float32, seed 42)")
    tuned = dlc.load(ROOT / "specs" / "tune" / "iris_tune.dlspec")
    assert repr(tuned).endswith("; searches 5 spaces (tpe, 30 trials))")
    assert repr(tuned.with_source_file(None)).startswith("Spec(iris_tune: input (4,), 3 layers (Dense, ")
    assert spec.model_dump_json().startswith('{"name":"digits_cnn"')  # (everything, for who wants it)


def test_finished_resumable_tune_lrfind_predictions_reprs(tmp_path):
    fin = Finished(run=tmp_path / "r", history=History(rows=_rows(4)),
                   final={"train": {"loss": 0.5}, "val": {"loss": 0.25, "accuracy": 0.875}, "epochs_run": 4})
    assert repr(fin) == (f"Finished({str(tmp_path / 'r')!r}: 4 epochs, loss 1→0.25, val_loss best 0.1 at "
                         "epoch 2, val_accuracy best 0.9 at epoch 3; val loss 0.25, accuracy 0.875)")
    weights = {"dense": {"kernel": np.zeros((1000, 1000))}}
    res = Resumable(run=Path("runs/x"), info={"backend": "torch", "big": list(range(10_000))}, finished=False,
                    checkpoint=(weights, SimpleNamespace(epoch=7, history=History())), epochs_total=20)
    assert repr(res) == "Resumable('runs/x', torch, 7 of 20 epochs done)"
    trial = SimpleNamespace(number=4, value=0.123456, params={"units": 16, "lr": 0.0031622776})
    tuned = TuneResult(run=Path("runs/t"), spaces=[], metric="val_loss", direction="minimize",
                       trials=[SimpleNamespace()] * 6, ranked=[trial], counts={"complete": 5, "crashed": 1},
                       interrupted=None, stopped="the last 3 trials failed (x)")
    assert repr(tuned) == ("TuneResult('runs/t': 6 trials (5 complete, 1 crashed); best val_loss 0.1235 "
                           "(trial 4: units=16, lr=0.003162); stopped: the last 3 trials failed (x))")
    lf = LRFind("iris", "torch", "float32", 7, 1e-7, 10.0, 200, 16, "Adam", "train", lrs=[0.1] * 150,
                losses=[1.0] * 150, stopped_at_step=150, suggested_lr=0.0185, rule="steepest: the middle ...")
    assert repr(lf) == ("LRFind(iris on torch, 150 of 200 steps, lr 1e-07→10, stopped at step 150: "
                        "suggested lr 0.0185 (steepest))")
    pred = Predictions("categorical", np.zeros((500, 3)), ["class", "out0", "out1", "out2"],
                       np.zeros((500, 4)))
    assert repr(pred) == "Predictions(categorical, 500 rows × 4 columns: class, out0, out1, out2)"


def test_compiled_and_doctor_report_reprs_are_a_line(tmp_path):
    """api.compile_spec's Compiled printed the spec's whole source and syntax tree (6 KB for iris), a doctor
    Report every diagnosis' evidence and the spec's text."""
    from dlc import api

    ok = api.compile_spec(str(ROOT / "specs" / "iris.dlspec"))
    assert repr(ok).startswith(f"Compiled({str(ROOT / 'specs' / 'iris.dlspec')!r}: ok; Spec(iris: input (4,)")
    bad = tmp_path / "bad.dlspec"
    bad.write_text((ROOT / "specs" / "iris.dlspec").read_text().replace("Dense(3,", "Dense(3, bogus=1,"))
    assert repr(api.compile_spec(str(bad))).startswith(f"Compiled({str(bad)!r}: not ok, 1 error")
    from dlc.runtime.doctor import Diagnosis, Report

    found = Diagnosis(id="underfitting", severity="high", evidence="x" * 5000, remedy="y")
    report = Report(run=tmp_path / "r", kind="tune", diagnoses=[found], trial=3)
    assert repr(report) == f"Report({str(tmp_path / 'r')!r}, tune, best trial 3: underfitting (high))"
    empty = Report(run=tmp_path, kind="run", diagnoses=[])
    assert repr(empty) == f"Report({str(tmp_path)!r}, run: no finding)"
