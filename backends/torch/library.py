"""The names torch lowerings (backends/torch/lower.py) refer to, in one namespace to evaluate them in."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from . import activations, bidirectional, conv_layers, layers, losses, optimizers, recurrent, training

# the modules whose top-level definitions a torch expression may name (the emitter copies them from these
# files)
SOURCES = (activations, layers, conv_layers, recurrent, bidirectional, losses, optimizers, training)


def namespace(**extra) -> dict:
    """Every public top-level name of SOURCES, plus torch, F, nn, partial and `extra` (e.g. step=...)."""
    ns = {"torch": torch, "F": F, "nn": nn, "partial": partial}
    for mod in SOURCES:
        ns.update({k: v for k, v in vars(mod).items() if not k.startswith("__")})
    ns.update(extra)
    return ns
