"""The run directory: the spec, ir.json, history.csv/json, curves.png, metrics.json, env.json, the model."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path


def new_run_dir(spec_name: str, backend: str, out: str | None, root: str = "runs") -> Path:
    if out:
        p = Path(out)
        p.mkdir(parents=True, exist_ok=True)
        return p
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{spec_name}-{backend}-{stamp}"
    p, i = base, 1
    while p.exists():
        i += 1
        p = Path(f"{base}-{i}")
    p.mkdir(parents=True)
    return p


def write_json(path: Path, obj) -> None:
    """Atomic: write a temporary file, then rename it over the target."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)


def write_history(run: Path, rows: list[dict]) -> None:
    write_json(run / "history.json", rows)
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = run / "history.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, run / "history.csv")


def copy_spec(run: Path, spec_path: str) -> None:
    shutil.copyfile(spec_path, run / Path(spec_path).name)


def env_info(backend: str, device: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        dlc_version = version("dlc")
    except PackageNotFoundError:  # running from a source tree that is not installed
        dlc_version = None
    info = {"dlc": dlc_version, "python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "backend": backend, "device": device}
    for mod in ("torch", "tensorflow", "keras", "numpy"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", None)
    return info


def run_info(args, spec, data) -> dict:
    """What `dlc evaluate`, `dlc predict` and `--resume` need to rebuild the run: where the spec and its data
    live, the backend, and the input preprocessing fitted on the training part."""
    spec_path = Path(args.spec).resolve()
    return {"spec": str(spec_path), "spec_dir": str(spec_path.parent), "backend": args.backend,
            "device": getattr(args, "device", "auto"), "dtype": spec.dtype, "seed": spec.seed,
            "input": list(spec.input), "num_classes": data.num_classes, "normalize": spec.data.normalize,
            "preprocessing": data.preprocessing(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def plot_curves(run: Path, rows: list[dict], title: str, best_epoch: int | None = None) -> None:
    """curves.png: one panel for the loss and one per metric, train vs validation against epochs, and a panel
    for the learning rate; a dotted line marks the best epoch when early stopping kept one."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    skip = {"epoch", "lr", "time_s", "samples_per_s"}
    bases = [k for k in rows[0] if k not in skip and not k.startswith("val_")]
    panels = bases + ["lr"]
    ncols = 2 if len(panels) == 4 else min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    marker = "o" if len(rows) <= 30 else None
    for ax, key in zip(axes.flat, panels, strict=False):  # the grid may have more cells than panels
        if key == "lr":
            _plot_lr(ax, epochs, [r["lr"] for r in rows], marker)
        else:
            _plot_metric(ax, key, rows, epochs, marker)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=1.2,
                       label=f"best epoch ({best_epoch})" if key != "lr" else None)
        if key == panels[0]:
            ax.legend(fontsize="small")  # the same colours in every panel
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=100)
    plt.close(fig)


def _plain_ticks():
    """Tick labels without scientific notation: 12,345 or 0.01234."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}")


def _log_y(ax) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(_plain_ticks())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _plot_lr(ax, epochs: list[int], lrs: list[float], marker: str | None) -> None:
    """The learning rate per epoch as steps; a log scale when it spans more than a factor of 10."""
    ax.step(epochs, lrs, where="mid", color="tab:gray")
    if marker:
        ax.plot(epochs, lrs, marker, color="tab:gray", markersize=3)
    if min(lrs) > 0 and max(lrs) / min(lrs) > 10:
        _log_y(ax)
    else:
        ax.yaxis.set_major_formatter(_plain_ticks())
        lo, hi = min(lrs), max(lrs)
        pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
        ax.set_ylim(max(lo - pad, 0) if lo >= 0 else lo - pad, hi + pad)
        if hi == lo:
            ax.set_yticks([lo])
    ax.set_title("learning rate")


def _plot_metric(ax, key: str, rows: list[dict], epochs: list[int], marker: str | None) -> None:
    """A quantity on the training part and, when the rows have it, on the validation part; the loss on a log
    scale when it spans more than a factor of 10."""
    train = [r.get(key) for r in rows]
    val = [r.get(f"val_{key}") for r in rows] if f"val_{key}" in rows[0] else None
    ax.plot(epochs, train, label="train", color="tab:blue", marker=marker, markersize=3)
    if val is not None:
        ax.plot(epochs, val, label="validation", color="tab:orange", marker=marker, markersize=3)
    values = [v for v in train + (val or []) if v is not None and math.isfinite(v)]
    if key == "loss" and values and min(values) > 0 and max(values) / min(values) > 10:
        _log_y(ax)
    ax.set_title(key)
