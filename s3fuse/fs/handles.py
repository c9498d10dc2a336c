"""Open files. A read handle pins the object version (key, ETag, size) it was opened on, so a reader never
mixes bytes of two versions, and feeds its prefetcher."""

from __future__ import annotations

from dataclasses import dataclass, field

from s3fuse.cache.blocks import BlockCache
from s3fuse.cache.prefetch import Prefetcher
from s3fuse.fs.inodes import Inode


@dataclass
class ReadHandle:
    inode: Inode
    key: str
    etag: str
    size: int
    prefetcher: Prefetcher

    async def read(self, cache: BlockCache, offset: int, length: int) -> bytes:
        data = await cache.read(self.key, self.etag, self.size, offset, length)
        ahead = self.prefetcher.advise(offset, len(data))
        if ahead:
            cache.prefetch(self.key, self.etag, self.size, ahead)
        return data


@dataclass
class HandleTable:
    """File handle numbers for open files and directories."""

    handles: dict[int, object] = field(default_factory=dict)
    next_fh: int = 1

    def add(self, handle: object) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = handle
        return fh

    def pop(self, fh: int) -> object:
        return self.handles.pop(fh)
