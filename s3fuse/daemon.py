"""Run one mount: check S3 before touching the mount point, mount, report readiness, serve until unmounted.

Daemonising forks before `pyfuse3.init()` and `trio.run()` (neither an event loop nor libfuse's state
survives a fork); the child tells the parent "ready" or the error through a pipe, so the parent (the mount
helper) exits 0 only once the mount answers.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio
import trio_asyncio

from s3fuse.cache.blocks import BlockCache
from s3fuse.cache.disk import DiskCache
from s3fuse.config import Config
from s3fuse.fs.handles import OpenFiles, Staging
from s3fuse.fs.inodes import InodeTable
from s3fuse.fs.namespace import Mount
from s3fuse.fs.operations import Operations
from s3fuse.fs.overlay import Overlay
from s3fuse.s3 import acl
from s3fuse.s3.client import S3Client, endpoint_url
from s3fuse.s3.errors import S3Error

log = logging.getLogger(__name__)

READ_AHEAD_KB = 1024
MEMORY_BLOCKS = 16


class StartupError(Exception):
    """The mount cannot start; the message is for the person who ran the command."""


@dataclass(frozen=True)
class MountRequest:
    config: Config
    mountpoint: str
    allow_other: bool = False
    debug_fuse: bool = False


Notify = Callable[[str | None], None]  # None: ready; text: the error that stopped the start


def check_mountpoint(path: str) -> None:
    """A usable empty directory; a mount left by a crashed daemon is lazily unmounted first."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            log.warning("%s is a stale FUSE mount (its daemon died): unmounting it lazily", path)
            subprocess.run(["fusermount3", "-uz", path], check=False, capture_output=True)
        else:
            raise StartupError(f"mount point {path}: {exc.strerror}: create it with mkdir -p {path}") from None
    if not os.path.isdir(path):
        raise StartupError(f"mount point {path} is not a directory")
    if os.path.ismount(path):
        raise StartupError(f"{path} is already a mount point: unmount it first (fusermount3 -u {path})")


def raise_read_ahead(mountpoint: str) -> None:
    """Make the kernel send 1 MiB reads instead of 128 KiB: half the CPU per byte in this Python layer."""
    device = os.stat(mountpoint).st_dev
    knob = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    try:
        knob.write_text(str(READ_AHEAD_KB))
    except OSError as exc:
        log.info("could not raise read-ahead (%s): reads stay at the kernel's default size", exc)


def fuse_options(request: MountRequest, mount: Mount) -> set[str]:
    options = set(pyfuse3.default_options)
    source = mount.uri if "," not in mount.uri else "s3fuse"
    options |= {f"fsname={source}", "subtype=alluxio-s3", "noatime"}
    if request.allow_other or request.config.shared:
        options.add("allow_other")
    if mount.readonly:
        options.add("ro")
    if request.debug_fuse:
        options.add("debug")
    return options


async def resolve_identity(config: Config, client: S3Client) -> acl.Identity:
    if not config.inherit_acl:
        return acl.default_identity(config)
    try:
        return acl.identity_from_acl(config, await client.bucket_acl())
    except S3Error as exc:
        log.warning("cannot read the bucket ACL (%s): using alluxio.underfs.s3.default.mode %o", exc,
                    config.default_mode)
        return acl.default_identity(config)


async def open_client(config: Config) -> S3Client:
    """A client whose bucket answered: a missing bucket, bad credentials or a dead endpoint stop here."""
    client = S3Client(config, config.bucket)
    await client.open()
    try:
        await client.check_bucket()
    except S3Error as exc:
        await client.close()
        where = endpoint_url(config) or "AWS S3"
        if exc.errno == errno.ENOENT:
            raise StartupError(f"bucket {config.bucket!r} does not exist at {where}: create it or fix the "
                               "S3 URI") from None
        raise StartupError(f"cannot use bucket {config.bucket!r} at {where}: {exc}") from None
    return client


async def serve(request: MountRequest, notify: Notify) -> None:
    config = request.config
    async with trio_asyncio.open_loop():
        client = await open_client(config)
        try:
            identity = (await resolve_identity(config, client)).masked(config.readonly, config.shared)
            mount = Mount(config, client, config.prefix, identity, config.readonly)
            disk = DiskCache(config.cache_dirs[0], config.cache_size) if config.cache_enabled else None
            cache = BlockCache(client, config.page_size, MEMORY_BLOCKS * config.page_size, disk)
            table = InodeTable(client, mount.prefix, config.metadata_ttl, config.metadata_max_size)
            overlay = Overlay(os.path.join(config.cache_dirs[0], "overlay", f"{config.bucket}.sqlite"))
            files = OpenFiles(client, cache, config, Staging(os.path.join(config.tmp_dirs[0], "s3fuse-staging")))
            operations = Operations(mount, table, cache, files, overlay)
            pyfuse3.init(operations, request.mountpoint, fuse_options(request, mount))
            try:
                async with trio.open_nursery() as nursery:
                    cache.nursery = files.nursery = nursery
                    nursery.start_soon(watch_signals)
                    nursery.start_soon(report_ready, request.mountpoint, notify)
                    await pyfuse3.main()
                    nursery.cancel_scope.cancel()
            finally:
                pyfuse3.close(unmount=True)
                overlay.close()
                if disk is not None:
                    disk.close()
        finally:
            await client.close()
    log.info("unmounted %s", request.mountpoint)


async def report_ready(mountpoint: str, notify: Notify) -> None:
    """The mount is ready when a stat through it is answered (by us, on this loop)."""
    await trio.to_thread.run_sync(os.stat, mountpoint)
    await trio.to_thread.run_sync(raise_read_ahead, mountpoint)
    log.info("mounted at %s", mountpoint)
    notify(None)


async def watch_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for number in signals:
            log.info("%s: unmounting", signal.Signals(number).name)
            pyfuse3.terminate()
            return


def run(request: MountRequest, notify: Notify) -> int:
    """Serve in this process; any failure before readiness goes to `notify` and the exit status."""
    try:
        check_mountpoint(request.mountpoint)
        trio.run(serve, request, notify)
    except StartupError as exc:
        notify(str(exc))
        return 1
    except S3Error as exc:
        notify(str(exc))
        return 1
    return 0


def daemonize(request: MountRequest, log_file: str) -> int:
    """Fork; the parent returns 0 once the child's mount answers, or prints the child's error and returns 1."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode()
        if message == "ready":
            return 0
        print(f"s3fuse: {message or 'the daemon died before the mount was ready; see ' + log_file}",
              file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    with open(log_file, "ab") as log_handle:
        os.dup2(log_handle.fileno(), 1)
        os.dup2(log_handle.fileno(), 2)

    def notify(error: str | None) -> None:
        nonlocal write_end
        if write_end < 0:
            return
        os.write(write_end, b"ready" if error is None else error.encode())
        os.close(write_end)
        write_end = -1

    status = run(request, notify)
    os._exit(status)
