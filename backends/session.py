"""The one interface between the runtime and a backend: what dlc's training loop, run folders, checkpoints,
cross-validation, tuning and serving call. backends/torch/session.py and backends/keras/session.py implement
it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dlc.compiler.diagnostics import DlcError
from dlc.compiler.spec import Spec

Weights = dict[str, dict[str, np.ndarray]]  # layer name -> weight name -> array (Keras layouts)


def device_refusal(device: object) -> str | None:
    """Why `device` is not one dlc trains on: auto, cpu, cuda or cuda:N (None: it is). Every Session checks
    it first, so that no caller reaches a framework's own parser (torch's lists its 20 device types, accepts
    "cpu:1" and "mps"; the keras backend said "runs on the CPU here" of "gpu")."""
    if isinstance(device, str) and re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", device):
        return None
    return f"{device!r} is not a device; use auto, cpu, cuda or cuda:N"


class DeviceUnavailable(DlcError, RuntimeError):
    """A device dlc names that this machine or backend cannot train on: `device` and `why` (what the framework
    sees, with any advice) are kept apart, so that a caller speaking of another subject words it itself
    (`--resume`: "RUN was started on --device cuda, but ...") instead of cutting this message apart."""

    def __init__(self, device: str, why: str):
        self.device, self.why = device, why
        super().__init__(f"--device {device} was asked for, but {why}")


def check_device_name(device: object) -> None:
    """ValueError, in the API's words (the command line refuses such a name before any work), for a device
    that is none (device_refusal)."""
    if refusal := device_refusal(device):
        raise ValueError(f"device={refusal}")


def batch_sizes(n: int, batch_size: int) -> np.ndarray:
    """The sizes of an epoch's batches over n samples (the last one short), as floats: the weights of the step
    losses in the epoch's mean."""
    return np.array([min(batch_size, n - lo) for lo in range(0, n, batch_size)], dtype=np.float64)


class StreamedFeatures(Protocol):
    """Features read on request, a batch at a time (an npy source's parts, dlc.runtime.data.StreamedRows):
    `streamed` is true; `x[indices]` and `x[a:b]` give those samples as a numpy array of `shape[1:]`,
    normalised, in `dtype`. A backend's load_data keeps them on the host and reads each batch as it steps."""

    streamed: bool

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __len__(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...

    def take(self, indices: Any) -> np.ndarray: ...


class BatchReader:
    """Reads a streamed part's rows for a backend's HostBatches: `read(indices)` (or a slice) gives them as
    numpy. After `plan(perm, batch_size)` (the epoch's order), each planned batch is read in a worker thread
    while the one before it trains, and handed over when asked for; a request off the plan (an evaluation, a
    share of a batch) drops the plan and is read directly. The values are the same either way."""

    def __init__(self, rows: Any):  # (StreamedFeatures)
        self.rows = rows
        self._plan: list | None = None  # [perm, batch size, next batch, its future]
        self._pool: Any = None

    def plan(self, perm: np.ndarray, batch_size: int) -> None:
        self._drop()
        self._plan = [np.asarray(perm), int(batch_size), 0, None]
        self._next()

    def _next(self) -> None:
        plan = self._plan
        assert plan is not None
        perm, bs, i = plan[0], plan[1], plan[2]
        if i * bs >= len(perm):
            self._plan = None
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="dlc-batches")
        plan[3] = self._pool.submit(self.rows.__getitem__, perm[i * bs:(i + 1) * bs])

    def _drop(self) -> None:
        if self._plan is not None and self._plan[3] is not None:
            self._plan[3].result()  # (the reader is not shared by two threads at once)
        self._plan = None

    def read(self, key: Any) -> np.ndarray:
        plan = self._plan
        if plan is not None and not isinstance(key, slice):
            perm, bs, i, future = plan
            if np.array_equal(key, perm[i * bs:(i + 1) * bs]):
                out = future.result()
                plan[2] += 1
                self._next()
                return out
            self._drop()
        return self.rows[key]


@runtime_checkable
class Session(Protocol):
    """A spec's model on one backend. Data handles are opaque (device tensors); numbers come back as numpy."""

    name: str  # "torch" | "keras"
    device_name: str
    compile_refusal: str | None  # why it does not take compile=True (`dlc run --compile`); None: it does

    def __init__(self, spec: Spec, dtype: str | None = None, device: str = "auto",
                 weights: Weights | None = None, compile: bool = False) -> None:
        """`spec`'s model in `dtype` (None: the spec's) on `device` ("auto" picks one), with `weights` (Keras
        layouts) set when given; `compile`: the training step compiled by the framework's compiler (a
        backend with a `compile_refusal` raises ValueError with it)."""

    def load_data(self, x: np.ndarray | StreamedFeatures, y: np.ndarray) -> Any:
        """The arrays on the device, in the backend's dtypes: the handle train_epoch and evaluate take.
        Streamed features stay on the host; train_epoch and evaluate read them a batch at a time (in the order
        `perm` gives), so that only the targets are held."""

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
