"""`dlc tune`: grid/random/TPE search, median pruning, resume after an interruption, the best spec, refine,
trials in processes of their own, and a study shared through a real PostgreSQL server.

Trials are tiny (iris, 1-3 epochs, one CPU thread each). Most searches run in this process, so they share one
fork server (the framework is imported once for all of them); the trials themselves always run in child
processes.
"""

from __future__ import annotations

import contextlib
import glob
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dlc.compiler import compile_file, compile_text
from dlc.compiler.search import Space, concretize, grid_points, refine, spaces_of, top_trials

from conftest import ROOT, run_cli

SPEC = """
model tiny {{
  seed: 5
  data {{
    source: iris
    normalize: standard
    split: holdout(val=0.3, stratify=true)
  }}
  input: (4)
  layers {{
    Dense({units}, activation={act})
    Dense(3, activation=softmax)
  }}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: {opt}{sched}
  train {{
    epochs: {epochs}
    batch_size: {bs}
  }}
  search {{
    method: {method}
    trials: {trials}
    objective: {objective}{extra}
  }}
}}
"""


def _write(tmp_path: Path, name: str = "tiny.dlspec", units="choice(4, 8)", act="relu",
           opt="Adam(lr=loguniform(0.01, 0.1))", epochs=1, bs=32, method="random", trials=4,
           objective="minimize val_loss", extra="", sched="") -> Path:
    p = tmp_path / name
    p.write_text(SPEC.format(units=units, act=act, opt=opt, epochs=epochs, bs=bs, method=method,
                             trials=trials, objective=objective, extra=extra,
                             sched=f"\n  schedule: {sched}" if sched else ""))
    return p


def _tune(*argv: str) -> tuple[int, str, str]:
    return run_cli("tune", *argv, "--threads", "1", "--quiet")


def _summary(run: Path) -> dict:
    return json.loads((run / "tune.json").read_text())


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


# ------------------------------------------------------------------------------------- no training needed


MULTI = """
block pair(n) {
  Dense(n, activation=choice(relu, "tanh"))
}
model m {
  seed: 1
  data {
    source: csv("data/t.csv", target="y")
    split: holdout(val=0.2)
  }
  input: (2)
  layers {
    pair(choice(8, 16))
    pair(4)
    Dense(1, activation=sigmoid)
  }
  loss: binary_crossentropy
  optimizer: SGD(lr=loguniform(1e-4,
                               1e-1), momentum=uniform(0.5, 0.9))
  train {
    batch_size: int_uniform(8, 64)
  }
  search {
    method: grid
    objective: minimize val_loss
  }
}
"""


def test_spaces_grid_and_concrete_spec(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    spec = tmp_path / "m.dlspec"
    spec.write_text(MULTI)
    r = compile_file(spec)
    assert r.ok, r.render()
    sp = spaces_of(r)
    # the activation choice inside the block is used twice but is one parameter
    assert [s.name for s in sp] == ["layers[0][0].units", "layers[0][0].activation",
                                    "optimizer.learning_rate",
                                       "optimizer.momentum", "train.batch_size"]
    assert [s.kind for s in sp] == ["choice", "choice", "loguniform", "uniform", "int_uniform"]
    assert sp[1].option_texts == ["relu", '"tanh"']
    assert grid_points(sp[2]) == [1e-4, 0.000562, 0.00316, 0.0178, 0.1]
    assert grid_points(sp[3]) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert grid_points(sp[4]) == [8, 22, 36, 50, 64]
    assert grid_points(Space("x", "int_uniform", (1, 1), (1, 1), low=2, high=5)) == [2, 3, 4, 5]
    values = {"layers[0][0].units": 16, "layers[0][0].activation": "tanh", "optimizer.learning_rate": 0.00316,
              "optimizer.momentum": 0.75, "train.batch_size": 22}
    out = tmp_path / "elsewhere"
    out.mkdir()
    text = concretize(r, sp, values, "searched", base_dir=tmp_path, new_dir=out)
    assert "choice" not in text and "uniform" not in text and "search {" not in text
    assert 'csv("../data/t.csv"' in text and "SGD(lr=0.00316, momentum=0.75)" in text
    assert "activation=tanh" in text and "pair(16)" in text and "batch_size: 22" in text
    c = compile_text(text, str(out / "best.dlspec"), out)
    assert c.ok, c.render()
    assert not c.spec.search_spaces and c.spec.search is None
    assert [lay.units for lay in c.spec.layers] == [16, 4, 1]
    assert c.spec.layers[0].activation.name == c.spec.layers[1].activation.name == "tanh"


def test_a_searched_data_path_reads_the_same_file_from_best_dlspec(tmp_path):
    """`csv(choice("data/a.csv", "data/b.csv"))`: best.dlspec, in the tune folder, named the chosen file as
    written (relative to the spec), so `dlc run best.dlspec` could not find it; it is rewritten as a written
    path is."""
    (tmp_path / "data").mkdir()
    for name in ("a", "b"):
        (tmp_path / "data" / f"{name}.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n"
                                                                           for i in range(20)))
    spec = tmp_path / "m.dlspec"
    spec.write_text(MULTI.replace('csv("data/t.csv"', 'csv(choice("data/a.csv", "data/b.csv")'))
    r = compile_file(spec)
    assert r.ok, r.render()
    sp = spaces_of(r)
    assert sp[0].name == "data.source.path"
    values = {s.name: grid_points(s)[1] for s in sp}
    out = tmp_path / "elsewhere"
    out.mkdir()
    text = concretize(r, sp, values, "searched", base_dir=tmp_path, new_dir=out)
    assert 'csv("../data/b.csv"' in text
    c = compile_text(text, str(out / "best.dlspec"), out)
    assert c.ok, c.render()
    assert not c.spec.search_spaces


