"""Run one mount: check S3 before touching the mount point, mount, report readiness, serve until unmounted.

Daemonising forks before `pyfuse3.init()` and `trio.run()` (neither an event loop nor libfuse's state
survives a fork); the child tells the parent "ready" or the error through a pipe, so the parent (the mount
helper) exits 0 only once the mount answers. Under systemd the same moment sends READY=1 (notify.py).

Around the mount, on the same trio loop: the status page and /metrics (web/), the stale multipart upload
cleanup (upload/cleanup.py), and the clean stop on SIGTERM: no new changes, the kernel's cached writes
flushed to us, every unsaved open file uploaded (bounded by alluxio.fuse.umount.timeout; what is left goes to
the recovery folder, its path logged), then unmount and exit 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.metadata
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pyfuse3
import trio
import trio_asyncio

from s3fuse import control
from s3fuse.cache.blocks import BlockCache
from s3fuse.cache.disk import DiskCache
from s3fuse.config import Config
from s3fuse.fs.handles import OpenFile, OpenFiles, Staging
from s3fuse.fs.inodes import InodeTable
from s3fuse.fs.namespace import Mount, Namespace
from s3fuse.fs.operations import Operations
from s3fuse.fs.overlay import Overlay
from s3fuse.fs.pagecache import PageCacheFeed, Store
from s3fuse.metrics import Metrics, RecentErrors, S3Observer
from s3fuse.mounts import NestedMounts, StartupError, build_mount, open_client
from s3fuse.notify import notify as sd_notify
from s3fuse.s3.client import S3Client, endpoint_url
from s3fuse.s3.errors import S3Error
from s3fuse.upload import cleanup, recovery
from s3fuse.web import server
from s3fuse.web.status import History, MountRow, Sample, Status, UploadRow

log = logging.getLogger(__name__)

READ_AHEAD_KB = 1024
MEMORY_BLOCKS = 16
DISK_FLUSH_SECONDS = 10.0  # at unmount, how long blocks still on their way to the disk tier are waited for
STOP_GRACE = 5.0  # after the uploads: how long a FUSE request still running may take before it is cancelled
SAMPLE_SECONDS = 2.0
LIBC = ctypes.CDLL(None, use_errno=True)
try:
    VERSION = importlib.metadata.version("s3fuse")
except importlib.metadata.PackageNotFoundError:
    VERSION = "unknown"


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
    # another user than the one mounting (shared, or an ACL owner mapped to a local user) must be let in at all
    if request.allow_other or request.config.shared or mount.identity.uid != os.getuid():
        options.add("allow_other")
    if mount.readonly:
        options.add("ro")
    if request.debug_fuse:
        options.add("debug")
    return options


class ServiceOperations(Operations):
    """The mount's operations plus what running it as a service needs: bytes read and written are counted for
    the status page, and once a stop has begun every change is refused (EROFS), so finishing the uploads in
    flight is a bounded job."""

    def __init__(self, mount: Mount, table: InodeTable, cache: BlockCache, files: OpenFiles, overlay: Overlay,
                 metrics: Metrics) -> None:
        super().__init__(mount, table, cache, files, overlay)
        self.metrics = metrics
        self.stopping = False

    def writable(self) -> None:
        if self.stopping:
            raise OSError(errno.EROFS, "the mount is stopping: no new changes")
        super().writable()

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        data = await super().read(fh, off, size)
        self.metrics.read_bytes.inc(len(data))
        return data

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        # with the writeback cache, a write arrives after the application was told it succeeded: take it
        if self.stopping and not self.enable_writeback_cache:
            raise pyfuse3.FUSEError(errno.EROFS)
        written = await super().write(fh, off, buf)
        self.metrics.written_bytes.inc(written)
        return written


@dataclass
class Service:
    """One running mount and what the service around it needs: stop cleanly, report status, clean up."""

    request: MountRequest
    mount: Mount
    cache: BlockCache
    disk: DiskCache | None
    files: OpenFiles
    operations: ServiceOperations
    metrics: Metrics
    observer: S3Observer
    errors: RecentErrors
    history: History = field(default_factory=History)
    started: float = field(default_factory=time.time)
    fuse_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    state: str = "starting"

    @property
    def config(self) -> Config:
        return self.request.config

    # -- stopping --------------------------------------------------------------------------------------------

    def unsaved(self) -> list[OpenFile]:
        return [f for f in self.files.files.values() if f.dirty and not f.unlinked and f.recovered is None]

    async def stop(self, reason: str) -> None:
        """Refuse new changes, finish the uploads in flight (bounded by the umount timeout), then unmount."""
        self.operations.stopping = True
        self.state = "finishing uploads"
        sd_notify("STOPPING=1", f"STATUS={reason}: finishing the uploads in flight, then unmounting")
        await self.finish_uploads(self.config.umount_timeout, flush_kernel=True)
        self.state = "unmounting"
        log.info("unmounting %s", self.request.mountpoint)
        pyfuse3.terminate()
        # a FUSE request still uploading (a close that began before the stop) gets the rest of a short grace
        self.fuse_scope.deadline = trio.current_time() + STOP_GRACE

    async def finish_uploads(self, timeout: float, flush_kernel: bool) -> None:
        """Upload every open file's unsaved bytes. With the kernel's writeback cache, bytes an application was
        told are written may still be in the page cache: `flush_kernel` has the kernel write them back to us
        first (syncfs), and again after each round of uploads, until a round finds nothing left."""
        if timeout <= 0:
            return
        rounds = 0
        with trio.move_on_after(timeout) as scope:
            while True:
                if flush_kernel:
                    await trio.to_thread.run_sync(sync_filesystem, self.request.mountpoint, abandon_on_cancel=True)
                pending = self.unsaved()
                if not pending:
                    break
                rounds += 1
                log.info("finishing %d upload(s) before unmounting (at most %.0f s in all): %s", len(pending),
                         timeout, ", ".join(f.key for f in pending[:10]))
                async with trio.open_nursery() as nursery:
                    for file in pending:
                        nursery.start_soon(commit_quietly, file)
                if not flush_kernel:
                    break
        if scope.cancelled_caught:
            log.error("uploads did not finish within %.0f s (alluxio.fuse.umount.timeout)", timeout)
        elif rounds:
            log.info("every upload in flight has finished")

    def keep_unsaved(self) -> None:
        """After the loop has stopped: bytes that never reached S3 go to the recovery folder, each path logged."""
        for file in self.unsaved():
            where = f"s3://{file.client.bucket}/{file.key}"
            stream = file.streaming
            if stream is not None:
                kept = None
                if stream.current is not None:
                    stream.current.close()
                    if stream.current.size:
                        kept = file.staging.keep(stream.current.path, file.client.bucket, file.key)
                    stream.current = None
                log.error("%s: the streaming upload did not finish: %d part(s) (%d bytes written in all) stay in S3 "
                          "under multipart upload %s, not aborted; the last unsent bytes are kept in %s", where,
                          stream.parts_uploaded, file.size, stream.upload_id or "(none yet)", kept or "(nothing)")
                file.streaming = None
            elif file.stage is not None:
                file.stage.close()
                file.recovered = file.staging.keep(file.stage.path, file.client.bucket, file.key)
                file.stage = None
                log.error("%s: not uploaded before the mount stopped: its %d bytes are kept in %s", where, file.size,
                          file.recovered)
            else:
                log.error("%s: a new empty file was not created in S3 before the mount stopped", where)
            file.dirty = False

    # -- status ----------------------------------------------------------------------------------------------

    def snapshot(self) -> Status:
        config = self.config
        mount = self.mount
        uploads = [UploadRow(f"s3://{f.client.bucket}/{f.key}", f.size, upload_state(f)) for f in self.unsaved()]
        uploads += [UploadRow(f"s3://{m.bucket}/{m.key}", 0, f"multipart upload {m.upload_id[:16]}... for "
                              f"{time.time() - m.started:.0f} s") for m in self.observer.multipart.values()]
        rows = [MountRow(os.path.join(self.request.mountpoint, m.path) if m.path else self.request.mountpoint,
                         m.uri, endpoint_url(m.config) or "AWS S3", m.readonly,
                         self.files.count() if m is mount else 0, self.state) for m in self.mounts()]
        value = self.metrics.value
        return Status(
            version=VERSION, pid=os.getpid(), started=self.started, now=time.time(), mounts=rows,
            cache_bytes=self.disk_bytes(), cache_limit=config.cache_size if self.disk is not None else 0,
            memory_bytes=self.cache.memory_bytes, hits=self.cache.hits, misses=self.cache.misses,
            read_bytes=value("s3fuse_read_bytes_total"), written_bytes=value("s3fuse_written_bytes_total"),
            uploaded_bytes=value("s3fuse_upload_bytes_total"), downloaded_bytes=value("s3fuse_download_bytes_total"),
            upload_failures=value("s3fuse_upload_failures_total"), operations=self.metrics.by_operation(),
            uploads=uploads, errors=list(self.errors.records), history=list(self.history.samples))

    def disk_bytes(self) -> int:
        return self.disk.volume() if self.disk is not None else 0

    def in_flight_uploads(self) -> list[dict[str, Any]]:
        return [{"bucket": m.bucket, "key": m.key, "upload_id": m.upload_id, "started": m.started}
                for m in self.observer.multipart.values()]

    def register_gauges(self) -> None:
        metrics = self.metrics
        metrics.counter("s3fuse_cache_hits", "Block reads answered by the cache (memory or disk)",
                        lambda: self.cache.hits)
        metrics.counter("s3fuse_cache_misses", "Block reads that needed a GET from S3", lambda: self.cache.misses)
        if self.files.feed is not None:
            feed = self.files.feed
            metrics.counter("s3fuse_page_cache_stored_bytes", "Bytes a random reader's reads brought into memory "
                            "and the daemon handed to the kernel's page cache", lambda: feed.stored_bytes)
        metrics.gauge("s3fuse_cache_bytes", "Bytes in the disk block cache", self.disk_bytes)
        metrics.gauge("s3fuse_cache_memory_bytes", "Bytes of blocks kept in memory", lambda: self.cache.memory_bytes)
        metrics.gauge("s3fuse_open_files", "Files open through the mount", self.files.count)
        metrics.gauge("s3fuse_uploads_in_flight", "Open files with bytes not yet in S3", lambda: len(self.unsaved()))
        metrics.gauge("s3fuse_multipart_uploads_in_flight", "Multipart uploads this daemon has not completed yet",
                      lambda: len(self.observer.multipart))

    async def sample_every(self, seconds: float) -> None:
        while True:
            value = self.metrics.value
            self.history.add(Sample(time.time(), self.disk_bytes(), value("s3fuse_read_bytes_total"),
                                    value("s3fuse_written_bytes_total"), value("s3fuse_upload_bytes_total"),
                                    value("s3fuse_download_bytes_total")))
            await trio.sleep(seconds)

    def cleanup_targets(self) -> list[cleanup.Target]:
        """Every writable mount: where stale multipart uploads are looked for."""
        return [cleanup.Target(mount.client, mount.prefix) for mount in self.mounts() if not mount.readonly]

    def mounts(self) -> list[Mount]:
        """The root mount and every nested one."""
        return list(self.operations.table.namespace.mounts.values())


async def commit_quietly(file: OpenFile) -> None:
    async with file.lock:
        with contextlib.suppress(OSError):  # commit logged it and kept the bytes in the recovery folder
            await file.commit()


def sync_filesystem(path: str) -> None:
    """syncfs(2) on the mount: the kernel writes its dirty pages back (as FUSE writes to us) and waits."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if LIBC.syncfs(fd) != 0:
            log.warning("syncfs %s: %s", path, os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)


