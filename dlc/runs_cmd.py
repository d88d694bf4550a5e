"""`dlc runs` lists run directories; `dlc plot` overlays the curves of several runs in one PNG."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dlc.cli import EXIT_RUNTIME


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
        "run": str(run), "spec": ir.get("name", "?"), "backend": env.get("backend") or (cv or {}).get("backend", "?"),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.stat().st_mtime)),
        "epochs": len(hist) if hist else (len((cv or {}).get("folds", [])) and "cv"),
        "final": final, "status": "done" if (metrics or cv) else "incomplete",
    }


def cmd_runs(args) -> int:
    from rich.console import Console
    from rich.table import Table

    root = Path(args.dir)
    if not root.exists():
        print(f"dlc: error: no such folder '{root}'", file=sys.stderr)
        return EXIT_RUNTIME
    runs = [describe(r) for r in find_runs(root)]
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    table = Table(title=f"runs in {root}")
    for col in ("run", "spec", "backend", "date", "epochs", "final metrics", "status"):
        table.add_column(col, no_wrap=True)
    for r in runs:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in r["final"].items() if isinstance(v, (int, float)))
        table.add_row(Path(r["run"]).name, r["spec"], r["backend"], r["date"], str(r["epochs"]), shown, r["status"])
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    return 0


def cmd_plot(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for p in args.runs:
        hist = _load(Path(p), "history.json")
        if not hist:
            print(f"dlc: error: '{p}' is not a run directory (no history.json)", file=sys.stderr)
            return EXIT_RUNTIME
        runs.append((Path(p), hist))
    skip = {"epoch", "lr", "time_s", "samples_per_s"}
    keys = [k for k in runs[0][1][0] if k not in skip and not k.startswith("val_")]
    keys = [k for k in keys if all(k in h[0] for _, h in runs)] + ["lr"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = _labels([p for p, _ in runs])
    for i, ((path, hist), label) in enumerate(zip(runs, labels)):
        c = colors[i % len(colors)]
        ep = [r["epoch"] for r in hist]
        for ax, key in zip(axes[0], keys):
            if key == "lr":
                ax.plot(ep, [r["lr"] for r in hist], color=c, label=label)
                ax.set_yscale("log")
                continue
            ax.plot(ep, [r[key] for r in hist], color=c, label=f"{label} train")
            if f"val_{key}" in hist[0]:
                ax.plot(ep, [r[f"val_{key}"] for r in hist], color=c, linestyle="--", label=f"{label} val")
    for ax, key in zip(axes[0], keys):
        ax.set_title("learning rate" if key == "lr" else key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(out)
    return 0


def _labels(paths: list[Path]) -> list[str]:
    """Short distinct labels: the run folder names."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]
