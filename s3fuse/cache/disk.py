"""The disk tier of the block cache (diskcache): survives a remount, bounded by `alluxio.user.client.cache.size`
with LRU eviction, and checked on every read so a corrupt or truncated entry is refetched, never returned."""

from __future__ import annotations

import logging
import os
import zlib
from typing import Any

import diskcache
import trio

log = logging.getLogger(__name__)


class DiskCache:
    def __init__(self, directory: str, size_limit: int) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        self.cache = diskcache.Cache(directory, size_limit=size_limit,
                                     eviction_policy="least-recently-used", cull_limit=16)

    async def get(self, key: Any, expected_length: int) -> bytes | None:
        return await trio.to_thread.run_sync(self._get, key, expected_length)

    def _get(self, key: Any, expected_length: int) -> bytes | None:
        try:
            data, checksum = self.cache.get(key, tag=True)
        except (OSError, diskcache.Timeout) as exc:
            log.warning("disk cache read of %s failed (%s); fetching from S3", key[1:], exc)
            return None
        if data is None:
            return None
        if not isinstance(data, bytes) or len(data) != expected_length or zlib.adler32(data) != checksum:
            log.warning("disk cache entry for %s is corrupt; dropped and fetched again", key[1:])
            self.cache.delete(key)
            return None
        return data

    def has(self, key: Any) -> bool:
        """An index lookup only (no file read): cheap enough for the event loop."""
        try:
            return key in self.cache
        except (OSError, diskcache.Timeout):
            return False

    async def put(self, key: Any, data: bytes) -> None:
        await trio.to_thread.run_sync(self._put, key, data)

    def _put(self, key: Any, data: bytes) -> None:
        try:
            # bytes are stored as a plain file, no pickling; adler32 is 3-4x cheaper than crc32 per block and
            # enough to catch a corrupt file (a truncated one already fails the length check)
            self.cache.set(key, data, tag=zlib.adler32(data))
        except (OSError, diskcache.Timeout) as exc:  # a full disk costs caching, never the read
            log.warning("disk cache write failed (%s); serving without caching", exc)

    def volume(self) -> int:
        return int(self.cache.volume())

    def close(self) -> None:
        self.cache.close()
