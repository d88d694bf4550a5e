"""The run directory: the spec as given, ir.json, history.csv/json, curves.png, metrics.json, env.json, model."""

from __future__ import annotations

import csv
import json
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
    import dlc

    info = {"dlc": dlc.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "backend": backend, "device": device}
    for mod in ("torch", "tensorflow", "keras", "numpy"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", None)
    return info


def plot_curves(run: Path, rows: list[dict], title: str) -> None:
    """Train vs validation loss, each metric, and the learning rate, against epochs."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = {"epoch", "lr", "time_s", "samples_per_s"}
    bases = [k for k in rows[0] if k not in skip and not k.startswith("val_")]
    panels = bases + ["lr"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, key in zip(axes[0], panels):
        if key == "lr":
            ax.plot(epochs, [r["lr"] for r in rows], color="tab:gray")
            ax.set_yscale("log")
            ax.set_title("learning rate")
        else:
            ax.plot(epochs, [r.get(key) for r in rows], label="train", marker="." if len(rows) < 30 else None)
            if f"val_{key}" in rows[0]:
                ax.plot(epochs, [r.get(f"val_{key}") for r in rows], label="validation",
                        marker="." if len(rows) < 30 else None)
            ax.set_title(key)
            ax.legend()
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=110)
    plt.close(fig)
