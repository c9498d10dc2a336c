"""Namespace changes in S3: directory markers, removal, emptiness checks and renames of files and whole
directories. Each function does the S3 side of one POSIX call; the inode table is updated by the caller."""

from __future__ import annotations

import contextlib
import errno
import logging
from datetime import datetime
from typing import NamedTuple

from s3fuse.config import Config
from s3fuse.fs.inodes import ns
from s3fuse.parallel import bounded_map
from s3fuse.s3.client import ObjectInfo, S3Client, guess_content_type
from s3fuse.upload.staged import copy_object

log = logging.getLogger(__name__)


async def make_marker(client: S3Client, dir_prefix: str) -> None:
    """A `dir/` object, so an empty directory exists in S3."""
    await client.put(dir_prefix, b"", content_type="application/x-directory")


async def is_empty(client: S3Client, dir_prefix: str) -> bool:
    """Nothing under the prefix but its own marker (two keys are enough to tell)."""
    page = await client.list_page(dir_prefix, max_keys=2, delimiter="")
    return all(info.key == dir_prefix for info in page.objects) and not page.prefixes


async def keep_parent(client: S3Client, parent_prefix: str) -> None:
    """After removing the last key of an implicit directory, S3 forgets the directory; POSIX does not. A marker
    keeps it (the mount root needs none)."""
    if parent_prefix and await is_empty(client, parent_prefix):
        page = await client.list_page(parent_prefix, max_keys=1, delimiter="")
        if not page.objects:
            await make_marker(client, parent_prefix)


async def remove_dir(client: S3Client, dir_prefix: str) -> None:
    if not await is_empty(client, dir_prefix):
        raise OSError(errno.ENOTEMPTY, dir_prefix)
    await client.delete(dir_prefix)


async def all_keys(client: S3Client, prefix: str) -> list[ObjectInfo]:
    found: list[ObjectInfo] = []
    token: str | None = None
    while True:
        page = await client.list_page(prefix, token, delimiter="")
        found += page.objects
        if page.next_token is None:
            return found
        token = page.next_token


class Copy(NamedTuple):
    """One object a rename copied: the source's ETag and modification time, and the copy's ETag (a multipart
    object's copy gets a new one, and S3 gives every copy a new LastModified)."""

    was: str
    etag: str
    mtime_ns: int


async def rename_file(client: S3Client, config: Config, source: str, target: str, size: int) -> str:
    """The moved object's ETag. A new name with another type (`x.tmp` renamed to `x.json`, as editors and
    atomic saves do) gets its Content-Type, as s3fs-fuse gives it."""
    etag = await copy_object(client, source, target, size, config.partition_size, config.service_threads,
                             retype=guess_content_type(source) != guess_content_type(target))
    await client.delete(source)
    return etag


async def rename_dir(client: S3Client, config: Config, source_prefix: str, target_prefix: str
                     ) -> dict[str, Copy]:
    """Copy every key under the prefix (in parallel, bounded by the object-store service threads), then delete
    the originals in batches; a failure before the deletes leaves the source whole and removes the copies made
    (another client may have removed a key meanwhile). The copies, by their keys."""
    objects = await all_keys(client, source_prefix)
    keys = {info.key for info in objects}
    if source_prefix not in keys:  # an implicit directory: give the target a marker of its own
        objects.append(ObjectInfo(source_prefix, 0, "", objects[0].mtime if objects else datetime.now().astimezone()))

    copies: dict[str, Copy] = {}
    markers: list[str] = []

    async def copy(info: ObjectInfo) -> None:
        target = target_prefix + info.key[len(source_prefix):]
        if info.key == source_prefix and info.key not in keys:
            await make_marker(client, target)
            markers.append(target)
        else:
            etag = await copy_object(client, info.key, target, info.size, config.partition_size,
                                     config.service_threads)
            copies[target] = Copy(info.etag, etag, ns(info.mtime))

    try:
        await bounded_map(copy, objects, config.service_threads)
    except OSError:
        with contextlib.suppress(OSError):  # the copy's error is the one to report
            await client.delete_many(sorted([*copies, *markers]))
        raise
    await client.delete_many(sorted(keys))
    return copies
