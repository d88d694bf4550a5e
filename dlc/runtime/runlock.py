"""One process trains into a run folder at a time. `dlc run`, `dlc run --resume` and `dlc cv` hold an flock
on RUN/.dlc-lock while they train, and no --out (--replace included) takes such a folder. The kernel releases
the lock when the process ends, a kill -9 too, so a lock is never left behind. Two resumes of one run would
otherwise train side by side, interleave their logs and leave a checkpoint and a history of different
epochs.

A lock file is removed when its lock is let go (`locked`), so none is left behind either (`dlc tune`'s locks
in ~/.cache/dlc/locks piled up, one per database, forever). Removing a file another process may be waiting
on is the classic race: that process's flock then succeeds on the removed file while a third process locks a
new file of the same name, and both think they hold the lock. So the file is removed while still locked, and
a process that gets a lock checks that the name still leads to the file it locked (the same inode), trying
again with a new one when it does not. (A kill -9 between the lock and the removal leaves the file; the next
holder removes it.)"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOCK = ".dlc-lock"


class FolderBusy(Exception):
    """Another process holds the folder's lock; `pid` is the one it recorded ("" when unknown)."""

    def __init__(self, folder: Path, pid: str):
        super().__init__(f"{folder} is being trained into by another dlc process"
                         + (f" (pid {pid})" if pid else "") + "; wait for it to end, or use another folder")
        self.folder, self.pid = folder, pid


@contextlib.contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[IO[str]]:
    """An exclusive flock on the file `path` (made when missing), held for the block, the file open for
    reading and writing; the file removed when the block ends (see the module's docstring for why that is
    safe). `wait=False`: BlockingIOError at once when another process holds it. OSError when the file cannot
    be made; ImportError where there is no flock (not POSIX)."""
    import fcntl

    while True:
        fh = open(path, "a+")  # noqa: SIM115 - held open for the whole block
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BaseException:
            fh.close()
            raise
        if _same_file(fh, path):
            break
        fh.close()  # (the holder before removed it while this one waited: lock the new one)
    try:
        yield fh
    finally:
        if _same_file(fh, path):  # (still locked: no other process can hold this file now)
            with contextlib.suppress(OSError):
                os.unlink(path)
        fh.close()  # (closing releases the flock)


def _same_file(fh: IO[str], path: Path) -> bool:
    """The name `path` leads to the file open as `fh`."""
    try:
        a, b = os.fstat(fh.fileno()), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def held(folder: Path) -> Iterator[None]:
    """The folder's lock, held for the block; FolderBusy when another process holds it. Where flock is
    missing (not POSIX) or the folder cannot take the lock file, training goes on unlocked."""
    path = folder / LOCK
    with contextlib.ExitStack() as stack:
        try:
            fh = stack.enter_context(locked(path, wait=False))
        except BlockingIOError:
            pid = ""
            with contextlib.suppress(OSError, UnicodeDecodeError):
                pid = path.read_text()[:32].strip()
            raise FolderBusy(folder, pid) from None
        except (ImportError, OSError):
            fh = None
        if fh is not None:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        yield


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
