"""Leftovers of an audit: `dlc runs` dated and ordered cv and tune folders by their last-modified time (which
`dlc doctor --fix`, `export` or a refused `tune --out` changes), not when they started; `dlc evaluate` of a cv
folder sent the user to `dlc runs`, which shows only the mean ± std, for each fold's metrics; `dlc predict
--output` onto the run's own data file or spec called it "the input"; the doctor called a run trained with
--no-evidence one from before dlc recorded the evidence; the catalogue page blamed its largest float32 |Δ| on
the diabetes regression, where the results put it on depthwiseconv2d_same_s2's near-tie."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_run_folders import one_line

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
model tiny {
  seed: 3
  data {
    source: npz("data.npz")
    split: holdout(val=0.2)
  }
  input: (3)
  layers {
    Dense(DENSE, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 1
    batch_size: 16
  }
SEARCH}
"""
SEARCH = """  search {
    method: grid
    trials: 1
    objective: minimize val_loss
  }
"""


def write_spec(folder: Path, search: bool = False) -> Path:
    """The tiny spec (with a one-trial search block when `search`) and its data.npz in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(folder / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    path = folder / ("tune.dlspec" if search else "tiny.dlspec")
    path.write_text(SPEC.replace("DENSE", "choice(2)" if search else "2").replace("SEARCH", SEARCH if search
                                                                                 else ""))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A cv folder (3 folds), then a finished run, trained from the tiny spec."""
    base = tmp_path_factory.mktemp("audit")
    spec = write_spec(base / "spec")
    rc, _, err = run_cli("cv", spec, "--k", "3", "--out", base / "runs" / "cvd", "--quiet")
    assert rc == 0, err
    time.sleep(1.1)  # (the run starts a second after the cv at least: `dlc runs` orders by the second)
    rc, _, err = run_cli("run", spec, "--out", base / "runs" / "r1", "--quiet")
    assert rc == 0, err
    return base


def _listed(root: Path) -> list[dict]:
    rc, out, err = run_cli("runs", root, "--json")
    assert rc == 0, err
    return json.loads(out)


def _touch(folder: Path, when: str) -> None:
    t = time.mktime(time.strptime(when, "%Y-%m-%d %H:%M"))
    os.utime(folder, (t, t))


# ------------------------------------------------------------ 1. cv and tune folders dated by their start


def test_cv_json_records_when_the_cross_validation_started(base):
    started = json.loads((base / "runs" / "cvd" / "cv.json").read_text())["started"]
    run_started = json.loads((base / "runs" / "r1" / "run.json").read_text())["started"]
    assert started <= run_started  # (the cv was trained first)


def test_runs_dates_and_orders_a_cv_folder_by_its_start_not_its_last_change(base):
    cvd, r1 = base / "runs" / "cvd", base / "runs" / "r1"
    # a file written into each folder later (doctor --fix, export) changes its time, not its start
    _touch(cvd, "2026-11-30 23:59")
    _touch(r1, "2026-11-29 10:00")
    rows = _listed(base / "runs")
    assert [Path(r["run"]).name for r in rows] == ["cvd", "r1"]
    cv_started = json.loads((cvd / "cv.json").read_text())["started"]
    run_started = json.loads((r1 / "run.json").read_text())["started"]
    assert rows[0]["date"] == cv_started[:16].replace("T", " ")
    assert rows[1]["date"] == run_started[:16].replace("T", " ")


def test_a_cv_folder_of_an_older_dlc_keeps_the_folders_time(base, tmp_path):
    import shutil

    old = tmp_path / "runs" / "old"
    shutil.copytree(base / "runs" / "cvd", old)
    cv = json.loads((old / "cv.json").read_text())
    del cv["started"]
    (old / "cv.json").write_text(json.dumps(cv))
    _touch(old, "2026-01-02 03:04")
    assert [r["date"] for r in _listed(tmp_path / "runs")] == ["2026-01-02 03:04"]


