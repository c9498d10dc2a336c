"""Our own POSIX conformance cases, run on the s3fuse mount and, as a control, on tmpfs: the same calls must
give the same results (errno, bytes, permissions as another user)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.conftest import MountFactory

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(params=["s3fuse", "tmpfs"])
def root(request: pytest.FixtureRequest, mount_factory: MountFactory) -> Iterator[Path]:
    """A shared (0777) s3fuse mount open to other users, or a tmpfs directory with the same mode."""
    if request.param == "tmpfs":
        path = Path(tempfile.mkdtemp(dir="/dev/shm"))
        path.chmod(0o777)
        yield path
        subprocess.run(["rm", "-rf", str(path)], check=False)
        return
    yield mount_factory(args=("--shared", "--allow-other")).path


def as_user(uid: int, code: str) -> int:
    """Run `code` (Python, with `os` imported) as another user; 0 on success, else the errno it raised."""
    script = f"import os, sys\ntry:\n    {code}\nexcept OSError as e:\n    sys.exit(e.errno)\n"
    result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", SYSTEM_PYTHON,
                             "-c", script], capture_output=True, text=True, timeout=60)
    return result.returncode


def test_other_user_follows_the_modes(root: Path) -> None:
    (root / "private").write_bytes(b"secret")
    os.chmod(root / "private", 0o600)
    (root / "readable").write_bytes(b"public")
    os.chmod(root / "readable", 0o644)
    assert as_user(NOBODY, f"open({str(root / 'private')!r}, 'rb')") == errno.EACCES
    assert as_user(NOBODY, f"open({str(root / 'readable')!r}, 'rb').read()") == 0
    assert as_user(NOBODY, f"open({str(root / 'readable')!r}, 'ab')") == errno.EACCES
    assert as_user(NOBODY, f"open({str(root / 'mine')!r}, 'wb').write(b'x')") == 0
    assert os.stat(root / "mine").st_uid == NOBODY
    assert as_user(NOBODY, f"os.chown({str(root / 'readable')!r}, {NOBODY}, {NOBODY})") == errno.EPERM
    assert as_user(NOBODY, f"os.chmod({str(root / 'readable')!r}, 0o666)") == errno.EPERM


def test_sticky_directory_protects_other_users_files(root: Path) -> None:
    os.mkdir(root / "tmp")
    os.chmod(root / "tmp", 0o1777)
    (root / "tmp" / "roots").write_bytes(b"r")
    assert as_user(NOBODY, f"os.unlink({str(root / 'tmp' / 'roots')!r})") == errno.EPERM
    assert as_user(NOBODY, f"open({str(root / 'tmp' / 'own')!r}, 'wb')") == 0
    assert as_user(NOBODY, f"os.unlink({str(root / 'tmp' / 'own')!r})") == 0


def test_a_set_group_id_directory_passes_its_group_on(root: Path) -> None:
    os.mkdir(root / "shared")
    os.chown(root / "shared", 0, 4242)
    os.chmod(root / "shared", 0o2775)
    (root / "shared" / "f").write_bytes(b"x")
    os.mkdir(root / "shared" / "d", 0o755)
    os.symlink("f", root / "shared" / "l")
    assert os.stat(root / "shared" / "f").st_gid == 4242
    assert os.lstat(root / "shared" / "l").st_gid == 4242
    directory = os.stat(root / "shared" / "d")
    assert (directory.st_gid, directory.st_mode & 0o7777) == (4242, 0o2755 & ~current_umask())
    os.mkdir(root / "plain")
    (root / "plain" / "f").write_bytes(b"x")
    assert os.stat(root / "plain" / "f").st_gid == os.getegid()


def test_an_unlinked_open_file_keeps_its_metadata(root: Path) -> None:
    path = root / "doomed"
    path.write_bytes(b"")
    os.chmod(path, 0o640)
    os.chown(path, NOBODY, NOBODY)
    path.write_bytes(b"Hello, World!")  # the write makes the kernel ask for the attributes again
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        found = os.fstat(fd)
        assert (found.st_nlink, stat.S_IMODE(found.st_mode), found.st_uid, found.st_gid, found.st_size) == (
            0, 0o640, NOBODY, NOBODY, 13)
        os.fchmod(fd, 0o600)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
        assert os.read(fd, 100) == b"Hello, World!"
    finally:
        os.close(fd)
    path.write_bytes(b"new")  # a new file of the same name owes nothing to the old one
    assert (stat.S_IMODE(os.stat(path).st_mode), os.stat(path).st_uid) == (0o644 & ~current_umask(), 0)


def test_times_before_1970_and_far_ahead(root: Path) -> None:
    (root / "f").write_bytes(b"x")
    os.mkdir(root / "d")
    for name in ("f", "d"):
        os.utime(root / name, ns=(-100_000_000_000, -200_000_000_000))
    os.utime(root / "f", (2**40, 2**40))  # past what nanoseconds in 64 bits hold: clamped, not an error
    os.chmod(root / "f", 0o600)
    Path("/proc/sys/vm/drop_caches").write_text("3")
    found = os.stat(root / "d")
    assert (found.st_atime_ns, found.st_mtime_ns) == (-100_000_000_000, -200_000_000_000)
    assert os.stat(root / "f").st_mtime > 2**33 and stat.S_IMODE(os.stat(root / "f").st_mode) == 0o600


def test_a_directory_holding_an_open_new_file_is_not_empty(root: Path) -> None:
    os.mkdir(root / "d")
    os.mkdir(root / "empty")
    fd = os.open(root / "d" / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"not uploaded yet")
        with pytest.raises(OSError) as removed:
            os.rmdir(root / "d")
        assert removed.value.errno == errno.ENOTEMPTY
        with pytest.raises(OSError) as replaced:
            os.rename(root / "empty", root / "d")
        assert replaced.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    finally:
        os.close(fd)
    assert os.listdir(root / "d") == ["f"]


def test_o_trunc_truncates_a_read_only_open_too(root: Path) -> None:
    (root / "f").write_bytes(b"content")
    os.close(os.open(root / "f", os.O_RDONLY | os.O_TRUNC))
    assert os.stat(root / "f").st_size == 0


def test_xattrs_of_an_unlinked_open_file_stay_its_own(root: Path) -> None:
    path = root / "xa"
    path.write_bytes(b"x")
    os.setxattr(path, "user.kept", b"1")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        os.setxattr(fd, "user.tag", b"secret")
        assert (os.getxattr(fd, "user.kept"), os.getxattr(fd, "user.tag")) == (b"1", b"secret")
    finally:
        os.close(fd)
    path.write_bytes(b"y")  # a new file of the same name (and inode number) owes nothing to the old one
    fd = os.open(path, os.O_RDONLY)
    try:
        os.unlink(path)
        assert not {"user.kept", "user.tag"} & set(os.listxattr(fd))
    finally:
        os.close(fd)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask & 0o777


def test_directory_without_search_permission(root: Path) -> None:
    os.mkdir(root / "closed")
    (root / "closed" / "f").write_bytes(b"x")
    os.chmod(root / "closed", 0o700)
    assert as_user(NOBODY, f"os.stat({str(root / 'closed' / 'f')!r})") == errno.EACCES
    assert as_user(NOBODY, f"os.listdir({str(root / 'closed')!r})") == errno.EACCES


def test_error_codes(root: Path) -> None:
    def errno_of(action: Callable[[], object]) -> int:
        try:
            action()
        except OSError as exc:
            return exc.errno or 0
        return 0

    (root / "f").write_bytes(b"data")
    os.mkdir(root / "d")
    (root / "d" / "g").write_bytes(b"")
    assert errno_of(lambda: os.rmdir(root / "d")) == errno.ENOTEMPTY
    assert errno_of(lambda: os.mkdir(root / "f")) == errno.EEXIST
    assert errno_of(lambda: os.open(root / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)) == errno.EEXIST
    assert errno_of(lambda: os.open(root / "d", os.O_WRONLY)) == errno.EISDIR
    assert errno_of(lambda: os.rename(root / "d", root / "f")) == errno.ENOTDIR
    assert errno_of(lambda: os.rename(root / "f", root / "d")) == errno.EISDIR
    assert errno_of(lambda: os.open(root / ("x" * 256), os.O_CREAT | os.O_WRONLY)) == errno.ENAMETOOLONG
    assert errno_of(lambda: os.readlink(root / "f")) == errno.EINVAL
    fd = os.open(root / "f", os.O_RDONLY)
    try:
        assert errno_of(lambda: os.write(fd, b"x")) == errno.EBADF
    finally:
        os.close(fd)


def test_truncate_and_sizes(root: Path) -> None:
    path = root / "t"
    with open(path, "wb") as handle:
        handle.write(b"abcdef")
        handle.truncate(3)
        handle.seek(10)
        handle.write(b"Z")
    assert path.read_bytes() == b"abc" + b"\0" * 7 + b"Z"
    assert os.stat(path).st_size == 11


def test_a_directory_links_its_subdirectories(root: Path) -> None:
    os.makedirs(root / "d" / "one")
    os.mkdir(root / "d" / "two")
    (root / "d" / "file").write_bytes(b"")
    assert os.stat(root / "d").st_nlink == 4  # ".", its name in the parent, and ".." of each subdirectory
    os.rename(root / "d" / "two", root / "moved")
    assert os.stat(root / "d").st_nlink == 3
    os.rmdir(root / "d" / "one")
    assert os.stat(root / "d").st_nlink == 2
    assert os.stat(root / "moved").st_nlink == 2


def test_rename_over_open_file_keeps_the_old_readable(root: Path) -> None:
    (root / "old").write_bytes(b"old bytes")
    (root / "new").write_bytes(b"new bytes")
    with open(root / "old", "rb") as reader:
        os.rename(root / "new", root / "old")
        assert reader.read() == b"old bytes"
    assert (root / "old").read_bytes() == b"new bytes"


# -------------------------------------------------------------------------------- a random operation model

NAMES = st.sampled_from(["a", "b", "c"])
PAYLOAD = st.binary(min_size=0, max_size=3000)


class SameAsTmpfs(RuleBasedStateMachine):
    """Random create/write/truncate/rename/unlink on two handles; every file must stay equal to tmpfs."""

    mount: Path
    control: Path

    @initialize()
    def start(self) -> None:
        for directory in (self.mount, self.control):
            for name in os.listdir(directory):
                os.unlink(directory / name)
        self.handles: dict[str, tuple[int, int]] = {}

    def both(self, action: Callable[[Path], object]) -> None:
        outcomes = []
        for directory in (self.mount, self.control):
            try:
                action(directory)
                outcomes.append(0)
            except OSError as exc:
                outcomes.append(exc.errno or 0)
        assert outcomes[0] == outcomes[1]

    @rule(name=NAMES, data=PAYLOAD)
    def write_whole(self, name: str, data: bytes) -> None:
        self.both(lambda d: (d / name).write_bytes(data))

    @rule(name=NAMES, offset=st.integers(0, 5000), data=PAYLOAD)
    def write_at(self, name: str, offset: int, data: bytes) -> None:
        def action(directory: Path) -> None:
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
        self.both(action)

    @rule(name=NAMES, size=st.integers(0, 6000))
    def truncate(self, name: str, size: int) -> None:
        self.both(lambda d: os.truncate(d / name, size))

    @rule(source=NAMES, destination=NAMES)
    def rename(self, source: str, destination: str) -> None:
        if name_open(self.handles, source) or name_open(self.handles, destination):
            return
        self.both(lambda d: os.rename(d / source, d / destination))

    @rule(name=NAMES)
    def unlink(self, name: str) -> None:
        if name_open(self.handles, name):
            return
        self.both(lambda d: os.unlink(d / name))

    @rule(name=NAMES)
    def open_handle(self, name: str) -> None:
        if name in self.handles or not (self.control / name).exists():
            return
        self.handles[name] = (os.open(self.mount / name, os.O_RDWR), os.open(self.control / name, os.O_RDWR))

    @rule(name=NAMES, offset=st.integers(0, 5000), data=PAYLOAD)
    def write_through_handle(self, name: str, offset: int, data: bytes) -> None:
        if name in self.handles:
            for fd in self.handles[name]:
                os.pwrite(fd, data, offset)

    @rule(name=NAMES)
    def close_handle(self, name: str) -> None:
        if name in self.handles:
            for fd in self.handles.pop(name):
                os.close(fd)

    @invariant()
    def same_files(self) -> None:
        names = sorted(os.listdir(self.control))
        assert sorted(os.listdir(self.mount)) == names
        for name in names:
            assert (self.mount / name).read_bytes() == (self.control / name).read_bytes()

    def teardown(self) -> None:
        for fds in self.handles.values():
            for fd in fds:
                os.close(fd)


def name_open(handles: dict[str, tuple[int, int]], name: str) -> bool:
    return name in handles


def test_random_operations_match_tmpfs(mount_factory: MountFactory) -> None:
    mounted = mount_factory()
    control = Path(tempfile.mkdtemp(dir="/dev/shm"))
    SameAsTmpfs.mount, SameAsTmpfs.control = mounted.path, control
    try:
        run = SameAsTmpfs.TestCase
        run.settings = settings(max_examples=12, stateful_step_count=25, deadline=None,
                                suppress_health_check=list(HealthCheck))
        run().runTest()
    finally:
        subprocess.run(["rm", "-rf", str(control)], check=False)
