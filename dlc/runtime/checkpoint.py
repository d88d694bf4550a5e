"""Checkpoints at an epoch's end (when dlc.runtime.epochfiles says the run's files are due): the session's
state (weights, optimizer slots, counters) and the loop's state in one .npz, written to a temporary file and
renamed over the old one, so a run killed at any moment (even kill -9) leaves the last one written intact.

The loop state is JSON (LoopState.to_json: its history rows included, so a checkpoint resumes on its own):
`loop`, its UTF-8 bytes (a uint8 array), each row encoded once per run (rundir.EncodedRows); checkpoints of
an earlier dlc hold it as a numpy string (4 bytes a character), which load() reads too."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from dlc.reference.weights import flatten, unflatten
from dlc.runtime.loop import LoopState
from dlc.runtime.rundir import EncodedRows, recent, replacing

FILE = "checkpoint.npz"

# the rows of the loop states saved by this process, encoded, by run folder; and each run's ir.json digest
_ROWS: dict[Path, EncodedRows] = {}
_DIGESTS: dict[Path, tuple[tuple, str | None]] = {}


def save(run: Path, session, state: LoopState) -> None:
    arrays = {f"s:{k}": v for k, v in session.get_state().items()}
    if state.best_weights is not None:
        arrays.update(flatten(state.best_weights, "b:"))
    arrays["loop"] = np.frombuffer(loop_json(run, state).encode("utf-8"), dtype=np.uint8)
    if (digest := _saved_digest(run)) is not None:
        arrays["ir"] = np.array(digest)
    with replacing(run / FILE, ".tmp.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())


def loop_json(run: Path, state: LoopState) -> str:
    """json.dumps(state.to_json(), default=float), the history's rows encoded once for the run (re-encoding
    them all after every epoch made a long run quadratic)."""
    d = state.to_json()
    keys = list(d)
    if not isinstance(d.get("rows"), list):
        return json.dumps(d, default=float)
    at = keys.index("rows")
    enc = recent(_ROWS, run, EncodedRows)
    enc.update(d["rows"])
    head = json.dumps({k: d[k] for k in keys[:at]}, default=float)[:-1]
    tail = json.dumps({k: d[k] for k in keys[at + 1:]}, default=float)[1:]
    return f'{head}, "rows": [{enc.joined()}], {tail}'


def _saved_digest(run: Path) -> str | None:
    """_ir_digest(run), worked out again only when ir.json's size or times changed (it is read and hashed
    for every epoch's checkpoint)."""
    try:
        st = (run / "ir.json").stat()
        key: tuple = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        key = ()
    kept = _DIGESTS.get(run)
    if kept is not None and kept[0] == key and key:
        return kept[1]
    digest = _ir_digest(run)
    _DIGESTS.pop(run, None)
    recent(_DIGESTS, run, lambda: (key, digest))
    return digest


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
            loop = json.loads(_loop_text(f["loop"]))
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


def _loop_text(loop: np.ndarray) -> str:
    """The loop state's JSON: UTF-8 bytes, or the numpy string of a checkpoint of an earlier dlc."""
    if loop.dtype == np.uint8 and loop.ndim == 1:
        return loop.tobytes().decode("utf-8")
    return str(loop)


def restore(session, state: dict[str, np.ndarray]) -> None:
    """Set a checkpoint's session state on the run's (fresh) session; ValueError saying in words what does
    not fit the model (a layer's weights missing, extra or of another shape; the optimizer's state), never a
    raw key. (A checkpoint lacking a layer's weights resumed with that layer's fresh weights, silently.)"""
    expected = session.get_state()
    why = misfit(expected, state, optimizer=False)
    if why is None:
        try:
            session.set_state(state)
        except Exception as e:  # noqa: BLE001 - arrays of another model: said in words where it can be
            why = misfit(expected, state) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
    if why is not None:
        raise ValueError(why)


def misfit(expected: dict[str, np.ndarray], found: dict[str, np.ndarray],
           optimizer: bool = True) -> str | None:
    """What differs, in words, between a checkpoint's session state `found` and `expected`, the state of the
    run's model (a fresh session's get_state): its layers' weights (keys `w/LAYER/WEIGHT`), then, with
    `optimizer`, the optimizer's state (`opt/...`) and the step counter. None when nothing checked differs.
    (The optimizer is checked only once set_state has failed: older checkpoints lack some of its arrays.)"""
    why = _weights_misfit({k[2:]: v for k, v in expected.items() if k.startswith("w/")},
                          {k[2:]: v for k, v in found.items() if k.startswith("w/")})
    if why is not None or not optimizer:
        return why
    why = _optimizer_misfit({k[4:]: v for k, v in expected.items() if k.startswith("opt/")},
                            {k[4:]: v for k, v in found.items() if k.startswith("opt/")})
    if why is None and "step" in expected and "step" not in found:
        return "the checkpoint has no step counter"
    return why


def _weights_misfit(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> str | None:
    def has_layer(state, layer):
        return any(k.startswith(layer + "/") for k in state)

    for key, a in want.items():
        layer, name = key.split("/", 1)
        if key not in got:
            if not has_layer(got, layer):
                return f"the checkpoint has no weights for layer {layer}"
            return f"the checkpoint has no {name} for layer {layer}"
        if np.shape(got[key]) != np.shape(a):
            return f"layer {layer}'s {name} is {_shape(a)} in the model, {_shape(got[key])} in the checkpoint"
    for key in got:
        if key not in want:
            layer, name = key.split("/", 1)
            if not has_layer(want, layer):
                return f"the checkpoint has weights for a layer {layer} that the model does not have"
            return f"the checkpoint has a {name} for layer {layer}, which the model's layer does not have"
    return None


def _optimizer_misfit(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> str | None:
    missing = [k for k in want if k not in got]
    if missing and not got:
        return "the checkpoint has no optimizer state"
    if missing and len(missing) == len(want):
        return (f"the checkpoint holds another optimizer's state ({len(got)} arrays, none of the model's "
                f"{len(want)}: another optimizer, or another backend's)")
    if missing:
        names = ", ".join(map(_opt_name, missing[:3])) + (f" and {len(missing) - 3} more"
                                                          if len(missing) > 3 else "")
        return (f"the optimizer's state differs: the checkpoint lacks {len(missing)} of the model's "
                f"{len(want)} optimizer arrays ({names})")
    for key, a in want.items():
        if np.shape(got[key]) != np.shape(a):
            return (f"the optimizer's state differs: its {_opt_name(key)} is {_shape(a)} in the model, "
                    f"{_shape(got[key])} in the checkpoint")
    return None


def _shape(a) -> str:
    shape = np.shape(a)
    return "×".join(map(str, shape)) if shape else "a scalar"


def _opt_name(key: str) -> str:
    """An optimizer array of a session state (`opt/KEY`) in words."""
    if key == "iterations":
        return "iteration count"
    if key == "lr":
        return "learning rate"
    index, _, slot = key.partition("/")
    if index.isdigit():
        return f"slot {slot} of weight {index}" if slot else f"variable {index}"
    return key
