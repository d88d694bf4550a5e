"""GlobalMaxPool on the torch backend (layers.GlobalMax where the channels are not a multiple of 32 on the
CPU): the same values and the same gradient, shared among ties, as x.amax, bit for bit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dlc.backends.torch.layers import GlobalMax, GlobalPool  # noqa: E402


@pytest.mark.parametrize("shape", [(6, 5, 7, 24), (4, 9, 16), (3, 4, 4, 1), (2, 3, 3, 3, 5), (5, 1, 1, 8)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_global_max_is_amax_bit_for_bit(shape, dtype):
    gen = torch.Generator().manual_seed(len(shape))
    # rounded relu outputs: many ties, whole channels of zeros among them
    x0 = torch.relu(torch.randn(shape, generator=gen, dtype=torch.float64)).round(decimals=1)
    x0 = x0.to(getattr(torch, dtype))
    g = torch.randn((shape[0], shape[-1]), generator=gen, dtype=torch.float64).to(x0.dtype)
    dims = tuple(range(1, len(shape) - 1))
    out = []
    for f in (lambda x: x.amax(dim=dims), GlobalMax.apply):
        x = x0.clone().requires_grad_()
        y = f(x)
        y.backward(g)
        out.append((y.detach(), x.grad))
    (ya, ga), (yb, gb) = out
    assert torch.equal(ya, yb) and torch.equal(ga, gb)
    if shape[-1] > 1 and shape[1] > 1:  # (a channel or a position alone has no ties)
        assert (ga != 0).sum() > shape[0] * shape[-1]  # ties shared the gradient


def test_the_pool_takes_the_fast_max_only_where_amax_is_slow(monkeypatch):
    calls = []
    monkeypatch.setattr(GlobalMax, "apply", lambda x: calls.append(x.shape) or x.amax(dim=(1, 2)))
    pool = GlobalPool("max")
    pool(torch.zeros(2, 3, 3, 24))
    pool(torch.zeros(2, 3, 3, 64))
    assert calls == [(2, 3, 3, 24)]
