"""The one interface between the runtime and a backend: what dlc's training loop, run folders, checkpoints,
cross-validation, tuning and serving call. backends/torch/session.py and backends/keras/session.py implement
it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dlc.compiler.spec import Spec

Weights = dict[str, dict[str, np.ndarray]]  # layer name -> weight name -> array (Keras layouts)


@runtime_checkable
class Session(Protocol):
    """A spec's model on one backend. Data handles are opaque (device tensors); numbers come back as numpy."""

    name: str  # "torch" | "keras"
    device_name: str

    def __init__(self, spec: Spec, dtype: str | None = None, device: str = "auto",
                 weights: Weights | None = None) -> None:
        """`spec`'s model in `dtype` (None: the spec's) on `device` ("auto" picks one), with `weights` (Keras
        layouts) set when given."""

    def load_data(self, x: np.ndarray, y: np.ndarray) -> Any:
        """The arrays on the device, in the backend's dtypes: the handle train_epoch and evaluate take."""

    def set_lr(self, lr: float) -> None: ...

    def train_epoch(self, handle: Any, perm: np.ndarray, batch_size: int,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One epoch over the batches of `perm`: (per-step losses, metric statistics, batch sizes)."""

    def evaluate(self, handle: Any, batch_size: int) -> tuple[float, np.ndarray]:
        """(mean loss with the regularization penalties, metric statistics) in inference mode."""

    def probe(self, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float | None]]:
        """The training evidence's numbers on the probe set (x, y), in inference mode, changing nothing: per
        layer (every layer of spec.walk()) grad_norm, act_mean, act_std, dead_fraction, saturated_fraction,
        None where not applicable (definitions: dlc/reference/evidence.py)."""

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Outputs with the output activation applied (probabilities or values), float64."""

    def get_weights(self) -> Weights: ...

    def set_weights(self, weights: Weights) -> None: ...

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights, optimizer slots and counters: what a checkpoint holds to resume bit for bit."""

    def set_state(self, state: dict[str, np.ndarray]) -> None: ...

    def save(self, directory: Path) -> list[str]:
        """Write the trained model into a run folder; the names of the files written."""

    def load(self, directory: Path) -> None: ...
