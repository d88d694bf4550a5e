"""Functions that must run eagerly under torch.compile (a graph break), because inductor would change what
they compute (the order of additions dlc reproduces) or fails on them (a tied convolution's backward beside
an Embedding's sparse gradient). `torch.compiler.disable` imports torch._dynamo, 1.2 s of every torch run's
start although only `dlc run --compile` compiles; so such a function is registered here as it is defined, and
its module's name for it is rebound to the disabled form (`disable_registered`) before a step is compiled."""

from __future__ import annotations

from collections.abc import Callable

import torch

_REGISTERED: list[tuple[dict, str]] = []  # (the defining module's namespace, the function's name)


def eager_under_compile(fn: Callable) -> Callable:
    """Register `fn` to run eagerly once a step is compiled; until then it is `fn` itself."""
    _REGISTERED.append((fn.__globals__, fn.__name__))
    return fn


def disable_registered() -> None:
    """Rebind every function registered so far to `torch.compiler.disable` of it (each once: it leaves the
    register): the callers look the name up when they run, so a compiled step traces a graph break there."""
    while _REGISTERED:
        namespace, name = _REGISTERED.pop()
        namespace[name] = torch.compiler.disable(namespace[name])
