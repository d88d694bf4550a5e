"""W001: a bias that BatchNorm removes, so that it has no effect and a gradient of zero.

A layer's bias adds the same value to every position of each output channel. BatchNorm subtracts, per
channel (its last axis), the mean over the batch and every other axis, so a shift that is the same for every
sample and every position of a channel is removed, and the bias before it has no effect on anything after it.
The shift is followed from the bias to the first BatchNorm it reaches, through the layers that carry it as an
exact, known shift:

- UNIFORM: the same at every position of each channel (the bias itself). Kept by a layer that maps each
  channel's constant to a constant: Dense; a convolution without padding (a window of zeros at the border
  sees only part of the shift); max and average pooling (an average of a constant, a max shifted by it: Keras'
  padded windows leave the padding out of both); global pooling; UpSampling2D; a Reshape that keeps the last
  axis; Dropout(0), Activation(linear).
- FIXED: the same for every sample but not at every position: what a padded convolution, a transposed one, a
  Flatten or a Reshape makes of a UNIFORM one, and what any affine layer (linear activation) makes of a FIXED
  one. A BatchNorm over a rank-1 input (features only) removes it too: there, FIXED is UNIFORM.
- ZERO: removed (by a BatchNorm, or in a residual branch after one): nothing after depends on the bias.

Anything else (an activation that is not linear, Dropout above 0, which scales the shift per sample, a max
pool of a FIXED shift, a normalisation over other axes, a recurrent layer, an activity regularizer, which sees
the shift) ends the search: the bias matters. A residual adds its input's shift to its body's.
"""

from __future__ import annotations

import contextlib

from .diagnostics import Diagnostics, Span
from .layers import (
    ActivationLayer,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    Layer,
    MaxPool1D,
    MaxPool2D,
    Reshape,
    Residual,
    SeparableConv2D,
    Shape,
    ShapeError,
    UpSampling2D,
)

UNIFORM, FIXED, ZERO = "uniform", "fixed", "zero"
State = str | None

# the layers whose bias is added per output channel after a linear map (and an activation)
BIASED = (Dense, Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D)
_CONVS = (Conv1D, Conv2D, DepthwiseConv2D, SeparableConv2D)
_MAX_POOLS = (MaxPool1D, MaxPool2D, GlobalMaxPool1D, GlobalMaxPool2D)
_MEANS = (AvgPool1D, AvgPool2D, GlobalAvgPool1D, GlobalAvgPool2D, UpSampling2D)


def _linear(layer: Layer) -> bool:
    """No activation beyond linear, and no activity regularizer (a penalty that sees the layer's output)."""
    act = getattr(layer, "activation", None)
    return (act is None or act.name == "linear") and getattr(layer, "activity_reg", None) is None


