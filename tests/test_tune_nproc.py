"""`dlc tune --trial-nproc 2`: each trial trains data-parallel on 2 processes (as `dlc run --nproc 2`), and
the search is the one a process per trial gives: the same trial values and per-epoch objective values
(float64, relative 1e-9), the same pruning, the same files in each trial's folder and keys in tune.json. A
worker that dies is a crashed trial (one line naming it, queued again; no hang): the search goes on, or stops
after 3 in a row, by the rules of a crashed trial. What `dlc run --nproc` refuses is refused up front (exit 2,
one line, no run folder).

Trials are tiny (iris, 3 epochs, float64); the searches run in child `dlc tune` processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tune import postgres  # noqa: F401 - the fixture: a throwaway PostgreSQL server

from conftest import run_cli

SPEC = """
model g {
  seed: 3
  dtype: float64
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.3, stratify=true)   # 105 training rows
  }
  input: (4)
  layers {
    Dense(16, activation=relu, kernel_reg=l2(1e-3))
    LAYER
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=LR)
  train {
    epochs: 3
    batch_size: BATCH
  }
  search {
    method: grid
    trials: TRIALS
    objective: OBJECTIVE
  }
}
"""
REL = 1e-9
DIES = "DLC_TEST_WORKER_DIES"  # "RANK:STEP": that rank exits at that step (honoured under pytest only)


def _spec(folder: Path, name: str = "g", lr: str = "choice(0.01, 0.1)", batch: str = "15", trials: int = 2,
          objective: str = "minimize val_loss", layer: str = "Dropout(0.2)") -> Path:
    p = folder / f"{name}.dlspec"
    p.write_text(SPEC.replace("LR", lr).replace("BATCH", batch).replace("TRIALS", str(trials))
                 .replace("OBJECTIVE", objective).replace("LAYER", layer))
    return p


def _tune(spec: Path, out: Path, *args, env: dict | None = None, timeout: int = 120):
    full = {k: v for k, v in os.environ.items() if k != DIES}
    full.update(env or {})
    full["TMPDIR"] = str(_tmp(out))
    argv = [sys.executable, "-m", "dlc", "tune", str(spec), "--out", str(out), "--threads", "1",
            *map(str, args)]
    return subprocess.run(argv, cwd=spec.parent, env=full, capture_output=True, text=True, timeout=timeout)


def _tmp(out: Path) -> Path:
    """The TMPDIR of a search (where the ranks above 0 of its trials write their output while they run)."""
    tmp = out.parent / f"tmp-{out.name}"
    tmp.mkdir(exist_ok=True)
    return tmp


def _summary(run: Path) -> dict:
    return json.loads((run / "tune.json").read_text())


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(abs(a), abs(b), 1e-12)


def _by_params(run: Path, outcome: str = "complete") -> dict[str, dict]:
    trials = _summary(run)["trials"]
    return {json.dumps(t["params"], sort_keys=True): t for t in trials if t["outcome"] == outcome}


def _same_trials(run: Path, ref: Path) -> float:
    """Each trial of `run` is its parameters' trial of `ref`: outcome, pruning step, value and the objective
    after every epoch (relative REL); the trial folders hold the same files. Returns the largest relative
    difference."""
    worst = 0.0
    trials, ref_trials = _summary(run)["trials"], _summary(ref)["trials"]
    assert len(trials) == len(ref_trials)
    for t, r in zip(trials, ref_trials, strict=True):
        assert t["params"] == r["params"]
        assert (t["outcome"], t.get("pruned_at"), t.get("epochs")) == (r["outcome"], r.get("pruned_at"),
                                                                       r.get("epochs")), (t, r)
        assert t.keys() == r.keys()
        assert t["intermediate"].keys() == r["intermediate"].keys()
        pairs = [(t["value"], r["value"])] if r["value"] is not None else []
        pairs += [(t["intermediate"][k], r["intermediate"][k]) for k in r["intermediate"]]
        for a, b in pairs:
            assert _close(a, b), (t, r)
            worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
        files = sorted(os.listdir(Path(t["folder"])))
        assert files == sorted(os.listdir(Path(r["folder"]))), files
    assert _summary(run).keys() == _summary(ref).keys()
    return worst


def _no_leftovers(out: Path) -> None:
    """No rank's output file is left behind, nor any trial process."""
    assert not list(_tmp(out).glob("dlc-trial-*")), list(_tmp(out).iterdir())


