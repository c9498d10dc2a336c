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
from s3fuse.cache.disk import PIECE, DiskCache
from s3fuse.s3.client import S3Client

log = logging.getLogger(__name__)

# bucket, key, etag, block size, block number: with another block size the same number is another range, so a
# cache kept from a mount with another `page.size` must not answer for it
BlockKey = tuple[str, str, str, int, int]
Buffer = bytearray | mmap.mmap  # what holds a block: a pooled mmap, or a bytearray for a small object
DISK_WRITERS = 2  # blocks written to the disk tier at once
SPARE_BUFFERS = 8  # pooled buffers beyond the memory tier's, for blocks on their way
IN_FLIGHT_BYTES = 128 << 20  # prefetched blocks on their way at once, all readers together
# a block half of whose pieces came from S3 is fetched whole: a random reader that has needed half of it is working
# through that part of the file, and the rest costs one GET instead of dozens (each mostly latency: 5 ms against
# RGW here), at most as many bytes again as it already fetched. Sparser reads fetch only their pieces.
PROMOTE_FRACTION = 2
PROMOTION_CANDIDATES = 4096  # blocks whose piece fetches are counted
POOL_FILL_BYTES = 256 << 20  # buffers populated when the mount starts (with 8 MiB blocks: all 24 of the pool)


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
        # blocks on their way to the disk tier, still answered from their buffer: a block the memory tier let go
        # of before the disk had it would otherwise be fetched again from S3
        self.to_disk: dict[BlockKey, memoryview] = {}
        self.piece_fetches: OrderedDict[BlockKey, int] = OrderedDict()  # block -> its pieces fetched from S3
        self.pieces_tile_blocks = block_size > PIECE and block_size % PIECE == 0  # else pieces are units apart
        self.promote_after = block_size // PIECE // PROMOTE_FRACTION
        self.nursery: trio.Nursery | None = None  # set by the mount for background prefetch
        self.disk_writers = trio.CapacityLimiter(DISK_WRITERS)
        self.disk_backlog = 0  # bytes of fetched blocks waiting for the disk tier
        self.disk_backlog_limit = self.memory_limit // 2
        self.disk_drained = trio.Event()  # set whenever the backlog is empty
        self.disk_drained.set()
        self.hits = 0
        self.misses = 0

    async def fill_pool(self) -> None:
        """Populate the buffers a streaming reader cycles through before the first read needs them (see
        buffers.py: on this VM their first touch was a quarter of a cold read's CPU)."""
        await trio.to_thread.run_sync(self.pool.fill, POOL_FILL_BYTES)

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
            writing = self.to_disk.get(bkey)
            return writing[:] if writing is not None else None
        self.memory.move_to_end(bkey)
        return memoryview(held[0])[:held[1]]

    def adopt(self, version: Version, data: bytes) -> None:
        """`data`, the whole of `version` (at most one block), kept in the memory tier as if it had been fetched
        (not on disk: the next reads are what it is for): our own upload's bytes, which S3 checked against the hash
        the PUT carried."""
        bkey = version.block_key(self.block_size, 0)
        if len(data) == version.size <= self.block_size and not self.present(bkey):
            self._keep(bkey, bytearray(data), len(data))

    def held_around(self, version: Version, offset: int, span: int) -> tuple[int, memoryview] | None:
        """The bytes here around `offset`: the `span`-aligned stretch of its block, else its piece; with where
        they start."""
        block = self.cached(version.block_key(self.block_size, offset // self.block_size))
        if block is not None:
            within = offset % self.block_size // span * span
            return offset - offset % self.block_size + within, block[within:within + span]
        piece = self.cached(version.block_key(PIECE, offset // PIECE))
        return (offset // PIECE * PIECE, piece) if piece is not None else None

    def held(self, bkey: BlockKey) -> bool:
        """Whether the block's bytes are here, in memory or on their way to the disk tier."""
        return bkey in self.memory or bkey in self.to_disk

    def present(self, bkey: BlockKey) -> bool:
        """Whether the block is here or on its way: nothing to fetch."""
        return self.held(bkey) or bkey in self.fetching

    # -- fetching --------------------------------------------------------------------------------------------

    async def block(self, version: Version, number: int) -> memoryview:
        """The whole block `number` of the object (shorter at the end of the object)."""
        return await self._unit(version, version.block_key(self.block_size, number))

    async def _unit(self, version: Version, bkey: BlockKey) -> memoryview:
        """A block, or a piece (PIECE bytes: what a random read fetches, kept in both tiers like a block)."""
        data = self.cached(bkey)
        if data is not None:
            self.hits += 1
            return data
        fetch = self.fetching.get(bkey)
        if fetch is None:
            fetch = self._begin(version, bkey)
            if self.nursery is None:
                await self._fill(version, bkey, fetch)
        await fetch.done.wait()
        if fetch.error is not None:
            raise OSError(fetch.error.errno or errno.EIO, str(fetch.error))
        return fetch.data

    def _begin(self, version: Version, bkey: BlockKey) -> Fetch:
        """A fetch readers can wait on; with the mount's nursery it runs in the background, so neither this
        reader nor the others wait for the disk tier's write."""
        fetch = Fetch()
        self.fetching[bkey] = fetch
        if self.nursery is not None:
            self.nursery.start_soon(self._fill, version, bkey, fetch)
        return fetch

    async def _fill(self, version: Version, bkey: BlockKey, fetch: Fetch) -> None:
        """Disk tier first, then S3; always sets `done` (even when cancelled), and before the bytes are written
        to the disk tier."""
        unit, number = bkey[3], bkey[4]
        start = number * unit
        end = min(version.size, start + unit)
        # a pooled buffer is a whole block of address space: for small objects (thousands of them in memory)
        # and pieces a buffer of their own size, or the mmaps would run into the kernel's limit on mappings
        buffer: Buffer = self.pool.take() if end - start >= self.block_size // 2 else bytearray(end - start)
        view = memoryview(buffer)[:end - start]
        fetched = False
        try:
            if await self._from_disk(version, bkey, view):
                self.hits += 1
            else:
                self.misses += 1
                log.debug("GET %s [%d, %d): start (%d in flight)", version.key, start, end, len(self.fetching))
                await version.client.get_range(version.key, start, end, version.etag, into=view)
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
            if unit != self.block_size and self.pieces_tile_blocks:
                self._count_piece(version, number * unit // self.block_size)

    async def _from_disk(self, version: Version, bkey: BlockKey, into: memoryview) -> bool:
        """The unit from the disk tier: kept as itself, or, for a piece, as part of a cached block (only that
        piece of the block is read and checked: a random read of a cached block costs PIECE bytes of disk)."""
        if self.disk is None:
            return False
        unit, number = bkey[3], bkey[4]
        if unit == self.block_size or not self.pieces_tile_blocks:
            return await self.disk.get(into, (bkey, 0))
        block, offset = divmod(number * unit, self.block_size)
        return await self.disk.get(into, (bkey, 0), (version.block_key(self.block_size, block), offset))

    def _count_piece(self, version: Version, block: int) -> None:
        """A piece of `block` came from S3: once `promote_after` of them did, the whole block is fetched in the
        background (when in-flight memory allows; else at a later piece), and later reads find it in the cache."""
        bkey = version.block_key(self.block_size, block)
        count = self.piece_fetches.pop(bkey, 0) + 1
        if self.present(bkey):
            return
        if count < self.promote_after or not self.may_fetch_ahead():
            self.piece_fetches[bkey] = count
            while len(self.piece_fetches) > PROMOTION_CANDIDATES:
                self.piece_fetches.popitem(last=False)
            return
        log.debug("block %d of %s: %d pieces fetched, fetching the block", block, version.key, count)
        self._begin(version, bkey)

    def store_on_disk(self, bkey: BlockKey, data: memoryview) -> None:
        """Every fetched block goes to the disk tier, DISK_WRITERS at a time. A disk that falls behind first
        holds prefetching back (see `prefetch`); only blocks readers still fetch on demand beyond twice the
        backlog limit (a disk much slower than the network) are served but not kept."""
        if self.nursery is None or self.disk is None:
            return
        if self.disk_backlog + len(data) > 2 * self.disk_backlog_limit:
            log.debug("disk tier behind by %d bytes: block %s not cached on disk", self.disk_backlog, bkey[1:])
            return
        if not self.disk_backlog:
            self.disk_drained = trio.Event()
        self.disk_backlog += len(data)
        self.to_disk[bkey] = data
        self.nursery.start_soon(self._write_block, self.disk, bkey, data)

    async def _write_block(self, disk: DiskCache, bkey: BlockKey, data: memoryview) -> None:
        try:
            async with self.disk_writers:
                await disk.put(bkey, data)
        finally:
            self.to_disk.pop(bkey, None)
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
        flight are bounded in bytes across all readers (a block a reader waits for is always fetched), and
        nothing is fetched ahead while the disk tier is behind, so a brief disk stall costs speed, not blocks
        missing from the cache."""
        for number in numbers:
            if number >= self.block_count(version.size) or not self.may_fetch_ahead():
                break
            bkey = version.block_key(self.block_size, number)
            if not self.present(bkey):
                self._begin(version, bkey)

    def may_fetch_ahead(self) -> bool:
        """Whether a block no reader waits for yet may be fetched now: within the byte bound on blocks in
        flight, and not while the disk tier is behind."""
        return self.nursery is not None and self.disk_backlog < self.disk_backlog_limit \
            and self.in_flight_bytes() < IN_FLIGHT_BYTES

    def in_flight_bytes(self) -> int:
        return sum(bkey[3] for bkey in self.fetching)

    async def read(self, version: Version, offset: int, length: int) -> bytes | memoryview:
        """Bytes [offset, offset+length) of the object, clipped at its end, from whole blocks; within one block
        a view of the cached block (no copy: pyfuse3 takes any buffer)."""
        return await self._span(version, offset, length, self.block_size)

    async def read_small(self, version: Version, offset: int, length: int) -> bytes | memoryview:
        """A random read: from blocks already in memory, else from the PIECE-aligned pieces around it (not whole
        blocks: random 4 KiB reads would move 2,000 times the bytes they use). A piece comes from memory, the
        disk tier (kept as itself, or read out of a cached block) or a ranged GET of just that piece."""
        end = min(version.size, offset + length)
        numbers = range(offset // self.block_size, (end - 1) // self.block_size + 1)
        blocks = [version.block_key(self.block_size, number) for number in numbers]
        # (not a block still on its way: a piece comes sooner; and blocks no bigger than a piece are the unit)
        if self.block_size <= PIECE or all(self.held(bkey) for bkey in blocks):
            return await self.read(version, offset, length)
        return await self._span(version, offset, length, PIECE)

    async def _span(self, version: Version, offset: int, length: int, unit: int) -> bytes | memoryview:
        """Bytes [offset, offset+length) from units (blocks or pieces) of `unit` bytes; the units a read spans
        are fetched at once."""
        end = min(version.size, offset + length)
        if offset >= end:
            return b""
        numbers = range(offset // unit, (end - 1) // unit + 1)
        keys = [version.block_key(unit, number) for number in numbers]
        for bkey in keys[1:] if self.nursery is not None else ():
            if not self.present(bkey):
                self._begin(version, bkey)
        parts = []
        for number, bkey in zip(numbers, keys, strict=True):
            data = await self._unit(version, bkey)
            base = number * unit
            parts.append(data[max(offset, base) - base:min(end, base + len(data)) - base])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def drop(self, bucket: str, key: str) -> None:
        """Forget the memory blocks of a key (its object was replaced or removed by us)."""
        for bkey in [b for b in self.memory if b[0] == bucket and b[1] == key]:
            buffer, _length = self.memory.pop(bkey)
            self.memory_bytes -= len(buffer)
            self.pool.give(buffer)
