"""Short reprs of what the API returns: a notebook shows the repr of a cell's last value, and a dataclass's
own repr printed every array element and every epoch's row (a `Finished` of iris: 14,000 characters). Each
returned object's repr is a line or two saying what it holds; its fields are unchanged."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from dlc.reference.callbacks import monitor_mode

# what a history row holds besides the loss and the metrics
_NOT_METRICS = ("epoch", "lr", "time_s", "samples_per_s")


def number(value: Any) -> str:
    """A metric as a reader takes it in: 4 significant digits ("nan" and "inf" as they are)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    return f"{value:.4g}" if math.isfinite(value) else str(float(value))


def shape(a: Any) -> str:
    """An array's shape and dtype, "90×4 float64"; "?" for what has neither."""
    dims = getattr(a, "shape", None)
    if dims is None:
        return "?"
    text = "×".join(str(d) for d in dims) or "scalar"
    dtype = getattr(a, "dtype", None)
    return f"{text} {dtype}" if dtype is not None else text


def clipped(text: str, most: int = 100) -> str:
    """One line of at most `most` characters (a failure's message may be long, or several lines)."""
    line = " ".join(str(text).split())
    return line if len(line) <= most else line[:most - 1] + "…"


def metric_names(rows: Sequence[dict]) -> list[str]:
    """The loss and metrics a history's rows hold, in the rows' order."""
    return [k for k in rows[0] if k not in _NOT_METRICS] if rows else []


def best_of(rows: Sequence[dict], name: str) -> tuple[float, int] | None:
    """The best finite value of `name` over the rows (highest for accuracy-like metrics, as Keras' "auto"
    monitor mode) and its epoch; None when no row has one."""
    seen = [(float(r[name]), int(r.get("epoch", i + 1))) for i, r in enumerate(rows)
            if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
    if not seen:
        return None
    pick = max if monitor_mode("auto", name) == "max" else min
    return pick(seen, key=lambda v: v[0])


def history_line(rows: Sequence[dict], steps: int = 0) -> str:
    """What a history says in a line: its length, the loss from the first epoch to the last, and the best
    epoch of the validation loss and of one other validation metric (of one training metric when there is no
    validation)."""
    if not rows:
        return "no epochs"
    n = len(rows)
    parts = [f"{n} epoch{'s' * (n != 1)}" + (f", {steps} steps" if steps else "")]
    names = metric_names(rows)
    if "loss" in names:
        parts.append(f"loss {number(rows[0].get('loss'))}→{number(rows[-1].get('loss'))}")
    val = [k for k in names if k.startswith("val_")]
    shown = ([k for k in val if k == "val_loss"] + [k for k in val if k != "val_loss"][:1]) if val else \
        [k for k in names if k != "loss"][:1]
    for name in shown:
        best = best_of(rows, name)
        if best is not None:
            parts.append(f"{name} best {number(best[0])} at epoch {best[1]}")
    return ", ".join(parts)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    """A small HTML table (`_repr_html_`), every cell escaped."""
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in values)

    head = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table>{head}<thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"
