"""Directories, renames, links, metadata and xattrs through a real mount, checked against S3."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Mounted, MountFactory
from tests.support.proxy import Mangle, Request, announced

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
RENAME_WHITEOUT = 4  # leaves a whiteout device at the old name: S3 cannot hold one


def renameat2(old: Path, new: Path, flags: int) -> None:
    if libc.renameat2(AT_FDCWD, bytes(old), AT_FDCWD, bytes(new), flags) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


def keys(mounted: Mounted) -> list[str]:
    reply = mounted.client().list_objects_v2(Bucket=mounted.bucket)
    return sorted(item["Key"] for item in reply.get("Contents", []))


def errno_of(action: Callable[[], object]) -> int:
    with pytest.raises(OSError) as raised:
        action()
    return raised.value.errno or 0


def test_mkdir_writes_a_marker_and_rmdir_checks_emptiness(mounted: Mounted) -> None:
    mounted.client().put_object(Bucket=mounted.bucket, Key="d2/deep/only", Body=b"")  # only a prefix
    os.mkdir(mounted.path / "d")
    assert keys(mounted) == ["d/", "d2/deep/only"]
    (mounted.path / "d" / "f").write_bytes(b"x")
    assert errno_of(lambda: os.rmdir(mounted.path / "d")) == errno.ENOTEMPTY
    assert errno_of(lambda: os.rmdir(mounted.path / "d2")) == errno.ENOTEMPTY
    os.unlink(mounted.path / "d" / "f")
    assert os.listdir(mounted.path / "d") == []
    os.rmdir(mounted.path / "d")
    assert not (mounted.path / "d").exists()
    assert keys(mounted) == ["d2/deep/only"]


def test_emptied_implicit_directory_survives(mounted: Mounted) -> None:
    mounted.client().put_object(Bucket=mounted.bucket, Key="implicit/only.txt", Body=b"1")
    os.unlink(mounted.path / "implicit" / "only.txt")
    assert os.path.isdir(mounted.path / "implicit")  # POSIX: removing a file never removes its directory
    assert keys(mounted) == ["implicit/"]


def test_removing_a_directorys_files_lists_it_only_when_it_may_be_empty(mount_factory: MountFactory) -> None:
    """While the cached listing still names objects, a removal cannot have emptied the directory: no LIST to
    check (an `rm` of each file sent one), yet an implicit directory emptied keeps a marker, also when the last
    name left is a new file S3 does not hold yet."""
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    for n in range(10):
        mounted.client().put_object(Bucket=mounted.bucket, Key=f"implicit/f{n}", Body=b"1")
    assert len(os.listdir(mounted.path / "implicit")) == 10
    pending = os.open(mounted.path / "implicit" / "new", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        mounted.proxy.reset()
        for n in range(10):
            os.unlink(mounted.path / "implicit" / f"f{n}")
        assert mounted.proxy.count("DeleteObject") == 10
        assert mounted.proxy.count("ListObjectsV2") <= 2  # the last removal: is it empty, and has it a marker
        assert keys(mounted) == ["implicit/"]
    finally:
        os.close(pending)
    assert keys(mounted) == ["implicit/", "implicit/new"]
    assert os.listdir(mounted.path / "implicit") == ["new"]


def test_errnos_of_misuse(mounted: Mounted) -> None:
    root = mounted.path
    (root / "file").write_bytes(b"f")
    os.mkdir(root / "dir")
    assert errno_of(lambda: os.mkdir(root / "file")) == errno.EEXIST
    assert errno_of(lambda: os.rmdir(root / "file")) == errno.ENOTDIR
    assert errno_of(lambda: os.unlink(root / "dir")) in (errno.EISDIR, errno.EPERM)
    assert errno_of(lambda: open(root / "file" / "x", "wb")) == errno.ENOTDIR
    assert errno_of(lambda: open(root / ("n" * 256), "wb")) == errno.ENAMETOOLONG
    assert errno_of(lambda: os.link(root / "file", root / "hard")) == errno.EPERM
    assert errno_of(lambda: os.mkfifo(root / "fifo")) == errno.EPERM
    assert errno_of(lambda: os.rename(root / "dir", root / "dir" / "inside")) == errno.EINVAL
    assert errno_of(lambda: os.rename(root / "dir", root / "file")) == errno.ENOTDIR
    assert errno_of(lambda: os.rename(root / "file", root / "dir")) == errno.EISDIR
    assert errno_of(lambda: os.unlink(root / "absent")) == errno.ENOENT
    assert errno_of(lambda: os.rmdir(root / "absent")) == errno.ENOENT
    assert errno_of(lambda: os.listdir(root / "file")) == errno.ENOTDIR


def test_rename_file_keeps_inode_and_replaces_target(mounted: Mounted) -> None:
    (mounted.path / "a").write_bytes(b"A")
    (mounted.path / "b").write_bytes(b"B")
    inode = os.stat(mounted.path / "a").st_ino
    os.rename(mounted.path / "a", mounted.path / "b")
    assert os.stat(mounted.path / "b").st_ino == inode
    assert (mounted.path / "b").read_bytes() == b"A"
    assert keys(mounted) == ["b"]


@pytest.mark.parametrize("streaming", [False, True])
def test_a_files_content_type_follows_its_name(mount_factory: MountFactory, s3_server, bucket,
                                               streaming: bool) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="chosen.txt", Body=b"x", ContentType="text/x-chosen",
                      Metadata={"origin": "another client"})
    client.put_object(Bucket=bucket, Key="untyped.tmp", Body=b"{}")  # S3 gives it its default type
    mounted = mount_factory(f"alluxio.underfs.s3.streaming.upload.enabled={str(streaming).lower()}")

    def content_type(key: str) -> str:
        return str(client.head_object(Bucket=bucket, Key=key)["ContentType"])

    (mounted.path / "page.html").write_bytes(b"<p>written through the mount</p>")
    (mounted.path / "save.tmp").write_bytes(b'{"saved": "atomically"}')
    assert content_type("page.html") == "text/html"
    os.rename(mounted.path / "save.tmp", mounted.path / "save.json")  # an editor's atomic save
    assert content_type("save.json") == "application/json"
    os.rename(mounted.path / "untyped.tmp", mounted.path / "untyped.json")
    assert content_type("untyped.json") == "application/json"
    os.rename(mounted.path / "chosen.txt", mounted.path / "chosen.json")  # a type a client chose stays
    head = client.head_object(Bucket=bucket, Key="chosen.json")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-chosen", {"origin": "another client"})
    assert (mounted.path / "save.json").read_bytes() == b'{"saved": "atomically"}'


def test_rename_noreplace_and_exchange(mounted: Mounted) -> None:
    (mounted.path / "a").write_bytes(b"A")
    (mounted.path / "b").write_bytes(b"B")
    assert errno_of(lambda: renameat2(mounted.path / "a", mounted.path / "b", RENAME_NOREPLACE)) == errno.EEXIST
    assert errno_of(lambda: renameat2(mounted.path / "a", mounted.path / "b", RENAME_EXCHANGE)) == errno.EINVAL
    assert errno_of(lambda: renameat2(mounted.path / "a", mounted.path / "w", RENAME_WHITEOUT)) == errno.EINVAL
    renameat2(mounted.path / "a", mounted.path / "c", RENAME_NOREPLACE)
    assert keys(mounted) == ["b", "c"]


def test_rename_directory_moves_every_key(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.underfs.object.store.service.threads=4", via_proxy=True)
    client = mounted.client()
    for n in range(30):
        client.put_object(Bucket=mounted.bucket, Key=f"src/sub{n % 3}/f{n}", Body=f"{n}".encode())
    inode = os.stat(mounted.path / "src" / "sub1").st_ino
    os.rename(mounted.path / "src", mounted.path / "dst")
    assert not (mounted.path / "src").exists()
    assert os.stat(mounted.path / "dst" / "sub1").st_ino == inode
    assert (mounted.path / "dst" / "sub2" / "f29").read_bytes() == b"29"
    moved = keys(mounted)
    assert sorted(k for k in moved if not k.endswith("/")) == sorted(f"dst/sub{n % 3}/f{n}" for n in range(30))
    assert not [k for k in moved if k.startswith("src")]


def test_renamed_files_keep_their_inode_numbers_after_the_kernel_forgets_them(mounted: Mounted) -> None:
    os.makedirs(mounted.path / "a" / "sub")
    (mounted.path / "a" / "sub" / "f").write_bytes(b"in a directory")
    (mounted.path / "g").write_bytes(b"at the top")
    before = {name: os.stat(mounted.path / name).st_ino for name in ("a", "a/sub", "a/sub/f", "g")}
    os.rename(mounted.path / "a", mounted.path / "b")
    os.rename(mounted.path / "g", mounted.path / "h")
    Path("/proc/sys/vm/drop_caches").write_text("3")  # the kernel forgets its inodes: we are asked anew
    after = {name: os.stat(mounted.path / name.replace("a", "b").replace("g", "h")).st_ino for name in before}
    assert after == before
    with open(mounted.path / "h", "rb"):  # while it is held, a new file at its old name gets its own number
        (mounted.path / "g").write_bytes(b"a new file at the old name")
        assert os.stat(mounted.path / "g").st_ino != os.stat(mounted.path / "h").st_ino


def test_a_number_taken_by_a_renamed_file_stays_with_the_new_one_too(mounted: Mounted) -> None:
    (mounted.path / "a").write_bytes(b"1")
    os.rename(mounted.path / "a", mounted.path / "b")  # b keeps the number of the path "a"
    (mounted.path / "a").write_bytes(b"2")  # so the new "a" gets another one
    before = {name: os.stat(mounted.path / name).st_ino for name in ("a", "b")}
    Path("/proc/sys/vm/drop_caches").write_text("3")  # the kernel forgets both inodes
    assert {name: os.stat(mounted.path / name).st_ino for name in ("a", "b")} == before
    assert before["a"] != before["b"]


def test_an_open_racing_a_rename_over_its_name_opens_one_whole_version(mount_factory: MountFactory) -> None:
    """The rename comes while the open asks S3 about the name: the open gets one version whole (the one it
    found, or, renamed over, the new one after an ESTALE and a second lookup) and keeps reading it after the
    name moves on."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=0", via_proxy=True)
    assert mounted.proxy is not None
    (mounted.path / "target").write_bytes(b"version 0")
    (mounted.path / "tmp1").write_bytes(b"version 1, renamed over it")
    (mounted.path / "tmp2").write_bytes(b"version 2, renamed over it again")
    held = threading.Event()

    def slow_open(request: Request) -> Mangle | None:
        if request.operation == "HeadObject" and request.path.endswith("/target") and not held.is_set():
            held.set()  # the open's lookup: the rename comes while it is on its way
            return Mangle("stall", 1.0)
        return None

    mounted.proxy.fault = slow_open
    opened: list[int] = []
    opener = threading.Thread(target=lambda: opened.append(os.open(mounted.path / "target", os.O_RDONLY)))
    opener.start()
    assert held.wait(30)
    os.rename(mounted.path / "tmp1", mounted.path / "target")
    opener.join(30)
    assert opened, "the open failed"
    try:
        os.rename(mounted.path / "tmp2", mounted.path / "target")  # the version it opened leaves S3
        # the version its lookup or its open found, whole (which one depends on the order the kernel sends them)
        assert os.pread(opened[0], 100, 0) in (b"version 0", b"version 1, renamed over it")
    finally:
        os.close(opened[0])
    assert (mounted.path / "target").read_bytes() == b"version 2, renamed over it again"


