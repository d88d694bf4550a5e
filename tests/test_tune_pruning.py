"""A trial's pruning decisions are taken in its process (dlc.runtime.pruning.Reports) from the completed
trials as last read, read again once a second: Optuna's `should_prune` read the storage on every epoch
(9-15 ms with SQLite here, more than an iris epoch). The decisions are those of Optuna's own MedianPruner."""

from __future__ import annotations

import random

import pytest

from dlc.runtime.pruning import Reports
from dlc.runtime.tune_worker import make_pruner, make_storage


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _study(direction="minimize"):
    import optuna

    return optuna.create_study(direction=direction, pruner=make_pruner("median"))  # (in memory: fast)


def _complete(study, curve):
    t = study.ask()
    for step, v in enumerate(curve, 1):
        t.report(v, step)
    study.tell(t, curve[-1])


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_every_decision_is_optunas(direction):
    import optuna

    study = _study(direction)
    rng = random.Random(3)
    decisions = 0
    for n in range(9):  # the first PRUNE_STARTUP_TRIALS prune nothing; then some are pruned, some not
        trial = optuna.trial.Trial(study, study.ask()._trial_id)
        mine = Reports(trial, clock=Clock())
        curve = [rng.uniform(0, 1) / (1 + step * rng.uniform(0, 0.5)) for step in range(8)]
        if direction == "maximize":
            curve = [1 - v for v in curve]
        for step, v in enumerate(curve, 1):
            mine.report(v, step)
            assert mine.should_prune() == trial.should_prune(), (n, step)
            decisions += trial.should_prune()
        study.tell(trial, curve[-1])
    assert decisions > 0  # (some decisions were to prune)


def test_a_sqlite_study_gives_the_same_decisions(tmp_path):
    """The storage dlc tune uses: Optuna's cached storage in front of SQLite."""
    import optuna

    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage, pruner=make_pruner("median"))
    for curve in ([0.5] * 3, [0.4] * 3, [0.3] * 3):
        _complete(study, curve)
    trial = optuna.trial.Trial(study, study.ask()._trial_id)
    mine = Reports(trial, clock=Clock())
    for step, v in enumerate([0.45, 0.45, 0.2], 1):  # (judged by its best value so far)
        mine.report(v, step)
        assert mine.should_prune() == trial.should_prune() == (step == 2), step
    storage.engine.dispose()


def test_the_completed_trials_are_read_once_a_second(monkeypatch):
    import optuna

    study = _study()
    for curve in ([0.5] * 4, [0.4] * 4, [0.3] * 4):
        _complete(study, curve)
    reads = []
    get_trials = study.get_trials
    monkeypatch.setattr(study, "get_trials", lambda **k: reads.append(k) or get_trials(**k))
    clock = Clock()
    trial = optuna.trial.Trial(study, study.ask()._trial_id)
    mine = Reports(trial, clock=clock)
    for step in range(1, 4):
        mine.report(0.35, step)
        assert not mine.should_prune()  # (better than the completed trials' median, 0.4)
        clock.now += 0.1
    assert len(reads) == 1
    other = study.ask()  # other workers' trials complete, far better: 0.35 is now worse than the median
    for step in range(1, 5):
        other.report(0.1, step)
    study.tell(other, 0.1)
    _complete(study, [0.05] * 4)
    mine.report(0.35, 4)
    assert not mine.should_prune()  # (not read yet)
    clock.now += 1.0
    assert mine.should_prune()  # read again: the median of 0.5, 0.4, 0.3, 0.1, 0.05 is 0.3
    assert len(reads) == 2