def test_refine_rule():
    sp = [Space("u", "choice", (1, 1), (1, 2), [4, 8, 16], ["4", "8", "16"]),
          Space("lr", "loguniform", (2, 1), (2, 2), low=1e-4, high=1e-1),
          Space("m", "uniform", (3, 1), (3, 2), low=0.0, high=1.0),
          Space("b", "int_uniform", (4, 1), (4, 2), low=8, high=64)]
    done = [(0.1, 8, 1e-3, 0.5, 32), (0.2, 16, 1e-2, 0.5, 32), (0.3, 8, 3e-3, 0.5, 32),
            (0.9, 4, 1e-1, 0.0, 8), (0.8, 4, 1e-4, 1.0, 64)]
    trials = [{"state": "COMPLETE", "value": v, "params": {"u": u, "lr": lr, "m": m, "b": b}}
              for v, u, lr, m, b in done]
    trials.append({"state": "PRUNED", "value": 0.0, "params": {"u": 4, "lr": 0.05, "m": 0.1, "b": 9}})
    top = top_trials(trials, "minimize")
    assert [t["value"] for t in top] == [0.1, 0.2, 0.3]  # a quarter of 5, at least 3; pruned ones never count
    u, lr, m, b = refine(sp, top)
    assert u.options == [8, 16] and u.option_texts == ["8", "16"]
    assert (lr.low, lr.high) == (1e-3, 1e-2)
    assert m.low == pytest.approx(0.45) and m.high == pytest.approx(0.55)  # one value: ± 5% of the old range
    assert (b.low, b.high) == (31, 33)
    # one loguniform value: × / ÷ (high/low)^0.05, clipped to the old range
    one = [{"state": "COMPLETE", "value": 0.1, "params": {"lr": v}} for v in (1e-2, 1e-2, 1e-1)]
    (narrow,) = refine([sp[1]], one[:2])
    assert (narrow.low, narrow.high) == pytest.approx((1e-2 / 1000 ** 0.05, 1e-2 * 1000 ** 0.05), rel=1e-12)
    (edge,) = refine([sp[1]], one[2:])
    assert (edge.low, edge.high) == pytest.approx((1e-1 / 1000 ** 0.05, 1e-1), rel=1e-12)


@pytest.mark.parametrize("path", sorted((ROOT / "specs" / "tune").glob("*.dlspec")), ids=lambda p: p.stem)
def test_tune_examples_check(path):
    r = compile_file(path)
    assert r.ok and not r.diagnostics.items, r.render()
    assert r.spec.search is not None and r.spec.search_spaces


def test_no_search_spaces_is_a_clear_error(tmp_path):
    p = _write(tmp_path, units="8", opt="Adam(lr=0.01)")
    rc, _, err = _tune(str(p), "--out", str(tmp_path / "run"))
    assert rc == 2
    assert "E505" in err and "no search spaces" in err and "Traceback" not in err


def test_unknown_objective_is_a_spec_error(tmp_path):
    from dlc.cli import main

    p = _write(tmp_path, objective="maximize val_acuracy")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["check", str(p)]) == 2
    assert "E504" in err.getvalue() and "unknown objective metric 'val_acuracy'" in err.getvalue()
    assert "did you mean 'val_accuracy'?" in err.getvalue()
    rc, _, err2 = _tune(str(p))
    assert rc == 2 and "val_acuracy" in err2


# ------------------------------------------------------------------------------------------------ searches


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> Path:
    """A 2 x 2 x 5 grid with two workers, shared by the tests that read a finished search."""
    tmp = tmp_path_factory.mktemp("grid")
    p = _write(tmp, method="grid", trials=100, act="choice(relu, tanh)")
    run = tmp / "run"
    rc, out, err = _tune(str(p), "--out", str(run), "--workers", "2")
    assert rc == 0, err
    assert str(run) in out
    return run


def test_grid_runs_each_point_once_in_separate_processes(grid_run):
    s = _summary(grid_run)
    lrs = grid_points(Space("lr", "loguniform", (1, 1), (1, 1), low=0.01, high=0.1))
    want = {_key({"layers[0].units": u, "layers[0].activation": a, "optimizer.learning_rate": lr})
            for u, a, lr in itertools.product([4, 8], ["relu", "tanh"], lrs)}
    got = [_key(t["params"]) for t in s["trials"]]
    assert len(got) == len(set(got)) == len(want) == 20
    assert set(got) == want
    assert all(t["state"] == "COMPLETE" for t in s["trials"])
    pids = {t["pid"] for t in s["trials"]}
    assert len(pids) == 20 and os.getpid() not in pids  # every trial in a process of its own
    # the best spec is concrete, checks, and holds the best trial's values
    c = compile_file(grid_run / "best.dlspec")
    assert c.ok, c.render()
    assert not c.spec.search_spaces
    bp = s["best"]["params"]
    assert c.spec.layers[0].units == bp["layers[0].units"]
    assert c.spec.layers[0].activation.name == bp["layers[0].activation"]
    assert c.spec.optimizer.learning_rate == bp["optimizer.learning_rate"]
    assert s["best"]["value"] == min(t["value"] for t in s["trials"])


def test_best_spec_checks_and_runs_to_the_same_result(grid_run, tmp_path):
    from dlc.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["check", str(grid_run / "best.dlspec")]) == 0
        assert main(["run", str(grid_run / "best.dlspec"), "--out", str(tmp_path / "trained"), "--quiet",
                     "--device", "cpu"]) == 0
    best = _summary(grid_run)["best"]
    history = json.loads((tmp_path / "trained" / "history.json").read_text())
    assert history[-1]["val_loss"] == pytest.approx(best["value"], rel=1e-6)  # the same training again