def test_attributes_asked_while_a_directory_is_renamed_wait_for_it(mount_factory: MountFactory) -> None:
    """Between the rename's DeleteObjects and its move in the table, a HEAD of the old key finds nothing: an
    fstat then answered ENOENT for a file that never went away."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=0", via_proxy=True)
    assert mounted.proxy is not None
    os.mkdir(mounted.path / "D")
    (mounted.path / "D" / "f").write_bytes(b"stays")
    fd = os.open(mounted.path / "D" / "f", os.O_PATH)
    # deleted at once, answered a second later
    mounted.proxy.fault, deleting = announced("DeleteObjects", Mangle("late", 1.0))
    renamer = threading.Thread(target=os.rename, args=(mounted.path / "D", mounted.path / "D2"))
    renamer.start()
    try:
        assert deleting.wait(30)
        time.sleep(0.3)  # the server has deleted the old keys; the rename has not heard yet
        assert os.fstat(fd).st_size == 5
    finally:
        renamer.join(60)
        os.close(fd)
    assert (mounted.path / "D2" / "f").read_bytes() == b"stays"


def test_a_read_that_finds_its_renamed_object_gone_reads_on_under_the_new_key(mount_factory: MountFactory) -> None:
    """A rename moves an open file's key after its copies; a GET for the old key that reached the server after
    the rename's delete found nothing: the read failed with ESTALE, and so did a write of part of a page, for
    which the kernel reads the page first and does not retry (found by an exerciser)."""
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    data = os.urandom(300_000)
    mounted.client().put_object(Bucket=mounted.bucket, Key="D/f", Body=data)
    fd = os.open(mounted.path / "D" / "f", os.O_RDWR)
    written: list[int | OSError] = []

    def write() -> None:
        try:
            written.append(os.pwrite(fd, b"new", 100_000))
        except OSError as exc:
            written.append(exc)
    mounted.proxy.fault, getting = announced("GetObject", Mangle("stall", 1.0))
    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert getting.wait(30)
        mounted.proxy.fault = None
        os.rename(mounted.path / "D", mounted.path / "D2")  # while the GET for the page waits at the proxy
    finally:
        writer.join(60)
        os.close(fd)
    assert written == [3]
    expected = data[:100_000] + b"new" + data[100_003:]
    assert (mounted.path / "D2" / "f").read_bytes() == expected
    assert mounted.client().get_object(Bucket=mounted.bucket, Key="D2/f")["Body"].read() == expected


@pytest.mark.parametrize("operation", ["create", "unlink", "mkdir"])
def test_names_changed_inside_a_directory_while_it_is_renamed_land_in_the_new_one(mount_factory: MountFactory,
                                                                                 operation: str) -> None:
    """The kernel does not hold a directory's contents still while it renames the directory, and S3 renames a
    prefix key by key: a change inside must wait for the rename, not work on keys the rename has listed."""
    mounted = mount_factory(via_proxy=True)
    assert mounted.proxy is not None
    os.mkdir(mounted.path / "D")
    for n in range(3):
        (mounted.path / "D" / f"k{n}").write_bytes(b"old")
    mounted.proxy.fault, copying = announced("CopyObject", Mangle("stall", 0.5))
    renamer = threading.Thread(target=os.rename, args=(mounted.path / "D", mounted.path / "D2"))
    renamer.start()
    try:
        assert copying.wait(30)
        changes: dict[str, Callable[[], object]] = {
            "create": lambda: (mounted.path / "D" / "new").write_bytes(b"new"),
            "unlink": lambda: os.unlink(mounted.path / "D" / "k0"),
            "mkdir": lambda: os.mkdir(mounted.path / "D" / "sub")}
        changes[operation]()
    finally:
        renamer.join(60)
    mounted.proxy.fault = None
    expected = {"create": {"k0", "k1", "k2", "new"}, "unlink": {"k1", "k2"}, "mkdir": {"k0", "k1", "k2", "sub"}}
    assert set(os.listdir(mounted.path / "D2")) == expected[operation]
    assert not (mounted.path / "D").exists()
    assert not [key for key in keys(mounted) if key.startswith("D/")]


def test_rename_into_an_empty_directory_and_over_a_full_one(mounted: Mounted) -> None:
    os.mkdir(mounted.path / "a")
    (mounted.path / "a" / "f").write_bytes(b"1")
    os.mkdir(mounted.path / "empty")
    os.mkdir(mounted.path / "full")
    (mounted.path / "full" / "g").write_bytes(b"2")
    assert errno_of(lambda: os.rename(mounted.path / "a", mounted.path / "full")) in (errno.ENOTEMPTY,
                                                                                       errno.EEXIST)
    os.rename(mounted.path / "a", mounted.path / "empty")
    assert (mounted.path / "empty" / "f").read_bytes() == b"1"


def test_symlink_is_s3fs_compatible_and_survives_remount(mount_factory: MountFactory) -> None:
    mounted = mount_factory()
    (mounted.path / "target.txt").write_bytes(b"pointed at")
    os.symlink("target.txt", mounted.path / "link")
    head = mounted.client().head_object(Bucket=mounted.bucket, Key="link")
    assert stat.S_ISLNK(int(head["Metadata"]["mode"]))
    assert s3_body(mounted, "link") == b"target.txt"
    assert mounted.unmount() == 0
    again = mount_factory(cache_of=mounted)
    assert os.readlink(again.path / "link") == "target.txt"
    assert (again.path / "link").read_bytes() == b"pointed at"
    assert stat.S_ISLNK(os.lstat(again.path / "link").st_mode)


def test_a_symlink_keeps_its_target_after_the_kernel_forgets_it(mounted: Mounted) -> None:
    os.symlink("some/target", mounted.path / "link")
    Path("/proc/sys/vm/drop_caches").write_text("3")
    assert os.readlink(mounted.path / "link") == "some/target"
    assert os.lstat(mounted.path / "link").st_size == len("some/target")


def test_times_follow_a_directory_rename_that_gives_a_copy_a_new_etag(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.underfs.s3.multipart.upload.threshold=5MB",
                            "alluxio.underfs.s3.streaming.upload.partition.size=5MB")
    os.mkdir(mounted.path / "d")
    (mounted.path / "d" / "big").write_bytes(bytes(6 << 20))  # multipart: a copy may get another ETag
    (mounted.path / "d" / "small").write_bytes(b"one request")
    for name in ("big", "small"):
        os.utime(mounted.path / "d" / name, ns=(1_000_000_000, 3_000_000_000))
    os.rename(mounted.path / "d", mounted.path / "e")
    Path("/proc/sys/vm/drop_caches").write_text("3")
    assert {name: os.stat(mounted.path / "e" / name).st_mtime_ns for name in ("big", "small")} == {
        "big": 3_000_000_000, "small": 3_000_000_000}


@pytest.mark.parametrize("mode", ["staged", "streaming"])
def test_a_rename_keeps_the_mtime_of_objects_written_elsewhere(mount_factory: MountFactory, mode: str) -> None:
    """S3 gives a copy a new LastModified; the renamed file and the files of a renamed directory keep theirs."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=0",
                            *(["alluxio.underfs.s3.streaming.upload.enabled=true"] if mode == "streaming" else []))
    client = mounted.client()
    for key in ("solo.txt", "dir/inner.txt"):
        client.put_object(Bucket=mounted.bucket, Key=key, Body=b"written elsewhere")
    before = {name: os.stat(mounted.path / name).st_mtime_ns for name in ("solo.txt", "dir/inner.txt")}
    time.sleep(1.1)  # S3 times are whole seconds: the copies' LastModified must differ from the originals'
    os.rename(mounted.path / "solo.txt", mounted.path / "moved.txt")
    os.rename(mounted.path / "dir", mounted.path / "moved")
    Path("/proc/sys/vm/drop_caches").write_text("3")
    assert os.stat(mounted.path / "moved.txt").st_mtime_ns == before["solo.txt"]
    assert os.stat(mounted.path / "moved" / "inner.txt").st_mtime_ns == before["dir/inner.txt"]


