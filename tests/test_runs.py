"""Run bookkeeping: TensorBoard events with the same tags on both backends, run.json, dlc runs/plot."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlc.runtime.tensorboard import EventWriter, crc32c

from conftest import ROOT


def _dlc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dlc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, check=False)


def _scalars(run: Path) -> dict[str, list[float]]:
    """Read event files back with TensorBoard's own reader (no TensorFlow needed for it)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out: dict[str, list[float]] = {}
    for f in sorted(run.glob("events.out.tfevents.*")):
        for ev in EventFileLoader(str(f)).Load():
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append(v.simple_value if v.HasField("simple_value")
                                                 else v.tensor.float_val[0])
    return out


def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_event_writer_roundtrip(tmp_path):
    w = EventWriter(tmp_path)
    for e in (1, 2):
        w.scalars(e, {"epoch": e, "loss": 1.0 / e, "val_loss": 2.0 / e, "accuracy": 0.5, "lr": 0.1,
                      "time_s": 1.0})
    got = _scalars(tmp_path)
    assert set(got) == {"loss/train", "loss/val", "accuracy/train", "lr"}
    assert got["loss/train"] == pytest.approx([1.0, 0.5])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    for backend in ("torch", "keras"):
        r = _dlc("run", ROOT / "specs" / "iris.dlspec", "--backend", backend, "--epochs", "3",
                 "--out", base / f"iris-{backend}", "--quiet")
        assert r.returncode == 0, r.stderr
    return base


def test_tensorboard_same_tags_on_both_backends(two_runs):
    a, b = _scalars(two_runs / "iris-torch"), _scalars(two_runs / "iris-keras")
    assert set(a) == set(b) and {"loss/train", "loss/val", "lr"} <= set(a)
    assert len(a["loss/train"]) == 3
    assert a["loss/val"] == pytest.approx(b["loss/val"], rel=1e-4)


def test_run_json_records_preprocessing(two_runs):
    info = json.loads((two_runs / "iris-torch" / "run.json").read_text())
    assert info["backend"] == "torch" and info["input"] == [4]
    pre = info["preprocessing"]
    assert info["normalize"] == "none" or len(pre["shift"]) == 4


def test_dlc_runs_lists_both(two_runs):
    r = _dlc("runs", two_runs, "--json")
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)
    assert {x["backend"] for x in runs} == {"torch", "keras"}
    assert all(x["epochs"] == 3 and x["status"] == "done" for x in runs)
    r = _dlc("runs", two_runs)
    assert r.returncode == 0 and "iris-keras" in r.stdout


def test_dlc_runs_before_anything_was_trained_says_so(tmp_path, monkeypatch):
    """`dlc runs` in a folder without runs/ (a first-time user's, nothing trained yet) said `dlc: error: no
    such folder 'runs'`, exit 1. Now it says there are no runs yet and how one is made (stderr, exit 0,
    nothing on stdout; `[]` with --json); a DIR given that is not there, `runs` included, is an error."""
    from conftest import run_cli

    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli("runs")
    assert (rc, out) == (0, "") and err.splitlines() == [
        "dlc runs: no runs yet: there is no runs/ folder here (`dlc run SPEC` makes one)"], err
    rc, out, err = run_cli("runs", "--json")
    assert (rc, err) == (0, "") and json.loads(out) == []
    for given in ("runs", "nope"):
        rc, out, err = run_cli("runs", given)
        assert (rc, out) == (1, "") and err.splitlines() == [f"dlc: error: no such folder '{given}'"], err
    (tmp_path / "runs").mkdir()  # (an empty runs/ says what it always said)
    rc, out, err = run_cli("runs")
    assert (rc, out) == (0, "") and err.startswith("dlc runs: no run folders in runs "), err


