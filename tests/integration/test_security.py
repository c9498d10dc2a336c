"""Secrets stay out of the process list and the logs; local state is private to the user running s3fuse."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.conftest import BIN, Mounted, MountFactory


def test_secret_key_is_not_in_ps_or_logs(mount_factory: MountFactory, s3_server) -> None:
    mounted = mount_factory()
    (mounted.path / "f.txt").write_bytes(b"x")
    secret = s3_server.secret_key
    cmdline = Path(f"/proc/{mounted.process.pid}/cmdline").read_bytes()
    assert secret.encode() not in cmdline and b"aws.secretKey=*" in cmdline
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert secret not in ps
    assert secret not in mounted.log_text()


def test_bad_credentials_error_does_not_echo_the_secret(tmp_path: Path, mounted: Mounted) -> None:
    wrong = "wrong-secret-value-1234567890"
    options = [o for o in mounted.server.mount_options() if not o.startswith("aws.secretKey=")]
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    command = [str(BIN / "mount.alluxio-s3"), f"s3://{mounted.bucket}/", str(mountpoint), "-o",
               ",".join([*options, f"aws.secretKey={wrong}", "alluxio.master.web.port=0",
                         f"alluxio.user.client.cache.dirs={tmp_path / 'c'}", f"alluxio.tmp.dirs={tmp_path / 's'}"])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "S3FUSE_LOG_DIR": str(tmp_path)})
    if result.returncode == 0:  # moto without IAM enforcement accepts any key: the mount came up
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False)
    assert wrong not in result.stdout + result.stderr
    for log in tmp_path.glob("*.log"):
        assert wrong not in log.read_text(errors="replace")


def test_local_state_is_private(mounted: Mounted) -> None:
    with open(mounted.path / "open.txt", "wb") as handle:
        handle.write(b"staged while open")
        handle.flush()
        os.fsync(handle.fileno())  # the kernel hands the bytes over: they are staged until the close
        assert mounted.staging is not None and mounted.cache is not None
        staged = [p for p in (mounted.staging / "s3fuse-staging").iterdir() if p.is_file()]
        assert staged and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in staged)
    for directory in (mounted.staging / "s3fuse-staging", mounted.staging / "s3fuse-recovery", mounted.cache):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for database in mounted.cache.rglob("*.sqlite"):
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
