"""The training step of an epoch's full batches replayed as one CUDA graph (opt-in: DLC_CUDA_GRAPHS=1).

On a GPU a small model's step is bound by kernel launches, not arithmetic (~60 launches of a few µs each for
the seed MLP, where the GPU works ~0.1 ms): a graph replays them all in one launch. What makes a step
capturable: nothing in it reads the host (losses and metric statistics stay on the device), every tensor it
reads outside the graph's memory keeps its address (the optimizer's learning rate and step count are tensors
updated in place, the dropout buffers are kept per batch size, the batch is gathered from the resident data
through one index buffer), and what the host counts per step (the optimizer's iterations, the dropout step)
is advanced by hand per replay, the capture itself having run that Python once without training.

The steps before the capture (WARMUP_STEPS of them, which also set up cuBLAS and autograd) and an epoch's
shorter last batch run eagerly, on the same tensors, so the sequence of updates is the eager one; the dropout
keys are computed on the device inside the graph, from the same step count.

Written without a GPU at hand (2026-11-29): `tests/test_gpu.py::test_cuda_graph_equals_eager` is its proof,
and it has not run yet. The same bookkeeping is tested on the CPU (`Traced`, tests/test_device_paths.py)."""

from __future__ import annotations

import contextlib
import os

import torch
from torch.utils._python_dispatch import TorchDispatchMode

WARMUP_STEPS = 3
ENV = "DLC_CUDA_GRAPHS"


def wanted(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get(ENV, "0") == "1"


def refusal(trainer, x, y) -> str | None:
    """Why this trainer's step cannot be captured (None: it can)."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        return "the features are streamed from the host"
    if trainer.loss_scale is not None:
        return "mixed_float16's loss scaling reads a flag on the host every step"
    if trainer.compiled:
        return "the step is compiled (--compile)"
    if not type(trainer.opt).capturable:
        return f"{type(trainer.opt).__name__}'s step is not capturable"
    if any(p.grad is not None and p.grad.is_sparse for p in trainer.opt.params):
        return "an Embedding's sparse gradient has a size that depends on the batch"
    return None


class CudaGraph:
    """torch.cuda.CUDAGraph behind the two calls StepGraph makes (Traced stands in for it in CPU tests)."""

    def __init__(self, trainer=None):
        self.graph = torch.cuda.CUDAGraph()

    @staticmethod
    @contextlib.contextmanager
    def warming():
        """A warm-up step on a side stream, as PyTorch's whole-network capture example warms up (the
        libraries' lazy set-up, autograd's streams), ordered after and before the default stream's work."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            yield
        torch.cuda.current_stream().wait_stream(side)

    def capture(self, body) -> None:
        with torch.cuda.graph(self.graph):
            body()

    def replay(self) -> None:
        self.graph.replay()


class NotCapturable(RuntimeError):
    """The captured step does what a CUDA graph cannot hold (Traced found it on the CPU)."""


# operations that read a device value on the host (a CUDA capture fails on them) or whose output's size
# depends on the data (it must be read back to allocate the output)
HOST_READS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "unique", "_unique", "_unique2",
              "unique_dim", "unique_consecutive", "bincount", "repeat_interleave"}


def op_name(func) -> str:
    """An aten operation's name without its namespace and overload (`aten.nonzero.default`: nonzero)."""
    return str(func.overloadpacket).split(".")[-1]


class Traced:
    """A CPU stand-in for a CUDA graph that holds what a graph holds: `capture` records every aten operation
    of the step (TorchDispatchMode) and puts every tensor of the trainer back (a capture's kernels do not
    run); `replay` runs the recorded operations again on the same tensors, without the step's Python. As in
    a graph, each operation's Python arguments (a float learning rate, a step count read on the host) are
    frozen at capture, its tensors are read where they were then, and its outputs are written where they
    were, so a step that would replay wrongly as a graph (a value that should have been a tensor updated in
    place, a tensor replaced instead of updated) replays wrongly here too; an operation that reads the
    device on the host, or whose output's size depends on the data, is NotCapturable at capture, as on CUDA.
    What it cannot see: a host tensor copied to the device inside the step (here all tensors are on the
    CPU)."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.ops: list = []

    warming = staticmethod(contextlib.nullcontext)

    def capture(self, body) -> None:
        tensors = self._tensors()
        saved = [t.detach().clone() for t in tensors]
        with _Recorder() as recorder:
            body()
        with torch.no_grad():
            for t, s in zip(tensors, saved, strict=True):
                t.copy_(s)
        self.ops = recorder.ops

    def _tensors(self) -> list[torch.Tensor]:
        t = self.trainer
        opt = t.opt
        out = [*t.net.state_dict(keep_vars=True).values(), opt._lr, opt._count, t.step.on_device(),
               *opt.counters().values()]
        return out + [v for s in opt.state for v in s.values()]

    def replay(self) -> None:
        with torch.no_grad():
            for func, args, kwargs, out in self.ops:
                if not func.is_view:  # (a view recorded at capture already shows its base's new values)
                    _refill(out, func(*args, **kwargs))


class _Recorder(TorchDispatchMode):
    """Every aten operation, with its arguments and outputs, in the order the step issues them."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = op_name(func)
        if name in HOST_READS:
            raise NotCapturable(f"the step calls aten.{name}, which reads the device on the host")
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


