"""Bytes a random reader's read brought into memory, handed to the kernel's page cache (FUSE notify_store).

The kernel asks a random reader's pages one at a time (4 KiB each from fio or a database), and each answer from
a Python daemon costs about 300 us, where a C daemon answering from a local file spends 25 us. A random read
fetches a 128 KiB piece (or finds its 8 MiB block in memory) to answer 4 KiB: once the reply is out, the whole
piece or block goes into the page cache, and the next reads anywhere in it never reach the daemon. Nothing more
is fetched for it: only bytes already in memory are stored.

A store must never put old bytes over new ones. The kernel's page cache is only written here for an open file
that is clean (S3's version, nothing staged or written), has no handle open for writing (whose writes the
kernel's writeback cache may be holding in those very pages) and whose version the kernel's page cache holds.
An open, a truncate and the last release wait for the stores under way (`settled`): a store that began before
them finishes first, one that would begin after them finds the file changed and does not happen. A store never
reaches past the version's size (the kernel grows a file to the end of a store).

The store runs on a worker thread: it waits for the page locks of reads the kernel has sent but the daemon not
yet answered, and those answers come from the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import trio

from s3fuse.cache.blocks import BlockCache, Version

log = logging.getLogger(__name__)

FED_UNITS = 4096  # units stored per open file that are not offered again (the kernel keeps them until memory is short)
Store = Callable[[int, int, memoryview], None]  # pyfuse3.notify_store(inode, offset, data)


@dataclass
class Feeding:
    """One open file's stores: how many are under way, what changes of the file are waiting for them."""

    in_flight: int = 0
    holds: int = 0  # truncates under way: no store begins
    idle: trio.Event = field(default_factory=trio.Event)
    fed: OrderedDict[tuple[str, int], None] = field(default_factory=OrderedDict)  # (ETag, offset) stored

    def __post_init__(self) -> None:
        self.idle.set()

    async def settled(self) -> None:
        """Every store that began is done."""
        while self.in_flight:
            await self.idle.wait()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No store begins within, and none that began is still under way."""
        self.holds += 1
        try:
            await self.settled()
            yield
        finally:
            self.holds -= 1

    def begin(self) -> None:
        if not self.in_flight:
            self.idle = trio.Event()
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()


class PageCacheFeed:
    def __init__(self, cache: BlockCache, store: Store) -> None:
        self.cache = cache
        self.store = store
        self.nursery: trio.Nursery | None = None  # set by the mount
        self.limiter = trio.CapacityLimiter(1)
        self.stored_bytes = 0

    def offer(self, feeding: Feeding, ino: int, version: Version, offset: int, still_valid: Callable[[], bool]) -> None:
        """After a random read at `offset`: store the block or piece around it that is in memory, unless stored
        already. `still_valid` tells, just before the store, whether the file still is that version, clean and
        without writers."""
        if self.nursery is None or feeding.holds:
            return
        held = self.cache.held_unit(version, offset)
        if held is None:
            return
        start, data = held
        if (version.etag, start) in feeding.fed:
            return
        feeding.fed[(version.etag, start)] = None
        while len(feeding.fed) > FED_UNITS:
            feeding.fed.popitem(last=False)
        feeding.begin()
        self.nursery.start_soon(self._store, feeding, ino, version.etag, start, data, still_valid)

    async def _store(self, feeding: Feeding, ino: int, etag: str, start: int, data: memoryview,
                     still_valid: Callable[[], bool]) -> None:
        try:
            async with self.limiter:
                if feeding.holds or not still_valid():
                    feeding.fed.pop((etag, start), None)  # offered again by a later read, if the file allows it then
                    return
                await trio.to_thread.run_sync(self._notify, ino, start, data)
                self.stored_bytes += len(data)
        finally:
            feeding.end()

    def _notify(self, ino: int, start: int, data: memoryview) -> None:
        try:
            self.store(ino, start, data)
        except OSError as exc:  # ENOENT: the kernel has forgotten the inode; the reads simply come to us
            if exc.errno != errno.ENOENT:
                log.debug("page cache store of inode %d at %d failed: %s", ino, start, exc)
