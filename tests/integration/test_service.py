"""Running s3fuse as a service, through real mounts: mount(8) and fstab with the helper, readiness and errors of
the daemon, a clean stop on SIGTERM that loses no byte, the systemd unit (verified, and its ExecStart run with a
notify socket), `s3fuse runTests` and `s3fuse format`."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3fuse.embedded import LocalS3, clean_aws_environment
from s3fuse.fs.operations import Operations
from tests.conftest import BIN, Mounted, MountFactory
from tests.support.pages import cached_pages
from tests.support.proxy import Request
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "alluxio-s3@.service"
HELPER = Path("/sbin/mount.alluxio-s3")
MiB = 1 << 20


def s3_bytes(server: LocalS3, bucket: str, key: str) -> bytes | None:
    client = server.client()
    try:
        body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return body


def mount_options(server: LocalS3, tmp_path: Path) -> list[str]:
    return [*server.mount_options(), f"alluxio.user.client.cache.dirs={tmp_path / 'cache'}",
            f"alluxio.tmp.dirs={tmp_path / 'staging'}", "alluxio.master.web.port=0"]


def service_env(tmp_path: Path) -> dict[str, str]:
    return clean_aws_environment({"S3FUSE_LOG_DIR": str(tmp_path / "log"), "S3FUSE_CONF_DIR": str(tmp_path / "noconf")})


def log_of(tmp_path: Path) -> str:
    logs = list((tmp_path / "log").glob("*.log"))
    return "".join(p.read_text(errors="replace") for p in logs)


def daemon_exited(tmp_path: Path) -> bool:
    return "daemon exits with status" in log_of(tmp_path)


@pytest.fixture
def mountpoint(public_dir: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="svc-", dir=public_dir))
    yield path
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def helper() -> Path:
    """/sbin/mount.alluxio-s3, as scripts/setup installs it, pointing at this checkout's helper."""
    target = BIN / "mount.alluxio-s3"
    if not HELPER.is_symlink() or os.readlink(HELPER) != str(target):
        if os.geteuid() != 0:
            pytest.skip("installing /sbin/mount.alluxio-s3 needs root (scripts/setup does it)")
        HELPER.unlink(missing_ok=True)
        HELPER.symlink_to(target)
    return HELPER


HOLDER = r"""
import ctypes, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
view = memoryview(sys.stdin.buffer.read(int(sys.argv[2])))
while view:
    view = view[os.write(fd, view):]
if sys.argv[3] == "push":  # have the kernel write its cached pages to the daemon now (no flush, no fsync)
    ctypes.CDLL(None).sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), 2)
print("written", flush=True)
sys.stdin.readline()
try:
    os.close(fd)
    print("closed", flush=True)
except OSError as exc:
    print(f"close: {exc}", flush=True)
"""


