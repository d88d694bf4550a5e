"""dlc — describe a network and its training once, train it on Keras or PyTorch with matching results.

The Python API (dlc/api.py) is imported on first use, so `import dlc` stays cheap and imports neither PyTorch
nor TensorFlow: `dlc.load`, `dlc.load_data`, `dlc.epoch_order`, `dlc.Model`, `dlc.compare`, `dlc.SpecError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["DataError", "Model", "SpecError", "TrainingFailed", "__version__", "compare", "epoch_order",
           "load", "load_data"]
_API = frozenset(__all__) - {"__version__"}
_SUBPACKAGES = ("api", "backends", "compiler", "reference", "runtime")

if TYPE_CHECKING:
    from dlc.api import DataError, Model, SpecError, TrainingFailed, compare, epoch_order, load, load_data


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("dlc.api"), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlc.{name}")
    raise AttributeError(f"module 'dlc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API, *_SUBPACKAGES})
