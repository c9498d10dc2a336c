"""Block buffers that are reused instead of allocated per block.

A fresh 8 MiB buffer costs more than the bytes it holds: the kernel hands out new pages, and on a virtual
machine that returns freed memory to its host (free page reporting, as here) the first touch of each page
costs about 1.5 ms per MiB, more than receiving the bytes: filling the pool during a mount's first big read took
0.3 s of its 1.1 s of CPU per GiB. So the pool is filled once, in the background, when the mount starts (`fill`).

Buffers are private anonymous mmaps backed by transparent huge pages where the kernel allows it. They are page
aligned, which O_DIRECT reads and writes of the disk tier need, and an O_DIRECT transfer from 2 MiB pages goes
to the disk in a few large requests instead of 1 MiB ones (a request holds at most 254 pages here): the disk tier's
files were read back at 2.1-2.3 GB/s instead of 1.5-1.65. A huge page also costs one fault instead of 512.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import sys
import threading

log = logging.getLogger(__name__)

# references to a buffer nobody else holds, as sys.getrefcount sees it in `give`: the caller's, the argument's
UNSHARED_REFS = 3
MADV_POPULATE_WRITE = 23  # Linux 5.14: fault a range in, writable, in one call (not named by Python 3.11's mmap)
PAGE = 4096


def new_buffer(size: int) -> mmap.mmap:
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(AttributeError, OSError):  # a kernel without transparent huge pages: small ones
        buffer.madvise(mmap.MADV_HUGEPAGE)
    return buffer


def populate(buffer: mmap.mmap) -> None:
    """Fault every page of `buffer` in now, so its first real use does not; OSError (ENOMEM) when memory is short."""
    try:
        buffer.madvise(MADV_POPULATE_WRITE)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        for offset in range(0, len(buffer), PAGE):  # a kernel before 5.14: touch a byte of each page
            buffer[offset] = 0


class BufferPool:
    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self.keep = keep
        self.free: list[mmap.mmap] = []
        self.lock = threading.Lock()  # `fill` runs on a worker thread

    def take(self) -> mmap.mmap:
        with self.lock:
            if self.free:
                return self.free.pop()
        return new_buffer(self.size)

    def give(self, buffer: object) -> None:
        """Reuse `buffer` if it is one of ours and nothing else holds it (a reader's view of it keeps a
        reference); otherwise let it go with its last reference."""
        if isinstance(buffer, mmap.mmap) and len(buffer) == self.size \
                and sys.getrefcount(buffer) <= UNSHARED_REFS:
            with self.lock:
                if len(self.free) < self.keep:
                    self.free.append(buffer)

    def fill(self, limit_bytes: int) -> None:
        """Add populated buffers up to `keep` (and `limit_bytes`), for a worker thread at the mount's start: the
        pages' first touch is paid there, not by the first reader."""
        for _ in range(min(self.keep, limit_bytes // self.size)):
            try:
                buffer = new_buffer(self.size)
                populate(buffer)
            except OSError as exc:  # out of memory now: the buffers come one at a time when reads need them
                log.info("block buffers not filled ahead (%s)", exc)
                return
            with self.lock:
                if len(self.free) >= self.keep:
                    return
                self.free.append(buffer)
