"""Block buffers that are reused instead of allocated per block.

A fresh 8 MiB buffer costs more than the bytes it holds: the kernel hands out new pages, and on a virtual
machine that returns freed memory to its host (free page reporting, as here) the first touch of each page
costs about 4 ms per MiB, more than receiving the bytes. Buffers are anonymous mmaps, so they are also page
aligned, which O_DIRECT reads and writes of the disk tier need.
"""

from __future__ import annotations

import mmap
import sys

# references to a buffer nobody else holds, as sys.getrefcount sees it in `give`: the caller's, the argument's
UNSHARED_REFS = 3


class BufferPool:
    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self.keep = keep
        self.free: list[mmap.mmap] = []

    def take(self) -> mmap.mmap:
        return self.free.pop() if self.free else mmap.mmap(-1, self.size)

    def give(self, buffer: object) -> None:
        """Reuse `buffer` if it is one of ours and nothing else holds it (a reader's view of it keeps a
        reference); otherwise let it go with its last reference."""
        if isinstance(buffer, mmap.mmap) and len(buffer) == self.size and len(self.free) < self.keep \
                and sys.getrefcount(buffer) <= UNSHARED_REFS:
            self.free.append(buffer)
