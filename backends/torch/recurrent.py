"""SimpleRNN, LSTM and GRU in torch with Keras' exact math (keras/src/layers/rnn/*.py, implementation 2, the
non-cuDNN path Keras takes on the CPU): weights kept in Keras' layout (kernel [in, g·u], recurrent_kernel
[u, g·u], bias; gate order i, f, c, o for LSTM and z, r, h for GRU with reset_after=True, bias (2, 3u)), so
the weight exchange is a plain copy. Every step is computed with the same operations in the same order as
Keras:

  SimpleRNN  h = act((x·K + b) + h·R)
  LSTM       z = (x·K + h·R) + b;  i, f, o = σ(z_i), σ(z_f), σ(z_o);  c = f·c + i·act(z_c);  h = o·act(c)
  GRU        mx = x·K + b_in;  mi = h·R + b_rec;  z = σ(mx_z + mi_z);  r = σ(mx_r + mi_r);
             hh = act(mx_h + r·mi_h);  h = z·h + (1 − z)·hh

Activations flow in Keras' layout (batch, steps, features); the initial state is zeros. Built from plain
arguments (backends/torch/lower.py maps the IR to them)."""

from __future__ import annotations

import torch
from torch import nn


class Recurrent(nn.Module):
    """The loop over time steps shared by SimpleRNN, LSTM and GRU; a subclass defines one step."""

    gates = 1

    def __init__(self, n_in: int, units: int, use_bias: bool = True, activation=torch.tanh,
                 recurrent_activation=torch.sigmoid, return_sequences: bool = False):
        super().__init__()
        g = self.gates * units
        self.kernel = nn.Parameter(torch.zeros(n_in, g))
        self.recurrent_kernel = nn.Parameter(torch.zeros(units, g))
        self.bias = nn.Parameter(torch.zeros(self.bias_shape(units))) if use_bias else None
        self.units, self.act, self.ract = units, activation, recurrent_activation
        self.return_sequences = return_sequences

    def bias_shape(self, units: int) -> tuple[int, ...]:
        return (self.gates * units,)

    def initial_state(self, zeros):
        return (zeros,)

    def forward(self, x):
        zeros = torch.zeros((x.shape[0], self.units), dtype=x.dtype, device=x.device)
        state, y, outs = self.initial_state(zeros), zeros, []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t, :], state)
            if self.return_sequences:
                outs.append(y)
        return torch.stack(outs, dim=1) if self.return_sequences else y


class SimpleRNN(Recurrent):
    def step(self, x, state):
        (h,) = state
        y = x @ self.kernel
        if self.bias is not None:
            y = y + self.bias
        y = self.act(y + h @ self.recurrent_kernel)
        return y, (y,)


class LSTM(Recurrent):
    gates = 4

    def initial_state(self, zeros):
        return (zeros, zeros)

    def step(self, x, state):
        h, c = state
        u = self.units
        z = x @ self.kernel
        z = z + h @ self.recurrent_kernel
        if self.bias is not None:
            z = z + self.bias
        i = self.ract(z[:, :u])
        f = self.ract(z[:, u:2 * u])
        c = f * c + i * self.act(z[:, 2 * u:3 * u])
        o = self.ract(z[:, 3 * u:])
        h = o * self.act(c)
        return h, (h, c)


class GRU(Recurrent):
    """reset_after=True: the bias is (2, 3·units), input bias then recurrent bias."""

    gates = 3

    def bias_shape(self, units):
        return (2, 3 * units)

    def step(self, x, state):
        (h,) = state
        u, b = self.units, self.bias
        mx = x @ self.kernel
        if b is not None:
            mx = mx + b[0]
        mi = h @ self.recurrent_kernel
        if b is not None:
            mi = mi + b[1]
        z = self.ract(mx[:, :u] + mi[:, :u])
        r = self.ract(mx[:, u:2 * u] + mi[:, u:2 * u])
        hh = self.act(mx[:, 2 * u:] + r * mi[:, 2 * u:])
        h = z * h + (1 - z) * hh
        return h, (h,)
