"""dlc's Python API, for notebooks, scripts and tests: the same compiler, data, seeded randomness, training
loop, run directories and comparison as the `dlc` commands, as functions.

    import dlc
    spec = dlc.load("specs/iris.dlspec")          # dlc.SpecError: the diagnostics `dlc check` prints
    data = dlc.load_data(spec)                    # .train/.val/.test: .x (split, normalised), .y
    model = dlc.Model(spec, backend="torch")      # dlc's seeded initial weights
    history = model.fit(epochs=5)                 # .rows (per epoch), .step_losses (per step)
    model.evaluate(data.test.x, data.test.y)      # {"loss": ..., "accuracy": ...}
    model.save("runs/iris-notebook")              # a run directory for `dlc evaluate` / `dlc predict`
    dlc.compare(spec, steps=50)                   # what `dlc compare --json` prints

A spec from `load` remembers its file (`spec.source_file`, not part of the IR), so relative data paths resolve
against the spec's folder wherever the current directory is; a spec without one (compiled from text) resolves
them against the current directory. Importing this module imports neither PyTorch nor TensorFlow: a backend is
imported when a Model is built on it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from dlc import tasks as _tasks
from dlc.backends import BackendUnavailable, LoweringMissing, check_device
from dlc.backends.emit.script import EmitUnsupported
from dlc.backends.exhausted import out_of_memory, out_of_memory_line
from dlc.backends.session import check_device_name, device_refusal
from dlc.compiler import SpecError
from dlc.compiler.checks import precision_conflict
from dlc.compiler.checkshared import layout_refusal
from dlc.compiler.diagnostics import escaped, text_cells
from dlc.compiler.search import value_text
from dlc.compiler.spec import Spec
from dlc.reference.callbacks import improved, monitor_mode
from dlc.runtime.data import DataError, Dataset, prepare
from dlc.runtime.data.normalize import dtype_limit, first_out_of_range
from dlc.runtime.doctor import LiveDoctor
from dlc.runtime.loop import History, LoopState, TrainingFailed
from dlc.runtime.lr_find import LRFind, LRFindError
from dlc.runtime.parallel import EXIT_WORKER_LOST, secondary_worker
from dlc.runtime.run import Finished, Observer, Resumable, RunFailed
from dlc.runtime.rundir import OutFolderError, cannot_write_in, disk_full, nearest_existing, output_file
from dlc.runtime.runs import RunDirError, inside_run
from dlc.runtime.serve import Predictions, ServeError, feature_file_refusal, nonfinite_weight, run_inputs
from dlc.runtime.tune import Reporter, TuneError, TuneResult
from dlc.tasks import (
    catalogue,
    checked,
    compile_refusal,
    compile_spec,
    data_files,
    doctor_fix,
    doctor_plot,
    doctor_rules,
    evaluate_run,
    export_onnx,
    launch,
    list_runs,
    lost_worker,
    lr_find_spec,
    parallel_blockers,
    plot_runs,
    predict_file,
    resumable,
    resume,
    run_file_owner,
    schema,
    search_summary,
    spec_folder,
    trainable,
    tune_target,
)

__all__ = ["DataError", "Dataset", "History", "Model", "SpecError", "TrainingFailed", "compare",
           "epoch_order", "load", "load_data",
           # what each `dlc` command does, as functions, and what they raise (the CLI is built on these)
           "BackendUnavailable", "EXIT_WORKER_LOST", "EmitUnsupported", "Finished", "LoweringMissing",
           "Observer",
           "OutFolderError", "Predictions", "Reporter", "Resumable", "RunDirError", "RunFailed", "ServeError",
           "TuneError", "TuneResult",
           "LiveDoctor", "doctor", "doctor_fix", "doctor_plot", "doctor_rules",
           "LRFind", "LRFindError", "lr_find", "lr_find_spec",
           "cannot_write_in", "catalogue", "check_device", "checked", "compile_refusal", "compile_spec",
           "cross_validate", "data_files",
           "device_refusal", "disk_full", "emit", "feature_file_refusal",
           "evaluate_run", "export_onnx",
           "improved", "inside_run", "launch", "list_runs",
           "lost_worker", "nearest_existing", "parallel_blockers",
           "secondary_worker",
           "monitor_mode", "out_of_memory", "out_of_memory_line", "output_file", "plot_runs", "predict_file",
           "resumable", "resume", "run",
           "run_file_owner",
           "escaped", "run_inputs", "schema", "search_summary", "summary", "terminal_safe", "text_cells",
           "trainable", "tune",
           "tune_target", "value_text"]


# ------------------------------------------------------------------------------------------------ specs

def as_the_command() -> None:
    """This process is the `dlc` command's (dlc.cli.entry), not a notebook's or a script's: a framework may be
    imported without what only a library user could call (dlc.backends.COMMAND)."""
    import dlc.backends

    dlc.backends.COMMAND = True


def load(path: str | Path) -> Spec:
    """Compile the spec file at `path`. Raises `SpecError`, whose `str()` is every error rendered as `dlc
    check` prints it (file:line:col, the line with a caret, the hint); warnings become Python warnings. The
    spec remembers its file: relative data paths resolve against its folder."""
    if not isinstance(path, (str, os.PathLike)):
        what = "a spec already loaded" if isinstance(path, Spec) else type(path).__name__
        raise TypeError(f"load() takes the path of a .dlspec file, not {what}")
    return _loaded(path)


def _loaded(path: str | Path, folds_given: bool = False) -> Spec:
    """load(path); `folds_given`: cross_validate's k replaces the spec's split (see tasks.compiled_file)."""
    _check_spec_path(path)
    result = _tasks.compiled_file(path, folds_given)
    errors = [d for d in result.diagnostics.sorted() if d.severity == "error"]
    if errors or result.spec is None:
        raise SpecError(errors, result.source, result.file)
    notes = [d for d in result.diagnostics.sorted() if d.severity != "error"]
    if notes:
        warnings.warn(SpecError(notes, result.source, result.file).render(), stacklevel=3)
    return result.spec.with_source_file(path)


def _check_spec_path(path: str | os.PathLike) -> None:
    """A path, not an empty string (Path("") is the current folder: "it is a directory") nor the text of a
    spec ("cannot read spec file 'model x {...': No such file")."""
    text = os.fspath(path)
    if not isinstance(text, str):
        return
    if not text.strip():
        raise ValueError("load() takes the path of a .dlspec file, not an empty string")
    if text != text.strip() and not os.path.exists(text) and os.path.exists(text.strip()):
        raise ValueError(f"load({text!r}): the path has spaces or a line break around it; "
                         f"{text.strip()!r} is there")
    looks_like_text = "\n" in text or "{" in text and "}" in text
    if looks_like_text and not os.path.exists(text):
        raise ValueError("load() takes the path of a .dlspec file, not the text of a spec; write the text to "
                         "a file and load that, or compile it: dlc.compiler.compile_text(text)"
                         ".raise_for_errors()")


def _as_spec(spec: Spec | str | Path, who: str) -> Spec:
    """A Spec, or a spec file's path loaded (`Model("digits.dlspec")`); TypeError for anything else."""
    if isinstance(spec, (str, os.PathLike)):
        return load(spec)
    if not isinstance(spec, Spec):
        raise TypeError(f"{who} takes a spec (dlc.load(PATH)) or the path of a .dlspec file, not "
                        f"{type(spec).__name__}")
    return spec


