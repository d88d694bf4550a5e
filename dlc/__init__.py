"""dlc — describe a network and its training once, train it on Keras or PyTorch with matching results.

The Python API (dlc/api.py) is imported on first use, so `import dlc` stays cheap and imports neither PyTorch
nor TensorFlow: `dlc.load`, `dlc.load_data`, `dlc.epoch_order`, `dlc.Model`, `dlc.compare`, `dlc.SpecError`.
`dlc.Error` is the base of every error dlc raises on purpose (`except dlc.Error` lets your own bugs through).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["DataError", "Error", "Model", "SpecError", "TrainingFailed", "__version__", "compare",
           "epoch_order", "load", "load_data"]
_API = frozenset(__all__) - {"__version__", "Error"}
_SUBPACKAGES = ("api", "backends", "compiler", "reference", "runtime")

if TYPE_CHECKING:
    from dlc.api import DataError, Model, SpecError, TrainingFailed, compare, epoch_order, load, load_data
    from dlc.compiler.diagnostics import DlcError as Error


def __getattr__(name: str):
    if name == "Error":  # (without the API: it imports numpy and the runtime)
        return importlib.import_module("dlc.compiler.diagnostics").DlcError
    if name in _API:
        return getattr(importlib.import_module("dlc.api"), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlc.{name}")
    raise AttributeError(f"module 'dlc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, "Error", *_SUBPACKAGES})
