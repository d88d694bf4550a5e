"""What each `dlc` command does, as functions of the public API (`dlc.api` re-exports every name here): the
command line parses arguments, calls one of these and prints what it returns, so a notebook or script can do
everything the CLI does. Nothing here prints or picks an exit code; failures are exceptions (see dlc.api).

Heavy imports (the backends, Optuna, matplotlib) happen inside the functions that need them, so importing the
API stays cheap and `dlc check` imports neither PyTorch nor TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlc.compiler import Compiled, SpecError, compile_file
from dlc.compiler.spec import Spec
from dlc.runtime.run import Finished, Observer, Resumable

if TYPE_CHECKING:
    from dlc.runtime.doctor import Fixed, Report
    from dlc.runtime.lr_find import LRFind
    from dlc.runtime.serve import Predictions
    from dlc.runtime.tune import Reporter, TuneResult


# -------------------------------------------------------------------------------------------------- specs

def compile_spec(path: str | Path) -> Compiled:
    """Every diagnostic of the spec at `path` (`.spec` is None when it has errors): what `dlc check` shows."""
    return compile_file(path)


def compiled_file(path: str | Path, folds_given: bool = False) -> Compiled:
    """compile_file; `folds_given`: for `dlc cv --k`, which replaces the spec's split, the split is not
    checked against the data's rows (cv_fold_errors checks the folds that are made)."""
    result = compile_file(path)
    if not folds_given:
        return result
    from dlc.compiler.datachecks import without_split_row_errors

    return replace(result, diagnostics=without_split_row_errors(result.diagnostics, result.tree))


def checked(path: str | Path, folds_given: bool = False) -> Compiled:
    """The compiled spec; SpecError with every diagnostic when it has errors (its warnings are in
    `.diagnostics` for the caller to show). `folds_given`: see compiled_file."""
    result = compiled_file(path, folds_given)
    if not result.ok or result.spec is None:
        raise SpecError(result.diagnostics.sorted(), result.source, result.file)
    return result


def summary(spec: Spec) -> str:
    """Every layer with its output shape and parameter count, as `dlc check` prints it."""
    from dlc.compiler.summary import summary_text

    return summary_text(spec)


def search_summary(result: Compiled) -> str | None:
    """What `dlc tune` would search, as `dlc check` prints it under the model; None for a spec without a
    search."""
    from dlc.compiler.summary import search_text

    return search_text(result)


def trainable(result: Compiled, seed: int | None = None, dtype: str | None = None,
              epochs: int | None = None) -> Spec:
    """The spec of a checked result as `dlc run` trains it: runnable as it is (SpecError, positioned, when it
    has search spaces or another blocker), with the overrides, remembering its file."""
    from dlc.runtime.run import trainable as runtime_trainable

    return runtime_trainable(result, seed, dtype, epochs).with_source_file(result.file)


def schema() -> dict[str, Any]:
    """The IR's JSON Schema."""
    return Spec.model_json_schema()


EMIT_TARGETS = ("keras", "torch")


def emit(spec: Spec, target: str) -> str:
    """A standalone training script for `target` ("keras" or "torch") that gives `dlc run`'s per-step losses
    (ValueError for another target, EmitUnsupported when an item has no emitted form)."""
    from dlc.backends.emit.script import emit as emit_script

    if target not in EMIT_TARGETS:
        raise ValueError(f"target={target!r}: expected one of {', '.join(map(repr, EMIT_TARGETS))}")
    return emit_script(spec, target, _spec_path(spec))


def catalogue(markdown: bool = False) -> str:
    """Every catalogue item, its support on each target and its measured Keras/PyTorch |Δ| (`markdown`:
    True or False, TypeError for anything else: `catalogue("no")` was Markdown)."""
    from dlc.runtime.catalogue import render

    if not isinstance(markdown, bool):
        raise TypeError(f"markdown must be True or False, not {markdown!r}")
    return render(markdown)


def _spec_path(spec: Spec) -> str:
    """The file the spec came from (the run directory's copy of it), else '<spec>'."""
    return str(spec.source_file) if spec.source_file is not None else "<spec>"


def spec_folder(spec: Spec) -> Path:
    """Where the spec's relative data paths live: its file's folder, else the current directory."""
    return spec.source_file.parent if spec.source_file is not None else Path.cwd()


# --------------------------------------------------------------------------------------------- training