# the largest count the API takes: what a spec's integers take (64 bits, compiler.syntax.INT_MAX)
_COUNT_MAX = 2**63 - 1


def _whole(value: Any, name: str, least: int = 1, most: int | None = None) -> int | None:
    """An optional count given to the API: None, or an int (not a bool) of at least `least` (and at most
    `most`: _COUNT_MAX for counts nothing else bounds, `fit(epochs=10**30)` trained on, as no spec's
    `epochs` can)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, not {value}")
    if most is not None and value > most:
        raise ValueError(f"{name} must be at most {most} (2**63 - 1, as a spec's integers), not {value}")
    return int(value)


def _flag(value: Any, name: str) -> bool:
    """A yes/no argument: True or False (a string such as "no" is truthy: `replace="no"` deleted a run)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def _finite(x: np.ndarray, what: str, limit: float) -> None:
    """Inputs or weights the model can take: finite, within what its dtype holds (the data path's check,
    first_out_of_range, worded for an array given here: by its index)."""
    bad = first_out_of_range(x, limit)
    if bad is not None:
        at = f" (the first at index {bad.index})" if bad.index else ""
        raise ValueError(f"{what} hold values that are not finite or beyond ±{limit:.3g}{at}")


def _numbers(x: Any, what: str) -> np.ndarray:
    """`x` as a float64 array; TypeError for None, a dict or a generator, text or complex numbers (numpy
    would drop the imaginary parts with a warning, or say only that it "could not convert string to float");
    ValueError for ragged rows, masked values (np.asarray keeps what the mask hides) or an int beyond a
    float."""
    if x is None or isinstance(x, (dict, set, frozenset, Iterator)):
        # (numpy makes a 0-d object array of these: "float() argument must be ... a real number, not 'dict'")
        kind = "None" if x is None else type(x).__name__
        raise TypeError(f"{what} must be an array of numbers, not {kind}")
    if np.ma.isMaskedArray(x) and np.ma.count_masked(x):  # (np.asarray keeps the hidden values)
        raise ValueError(f"{what} have {np.ma.count_masked(x)} masked (missing) values; fill or drop them")
    try:
        a = np.asarray(x)
    except ValueError:  # (numpy: "setting an array element with a sequence ... inhomogeneous shape")
        raise ValueError(f"{what} are ragged: their rows are not all of one length") from None
    if a.dtype.kind not in "biufO":
        raise TypeError(f"{what} must be real numbers, not {a.dtype}")
    try:
        return np.asarray(a, dtype=np.float64)
    except OverflowError:  # (a Python int beyond what a float holds)
        raise ValueError(f"{what} hold a number too large for a float (beyond ±1.8e+308)") from None
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be real numbers ({e})") from None


def _require_concrete(spec: Spec) -> None:
    if spec.search_spaces:
        s = spec.search_spaces[0]
        raise ValueError(f"spec '{spec.name}' has search spaces ({s.kind}(...) at line {s.at[0]}): "
                         "training needs concrete values; search them with `dlc tune SPEC` (its best.dlspec "
                         "is concrete)")


# ------------------------------------------------------------------------------------------------- data

