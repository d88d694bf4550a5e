"""Per-epoch checkpoints: the session's state (weights, optimizer slots, counters) and the loop's state in one
.npz, written to a temporary file and renamed over the old one, so a run killed at any moment (even kill -9)
leaves the last finished epoch intact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dlc.reference.weights import flatten, unflatten
from dlc.runtime.loop import LoopState

FILE = "checkpoint.npz"


def save(run: Path, session, state: LoopState) -> None:
    arrays = {f"s:{k}": v for k, v in session.get_state().items()}
    if state.best_weights is not None:
        arrays.update(flatten(state.best_weights, "b:"))
    arrays["loop"] = np.array(json.dumps(state.to_json(), default=float))
    tmp = run / (FILE + ".tmp.npz")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run / FILE)


def load(run: Path) -> tuple[dict[str, np.ndarray], LoopState] | None:
    path = run / FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        session_state = {k[2:]: f[k] for k in f.files if k.startswith("s:")}
        best = unflatten({k: f[k] for k in f.files if k.startswith("b:")}, "b:")
        loop = json.loads(str(f["loop"]))
    return session_state, LoopState.from_json(loop, best or None)
