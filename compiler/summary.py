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


def search_text(compiled) -> str | None:
    """What `dlc tune` will search, under the model's table (which shows every space at its first value):
    the method, trials and objective, each parameter with its space, and how many points a finite space or a
    grid has (a search never trains one twice: fewer trials than asked when it has fewer). None without a
    search."""
    from .search import grid_points, shown_storage, space_size, spaces_of

    spec = compiled.spec
    if spec is None or spec.search is None or not spec.search_spaces:
        return None
    search, spaces = spec.search, spaces_of(compiled)
    objective = f"{search.objective.direction} {search.objective.metric}"
    prune = ", median pruning" if search.prune == "median" else ""
    trials = f"{search.trials} trial{'s' * (search.trials != 1)}"
    storage = f"; its study in {shown_storage(search.storage)}" if search.storage else ""
    lines = ["", f"search: {search.method}, {trials}, {objective}{prune}{storage}"]
    width = max(len(sp.name) for sp in spaces)
    lines += [f"  {sp.name:<{width}}  {sp.brief()}" for sp in spaces]
    size = math.prod(len(grid_points(sp)) for sp in spaces) if search.method == "grid" else space_size(spaces)
    if size is not None:
        what = "a grid of" if search.method == "grid" else "a space of"
        runs = f"{size} trial{'s' * (size != 1)} run, each point once" if size <= search.trials else \
            f"the first {search.trials} run" if search.method == "grid" else \
            f"{search.trials} of them are tried"
        lines.append(f"  {what} {size:,} point{'s' * (size != 1)}: {runs}")
    lines.append("  (the model above: each space at its first value)")
    return "\n".join(lines)
