"""The network of a spec as one expression, for any target whose model is a tree of named layers."""

from __future__ import annotations

from dataclasses import replace

from dlc.compiler.checkshared import fused_output

from .lowering import Call, Context, ref


def network_expr(spec, target: str, container: str = "Sequential") -> Call:
    """`container(name=layer, ...)`, a residual's body as keyword arguments of its own call; the last layer's
    activation is left to the loss when the output is fused (compiler.checkshared.fused_output)."""
    ctx = Context(target, spec)
    infos = list(spec.walk())
    last = spec.layers[-1].name
    fused = fused_output(spec) is not None
    pos = 0

    def build(depth: int) -> tuple:
        nonlocal pos
        named = []
        while pos < len(infos) and infos[pos].depth >= depth:
            info = infos[pos]
            pos += 1
            expr = ctx.for_layer(info, fused and info.layer.name == last).lower(info.layer)
            if info.layer.kind == "Residual":
                expr = replace(expr, kwargs=expr.kwargs + build(depth + 1))
            named.append((info.layer.name, expr))
        return tuple(named)

    return Call(ref(container), (), build(0))
