"""`dlc lr-find`: the learning-rate range test. The algorithm on a scripted session (exact smoothing, stop
rule, suggestion, batch order), the command on specs/iris.dlspec (JSON, PNG, a sensible suggestion), the same
curve on both backends in float64, and one-line errors for options and specs it cannot take."""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
import pytest

from dlc import api
from dlc.cli import jsonout
from dlc.cli import lr_find as cli
from dlc.compiler import compile_file
from dlc.runtime import lr_find as lf

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = ROOT / "specs" / "iris.dlspec"


class Scripted:
    """A Session whose loss is a function of the lr it was set to (and records the batches it is given)."""

    name = "scripted"

    def __init__(self, loss_at):
        self.loss_at, self.lr, self.batches = loss_at, None, []

    def load_data(self, x, y):
        return (x, y)

    def set_lr(self, lr):
        self.lr = lr

    def train_epoch(self, handle, perm, batch_size, progress=None):
        self.batches.append(np.array(perm))
        return np.array([self.loss_at(self.lr)]), None, np.array([float(len(perm))])


def iris():
    spec = api.load(IRIS)
    return spec, api.load_data(spec)


def valley(lr: float) -> float:
    """Flat at 2 up to lr 1e-4, down (linear in log lr) to 0.2 at lr 1e-1, then up 1000× per decade."""
    x = math.log10(lr)
    if x <= -4:
        return 2.0
    if x <= -1:
        return 2.0 - 1.8 * (x + 4) / 3
    return 0.2 * 1000 ** (x + 1)


def test_smoothing_stop_rule_and_suggestion_on_a_scripted_loss():
    spec, data = iris()
    r = lf.run_test(Scripted(valley), spec, data, steps=100, start=1e-6, end=10.0)
    lrs = np.array(r.lrs)
    assert lrs[0] == 1e-6 and np.all(np.diff(lrs) > 0)
    assert np.allclose(lrs, lf.lr_schedule(1e-6, 10.0, 100)[:len(lrs)], rtol=1e-15)
    # fastai's smoothing, recomputed
    avg, want = 0.0, []
    for i, loss in enumerate(r.losses):
        avg = 0.98 * avg + 0.02 * loss
        want.append(avg / (1 - 0.98 ** (i + 1)))
    assert np.allclose(r.smoothed, want, rtol=1e-14)
    # it stopped at the first step whose smoothed loss passed 4 × the minimum so far, and not before
    k = r.stopped_at_step
    assert k is not None and k < 100 and k == len(r.lrs)
    assert r.smoothed[-1] > 4 * min(r.smoothed[:-1]) and all(
        s <= 4 * min(r.smoothed[:i + 1]) for i, s in enumerate(r.smoothed[:-1]))
    assert "exceeded 4 × its minimum" in r.stop_reason
    # the steepest half-decade lies in the descent (1e-4 .. 1e-1); min/10 is printed beside it
    assert r.rule.startswith("steepest") and r.suggested_lr == r.steepest_lr
    assert 1e-4 <= r.suggested_lr <= 1e-1
    assert r.min_loss_lr == lrs[int(np.argmin(r.smoothed))]
    assert r.min_over_10_lr == pytest.approx(r.min_loss_lr / 10)
    assert not any("only" in n and "steps" in n for n in r.notes)  # (100 steps: enough for the smoothing)


