"""What a trial of `dlc tune` is to its search (dlc/runtime/tune.py's docstring gives the rules): shared by
the search, the trial worker that records a failure's kind, and `dlc runs`, which counts a tune folder's
trials, without these importing each other."""

from __future__ import annotations

# the user attribute `failure_kind` of a failed trial: RESULT when the failure is what its parameters give (a
# non-finite loss or objective, a spec error with these values), ERROR for an error of its process
RESULT, ERROR = "result", "error"
COUNTED = ("complete", "pruned", "failed")  # the outcomes that count towards --trials


def outcome(t) -> str:
    """What a trial (an Optuna FrozenTrial) is to the search: `complete`, `pruned`, `failed` (by what its
    parameters give), `crashed` (by an error of its process), `interrupted`, `waiting` or `running`. The first
    three count towards --trials; a crashed or interrupted trial's parameters run again."""
    if t.state.name != "FAIL":
        return t.state.name.lower()
    if t.user_attrs.get("dlc_interrupted"):
        return "interrupted"
    return "failed" if t.user_attrs.get("failure_kind") == RESULT else "crashed"
