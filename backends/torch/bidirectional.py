"""Keras' Bidirectional wrapper as a torch module, built from two recurrent modules (recurrent.py's SimpleRNN,
LSTM or GRU, each with its own weights) and a merge mode (backends/torch/lower.py maps the IR to it).

Keras (keras/src/layers/rnn/bidirectional.py): the forward layer reads the sequence in order; the backward
layer (go_backwards=True) reads it reversed and returns its outputs in the order it computed them, which
Bidirectional reverses back when return_sequences is set; then concat (forward first, along features), sum,
mul, or ave = (forward + backward) / 2. Activations flow as (batch, steps, features)."""

from __future__ import annotations

import torch
from torch import nn


class Bidirectional(nn.Module):
    """The wrapped layers' parameters are also registered here under the IR's names (forward_kernel, ...,
    backward_bias): the same tensors, so the weight exchange finds them by name."""

    def __init__(self, forward_layer: nn.Module, backward_layer: nn.Module, merge_mode: str = "concat"):
        super().__init__()
        self.forward_layer, self.backward_layer, self.merge_mode = forward_layer, backward_layer, merge_mode
        for prefix, layer in (("forward_", forward_layer), ("backward_", backward_layer)):
            for name, p in list(layer.named_parameters(recurse=False)):
                self.register_parameter(prefix + name, p)

    def forward(self, x):
        y = self.forward_layer(x)
        y_rev = self.backward_layer(torch.flip(x, dims=(1,)))
        if y_rev.dim() == 3:  # return_sequences: back to time order
            y_rev = torch.flip(y_rev, dims=(1,))
        if self.merge_mode == "concat":
            return torch.cat([y, y_rev], dim=-1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) / 2
        return y * y_rev