def test_torch_trials_and_pruning_equal_one_process(tmp_path):
    """A grid of 4 points, median pruning: 3 trials complete and the 4th (a tiny learning rate) is pruned,
    with the same values and at the same epoch on 2 processes per trial as on one."""
    pytest.importorskip("torch")
    spec = _spec(tmp_path, lr="choice(0.03, 0.1, 0.05, 0.0003)", trials=4,
                 objective="minimize val_loss\n    prune: median")
    t0 = time.monotonic()
    one = _tune(spec, tmp_path / "one", "--quiet")
    took_one = time.monotonic() - t0
    assert one.returncode == 0, one.stderr
    t0 = time.monotonic()
    two = _tune(spec, tmp_path / "two", "--trial-nproc", 2)
    took_two = time.monotonic() - t0
    assert two.returncode == 0, two.stderr
    assert "(1 worker, 2 processes per trial)" in two.stderr
    worst = _same_trials(tmp_path / "two", tmp_path / "one")
    outcomes = [t["outcome"] for t in _summary(tmp_path / "two")["trials"]]
    assert outcomes == ["complete", "complete", "complete", "pruned"], outcomes
    for run in ("one", "two"):
        _no_leftovers(tmp_path / run)
    print(f"torch: max relative difference {worst:.3g}; {took_one:.1f} s vs {took_two:.1f} s")


@pytest.mark.slow  # (30-50 s: two TensorFlow processes per trial; the torch test covers the default suite)
def test_keras_trials_equal_one_process(tmp_path):
    """tf.distribute's MultiWorkerMirroredStrategy in each trial's two forked processes."""
    pytest.importorskip("tensorflow")
    spec = _spec(tmp_path)
    t0 = time.monotonic()
    one = _tune(spec, tmp_path / "one", "--backend", "keras", "--quiet")
    took_one = time.monotonic() - t0
    assert one.returncode == 0, one.stderr
    t0 = time.monotonic()
    two = _tune(spec, tmp_path / "two", "--backend", "keras", "--trial-nproc", 2, "--quiet")
    took_two = time.monotonic() - t0
    assert two.returncode == 0, two.stderr
    worst = _same_trials(tmp_path / "two", tmp_path / "one")
    assert [t["outcome"] for t in _summary(tmp_path / "two")["trials"]] == ["complete", "complete"]
    _no_leftovers(tmp_path / "two")
    print(f"keras: max relative difference {worst:.3g}; {took_one:.1f} s vs {took_two:.1f} s")


def test_a_lost_worker_is_a_crashed_trial_and_the_search_goes_on(tmp_path):
    """Rank 1 exits at step 10: only the trial with batch 15 gets there (7 steps an epoch; batch 105 and 35
    train 3 and 9 steps). That trial crashed (one line naming the worker, queued again); the search goes
    on; its rerun crashes again and waits for the next `dlc tune`, which, without the failure, runs it to
    the value one process gives."""
    pytest.importorskip("torch")
    spec = _spec(tmp_path, lr="0.05", batch="choice(105, 15, 35)", trials=3)
    ref = _tune(spec, tmp_path / "one", "--quiet")
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "two"
    t0 = time.monotonic()
    r = _tune(spec, run, "--trial-nproc", 2, env={DIES: "1:10"})
    assert time.monotonic() - t0 < 60
    assert r.returncode == 0, r.stderr
    line = "failed: worker 1 of 2 stopped (exit code 1: rank 1 stops at step 10 (DLC_TEST_WORKER_DIES)); " \
        "the other workers were stopped (see "
    rows = [ln for ln in r.stderr.splitlines() if ln.startswith("trial ")]
    assert [row.split()[1] for row in rows] == ["0", "1", "2", "3"], rows
    assert line in rows[1] and "not counted, queued again" in rows[1] and line in rows[3], rows
    summary = _summary(run)
    assert summary["counts"] == {"complete": 2, "crashed": 2, "waiting": 1}
    assert summary["stopped"] is None
    crashed = [t for t in summary["trials"] if t["outcome"] == "crashed"]
    assert [t.get("rerun_of") for t in crashed] == [None, 1]
    assert all(t["failure_kind"] == "error" and t["params"] == {"train.batch_size": 15} for t in crashed)
    log = (run / "trials" / "0001" / "log.txt").read_text()
    assert "--- the output of process 1 of 2 ---\nrank 1 stops at step 10" in log
    _no_leftovers(run)

    r = _tune(spec, run, "--trial-nproc", 2, "--quiet")
    assert r.returncode == 0, r.stderr
    done, expected = _by_params(run), _by_params(tmp_path / "one")
    assert done.keys() == expected.keys() and len(done) == 3
    for key, t in done.items():
        assert _close(t["value"], expected[key]["value"]), (t, expected[key])
    assert _summary(run)["counts"] == {"complete": 3, "crashed": 2}