def load_data(spec: Spec) -> Dataset:
    """The spec's data as training sees it: loaded, split with the spec's seed, normalised with statistics of
    the training part, shaped to the spec's input. `.train`, `.val`, `.test` (None when the split has no such
    part) each have numpy `.x` and `.y` (targets as the loss wants them: one-hot for categorical_crossentropy,
    integer labels for sparse_categorical_crossentropy, a float column per sample otherwise) and `.labels`
    (integer classes, None for regression); `.num_classes`, `.shift` and `.scale` (x = (raw - shift) / scale).
    A `kfold` spec gives its fold 1 (train and validation parts as `dlc cv` builds them, normalised with the
    fold's training statistics, and the test part): what a `Model` of it trains, so that its `predict` and
    `evaluate` take these arrays as it was trained (all k: `dlc.api.cross_validate`). Raises `DataError`
    when a data file is missing or unreadable."""
    from dlc.compiler.spec import KFold
    from dlc.runtime.data import folds

    spec = _as_spec(spec, "load_data()")
    if spec.data is None:
        raise DataError(f"spec '{spec.name}' has no data block")
    if isinstance(spec.data.split, KFold):  # (all but the test part, as it was, were normalised with
        return folds(spec, spec_folder(spec))[0]  # other statistics than a fold-1 model's)
    return prepare(spec, spec_folder(spec))


def terminal_safe(text: str) -> str:
    """`text` with what a terminal would act on (an ESC in a file name colours it) shown escaped, line by
    line (its line breaks kept): what the command line prints of a message."""
    return "\n".join(escaped(line) for line in text.split("\n"))


def epoch_order(spec: Spec, epoch: int, n: int | None = None) -> np.ndarray:
    """The order in which training visits the `n` training samples (default: the spec's training part) in
    `epoch`, counted from 0 (history row `epoch: k` is `epoch_order(spec, k - 1, n)`): the seeded permutation,
    or 0..n-1 when the spec says `shuffle: false`. Batches are consecutive slices of batch_size."""
    from dlc.reference.rng import epoch_permutation

    spec = _as_spec(spec, "epoch_order()")
    first = _whole(epoch, "epoch", least=0, most=_COUNT_MAX)
    if first is None:
        raise TypeError("epoch must be a whole number, not None")
    n = _whole(n, "n", least=0, most=_COUNT_MAX)
    if n is None:
        n = len(load_data(spec).train.x)
    try:
        return np.asarray(epoch_permutation(spec.seed, first, n, spec.train.shuffle), dtype=np.int64)
    except MemoryError:  # (n=10**12: "Unable to allocate 7.28 TiB", as if the machine had failed)
        raise ValueError(f"n={n:,}: an order of that many samples ({8 * n / 2**30:,.0f} GiB) does not fit in "
                         "memory") from None


# ------------------------------------------------------------------------------------------------ model

def _check_precision(spec: Spec, dtype: str | None) -> None:
    """ValueError naming the argument for a `dtype` the spec's mixed precision cannot train in (the backend
    said only "precision: mixed_float16 ... cannot train in float64", not which argument asked for it)."""
    if dtype is not None and (problem := precision_conflict(spec, dtype)):
        raise ValueError(f"dtype={dtype!r}: {problem}; leave out dtype=, or use precision: float32")


