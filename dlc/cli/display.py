"""What `dlc run` shows while it trains: a table with one row per epoch, a progress bar over the steps of the
current epoch (on a terminal only), and the summary at the end. Written with rich on stderr; stdout gets only
the run directory."""

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import TaskID


def fmt_value(v: float | None) -> str:
    """A number in at most 8 characters, with about 4 significant digits."""
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 1e6 or (0 < a < 1e-3):
        return f"{v:.2e}"
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    return f"{v:.4f}"


def fmt_lr(lr: float) -> str:
    return f"{lr:.3g}"


class EpochTable:
    """One compact row per epoch under a two-line header, fitted to the console width:

        epoch       loss           accuracy         recall           lr   time
                train     val     train     val    train     val
         1/20    1.8788  0.8643*   0.4448  0.8278   0.4437  0.8279   0.001   0.6s

    Train and validation sit side by side under each quantity; a '*' follows the monitored value (early
    stopping's, else val_loss) in each epoch that improved it. When the line would be wider than the console,
    the time column goes first, then the train values of the metrics (the validation ones stay), then metrics
    from the right; history.csv has everything."""

    SEP = "  "
    W = 7  # one number

    def __init__(self, console, spec, has_val: bool):
        from dlc.api import improved, monitor_mode

        self.console = console
        self.total = spec.train.epochs
        self.ew = max(len("epoch"), 2 * len(str(self.total)) + 1)
        self.has_val = has_val
        es = spec.train.early_stopping
        self.monitor = es.monitor if es is not None else ("val_loss" if has_val else "loss")
        if es is not None:
            self.better = lambda cur, best: improved(cur, best, monitor_mode(es.mode, es.monitor),
                                                     es.min_delta)
        else:
            self.better = lambda cur, best: cur < best
        self.best: float | None = None
        self.prev_lr: float | None = None
        # columns: (key in the row, group name); a group is one quantity, with its train and val columns
        self.groups: list[list[str]] = []
        for name in ["loss"] + [m.name for m in spec.metrics]:
            self.groups.append([name, "val_" + name] if has_val else [name])
        self.show_time = True
        while self.width() > console.width:
            if self.show_time:
                self.show_time = False
            elif any(len(g) == 2 for g in self.groups[1:]):
                i = max(i for i, g in enumerate(self.groups) if len(g) == 2 and i > 0)
                self.groups[i] = self.groups[i][1:]
            elif len(self.groups) > 1:
                self.groups.pop()
            else:
                break

    def cell_width(self, key: str) -> int:
        return self.W + (1 if key == self.monitor else 0)

    @staticmethod
    def name(keys: list[str]) -> str:
        return keys[0].removeprefix("val_")

    def group_width(self, keys: list[str]) -> int:
        return max(sum(self.cell_width(k) for k in keys) + len(keys) - 1, len(self.name(keys)))

    def width(self) -> int:
        w = self.ew + sum(len(self.SEP) + self.group_width(g) for g in self.groups) + len(self.SEP) + self.W
        return w + (self.W if self.show_time else 0)

    def _cells(self, keys: list[str], texts: list[str]) -> str:
        w = self.group_width(keys)
        inner = " ".join(t.rjust(self.cell_width(k)) if k != self.monitor else t.rjust(self.W) + " "
                         for k, t in zip(keys, texts, strict=True))
        return self.SEP + inner.rjust(w)

    def header(self):
        top = "epoch".rjust(self.ew)
        sub = " " * self.ew
        for g in self.groups:
            w = self.group_width(g)
            top += self.SEP + (self.name(g).center(w) if len(g) == 2 else self.name(g).rjust(w))
            sub += self._cells(g, ["val" if k.startswith("val_") else "train" for k in g])
        top += self.SEP + "lr".rjust(self.W) + ("time".rjust(self.W) if self.show_time else "")
        self.console.print(f"[bold]{top}[/]", soft_wrap=True)
        if self.has_val:
            self.console.print(f"[dim]{sub.rstrip()}[/]", soft_wrap=True)

    def row(self, row: dict):
        from rich.markup import escape

        improved = False
        cur = row.get(self.monitor)
        if cur is not None and (self.best is None or self.better(cur, self.best)):
            self.best, improved = cur, True
        line = escape(f"{row['epoch']}/{self.total}".rjust(self.ew))
        for g in self.groups:
            texts = []
            for k in g:
                t = escape(fmt_value(row.get(k)).rjust(self.W))
                if k.startswith("val_"):
                    t = f"[cyan]{t}[/]"
                if k == self.monitor:
                    t += "*" if improved else " "
                texts.append(t)
            line += self.SEP + " ".join(texts).rjust(self.group_width(g))  # markup: widths fixed by the cells
        lr = row["lr"]
        lr_text = fmt_lr(lr).rjust(self.W)
        changed = self.prev_lr is not None and lr != self.prev_lr
        self.prev_lr = lr
        line += self.SEP + (f"[yellow]{lr_text}[/]" if changed else lr_text)
        if self.show_time:
            t = row["time_s"]
            line += (f"{t:.1f}s" if t < 100 else f"{t:.0f}s").rjust(self.W)
        self.console.print(line, soft_wrap=True)


def run_summary(console, spec, hist, final: dict):
    """How training ended, its speed, and a small table of the final metrics (the test row last)."""
    es = spec.train.early_stopping
    if hist.stopped_early:
        console.print(f"stopped early after epoch {len(hist.rows)}: {es.monitor} did not improve for "
                      f"{es.patience} epochs")
    if hist.restored_best and hist.best_epoch != len(hist.rows):
        console.print(f"restored the weights of epoch {hist.best_epoch} (best {es.monitor})")
    secs = sum(r["time_s"] for r in hist.rows)
    samples = sum(r["time_s"] * r["samples_per_s"] for r in hist.rows
                  if r["samples_per_s"] == r["samples_per_s"])
    speed = f" ({samples / secs:,.0f} samples/s)" if secs > 0 else ""
    console.print(f"[dim]trained {len(hist.rows)} epochs in {secs:.1f} s{speed}[/]")
    parts = [p for p in ("train", "val", "test") if p in final]
    keys = list(final[parts[0]])
    widths = [max(8, len(k)) for k in keys]
    header = "final".ljust(6) + "".join("  " + k.rjust(w) for k, w in zip(keys, widths, strict=True))
    console.print(f"[bold]{header}[/]")
    for p in parts:
        line = p.ljust(6) + "".join("  " + fmt_value(final[p].get(k)).rjust(w)
                                    for k, w in zip(keys, widths, strict=True))
        console.print(f"[bold green]{line}[/]" if p == parts[-1] else line, soft_wrap=True)


class Progress:
    """A rich progress bar over the steps of the current epoch (refreshed a few times a second); nothing when
    the console is not a terminal (a log file gets the epoch rows only)."""

    def __init__(self, console, epochs: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = console.is_terminal and not console.quiet
        self.p = Progress(TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
                          MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(), console=console,
                          transient=True)
        self.task: TaskID | None = None

    def __enter__(self):
        if self.enabled:
            self.p.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            return self.p.__exit__(*exc)
        return None

    def __call__(self, epoch: int, done: int, total: int):
        if not self.enabled:
            return
        if self.task is None:
            self.task = self.p.add_task("train", total=total, epoch=epoch + 1)
        self.p.update(self.task, completed=done, total=total, epoch=epoch + 1)
