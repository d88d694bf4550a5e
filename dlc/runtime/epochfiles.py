"""When a run folder's per-epoch files are written.

history.json and .csv, evidence.json and checkpoint.npz are each rewritten whole and atomically (a temporary
file renamed over the old one: 0.6 ms a rename on an ext4 disk, the checkpoint fsynced too), which cost a
small model more than its training: 1,500 epochs of specs/iris.dlspec spent 9 s training and 12 s writing
them. So they are written after an epoch only once the time since the last write is at least RATIO times
what that write took (writing takes at most about 1/RATIO of a run), and always after the first and the last
epoch; when training stops on a failure or an interrupt, the history and the evidence are written up to the
last finished epoch (the checkpoint stays the last one written: the weights have moved on since). A run
whose epochs each outlast RATIO writes is written after every epoch, as before; one of short epochs has its
files at most RATIO writes' time behind (iris, 1,500 epochs: 0.3-0.5 s), which is what a `kill -9` can
lose."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dlc.runtime.rundir import write_history

# the least time between two writes, as a multiple of the last write's time
RATIO = 20.0


class Pace:
    """Whether enough time has passed since the last write (see the module's docstring); the first is due."""

    def __init__(self, ratio: float = RATIO, clock: Callable[[], float] = time.perf_counter) -> None:
        self.ratio, self.clock = ratio, clock
        self.next = -float("inf")

    def due(self) -> bool:
        return self.clock() >= self.next

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Time a write: the next is due RATIO times as long after it ends."""
        start = self.clock()
        try:
            yield
        finally:
            end = self.clock()
            self.next = end + self.ratio * (end - start)


class EpochFiles:
    """One folder's per-epoch files: `rows` (the history, the caller's list, appended to by the caller), the
    evidence of `recorder` (None: none), the checkpoint `save(state)` writes (None: none). `after_epoch` after
    every epoch, and `flushed()` around the training. A folder that does not exist is made by the evidence;
    without evidence, the history waits for it (a cv fold's folder is made when the fold ends)."""

    def __init__(self, folder: Path | None, rows: list[dict], recorder=None,
                 save: Callable[[Any], None] | None = None, pace: Pace | None = None) -> None:
        self.folder, self.rows, self.recorder, self.save = folder, rows, recorder, save
        self.pace = pace or Pace()
        if recorder is not None:
            recorder.paced = True  # (its evidence.json written here, when due)
        self.written = len(rows)  # the rows in the files (a resumed run's are there already)

    def append(self, row: dict) -> None:
        """on_epoch for a training without checkpoints (a cv fold, a tune trial): the row, then the files
        when they are due."""
        self.rows.append(row)
        self.after_epoch()

    def after_epoch(self, state=None, last: bool = False) -> None:
        """An epoch has ended (`state`: the loop's, to checkpoint; `last`: no epoch follows): the files,
        when they are due."""
        if last or self.pace.due():
            with self.pace.timed():
                self._write_rows()
                if self.save is not None and state is not None:
                    self.save(state)

    @contextlib.contextmanager
    def flushed(self) -> Iterator[None]:
        """The training: however it ends, the history and evidence of its finished epochs are written."""
        try:
            yield
        finally:
            if self.written != len(self.rows) or self._evidence_behind():
                self._write_rows()

    def _write_rows(self) -> None:
        if self.recorder is not None:
            self.recorder.write()
        if self.folder is not None and self.folder.is_dir():
            write_history(self.folder, self.rows)
        self.written = len(self.rows)

    def _evidence_behind(self) -> bool:
        return self.recorder is not None and self.recorder.unwritten
