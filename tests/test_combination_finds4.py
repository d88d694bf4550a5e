"""Defects found by the combination sweep of 2026-12-01 (fused recurrent kernels, Maxout's batched matmul,
LayerNorm/Conv1D/BatchNorm's fused kernels outside float64), with the recurrent layers under torch.compile
(`dlc run --compile`)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _layer(kind: str, dtype, **kw):
    from dlc.backends.torch import recurrent

    layer = getattr(recurrent, kind)(5, 7, **kw).to(dtype)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # (a layer is made with zero weights: dlc sets them)
        for p in layer.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=dtype) - 0.5)
    return layer, torch.randn((4, 6, 5), generator=gen, dtype=dtype)


def _grads(layer, fn, x):
    params = list(layer.parameters())
    loss = fn(x)
    return loss, torch.autograd.grad(loss, params)


def test_compiled_float32_lstm_trains_on_the_cpu():
    """torch.compile of a float32 LSTM on the CPU: torch.lstm runs oneDNN's aten.mkldnn_rnn_layer there,
    whose compiled code failed (TypeError: expected Tensor() for op torch.ops.aten.mkldnn_rnn_layer.default:
    `dlc run --compile` of any float32 LSTM spec); compiled, the layer runs the step loop."""
    torch._dynamo.reset()
    layer, x = _layer("LSTM", torch.float32)

    def f(x):
        return layer(x).square().sum()

    got, g_got = _grads(layer, torch.compile(f), x)
    want, g_want = _grads(layer, lambda x: layer.loop_forward(x).square().sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert layer.kernel_fn is torch.lstm and layer.fused_compiles(x)  # eager: still the fused kernel


@pytest.mark.slow  # (inductor compiles the GRU loop and its gradient for ~30 s here)
def test_compiled_gru_final_state_gradient():
    """return_sequences=false takes the fused kernel's last output, not its final state h_n (the same
    values): compiled, torch.gru's h_n gave the recurrent kernel a wrong gradient (4e-3 off in float64 for
    this loss; the output's was right)."""
    torch._dynamo.reset()
    layer, x = _layer("GRU", torch.float64)

    def f(x):
        return layer(x).square().sum()

    _, g_got = _grads(layer, torch.compile(f), x)
    _, g_want = _grads(layer, lambda x: layer.loop_forward(x).square().sum(), x)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_last_output_is_the_final_state_bit_for_bit(kind, dtype):
    """Eager, the last output and the final state are the same tensor's values, with the same gradients:
    taking the output changes nothing outside torch.compile (float64 runs stay bit for bit)."""
    dt = getattr(torch, dtype)
    layer, x = _layer(kind, dt)
    state = x.new_zeros((1, x.shape[0], layer.units))
    state = (state, state) if kind == "LSTM" else state

    def final_state(x):
        _, h_n, *_ = layer.kernel_fn(x.transpose(0, 1), state, layer.torch_params(), True, 1, 0.0, True,
                                     False, False)
        return h_n[0]

    a, b = final_state(x), layer(x)
    assert torch.equal(a, b)
    w = torch.randn(b.shape, dtype=dt, generator=torch.Generator().manual_seed(5))
    params = list(layer.parameters())
    for u, v in zip(torch.autograd.grad((a * w).sum(), params), torch.autograd.grad((b * w).sum(), params),
                    strict=True):
        assert torch.equal(u, v)


MAXOUT_BF16 = """model mx {
  seed: 5
  data {
    source: digits
    normalize: minmax
    split: holdout(val=0.2)
  }
  input: (8, 8)
  layers {
    Maxout(8)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam(lr=0.01)
  train {
    epochs: 1
    batch_size: 64
    precision: mixed_bfloat16
  }
}"""


@pytest.mark.usefixtures("one_torch_thread")
def test_compiled_maxout_under_mixed_bfloat16_trains_as_eager():
    """Compiled, inductor kept Maxout's 16-bit `product + bias` in float32 and recomputed it in the backward,
    where the max's `input == output` mask then matched nothing: 0/0, NaN at step 3 (`dlc run --compile` of
    a Maxout on sequences under mixed_bfloat16). Rounded as eager rounds it, the compiled step gives the
    eager step's losses."""
    from dlc import api
    from dlc.compiler import compile_text

    spec = compile_text(MAXOUT_BF16).raise_for_errors()
    losses = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        model = api.Model(spec, "torch", compile=compiled)
        losses[compiled] = model.fit(max_steps=8).rows[-1]["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-2), losses
