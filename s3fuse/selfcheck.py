"""Self-check and maintenance: `s3fuse runTests MOUNTPOINT` and `s3fuse format`.

runTests, in the spirit of `alluxio runTests`: on a writable mount, one file per case is written under
`default_tests_files/` (`Basic_CACHE_THROUGH` and friends), read back every way a reader can, compared byte for
byte and removed, with "Passed the test!" or "Failed the test!" per file. The names follow Alluxio's
operation and write types; here they choose how the file is written:

- `Basic`: the whole file in one write; `BasicNonByteBuffer`: many small unaligned writes;
- `MUST_CACHE`: read back through the mount while the writer still holds it open (local bytes);
- `CACHE_THROUGH`: close, then read back (close uploads);
- `THROUGH`: fsync before close (fsync uploads), then read back;
- `ASYNC_THROUGH`: close, then read back through a fresh open with the kernel's page cache dropped.

Every file is read twice (the second read is served by the caches: Alluxio's CACHE_PROMOTE) and once more after
dropping the kernel's page cache (NO_CACHE). A sample of the files already in the mount is also listed, stat'ed
and read to its end (the size must match what stat said); a read-only mount gets only that part.

format: empties the local block cache and the metadata overlay (modes, owners, times, user xattrs kept
locally) of the configured cache directory, after confirmation, and only when no process has them open.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TEST_DIR = "default_tests_files"
OPERATIONS = ("Basic", "BasicNonByteBuffer")
WRITE_TYPES = ("MUST_CACHE", "CACHE_THROUGH", "THROUGH", "ASYNC_THROUGH")
SMALL_WRITE = 4099  # BasicNonByteBuffer: small writes that never line up with pages or blocks
READ_SAMPLE_FILES = 200
READ_SAMPLE_BYTES = 256 << 20


@dataclass(frozen=True)
class Case:
    operation: str
    write_type: str

    @property
    def name(self) -> str:
        return f"{self.operation}_{self.write_type}"

    @property
    def size(self) -> int:
        return (3 << 20) + 123 if self.operation == "Basic" else 300_007


def cases() -> list[Case]:
    return [Case(operation, write_type) for operation in OPERATIONS for write_type in WRITE_TYPES]


def read_all(path: str, drop_page_cache: bool = False) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop_page_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes, chunk: int) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view[:chunk])
        view = view[written:]


def compare(what: str, got: bytes, expected: bytes) -> None:
    if got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                     min(len(got), len(expected)))
        raise AssertionError(f"{what}: {len(got)} bytes read, {len(expected)} written, first difference at "
                             f"byte {first}")


def run_case(directory: str, case: Case) -> None:
    """Write, read back and compare one file; raises AssertionError or OSError on a failure."""
    path = os.path.join(directory, case.name)
    data = os.urandom(case.size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data, len(data) if case.operation == "Basic" else SMALL_WRITE)
        if case.write_type == "MUST_CACHE":
            compare("read while the writer is open", read_all(path), data)
        if case.write_type == "THROUGH":
            os.fsync(fd)
    finally:
        os.close(fd)
    if os.stat(path).st_size != len(data):
        raise AssertionError(f"stat says {os.stat(path).st_size} bytes, {len(data)} were written")
    if case.name not in os.listdir(directory):
        raise AssertionError("the file is not listed in its directory")
    drop_first = case.write_type == "ASYNC_THROUGH"
    compare("first read", read_all(path, drop_page_cache=drop_first), data)
    compare("second read (cached)", read_all(path), data)
    compare("read without the page cache", read_all(path, drop_page_cache=True), data)
    os.unlink(path)


def check_writes(mountpoint: str, report: Callable[[str], None] = print) -> list[str]:
    failures: list[str] = []
    directory = os.path.join(mountpoint, TEST_DIR)
    os.makedirs(directory, exist_ok=True)
    for case in cases():
        try:
            run_case(directory, case)
        except (AssertionError, OSError) as exc:
            failures.append(f"{case.name}: {exc}")
            report(f"runTest {case.name}: Failed the test! ({exc})")
        else:
            report(f"runTest {case.name}: Passed the test!")
    for name in os.listdir(directory):  # what a failed case left behind
        try:
            os.unlink(os.path.join(directory, name))
        except OSError as exc:
            report(f"cannot remove {os.path.join(directory, name)}: {exc}")
    try:
        os.rmdir(directory)
    except OSError as exc:
        failures.append(f"{directory}: cannot remove the test directory: {exc}")
    return failures


def check_reads(mountpoint: str, report: Callable[[str], None] = print) -> list[str]:
    """Read a sample of the existing files to their end (at most READ_SAMPLE_FILES files and
    READ_SAMPLE_BYTES bytes: a self-check must not read a whole bucket)."""
    failures: list[str] = []
    checked = 0
    budget = READ_SAMPLE_BYTES
    for directory, dirs, files in os.walk(mountpoint):
        dirs.sort()
        if os.path.relpath(directory, mountpoint).split(os.sep)[0] == TEST_DIR:
            continue
        for name in sorted(files):
            if checked >= READ_SAMPLE_FILES or budget <= 0:
                break
            path = os.path.join(directory, name)
            try:
                expected = os.stat(path).st_size
                if expected > budget:
                    continue
                digest = hashlib.md5(usedforsecurity=False)
                size = 0
                with open(path, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
            except OSError as exc:
                failures.append(f"{path}: {exc}")
                continue
            checked += 1
            budget -= size
            if size != expected:
                failures.append(f"{path}: read {size} bytes, stat says {expected}")
    report(f"read check: {checked} existing file(s) read to the end, {len(failures)} failed")
    return failures


def run_tests(mountpoint: str) -> int:
    if not os.path.ismount(mountpoint):
        print(f"runTests: {mountpoint} is not a mount point", file=sys.stderr)
        return 2
    failures = check_reads(mountpoint)
    if os.access(mountpoint, os.W_OK) and not os.statvfs(mountpoint).f_flag & os.ST_RDONLY:
        failures += check_writes(mountpoint)
    else:
        print("read-only mount: the write tests are skipped")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("Passed all tests" if not failures else f"{len(failures)} test(s) failed")
    return 0 if not failures else 1


# -- format -------------------------------------------------------------------------------------------------

# What s3fuse keeps in a cache directory: diskcache's index and value folders, and the metadata overlay.
DISK_CACHE_ENTRY = re.compile(r"^(cache\.db(-wal|-shm|-journal)?|[0-9a-f]{2})$")


def cache_entries(directories: tuple[str, ...]) -> list[Path]:
    """The entries s3fuse made in the cache directories; nothing else there is touched (value folders only
    beside diskcache's index, the overlay folder only when it holds overlay databases)."""
    found: list[Path] = []
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            continue
        if (root / "cache.db").is_file():
            found += sorted(p for p in root.iterdir() if DISK_CACHE_ENTRY.match(p.name))
        overlay = root / "overlay"
        if overlay.is_dir() and any(p.suffix.startswith(".sqlite") for p in overlay.iterdir()):
            found.append(overlay)
    return found


def footprint(paths: list[Path]) -> tuple[int, int]:
    """(files, bytes) under `paths`."""
    files = size = 0
    for path in paths:
        walk = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for item in walk:
            try:
                size += item.stat().st_size
                files += 1
            except OSError:
                pass
    return files, size


def users_of(directories: tuple[str, ...]) -> list[int]:
    """Processes with a file open under any of `directories` (a running mount using the cache)."""
    roots = [os.path.realpath(d) + os.sep for d in directories]
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            targets = [os.readlink(f"/proc/{entry}/fd/{fd}") for fd in os.listdir(f"/proc/{entry}/fd")]
        except OSError:
            continue
        if any(t.startswith(root) for t in targets for root in roots):
            pids.append(int(entry))
    return pids


def format_cache(directories: tuple[str, ...], confirm: Callable[[str], bool]) -> int:
    entries = cache_entries(directories)
    if not entries:
        print(f"nothing to format: no s3fuse cache in {', '.join(directories)}")
        return 0
    users = users_of(directories)
    if users:
        print(f"format: the cache in {', '.join(directories)} is in use by process(es) "
              f"{', '.join(map(str, users))}: unmount first", file=sys.stderr)
        return 1
    files, size = footprint(entries)
    question = (f"Empty the s3fuse cache in {', '.join(directories)}: {files} file(s), {size / (1 << 20):.1f} MiB of "
                "cached blocks and the local metadata (modes, owners, times, user xattrs set through the mount)? "
                "Objects in S3 are not touched.")
    if not confirm(question):
        print("format: nothing was changed")
        return 1
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    print(f"formatted: {files} file(s), {size / (1 << 20):.1f} MiB removed")
    return 0