class Model:
    """A spec's model on one backend ("torch" or "keras"), starting from dlc's seeded initial weights, so two
    Models of one spec start bit-identical on both backends and (in float64) train to the same numbers.

    `dtype` ("float32" | "float64") overrides the spec's; `device` is "auto", "cpu" or "cuda" (torch only);
    `compile=True` compiles the training step with torch.compile (torch only, as `dlc run --compile`).
    `.spec` is the spec as trained (with the dtype), `.session` the backend's Session, `.history` everything
    trained so far (all `fit` calls)."""

    def __init__(self, spec: Spec | str | Path, backend: str = "torch", dtype: str | None = None,
                 device: str = "auto", compile: bool = False):
        from dlc.backends import session_class
        from dlc.reference.weights import initial_weights

        spec = _as_spec(spec, "Model()")
        for name, value, allowed in (("backend", backend, ("torch", "keras")),
                                     ("dtype", dtype, (None, "float32", "float64"))):
            if value not in allowed:
                shown = ", ".join(repr(a) for a in allowed if a is not None)
                raise ValueError(f"{name}={value!r}: expected one of {shown}")
        _flag(compile, "compile")
        check_device_name(device)  # (before the spec's data or a framework is loaded)
        _check_precision(spec, dtype)
        _require_concrete(spec)
        if dtype is not None and dtype != spec.dtype:
            spec = spec.model_copy(update={"dtype": dtype})
        self.spec = spec
        self.backend = backend
        self.device, self.compile = device, compile
        try:
            self.session = session_class(backend)(spec, dtype=spec.dtype, device=device,
                                                  weights=initial_weights(spec), compile=compile)
        except RuntimeError as e:  # (a device this machine lacks, said in `dlc run`'s words: "--device cuda")
            if not str(e).startswith("--device "):
                raise
            raise RuntimeError(_in_api_words(str(e))) from None
        self._data: Dataset | None = None
        self._state: LoopState | None = None  # the training loop's state after the last finished epoch
        self._fit_failed = False  # (the weights are then looked at before they are used: a fit that diverged)

    def __repr__(self) -> str:
        return (f"Model({self.spec.name!r}, backend={self.backend!r}, dtype={self.spec.dtype!r}, "
                f"device={self.session.device_name!r}, "
                f"epochs_trained={len(self._state.history.rows) if self._state is not None else 0})")

    @property
    def data(self) -> Dataset:
        """The spec's data (`load_data(spec)`), loaded on first use. A kfold spec trains its fold 1 (train and
        validation parts as `dlc cv` builds them, and `dlc compare` compares), so that validation, early
        stopping and the plateau run; `dlc.api.cross_validate(spec, backend)` trains all k."""
        if self._data is None:
            self._data = load_data(self.spec)
        return self._data

    @property
    def history(self) -> History:
        """Every epoch row and step loss of every `fit` so far: a copy (editing it, or the rows `fit`
        returned, changed what `save` wrote)."""
        import copy

        return copy.deepcopy(self._state.history) if self._state is not None else History()

    # ---------------------------------------------------------------------------------------- weights

    def get_weights(self) -> dict[str, dict[str, np.ndarray]]:
        """layer name -> weight name -> array, in Keras' layouts and weight order (a Dense kernel is
        (inputs, units)); before training, exactly `dlc.reference.weights.initial_weights(spec)` (in the
        model's dtype), the same on every backend."""
        return self.session.get_weights()

    def _require_finite_weights(self, what: str) -> None:
        """TrainingFailed when a weight is nan or infinite (a fit that diverged leaves them so): evaluate
        scored its nan outputs' argmax as an accuracy, save wrote a run `dlc evaluate` reported as trained."""
        if not self._fit_failed:  # (only training makes them so: set_weights refuses them; not read per call)
            return
        weight = nonfinite_weight(self.session)
        self._fit_failed = weight is not None  # (set_weights may have replaced them all)
        if weight is not None:
            raise TrainingFailed(f"cannot {what}: the weight {weight} is not finite (a fit that diverged "
                                 "leaves it so); set_weights(), or a new Model with a lower learning rate")

    def set_weights(self, weights: dict[str, dict[str, np.ndarray]]) -> None:
        """Weights in `get_weights`' form (any subset of the layers and weights): each of its layer's shape,
        finite (ValueError naming the layer and weight otherwise)."""
        self.session.set_weights(self._checked_weights(weights))

    def _checked_weights(self, weights: dict) -> dict[str, dict[str, np.ndarray]]:
        from dlc.compiler.diagnostics import did_you_mean

        if not isinstance(weights, dict):
            raise TypeError(f"weights must be a dict of layer name -> {{weight name -> array}}, not "
                            f"{type(weights).__name__}")
        have = self.get_weights()
        limit = dtype_limit(self.spec.dtype)
        out: dict[str, dict[str, np.ndarray]] = {}
        for lname, ws in weights.items():
            if lname not in have:
                hint = did_you_mean(str(lname), list(have)) or f"layers with weights: {', '.join(have)}"
                raise ValueError(f"no layer {lname!r} with weights; {hint}")
            if not isinstance(ws, dict):
                raise TypeError(f"weights[{lname!r}] must be a dict of weight name -> array")
            out[lname] = {}
            for wname, arr in ws.items():
                if wname not in have[lname]:
                    raise ValueError(f"layer {lname!r} has no weight {wname!r}; its weights: "
                                     f"{', '.join(have[lname])}")
                a = _numbers(arr, f"{lname}.{wname}")
                if a.shape != have[lname][wname].shape:
                    raise ValueError(f"{lname}.{wname} has shape {have[lname][wname].shape}, not {a.shape}")
                _finite(a, f"{lname}.{wname}", limit)
                out[lname][wname] = a
        return out

    # --------------------------------------------------------------------------------------- training

    def fit(self, epochs: int | None = None, max_steps: int | None = None,
            verbose: int | str = "auto") -> History:
        """Train for `epochs` more epochs (default: the spec's `epochs`; with only `max_steps`, as many as
        those steps need) and at most `max_steps` more optimizer steps, exactly as `dlc run` trains: seeded
        shuffles, the schedule, validation, plateau and early stopping. A later `fit` continues where this one
        ended (epoch numbers, learning rate, optimizer state, dropout step), from the weights it ended with
        (the best epoch's when early stopping restored them); after early stopping stopped, it trains again
        with its patience reset. Returns this call's History: `.rows` (one dict per epoch: loss, metrics,
        val_*, lr, time), `.step_losses` (one float per step), `.stopped_early`, `.best_epoch`. Raises
        `TrainingFailed` on a non-finite loss (`.history` keeps the epochs before it). `verbose` as Keras'
        fit: 1 a progress bar over each epoch (running loss and metrics, time left) ending as the epoch's
        line, 2 one line per epoch, 0 nothing; "auto": 1 in a terminal or a notebook, 0 elsewhere."""
        from dlc.runtime.loop import train
        from dlc.runtime.verbose import FitPrinter, verbosity

        epochs, max_steps = _whole(epochs, "epochs", most=_COUNT_MAX), _whole(max_steps, "max_steps",
                                                                               most=_COUNT_MAX)
        level = verbosity(verbose)
        data = self.data
        state = self._state
        if state is not None and state.history.stopped_early:
            state.history.stopped_early, state.es_wait = False, 0
        done_epochs = state.epoch if state is not None else 0
        done_rows = len(state.history.rows) if state is not None else 0
        done_steps = len(state.history.step_losses) if state is not None else 0
        if epochs is None:
            epochs = self.spec.train.epochs if max_steps is None else \
                max(1, math.ceil(max_steps / math.ceil(len(data.train.x) / self.spec.train.batch_size)))

        def keep(s: LoopState) -> None:
            self._state = s

        printer = FitPrinter(level, done_epochs + epochs,
                             steps=math.ceil(len(data.train.x) / self.spec.train.batch_size))
        try:
            hist = train(self.session, self.spec, data, epochs=done_epochs + epochs,
                         max_steps=None if max_steps is None else done_steps + max_steps, resume=state,
                         on_checkpoint=keep, on_epoch=printer.epoch if level else None,
                         on_progress=printer.progress if printer.dynamic else None)
        except TrainingFailed:
            self._fit_failed = True
            raise
        finally:
            printer.close()
        return History(rows=[dict(r) for r in hist.rows[done_rows:]], stopped_early=hist.stopped_early,
                       best_epoch=hist.best_epoch,
                       restored_best=hist.restored_best, step_losses=hist.step_losses[done_steps:])

    # ------------------------------------------------------------------------------------------- using

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Loss (with the regularization penalties) and the spec's metrics in inference mode (no dropout,
        BatchNorm's moving statistics), as `dlc run` reports them. `x` is preprocessed like training's input:
        normalised as `load_data` returns it (e.g. `data.test.x`), shaped (N, *input) or flat (N, features);
        `y` as `load_data` gives it, or integer class labels (one-hot encoded when the loss wants it)."""
        from dlc.runtime.loop import evaluate

        self._require_finite_weights("evaluate")
        x = self._inputs(x)
        try:
            y = np.asarray(y)
        except ValueError:  # (numpy's "inhomogeneous shape")
            raise ValueError("the targets are ragged: their rows are not all of one length") from None
        y = self._targets(y, len(x))
        return evaluate(self.session, self.spec, self.session.load_data(x, y), self.spec.train.batch_size)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for inputs normalised like `load_data`'s (N, *input) or (N, features): class
        probabilities (N, classes) for softmax, P(class 1) (N, 1) for sigmoid, values for regression."""
        self._require_finite_weights("predict")
        x = self._inputs(x)
        if getattr(x, "streamed", False):  # an npy source's part: read and predicted a chunk at a time
            outs = [self.session.predict(x[i:i + 4096]) for i in range(0, len(x), 4096)]
            return np.concatenate(outs) if outs else np.zeros((0, *self.spec.output_shape()))
        return self.session.predict(x)

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        if getattr(x, "streamed", False):  # an npy source's part (load_data's), read a batch at a time
            if tuple(x.shape[1:]) != tuple(self.spec.input):
                raise ValueError(f"inputs of shape {x.shape}: the model takes (N, "
                                 f"{', '.join(map(str, self.spec.input))})")
            return x
        x = _numbers(x, "the inputs")
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"inputs of shape {x.shape}: no samples")
        _finite(x, "the inputs", dtype_limit(self.spec.dtype))
        shape = tuple(self.spec.input)
        if x.ndim >= 1 and x.shape[1:] != shape and math.prod(x.shape[1:]) == math.prod(shape):
            if refusal := layout_refusal(tuple(x.shape[1:]), shape):
                raise ValueError(f"the inputs: {refusal}")
            x = x.reshape((len(x),) + shape)
        if x.shape[1:] != shape:
            one = " (one sample? give x.reshape(1, -1))" if x.ndim == 1 and len(x) == math.prod(shape) else ""
            raise ValueError(f"inputs of shape {x.shape}: the model takes (N, {', '.join(map(str, shape))})"
                             + one)
        return x

    def _targets(self, y: np.ndarray, n: int) -> np.ndarray:
        """Targets as the loss wants them, each checked against the loss and the output layer as training's
        are (DataError naming the sample: a label out of range never reaches a backend's index error)."""
        from dlc.runtime.data import Samples, check_finite_targets, checked_targets

        if y.ndim == 0:  # (evaluate(x, None) said "len() of unsized object")
            raise TypeError(f"the targets must be an array with one entry per input, not {y.tolist()!r}")
        if len(y) != n:
            raise ValueError(f"{n} inputs but {len(y)} targets")
        if self.spec.targets == "int" and y.ndim == 2 and y.shape[1] > 1:
            y = self._one_hot_labels(y)  # one-hot rows, as load_data gives them for categorical_crossentropy
        given = Samples(np.empty((n, 0)), y, "the targets given")
        try:
            check_finite_targets(given)  # (a nan target of a regression gave {'loss': nan}, an inf one inf)
            targets, _, _ = checked_targets(self.spec, given)
        except DataError as e:  # (an argument, not a data file: a ValueError, as wrong inputs are)
            raise ValueError(str(e)) from None
        return targets

    def _one_hot_labels(self, y: np.ndarray) -> np.ndarray:
        """The class labels of one-hot rows: as many columns as the output has units, a single 1 in each row
        (argmax took the labels of 5-wide rows for a 3-class model, or of probabilities, without a word)."""
        units = math.prod(self.spec.output_shape())
        if y.shape[1] != units:
            raise ValueError(f"targets of shape {y.shape}: one-hot rows for this model have {units} columns "
                             f"(its output's units); or give class labels 0..{units - 1}")
        if y.dtype.kind not in "biuf" or not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise ValueError(f"targets of shape {y.shape} are not one-hot rows (a single 1 in each); give "
                             f"class labels 0..{units - 1}")
        return y.argmax(axis=1)

    # ------------------------------------------------------------------------------------------- files

    def save(self, directory: str | Path, replace: bool = False) -> Path:
        """Write a run directory as `dlc run` does (created if needed; one that is not empty is refused with
        OutFolderError unless `replace`, which deletes it first when dlc wrote it): the spec file (when the
        spec has one), ir.json, run.json (where the spec and its data live, the input preprocessing),
        env.json, the model (model.pt or model.keras, and model.json) and history.json/csv; once trained also
        metrics.json (train, val, test in inference mode) and curves.png; run.json's `finished` last. `dlc
        evaluate DIR` and `dlc predict DIR` load it."""

        from dlc.runtime import rundir

        directory = _run_folder(directory)
        replace = _flag(replace, "replace")
        self._require_finite_weights("save")
        spec, data = self.spec, self.data
        src = spec.source_file
        if (inside := inside_run(directory, "the directory")) is not None:
            raise OutFolderError(_in_api_words(inside))
        try:
            run = rundir.new_run_dir(spec.name, self.backend, directory, replace=replace, spec_file=src)
        except OutFolderError as e:
            raise OutFolderError(_in_api_words(str(e))) from None
        if src is not None and src.is_file() and src.parent.resolve() != run.resolve():
            rundir.copy_spec(run, str(src))
        rundir.write_text(run / "ir.json", spec.model_dump_json(indent=2))
        args = SimpleNamespace(spec=str(src if src is not None else run / "ir.json"), backend=self.backend,
                               device=self.device, compile=self.compile)
        info = rundir.run_info(args, spec, data)
        info["spec_dir"] = str(spec_folder(spec))
        rundir.write_json(run / "run.json", info)
        rundir.write_json(run / "env.json", rundir.env_info(self.backend, self.session.device_name))
        hist = self.history
        rundir.write_history(run, hist.rows)
        rundir.save_model(run, self.session)
        if hist.rows:
            rundir.plot_curves(run, hist.rows, f"{spec.name} ({self.backend})", best_epoch=hist.best_epoch)
            rundir.write_json(run / "metrics.json", self._final_metrics(data, hist))
        rundir.update_json(run / "run.json", finished=rundir.stamp())
        return run

    def _final_metrics(self, data: Dataset, hist: History) -> dict:
        from dlc.runtime.run import final_metrics

        out: dict = final_metrics(self.session, self.spec, data)
        out.update(epochs_run=len(hist.rows), stopped_early=hist.stopped_early, best_epoch=hist.best_epoch,
                   restored_best=hist.restored_best)
        return out


