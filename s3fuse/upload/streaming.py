"""Streaming multipart upload: a sequential writer's bytes are cut into partitions, and each full partition is
uploaded as a part in the background while the writer goes on, so close() only waits for the last partition.

A partition is buffered in a local file and deleted once its part is uploaded; at most `in_flight` partitions
are buffered at a time (the writer waits for a slot: backpressure), so disk and memory stay bounded by about
that many partitions. The object appears under its key only at CompleteMultipartUpload.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

from s3fuse.s3.client import S3Client
from s3fuse.s3.ranged import FilePart
from s3fuse.upload.staged import MIN_PART, abort_quietly, remove_quietly

log = logging.getLogger(__name__)


@dataclass
class Partition:
    """One part's bytes on local disk, kept open while the writer fills it."""

    number: int
    path: str
    size: int = 0
    fd: int = -1

    def append(self, data: bytes | memoryview) -> None:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        os.write(self.fd, data)
        self.size += len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class StreamingUpload:
    client: S3Client
    key: str
    partition_size: int
    staging_dir: str
    nursery: trio.Nursery
    in_flight: int
    metadata: Mapping[str, str] | None = None
    upload_id: str = ""
    size: int = 0  # bytes accepted so far: the next sequential offset
    etags: dict[int, str] = field(default_factory=dict)
    current: Partition | None = None
    slots: trio.Semaphore = field(init=False)
    pending: int = 0
    all_sent: trio.Event = field(default_factory=trio.Event)
    error: OSError | None = None
    parts_uploaded: int = 0

    def __post_init__(self) -> None:
        self.partition_size = max(self.partition_size, MIN_PART)
        self.slots = trio.Semaphore(max(1, self.in_flight))

    def accepts(self, offset: int) -> bool:
        """Only a write at the end of what was written so far can be streamed."""
        return offset == self.size and self.error is None

    async def write(self, data: bytes) -> None:
        """Append `data`; full partitions go up in the background."""
        view = memoryview(data)
        while view:
            if self.current is None:
                await self.slots.acquire()  # backpressure: wait until a partition is free
                handle, path = tempfile.mkstemp(prefix="part-", dir=self.staging_dir)
                os.close(handle)
                self.current = Partition(len(self.etags) + self.pending + 1, path)
            room = self.partition_size - self.current.size
            chunk = view[:room]
            self.current.append(chunk)  # page-cache writes of at most one FUSE request: cheaper than a thread hop
            self.size += len(chunk)
            view = view[len(chunk):]
            if self.current.size == self.partition_size:
                await self._send(self.current)
                self.current = None
        self.raise_error()

    async def _send(self, partition: Partition) -> None:
        partition.close()
        if not self.upload_id:
            self.upload_id = await self.client.create_multipart(self.key, self.metadata)
        self.pending += 1
        self.all_sent = trio.Event() if self.all_sent.is_set() else self.all_sent
        self.nursery.start_soon(self._upload, partition)

    async def _upload(self, partition: Partition) -> None:
        try:
            with FilePart(partition.path, 0, partition.size) as body:
                self.etags[partition.number] = await self.client.upload_part(self.key, self.upload_id,
                                                                             partition.number, body)
            self.parts_uploaded += 1
            os.unlink(partition.path)
        except OSError as exc:
            log.warning("part %d of %s failed: %s", partition.number, self.key, exc)
            self.error = self.error or exc
        finally:
            self.pending -= 1
            self.slots.release()
            if self.pending == 0:
                self.all_sent.set()

    def raise_error(self) -> None:
        if self.error is not None:
            raise OSError(self.error.errno or 5, f"streaming upload of {self.key} failed: {self.error}")

    def started(self) -> bool:
        """Whether any part has left this machine (before that, all bytes are in one local partition)."""
        return bool(self.upload_id)

    def take_local(self) -> str | None:
        """Before any part was sent: hand over the one local partition file, holding every byte written."""
        if self.started():
            raise RuntimeError("parts were already sent")
        if self.current is None:
            return None
        self.current.close()
        path, self.current = self.current.path, None
        return path

    async def finish(self) -> str:
        """Send the last partition, wait for every part, complete; the new object's ETag. A file that never
        filled a partition goes up as one PUT."""
        if not self.started():
            path = self.take_local()
            if not path:
                return await self.client.put(self.key, b"", self.metadata)
            with FilePart(path, 0, os.path.getsize(path)) as body:
                etag = await self.client.put(self.key, body, self.metadata)
            remove_quietly(path)
            return etag
        if self.current is not None and self.current.size:
            await self._send(self.current)
            self.current = None
        if self.pending:
            await self.all_sent.wait()
        self.raise_error()
        etags = [self.etags[number] for number in sorted(self.etags)]
        return await self.client.complete_multipart(self.key, self.upload_id, etags)

    async def abort(self) -> None:
        """Stop: wait for parts in flight, abort the multipart upload, drop local partitions."""
        if self.pending:
            await self.all_sent.wait()
        if self.upload_id:
            await abort_quietly(self.client, self.key, self.upload_id)
        if self.current is not None:
            self.current.close()
            remove_quietly(self.current.path)
            self.current = None
