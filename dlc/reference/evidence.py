"""What the training evidence measures, defined once for every backend: which layers are probed, which of
their weights count, the activation families, the saturation thresholds and the seeded probe set. The
backends' `Session.probe` computes the numbers (backends/*/probe.py); dlc/runtime/evidence.py records them per
epoch.

The definitions, exactly (they are also written into every evidence.json):
- probe set: min(512, N) training samples (the training part, before augmentation), chosen once from the
  spec's seed (`probe_indices`), the same on every backend and every epoch, in increasing index order;
- the probe runs in inference mode (no dropout, BatchNorm with its moving statistics), after the epoch's last
  step; it changes nothing (no weight, optimizer slot, moving statistic or dropout step);
- grad_norm: the L2 norm of the gradient of the mean data loss on the probe set (no regularization
  penalties) with respect to the layer's trainable weights, all of them concatenated;
- weight_norm: the L2 norm of the layer's trainable weights, concatenated, at the end of the epoch;
- update_ratio: ||W_end − W_start|| / ||W_start|| over the same weights, W_start at the start of the epoch and
  W_end at its end: the epoch's relative change (null when ||W_start|| is 0);
- act_mean, act_std: mean and population standard deviation of every element of the layer's output on the
  probe set, after its activation (the output layer's softmax/sigmoid included, though the loss computes it
  from the logits);
- dead_fraction (family "relu": relu, relu6): the fraction of units (the output's last axis: a Dense unit, a
  conv channel over all its positions) whose output is <= 0 for every probe sample and position. leaky_relu,
  elu, selu, PReLU, LeakyReLU and ELU are not in the family: their gradient below 0 is not zero, so a unit
  that is never positive still learns;
- saturated_fraction (family "sigmoid": sigmoid, hard_sigmoid; family "tanh"): the fraction of output
  elements (sample × position × unit) with sigmoid output < 0.01 or > 0.99, or |tanh output| > 0.99;
- the family is the activation that produces the layer's output (a Dense/Conv `activation=`, an Activation
  layer, a SimpleRNN's activation); LSTM, GRU and Bidirectional have none (their output is o·tanh(c) or a
  merge), other layers none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.reference.rng import STREAM_PROBE, stream

PROBE_SAMPLES = 512
FAMILIES = {"relu": "relu", "relu6": "relu", "sigmoid": "sigmoid", "hard_sigmoid": "sigmoid", "tanh": "tanh"}
SIGMOID_LOW, SIGMOID_HIGH = 0.01, 0.99
TANH_LIMIT = 0.99
# the numbers Session.probe returns per layer, in this order
PROBE_FIELDS = ("grad_norm", "act_mean", "act_std", "dead_fraction", "saturated_fraction")

DEFINITIONS = {
    "probe": f"min({PROBE_SAMPLES}, N) training samples (before augmentation) chosen once from the spec's "
             "seed, run after each epoch's last step in inference mode (no dropout, BatchNorm moving "
             "statistics); nothing is changed by it",
    "grad_norm": "L2 norm of the gradient of the mean data loss on the probe set (no regularization "
                 "penalties) w.r.t. the layer's trainable weights, concatenated",
    "weight_norm": "L2 norm of the layer's trainable weights, concatenated, at the end of the epoch",
    "update_ratio": "||W_end - W_start|| / ||W_start|| of the layer's trainable weights over the epoch "
                    "(null when ||W_start|| = 0)",
    "act_mean": "mean of every element of the layer's output on the probe set, after its activation "
                "(the output layer's softmax/sigmoid included)",
    "act_std": "population standard deviation of the same elements",
    "dead_fraction": "family relu (relu, relu6) only: fraction of units (last axis; a conv channel over all "
                     "positions) whose output is <= 0 for every probe sample and position",
    "saturated_fraction": f"family sigmoid (sigmoid, hard_sigmoid): fraction of output elements < "
                          f"{SIGMOID_LOW} or > {SIGMOID_HIGH}; family tanh: |output| > {TANH_LIMIT}",
    "family": "the activation producing the layer's output: relu (relu, relu6), sigmoid (sigmoid, "
              "hard_sigmoid), tanh; null for others (leaky_relu, elu, selu, PReLU cannot die; LSTM, GRU "
              "and Bidirectional outputs are not a plain activation)",
    "layers": "every layer in the spec's order (residual bodies after their residual); the last top-level "
              "layer is the output layer",
    "steps": "first_step, last_step: the epoch's optimizer steps, counted from 1 over the run; step_losses "
             "holds every step's training loss (with penalties) in that numbering",
    "null": "not applicable to the layer, or not finite",
}


@dataclass(frozen=True)
class ProbeLayer:
    """One layer as the probe sees it: its trainable weights (IR names), the activation producing its output,
    its family, and for the fused output layer the activation the probe applies to the logits."""

    name: str
    kind: str
    activation: str | None
    family: str | None
    trainable: tuple[str, ...]
    output_activation: str | None = None


def probe_rows(layers: list[ProbeLayer], numbers: list[float]) -> dict:
    """Each layer's probe numbers (5 a layer, as a backend's probe reads them in one transfer) by name, those
    that do not apply to its kind as None: a gradient norm without trainable weights, the dead fraction
    outside the relu family, the saturated fraction outside sigmoid and tanh."""
    out = {}
    for k, pl in enumerate(layers):
        row = numbers[5 * k:5 * k + 5]
        out[pl.name] = {"grad_norm": row[0] if pl.trainable else None, "act_mean": row[1],
                        "act_std": row[2], "dead_fraction": row[3] if pl.family == "relu" else None,
                        "saturated_fraction": row[4] if pl.family in ("sigmoid", "tanh") else None}
    return out


def _activation(layer) -> str | None:
    kind = layer.kind
    if kind == "LeakyReLU":
        return "leaky_relu"
    if kind == "ELU":
        return "elu"
    if kind == "PReLU":
        return "prelu"
    if kind == "Softmax":
        return "softmax"
    if kind == "Bidirectional":
        return layer.layer.activation.name
    act = getattr(layer, "activation", None)
    return act.name if act is not None else None


def probe_layers(spec) -> list[ProbeLayer]:
    """Every layer of the spec (residual bodies included, in walk order) as the probe measures it."""
    from dlc.compiler.checkshared import fused_output

    fused = fused_output(spec)
    last = spec.layers[-1].name if spec.layers else None
    out = []
    for info in spec.walk():
        layer = info.layer
        act = _activation(layer)
        family = None if layer.kind in ("LSTM", "GRU", "Bidirectional") else FAMILIES.get(act or "")
        out.append(ProbeLayer(layer.name, layer.kind, act, family,
                              tuple(w.name for w in info.weights if w.trainable),
                              fused if fused is not None and layer.name == last else None))
    return out


def probe_indices(seed: int, n: int, size: int = PROBE_SAMPLES) -> np.ndarray:
    """The probe set: min(size, n) distinct training-sample indices drawn from the seed, sorted."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(stream(seed, STREAM_PROBE).choice(n, size, replace=False)).astype(np.int64)