def test_refine_refuses_a_spec_whose_space_does_not_hold_the_earlier_one(grid_run, tmp_path):
    """--refine RUN SPEC searched RUN's spaces even where SPEC allows other values: best.dlspec could hold a
    value SPEC does not (Dense(8) for choice(4, 16))."""
    p = _write(tmp_path, units="choice(4, 16)", act="choice(relu, tanh)")
    rc, _, err = _tune("--refine", str(grid_run), str(p), "--out", str(tmp_path / "f"))
    want = "layers[0].units was choice(4, 8) there, which this spec's choice(4, 16) does not hold"
    assert rc == 2 and want in err, err
    assert not (tmp_path / "f").exists()


def test_refine_narrows_around_the_best_trials(grid_run, tmp_path):
    cs = _summary(grid_run)
    fine = tmp_path / "fine"
    rc, _, err = _tune("--refine", str(grid_run), "--out", str(fine), "--trials", "3")
    assert rc == 0, err
    fs = _summary(fine)
    top = top_trials(cs["trials"], "minimize")
    assert len(top) == 5  # a quarter of 20
    assert fs["refined_from"]["top_trials"] == [t["number"] for t in top]
    spaces = {d["name"]: d for d in fs["spaces"]}
    lrs = [t["params"]["optimizer.learning_rate"] for t in top]
    lr = spaces["optimizer.learning_rate"]
    want = (min(lrs), max(lrs))
    if want[0] == want[1]:  # one value: × / ÷ (high/low)^0.05 in log scale, within the old range
        f = (0.1 / 0.01) ** 0.05
        want = (max(0.01, want[0] / f), min(0.1, want[1] * f))
    assert (lr["low"], lr["high"]) == pytest.approx(want, rel=1e-12)
    assert lr["high"] / lr["low"] < 0.1 / 0.01  # narrower than the coarse range
    for name in ("layers[0].units", "layers[0].activation"):
        coarse = next(d for d in cs["spaces"] if d["name"] == name)
        taken = {t["params"][name] for t in top}
        assert spaces[name]["options"] == [o for o in coarse["options"] if o in taken]
    new = [t for t in fs["trials"] if t["outcome"] != "earlier"]
    assert len(new) == 3
    for t in fs["trials"]:
        assert lr["low"] <= t["params"]["optimizer.learning_rate"] <= lr["high"]
        assert t["params"]["layers[0].units"] in spaces["layers[0].units"]["options"]
    # the coarse trials on the refined grid start it with their scores, and are not trained again
    earlier = [t for t in fs["trials"] if t["outcome"] == "earlier"]
    coarse = {t["number"]: t for t in cs["trials"]}
    assert earlier and all(t["value"] == coarse[t["earlier"]["number"]]["value"] for t in earlier)
    assert all(t["folder"] == coarse[t["earlier"]["number"]]["folder"] for t in earlier)
    assert not {_key(t["params"]) for t in new} & {_key(t["params"]) for t in earlier}
    assert compile_file(fine / "best.dlspec").ok


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_random_and_tpe_run_the_requested_trials(tmp_path, method):
    p = _write(tmp_path, method=method, trials=4, act="choice(relu, tanh)", epochs=2,
               opt="Adam(lr=loguniform(0.005, 0.1))", bs="int_uniform(16, 48)",
               sched="step(every=int_uniform(1, 3), factor=uniform(0.3, 0.9))")
    run = tmp_path / "run"
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    s = _summary(run)
    assert len(s["trials"]) == 4 and all(t["state"] == "COMPLETE" for t in s["trials"])
    for t in s["trials"]:
        pr = t["params"]
        assert pr["layers[0].units"] in (4, 8) and pr["layers[0].activation"] in ("relu", "tanh")
        assert 0.005 <= pr["optimizer.learning_rate"] <= 0.1 and 16 <= pr["train.batch_size"] <= 48
        assert isinstance(pr["train.batch_size"], int)
        assert pr["schedule.every"] in (1, 2, 3) and 0.3 <= pr["schedule.factor"] <= 0.9
    assert len({_key(t["params"]) for t in s["trials"]}) == 4
    assert compile_file(run / "best.dlspec").ok


def test_median_pruning_stops_a_bad_trial(tmp_path):
    # grid order: three good learning rates complete first, then a hopeless one falls below their median
    p = _write(tmp_path, units="8", method="grid", trials=4, epochs=3,
               opt="SGD(lr=choice(0.3, 0.2, 0.25, 0.00001))", extra="\n    prune: median")
    run = tmp_path / "run"
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    trials = _summary(run)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert trials[3]["pruned_at"] == 2 and trials[3]["last_step"] == 2  # never after the first epoch alone


def test_failed_trials_are_recorded_not_raised(tmp_path):
    p = _write(tmp_path, units="8", method="grid", opt="SGD(lr=choice(0.05, 1e12))")
    run = tmp_path / "run"
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    trials = _summary(run)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL"]
    assert "loss became" in trials[1]["failure"]


def test_resume_with_more_trials_continues(tmp_path):
    p = _write(tmp_path, trials=2)
    run = tmp_path / "run"
    assert _tune(str(p), "--out", str(run))[0] == 0
    first = _summary(run)["trials"]
    assert len(first) == 2
    rc, _, err = _tune(str(p), "--out", str(run), "--trials", "4")
    assert rc == 0, err
    trials = _summary(run)["trials"]
    assert len(trials) == 4
    assert [(t["params"], t["value"]) for t in trials[:2]] == [(t["params"], t["value"]) for t in first]
    assert len({_key(t["params"]) for t in trials}) == 4  # a resumed search draws new points
    # a changed search space is not mixed into the old study
    p2 = _write(tmp_path, trials=2, units="choice(4, 8, 16)")
    rc, _, err = _tune(str(p2), "--out", str(run))
    assert rc == 2 and "other search spaces" in err and "use a new --out (or --study NAME)" in err
    # with the storage named in the spec, every --out shares it: only another study name helps
    shared = 'storage: "sqlite:///shared.db"'
    for units, rc_want in (("choice(4, 8)", 0), ("choice(4, 8, 16)", 2)):
        p3 = _write(tmp_path, name="s.dlspec", trials=1, units=units, extra=f"\n    {shared}")
        rc, _, err = _tune(str(p3), "--out", str(tmp_path / f"s{rc_want}"))
        assert rc == rc_want, err
    assert "use --study NAME for this search" in err
    rc, _, err = run_cli("tune", p3, "--study", " ")
    assert rc == 2 and "a study needs a name" in err


