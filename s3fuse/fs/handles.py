"""Open files. Every handle of one inode shares one OpenFile, so a write through one handle is read back
through another before close. An OpenFile starts clean (reads come from the block cache, pinned to the ETag
it was opened on); the first write either streams (sequential writes, streaming mode) or stages the file
locally, fetching the object's bytes only when a write needs them. `commit()` makes S3 hold exactly these
bytes; a failed commit keeps them in the recovery folder and says where.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import trio

from s3fuse.cache.blocks import BlockCache, Version
from s3fuse.cache.prefetch import Prefetcher
from s3fuse.config import Config
from s3fuse.fs.inodes import Inode, Retag
from s3fuse.fs.listing import Entry
from s3fuse.fs.pagecache import Feeding, PageCacheFeed
from s3fuse.parallel import bounded_map
from s3fuse.s3.client import S3Client
from s3fuse.upload import recovery
from s3fuse.upload.staged import remove_quietly, upload_file
from s3fuse.upload.streaming import StreamingUpload

log = logging.getLogger(__name__)


INLINE_IO = 1 << 20  # smaller local reads/writes run on the loop: a thread hop would cost more than the copy
# a file up to this size we just uploaded goes into the block cache as it is, under its new ETag: programs read
# back what they wrote (a build's outputs, a CSV written then loaded), and the GET would cost 5 ms or more
KEEP_UPLOADED = 1 << 20


class StageFile:
    """A staged file kept open for the life of its OpenFile (one open(2) per file, not per write). Reads take
    no lock (they go on while an upload holds the file's), so a close waits for the reads on worker threads:
    a descriptor closed under them could be reused by another file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        self.threaded_reads = 0
        self.closing = False

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if len(data) < INLINE_IO:
            os.pwrite(self.fd, data, offset)
        else:
            await trio.to_thread.run_sync(os.pwrite, self.fd, data, offset)

    async def read(self, offset: int, length: int) -> bytes:
        if length < INLINE_IO:
            return os.pread(self.fd, length, offset)
        self.threaded_reads += 1
        try:
            return await trio.to_thread.run_sync(os.pread, self.fd, length, offset)
        finally:
            self.threaded_reads -= 1
            if self.closing:
                self.close()

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)

    def close(self) -> None:
        self.closing = True
        if self.fd >= 0 and not self.threaded_reads:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Staging:
    """Where staged files live (`alluxio.tmp.dirs`) and where failed uploads are kept."""

    directory: str

    def __post_init__(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.makedirs(self.recovery_dir, mode=0o700, exist_ok=True)

    @property
    def recovery_dir(self) -> str:
        return recovery.folder(os.path.dirname(self.directory.rstrip("/")) or "/")

    def new_file(self) -> str:
        handle, path = tempfile.mkstemp(prefix="stage-", dir=self.directory)
        os.close(handle)
        return path

    def keep(self, path: str, bucket: str, key: str) -> str:
        """Move a staged file that could not be uploaded into the recovery folder; its new path."""
        return recovery.keep(self.recovery_dir, path, bucket, key)


@dataclass
class OpenFile:
    inode: Inode
    key: str
    client: S3Client
    cache: BlockCache
    config: Config
    staging: Staging
    nursery: trio.Nursery | None
    base_etag: str  # the S3 version this file's clean bytes come from ("" for a new file)
    size: int
    stage: StageFile | None = None  # a local file holding every byte, once a write needed it
    dirty: bool = False
    written_ns: int = 0  # when bytes were last written through this mount (0: never)
    streaming: StreamingUpload | None = None
    handles: int = 0
    writers: int = 0  # handles open for writing (with the kernel's writeback cache, their last writes may be its own)
    unlinked: bool = False
    recovered: str | None = None
    lost_write: OSError | None = None  # a write that failed locally: never upload the file without it
    uploaded: Callable[[OpenFile, str], None] | None = None  # after our upload: (file, the ETag it replaced)
    feed: PageCacheFeed | None = None
    feeding: Feeding = field(default_factory=Feeding)
    lock: trio.Lock = field(default_factory=trio.Lock)

    @property
    def clean(self) -> bool:
        """Its bytes are all the S3 version's: nothing staged, streamed or written."""
        return self.stage is None and self.streaming is None and not self.dirty

    def feedable(self, version: Version) -> bool:
        """Whether `version`'s bytes may go into the kernel's page cache now (pagecache.py): it is what this file
        holds and what the kernel caches for the inode, and no handle writes (its bytes may be in those pages)."""
        inode = self.inode
        return self.clean and not self.writers and not self.unlinked and self.size == version.size == inode.size \
            and self.base_etag == version.etag == inode.etag == inode.page_cache_etag

    def behind(self, inode: Inode) -> bool:
        """Another writer replaced the object since this file's version, and nothing here is unsaved."""
        return not self.dirty and self.base_etag != inode.etag

    async def follow(self, inode: Inode) -> None:
        """Move to the inode's version when `behind` it (an open file with writers is not left behind, see
        OpenFiles.open). Under the lock: no write runs on the staged copy this drops, and no download of the old
        version's blocks goes on into it."""
        if not self.behind(inode):  # (an upload under way holds the lock: no wait for it)
            return
        async with self.lock:
            if self.behind(inode):
                self.drop_stage()
                self.base_etag, self.size = inode.etag, inode.size

    def version(self) -> Version:
        """The S3 version this file's clean bytes come from."""
        return Version(self.client, self.key, self.base_etag, self.size)

    # -- staging ---------------------------------------------------------------------------------------------

    async def ensure_stage(self, keep_bytes: int | None = None) -> StageFile:
        """The local copy; only the first `keep_bytes` of the object are fetched (all when None)."""
        if self.streaming is not None:
            await self.stop_streaming()
        if self.stage is None:
            stage = StageFile(self.staging.new_file())
            wanted = min(self.size, self.size if keep_bytes is None else keep_bytes)
            try:
                if wanted and self.base_etag:
                    await self._download(stage, wanted)
                stage.truncate(wanted)
            except BaseException:
                stage.close()
                remove_quietly(stage.path)
                raise
            self.stage = stage
        return self.stage

    async def _download(self, stage: StageFile, length: int) -> None:
        block = self.cache.block_size

        async def fetch(number: int) -> None:
            data = await self.cache.block(self.version(), number)
            await stage.write(number * block, data[:max(0, length - number * block)])

        await bounded_map(fetch, range(-(-length // block)), max(1, self.config.threads // 4))

    async def stop_streaming(self) -> None:
        """A write the stream cannot take (not at its end), or a read of streamed bytes: continue staged.
        Before any part left, the one local partition becomes the stage; after, the upload is completed and
        the object fetched back (it is briefly visible with the bytes written so far)."""
        stream, self.streaming = self.streaming, None
        assert stream is not None
        if not stream.started():
            self.stage = StageFile(stream.take_local() or self.staging.new_file())
            return
        log.info("%s: non-sequential access during a streaming upload: completing it and staging locally", self.key)
        self.base_etag = await stream.finish()
        await self.ensure_stage()

    # -- data ------------------------------------------------------------------------------------------------

    async def read(self, offset: int, length: int, prefetcher: Prefetcher) -> bytes | memoryview:
        if self.streaming is not None:
            await self.stop_streaming()
        if self.stage is not None:
            end = min(self.size, offset + length)
            return await self.stage.read(offset, max(0, end - offset))
        if not prefetcher.wants_blocks(offset):
            prefetcher.advise(offset, length)
            version = self.version()
            data = await self.cache.read_small(version, offset, length)
            if self.feed is not None and not self.config.direct_io:  # a direct reader keeps out of the page cache
                self.feed.offer(self.feeding, self.inode.ino, version, offset, prefetcher.random_reader(),
                                lambda: self.feedable(version))
            return data
        data = await self.cache.read(self.version(), offset, length)
        ahead = prefetcher.advise(offset, len(data))
        if ahead:
            self.cache.prefetch(self.version(), ahead)
        return data

    async def write(self, offset: int, data: bytes) -> int:
        if self.streaming is None and self.stage is None and self.size == 0 and offset == 0 \
                and self.config.streaming_upload and self.nursery is not None and not self.unlinked:
            self.streaming = self._new_stream()
        if self.streaming is not None and self.streaming.accepts(offset):
            await self.streaming.write(data)
        else:
            # bytes of the object are needed only up to where this write starts
            stage = await self.ensure_stage(keep_bytes=None if offset + len(data) < self.size else offset)
            try:
                await stage.write(offset, data)
            except OSError as exc:  # a full disk: the file now lacks bytes the writer was told failed
                self.lost_write = exc
                raise
        self.size = max(self.size, offset + len(data))
        self.touch()
        return len(data)

    def _new_stream(self) -> StreamingUpload:
        assert self.nursery is not None
        in_flight = max(2, min(self.config.upload_threads, (256 << 20) // max(1, self.config.partition_size)))
        return StreamingUpload(self.client, self.key, self.config.partition_size, self.staging.directory,
                               self.nursery, in_flight)

    async def truncate(self, length: int) -> None:
        if length == 0 and self.streaming is None:  # no old byte is needed: start over, streamable again
            self.drop_stage()
            self.lost_write = None
            self.base_etag, self.size = "", 0
        elif length != self.size or self.streaming is not None:
            stage = await self.ensure_stage(keep_bytes=length)
            stage.truncate(length)
            self.size = length
        self.touch()

    def touch(self) -> None:
        self.dirty = True
        self.recovered = None  # new bytes: a recovery copy made before them is no longer the file
        self.inode.size = self.size
        self.inode.mtime_ns = self.written_ns = time.time_ns()
        self.inode.expires = float("inf")  # S3 knows less than we do until the upload

    # -- durability ------------------------------------------------------------------------------------------

    async def commit(self) -> None:
        """Make S3 hold exactly this file's bytes (nothing to do when clean or unlinked)."""
        if self.unlinked or not self.dirty:
            return
        if self.lost_write is not None:
            raise OSError(self.lost_write.errno or errno.EIO,
                          f"{self.key}: not uploaded, a write to its staged copy failed ({self.lost_write})")
        try:
            if self.streaming is not None:
                etag = await self.streaming.finish()
                self.streaming = None
                self.stage = None
            else:
                stage = await self.ensure_stage()
                etag = await upload_file(self.client, self.key, stage.path, self.size,
                                         threshold=self.config.multipart_threshold,
                                         part_size=self.config.partition_size)
        except OSError as exc:
            await self._keep_for_recovery(exc)
            raise OSError(errno.EIO, f"upload of {self.key} failed: {exc}") from exc
        self.dirty = False
        self.base_etag = etag
        replaced, self.inode.etag = self.inode.etag, etag
        self.inode.size = self.size
        if self.uploaded is not None:
            self.uploaded(self, replaced)
        if self.stage is not None and 0 < self.size <= KEEP_UPLOADED:
            with contextlib.suppress(OSError):  # only a GET saved is at stake
                self.cache.adopt(self.version(), await self.stage.read(0, self.size))

    async def _keep_for_recovery(self, exc: OSError) -> None:
        if self.streaming is not None:
            stream, self.streaming = self.streaming, None
            with trio.CancelScope(shield=True):
                await stream.abort()
            log.error("upload of s3://%s/%s failed (%s): the multipart upload was aborted; the bytes already "
                      "sent in parts are lost with it, the file must be written again", self.client.bucket,
                      self.key, exc)
            self.dirty = False
            return
        if self.stage is None:
            return
        copy = self.staging.new_file()
        await trio.to_thread.run_sync(copy_file, self.stage.path, copy)
        self.recovered = self.staging.keep(copy, self.client.bucket, self.key)
        log.error("upload of s3://%s/%s failed (%s): its %d bytes are kept in %s (re-upload it, or retry the "
                  "close after fixing the cause)", self.client.bucket, self.key, exc, self.size, self.recovered)

    async def discard(self) -> None:
        """Last handle closed: drop local bytes (uploaded, or kept in the recovery folder already)."""
        if self.streaming is not None:
            stream, self.streaming = self.streaming, None
            await stream.abort()
        if self.stage is not None:
            self.stage.close()
            if self.dirty and not self.unlinked and self.recovered is None:
                self.recovered = self.staging.keep(self.stage.path, self.client.bucket, self.key)
                log.error("s3://%s/%s was closed without a successful upload: its bytes are kept in %s",
                          self.client.bucket, self.key, self.recovered)
            else:
                remove_quietly(self.stage.path)
            self.stage = None

    def drop_stage(self) -> None:
        if self.stage is not None:
            self.stage.close()
            remove_quietly(self.stage.path)
            self.stage = None


def copy_file(source: str, target: str) -> None:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(8 << 20):
            writer.write(chunk)


@dataclass
class FileHandle:
    """One open(): its flags and its own sequential-read detector over the shared OpenFile."""

    file: OpenFile
    writable: bool
    prefetcher: Prefetcher


@dataclass
class DirHandle:
    directory: Inode
    entries: list[Entry]  # by name
    read_from: bool = False  # a read from offset 0 after this is a rewinddir


@dataclass
class HandleTable:
    """File handle numbers for open files and directories."""

    handles: dict[int, FileHandle | DirHandle] = field(default_factory=dict)
    next_fh: int = 1

    def add(self, handle: FileHandle | DirHandle) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = handle
        return fh

    def file(self, fh: int) -> FileHandle:
        handle = self.handles.get(fh)
        if not isinstance(handle, FileHandle):
            raise OSError(errno.EBADF, f"file handle {fh}")
        return handle

    def directory(self, fh: int) -> DirHandle:
        handle = self.handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise OSError(errno.EBADF, f"directory handle {fh}")
        return handle

    def pop(self, fh: int) -> FileHandle | DirHandle:
        return self.handles.pop(fh)


@dataclass
class OpenFiles:
    """The OpenFile of each inode with open handles; the last release commits what is left and drops it."""

    cache: BlockCache
    staging: Staging
    nursery: trio.Nursery | None = None
    files: dict[int, OpenFile] = field(default_factory=dict)
    uploaded: Callable[[OpenFile, str], None] | None = None  # given to each OpenFile
    feed: PageCacheFeed | None = None  # given to each OpenFile
    left_behind: list[OpenFile] = field(default_factory=list)  # on an old version, until their last close

    def get(self, ino: int) -> OpenFile | None:
        return self.files.get(ino)

    def every(self) -> list[OpenFile]:
        """Every open file, those left on an old version included."""
        return [*self.files.values(), *self.left_behind]

    def count(self) -> int:
        return len(self.files) + len(self.left_behind)

    def answers_for(self, ino: int) -> bool:
        """Whether the inode's open file, not S3, says what the file is: it holds bytes S3 does not have, or its
        name is gone (unlinked or renamed over) and its handles read on."""
        file = self.files.get(ino)
        return file is not None and (file.dirty or file.unlinked or file.inode.detached)

    async def stores_settled(self, inode: Inode) -> None:
        """The kernel is about to learn `inode`'s version: stores of another version's bytes land first, in the
        kernel's inode for that version (pagecache.py)."""
        for file in [self.files.get(inode.ino), *self.left_behind]:
            if file is not None and file.inode is inode:
                await file.feeding.settled_for(inode.etag)

    def of_object(self, client: S3Client, key: str) -> list[OpenFile]:
        return [file for file in self.files.values() if file.key == key and file.client is client
                and not file.unlinked]

    def open(self, inode: Inode, key: str, client: S3Client, config: Config, new: bool = False,
             writable: bool = False) -> OpenFile:
        """Join the inode's OpenFile, or start one on the given mount's client and settings. When another writer
        replaced the object since the OpenFile began (and it holds nothing of its own to upload), the open gets the
        new version: in an OpenFile of its own while the old one has only readers, which read on in their version
        (its cached bytes, then ESTALE), never in the new one; with writers (which unlink and rename must find
        here) the opener moves it to the new version (`OpenFile.follow`)."""
        file = self.files.get(inode.ino)
        if file is not None and file.behind(inode) and not file.writers:
            del self.files[inode.ino]  # its handles keep it; their close finds it no longer here
            self.left_behind.append(file)
            file = None
        if file is None:
            file = OpenFile(inode, key, client, self.cache, config, self.staging, self.nursery,
                            base_etag="" if new else inode.etag, size=0 if new else inode.size, dirty=new,
                            uploaded=self.uploaded, feed=self.feed)
            self.files[inode.ino] = file
        file.handles += 1
        file.writers += writable
        return file

    def below(self, client: S3Client, prefix: str) -> list[OpenFile]:
        """The open files under `prefix` (a directory about to be renamed)."""
        return [file for file in self.files.values()
                if file.key.startswith(prefix) and file.client is client and not file.unlinked]

    @contextlib.asynccontextmanager
    async def held(self, files: Sequence[OpenFile]) -> AsyncIterator[None]:
        """The files locked, their pending bytes uploaded, until a rename has copied them and moved their keys:
        a flush or a write in between would upload to the old key after the copy had read it, and be lost.
        Locked in inode order, so two renames over the same files cannot each wait for the other."""
        async with contextlib.AsyncExitStack() as stack:
            for file in sorted(files, key=lambda file: file.inode.ino):
                await stack.enter_async_context(file.lock)
                await file.commit()
            yield

    def retag(self, changed: Sequence[Retag]) -> None:
        """Open files whose object our own copy gave another ETag (the same bytes) read on under it."""
        for ino, old, new in changed:
            file = self.files.get(ino)
            if file is not None and file.base_etag == old:
                file.base_etag = new

    @staticmethod
    def _count_out(file: OpenFile, writable: bool) -> None:
        file.handles -= 1
        file.writers -= writable

    @contextlib.contextmanager
    def joining(self, file: OpenFile, writable: bool) -> Iterator[None]:
        """The rest of an open that joined `file`: if it fails, no release will come, so its counts go now."""
        try:
            yield
        except BaseException:
            self._count_out(file, writable)
            raise

    async def close(self, file: OpenFile, writable: bool = False) -> None:
        """One handle fewer; after the last, upload what no flush did (errors can only be logged here). After
        the last writer, too: a truncate(path) that came while it was open waited for it (the kernel sends a
        release after the close returned, so one can come right after its writer's close)."""
        self._count_out(file, writable)
        last_writer = writable and not file.writers
        if file.handles > 0 and not last_writer:
            return
        async with file.lock:
            # FUSE sends the release after close(2) returned: an open may join the file while this waits
            if (file.handles == 0 or last_writer) and file.recovered is None:  # a failed close is not retried
                with contextlib.suppress(OSError):  # commit logged it and kept the bytes
                    await file.commit()
            await file.feeding.settled()  # an open after this one's close starts with no store under way
            if file.handles > 0:  # opened again meanwhile: it lives on, with its key (renames move it)
                return
            if self.files.get(file.inode.ino) is file:
                del self.files[file.inode.ino]
            elif file in self.left_behind:
                self.left_behind.remove(file)
            await file.discard()
