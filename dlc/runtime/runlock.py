"""One process trains into a run folder at a time. `dlc run`, `dlc run --resume` and `dlc cv` hold an flock
on RUN/.dlc-lock while they train, and no --out (--replace included) takes such a folder. The kernel releases
the lock when the process ends, a kill -9 too, so a lock is never left behind. Two resumes of one run would
otherwise train side by side, interleave their logs and leave a checkpoint and a history of different
epochs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

LOCK = ".dlc-lock"


class FolderBusy(Exception):
    """Another process holds the folder's lock; `pid` is the one it recorded ("" when unknown)."""

    def __init__(self, folder: Path, pid: str):
        super().__init__(f"{folder} is being trained into by another dlc process"
                         + (f" (pid {pid})" if pid else "") + "; wait for it to end, or use another folder")
        self.folder, self.pid = folder, pid


@contextlib.contextmanager
def held(folder: Path) -> Iterator[None]:
    """The folder's lock, held for the block; FolderBusy when another process holds it. Where flock is
    missing (not POSIX) or the folder cannot take the lock file, training goes on unlocked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fh = open(folder / LOCK, "a+")  # noqa: SIM115 - held open for the whole block
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise FolderBusy(folder, fh.read(32).strip()) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()  # (closing releases the flock)


def busy(folder: Path) -> FolderBusy | None:
    """FolderBusy for a folder whose lock another process holds now, else None (takes and drops it)."""
    if not (folder / LOCK).is_file():
        return None
    try:
        with held(folder):
            return None
    except FolderBusy as e:
        return e


def holder(folder: Path) -> int | None:
    """The process that holds the folder's lock now (training into it), read from /proc/locks without
    touching the lock (taking it, even for a moment, could refuse that run's own start); None when nobody
    holds it, or where /proc/locks is missing (not Linux)."""
    try:
        st = (folder / LOCK).stat()
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in locks.splitlines():
        fields = line.split()  # 1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit():
            return int(fields[4])
    return None
