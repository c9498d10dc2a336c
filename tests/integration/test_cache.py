"""The block cache through the mount: what it keeps, what it shares, what it refuses to serve, and how it reads
ahead. Requests are counted at a recording proxy between the mount and the server."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s3fuse.cache.blocks import IN_FLIGHT_BYTES, PROMOTE_FRACTION
from s3fuse.cache.disk import PIECE
from s3fuse.embedded import LocalS3, free_port
from tests.conftest import Mounted, MountFactory
from tests.support.forward_proxy import Action, Hold, Seen, recording_proxy
from tests.support.pages import cached_pages
from tests.support.waiting import open_files, wait_until

MiB = 1 << 20
SMALL_BLOCKS = "alluxio.user.client.cache.page.size=1MB"
DIRECT_IO = "alluxio.fuse.direct.io.enabled=true"


def drop_page_cache() -> None:
    Path("/proc/sys/vm/drop_caches").write_text("1")  # page cache only: dentries and inodes are shared


def hold_gets(seen: Seen) -> Action | None:
    """Every object GET waits a little at the proxy, so requests that can overlap do."""
    return Hold(0.3) if seen.operation == "GetObject" else None


def test_a_remount_reads_from_the_disk_cache_without_a_get(mount_factory: MountFactory, s3_server: LocalS3,
                                                          bucket: str) -> None:
    data = random.Random(1).randbytes(6 * MiB + 123)
    s3_server.client().put_object(Bucket=bucket, Key="kept.bin", Body=data)
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        endpoint = f"alluxio.underfs.s3.endpoint={proxy.endpoint}"
        first = mount_factory(endpoint, SMALL_BLOCKS)
        assert (first.path / "kept.bin").read_bytes() == data
        assert proxy.count("GetObject") == 7  # each block once
        assert first.unmount() == 0
        again = mount_factory(endpoint, SMALL_BLOCKS, cache_of=first)
        proxy.reset()
        drop_page_cache()
        assert (again.path / "kept.bin").read_bytes() == data
        assert proxy.count("GetObject") == 0


def test_a_replaced_object_is_never_served_from_its_old_blocks(mount_factory: MountFactory, s3_server: LocalS3,
                                                               bucket: str) -> None:
    old, new = random.Random(2).randbytes(3 * MiB), random.Random(3).randbytes(3 * MiB)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="changing.bin", Body=old)
    first = mount_factory(SMALL_BLOCKS)
    assert (first.path / "changing.bin").read_bytes() == old
    assert first.unmount() == 0
    client.put_object(Bucket=bucket, Key="changing.bin", Body=new)  # same size, another ETag
    again = mount_factory(SMALL_BLOCKS, cache_of=first)
    drop_page_cache()
    assert (again.path / "changing.bin").read_bytes() == new


def test_a_remount_with_another_block_size_never_serves_blocks_cut_the_old_way(
        mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    data = random.Random(10).randbytes(9 * MiB)  # block 1 is 1 MiB long either way: [1, 2) MiB or [8, 9) MiB
    s3_server.client().put_object(Bucket=bucket, Key="recut.bin", Body=data)
    first = mount_factory(SMALL_BLOCKS)
    assert (first.path / "recut.bin").read_bytes() == data
    assert first.unmount() == 0
    again = mount_factory("alluxio.user.client.cache.page.size=8MB", cache_of=first)
    drop_page_cache()
    assert (again.path / "recut.bin").read_bytes() == data


def test_a_truncated_cache_entry_is_fetched_again(mount_factory: MountFactory, s3_server: LocalS3,
                                                  bucket: str) -> None:
    data = random.Random(4).randbytes(3 * MiB)
    s3_server.client().put_object(Bucket=bucket, Key="cut.bin", Body=data)
    first = mount_factory(SMALL_BLOCKS)
    assert (first.path / "cut.bin").read_bytes() == data
    assert first.unmount() == 0
    assert first.cache is not None
    blocks = [path for path in first.cache.rglob("*.val") if path.stat().st_size == MiB]
    assert len(blocks) == 3
    for path in blocks:
        path.write_bytes(path.read_bytes()[:1000])
    again = mount_factory(SMALL_BLOCKS, cache_of=first)
    drop_page_cache()
    assert (again.path / "cut.bin").read_bytes() == data
    assert "corrupt" in again.log_text()


def test_concurrent_readers_of_a_block_share_one_get(mount_factory: MountFactory, s3_server: LocalS3,
                                                     bucket: str) -> None:
    data = random.Random(5).randbytes(4 * MiB)
    s3_server.client().put_object(Bucket=bucket, Key="shared.bin", Body=data)
    with recording_proxy(s3_server.endpoint, bucket, hold_gets) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}",
                                "alluxio.user.client.cache.page.size=4MB")
        with ThreadPoolExecutor(6) as pool:
            bodies = list(pool.map(lambda _: (mounted.path / "shared.bin").read_bytes(), range(6)))
        assert bodies == [data] * 6
        assert proxy.count("GetObject") == 1


def test_a_sequential_read_fetches_ahead_in_parallel_within_threads_max(mount_factory: MountFactory,
                                                                        s3_server: LocalS3, bucket: str) -> None:
    data = random.Random(6).randbytes(10 * MiB)
    s3_server.client().put_object(Bucket=bucket, Key="long.bin", Body=data)
    with recording_proxy(s3_server.endpoint, bucket, hold_gets) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}", SMALL_BLOCKS,
                                "alluxio.underfs.s3.threads.max=4", "alluxio.underfs.s3.admin.threads.max=2",
                                "alluxio.underfs.s3.upload.threads.max=2")
        with open(mounted.path / "long.bin", "rb") as reader:
            assert reader.read() == data
        assert proxy.count("GetObject") == 10  # each block once, none twice
        assert proxy.peak["GetObject"] == 4  # read ahead in parallel, never beyond threads.max


def test_blocks_in_flight_for_all_readers_stay_within_their_byte_limit(mount_factory: MountFactory,
                                                                      s3_server: LocalS3, bucket: str) -> None:
    block = 8 * MiB
    files = {f"long{n}.bin": random.Random(20 + n).randbytes(80 * MiB) for n in range(3)}
    for key, data in files.items():
        s3_server.client().put_object(Bucket=bucket, Key=key, Body=data)
    with recording_proxy(s3_server.endpoint, bucket, hold_gets) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}",
                                "alluxio.user.client.cache.page.size=8MB")
        with ThreadPoolExecutor(len(files)) as pool:  # each reader's window alone would be 8 blocks ahead
            bodies = dict(zip(files, pool.map(lambda key: (mounted.path / key).read_bytes(), files), strict=True))
        assert bodies == files
        # prefetched blocks on their way stay within IN_FLIGHT_BYTES; a block a reader waits for is always fetched
        assert proxy.peak["GetObject"] <= IN_FLIGHT_BYTES // block + len(files)
        assert proxy.count("GetObject") == 3 * 10  # each block once


def test_the_disk_tier_keeps_to_its_size_evicting_the_least_recently_used(mount_factory: MountFactory,
                                                                         s3_server: LocalS3, bucket: str) -> None:
    older, newer = random.Random(7).randbytes(3 * MiB), random.Random(8).randbytes(3 * MiB)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="older.bin", Body=older)
    client.put_object(Bucket=bucket, Key="newer.bin", Body=newer)
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        options = (f"alluxio.underfs.s3.endpoint={proxy.endpoint}", SMALL_BLOCKS,
                   "alluxio.user.client.cache.size=4MB")
        first = mount_factory(*options)
        assert first.cache is not None
        cache_dir = first.cache
        assert (first.path / "older.bin").read_bytes() == older
        # its blocks go to the disk tier in the background: all in before the newer file's, which are then the
        # recently used ones (under load, the last of them could land after the newer file's first)
        wait_until(lambda: len(list(cache_dir.rglob("*.val"))) == 3, what="the older file's blocks on disk")
        assert (first.path / "newer.bin").read_bytes() == newer
        assert first.unmount() == 0
        assert sum(path.stat().st_size for path in first.cache.rglob("*.val")) <= 4 * MiB
        again = mount_factory(*options, cache_of=first)
        drop_page_cache()
        proxy.reset()
        assert (again.path / "newer.bin").read_bytes() == newer
        assert proxy.count("GetObject") == 0  # the recently used file stayed
        assert (again.path / "older.bin").read_bytes() == older
        assert proxy.count("GetObject") > 0  # the older one made room


def test_a_block_read_again_from_the_disk_tier_counts_as_used_when_a_write_evicts(
        mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    """A block's second read skips diskcache's index (its file is remembered); that use must still reach the LRU
    order before a later write evicts by it."""
    # "0" sorts first: the sibling read-ahead fetches the files after those opened in name order, not before
    bodies = {name: random.Random(name).randbytes(600_000) for name in ("a", "b", "0")}
    for name, body in bodies.items():
        s3_server.client().put_object(Bucket=bucket, Key=name, Body=body)
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        options = (f"alluxio.underfs.s3.endpoint={proxy.endpoint}", SMALL_BLOCKS,
                   "alluxio.user.client.cache.size=1500KB")  # two of the files, not three
        first = mount_factory(*options)
        assert (first.path / "a").read_bytes() == bodies["a"]
        assert (first.path / "b").read_bytes() == bodies["b"]
        assert first.unmount() == 0
        second = mount_factory(*options, cache_of=first)
        drop_page_cache()
        proxy.reset()
        for name, piece in [("a", 1), ("b", 1), ("a", 3)]:  # a's second read goes by its remembered file
            fd = os.open(second.path / name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                offset = piece * PIECE + 100
                assert os.pread(fd, 4096, offset) == bodies[name][offset:offset + 4096]
            finally:
                os.close(fd)
        assert proxy.count("GetObject") == 0
        assert (second.path / "0").read_bytes() == bodies["0"]  # written to the disk tier: one file must go
        assert second.unmount() == 0
        third = mount_factory(*options, cache_of=first)
        drop_page_cache()
        proxy.reset()
        assert (third.path / "a").read_bytes() == bodies["a"]
        assert proxy.count("GetObject") == 0  # used last, so kept
        assert (third.path / "b").read_bytes() == bodies["b"]
        assert proxy.count("GetObject") > 0  # the least recently used made room


def test_the_mount_asks_the_kernel_for_1_mib_reads(mount_factory: MountFactory) -> None:
    mounted = mount_factory()
    deadline = time.monotonic() + 30
    while "mounted " not in mounted.log_text() and time.monotonic() < deadline:  # raised before it says so
        time.sleep(0.05)
    device = os.stat(mounted.path).st_dev
    knob = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    assert knob.read_text().strip() == "1024"


def resident_pages(path: Path) -> int:
    """How many of the file's pages are in the kernel's page cache. Asking needs an open through the mount: what
    it finds is what that open left in place."""
    with open(path, "rb") as handle:
        return cached_pages(handle.fileno())


def test_an_unchanged_object_keeps_its_page_cache_across_opens(mount_factory: MountFactory, s3_server: LocalS3,
                                                               bucket: str) -> None:
    data = random.Random(9).randbytes(2 * MiB)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="again.bin", Body=data)
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=1sec")
    path = mounted.path / "again.bin"
    assert path.read_bytes() == data
    assert resident_pages(path) == 2 * MiB // mmap.PAGESIZE  # reopened with keep_cache: the kernel kept them
    client.put_object(Bucket=bucket, Key="again.bin", Body=data[::-1])  # same size, another ETag
    time.sleep(1.5)  # past the metadata TTL
    assert resident_pages(path) == 0  # the open saw the new ETag: the old pages are dropped
    assert path.read_bytes() == data[::-1]


def test_with_direct_io_a_reader_bypasses_the_page_cache_and_a_writer_keeps_it(mount_factory: MountFactory,
                                                                             s3_server: LocalS3, bucket: str) -> None:
    data = random.Random(11).randbytes(2 * MiB + 5)
    s3_server.client().put_object(Bucket=bucket, Key="streamed.bin", Body=data)
    mounted = mount_factory(DIRECT_IO)
    path = mounted.path / "streamed.bin"
    with open(path, "rb", buffering=0) as reader:
        assert reader.readall() == data
        assert os.pread(reader.fileno(), 100, 2 * MiB - 50) == data[2 * MiB - 50:]  # unaligned, across the end
        assert cached_pages(reader.fileno()) == 0
        with pytest.raises(OSError) as shared:
            mmap.mmap(reader.fileno(), 0, access=mmap.ACCESS_READ)
        assert shared.value.errno == errno.ENODEV  # the kernel's rule for direct I/O, as documented
        with mmap.mmap(reader.fileno(), 0, access=mmap.ACCESS_COPY) as private:
            assert private[:] == data
    # a writer's open keeps the page cache and shared maps; a direct reader sees what it has not flushed yet
    with open(path, "r+b", buffering=0) as writer:
        os.pwrite(writer.fileno(), b"new!", 0)
        with mmap.mmap(writer.fileno(), 0) as shared_map:
            assert shared_map[:4] == b"new!"
        with open(path, "rb", buffering=0) as reader:
            assert reader.read(8) == b"new!" + data[4:8]
    assert s3_server.client().get_object(Bucket=bucket, Key="streamed.bin")["Body"].read() == b"new!" + data[4:]


def test_a_direct_reader_finds_the_hole_a_writer_just_made(mount_factory: MountFactory) -> None:
    mounted = mount_factory(DIRECT_IO)
    path = mounted.path / "holes.bin"
    path.write_bytes(b"a" * 100)
    with open(path, "r+b", buffering=0) as writer:  # the file is clean in s3fuse: the kernel holds the writes
        os.pwrite(writer.fileno(), b"z", MiB)  # past the end: a hole before it, neither flushed nor synced
        with open(path, "rb", buffering=0) as reader:
            assert os.fstat(reader.fileno()).st_size == MiB + 1
            assert os.pread(reader.fileno(), 10, 1000) == bytes(10)  # not the end of the file
            assert reader.readall() == b"a" * 100 + bytes(MiB - 100) + b"z"


def test_a_direct_reader_of_a_new_version_leaves_no_old_pages_to_a_writer(mount_factory: MountFactory,
                                                                           s3_server: LocalS3, bucket: str) -> None:
    old, new = random.Random(12).randbytes(MiB), random.Random(13).randbytes(MiB)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="versions.bin", Body=old)
    mounted = mount_factory(DIRECT_IO, "alluxio.user.metadata.cache.expiration.time=1sec")
    path = mounted.path / "versions.bin"
    with open(path, "r+b", buffering=0) as writer:  # reads through the page cache, which keeps them
        assert writer.readall() == old
    client.put_object(Bucket=bucket, Key="versions.bin", Body=new)  # same size, another ETag
    time.sleep(1.5)  # past the metadata TTL
    assert path.read_bytes() == new  # direct: the old pages are still in the page cache
    with open(path, "r+b", buffering=0) as writer:
        assert writer.readall() == new


def replaced_after_its_lookup(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> tuple[Mounted, Path]:
    """A file the kernel looked up (it holds the old version's size), then replaced by another writer."""
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="swapped.txt", Body=b"old\n")
    mounted = mount_factory()  # metadata kept for a minute
    path = mounted.path / "swapped.txt"
    assert path.stat().st_size == 4  # known, not yet read
    client.put_object(Bucket=bucket, Key="swapped.txt", Body=b"new, and longer\n")
    return mounted, path


