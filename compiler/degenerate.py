"""Layers whose output a spec makes constant, or makes depend on the other samples of a batch, which
`dlc check` sees from the shapes alone (warnings: the spec trains, but not as meant).

W013: a normalisation over one value. LayerNorm normalises each position over its last axis: of size 1, each
value minus its own mean is 0, so the output is its beta (0 without center), whatever the input, and nothing
before it learns. BatchNorm normalises each channel over the batch and every other axis: with batch_size: 1
and no other axis (a rank-1 input, or other axes of size 1) the same holds in training.

W014: Softmax(axis=0). Keras' axes count the batch axis first, so axis=0 normalises each value across the
samples of the batch: a sample's output depends on the others it is batched with (and on the batch size when
predicting), which a spec's shapes (written without the batch axis) make an easy slip for axis=1.
"""

from __future__ import annotations

import math

from .diagnostics import Diagnostics
from .layers import BatchNorm, LayerNorm, ShapeError, Softmax
from .spec import Spec


def check_degenerate_layers(spec: Spec, d: Diagnostics, span_of) -> None:
    """W013 and W014 at each layer concerned (once per place written). `span_of(layer)`: where to report
    it."""
    try:
        infos = list(spec.walk())
    except ShapeError:  # (reported as E301)
        return
    for info in infos:
        layer, shape = info.layer, info.in_shape
        if isinstance(layer, LayerNorm) and shape and shape[-1] == 1:
            d.warn("W013", f"LayerNorm over a last axis of size 1 (input {_shown(shape)}): each value minus "
                   "its own mean is 0, so its output is constant and nothing before it can be learnt",
                   span_of(layer), "remove it, or normalise a wider axis (more units before it)")
        elif isinstance(layer, BatchNorm) and spec.train.batch_size == 1 and math.prod(shape[:-1]) == 1:
            d.warn("W013", f"BatchNorm with batch_size: 1 over input {_shown(shape)}: each batch's mean is "
                   "the sample itself, so in training its output is constant and nothing before it can be "
                   "learnt", span_of(layer),
                   "use a larger batch_size, or LayerNorm() (it normalises each sample alone)")
        elif isinstance(layer, Softmax) and layer.axis % (len(shape) + 1) == 0:
            d.warn("W014", f"Softmax(axis={layer.axis}) normalises over the batch axis (Keras' axes count it "
                   "first): each output depends on the other samples of the batch",
                   span_of(layer), "axis=-1 (the default) is the last axis of a sample, axis=1 its first")


def _shown(shape) -> str:
    return "(" + ", ".join(str(x) for x in shape) + ")"
