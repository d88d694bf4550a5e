"""What `dlc run` shows, as a Keras user expects it: a progress bar with the running loss and metrics,
steps and time left; an epoch table whose columns stay aligned (wide numbers, nan, many metrics) with the '*'
of the best epoch explained and each epoch's real time; the same lines, plain, in the run folder's log.txt;
and tables (`dlc runs`, `dlc cv`, `dlc tune`) that survive a pipe."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from dlc.compiler import compile_text

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
model tiny {
  seed: 3
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (4)
  layers {
    Dense(8, activation=relu)
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: METRICS
  optimizer: Adam(lr=0.01)
  train {
    epochs: 3
    batch_size: 32
  }
}
"""
ANSI = re.compile(r"\x1b\[")


def spec(metrics: str = "[accuracy]"):
    r = compile_text(SPEC.replace("METRICS", metrics))
    assert r.ok, r.render()
    return r.spec


# ---------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("v", [0.0, 1.23456, -1.23456, 12.345, -99.996, 999.96, 123456.7, -999999.6, 1.5e6,
                               -2.5e12, 1e-4, -1.2345e-4, 1e-100, -1e-100, 1e300, float("nan"), float("inf"),
                               float("-inf")])
def test_a_value_never_overflows_its_cell(v):
    from dlc.cli.display import W, fmt_value

    text = fmt_value(v)
    assert len(text) <= W, text
    if v == v and abs(v) not in (0.0, float("inf")):
        assert float(text) == pytest.approx(v, rel=0.06), text  # still the number, roughly


def test_learning_rates_and_durations():
    from dlc.cli.display import fmt_duration, fmt_lr, fmt_pace

    assert [fmt_lr(x) for x in (0.001, 5e-5, 0.000123, 1e-10)] == ["0.001", "5e-5", "1.23e-4", "1e-10"]
    assert [fmt_duration(s) for s in (0.012, 0.9996, 1.44, 59.97, 125, 3725)] == \
        ["12ms", "1.0s", "1.4s", "1m00s", "2m05s", "1h02m"]
    assert [fmt_pace(s) for s in (0.025, 0.0003, 1.2)] == ["25ms/step", "300us/step", "1.2s/step"]


# ------------------------------------------------------------------------------------------- the table


def _plain_lines(table, rows):
    from dlc.cli.display import plain

    return [plain(x) for x in table.header()] + [plain(table.row(r, 0.0123)) for r in rows]


def test_columns_stay_aligned_with_wide_numbers_nan_and_many_metrics():
    from dlc.cli.display import EpochTable

    s = spec("[accuracy, precision, recall, f1]")
    table = EpochTable(s, has_val=True)  # no width limit: every column (the log's table)
    keys = ["loss", "accuracy", "precision", "recall", "f1"]
    values = [1.2345, -123456.7, float("nan"), 1e-7, -2.5e12, float("inf"), 0.5]
    rows = []
    for e in range(1, 4):
        row = {"epoch": e, "lr": [0.001, 5e-5, 0.000123][e - 1], "time_s": 0.01}
        for i, k in enumerate(keys):
            row[k] = values[(i + e) % len(values)]
            row[f"val_{k}"] = values[(i + 2 * e) % len(values)]
        rows.append(row)
    lines = _plain_lines(table, rows)
    body = lines[2:]
    assert len({len(x) for x in body}) == 1, "\n".join(lines)  # every row as wide as the others
    # each value ends where its header cell ends: the right edges of the numbers line up row to row
    edges = [{m.end() for m in re.finditer(r"\S+", x.replace("*", " "))} for x in body]
    assert all(e == edges[0] for e in edges), "\n".join(lines)
    assert len(lines[0]) <= len(body[0]) and "f1" in lines[0] and "nan" in "".join(body)


