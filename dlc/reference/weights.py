"""Initial weights in the IR's canonical (Keras) layout, drawn once in numpy from the spec's seed."""

from __future__ import annotations

import numpy as np

from dlc.compiler.spec import Spec
from dlc.reference.rng import STREAM_INIT, stream

Weights = dict[str, dict[str, np.ndarray]]  # layer name -> weight name -> array (float64)


def initial_weights(spec: Spec, seed: int | None = None) -> Weights:
    seed = spec.seed if seed is None else seed
    out: Weights = {}
    for info in spec.walk():
        layer_w = {}
        for j, w in enumerate(info.weights):
            arr = np.array(w.init.draw(stream(seed, STREAM_INIT, info.index, j), tuple(w.shape)),
                           dtype=np.float64)
            # e.g. an LSTM's forget-gate bias starts at one (Keras' unit_forget_bias, gate order i, f, c, o)
            layer_w[w.name] = info.layer.initial_value(w.name, arr)
        if layer_w:
            out[info.layer.name] = layer_w
    return out


def max_abs_diff(a: Weights, b: Weights) -> float:
    worst = 0.0
    for lname, ws in a.items():
        for wname, arr in ws.items():
            other = b[lname][wname]
            if arr.shape != other.shape:
                return float("inf")
            if arr.size:
                worst = max(worst, float(np.max(np.abs(arr.astype(np.float64) - other.astype(np.float64)))))
    return worst


def flatten(weights: Weights, prefix: str) -> dict[str, np.ndarray]:
    """{'<prefix><layer>/<weight>': array}: weights as flat named arrays (checkpoints, session states)."""
    return {f"{prefix}{lname}/{wname}": a for lname, ws in weights.items() for wname, a in ws.items()}


def unflatten(flat: dict[str, np.ndarray], prefix: str) -> Weights:
    """The inverse of `flatten`, ignoring keys without the prefix."""
    out: Weights = {}
    for key, a in flat.items():
        if key.startswith(prefix):
            lname, wname = key[len(prefix):].split("/", 1)
            out.setdefault(lname, {})[wname] = a
    return out
