"""The `dlc check` summary: layer, output shape, parameter count, totals (counted as Keras counts them)."""

from __future__ import annotations

import math

from .spec import Spec


def summary_rows(spec: Spec) -> list[tuple[str, str, str, int]]:
    rows = [("input", "Input", str((None,) + tuple(spec.input)), 0)]
    for info in spec.walk():
        n = sum(math.prod(w.shape) for w in info.weights)
        label = "  " * info.depth + info.layer.name
        out = (None,) + tuple(info.out_shape)
        rows.append((label, info.layer.kind, str(out), n))
    return rows


def summary_text(spec: Spec) -> str:
    rows = summary_rows(spec)
    w0 = max(len(r[0]) for r in rows + [("Layer", "", "", 0)])
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows + [("", "", "Output shape", 0)])
    lines = [f"model {spec.name}", f"{'Layer':<{w0}}  {'Type':<{w1}}  {'Output shape':<{w2}}  {'Params':>10}"]
    lines.append("-" * len(lines[-1]))
    for name, kind, out, n in rows:
        lines.append(f"{name:<{w0}}  {kind:<{w1}}  {out:<{w2}}  {n:>10,}")
    t, nt = spec.param_counts()
    lines.append("-" * len(lines[1]))
    lines.append(f"Total params: {t + nt:,}  (trainable: {t:,}, non-trainable: {nt:,})")
    return "\n".join(lines)
