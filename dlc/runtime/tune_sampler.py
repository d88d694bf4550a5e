"""A search over a finite space (every space a `choice` or an `int_uniform`) never trains a point twice.

TPE and random sampling draw with replacement: a 20-trial TPE search over the 27 points of three 3-way choices
trained 14 distinct ones, the repeats with the same seed, for the same score. The
sampler below wraps Optuna's: it asks the inner sampler for a whole point as it would have drawn it (the
same calls in the same order, so a search whose draws never repeat is unchanged) and, where that point was
tried already, takes an untried one at random instead; `_Search` stops once every point is tried.
"""

from __future__ import annotations

import random
from itertools import product
from typing import Any

import optuna

from dlc.runtime.trials import outcome, point_key


def tried_points(trials) -> set[str]:
    """The points a study has tried, is trying or has queued (a crashed or interrupted trial's point is
    held by its rerun)."""
    held = set()
    for t in trials:
        if outcome(t) in ("crashed", "interrupted"):
            continue
        point = t.params or t.system_attrs.get("fixed_params")
        if point:
            held.add(point_key(point))
    return held


def _points(distributions: dict) -> list[dict]:
    names = list(distributions)
    return [dict(zip(names, combo, strict=True))
            for combo in product(*(_values(distributions[n]) for n in names))]


def _values(distribution) -> list[Any]:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return list(range(int(distribution.low), int(distribution.high) + 1))


class Unrepeated(optuna.samplers.BaseSampler):
    """Optuna's sampler protocol around another sampler, proposing whole points (see the module's doc)."""

    def __init__(self, inner: optuna.samplers.BaseSampler, distributions: dict, seed: int):
        self.inner, self.distributions, self.seed = inner, distributions, seed

    def infer_relative_search_space(self, study, trial) -> dict:
        return dict(self.distributions)

    def sample_relative(self, study, trial, search_space: dict) -> dict[str, Any]:
        point = self._drawn(study, trial)
        tried = tried_points(t for t in study.get_trials(deepcopy=False) if t.number != trial.number)
        if point_key(point) not in tried:
            return point
        untried = [p for p in _points(self.distributions) if point_key(p) not in tried]
        return random.Random(self.seed * 1_000_003 + trial.number).choice(untried) if untried else point

    def _drawn(self, study, trial) -> dict[str, Any]:
        """The point the inner sampler draws: its relative part, then each other parameter in order."""
        space = self.inner.infer_relative_search_space(study, trial)
        point = dict(self.inner.sample_relative(study, trial, space))
        for name, distribution in self.distributions.items():
            if name in point:
                continue
            if distribution.single():
                point[name] = _values(distribution)[0]
            else:
                point[name] = self.inner.sample_independent(study, trial, name, distribution)
        return {name: point[name] for name in self.distributions}

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