def test_a_study_keeps_its_backend(tmp_path):
    """A study on a named storage holds one backend's trials: a tune with another --backend on it is refused
    (exit 2, naming the way on), never reported as that backend's; its own --study runs it."""
    import optuna

    p = _write(tmp_path, trials=1, units="8", extra='\n    storage: "sqlite:///x.db"')
    rc, _, err = _tune(str(p), "--backend", "torch", "--out", str(tmp_path / "t"))
    assert rc == 0, err
    rc, _, err = _tune(str(p), "--backend", "keras", "--out", str(tmp_path / "k"))
    assert rc == 2 and "holds torch trials" in err and "--backend torch" in err and "--study NAME" in err
    assert not (tmp_path / "k" / "tune.json").exists()
    rc, _, err = _tune(str(p), "--backend", "torch", "--out", str(tmp_path / "t"))  # the same backend resumes
    assert rc == 0, err
    rc, _, err = _tune(str(p), "--backend", "keras", "--out", str(tmp_path / "k"), "--study", "tiny-keras")
    assert rc == 0, err
    s = _summary(tmp_path / "k")
    assert s["backend"] == "keras" and [t["state"] for t in s["trials"]] == ["COMPLETE"]
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert {st.study_name: st.user_attrs["dlc_backend"] for st in optuna.get_all_study_summaries(url)} == \
        {"tiny": "torch", "tiny-keras": "keras"}


def test_another_study_in_a_tune_folder_is_refused(tmp_path):
    """A tune folder holds one study (its trials/NNNN are numbered per study): a second study there (--study
    NAME, another spec, --refine R --out R) overwrote the first's tune.json, best.dlspec and trial folders."""
    p = _write(tmp_path, trials=1, units="choice(4, 8)")
    out = tmp_path / "t"
    rc, _, err = _tune(str(p), "--out", str(out))
    assert rc == 0, err
    before = {f: f.read_bytes() for f in out.rglob("*") if f.is_file() and f.name != "study.db"}
    rc, _, err = _tune(str(p), "--out", str(out), "--study", "other")
    assert rc == 2 and f"--out {out} holds the search of study 'tiny'" in err and "give a new --out" in err
    rc, _, err = _tune("--refine", str(out), "--out", str(out))
    assert rc == 2 and "this search is study 'tiny-refined'" in err
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file() and f.name != "study.db"} == before
    rc, _, err = _tune(str(p), "--out", str(out), "--trials", "2")  # its own study continues
    assert rc == 0, err


def test_resume_after_a_killed_process(tmp_path):
    """A `dlc tune` killed (SIGKILL, with its trial process) mid-trial: the next run fails that trial as
    interrupted, runs its parameters again, and finishes the search."""
    p = _write(tmp_path, trials=2, epochs=60, bs=8)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dlc", "tune", str(p), "--out", str(run), "--threads", "1",
                             "--quiet"], cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = run / "trials" / "0000" / "log.txt"
    deadline = time.time() + 90
    try:
        while time.time() < deadline and not (log.exists() and "trial 0:" in log.read_text()):
            assert proc.poll() is None, "dlc tune ended before it could be interrupted"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "trial 0:" in log.read_text()
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    trials = _summary(run)["trials"]
    assert trials[0]["state"] == "FAIL" and trials[0]["interrupted"]
    rerun = [t for t in trials if t.get("rerun_of") == 0]
    assert len(rerun) == 1 and rerun[0]["params"] == trials[0]["params"] and rerun[0]["state"] == "COMPLETE"
    assert sum(t["state"] == "COMPLETE" for t in trials) == 2


@pytest.mark.parametrize("objective", ["maximize cv_accuracy", "maximize val_accuracy"])
def test_cv_objective(tmp_path, objective):
    """cv_accuracy, or val_accuracy under a kfold split (its mean over the folds: the same objective)."""
    p = _write(tmp_path, trials=2, objective=objective)
    text = p.read_text().replace("split: holdout(val=0.3, stratify=true)", "split: kfold(k=2, stratify=true)")
    p.write_text(text)
    run = tmp_path / "run"
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    s = _summary(run)
    assert [t["state"] for t in s["trials"]] == ["COMPLETE", "COMPLETE"]
    for t in s["trials"]:
        cv = json.loads((run / "trials" / f"{t['number']:04d}" / "cv.json").read_text())
        assert t["value"] == pytest.approx(cv["cv_accuracy"])


def test_subprocess_workers(tmp_path, monkeypatch):
    """Without the fork server, each trial is `python -m dlc.runtime.tune_worker JOB.json`."""
    monkeypatch.setenv("DLC_TUNE_WORKER", "subprocess")
    p = _write(tmp_path, units="8", method="grid", opt="Adam(lr=choice(0.01))")
    run = tmp_path / "run"
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    trials = _summary(run)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE"]
    assert trials[0]["pid"] != os.getpid()
    assert (run / "trials" / "0000" / "job.json").exists()


