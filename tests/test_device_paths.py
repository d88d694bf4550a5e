"""The torch backend's CUDA-only paths, run on the CPU: they must compute what the CPU paths do, bit for bit
(a GPU run is compared with a CPU one only within the float64 bound, tests/test_gpu.py)."""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from dlc.backends.torch import losses as L  # noqa: E402
from dlc.backends.torch import optimizers as O  # noqa: E402


def _params(dtype):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(7, 5, generator=g, dtype=dtype), torch.randn(5, generator=g, dtype=dtype)]


OPTIMIZERS = {
    "rmsprop": (O.RMSprop, {"learning_rate": 0.01}),
    "rmsprop_momentum": (O.RMSprop, {"learning_rate": 0.01, "momentum": 0.9}),
    "sgd": (O.SGD, {"learning_rate": 0.1}),
    "sgd_momentum": (O.SGD, {"learning_rate": 0.1, "momentum": 0.9}),
    "sgd_nesterov": (O.SGD, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    "adam": (O.Adam, {"learning_rate": 0.01}),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_all_equals_update(dtype, name, monkeypatch):
    """An optimizer's update_all (torch._foreach_*, used on CUDA) gives the per-variable update's bits."""
    cls, kwargs = OPTIMIZERS[name]
    runs = []
    for foreach in (False, True):
        monkeypatch.setattr(O.KerasOptimizer, "foreach", property(lambda self, f=foreach: f))
        params = [torch.nn.Parameter(p.clone()) for p in _params(dtype)]
        opt = cls(params, **kwargs)
        gen = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
            opt.step()
        runs.append([p.detach().clone() for p in params])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_step_count_counts_on_the_device_and_follows_a_restore():
    """Adam's float(iterations + 1), counted up in place, equals a fresh tensor every step, also after the
    counter is set (a checkpoint restored)."""
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = O.Adam(params)
    for n in [*range(6), 40, 41, 7, 2**24 - 1, 2**24, 2**24 + 1]:  # (past 2^24 float32 rounds: made afresh)
        opt.iterations = n
        assert torch.equal(opt.step_count(), torch.tensor(float(n + 1)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_counts_equal_bincount(dtype):
    index = torch.randint(0, 9, (1000,), generator=torch.Generator().manual_seed(2))
    want = torch.bincount(index, minlength=12).to(dtype)
    assert torch.equal(L.counts(index, 12, dtype), want)
    assert torch.equal(L.counts(index[:0], 4, dtype), torch.zeros(4, dtype=dtype))


GRAPH_SPEC = """
model graphed {{
  seed: 3
  data {{
    source: digits
    normalize: standard
    split: holdout(val=0.2)
  }}
  input: (64)
  layers {{
    Dense(24, activation=relu, kernel_reg=l2(1e-3), activity_reg=l1(1e-5), kernel_constraint=max_norm(2))
    BatchNorm()
    Dropout(0.3)
    Dense(10, activation=softmax)
  }}
  loss: {loss}
  metrics: [accuracy]
  optimizer: {optimizer}
  schedule: {schedule}
  train {{
    epochs: 3
    batch_size: 100
  }}
}}
"""

GRAPHED = {
    "rmsprop_step_schedule": ("sparse_categorical_crossentropy", "RMSprop(lr=0.003)",
                              "step(every=1, factor=0.5)"),
    "adam_cosine": ("categorical_crossentropy", "Adam(lr=0.003, clipnorm=1.0)", "cosine(epochs=3)"),
    "sgd_nesterov": ("sparse_categorical_crossentropy", "SGD(lr=0.05, momentum=0.9, nesterov=true)",
                     "exponential(rate=0.9)"),
}


def _train_graphed(text: str, make_graph, dtype: str):
    from dlc.backends.torch.session import Session
    from dlc.compiler import compile_text
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare
    from dlc.runtime.loop import train

    spec = compile_text(text).spec
    session = Session(spec, dtype=dtype, device="cpu", weights=initial_weights(spec))
    session.trainer.graph_steps = make_graph
    hist = train(session, spec, prepare(spec, Path(".")), epochs=3)
    return hist.rows, session.get_weights(), session.trainer.graph


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", GRAPHED)
def test_a_replayed_step_trains_as_the_eager_one(name, dtype):
    """The bookkeeping around a CUDA graph of the step (backends/torch/graphs.py), with a stand-in that
    replays the captured aten operations, their Python arguments frozen as a graph's are (graphs.Traced):
    the batch gathered through the index buffer, the learning rate and step count read from tensors updated
    in place, the dropout keys hashed on the device, the host counters advanced per replay, the warm-up and
    last batches eager. Bit for bit the eager training (histories and
    weights), 11 steps an epoch of which the graph replays 10 (7 in the first, after 3 warm-up steps)."""
    from dlc.backends.torch import graphs

    loss, optimizer, schedule = GRAPHED[name]
    text = GRAPH_SPEC.format(loss=loss, optimizer=optimizer, schedule=schedule)
    eager_rows, eager_w, _ = _train_graphed(text, None, dtype)
    rows, weights, graph = _train_graphed(text, graphs.on_cpu, dtype)
    assert graph is not None and graph.graph is not None and graph.refused is None
    def untimed(row):
        return {k: v for k, v in row.items() if k not in ("time_s", "samples_per_s")}

    assert [untimed(r) for r in rows] == [untimed(r) for r in eager_rows]
    for layer, ws in eager_w.items():
        for wname, w in ws.items():
            np.testing.assert_array_equal(weights[layer][wname], w, err_msg=f"{layer}/{wname}")


def test_a_graph_stand_in_replays_what_was_captured_not_the_python():
    """graphs.Traced holds what a CUDA graph holds: a learning rate the step takes as a new tensor (not the
    one updated in place) stays at its captured value on replay, so the graphed run differs from the eager one
    once the schedule changes the lr (a stand-in that re-ran the step's Python, as the first one did, could
    not tell). This is the defect the fixtures' replay test guards against; here it is made on purpose."""
    import dlc
    from dlc.backends.torch import graphs, optimizers

    def replaced(self):
        if self._lr_holds != self.lr:
            self._lr, self._lr_holds = torch.full_like(self._lr, self.lr), self.lr
        return self._lr

    spec = dlc.load(Path(__file__).parent / "equivalence" / "fixtures" / "schedule_step.dlspec")
    losses = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(optimizers.KerasOptimizer, "lr_tensor", replaced)
        for make_graph in (None, graphs.on_cpu):
            model = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
            model.session.trainer.graph_steps = make_graph
            losses.append(model.fit(max_steps=40).step_losses)
    assert model.session.trainer.graph.graph is not None
    assert losses[0] != losses[1]


def test_a_step_that_reads_the_device_on_the_host_is_not_capturable(monkeypatch):
    """A `.item()` (or any read of a device value on the host) inside the step fails a CUDA capture; the
    stand-in says so at capture, on the CPU, naming the operation."""
    import dlc
    from dlc.backends.torch import graphs, training

    step = training.Trainer.train_step

    def reads_the_loss(self, xb, yb):
        out, loss = step(self, xb, yb)
        float(loss)
        return out, loss

    monkeypatch.setattr(training.Trainer, "train_step", reads_the_loss)
    spec = dlc.load(Path(__file__).parent / "equivalence" / "fixtures" / "dropout.dlspec")
    model = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
    model.session.trainer.graph_steps = graphs.on_cpu
    with pytest.raises(graphs.NotCapturable, match="_local_scalar_dense"):
        model.fit(max_steps=40)


def test_a_step_that_cannot_be_captured_runs_eagerly():
    """An Embedding's sparse gradient (its size depends on the batch's indices): refused once the warm-up
    shows it, the reason kept, and the run trained eagerly, as without graphs."""
    import dlc
    from dlc.backends.torch import graphs

    spec = dlc.load(Path(__file__).parent / "equivalence" / "fixtures" / "embedding.dlspec")
    losses = []
    for make_graph in (None, graphs.on_cpu):
        model = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
        model.session.trainer.graph_steps = make_graph
        losses.append(model.fit(max_steps=20).step_losses)
    graph = model.session.trainer.graph
    assert graph.graph is None and "sparse gradient" in graph.refused
    assert losses[0] == losses[1]


FIXTURES = sorted((Path(__file__).parent / "equivalence" / "fixtures").glob("*.dlspec"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_fixture_replayed_trains_as_eager(path):
    """Every equivalence fixture, 40 steps in float64, with the graph stand-in (graphs.on_cpu): the same step
    losses and final weights, bit for bit, as the eager steps (tests/test_gpu.py runs the real graphs)."""
    import dlc
    from dlc.backends.torch import graphs

    spec = dlc.load(path)
    runs = []
    for make_graph in (None, graphs.on_cpu):
        model = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
        model.session.trainer.graph_steps = make_graph
        hist = model.fit(max_steps=40)
        runs.append((hist.step_losses, model.get_weights()))
    (a, wa), (b, wb) = runs
    assert a == b
    for layer, ws in wa.items():
        for wname, w in ws.items():
            np.testing.assert_array_equal(wb[layer][wname], w, err_msg=f"{layer}/{wname}")


@pytest.mark.parametrize("name", ["dropout", "batchnorm_conv", "loss_mse"])
def test_features_read_from_the_host_train_as_resident_ones(name, monkeypatch):
    """Features too big for the GPU stay on the host and come a batch at a time (HostBatches, read ahead in a
    thread, pinned on CUDA): the same training, bit for bit, as features kept on the device. Forced here on
    the CPU, where they would always be kept (session.fits_on_device)."""
    import dlc
    from dlc.backends.torch import session as torch_session

    spec = dlc.load(Path(__file__).parent / "equivalence" / "fixtures" / f"{name}.dlspec")
    runs = []
    for resident in (True, False):
        monkeypatch.setattr(torch_session, "fits_on_device", lambda device, nbytes, r=resident: r)
        model = dlc.Model(spec, backend="torch", dtype="float64", device="cpu")
        hist = model.fit(max_steps=30)
        runs.append((hist.step_losses, hist.rows, model.get_weights()))
    (a, rows_a, wa), (b, rows_b, wb) = runs
    assert a == b
    assert [r.get("val_loss") for r in rows_a] == [r.get("val_loss") for r in rows_b]
    for layer, ws in wa.items():
        for wname, w in ws.items():
            np.testing.assert_array_equal(wb[layer][wname], w, err_msg=f"{layer}/{wname}")


def test_only_a_gpu_sends_features_to_the_host():
    from dlc.backends.torch.session import fits_on_device

    assert fits_on_device(torch.device("cpu"), 10**15)


class _HostReads(TorchDispatchMode):
    """The operations that read a device value on the host (graphs.HOST_READS), with where dlc issues them."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from dlc.backends.torch import graphs

        name = graphs.op_name(func)
        if name in graphs.HOST_READS:
            frames = [f for f in traceback.extract_stack() if "dlc" in Path(f.filename).parts]
            self.found.append(f"aten.{name} at {frames[-1].filename}:{frames[-1].lineno}" if frames else name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_an_epoch_never_waits_for_the_device(path):
    """A training epoch reads nothing back from the device (on a GPU each read waits for every step queued
    before it): no `.item()`, no operation whose output size depends on the data, in any fixture's eager
    epoch; its losses and statistics are read once, by the caller, after it."""
    import dlc
    from dlc.backends import session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime.data import prepare

    spec = dlc.load(path)
    session = session_class("torch")(spec, weights=initial_weights(spec), dtype="float64")
    data = prepare(spec, path.parent)
    handle, perm = session.load_data(data.train.x, data.train.y), np.arange(len(data.train.x))
    session.train_epoch(handle, perm, spec.train.batch_size)  # (caches and buffers made)
    with _HostReads() as reads:
        session.train_epoch(handle, perm, spec.train.batch_size)
    assert reads.found == []
