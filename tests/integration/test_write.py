"""Writing through a real mount: byte-exact uploads, random writes, streaming parts, failures at close."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from s3fuse.embedded import free_port
from tests.conftest import Mounted, MountFactory
from tests.support.proxy import Mangle, Request, announced
from tests.support.waiting import open_files, wait_until

MiB = 1 << 20


def s3_bytes(mounted: Mounted, key: str) -> bytes:
    body: bytes = mounted.client().get_object(Bucket=mounted.bucket, Key=key)["Body"].read()
    return body


def s3_keys(mounted: Mounted) -> list[str]:
    reply = mounted.client().list_objects_v2(Bucket=mounted.bucket)
    return [item["Key"] for item in reply.get("Contents", [])]


def write_file(path: Path, data: bytes, chunk: int = MiB) -> None:
    with open(path, "wb") as handle:
        for start in range(0, len(data), chunk):
            handle.write(data[start:start + chunk])


@pytest.mark.parametrize("size", [0, 1, 5 * MiB - 1, 5 * MiB, 64 * MiB + 1])
def test_round_trip_is_byte_exact(mounted: Mounted, size: int) -> None:
    data = random.Random(size).randbytes(size)
    write_file(mounted.path / "f.bin", data)
    assert s3_bytes(mounted, "f.bin") == data  # durable when close() returned
    assert (mounted.path / "f.bin").read_bytes() == data
    assert os.stat(mounted.path / "f.bin").st_size == size


def test_large_file_goes_up_as_parallel_multipart(mount_factory: MountFactory) -> None:
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    rng = random.Random(300)
    digest = hashlib.md5()
    with open(mounted.path / "big.bin", "wb") as handle:
        for _ in range(300 // 4):
            block = rng.randbytes(4 * MiB)
            digest.update(block)
            handle.write(block)
    assert mounted.proxy.count("UploadPart") >= 4
    assert mounted.proxy.count("CompleteMultipartUpload") == 1
    assert hashlib.md5(s3_bytes(mounted, "big.bin")).hexdigest() == digest.hexdigest()
    assert os.stat(mounted.path / "big.bin").st_size == 300 * MiB


def test_random_writes_match_a_local_file(mounted: Mounted, tmp_path: Path) -> None:
    rng = random.Random(5)
    original = rng.randbytes(3 * MiB)
    mounted.client().put_object(Bucket=mounted.bucket, Key="r.bin", Body=original)
    control = tmp_path / "control.bin"
    control.write_bytes(original)
    with open(mounted.path / "r.bin", "r+b") as remote, open(control, "r+b") as local:
        for _ in range(60):
            offset = rng.randrange(0, 4 * MiB)
            data = rng.randbytes(rng.choice([1, 100, 4096, 70_000]))
            for handle in (remote, local):
                handle.seek(offset)
                handle.write(data)
            if rng.random() < 0.2:
                size = rng.randrange(0, 4 * MiB)
                remote.truncate(size)
                local.truncate(size)
            remote.flush()
            local.flush()
            assert os.pread(remote.fileno(), 5000, offset) == os.pread(local.fileno(), 5000, offset)
    assert s3_bytes(mounted, "r.bin") == control.read_bytes()
    assert (mounted.path / "r.bin").read_bytes() == control.read_bytes()


def test_append_and_overwrite_fetch_only_what_they_need(mount_factory: MountFactory) -> None:
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    mounted.client().put_object(Bucket=mounted.bucket, Key="log.txt", Body=b"one\n")
    with open(mounted.path / "log.txt", "ab") as handle:
        handle.write(b"two\n")
    assert s3_bytes(mounted, "log.txt") == b"one\ntwo\n"
    mounted.proxy.reset()
    with open(mounted.path / "log.txt", "wb") as handle:  # O_TRUNC: the old bytes are never fetched
        handle.write(b"fresh")
    assert mounted.proxy.count("GetObject") == 0
    assert s3_bytes(mounted, "log.txt") == b"fresh"


def test_read_your_writes_across_handles_before_close(mounted: Mounted) -> None:
    path = mounted.path / "shared.txt"
    writer = open(path, "wb")
    try:
        writer.write(b"visible before close")
        writer.flush()
        with open(path, "rb") as reader:
            assert reader.read() == b"visible before close"
        assert os.stat(path).st_size == len(b"visible before close")
    finally:
        writer.close()


def test_exclusive_create(mounted: Mounted) -> None:
    (mounted.path / "x").write_bytes(b"1")
    with pytest.raises(FileExistsError):
        os.open(mounted.path / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    fd = os.open(mounted.path / "y", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    os.close(fd)
    assert "y" in s3_keys(mounted)
    assert os.stat(mounted.path / "y").st_mode & 0o777 == 0o640


def test_unlinked_file_stays_usable_through_its_handle(mounted: Mounted) -> None:
    path = mounted.path / "gone.txt"
    path.write_bytes(b"still here")
    with open(path, "r+b") as handle:
        os.unlink(path)
        assert not path.exists()
        assert "gone.txt" not in s3_keys(mounted)
        assert handle.read() == b"still here"
        handle.write(b" and more")
        handle.seek(0)
        assert handle.read() == b"still here and more"
    assert "gone.txt" not in s3_keys(mounted)  # never uploaded after the unlink


@pytest.mark.parametrize("streaming", ["false", "true"])
def test_a_new_file_is_found_by_name_before_its_first_close_with_a_ttl_of_0(mount_factory: MountFactory,
                                                                            streaming: str) -> None:
    """With no metadata cache a lookup asks S3, which has no object before the close: the open file must still
    be found (stat, a second open, O_EXCL, unlink of a temporary file)."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=0",
                            f"alluxio.underfs.s3.streaming.upload.enabled={streaming}")
    path = mounted.path / "new.txt"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"hello")
        assert os.stat(path).st_size == 5
        assert path.read_bytes() == b"hello"
        with pytest.raises(FileExistsError):
            os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    finally:
        os.close(fd)
    assert s3_keys(mounted) == ["new.txt"] and path.read_bytes() == b"hello"
    os.mkdir(mounted.path / "d")
    fd = os.open(mounted.path / "d" / "tmp", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.unlink(mounted.path / "d" / "tmp")
        os.write(fd, b"x" * 100)
    finally:
        os.close(fd)
    os.rmdir(mounted.path / "d")
    assert s3_keys(mounted) == ["new.txt"]


@pytest.mark.parametrize("streaming", ["false", "true"])
def test_a_write_to_a_file_another_client_deleted_is_estale(mount_factory: MountFactory, streaming: str) -> None:
    """The write needs the old bytes (an append), which are gone: ESTALE, as for a replaced object, and nothing
    half-written comes back into S3 at close."""
    mounted = mount_factory(f"alluxio.underfs.s3.streaming.upload.enabled={streaming}")
    client = mounted.client()
    client.put_object(Bucket=mounted.bucket, Key="log", Body=b"original")
    client.put_object(Bucket=mounted.bucket, Key="moved", Body=b"original")
    assert (mounted.path / "log").stat().st_size == (mounted.path / "moved").stat().st_size == 8
    appender = os.open(mounted.path / "log", os.O_WRONLY | os.O_APPEND)
    reader = os.open(mounted.path / "moved", os.O_RDONLY)
    try:
        client.delete_object(Bucket=mounted.bucket, Key="log")
        client.copy_object(Bucket=mounted.bucket, Key="elsewhere", CopySource={"Bucket": mounted.bucket,
                                                                               "Key": "moved"})
        client.delete_object(Bucket=mounted.bucket, Key="moved")
        with pytest.raises(OSError) as written:
            os.write(appender, b"+more")
        with pytest.raises(OSError) as read:
            os.pread(reader, 8, 0)
        assert (written.value.errno, read.value.errno) == (errno.ESTALE, errno.ESTALE)
    finally:
        os.close(appender)
        os.close(reader)
    assert s3_keys(mounted) == ["elsewhere"]


def test_streaming_upload_sends_parts_before_close(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.underfs.s3.streaming.upload.enabled=true",
                            "alluxio.underfs.s3.streaming.upload.partition.size=5MB", via_proxy=True)
    proxy = mounted.proxy
    assert proxy is not None
    staging = Path(next(o for o in mounted.options if o.startswith("alluxio.tmp.dirs=")).split("=", 1)[1])
    rng = random.Random(9)
    data = rng.randbytes(48 * MiB)
    peak_staged = 0
    with open(mounted.path / "stream.bin", "wb") as handle:
        for start in range(0, len(data), MiB):
            handle.write(data[start:start + MiB])
            peak_staged = max(peak_staged, directory_bytes(staging))
        handle.flush()
        # all 9 full partitions go up while the file is still open; the object is not visible before close
        deadline = time.monotonic() + 120
        while proxy.count("UploadPart") < 9:
            assert time.monotonic() < deadline, f"only {proxy.count('UploadPart')} parts sent before close"
            time.sleep(0.1)
        assert "stream.bin" not in s3_keys(mounted)
    assert proxy.count("UploadPart") == 10  # the last, partial partition at close
    assert peak_staged < len(data)  # bounded: never the whole file on local disk
    assert s3_bytes(mounted, "stream.bin") == data


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def test_streaming_falls_back_to_staging_on_a_random_write(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.underfs.s3.streaming.upload.enabled=true",
                            "alluxio.underfs.s3.streaming.upload.partition.size=5MB")
    data = bytearray(random.Random(2).randbytes(12 * MiB))
    with open(mounted.path / "s.bin", "wb") as handle:
        handle.write(data)
        handle.seek(100)
        handle.write(b"PATCHED HEADER")  # behind the parts already sent
        data[100:114] = b"PATCHED HEADER"
        handle.seek(0, os.SEEK_END)
        handle.write(b"tail")
        data += b"tail"
    assert s3_bytes(mounted, "s.bin") == bytes(data)


def failing_uploads(request: Request) -> tuple[int, bytes] | None:
    if request.operation in ("PutObject", "UploadPart", "CompleteMultipartUpload"):
        return 500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
    return None


def close_fails_with_eio(mounted: Mounted, name: str, data: bytes) -> None:
    """Write a file while every upload fails at the proxy: its close() must answer EIO."""
    assert mounted.proxy is not None
    mounted.proxy.fault = failing_uploads
    handle = open(mounted.path / name, "wb")
    handle.write(data)
    with pytest.raises(OSError) as raised:
        handle.close()
    assert raised.value.errno == errno.EIO


def test_failed_upload_at_close_is_eio_and_keeps_the_bytes(mount_factory: MountFactory, tmp_path: Path) -> None:
    mounted = mount_factory("alluxio.underfs.s3.max.error.retry=1", via_proxy=True)
    assert mounted.proxy is not None
    close_fails_with_eio(mounted, "doomed.txt", b"precious bytes")
    assert "doomed.txt" not in s3_keys(mounted)
    recovery = tmp_path / "s3fuse-recovery"
    kept = [p for p in recovery.rglob("*") if p.is_file()] if recovery.exists() else []
    kept += [p for p in (tmp_path).rglob("*doomed.txt") if p.is_file()]
    assert any(p.read_bytes() == b"precious bytes" for p in kept), mounted.log_text()
    assert "doomed.txt" in mounted.log_text() and "kept in" in mounted.log_text()
    mounted.proxy.fault = None  # the fault heals: the next write works without a remount
    (mounted.path / "after.txt").write_bytes(b"ok")
    assert s3_bytes(mounted, "after.txt") == b"ok"


def test_fsync_uploads_before_close(mounted: Mounted) -> None:
    with open(mounted.path / "synced.txt", "wb") as handle:
        handle.write(b"durable now")
        handle.flush()
        os.fsync(handle.fileno())
        assert s3_bytes(mounted, "synced.txt") == b"durable now"


def test_concurrent_writers_of_different_files(mounted: Mounted) -> None:
    payloads = {f"w{n}.bin": random.Random(n).randbytes(2 * MiB + n) for n in range(8)}

    def write(name: str) -> None:
        write_file(mounted.path / name, payloads[name], chunk=128 * 1024)

    threads = [threading.Thread(target=write, args=(name,)) for name in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, data in payloads.items():
        assert s3_bytes(mounted, name) == data


def test_copy_tree_in_and_out(mounted: Mounted, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for n in range(5):
        (source / f"d{n}").mkdir(parents=True)
        (source / f"d{n}" / "f.txt").write_text(f"file {n}\n" * 100)
    shutil.copytree(source, mounted.path / "tree")
    shutil.copytree(mounted.path / "tree", tmp_path / "back")
    for n in range(5):
        assert (tmp_path / "back" / f"d{n}" / "f.txt").read_text() == f"file {n}\n" * 100
    assert sorted(k for k in s3_keys(mounted) if k.endswith("f.txt")) == [f"tree/d{n}/f.txt" for n in range(5)]


def test_created_files_read_back_after_the_kernel_forgets_them(mounted: Mounted) -> None:
    os.mkdir(mounted.path / "d")
    for n in range(20):
        (mounted.path / "d" / f"f{n}").write_bytes(b"hello world %d\n" % n)
    Path("/proc/sys/vm/drop_caches").write_text("3")  # the kernel forgets its inodes and dentries
    for n in range(20):
        path = mounted.path / "d" / f"f{n}"
        assert os.stat(path).st_size == len(b"hello world %d\n" % n)
        assert path.read_bytes() == b"hello world %d\n" % n


def test_listed_files_keep_their_sizes_after_the_kernel_forgets_them(mounted: Mounted) -> None:
    os.mkdir(mounted.path / "d")
    sizes = {f"f{n}": n + 1 for n in range(20)}
    for name, size in sizes.items():
        (mounted.path / "d" / name).write_bytes(b"x" * size)
    assert sorted(os.listdir(mounted.path / "d")) == sorted(sizes)  # the listing is cached now
    Path("/proc/sys/vm/drop_caches").write_text("3")  # the kernel forgets its inodes and dentries
    # the listing, still within its TTL, answers readdir: the inodes it brings back carry its sizes
    assert {entry.name: entry.stat().st_size for entry in os.scandir(mounted.path / "d")} == sizes
    assert {name: os.stat(mounted.path / "d" / name).st_size for name in sizes} == sizes


def test_a_directory_handle_does_not_bring_back_a_removed_or_older_file(mounted: Mounted) -> None:
    os.mkdir(mounted.path / "d")
    (mounted.path / "d" / "gone").write_bytes(b"removed while the directory is open")
    (mounted.path / "d" / "kept").write_bytes(b"old")
    directory = os.open(mounted.path / "d", os.O_RDONLY | os.O_DIRECTORY)  # the names are taken here
    try:
        os.unlink(mounted.path / "d" / "gone")
        (mounted.path / "d" / "kept").write_bytes(b"rewritten, longer")
        Path("/proc/sys/vm/drop_caches").write_text("3")  # the kernel forgets the inodes: readdir makes them
        assert set(os.listdir(directory)) <= {"gone", "kept"}
        assert not (mounted.path / "d" / "gone").exists()
        assert (mounted.path / "d" / "kept").stat().st_size == len(b"rewritten, longer")
        assert (mounted.path / "d" / "kept").read_bytes() == b"rewritten, longer"
    finally:
        os.close(directory)


def test_a_rewound_directory_stream_shows_the_directory_as_it_is_now(mounted: Mounted) -> None:
    os.mkdir(mounted.path / "d")
    for name in ("a", "b", "c"):
        (mounted.path / "d" / name).write_bytes(name.encode())
    directory = os.open(mounted.path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(os.listdir(directory)) == ["a", "b", "c"]  # (os.listdir rewinds the stream after)
        os.rename(mounted.path / "d" / "a", mounted.path / "d" / "renamed")
        os.unlink(mounted.path / "d" / "b")
        (mounted.path / "d" / "new").write_bytes(b"new")
        assert sorted(os.listdir(directory)) == ["c", "new", "renamed"]
    finally:
        os.close(directory)


def test_a_listing_answered_before_our_changes_does_not_undo_them(mount_factory: MountFactory, s3_server,
                                                                   bucket) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="old.txt", Body=b"old version")
    client.put_object(Bucket=bucket, Key="gone.txt", Body=b"to be removed")
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    answered = threading.Event()

    def late_first_listing(request: Request) -> Mangle | None:
        if request.operation == "ListObjectsV2" and not answered.is_set():
            answered.set()
            return Mangle("late", 3.0)  # S3's answer predates what the mount does in the next 3 s
        return None

    mounted.proxy.fault = late_first_listing
    reader = threading.Thread(target=os.listdir, args=(mounted.path,))  # opendir lists the root
    reader.start()
    assert answered.wait(10)
    # while that answer is on its way: a new file, a rewritten one and a removed one (their lookups list anew)
    (mounted.path / "new.txt").write_bytes(b"created meanwhile")
    (mounted.path / "old.txt").write_bytes(b"rewritten meanwhile, longer")
    os.unlink(mounted.path / "gone.txt")
    reader.join()
    sizes = {"new.txt": len(b"created meanwhile"), "old.txt": len(b"rewritten meanwhile, longer")}
    assert sorted(os.listdir(mounted.path)) == sorted(sizes)
    Path("/proc/sys/vm/drop_caches").write_text("3")  # forgotten inodes come back from the cached listing
    assert {entry.name: entry.stat().st_size for entry in os.scandir(mounted.path)} == sizes


def test_a_new_file_unlinked_while_it_streams_leaves_nothing_in_s3(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.underfs.s3.streaming.upload.enabled=true",
                            "alluxio.underfs.s3.streaming.upload.partition.size=5MB")
    os.mkdir(mounted.path / "d")
    with open(mounted.path / "d" / "streamed.bin", "wb") as handle:
        handle.write(random.Random(11).randbytes(7 * MiB))  # one part has left
        handle.flush()
        os.unlink(mounted.path / "d" / "streamed.bin")
        handle.write(b"more, after the unlink")
    os.rmdir(mounted.path / "d")  # empty: the streamed object is gone too
    assert s3_keys(mounted) == []
    assert mounted.client().list_multipart_uploads(Bucket=mounted.bucket).get("Uploads", []) == []


def test_times_set_before_the_close_that_uploads_are_kept(mount_factory: MountFactory) -> None:
    mounted = mount_factory()
    when = 1_000_000_000_123_456_789
    with open(mounted.path / "copied.txt", "wb") as handle:  # as cp -p does: data, then times, then close
        handle.write(b"copied with its times")
        handle.flush()
        os.utime(handle.fileno(), ns=(when, when))
    assert os.stat(mounted.path / "copied.txt").st_mtime_ns == when
    Path("/proc/sys/vm/drop_caches").write_text("3")  # the kernel forgets its attributes: ours answer
    assert os.stat(mounted.path / "copied.txt").st_mtime_ns == when
    assert mounted.unmount() == 0
    again = mount_factory(cache_of=mounted)  # the overlay is kept beside the block cache
    assert os.stat(again.path / "copied.txt").st_mtime_ns == when


def drop_page_cache() -> None:
    Path("/proc/sys/vm/drop_caches").write_text("1")  # the page cache only


def test_unlinking_an_open_file_truncated_to_zero_deletes_its_object(mounted: Mounted) -> None:
    path = mounted.path / "gone.txt"
    path.write_bytes(b"hello")
    fd = os.open(path, os.O_RDWR | os.O_TRUNC)
    os.unlink(path)
    os.close(fd)
    assert "gone.txt" not in s3_keys(mounted)  # it came back after a remount


def test_renamed_multipart_objects_read_back_alone_and_in_a_directory(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.underfs.s3.multipart.upload.threshold=5MB",
                            "alluxio.underfs.s3.streaming.upload.partition.size=5MB")
    data = random.Random(12).randbytes(11 * MiB)
    (mounted.path / "d").mkdir()
    for path in (mounted.path / "multi.bin", mounted.path / "d" / "multi.bin"):
        path.write_bytes(data)
    etag = mounted.client().head_object(Bucket=mounted.bucket, Key="multi.bin")["ETag"]
    assert "-" in etag  # a multipart ETag, which a copy does not keep
    os.rename(mounted.path / "multi.bin", mounted.path / "moved.bin")
    os.rename(mounted.path / "d", mounted.path / "e")
    drop_page_cache()
    assert (mounted.path / "moved.bin").read_bytes() == data  # was ESTALE: GETs asked for the old ETag
    assert (mounted.path / "e" / "multi.bin").read_bytes() == data


def test_a_directory_renamed_under_an_open_file_takes_its_pending_bytes(mounted: Mounted) -> None:
    (mounted.path / "d").mkdir()
    (mounted.path / "d" / "f").write_bytes(b"old!")
    fd = os.open(mounted.path / "d" / "f", os.O_RDWR)
    os.pwrite(fd, b"NEW!", 0)
    os.rename(mounted.path / "d", mounted.path / "e")
    os.pwrite(fd, b"?", 4)
    os.close(fd)
    assert s3_bytes(mounted, "e/f") == b"NEW!?"
    assert not [key for key in s3_keys(mounted) if key.startswith("d/")]  # the old directory stays gone


@pytest.mark.parametrize(("moved", "mangle"), [("directory", "late"), ("file", "stall")])
def test_bytes_written_back_while_a_rename_copies_reach_the_new_name(mount_factory: MountFactory, moved: str,
                                                                      mangle: str) -> None:
    """Bytes that reach the mount while a rename copies (the kernel writes back a file's dirty pages; a
    directory's files are not locked by the rename) wait for it: uploaded to the old key after the copy read
    it, they were deleted with it, or overwritten by the copy, and the file was clean, so lost."""
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    (mounted.path / "d").mkdir()
    (mounted.path / "d" / "f").write_bytes(b"old!")
    fd = os.open(mounted.path / "d" / "f", os.O_RDWR)
    # `late`: copied at once, answered later; `stall`: copied later
    mounted.proxy.fault, copying = announced("CopyObject", Mangle(mangle, 1.0))
    source, target, new_key = {"directory": ("d", "e", "e/f"), "file": ("d/f", "d/g", "d/g")}[moved]
    renamer = threading.Thread(target=os.rename, args=(mounted.path / source, mounted.path / target))
    try:
        os.pwrite(fd, b"NEW!", 0)  # dirty in the kernel's writeback cache
        renamer.start()
        assert copying.wait(30)
        os.fsync(fd) if moved == "directory" else os.close(fd)
    finally:
        renamer.join(30)
        if moved == "directory":
            os.close(fd)
    assert s3_bytes(mounted, new_key) == b"NEW!"
    assert (mounted.path / new_key).read_bytes() == b"NEW!"
    assert "d/f" not in s3_keys(mounted)


def test_writes_in_streaming_mode_set_mtime_and_ctime(mount_factory: MountFactory) -> None:
    """Without the writeback cache the kernel does not report write times: the mount records them, before and
    after the upload, and a time set after the last write still wins (cp -p)."""
    mounted = mount_factory("alluxio.underfs.s3.streaming.upload.enabled=true")
    path = mounted.path / "log.txt"
    path.write_bytes(b"first line\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    changed = os.stat(path).st_ctime_ns
    with path.open("ab") as log:
        log.write(b"appended\n")
        log.flush()
        during = os.fstat(log.fileno())
        assert during.st_mtime_ns > changed and during.st_ctime_ns > changed
        os.fchmod(log.fileno(), 0o640)  # a change after the write: it moves ctime, the write's mtime stays
    after = os.stat(path)
    assert after.st_mtime_ns == during.st_mtime_ns and after.st_ctime_ns > during.st_ctime_ns
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, b"F", 0)
    os.utime(fd, ns=(2_000_000_000, 2_000_000_000))  # set after the write: it stays
    os.close(fd)
    Path("/proc/sys/vm/drop_caches").write_text("3")
    assert os.stat(path).st_mtime_ns == 2_000_000_000
    assert s3_bytes(mounted, "log.txt") == b"First line\nappended\n"


def test_o_trunc_of_a_read_only_open_reaches_s3(mounted: Mounted) -> None:
    (mounted.path / "f").write_bytes(b"content")
    os.close(os.open(mounted.path / "f", os.O_RDONLY | os.O_TRUNC))
    assert s3_bytes(mounted, "f") == b""


@pytest.mark.parametrize("streaming", ["false", "true"])
def test_truncating_a_path_others_hold_open_reaches_s3_when_it_returns(mount_factory: MountFactory,
                                                                       streaming: str) -> None:
    """truncate(path) has no close of its own: while a reader holds the file, it was uploaded only at the last
    release, after every close had returned, lost to a crash, and the mount's listing kept the old ETag (ESTALE
    on the next open). While a writer holds it with the kernel's writeback cache (not in streaming mode), the
    truncation reaches S3 with the writer's close, as the writes the kernel may still hold do."""
    port = free_port()
    mounted = mount_factory(f"alluxio.underfs.s3.streaming.upload.enabled={streaming}",
                            f"alluxio.master.web.port={port}")
    path = mounted.path / "log"
    writer = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(writer, b"x" * 6159)
    os.close(writer)
    wait_until(lambda: open_files(port) == 0, what="the writer's release")  # it may come after a truncate
    reader = os.open(path, os.O_RDONLY)
    try:
        os.truncate(path, 100)
        assert s3_bytes(mounted, "log") == b"x" * 100
        assert os.pread(reader, 200, 0) == b"x" * 100
        appender = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(appender, b"+more")
            os.fsync(appender)
            os.truncate(path, 103)  # with a writer open too
            assert os.pread(reader, 200, 0) == b"x" * 100 + b"+mo"
            assert s3_bytes(mounted, "log") == b"x" * 100 + (b"+mo" if streaming == "true" else b"+more")
            os.write(appender, b"!")
        finally:
            os.close(appender)
    finally:
        os.close(reader)
    assert s3_bytes(mounted, "log") == path.read_bytes() == b"x" * 100 + b"+mo!"
    os.truncate(path, 4)  # nobody has it open
    assert s3_bytes(mounted, "log") == path.read_bytes() == b"xxxx"


def test_truncating_a_path_a_writer_holds_never_puts_a_version_without_its_writes_in_s3(mounted: Mounted) -> None:
    """The kernel's writeback cache may still hold a writer's bytes when truncate(path) comes (it flushes nothing
    before a size change): uploading then put 1,000 zeros into S3 where the writer had written 1,000 Bs."""
    path = mounted.path / "held"
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"B" * 5000)
        os.truncate(path, 1000)
        assert "held" not in s3_keys(mounted) or s3_bytes(mounted, "held") == b""  # nothing, or the new empty file
        assert os.pread(fd, 2000, 0) == b"B" * 1000
    finally:
        os.close(fd)
    assert s3_bytes(mounted, "held") == b"B" * 1000


def test_a_rename_that_fails_leaves_the_open_target_uploading(mounted: Mounted) -> None:
    """A rename over an open file detaches it first; when the copy then fails (another client removed the
    source), the target keeps its name and its later writes must still reach S3."""
    (mounted.path / "x").write_bytes(b"source")
    fd = os.open(mounted.path / "y", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"target")
        mounted.client().delete_object(Bucket=mounted.bucket, Key="x")
        with pytest.raises(OSError):
            os.rename(mounted.path / "x", mounted.path / "y")
        os.write(fd, b" + more")
    finally:
        os.close(fd)
    assert s3_bytes(mounted, "y") == b"target + more"


def test_a_file_reopened_more_often_than_the_ttl_still_sees_another_writer(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=1sec")
    client = mounted.client()
    client.put_object(Bucket=mounted.bucket, Key="often.txt", Body=b"old")
    assert (mounted.path / "often.txt").read_bytes() == b"old"
    client.put_object(Bucket=mounted.bucket, Key="often.txt", Body=b"new!")
    seen = []
    for _ in range(10):  # an open and close every 0.3 s, for three TTLs
        seen.append((mounted.path / "often.txt").read_bytes())
        time.sleep(0.3)
    assert seen[-1] == b"new!"


@pytest.mark.parametrize("mode", ["default", "streaming", "direct_io"])
def test_appends_land_at_the_end_and_a_shared_map_of_an_appender_writes_in_place(mount_factory: MountFactory,
                                                                                  mode: str) -> None:
    """With or without the writeback cache (streaming and direct_io go without it) the kernel places an O_APPEND
    write at the end, and writes a shared map's dirty pages back through any writable handle at their own
    offsets: through an O_APPEND handle they once landed at the end, in the mount and in S3."""
    option = {"default": (), "streaming": ("alluxio.underfs.s3.streaming.upload.enabled=true",),
              "direct_io": ("alluxio.fuse.direct.io.enabled=true",)}[mode]
    mounted = mount_factory(*option)
    path = mounted.path / "mapped.bin"
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_RDWR | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"a" * 8192)
        with mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mapped:
            mapped[:4] = b"MMAP"
            mapped.flush()
        os.write(fd, b"tail")
    finally:
        os.close(fd)
    expected = b"MMAP" + b"a" * 8188 + b"tail"
    assert path.read_bytes() == expected and s3_bytes(mounted, "mapped.bin") == expected

    line = b"%d: " + b"x" * 40 + b"\n"

    def append(writer: int) -> None:
        appender = os.open(mounted.path / "log", os.O_WRONLY | os.O_APPEND)
        try:
            for _ in range(50):
                os.write(appender, line % writer)
        finally:
            os.close(appender)
    (mounted.path / "log").write_bytes(b"")
    threads = [threading.Thread(target=append, args=(writer,)) for writer in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = s3_bytes(mounted, "log").splitlines(keepends=True)
    assert sorted(lines) == sorted(line % writer for writer in range(4) for _ in range(50))