def test_lookups_with_no_metadata_ttl_do_not_list_the_directory(mount_factory: MountFactory) -> None:
    """With a TTL of 0 a listing helps no other lookup: each lookup asks about its own name (HEAD and a one-key
    LIST), so `rm -rf` of n files costs O(n) requests of O(1) keys, not n listings of the directory."""
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=0", via_proxy=True)
    assert mounted.proxy is not None
    client = mounted.client()
    for n in range(40):
        client.put_object(Bucket=mounted.bucket, Key=f"many/f{n:02d}", Body=b"x")
    mounted.proxy.reset()
    shutil.rmtree(mounted.path / "many")
    listings = [r for r in mounted.proxy.requests if r.operation == "ListObjectsV2"
                and int(r.query.get("max-keys", ["1000"])[0]) > 2]
    assert len(listings) <= 3  # the directory's own reads (readdir), not one per lookup
    assert not keys(mounted)


def test_a_rename_does_not_revive_the_times_of_a_replaced_version(mount_factory: MountFactory) -> None:
    mounted = mount_factory("alluxio.user.metadata.cache.expiration.time=0")
    (mounted.path / "s").write_bytes(b"ours")
    os.utime(mounted.path / "s", (946_684_800, os.stat(mounted.path / "s").st_mtime))  # atime set: 2000-01-01
    mounted.client().put_object(Bucket=mounted.bucket, Key="s", Body=b"another writer's")
    replaced = os.stat(mounted.path / "s")
    assert replaced.st_atime_ns == replaced.st_mtime_ns  # the set atime was the old version's
    os.rename(mounted.path / "s", mounted.path / "s2")
    moved = os.stat(mounted.path / "s2")
    assert (moved.st_atime_ns, moved.st_mtime_ns) == (replaced.st_mtime_ns, replaced.st_mtime_ns)