def upload_state(file: OpenFile) -> str:
    if file.streaming is not None:
        return f"streaming: {file.streaming.parts_uploaded} part(s) sent"
    if file.lock.locked():
        return "uploading"
    return "written, uploads at close"


async def serve(request: MountRequest, notify: Notify) -> None:
    config = request.config
    metrics = Metrics()
    errors = RecentErrors(metrics)
    logging.getLogger().addHandler(errors)
    try:
        async with trio_asyncio.open_loop():
            client = await open_client(config)
            try:
                await serve_client(request, notify, client, metrics, errors)
            finally:
                await client.close()
    finally:
        logging.getLogger().removeHandler(errors)
    log.info("unmounted %s", request.mountpoint)


async def serve_client(request: MountRequest, notify: Notify, client: S3Client, metrics: Metrics,
                       errors: RecentErrors) -> None:
    config = request.config
    observer = S3Observer(metrics)
    observer.attach(client)
    mount = await build_mount(config, client)
    assert mount.overlay is not None
    waiting = list(recovery.kept(recovery.folder(config.tmp_dirs[0])))
    if waiting:
        log.warning("%d file(s) whose upload failed earlier are kept in %s: list them with `s3fuse recover`, "
                    "upload them with `s3fuse recover --upload`", len(waiting), recovery.folder(config.tmp_dirs[0]))
    listeners = await server.open_listeners(config.web_bind_host, config.web_port)
    disk = DiskCache(config.cache_dirs[0], config.cache_size) if config.cache_enabled else None
    cache = BlockCache(config.page_size, MEMORY_BLOCKS * config.page_size, disk)
    table = InodeTable(Namespace(mount), config.metadata_ttl, config.metadata_max_size)
    feed = PageCacheFeed(cache, cast(Store, pyfuse3.notify_store))  # takes any buffer; its stub says bytes
    files = OpenFiles(cache, Staging(os.path.join(config.tmp_dirs[0], "s3fuse-staging")), feed=feed)
    operations = ServiceOperations(mount, table, cache, files, mount.overlay, metrics)
    service = Service(request, mount, cache, disk, files, operations, metrics, observer, errors)
    service.register_gauges()
    pyfuse3.init(operations, request.mountpoint, fuse_options(request, mount))
    try:
        async with trio.open_nursery() as nursery:
            cache.nursery = files.nursery = feed.nursery = nursery
            nursery.start_soon(watch_signals, service)
            nursery.start_soon(service.sample_every, SAMPLE_SECONDS)
            nursery.start_soon(cache.fill_pool)
            nested = NestedMounts(table, files, observer.attach)
            await nested.graft_configured(config)
            await nursery.start(control.serve, request.mountpoint, nested.handle)
            if listeners:
                app = server.StatusApp(service.snapshot, metrics, service.in_flight_uploads)
                nursery.start_soon(server.serve, app, listeners)
            if config.cleanup_enabled and service.cleanup_targets():
                nursery.start_soon(cleanup.clean_every, service.cleanup_targets, config.clean_age,
                                   config.cleanup_interval, observer.in_flight)
            nursery.start_soon(report_ready, service, notify)  # last: ready means `s3fuse fs mount` works too
            with service.fuse_scope:
                await pyfuse3.main()
            # unmounted from outside (umount, fusermount3 -u): anything still unsaved gets its chance
            if not operations.stopping:
                await service.finish_uploads(config.umount_timeout, flush_kernel=False)
            await cache.finish_disk_writes(DISK_FLUSH_SECONDS)
            nursery.cancel_scope.cancel()
        service.keep_unsaved()
    finally:
        pyfuse3.close(unmount=True)
        for each in service.mounts():
            if each.overlay is not None:
                each.overlay.close()
            if each is not mount:
                await each.client.close()
        if disk is not None:
            disk.close()


