"""Backends lower the IR to a framework. Only this package imports TensorFlow/Keras or PyTorch, and only when
a backend is asked for by name."""

from __future__ import annotations

import importlib

from dlc.compiler.diagnostics import DlcError

from .lowering import LoweringMissing
from .session import Session

BACKENDS = ("torch", "keras")
# True in the `dlc` command's own process (set through dlc.api.as_the_command by dlc.cli.entry), not in a
# notebook's or a script's: a framework may be imported without parts only a library user could call
# (backends/keras/quiet.py)
COMMAND = False
__all__ = ["BACKENDS", "BackendUnavailable", "LoweringMissing", "Session", "data_parallel", "limit_threads",
           "session_class"]


class BackendUnavailable(DlcError):
    """The framework for a backend is not installed."""


def session_class(name: str) -> type[Session]:
    """The backend's Session class (imports the framework); its instances implement
    backends.session.Session."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    try:
        mod = importlib.import_module(f"dlc.backends.{name}.session")
    except ImportError as e:
        missing = "torch" if name == "torch" else "tensorflow"
        if missing in str(e) or "keras" in str(e):
            raise BackendUnavailable(
                f"the {name} backend needs {missing}: pip install 'dlc[{name}]'") from None
        raise
    return mod.Session


def data_parallel(name: str):
    """The backend's data-parallel training (`dlc run --nproc`): a module with start(worker, device),
    wrap(session, worker) and stop() (backends/torch/distributed.py, backends/keras/distributed.py)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return importlib.import_module(f"dlc.backends.{name}.distributed")


def check_device(name: str, device: str, processes: int = 1) -> None:
    """RuntimeError (one line) when the backend cannot train on `device` here (--device cuda without a GPU),
    or not with `processes` data-parallel processes (more than the GPUs): for a command that would otherwise
    fail in every worker it starts."""
    session_module = importlib.import_module(f"dlc.backends.{name}.session")
    session_module.check_device(device, processes)


def limit_threads(name: str, threads: int) -> None:
    """At most `threads` CPU threads for the backend's framework (a tune worker's share of the cores)."""
    session_module = importlib.import_module(f"dlc.backends.{name}.session")
    session_module.limit_threads(threads)
