"""SimpleRNN, LSTM and GRU as Keras' own layers (the reference semantics). use_cudnn=False pins the standard
implementation (the one Keras runs on the CPU) so that a GPU never swaps in the fused cuDNN kernel; GRU keeps
reset_after=True, LSTM unit_forget_bias (dlc draws the bias itself, the +1 included). Their variables live on
`layer.cell` (kernel, recurrent_kernel, bias)."""

from __future__ import annotations

import keras

KINDS = ("SimpleRNN", "LSTM", "GRU")


def lower(info, activation, regularizer, dtype: str):
    """`activation`, `regularizer`: backends.keras.layers' IR -> Keras converters."""
    layer = info.layer
    common = {
        "activation": activation(layer.activation), "use_bias": layer.use_bias,
        "kernel_regularizer": regularizer(layer.kernel_reg),
        "recurrent_regularizer": regularizer(layer.recurrent_reg),
        "bias_regularizer": regularizer(layer.bias_reg),
        "return_sequences": layer.return_sequences, "dtype": dtype, "name": layer.name}
    if layer.kind == "SimpleRNN":
        return keras.layers.SimpleRNN(layer.units, **common)
    ract = activation(layer.recurrent_activation)
    if layer.kind == "LSTM":
        return keras.layers.LSTM(layer.units, recurrent_activation=ract, unit_forget_bias=layer.unit_forget_bias,
                                 use_cudnn=False, **common)
    return keras.layers.GRU(layer.units, recurrent_activation=ract, reset_after=True, use_cudnn=False, **common)


def is_recurrent(klayer) -> bool:
    return isinstance(klayer, keras.layers.RNN)