def test_an_object_another_writer_replaced_is_read_anew_within_the_ttl(mount_factory: MountFactory,
                                                                     s3_server: LocalS3, bucket: str) -> None:
    mounted, path = replaced_after_its_lookup(mount_factory, s3_server, bucket)
    with open(path, "rb") as handle:  # opened on the cached metadata: S3 refuses the old ETag's GET (412)
        with pytest.raises(OSError) as raised:
            handle.read()
        assert raised.value.errno == errno.ESTALE
        with pytest.raises(OSError):
            handle.read()  # this open stays on the old version
    assert "replaced in S3 while open" in mounted.log_text()
    Path("/proc/sys/vm/drop_caches").write_text("3")  # nor does the cached listing bring the old one back
    assert path.read_bytes() == b"new, and longer\n"  # the next open reads the new one, within the TTL
    assert path.stat().st_size == 16


def test_an_open_after_another_request_learnt_a_new_version_reads_it_whole(mount_factory: MountFactory,
                                                                          s3_server: LocalS3, bucket: str) -> None:
    _, path = replaced_after_its_lookup(mount_factory, s3_server, bucket)
    assert os.getxattr(path, "user.s3.etag").decode() != ""  # a HEAD: the mount learns the new version
    assert path.read_bytes() == b"new, and longer\n"  # not its first 4 bytes: the kernel is made to look anew


