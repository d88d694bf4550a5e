"""Using a trained run: `dlc evaluate`, `dlc predict` and `dlc export --format onnx`.

A run directory is rebuilt from its ir.json and run.json: the model is loaded on the backend it was trained
on, and inputs get exactly the preprocessing that training fitted (saved in run.json), so raw feature files
work.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.compiler.checkshared import layout_refusal
from dlc.compiler.diagnostics import DlcError
from dlc.runtime.runs import backend_problem, digest_problem, path_argument
from dlc.runtime.runs import shown_value as _shown


class ServeError(DlcError):
    """Bad run directory or input file: one clear line, exit 1."""


def load_run(run: str | Path, backend: str | None = None):
    """(spec, session, info) for a finished run directory."""
    from dlc.backends import session_class
    from dlc.runtime.runs import require_finished

    run = given_path(run, "the run directory")
    require_finished(run)  # the one notion of a finished run (dlc.runtime.runs.run_state), else why not
    spec = _run_spec(run)
    info = json.loads((run / "run.json").read_text())
    if info.get("input") is not None and list(spec.input) != list(info["input"]):
        raise ServeError(f"'{run}': ir.json is not this run's (its input is {tuple(spec.input)}, run.json's "
                         f"{tuple(info['input'])}); were files copied from another run? train the spec again")
    session = session_class(backend or _run_backend(run, info))(spec, device="cpu")
    try:
        with warnings.catch_warnings():  # a foreign file's warnings (Keras: "Skipping ...") are not the error
            warnings.simplefilter("ignore")
            session.load(run)  # the model rebuilt from ir.json; only its weights are read from the file
    except Exception as e:  # noqa: BLE001 — any failure to read a truncated or foreign model file
        raise ServeError(f"cannot load the model in '{run}': {_not_loaded(run, info, e)}") from None
    if (weight := nonfinite_weight(session)) is not None:  # (predict blamed the inputs: "too large")
        from dlc.runtime.runs import retrain

        raise ServeError(f"'{run}': the model's weight {weight} is not finite (its training diverged: a "
                         f"lower learning rate?); {retrain(run)}")
    check_digests(run)
    try:
        normalisation(info, spec)
    except ServeError as e:
        raise ServeError(f"'{run}': {e}") from None
    return spec, session, info


def nonfinite_weight(session) -> str | None:
    """`layer.weight` of the first nan or infinite weight of a loaded model, or None."""
    for layer, weights in session.get_weights().items():
        for name, w in weights.items():
            if not np.isfinite(w).all():
                return f"{layer}.{name}"
    return None


def given_path(value, what: str) -> Path:
    """A path given to the API or a command: TypeError for what is not one (Path(None) said "expected str,
    bytes or os.PathLike object"), ServeError for an empty one (Path("") is the current folder)."""
    path = path_argument(value, what)
    if not str(value).strip():
        raise ServeError(f"{what} is an empty name; give a path")
    return path


def _run_spec(run: Path):
    """The run's ir.json as a Spec; ServeError when it reads as JSON but is not dlc's IR (pydantic's "5
    validation errors for Spec" was the whole line)."""
    from pydantic import ValidationError

    from dlc.compiler.spec import Spec
    from dlc.runtime.runs import retrain

    try:
        spec = Spec.model_validate_json((run / "ir.json").read_text())
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(k) for k in first["loc"]) or "the top level"
        raise ServeError(f"'{run}': ir.json is damaged (not dlc's IR: {where}: {first['msg']}); "
                         f"{retrain(run)}") from None
    if (problem := _unbuildable(spec)) is not None:
        raise ServeError(f"'{run}': ir.json is damaged ({problem}); {retrain(run)}")
    return spec


def _unbuildable(spec) -> str | None:
    """Why an IR that reads as dlc's cannot be a trained model's (`"layers": []` was "IndexError: list index
    out of range"): no layers, or layers whose shapes do not follow from the input."""
    if not spec.layers:
        return "it has no layers"
    try:
        spec.output_shape()
    except Exception as e:  # noqa: BLE001 - any failure of the shape inference is the file's damage
        return f"its layers do not fit its input: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


