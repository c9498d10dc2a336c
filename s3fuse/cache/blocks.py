"""Blocks of objects, fetched by ranged GET and kept by (bucket, key, ETag, block number).

One GET serves every reader of a block: a block being fetched has a slot that later readers wait on. Blocks
live in a bounded in-memory LRU (the hot set, answered on the event loop without a thread hop) and, when the
disk cache is on, in the disk cache below it, which survives a remount. Keying by ETag means a changed object
never serves old bytes: its blocks simply have another key.
"""

from __future__ import annotations

import errno
import logging
import mmap
from collections import OrderedDict
from dataclasses import dataclass, field

import trio

from s3fuse.cache.buffers import BufferPool
from s3fuse.cache.disk import DiskCache
from s3fuse.s3.client import S3Client

log = logging.getLogger(__name__)

# bucket, key, etag, block size, block number: with another block size the same number is another range, so a
# cache kept from a mount with another `page.size` must not answer for it
BlockKey = tuple[str, str, str, int, int]
Buffer = bytearray | mmap.mmap  # what holds a block: a pooled mmap, or a bytearray for a small object
SMALL_ALIGN = 128 << 10  # random reads fetch their range rounded out to this
DISK_WRITERS = 2  # blocks written to the disk tier at once
SPARE_BUFFERS = 8  # pooled buffers beyond the memory tier's, for blocks on their way
IN_FLIGHT_BYTES = 128 << 20  # prefetched blocks on their way at once, all readers together


@dataclass(frozen=True)
class Version:
    """One version of one object, as a reader pinned it: where it lives, its ETag and its size."""

    client: S3Client
    key: str
    etag: str
    size: int

    def block_key(self, block_size: int, number: int) -> BlockKey:
        return (self.client.bucket, self.key, self.etag, block_size, number)


@dataclass
class Fetch:
    """A block on its way: readers wait on `done`, then find the data or the error."""

    done: trio.Event = field(default_factory=trio.Event)
    data: memoryview = field(default_factory=lambda: memoryview(b""))
    error: OSError | None = None