def test_symlink_made_elsewhere_is_known_from_its_metadata(mount_factory: MountFactory) -> None:
    """An s3fs-style symlink written by another client: a lookup that has no listing at hand asks S3 (HEAD)."""
    mounted = mount_factory()
    client = mounted.client()
    for n in range(1100):  # a parent too large to list for one lookup
        client.put_object(Bucket=mounted.bucket, Key=f"big/f{n:04d}", Body=b"")
    client.put_object(Bucket=mounted.bucket, Key="big/link", Body=b"f0001",
                      Metadata={"mode": str(stat.S_IFLNK | 0o777)})
    assert os.readlink(mounted.path / "big" / "link") == "f0001"


def s3_body(mounted: Mounted, key: str) -> bytes:
    data: bytes = mounted.client().get_object(Bucket=mounted.bucket, Key=key)["Body"].read()
    return data


def test_metadata_lives_in_the_overlay_not_in_s3(mount_factory: MountFactory) -> None:
    mounted = mount_factory()
    path = mounted.path / "m.txt"
    path.write_bytes(b"meta")
    etag = mounted.client().head_object(Bucket=mounted.bucket, Key="m.txt")["ETag"]
    os.chmod(path, 0o604)
    os.chown(path, 1234, 5678)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_500_000_000_000_000_000))
    head = mounted.client().head_object(Bucket=mounted.bucket, Key="m.txt")
    assert head["ETag"] == etag and head.get("Metadata", {}) == {}  # not propagated (Alluxio's rule)
    assert mounted.unmount() == 0
    again = mount_factory(cache_of=mounted)
    st = os.stat(again.path / "m.txt")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o604, 1234, 5678)
    assert st.st_mtime_ns == 1_500_000_000_000_000_000 and st.st_atime_ns == 1_000_000_000_000_000_000