def test_three_lost_workers_in_a_row_stop_the_search(tmp_path):
    """Every trial loses its rank 1 in its first epoch: three crashed trials in a row stop the search with
    one line (exit 1), their parameters queued again for the same command."""
    pytest.importorskip("torch")
    spec = _spec(tmp_path, lr="choice(0.01, 0.03, 0.1)", trials=3)
    t0 = time.monotonic()
    r = _tune(spec, tmp_path / "run", "--trial-nproc", 2, "--quiet", env={DIES: "1:2"})
    assert time.monotonic() - t0 < 60
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dlc: error: no trial completed, stopped: the last 3 trials failed (worker 1 "
                               "of 2 stopped (exit code 1: rank 1 stops at step 2 (DLC_TEST_WORKER_DIES)); "
                               "the other workers were stopped (see "), lines
    assert _summary(tmp_path / "run")["counts"] == {"crashed": 3, "waiting": 3}
    _no_leftovers(tmp_path / "run")


def test_what_dlc_run_nproc_refuses_is_refused_up_front(tmp_path):
    """Exit 2, one line, no run folder: keras with BatchNorm, a cv_ objective, an option (mixed_float16)
    that cannot train data-parallel, more processes than the cores can share."""
    from dlc.runtime.parallel import OVERSUBSCRIBE, usable_cores

    bn = _spec(tmp_path, name="bn", layer="BatchNorm()")
    cv = _spec(tmp_path, name="cv", objective="minimize cv_loss")
    mixed = tmp_path / "mixed.dlspec"
    mixed.write_text(_spec(tmp_path, name="m").read_text().replace("  dtype: float64\n", "").replace(
        "    batch_size: 15\n", "    batch_size: 15\n    precision: choice(float32, mixed_float16)\n"))
    too_many = OVERSUBSCRIBE * usable_cores() + 1
    cases = [(bn, ["--backend", "keras"], "dlc: error: --trial-nproc on the keras backend does not support "
              "BatchNorm"),
             (cv, [], "dlc: error: --trial-nproc trains each trial as one data-parallel run, and the "
              "objective cv_loss cross-validates each trial"),
             (mixed, [], "dlc: error: when train.precision is mixed_float16: --trial-nproc does not support "
              "precision: mixed_float16"),
             (bn, ["--trial-nproc", too_many], f"dlc: error: --workers 1 × --trial-nproc {too_many} is ")]
    for spec, args, start in cases:
        out = tmp_path / f"out-{spec.stem}"
        rc, _, err = run_cli("tune", spec, "--out", out, "--trial-nproc", 2, *args)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith(start), (spec.stem, rc, err)
        assert not out.exists()
    # the same spec on torch, and with one process per trial, are not refused
    from dlc.compiler import compile_file
    from dlc.runtime.tune import check_trial_nproc, spaces_of

    result = compile_file(bn)
    check_trial_nproc(result, str(bn), spaces_of(result), "torch", 2)


@pytest.mark.slow  # (20-25 s; the shared study itself is tested in the default suite by test_tune's)
def test_two_machines_share_a_postgres_study_each_trial_on_two_processes(tmp_path, postgres):  # noqa: F811
    """Two `dlc tune --trial-nproc 2` (two "machines") on one PostgreSQL study run its grid once between
    them, each trial data-parallel on its machine, to the values one process per trial gives."""
    pytest.importorskip("torch")
    lr = "choice(0.01, 0.03, 0.1, 0.3)"
    ref = _tune(_spec(tmp_path, name="ref", lr=lr, trials=4), tmp_path / "one", "--quiet")
    assert ref.returncode == 0, ref.stderr
    spec = _spec(tmp_path, lr=lr, trials=4, objective=f'minimize val_loss\n    storage: "{postgres}"')
    full = {k: v for k, v in os.environ.items() if k != DIES}
    argv = [sys.executable, "-m", "dlc", "tune", str(spec), "--threads", "1", "--trial-nproc", "2", "--quiet"]
    other = subprocess.Popen([*argv, "--out", str(tmp_path / "b")], cwd=tmp_path, env=full,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list((tmp_path / "b").glob("trials/*/log.txt")):
            assert other.poll() is None, other.communicate()[1]
            time.sleep(0.05)
        mine = _tune(spec, tmp_path / "a", "--trial-nproc", 2, "--quiet")
        _, o_err = other.communicate(timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
    assert mine.returncode == 0, mine.stderr
    assert other.returncode == 0, o_err
    trials = _summary(tmp_path / "a")["trials"]
    got = [json.dumps(t["params"], sort_keys=True) for t in trials]
    assert len(got) == len(set(got)) == 4  # the whole grid, no point twice
    expected = _by_params(tmp_path / "one")
    for key, t in zip(got, trials, strict=True):
        assert t["outcome"] == "complete" and _close(t["value"], expected[key]["value"]), (t, expected[key])