def test_a_failed_cv_records_its_start_too(tmp_path, monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("no training today")

    monkeypatch.setattr("dlc.runtime.loop.train", fails)
    spec = write_spec(tmp_path / "spec")
    rc, _, err = run_cli("cv", spec, "--k", "3", "--out", tmp_path / "cvf", "--quiet")
    assert rc == 1 and "no training today" in err, err
    cv = json.loads((tmp_path / "cvf" / "cv.json").read_text())
    assert cv["failed"] == "fold 1 of 3: no training today"
    assert isinstance(cv["started"], str) and time.strptime(cv["started"], "%Y-%m-%dT%H:%M:%S")


def test_tune_json_records_when_the_search_started_and_a_resume_keeps_it(tmp_path):
    spec = write_spec(tmp_path / "spec", search=True)
    out = tmp_path / "runs" / "tn"
    rc, _, err = run_cli("tune", spec, "--out", out, "--quiet")
    assert rc == 0, err
    tune = json.loads((out / "tune.json").read_text())
    assert isinstance(tune["started"], str)
    # a tune.json of 2020 (as if the search began then): the same search resumed keeps it
    tune["started"] = "2020-05-06T07:08:09"
    (out / "tune.json").write_text(json.dumps(tune))
    rc, _, err = run_cli("tune", spec, "--out", out, "--quiet")
    assert rc == 0, err
    assert json.loads((out / "tune.json").read_text())["started"] == "2020-05-06T07:08:09"
    _touch(out, "2026-11-30 23:59")
    assert [r["date"] for r in _listed(tmp_path / "runs")] == ["2020-05-06 07:08"]


# ------------------------------------------------------------------ 2. evaluate's hint on a cv or tune folder


def test_evaluate_of_a_cv_folder_points_to_where_each_folds_metrics_are(base):
    cvd = base / "runs" / "cvd"
    rc, _, err = run_cli("evaluate", cvd)
    assert rc == 1
    line = one_line(err)
    assert f"each fold's metrics are in {cvd / 'fold_N' / 'metrics.json'}" in line, line
    assert "shows each fold" not in line
    assert all((cvd / f"fold_{i}" / "metrics.json").is_file() for i in (1, 2, 3))
    # and `dlc runs` is named for what it shows: one row, the mean ± std
    assert f"their mean ± std: `dlc runs {cvd}`" in line
    assert len(_listed(cvd)) == 1 and _listed(cvd)[0]["std"]


def _tune_folder(folder: Path, best: bool) -> Path:
    folder.mkdir(parents=True)
    (folder / "trials").mkdir()
    trial = {"number": 0, "state": "COMPLETE" if best else "FAIL", "params": {},
             "outcome": "complete" if best else "failed", "value": 0.5 if best else None}
    (folder / "tune.json").write_text(json.dumps({"spec": "tiny", "backend": "torch", "trials": [trial],
                                                  "trials_target": 1, "best": None}))
    if best:
        (folder / "best.dlspec").write_text("model tiny {}\n")
    return folder


def test_evaluate_of_a_tune_folder_names_its_best_spec_only_where_there_is_one(tmp_path):
    with_best = _tune_folder(tmp_path / "tb", best=True)
    rc, _, err = run_cli("evaluate", with_best)
    assert rc == 1 and f"`dlc run {with_best / 'best.dlspec'}`" in one_line(err), err
    without = _tune_folder(tmp_path / "tn", best=False)
    rc, _, err = run_cli("evaluate", without)
    line = one_line(err)
    assert rc == 1 and "best.dlspec`" not in line and "has no best.dlspec" in line, line
    assert f"`dlc runs {without}` shows where it stands" in line


# ------------------------------------------------------------ 3. an --output onto the run's spec or data


@pytest.mark.parametrize("name, what", [("data.npz", "the run's data file"),
                                        ("tiny.dlspec", "the run's spec")])
def test_predict_names_the_runs_own_file_it_refuses_to_overwrite(base, tmp_path, name, what):
    (tmp_path / "in.csv").write_text("0.1,0.2,0.3\n")
    target = base / "spec" / name
    before = target.read_bytes()
    rc, _, err = run_cli("predict", base / "runs" / "r1", "--input", tmp_path / "in.csv", "--output", target)
    line = one_line(err)
    assert rc == 2 and f"it is {what} {target}" in line, line
    assert "same file as the input" not in line
    assert target.read_bytes() == before


def test_export_names_the_runs_data_file_it_refuses_to_overwrite(base):
    target = base / "spec" / "data.npz"
    rc, _, err = run_cli("export", base / "runs" / "r1", "--output", target)
    assert rc == 2 and f"it is the run's data file {target}" in one_line(err), err


def test_predict_onto_its_input_still_says_the_input(base, tmp_path):
    (tmp_path / "in.csv").write_text("0.1,0.2,0.3\n")
    rc, _, err = run_cli("predict", base / "runs" / "r1", "--input", tmp_path / "in.csv", "--output",
                         tmp_path / "in.csv")
    assert rc == 2 and "same file as the input" in one_line(err), err


# -------------------------------------------------------------------- 4. a run trained with --no-evidence


def test_doctor_says_a_run_was_trained_with_no_evidence(tmp_path):
    spec = write_spec(tmp_path / "spec")
    run = tmp_path / "ne"
    rc, _, err = run_cli("run", spec, "--out", run, "--no-evidence", "--quiet")
    assert rc == 0, err
    info = json.loads((run / "run.json").read_text())
    assert info["evidence"] is False and not (run / "evidence.json").exists()
    rc, out, err = run_cli("doctor", run)
    assert rc == 0, err
    text = " ".join(out.split())
    assert "no evidence.json (the run was trained with --no-evidence)" in text, out
    assert "from before dlc recorded it" not in text
    # a run.json of an older dlc (no `evidence`): as before
    del info["evidence"]
    (run / "run.json").write_text(json.dumps(info))
    rc, out, err = run_cli("doctor", run)
    assert rc == 0 and "(a run from before dlc recorded it)" in " ".join(out.split()), out


def test_a_run_with_evidence_records_it(base):
    assert json.loads((base / "runs" / "r1" / "run.json").read_text())["evidence"] is True


# --------------------------------------------------------------- 5. the catalogue's largest float32 |Δ|


def test_catalogue_names_the_fixture_of_the_largest_float32_difference():
    from dlc.runtime.catalogue import render, results

    res = results()
    top = max(res, key=lambda f: res[f].get("f32_step_loss") or 0)
    x = res[top]["f32_step_loss"]
    mant, _, exp = f"{x:.1e}".partition("e")
    page = render(markdown=True)
    assert f"The largest float32 |Δ|, {mant}e{int(exp)}, is {top}'s" in page
    assert "diabetes regression targets" not in page
    if top == "depthwiseconv2d_same_s2" and res[top]["f32_of_bound"] > 1:
        assert page.count("near-tie") == 1
        assert f"of {top} (a |Δ| of {mant}e{int(exp)}) shows on every item it uses" in page


def test_catalogue_prose_follows_the_results():
    from dlc.runtime.catalogue import largest_f32

    def fixture(f32, bound, items):
        return {"f32_step_loss": f32, "f32_of_bound": bound, "items": items}

    a, b, c = ["layer", "Dense"], ["layer", "Conv2D"], ["loss", "mse"]
    within = {"x": fixture(1e-3, 0.5, [a, c]), "y": fixture(2e-4, 0.1, [a])}
    assert largest_f32(within) == "The largest float32 |Δ|, 1.0e-3, is x's."
    # over the bound, not a documented near-tie, its figure on Conv2D only (Dense has a larger one elsewhere)
    over = {"x": fixture(1e-3, 2.0, [a, b]), "y": fixture(5e-2, 0.9, [a]), "z": fixture(1e-4, 5.0, [a])}
    text = largest_f32(over)
    assert text.startswith("The largest float32 |Δ|, 5.0e-2, is y's. ")  # (y is within the bound)
    assert "The f32 of bound 2.00 of x (a |Δ| of 1.0e-3) shows on Conv2D: it is that fixture's, over " \
           "the suite's bound" in text and "near-tie" not in text
    assert "The f32 of bound 5.00 of z (a |Δ| of 1.0e-4) shows on every item it uses" in text
    # a documented near-tie, shown on every item it uses
    tie = {"depthwiseconv2d_same_s2": fixture(7e-3, 3000.0, [a, b]), "y": fixture(1e-3, 0.5, [a])}
    text = largest_f32(tie)
    assert text.startswith("The largest float32 |Δ|, 7.0e-3, is depthwiseconv2d_same_s2's; the largest "
                           "within the bound, 1.0e-3, y's. ")
    assert "shows on every item it uses: it is that fixture's near-tie" in text
    assert largest_f32({}) == ""
