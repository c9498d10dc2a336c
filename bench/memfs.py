"""The warm-read yardstick: a trivial pyfuse3 filesystem serving one file from memory, on trio like s3fuse,
with the same 1 MiB kernel read-ahead. What it reaches is the most a Python FUSE layer can serve here.

    python bench/memfs.py MOUNTPOINT SIZE_MIB    (foreground; unmount with fusermount3 -u MOUNTPOINT)
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

from s3fuse.daemon import raise_read_ahead

NAME = b"big"
FILE_INODE = pyfuse3.ROOT_INODE + 1


class MemoryFS(pyfuse3.Operations):
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def _attrs(self, inode: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        is_file = inode == FILE_INODE
        attrs.st_mode = (stat.S_IFREG | 0o444) if is_file else (stat.S_IFDIR | 0o555)
        attrs.st_size = len(self.data) if is_file else 0
        attrs.st_nlink = 1 if is_file else 2
        attrs.entry_timeout = attrs.attr_timeout = 300
        return attrs

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        return self._attrs(inode)

    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        if parent_inode != pyfuse3.ROOT_INODE or name != NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(FILE_INODE)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self.data[off:off + size]


async def serve(mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pyfuse3.main)
        # as s3fuse's daemon does, once its loop answers: the stat waits for the kernel's INIT to be done,
        # whose reply would otherwise override the knob
        await trio.to_thread.run_sync(raise_read_ahead, mountpoint)


def main() -> None:
    mountpoint, size_mib = sys.argv[1], int(sys.argv[2])
    block = os.urandom(1 << 20)
    pyfuse3.init(MemoryFS(block * size_mib), mountpoint, {"fsname=memfs", "ro", "noatime"})
    try:
        trio.run(serve, mountpoint)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
