"""Bytes a random reader's read brought into memory, handed to the kernel's page cache (FUSE notify_store).

The kernel asks a random reader's pages one at a time (4 KiB each from fio or a database), and each answer from
a Python daemon costs about 300 us, where a C daemon answering from a local file spends 25 us. A random read
fetches a 128 KiB piece, or finds its block in memory, to answer 4 KiB: once the reply is out, the piece (or the
block) around it goes into the page cache, and the next reads anywhere in it never reach the daemon. Nothing
more is fetched for it: only bytes already in memory are stored. The whole block only for a reader that has
only ever jumped about (prefetch.py, `random_reader`), else the MiB of it around the read: a sequential reader's
request that arrived out of order also takes this path, and its read-ahead, finding 8 MiB cached, would jump past
them, so that its next request too looked random (pieces fetched one by one instead of blocks ahead); a MiB is
within the reordering a sequential reader is allowed.

A store must never put old bytes over new ones. The kernel's page cache is only written here for an open file
that is clean (S3's version, nothing staged or written), has no handle open for writing (whose writes the
kernel's writeback cache may be holding in those very pages) and whose version the kernel's page cache holds.
An open, a truncate and the last release wait for the stores under way (`settled`): a store that began before
them finishes first, one that would begin after them finds the file changed and does not happen. A store never
reaches past the version's size (the kernel grows a file to the end of a store). A lookup or a listing that
tells the kernel of another version waits for the stores of the old one: the kernel makes a new inode for the
new version (another generation) under the same number, and an old store landing in it would grow it to the old
size, a size the writeback cache then keeps (zeros past the new bytes).

The store runs on a worker thread: it waits for the page locks of reads the kernel has sent but the daemon not
yet answered, and those answers come from the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import trio

from s3fuse.cache.blocks import BlockCache, Version
from s3fuse.cache.prefetch import REORDER_SLACK

log = logging.getLogger(__name__)

SPAN = REORDER_SLACK // 4  # stored out of a block in memory (1 MiB): a jump a sequential reader may make

Store = Callable[[int, int, memoryview], None]  # pyfuse3.notify_store(inode, offset, data)


@dataclass
class Feeding:
    """One open file's stores: which are under way, what changes of the file are waiting for them. A change waits
    only for the stores that began before it, so readers that keep stores coming cannot hold it off."""

    pending: dict[tuple[str, int], int] = field(default_factory=dict)  # (ETag, offset) -> when it began
    begun: int = 0  # stores begun so far
    holds: int = 0  # truncates under way: no store begins
    ended: trio.Event = field(default_factory=trio.Event)  # set (and replaced) whenever a store ends

    async def settled(self) -> None:
        """Every store that had begun is done."""
        before = self.begun
        while any(order < before for order in self.pending.values()):
            await self.ended.wait()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No store begins within, and none that began is still under way."""
        self.holds += 1
        try:
            await self.settled()
            yield
        finally:
            self.holds -= 1

    async def settled_for(self, etag: str) -> None:
        """No store of bytes other than version `etag`'s is under way."""
        while any(unit_etag != etag for unit_etag, _ in self.pending):
            await self.ended.wait()

    def begin(self, unit: tuple[str, int]) -> None:
        self.pending[unit] = self.begun
        self.begun += 1

    def end(self, unit: tuple[str, int]) -> None:
        del self.pending[unit]
        self.ended.set()
        self.ended = trio.Event()


def may_store(feeding: Feeding, still_valid: Callable[[], bool]) -> bool:
    return not feeding.holds and still_valid()


class PageCacheFeed:
    def __init__(self, cache: BlockCache, store: Store) -> None:
        self.cache = cache
        self.store = store
        self.nursery: trio.Nursery | None = None  # set by the mount
        self.limiter = trio.CapacityLimiter(1)
        self.stored_bytes = 0

    def offer(self, feeding: Feeding, ino: int, version: Version, offset: int, whole_block: bool,
              still_valid: Callable[[], bool]) -> None:
        """After a random read at `offset`: store what is in memory around it (the piece, or its block: whole for
        a reader that only ever jumped about, else the MiB of it around `offset`), unless its store is under way.
        One stored before is stored again: a read reached the daemon, so the kernel no longer has all of it
        (fadvise DONTNEED, memory pressure). `still_valid` tells, just before the store, whether the file still
        is that version, clean and without writers."""
        if self.nursery is None or feeding.holds:
            return
        held = self.cache.held_around(version, offset, self.cache.block_size if whole_block else SPAN)
        if held is None:
            return
        start, data = held
        unit = (version.etag, start)
        if unit in feeding.pending:
            return
        feeding.begin(unit)
        self.nursery.start_soon(self._store, feeding, ino, unit, data, still_valid)

    async def _store(self, feeding: Feeding, ino: int, unit: tuple[str, int], data: memoryview,
                     still_valid: Callable[[], bool]) -> None:
        try:
            async with self.limiter:
                if not may_store(feeding, still_valid):  # no thread for a store that cannot happen
                    return
                if await trio.to_thread.run_sync(self._notify, feeding, ino, unit[1], data, still_valid):
                    self.stored_bytes += len(data)
        finally:
            feeding.end(unit)

    def _notify(self, feeding: Feeding, ino: int, start: int, data: memoryview, still_valid: Callable[[], bool]
                ) -> bool:
        """On the worker thread: the file is checked once more just before the store (the thread may have waited
        for the GIL while the loop went on), which then lets go of the GIL only to enter the kernel."""
        if not may_store(feeding, still_valid):
            return False
        try:
            self.store(ino, start, data)
            return True
        except OSError as exc:  # ENOENT: the kernel has forgotten the inode; the reads simply come to us
            if exc.errno != errno.ENOENT:
                log.debug("page cache store of inode %d at %d failed: %s", ino, start, exc)
            return False
