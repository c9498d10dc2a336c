"""What the kernel's page cache holds of a file, asked without reading or mapping it."""

from __future__ import annotations

import ctypes
import os

CACHESTAT = 451  # the system call's number on x86_64 and arm64 (Linux 6.5)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]


def cached_pages(fd: int, offset: int = 0, length: int = 0) -> int:
    """Pages of the open file `fd` in the page cache, of [offset, offset + length) (cachestat(2); a length of 0
    means to the end)."""
    libc = ctypes.CDLL(None, use_errno=True)
    stat = _Stat()
    if libc.syscall(CACHESTAT, fd, ctypes.byref(_Range(offset, length)), ctypes.byref(stat), 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return int(stat.cache)