def test_dlc_plot_overlays(two_runs, tmp_path):
    out = tmp_path / "cmp.png"
    r = _dlc("plot", two_runs / "iris-torch", two_runs / "iris-keras", "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = _dlc("plot", tmp_path)
    assert r.returncode == 1 and "not a run directory" in r.stderr and "Traceback" not in r.stderr


def test_an_interrupted_cv_folder_is_not_said_to_have_a_cv_json(tmp_path):
    """evaluate and predict on a cv folder cut short (fold_N/ written, no cv.json yet) refuse it without
    naming a cv.json it does not have; with cv.json they name it."""
    from conftest import run_cli

    cv = tmp_path / "cv"
    (cv / "fold_1").mkdir(parents=True)
    (cv / "ir.json").write_text("{}")
    (cv / "fold_1" / "history.json").write_text("[]")
    for argv in (["evaluate", cv], ["predict", cv, "--input", tmp_path / "x.csv"]):
        rc, _, err = run_cli(*argv)
        assert rc == 1 and "is a cross-validation run (fold_N folders, no cv.json yet)" in err, err
    (cv / "cv.json").write_text("{}")
    rc, _, err = run_cli("evaluate", cv)
    assert rc == 1 and "is a cross-validation run (cv.json)" in err, err


def test_an_interrupted_tune_is_listed_as_incomplete(tmp_path):
    """tune.json is written when `dlc tune` is interrupted too: its row counts the trials that ended (not a
    queued one) and says how many of the target did, where it said 'done, 15 trials' for 13 of 20."""
    from dlc.runtime.runs import describe

    run = tmp_path / "t"
    run.mkdir()
    states = ["COMPLETE"] * 13 + ["FAIL", "WAITING"]
    trials = [{"number": i, "state": s, "value": 0.5 if s == "COMPLETE" else None}
              for i, s in enumerate(states)]
    tune = {"spec": "t", "backend": "torch", "trials_target": 20, "trials": trials,
            "objective": {"metric": "val_loss"}, "best": {"number": 3, "value": 0.5}}
    (run / "tune.json").write_text(json.dumps(tune))
    row = describe(run)
    assert row["epochs"] == "14 trials" and row["status"] == "incomplete: 14 of 20 trials ended"
    tune["trials"] = [{"number": i, "state": "COMPLETE", "value": 0.5} for i in range(20)]
    (run / "tune.json").write_text(json.dumps(tune))
    assert describe(run)["status"] == "done"
    tune["trials"] = [{"number": i, "state": "FAIL", "value": None} for i in range(20)]  # (was "done")
    (run / "tune.json").write_text(json.dumps(tune))
    assert describe(run)["status"] == "failed: no trial completed (20 failed)"


def test_a_cv_cut_short_is_listed_with_its_backend(tmp_path):
    """A cv folder has env.json from its start: one cut short (no cv.json) is listed with its backend, where
    its row said '?'."""
    from dlc.runtime.runs import describe

    from conftest import run_cli

    spec = tmp_path / "kf.dlspec"
    text = (ROOT / "specs" / "iris.dlspec").read_text()
    spec.write_text(re.sub(r"split: holdout\([^)]*\)", "split: kfold(k=2)", text))
    rc, _, err = run_cli("cv", spec, "--backend", "keras", "--epochs", "1", "--out", tmp_path / "cv",
                         "--quiet")
    assert rc == 0, err
    assert describe(tmp_path / "cv")["epochs"] == "2 folds"
    (tmp_path / "cv" / "cv.json").unlink()  # as if killed before its end
    (tmp_path / "cv" / "fold_2" / "metrics.json").unlink()  # in its second fold
    row = describe(tmp_path / "cv")
    assert row["backend"] == "keras" and row["kind"] == "cv"
    assert row["epochs"] == "1 of 2 folds"  # (it said '2 folds': the folders begun, not the folds done)


def test_plot_draws_a_one_epoch_run_and_names_what_it_leaves_out(tmp_path, monkeypatch):
    """A 1-epoch run drew empty panels (a line through one point); a quantity not every run has is left out,
    and the figure says which."""
    from matplotlib.figure import Figure

    from dlc.runtime.runs import plot_runs

    def make(name, rows):
        run = tmp_path / name
        run.mkdir()
        (run / "ir.json").write_text("{}")
        (run / "history.json").write_text(json.dumps(rows))
        return run

    one = make("one", [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "lr": 0.01}])
    reg = make("reg", [{"epoch": e, "loss": 9.0 - e, "mae": 2.0, "val_loss": 9.5 - e, "lr": 0.01}
                       for e in (1, 2)])
    from matplotlib.axes import Axes

    notes, markers = [], []
    real_text, real_plot = Figure.text, Axes.plot

    def text(self, x, y, s, **kw):
        notes.append(s)
        return real_text(self, x, y, s, **kw)

    def plot(self, *a, **kw):
        markers.append(kw.get("marker"))
        return real_plot(self, *a, **kw)

    monkeypatch.setattr(Figure, "text", text)
    monkeypatch.setattr(Axes, "plot", plot)
    out = plot_runs([one, reg], tmp_path / "p.png")
    assert out.stat().st_size > 1000
    assert notes == ["not drawn (not in every run): accuracy, mae"]
    assert "o" in markers


def test_plot_scales_the_loss_and_lr_as_curves_png_and_keeps_the_legend_off_the_curves(tmp_path, monkeypatch):
    """`dlc plot` drew a loss falling from 2 to 0.0005 on a linear axis (the best run a flat line at 0), a
    constant lr with ticks 0.00096 to 0.00104, and the legend, a line per run and style, inside the loss
    panel over the curves. Now: a log loss axis with labels that do not crowd, the lr's one value as its one
    tick, and one legend below the panels (each run's colour, then train solid and validation dashed)."""
    from dlc.runtime import runs as runs_module
    from dlc.runtime.runs import plot_runs

    made = []
    real_figure = runs_module.figure

    def figure(*a, **kw):
        made.append(real_figure(*a, **kw))
        return made[-1]

    monkeypatch.setattr(runs_module, "figure", figure)

    def make(name, losses):
        run = tmp_path / name
        run.mkdir()
        (run / "ir.json").write_text("{}")
        rows = [{"epoch": e + 1, "loss": v, "accuracy": 0.9, "val_loss": 0.3, "val_accuracy": 0.9,
                 "lr": 0.001} for e, v in enumerate(losses)]
        (run / "history.json").write_text(json.dumps(rows))
        return run

    a = make("none", [2.0 * 0.85 ** e for e in range(60)])  # 2 -> 0.0001: 4.3 decades
    b = make("l2", [2.0 - 0.03 * e for e in range(60)])
    out = plot_runs([a, b], tmp_path / "p.png")
    assert out.stat().st_size > 1000
    fig, axes = made[0]
    loss, _, lr = axes[0]
    assert loss.get_yscale() == "log"
    low, high = loss.get_ylim()
    labelled = [t for t in loss.get_yticks() if low <= t <= high]
    assert 3 <= len(labelled) <= 8, labelled  # (1, 2, 3, 5 per decade: 17 labels, touching)
    assert list(lr.get_yticks()) == [0.001] and lr.get_ylim()[0] < 0.001 < lr.get_ylim()[1]
    assert all(ax.get_legend() is None for ax in axes[0])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["none", "l2", "train", "validation"]
    legend_top = fig.legends[0].get_window_extent().y1
    fig.canvas.draw()
    assert all(ax.get_window_extent().y0 > legend_top for ax in axes[0])  # below every panel
