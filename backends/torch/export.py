"""ONNX export through the torch lowering (the backends are equivalent): the training preprocessing folded in
front of the network, the fused output activation applied at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .session import Session


class Exported(torch.nn.Module):
    """(x − shift) / scale → the network → softmax/sigmoid when the loss computed it from logits."""

    def __init__(self, session: Session, shift, scale):
        super().__init__()
        self.net, self.fused, self.final = session.net, session.fused, session.final
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


def export_onnx(spec, weights, shift, scale, out: Path) -> None:
    """Write `out` (ONNX, float32, a dynamic batch axis) for `spec` with `weights` (Keras layouts)."""
    session = Session(spec, dtype="float32", device="cpu", weights=weights)
    model = Exported(session, shift, scale).eval()
    example = torch.zeros((2,) + tuple(spec.input), dtype=torch.float32)
    torch.onnx.export(model, (example,), str(out), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