def test_batches_follow_the_loops_seeded_epoch_order():
    spec, data = iris()
    session = Scripted(lambda lr: 1.0)
    lf.run_test(session, spec, data, steps=20, start=1e-5, end=1e-3)
    n, bs = len(data.train.x), spec.train.batch_size
    per_epoch = -(-n // bs)  # 90 rows, batches of 16: 6 steps, the last of 10
    assert [len(b) for b in session.batches[:per_epoch]] == [16] * 5 + [10]
    for epoch in range(3):
        got = np.concatenate(session.batches[epoch * per_epoch:(epoch + 1) * per_epoch])
        assert np.array_equal(got, api.epoch_order(spec, epoch, n))


def test_a_non_finite_loss_stops_and_is_null_in_json():
    spec, data = iris()
    r = lf.run_test(Scripted(lambda lr: 1.0 if lr < 1e-3 else math.nan), spec, data, steps=50, start=1e-6,
                    end=1.0)
    assert r.stopped_at_step == len(r.lrs) and r.lrs[-1] >= 1e-3 > r.lrs[-2]
    assert "nan" in r.stop_reason
    out = json.loads(jsonout.dumps(r.to_json()))
    assert out["losses"][-1] is None and out["stopped_at_step"] == len(r.lrs)
    # a loss that never falls: no descent to measure, the minimum/10 rule (at least --start) instead
    assert r.steepest_lr is None and r.rule.startswith("minimum/10") and r.suggested_lr >= r.start


def test_cli_on_iris_json_png_and_a_sensible_suggestion(tmp_path):
    png = tmp_path / "plots" / "iris.png"
    rc, out, err = run_cli("lr-find", IRIS, "--json", "--out", png)
    assert rc == 0, err
    d = json.loads(out)
    for key in ("lrs", "losses", "suggested_lr", "rule", "min_loss_lr", "stopped_at_step"):
        assert key in d, key
    lrs = d["lrs"]
    assert lrs[0] == pytest.approx(1e-7) and all(b > a for a, b in zip(lrs, lrs[1:], strict=False))
    assert len(d["losses"]) == len(lrs) <= 200 and d["steps"] == 200
    assert d["stopped_at_step"] is None or d["stopped_at_step"] == len(lrs)
    assert 1e-7 <= d["suggested_lr"] <= 10 and 1e-4 <= d["suggested_lr"] <= 1  # the spec trains at 0.01
    assert d["rule"].startswith("steepest") and d["min_loss_lr"] in lrs
    assert "training part of the holdout split (90 of 150" in d["data"]
    data = png.read_bytes()  # a PNG of a real plot, in the folder made for it
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 20_000
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 600 and height >= 400
    assert d["plot"] == str(png)


def test_both_backends_give_the_same_curve_in_float64():
    pytest.importorskip("tensorflow")
    spec = api.lr_find_spec(compile_file(IRIS), dtype="float64")
    runs = {b: api.lr_find(spec, b, steps=40, start=1e-4, end=10.0, device="cpu") for b in ("torch", "keras")}
    a, b = (np.array(runs[k].losses) for k in ("torch", "keras"))
    assert len(a) == len(b) >= 30
    assert np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))) < 1e-12
    assert runs["torch"].stopped_at_step == runs["keras"].stopped_at_step
    assert runs["torch"].suggested_lr == pytest.approx(runs["keras"].suggested_lr, rel=1e-12)


@pytest.mark.parametrize("args,says", [
    (["--start", "1", "--end", "0.1"], "--start must be below --end"),
    (["--start", "0.1", "--end", "0.1"], "--start must be below --end"),
    (["--steps", "5"], "--steps must be at least 10"),
    (["--start", "0"], "must be positive"),
    (["--steps", "99999999999999999999"], "--steps must be at most 100000"),  # (was numpy's ValueError)
])
def test_bad_options_are_one_line_exit_2(args, says, tmp_path):
    rc, out, err = run_cli("lr-find", IRIS, *args, "--out", tmp_path / "x.png")
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0 and err.startswith("dlc: error: ") and says in err, err
    assert not (tmp_path / "x.png").exists()


def test_an_out_that_cannot_be_written_is_refused_before_training(tmp_path):
    rc, out, err = run_cli("lr-find", IRIS, "--out", tmp_path)
    assert rc == 2 and err.startswith("dlc: error: --out ") and "is a folder" in err and err.count("\n") == 1
    rc, out, err = run_cli("lr-find", IRIS, "--out", "")
    assert rc == 2 and "--out: an empty name is not a file" in err and err.count("\n") == 1
    (tmp_path / "file").write_text("")
    rc, out, err = run_cli("lr-find", IRIS, "--out", tmp_path / "file" / "x.png")
    assert rc == 2 and "cannot make its folder" in err and err.count("\n") == 1
    assert f"({tmp_path / 'file'} is a file, not a folder)" in err and "File exists" not in err


def _variant(tmp_path, name: str, *edits: tuple[str, str]):
    text = IRIS.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.dlspec"
    path.write_text(text)
    return path


SEARCH = "  search {\n    method: random\n    trials: 3\n    objective: minimize val_loss\n  }\n\n  train {"


def test_search_spaces_kfold_and_schedule(tmp_path):
    # only the lr searched: accepted, and said
    lr_only = _variant(tmp_path, "lr_only", ("Adam(lr=0.01)", "Adam(lr=loguniform(1e-3, 1e-1))"),
                       ("  train {", SEARCH))
    rc, out, err = run_cli("lr-find", lr_only, "--steps", "12", "--out", tmp_path / "a.png")
    assert rc == 0, err
    assert "learning rate is a search space" in out and "suggested lr:" in out
    assert "only 12 steps: the smoothed loss lags each step's by about 50 steps" in out  # (unreliable)
    # anything else searched: a positioned spec error
    units = _variant(tmp_path, "units", ("Dense(16,", "Dense(choice(8, 16),"), ("  train {", SEARCH))
    rc, out, err = run_cli("lr-find", units, "--out", tmp_path / "b.png")
    assert rc == 2 and "E502" in err and "layers[0].units" in err and "Traceback" not in err
    # kfold: every row but the test part; the schedule is off (the lrs are the test's own)
    kfold = _variant(tmp_path, "kfold", ("holdout(val=0.2, test=0.2, stratify=true)", "kfold(k=3, test=0.2)"),
                     ("  train {", "  schedule: step(every=2, factor=0.5)\n\n  train {"))
    rc, out, err = run_cli("lr-find", kfold, "--steps", "12", "--json", "--out", tmp_path / "c.png")
    assert rc == 0, err
    d = json.loads(out)
    assert d["data"].startswith("every row but the test part (120 of 150)")
    assert any("schedule (step) is off" in n for n in d["notes"])
    assert np.allclose(d["lrs"], lf.lr_schedule(1e-7, 10.0, 12), rtol=1e-15)