def test_a_narrow_console_drops_columns_not_alignment():
    from dlc.cli.display import EpochTable

    s = spec("[accuracy, precision, recall, f1]")
    table = EpochTable(s, has_val=True, width=60)
    row = {"epoch": 1, "loss": 0.5, "val_loss": 0.6, "accuracy": 0.7, "val_accuracy": 0.8, "precision": 0.1,
           "val_precision": 0.2, "recall": 0.3, "val_recall": 0.4, "f1": 0.5, "val_f1": 0.6, "lr": 0.01,
           "time_s": 0.5}
    lines = _plain_lines(table, [row])
    assert all(len(x) <= 60 for x in lines), lines


def test_the_best_epoch_mark_is_explained_and_survives_a_resume():
    from dlc.cli.display import EpochTable, plain

    table = EpochTable(spec(), has_val=True)
    assert table.footnote() is None
    rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": v, "accuracy": 0.5, "val_accuracy": 0.5, "lr": 0.01,
             "time_s": 0.01} for e, v in ((1, 0.9), (2, 0.8), (3, 0.85))]
    marks = ["*" in plain(table.row(r)) for r in rows]
    assert marks == [True, True, False]
    assert plain(table.footnote() or "") == "* best epoch so far (monitored: val_loss)"
    resumed = EpochTable(spec(), has_val=True)
    resumed.seed(rows[:2])  # epochs 1-2 were trained before the resume
    assert "*" not in plain(resumed.row(rows[2]))


def test_the_progress_bar_shows_steps_time_left_and_running_values():
    from rich.console import Console

    from dlc.cli.display import Progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=140, color_system=None)
    bar = Progress(console, 20)
    with bar:
        bar(2, 0, 47)
        bar(2, 12, 47, {"loss": 0.52, "accuracy": 0.81})
    text = buf.getvalue()
    assert "epoch 3/20" in text and "12/47" in text and "━" in text
    assert re.search(r"\d+ms left \d+(us|ms)/step - loss: 0\.5200 - accuracy: 0\.8100", text), text


# ------------------------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("console")
    path = base / "tiny.dlspec"
    path.write_text(SPEC.replace("METRICS", "[accuracy]"))
    run = base / "run"
    rc, out, err = run_cli("run", path, "--out", run)
    assert rc == 0, err
    assert out.strip() == str(run)
    return run, err


def test_the_console_lines_are_in_log_txt_plain(logged):
    run, err = logged
    log = (run / "log.txt").read_text()
    assert not ANSI.search(log) and "━" not in log and "\r" not in log
    lines = log.splitlines()
    assert lines[0].startswith("tiny on torch (cpu): 90 train / 30 val / 30 test samples")
    assert lines[1] == f"run directory: {run}"
    assert lines[2].split() == ["epoch", "loss", "accuracy", "lr", "time"]
    assert lines[3].split() == ["train", "val", "train", "val"]
    rows = [x for x in lines if re.match(r"\s+\d/3\s", x)]
    assert [x.split()[0] for x in rows] == ["1/3", "2/3", "3/3"]
    assert "* best epoch so far (monitored: val_loss)" in lines
    assert any(x.startswith("trained 3 epochs in ") for x in lines)
    assert lines[-4].split() == ["final", "loss", "accuracy"] and lines[-1].startswith("test ")
    # stderr (not a terminal here) has the same lines: no bar, nothing lost
    assert [x.rstrip() for x in err.splitlines() if x.strip()] == [x.rstrip() for x in lines]


def test_each_epoch_shows_its_real_time(logged):
    """It used to print 0.0s: time_s counts the training steps only and was shown to a tenth of a second;
    the column is now the epoch's wall-clock time (steps and validation), in ms when under a second."""
    run, _ = logged
    rows = [x for x in (run / "log.txt").read_text().splitlines() if re.match(r"\s+\d/3\s", x)]
    hist = json.loads((run / "history.json").read_text())
    for line, h in zip(rows, hist, strict=True):
        shown = line.split()[-1]
        assert shown != "0.0s" and re.fullmatch(r"\d+ms|\d+\.\ds|\d+m\d\ds", shown), line
        ms = float(shown[:-2]) / 1000 if shown.endswith("ms") else float(shown[:-1])
        assert ms >= h["time_s"] * 0.9  # the steps are part of the epoch


