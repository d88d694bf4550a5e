"""`dlc doctor` on a tune folder: which hyperparameter matters (fANOVA importance, seeded: the same numbers
on every call) and the best region (the ranges `dlc tune --refine` searches next), in the text and JSON
reports and drawn by `--plot` (importance.png); too few trials, a flat objective and an old tune.json are a
note, not a crash. Tune folders are written here as `dlc tune` writes them (tune.json with its spaces and
trials, the best trial's folder); one real tiny `dlc tune` run is opt-in (slow: its trial processes cost ~30 s
here)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from dlc.compiler.search import Space, refine, top_trials
from dlc.runtime.doctor import diagnose
from dlc.runtime.doctor.importance import IMPORTANCE_MIN_TRIALS
from dlc.runtime.rundir import foreign_entries

from conftest import run_cli

SPEC = """\
model tiny {
  seed: 5
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.3, stratify=true)
  }
  input: (4)
  layers {
    Dense(16, activation=relu)
    Dropout(0.1)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=0.01)
  train {
    epochs: 3
    batch_size: 16
  }
}
"""

SPACES = [Space("layers[0].units", "choice", (10, 11), (10, 24), [4, 16, 64], ["4", "16", "64"]),
          Space("layers[1].rate", "uniform", (11, 13), (11, 30), low=0.0, high=0.5),
          Space("optimizer.learning_rate", "loguniform", (16, 21), (16, 43), low=1e-4, high=1.0)]
LR, UNITS, RATE = "optimizer.learning_rate", "layers[0].units", "layers[1].rate"


def objective(p: dict) -> float:
    """A val_loss that depends on the learning rate (best near 1e-2) and hardly on anything else."""
    return 0.3 + (math.log10(p[LR]) + 2) ** 2 + 0.002 * (p[UNITS] == 4) + 0.001 * p[RATE]


def tune_folder(folder: Path, n: int = 30, value=objective, extra: list[dict] | None = None,
                spaces: list[Space] | None = SPACES) -> Path:
    """A tune folder as `dlc tune` writes it: tune.json (spaces, trials, best), best.dlspec, the best trial's
    history.json; `n` random trials of `value`, then `extra` trials as given."""
    rng = random.Random(3)
    trials = []
    for i in range(n):
        p = {UNITS: rng.choice([4, 16, 64]), RATE: rng.uniform(0.0, 0.5), LR: 10 ** rng.uniform(-4, 0)}
        trials.append({"number": i, "state": "COMPLETE", "value": value(p), "params": p, "duration_s": 1.0})
    for t in extra or []:
        trials.append({"number": len(trials), **t})
    done = [t for t in trials if t["state"] == "COMPLETE"]
    best = min(done, key=lambda t: t["value"]) if done else None
    folder.mkdir(parents=True)
    (folder / "best.dlspec").write_text(SPEC)
    summary = {"spec": "tiny", "spec_file": str(folder / "tiny.dlspec"), "backend": "torch",
               "method": "random", "objective": {"direction": "minimize", "metric": "val_loss"},
               "trials": trials,
               "best": None if best is None else {"number": best["number"], "value": best["value"],
                                                  "params": best["params"], "spec": "best.dlspec"}}
    if spaces is not None:
        summary["spaces"] = [sp.to_json() for sp in spaces]
    (folder / "tune.json").write_text(json.dumps(summary))
    if best is not None:
        trial = folder / "trials" / f"{best['number']:04d}"
        trial.mkdir(parents=True)
        rows = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.97, "val_loss": 1.0 / e + 0.05,
                 "val_accuracy": 0.96, "lr": 0.01} for e in range(1, 4)]
        (trial / "history.json").write_text(json.dumps(rows))
    return folder


def test_the_learning_rate_matters_and_its_best_region_is_what_refine_searches(tmp_path):
    run = tune_folder(tmp_path / "tune")
    imp = diagnose(run).importance
    assert imp is not None and imp.note is None and imp.completed == 30
    assert list(imp.importance)[0] == LR and imp.importance[LR] > 0.8, imp.importance
    assert sum(imp.importance.values()) == pytest.approx(1.0)
    assert all(imp.importance[n] < 0.1 for n in (UNITS, RATE)), imp.importance
    # the best region: the values of the top trials, exactly the ranges `dlc tune --refine` would search
    trials = json.loads((run / "tune.json").read_text())["trials"]
    top = top_trials(trials, "minimize")
    assert imp.top_trials == [t["number"] for t in top] and len(top) == 8  # a quarter of 30, rounded up
    units, rate, lr = refine(SPACES, top)
    region = imp.best_region
    assert (region[LR]["low"], region[LR]["high"]) == (lr.low, lr.high)
    assert region[LR]["low"] < 1e-2 < region[LR]["high"] and region[LR]["high"] / region[LR]["low"] < 10
    assert region[UNITS]["options"] == units.options and (region[RATE]["low"], region[RATE]["high"]) == \
        (rate.low, rate.high)
    assert region[LR]["best"] == top[0]["params"][LR]
    advice = " ".join(imp.advice)
    assert f"search {LR} in [" in advice and "matters little here" in advice
    assert f"`dlc tune --refine {run}` searches exactly these best regions" in advice


def test_the_importances_are_the_same_on_every_call(tmp_path):
    run = tune_folder(tmp_path / "tune", n=12)
    first, again = diagnose(run).importance, diagnose(run).importance
    assert first is not None and again is not None and first.importance == again.importance


def test_text_json_and_the_plot(tmp_path):
    run = tune_folder(tmp_path / "tune")
    rc, out, err = run_cli("doctor", run)
    assert rc == 0, err
    assert "which hyperparameter matters (fANOVA importance over the 30 completed trials, seed 0" in out
    line = next(x for x in out.splitlines() if x.strip().startswith(LR))
    assert "best region [" in line and "of loguniform(0.0001, 1)" in line
    assert "--plot draws it: importance.png" in out and not (run / "importance.png").exists()
    rc, out, err = run_cli("doctor", run, "--format", "json", "--plot")
    assert rc == 0, err
    got = json.loads(out)
    assert list(got["importance"]) == list(diagnose(run).importance.importance)
    assert set(got["best_region"]) == {UNITS, RATE, LR}
    assert got["best_region"][UNITS]["kind"] == "choice" and got["best_region"][LR]["kind"] == "loguniform"
    assert got["search"]["evaluator"] == "fanova" and got["search"]["seed"] == 0
    assert got["search"]["completed"] == 30 and got["search"]["note"] is None
    png = run / "importance.png"
    assert str(png) in got["plots"] and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert got["search"]["plot"] == str(png)
    assert foreign_entries(run) == []  # a later `dlc tune --out` there still sees a tune folder


@pytest.mark.parametrize("completed", [1, IMPORTANCE_MIN_TRIALS - 1])
def test_too_few_trials_is_a_note(tmp_path, completed):
    extra = [{"state": "PRUNED", "value": 5.0, "params": {UNITS: 4, RATE: 0.1, LR: 0.5}},
             {"state": "FAIL", "value": None, "params": {UNITS: 4, RATE: 0.1, LR: 0.9},
              "failure": "loss became nan at epoch 1, step 3 (learning rate 0.9)"}]
    run = tune_folder(tmp_path / "tune", n=completed, extra=extra)
    imp = diagnose(run).importance
    assert imp is not None and imp.importance is None and imp.completed == completed
    assert f"only {completed} completed trial" in imp.note and "too few" in imp.note
    assert imp.best_region[LR]["best"] is not None  # the best region of what there is
    rc, out, err = run_cli("doctor", run, "--plot", "--format", "json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["importance"] is None and "too few" in got["search"]["note"]
    assert "no importance to plot" in err and not (run / "importance.png").exists()
    rc, out, err = run_cli("doctor", run)
    assert rc == 0 and "too few to measure which hyperparameter matters" in " ".join(out.split())


def test_a_flat_objective_is_a_note(tmp_path):
    run = tune_folder(tmp_path / "tune", n=8, value=lambda p: 0.5)
    imp = diagnose(run).importance
    assert imp is not None and imp.importance is None and "did not vary" in imp.note


def test_an_old_tune_json_without_spaces(tmp_path):
    report = diagnose(tune_folder(tmp_path / "tune", n=6, spaces=None))
    assert report.importance is None and any("lists no search spaces" in n for n in report.notes)
    assert "importance" not in report.to_json()


@pytest.mark.slow
def test_a_real_tune_run(tmp_path):
    """A real `dlc tune` (10 random trials on iris, 3 epochs each): the learning rate, searched over three
    decades, matters far more than the units (measured: 0.98 against 0.02)."""
    spec = tmp_path / "tiny.dlspec"
    spec.write_text(SPEC.replace("Dense(16, activation=relu)", "Dense(choice(4, 16), activation=relu)")
                    .replace("    Dropout(0.1)\n", "")
                    .replace("SGD(lr=0.01)", "SGD(lr=loguniform(0.001, 1.0))")
                    .replace("  }\n}\n", "  }\n  search {\n    method: random\n    trials: 10\n"
                             "    objective: minimize val_loss\n  }\n}\n"))
    rc, _, err = run_cli("tune", spec, "--out", tmp_path / "tune", "--threads", "1", "--workers", "2",
                         "--quiet")
    assert rc == 0, err
    rc, out, err = run_cli("doctor", tmp_path / "tune", "--format", "json", "--plot")
    assert rc == 0, err
    got = json.loads(out)
    assert got["search"]["completed"] == 10
    assert got["importance"][LR] > 0.8 > got["importance"][UNITS]
    lo, hi = got["best_region"][LR]["low"], got["best_region"][LR]["high"]
    assert 1e-3 <= lo <= got["best_region"][LR]["best"] <= hi <= 1.0
    assert (tmp_path / "tune" / "importance.png").is_file()
    assert foreign_entries(tmp_path / "tune") == []


@pytest.mark.parametrize(("command", "instead"), [("doctor", "diagnose"), ("plot", "plot")])
def test_a_tune_stopped_before_it_wrote_tune_json_says_to_run_it_again(tmp_path, command, instead):
    """A `dlc tune` killed (kill -9, a lost session) leaves trials/ and study.db but no tune.json: doctor and
    plot said 'without a best trial yet' although trials had completed; the same command writes it."""
    run = tmp_path / "t"
    (run / "trials" / "0000").mkdir(parents=True)
    (run / "study.db").write_bytes(b"")
    rc, _, err = run_cli(command, run)
    assert rc == 1
    assert err == (f"dlc: error: '{run}' is a tune run stopped before it wrote tune.json: run the same "
                   f"`dlc tune` command again (it continues the search and writes it), or {instead} a trial "
                   "folder, e.g. its trials/0000\n")


def test_a_best_region_that_is_the_whole_space_is_said_so(tmp_path):
    """Over 4 trials of 4 points the top 3 took both options of each choice: "best region {4, 16} of
    choice(4, 16)" and "search ... in {4, 16} next" told nothing, and --refine would search the same
    space; with every point tried, the best trial is the answer."""
    act = "layers[0].activation"
    spaces = [Space(UNITS, "choice", (10, 11), (10, 24), [4, 16], ["4", "16"]),
              Space(act, "choice", (10, 30), (10, 50), ["relu", "tanh"], ["relu", "tanh"])]
    points = [{UNITS: u, act: a} for u in (4, 16) for a in ("relu", "tanh")]
    trials = [{"state": "COMPLETE", "value": 0.5 + 0.1 * i, "params": p, "duration_s": 1.0}
              for i, p in enumerate(points)]
    run = tune_folder(tmp_path / "tune", n=0, extra=trials, spaces=spaces)
    rc, out, err = run_cli("doctor", run)
    assert rc == 0, err
    assert "best region: all of choice(4, 16)" in out, out
    assert "best region: all of choice(relu, tanh)" in out, out
    assert f"{UNITS}: the top 3 trials took every option, so nothing narrows it yet" in " ".join(out.split())
    assert "every one of the space's 4 points was tried: its best trial is this search's answer" in \
        " ".join(out.split()), out
    assert "searches exactly these best regions" not in out
