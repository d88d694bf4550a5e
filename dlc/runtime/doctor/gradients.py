"""`dlc doctor RUN --plot`: gradients.png, the per-layer evidence the gradient rules judge, drawn from a
run's evidence.json: each weighted layer's gradient norm per epoch (on the probe set) and its update/weight
ratio per epoch, on log scales, the first layer darkest. A vanishing gradient shows as a fan of lines a
hundred times and more apart, the first layers at the bottom; an exploding one as lines climbing; a healthy
net's lines lie within a factor of a few of each other."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TypeGuard

from dlc.runtime.rundir import drawn_literally, epoch_axis, figure, log_y, matplotlib_config, save_figure

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


def zeros(evidence: dict, key: str = "grad_norm") -> dict[str, int]:
    """How many epochs each layer's `key` was exactly 0 (a log scale has no place for it): {layer: count},
    the layers without a 0 left out."""
    out: dict[str, int] = {}
    for e in evidence.get("epochs") or []:
        for name, stats in ((e.get("layers") or {}) if isinstance(e, dict) else {}).items():
            if isinstance(stats, dict) and stats.get(key) == 0:
                out[name] = out.get(name, 0) + 1
    return out


def _finite_norms(epoch: dict) -> list[tuple[str, float]]:
    """(layer, gradient norm) of the layers with a finite one in an evidence epoch, in the model's order."""
    return [(n, float(g)) for n, st in (epoch.get("layers") or {}).items()
            if isinstance(st, dict) and isinstance(g := st.get("grad_norm"), (int, float))
            and math.isfinite(g)]


def _title(evidence: dict, title: str) -> str:
    """What the figure shows at the last epoch with gradient norms: the last weighted layer's against the
    first's (a zero-gradient layer, which the log scale leaves out, included); the epochs after it, whose
    norms are not finite (a run that diverged), named."""
    epochs = [e for e in evidence.get("epochs") or []
              if isinstance(e, dict) and isinstance(e.get("epoch"), int)]
    known = [e for e in epochs if len(_finite_norms(e)) >= 2]
    if not known:
        return title
    last = known[-1]
    (first, g1), (_, gn) = _finite_norms(last)[0], _finite_norms(last)[-1]
    after = [e["epoch"] for e in epochs if e["epoch"] > last["epoch"]]
    lost = f"; epoch {after[0]}'s are not finite" if len(after) == 1 else \
        f"; epochs {after[0]}-{after[-1]}'s are not finite" if after else ""
    if g1 == 0:
        return f"{title}: at epoch {last['epoch']} no gradient reaches the first layer ({first}: 0){lost}"
    return (f"{title}: at epoch {last['epoch']} the last layer's gradient norm is {gn / g1:.3g}x the "
            f"first's{lost}")


def _zeros_note(evidence: dict) -> str:
    """The layers the log scales could not draw, or drew with gaps: a gradient or update of exactly 0."""
    total = len(evidence.get("epochs") or [])
    found: dict[str, list[str]] = {}
    for key, what in (("grad_norm", "gradient"), ("update_ratio", "update")):
        for name, n in zeros(evidence, key).items():
            found.setdefault(name, []).append(f"{what} 0 in {'every epoch' if n == total else f'{n} epochs'}")
    parts = [f"{name} ({'; '.join(whats)})" for name, whats in found.items()]
    return ("not drawn where 0 (a log scale has no 0): " + ", ".join(parts)) if parts else ""


def plot_gradients(folder: Path, evidence: dict, title: str) -> Path | None:
    """Write folder/gradients.png from `evidence` (evidence.json's content); None when it has no gradient
    norm to draw."""
    data = {key: series(evidence, key) for key, _ in PANELS}
    if not data["grad_norm"]:
        return None
    matplotlib_config()
    import matplotlib

    note = _zeros_note(evidence)
    fig, axes = figure(1, len(PANELS), figsize=(6.4 * len(PANELS), 4.2 + 0.3 * bool(note)))
    cmap = matplotlib.colormaps["viridis"]
    # (a layer whose gradient is always 0 can still have moved: drawn where it has a value, in either panel)
    order = [x.get("name") for x in evidence.get("layers") or [] if isinstance(x, dict)]
    names = [n for n in order if n in data["grad_norm"] or n in data["update_ratio"]]
    colors = {n: cmap(i / max(1, len(names) - 1) * 0.9) for i, n in enumerate(names)}
    # (whole epochs, the same in both panels; a run of one epoch gets its one tick, centred)
    epochs = sorted({x for d in data.values() for xs, _ in d.values() for x in xs})
    for ax, (key, label) in zip(axes[0], PANELS, strict=True):
        for name, (xs, ys) in sorted(data[key].items(), key=lambda t: names.index(t[0])):
            # (a dot per epoch on a short run, and on a series of one or two points a line alone hides)
            ax.plot(xs, ys, marker="o" if len(epochs) <= 30 or len(xs) < 3 else None, markersize=3,
                    color=colors[name], label=name)
        log_y(ax, [v for _, ys in data[key].values() for v in ys])
        ax.set_title(label)
        epoch_axis(ax, epochs)
        ax.grid(alpha=0.3, which="both")
    fig.legend(_handles(names, colors, dots=len(epochs) <= 30), names, loc="center right", fontsize=8,
               title="layer", title_fontsize=8)
    fig.suptitle(drawn_literally(_title(evidence, title)), fontsize=11)
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, color="dimgray")
    bottom = 0.3 / (4.2 + 0.3) if note else 0.0
    fig.tight_layout(rect=(0.0, bottom, 0.9, 1.0))  # the legend on the right, outside the panels
    return save_figure(fig, folder / PLOT)


def _handles(names: list[str], colors: dict, dots: bool) -> list:
    """A legend line per layer, the layers of either panel, with a dot when the lines have them."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=colors[n], marker="o" if dots else None, markersize=3) for n in names]