def test_a_failed_run_logs_why(tmp_path):
    path = tmp_path / "bad.dlspec"
    path.write_text(SPEC.replace("METRICS", "[accuracy]").replace("Adam(lr=0.01)", "SGD(lr=1e6)"))
    rc, _, err = run_cli("run", path, "--out", tmp_path / "run")
    assert rc == 1
    log = (tmp_path / "run" / "log.txt").read_text()
    assert log.splitlines()[-1].startswith("failed: loss became")


# ---------------------------------------------------------------------------------------------- tables


def test_a_piped_table_is_plain_and_never_cut():
    from dlc.cli.tables import plain_table

    long = "x" * 300
    text = plain_table("title", ["a", "value"], [["1", long], ["22", "3"]], right=("value",))
    lines = text.splitlines()
    assert lines[0] == "title" and lines[1].split() == ["a", "value"]
    assert long in text and len({len(x) for x in lines[1:]}) == 1


def test_cv_table_piped(tmp_path):
    path = tmp_path / "cv.dlspec"
    path.write_text(SPEC.replace("METRICS", "[accuracy]").replace(
        "holdout(val=0.2, test=0.2, stratify=true)", "kfold(k=3)").replace("epochs: 3", "epochs: 1"))
    rc, out, err = run_cli("cv", path, "--out", tmp_path / "cv")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "tiny: 3-fold cross-validation on torch"
    assert lines[1].split() == ["fold", "val", "loss", "val", "accuracy"]
    assert lines[-2].startswith("mean ± std") and lines[-1] == str(tmp_path / "cv")
    assert "│" not in out and "…" not in out


def test_the_summary_speed_is_the_samples_over_the_training_time():
    """Every epoch trains the same samples, so the line's speed is the epochs' harmonic mean (a slow first
    epoch, tracing, weighs as its time does): 223 and 5,120 samples/s give 427, not the faster epoch's."""
    from types import SimpleNamespace

    from dlc.cli.display import summary_lines

    stopping = SimpleNamespace(monitor="val_loss", patience=1)
    spec = SimpleNamespace(train=SimpleNamespace(early_stopping=stopping))
    hist = SimpleNamespace(stopped_early=True, restored_best=False, best_epoch=2, rows=[
        {"time_s": 6.0, "samples_per_s": 223.0}, {"time_s": 0.3, "samples_per_s": 5120.0}])
    lines = summary_lines(spec, hist, {})
    assert lines[0] == "stopped early after epoch 2: val_loss did not improve for 1 epoch"
    assert "(427 samples/s)" in lines[1]


@pytest.mark.parametrize("patience,said", [(0, "1 epoch"), (1, "1 epoch"), (3, "3 epochs")])
def test_the_early_stop_line_counts_the_epochs_that_did_not_improve(patience, said):
    """`early_stopping: (patience=0)` stops at the first epoch without improvement (Keras' rule), and the
    summary said "val_accuracy did not improve for 0 epochs": the epochs it waited are at least one."""
    from types import SimpleNamespace

    from dlc.cli.display import summary_lines

    stopping = SimpleNamespace(monitor="val_accuracy", patience=patience)
    spec = SimpleNamespace(train=SimpleNamespace(early_stopping=stopping))
    hist = SimpleNamespace(stopped_early=True, restored_best=False, best_epoch=3,
                           rows=[{"time_s": 0.1, "samples_per_s": 100.0}] * 4)
    line = summary_lines(spec, hist, {})[0]
    assert line == f"stopped early after epoch 4: val_accuracy did not improve for {said}"
