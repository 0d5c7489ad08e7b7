"""Process-level runtime settings of aufer's command line.

:func:`tune_allocator` keeps glibc from returning large freed blocks to the operating system after every
tensor (its default mmap threshold hands each activation buffer back and page-faults it in again on the next
call). On 2 CPU cores it made an EfficientNet-Lite0 forward pass of 32 faces at 112 px 2.8× faster (0.107 s →
0.039 s) and a training step of 64 faces 1.6× faster (0.74 s → 0.46 s), measured in one session on this
project's machine. The cost is memory that stays with the process instead of being returned at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def tune_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds (``mallopt``) for this process; a no-op returning False where
    the C library is not glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
