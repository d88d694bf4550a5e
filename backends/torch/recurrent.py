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
arguments (backends/torch/lower.py maps the IR to them).

With the default activations (tanh, and sigmoid for the gates; relu for SimpleRNN too) the same math runs in
torch's fused recurrent kernel (torch.lstm / torch.gru / torch.rnn_*: one C++ loop, cuDNN on a GPU) from views
of the Keras-layout weights: transposed, GRU's gate blocks reordered to r, z, n, and a zero second bias where
Keras has one bias. The operations are the same; only the association of the sums differs (x·K + b + h·R), so
the results agree with the Python loop to a few ulp (tests/test_recurrent.py). It is 2.6x faster for a float32
LSTM on the CPU (forward and backward, batch 128, 28 steps, 64 units: 9.2 → 3.5 ms), 1.25x for a GRU, the
same in float64. Other activations run the loop."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

# cuDNN copies weights that are not one flat buffer on every call (as they are not here: they are views of the
# Keras-layout parameters) and says so each time; the copy is the price of the layout the exchange relies on
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")


class Recurrent(nn.Module):
    """What SimpleRNN, LSTM and GRU share: the fused kernel where the activations allow one, else the loop
    over time steps; a subclass names its kernel and defines one step."""

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
        self.kernel_fn = self.fused_kernel()

    def bias_shape(self, units: int) -> tuple[int, ...]:
        return (self.gates * units,)

    def initial_state(self, zeros):
        return (zeros,)

    def fused_kernel(self):
        """torch's fused kernel for these activations (torch.lstm, ...), or None: the step loop."""
        return None

    def torch_params(self) -> list:
        """The weights as torch's fused kernels take them: w_ih [g·u, in], w_hh [g·u, u], b_ih, b_hh."""
        params = [self.kernel.t(), self.recurrent_kernel.t()]
        if self.bias is not None:
            params += [self.bias, torch.zeros_like(self.bias)]
        return params

    def forward(self, x):
        if self.kernel_fn is not None and self.fused_compiles(x):
            return self.fused_forward(x)
        return self.loop_forward(x)

    def fused_compiles(self, x) -> bool:
        """Whether torch.compile (dlc run --compile) can take the fused kernel for `x`; always outside it."""
        return True

    def fused_forward(self, x):
        params = self.torch_params()
        if torch.is_autocast_enabled(x.device.type):  # (the loop's matmuls run in the autocast dtype too)
            low = torch.get_autocast_dtype(x.device.type)
            x, params = x.to(low), [p.to(low) for p in params]
        h0 = x.new_zeros((1, x.shape[0], self.units))
        state = (h0, h0) if self.gates == 4 else h0
        # (input, state, params, has_biases, num_layers, dropout, train, bidirectional, batch_first): time
        # first, transposed here, because batch_first=True turns the output's axes with an in-place
        # transpose_ that a replayed step (graphs.Traced) cannot repeat
        y, *_ = self.kernel_fn(x.transpose(0, 1), state, params, self.bias is not None, 1, 0.0,
                               self.training, False, False)
        # the last output, not the final state h_n (the same values): compiled, torch.gru's h_n had a wrong
        # recurrent_kernel gradient (4e-3 in float64 against the eager kernel and the loop; y's was right)
        return y.transpose(0, 1).contiguous() if self.return_sequences else y[-1]

    def loop_forward(self, x):
        zeros = torch.zeros((x.shape[0], self.units), dtype=x.dtype, device=x.device)
        state, y, outs = self.initial_state(zeros), zeros, []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t, :], state)
            if self.return_sequences:
                outs.append(y)
        return torch.stack(outs, dim=1) if self.return_sequences else y


class SimpleRNN(Recurrent):
    def fused_kernel(self):
        return {torch.tanh: torch.rnn_tanh, F.relu: torch.rnn_relu}.get(self.act)

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

    def fused_kernel(self):
        """Keras' gate order i, f, c, o is torch's i, f, g, o."""
        return torch.lstm if self.act is torch.tanh and self.ract is torch.sigmoid else None

    def fused_compiles(self, x) -> bool:
        """Not compiled on the CPU outside float64: there torch.lstm runs oneDNN's aten.mkldnn_rnn_layer
        (float32, bfloat16), whose compiled code fails (TypeError: expected Tensor() for op
        torch.ops.aten.mkldnn_rnn_layer.default; torch 2.13); the loop compiles."""
        return not (torch.compiler.is_compiling() and x.device.type == "cpu" and x.dtype != torch.float64)

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

    def fused_kernel(self):
        return torch.gru if self.act is torch.tanh and self.ract is torch.sigmoid else None

    def torch_params(self) -> list:
        """Keras' gate blocks z, r, h as torch's r, z, n; the bias rows are torch's b_ih and b_hh. Reordered
        by slices (no index tensor: one copied to the device each step would stall a CUDA graph's capture)."""
        u = self.units

        def reorder(w):
            return torch.cat([w[..., u:2 * u], w[..., :u], w[..., 2 * u:]], dim=-1)

        params = [reorder(self.kernel).t(), reorder(self.recurrent_kernel).t()]
        if self.bias is not None:
            params += [reorder(self.bias[0]), reorder(self.bias[1])]
        return params

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
