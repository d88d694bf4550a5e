"""Catalogue items no target lowers because dlc computes them itself, in numpy, identically for every target:
the support matrix shows these cells as "shared", with where the computation lives."""

from __future__ import annotations

from dlc.compiler.catalog import REGISTRY as CATALOGUE

from .lowering import REGISTRY, TARGETS

BACKENDS = ("keras", "torch")

# family -> (targets that share dlc's computation, where it lives); the emitted scripts lower the rest
# themselves (backends/emit/lower.py) and copy dlc's functions for metrics
SHARED = {
    "initializer": (BACKENDS, "drawn by dlc in numpy (dlc/reference/weights.py), copied into the "
                              "framework's variables"),
    "schedule": (BACKENDS, "computed per epoch by dlc's loop (dlc/runtime/loop.py) and set as the "
                           "optimizer's lr"),
    "metric": (TARGETS, "computed in numpy (dlc/reference/metrics.py) from statistics the target "
                        "accumulates"),
    "source": (BACKENDS, "read by dlc in numpy (dlc/runtime/data/)"),
    "split": (BACKENDS, "computed by dlc in numpy (dlc/runtime/data/)"),
    "augment": (BACKENDS, "applied by dlc in numpy to each epoch's training images (dlc/runtime/augment.py)"),
}

for _family, (_targets, _how) in SHARED.items():
    REGISTRY.mark_shared(*set(CATALOGUE.get(_family, {}).values()), targets=_targets, how=_how)
