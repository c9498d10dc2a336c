"""Nested mounts (Alluxio's unified namespace): another bucket grafted at a path of a running mount."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from s3fuse import control
from s3fuse.embedded import LocalS3, clean_aws_environment
from tests.conftest import BIN, Mounted, MountFactory


def fs(*args: str, server: LocalS3 | None = None) -> subprocess.CompletedProcess[str]:
    options = [item for option in (server.mount_options() if server else []) for item in ("--option", option)]
    command = [str(BIN / "s3fuse"), "fs", *args[:1], *options, *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env=clean_aws_environment({"S3FUSE_CONF_DIR": "/nonexistent"}))


@pytest.fixture
def other_bucket(s3_server: LocalS3) -> str:
    name = f"o-{uuid.uuid4().hex[:20]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="data/hello.txt", Body=b"from the other bucket")
    client.put_object(Bucket=name, Key="data/sub/deep.txt", Body=b"deep")
    return name


def test_a_nested_mount_stays_while_a_reader_holds_an_older_version_there(mount_factory: MountFactory,
                                                                          other_bucket: str) -> None:
    """A reader left on a version another writer replaced still reads through the nested mount's client: the
    mount is busy until it closes."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=1sec")
    point = mounted.path / "other"
    assert fs("mount", str(point), f"s3://{other_bucket}/data", server=mounted.server).returncode == 0
    reader = os.open(point / "hello.txt", os.O_RDONLY)
    try:
        assert os.read(reader, 100) == b"from the other bucket"
        mounted.client().put_object(Bucket=other_bucket, Key="data/hello.txt", Body=b"replaced")
        time.sleep(1.5)  # past the metadata TTL
        assert (point / "hello.txt").read_bytes() == b"replaced"  # its own open file; the reader keeps the old
        busy = fs("unmount", str(point))
        assert busy.returncode != 0 and "open file" in busy.stderr
    finally:
        with contextlib.suppress(OSError):  # EIO once the kernel dropped the old version's inode
            os.close(reader)
    assert fs("unmount", str(point)).returncode == 0


def test_graft_use_and_remove_another_bucket(mounted: Mounted, other_bucket: str) -> None:
    (mounted.path / "local.txt").write_bytes(b"root bucket")
    point = mounted.path / "other"
    done = fs("mount", str(point), f"s3://{other_bucket}/data", server=mounted.server)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(point)) == ["hello.txt", "sub"]
    assert "other" in os.listdir(mounted.path)
    assert (point / "hello.txt").read_bytes() == b"from the other bucket"
    (point / "new.txt").write_bytes(b"written through the nested mount")
    body = mounted.client().get_object(Bucket=other_bucket, Key="data/new.txt")["Body"].read()
    assert body == b"written through the nested mount"
    with pytest.raises(OSError) as raised:
        os.rename(mounted.path / "local.txt", point / "moved.txt")
    assert raised.value.errno == errno.EXDEV
    with pytest.raises(OSError) as raised:
        os.rmdir(point)
    assert raised.value.errno in (errno.EBUSY, errno.ENOTEMPTY)

    listing = fs("mount")
    assert listing.returncode == 0
    assert f"s3://{other_bucket}/data/" in listing.stdout and f"s3://{mounted.bucket}/" in listing.stdout

    assert fs("unmount", str(point)).returncode == 0
    assert not point.exists()
    assert "other" not in os.listdir(mounted.path)
    keys = [o["Key"] for o in mounted.client().list_objects_v2(Bucket=mounted.bucket).get("Contents", [])]
    assert keys == ["local.txt"]  # nothing of the nested mount leaked into the root bucket


def test_readonly_nested_mount_under_a_writable_root(mounted: Mounted, other_bucket: str) -> None:
    point = mounted.path / "ro"
    done = fs("mount", "--readonly", str(point), f"s3://{other_bucket}/", server=mounted.server)
    assert done.returncode == 0, done.stderr
    with pytest.raises(OSError) as raised:
        (point / "x.txt").write_bytes(b"no")
    assert raised.value.errno == errno.EROFS
    (mounted.path / "rw.txt").write_bytes(b"yes")  # the root stays writable
    assert (point / "data" / "hello.txt").read_bytes() == b"from the other bucket"


def test_refused_requests(mounted: Mounted, other_bucket: str) -> None:
    os.mkdir(mounted.path / "exists")
    for path in (mounted.path / "exists", mounted.path / "a" / ".." / ".." / "escape"):
        done = fs("mount", str(path), f"s3://{other_bucket}/", server=mounted.server)
        assert done.returncode != 0
    done = fs("mount", str(mounted.path / "missing-bucket"), "s3://no-such-bucket-here/", server=mounted.server)
    assert done.returncode != 0 and "does not exist" in done.stderr
    assert not (mounted.path / "missing-bucket").exists()


def test_control_socket_is_root_only(mounted: Mounted) -> None:
    path = control.socket_path(str(mounted.path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    script = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1])\n"
              "except OSError as e:\n    sys.exit(e.errno)\n")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                             "-c", script, str(path)], timeout=30)
    assert result.returncode == errno.EACCES
    assert Path(path).exists()


def test_nested_mounts_from_the_site_file_come_back_at_start(mount_factory: MountFactory, other_bucket: str,
                                                             s3_server: LocalS3, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    common = "\n".join(s3_server.mount_options())
    (conf / "alluxio-site.properties").write_text(
        f"{common}\n"
        f"alluxio.master.mount.table.archive.ufs=s3://{other_bucket}/data\n"
        "alluxio.master.mount.table.archive.path=/archive\n"
        "alluxio.master.mount.table.archive.readonly=true\n")
    mounted = mount_factory(env={"S3FUSE_CONF_DIR": str(conf)})
    assert (mounted.path / "archive" / "hello.txt").read_bytes() == b"from the other bucket"
    with pytest.raises(OSError) as raised:
        (mounted.path / "archive" / "new.txt").write_bytes(b"no")
    assert raised.value.errno == errno.EROFS
    (mounted.path / "root.txt").write_bytes(b"the root is writable")