@contextlib.contextmanager
def held_open(path: Path, data: bytes, push: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """Another process writes `data` to `path` and keeps the file open, neither flushed nor synced, until the
    block ends. The test process must not hold such a file itself: each subprocess it starts closes a copy of
    the descriptor, and every close is a FUSE flush, which uploads."""
    holder = subprocess.Popen([str(BIN / "python"), "-c", HOLDER, str(path), str(len(data)),
                               "push" if push else "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write(data)
    holder.stdin.flush()
    assert holder.stdout.readline() == b"written\n"
    try:
        yield holder
    finally:
        with contextlib.suppress(OSError):
            holder.stdin.write(b"close\n")
            holder.stdin.close()
        holder.wait(60)


# -- mount(8), fstab and the daemon --------------------------------------------------------------------------


def test_mount_t_and_umount(helper: Path, s3_server: LocalS3, bucket: str, tmp_path: Path, mountpoint: Path) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello from S3")
    options = ",".join(mount_options(s3_server, tmp_path))
    result = subprocess.run(["mount", "-t", "alluxio-s3", f"s3://{bucket}/dir", str(mountpoint), "-o", options],
                            capture_output=True, text=True, env=service_env(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr + log_of(tmp_path)
    # mount(8) returned: the daemon detached only once the mount answered
    assert os.path.ismount(mountpoint)
    assert (mountpoint / "hello.txt").read_bytes() == b"hello from S3"
    mounts = Path("/proc/mounts").read_text()
    assert f" {mountpoint} fuse.alluxio-s3 " in mounts
    (mountpoint / "written.txt").write_bytes(b"through mount -t")
    result = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: daemon_exited(tmp_path), what="the daemon's exit")
    assert "daemon exits with status 0" in log_of(tmp_path)
    assert s3_bytes(s3_server, bucket, "dir/written.txt") == b"through mount -t"


def test_fstab_line(helper: Path, s3_server: LocalS3, bucket: str, tmp_path: Path, mountpoint: Path) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="logs/app.log", Body=b"a line\n")
    fstab = tmp_path / "fstab"
    options = ",".join(["_netdev", "allow_other", "direct_io", *mount_options(s3_server, tmp_path)])
    fstab.write_text(f"# a temporary fstab\ns3://{bucket}/logs {mountpoint} alluxio-s3 {options} 0 0\n")
    result = subprocess.run(["mount", "-T", str(fstab), str(mountpoint)], capture_output=True, text=True,
                            env=service_env(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr + log_of(tmp_path)
    with open(mountpoint / "app.log", "rb", buffering=0) as reader:
        assert reader.readall() == b"a line\n"
        assert cached_pages(reader.fileno()) == 0  # direct_io: read-only opens bypass the page cache
    entry = next(line for line in Path("/proc/mounts").read_text().splitlines() if f" {mountpoint} " in line)
    assert entry.startswith(f"s3://{bucket}/logs/ ") and "allow_other" in entry
    # `s3fuse unmount` finds the helper's daemon by its command line, stops it and waits for its exit
    result = subprocess.run([str(BIN / "s3fuse"), "unmount", str(mountpoint)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert not os.path.ismount(mountpoint) and daemon_exited(tmp_path)
    assert "SIGTERM: stopping" in log_of(tmp_path)
    assert "daemon exits with status 0" in log_of(tmp_path)


def test_mount_failure_is_printed_and_non_zero(helper: Path, s3_server: LocalS3, tmp_path: Path,
                                               mountpoint: Path) -> None:
    options = ",".join(mount_options(s3_server, tmp_path))
    result = subprocess.run(["mount", "-t", "alluxio-s3", "s3://no-such-bucket-here/dir", str(mountpoint), "-o",
                             options], capture_output=True, text=True, env=service_env(tmp_path), timeout=60)
    assert result.returncode != 0
    assert "s3fuse: bucket 'no-such-bucket-here' does not exist" in result.stderr
    assert not os.path.ismount(mountpoint)


# -- a clean stop --------------------------------------------------------------------------------------------


class Stall:
    """A proxy fault that holds every upload request until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.held = 0
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> tuple[int, bytes] | None:
        if request.operation in ("PutObject", "UploadPart", "CompleteMultipartUpload"):
            with self.lock:
                self.held += 1
            self.release.wait(120)
        return None


def test_a_file_reads_while_its_upload_is_held(mount_factory: MountFactory) -> None:
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    data = random.Random(7).randbytes(3 * MiB + 5)
    path = mounted.path / "uploading.bin"
    writer = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    stall = Stall()
    try:
        os.write(writer, data)
        mounted.proxy.fault = stall
        uploader = threading.Thread(target=os.fsync, args=(writer,))  # the upload holds the file's lock
        uploader.start()
        wait_until(lambda: stall.held >= 1, what="the upload starting")
        got: list[bytes] = []

        def read_past_the_page_cache() -> None:
            reader = os.open(path, os.O_RDONLY | os.O_DIRECT)
            buffer = mmap.mmap(-1, 4 * MiB)  # page-aligned, as O_DIRECT wants
            try:
                count = os.readv(reader, [buffer])
                got.append(buffer[:count])
            finally:
                os.close(reader)
                buffer.close()

        reading = threading.Thread(target=read_past_the_page_cache)
        reading.start()
        reading.join(30)
        assert not reading.is_alive(), "a read waited for the upload of its file"
        assert got == [data]
        assert not stall.release.is_set()  # it was answered while the upload was still held
    finally:
        stall.release.set()
    uploader.join(60)
    os.close(writer)
    assert s3_bytes(mounted.server, mounted.bucket, "uploading.bin") == data


def test_sigterm_finishes_uploads_of_open_files(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.master.web.port=0", via_proxy=True)
    assert mounted.proxy is not None
    big = random.Random(5).randbytes(3 * MiB + 17)
    writer = os.open(mounted.path / "big.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    other = os.open(mounted.path / "small.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(writer, big)
        os.write(other, b"first line\n")
        client = mounted.client()
        assert s3_bytes(mounted.server, mounted.bucket, "big.bin") is None  # written, not flushed: only local
        stall = Stall()
        mounted.proxy.fault = stall
        mounted.process.send_signal(signal.SIGTERM)
        wait_until(lambda: stall.held >= 2, what="both uploads starting")
        mounted.process.send_signal(signal.SIGTERM)  # impatience does not cut the stop short
        wait_until(lambda: "already stopping" in mounted.log_text(), what="the second signal logged")
        # stopping: no new change is taken while the uploads in flight finish
        for change in (lambda: os.open(mounted.path / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644),
                       lambda: os.mkdir(mounted.path / "newdir"), lambda: os.unlink(mounted.path / "big.bin")):
            with pytest.raises(OSError) as raised:
                change()
            assert raised.value.errno == errno.EROFS
        late = b"a line written during the stop\n"
        expected = b"first line\n"
        if Operations.enable_writeback_cache:
            os.write(other, late)  # the kernel holds it: the stop has it written back before unmounting
            expected += late
        else:
            with pytest.raises(OSError) as raised:
                os.write(other, late)
            assert raised.value.errno == errno.EROFS
        stall.release.set()
        assert mounted.process.wait(60) == 0, mounted.log_text()
    finally:
        for fd in (writer, other):
            with contextlib.suppress(OSError):  # the mount is gone: the kernel cannot send the last flush
                os.close(fd)
    assert s3_bytes(mounted.server, mounted.bucket, "big.bin") == big
    assert s3_bytes(mounted.server, mounted.bucket, "small.txt") == expected
    assert client.list_multipart_uploads(Bucket=mounted.bucket).get("Uploads", []) == []
    assert "finishing 2 upload(s)" in mounted.log_text()
    assert not os.path.ismount(mounted.path)


def test_sigterm_timeout_keeps_the_staged_bytes(mount_factory: MountFactory, tmp_path: Path) -> None:
    mounted = mount_factory("alluxio.master.web.port=0", "alluxio.fuse.umount.timeout=1sec", via_proxy=True)
    assert mounted.proxy is not None
    data = random.Random(6).randbytes(MiB + 3)
    stall = Stall()
    writer = os.open(mounted.path / "stuck.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(writer, data)
        mounted.proxy.fault = stall
        mounted.process.send_signal(signal.SIGTERM)
        assert mounted.process.wait(60) == 0, mounted.log_text()
    finally:
        stall.release.set()
        with contextlib.suppress(OSError):
            os.close(writer)
    match = re.search(r"stuck\.bin: not uploaded before the mount stopped: its \d+ bytes are kept in (\S+)",
                      mounted.log_text())
    assert match, mounted.log_text()
    assert Path(match.group(1)).read_bytes() == data
    assert Path(match.group(1)).is_relative_to(tmp_path)


def test_unmount_command_finishes_uploads(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.master.web.port=0")
    with held_open(mounted.path / "pending.txt", b"held open by a process"):
        assert s3_bytes(mounted.server, mounted.bucket, "pending.txt") is None
        # `umount` alone fails while a file is open; `s3fuse unmount` stops the daemon cleanly
        busy = subprocess.run(["umount", str(mounted.path)], capture_output=True, text=True)
        assert busy.returncode != 0 and os.path.ismount(mounted.path)
        result = subprocess.run([str(BIN / "s3fuse"), "unmount", str(mounted.path)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr + mounted.log_text()
        assert mounted.process.wait(10) == 0
        assert s3_bytes(mounted.server, mounted.bucket, "pending.txt") == b"held open by a process"


# -- systemd -------------------------------------------------------------------------------------------------


def unit_lines(name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{name}=")]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (scripts/setup installs it)")
    if not os.access("/usr/local/bin/s3fuse", os.X_OK):
        pytest.skip("/usr/local/bin/s3fuse is not installed (scripts/setup links it)")
    instance = tmp_path / "alluxio-s3@mnt-s3.service"
    shutil.copy(UNIT, instance)
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = UNIT.read_text()
    for required in ("Type=notify", "Restart=on-failure", "After=network-online.target", "ExecStop="):
        assert required in text


def expand(command: str, instance: str, mountpoint: Path, env: dict[str, str]) -> list[str]:
    """A unit's command line as systemd runs it: specifiers, then $VAR split into words."""
    command = command.replace("%f", str(mountpoint)).replace("%i", instance).replace("%I", instance)
    words: list[str] = []
    for word in shlex.split(command):
        if word.startswith("$"):
            words += env.get(word[1:], "").split()
        else:
            words.append(word)
    return [str(BIN / "s3fuse") if w == "/usr/local/bin/s3fuse" else w for w in words]


def receive(sock: socket.socket, timeout: float) -> list[str]:
    sock.settimeout(timeout)
    return sock.recv(4096).decode().splitlines()


def test_unit_exec_start_notifies_ready_once_mounted(s3_server: LocalS3, bucket: str, tmp_path: Path,
                                                     mountpoint: Path) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="svc/ready.txt", Body=b"ready")
    instance = subprocess.run(["systemd-escape", "--path", str(mountpoint)], capture_output=True, text=True,
                              check=True).stdout.strip()
    # the unit's own environment, with /etc/s3fuse moved to a temporary directory
    env = clean_aws_environment()
    for assignment in unit_lines("Environment"):
        key, _, value = assignment.partition("=")
        env[key] = value.replace("%i", instance).replace("/etc/s3fuse", str(tmp_path / "etc"))
    conf = Path(env["S3FUSE_CONF_DIR"])
    conf.mkdir(parents=True)
    (conf / "alluxio-site.properties").write_text("\n".join(
        [f"alluxio.master.mount.table.root.ufs=s3://{bucket}/svc", *mount_options(s3_server, tmp_path)]) + "\n")
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    env["NOTIFY_SOCKET"] = str(notify_path)
    [exec_start] = unit_lines("ExecStart")
    log = tmp_path / "unit.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(expand(exec_start, instance, mountpoint, env), env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)
    try:
        states: list[str] = []
        while "READY=1" not in states:
            states = receive(sock, 30)
            assert process.poll() is None, log.read_text()
        # READY=1 arrives only once the mount answers
        assert os.path.ismount(mountpoint)
        assert (mountpoint / "ready.txt").read_bytes() == b"ready"
        assert any(s.startswith("STATUS=serving") for s in states)
        with held_open(mountpoint / "unsaved.txt", b"stop must not lose this"):
            assert s3_bytes(s3_server, bucket, "svc/unsaved.txt") is None
            [exec_stop] = unit_lines("ExecStop")
            stop = expand(exec_stop.replace("$MAINPID", str(process.pid)), instance, mountpoint, env)
            result = subprocess.run(stop, capture_output=True, text=True, timeout=120, env=env)
            assert result.returncode == 0, result.stderr + log.read_text()
            assert process.wait(10) == 0
            assert s3_bytes(s3_server, bucket, "svc/unsaved.txt") == b"stop must not lose this"
        assert "STOPPING=1" in receive(sock, 5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        sock.close()
    assert s3_bytes(s3_server, bucket, "svc/unsaved.txt") == b"stop must not lose this"
    assert not os.path.ismount(mountpoint)


def test_unit_exec_start_failure_sends_no_ready(s3_server: LocalS3, tmp_path: Path, mountpoint: Path) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "alluxio-site.properties").write_text("\n".join(
        ["alluxio.master.mount.table.root.ufs=s3://no-such-bucket-here/svc", *mount_options(s3_server, tmp_path)]))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    env = clean_aws_environment({"S3FUSE_CONF_DIR": str(conf), "NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    [exec_start] = unit_lines("ExecStart")
    result = subprocess.run(expand(exec_start, "x", mountpoint, env), env=env, capture_output=True, text=True,
                            timeout=60)
    states = receive(sock, 5)
    sock.close()
    assert result.returncode == 1  # a failure systemd restarts (Restart=on-failure); 2 is a config error
    assert "READY=1" not in states and any("no-such-bucket-here" in s for s in states if s.startswith("STATUS="))
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


# -- self-check and maintenance ------------------------------------------------------------------------------


def test_run_tests_reports_each_file(mounted: Mounted) -> None:
    (mounted.path / "existing.txt").write_bytes(b"an existing file is read too")
    result = subprocess.run([str(BIN / "s3fuse"), "runTests", str(mounted.path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("Basic_CACHE_THROUGH", "Basic_MUST_CACHE", "Basic_THROUGH", "Basic_ASYNC_THROUGH",
                 "BasicNonByteBuffer_CACHE_THROUGH", "BasicNonByteBuffer_MUST_CACHE", "BasicNonByteBuffer_THROUGH",
                 "BasicNonByteBuffer_ASYNC_THROUGH"):
        assert f"runTest {name}: Passed the test!" in result.stdout
    assert "1 existing file(s) read to the end" in result.stdout
    keys = [o["Key"] for o in mounted.client().list_objects_v2(Bucket=mounted.bucket).get("Contents", [])]
    assert keys == ["existing.txt"]  # the test files are removed again


def test_run_tests_reports_a_failing_file(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.master.web.port=0", "alluxio.underfs.s3.max.error.retry=0", via_proxy=True)
    assert mounted.proxy is not None
    mounted.proxy.fault = lambda request: (500, b"<Error><Code>InternalError</Code></Error>") \
        if request.operation == "PutObject" and "Basic_THROUGH" in request.path else None
    result = subprocess.run([str(BIN / "s3fuse"), "runTests", str(mounted.path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert "runTest Basic_THROUGH: Failed the test!" in result.stdout
    assert "runTest Basic_CACHE_THROUGH: Passed the test!" in result.stdout


def test_format_empties_cache_and_overlay(mount_factory: MountFactory, tmp_path: Path) -> None:
    first = mount_factory("alluxio.master.web.port=0")
    (first.path / "data.bin").write_bytes(os.urandom(MiB))
    assert (first.path / "data.bin").read_bytes()
    os.chmod(first.path / "data.bin", 0o640)  # kept in the local overlay
    assert first.cache is not None
    cache = first.cache
    command = [str(BIN / "s3fuse"), "format", "--option", f"alluxio.user.client.cache.dirs={cache}"]
    env = clean_aws_environment({"S3FUSE_CONF_DIR": str(tmp_path / "noconf")})
    busy = subprocess.run([*command, "--yes"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert busy.returncode == 1 and "in use" in busy.stderr  # never under a running mount
    assert first.unmount() == 0
    (cache / "not-ours.txt").write_text("left alone")
    unconfirmed = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    assert (cache / "overlay").exists()
    done = subprocess.run([*command, "--yes"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in cache.iterdir()) == ["not-ours.txt"]
    second = mount_factory("alluxio.master.web.port=0", cache_of=first)
    assert os.stat(second.path / "data.bin").st_mode & 0o777 != 0o640  # the overlay's chmod is gone
