"""`s3fuse runTests MOUNTPOINT`: a self-check through a mount, in the spirit of `alluxio runTests`.

Every file under the mount is listed, stat'ed and read to its end (size must match what stat said); on a
writable mount, files are also written under `default_tests_files/`, read back and compared, then removed.
"""

from __future__ import annotations

import hashlib
import os
import sys

TEST_DIR = "default_tests_files"
WRITE_CASES = {"BasicFile_CACHE_THROUGH": 1 << 20, "BasicFile_MUST_CACHE": 0, "BasicFile_THROUGH": 9 << 20}


def read_all(path: str) -> tuple[int, str]:
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def check_reads(mountpoint: str) -> list[str]:
    failures = []
    checked = 0
    for directory, _, files in os.walk(mountpoint):
        if os.path.relpath(directory, mountpoint).split(os.sep)[0] == TEST_DIR:
            continue
        for name in files:
            path = os.path.join(directory, name)
            expected = os.stat(path).st_size
            size, _ = read_all(path)
            checked += 1
            if size != expected:
                failures.append(f"{path}: read {size} bytes, stat says {expected}")
    print(f"read check: {checked} files read to the end, {len(failures)} failed")
    return failures


def check_writes(mountpoint: str) -> list[str]:
    failures = []
    directory = os.path.join(mountpoint, TEST_DIR)
    os.makedirs(directory, exist_ok=True)
    for name, size in WRITE_CASES.items():
        path = os.path.join(directory, name)
        data = os.urandom(size)
        with open(path, "wb") as handle:
            handle.write(data)
        got = read_all(path)
        ok = got == (size, hashlib.md5(data, usedforsecurity=False).hexdigest())
        print(f"runTest {name}: {'Passed' if ok else 'Failed'} the test!")
        if not ok:
            failures.append(path)
        os.unlink(path)
    os.rmdir(directory)
    return failures


def run_tests(mountpoint: str) -> int:
    failures = check_reads(mountpoint)
    if os.access(mountpoint, os.W_OK) and not os.statvfs(mountpoint).f_flag & os.ST_RDONLY:
        failures += check_writes(mountpoint)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("Passed all tests" if not failures else f"{len(failures)} test(s) failed")
    return 0 if not failures else 1
