"""Using a trained run: `dlc evaluate`, `dlc predict` and `dlc export --format onnx`.

A run directory is rebuilt from its ir.json and run.json: the model is loaded on the backend it was trained
on, and inputs get exactly the preprocessing that training fitted (saved in run.json), so raw feature files
work.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ServeError(Exception):
    """Bad run directory or input file: one clear line, exit 1."""


def load_run(run: Path, backend: str | None = None):
    """(spec, session, info) for a finished run directory."""
    from dlc.backends import session_class
    from dlc.compiler.spec import Spec

    run = Path(run)
    for name in ("ir.json", "run.json", "model.json"):
        if not (run / name).is_file():
            raise ServeError(f"'{run}' is not a finished run directory (no {name})")
    spec = Spec.model_validate_json((run / "ir.json").read_text())
    info = json.loads((run / "run.json").read_text())
    session = session_class(backend or info["backend"])(spec, device="cpu")
    try:
        session.load(run)
    except Exception as e:  # noqa: BLE001 — any failure to read a truncated or foreign model file
        why = str(e).splitlines()[0] if str(e) else e
        raise ServeError(f"cannot load the model in '{run}': {why}") from None
    return spec, session, info


def preprocess(info: dict, spec, x: np.ndarray, source: str) -> np.ndarray:
    """Raw features (N, *input) or (N, prod(input)) → what the model saw in training."""
    need = int(np.prod(spec.input))
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != need:
        got = x.shape[1] if x.ndim == 2 else tuple(x.shape[1:])
        raise ServeError(f"{source}: samples have {got} features, the model takes {need} "
                         f"(input {tuple(spec.input)})")
    flat = x.reshape(len(x), -1).astype(np.float64)
    bad = np.argwhere(~np.isfinite(flat))
    if bad.size:
        r, c = bad[0]
        raise ServeError(f"{source}: sample {r + 1}, feature {c + 1} is not a finite number")
    pre = info.get("preprocessing") or {}
    if pre.get("shift") is not None:
        flat = (flat - np.asarray(pre["shift"])) / np.asarray(pre["scale"])
    return flat.reshape((len(flat),) + tuple(spec.input))


def read_features(path: Path, n_features: int | None = None, target: str | None = None):
    """(x, y or None) from a .csv (header optional; a column named `target` is split off) or .npz (x[, y])."""
    if not path.is_file():
        raise ServeError(f"no such file: {path}")
    if path.suffix == ".npz":
        return _read_npz(path)
    if path.suffix != ".csv":
        raise ServeError(f"{path}: expected a .csv or .npz file")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        raise ServeError(f"{path}: empty file")
    header = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    rows, y = _split_target(rows, header, n_features, target)
    x = _numbers(path, rows, first_row=1 + (header is not None))
    if y is not None:
        try:
            y = y.astype(np.float64)
        except ValueError:
            raise ServeError(f"{path}: the target column holds non-numbers") from None
    return x, y


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.files)
            xk = "x" if "x" in keys else keys[0]
            return np.asarray(f[xk], dtype=np.float64), (np.asarray(f["y"]) if "y" in keys else None)
    except (OSError, ValueError) as e:
        raise ServeError(f"cannot read {path}: {e}") from None


def _split_target(rows: list[list[str]], header: list[str] | None, n_features: int | None,
                  target: str | None):
    """(feature rows, target column or None): the column named `target`, else a last column beyond the
    n_features the model takes."""
    if header is not None and target and target in header:
        t = header.index(target)
        return [[v for i, v in enumerate(r) if i != t] for r in rows], np.array([r[t] for r in rows])
    if n_features is not None and rows and len(rows[0]) == n_features + 1:
        return [r[:-1] for r in rows], np.array([r[-1] for r in rows])
    return rows, None


def _numbers(path: Path, rows: list[list[str]], first_row: int) -> np.ndarray:
    """The CSV cells as floats (an empty cell is NaN); ServeError naming the row (as numbered in the file) and
    column of the first that is not a number."""
    width = {len(r) for r in rows}
    if len(width) > 1:
        raise ServeError(f"{path}: rows have different numbers of columns ({sorted(width)})")
    x = np.empty((len(rows), width.pop() if width else 0))
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            try:
                x[i, j] = float(v) if v.strip() else np.nan
            except ValueError:
                raise ServeError(f"{path}: row {i + first_row}, column {j + 1} is not a number "
                                 f"({v!r})") from None
    return x


@dataclass
class Predictions:
    """What `dlc predict` writes: the model's outputs and a table (a class column then the probabilities, or
    the predicted values) with its column names."""

    task: str  # categorical | binary | regression
    outputs: np.ndarray
    columns: list[str]
    table: np.ndarray


def predict(run: str | Path, input_file: str | Path) -> Predictions:
    """Predictions of a finished run for a file of raw features (the training preprocessing applied)."""
    spec, session, info = load_run(Path(run))
    x, _ = read_features(Path(input_file), None)
    out = session.predict(preprocess(info, spec, x, str(input_file)))
    task = type(spec.loss).task
    if task == "categorical":
        cols = ["class"] + [f"p{k}" for k in range(out.shape[1])]
        table = np.column_stack([out.argmax(axis=1), out])
    elif task == "binary":
        cols = ["class", "p1"]
        table = np.column_stack([(out[:, 0] > 0.5).astype(int), out[:, 0]])
    else:
        cols = [f"y{k}" for k in range(out.shape[1])] if out.shape[1] > 1 else ["y"]
        table = out
    return Predictions(task, out, cols, table)


def evaluate_run(run: str | Path, data_file: str | Path | None = None) -> dict[str, dict[str, float]]:
    """Loss and metrics of a finished run on its own train/val/test splits, or on a file of raw features with
    targets ({"data": ...})."""
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import evaluate

    spec, session, info = load_run(Path(run))
    if data_file is not None:
        return {"data": _evaluate_file(spec, session, info, str(data_file))}
    data = prepare(spec, Path(info["spec_dir"]))
    results = {}
    for part in ("train", "val", "test"):
        split = getattr(data, part)
        if split is not None:
            results[part] = evaluate(session, spec, session.load_data(split.x, split.y),
                                     spec.train.batch_size)
    return results


def _evaluate_file(spec, session, info: dict, data_file: str) -> dict[str, float]:
    from dlc.runtime.data import _targets
    from dlc.runtime.loop import evaluate

    target = getattr(spec.data.source, "target", None) if spec.data else None
    x, y = read_features(Path(data_file), int(np.prod(spec.input)), target)
    if y is None:
        raise ServeError(f"{data_file}: no target column or array y to evaluate against")
    xs = preprocess(info, spec, x, data_file)
    task = type(spec.loss).task
    targets = _targets(spec, y, info.get("num_classes")) if task != "regression" else y.reshape(len(y), -1)
    return evaluate(session, spec, session.load_data(xs, targets), spec.train.batch_size)


def export_onnx(run: Path, out: Path) -> dict:
    """ONNX through the torch lowering (backends/torch/export.py): weights from the run's own model, the
    training preprocessing folded in front, the output activation at the end."""
    from dlc.backends.torch.export import export_onnx as torch_export

    spec, session, info = load_run(run)
    pre = info.get("preprocessing") or {}
    torch_export(spec, session.get_weights(), pre.get("shift"), pre.get("scale"), out)
    return {"file": str(out), "input": ["batch", *spec.input], "preprocessing": "included"}