def _padded(layer, shape: Shape) -> bool:
    """Whether a convolution pads its input (padding=same with a window that reaches past the border)."""
    if layer.padding != "same":
        return False
    ks, ss = layer._ks()
    return any(max((-(-n // s) - 1) * s + k - n, 0) > 0 for n, k, s in zip(shape[:-1], ks, ss, strict=False))


def _through(layer: Layer, state: State, shape: Shape, out: Shape) -> State:
    """The shift after `layer`, `state` the shift before it (its input of `shape`, its output of `out`)."""
    if state in (None, ZERO):
        return state
    if isinstance(layer, BatchNorm):
        return ZERO if state == UNIFORM or len(shape) == 1 else None
    if not _linear(layer):
        return None
    new = _affine(layer, state, shape, out)
    return UNIFORM if new == FIXED and len(out) == 1 else new


def _affine(layer: Layer, state: State, shape: Shape, out: Shape) -> State:
    """_through of a layer without an activation, UNIFORM or FIXED coming in."""
    if isinstance(layer, (Dense, *_MEANS, ActivationLayer)):
        return state
    if isinstance(layer, _CONVS):
        return state if not _padded(layer, shape) else FIXED
    if isinstance(layer, Conv2DTranspose):
        return FIXED
    if isinstance(layer, _MAX_POOLS):
        return state if state == UNIFORM else None
    if isinstance(layer, (Flatten, Reshape)):
        return state if out[-1:] == shape[-1:] else FIXED
    if isinstance(layer, Dropout):
        return state if layer.rate == 0 else None
    if isinstance(layer, Residual):
        return _residual(state, _follow(state, layer.body, shape))
    return None


def _residual(outer: State, body: State) -> State:
    """The shift of input + body(input), from the input's shift and the body's output's."""
    if outer is None or body is None:
        return None
    if ZERO in (outer, body):
        return body if outer == ZERO else outer
    return UNIFORM if outer == body == UNIFORM else FIXED


def _follow(state: State, layers: list, shape: Shape) -> State:
    """The shift after `layers` (their input of `shape`), followed until it is removed (ZERO) or ends the
    search (None): a residual body's, from its one starting point (a list's many are _Chain's)."""
    for layer in layers:
        if state in (None, ZERO):
            break
        out = layer.out_shape(shape)
        state = _through(layer, state, shape, out)
        shape = out
    return state


class _Chain:
    """A list of layers whose shifts are followed from many starting points: each (position, shift) is
    followed once (a model of 5,000 linear Dense layers asked each bias about every layer after it: 12 million
    steps)."""

    def __init__(self, layers: list, shape: Shape):
        self.layers = layers
        self.shapes: list[Shape] = [shape]  # the input shape of each layer, as far as they can be known
        self.broken = len(layers)  # the first layer that cannot take its input (its ShapeError is raised)
        for i, layer in enumerate(layers):
            try:
                self.shapes.append(layer.out_shape(self.shapes[-1]))
            except ShapeError:
                self.broken = i
                break
        self.memo: dict[tuple[int, State], tuple[State, int]] = {}

    def follow(self, start: int, state: State) -> tuple[State, int]:
        """The shift after the layers from `start`, and the index after the last one it went through (the
        one that removed it or ended the search): the layers it went through are `layers[start:stop]`."""
        path: list[tuple[int, State]] = []
        i = start
        while state not in (None, ZERO) and (i, state) not in self.memo and i < len(self.layers):
            if i >= self.broken:
                raise ShapeError(f"{self.layers[i].kind} cannot take its input")
            path.append((i, state))
            state = _through(self.layers[i], state, self.shapes[i], self.shapes[i + 1])
            i += 1
        result = self.memo.get((i, state), (state, i)) if state not in (None, ZERO) else (state, i)
        for key in path:
            self.memo[key] = result
        return result


def check_dead_biases(layers: list, shape: Shape, d: Diagnostics, span_of) -> None:
    """W001 at each layer whose bias the BatchNorm after it removes (in its list, or after the residual it
    is in). `span_of(layer)`: where to report a layer."""
    with contextlib.suppress(ShapeError):  # (reported as E301; the layers after it are not judged)
        _walk(layers, tuple(shape), [], d, span_of)


def _walk(layers: list, shape: Shape, outer: list[tuple[Layer, _Chain, int]], d: Diagnostics,
          span_of) -> None:
    """`outer`: each residual this list is the body of (innermost first), the chain of its list and the
    index after it; the bias's shift leaves a body as the residual's own (its input carries none)."""
    chain = _Chain(layers, shape)
    for i, layer in enumerate(layers):
        out = layer.out_shape(shape)
        if isinstance(layer, BIASED) and getattr(layer, "use_bias", False) and _linear(layer):
            state, stop = chain.follow(i + 1, UNIFORM)
            passed = [(layers, i + 1, stop)]  # (as slices: made into a list only for a warning)
            for residual, rest, at in outer:
                if state in (None, ZERO):
                    break
                state, stop = rest.follow(at, state)
                passed += [([residual], 0, 1), (rest.layers, at, stop)]
            if state == ZERO:
                _warn(layer, [x for lst, a, b in passed for x in lst[a:b]], d, span_of)
        if isinstance(layer, Residual):
            _walk(layer.body, shape, [(layer, chain, i + 1), *outer], d, span_of)
        shape = out


# how many of the layers a shift went through a warning names
NAMED_BETWEEN = 8


def _warn(layer: Layer, passed: list[Layer], d: Diagnostics, span_of) -> None:
    between = [x.kind if x.kind != "Residual" else "residual" for x in passed[:-1]]
    bn = passed[-1]
    where = f" (line {bn.at[0]})" if bn.at and len(between) else ""
    more = len(between) - NAMED_BETWEEN
    if more > 1:
        between = [*between[:NAMED_BETWEEN], f"and {more:,} more"]
    through = f", through {', '.join(between)}" if between else ""
    span: Span | None = span_of(layer)
    d.warn("W001", f"the bias of {layer.kind} has no effect before BatchNorm{where}{through}", span,
           "add use_bias=false: BatchNorm subtracts each channel's mean, the bias with it, so the bias "
           "costs parameters and drifts on rounding noise under Adam"
           if between else
           "add use_bias=false: the bias costs parameters and drifts on rounding noise under Adam")
