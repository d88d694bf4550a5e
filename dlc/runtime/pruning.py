"""A `dlc tune` trial's reports and pruning decisions, with the study's completed trials read once a second.

Optuna's `trial.should_prune()` reads the storage on every call: the trial itself and the study's completed
trials (the cached storage reads again every trial still running). With SQLite that cost 9-15 ms an epoch on
this 2-core machine, more than an epoch of the iris search (8-18 ms). `Reports` takes the decision with the
study's own pruner (Optuna's MedianPruner, unchanged), given the values this trial reported (kept here as
they are sent) and the study's completed trials as last read, read again once `refresh_s` has passed.

With one worker no other trial completes while this one trains, so the decisions are exactly Optuna's. With
several (--workers, machines sharing a study) a trial that completed less than `refresh_s` ago is counted
from the next read: which trials have completed at a given epoch depends on timing there anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import optuna

REFRESH_S = 1.0


class _CompletedTrials:
    """What a pruner reads from its study: the direction, and the completed trials as last read."""

    def __init__(self, study: optuna.Study, refresh_s: float, clock: Callable[[], float]):
        self.study = study
        self.direction = study.direction
        self.refresh_s, self.clock = refresh_s, clock
        self.read_at: float | None = None
        self.completed: list[optuna.trial.FrozenTrial] = []

    def get_trials(self, deepcopy: bool = False, states: Container[optuna.trial.TrialState] | None = None
                   ) -> list[optuna.trial.FrozenTrial]:
        import optuna

        if states != (optuna.trial.TrialState.COMPLETE,):
            return self.study.get_trials(deepcopy=deepcopy, states=states)  # (not what MedianPruner asks)
        now = self.clock()
        if self.read_at is None or now - self.read_at >= self.refresh_s:
            self.completed = self.study.get_trials(deepcopy=False, states=states)
            self.read_at = now
        return self.completed


class Reports:
    """`report` and `should_prune` of one trial, as Optuna's Trial has them (see the module's docstring)."""

    def __init__(self, trial: optuna.trial.Trial, refresh_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic):
        self.trial = trial
        self.values: dict[int, float] = {}
        self.study = _CompletedTrials(trial.study, refresh_s, clock)

    def report(self, value: float, step: int) -> None:
        self.trial.report(value, step)
        self.values[step] = value

    def should_prune(self) -> bool:
        import optuna

        me = optuna.trial.FrozenTrial(
            number=self.trial.number, state=optuna.trial.TrialState.RUNNING, value=None, datetime_start=None,
            datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values=dict(self.values), trial_id=self.trial._trial_id)
        return self.trial.study.pruner.prune(cast("optuna.Study", self.study), me)
