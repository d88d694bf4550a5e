"""The torch backend's CUDA-only paths, run on the CPU: they must compute what the CPU paths do, bit for bit
(a GPU run is compared with a CPU one only within the float64 bound, tests/test_gpu.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

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