async def report_ready(service: Service, notify: Notify) -> None:
    """The mount is ready when a request through it is answered (by us, on this loop). statvfs, not stat: a
    stat of the root may be answered by the kernel before our INIT reply is processed, and that reply sets the
    read-ahead we raise next."""
    mountpoint = service.request.mountpoint
    await trio.to_thread.run_sync(os.statvfs, mountpoint)
    await trio.to_thread.run_sync(raise_read_ahead, mountpoint)
    service.state = "serving"
    log.info("mounted %s at %s (pid %d)", service.mount.uri, mountpoint, os.getpid())
    sd_notify("READY=1", f"STATUS=serving {service.mount.uri} at {mountpoint}", f"MAINPID={os.getpid()}")
    notify(None)


async def watch_signals(service: Service) -> None:
    """The first SIGTERM/SIGINT/SIGHUP starts a clean stop; later ones are only logged (SIGKILL is the way to
    give up on the uploads in flight), so a second signal never cuts the stop short."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            async for number in signals:
                name = signal.Signals(number).name
                if service.operations.stopping:
                    log.warning("%s: already stopping (%s); SIGKILL ends the daemon without finishing", name,
                                service.state)
                    continue
                log.info("%s: stopping: no new changes, finishing uploads in flight, then unmounting", name)
                service.operations.stopping = True
                nursery.start_soon(service.stop, name)


class LateReplies(logging.Filter):
    """pyfuse3 logs an ERROR "fuse_release(): fuse_reply_* failed with No such file or directory" whenever the
    kernel no longer waits for an answer (an interrupted request, a release sent without a waiter): nothing is
    lost, so the line goes to debug instead of filling the log and the status page's recent errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "fuse_reply_" in str(record.msg) \
                and os.strerror(errno.ENOENT) in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def run(request: MountRequest, notify: Notify) -> int:
    """Serve in this process; any failure before readiness goes to `notify` and the exit status."""
    logging.getLogger("pyfuse3").addFilter(LateReplies())
    try:
        check_mountpoint(request.mountpoint)
        trio.run(serve, request, notify)
    except BaseException as exc:
        error = startup_error(exc)
        if error is None:
            raise
        notify(str(error))
        sd_notify(f"STATUS=failed: {error}")
        return 1
    return 0


