"""The block cache's parts below the mount: pooled buffers, the disk tier's files and checks."""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing

from s3fuse.cache.blocks import IN_FLIGHT_BYTES, BlockCache, Version
from s3fuse.cache.buffers import BufferPool
from s3fuse.cache.disk import PIECE, DiskCache, read_file, write_file

BLOCK = 1 << 20


def test_a_buffer_nobody_holds_is_reused() -> None:
    pool = BufferPool(BLOCK, keep=4)
    buffer = pool.take()
    pool.give(buffer)
    assert pool.take() is buffer


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) << 10 for line in status if line.startswith("VmRSS:"))


def test_fill_populates_buffers_up_to_its_byte_limit_and_take_hands_them_out() -> None:
    pool = BufferPool(BLOCK, keep=8)
    before = resident_bytes()
    pool.fill(limit_bytes=6 * BLOCK)
    assert len(pool.free) == 6
    assert resident_bytes() - before >= 5 * BLOCK  # the pages are there before any reader touched them
    filled = list(pool.free)
    assert pool.take() is filled[-1]


def test_fill_stops_at_what_the_pool_keeps() -> None:
    pool = BufferPool(BLOCK, keep=3)
    pool.give(pool.take())
    pool.fill(limit_bytes=100 * BLOCK)
    assert len(pool.free) == 3


def test_a_buffer_a_reader_still_views_is_not_reused() -> None:
    pool = BufferPool(BLOCK, keep=4)
    buffer = pool.take()
    view = memoryview(buffer)[10:20]  # what a FUSE read holds
    pool.give(buffer)
    assert pool.take() is not buffer
    view.release()


def test_the_pool_keeps_no_more_than_asked() -> None:
    pool = BufferPool(BLOCK, keep=1)
    first, second = pool.take(), pool.take()
    pool.give(first)
    pool.give(second)
    assert pool.free == [first]


@pytest.mark.parametrize("length", [BLOCK, BLOCK - 1000, 4096, 100])
@pytest.mark.parametrize("kind", ["mmap", "bytearray"])
def test_block_files_round_trip(tmp_path: Path, length: int, kind: str) -> None:
    """mmaps take the O_DIRECT path (page aligned, padded, then cut to length), bytearrays the buffered one."""
    data = os.urandom(length)
    source: mmap.mmap | bytearray = mmap.mmap(-1, BLOCK) if kind == "mmap" else bytearray(length)
    source[:length] = data
    write_file(str(tmp_path / "block"), memoryview(source)[:length])
    assert (tmp_path / "block").read_bytes() == data
    into: mmap.mmap | bytearray = mmap.mmap(-1, BLOCK) if kind == "mmap" else bytearray(length)
    assert read_file(str(tmp_path / "block"), memoryview(into)[:length]) == length
    assert bytes(into[:length]) == data


def test_a_filesystem_without_o_direct_gets_buffered_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_direct(path: str, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_direct)
    source = mmap.mmap(-1, BLOCK)
    source[:] = os.urandom(BLOCK)
    write_file(str(tmp_path / "block"), memoryview(source)[:BLOCK - 1000])
    into = mmap.mmap(-1, BLOCK)
    assert read_file(str(tmp_path / "block"), memoryview(into)) == BLOCK - 1000
    assert into[:BLOCK - 1000] == source[:BLOCK - 1000]
    with pytest.raises(FileNotFoundError):  # any other failure is the caller's to see (a missing directory)
        write_file(str(tmp_path / "missing" / "block"), memoryview(source))


def test_a_view_into_the_middle_of_a_buffer_is_written_as_itself(tmp_path: Path) -> None:
    source = mmap.mmap(-1, BLOCK)
    source[:] = os.urandom(BLOCK)
    view = memoryview(source)[8192:8192 + 5000]
    write_file(str(tmp_path / "block"), view)
    assert (tmp_path / "block").read_bytes() == bytes(view)
    into = mmap.mmap(-1, BLOCK)
    assert read_file(str(tmp_path / "block"), memoryview(into)[4096:4096 + 5000]) == 5000
    assert into[4096:4096 + 5000] == bytes(view)


