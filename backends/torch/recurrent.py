"""SimpleRNN, LSTM and GRU in torch with Keras' exact math (keras/src/layers/rnn/*.py, implementation 2, the
non-cuDNN path Keras takes on the CPU): weights kept in Keras' layout (kernel [in, g·u], recurrent_kernel
[u, g·u], bias; gate order i, f, c, o for LSTM and z, r, h for GRU with reset_after=True, bias (2, 3u)), so the
weight exchange is a plain copy. Every step is computed with the same operations in the same order as Keras:

  SimpleRNN  h = act((x·K + b) + h·R)
  LSTM       z = (x·K + h·R) + b;  i, f, o = σ(z_i), σ(z_f), σ(z_o);  c = f·c + i·act(z_c);  h = o·act(c)
  GRU        mx = x·K + b_in;  mi = h·R + b_rec;  z = σ(mx_z + mi_z);  r = σ(mx_r + mi_r);
             hh = act(mx_h + r·mi_h);  h = z·h + (1 − z)·hh

Activations flow in Keras' layout (batch, steps, features); the initial state is zeros."""

from __future__ import annotations

import torch
from torch import nn

from dlc.compiler.spec import LayerInfo

KINDS = ("SimpleRNN", "LSTM", "GRU")


class RecurrentT(nn.Module):
    def __init__(self, layer, info: LayerInfo, act, recurrent_act):
        super().__init__()
        shapes = {w.name: tuple(w.shape) for w in info.weights}
        self.kind = layer.kind
        self.units = layer.units
        self.kernel = nn.Parameter(torch.empty(shapes["kernel"]))
        self.recurrent_kernel = nn.Parameter(torch.empty(shapes["recurrent_kernel"]))
        self.bias = nn.Parameter(torch.empty(shapes["bias"])) if "bias" in shapes else None
        self.act = act
        self.ract = recurrent_act
        self.return_sequences = layer.return_sequences

    def _step(self, x, state):
        u, act, ract, b = self.units, self.act, self.ract, self.bias
        if self.kind == "SimpleRNN":
            (h,) = state
            y = x @ self.kernel
            if b is not None:
                y = y + b
            y = act(y + h @ self.recurrent_kernel)
            return y, (y,)
        if self.kind == "LSTM":
            h, c = state
            z = x @ self.kernel
            z = z + h @ self.recurrent_kernel
            if b is not None:
                z = z + b
            i = ract(z[:, :u])
            f = ract(z[:, u:2 * u])
            c = f * c + i * act(z[:, 2 * u:3 * u])
            o = ract(z[:, 3 * u:])
            h = o * act(c)
            return h, (h, c)
        # GRU, reset_after=True
        (h,) = state
        mx = x @ self.kernel
        if b is not None:
            mx = mx + b[0]
        mi = h @ self.recurrent_kernel
        if b is not None:
            mi = mi + b[1]
        z = ract(mx[:, :u] + mi[:, :u])
        r = ract(mx[:, u:2 * u] + mi[:, u:2 * u])
        hh = act(mx[:, 2 * u:] + r * mi[:, 2 * u:])
        h = z * h + (1 - z) * hh
        return h, (h,)

    def forward(self, x):
        n, steps = x.shape[0], x.shape[1]
        zeros = torch.zeros((n, self.units), dtype=x.dtype, device=x.device)
        state = (zeros, zeros) if self.kind == "LSTM" else (zeros,)
        outs = []
        y = zeros
        for t in range(steps):
            y, state = self._step(x[:, t, :], state)
            if self.return_sequences:
                outs.append(y)
        return torch.stack(outs, dim=1) if self.return_sequences else y


def lower(info: LayerInfo, activation) -> nn.Module:
    """`activation`: backends.torch.layers.activation (IR activation -> torch function)."""
    layer = info.layer
    ract = getattr(layer, "recurrent_activation", None)
    return RecurrentT(layer, info, activation(layer.activation),
                      activation(ract) if ract is not None else torch.sigmoid)