# (a truncate(path) while a writer holds the file waits for that writer's close: it is the newer change then)
@pytest.mark.parametrize(("change", "holder_flags"), [("truncate", os.O_RDONLY), ("rewrite", os.O_RDONLY),
                                                      ("rewrite", os.O_RDWR)],
                         ids=["truncate-reader", "rewrite-reader", "rewrite-writer"])
def test_a_file_held_open_does_not_answer_for_the_version_another_writer_put(mount_factory: MountFactory,
                                                                             change: str, holder_flags: int) -> None:
    """A file this mount changed keeps its local copy while a handle holds it; after another writer replaced the
    object, a new open reads the new version whole, not the old bytes padded to the new size with zeros."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=1sec")
    path = mounted.path / "held.bin"
    old = random.Random(21).randbytes(50_000)
    path.write_bytes(old)
    holder = os.open(path, holder_flags)
    try:
        if change == "truncate":
            os.truncate(path, 40_000)  # uploaded at once, the local copy kept
        else:
            with open(path, "r+b") as writer:
                writer.write(b"x" * 10)
        new = random.Random(22).randbytes(300_000)
        mounted.client().put_object(Bucket=mounted.bucket, Key="held.bin", Body=new)
        time.sleep(1.5)  # past the metadata TTL
        with open(path, "rb") as reader:
            assert os.fstat(reader.fileno()).st_size == len(new)
            assert reader.read() == new
    finally:
        with contextlib.suppress(OSError):  # the old version's handle: EIO once the kernel dropped its inode
            os.close(holder)
    assert path.read_bytes() == new


def test_a_handle_on_the_old_version_never_reads_the_new_one(mount_factory: MountFactory, s3_server: LocalS3,
                                                             bucket: str) -> None:
    """An open that comes after the mount learnt of another writer's version gets that version on an inode of
    its own; the handle opened before reads the old bytes or fails, never the new ones."""
    old, new = random.Random(23).randbytes(3 * MiB), random.Random(24).randbytes(3 * MiB)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="twice.bin", Body=old)
    mounted = mount_factory(SMALL_BLOCKS)  # metadata kept for a minute: the kernel keeps its entry
    path = mounted.path / "twice.bin"
    first = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(first, 4096, 0) == old[:4096]
        client.put_object(Bucket=bucket, Key="twice.bin", Body=new)  # same size, another ETag
        assert os.getxattr(path, "user.s3.etag").decode() != ""  # a HEAD: the mount learns the new version
        with open(path, "rb", buffering=0) as second:
            assert second.readall() == new
        try:
            late = os.pread(first, 4096, 2 * MiB)  # not read before: it reaches the mount now
        except OSError as exc:
            assert exc.errno in (errno.ESTALE, errno.EIO)
        else:
            assert late == old[2 * MiB:2 * MiB + 4096]
    finally:
        with contextlib.suppress(OSError):  # EIO once the kernel dropped the old version's inode
            os.close(first)


def test_an_object_deleted_while_open_for_reading_is_gone_from_its_name_after_the_ttl(
        mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="going.txt", Body=b"here for now\n")
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=1sec")
    path = mounted.path / "going.txt"
    with open(path, "rb") as reader:
        assert reader.read() == b"here for now\n"
        client.delete_object(Bucket=bucket, Key="going.txt")
        time.sleep(1.5)  # past the metadata TTL
        assert not path.exists()
        assert "going.txt" not in os.listdir(mounted.path)
        with pytest.raises(FileNotFoundError):
            path.open("rb")


def test_a_name_another_client_deleted_under_a_reader_is_created_anew(mount_factory: MountFactory) -> None:
    """The reader keeps the old file; a file created under the name is another one, of its own size: the kernel
    once kept the old inode's size for it and wrote back whole pages, so S3 got the new bytes padded with zeros."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=1sec")
    client = mounted.client()
    client.put_object(Bucket=mounted.bucket, Key="again.bin", Body=b"A" * (6 * MiB))
    path = mounted.path / "again.bin"
    reader = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(reader, 4096, 0) == b"A" * 4096
        client.delete_object(Bucket=mounted.bucket, Key="again.bin")
        time.sleep(1.5)  # past the metadata TTL
        new = random.Random(26).randbytes(956_216)  # not a whole number of pages
        with open(path, "wb", buffering=0) as writer:
            assert writer.write(new) == len(new)
            assert os.fstat(writer.fileno()).st_size == len(new)
        assert client.get_object(Bucket=mounted.bucket, Key="again.bin")["Body"].read() == new
        assert path.stat().st_size == len(new)
        assert path.read_bytes() == new
        assert os.fstat(reader).st_ino != path.stat().st_ino
    finally:
        os.close(reader)