def startup_error(exc: BaseException) -> Exception | None:
    """The StartupError or S3Error that stopped the start, also when trio wrapped it in an exception group
    (an error raised inside `trio_asyncio.open_loop()` leaves it as a group of one)."""
    if isinstance(exc, StartupError | S3Error):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return startup_error(exc.exceptions[0])
    return None


def daemonize(request: MountRequest, log_file: str) -> int:
    """Fork; the parent returns 0 once the child's mount answers, or prints the child's error and returns 1."""
    config = request.config  # the daemon runs in "/": relative directories are made absolute first
    request = replace(request, config=replace(
        config, cache_dirs=tuple(os.path.abspath(d) for d in config.cache_dirs),
        tmp_dirs=tuple(os.path.abspath(d) for d in config.tmp_dirs)))
    log_file = os.path.abspath(log_file)
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
    os.chdir("/")  # never pin the file system the command was started from
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
    log.info("daemon exits with status %d", status)
    logging.shutdown()
    os._exit(status)


# -- commands around a running daemon ---------------------------------------------------------------------------


def cleanup_once(config: Config, protected: set[str]) -> list[cleanup.Aborted]:
    """`s3fuse cleanup`: abort the stale multipart uploads under the configured prefix, except `protected` ids."""
    async def main() -> list[cleanup.Aborted]:
        async with trio_asyncio.open_loop():
            client = await open_client(config)
            try:
                return await cleanup.abort_stale(client, config.prefix, config.clean_age,
                                                 lambda bucket, key, upload_id: upload_id in protected)
            finally:
                await client.close()
    return trio.run(main)


