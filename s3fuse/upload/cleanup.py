"""Abort stale multipart uploads: parts of uploads that never completed (a crash, a killed writer) cost storage
until someone aborts them.

An upload is stale when it was initiated more than `alluxio.underfs.s3.intermediate.upload.clean.age` ago; a
clean age of 0 makes every upload stale. Whatever the age, an upload the caller says is still in flight (this
daemon is writing it) is never aborted. The daemon runs this for every writable mount at start and every
`alluxio.underfs.cleanup.interval` when `alluxio.underfs.cleanup.enabled=true`; `s3fuse cleanup` runs it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import trio

from s3fuse.s3.client import S3Client
from s3fuse.s3.errors import S3Error

log = logging.getLogger(__name__)

InFlight = Callable[[str, str, str], bool]  # (bucket, key, upload id) -> still being written by us


def never(bucket: str, key: str, upload_id: str) -> bool:
    return False


@dataclass(frozen=True)
class Aborted:
    bucket: str
    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True)
class Target:
    """Where to look: a client (its bucket) and the prefix of one mount."""

    client: S3Client
    prefix: str


async def abort_stale(client: S3Client, prefix: str, clean_age: float, in_flight: InFlight = never,
                      now: datetime | None = None) -> list[Aborted]:
    """Abort the multipart uploads under `prefix` initiated more than `clean_age` seconds ago."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=clean_age)
    aborted: list[Aborted] = []
    kept = 0
    for key, upload_id, initiated in await client.list_multipart(prefix):
        if clean_age > 0 and _aware(initiated) > cutoff:
            continue
        if in_flight(client.bucket, key, upload_id):  # asked right before the abort, not at listing time
            kept += 1
            continue
        try:
            await client.abort_multipart(key, upload_id)
        except S3Error as exc:
            if exc.s3_code in ("NoSuchUpload", "404"):  # completed or aborted meanwhile
                continue
            log.warning("cannot abort stale multipart upload %s of s3://%s/%s: %s", upload_id, client.bucket, key, exc)
            continue
        aborted.append(Aborted(client.bucket, key, upload_id, initiated))
        log.info("aborted stale multipart upload %s of s3://%s/%s (initiated %s)", upload_id, client.bucket, key,
                 initiated.isoformat(timespec="seconds"))
    if kept:
        log.info("kept %d multipart upload(s) under s3://%s/%s that this daemon is still writing", kept,
                 client.bucket, prefix)
    return aborted


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def clean_every(targets: Callable[[], Sequence[Target]], clean_age: float, interval: float,
                      in_flight: InFlight) -> None:
    """At once, then every `interval` seconds, for every writable mount `targets()` names; errors are logged."""
    while True:
        for target in targets():
            try:
                aborted = await abort_stale(target.client, target.prefix, clean_age, in_flight)
            except S3Error as exc:
                log.warning("stale upload cleanup of s3://%s/%s failed (%s); next try in %.0f s",
                            target.client.bucket, target.prefix, exc, interval)
                continue
            log.info("stale upload cleanup of s3://%s/%s: %d aborted", target.client.bucket, target.prefix,
                     len(aborted))
        await trio.sleep(max(1.0, interval))