def round_trip(cache: DiskCache, key: tuple[str, str, str, int], data: bytes) -> tuple[bool, bytes]:
    async def main() -> tuple[bool, bytes]:
        source = mmap.mmap(-1, BLOCK)
        source[:len(data)] = data
        await cache.put(key, memoryview(source)[:len(data)])
        into = mmap.mmap(-1, BLOCK)
        found = await cache.get(memoryview(into)[:len(data)], (key, 0))
        return found, bytes(into[:len(data)])
    return trio.run(main)


def test_the_disk_tier_returns_what_it_was_given(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path / "cache"), 64 * BLOCK)
    data = os.urandom(BLOCK - 7)
    assert round_trip(cache, ("b", "k", "etag", 0), data) == (True, data)
    small = b"tiny block, kept in the index itself"
    assert round_trip(cache, ("b", "k", "etag", 1), small) == (True, small)


def block_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*.val")]


def test_a_block_write_that_fails_leaves_no_file_and_no_entry(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(path: str, view: memoryview) -> None:
        with open(path, "xb") as writer:
            writer.write(view[:len(view) // 2])
        raise OSError(28, "No space left on device")

    disk = DiskCache(str(tmp_path / "cache"), 64 * BLOCK)
    monkeypatch.setattr("s3fuse.cache.disk.write_file", disk_full)
    trio.run(disk.put, ("b", "k", "e", BLOCK, 0), memoryview(os.urandom(BLOCK)))
    assert block_files(tmp_path / "cache") == []
    assert not trio.run(disk.get, memoryview(bytearray(BLOCK)), (("b", "k", "e", BLOCK, 0), 0))


def test_a_cull_that_fails_after_the_write_keeps_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = DiskCache(str(tmp_path / "cache"), 64 * BLOCK)

    def locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    # diskcache's set asks first (its own cull: under the limit), then the write sees the cache over it and culls
    sizes = itertools.chain([0], itertools.repeat(128 * BLOCK))
    monkeypatch.setattr(disk.cache, "volume", lambda: next(sizes))
    monkeypatch.setattr(disk.cache, "cull", locked)
    key, data = ("b", "k", "e", BLOCK, 0), os.urandom(BLOCK)
    trio.run(disk.put, key, memoryview(data))
    into = bytearray(BLOCK)
    assert trio.run(disk.get, memoryview(into), (key, 0))
    assert into == data


def test_blocks_written_and_looked_up_from_many_threads_all_land(tmp_path: Path) -> None:
    """The index is entered by one thread at a time (no thread sleeps in SQLite's wait for its lock), while the
    files are written outside it: every block is there afterwards, each in its own file."""
    disk = DiskCache(str(tmp_path / "cache"), 256 * BLOCK)
    blocks = {("b", "k", "e", BLOCK, number): os.urandom(BLOCK) for number in range(24)}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for key, data in blocks.items():
                nursery.start_soon(disk.put, key, memoryview(data))
                nursery.start_soon(disk.get, memoryview(bytearray(BLOCK)), (key, 0))
        for key, data in blocks.items():
            into = bytearray(BLOCK)
            assert await disk.get(memoryview(into), (key, 0))
            assert into == data
    trio.run(main)
    assert len(block_files(tmp_path / "cache")) == len(blocks)


@pytest.mark.parametrize("damage", ["truncate", "flip", "extend"])
def test_a_damaged_block_file_is_dropped_not_returned(tmp_path: Path, damage: str) -> None:
    cache = DiskCache(str(tmp_path / "cache"), 64 * BLOCK)
    key = ("b", "k", "etag", 0)
    data = os.urandom(BLOCK)
    assert round_trip(cache, key, data)[0]
    [path] = list((tmp_path / "cache").rglob("*.val"))
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:BLOCK // 2]
    elif damage == "flip":
        raw[BLOCK // 3] ^= 1
    else:
        raw += b"junk"
    path.write_bytes(bytes(raw))

    async def get() -> tuple[bool, bytes]:
        into = mmap.mmap(-1, BLOCK)
        return await cache.get(memoryview(into), (key, 0)), bytes(into)
    found, got = trio.run(get)
    if damage == "extend":  # the block's own bytes are intact and checked: serving them is right
        assert (found, got) == (True, data)
    else:
        assert not found
        assert not list((tmp_path / "cache").rglob("*.val"))  # dropped, so the next read fetches it again


class ObjectServer:
    """Stands in for S3Client below the block cache: records the ranges asked for, serves `data` (or, without
    it, each block filled with its number) and holds every GET until `released` is set, if asked to."""

    bucket = "b"

    def __init__(self, data: bytes | None = None, held: bool = False) -> None:
        self.data = data
        self.released = trio.Event()
        if not held:
            self.released.set()
        self.ranges: list[tuple[int, int]] = []

    async def get_range(self, key: str, start: int, end: int, etag: str = "",
                        into: memoryview | None = None) -> memoryview:
        self.ranges.append((start, end))
        await self.released.wait()
        assert into is not None
        into[:] = self.data[start:end] if self.data is not None else bytes([start // BLOCK % 256]) * (end - start)
        return into


def test_prefetch_keeps_a_byte_bound_on_blocks_in_flight() -> None:
    async def main() -> None:
        server = ObjectServer(held=True)
        cache = BlockCache(BLOCK, 16 * BLOCK, None)
        version = Version(cast(Any, server), "big", "etag", 1000 * BLOCK)
        async with trio.open_nursery() as nursery:
            cache.nursery = nursery
            cache.prefetch(version, range(1, 1000))
            await trio.testing.wait_all_tasks_blocked()
            assert len(cache.fetching) == len(server.ranges) == IN_FLIGHT_BYTES // BLOCK
            server.released.set()
            first = await cache.block(version, 0)  # a block a reader needs is fetched regardless
            assert bytes(first[:1]) == b"\0"
    trio.run(main)


def test_small_objects_get_buffers_of_their_own_size() -> None:
    """Thousands of small files in memory must not each map a whole block (the kernel limits mappings)."""
    async def main() -> None:
        server = ObjectServer()
        cache = BlockCache(BLOCK, 16 * BLOCK, None)
        for number in range(100):
            view = await cache.block(Version(cast(Any, server), f"small{number}", "etag", 4096), 0)
            assert len(view) == 4096
        assert all(isinstance(buffer, bytearray) and len(buffer) == 4096 for buffer, _ in cache.memory.values())
        assert cache.memory_bytes == 100 * 4096
    trio.run(main)


def test_an_evicted_block_a_reader_still_holds_keeps_its_bytes() -> None:
    """The memory tier holds two blocks; a reader's view of block 0 must survive block 0's eviction and the
    fetches after it (its buffer is not reused while viewed), and buffers nobody views are reused."""
    async def main() -> None:
        server = ObjectServer()
        cache = BlockCache(BLOCK, 2 * BLOCK, None)
        version = Version(cast(Any, server), "big", "etag", 8 * BLOCK)
        held = await cache.block(version, 0)
        for number in range(1, 8):
            data = await cache.block(version, number)
            assert bytes(data[:1]) == bytes([number])
        del data
        assert bytes(held[:1]) == b"\0" and bytes(held[-1:]) == b"\0"
        assert cache.pool.free  # the blocks nobody held went back to the pool
        assert all(buffer is not held.obj for buffer in cache.pool.free)
    trio.run(main)


def test_a_random_read_of_a_block_on_disk_reads_and_checks_one_piece(tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK)
    server = ObjectServer(data)
    version = Version(cast(Any, server), "big", "etag", len(data))
    disk = DiskCache(str(tmp_path / "cache"), 64 * BLOCK)

    async def main() -> None:
        await disk.put(version.block_key(BLOCK, 1), memoryview(data)[BLOCK:])
        cache = BlockCache(BLOCK, 4 * BLOCK, disk)
        offset = BLOCK + 3 * PIECE + 100
        assert bytes(await cache.read_small(version, offset, 4096)) == data[offset:offset + 4096]
        assert server.ranges == []
        assert all(bkey[3] == PIECE for bkey in cache.memory)  # the piece is kept, not the block
        [path] = list((tmp_path / "cache").rglob("*.val"))
        raw = bytearray(path.read_bytes())
        raw[5 * PIECE + 7] ^= 1
        path.write_bytes(bytes(raw))
        offset = BLOCK + 5 * PIECE
        assert bytes(await cache.read_small(version, offset, 4096)) == data[offset:offset + 4096]
        assert server.ranges == [(offset, offset + PIECE)]  # the damaged piece was refused and fetched
        assert not list((tmp_path / "cache").rglob("*.val"))  # the damaged block was dropped
    trio.run(main)


def test_random_reads_fetch_pieces_and_keep_them(tmp_path: Path) -> None:
    data = os.urandom(3 * BLOCK + 5)
    server = ObjectServer(data)
    version = Version(cast(Any, server), "big", "etag", len(data))

    async def main() -> None:
        cache = BlockCache(BLOCK, 4 * BLOCK, DiskCache(str(tmp_path / "cache"), 64 * BLOCK))
        for offset, length in [(PIECE - 10, 20), (PIECE + 5, 100), (3 * BLOCK, 100)]:
            assert bytes(await cache.read_small(version, offset, length)) == data[offset:offset + length]
        assert server.ranges == [(0, PIECE), (PIECE, 2 * PIECE), (3 * BLOCK, 3 * BLOCK + 5)]
    trio.run(main)


class GatedDisk(DiskCache):
    """A disk tier whose writes wait until `gate` opens: a disk that has fallen behind."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory, 1 << 30)
        self.gate = trio.Event()

    async def put(self, key: Any, data: memoryview) -> None:
        await self.gate.wait()
        await super().put(key, data)


def test_a_disk_that_falls_behind_holds_prefetching_back_and_loses_no_block(tmp_path: Path) -> None:
    server = ObjectServer(os.urandom(12 * BLOCK))
    version = Version(cast(Any, server), "big", "etag", 12 * BLOCK)
    disk = GatedDisk(str(tmp_path / "cache"))

    async def main() -> None:
        cache = BlockCache(BLOCK, 4 * BLOCK, disk)  # the disk may fall 2 blocks behind before prefetching waits
        async with trio.open_nursery() as nursery:
            cache.nursery = nursery
            for number in range(3):
                await cache.block(version, number)
            await trio.testing.wait_all_tasks_blocked()
            cache.prefetch(version, range(3, 12))
            assert not cache.fetching  # 3 blocks wait for the disk: nothing is fetched ahead
            disk.gate.set()
            await cache.finish_disk_writes(10)
            cache.prefetch(version, range(3, 6))
            assert len(cache.fetching) == 3  # caught up: reading ahead again
        into = memoryview(mmap.mmap(-1, BLOCK))
        for number in range(3):  # none of the blocks that waited was skipped
            assert await disk.get(into, (version.block_key(BLOCK, number), 0))
    trio.run(main)


def test_a_block_on_its_way_to_the_disk_tier_is_served_not_fetched_again(tmp_path: Path) -> None:
    """The memory tier may let a block go before the disk tier has it (a loaded machine's disk falls behind):
    a reader coming back to it then gets its buffer, not a second GET."""
    data = os.urandom(4 * BLOCK)
    server = ObjectServer(data)
    version = Version(cast(Any, server), "big", "etag", len(data))
    disk = GatedDisk(str(tmp_path / "cache"))

    async def main() -> None:
        cache = BlockCache(BLOCK, 2 * BLOCK, disk)  # memory for 2 blocks
        async with trio.open_nursery() as nursery:
            cache.nursery = nursery
            for number in range(3):
                await cache.block(version, number)
            await trio.testing.wait_all_tasks_blocked()
            assert version.block_key(BLOCK, 0) not in cache.memory  # out of memory, still not on disk
            assert bytes(await cache.block(version, 0)) == data[:BLOCK]
            assert bytes(await cache.read_small(version, 100, 4096)) == data[100:4196]
            assert server.ranges == [(0, BLOCK), (BLOCK, 2 * BLOCK), (2 * BLOCK, 3 * BLOCK)]  # each block once
            disk.gate.set()
            await cache.finish_disk_writes(10)
        into = memoryview(mmap.mmap(-1, BLOCK))
        assert await disk.get(into, (version.block_key(BLOCK, 0), 0)) and bytes(into) == data[:BLOCK]
    trio.run(main)


def test_entries_read_without_sqlite_keep_their_place_in_the_lru_order(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of a remembered entry skip diskcache's index; they still count as uses when a write evicts."""
    cache = DiskCache(str(tmp_path / "cache"), 2 * BLOCK + BLOCK // 2)
    older, newer, third = (("b", k, "etag", 0) for k in ("older", "newer", "third"))
    data = os.urandom(BLOCK)
    assert round_trip(cache, older, data)[0] and round_trip(cache, newer, data)[0]

    async def read(key: tuple[str, str, str, int]) -> bool:
        return await cache.get(memoryview(mmap.mmap(-1, BLOCK)), (key, 0))

    with monkeypatch.context() as patched:
        patched.setattr(cache, "_read_looked_up", None)  # a lookup in the index would fail now
        for _ in range(5):
            assert trio.run(read, older)
    assert round_trip(cache, third, data)[0]  # over the limit: the least recently used goes
    assert trio.run(read, older) and not trio.run(read, newer)


def test_a_key_written_again_is_read_from_its_new_file(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path / "cache"), 64 * BLOCK)
    key = ("b", "k", "etag", 0)
    first, second = os.urandom(BLOCK), os.urandom(BLOCK)
    assert round_trip(cache, key, first) == (True, first)  # its file is remembered now
    assert round_trip(cache, key, second) == (True, second)


def test_a_remembered_entry_evicted_since_is_a_miss(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path / "cache"), 64 * BLOCK)
    key = ("b", "k", "etag", 0)
    assert round_trip(cache, key, os.urandom(BLOCK))[0]
    cache.cache.clear()  # as eviction does: the entry's row and file go

    async def read() -> bool:
        return await cache.get(memoryview(mmap.mmap(-1, BLOCK)), (key, 0))
    assert not trio.run(read)
    assert not cache.files


def test_a_block_is_fetched_whole_once_half_its_pieces_came_from_s3() -> None:
    """Half of an 8 MiB block's 64 pieces, and not one fewer."""
    block_size = 8 * BLOCK
    data = os.urandom(2 * block_size)
    server = ObjectServer(data)
    version = Version(cast(Any, server), "big", "etag", len(data))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            cache = BlockCache(block_size, 16 * block_size, None)
            cache.nursery = nursery
            pieces = range(block_size, 2 * block_size, PIECE)
            half = len(pieces) // 2
            for number, offset in enumerate(pieces[::-1][:half], start=1):
                assert bytes(await cache.read_small(version, offset, 4096)) == data[offset:offset + 4096]
                await trio.testing.wait_all_tasks_blocked()
                assert ((block_size, 2 * block_size) in server.ranges) == (number == half), number
    trio.run(main)


def test_blocks_no_bigger_than_a_piece_are_what_a_random_read_fetches() -> None:
    block_size = 64 << 10
    data = os.urandom(4 * block_size)
    server = ObjectServer(data)
    version = Version(cast(Any, server), "big", "etag", len(data))

    async def main() -> None:
        cache = BlockCache(block_size, 16 * block_size, None)
        offset = block_size + 100
        assert bytes(await cache.read_small(version, offset, 4096)) == data[offset:offset + 4096]
        assert server.ranges == [(block_size, 2 * block_size)]
    trio.run(main)
