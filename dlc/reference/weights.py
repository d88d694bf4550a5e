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


def max_scaled_diff(a: Weights, b: Weights) -> float:
    """The largest |Δ| / max(1, |w|) over the weights of `a` and `b` (|w| the larger of the two): the float64
    weight bound scales as the loss bound does, so that weights of 1e4 are judged as weights of 1 are. Equal
    values (infinities, NaNs on both sides) differ by 0; a NaN on one side, or another shape, by inf."""
    worst = 0.0
    for lname, ws in a.items():
        for wname, arr in ws.items():
            x, y = arr.astype(np.float64), b[lname][wname].astype(np.float64)
            if x.shape != y.shape:
                return float("inf")
            if not x.size:
                continue
            same = (x == y) | (np.isnan(x) & np.isnan(y))
            with np.errstate(invalid="ignore", over="ignore"):
                d = np.abs(x - y) / np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
            d = np.where(same, 0.0, d)
            worst = max(worst, float("inf") if np.isnan(d).any() else float(d.max()))
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