class BlockCache:
    """Blocks are handed out as memoryviews over their buffer, a new view per reader: while any reader still
    holds one, the buffer is not reused (BufferPool checks its references)."""

    def __init__(self, block_size: int, memory_limit: int, disk: DiskCache | None) -> None:
        self.block_size = block_size
        self.memory_limit = max(memory_limit, 2 * block_size)
        self.disk = disk
        self.memory: OrderedDict[BlockKey, tuple[Buffer, int]] = OrderedDict()  # buffer, length of the block
        self.memory_bytes = 0
        self.pool = BufferPool(block_size, self.memory_limit // block_size + SPARE_BUFFERS)
        self.fetching: dict[BlockKey, Fetch] = {}
        self.nursery: trio.Nursery | None = None  # set by the mount for background prefetch
        self.disk_writers = trio.CapacityLimiter(DISK_WRITERS)
        self.disk_backlog = 0  # bytes of fetched blocks waiting for the disk tier
        self.disk_backlog_limit = self.memory_limit // 2
        self.disk_drained = trio.Event()  # set whenever the backlog is empty
        self.disk_drained.set()
        self.hits = 0
        self.misses = 0

    def block_count(self, size: int) -> int:
        return (size + self.block_size - 1) // self.block_size

    # -- memory tier -----------------------------------------------------------------------------------------

    def _keep(self, bkey: BlockKey, buffer: Buffer, length: int) -> None:
        if bkey in self.memory:
            return
        self.memory[bkey] = (buffer, length)
        self.memory_bytes += len(buffer)
        while self.memory_bytes > self.memory_limit and self.memory:
            _, (old, _length) = self.memory.popitem(last=False)
            self.memory_bytes -= len(old)
            self.pool.give(old)

    def cached(self, bkey: BlockKey) -> memoryview | None:
        held = self.memory.get(bkey)
        if held is None:
            return None
        self.memory.move_to_end(bkey)
        return memoryview(held[0])[:held[1]]

    # -- fetching --------------------------------------------------------------------------------------------

    async def block(self, version: Version, number: int) -> memoryview:
        """The whole block `number` of the object (shorter at the end of the object)."""
        bkey = version.block_key(self.block_size, number)
        data = self.cached(bkey)
        if data is not None:
            self.hits += 1
            return data
        fetch = self.fetching.get(bkey)
        if fetch is None:
            fetch = self._start(bkey)
            if self.nursery is not None:  # in the background, so this reader need not wait for the disk write
                self.nursery.start_soon(self._fill, version, number, fetch)
            else:
                await self._fill(version, number, fetch)
        await fetch.done.wait()
        if fetch.error is not None:
            raise OSError(fetch.error.errno or errno.EIO, str(fetch.error))
        return fetch.data

    def _start(self, bkey: BlockKey) -> Fetch:
        fetch = Fetch()
        self.fetching[bkey] = fetch
        return fetch

    async def _fill(self, version: Version, number: int, fetch: Fetch) -> None:
        """Disk tier first, then S3; always sets `done` (even when cancelled), and before the block is written
        to the disk tier, so readers never wait for the cache's own write."""
        bkey = version.block_key(self.block_size, number)
        start = number * self.block_size
        end = min(version.size, start + self.block_size)
        # a pooled buffer is a whole block of address space: for small objects (thousands of them in memory)
        # a buffer of their own size, or the mmaps would run into the kernel's limit on mappings
        buffer: Buffer = self.pool.take() if end - start >= self.block_size // 2 else bytearray(end - start)
        view = memoryview(buffer)[:end - start]
        fetched = False
        try:
            if self.disk is not None and self.disk.has(bkey) and await self.disk.get(bkey, view):
                self.hits += 1
            else:
                self.misses += 1
                log.debug("GET %s block %d: start (%d in flight)", version.key, number, len(self.fetching))
                await version.client.get_range(version.key, start, end, version.etag, into=view)
                log.debug("GET %s block %d: done", version.key, number)
                fetched = True
            fetch.data = view
            self._keep(bkey, buffer, end - start)
        except OSError as exc:  # S3Error included; a disk-tier failure costs a refetch, never wrong bytes
            fetch.error = exc
        finally:
            del self.fetching[bkey]
            fetch.done.set()
        if fetched:
            self.store_on_disk(bkey, view)

    def store_on_disk(self, bkey: BlockKey, data: memoryview) -> None:
        """Every fetched block goes to the disk tier, DISK_WRITERS at a time; while the backlog of blocks waiting
        for the disk is over its byte limit (a disk slower than the network), a block is served but not kept."""
        if self.nursery is None or self.disk is None:
            return
        if self.disk_backlog + len(data) > self.disk_backlog_limit:
            log.debug("disk tier behind by %d bytes: block %s not cached on disk", self.disk_backlog, bkey[1:])
            return
        if not self.disk_backlog:
            self.disk_drained = trio.Event()
        self.disk_backlog += len(data)
        self.nursery.start_soon(self._write_block, self.disk, bkey, data)

    async def _write_block(self, disk: DiskCache, bkey: BlockKey, data: memoryview) -> None:
        try:
            async with self.disk_writers:
                await disk.put(bkey, data)
        finally:
            self.disk_backlog -= len(data)
            if not self.disk_backlog:
                self.disk_drained.set()

    async def finish_disk_writes(self, seconds: float) -> None:
        """Blocks still on their way to the disk tier get there before the mount ends (a remount finds them);
        a disk that cannot take them within `seconds` costs those blocks, not the unmount."""
        with trio.move_on_after(seconds):
            await self.disk_drained.wait()

    def prefetch(self, version: Version, numbers: range) -> None:
        """Start fetching blocks in the background; errors surface when a reader reaches the block. Blocks in
        flight are bounded in bytes across all readers (a block a reader waits for is always fetched)."""
        if self.nursery is None:
            return
        for number in numbers:
            if number >= self.block_count(version.size) or len(self.fetching) * self.block_size >= IN_FLIGHT_BYTES:
                break
            bkey = version.block_key(self.block_size, number)
            if bkey in self.memory or bkey in self.fetching:
                continue
            fetch = self._start(bkey)
            self.nursery.start_soon(self._fill, version, number, fetch)

    async def read(self, version: Version, offset: int, length: int) -> bytes | memoryview:
        """Bytes [offset, offset+length) of the object, clipped at its end; within one block a view of the
        cached block (no copy: pyfuse3 takes any buffer)."""
        end = min(version.size, offset + length)
        if offset >= end:
            return b""
        first, last = offset // self.block_size, (end - 1) // self.block_size
        if first == last:
            data = await self.block(version, first)
            base = first * self.block_size
            return data[offset - base:end - base]
        if last > first + 1:
            self.prefetch(version, range(first + 1, last + 1))
        parts = []
        for number in range(first, last + 1):
            data = await self.block(version, number)
            base = number * self.block_size
            parts.append(data[max(offset, base) - base:min(end, base + len(data)) - base])
        return b"".join(parts)

    async def read_small(self, version: Version, offset: int, length: int) -> bytes | memoryview:
        """A random read: from a cached block when there is one, else a ranged GET of just the aligned range
        around it (not a whole block: random 4 KiB reads would move 2,000 times the bytes they use)."""
        end = min(version.size, offset + length)
        if offset >= end:
            return b""
        numbers = range(offset // self.block_size, (end - 1) // self.block_size + 1)
        if all(self._has(version.block_key(self.block_size, n)) for n in numbers):
            return await self.read(version, offset, length)
        start = offset - offset % SMALL_ALIGN
        stop = min(version.size, -(-end // SMALL_ALIGN) * SMALL_ALIGN)
        self.misses += 1
        data = await version.client.get_range(version.key, start, stop, version.etag)
        return data[offset - start:end - start]

    def _has(self, bkey: BlockKey) -> bool:
        return bkey in self.memory or bkey in self.fetching or (self.disk is not None and self.disk.has(bkey))

    def drop(self, bucket: str, key: str) -> None:
        """Forget the memory blocks of a key (its object was replaced or removed by us)."""
        for bkey in [b for b in self.memory if b[0] == bucket and b[1] == key]:
            buffer, _length = self.memory.pop(bkey)
            self.memory_bytes -= len(buffer)
            self.pool.give(buffer)
