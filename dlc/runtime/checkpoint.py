"""Checkpoints at an epoch's end (when dlc.runtime.epochfiles says the run's files are due): the session's
state (weights, optimizer slots, counters) and the loop's state in one .npz, written to a temporary file and
renamed over the old one, so a run killed at any moment (even kill -9) leaves the last one written intact.

The loop state is JSON (LoopState.to_json: its history rows included, so a checkpoint resumes on its own):
`loop`, its UTF-8 bytes (a uint8 array), each row encoded once per run (rundir.EncodedRows); checkpoints of
an earlier dlc hold it as a numpy string (4 bytes a character), which load() reads too."""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
import zlib
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
    if (kind := _not_a_file(path)) is not None:
        raise RunDirError(f"{path} {kind}; {again}")
    if not path.is_file():
        return None
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
        if (problem := loop_problem(loop)) is not None:
            raise RunDirError(f"{path} is damaged ({problem}); {again}")
        state = LoopState.from_json(loop, best or None)
    except RunDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error,
            RecursionError, MemoryError) as e:
        raise RunDirError(f"{path} is damaged (truncated or not a dlc checkpoint: {_damage(e)}); {again}") \
            from None
    if not session_state:
        raise RunDirError(f"{path} is not a dlc checkpoint (no model state); {again}")
    if (problem := arrays_problem(session_state, best)) is not None:
        raise RunDirError(f"{path} is damaged ({problem}); {again}")
    return session_state, state


def _not_a_file(path: Path) -> str | None:
    """What the checkpoint's path is when it is there but no file to read (a folder, a dangling link, a pipe
    whose reading would wait forever, an empty file), in words; None for a file, or nothing."""
    if path.is_dir():
        return "is a folder, not a dlc checkpoint"
    if path.is_symlink() and not path.exists():
        return "is a symbolic link that leads nowhere (or in a loop)"
    if path.exists() and not path.is_file():
        return "is not a regular file (a pipe, a socket or a device)"
    if path.is_file() and path.stat().st_size == 0:
        return "is empty"
    return None


def _damage(e: BaseException) -> str:
    """Why reading a checkpoint failed, in words (zlib.error: a compressed member whose data is damaged;
    RecursionError: a loop state nested beyond the JSON decoder's depth; MemoryError: an array header that
    claims more than memory holds)."""
    why = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "Object arrays cannot be loaded" in why:  # (numpy's words for a member of Python objects)
        return "an array holds Python objects, which dlc never unpickles"
    if isinstance(e, (zipfile.BadZipFile, zlib.error)) or "pickle" in why:
        return "not a complete .npz archive"
    if isinstance(e, RecursionError):
        return "its loop state is nested too deeply to be dlc's"
    if isinstance(e, MemoryError):
        return "an array's header claims more values than memory holds"
    return why


# the loop state's keys (LoopState.to_json; `has_best_weights` is said by the `b:` arrays themselves)
LOOP_KEYS = ("epoch", "lr", "plateau", "es_best", "es_wait", "rows", "stopped_early", "best_epoch")
MOST_EPOCHS = 2**31 - 1  # (a count beyond this is no epoch count: an edit, or damage)


def _count(v: object) -> bool:
    """A whole count as the loop keeps one: an int (not a bool), 0 .. MOST_EPOCHS."""
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MOST_EPOCHS


def _number(v: object) -> bool:
    """A number as JSON gives one back (int or float, not a bool; inf and nan included)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _shown(v: object) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def loop_problem(loop: object) -> str | None:
    """What makes a checkpoint's loop state one the loop cannot go on from (LoopState.to_json's fields of
    the wrong kind: an edit by hand, or a file that is not dlc's), in words; None when it is sound. (Such a
    state reached the loop and failed there, as "TypeError: '>=' not supported ...", with no file named.)"""
    if not isinstance(loop, dict):
        return f"its loop state is {_shown(loop)}, not an object"
    missing = next((k for k in LOOP_KEYS if k not in loop), None)
    if missing is not None:
        return f"its loop state has no '{missing}'"
    for key in ("epoch", "es_wait"):
        if not _count(loop[key]):
            return f"its loop state's {key} is {_shown(loop[key])}, not a count of epochs"
    if loop["best_epoch"] is not None and not _count(loop["best_epoch"]):
        return f"its loop state's best_epoch is {_shown(loop['best_epoch'])}, not an epoch"
    lr = loop["lr"]
    if not _number(lr) or not math.isfinite(lr) or lr < 0:
        return f"its loop state's lr is {_shown(lr)}, not a learning rate"
    if loop["es_best"] is not None and not _number(loop["es_best"]):
        return f"its loop state's es_best is {_shown(loop['es_best'])}, not a number"
    if not isinstance(loop["stopped_early"], bool):
        return f"its loop state's stopped_early is {_shown(loop['stopped_early'])}, not true or false"
    return _plateau_rows_problem(loop)


def _plateau_rows_problem(loop: dict) -> str | None:
    """loop_problem's second half: the plateau's state and the history rows."""
    plateau = loop["plateau"]
    if plateau is not None and not (isinstance(plateau, dict) and _number(plateau.get("best"))
                                    and _count(plateau.get("wait")) and _count(plateau.get("cooldown"))):
        return f"its loop state's plateau is {_shown(plateau)}, not the plateau's best, wait and cooldown"
    rows = loop["rows"]
    if not isinstance(rows, list):
        return f"its loop state's rows are {_shown(rows)}, not a list of epochs"
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not _count(row.get("epoch")) \
                or not all(v is None or _number(v) for v in row.values()):
            return f"its history row {i} is {_shown(row)}, not an epoch's numbers"
    return None


def arrays_problem(state: dict[str, np.ndarray], best: dict) -> str | None:
    """An array of the session state (or of the best weights) that is not real numbers (complex, text: it
    reached the framework, which cast it with a warning or failed in its own words), or a weight that is not
    finite (a resumed run wrote a model of nan weights and nan metrics, exit 0); None when none."""
    arrays = [(k, v) for k, v in state.items()]
    arrays += [(f"best weights {k}", v) for k, v in flatten(best, "").items()] if best else []
    for key, a in arrays:
        if a.dtype.kind not in "biuf":
            return f"its {key} holds {a.dtype} values, not numbers"
    for key, a in arrays:
        if (key.startswith("w/") or key.startswith("best ")) and a.dtype.kind == "f" \
                and not np.isfinite(a).all():
            return f"its {key} holds nan or infinite weights"
    return None


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
