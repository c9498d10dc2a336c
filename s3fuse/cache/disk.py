"""The disk tier of the block cache (diskcache): survives a remount, bounded by `alluxio.user.client.cache.size`
with LRU eviction, and checked on every read so a corrupt or truncated entry is refetched, never returned.

diskcache keeps the index (key, size, a checksum per PIECE, access order) in SQLite and each block in a file of
its own directory; whole blocks are written and read with O_DIRECT where the filesystem allows it. The kernel's
page cache already holds what a reader reads (the mount's own pages); caching the cache files' pages as well
would hold every byte twice, and the memory for those pages is the dearest part of a cold read here (see
buffers.py). A random read takes one piece out of a block file, checked against that piece's checksum.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

import diskcache
import trio
import xxhash

log = logging.getLogger(__name__)

DIRECT_ALIGN = 4096  # O_DIRECT wants the buffer, the length and the offset aligned to the device's block size
PIECE = 128 << 10  # what a random read fetches, and the unit of checksums within a block
DIGEST = 8  # bytes of one piece's checksum
KNOWN_FILES = 1 << 14  # entries whose file is remembered (an 8 MiB block's: about 900 bytes)
TOUCH_BATCH = 4096  # reads without SQLite whose uses are written to the LRU order even before the next write


def aligned(view: memoryview) -> memoryview | None:
    """`view` widened to a multiple of DIRECT_ALIGN, if it is the start of a (page-aligned) mmap with room for
    that; else None."""
    base = view.obj
    padded = -(-len(view) // DIRECT_ALIGN) * DIRECT_ALIGN
    if not isinstance(base, mmap.mmap) or not view.contiguous or view.readonly or not 0 < padded <= len(base):
        return None
    whole = memoryview(base)
    if ctypes.addressof(ctypes.c_char.from_buffer(view)) != ctypes.addressof(ctypes.c_char.from_buffer(whole)):
        return None  # a view that starts further into the mmap
    return whole[:padded]


def write_file(path: str, view: memoryview) -> None:
    """A new file holding `view`, in one write: O_DIRECT when `view` allows it and the filesystem supports it."""
    padded = aligned(view)
    if padded is not None:
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a filesystem without O_DIRECT (tmpfs before Linux 6.6)
                raise
        else:
            try:
                os.write(handle, padded)
                if len(padded) > len(view):
                    os.ftruncate(handle, len(view))
            finally:
                os.close(handle)
            return
    with open(path, "xb") as writer:
        writer.write(view)


def read_file(path: str, into: memoryview, offset: int = 0) -> int:
    """Up to len(into) bytes of the file at `path` from `offset` into `into` (fewer where the file ends): one
    O_DIRECT read when `into` allows it (`offset` is then a multiple of DIRECT_ALIGN, as PIECE is)."""
    padded = aligned(into)
    if padded is not None:
        try:
            handle = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        else:
            try:
                return min(os.preadv(handle, [padded], offset), len(into))
            finally:
                os.close(handle)
    with open(path, "rb") as reader:
        reader.seek(offset)
        return reader.readinto(into)


def checksums(data: memoryview) -> bytes:
    """One xxh3 per PIECE of `data`, so a random read checks just the pieces it reads: catches a corrupt file
    (a truncated one already fails the length check). xxh3 costs 0.27 ms per 8 MiB here, zlib's adler32 and
    crc32 3 ms."""
    return b"".join(xxhash.xxh3_64_digest(data[start:start + PIECE]) for start in range(0, len(data), PIECE))


def index_key(key: tuple[object, ...]) -> str:
    """The entry's key in diskcache's index: a str, which it stores as it is. Any other key it pickles and runs
    through pickletools.optimize on every lookup, which took a quarter of the event loop's time in random reads
    of cached blocks."""
    return repr(key)


@dataclass(frozen=True)
class Written:
    """A block's file, written before the index's lock is taken (`DiskCache._put`): `store` records it as is."""

    filename: str
    size: int


class BlockFiles(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    """diskcache's storage, taking a block's file as written. Its own `store` writes bytes through an iterator over
    `io.BytesIO`, which yields one line at a time (32,000 writes for an 8 MiB block of random data, 27% of a cold
    read's CPU here), and inside `set`, where other threads may be waiting for the index."""

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> tuple[int, int, str | None, Any]:
        if isinstance(value, Written):
            return value.size, diskcache.core.MODE_BINARY, value.filename, None
        return super().store(value, read, key)  # type: ignore[no-any-return]


class DiskCache:
    def __init__(self, directory: str, size_limit: int) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        self.cache = diskcache.Cache(directory, size_limit=size_limit, disk=BlockFiles,
                                     eviction_policy="least-recently-used", cull_limit=1)
        # the file and checksums of entries read before, read again without SQLite: a lookup there is a write
        # transaction (it moves the entry in the LRU order), 0.24 ms, as long as reading the piece. These uses
        # reach the LRU order before the next write (which evicts by it), or once TOUCH_BATCH of them piled up.
        # An evicted entry is a missing file; a key written again is another file (diskcache never reuses one).
        self.files: dict[str, tuple[str, bytes]] = {}
        self.touched: set[str] = set()
        self.lock = threading.Lock()
        # one thread in the SQLite index at a time: SQLite's own wait for its write lock sleeps 1 to 100 ms between
        # tries, which in a cold read had the two disk writers and the lookups mostly asleep, the disk tier behind
        # and prefetching held back; this lock wakes the next thread at once. File reads and writes stay outside.
        self.index_lock = threading.Lock()

    async def get(self, into: memoryview, *places: tuple[Any, int]) -> bool:
        """`into` filled from the first of `places` the cache holds whole and intact: an entry and where in it to
        start (a multiple of PIECE: a random read of a cached block reads and checks PIECE bytes of disk, not the
        block). Every lookup happens in one worker thread, none on the event loop."""
        return await trio.to_thread.run_sync(self._get_first, into, places)

    def _get_first(self, into: memoryview, places: tuple[tuple[Any, int], ...]) -> bool:
        found = any(self._get(index_key(key), into, start) for key, start in places)
        if len(self.touched) >= TOUCH_BATCH:
            self._touch()
        return found

    def _get(self, name: str, into: memoryview, start: int) -> bool:
        """len(into) bytes of the entry from `start`, checked against the checksums of the pieces they cover."""
        try:
            read = self._read_remembered(name, into, start) or self._read_looked_up(name, into, start)
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            log.warning("disk cache read of %s failed (%s); fetching from S3", name, exc)
            return False
        if read is None:
            return False
        length, stored_checksums = read
        expected = checksums(into)
        first = start // PIECE * DIGEST
        if length != len(into) or stored_checksums[first:first + len(expected)] != expected:
            return self._corrupt(name)
        return True

    def _read_remembered(self, name: str, into: memoryview, start: int) -> tuple[int, bytes] | None:
        """(length read, checksums) from the file remembered for `name`; None if there is none, or no longer."""
        remembered = self.files.get(name)
        if remembered is None:
            return None
        path, stored_checksums = remembered
        try:
            length = read_file(path, into, start)
        except FileNotFoundError:  # evicted since
            self._forget(name)
            return None
        with self.lock:
            self.touched.add(name)
        return length, stored_checksums

    def _read_looked_up(self, name: str, into: memoryview, start: int) -> tuple[int, bytes] | None:
        """(length read, checksums) through diskcache's index, which moves the entry up in the LRU order; the
        file of the entry is remembered."""
        with self.index_lock:
            stored, stored_checksums = self.cache.get(name, read=True, tag=True)
        if stored is None:
            return None
        if not isinstance(stored_checksums, bytes):
            stored_checksums = b""  # fails every check: corrupt
        if isinstance(stored, bytes):  # a small block, kept in the index itself
            part = stored[start:start + len(into)]
            into[:len(part)] = part
            return len(part), stored_checksums
        with stored:
            path = stored.name
        length = read_file(path, into, start)
        with self.lock:
            if len(self.files) >= KNOWN_FILES:
                self.files.clear()
            self.files[name] = (path, stored_checksums)
        return length, stored_checksums

    def _touch(self) -> None:
        """The entries read without SQLite since the last time, moved up in the LRU order in one transaction."""
        with self.lock:
            names, self.touched = self.touched, set()
        if not names:
            return
        try:
            with self.index_lock, self.cache.transact():
                for name in names:
                    handle = self.cache.get(name, read=True)
                    if handle is not None and not isinstance(handle, bytes):
                        handle.close()
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            log.warning("disk cache: LRU order not updated (%s)", exc)

    def _forget(self, name: str) -> None:
        with self.lock:
            self.files.pop(name, None)
            self.touched.discard(name)

    def _corrupt(self, name: str) -> bool:
        log.warning("disk cache entry %s is corrupt; dropped and fetched again", name)
        self._forget(name)
        try:
            with self.index_lock:
                self.cache.delete(name)
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            log.warning("disk cache: corrupt entry %s not dropped (%s); it is refused again when read", name, exc)
        return False

    async def put(self, key: Any, data: memoryview) -> None:
        await trio.to_thread.run_sync(self._put, key, data)

    def _put(self, key: Any, data: memoryview) -> None:
        self._touch()  # this write may evict: by the order that includes the latest reads
        written = None
        try:
            tag = checksums(data)
            written = self._write(data) if len(data) >= self.cache.disk.min_file_size else None
            with self.index_lock:
                # past the size limit, each write evicts the least recently used block (cull_limit=1: with 16,
                # diskcache dropped 16 at once, in a small cache the block just written among them); a block that
                # displaced a smaller one may leave the cache over its limit, which cull() then mends
                self.cache.set(index_key(key), written or bytes(data), tag=tag)
                written = None  # indexed: the file is the entry's now, also if the cull below fails
                if self.cache.volume() > self.cache.size_limit:
                    self.cache.cull()
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:  # a full disk costs caching, never the read
            log.warning("disk cache write failed (%s); serving without caching", exc)
            if written is not None:
                self.cache.disk.remove(written.filename)  # quietly: diskcache may have removed it already

    def _write(self, data: memoryview) -> Written:
        """The block's file, written before the index is locked."""
        filename, full_path = self.cache.disk.filename()
        try:
            try:
                write_file(full_path, data)
            except FileNotFoundError:  # the first file in its directory: no mkdir before every write
                os.makedirs(os.path.dirname(full_path), exist_ok=True)
                write_file(full_path, data)
        except OSError:
            self.cache.disk.remove(filename)  # a partial file (a full disk) is no entry
            raise
        return Written(filename, len(data))

    def volume(self) -> int:
        return int(self.cache.volume())

    def close(self) -> None:
        self._touch()
        with self.index_lock:
            self.cache.close()