def run(spec: Spec, backend: str = "torch", *, device: str = "auto", out: str | Path | None = None,
        replace: bool = False, observer: Observer | None = None, evidence: bool = True,
        compile: bool = False) -> Finished:
    """`dlc run`: train into a run directory (`out`, default a fresh one under runs/), reporting to
    `observer`. A folder `out` that is not empty is refused (OutFolderError) unless `replace`, which deletes
    it first when dlc wrote it. Returns the directory, the history and metrics.json's content. A failure
    after the directory exists is RunFailed (its `.run` is kept, with the history so far). `evidence`:
    write the training evidence, evidence.json (dlc.runtime.evidence), which `dlc doctor` reads. `compile`:
    torch.compile the training step (torch only; `compiles(backend)`)."""
    from dlc.runtime.run import train_run

    return train_run(spec, backend, _spec_path(spec), spec_folder(spec), device=device,
                     out=None if out is None else str(out), replace=replace, observer=observer,
                     evidence=evidence, compile=compile)


def data_files(spec: Spec) -> list[Path]:
    """The files (or MNIST folder) the spec's data source reads, found as the runtime finds them (relative
    to the spec's folder); none for a bundled data set or a spec without data."""
    from dlc.compiler.checkshared import resolve_path

    source = spec.data.source if spec.data is not None else None
    keys = ("x", "y") if getattr(source, "name", None) == "npy" else ("path",)  # (npz's x, y: array names)
    written = [getattr(source, k, None) for k in keys]
    return [resolve_path(spec_folder(spec), p) for p in written if isinstance(p, str)]


def run_file_owner(path: str | Path) -> str | None:
    """"a dlc run" (cv, tune) when `path` names a file dlc writes in such a folder (RUN/model.pt, written or
    not), else None: what an output option must not overwrite."""
    from dlc.runtime.rundir import KIND_NAMES, dlc_file_kind

    kind = dlc_file_kind(path)
    return KIND_NAMES[kind] if kind is not None else None


def compile_refusal(backend: str) -> str | None:
    """Why `--compile` cannot be used on `backend` (None: it can)."""
    from dlc.backends import session_class

    return session_class(backend).compile_refusal


def parallel_blockers(spec: Spec, backend: str = "torch", nnodes: int = 1) -> list[str]:
    """Why `dlc run --nproc` cannot train the spec data-parallel on `backend` over `nnodes` machines (empty:
    it can)."""
    from dlc.runtime.parallel import blockers

    return blockers(spec, backend, nnodes)


def launch(args: Sequence[str], nproc: int, *, nnodes: int = 1, node_rank: int = 0,
           master_addr: str | None = None, master_port: int | None = None,
           quiet_args: Sequence[str] = ()) -> tuple[int, str]:
    """`dlc run --nproc N`: run the command `dlc *args` as `nproc` data-parallel workers on this machine
    (rank 0 prints and writes the run directory; `quiet_args` are added for the others), `nnodes` machines
    in all with the rendezvous at `master_addr:master_port`, and wait for them. Returns (exit code, a line
    for stderr): the line says which worker stopped when one did (the others are then stopped); it is
    empty when the run finished or rank 0 reported its own failure. ValueError for bad launch options."""
    from dlc.runtime.parallel import Launch, check_launch
    from dlc.runtime.parallel import launch as start_workers

    how = Launch(nproc, nnodes, node_rank, master_addr, master_port)
    problem = check_launch(how)
    if problem:
        raise ValueError(problem)
    return start_workers(list(args), how, list(quiet_args))


def lost_worker(exc: BaseException) -> bool:
    """Whether `exc` is a data-parallel worker's lost peer in a worker that dlc's launcher started (which
    reports it in one line itself, so the worker ends quietly with exit code EXIT_WORKER_LOST)."""
    from dlc.runtime.parallel import LAUNCHED, WorkerLost

    cause = getattr(exc, "cause", exc)
    return isinstance(cause, WorkerLost) and bool(os.environ.get(LAUNCHED))


_OBSERVER_HOOKS = ("started", "training", "progress", "epoch", "evidence")


def check_hooks(observer: Any = None, **callbacks: Any) -> None:
    """An observer with Observer's methods and callables for `callbacks` (or None), before any work:
    `run(observer=3)` made a run folder, then failed with RunFailed ('int' object has no attribute
    'evidence'); `on_fold=3` and `on_phase=3` failed as 'int' object is not callable."""
    if observer is not None and not all(callable(getattr(observer, h, None)) for h in _OBSERVER_HOOKS):
        raise TypeError(f"observer must be a dlc.api.Observer (subclass it and override the methods you "
                        f"need: {', '.join(_OBSERVER_HOOKS)}), not {type(observer).__name__}")
    for name, value in callbacks.items():
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a function (or None), not {type(value).__name__}")


