"""`dlc doctor RUN --plot`: gradients.png, the per-layer evidence the gradient rules judge, drawn from a
run's evidence.json: each weighted layer's gradient norm per epoch (on the probe set) and its update/weight
ratio per epoch, on log scales, the first layer darkest. A vanishing gradient shows as a fan of lines a
hundred times and more apart, the first layers at the bottom; an exploding one as lines climbing; a healthy
net's lines lie within a factor of a few of each other."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TypeGuard

from dlc.runtime.rundir import epoch_axis, figure, matplotlib_config, save_figure

PLOT = "gradients.png"
PANELS = (("grad_norm", "gradient norm (probe set)"), ("update_ratio", "update / weight norm over the epoch"))


def _finite(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def series(evidence: dict, key: str) -> dict[str, tuple[list[int], list[float]]]:
    """Each layer's positive finite `key` per epoch: {layer: (epochs, values)}, in the model's order, the
    layers without any left out."""
    epochs = [e for e in evidence.get("epochs") or []
              if isinstance(e, dict) and isinstance(e.get("epoch"), int)]
    out: dict[str, tuple[list[int], list[float]]] = {}
    for layer in evidence.get("layers") or []:
        name = layer.get("name") if isinstance(layer, dict) else None
        if not isinstance(name, str):
            continue
        pts = [(e["epoch"], float(v)) for e in epochs
               if _finite(v := ((e.get("layers") or {}).get(name) or {}).get(key))]
        if pts:
            out[name] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def plot_gradients(folder: Path, evidence: dict, title: str) -> Path | None:
    """Write folder/gradients.png from `evidence` (evidence.json's content); None when it has no gradient
    norm to draw."""
    grads = series(evidence, "grad_norm")
    if not grads:
        return None
    matplotlib_config()
    import matplotlib
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = figure(1, len(PANELS), figsize=(6.4 * len(PANELS), 4.2))
    cmap = matplotlib.colormaps["viridis"]
    names = list(grads)
    colors = {n: cmap(i / max(1, len(names) - 1) * 0.9) for i, n in enumerate(names)}
    for ax, (key, label) in zip(axes[0], PANELS, strict=True):
        data = grads if key == "grad_norm" else series(evidence, key)
        for name in names:
            if name not in data:
                continue
            xs, ys = data[name]
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, color=colors[name],
                    label=name)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(label)
        # (whole epochs; a run of one epoch gets its one tick, centred, not 0.945 to 1.050)
        epoch_axis(ax, sorted({x for name in names if name in data for x in data[name][0]}))
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="layer", title_fontsize=8)
    first, last = names[0], names[-1]
    g1, gn = grads[first][1][-1], grads[last][1][-1]
    fig.suptitle(f"{title}: at epoch {grads[first][0][-1]} the last layer's gradient norm is "
                 f"{gn / g1:.3g}x the first's", fontsize=11)
    fig.tight_layout(rect=(0.0, 0.0, 0.9, 1.0))  # the legend on the right, outside the panels
    return save_figure(fig, folder / PLOT)
