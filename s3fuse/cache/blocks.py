"""Blocks of objects, fetched by ranged GET and kept by (bucket, key, ETag, block number).

One GET serves every reader of a block: a block being fetched has a slot that later readers wait on. Blocks
live in a bounded in-memory LRU (the hot set, answered on the event loop without a thread hop) and, when the
disk cache is on, in the disk cache below it, which survives a remount. Keying by ETag means a changed object
never serves old bytes: its blocks simply have another key.
"""

from __future__ import annotations

import errno
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import trio

from s3fuse.cache.disk import DiskCache
from s3fuse.s3.client import S3Client
from s3fuse.s3.errors import S3Error

log = logging.getLogger(__name__)

BlockKey = tuple[str, str, str, int]  # bucket, key, etag, block number
SMALL_ALIGN = 128 << 10  # random reads fetch their range rounded out to this
# Failures while the body streams in, after botocore's own retries were done with the request: only these are
# retried here (retrying what botocore already retried would multiply the time to EIO).
BODY_FAILURES = frozenset({"Short", "ClientPayloadError", "ResponseStreamingError", "IncompleteReadError",
                           "ContentLengthError", "TransferEncodingError"})


@dataclass(frozen=True)
class Version:
    """One version of one object, as a reader pinned it: where it lives, its ETag and its size."""

    client: S3Client
    key: str
    etag: str
    size: int

    def block_key(self, number: int) -> BlockKey:
        return (self.client.bucket, self.key, self.etag, number)


@dataclass
class Fetch:
    """A block on its way: readers wait on `done`, then find the data or the error."""

    done: trio.Event = field(default_factory=trio.Event)
    data: bytes = b""
    error: OSError | None = None


class BlockCache:
    def __init__(self, block_size: int, memory_limit: int, disk: DiskCache | None, attempts: int = 4) -> None:
        self.attempts = max(1, attempts)
        self.block_size = block_size
        self.memory_limit = max(memory_limit, 2 * block_size)
        self.disk = disk
        self.memory: OrderedDict[BlockKey, bytes] = OrderedDict()
        self.memory_bytes = 0
        self.fetching: dict[BlockKey, Fetch] = {}
        self.nursery: trio.Nursery | None = None  # set by the mount for background prefetch
        self.disk_busy = False
        self.hits = 0
        self.misses = 0

    def block_count(self, size: int) -> int:
        return (size + self.block_size - 1) // self.block_size

    # -- memory tier -----------------------------------------------------------------------------------------

    def _keep(self, bkey: BlockKey, data: bytes) -> None:
        if bkey in self.memory:
            return
        self.memory[bkey] = data
        self.memory_bytes += len(data)
        while self.memory_bytes > self.memory_limit and self.memory:
            _, old = self.memory.popitem(last=False)
            self.memory_bytes -= len(old)

    def cached(self, bkey: BlockKey) -> bytes | None:
        data = self.memory.get(bkey)
        if data is not None:
            self.memory.move_to_end(bkey)
        return data

    # -- fetching --------------------------------------------------------------------------------------------

    async def block(self, version: Version, number: int) -> bytes:
        """The whole block `number` of the object (shorter at the end of the object)."""
        bkey = version.block_key(number)
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
        bkey = version.block_key(number)
        start = number * self.block_size
        end = min(version.size, start + self.block_size)
        fetched = False
        try:
            data = await self.disk.get(bkey, end - start) if self.disk is not None else None
            if data is not None:
                self.hits += 1
            else:
                self.misses += 1
                log.debug("GET %s block %d: start (%d in flight)", version.key, number, len(self.fetching))
                data = await self.get_with_retries(version, start, end)
                log.debug("GET %s block %d: done", version.key, number)
                fetched = True
            fetch.data = data
            self._keep(bkey, data)
        except OSError as exc:  # S3Error included; a disk-tier failure costs a refetch, never wrong bytes
            fetch.error = exc
        finally:
            del self.fetching[bkey]
            fetch.done.set()
        if fetched and self.disk is not None:
            self.store_on_disk(bkey, fetch.data)

    def store_on_disk(self, bkey: BlockKey, data: bytes) -> None:
        """One block at a time goes to the disk tier (about 300 MB/s through diskcache here); a block that
        arrives while the writer is busy is not cached. Measured: writing every block of a cold read as it
        arrived cut that read from 268 to 115 MB/s, the disk writes starving the GETs of CPU."""
        if self.disk_busy or self.nursery is None or self.disk is None:
            return
        self.disk_busy = True
        self.nursery.start_soon(self._write_block, self.disk, bkey, data)

    async def _write_block(self, disk: DiskCache, bkey: BlockKey, data: bytes) -> None:
        try:
            await disk.put(bkey, data)
        finally:
            self.disk_busy = False

    async def get_with_retries(self, version: Version, start: int, end: int) -> bytes:
        """botocore retries failed requests, but not a body cut short after the headers arrived: a reset or a
        truncated body mid-transfer is retried here, with backoff, before it becomes EIO."""
        for attempt in range(self.attempts):
            try:
                return await version.client.get_range(version.key, start, end, version.etag)
            except S3Error as exc:
                if exc.s3_code not in BODY_FAILURES or attempt == self.attempts - 1:
                    raise
                log.info("GET %s bytes %d-%d failed (%s); retrying", version.key, start, end, exc)
                await trio.sleep(0.1 * 2 ** attempt)
        raise AssertionError("unreachable")

    def prefetch(self, version: Version, numbers: range) -> None:
        """Start fetching blocks in the background; errors surface when a reader reaches the block."""
        if self.nursery is None:
            return
        for number in numbers:
            if number >= self.block_count(version.size):
                break
            bkey = version.block_key(number)
            if bkey in self.memory or bkey in self.fetching:
                continue
            fetch = self._start(bkey)
            self.nursery.start_soon(self._fill, version, number, fetch)

    async def read(self, version: Version, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) of the object, clipped at its end."""
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

    async def read_small(self, version: Version, offset: int, length: int) -> bytes:
        """A random read: from a cached block when there is one, else a ranged GET of just the aligned range
        around it (not a whole block: random 4 KiB reads would move 2,000 times the bytes they use)."""
        end = min(version.size, offset + length)
        if offset >= end:
            return b""
        numbers = range(offset // self.block_size, (end - 1) // self.block_size + 1)
        if all(self._has(version.block_key(n)) for n in numbers):
            return await self.read(version, offset, length)
        start = offset - offset % SMALL_ALIGN
        stop = min(version.size, -(-end // SMALL_ALIGN) * SMALL_ALIGN)
        self.misses += 1
        data = await self.get_with_retries(version, start, stop)
        return data[offset - start:end - start]

    def _has(self, bkey: BlockKey) -> bool:
        return bkey in self.memory or bkey in self.fetching or (self.disk is not None and self.disk.has(bkey))

    def drop(self, bucket: str, key: str) -> None:
        """Forget the memory blocks of a key (its object was replaced or removed by us)."""
        for bkey in [b for b in self.memory if b[0] == bucket and b[1] == key]:
            self.memory_bytes -= len(self.memory.pop(bkey))
