"""Per-epoch checkpoints: the session's state (weights, optimizer slots, counters) and the loop's state in one
.npz, written to a temporary file and renamed over the old one, so a run killed at any moment (even kill -9)
leaves the last finished epoch intact."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from dlc.reference.weights import flatten, unflatten
from dlc.runtime.loop import LoopState
from dlc.runtime.rundir import replacing

FILE = "checkpoint.npz"


def save(run: Path, session, state: LoopState) -> None:
    arrays = {f"s:{k}": v for k, v in session.get_state().items()}
    if state.best_weights is not None:
        arrays.update(flatten(state.best_weights, "b:"))
    arrays["loop"] = np.array(json.dumps(state.to_json(), default=float))
    if (digest := _ir_digest(run)) is not None:
        arrays["ir"] = np.array(digest)
    with replacing(run / FILE, ".tmp.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())


def _ir_digest(run: Path) -> str | None:
    """The SHA-256 of the run's ir.json, kept in each checkpoint: a resumed run continues the model and
    training the checkpoint was written for, not an ir.json edited since (a seed or batch size of the same
    shapes loaded without error and trained on differently). Its `train.epochs` is left out: raising it
    trains a run on. None when the folder has no readable ir.json (loading it says why)."""
    try:
        ir = json.loads((run / "ir.json").read_text(encoding="utf-8"))
        ir["train"].pop("epochs", None)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return hashlib.sha256(json.dumps(ir, sort_keys=True).encode()).hexdigest()


def load(run: Path) -> tuple[dict[str, np.ndarray], LoopState] | None:
    """(session state, loop state) of the run's checkpoint; None when there is none; RunDirError naming the
    file when it is truncated, empty or not a dlc checkpoint."""
    from dlc.runtime.runs import RunDirError, retrain

    path = run / FILE
    again = f"it cannot be resumed from: {retrain(run)}"
    if path.is_dir():
        raise RunDirError(f"{path} is a folder, not a dlc checkpoint; {again}")
    if not path.is_file():
        return None
    if path.stat().st_size == 0:
        raise RunDirError(f"{path} is empty; {again}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "loop" not in f.files:
                raise RunDirError(f"{path} is not a dlc checkpoint (no loop state); {again}")
            if "ir" in f.files and str(f["ir"]) != _ir_digest(run):
                raise RunDirError(f"{path} was written for another ir.json (the run's was edited, or files "
                                  f"were copied between runs); {again}")
            session_state = {k[2:]: f[k] for k in f.files if k.startswith("s:")}
            best = unflatten({k: f[k] for k in f.files if k.startswith("b:")}, "b:")
            loop = json.loads(str(f["loop"]))
        state = LoopState.from_json(loop, best or None)
    except RunDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, zipfile.BadZipFile) or "pickle" in why:
            why = "not a complete .npz archive"
        raise RunDirError(f"{path} is damaged (truncated or not a dlc checkpoint: {why}); {again}") from None
    if not session_state:
        raise RunDirError(f"{path} is not a dlc checkpoint (no model state); {again}")
    return session_state, state