def test_an_exclusive_create_is_not_refused_for_a_name_the_kernel_still_holds(mount_factory: MountFactory) -> None:
    """The kernel's entry for the name outlives the object (another client deleted it); once the mount knows,
    an O_CREAT open is made to look the name up again and creates the file, instead of answering ENOENT."""
    mounted = mount_factory()  # metadata (and the kernel's entries) kept for a minute
    client = mounted.client()
    client.put_object(Bucket=mounted.bucket, Key="made.txt", Body=b"old\n")
    path = mounted.path / "made.txt"
    assert path.stat().st_size == 4  # the kernel holds the entry
    client.delete_object(Bucket=mounted.bucket, Key="made.txt")
    with pytest.raises(FileNotFoundError):
        os.getxattr(path, "user.s3.etag")  # a HEAD: the mount learns the object is gone
    with open(path, "wb") as writer:  # O_WRONLY | O_CREAT | O_TRUNC
        writer.write(b"made again\n")
    assert client.get_object(Bucket=mounted.bucket, Key="made.txt")["Body"].read() == b"made again\n"
    assert path.read_bytes() == b"made again\n"


def test_a_file_held_open_reads_and_stats_its_cached_bytes_while_s3_is_down(mount_factory: MountFactory) -> None:
    """The kernel asks for the attributes of an open file before reading it once they are a TTL old: the open
    file's are answered from the mount, so the bytes it already has stay readable without S3."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=1sec", "alluxio.underfs.s3.max.error.retry=1",
                            via_proxy=True)
    assert mounted.proxy is not None
    data = random.Random(25).randbytes(2 * MiB)
    mounted.client().put_object(Bucket=mounted.bucket, Key="kept.bin", Body=data)
    with open(mounted.path / "kept.bin", "rb", buffering=0) as reader:
        assert reader.readall() == data
        mounted.proxy.fault = lambda request: (503, b"<Error><Code>ServiceUnavailable</Code></Error>")
        time.sleep(1.5)  # past the metadata TTL
        assert os.fstat(reader.fileno()).st_size == len(data)
        assert os.pread(reader.fileno(), 4096, MiB) == data[MiB:MiB + 4096]
        mounted.proxy.fault = None


def test_random_reads_use_cached_blocks_and_keep_the_pieces_they_fetch(mount_factory: MountFactory,
                                                                      s3_server: LocalS3, bucket: str) -> None:
    data = random.Random(12).randbytes(6 * MiB)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="cached.bin", Body=data)
    client.put_object(Bucket=bucket, Key="uncached.bin", Body=data)
    rng = random.Random(13)
    per_piece, per_block = PIECE // 4096, MiB // PIECE
    promote_after = per_block // PROMOTE_FRACTION
    # fewer pieces of each block than make the whole block worth fetching: this test is about pieces
    offsets = [piece * per_piece + rng.randrange(per_piece) for block in range(1, len(data) // MiB)
               for piece in rng.sample(range(block * per_block, (block + 1) * per_block), promote_after - 1)]
    rng.shuffle(offsets)
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        endpoint = f"alluxio.underfs.s3.endpoint={proxy.endpoint}"
        first = mount_factory(endpoint, SMALL_BLOCKS)
        assert (first.path / "cached.bin").read_bytes() == data
        assert first.unmount() == 0
        again = mount_factory(endpoint, SMALL_BLOCKS, cache_of=first)  # blocks on disk, none in memory

        def read_at_random(name: str) -> None:
            drop_page_cache()
            fd = os.open(again.path / name, os.O_RDONLY)
            try:
                for page in offsets:
                    assert os.pread(fd, 4096, page * 4096) == data[page * 4096:page * 4096 + 4096]
            finally:
                os.close(fd)

        proxy.reset()
        read_at_random("cached.bin")
        assert proxy.count("GetObject") == 0  # pieces read out of the blocks on disk
        read_at_random("uncached.bin")
        fetched = proxy.count("GetObject")
        assert fetched > 0
        read_at_random("uncached.bin")
        assert proxy.count("GetObject") == fetched  # the pieces fetched the first time were kept


def test_a_random_reader_that_keeps_coming_back_to_a_block_gets_it_whole(mount_factory: MountFactory,
                                                                         s3_server: LocalS3, bucket: str) -> None:
    """Once half of a block's pieces came from S3, the block is fetched whole in the background and the rest of
    its pieces cost no request."""
    data = random.Random(14).randbytes(3 * MiB)
    s3_server.client().put_object(Bucket=bucket, Key="dense.bin", Body=data)
    pieces = [MiB + number * PIECE for number in range(MiB // PIECE)]
    first = pieces[::-2][:len(pieces) // PROMOTE_FRACTION]  # every other piece, backwards: no sequence
    rest = [offset for offset in pieces if offset not in first]
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}", SMALL_BLOCKS)
        fd = os.open(mounted.path / "dense.bin", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # the kernel's read-ahead would blur the pieces
            for offset in first:
                assert os.pread(fd, 4096, offset + 100) == data[offset + 100:offset + 4196]
            block_range = f"bytes={MiB}-{2 * MiB - 1}"
            wait_until(lambda: any(seen.headers.get("range") == block_range for seen in list(proxy.seen))
                       and not proxy.in_flight["GetObject"], what="the whole block's GET")
            gets = proxy.count("GetObject")
            for offset in rest:
                assert os.pread(fd, 4096, offset + 200) == data[offset + 200:offset + 4296]
            assert proxy.count("GetObject") == gets  # the block was there
        finally:
            os.close(fd)


def random_reader(path: Path) -> int:
    """A descriptor whose reads the kernel does not widen: each asks the mount for just its pages."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd


