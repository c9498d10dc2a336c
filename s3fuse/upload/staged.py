"""Upload a staged local file: one PUT when small, parallel multipart when large. Nothing is visible under the
key until the upload has completed; a failed multipart upload is aborted."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Mapping

import trio

from s3fuse.parallel import bounded_map
from s3fuse.s3.client import S3Client, guess_content_type
from s3fuse.s3.ranged import FilePart

log = logging.getLogger(__name__)

MIN_PART = 5 << 20
MAX_PARTS = 10_000


def part_size_for(size: int, preferred: int) -> int:
    """At least 5 MiB, and large enough that the object fits in 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(MIN_PART, preferred, needed)


def remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def upload_file(client: S3Client, key: str, path: str, size: int, *, threshold: int, part_size: int,
                      metadata: Mapping[str, str] | None = None) -> str:
    """The new object's ETag."""
    if size < max(threshold, MIN_PART):
        with FilePart(path, 0, size) as body:
            return await client.put(key, body, metadata)
    part = part_size_for(size, part_size)
    upload_id = await client.create_multipart(key, metadata)
    try:
        async def send(number: int) -> str:
            offset = (number - 1) * part
            with FilePart(path, offset, min(part, size - offset)) as body:
                return await client.upload_part(key, upload_id, number, body)

        numbers = range(1, -(-size // part) + 1)
        etags = await bounded_map(send, numbers, client.config.upload_threads)
        return await client.complete_multipart(key, upload_id, etags)
    except BaseException:
        with trio.CancelScope(shield=True):
            await abort_quietly(client, key, upload_id)
        raise


async def abort_quietly(client: S3Client, key: str, upload_id: str) -> None:
    """Abort after a failure; if even that fails, the cleanup of stale uploads will get it."""
    try:
        await client.abort_multipart(key, upload_id)
    except OSError as exc:
        log.warning("could not abort multipart upload %s of %s (%s): `s3fuse cleanup` removes it later",
                    upload_id, key, exc)


async def copy_object(client: S3Client, source: str, target: str, size: int, part_size: int,
                      threads: int, retype: bool = False) -> str:
    """Server-side copy, and the copy's ETag; objects over 5 GiB are copied part by part (UploadPartCopy), with
    the source's user metadata and Content-Type carried over. `retype`: a Content-Type that came from the
    source's name or S3's default (not one a client chose) becomes the one of the target's name."""
    if size <= 5 << 30 and not retype:
        return await client.copy(source, target)
    info = await client.head(source)
    if info is None:
        raise OSError(errno.ENOENT, f"{source}: gone before it could be copied")
    kind = info.content_type
    if retype and kind in (guess_content_type(source), "", "binary/octet-stream"):  # (S3's default type)
        kind = guess_content_type(target)
    if size <= 5 << 30:
        return await client.copy(source, target, info.metadata or {}, kind)
    part = part_size_for(size, max(part_size, 512 << 20))
    upload_id = await client.create_multipart(target, info.metadata, kind)
    try:
        async def copy_part(number: int) -> str:
            start = (number - 1) * part
            return await client.copy_part(source, target, upload_id, number, start, min(size, start + part))

        etags = await bounded_map(copy_part, range(1, -(-size // part) + 1), threads)
        return await client.complete_multipart(target, upload_id, etags)
    except BaseException:
        with trio.CancelScope(shield=True):
            await abort_quietly(client, target, upload_id)
        raise
