"""Faults between s3fuse and S3, injected by a proxy: transient ones are survived with the right bytes,
persistent ones become EIO in bounded time, and no read ever returns bytes that differ from the object."""

from __future__ import annotations

import errno
import itertools
import os
import random
import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import Mounted, MountFactory
from tests.support.proxy import Fault, Mangle, Request

MiB = 1 << 20
SLOW_DOWN = (503, b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>")
INTERNAL = (500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>")


def first_n(operation: str, n: int, answer: tuple[int, bytes] | Mangle) -> Fault:
    """Fail the first `n` requests of one operation, then relay."""
    counter = itertools.count()
    lock = threading.Lock()

    def fault(request: Request) -> tuple[int, bytes] | Mangle | None:
        if request.operation != operation:
            return None
        with lock:
            return answer if next(counter) < n else None
    return fault


def always(operation: str, answer: tuple[int, bytes] | Mangle) -> Fault:
    return lambda request: answer if request.operation == operation else None


def faulty_mount(mount_factory: MountFactory, *options: str) -> Mounted:
    mounted = mount_factory("alluxio.user.client.cache.page.size=1MB", "alluxio.underfs.s3.max.error.retry=3",
                            *options, via_proxy=True)
    assert mounted.proxy is not None
    return mounted


def put(mounted: Mounted, key: str, data: bytes) -> None:
    mounted.client().put_object(Bucket=mounted.bucket, Key=key, Body=data)


@pytest.mark.parametrize(("name", "answer"), [("slowdown", SLOW_DOWN), ("internal", INTERNAL),
                                              ("reset", Mangle("reset")), ("truncated", Mangle("truncate"))])
def test_transient_read_faults_are_survived(mount_factory: MountFactory, name: str,
                                            answer: tuple[int, bytes] | Mangle) -> None:
    mounted = faulty_mount(mount_factory)
    data = random.Random(name).randbytes(3 * MiB + 17)
    put(mounted, "obj", data)
    assert mounted.proxy is not None
    mounted.proxy.fault = first_n("GetObject", 2, answer)
    assert (mounted.path / "obj").read_bytes() == data


@pytest.mark.parametrize("answer", [INTERNAL, Mangle("truncate"), Mangle("reset")], ids=["500", "truncated", "reset"])
def test_persistent_read_faults_are_eio_never_wrong_bytes(mount_factory: MountFactory,
                                                          answer: tuple[int, bytes] | Mangle) -> None:
    mounted = faulty_mount(mount_factory)
    put(mounted, "obj", b"x" * (2 * MiB))
    os.stat(mounted.path / "obj")
    assert mounted.proxy is not None
    mounted.proxy.fault = always("GetObject", answer)
    started = time.monotonic()
    with pytest.raises(OSError) as raised:
        (mounted.path / "obj").read_bytes()
    assert raised.value.errno == errno.EIO
    assert time.monotonic() - started < 120  # an error, not a hang
    mounted.proxy.fault = None  # healed: the same file reads correctly without a remount
    assert (mounted.path / "obj").read_bytes() == b"x" * (2 * MiB)


def test_transient_upload_faults_are_retried(mount_factory: MountFactory) -> None:
    mounted = faulty_mount(mount_factory)
    assert mounted.proxy is not None
    mounted.proxy.fault = first_n("PutObject", 2, SLOW_DOWN)
    (mounted.path / "up.txt").write_bytes(b"made it")
    assert mounted.client().get_object(Bucket=mounted.bucket, Key="up.txt")["Body"].read() == b"made it"


def test_transient_listing_faults_are_retried(mount_factory: MountFactory) -> None:
    mounted = faulty_mount(mount_factory)
    for n in range(5):
        put(mounted, f"d/f{n}", b"")
    assert mounted.proxy is not None
    mounted.proxy.fault = first_n("ListObjectsV2", 2, INTERNAL)
    assert sorted(os.listdir(mounted.path / "d")) == [f"f{n}" for n in range(5)]


def test_multipart_part_failure_aborts_and_keeps_bytes(mount_factory: MountFactory) -> None:
    mounted = faulty_mount(mount_factory, "alluxio.underfs.s3.multipart.upload.threshold=5MB",
                           "alluxio.underfs.s3.max.error.retry=1")
    assert mounted.proxy is not None
    mounted.proxy.fault = always("UploadPart", INTERNAL)
    handle = open(mounted.path / "parts.bin", "wb")
    handle.write(b"p" * (12 * MiB))
    with pytest.raises(OSError) as raised:
        handle.close()
    assert raised.value.errno == errno.EIO
    client = mounted.client()
    assert "Contents" not in client.list_objects_v2(Bucket=mounted.bucket, Prefix="parts.bin")
    uploads: Callable[[], list[object]] = lambda: client.list_multipart_uploads(  # noqa: E731
        Bucket=mounted.bucket).get("Uploads", [])
    assert uploads() == []  # aborted, not left behind
    assert "parts.bin" in mounted.log_text() and "kept in" in mounted.log_text()