_check_hooks = _tasks.check_hooks


def _check_backend(backend: Any) -> None:
    """"torch" or "keras", before any work (`cross_validate(backend="jax")` made an empty run folder, then
    failed with RunFailed)."""
    if backend not in ("torch", "keras"):
        raise ValueError(f"backend={backend!r}: expected one of 'torch', 'keras'")


def _check_backend_pair(backends: Any) -> None:
    """Two different backends ("torch" alone was read as the backends 't' and 'o'; ("torch", "torch")
    compared a backend with itself and passed)."""
    if isinstance(backends, str) or not isinstance(backends, (tuple, list)) or len(backends) != 2:
        raise TypeError(f"backends must be a pair of backend names such as ('keras', 'torch'), not "
                        f"{backends!r}")
    for b in backends:
        if b not in ("torch", "keras"):
            raise ValueError(f"backend {b!r}: expected one of 'torch', 'keras'")
    if backends[0] == backends[1]:
        raise ValueError(f"backends={tuple(backends)!r}: compare two different backends")


def _run_folder(directory: Any) -> str:
    """save()'s folder: a path, not None, a number or "" (each was made into a folder: ./None, ./3, or a
    fresh runs/<name>-<backend>-<time>/)."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"save() takes the path of a folder, not {type(directory).__name__}")
    folder = os.fspath(directory)
    if not isinstance(folder, str) or not folder.strip():
        raise ValueError(f"save() takes the path of a folder, not {folder!r}")
    return folder


# what rundir's refusals say in `dlc run`'s words, as save()'s arguments say it
_API_WORDS = (("add --replace to delete it first", "pass replace=True to delete it first"),
              ("--replace", "replace=True"), ("another --out", "another folder"), ("--out ", ""),
              ("--backend torch", "backend='torch'"), ("--device ", "device="))


def _in_api_words(message: str) -> str:
    for cli, api in _API_WORDS:
        message = message.replace(cli, api)
    return message


# ------------------------------------------------------------------------- commands' arguments checked

def _out_folder(out: Any) -> str | None:
    """run()'s and cross_validate()'s `out`: None (a fresh folder under runs/) or a path; a number was made a
    folder named "5", an empty name fell back to a fresh folder."""
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)) or not str(os.fspath(out)).strip():
        raise TypeError(f"out must be the path of a folder (or None for a fresh one under runs/), "
                        f"not {out!r}")
    return os.fspath(out)


def run(spec: Spec | str | Path, backend: str = "torch", *, device: str = "auto",
        out: str | Path | None = None, replace: bool = False, observer: Observer | None = None,
        evidence: bool = True, compile: bool = False) -> Finished:
    spec = _as_spec(spec, "run()")
    _check_backend(backend)
    _check_hooks(observer)
    _require_concrete(spec)  # (it trained a spec of search spaces: each one's first option, silently)
    return _tasks.run(spec, backend, device=device, out=_out_folder(out),
                      replace=_flag(replace, "replace"), observer=observer,
                      evidence=_flag(evidence, "evidence"), compile=_flag(compile, "compile"))


def cross_validate(spec: Spec | str | Path, backend: str = "torch", *, device: str = "auto",
                   k: int | None = None, out: str | Path | None = None, replace: bool = False, on_fold=None,
                   evidence: bool = True, compile: bool = False) -> tuple[Path, dict]:
    spec = _loaded(spec, folds_given=k is not None) if isinstance(spec, (str, os.PathLike)) \
        else _as_spec(spec, "cross_validate()")
    _check_backend(backend)
    _check_hooks(on_fold=on_fold)
    _require_concrete(spec)
    return _tasks.cross_validate(spec, backend, device=device, k=k,
                                 out=_out_folder(out), replace=_flag(replace, "replace"), on_fold=on_fold,
                                 evidence=_flag(evidence, "evidence"), compile=_flag(compile, "compile"))


def doctor(run_dir: str | Path, target_accuracy: float | None = None):
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"doctor() takes the path of a run directory, not {type(run_dir).__name__}")
    if target_accuracy is not None and (isinstance(target_accuracy, bool)
                                        or not isinstance(target_accuracy, (int, float, np.number))):
        raise TypeError(f"target_accuracy must be a number between 0 and 1, not {target_accuracy!r}")
    return _tasks.doctor(run_dir, target_accuracy)


def tune(result, *, backend: str = "torch", device: str = "auto", out: str | None = None,
         trials: int | None = None, workers: int = 1, threads: int | None = None, refine: str | None = None,
         study: str | None = None, reporter: Reporter | None = None, trial_nproc: int = 1) -> TuneResult:
    result = _tunable(result)
    _check_backend(backend)
    # (trials=1.5 ran 2 trials and wrote 1.5 in tune.json, trials="2" and out=7 were TypeErrors from inside)
    out = _out_folder(out)
    trials, threads = _whole(trials, "trials", most=_COUNT_MAX), _whole(threads, "threads")
    workers, trial_nproc = _whole(workers, "workers") or 1, _whole(trial_nproc, "trial_nproc") or 1
    if refine is not None and not isinstance(refine, (str, os.PathLike)):
        raise TypeError(f"refine must be the path of a tune folder or None, not {refine!r}")
    if study is not None and not isinstance(study, str):
        raise TypeError(f"study must be a name or None, not {study!r}")
    with _said_in_api_words(TuneError):
        _check_threads(threads)
        return _tasks.tune(result, backend=backend, device=device, out=out, trials=trials, workers=workers,
                           threads=threads, refine=refine, study=study, reporter=reporter,
                           trial_nproc=trial_nproc)


# whether the API is called by a `dlc` command (`on_the_command_line`): its errors then say options
_ON_THE_COMMAND_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar("dlc_command_line", default=False)


@contextlib.contextmanager
def on_the_command_line():
    """The API called by a `dlc` command (dlc.cli.main): errors keep the command line's words (`--steps`)."""
    token = _ON_THE_COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _ON_THE_COMMAND_LINE.reset(token)


