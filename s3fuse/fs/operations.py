"""The pyfuse3 Operations class: the one translation layer between kernel requests and the layers below.

It validates, translates names and attributes, and maps every failure to an errno (OSError from the layers,
S3Error from s3/ via its one table). It makes no S3 call itself.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from s3fuse.cache.blocks import BlockCache
from s3fuse.cache.prefetch import Prefetcher
from s3fuse.fs.handles import HandleTable, ReadHandle
from s3fuse.fs.inodes import ROOT_INO, Inode, InodeTable, join
from s3fuse.fs.namespace import Mount

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

PREFETCH_BYTES = 64 << 20


def errno_boundary(handler: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """OSError (S3Error included) -> FUSEError with its errno; a bug -> EIO and a traceback in the log, so one
    bad request never takes the whole mount (and its unflushed writes) down."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from exc
        except Exception as exc:
            log.exception("internal error in %s: answered EIO; please report this log", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from exc

    return wrapper


def decode(name: bytes) -> str:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "S3 keys are UTF-8: this name is not") from None


@dataclass
class DirHandle:
    directory: Inode
    names: list[tuple[str, bool]]


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, mount: Mount, table: InodeTable, cache: BlockCache) -> None:
        super().__init__()
        self.mount = mount
        self.table = table
        self.cache = cache
        self.handles = HandleTable()

    # -- attributes ------------------------------------------------------------------------------------------

    def attributes(self, inode: Inode) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        identity = self.mount.identity
        attrs.st_ino = inode.ino
        attrs.generation = 0
        attrs.entry_timeout = self.table.ttl
        attrs.attr_timeout = self.table.ttl
        attrs.st_mode = inode.kind | identity.mode
        attrs.st_nlink = 2 if inode.is_dir else 1
        attrs.st_uid = identity.uid
        attrs.st_gid = identity.gid
        attrs.st_rdev = 0
        attrs.st_size = 0 if inode.is_dir else inode.size
        attrs.st_blksize = self.cache.block_size
        attrs.st_blocks = (attrs.st_size + 511) // 512
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = inode.mtime_ns
        return attrs

    def entry(self, inode: Inode) -> pyfuse3.EntryAttributes:
        """Attributes handed to the kernel with a new reference (lookup, readdir, create...)."""
        inode.lookups += 1
        return self.attributes(inode)

    # -- metadata --------------------------------------------------------------------------------------------

    @errno_boundary
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        parent = self.table.get(parent_inode)
        if name == b".":
            return self.entry(parent)
        if name == b"..":
            return self.entry(self.table.known(parent.path.rpartition("/")[0]) or self.table.get(ROOT_INO))
        return self.entry(await self.table.lookup(parent, decode(name)))

    @errno_boundary
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.attributes(await self.table.refresh(self.table.get(inode)))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.table.forget(ino, count)

    @errno_boundary
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = pyfuse3.StatvfsData()
        stats.f_bsize = stats.f_frsize = 4096
        stats.f_blocks = stats.f_bfree = stats.f_bavail = 1 << 40  # S3 has no practical bound: report 4 PiB
        stats.f_files = stats.f_ffree = stats.f_favail = 1 << 32
        stats.f_namemax = 255
        return stats

    # -- directories -----------------------------------------------------------------------------------------

    @errno_boundary
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        directory = self.table.get(inode)
        if not directory.is_dir:
            raise OSError(errno.ENOTDIR, directory.path)
        entries = await self.table.list(directory)
        names = sorted((name, entry.is_dir) for name, entry in entries.items())
        return self.handles.add(DirHandle(directory, names))

    @errno_boundary
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self.handles.handles[fh]
        assert isinstance(handle, DirHandle)
        for index in range(start_id, len(handle.names)):
            name, is_dir = handle.names[index]
            path = join(handle.directory.path, name)
            inode = self.table.known(path) or self.table.remember(path, None, is_dir)
            if not pyfuse3.readdir_reply(token, name.encode("utf-8"), self.attributes(inode), index + 1):
                return
            inode.lookups += 1

    @errno_boundary
    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh)

    # -- files -----------------------------------------------------------------------------------------------

    @errno_boundary
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.table.get(inode)
        if node.is_dir:
            raise OSError(errno.EISDIR, node.path)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND) and self.mount.readonly:
            raise OSError(errno.EROFS, node.path)
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "writes are not supported yet")
        node = await self.table.refresh(node)
        handle = ReadHandle(node, self.table.key(node.path), node.etag, node.size,
                            Prefetcher(self.cache.block_size, PREFETCH_BYTES))
        self.table.pin(node.ino)
        return pyfuse3.FileInfo(fh=self.handles.add(handle), keep_cache=False)

    @errno_boundary
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.handles.handles[fh]
        assert isinstance(handle, ReadHandle)
        return await handle.read(self.cache, off, size)

    @errno_boundary
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        assert isinstance(handle, ReadHandle)
        self.table.unpin(handle.inode.ino)

    @errno_boundary
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        """Permissions are the kernel's (default_permissions); only EROFS is ours to say."""
        if mode & os.W_OK and self.mount.readonly:
            raise OSError(errno.EROFS, "read-only mount")
        return True
