"""What `dlc run` shows while it trains: a table with one row per epoch, a progress bar over the steps of the
current epoch (on a terminal only) with the running loss and metrics, and the summary at the end. Written with
rich on stderr; stdout gets only the run directory. The same lines, as plain text and with every column, go to
the run directory's log.txt (no colours, no progress bar)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from rich.progress import ProgressColumn
from rich.text import Text

if TYPE_CHECKING:
    from rich.progress import TaskID

W = 7  # the width of one number in the epoch table


def _fit(text: str, width: int) -> bool:
    return len(text) <= width


def fmt_value(v: float | None, width: int = W) -> str:
    """A number in at most `width` characters (7), with about 4 significant digits: nan, inf and -inf as
    they are, very large or small ones in a short scientific form (1.2e+06 → 1.2e6)."""
    if v is None:
        return "-"
    v = float(v)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    a = abs(v)
    if a == 0 or 1e-3 <= a < 1e6:
        text = f"{v:.{4 if a < 10 else 2 if a < 100 else 1 if a < 1000 else 0}f}"
        if _fit(text, width):
            return text
    for digits in (2, 1, 0):
        mant, exp = f"{v:.{digits}e}".split("e")
        text = f"{mant}e{int(exp)}"
        if _fit(text, width):
            return text
    return text


def fmt_lr(lr: float) -> str:
    """A learning rate in at most 7 characters: 0.001, 5e-05 → 5e-5, 0.000123 → 1.23e-4."""
    text = f"{lr:.3g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text if _fit(text, W) else fmt_value(lr)


def fmt_duration(s: float) -> str:
    """12ms, 1.4s, 2m05s, 1h02m."""
    if s < 0.9995:
        return f"{s * 1000:.0f}ms"
    if s < 59.95:
        return f"{s:.1f}s"
    whole = round(s)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    whole = round(s / 60)
    return f"{whole // 60}h{whole % 60:02d}m"


def fmt_pace(s: float) -> str:
    """The time of one step, as Keras prints it: 25ms/step, 310us/step, 1.2s/step."""
    if s < 1e-3:
        return f"{s * 1e6:.0f}us/step"
    if s < 1:
        return f"{s * 1000:.0f}ms/step"
    return f"{s:.1f}s/step"


def plain(markup: str) -> str:
    """The text of a line of rich markup, without its styles."""
    return Text.from_markup(markup).plain


class EpochTable:
    """One compact row per epoch under a two-line header, fitted to `width` (None: every column):

        epoch       loss           accuracy         recall           lr   time
                train     val     train     val    train     val
         1/20    1.8788  0.8643*   0.4448  0.8278   0.4437  0.8279   0.001  640ms

    Train and validation sit side by side under each quantity; a '*' follows the monitored value (early
    stopping's, else val_loss) in each epoch that improved it (the footnote says so). When the line would be
    wider than `width`, the time column goes first, then the train values of the metrics (the validation ones
    stay), then metrics from the right; history.csv and log.txt have everything. Every cell is W characters
    (numbers never overflow it: see fmt_value), so columns stay aligned. The methods return lines of rich
    markup."""

    SEP = "  "

    def __init__(self, spec, has_val: bool, width: int | None = None):
        from dlc.api import improved, monitor_mode

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
        self.marked = False  # a '*' was shown
        self.prev_lr: float | None = None
        # a group is one quantity, with its train and val columns (keys in the row)
        self.groups: list[list[str]] = []
        for name in ["loss"] + [m.name for m in spec.metrics]:
            self.groups.append([name, "val_" + name] if has_val else [name])
        self.show_time = True
        while width is not None and self.width() > width:
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
        return W + (1 if key == self.monitor else 0)

    @staticmethod
    def name(keys: list[str]) -> str:
        return keys[0].removeprefix("val_")

    def group_width(self, keys: list[str]) -> int:
        return max(sum(self.cell_width(k) for k in keys) + len(keys) - 1, len(self.name(keys)))

    def width(self) -> int:
        w = self.ew + sum(len(self.SEP) + self.group_width(g) for g in self.groups) + len(self.SEP) + W
        return w + (len(self.SEP) + W if self.show_time else 0)

    def _cells(self, keys: list[str], texts: list[str]) -> str:
        w = self.group_width(keys)
        inner = " ".join(t.rjust(self.cell_width(k)) if k != self.monitor else t.rjust(W) + " "
                         for k, t in zip(keys, texts, strict=True))
        return self.SEP + inner.rjust(w)

    def header(self) -> list[str]:
        top = "epoch".rjust(self.ew)
        sub = " " * self.ew
        for g in self.groups:
            w = self.group_width(g)
            top += self.SEP + (self.name(g).center(w) if len(g) == 2 else self.name(g).rjust(w))
            sub += self._cells(g, ["val" if k.startswith("val_") else "train" for k in g])
        top += self.SEP + "lr".rjust(W) + (self.SEP + "time".rjust(W) if self.show_time else "")
        lines = [f"[bold]{top}[/]"]
        if self.has_val:
            lines.append(f"[dim]{sub.rstrip()}[/]")
        return lines

    def seed(self, rows: list[dict]) -> None:
        """The epochs before this display (a resumed run): the best so far and the last lr."""
        for row in rows:
            self._improved(row)
            self.prev_lr = row.get("lr")

    def _improved(self, row: dict) -> bool:
        cur = row.get(self.monitor)
        if cur is not None and math.isfinite(cur) and (self.best is None or self.better(cur, self.best)):
            self.best = cur
            return True
        return False

    def row(self, row: dict, seconds: float | None = None) -> str:
        """The line of one epoch; `seconds`: its wall-clock time (default: the history's time_s)."""
        from rich.markup import escape

        improved = self._improved(row)
        self.marked |= improved and any(self.monitor in g for g in self.groups)
        line = escape(f"{row['epoch']}/{self.total}".rjust(self.ew))
        for g in self.groups:
            texts = []
            for k in g:
                t = escape(fmt_value(row.get(k)).rjust(W))
                if k.startswith("val_"):
                    t = f"[cyan]{t}[/]"
                if k == self.monitor:
                    t += "*" if improved else " "
                texts.append(t)
            line += self.SEP + " " * max(0, self.group_width(g) - sum(self.cell_width(k) for k in g)
                                         - len(g) + 1) + " ".join(texts)
        lr = row["lr"]
        lr_text = fmt_lr(lr).rjust(W)
        changed = self.prev_lr is not None and lr != self.prev_lr
        self.prev_lr = lr
        line += self.SEP + (f"[yellow]{lr_text}[/]" if changed else lr_text)
        if self.show_time:
            line += self.SEP + fmt_duration(row["time_s"] if seconds is None else seconds).rjust(W)
        return line

    def footnote(self) -> str | None:
        """What the '*' means, once one was shown."""
        return f"[dim]* best epoch so far (monitored: {self.monitor})[/]" if self.marked else None


def summary_lines(spec, hist, final: dict, seconds: float | None = None) -> list[str]:
    """How training ended, its time and speed, and a small table of the final metrics (the test row last),
    as lines of rich markup. `seconds`: the wall-clock time of the epochs (default: the history's)."""
    lines = []
    es = spec.train.early_stopping
    if hist.stopped_early:
        # (it stops once `patience` epochs in a row did not improve, and never before one did not: patience=0
        # stops at the first epoch without improvement, as Keras' EarlyStopping does)
        waited = max(es.patience, 1)
        lines.append(f"stopped early after epoch {len(hist.rows)}: {es.monitor} did not improve for "
                     f"{waited} epoch{'s' * (waited != 1)}")
    if hist.restored_best and hist.best_epoch != len(hist.rows):
        lines.append(f"restored the weights of epoch {hist.best_epoch} (best {es.monitor})")
    secs = sum(r["time_s"] for r in hist.rows) if seconds is None else seconds
    # every epoch trains the same samples, so the samples over the training time is the harmonic mean of the
    # epochs' speeds (the first, with its tracing or compiling, weighs as much as its time)
    speeds = [s for r in hist.rows if math.isfinite(s := r.get("samples_per_s", math.nan)) and s > 0]
    speed = f" ({len(speeds) / sum(1 / s for s in speeds):,.0f} samples/s)" if speeds else ""
    lines.append(f"[dim]trained {len(hist.rows)} epoch{'s' * (len(hist.rows) != 1)} in "
                 f"{fmt_duration(secs)}{speed}[/]")
    parts = [p for p in ("train", "val", "test") if p in final]
    if not parts:
        return lines
    keys = list(final[parts[0]])
    widths = [max(8, len(k)) for k in keys]
    header = "final".ljust(6) + "".join("  " + k.rjust(w) for k, w in zip(keys, widths, strict=True))
    lines.append(f"[bold]{header}[/]")
    for p in parts:
        line = p.ljust(6) + "".join("  " + fmt_value(final[p].get(k)).rjust(w)
                                    for k, w in zip(keys, widths, strict=True))
        lines.append(f"[bold green]{line}[/]" if p == parts[-1] else line)
    return lines


def can_redraw(console) -> bool:
    """Whether `console` is a terminal that can redraw a line in place, as a live progress bar needs: not a
    dumb one (TERM=dumb: it would leave a blank line), and not a file or pipe that FORCE_COLOR=1 makes rich
    call a terminal (FORCE_COLOR asks for colours; a CI log would get the bar's carriage returns). A console
    made with force_terminal, or TTY_COMPATIBLE=1, is taken at its word."""
    import os

    if not console.is_terminal or console.is_dumb_terminal:
        return False
    if getattr(console, "_force_terminal", None) is not None or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed file
        return False


def say_in_a_terminal(name: str):
    """What says each phase of a long, otherwise silent command on stderr as it starts (`iris: training torch
    in float64, 200 steps ...`), when stderr is a terminal; None in a pipe or a file, which get the result
    alone."""
    import sys

    if not sys.stderr.isatty():
        return None
    return lambda phase: print(f"{name}: {phase} ...", file=sys.stderr, flush=True)


BAR_CELLS = (20, 10)  # the bar's width, and the narrowest worth showing


def progress_parts(epoch: str, steps: str, timing: list[str], values: list[str], width: int,
                   word: str = "epoch") -> tuple[str, int, str]:
    """The progress line fitted to `width` cells, as (text before the bar, bar width or 0 for none, text after
    it). A narrow terminal keeps what a Keras user looks at first: the epoch, the steps, the time left and the
    running loss; the bar shrinks, then the other metrics go from the right, then the pace, then the bar
    (rich would otherwise cut the line from the left and lose the epoch and the steps). Narrower than the
    epoch, the steps and the time left: the word `epoch` goes (`3/20 12/539 1.2s left`), then the time left,
    then the epoch; a number is never cut short (`epoch 3/20  12/53` read as 53 steps). `word`: what the
    steps are of (`lr range test  37/200`, where `epoch` is empty: steps that are no epoch's)."""
    bare = steps.strip()
    full = f"{word} {epoch} {steps}" if epoch else f"{word} {steps}"
    short = f"{epoch} {bare}" if epoch else bare
    for head in (full, short):
        for bar, keep_pace, n_values in _progress_layouts(len(values)):
            shown = timing if keep_pace else timing[:1]
            tail = " ".join(shown + ([" - ".join(["", *values[:n_values]]).strip()] if n_values else []))
            if len(head) + (bar + 1 if bar else 0) + (len(tail) + 1 if tail else 0) <= width:
                return head, bar, tail
    for head, tail in ((full, ""), (short, ""), (bare, " ".join(timing[:1])), (bare, "")):
        if len(head) + (len(tail) + 1 if tail else 0) <= width:
            return head, 0, tail
    return bare, 0, ""


def _progress_layouts(n_values: int):
    """(bar width, pace shown, values shown), from the fullest line to the barest."""
    for bar in BAR_CELLS:
        yield bar, True, n_values
    for n in range(n_values - 1, 0, -1):
        yield BAR_CELLS[-1], True, n
    yield BAR_CELLS[-1], False, min(n_values, 1)
    yield 0, False, min(n_values, 1)
    yield 0, False, 0


class _FittedLine(ProgressColumn):
    """The rich progress column of the whole line, refitted to the console's width at every refresh (a
    resized terminal too)."""

    def __init__(self, console):
        super().__init__()
        self.console = console

    def render(self, task):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        f, total = task.fields, int(task.total or 0)
        steps = f"{int(task.completed):>{len(str(total))}}/{total}"
        head, bar, tail = progress_parts(f["epoch"], steps, f["timing"], f["values"], self.console.width,
                                         f["word"])
        grid = Table.grid(padding=(0, 1))
        cells = [head]
        if bar:
            # (the standard colours: rich's own, downgraded for a 16-colour terminal, drew a finished bar in
            # the grey of its background, empty to the eye)
            cells.append(ProgressBar(total=task.total, completed=task.completed, width=bar,
                                     complete_style="magenta", finished_style="green"))
        if tail:
            cells.append(tail)
        grid.add_row(*cells)
        return grid


class Progress:
    """A Keras-like progress bar over the steps of the current epoch, on a terminal only (a log or a pipe
    gets the epoch rows): `epoch 3/20  12/47 ━━━━━━━━━━━━━━━━━━━━ 1.2s left 25ms/step - loss: 0.5200 -
    accuracy: 0.8100`, refreshed a few times a second, fitted to the terminal's width (progress_parts).
    `epochs` None and a `word`: steps that are no epoch's (lr-find's: `lr range test  37/200 ...`)."""

    def __init__(self, console, epochs: int | None, word: str = "epoch"):
        from rich.progress import Progress as RichProgress

        self.epochs, self.word = epochs, word
        self.enabled = can_redraw(console) and not console.quiet
        self.p = RichProgress(_FittedLine(console), console=console, transient=True)
        self.task: TaskID | None = None
        self.start = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            self.p.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            return self.p.__exit__(*exc)
        return None

    def __call__(self, epoch: int, done: int, total: int, running: dict | None = None) -> None:
        now = time.perf_counter()
        if done == 0:
            self.start = now
        if not self.enabled:
            return
        timing: list[str] = []
        if done > 0:
            elapsed = now - self.start
            per = elapsed / done
            timing = [f"{fmt_duration(per * (total - done))} left" if done < total else fmt_duration(elapsed),
                      fmt_pace(per)]
        values = [f"{k}: {fmt_value(v)}" for k, v in (running or {}).items()]
        epoch_text = f"{epoch + 1}/{self.epochs}" if self.epochs else ""
        if self.task is None:
            self.task = self.p.add_task("train", total=total, completed=done, epoch=epoch_text, timing=timing,
                                        values=values, word=self.word)
        else:
            self.p.update(self.task, total=total, completed=done, epoch=epoch_text, timing=timing,
                          values=values, refresh=True)  # (a few times a second at most: the backends say so)

    def elapsed(self) -> float:
        """Seconds since the current epoch started."""
        return time.perf_counter() - self.start
