"""ONNX export through the torch lowering (the backends are equivalent): the training preprocessing folded in
front of the network, the fused output activation applied at the end."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .layers import Pool
from .session import Session

ERF_OPSET = 9  # ONNX's Erf


class Exported(torch.nn.Module):
    """(x − shift) / scale → the network → softmax/sigmoid when the loss computed it from logits."""

    def __init__(self, session: Session, shift, scale):
        super().__init__()
        self.net, self.fused, self.final = session.net, session.fused, session.final
        _replace_padded_avg_pools(self.net)
        shape = (1,) + tuple(session.spec.input)
        self.register_buffer("shift", torch.tensor(np.reshape(shift, shape) if shift is not None
                                                   else np.zeros(shape), dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(np.reshape(scale, shape) if scale is not None
                                                   else np.ones(shape), dtype=torch.float32))

    def forward(self, x):
        y = self.net((x - self.shift) / self.scale)
        if self.fused:
            y = torch.softmax(y, -1) if self.final == "softmax" else torch.sigmoid(y)
        return y


class _OnnxAvgPool(torch.nn.Module):
    """A padded average pool as ONNX can say it. Training's Pool sums each window (avg_pool2d with
    divisor_override=1) and divides by its number of valid elements; the ONNX exporter drops
    divisor_override (it would export the mean, silently), so here the mean over the whole window (padding
    counted) is scaled back to the sum: the same values within float32 rounding."""

    def __init__(self, pool: Pool):
        super().__init__()
        self.pool = pool

    def forward(self, x):
        p = self.pool
        if p.one_d:
            x = x.unsqueeze(1)
        x = x.permute(0, 3, 1, 2)
        y = F.avg_pool2d(F.pad(x, p.pad), p.k, p.s, count_include_pad=True) * math.prod(p.k) / p.count
        y = y.permute(0, 2, 3, 1)
        return y.squeeze(1) if p.one_d else y


def _replace_padded_avg_pools(net: torch.nn.Module) -> None:
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Pool) and child.mode == "avg" and any(child.pad):
                setattr(parent, name, _OnnxAvgPool(child))


def _erfc(g, x):
    """aten::erfc (gelu's form, as TensorFlow computes it) as 1 − Erf: no ONNX operator is erfc."""
    one = g.op("Constant", value_t=torch.tensor(1.0, dtype=torch.float32))
    return g.op("Sub", one, g.op("Erf", x))


@contextlib.contextmanager
def _stdout_to(sink):
    """File descriptor 1 into `sink` (the exporter's C++ side prints the whole graph there when it fails)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(sink.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def export_onnx(spec, weights, shift, scale, out: Path) -> None:
    """Write `out` (ONNX, float32, a dynamic batch axis) for `spec` with `weights` (Keras layouts). Without
    the onnx package (torch's exporter needs it to write the file): an ImportError naming it, first."""
    import onnx  # noqa: F401

    session = Session(spec, dtype="float32", device="cpu", weights=weights)
    model = Exported(session, shift, scale).eval()
    example = torch.zeros((2,) + tuple(spec.input), dtype=torch.float32)
    torch.onnx.register_custom_op_symbolic("aten::erfc", _erfc, ERF_OPSET)
    with tempfile.TemporaryFile() as log, _stdout_to(log):
        torch.onnx.export(model, (example,), str(out), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
