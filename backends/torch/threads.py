"""The CPU thread governor of the torch backend.

PyTorch's OpenMP threads spin-wait for each other at the end of every parallel op, so a second thread only
helps while a core is free for it: on a 2-core machine with another busy process, 2 threads made the seed
MLP's epochs 10-100x slower than 1 thread (bench/README.md). The governor starts at 1 thread and, every
`interval` seconds of training (checked between steps), reads /proc/stat: it uses more threads only while the
cores it may run on are idle apart from this process's own work. Where /proc/stat cannot be read it changes
nothing (torch's default threads, as before). The thread count never changes what is computed beyond
rounding of parallel reductions; float64 results were measured equal (README, "Speed")."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

SLACK = 0.25  # another process may use this much of a core and still leave it "free"
INTERVAL = 0.15  # seconds between two looks at /proc/stat (the trainer's progress calls come every 0.2 s)


@dataclass(frozen=True)
class CpuSample:
    """Jiffies of the CPUs this process may run on (summed), and this process's own CPU seconds."""

    total: int  # all jiffies of those CPUs
    idle: int  # idle + iowait jiffies of those CPUs
    cpus: int  # how many CPUs
    own: float  # this process's user + system CPU seconds (all threads)


def parse_proc_stat(text: str, allowed: set[int] | None = None) -> tuple[int, int, int] | None:
    """(total, idle, cpus) summed over the per-CPU lines of /proc/stat ("cpuN user nice system idle iowait
    irq softirq steal ..."), only CPUs in `allowed` when given; None when there are none."""
    total = idle = cpus = 0
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            cpu, values = int(name[3:]), [int(v) for v in fields[:8]]
        except ValueError:
            continue
        if (allowed is not None and cpu not in allowed) or len(values) < 4:
            continue
        total += sum(values)
        idle += values[3] + (values[4] if len(values) > 4 else 0)
        cpus += 1
    return (total, idle, cpus) if cpus else None


def threads_for(prev: CpuSample, cur: CpuSample, max_threads: int, hz: float) -> int | None:
    """How many threads the cores leave room for between two samples: the CPUs' busy time minus this
    process's own is what other processes used (in cores); each core they leave free (within SLACK) may
    take a thread; at least 1, at most max_threads. None when the samples say nothing (no time passed)."""
    span = cur.total - prev.total
    if span <= 0 or cur.cpus <= 0:
        return None
    wall = span / cur.cpus  # jiffies per CPU
    busy = span - (cur.idle - prev.idle)
    own = (cur.own - prev.own) * hz
    others = max(0.0, busy - own) / wall
    free = cur.cpus - others
    return max(1, min(max_threads, int(free + SLACK)))


def read_sample(path: str = "/proc/stat") -> CpuSample | None:
    """The current sample, or None where /proc/stat is absent or unreadable."""
    try:
        with open(path) as fh:
            text = fh.read()
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    except OSError:
        return None
    parsed = parse_proc_stat(text, allowed)
    if parsed is None:
        return None
    t = os.times()
    return CpuSample(*parsed, own=t.user + t.system)


class Governor:
    """Call `tick()` between training steps (cheap: a clock read; /proc/stat at most every `interval`
    seconds); `set_threads(n)` is called when the count should change. Starts at 1 thread."""

    def __init__(self, max_threads: int, set_threads: Callable[[int], None],
                 sample: Callable[[], CpuSample | None] = read_sample, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic, hz: float | None = None):
        self.max_threads, self.set_threads, self.sample = max_threads, set_threads, sample
        self.interval = interval
        self.clock = clock
        self.hz = hz if hz is not None else float(os.sysconf("SC_CLK_TCK"))
        self.threads = 1
        self.changes = 0
        self.set_threads(1)
        self.last = sample()
        self.last_time = clock()

    @property
    def active(self) -> bool:
        """False where /proc/stat could not be read: nothing is governed."""
        return self.last is not None

    def tick(self) -> None:
        now = self.clock()
        if self.last is None or now - self.last_time < self.interval:
            return
        cur = self.sample()
        if cur is None:
            return
        want = threads_for(self.last, cur, self.max_threads, self.hz)
        self.last, self.last_time = cur, now
        if want is not None and want != self.threads:
            self.threads = want
            self.changes += 1
            self.set_threads(want)


    def wrap(self, progress):
        """A progress callback for Trainer.train_epoch that ticks the governor (the trainer calls it between
        steps, every 0.2 s) and then calls `progress`, if any."""

        def call(done, steps, peek):
            self.tick()
            if progress is not None:
                progress(done, steps, peek)

        return call


def start(max_threads: int, set_threads: Callable[[int], None]) -> Governor | None:
    """A governor for up to max_threads threads, or None (and the threads left as they are) where there is
    nothing to govern (one thread) or /proc/stat cannot be read."""
    if max_threads < 2 or read_sample() is None:
        return None
    return Governor(max_threads, set_threads)