def _check_threads(threads: int | None) -> None:
    """TuneError for more threads per trial than the cores can run (each trial failed: "Overflow when
    unpacking long long")."""
    from dlc.runtime.parallel import OVERSUBSCRIBE, usable_cores

    cores = usable_cores()
    if threads is not None and threads > OVERSUBSCRIBE * cores:
        plural = "s" if cores != 1 else ""
        raise TuneError(f"--threads {threads}: this machine has {cores} CPU core{plural} for dlc, and more "
                        f"than {OVERSUBSCRIBE} threads per core only wait for each other; give at most "
                        f"--threads {cores}")


@contextlib.contextmanager
def _said_in_api_words(*kinds: type[BaseException]):
    """An error of `kinds` raised below, reworded for a library caller (`--steps must be at least 10` is
    `steps must be ...`, `--replace` is `replace=True`); the command line's words are kept for `dlc`."""
    try:
        yield
    except kinds as e:
        if _ON_THE_COMMAND_LINE.get() or len(e.args) != 1 or not isinstance(e.args[0], str):
            raise
        e.args = (_option_words(_in_api_words(e.args[0])),)
        raise


def _option_words(message: str) -> str:
    """`--threads 9` as `threads=9`, `--trial-nproc` as `trial_nproc`: an option as the function's keyword."""
    def keyword(m: re.Match) -> str:
        return m[1].replace("-", "_") + (f"={m[2]}" if m[2] else "")

    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)(?: (-?\d[\d.eE+-]*))?", keyword, message)


