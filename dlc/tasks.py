"""What each `dlc` command does, as functions of the public API (`dlc.api` re-exports every name here): the
command line parses arguments, calls one of these and prints what it returns, so a notebook or script can do
everything the CLI does. Nothing here prints or picks an exit code; failures are exceptions (see dlc.api).

Heavy imports (the backends, Optuna, matplotlib) happen inside the functions that need them, so importing the
API stays cheap and `dlc check` imports neither PyTorch nor TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlc.compiler import Compiled, SpecError, compile_file
from dlc.compiler.spec import Spec
from dlc.runtime.run import Finished, Observer, Resumable

if TYPE_CHECKING:
    from dlc.runtime.serve import Predictions
    from dlc.runtime.tune import Reporter, TuneResult


# -------------------------------------------------------------------------------------------------- specs

def compile_spec(path: str | Path) -> Compiled:
    """Every diagnostic of the spec at `path` (`.spec` is None when it has errors): what `dlc check` shows."""
    return compile_file(path)


def checked(path: str | Path) -> Compiled:
    """The compiled spec; SpecError with every diagnostic when it has errors (its warnings are in
    `.diagnostics` for the caller to show)."""
    result = compile_file(path)
    if not result.ok or result.spec is None:
        raise SpecError(result.diagnostics.sorted(), result.source, result.file)
    return result


def summary(spec: Spec) -> str:
    """Every layer with its output shape and parameter count, as `dlc check` prints it."""
    from dlc.compiler.summary import summary_text

    return summary_text(spec)


def trainable(result: Compiled, seed: int | None = None, dtype: str | None = None,
              epochs: int | None = None) -> Spec:
    """The spec of a checked result as `dlc run` trains it: runnable as it is (SpecError, positioned, when it
    has search spaces or another blocker), with the overrides, remembering its file."""
    from dlc.runtime.run import trainable as runtime_trainable

    return runtime_trainable(result, seed, dtype, epochs).with_source_file(result.file)


def schema() -> dict[str, Any]:
    """The IR's JSON Schema."""
    return Spec.model_json_schema()


def emit(spec: Spec, target: str) -> str:
    """A standalone training script for `target` ("keras" or "torch") that gives `dlc run`'s per-step losses
    (EmitUnsupported when an item has no emitted form)."""
    from dlc.backends.emit.script import emit as emit_script

    return emit_script(spec, target, _spec_path(spec))


def catalogue(markdown: bool = False) -> str:
    """Every catalogue item, its support on each target and its measured Keras/PyTorch |Δ|."""
    from dlc.runtime.catalogue import render

    return render(markdown)


def _spec_path(spec: Spec) -> str:
    """The file the spec came from (the run directory's copy of it), else '<spec>'."""
    return str(spec.source_file) if spec.source_file is not None else "<spec>"


def _base_dir(spec: Spec) -> Path:
    """Where the spec's relative data paths live: its file's folder, else the current directory."""
    return spec.source_file.parent if spec.source_file is not None else Path.cwd()


# --------------------------------------------------------------------------------------------- training

def run(spec: Spec, backend: str = "torch", *, device: str = "auto", out: str | Path | None = None,
        observer: Observer | None = None) -> Finished:
    """`dlc run`: train into a run directory (`out`, default a fresh one under runs/), reporting to
    `observer`. Returns the directory, the history and metrics.json's content. A failure after the directory
    exists is RunFailed (its `.run` is kept, with the history so far)."""
    from dlc.runtime.run import train_run

    return train_run(spec, backend, _spec_path(spec), _base_dir(spec), device=device,
                     out=None if out is None else str(out), observer=observer)


def resumable(run_dir: str | Path) -> Resumable:
    """The run directory as `--resume` sees it: `.finished`, or the exact spec it was training."""
    from dlc.runtime.run import resume_target

    return resume_target(run_dir)


def resume(target: Resumable, *, device: str = "auto", observer: Observer | None = None) -> Finished:
    """Continue a killed run (from `resumable`) from its last finished epoch, in its own directory."""
    from dlc.runtime.run import train_run

    return train_run(target.spec, target.backend, target.spec_file, target.base_dir,
                     device=target.device(device), resume=target, observer=observer)


def cross_validate(spec: Spec, backend: str = "torch", *, device: str = "auto", k: int | None = None,
                   out: str | Path | None = None, on_fold=None) -> tuple[Path, dict]:
    """`dlc cv`: k-fold cross-validation into a run directory; (directory, summary with per-fold rows, mean
    and std). `on_fold(row)` is called after each fold."""
    from dlc.runtime.cv import cross_validate as run_folds

    return run_folds(spec, _spec_path(spec), backend, device, k, None if out is None else str(out), on_fold)


def tune_target(spec: str | None, refine: str | None) -> str:
    """The spec file `dlc tune` searches: the one given, else the one the refined run searched."""
    from dlc.runtime.tune import spec_to_tune

    return spec_to_tune(spec, refine)


def tune(result: Compiled, *, backend: str = "torch", device: str = "auto", out: str | None = None,
         trials: int | None = None, workers: int = 1, threads: int | None = None, refine: str | None = None,
         study: str | None = None, reporter: Reporter | None = None) -> TuneResult:
    """`dlc tune`: search the spec's hyperparameters with Optuna, one process per trial (TuneError when the
    spec has nothing to search or the set-up is wrong)."""
    from dlc.runtime.tune import Reporter, check_tunable
    from dlc.runtime.tune import tune as run_search

    check_tunable(result)
    return run_search(result, str(result.file), backend=backend, device=device, out=out, trials=trials,
                      workers=workers, threads=threads, refine_run=refine, study=study,
                      reporter=reporter or Reporter())


# ------------------------------------------------------------------------------------------ run folders

def evaluate_run(run_dir: str | Path, data_file: str | Path | None = None) -> dict[str, dict[str, float]]:
    """`dlc evaluate`: a finished run's loss and metrics on its splits, or on a file ({"data": ...})."""
    from dlc.runtime.serve import evaluate_run as evaluate

    return evaluate(run_dir, data_file)


def predict_file(run_dir: str | Path, input_file: str | Path) -> Predictions:
    """`dlc predict`: a finished run's predictions for a file of raw features (its preprocessing applied)."""
    from dlc.runtime.serve import predict

    return predict(run_dir, input_file)


def export_onnx(run_dir: str | Path, out: str | Path) -> dict:
    """`dlc export`: the run's model as ONNX, the training preprocessing folded in (needs torch and onnx)."""
    from dlc.runtime.serve import export_onnx as export

    return export(Path(run_dir), Path(out))


def list_runs(folder: str | Path = "runs") -> list[dict]:
    """`dlc runs`: one dict per run directory under `folder`."""
    from dlc.runtime.runs import list_runs as listing

    return listing(folder)


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """`dlc plot`: the curves of several runs overlaid in one PNG."""
    from dlc.runtime.runs import plot_runs as plot

    return plot(run_dirs, out)