def test_cli_defaults_are_the_apis():
    assert (cli.DEFAULT_STEPS, cli.DEFAULT_START, cli.DEFAULT_END, cli.MIN_STEPS, cli.MAX_STEPS) == \
        (lf.DEFAULT_STEPS, lf.DEFAULT_START, lf.DEFAULT_END, lf.MIN_STEPS, lf.MAX_STEPS)
    assert 100 <= lf.DEFAULT_STEPS <= 300


def test_a_range_wider_than_a_float_is_exponential_not_inf():
    # 1 / 1e-320 overflows: every lr past the first was inf ("the loss became nan at lr inf")
    lrs = lf.lr_schedule(1e-320, 1.0, 12)
    assert np.all(np.isfinite(lrs)) and lrs[0] == 1e-320 and lrs[-1] == 1.0 and np.all(np.diff(lrs) > 0)
    assert np.allclose(np.diff(np.log(lrs)), -math.log(1e-320) / 11, rtol=1e-3)
    wide = lf.lr_schedule(1e-300, 1e300, 12)
    assert np.all(np.isfinite(wide)) and wide[-1] == 1e300
    spec, data = iris()
    r = lf.run_test(Scripted(lambda lr: 1.0 if lr < 1e-3 else math.nan), spec, data, steps=12, start=1e-300,
                    end=1e300)
    jsonout.dumps(r.to_json())  # (--json failed: "Out of range float values")
    assert "lr inf" not in r.stop_reason


def test_an_out_in_a_folder_no_file_can_be_made_in_is_refused_before_training(tmp_path, monkeypatch):
    # os.access says yes to root on /proc or a read-only mount; the plot failed after the whole test
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")
    monkeypatch.setattr("dlc.runtime.rundir.tempfile.mkstemp", refuse)
    with pytest.raises(lf.LRFindError, match="cannot write a file in its folder"):
        lf.check_out(tmp_path / "x.png")


def test_the_plot_shows_the_descent_not_the_divergence_after_it(tmp_path, monkeypatch):
    r = lf.run_test(Scripted(valley), *iris(), steps=100, start=1e-6, end=10.0)
    assert r.smoothed[-1] > 4 * r.min_loss
    figures = []
    monkeypatch.setattr(lf, "save_figure", lambda fig, path: figures.append(fig) or path)
    lf.plot(r, tmp_path / "v.png")
    lo, hi = figures[0].axes[0].get_ylim()
    # the descent from 2 to its minimum fills the axis; the divergence runs off its top
    assert lo <= r.min_loss and 2.0 <= hi < 2.5 < r.smoothed[-1]


def test_an_out_that_cannot_be_written_names_its_folder_and_what_to_do(tmp_path, monkeypatch):
    """The default lr_find.png in a folder no file can be made in (cd /proc) named no folder and no way out;
    a name too long for the file system was an OSError with 'set DLC_TRACEBACK=1'."""
    monkeypatch.chdir(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")
    monkeypatch.setattr("dlc.runtime.rundir.tempfile.mkstemp", refuse)
    with pytest.raises(lf.LRFindError) as e:
        lf.check_out("lr_find.png")
    assert f"its folder {os.getcwd()} (Read-only file system); give --out a file in a folder" in str(e.value)
    with pytest.raises(lf.LRFindError, match="File name too long; give a shorter name"):
        lf.check_out(tmp_path / ("a" * 300 + ".png"))


def test_a_mixed_precision_spec_says_it_trains_mixed(tmp_path):
    """The header names the spec's dtype (float32); a note says the steps run in mixed precision (the header
    alone hid it)."""
    mixed = _variant(tmp_path, "mixed", ("  train {", "  train {\n    precision: mixed_bfloat16"))
    rc, out, err = run_cli("lr-find", mixed, "--steps", "12", "--json", "--out", tmp_path / "m.png")
    assert rc == 0, err
    notes = json.loads(out)["notes"]
    said = ("precision: mixed_bfloat16: the test trains in mixed precision, as the spec says, its weights in "
            "float32")
    assert said in notes, notes