def test_truncate_grow_and_shrink(mounted: Mounted) -> None:
    path = mounted.path / "t.bin"
    path.write_bytes(b"0123456789")
    os.truncate(path, 4)
    assert s3_body(mounted, "t.bin") == b"0123"
    os.truncate(path, 8)
    assert s3_body(mounted, "t.bin") == b"0123\0\0\0\0"
    assert path.read_bytes() == b"0123\0\0\0\0"


def test_xattrs(mounted: Mounted) -> None:
    mounted.client().put_object(Bucket=mounted.bucket, Key="x.json", Body=b"{}", ContentType="application/json",
                                Metadata={"origin": "test"})
    path = mounted.path / "x.json"
    etag = mounted.client().head_object(Bucket=mounted.bucket, Key="x.json")["ETag"].strip('"')
    assert os.getxattr(path, "user.s3.etag") == etag.encode()
    assert os.getxattr(path, "user.s3.content_type") == b"application/json"
    assert os.getxattr(path, "user.s3.meta.origin") == b"test"
    os.setxattr(path, "user.note", b"kept locally")
    assert os.getxattr(path, "user.note") == b"kept locally"
    assert os.listxattr(path) == ["user.note"]  # user.s3.* are read by name only
    copy = mounted.path / "copy.json"
    subprocess.run(["cp", "--preserve=xattr", path, copy], check=True)  # failed on setting user.s3.etag
    assert os.listxattr(copy) == ["user.note"] and os.getxattr(copy, "user.note") == b"kept locally"
    assert os.getxattr(copy, "user.s3.etag") == os.getxattr(path, "user.s3.etag")  # same bytes, same MD5
    assert errno_of(lambda: os.getxattr(path, "user.missing")) == errno.ENODATA
    assert errno_of(lambda: os.setxattr(path, "user.s3.etag", b"forged")) == errno.EPERM
    assert errno_of(lambda: os.setxattr(path, "trusted.x", b"1")) in (errno.ENOTSUP, errno.EPERM)
    os.removexattr(path, "user.note")
    assert errno_of(lambda: os.getxattr(path, "user.note")) == errno.ENODATA
    assert errno_of(lambda: os.removexattr(path, "user.note")) == errno.ENODATA


