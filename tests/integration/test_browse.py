"""Browsing a bucket through a real FUSE mount: listings, attributes and bytes equal what S3 says."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s3fuse.embedded import SAMPLE_FILES
from tests.conftest import Mounted, MountFactory
from tests.support.proxy import running_proxy


def s3_tree(mounted: Mounted, prefix: str = "") -> dict[str, tuple[int, str]]:
    """Every file the mount should show, as path -> (size, md5), straight from S3."""
    client = mounted.client()
    tree = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=mounted.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):
                continue
            body = client.get_object(Bucket=mounted.bucket, Key=item["Key"])["Body"].read()
            tree[item["Key"][len(prefix):]] = (len(body), hashlib.md5(body).hexdigest())
    return tree


def mount_tree(root: Path) -> dict[str, tuple[int, str]]:
    tree = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            data = path.read_bytes()
            assert path.stat().st_size == len(data)
            tree[str(path.relative_to(root))] = (len(data), hashlib.md5(data).hexdigest())
    return tree


def test_sample_tree_matches_s3(mount_factory: MountFactory, s3_server, bucket) -> None:
    seed_files(s3_server, bucket)
    mounted = mount_factory()
    assert mount_tree(mounted.path) == s3_tree(mounted)
    assert sorted(os.listdir(mounted.path)) == ["README.txt", "data", "empty-dir", "logs", "with space"]
    assert os.listdir(mounted.path / "empty-dir") == []
    assert (mounted.path / "with space" / "und ünïcode.txt").read_bytes() == SAMPLE_FILES[
        "with space/und ünïcode.txt"]


def raw_entries(directory: Path) -> dict[str, int]:
    """Name -> d_ino of every entry readdir(3) returns, "." and ".." included (os.listdir drops them)."""
    class Dirent(ctypes.Structure):
        _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                    ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]

    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.argtypes = libc.closedir.argtypes = [ctypes.c_void_p]
    libc.readdir.restype = ctypes.POINTER(Dirent)
    stream = libc.opendir(os.fsencode(directory))
    assert stream, os.strerror(ctypes.get_errno())
    entries = {}
    try:
        while entry := libc.readdir(stream):
            entries[os.fsdecode(entry.contents.d_name)] = entry.contents.d_ino
    finally:
        libc.closedir(stream)
    return entries


def test_readdir_names_dot_and_dotdot(mount_factory: MountFactory, s3_server, bucket) -> None:
    """As every local filesystem does; some programs and test suites count on them."""
    seed_files(s3_server, bucket)
    mounted = mount_factory()
    for directory, parent in ((mounted.path, mounted.path), (mounted.path / "data", mounted.path),
                              (mounted.path / "data" / "nested", mounted.path / "data")):
        entries = raw_entries(directory)
        assert sorted(entries) == sorted([".", "..", *os.listdir(directory)])
        assert entries["."] == directory.stat().st_ino
        assert entries[".."] == parent.stat().st_ino


def seed_files(server, bucket: str) -> None:
    client = server.client()
    for key, body in SAMPLE_FILES.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def test_attributes_come_from_the_listing(mount_factory: MountFactory, s3_server, bucket) -> None:
    seed_files(s3_server, bucket)
    mounted = mount_factory()
    client = mounted.client()
    head = client.head_object(Bucket=bucket, Key="data/numbers.csv")
    st = os.stat(mounted.path / "data" / "numbers.csv")
    assert st.st_size == head["ContentLength"]
    assert int(st.st_mtime) == int(head["LastModified"].timestamp())
    assert os.path.isdir(mounted.path / "data" / "nested")
    # inode numbers are stable within a mount
    assert os.stat(mounted.path / "data" / "numbers.csv").st_ino == st.st_ino
    assert len({os.stat(mounted.path / name).st_ino for name in os.listdir(mounted.path)}) == 5


def test_prefix_mount_shows_only_that_directory(mount_factory: MountFactory, s3_server, bucket) -> None:
    seed_files(s3_server, bucket)
    mounted = mount_factory(prefix="data/nested")
    assert sorted(os.listdir(mounted.path)) == ["blob.bin", "deeper"]
    assert mount_tree(mounted.path) == s3_tree(mounted, "data/nested/")


def test_key_both_file_and_prefix(mount_factory: MountFactory, s3_server, bucket) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="a", Body=b"file a")
    client.put_object(Bucket=bucket, Key="a/b", Body=b"inside a")
    client.put_object(Bucket=bucket, Key="a.txt", Body=b"sorted between a and a/")
    mounted = mount_factory()
    assert sorted(os.listdir(mounted.path)) == ["a", "a.txt"]
    assert os.path.isdir(mounted.path / "a")
    assert (mounted.path / "a" / "b").read_bytes() == b"inside a"
    assert (mounted.path / "a.txt").read_bytes() == b"sorted between a and a/"


def test_odd_names_round_trip(mount_factory: MountFactory, s3_server, bucket) -> None:
    names = ["sp ace", "per%cent", "pl+us", "back\\slash", "ünï©ødé", "tab\there", "q?uery&amp=1", "star*"]
    client = s3_server.client()
    for name in names:
        client.put_object(Bucket=bucket, Key=f"odd/{name}", Body=name.encode())
    client.put_object(Bucket=bucket, Key="odd/bad//empty-segment", Body=b"x")
    client.put_object(Bucket=bucket, Key="odd/" + "x" * 300, Body=b"too long a name")
    mounted = mount_factory()
    assert sorted(os.listdir(mounted.path / "odd")) == sorted([*names, "bad"])
    for name in names:
        assert (mounted.path / "odd" / name).read_bytes() == name.encode()
    assert os.listdir(mounted.path / "odd" / "bad") == []  # "bad//empty-segment" is skipped, not a crash
    assert "skipping key" in mounted.log_text()


def test_missing_key_is_enoent(mounted: Mounted) -> None:
    with pytest.raises(FileNotFoundError):
        os.stat(mounted.path / "nope")
    with pytest.raises(FileNotFoundError):
        open(mounted.path / "nope" / "deeper", "rb")
    with pytest.raises(OSError) as raised:
        os.stat(mounted.path / ("n" * 256))
    assert raised.value.errno == errno.ENAMETOOLONG


def test_reads_across_blocks_and_at_random_offsets(mount_factory: MountFactory, s3_server, bucket) -> None:
    body = random.Random(7).randbytes(5 * 1024 * 1024 + 123)
    s3_server.client().put_object(Bucket=bucket, Key="big.bin", Body=body)
    mounted = mount_factory("alluxio.user.client.cache.page.size=1MB")
    path = mounted.path / "big.bin"
    assert path.read_bytes() == body
    rng = random.Random(11)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(200):
            offset = rng.randrange(0, len(body) + 10)
            length = rng.choice([1, 4096, 65536, 1 << 20, 3 << 20])
            assert os.pread(fd, length, offset) == body[offset:offset + length]
    finally:
        os.close(fd)


def test_concurrent_readers_get_the_same_bytes(mount_factory: MountFactory, s3_server, bucket) -> None:
    body = random.Random(3).randbytes(3 * 1024 * 1024)
    s3_server.client().put_object(Bucket=bucket, Key="shared.bin", Body=body)
    mounted = mount_factory("alluxio.user.client.cache.page.size=1MB")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: (mounted.path / "shared.bin").read_bytes(), range(8)))
    assert all(result == body for result in results)


def test_ten_thousand_keys_list_completely_with_few_requests(mount_factory: MountFactory, s3_server,
                                                             bucket) -> None:
    client = s3_server.client()
    keys = [f"many/k{n:05d}" for n in range(10_000)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b""), keys))
    with running_proxy(s3_server.endpoint) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}")
        proxy.reset()
        names = os.listdir(mounted.path / "many")
        for name in names[:50]:
            os.stat(mounted.path / "many" / name)
        assert sorted(names) == [key.split("/")[1] for key in keys]
        operations = proxy.operations()
    # 10 pages of 1,000, and the lookup of "many": one recursive page of the root (too small for its 10,000 keys),
    # then one page of the root's own entries, which names "many/"
    assert operations.count("ListObjectsV2") <= 12
    assert operations.count("HeadObject") == 0  # neither for "many" nor for a stat after readdir


def test_readonly_mount_refuses_writes_and_sends_no_mutation(mount_factory: MountFactory, s3_server,
                                                              bucket) -> None:
    seed_files(s3_server, bucket)
    with running_proxy(s3_server.endpoint) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}", args=("--readonly",))
        for attempt in (lambda: open(mounted.path / "new.txt", "wb"),
                        lambda: open(mounted.path / "README.txt", "ab"),
                        lambda: os.mkdir(mounted.path / "newdir"),
                        lambda: os.unlink(mounted.path / "README.txt")):
            with pytest.raises(OSError) as raised:
                attempt()
            assert raised.value.errno == errno.EROFS
        assert (mounted.path / "README.txt").read_bytes() == SAMPLE_FILES["README.txt"]
        assert os.stat(mounted.path).st_mode & 0o222 == 0
        sent = set(proxy.operations())
    assert not sent & {"PutObject", "DeleteObject", "DeleteObjects", "CopyObject", "CreateMultipartUpload"}


def test_unmount_ends_the_daemon_cleanly(mounted: Mounted) -> None:
    os.listdir(mounted.path)
    assert mounted.unmount() == 0
    assert not os.path.ismount(mounted.path)


def test_random_reads_fetch_only_what_they_need(mount_factory: MountFactory, s3_server, bucket) -> None:
    body = random.Random(21).randbytes(24 * 1024 * 1024)
    s3_server.client().put_object(Bucket=bucket, Key="rand.bin", Body=body)
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    rng = random.Random(5)
    fd = os.open(mounted.path / "rand.bin", os.O_RDONLY)
    try:
        mounted.proxy.reset()
        for _ in range(30):
            offset = rng.randrange(5 << 20, len(body) - 4096)
            assert os.pread(fd, 4096, offset) == body[offset:offset + 4096]
    finally:
        os.close(fd)
    ranges = [r.headers.get("range", "") for r in mounted.proxy.requests if r.operation == "GetObject"]
    sizes = [int(end) - int(start) + 1 for start, end in (r.removeprefix("bytes=").split("-") for r in ranges)]
    assert sizes and max(sizes) <= 2 << 20  # a small aligned range (plus the kernel's read-ahead), not 8 MiB


def test_small_files_read_in_order_are_fetched_ahead(mount_factory: MountFactory, s3_server, bucket) -> None:
    """A reader going through a directory's small files in name order finds the next ones already on their
    way; every file is still fetched once, and its bytes are its own."""
    client = s3_server.client()
    bodies = {f"small/f{n:02d}": random.Random(n).randbytes(3000 + n) for n in range(20)}
    for key, body in bodies.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    mounted = mount_factory(via_proxy=True)
    proxy = mounted.proxy
    assert proxy is not None
    names = sorted(os.listdir(mounted.path / "small"))
    proxy.reset()

    def fetched() -> list[str]:
        with proxy.lock:
            return [r.path.rsplit("/", 1)[1] for r in proxy.requests if r.operation == "GetObject"]

    for name in names[:2]:
        assert (mounted.path / "small" / name).read_bytes() == bodies[f"small/{name}"]
    for _ in range(300):  # the second open in order sends the next files' GETs before they are opened
        if set(names[2:10]) <= set(fetched()):
            break
        time.sleep(0.1)
    assert set(names[2:10]) <= set(fetched())
    for name in names:
        assert (mounted.path / "small" / name).read_bytes() == bodies[f"small/{name}"]
    assert sorted(fetched()) == names  # one GET per file
