"""glibc malloc settings for training on the CPU.

torch's CPU tensors come from malloc. glibc serves a block above its mmap threshold with a fresh mmap and
unmaps it when freed, and returns freed memory at the top of its heap to the kernel once it exceeds the trim
threshold; the kernel then hands the next step's activations out again as zeroed pages, one page fault
per 4 KiB. On bench/cnn.dlspec (a 32-channel 26x26 convolution, 11 MB activations at batch 128) that was
7,300 faults per step and 1.45x the time of a step with the memory kept: 3,844 against 5,599 samples/s on
one thread (`bench/bench_mlp.py --spec bench/cnn.dlspec --threads 1 --variants dlc-torch`, with the
MALLOC_*_ environment variables that set the same values). The seed MLP, whose blocks are small, does not
change. Setting them keeps blocks under 32 MiB (glibc's largest mmap threshold) in the heap and up to
64 MiB of freed memory in it: what the process had in use a step ago, not more. Numbers do not change:
only where memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 64 * 2**20
# set by the user (the environment's tunables win): then nothing is changed
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process (True when they are set): not where the user set
    malloc tunables, with DLC_MALLOC_TUNING=0, or where the C library is not glibc."""
    global _done
    if _done is None:
        _done = _set_thresholds()
    return _done


def _set_thresholds() -> bool:
    if os.environ.get("DLC_MALLOC_TUNING", "1") == "0" or any(os.environ.get(k) for k in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # (glibc only: musl's mallopt, and others', ignore these settings)
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