def test_namespaces_other_than_user_are_unsupported_so_ls_asks_once(mounted: Mounted) -> None:
    """ENOTSUP, not ENODATA: coreutils' ls -l remembers a device that does not support security labels or ACLs
    and stops asking for each file (two daemon round trips per file, before)."""
    (mounted.path / "f").write_bytes(b"x")
    os.symlink("f", mounted.path / "link")
    for path, follow in [(mounted.path / "f", True), (mounted.path, True), (mounted.path / "link", False)]:
        for name in ("security.selinux", "system.posix_acl_access", "system.posix_acl_default", "trusted.x"):
            answer = errno_of(functools.partial(os.getxattr, path, name, follow_symlinks=follow))
            assert answer == errno.ENOTSUP, (path, name)
    assert errno_of(lambda: os.getxattr(mounted.path / "f", "user.none")) == errno.ENODATA
    for n in range(20):
        (mounted.path / f"g{n}").write_bytes(b"g")
    trace = mounted.path.parent / "ls.trace"
    listing = subprocess.run(["strace", "-f", "-qq", "-e", "trace=getxattr,lgetxattr", "-o", trace,
                              "ls", "-l", mounted.path], capture_output=True, text=True, check=True)
    assert not listing.stderr and len(listing.stdout.splitlines()) == 23 and "link -> f" in listing.stdout
    asked = [line for line in trace.read_text().splitlines() if "getxattr(" in line]
    assert 0 < len(asked) <= 3, asked  # the first answer per kind of name, not two for each of 22 files


def test_timestamps_move_with_changes(mounted: Mounted) -> None:
    os.mkdir(mounted.path / "d")
    os.utime(mounted.path / "d", ns=(0, 0))
    (mounted.path / "d" / "f").write_bytes(b"x")
    assert os.stat(mounted.path / "d").st_mtime_ns > 0  # creating an entry changes the directory
    path = mounted.path / "d" / "f"
    os.utime(path, ns=(0, 0))
    before = os.stat(path).st_ctime_ns
    os.chmod(path, 0o600)
    assert os.stat(path).st_ctime_ns >= before
    with open(path, "ab") as handle:
        handle.write(b"y")
    assert os.stat(path).st_mtime_ns > 0