def _run_backend(run: Path, info: dict) -> str:
    """run.json's backend: one dlc has (a KeyError or "unknown backend 'jax'" otherwise)."""
    problem = backend_problem(info)
    if problem is not None:
        raise ServeError(f"'{run}': {_damaged(problem)}")
    return info["backend"]


# what the frameworks say of an archive cut short or overwritten (torch's zip reader, Keras' zipfile)
_CUT_SHORT = ("PytorchStreamReader", "File is not a zip file", "central directory", "Bad magic number",
              "truncated")


def _not_loaded(run: Path, info: dict, e: Exception) -> str:
    """Why the model file did not load, in one line: the framework's first line, or what it means."""
    from dlc.runtime.runs import retrain

    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    why = lines[0] + (f" {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else "")
    if "size mismatch" in why or "Missing key" in why or "Unexpected key" in why:
        return why + " (the model file does not fit ir.json: were files copied from another run?)"
    if "weights_only" in str(e) or "Weights only load failed" in why:
        # (never pass on torch's advice to load with weights_only=False: that runs the file's code)
        return ("model.pt is damaged or not a PyTorch state_dict of tensors (it is "
                "only ever read as tensors); train the spec again (--replace)")
    if any(mark in why for mark in _CUT_SHORT):  # (torch's is three sentences about miniz)
        name = "model.keras" if info.get("backend") == "keras" else "model.pt"
        return f"{name} is damaged (not a complete archive: cut short or written over); {retrain(run)}"
    return why


RUN_SPEC, RUN_DATA = "the run's spec", "the run's data file"  # (run_inputs' words for what each file is)


def run_inputs(run: str | Path, *, named: bool = False) -> list:
    """The files the run was trained from: its spec file and its data files (run.json's `spec` and
    `data_read`, ir.json's source resolved against the spec's folder), which an output of predict or export
    must not overwrite. What cannot be read is left out (loading the run says what is damaged). With `named`,
    (path, what it is) pairs: RUN_SPEC or RUN_DATA, for the line that refuses an output there."""
    from dlc.compiler.checkshared import resolve_path
    from dlc.compiler.spec import Spec

    if not ((Path(run) / "run.json").is_file() and (Path(run) / "ir.json").is_file()):
        return []  # (neither there, or a pipe, which reading would wait on forever)
    try:
        info = json.loads((Path(run) / "run.json").read_text())
        spec = Spec.model_validate_json((Path(run) / "ir.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(info, dict):
        return []
    read = info.get("data_read")
    # (a bundled data set's `file` is its name, not a path)
    listed = [(info.get("spec"), RUN_SPEC), (read.get("file") if isinstance(read, dict) else None, RUN_DATA)]
    found = [(Path(f), what) for f, what in listed if isinstance(f, str) and Path(f).is_absolute()]
    source = spec.data.source if spec.data is not None else None
    if isinstance(info.get("spec_dir"), str) and source is not None:
        keys = ("x", "y") if source.name == "npy" else ("path",)  # (npz's x and y name arrays, not files)
        written = [getattr(source, k, None) for k in keys]
        found += [(resolve_path(Path(info["spec_dir"]), f), RUN_DATA) for f in written if isinstance(f, str)]
    return found if named else [f for f, _ in found]


def check_digests(run: Path) -> None:
    """The model file and ir.json are the ones the run saved (dlc.runtime.runs.digest_problem): ServeError
    saying which is not, else nothing."""
    problem = digest_problem(run)
    if problem is not None:
        raise ServeError(f"'{run}': {problem}")


def normalisation(info: dict, spec) -> tuple[np.ndarray, np.ndarray] | None:
    """(shift, scale) of run.json's `preprocessing`, checked: present when the spec normalises (absent when
    it does not), numbers, one per feature the model takes. An edited or damaged value would otherwise change
    every prediction silently (a short list is broadcast over every feature)."""
    how = spec.data.normalize if spec.data is not None else "none"
    pre = info.get("preprocessing")
    if how == "none":
        if pre is None or isinstance(pre, dict) and pre.get("shift") is None and pre.get("scale") is None:
            return None
        raise _damaged(f"preprocessing holds statistics ({_shown(pre)}), but the spec does not normalise")
    if not isinstance(pre, dict) or pre.get("shift") is None or pre.get("scale") is None:
        raise _damaged(f"preprocessing is {_shown(pre)}, not the shift and scale of normalize: {how}")
    need = int(np.prod(spec.input))
    shift, scale = (_statistics(pre, key, need) for key in ("shift", "scale"))
    if not scale.all():
        raise _damaged(f"preprocessing's scale has a 0 (feature {int(np.argmin(scale != 0)) + 1})")
    return shift, scale


def _statistics(pre: dict, key: str, need: int) -> np.ndarray:
    """preprocessing[key]: `need` finite numbers."""
    values = pre[key]
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise _damaged(f"preprocessing's {key} is {_shown(values)}, not a list of numbers")
    if len(values) != need:
        raise _damaged(f"preprocessing's {key} has {len(values)} value{'s' * (len(values) != 1)}, the model "
                       f"takes {need} feature{'s' * (need != 1)}")
    out = np.asarray(values, dtype=np.float64)
    if not np.isfinite(out).all():
        j = int(np.argmin(np.isfinite(out)))
        raise _damaged(f"preprocessing's {key} has a value that is not finite (feature {j + 1})")
    return out


def _damaged(why: str) -> ServeError:
    return ServeError(f"run.json is damaged: {why}; train the spec again")


def preprocess(info: dict, spec, x: np.ndarray, source: str, row=None) -> np.ndarray:
    """Raw features (N, *input) or (N, prod(input)) → what the model saw in training; `row(i)` names sample i
    in messages (default "sample i+1")."""
    from dlc.runtime.data import check_model_inputs

    row = row or (lambda i: f"sample {i + 1}")
    need = int(np.prod(spec.input))
    if x.ndim < 2:
        raise ServeError(f"{source}: the features have shape {x.shape}; the model takes one sample per row, "
                         f"(N, {need})")
    if int(np.prod(x.shape[1:])) != need:
        got = x.shape[1] if x.ndim == 2 else tuple(x.shape[1:])
        raise ServeError(f"{source}: samples have {got} feature{'s' * (got != 1)}, the model takes {need} "
                         f"(input {tuple(spec.input)})")
    if refusal := layout_refusal(tuple(x.shape[1:]), tuple(spec.input)):
        raise ServeError(f"{source}: {refusal}")
    flat = x.reshape(len(x), -1).astype(np.float64)
    bad = np.argwhere(~np.isfinite(flat))
    if bad.size:
        r, c = bad[0]
        raise ServeError(f"{source}: {row(int(r))}, feature {c + 1} is not a finite number")
    stats = normalisation(info, spec)
    if stats is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            flat = (flat - stats[0]) / stats[1]
    check_model_inputs(spec, flat, source, row)
    return flat.reshape((len(flat),) + tuple(spec.input))


# the files read_features reads, by the name's ending
FEATURE_FILE_SUFFIXES = (".csv", ".npz", ".npy")


def feature_file_refusal(path: Path, kinds: str = "a .csv, .npz or .npy file") -> str | None:
    """Why `path` cannot be a file of samples, said after its name (" is a folder, not a .csv, ..."): a
    folder, something that is not a regular file (/dev/null, a pipe: "no such file" was not so), a name
    whose ending is none read_features reads; None when it may be one (a missing file included: the caller
    says that, as a failure rather than a usage error). `kinds`: the files the caller takes, in its words."""
    try:
        is_dir, is_other = path.is_dir(), path.exists() and not path.is_file()
    except OSError as e:  # (a name too long, a folder that may not be looked in)
        return f": {e.strerror or e}; give {kinds}"
    if is_dir:
        return f" is a folder, not {kinds}"
    if is_other:
        return f" is not a regular file; give {kinds}"
    if path.suffix not in FEATURE_FILE_SUFFIXES:
        ending = f"not {path.suffix}" if path.suffix else "its name has no ending"
        return f": dlc reads {kinds}, by the name's ending ({ending})"
    return None


def read_features(path: Path, n_features: int | None = None, target: str | None = None):
    """Samples from a .csv (the header rule; a column named `target`, or a last column beyond the n_features
    the model takes, is the target) or an .npz (x, or its only array; y if there); a file without targets
    gets a y of no columns."""
    from dlc.runtime.data import Samples, read_table, table_numbers
    from dlc.runtime.data.plaincsv import plain_numbers

    refusal = feature_file_refusal(path)
    if refusal is not None:
        raise ServeError(f"{path}{refusal}")
    if not path.is_file():  # (a link to nowhere or in a loop was "no such file", a file that `ls` lists)
        dangling = path.is_symlink()
        raise ServeError(f"{path}: a symbolic link that leads nowhere (or in a loop)" if dangling
                         else f"no such file: {path}")
    if path.suffix == ".npz":
        return _read_npz(path)
    if path.suffix == ".npy":  # features only (np.save), as an npy source's x file
        from dlc.runtime.data import Samples, numeric_features, open_npy

        x = open_npy(path, mmap=False)
        return Samples(numeric_features(path, x, "x"), np.empty((len(x), 0)), str(path))
    _check_commas(path)
    plain = plain_numbers(path)  # (a large file of numbers only: numpy's parser, the same values)
    if plain is not None:
        t = _target_column(plain, n_features, target)
        x = np.ascontiguousarray(plain.cells[:, [j for j in range(plain.width) if j != t]])
        y = np.empty((len(x), 0)) if t is None else np.ascontiguousarray(plain.cells[:, t])
        return Samples(x, y, str(path), plain.lines, None, plain.header is not None)
    table = read_table(path)
    t = _target_column(table, n_features, target)
    x = table_numbers(table, [j for j in range(table.width) if j != t])
    y = np.empty((len(x), 0)) if t is None else _numeric_targets(table, t)
    return Samples(x, y, str(path), table.lines, None, table.header is not None)


def _check_commas(path: Path) -> None:
    """A CSV file separated by tabs, semicolons or vertical bars is named so (compiler/datarows.py's
    other_separator, as `dlc check` names it): read with commas, each row is one cell, and a lone first row
    was "no data rows, only a header row (1\t2\t3\t4)"."""
    from dlc.compiler.csvtable import other_separator
    from dlc.compiler.datafiles import csv_first_row

    try:
        first = csv_first_row(path)
    except (OSError, ValueError):  # (ValueError: not UTF-8 or UTF-16 text, not CSV)
        return  # (read_table says why it cannot be read)
    problem = other_separator(first) if first is not None else None
    if problem is not None and first is not None:
        raise ServeError(f"{path}: {problem} (the first row: {first[0][:40]!r})")


def _read_npz(path: Path):
    """Samples of an .npz: features `x` (or the archive's only array), targets `y` when there."""
    from dlc.runtime.data import Samples, check_same_length, npz_array, numeric_features, open_npz

    with open_npz(path) as f:
        keys = list(f.files)
        if not keys:
            raise ServeError(f"{path}: the archive holds no arrays (expected x, and y to evaluate)")
        if "x" not in keys and len(keys) > 1:
            raise ServeError(f"{path}: no array 'x' (arrays: {', '.join(keys)}); name the features x")
        xk = "x" if "x" in keys else keys[0]
        x = npz_array(path, f, xk)
        y = npz_array(path, f, "y") if "y" in keys else None
    if y is None:
        return Samples(numeric_features(path, x, xk), np.empty((len(x), 0)), str(path))
    check_same_length(path, x, y, xk, "y")
    return Samples(numeric_features(path, x, xk), y, str(path))


def _target_column(table, n_features: int | None, target: str | None) -> int | None:
    """The column named `target`, else a last column beyond the n_features the model takes, else None."""
    if table.header is not None and target and target in table.header:
        return table.header.index(target)
    if n_features is not None and table.width == n_features + 1:
        return table.width - 1
    return None


def _numeric_targets(table, t: int) -> np.ndarray:
    from dlc.runtime.data import target_values

    y, names = target_values(table, t)
    if names is not None:
        return np.array([names[int(k)] for k in y])  # class names: the run's own numbering maps them
    return y


@dataclass
class Predictions:
    """What `dlc predict` writes: the model's outputs and a table (a class column then the probabilities, or
    the scores of a regression loss on classes, or the predicted values) with its column names; `read` says
    what was read ("read 3 rows from x.csv ...")."""

    task: str  # categorical | binary | regression
    outputs: np.ndarray
    columns: list[str]
    table: np.ndarray
    read: str = ""
    class_names: list[str] | None = None  # class k's name, when the training targets were names

    def __repr__(self) -> str:
        """The table's size and columns, not every prediction."""
        from dlc.runtime.reprs import clipped

        cols = clipped(", ".join(self.columns), 80)
        return f"Predictions({self.task}, {len(self.table)} rows × {len(self.columns)} columns: {cols})"


def predict(run: str | Path, input_file: str | Path) -> Predictions:
    """Predictions of a finished run for a file of raw features (the training preprocessing applied)."""
    from dlc.runtime.data import read_summary

    path = given_path(input_file, "the input file")
    spec, session, info = load_run(run)
    s, note = _features_to_predict(spec, info, path)
    out = session.predict(preprocess(info, spec, s.x, str(input_file), s.row))
    check_finite_outputs(out, str(input_file), s.row)
    task = spec.task
    names = _class_names(info, 2 if task == "binary" else out.shape[1]) if task != "regression" else None
    prefix = output_prefix(spec)
    label = (lambda k: f"{prefix}_{names[k]}") if names else (lambda k: f"{prefix}{k}")
    if task == "categorical":
        cols = ["class"] + [label(k) for k in range(out.shape[1])]
        table = np.column_stack([out.argmax(axis=1), out])
    elif task == "binary":
        cols = ["class", label(1)]
        table = np.column_stack([(out[:, 0] > 0.5).astype(int), out[:, 0]])
    else:
        cols = [f"y{k}" for k in range(out.shape[1])] if out.shape[1] > 1 else ["y"]
        table = out
    return Predictions(task, out, cols, table, read_summary(s.read()) + note, names)


def output_prefix(spec) -> str:
    """The name of a classifier's output columns: `p` (p0, p_setosa) for a crossentropy's probabilities;
    `score` for a regression loss (mse, mae, huber) trained on classes (Spec.task), whose outputs need not be
    probabilities (a linear layer's are negative, or above 1) though the largest still picks the class."""
    return "score" if type(spec.loss).task == "regression" else "p"


def _features_to_predict(spec, info: dict, path: Path):
    """(samples, note) of `path` for predict: a CSV column named as the spec's target is left out (as `dlc
    evaluate --data` reads it; it said "row 2, column 5 ('species') is not a number"), and `note` says so;
    one column beyond the features is an error that says what to do."""
    target = getattr(spec.data.source, "target", None) if spec.data is not None else None
    need = int(np.prod(spec.input))
    s = read_features(path, None, target)
    check_column_order(spec, info, path)
    if path.suffix == ".csv" and s.has_targets:
        return s, f"; column {target!r} (the target) left out"
    if s.x.ndim == 2 and s.x.shape[1] == need + 1 and path.suffix == ".csv":
        raise ServeError(f"{path}: rows have {need + 1} columns, the model takes {need} features; if the "
                         "last is the target, leave it out (`dlc evaluate RUN --data FILE` uses it)")
    return s, ""


def check_column_order(spec, info: dict, path: Path) -> None:
    """A CSV file whose header names the training file's feature columns in another order is refused: the
    features are read by position, so each value would meet another feature's weights and statistics, and
    every prediction would be silently wrong. (Only the two header rows are read; a training file that is
    gone, or either file without a header, is not compared.)"""
    from dlc.compiler.csvtable import header_of
    from dlc.compiler.datafiles import csv_first_row
    from dlc.runtime.reprs import clipped

    source = spec.data.source if spec.data is not None else None
    trained_on = getattr(source, "path", None)
    if path.suffix != ".csv" or type(source).__name__ != "Csv" or not isinstance(trained_on, str):
        return
    try:
        given = csv_first_row(path)
        first = csv_first_row(Path(str(info.get("spec_dir", "."))) / trained_on)
    except (OSError, ValueError):  # (read_features said what is wrong with the given file)
        return
    mine, theirs = header_of(given or []), header_of(first or [])
    if mine is None or theirs is None:
        return
    target = getattr(source, "target", None) or theirs[-1]
    mine = [c for c in mine if c != target]
    theirs = [c for c in theirs if c != target]
    if mine != theirs and sorted(mine) == sorted(theirs):
        raise ServeError(f"{path}: its columns are the training file's in another order "
                         f"({clipped(', '.join(mine), 80)}; the run was trained on "
                         f"{clipped(', '.join(theirs), 80)}), and features are read by position; write the "
                         "columns in the training file's order")


def _class_names(info: dict, classes: int) -> list[str] | None:
    """The names of the run's classes (run.json's `class_names`: the training targets were names, numbered in
    sorted order), when there is one per class; None for class numbers."""
    names = info.get("class_names")
    if isinstance(names, list) and len(names) == classes and all(isinstance(n, str) for n in names):
        return names
    return None


def check_finite_outputs(out: np.ndarray, source: str, row) -> None:
    """A nan or infinite prediction is an error, never a number written to the output."""
    bad = ~np.isfinite(out.reshape(len(out), -1)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ServeError(f"{source}: the model's output for {row(i)} is not finite "
                         f"({np.array2string(out[i], precision=4)}); its inputs are too large for this model")


def evaluate_run(run: str | Path, data_file: str | Path | None = None,
                 on_read=None) -> dict[str, dict[str, float]]:
    """Loss and metrics of a finished run on its own train/val/test splits, or on a file of raw features with
    targets ({"data": ...}); `on_read(line)` is told what was read from the file."""
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import evaluate

    data_path = None if data_file is None else given_path(data_file, "the data file")
    spec, session, info = load_run(run)
    if data_path is not None:
        return {"data": _evaluate_file(spec, session, info, str(data_path), on_read)}
    if not isinstance(info.get("spec_dir"), str):  # (Path(None): "expected str, bytes or os.PathLike")
        raise ServeError(f"'{run}': {_damaged('it does not say where the spec and its data live (spec_dir)')}"
                         "; or evaluate on a file with --data FILE")
    data = prepare(spec, Path(info["spec_dir"]))
    check_same_data(getattr(data, "read", None), info.get("data_read"))
    results = {}
    for part in ("train", "val", "test"):
        split = getattr(data, part)
        if split is not None:
            results[part] = evaluate(session, spec, session.load_data(split.x, split.y),
                                     spec.train.batch_size)
    return results


def check_same_data(now, then) -> None:
    """The data reads as it did in training (run.json's `data_read`: its rows, whether the first was a
    header), else ServeError: a file changed since gives other splits, whose test part can hold rows the model
    trained on, printed as the run's. (A run without the record is not checked.)"""
    from dlc.runtime.data import read_change

    why = read_change(now, then, "when the run was trained")
    if why is None:
        return
    raise ServeError(f"{why}: its splits would not be the run's (the data changed since it was trained); "
                     "train the spec again, or evaluate on a file as it is with --data FILE")


def _evaluate_file(spec, session, info: dict, data_file: str, on_read=None) -> dict[str, float]:
    from dlc.runtime.data import check_finite_targets, checked_targets, read_summary
    from dlc.runtime.loop import evaluate

    target = getattr(spec.data.source, "target", None) if spec.data else None
    s = read_features(Path(data_file), int(np.prod(spec.input)), target)
    check_column_order(spec, info, Path(data_file))
    if not s.has_targets:
        raise ServeError(f"{data_file}: no target column or array y to evaluate against")
    s.y = _run_class_numbers(s, info)
    check_finite_targets(s)
    xs = preprocess(info, spec, s.x, data_file, s.row)
    targets, _, _ = checked_targets(spec, s)
    results = evaluate(session, spec, session.load_data(xs, targets), spec.train.batch_size)
    if not all(np.isfinite(v) for v in results.values()):
        raise ServeError(f"{data_file}: the loss or a metric is not finite ({results}); some inputs are too "
                         "large for this model")
    if on_read is not None:
        on_read(read_summary(s.read()))
    return results


def _run_class_numbers(s, info: dict) -> np.ndarray:
    """Targets that are class names, numbered as the run's training data numbered them."""
    if s.y.dtype.kind not in "US":
        return s.y
    names = info.get("class_names")
    if not names:
        raise ServeError(f"{s.where}: the target column holds names ({str(s.y[0])!r} in {s.row(0)}), but the "
                         "run was trained on class numbers; give the numbers 0, 1, ...")
    number = {name: k for k, name in enumerate(names)}
    for i, v in enumerate(s.y.tolist()):
        if v not in number:
            raise ServeError(f"{s.where}: class {v!r} in {s.row(i)} is not one the run was trained on "
                             f"({', '.join(names)})")
    return np.array([number[v] for v in s.y.tolist()])


def _export_to(export, tmp: Path) -> None:
    """`export(path)` writing `tmp`; through a file of a UTF-8 name when `tmp`'s is not (a folder named in
    another encoding: torch's exporter passes the name to C++, which took it for a wrong argument)."""
    try:
        str(tmp).encode("utf-8")
    except UnicodeEncodeError:
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dlc-export-") as folder:
            export(Path(folder) / "model.onnx")
            shutil.copyfile(Path(folder) / "model.onnx", tmp)
        return
    export(tmp)


def export_onnx(run: str | Path, out: str | Path) -> dict:
    """ONNX through the torch lowering (backends/torch/export.py): weights from the run's own model, the
    training preprocessing folded in front, the output activation at the end."""
    from dlc.backends.torch.export import export_onnx as torch_export
    from dlc.runtime.rundir import output_file

    out = given_path(out, "the output file")
    spec, session, info = load_run(run)
    shift, scale = normalisation(info, spec) or (None, None)
    try:
        with output_file(out) as tmp:
            _export_to(lambda path: torch_export(spec, session.get_weights(), shift, scale, path), tmp)
    except OSError as e:  # (it named the temporary file, "x.onnx.tmp.onnx", or no file at all)
        raise ServeError(f"cannot write {out}: {e.strerror or e}") from None
    exported = {"file": str(out), "input": ["batch", *spec.input], "preprocessing": "included"}
    if spec.train.mixed:  # (the graph is float32: the run's 16-bit rounding is not in it)
        exported["note"] = (f"the run trained with precision: {spec.train.precision} (its layers compute "
                            f"in {spec.train.compute_dtype}); the ONNX model computes in float32, so its "
                            "outputs differ from `dlc predict`'s by that rounding (about 1e-3), not within "
                            "1e-5")
    return exported