def _tunable(target: Any) -> Any:
    """What `tune` searches: `checked(path)`, or, as `Model` and `run` take a spec, the path of a .dlspec
    file or the spec `load` read from one (it failed with AttributeError: 'str' object has no attribute
    'spec'); the search needs the file (best.dlspec is it with each space replaced). TypeError for another
    type, ValueError for a spec that is no longer its file's."""
    from dlc.compiler import Compiled

    if isinstance(target, Compiled):
        return target
    if isinstance(target, (str, os.PathLike)):
        _check_spec_path(target)
        return checked(os.fspath(target))
    if isinstance(target, Spec):
        if target.source_file is None:
            raise ValueError("tune() searches a spec file (it writes best.dlspec from it): give the path of "
                             "the .dlspec file; this spec was not read from one")
        result = checked(target.source_file)
        if result.spec != target:
            raise ValueError(f"tune(): this spec is not what {target.source_file} says now (changed since "
                             "dlc.load read it, or built in Python); tune() searches the file: give its path")
        return result
    raise TypeError(f"tune() takes the path of a .dlspec file with a search block (or "
                    f"dlc.api.checked(PATH)), not {type(target).__name__}")


def summary(spec: Spec | str | Path) -> str:
    return _tasks.summary(_as_spec(spec, "summary()"))


def emit(spec: Spec | str | Path, target: str) -> str:
    return _tasks.emit(_as_spec(spec, "emit()"), target)


def lr_find(spec: Spec | str | Path, backend: str = "torch", **options: Any) -> LRFind:
    from dlc.runtime.lr_find import LRFindError

    with _said_in_api_words(LRFindError):
        return _tasks.lr_find(_as_spec(spec, "lr_find()"), backend, **options)


