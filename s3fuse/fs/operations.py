"""The pyfuse3 Operations class: the one translation layer between kernel requests and the layers below.

It validates, translates names and attributes, and maps every failure to an errno (OSError from the layers,
S3Error from s3/ via its one table). It makes no S3 call itself: reads and writes go through handles.py,
namespace changes through changes.py, attributes through the inode table and the overlay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from s3fuse.cache.blocks import BlockCache, Version
from s3fuse.cache.prefetch import Prefetcher
from s3fuse.fs import changes
from s3fuse.fs.handles import DirHandle, FileHandle, HandleTable, OpenFile, OpenFiles
from s3fuse.fs.inodes import ROOT_INO, Inode, InodeTable, parent_of
from s3fuse.fs.listing import Entry, name_problem
from s3fuse.fs.listing import join_path as join
from s3fuse.fs.namespace import Mount
from s3fuse.fs.overlay import Meta, Overlay
from s3fuse.fs.readahead import SiblingReadAhead
from s3fuse.fs.renames import NameGuard

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

PREFETCH_BYTES = 64 << 20
S3_XATTR = "user.s3."
SYMLINK_MODE = stat.S_IFLNK | 0o777


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


NOW = -1 << 63  # a time in changed(): the moment of the change (no time a client sets: see settable)
TIME_RANGE = (NOW + 1, (1 << 63) - 1)  # nanoseconds the overlay (SQLite integers) can hold


@dataclasses.dataclass
class Orphan:
    """What the overlay held for an inode whose name is gone while the kernel or a handle still holds it."""

    meta: Meta
    xattrs: dict[str, bytes]


def settable(nanoseconds: int) -> int:
    """A time a client sets, within what the overlay holds: ext4 too clamps times to its range."""
    return max(TIME_RANGE[0], min(TIME_RANGE[1], nanoseconds))


def forget_kernel_entry(parent_ino: int, path: str) -> None:
    """Have the kernel drop its cached entry (or negative entry) for `path`. Queued, not awaited: a request
    handler waiting for it could deadlock with the kernel's own locks (a read whose pages the kernel holds until
    it is answered, an open holding the directory while it waits for a lookup)."""
    try:
        pyfuse3.invalidate_entry_async(parent_ino, path.rpartition("/")[2].encode("utf-8"), ignore_enoent=True)
    except (OSError, RuntimeError) as exc:  # no FUSE session (unit tests)
        log.debug("kernel entry invalidation of /%s: %s", path, exc)


def decode(name: bytes) -> str:
    """A kernel name as an S3 key segment: UTF-8, at most 255 bytes, not "." or ".."."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "S3 keys are UTF-8: this name is not") from None
    problem = name_problem(text)
    if problem:
        raise OSError(errno.ENAMETOOLONG if "longer" in problem else errno.EINVAL, problem)
    return text


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    # The kernel gathers small writes into large requests (6-8x faster small writes) and computes O_APPEND
    # offsets itself; it may also read through a write-only handle to fill a partial page.
    enable_writeback_cache = True

    def __init__(self, mount: Mount, table: InodeTable, cache: BlockCache, files: OpenFiles,
                 overlay: Overlay) -> None:
        """`mount` is the root mount (`table.namespace.root`), `overlay` its metadata overlay."""
        super().__init__()
        mount.overlay = mount.overlay or overlay
        self.mount = mount
        self.namespace = table.namespace
        self.table = table
        self.cache = cache
        self.files = files
        files.uploaded = self.uploaded
        self.handles = HandleTable()
        # chmod, chown, times and xattrs of inodes whose name is gone while the kernel or a handle holds them
        # (fstat of an unlinked open file): their overlay row went with the name
        self.orphans: dict[int, Orphan] = {}
        self.names = NameGuard()
        self.siblings = SiblingReadAhead()
        # The writeback cache holds a file's writes in the kernel until close for anything below its dirty
        # limit, which would turn a streaming upload back into one at close: streaming mode goes without it.
        # So does direct I/O: a direct read is answered by s3fuse alone, and before a writer's cached pages
        # reached it, it would end the file where they begin (the kernel flushes only the range read).
        self.enable_writeback_cache = not (mount.config.streaming_upload or mount.config.direct_io)

    # -- attributes ------------------------------------------------------------------------------------------

    def mount_of(self, path: str) -> Mount:
        return self.namespace.mount_of(path)

    def overlay_of(self, path: str) -> Overlay:
        overlay = self.mount_of(path).overlay
        assert overlay is not None, "every mount has its overlay"
        return overlay

    def uploaded(self, file: OpenFile, replaced: str) -> None:
        """Our upload made a new version: the times set through this mount for the one it replaced (a `cp -p`
        sets them before the close that uploads) are the new one's, unless bytes were written after them."""
        overlay = self.overlay_of(file.inode.path)
        written = self.written_after_times(file, overlay.get(file.key))
        if written:
            overlay.update(file.key, mtime=written, ctime=written, etag=file.inode.etag)
        else:
            overlay.retag(file.key, replaced, file.inode.etag)

    def written_after_times(self, file: OpenFile | None, meta: Meta | None) -> int:
        """When `file` was last written through the mount, if that was after its times last changed and the
        kernel does not report write times itself (it does with its writeback cache, which streaming mode goes
        without); else 0. POSIX: a write sets mtime and ctime."""
        if file is None or self.enable_writeback_cache:
            return 0
        return file.written_ns if file.written_ns > ((meta.ctime if meta is not None else None) or 0) else 0

    def meta(self, inode: Inode) -> Meta | None:
        if inode.ino not in self.table.by_ino:
            return None
        if inode.detached:
            orphan = self.orphans.get(inode.ino)
            return orphan.meta if orphan is not None else None
        return self.overlay_of(inode.path).get(self.table.key(inode.path))

    def orphan(self, inode: Inode) -> None:
        """`inode` is about to lose its name: its metadata and user xattrs stay with it while it is held."""
        self.orphans[inode.ino] = Orphan(dataclasses.replace(self.meta(inode) or Meta()), self.user_xattrs(inode))

    def user_xattrs(self, node: Inode) -> dict[str, bytes]:
        """The user.* xattrs set through the mount: the overlay's, or an orphan's own (never a row under the
        placeholder path of a removed name, which a later inode of the same number would find)."""
        if node.detached:
            orphan = self.orphans.setdefault(node.ino, Orphan(Meta(), {}))
            return orphan.xattrs
        return self.overlay_of(node.path).xattrs(self.table.key(node.path))

    def drop_orphan(self, ino: int) -> None:
        """Forget an orphan's metadata once nothing holds the inode."""
        if ino not in self.table.by_ino:
            self.orphans.pop(ino, None)

    def attributes(self, inode: Inode) -> pyfuse3.EntryAttributes:
        meta = self.meta(inode) or Meta()
        identity = self.mount_of(inode.path).identity
        kind = stat.S_IFMT(meta.mode) if meta.mode is not None else inode.kind
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode.ino
        attrs.generation = inode.generation
        attrs.entry_timeout = self.table.ttl
        attrs.attr_timeout = self.table.ttl
        permissions = stat.S_IMODE(meta.mode) if meta.mode is not None else identity.mode
        if kind == stat.S_IFLNK:
            permissions = 0o777
        attrs.st_mode = kind | permissions
        if inode.detached:
            attrs.st_nlink = 0
        else:
            attrs.st_nlink = 2 + self.table.subdirectories(inode.path) if inode.is_dir else 1
        attrs.st_uid = identity.uid if meta.uid is None else meta.uid
        attrs.st_gid = identity.gid if meta.gid is None else meta.gid
        attrs.st_rdev = 0
        attrs.st_size = 0 if inode.is_dir else inode.size
        attrs.st_blksize = 1 << 20
        attrs.st_blocks = (attrs.st_size + 511) // 512
        current = meta.etag is None or meta.etag == inode.etag  # times set for this version of the object
        written = self.written_after_times(self.files.get(inode.ino), meta)
        mtime = written or (meta.mtime if current and meta.mtime is not None else inode.mtime_ns)
        attrs.st_mtime_ns = mtime
        attrs.st_atime_ns = meta.atime if current and meta.atime is not None else mtime
        attrs.st_ctime_ns = written or (meta.ctime if current and meta.ctime is not None else mtime)
        return attrs

    def entry(self, inode: Inode) -> pyfuse3.EntryAttributes:
        """Attributes handed to the kernel with a new reference (lookup, create, mkdir, symlink)."""
        inode.handed()
        return self.attributes(inode)

    def changed(self, inode: Inode, **times: int) -> None:
        """Record a metadata change time (and other times) in the overlay."""
        now = time.time_ns()
        values: dict[str, int | str] = {"ctime": now, "etag": inode.etag}
        written = self.written_after_times(self.files.get(inode.ino), self.meta(inode))
        if written:  # the row's ctime moves past the last write: its time must be in the row by then
            values["mtime"] = written
        values.update({name: (now if value == NOW else value) for name, value in times.items()})
        if inode.detached:
            kept = self.orphans.get(inode.ino)
            if kept is not None:
                for name, value in values.items():
                    setattr(kept.meta, name, value)
            return
        self.overlay_of(inode.path).update(self.table.key(inode.path), **values)

    def dir_changed(self, path: str) -> None:
        """A directory's entries changed: its mtime and ctime move (POSIX)."""
        parent = self.table.known(path)
        if parent is not None:
            self.changed(parent, mtime=NOW)

    def writable(self) -> None:
        """A hook to refuse every change at once (a stopping service); read-only mounts are changing()'s."""

    def changing(self, path: str) -> Mount:
        """The mount `path` belongs to, if it may be changed: EROFS on a read-only mount."""
        self.writable()
        mount = self.mount_of(path)
        if mount.readonly:
            raise OSError(errno.EROFS, f"{mount.uri} is mounted read-only")
        return mount

    def not_a_mount_point(self, path: str) -> None:
        if self.namespace.is_mount_point(path):
            raise OSError(errno.EBUSY, f"/{path} is a mount point: unmount it with s3fuse fs unmount")

    # -- metadata --------------------------------------------------------------------------------------------

    @errno_boundary
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        parent = self.table.get(parent_inode)
        if name == b".":
            return self.entry(parent)
        if name == b"..":
            return self.entry(self.parent_dir(parent))
        async with self.name_held(parent, name):
            inode = await self.table.lookup(parent, decode(name))
            await self.files.stores_settled(inode)
            return self.entry(inode)

    @errno_boundary
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = held = self.table.get(inode)
        # a HEAD of a key a directory rename has deleted but not yet moved in the table would say ENOENT
        async with self.names.changing_names(lambda: (held.path,)):
            # an open file's attributes are the table's (its version, or its writes): fstat and the kernel's checks
            # before a read need no S3, also while S3 cannot be reached; its name is looked up anew after the TTL
            if self.files.get(inode) is None:
                node = await self.table.as_the_kernel_knows(node)
            return self.attributes(node)

    @errno_boundary
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.table.get(inode)
        async with self.names.changing_names(lambda: (node.path,)):
            self.changing(node.path)
            if fields.update_size:
                await self.truncate(node, attr.st_size, fh)
            meta = self.meta(node) or Meta()
            changes_: dict[str, int] = {}
            if fields.update_mode:
                kind = stat.S_IFMT(meta.mode) if meta.mode is not None else node.kind
                changes_["mode"] = kind | stat.S_IMODE(attr.st_mode)
            if fields.update_uid:
                changes_["uid"] = attr.st_uid
            if fields.update_gid:
                changes_["gid"] = attr.st_gid
            if fields.update_atime:
                changes_["atime"] = settable(attr.st_atime_ns)
            if fields.update_mtime:
                changes_["mtime"] = settable(attr.st_mtime_ns)
            if fields.update_ctime:
                changes_["ctime"] = settable(attr.st_ctime_ns)
            if changes_ or fields.update_size:
                self.changed(node, **changes_)
            return self.attributes(node)

    async def truncate(self, node: Inode, size: int, fh: int | None) -> None:
        """ftruncate(fd) is uploaded by that handle's close, as its writes are. truncate(path) has no close to
        wait for, also while readers hold the file open: S3 holds the truncated file when it returns, as when
        nobody has it open. Not while a writer has it open with the kernel's writeback cache: the kernel may still
        hold its latest writes (it flushes nothing before a size change), so this copy lacks them, and uploading it
        would put into S3 a version that never existed (zeros where the writer's bytes are). The truncation then
        reaches S3 with that writer's fsync or close, as its writes do."""
        if node.is_dir:
            raise OSError(errno.EISDIR, node.path)
        file = joined = self.files.get(node.ino)
        if file is None:
            mount = self.mount_of(node.path)
            file = self.files.open(node, self.table.key(node.path), mount.client, mount.config)
        upload = fh is None and not (self.enable_writeback_cache and file.writers)
        try:
            async with file.feeding.held(), file.lock:  # no store into the page cache while its size changes
                await file.truncate(size)
                if upload:
                    await file.commit()
        finally:
            if joined is None:
                await self.files.close(file)
        if upload and not file.dirty:
            self.table.saved(node)
            self.table.settled(node)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.table.forget(ino, count)
            self.drop_orphan(ino)

    @errno_boundary
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = pyfuse3.StatvfsData()
        stats.f_bsize = stats.f_frsize = 4096
        stats.f_blocks = stats.f_bfree = stats.f_bavail = 1 << 40  # S3 has no practical bound: report 4 PiB
        stats.f_files = stats.f_ffree = stats.f_favail = 1 << 32
        stats.f_namemax = 255
        return stats

    @errno_boundary
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        """Permissions are the kernel's (default_permissions); only EROFS is ours to say."""
        if mode & os.W_OK:
            self.changing(self.table.get(inode).path)
        return True

    # -- directories -----------------------------------------------------------------------------------------

    @errno_boundary
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        directory = self.table.get(inode)
        async with self.names.changing_names(lambda: (directory.path,)):
            if not directory.is_dir:
                raise OSError(errno.ENOTDIR, directory.path)
            return self.handles.add(DirHandle(directory, await self.entries_of(directory)))

    def parent_dir(self, directory: Inode) -> Inode:
        """What `..` names: the root for the root, and for a directory whose parent the table no longer has."""
        return self.table.known(parent_of(directory.path)) or self.table.get(ROOT_INO)

    async def entries_of(self, directory: Inode) -> list[Entry]:
        return sorted((await self.table.list(directory)).values(), key=lambda entry: entry.name)

    @errno_boundary
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self.handles.directory(fh)
        if start_id == 0 and handle.read_from:  # rewinddir: the directory as it is now (POSIX)
            handle.entries = await self.entries_of(handle.directory)
        handle.read_from = True
        directory = handle.directory
        dots = ((b".", directory), (b"..", self.parent_dir(directory)))
        for index in range(start_id, len(dots)):  # no lookup counted: the kernel takes no reference to them
            dot_name, dot = dots[index]
            if not pyfuse3.readdir_reply(token, dot_name, self.attributes(dot), index + 1):
                return
        for index in range(max(0, start_id - len(dots)), len(handle.entries)):
            name = handle.entries[index].name
            inode = self.table.listed(join(directory.path, name), handle.entries[index])
            if inode is None:  # removed since opendir (POSIX leaves it to us whether it shows)
                continue
            await self.files.stores_settled(inode)
            if not pyfuse3.readdir_reply(token, name.encode("utf-8"), self.attributes(inode),
                                         len(dots) + index + 1):
                return
            inode.handed()

    @errno_boundary
    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh)

    @errno_boundary
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
                    ) -> pyfuse3.EntryAttributes:
        async with self.name_held(self.table.get(parent_inode), name):
            parent, path, mount = await self.new_name(parent_inode, name)
            await changes.make_marker(mount.client, self.table.dir_prefix(path))
            inode = self.table.created(path, is_dir=True)
            self.changed(inode, **self.created_by(parent, ctx, stat.S_IFDIR | stat.S_IMODE(mode)), mtime=NOW, atime=NOW)
            self.dir_changed(parent.path)
            return self.entry(inode)

    def created_by(self, parent: Inode, ctx: pyfuse3.RequestContext, mode: int) -> dict[str, int]:
        """Mode and owner of a new entry. A set-group-ID directory gives it its group, and a new directory its
        set-group-ID bit too, as Linux file systems do (the kernel leaves this to a FUSE file system): shared
        group directories rely on it."""
        parent_attributes = self.attributes(parent)
        if not parent_attributes.st_mode & stat.S_ISGID:
            return {"mode": mode, "uid": ctx.uid, "gid": ctx.gid}
        if stat.S_ISDIR(mode):
            mode |= stat.S_ISGID
        return {"mode": mode, "uid": ctx.uid, "gid": parent_attributes.st_gid}

    def name_held(self, parent: Inode, name: bytes) -> contextlib.AbstractAsyncContextManager[None]:
        """The name kept apart from a rename of its directory (renames.py) while an operation works on it."""
        text = decode(name)
        return self.names.changing_names(lambda: (join(parent.path, text),))

    async def new_name(self, parent_inode: int, name: bytes) -> tuple[Inode, str, Mount]:
        """The parent, path and mount of a name about to be created: writable, and free (else EEXIST)."""
        parent = self.table.get(parent_inode)
        path = join(parent.path, decode(name))
        mount = self.changing(path)
        if await self.existing(parent, name) is not None:
            raise OSError(errno.EEXIST, path)
        return parent, path, mount

    @errno_boundary
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.table.get(parent_inode)
        async with self.name_held(parent, name):
            inode = await self.table.lookup(parent, decode(name))
            if not inode.is_dir:
                raise OSError(errno.ENOTDIR, inode.path)
            self.not_a_mount_point(inode.path)
            mount = self.changing(inode.path)
            await self.remove_dir(mount, inode)
            self.orphan(inode)
            self.overlay_of(inode.path).delete(self.table.key(inode.path))
            self.table.removed(inode.path)
            self.drop_orphan(inode.ino)
            await self.keep_directory(mount, parent.path)
            self.dir_changed(parent.path)

    async def keep_directory(self, mount: Mount, path: str) -> None:
        """Directory `path` lost an entry: it gets a marker when S3 may hold no key under it any more. No LIST
        while its listing still names an object (an `rm -rf` of N files sent N of them)."""
        if not self.table.holds_objects(path):
            await changes.keep_parent(mount.client, self.table.dir_prefix(path))

    async def remove_dir(self, mount: Mount, directory: Inode) -> None:
        """Its marker; ENOTEMPTY while S3 holds a key below it, or a file is open below it (a new one is not in
        S3 before its close, which would bring the directory back)."""
        prefix = self.table.dir_prefix(directory.path)
        if self.files.below(mount.client, prefix):
            raise OSError(errno.ENOTEMPTY, f"{directory.path}: a file below it is open")
        await changes.remove_dir(mount.client, prefix)

    # -- files -----------------------------------------------------------------------------------------------

    @errno_boundary
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = held = self.table.get(inode)
        async with self.names.changing_names(lambda: (held.path,)):
            if node.is_dir:
                raise OSError(errno.EISDIR, node.path)
            # O_TRUNC changes the file also with O_RDONLY (Linux truncates; write permission was checked): this
            # open's close uploads it, as a writer's does (the kernel sends no write through it)
            writable = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC))
            mount = self.changing(node.path) if writable else self.mount_of(node.path)
            if not self.files.answers_for(inode):
                node = await self.table.as_the_kernel_knows(node)
            file = self.files.open(node, self.table.key(node.path), mount.client, mount.config, writable=writable)
            with self.files.joining(file, writable):
                await file.follow(node)
                if flags & os.O_TRUNC:
                    async with file.lock:
                        await file.truncate(0)
                    self.changed(node, mtime=NOW)
                keep_cache = node.page_cache_etag == node.etag and not file.dirty
                node.page_cache_etag = node.etag  # an open without keep_cache (a direct one too) empties the page cache
                await file.feeding.settled()  # no store of older bytes may land after this open (pagecache.py)
            self.table.pin(node.ino)
            handle = FileHandle(file, writable, Prefetcher(self.cache.block_size, PREFETCH_BYTES))
            if not writable:
                self.read_ahead_siblings(node)
            # opt-in, as it costs shared maps (ENODEV) and the kernel's read-ahead; writers keep the page cache
            direct_io = mount.config.direct_io and not writable
            return pyfuse3.FileInfo(fh=self.handles.add(handle), keep_cache=keep_cache, direct_io=direct_io)

    def read_ahead_siblings(self, node: Inode) -> None:
        """A reader going through a directory's files in order gets the next small ones fetched (readahead.py)."""
        directory = parent_of(node.path)
        listing = self.table.cached_listing(directory)
        if listing is None:
            return
        for entry in self.siblings.next_files(directory, listing.entries, node.path.rpartition("/")[2]):
            path = join(directory, entry.name)
            version = Version(self.mount_of(path).client, self.table.key(path), entry.etag, entry.size)
            self.cache.prefetch(version, range(1))

    @errno_boundary
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        async with self.name_held(self.table.get(parent_inode), name):
            parent, path, mount = await self.new_name(parent_inode, name)
            inode = self.table.created(path, is_dir=False)
            file = self.files.open(inode, self.table.key(path), mount.client, mount.config, new=True, writable=True)
            with self.files.joining(file, True):
                self.changed(inode, **self.created_by(parent, ctx, stat.S_IFREG | stat.S_IMODE(mode)), mtime=NOW,
                             atime=NOW)
            self.dir_changed(parent.path)
            self.table.pin(inode.ino)
            handle = FileHandle(file, True, Prefetcher(self.cache.block_size, PREFETCH_BYTES))
            return pyfuse3.FileInfo(fh=self.handles.add(handle)), self.entry(inode)

    @errno_boundary
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
                    ) -> pyfuse3.EntryAttributes:
        """Regular files only: S3 cannot hold FIFOs, sockets or device nodes."""
        if not stat.S_ISREG(mode):
            raise OSError(errno.EPERM, "S3 cannot hold special files")
        info, attrs = await self.create(parent_inode, name, mode, os.O_WRONLY, ctx)
        await self.release(info.fh)
        return attrs

    @errno_boundary
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        """A view of a cached block where it can be: pyfuse3 replies from any buffer (handlers.pxi), so the
        bytes are not copied once more on their way to the kernel."""
        log.debug("read fh=%d off=%d size=%d", fh, off, size)
        handle = self.handles.file(fh)
        file = handle.file
        if file.streaming is not None:  # a read of streamed bytes changes how the file is written
            async with file.lock:
                return await file.read(off, size, handle.prefetcher)
        version = (file.key, file.base_etag)
        try:
            # no lock: readers run in parallel, and a staged file reads on while its upload holds the lock
            return await file.read(off, size, handle.prefetcher)
        except OSError as exc:
            if exc.errno != errno.ESTALE:
                raise
            async with file.lock:  # a rename holds the files it moves until their keys have moved
                moved = (file.key, file.base_etag) != version
            if moved:  # the read asked for the old key after the rename's copy had replaced it
                return await file.read(off, size, handle.prefetcher)
            await self.replaced_under(file)
            raise

    async def replaced_under(self, file: OpenFile) -> None:
        """Another writer replaced the object under a clean open file (a GET's If-Match failed): this open
        keeps failing with ESTALE (the kernel holds the old size for its inode and the bytes it already read),
        but the table learns the new version now and the kernel forgets the name, so the next open looks it up
        and reads the new one, instead of every open failing until the metadata TTL ran out."""
        node = file.inode
        if node.etag == file.base_etag:  # not learned yet (from an earlier read, or a listing): ask S3
            try:
                node = await self.table.refresh(node, now=True)
                change = "replaced"
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                change = "deleted or renamed away"
            node.page_cache_etag = ""
            log.warning("%s was %s in S3 while open (after this open learnt its version): reads of this open fail "
                        "with ESTALE, as the bytes it was reading are gone; open the name again", node.path, change)
        parent = self.table.known(parent_of(node.path))
        if parent is not None:
            forget_kernel_entry(parent.ino, node.path)

    @errno_boundary
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles.file(fh)
        if not handle.writable:
            raise OSError(errno.EBADF, "not open for writing")
        file = handle.file
        async with file.lock:
            # the offset as given, also for an O_APPEND handle: the kernel placed an append at the end, and a
            # shared map's dirty pages come back through any writable handle, at their own offsets
            return await file.write(off, buf)

    @errno_boundary
    async def flush(self, fh: int) -> None:
        """close(): the bytes are in S3 when it returns 0; a failed upload is EIO, with the bytes kept."""
        handle = self.handles.file(fh)
        if handle.writable:
            await self.commit(handle)

    @errno_boundary
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.commit(self.handles.file(fh))

    async def commit(self, handle: FileHandle) -> None:
        file = handle.file
        async with file.lock:
            await file.commit()
        self.table.saved(file.inode)

    @errno_boundary
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        assert isinstance(handle, FileHandle)
        uploads = handle.writable or handle.file.dirty  # the last close uploads what no flush did
        await self.files.close(handle.file, handle.writable)
        if uploads and not handle.file.dirty:  # (another handle may be rewriting it: not in S3 yet)
            self.table.saved(handle.file.inode)
            self.table.settled(handle.file.inode)
        self.table.unpin(handle.file.inode.ino)
        self.drop_orphan(handle.file.inode.ino)

    # -- namespace -------------------------------------------------------------------------------------------

    @errno_boundary
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.table.get(parent_inode)
        async with self.name_held(parent, name):
            inode = await self.table.lookup(parent, decode(name))
            if inode.is_dir:
                raise OSError(errno.EISDIR, inode.path)
            mount = self.changing(inode.path)
            key = self.table.key(inode.path)
            await self.detach(inode)
            file = self.files.get(inode.ino)
            # not a new file S3 never held (an open file truncated to 0 still is; a streamed one is once detached)
            if file is None or inode.etag or file.base_etag:
                await mount.client.delete(key)
            self.orphan(inode)
            self.overlay_of(inode.path).delete(key)
            self.table.removed(inode.path)
            self.drop_orphan(inode.ino)
            self.cache.drop(mount.client.bucket, key)
            await self.keep_directory(mount, parent.path)
            self.dir_changed(parent.path)

    async def detach(self, inode: Inode) -> list[OpenFile]:
        """A file about to lose its name while open keeps its bytes locally and lives on through its handles;
        so does every other open file of the same object (an open that raced an earlier rename over this name
        holds an inode detached already). Those open files."""
        detached = self.files.of_object(self.mount_of(inode.path).client, self.table.key(inode.path))
        for file in detached:
            async with file.lock:
                await file.ensure_stage()
                file.unlinked = True
        return detached

    @errno_boundary
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
                     flags: int, ctx: pyfuse3.RequestContext) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "RENAME_EXCHANGE cannot be atomic on S3")
        if flags & ~pyfuse3.RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, f"rename flags {flags:#x}: only RENAME_NOREPLACE is supported")
        old_parent, new_parent = self.table.get(parent_inode_old), self.table.get(parent_inode_new)
        old_name, new_name = decode(name_old), decode(name_new)
        async with self.names.renaming_tree(lambda: (join(old_parent.path, old_name), join(new_parent.path, new_name))):
            source = await self.table.lookup(old_parent, old_name)
            new_path = join(new_parent.path, new_name)
            if new_path == source.path:
                return
            mount = self.changing(source.path)
            if self.changing(new_path) is not mount:
                raise OSError(errno.EXDEV, "rename across mount points")
            self.not_a_mount_point(source.path)
            self.not_a_mount_point(new_path)
            if source.is_dir and (new_path + "/").startswith(source.path + "/"):
                raise OSError(errno.EINVAL, "cannot move a directory into itself")
            target = await self.existing(new_parent, name_new)
            detached: list[OpenFile] = []
            if target is not None:
                if flags & pyfuse3.RENAME_NOREPLACE:
                    raise OSError(errno.EEXIST, new_path)
                if source.is_dir and not target.is_dir:
                    raise OSError(errno.ENOTDIR, new_path)
                if target.is_dir and not source.is_dir:
                    raise OSError(errno.EISDIR, new_path)
                if target.is_dir:
                    await self.remove_dir(mount, target)
                else:
                    detached = await self.detach(target)
                self.orphan(target)
            try:
                await self.move(mount, source, new_path, target)
            except BaseException:
                for file in detached:  # the target keeps its name: its open files upload again
                    file.unlinked = False
                if target is not None:
                    self.orphans.pop(target.ino, None)
                raise
            await self.keep_directory(mount, old_parent.path)
            self.changed(source)
            self.dir_changed(old_parent.path)
            self.dir_changed(new_parent.path)

    async def move(self, mount: Mount, source: Inode, new_path: str, target: Inode | None) -> None:
        """The copies and deletes of a rename, and everything that follows the name: open files, overlay rows,
        cached blocks, the table."""
        old_key, new_key = self.table.key(source.path), self.table.key(new_path)
        moving = self.moving(mount, source)
        async with self.files.held(moving):
            if source.is_dir:
                old_prefix, new_prefix = self.table.dir_prefix(source.path), self.table.dir_prefix(new_path)
                copies = await changes.rename_dir(mount.client, mount.config, old_prefix, new_prefix)
            else:
                old_prefix, new_prefix = old_key, new_key
                etag = await changes.rename_file(mount.client, mount.config, old_key, new_key, source.size)
                shown = self.attributes(source)
                copies = {new_key: changes.Copy(source.etag, etag, shown.st_mtime_ns)}
            for file in moving:  # open files move with their handles: later bytes go to the new keys
                file.key = new_prefix + file.key[len(old_prefix):]
            overlay = self.overlay_of(source.path)
            with overlay.batch():
                overlay.rename(old_key, new_key)
                for key, copy in copies.items():
                    if not key.endswith("/"):  # a directory's marker: its times are not the overlay's
                        overlay.copied(key, *copy)
            self.cache.drop(mount.client.bucket, old_key)
            self.table.moved(source.path, new_path)
            if target is not None:
                self.drop_orphan(target.ino)
            self.files.retag(self.table.took_copies(new_path, source.is_dir, copies))

    async def existing(self, parent: Inode, name: bytes) -> Inode | None:
        try:
            return await self.table.lookup(parent, decode(name))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def moving(self, mount: Mount, source: Inode) -> list[OpenFile]:
        """The open files a rename of `source` moves: the file's own, or every one below the directory."""
        if source.is_dir:
            return self.files.below(mount.client, self.table.dir_prefix(source.path))
        file = self.files.get(source.ino)
        return [] if file is None else [file]

    # -- symlinks and links ----------------------------------------------------------------------------------

    @errno_boundary
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
                      ) -> pyfuse3.EntryAttributes:
        """Stored the s3fs way: the body is the target, x-amz-meta-mode carries S_IFLNK."""
        async with self.name_held(self.table.get(parent_inode), name):
            parent, path, mount = await self.new_name(parent_inode, name)
            metadata = {"mode": str(SYMLINK_MODE)}
            etag = await mount.client.put(self.table.key(path), target, metadata)
            inode = self.table.created(path, is_dir=False)
            inode.size, inode.etag, inode.metadata = len(target), etag, metadata
            self.table.saved(inode)  # its listing entry: a lookup after the kernel forgets it reads len(target)
            self.changed(inode, **self.created_by(parent, ctx, SYMLINK_MODE), mtime=NOW, atime=NOW)
            self.dir_changed(parent.path)
            return self.entry(inode)

    @errno_boundary
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.table.get(inode)
        if node.kind != stat.S_IFLNK and stat.S_IFMT((self.meta(node) or Meta()).mode or 0) != stat.S_IFLNK:
            raise OSError(errno.EINVAL, "not a symbolic link")
        async with self.names.changing_names(lambda: (node.path,)):
            version = Version(self.mount_of(node.path).client, self.table.key(node.path), node.etag, node.size)
            return bytes(await self.cache.read(version, 0, node.size))

    @errno_boundary
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
                   ) -> pyfuse3.EntryAttributes:
        raise OSError(errno.EPERM, "S3 has no hard links")

    # -- extended attributes ---------------------------------------------------------------------------------

    async def s3_xattrs(self, node: Inode) -> dict[str, bytes]:
        """user.s3.* from the object itself (one HEAD when the listing had no metadata); none once its name is
        gone."""
        if node.is_dir or node.detached:
            return {}
        file = self.files.get(node.ino)
        if file is None or not file.dirty:  # a dirty file's S3 metadata is about to be replaced anyway
            held = node
            async with self.names.changing_names(lambda: (held.path,)):  # not a HEAD of a key a rename deleted
                node = await self.table.details(node)
        found = {f"{S3_XATTR}etag": node.etag.encode()}
        if node.content_type:
            found[f"{S3_XATTR}content_type"] = node.content_type.encode()
        for name, value in (node.metadata or {}).items():
            found[f"{S3_XATTR}meta.{name}"] = value.encode()
        return found

    @errno_boundary
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.table.get(inode)
        text = name.decode("utf-8", "surrogateescape")
        if not text.startswith("user."):
            # no security.*, system.posix_acl_* or trusted.* here: ENOTSUP, as from NFS without labels, not ENOATTR.
            # ls -l then stops asking for the rest of the directory (coreutils remembers an unsupported device):
            # ENOATTR cost it two daemon round trips per file, more than half the time of an `ls -l`
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        values = await self.s3_xattrs(node) if text.startswith(S3_XATTR) else self.user_xattrs(node)
        if text not in values:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return values[text]

    @errno_boundary
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        """The xattrs set through the mount. The read-only user.s3.* ones are answered by name but not listed:
        copying tools (cp -a, rsync -X, tar --xattrs) copy what is listed, and would fail to set them on a copy
        in the mount (EPERM) or carry another object's ETag to a local one; listing them also cost a HEAD."""
        node = self.table.get(inode)
        return [name.encode("utf-8", "surrogateescape") for name in self.user_xattrs(node)]

    @errno_boundary
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self.table.get(inode)
        self.changing(node.path)
        text = self.user_xattr(name)
        if node.detached:
            self.user_xattrs(node)[text] = value
        else:
            self.overlay_of(node.path).set_xattr(self.table.key(node.path), text, value)
        self.changed(node)

    @errno_boundary
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self.table.get(inode)
        self.changing(node.path)
        text = self.user_xattr(name)
        removed = self.user_xattrs(node).pop(text, None) is not None if node.detached \
            else self.overlay_of(node.path).remove_xattr(self.table.key(node.path), text)
        if not removed:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        self.changed(node)

    @staticmethod
    def user_xattr(name: bytes) -> str:
        """A name we may change: user.* but not the read-only user.s3.* view of the object."""
        text = name.decode("utf-8", "surrogateescape")
        if text.startswith(S3_XATTR):
            raise OSError(errno.EPERM, "user.s3.* attributes come from the object and are read-only")
        if not text.startswith("user.") or len(name) > 255:
            raise OSError(errno.ENOTSUP, "only user.* extended attributes are kept")
        return text
