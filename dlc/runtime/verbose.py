"""What `Model.fit(verbose=...)` prints, as Keras' fit does: 1 a progress bar over each epoch's steps (the
running loss and metrics, the time left) that ends as the epoch's line, 2 the epoch's line alone, 0 nothing;
"auto" is 1 where the output redraws (a terminal, a notebook) and 0 elsewhere (a pipe, a log, a test), so a
script's captured output does not fill with bars. Plain text: no terminal library, a notebook reads it."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR = 30  # the bar's width in characters, as Keras draws it
NOT_SHOWN = ("epoch", "time_s", "samples_per_s")  # a row's fields that are not a loss, metric or lr


def verbosity(verbose: int | str) -> int:
    """0, 1 or 2 from what fit() was given; ValueError naming the accepted values otherwise."""
    if verbose == "auto":
        return 1 if redraws(sys.stdout) else 0
    if type(verbose) is not int or verbose not in (0, 1, 2):  # (not True, not 1.0)
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto' (got {verbose!r})")
    return int(verbose)


def redraws(stream: TextIO) -> bool:
    """Whether a line written with a carriage return is drawn over: a terminal, or a Jupyter kernel's
    output (which is no terminal)."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _terminal_columns(stream: TextIO) -> int:
    """A terminal's width; 0 for a notebook's output, which wraps a long line and still redraws it."""
    import shutil

    try:
        return shutil.get_terminal_size().columns if stream.isatty() else 0
    except (AttributeError, ValueError, OSError):
        return 0


def _seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.3g}ms"
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    return f"{int(s // 60)}:{int(s % 60):02d}"


def _values(values: dict) -> str:
    return "".join(f" - {k}: {v:.4g}" if k == "lr" else f" - {k}: {v:.4f}" for k, v in values.items()
                   if k not in NOT_SHOWN and isinstance(v, (int, float)))


class FitPrinter:
    """The on_progress and on_epoch callbacks of dlc.runtime.loop.train, printing as `verbose` says."""

    def __init__(self, verbose: int, epochs: int, stream: TextIO | None = None, steps: int = 0):
        self.verbose, self.epochs = verbose, epochs
        self.stream = stream if stream is not None else sys.stdout
        self.dynamic = verbose == 1 and redraws(self.stream)
        self.columns = _terminal_columns(self.stream) if self.dynamic else 0  # 0: no limit (a notebook)
        self.start = time.perf_counter()
        self.width = 0  # the length of the bar line last drawn (to draw the next one over it whole)
        self.steps = steps  # an epoch's steps (the bar's count replaces it: max_steps may cut an epoch short)

    def progress(self, epoch: int, done: int, total: int, running: dict | None = None) -> None:
        now = time.perf_counter()
        if done == 0:
            self.start = now
        self.steps = total
        if not self.dynamic:
            return
        if done == 0:
            self._draw(f"Epoch {epoch + 1}/{self.epochs}")
            return
        filled = BAR * done // total
        bar = "=" * max(0, filled - 1) + (">" if filled < BAR else "=") + "." * (BAR - filled)
        left = (now - self.start) / done * (total - done)
        # (a full bar says the time taken, as Keras' does: "ETA: 0ms" stood until the epoch's line)
        when = f"ETA: {_seconds(left)}" if done < total else _seconds(now - self.start)
        self._draw(f"{done}/{total} [{bar}] - {when}{_values(running or {})}")

    def epoch(self, row: dict) -> None:
        if not self.verbose:
            return
        seconds = float(row.get("time_s", time.perf_counter() - self.start))
        took = _seconds(seconds) + (f" - {_seconds(seconds / self.steps)}/step" if self.steps else "")
        steps = f"{self.steps}/{self.steps} - " if self.steps else ""
        self._draw(f"Epoch {row.get('epoch', '?')}/{self.epochs} - {steps}{took}{_values(row)}", whole=True)
        self._end_line()

    def close(self) -> None:
        """A bar left half drawn (a failure, Ctrl-C) ends its line, so what is printed next starts clean."""
        if self.width:
            self._end_line()

    def _draw(self, line: str, whole: bool = False) -> None:
        if self.dynamic and not whole and self.columns:  # (a wider bar wraps; \r redraws only its last row)
            line = line[:self.columns - 1]
        self._write("\r" + line + " " * max(0, self.width - len(line)) if self.dynamic else line)
        self.width = len(line)

    def _end_line(self) -> None:
        self._write("\n")
        self.width = 0

    def _write(self, text: str) -> None:
        """Written and flushed; an output that has gone (a pipe closed by `head`, a closed file) ends the
        printing, not the training."""
        if not self.verbose:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.verbose, self.dynamic = 0, False