def resumable(run_dir: str | Path) -> Resumable:
    """The run directory as `--resume` sees it: `.finished`, or the exact spec it was training and how far it
    got (`.epochs_done` of `.epochs_total`; `.complete`: only its final files are left to write). RunDirError
    when it cannot be continued (damaged, a cv or tune folder)."""
    from dlc.runtime.run import resume_target

    return resume_target(run_dir)


def resume(target: Resumable | str | Path, *, device: str = "auto", observer: Observer | None = None,
           evidence: bool = True) -> Finished:
    """Continue a killed run (from `resumable`, or the path of its directory) from its last finished epoch,
    in its own directory (its evidence.json continued, when it has one and `evidence`). RunDirError for a
    run that has finished (nothing to resume) or cannot be continued."""
    from dlc.runtime.run import train_run
    from dlc.runtime.runs import RunDirError

    check_hooks(observer)
    if isinstance(target, (str, os.PathLike)):  # (it failed: 'str' object has no attribute 'spec')
        target = resumable(target)
    elif not isinstance(target, Resumable):
        raise TypeError(f"resume() takes what resumable(RUN) returns, or the path of a run directory, not "
                        f"{type(target).__name__}")
    if target.finished:
        raise RunDirError(f"{target.run}: this run already finished; nothing to resume")

    return train_run(target.spec, target.backend, target.spec_file, target.base_dir,
                     device=target.device(device), resume=target, observer=observer, evidence=evidence,
                     compile=target.compiled)


def cross_validate(spec: Spec, backend: str = "torch", *, device: str = "auto", k: int | None = None,
                   out: str | Path | None = None, replace: bool = False, on_fold=None,
                   evidence: bool = True, compile: bool = False) -> tuple[Path, dict]:
    """`dlc cv`: k-fold cross-validation into a run directory (`out` and `replace` as for `run`);
    (directory, summary with per-fold rows, mean and std). `on_fold(row)` is called after each fold.
    `evidence`: each fold_N/ gets its evidence.json."""
    from dlc.runtime.cv import cross_validate as run_folds

    return run_folds(spec, _spec_path(spec), backend, device, k, None if out is None else str(out), on_fold,
                     replace, evidence, compile)


def tune_target(spec: str | None, refine: str | None) -> str:
    """The spec file `dlc tune` searches: the one given, else the one the refined run searched."""
    from dlc.runtime.tune import spec_to_tune

    return spec_to_tune(spec, refine)


def tune(result: Compiled, *, backend: str = "torch", device: str = "auto", out: str | None = None,
         trials: int | None = None, workers: int = 1, threads: int | None = None, refine: str | None = None,
         study: str | None = None, reporter: Reporter | None = None, trial_nproc: int = 1) -> TuneResult:
    """`dlc tune`: search the spec's hyperparameters with Optuna, one process per trial, or `trial_nproc`
    processes training it data-parallel (TuneError when the spec has nothing to search or the set-up is
    wrong)."""
    from dlc.runtime.tune import Reporter, check_tunable
    from dlc.runtime.tune import tune as run_search

    check_tunable(result)
    return run_search(result, str(result.file), backend=backend, device=device, out=out, trials=trials,
                      workers=workers, threads=threads, refine_run=refine, study=study,
                      reporter=reporter or Reporter(), trial_nproc=trial_nproc)


def lr_find_spec(result: Compiled, seed: int | None = None, dtype: str | None = None) -> Spec:
    """The spec of a checked result as `dlc lr-find` tests it: as `trainable`, except that a search space
    over the optimizer's learning rate is allowed (the test sets the lr itself); SpecError, positioned, for
    any other search space."""
    from dlc.runtime.lr_find import blockers
    from dlc.runtime.run import apply_overrides
    from dlc.runtime.support import dtype_blockers

    found = blockers(result) + dtype_blockers(result, dtype)
    if found or result.spec is None:
        raise SpecError(found, result.source, result.file)
    return apply_overrides(result.spec, seed, dtype).with_source_file(result.file)


