"""Crashes: a daemon killed mid-upload leaves no partial object, a restart cleans up after it, and bytes that
could not be uploaded are found again and can be uploaded by `s3fuse recover`."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from s3fuse.embedded import clean_aws_environment
from tests.conftest import BIN, MountFactory
from tests.integration.test_write import close_fails_with_eio
from tests.support.waiting import wait_until

MiB = 1 << 20


def test_kill_during_streaming_upload_leaves_no_partial_object(mount_factory: MountFactory) -> None:
    streaming = ("alluxio.underfs.s3.streaming.upload.enabled=true",
                 "alluxio.underfs.s3.streaming.upload.partition.size=5MB")
    mounted = mount_factory(*streaming, via_proxy=True)
    assert mounted.proxy is not None
    fd = os.open(mounted.path / "big.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    for _ in range(12):
        os.write(fd, random.randbytes(MiB))
    wait_until(lambda: mounted.proxy is not None and mounted.proxy.count("UploadPart") >= 1, 60,
               what="a part uploading")
    os.kill(mounted.process.pid, signal.SIGKILL)
    mounted.process.wait(30)
    with pytest.raises(OSError):
        os.write(fd, b"x")
    with pytest.raises(OSError):
        os.close(fd)
    client = mounted.client()
    assert "Contents" not in client.list_objects_v2(Bucket=mounted.bucket)  # nothing partial under the key
    assert [u["Key"] for u in client.list_multipart_uploads(Bucket=mounted.bucket).get("Uploads", [])] == ["big.bin"]

    # the next start, at the same (now stale) mount point, unmounts it and aborts the stale upload
    again = mount_factory(*streaming, "alluxio.underfs.cleanup.enabled=true",
                          "alluxio.underfs.s3.intermediate.upload.clean.age=0sec", at=mounted.path,
                          cache_of=mounted)
    wait_until(lambda: not client.list_multipart_uploads(Bucket=mounted.bucket).get("Uploads"), 60,
               what="the upload aborted")
    assert "stale FUSE mount" in again.log_text()
    assert os.listdir(again.path) == []


def test_failed_uploads_are_listed_after_a_restart_and_recovered(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.underfs.s3.max.error.retry=0", via_proxy=True)
    close_fails_with_eio(mounted, "lost.txt", b"must not be lost")
    assert mounted.unmount() == 0

    again = mount_factory(cache_of=mounted)
    assert "1 file(s) whose upload failed earlier" in again.log_text()
    options = [item for option in again.options for item in ("--option", option)]
    env = clean_aws_environment({"S3FUSE_CONF_DIR": "/nonexistent"})
    listed = subprocess.run([str(BIN / "s3fuse"), "recover", *options], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and f"s3://{mounted.bucket}/lost.txt" in listed.stdout
    uploaded = subprocess.run([str(BIN / "s3fuse"), "recover", "--upload", *options], capture_output=True,
                              text=True, env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    body = mounted.client().get_object(Bucket=mounted.bucket, Key="lost.txt")["Body"].read()
    assert body == b"must not be lost"
    again_listed = subprocess.run([str(BIN / "s3fuse"), "recover", *options], capture_output=True, text=True,
                                  env=env)
    assert "nothing kept" in again_listed.stdout


def test_corrupt_cache_and_overlay_are_dropped_not_served(mount_factory: MountFactory) -> None:
    data = random.Random(4).randbytes(3 * MiB)
    mounted = mount_factory("alluxio.user.client.cache.page.size=1MB")
    mounted.client().put_object(Bucket=mounted.bucket, Key="c.bin", Body=data)
    assert (mounted.path / "c.bin").read_bytes() == data
    os.chmod(mounted.path / "c.bin", 0o640)
    assert mounted.unmount() == 0
    assert mounted.cache is not None
    values = [p for p in mounted.cache.rglob("*.val") if p.stat().st_size == MiB]
    assert values, "blocks are kept on disk"
    for value in values:
        raw = bytearray(value.read_bytes())
        raw[1000] ^= 0xFF
        value.write_bytes(bytes(raw))
    overlay = next(mounted.cache.rglob("*.sqlite"))
    overlay.write_bytes(b"this is not a database" * 100)
    for leftover in overlay.parent.glob(overlay.name + "-*"):
        leftover.unlink()

    again = mount_factory("alluxio.user.client.cache.page.size=1MB", cache_of=mounted)
    Path("/proc/sys/vm/drop_caches").write_text("3")
    assert (again.path / "c.bin").read_bytes() == data
    assert "corrupt" in again.log_text()
    assert "unreadable" in again.log_text()  # the overlay was set aside, the mount started anyway


def test_full_staging_disk_gives_enospc_and_loses_nothing_else(mount_factory: MountFactory, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        mounted = mount_factory(f"alluxio.tmp.dirs={small}")
        (mounted.path / "fits.txt").write_bytes(b"small file")
        with pytest.raises(OSError) as raised, open(mounted.path / "too-big.bin", "wb") as handle:
            for _ in range(8):
                handle.write(b"z" * MiB)
            handle.flush()
            os.fsync(handle.fileno())
        assert raised.value.errno in (errno.ENOSPC, errno.EIO)
        keys = [o["Key"] for o in mounted.client().list_objects_v2(Bucket=mounted.bucket).get("Contents", [])]
        assert "too-big.bin" not in keys  # no partial object
        assert (mounted.path / "fits.txt").read_bytes() == b"small file"
        assert mounted.unmount() == 0
        kept = [p for p in (small / "s3fuse-recovery").iterdir() if p.name.endswith("too-big.bin")]
        assert kept and kept[0].read_bytes() == b"z" * kept[0].stat().st_size  # what was written, kept
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
