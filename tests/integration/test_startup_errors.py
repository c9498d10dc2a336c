"""A mount that cannot work stops at once with one clear message and a non-zero exit, and mounts nothing."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from s3fuse.embedded import LocalS3, clean_aws_environment, free_port
from tests.conftest import BIN


def helper(source: str, mountpoint: Path, options: list[str], tmp_path: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "mount.alluxio-s3"), source, str(mountpoint), "-o",
         ",".join([*options, "alluxio.master.web.port=0", f"alluxio.user.client.cache.dirs={tmp_path / 'c'}",
                   f"alluxio.tmp.dirs={tmp_path / 't'}"])],
        capture_output=True, text=True, timeout=180,
        env=clean_aws_environment({"S3FUSE_LOG_DIR": str(tmp_path), "S3FUSE_CONF_DIR": "/nonexistent"}))
    return result.returncode, result.stderr, time.monotonic() - started


def test_missing_bucket(s3_server: LocalS3, tmp_path: Path) -> None:
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    status, stderr, _ = helper("s3://no-such-bucket-anywhere/", mountpoint, s3_server.mount_options(), tmp_path)
    assert status != 0
    assert "bucket 'no-such-bucket-anywhere' does not exist" in stderr
    assert not os.path.ismount(mountpoint)


def test_dead_endpoint_fails_within_the_timeouts(s3_server: LocalS3, bucket: str, tmp_path: Path) -> None:
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    options = [o for o in s3_server.mount_options() if not o.startswith("alluxio.underfs.s3.endpoint=")]
    options += [f"alluxio.underfs.s3.endpoint={dead}", "alluxio.underfs.s3.max.error.retry=1",
                "alluxio.underfs.s3.request.timeout=5sec"]
    status, stderr, took = helper(f"s3://{bucket}/", mountpoint, options, tmp_path)
    assert status != 0
    assert dead in stderr and "alluxio.underfs.s3.endpoint" in stderr  # what failed and what to check
    assert took < 120  # an error, not a hang
    assert not os.path.ismount(mountpoint)


def test_missing_mount_point(s3_server: LocalS3, bucket: str, tmp_path: Path) -> None:
    status, stderr, _ = helper(f"s3://{bucket}/", tmp_path / "absent", s3_server.mount_options(), tmp_path)
    assert status != 0 and "mkdir -p" in stderr


def test_malformed_property(s3_server: LocalS3, bucket: str, tmp_path: Path) -> None:
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    status, stderr, _ = helper(f"s3://{bucket}/", mountpoint,
                               [*s3_server.mount_options(), "alluxio.underfs.s3.socket.timeout=soon"], tmp_path)
    assert status != 0
    assert "alluxio.underfs.s3.socket.timeout" in stderr and "500sec" in stderr
    assert not os.path.ismount(mountpoint)