def daemon_pids(mountpoint: str) -> list[int]:
    """Processes of `s3fuse mount` or `mount.alluxio-s3` serving `mountpoint` (from their command lines)."""
    target = os.path.normpath(os.path.abspath(mountpoint))
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        programs = {os.path.basename(a) for a in args[:3]}
        is_mount = "mount.alluxio-s3" in programs or ("s3fuse" in programs and "mount" in args)
        # paths compared as text: a stat through a hung mount would hang this command too
        if is_mount and any(os.path.isabs(a) and os.path.normpath(a) == target for a in args) and alive(int(entry)):
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def stop(mountpoint: str, pid: int | None, timeout: float) -> int:
    """`s3fuse unmount`: SIGTERM the daemon (it refuses new changes, finishes uploads, unmounts) and wait for it
    to exit; with no daemon found, a plain unmount."""
    pids = [pid] if pid else daemon_pids(mountpoint)
    if not pids:
        if not os.path.ismount(mountpoint):
            print(f"s3fuse: {mountpoint} is not mounted", file=sys.stderr)
            return 1
        command = ["umount", mountpoint] if os.geteuid() == 0 else ["fusermount3", "-u", mountpoint]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"s3fuse: {' '.join(command)}: {result.stderr.strip()} (files still open? find the daemon and "
                  "use s3fuse unmount --pid PID: it finishes uploads and detaches)", file=sys.stderr)
            return 1
        return 0
    for number in pids:
        try:
            os.kill(number, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    while any(alive(number) for number in pids):
        if time.monotonic() > deadline:
            print(f"s3fuse: the daemon (pid {', '.join(map(str, pids))}) is still running after {timeout:.0f} s; "
                  "see its log", file=sys.stderr)
            return 1
        time.sleep(0.1)
    return 0
