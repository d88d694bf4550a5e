"""Run directories after the fact: find them under a folder, describe each (spec, backend, date, epochs, final
metrics), and overlay the curves of several in one PNG (`dlc runs`, `dlc plot`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

PLOT_SKIP = {"epoch", "lr", "time_s", "samples_per_s"}


class RunDirError(Exception):
    """A folder that is not a run directory (or not one the command can use): one line, exit 1."""


def _load(path: Path, name: str):
    try:
        return json.loads((path / name).read_text())
    except (OSError, ValueError):
        return None


def find_runs(root: Path) -> list[Path]:
    """Run directories under root (root itself if it is one): those holding history.json or cv.json."""
    if (root / "history.json").is_file() or (root / "cv.json").is_file():
        return [root]
    found = {p.parent for pat in ("*/history.json", "*/cv.json", "*/*/history.json") for p in root.glob(pat)}
    found = {p for p in found if not p.name.startswith("fold_") and not p.name.startswith("trial_")}
    return sorted(found, key=lambda p: p.stat().st_mtime)


def describe(run: Path) -> dict:
    ir = _load(run, "ir.json") or {}
    env = _load(run, "env.json") or {}
    hist = _load(run, "history.json") or []
    metrics = _load(run, "metrics.json") or {}
    cv = _load(run, "cv.json")
    final = metrics.get("test") or metrics.get("val") or metrics.get("train") or {}
    if cv:
        final = {f"cv_{k}": v for k, v in cv.get("mean", {}).items()}
    return {
        "run": str(run), "spec": ir.get("name", "?"),
        "backend": env.get("backend") or (cv or {}).get("backend", "?"),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.stat().st_mtime)),
        "epochs": len(hist) if hist else (len((cv or {}).get("folds", [])) and "cv"),
        "final": final, "status": "done" if (metrics or cv) else "incomplete",
    }


def list_runs(root: str | Path) -> list[dict]:
    """describe() of every run directory under root, oldest first."""
    root = Path(root)
    if not root.exists():
        raise RunDirError(f"no such folder '{root}'")
    return [describe(r) for r in find_runs(root)]


def histories(paths: Sequence[str | Path]) -> list[tuple[Path, list[dict]]]:
    """(run, history rows) of each run directory; RunDirError for one without a history."""
    runs = []
    for p in paths:
        hist = _load(Path(p), "history.json")
        if not hist:
            raise RunDirError(f"'{p}' is not a run directory (no history.json)")
        runs.append((Path(p), hist))
    return runs


def plot_runs(paths: Sequence[str | Path], out: str | Path) -> Path:
    """One PNG: a panel per quantity every run has (train solid, validation dashed) and the learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = histories(paths)
    keys = [k for k in runs[0][1][0] if k not in PLOT_SKIP and not k.startswith("val_")]
    keys = [k for k in keys if all(k in h[0] for _, h in runs)] + ["lr"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ((_, hist), label) in enumerate(zip(runs, _labels([p for p, _ in runs]), strict=True)):
        _plot_run(axes[0], keys, hist, label, colors[i % len(colors)])
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_title("learning rate" if key == "lr" else key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_run(axes, keys: list[str], hist: list[dict], label: str, color) -> None:
    ep = [r["epoch"] for r in hist]
    for ax, key in zip(axes, keys, strict=True):
        if key == "lr":
            ax.plot(ep, [r["lr"] for r in hist], color=color, label=label)
            ax.set_yscale("log")
            continue
        ax.plot(ep, [r[key] for r in hist], color=color, label=f"{label} train")
        if f"val_{key}" in hist[0]:
            ax.plot(ep, [r[f"val_{key}"] for r in hist], color=color, linestyle="--", label=f"{label} val")


def _labels(paths: list[Path]) -> list[str]:
    """Short distinct labels: the run folder names."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]