def test_a_random_read_hands_the_kernel_the_whole_piece_it_fetched(mount_factory: MountFactory,
                                                                   s3_server: LocalS3, bucket: str) -> None:
    """The piece fetched to answer one page goes into the page cache: the next reads in it never reach the
    daemon (cachestat shows the piece's pages, and none around it, cached). Again once the kernel let go of it."""
    data = random.Random(16).randbytes(4 * MiB)
    s3_server.client().put_object(Bucket=bucket, Key="sparse.bin", Body=data)
    mounted = mount_factory(SMALL_BLOCKS)
    fd = random_reader(mounted.path / "sparse.bin")
    try:
        offset = 2 * MiB + 3 * PIECE + 100
        piece = offset // PIECE * PIECE
        assert os.pread(fd, 4096, offset) == data[offset:offset + 4096]
        wait_until(lambda: cached_pages(fd, piece, PIECE) == PIECE // mmap.PAGESIZE, what="the piece in the page cache")
        assert cached_pages(fd) == PIECE // mmap.PAGESIZE
        assert all(os.pread(fd, 4096, page) == data[page:page + 4096] for page in range(piece, piece + PIECE, 4096))
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # as fio --invalidate does: the kernel lets go of it
        assert cached_pages(fd) == 0

        pages = iter(range(piece + 8192, piece + PIECE, 4096))

        def read_again() -> bool:  # a read that comes while the first store is finishing finds it under way: the
            page = next(pages)     # next one that reaches the daemon stores the piece again
            assert os.pread(fd, 4096, page) == data[page:page + 4096]
            return cached_pages(fd, piece, PIECE) == PIECE // mmap.PAGESIZE

        wait_until(read_again, what="the piece in the page cache again")
    finally:
        os.close(fd)


def test_a_random_read_in_a_block_in_memory_hands_over_a_mib_of_it_not_the_block(
        mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    """Not the block: a sequential reader's request that came out of order takes the same path, and its
    read-ahead, finding 8 MiB cached, would jump past them and look random from then on."""
    data = random.Random(18).randbytes(4 * MiB)
    s3_server.client().put_object(Bucket=bucket, Key="held.bin", Body=data)
    mounted = mount_factory("alluxio.user.client.cache.page.size=8MB")
    assert (mounted.path / "held.bin").read_bytes() == data  # its one block, now in the daemon's memory
    fd = random_reader(mounted.path / "held.bin")
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert cached_pages(fd) == 0
        offset = MiB + 5 * PIECE + 100
        assert os.pread(fd, 4096, offset) == data[offset:offset + 4096]
        wait_until(lambda: cached_pages(fd, MiB, MiB) == MiB // mmap.PAGESIZE, what="the MiB in the page cache")
        assert cached_pages(fd) == MiB // mmap.PAGESIZE
    finally:
        os.close(fd)


def test_a_reader_that_only_jumps_about_gets_whole_blocks_into_the_page_cache(
        mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    data = random.Random(19).randbytes(24 * MiB)
    s3_server.client().put_object(Bucket=bucket, Key="jumpy.bin", Body=data)
    mounted = mount_factory("alluxio.user.client.cache.page.size=8MB")
    assert (mounted.path / "jumpy.bin").read_bytes() == data  # its blocks, now in the daemon's memory
    fd = random_reader(mounted.path / "jumpy.bin")
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        for offset in (20 * MiB, 2 * MiB, 14 * MiB, 8 * MiB + 100):  # the fourth jump makes it a random reader
            assert os.pread(fd, 4096, offset) == data[offset:offset + 4096]
        wait_until(lambda: cached_pages(fd, 8 * MiB, 8 * MiB) == 8 * MiB // mmap.PAGESIZE,
                   what="the whole block in the page cache")
    finally:
        os.close(fd)


def test_a_file_open_for_writing_gets_nothing_into_its_page_cache(mount_factory: MountFactory,
                                                                 s3_server: LocalS3, bucket: str) -> None:
    """A writer's bytes may sit in the very pages a store would fill (the writeback cache): with a writer open,
    a random read stores nothing, and the writer's bytes stay. The stores go one at a time, in order, so once
    another file's piece is in, one for this file would have landed before it."""
    data = random.Random(17).randbytes(2 * MiB)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="written.bin", Body=data)
    client.put_object(Bucket=bucket, Key="sentinel.bin", Body=data)
    mounted = mount_factory(SMALL_BLOCKS)
    writer = os.open(mounted.path / "written.bin", os.O_RDWR)
    reader, sentinel = random_reader(mounted.path / "written.bin"), random_reader(mounted.path / "sentinel.bin")
    try:
        os.pwrite(writer, b"new!" * 1024, 3 * PIECE)
        assert os.pread(reader, 4096, 3 * PIECE + 8192) == data[3 * PIECE + 8192:3 * PIECE + 12288]
        assert os.pread(sentinel, 4096, 5 * PIECE + 100) == data[5 * PIECE + 100:5 * PIECE + 4196]
        wait_until(lambda: cached_pages(sentinel) == PIECE // mmap.PAGESIZE, what="the other file's piece")
        assert cached_pages(reader) < PIECE // mmap.PAGESIZE
        assert os.pread(reader, 4096, 3 * PIECE) == b"new!" * 1024
    finally:
        for fd in (writer, reader, sentinel):
            os.close(fd)
    assert (mounted.path / "written.bin").read_bytes()[3 * PIECE:3 * PIECE + 4096] == b"new!" * 1024


def test_a_small_file_written_here_is_read_back_without_a_get(mount_factory: MountFactory, s3_server: LocalS3,
                                                               bucket: str) -> None:
    """Our upload's bytes are kept under the ETag S3 gave them; another writer's new version is still fetched."""
    ours, theirs = random.Random(15).randbytes(300_000), random.Random(16).randbytes(200_000)
    port = free_port()
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}", f"alluxio.master.web.port={port}",
                                "alluxio.user.metadata.cache.expiration.time=0")
        (mounted.path / "written.bin").write_bytes(ours)
        # the kernel releases the file after close() returned: until then a read would join the open file and read
        # its local copy
        wait_until(lambda: open_files(port) == 0, what="the file's release")
        drop_page_cache()
        proxy.reset()
        assert (mounted.path / "written.bin").read_bytes() == ours
        assert proxy.count("GetObject") == 0
        s3_server.client().put_object(Bucket=bucket, Key="written.bin", Body=theirs)
        drop_page_cache()
        assert (mounted.path / "written.bin").read_bytes() == theirs
        assert proxy.count("GetObject") > 0
