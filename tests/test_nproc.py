"""`dlc run --nproc 2` (data-parallel on the CPU: torch over gloo, keras over tf.distribute): the same
per-epoch losses, metrics and final weights as one process (float64, relative 1e-9), on specs with Dropout,
an l2 penalty and a batch size that leaves a last batch of one sample (an empty share for rank 1), BatchNorm
(synchronized) on torch; only rank 0 writes; a worker that dies is one line and exit 1, and the run resumes
under --nproc to the numbers of an uninterrupted one-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dlc
from dlc.backends.distributed import share

SPEC = """
model dp {
  seed: 3
  data {
    source: wine
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)   # 106 train: 7 batches of 15 and one of 1
  }
  input: (13)
  layers {
    Dense(32, activation=relu, kernel_reg=l2(1e-3))
    BatchNorm()
    Dropout(0.3)
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy, precision]
  optimizer: Adam(lr=0.01)
  train {
    epochs: 3
    batch_size: 15
  }
}
"""
NO_BN = SPEC.replace("    BatchNorm()\n", "")  # (keras refuses BatchNorm under --nproc)
REL = 1e-9
TIMING = ("time_s", "samples_per_s")


def _dlc(*args, cwd, env=None, timeout=180):
    full = {k: v for k, v in os.environ.items() if k != "DLC_TEST_WORKER_DIES"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "dlc", *map(str, args)], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nproc")
    (folder / "dp.dlspec").write_text(SPEC)
    (folder / "dp_no_bn.dlspec").write_text(NO_BN)
    return folder


def _one(folder, name):
    """The one-process (torch) run the data-parallel ones must equal."""
    out = folder / f"one-{name}"
    if not out.exists():
        r = _dlc("run", folder / f"{name}.dlspec", "--dtype", "float64", "--out", out, "--quiet", cwd=folder)
        assert r.returncode == 0, r.stderr
    return out


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(abs(a), abs(b), 1e-12)


def _weights(run) -> dict[str, np.ndarray]:
    """The final weights (and BatchNorm's moving statistics) in the last epoch's checkpoint."""
    with np.load(run / "checkpoint.npz") as f:
        return {k: f[k] for k in f.files if k.startswith("s:w/")}


def _same_run(run, ref):
    rows, ref_rows = (json.loads((d / "history.json").read_text()) for d in (run, ref))
    assert len(rows) == len(ref_rows) == 3
    for r, e in zip(rows, ref_rows, strict=True):
        assert r.keys() == e.keys()
        bad = {k: (r[k], e[k]) for k in r if k not in TIMING and not _close(r[k], e[k])}
        assert not bad, f"epoch {r['epoch']}: {bad}"
    final, ref_final = (json.loads((d / "metrics.json").read_text()) for d in (run, ref))
    for part in ("train", "val", "test"):
        assert final[part].keys() == ref_final[part].keys()
        assert all(_close(final[part][k], ref_final[part][k]) for k in final[part]), (final, ref_final)
    w, ref_w = _weights(run), _weights(ref)
    assert w.keys() == ref_w.keys() and w
    for k in w:
        scale = max(float(np.abs(ref_w[k]).max()), 1e-12)
        assert float(np.abs(w[k] - ref_w[k]).max()) <= REL * scale, k
    info = json.loads((run / "run.json").read_text())
    assert info["finished"] and not info.get("failed")


def test_share_splits_each_batch_in_order():
    assert [share(15, 2, r) for r in (0, 1)] == [(0, 8), (8, 15)]
    assert [share(1, 2, r) for r in (0, 1)] == [(0, 1), (1, 1)]  # an empty share
    assert [share(10, 3, r) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]


def test_torch_dead_worker_is_one_line_and_the_resumed_run_equals_one_process(folder, tmp_path):
    """Two processes train epochs 1-2 (checkpointed), rank 1 dies in epoch 3: one line, exit 1; `--resume
    --nproc 2` finishes it, and the whole run equals one process's; rank 1 never wrote a run directory."""
    pytest.importorskip("torch")
    one = _one(folder, "dp")
    t0 = time.monotonic()
    r = _dlc("run", folder / "dp.dlspec", "--dtype", "float64", "--nproc", 2, "--quiet", cwd=tmp_path,
             env={"DLC_TEST_WORKER_DIES": "1:20"})  # rank 1 exits at step 20 (of 8-step epochs)
    took = time.monotonic() - t0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1, r.stderr
    assert len(lines) == 1 and lines[0].startswith("dlc: error: worker 1 of 2 stopped (exit code 1"), lines
    assert took < 60
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # only rank 0 made a run directory
    assert set(os.listdir(tmp_path)) == {"runs"}
    run = runs[0]
    info = json.loads((run / "run.json").read_text())
    assert "another process" in info["failed"] and not info.get("finished")
    assert len(json.loads((run / "history.json").read_text())) == 2

    r = _dlc("run", "--resume", run, "--nproc", 2, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [str(run)]  # rank 0's line only
    assert list((tmp_path / "runs").iterdir()) == [run]
    _same_run(run, one)


def test_keras_two_processes_equal_one(folder, tmp_path):
    """tf.distribute (MultiWorkerMirroredStrategy) with dlc's own step; the one-process reference is
    torch's, which keras equals in float64 (the equivalence suite's claim)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("torch")
    one = _one(folder, "dp_no_bn")
    r = _dlc("run", folder / "dp_no_bn.dlspec", "--backend", "keras", "--dtype", "float64", "--nproc", 2,
             "--out", tmp_path / "two", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [str(tmp_path / "two")]
    _same_run(tmp_path / "two", one)


def test_refused_where_it_cannot_be_exact(folder, tmp_path):
    r = _dlc("run", folder / "dp.dlspec", "--backend", "keras", "--nproc", 2, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dlc: error: --nproc on the keras backend does not support BatchNorm"), lines
    assert not (tmp_path / "runs").exists()
    r = _dlc("run", folder / "dp.dlspec", "--nproc", 2, "--nnodes", 2, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "--master-addr" in r.stderr, r.stderr


def test_more_processes_than_the_cores_can_share_is_a_usage_error(folder, tmp_path):
    """`--nproc 1000` on a small machine started 1000 workers and thrashed it: refused before any starts."""
    from dlc.runtime.parallel import OVERSUBSCRIBE, usable_cores

    n = OVERSUBSCRIBE * usable_cores() + 1
    r = _dlc("run", folder / "dp.dlspec", "--nproc", n, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"--nproc {n}: this machine has {usable_cores()} CPU core" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_keras_refuses_a_streamed_source_before_it_starts(tmp_path):
    """keras keeps a data-parallel run's features in memory: an npy(...) source is refused up front (exit 2,
    no run folder), not after the workers started."""
    from dlc.runtime.parallel import blockers

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((40, 4)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 40))
    text = (Path(__file__).parent / "equivalence" / "fixtures" / "dense.dlspec").read_text()
    (tmp_path / "s.dlspec").write_text(text.replace("source: iris", 'source: npy("x.npy", "y.npy")'))
    spec = dlc.load(tmp_path / "s.dlspec")
    assert any("npy(...)" in b for b in blockers(spec, "keras")) and not blockers(spec, "torch")


def test_the_launcher_says_which_worker_stopped(tmp_path):
    """The launcher's verdict from the workers' exit codes (3: a worker that lost another one, silent)."""
    from dlc.runtime.parallel import EXIT_WORKER_LOST, Launch, _verdict

    log = (tmp_path / "log").open("w+")
    log.write("some output\ndlc: error: out of memory on the device\n")
    two = Launch(2)
    assert _verdict([0, 0], [0, 1], [None, None], two) == (0, "")
    assert _verdict([1, 1], [1, 0], [None, None], two) == (1, "")  # rank 0 said why itself
    assert _verdict([EXIT_WORKER_LOST, 1], [1, 0], [None, log], two) == (
        1, "worker 1 of 2 stopped (exit code 1: out of memory on the device); the other workers were stopped")
    assert _verdict([-9, EXIT_WORKER_LOST], [0, 1], [None, None], two) == (
        1, "worker 0 of 2 stopped (killed by SIGKILL); the other workers were stopped")
    code, line = _verdict([EXIT_WORKER_LOST, EXIT_WORKER_LOST], [0, 1], [None, None], two)
    assert code == 1 and line.startswith("the 2 workers of this data-parallel run lost contact")
    # on machine 1 of 2 (ranks 2 and 3): rank 0 is elsewhere
    code, line = _verdict([EXIT_WORKER_LOST, None], [0], [None, None], Launch(2, 2, 1, "h", 1))
    assert code == 1 and "another machine" in line
    log.close()


def test_an_embedding_whose_rows_count_one_by_one_is_refused():
    """Keras squares (Adam, RMSprop, ...) or clips an Embedding's gradient rows one by one before summing
    them: across processes they would be summed first, so --nproc refuses those specs; plain SGD sums them
    anyway."""
    from dlc.runtime.parallel import blockers

    fixtures = Path(__file__).parent / "equivalence" / "fixtures"
    for name, refused in (("embedding_adam", True), ("embedding_sgd_clipvalue", True), ("embedding", False),
                          ("embedding_rmsprop_centered", False)):
        problems = blockers(dlc.load(fixtures / f"{name}.dlspec"), "torch")
        assert bool(problems) == refused, (name, problems)
        assert not refused or "Embedding" in problems[0]