# (a Spec or a spec file's path, as Model takes it: a path failed with AttributeError, 'str' object has no
# attribute 'input')
summary.__doc__ = f"{_tasks.summary.__doc__} `spec`: a Spec or the path of a .dlspec file."
emit.__doc__ = f"{_tasks.emit.__doc__} `spec`: a Spec or the path of a .dlspec file."
lr_find.__doc__ = f"{_tasks.lr_find.__doc__} `spec`: a Spec or the path of a .dlspec file."
tune.__doc__ = _tasks.tune.__doc__
run.__doc__, cross_validate.__doc__ = _tasks.run.__doc__, _tasks.cross_validate.__doc__
doctor.__doc__ = _tasks.doctor.__doc__


# ---------------------------------------------------------------------------------------------- compare

# compare()'s arguments that apply to one of its modes only, with their defaults: each mode refuses the
# other's given another value (they were ignored, silently: `compare(spec, seeds=3, steps=50)` trained to
# the end)
_STEP_MODE = {"steps": 200, "dtype": "float64"}
_SEEDS_MODE = {"margin": 0.02, "rel_margin": 0.05, "alpha": 0.05}


def _only_what_applies(seeds: int | None, **given: Any) -> None:
    """ValueError naming the arguments `compare` was given that its mode (seeds=N or steps) does not use."""
    other, mode = (_STEP_MODE, "seeds=N compares where float32 trainings end") if seeds is not None else \
        (_SEEDS_MODE, "without seeds= it compares step for step")
    unused = [f"{name}={given[name]!r}" for name, default in other.items()
              if given[name] != default]
    if unused:
        one = len(unused) == 1
        hint = f"leave {'it' if one else 'them'} out" if seeds is not None else \
            f"{'it is' if one else 'they are'} the equivalence test of seeds=N"
        raise ValueError(f"compare(): {', '.join(unused)} do{'es' if one else ''} not apply: {mode}; {hint}")


def compare(spec: Spec | str | Path, steps: int | None = 200, dtype: str = "float64",
            backends: tuple[str, str] = ("keras", "torch"), *, seeds: int | None = None,
            margin: float = 0.02, rel_margin: float = 0.05, alpha: float = 0.05,
            on_phase: Callable[[str], None] | None = None) -> dict:
    """Train `spec` on both backends for `steps` optimizer steps (None: exactly the spec's own run) from the
    same weights, batches and dropout masks; returns what `dlc compare --json` prints: per-backend `losses`,
    `max_abs_loss_diff`, `max_rel_loss_diff`, `initial_weight_max_abs_diff` (0.0: bit-identical),
    `final_weight_max_abs_diff`, `max_abs_val_loss_diff`, `final_metrics`, the `verdict` ("equivalent",
    "equivalent_near_tie" or "mismatch"), `summary`, `passed` (not a mismatch) and the `reasons` (where the
    bounds broke). float64 is held to |Δloss| ≤ 1e-10·max(1, |loss|) per step; float32 to 2e-6 + 1e-6·|loss|
    until its first near-tie: where that breaks at step K (`separated_at_step`, `separation`), the run is
    repeated in float64 for max(K, 200) steps, at most `steps` (`float64_steps`, `float64_max_rel_diff`;
    dlc.runtime.compare.float64_rerun_steps) and a mismatch there is located
    (`first_mismatch_step`, `first_loss_mismatch_step`, `first_weight_mismatch_step`, `first_mismatch_layer`,
    `mismatch_layers`).

    `seeds=N` (N ≥ 2, else ValueError) compares where training ends instead: both backends trained in float32
    to the end of the spec's training on seeds spec.seed, + 1, ..., their final test metrics tested for
    equivalence by TOST on the paired differences (`margin`: absolute, for accuracy, precision, recall, f1;
    `rel_margin`: relative to the mean, for the loss, mse, mae; level `alpha`); `steps` and `dtype` do not
    apply (ValueError when given another value, as `margin`, `rel_margin` and `alpha` without `seeds`).
    Returns `mode` "seeds", `seeds`, `split`, `metrics` and `runs` per backend and seed, `differences`,
    `p_values` and `tests` per metric, `verdict` ("equivalent", "inconclusive" or "different"), `summary`,
    `passed`.

    `on_phase`, when given, hears each training before it starts ("training keras in float64, 200 steps"):
    a comparison is several trainings, of seconds to minutes each."""
    from dlc.runtime.compare import compare_seeds, compare_spec, reporting

    spec = _as_spec(spec, "compare()")
    _require_concrete(spec)
    steps, seeds = _whole(steps, "steps"), _whole(seeds, "seeds", least=0)
    if seeds is not None and seeds < 2:  # (compare_seeds said it in the command line's words: "--seeds")
        raise ValueError(f"seeds must be at least 2, not {seeds}: the paired t-tests need at least 2 seeds")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r}: expected one of 'float32', 'float64'")
    _check_backend_pair(backends)
    _check_hooks(on_phase=on_phase)
    _only_what_applies(seeds, steps=steps, dtype=dtype, margin=margin, rel_margin=rel_margin, alpha=alpha)
    for name, value in (("margin", margin), ("rel_margin", rel_margin), ("alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not (0 < margin < math.inf and 0 < rel_margin < math.inf and 0 < alpha < 0.5):
        raise ValueError(f"margin and rel_margin must be positive numbers and alpha between 0 and 0.5 "
                         f"(margin={margin!r}, rel_margin={rel_margin!r}, alpha={alpha!r})")
    with reporting(on_phase):
        if seeds is not None:
            return compare_seeds(spec, spec_folder(spec), seeds, margin=margin, rel_margin=rel_margin,
                                 alpha=alpha, backends=backends)
        return compare_spec(spec, spec_folder(spec), steps, dtype, backends).to_json()
