"""What a trial of `dlc tune` is to its search (dlc/runtime/tune.py's docstring gives the rules): shared by
the search, the trial worker that records a failure's kind, and `dlc runs`, which counts a tune folder's
trials, without these importing each other."""

from __future__ import annotations

import json

# the user attribute `failure_kind` of a failed trial: RESULT when the failure is what its parameters give (a
# non-finite loss or objective, a spec error or a data error with these values), ERROR for an error of its
# process (out of memory, a bug, the process killed, a data error that trials with other parameters repeat)
RESULT, ERROR = "result", "error"
COUNTED = ("complete", "pruned", "failed")  # the outcomes that count towards --trials
# a worker whose trial failed with a data error leaves the trial RUNNING with its `failure` and exits 0: its
# parent ends it, as RESULT unless the next trials fail alike (tune._Search._judge_data_failure)
LEFT_TO_PARENT = "left to parent"


def outcome(t) -> str:
    """What a trial (an Optuna FrozenTrial) is to the search: `complete`, `pruned`, `failed` (by what its
    parameters give), `crashed` (by an error of its process), `interrupted`, `waiting` or `running`. The first
    three count towards --trials; a crashed or interrupted trial's parameters run again. A failed trial
    without a `failure_kind` (a study of a dlc before it) is `failed`: that dlc counted it. A trial a refined
    search carried over from the search it refines (`dlc_earlier`: its score, not trained again) is
    `earlier`: it guides the sampler and may be the best, and does not count."""
    if t.user_attrs.get("dlc_earlier"):
        return "earlier"
    if t.state.name != "FAIL":
        return t.state.name.lower()
    if t.user_attrs.get("dlc_interrupted"):
        return "interrupted"
    return "crashed" if t.user_attrs.get("failure_kind") == ERROR else "failed"


def point_key(point: dict) -> str:
    """A point as a set or dict key (its values in name order): the search and its sampler share it."""
    return json.dumps(point, sort_keys=True)