def _refill(recorded, fresh) -> None:
    """Write a replayed operation's outputs where the captured one's were (in-place ones already are)."""
    if isinstance(recorded, torch.Tensor):
        if fresh is not recorded:
            recorded.copy_(fresh)
    elif isinstance(recorded, (tuple, list)):
        for r, f in zip(recorded, fresh, strict=True):
            _refill(r, f)


class StepGraph:
    """One graph of `trainer`'s step on `batch_size` rows of the resident (x, y), gathered through `idx`."""

    def __init__(self, trainer, x, y, batch_size: int, make_graph=CudaGraph):
        self.trainer, self.x, self.y, self.batch_size = trainer, x, y, batch_size
        self.make_graph = make_graph
        self.idx = torch.zeros(batch_size, dtype=torch.int64, device=x.device)
        self.eager_steps = 0
        self.graph: CudaGraph | Traced | None = None
        self.refused: str | None = None  # why the step is not captured (found when the warm-up ends)
        self.loss = self.stats = None  # the captured step's outputs (the graph's memory)
        self.delta: tuple[int, ...] | None = None  # what one step adds to each of the host's counters

    def serves(self, x, y, batch_size: int) -> bool:
        return x is self.x and y is self.y and batch_size == self.batch_size

    def ready(self, rows: int) -> bool:
        """Whether a step of `rows` rows is replayed (else it runs eagerly, a warm-up step counted)."""
        if rows != self.batch_size or self.trainer.opt.iterations + 2 > 2**24:
            return False  # (past 2^24 steps a float32 count is refilled from the host, not counted up)
        if self.graph is None and self.refused is None and self.eager_steps >= WARMUP_STEPS:
            self.refused = refusal(self.trainer, self.x, self.y)
            if self.refused is None:
                self._capture()
        return self.graph is not None

    @contextlib.contextmanager
    def warming(self, rows: int):
        """Around an eager step of `rows` rows: a full one before the capture is a warm-up step (counted)."""
        if rows != self.batch_size or self.graph is not None or self.refused is not None:
            yield
            return
        with self.make_graph.warming():
            yield
        self.eager_steps += 1

    def step(self, idx: torch.Tensor):
        """The step on rows `idx` by replaying the graph: (loss, metric statistics), valid until the next."""
        graph, delta = self.graph, self.delta
        assert graph is not None and delta is not None, "a step replayed before the capture (see ready())"
        self.idx.copy_(idx)
        before = self._host()
        with self.trainer.step.device_keys():  # (the keys hashed on the device, in the graph)
            graph.replay()
        self._set_host(tuple(a + d for a, d in zip(before, delta, strict=True)))
        return self.loss, self.stats

    def _body(self) -> None:
        """The Trainer's own step on the gathered rows (its zero_grad before the backward: captured, the
        graph's backward writes the gradients it allocated, not adds to them)."""
        t = self.trainer
        yb = self.y[self.idx]
        out, loss = t.train_step(self.x[self.idx], yb)
        self.loss = loss.detach()
        self.stats = t.stats(out.detach(), yb)

    def _capture(self) -> None:
        """Capture the step once; the host's counters as they were (capturing trains nothing)."""
        before = self._host()
        graph = self.make_graph(self.trainer)
        try:
            with self.trainer.step.device_keys():  # (the keys hashed in the graph from the device's count)
                graph.capture(self._body)
        finally:
            after = self._host()
            self._set_host(before)
        self.delta = tuple(b - a for a, b in zip(before, after, strict=True))
        self.graph = graph

    def _host(self) -> tuple[int, int, int]:
        """The host's counters, the device tensors the graph reads made to agree with them first (a
        schedule's new lr written in, the step count refilled after a restore)."""
        t = self.trainer
        t.opt.lr_tensor()
        t.opt.step_count_ready()
        return (*t.opt.host_counters(), t.step.value)

    def _set_host(self, counters) -> None:
        t = self.trainer
        t.opt.set_host_counters(counters[:2])
        t.step.value = counters[2]


def on_cuda(trainer, x, y, batch_size: int) -> StepGraph:
    """The Trainer's `graph_steps` on a GPU."""
    return StepGraph(trainer, x, y, batch_size, CudaGraph)


def on_cpu(trainer, x, y, batch_size: int) -> StepGraph:
    """The Trainer's `graph_steps` in CPU tests: Traced stands in for the graph."""
    return StepGraph(trainer, x, y, batch_size, Traced)