# ---------------------------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path | None:
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"):
        for d in sorted(glob.glob(pattern), reverse=True):
            if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
                return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on localhost (run as `postgres` when we are root: it refuses root)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: "
                    "apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="dlc-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    env = dict(os.environ, LC_ALL="C")
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                              "--no-sync"], check=True, capture_output=True, env=env)
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t",
                              "60", "-o", f"-p {port} -k {root} -h 127.0.0.1 -F", "start"],
                   check=True, capture_output=True, env=env)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_study_shared_by_two_processes(tmp_path, postgres):
    """Two `dlc tune` processes (two "machines": one with 2 workers, one with 1) share one grid study through
    PostgreSQL: together they run the grid exactly once."""
    # The first process stops once the study holds 3 trials (--trials counts the study's), so the second one
    # has grid points left however fast the first one runs: a CI run had the first run all 12 before the
    # second one's fork server was up.
    p = _write(tmp_path, method="grid", trials=100, opt="Adam(lr=choice(0.01, 0.02, 0.03, 0.05, 0.07, 0.1))",
               extra=f'\n    storage: "{postgres}"')
    other = subprocess.Popen([sys.executable, "-m", "dlc", "tune", str(p), "--out", str(tmp_path / "b"),
                              "--trials", "3", "--threads", "1", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not list((tmp_path / "b").glob("trials/*/log.txt")):
            assert other.poll() is None, other.communicate()[1]
            time.sleep(0.05)
        rc, _, err = _tune(str(p), "--out", str(tmp_path / "a"), "--workers", "2")
        _, o_err = other.communicate(timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
    assert rc == 0, err
    assert other.returncode == 0, o_err
    import optuna

    from dlc.runtime.tune_worker import driver_url

    trials = optuna.load_study(study_name="tiny", storage=driver_url(postgres)).get_trials()
    got = [_key(t.params) for t in trials]
    assert len(got) == len(set(got)) == 12  # the whole grid, no point twice
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 12
    assert {t.user_attrs["dlc_parent_pid"] for t in trials} == {os.getpid(), other.pid}
    assert _summary(tmp_path / "a")["storage"].startswith("postgresql://")


@pytest.mark.parametrize("url, hint", [
    ("mysql://x", "dlc keeps a study in SQLite (sqlite:///file.db) or PostgreSQL"),
    ("notaurl", "dlc keeps a study in SQLite (sqlite:///file.db) or PostgreSQL"),
    ("sqlite://", "an in-memory SQLite database cannot be shared with the trial processes"),
])
def test_a_storage_dlc_cannot_keep_a_study_in_is_a_spec_error(tmp_path, url, hint):
    """storage: "mysql://x" is not a missing PostgreSQL driver (pip install 'dlc[postgres]'); "notaurl" was an
    internal SQLAlchemy error (exit 1), "sqlite://" failed every trial; `dlc check` finds all three."""
    spec = _write(tmp_path, extra=f'\n    storage: "{url}"', trials=1)
    for argv in (["check", spec], ["tune", spec, "--out", tmp_path / "t"]):
        rc, _, err = run_cli(*argv)
        assert rc == 2 and "E506" in err and hint in err and "dlc[postgres]" not in err, err
    assert not (tmp_path / "t").exists()  # a refused set-up leaves no folder behind


@pytest.mark.parametrize("name", ["a?b", "a#b", "a%20b", "ü {x}"])
def test_the_study_of_a_tune_folder_with_url_characters_in_its_name_is_in_it(tmp_path, name):
    """--out 'runs/a?b' made the default storage `sqlite:///…/runs/a?b/study.db`, which SQLAlchemy reads as
    the file runs/a with a query: the study lived beside the tune folder, shared with any --out 'runs/a?c'."""
    from sqlalchemy.engine import make_url

    from dlc.runtime.tune import _storage_url

    run = tmp_path / name
    assert make_url(_storage_url(None, run, tmp_path)).database == str(run.resolve() / "study.db")


def test_a_storage_folder_that_cannot_be_made_is_one_line(tmp_path):
    """storage: "sqlite:////proc/nope/x.db" said `dlc: error: [Errno 2] No such file or directory:
    '/proc/nope'` (exit 1), naming neither the storage nor what was being done, and left the tune folder."""
    (tmp_path / "file").write_text("")
    spec = _write(tmp_path, extra=f'\n    storage: "sqlite:///{tmp_path}/file/s.db"', trials=1)
    rc, _, err = run_cli("tune", spec, "--out", tmp_path / "t")
    assert rc == 2, err
    want = f"dlc: error: storage sqlite:///{tmp_path}/file/s.db: cannot make its folder {tmp_path}/file: "
    assert err.strip().splitlines()[-1].startswith(want), err
    assert not (tmp_path / "t").exists()


def test_a_device_the_trials_cannot_use_is_refused_before_the_search(tmp_path):
    """--device cuda without a GPU failed every trial, and the failures counted towards --trials, so the same
    command with --device cpu then ran nothing; it is refused before any trial now (exit 1, as `dlc run`
    says it; no folder)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    p = _write(tmp_path, trials=1)
    rc, _, err = _tune(str(p), "--out", str(tmp_path / "t"), "--device", "cuda")
    assert rc == 1 and "--device cuda was asked for, but PyTorch sees no CUDA device" in err, err
    assert not (tmp_path / "t").exists()
    rc, _, err = _tune(str(p), "--out", str(tmp_path / "t"), "--device", "cpu")
    assert rc == 0, err


def test_more_trial_processes_than_gpus_are_refused_before_the_search(tmp_path, monkeypatch):
    """--trial-nproc 4 on a machine with 2 GPUs (each trial's process r trains on GPU r): every trial crashed
    after its processes started (~15 s each) until the search stopped; refused up front now (exit 1, as
    `dlc run --nproc 4` says it; no folder). The GPUs are simulated: torch's CUDA queries answer as on a
    2-GPU machine."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    p = _write(tmp_path, trials=1, opt="Adam(lr=0.01)")
    rc, _, err = _tune(str(p), "--out", str(tmp_path / "t"), "--trial-nproc", "4")
    assert rc == 1 and "4 data-parallel processes train on a GPU each, and PyTorch sees 2" in err, err
    assert "use at most 2 processes (--trial-nproc), or --device cpu" in err
    assert not (tmp_path / "t").exists()


def test_a_shared_study_continued_from_another_out_finds_its_trials(tmp_path):
    """A study in a storage the spec names, continued from a new --out: that folder holds only its own
    trials, so plot and doctor could not find a best trial run from the first --out. Each trial records its
    folder (tune.json's `folder`)."""
    p = _write(tmp_path, trials=2, extra='\n    storage: "sqlite:///shared.db"')
    assert _tune(str(p), "--out", str(tmp_path / "a"))[0] == 0
    rc, _, err = _tune(str(p), "--out", str(tmp_path / "b"), "--trials", "3")
    assert rc == 0, err
    s = _summary(tmp_path / "b")
    assert [Path(t["folder"]).parent.parent.name for t in s["trials"]] == ["a", "a", "b"]
    assert Path(s["best"]["folder"]).is_dir()
    from dlc.runtime.runs import trial_folder

    assert all((trial_folder(tmp_path / "b", t) / "history.json").is_file() for t in s["trials"])
    rc, out, err = run_cli("plot", tmp_path / "b", "--out", tmp_path / "p.png")
    assert rc == 0, err
    rc, out, err = run_cli("doctor", tmp_path / "b")
    assert rc == 0, err


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_two_tune_processes_on_one_study_do_not_draw_each_others_points(tmp_path, monkeypatch, method):
    """Two `dlc tune` processes that open one study together (workers sharing a storage) each seeded their
    sampler with the spec's seed plus the trials in the study then, none, so they drew the same points in
    turn: trials 0 and 1 had the same learning rate, 2 and 3 too. Each trial's draw is seeded by its number.
    (No training: the trials' processes are stand-ins.)"""
    from types import SimpleNamespace

    from dlc.runtime import tune as T

    monkeypatch.setattr(T, "_Worker", lambda job, mode: SimpleNamespace(pid=os.getpid()))
    p = _write(tmp_path, method=method, trials=4, extra='\n    storage: "sqlite:///shared.db"')
    result = compile_file(p)
    searches = [T._Search(result, str(p), spaces_of(result), None, backend="torch", device="cpu",
                          out=str(tmp_path / name), trials=None, workers=1, threads=1, study=None)
                for name in ("a", "b")]
    for search in searches:
        search.open()
    running: dict = {}
    for _ in range(2):
        for search in searches:
            assert search._start_next(running)
    trials = searches[0].study.get_trials(deepcopy=False)
    lrs = [t.params["optimizer.learning_rate"] for t in sorted(trials, key=lambda t: t.number)]
    assert len(set(lrs)) == 4, lrs


def test_a_search_with_and_without_a_regularizer(tmp_path):
    """`kernel_reg=choice(none, l2(1e-3))`: `none` is Keras' None written out, so the `none` trial trains
    exactly the spec with no kernel_reg at all (its val_loss is `dlc run`'s), and the other one differs."""
    p = _write(tmp_path, units="8, kernel_reg=choice(none, l2(1e-3))", method="grid", trials=2,
               opt="Adam(lr=0.01)")
    run = tmp_path / "run"
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    trials = {t["params"]["layers[0].kernel_reg"]: t["value"] for t in _summary(run)["trials"]}
    assert set(trials) == {"none", "l2(1e-3)"} and trials["none"] != trials["l2(1e-3)"]
    plain = _write(tmp_path, name="plain.dlspec", units="8", opt="Adam(lr=0.01)").read_text()
    spec = tmp_path / "plain.dlspec"
    spec.write_text(plain[:plain.index("  search {")] + "}\n")
    rc, _, err = run_cli("run", spec, "--out", tmp_path / "plain", "--quiet")
    assert rc == 0, err
    assert json.loads((tmp_path / "plain" / "history.json").read_text())[-1]["val_loss"] == trials["none"]
    assert "kernel_reg=none" in (run / "best.dlspec").read_text() or trials["l2(1e-3)"] < trials["none"]


@pytest.mark.parametrize(("arg", "said"), [
    ("kernel_reg=nonee", "did you mean 'none'?"),
    ("kernel_reg=lasso", "known: l1, l2, l1_l2, none"),
    ("kernel_init=none", "unknown initializer 'none'"),  # (an initializer is never left out)
])
def test_none_is_a_regularizer_or_constraint_only(tmp_path, arg, said):
    p = _write(tmp_path, units=f"8, {arg}, kernel_constraint=none", opt="Adam(lr=0.01)")
    rc, _, err = run_cli("check", p)
    assert rc == 2 and said in err and ": 1 error" in err, err  # (kernel_constraint=none is fine)


def test_a_choice_of_calls_trains_each_call(tmp_path):
    """`optimizer: choice(SGD(lr=0.1, momentum=0.9, nesterov=true), Adam(lr=0.01))` with `kernel_reg:
    choice(l1(1e-3), l2(1e-3))` (calls among a choice's options): a grid of 4 trials, each trial's value
    the option's text, and each trial's val_loss exactly what `dlc run` gives for the spec with those calls
    written in, so each trial trained the call it was given."""
    p = _write(tmp_path, units="8, kernel_reg=choice(l1(1e-3), l2(1e-3))", method="grid", trials=4,
               opt="choice(SGD(lr=0.1, momentum=0.9, nesterov=true), Adam(lr=0.01))")
    run = tmp_path / "run"
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    trials = _summary(run)["trials"]
    assert sorted((t["params"]["optimizer"], t["params"]["layers[0].kernel_reg"]) for t in trials) == [
        ("Adam(lr=0.01)", "l1(1e-3)"), ("Adam(lr=0.01)", "l2(1e-3)"),
        ("SGD(lr=0.1, momentum=0.9, nesterov=true)", "l1(1e-3)"),
        ("SGD(lr=0.1, momentum=0.9, nesterov=true)", "l2(1e-3)")]
    assert len({t["value"] for t in trials}) == 4
    for t in trials[:2]:
        concrete = _write(tmp_path, name=f"t{t['number']}.dlspec",
                          units=f"8, kernel_reg={t['params']['layers[0].kernel_reg']}",
                          opt=t["params"]["optimizer"]).read_text()
        spec = tmp_path / f"t{t['number']}.dlspec"
        spec.write_text(concrete[:concrete.index("  search {")] + "}\n")
        out = tmp_path / f"r{t['number']}"
        rc, _, err = run_cli("run", spec, "--out", out, "--quiet")
        assert rc == 0, err
        history = json.loads((out / "history.json").read_text())
        assert history[-1]["val_loss"] == t["value"]


def test_the_points_of_a_finite_space_are_counted(tmp_path):
    from dlc.compiler.search import space_size

    finite = spaces_of(compile_file(_write(tmp_path, act="choice(relu, tanh, elu)", opt="Adam(lr=0.01)",
                                           bs="int_uniform(8, 64)")))
    assert space_size(finite) == 2 * 3 * 57  # units, activation, batch sizes 8..64
    assert space_size(spaces_of(compile_file(_write(tmp_path)))) is None  # a loguniform learning rate
    huge = spaces_of(compile_file(_write(tmp_path, opt="Adam(lr=0.01)", bs="int_uniform(1, 1000000)")))
    assert space_size(huge) is None  # too many points to list: searched as any space


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_a_finite_space_never_trains_a_point_twice(tmp_path, monkeypatch, method):
    """TPE and random draw with replacement: over 12 points a 30-trial TPE search trained some points
    several times (the same seed: the same score each time). Each point is tried once, then the search
    ends. (No training: the trials' processes are stand-ins, told a score that favours one corner.)"""
    from types import SimpleNamespace

    from optuna.trial import TrialState

    from dlc.runtime import tune as T

    monkeypatch.setattr(T, "_Worker", lambda job, mode: SimpleNamespace(pid=os.getpid()))
    p = _write(tmp_path, method=method, trials=30, act="choice(relu, tanh)", opt="Adam(lr=0.01)",
               bs="int_uniform(16, 18)")
    result = compile_file(p)
    search = T._Search(result, str(p), spaces_of(result), None, backend="torch", device="cpu",
                       out=str(tmp_path / "run"), trials=None, workers=1, threads=1, study=None)
    search.open()
    assert search.points == 12 and search.target == 12
    running: dict = {}
    while search._start_next(running):
        (t,) = search.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        pr = t.params
        search.study.tell(t.number, pr["layers[0].units"] + pr["train.batch_size"]
                          + (pr["layers[0].activation"] == "tanh"))
    points = [_key(t.params) for t in search.study.get_trials(deepcopy=False)]
    assert len(points) == 12 and len(set(points)) == 12


def test_a_search_over_fewer_points_than_trials_says_so(tmp_path):
    p = _write(tmp_path, method="tpe", trials=6, act="choice(relu, tanh)", opt="Adam(lr=0.01)")
    run = tmp_path / "run"
    rc, out, said = run_cli("tune", str(p), "--out", str(run), "--threads", "1")
    assert rc == 0, said
    assert "tpe search, 4 trials" in said
    assert "the search space has only 4 points: 4 trials, not 6 (no point is trained twice)" in said
    s = _summary(run)
    assert s["trials_target"] == 4 and len({_key(t["params"]) for t in s["trials"]}) == 4
    rc, out, said = run_cli("tune", str(p), "--out", str(run), "--threads", "1", "--trials", "9")
    assert rc == 0, said
    assert "nothing to run (every point of the search space is done)" in said
    assert len(_summary(run)["trials"]) == 4


def test_check_shows_what_a_search_will_search(tmp_path):
    rc, out, _ = run_cli("check", _write(tmp_path, method="tpe", trials=6, act="choice(relu, tanh)",
                                         opt="Adam(lr=0.01)"))
    assert rc == 0
    assert ("\nsearch: tpe, 6 trials, minimize val_loss\n"
            "  layers[0].units       choice(4, 8)\n"
            "  layers[0].activation  choice(relu, tanh)\n"
            "  a space of 4 points: 4 trials run, each point once\n"
            "  (the model above: each space at its first value)\n") in out, out
    rc, out, _ = run_cli("check", _write(tmp_path, method="grid", trials=3, bs="int_uniform(16, 48)",
                                         extra="\n    prune: median"))
    assert rc == 0
    assert ("search: grid, 3 trials, minimize val_loss, median pruning\n"
            "  layers[0].units          choice(4, 8)\n"
            "  optimizer.learning_rate  loguniform(0.01, 0.1)\n"
            "  train.batch_size         int_uniform(16, 48)\n"
            "  a grid of 50 points: the first 3 run\n") in out, out
    rc, out, _ = run_cli("check", _write(tmp_path, method="random"))
    assert rc == 0 and "search: random, 4 trials" in out and " point" not in out, out
    rc, out, _ = run_cli("check", ROOT / "specs" / "iris.dlspec")
    assert rc == 0 and "search:" not in out


def test_check_shows_a_long_choice_in_brief(tmp_path):
    """A choice of 2,000 widths made the search summary's line 10,000 characters."""
    widths = ", ".join(str(i) for i in range(1, 2001))
    rc, out, _ = run_cli("check", _write(tmp_path, units=f"choice({widths})", opt="Adam(lr=0.01)"))
    assert rc == 0
    assert "  layers[0].units  choice(1, 2, 3, 4, 5, 6, …, 2000: 2,000 options)\n" in out, out
    assert "  a space of 2,000 points: 4 of them are tried\n" in out and max(map(len, out.splitlines())) < 100


def test_check_names_the_study_storage_without_its_password(tmp_path):
    rc, out, _ = run_cli("check", _write(tmp_path, extra='\n    storage: "postgresql://ann:pa:ss@db/dlc"'))
    said = "search: random, 4 trials, minimize val_loss; its study in postgresql://ann:***@db/dlc\n"
    assert rc == 0 and said in out and "pa:ss" not in out, out


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://ann:pa:ss@db/dlc", "postgresql://ann:***@db/dlc"),
    ("postgresql+psycopg://ann:p%40ss@db:5432/dlc", "postgresql+psycopg://ann:***@db:5432/dlc"),
    ("postgresql://ann@db/dlc", "postgresql://ann@db/dlc"),
    ("sqlite:///runs/study.db", "sqlite:///runs/study.db"),
])
def test_a_storage_url_is_printed_without_its_password(url, shown):
    """`dlc check`, tune's errors and tune.json print a storage URL through one function."""
    from dlc.compiler.search import shown_storage

    assert shown_storage(url) == shown


def test_a_refined_search_starts_from_the_earlier_scores(tmp_path, monkeypatch):
    """`dlc tune --refine` trained every point of a refined finite space again, those the search it refines
    had scored included (the same spec, seed and values: the same scores). They are carried over as
    completed trials that do not count towards --trials; only the point left is trained. (No training: the
    earlier search is a tune.json, the trials' processes stand-ins.)"""
    from types import SimpleNamespace

    from optuna.trial import TrialState

    from dlc.runtime import tune as T
    from dlc.runtime.trials import outcome

    monkeypatch.setattr(T, "_Worker", lambda job, mode: SimpleNamespace(pid=os.getpid()))
    p = _write(tmp_path, method="tpe", trials=10, units="choice(4, 8, 16)", act="choice(relu, tanh)",
               opt="Adam(lr=0.01)")
    result = compile_file(p)
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    scores = {(4, "relu"): 0.1, (4, "tanh"): 0.2, (8, "relu"): 0.3, (16, "relu"): 0.5, (16, "tanh"): 0.6}
    trials = [{"number": i, "state": "COMPLETE", "outcome": "complete", "value": v, "duration_s": 2.0,
               "params": {"layers[0].units": u, "layers[0].activation": a}, "folder": f"/there/{i:04d}"}
              for i, ((u, a), v) in enumerate(scores.items())]  # (8, tanh) never drawn
    (coarse / "tune.json").write_text(json.dumps({"spaces": [sp.to_json() for sp in spaces_of(result)],
                                                  "trials": trials}))
    spaces, refined = T._load_refine(str(coarse), spaces_of(result), "minimize")
    earlier = T.earlier_trials(str(coarse), spaces, "torch")
    assert T.earlier_trials(str(coarse), spaces, "keras") == earlier  # (a tune.json without its backend)
    assert [sp.describe() for sp in spaces] == ["choice(4, 8)", "choice(relu, tanh)"]
    assert sorted(e["number"] for e in earlier) == [0, 1, 2]  # those in the refined space
    search = T._Search(result, str(p), spaces, refined, backend="torch", device="cpu",
                       out=str(tmp_path / "fine"), trials=None, workers=1, threads=1, study=None,
                       earlier=earlier)
    search.open()
    assert search.points == 4 and search.target == 1  # 4 points, 3 scored already
    search.queue()
    running: dict = {}
    assert search._start_next(running) and not search._start_next(running)
    (new,) = search.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert new.params == {"layers[0].units": 8, "layers[0].activation": "tanh"}
    carried = [t for t in search.study.get_trials(deepcopy=False) if outcome(t) == "earlier"]
    assert sorted((t.value, t.user_attrs["dlc_folder"]) for t in carried) == \
        [(0.1, "/there/0000"), (0.2, "/there/0001"), (0.3, "/there/0002")]
    assert not any(T._counted(t) for t in carried)
    search.queue()  # (a resumed refined search does not carry them over twice)
    assert len(search.study.get_trials(deepcopy=False)) == 4
    (coarse / "tune.json").write_text(json.dumps({"backend": "keras", "trials": trials}))
    assert T.earlier_trials(str(coarse), spaces, "torch") == []  # (another backend's scores: trained again)


def test_a_search_whose_output_is_closed_stops_resumable_with_its_tune_json(tmp_path):
    """`dlc tune SPEC 2>&1 | head -3` ended the search at its next line with no tune.json (`dlc runs`:
    "incomplete: no tune.json yet"): it stops as Ctrl-C stops it, exit 141, and the same command continues."""
    p = _write(tmp_path, method="random", trials=4, epochs=1)
    read, write = os.pipe()
    os.close(read)
    run = tmp_path / "run"
    try:
        r = subprocess.run([sys.executable, "-m", "dlc", "tune", str(p), "--out", str(run), "--threads", "1"],
                           stdout=write, stderr=write, cwd=ROOT, timeout=300)
    finally:
        os.close(write)
    assert r.returncode == 141
    s = _summary(run)
    assert len([t for t in s["trials"] if t["outcome"] == "complete"]) < 4
    rc, _, err = _tune(str(p), "--out", str(run))
    assert rc == 0, err
    assert len([t for t in _summary(run)["trials"] if t["outcome"] == "complete"]) == 4