def lr_find(spec: Spec, backend: str = "torch", *, steps: int | None = None,
            start: float | None = None, end: float | None = None, device: str = "auto",
            out: str | Path | None = None,
            on_step: Callable[[int, float, float], None] | None = None) -> LRFind:
    """`dlc lr-find`: the learning-rate range test (dlc.runtime.lr_find) from the spec's initial weights, with
    its optimizer and seeded batch order, the lr rising exponentially from `start` (default 1e-7) to `end`
    (default 10) over `steps` steps (default 200), stopping when the smoothed loss diverges. Returns the
    curve and the suggested lr; `out`: also write the PNG there (`.plot`). LRFindError (a ValueError) for
    options it cannot run with or a spec that searches more than its learning rate."""
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime import lr_find as lf
    from dlc.runtime.data import prepare

    steps = lf.DEFAULT_STEPS if steps is None else steps
    start = lf.DEFAULT_START if start is None else start
    end = lf.DEFAULT_END if end is None else end
    lf.check_options(steps, start, end)
    if out is not None:
        out = lf.check_out(out)
    others = lf.other_search_spaces(spec)
    if others:
        searched = ", ".join(s.path for s in others)
        raise lf.LRFindError(f"spec '{spec.name}' searches {searched}: the range test needs a concrete model "
                             "(a search space of the learning rate alone is fine)")
    notes = []
    if any(s.path == lf.LR_PATH for s in spec.search_spaces):
        notes.append("the optimizer's learning rate is a search space: the test sets the lr itself")
    if spec.schedule is not None:
        notes.append(f"the spec's schedule ({spec.schedule.kind}) is off during the test")
    if spec.train.mixed:
        notes.append(f"precision: {spec.train.precision}: the test trains in mixed precision, as the spec "
                     f"says, its weights in {spec.dtype}")
    session_cls = session_class(backend)
    data = prepare(spec, spec_folder(spec))
    session = session_cls(spec, device=device, weights=initial_weights(spec))
    result = lf.run_test(session, spec, data, steps=steps, start=start, end=end, on_step=on_step,
                         backend=backend, notes=notes)
    if out is not None:
        result.plot = lf.plot(result, out)
    return result


# ------------------------------------------------------------------------------------------ run folders

def evaluate_run(run_dir: str | Path, data_file: str | Path | None = None,
                 on_read: Callable[[str], None] | None = None) -> dict[str, dict[str, float]]:
    """`dlc evaluate`: a finished run's loss and metrics on its splits, or on a file ({"data": ...});
    `on_read(line)` is told what was read from the file ("read 150 rows from ...")."""
    from dlc.runtime.serve import evaluate_run as evaluate

    return evaluate(run_dir, data_file, on_read)


def predict_file(run_dir: str | Path, input_file: str | Path) -> Predictions:
    """`dlc predict`: a finished run's predictions for a file of raw features (its preprocessing applied)."""
    from dlc.runtime.serve import predict

    return predict(run_dir, input_file)


def export_onnx(run_dir: str | Path, out: str | Path) -> dict:
    """`dlc export`: the run's model as ONNX, the training preprocessing folded in (needs torch and onnx)."""
    from dlc.runtime.serve import export_onnx as export

    return export(run_dir, out)  # (its own checks name a None or an empty path)


def list_runs(folder: str | Path = "runs") -> list[dict]:
    """`dlc runs`: one dict per run directory under `folder`."""
    from dlc.runtime.runs import list_runs as listing

    return listing(folder)


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """`dlc plot`: the curves of several runs overlaid in one PNG (`out`: a name ending in .png, ValueError
    otherwise: a PNG named `x.jpg` was written)."""
    from dlc.runtime.runs import plot_runs as plot

    if isinstance(out, (str, os.PathLike)) and Path(out).suffix.lower() != ".png":
        raise ValueError(f"plot_runs(): the output {os.fspath(out)!r} must be a name ending in .png (the "
                         "plot is a PNG image)")
    return plot(run_dirs, out)


def doctor(run_dir: str | Path, target_accuracy: float | None = None) -> Report:
    """`dlc doctor`: the tuning guides' diagnosis of a run, cv or tune folder, most severe first, each finding
    with its evidence, remedy and planned spec change (RunDirError when there is nothing to judge)."""
    from dlc.runtime.doctor import diagnose

    return diagnose(run_dir, target_accuracy)


def doctor_fix(report: Report) -> Fixed | None:
    """`dlc doctor --fix`: write RUN/doctor.dlspec, the spec with the top remedy applied (checked by
    compiling it); None when no finding has an automatic change."""
    from dlc.runtime.doctor import write_fix

    return write_fix(report)


def doctor_plot(report: Report) -> tuple[list[Path], list[str]]:
    """`dlc doctor --plot`: gradients.png (per-layer gradient norm and update ratio per epoch) in the run
    folder (each fold, a tune folder's best trial) and a tune folder's importance.png; the files written and
    a note for each folder with nothing to draw."""
    from dlc.runtime.doctor import write_plots

    return write_plots(report)


def doctor_rules() -> list[tuple[str, str]]:
    """(id, its rule with the thresholds and what --fix writes) of each `dlc doctor` diagnosis."""
    from dlc.runtime.doctor import rules_summary

    return rules_summary()
