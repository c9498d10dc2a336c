"""File-system workloads on a mounted directory, one per process run, each printing JSON lines.

Why a child process: a read or write stuck in a FUSE request cannot be interrupted from inside the process
that made it; the harness runs each workload here under a timeout, kills it, and aborts the mount if needed.

    python bench/fsload.py WORKLOAD ROOT     (WORKLOAD: one of WORKLOADS below)
A mount that answers an error yields {"error": "..."}; the harness prints it as n/a (error: ...).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from common import (
    BIG_KEY,
    LS_PREFIX,
    REN_PREFIX,
    SCRATCH,
    SMALL_PREFIX,
    TREE_PREFIX,
    MiB,
    Sizes,
    busy_cpu_seconds,
    cpu_per_gib,
    emit,
    expected,
    mib_chunk,
)

SIZES = Sizes()
CHECK_POINTS = 16


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as handle:
        handle.write("3\n")


def read_through(path: str) -> tuple[int, float, float]:
    """Bytes read front to back in 1 MiB reads, the seconds it took, and the machine's CPU seconds per GiB."""
    buffer = bytearray(MiB)
    total = 0
    busy = busy_cpu_seconds()
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while True:
            got = handle.readinto(buffer)
            if not got:
                break
            total += got
    elapsed = time.perf_counter() - start
    return total, elapsed, cpu_per_gib(busy_cpu_seconds() - busy, total)


def seqread(root: str) -> None:
    """Read the big object front to back in 1 MiB reads; spot-check content at a few offsets afterwards."""
    path = os.path.join(root, BIG_KEY)
    total, elapsed, cpu = read_through(path)
    size = SIZES.big_mib * MiB
    if total != size:
        emit({"error": f"read {total} bytes, expected {size}"})
        return
    rng = random.Random(7)
    with open(path, "rb", buffering=0) as handle:
        for _ in range(CHECK_POINTS):
            offset = rng.randrange(0, size - 4096)
            if os.pread(handle.fileno(), 4096, offset) != expected(offset, 4096):
                emit({"error": f"wrong bytes at offset {offset}"})
                return
    emit({"value": total / 1e6 / elapsed, "unit": "MB/s", "seconds": elapsed, "cpu_s_per_gib": cpu})


def memread(root: str) -> None:
    """The yardstick: the one file of bench/memfs.py, read like seqread reads the big object."""
    total, elapsed, cpu = read_through(os.path.join(root, "big"))
    emit({"value": total / 1e6 / elapsed, "unit": "MB/s", "seconds": elapsed, "cpu_s_per_gib": cpu})


def randread(root: str) -> None:
    """4 KiB random reads for RAND_SECS: fio (psync, iodepth 1) when installed, else a pread loop."""
    path = os.path.join(root, BIG_KEY)
    if shutil.which("fio"):
        command = ["fio", "--name=rand", f"--filename={path}", "--rw=randread", "--bs=4k", "--ioengine=psync",
                   "--iodepth=1", "--numjobs=1", f"--runtime={SIZES.rand_secs}", "--time_based", "--readonly",
                   "--invalidate=1", "--output-format=json"]
        done = subprocess.run(command, capture_output=True, timeout=SIZES.rand_secs + 120, check=False)
        try:
            text = done.stdout.decode()
            job = json.loads(text[text.index("{"):])["jobs"][0]
        except (ValueError, KeyError, IndexError):
            emit({"error": "fio: " + (done.stderr.decode().strip()[-300:] or f"exit {done.returncode}")})
            return
        if job.get("error"):
            emit({"error": f"fio: {os.strerror(job['error'])}"})
            return
        emit({"value": job["read"]["iops"], "unit": "IOPS", "tool": "fio",
              "lat_ms_p50": job["read"]["clat_ns"]["percentile"].get("50.000000", 0) / 1e6,
              "lat_ms_p99": job["read"]["clat_ns"]["percentile"].get("99.000000", 0) / 1e6})
        return
    rng = random.Random(5)
    blocks = SIZES.big_mib * MiB // 4096
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        done_reads = 0
        start = time.perf_counter()
        while time.perf_counter() - start < SIZES.rand_secs:
            os.pread(fd, 4096, rng.randrange(blocks) * 4096)
            done_reads += 1
        emit({"value": done_reads / (time.perf_counter() - start), "unit": "IOPS", "tool": "pread loop"})
    finally:
        os.close(fd)


def timed_shell(command: str, root: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, shell=True, cwd=root, capture_output=True, timeout=600, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise OSError(done.stderr.decode().strip().splitlines()[-1] if done.stderr.strip() else
                      f"{command}: exit {done.returncode}")
    return elapsed, done.stdout.decode()


def ls(root: str) -> None:
    elapsed, out = timed_shell(f"ls -l {LS_PREFIX.rstrip('/')}", root)
    entries = len(out.splitlines()) - 1  # "total N"
    if entries != SIZES.n_ls:
        emit({"error": f"ls -l listed {entries} entries, expected {SIZES.n_ls}"})
        return
    emit({"value": elapsed, "unit": "s"})


def find(root: str) -> None:
    elapsed, out = timed_shell(f"find {TREE_PREFIX.rstrip('/')}", root)
    want = 1 + SIZES.n_dirs * (1 + SIZES.n_per_dir)
    if len(out.splitlines()) != want:
        emit({"error": f"find printed {len(out.splitlines())} paths, expected {want}"})
        return
    emit({"value": elapsed, "unit": "s"})


def smallread(root: str) -> None:
    """Open+read+close each seeded 4 KiB object (kernel caches dropped first)."""
    drop_caches()
    directory = os.path.join(root, SMALL_PREFIX)
    start = time.perf_counter()
    for index in range(SIZES.n_small):
        with open(os.path.join(directory, f"s{index:04d}"), "rb") as handle:
            if len(handle.read()) != 4096:
                emit({"error": f"s{index:04d}: short read"})
                return
    emit({"value": SIZES.n_small / (time.perf_counter() - start), "unit": "files/s"})


def small_payload(index: int) -> bytes:
    return index.to_bytes(4, "big") * 1024  # 4 KiB, distinct per file


def smallcreate(root: str) -> None:
    """Create N_SMALL 4 KiB files (open, write, close) in a new directory."""
    directory = os.path.join(root, SCRATCH, "small")
    os.makedirs(directory, exist_ok=True)
    start = time.perf_counter()
    for index in range(SIZES.n_small):
        with open(os.path.join(directory, f"s{index:04d}"), "wb") as handle:
            handle.write(small_payload(index))
    emit({"value": SIZES.n_small / (time.perf_counter() - start), "unit": "files/s"})


def smallreadback(root: str) -> None:
    """Read back what smallcreate wrote, kernel caches dropped, every byte checked: what a user does next, and
    where a write-back bug shows."""
    drop_caches()
    directory = os.path.join(root, SCRATCH, "small")
    bad: list[str] = []
    start = time.perf_counter()
    for index in range(SIZES.n_small):
        with open(os.path.join(directory, f"s{index:04d}"), "rb") as handle:
            got = handle.read()
        if got != small_payload(index):
            bad.append(f"s{index:04d}: {len(got)} bytes" + (", other content" if len(got) == 4096 else ""))
    elapsed = time.perf_counter() - start
    if bad:
        emit({"error": f"{len(bad)}/{SIZES.n_small} files read back wrong, e.g. {bad[0]}"})
        return
    emit({"value": SIZES.n_small / elapsed, "unit": "files/s"})


def write(root: str) -> None:
    """Write WRITE_MIB sequentially in 1 MiB writes; the write phase and close() are timed separately."""
    directory = os.path.join(root, SCRATCH)
    os.makedirs(directory, exist_ok=True)
    chunks = [mib_chunk(index) for index in range(16)]  # bounded memory; the harness verifies with the same data
    fd = os.open(os.path.join(directory, "big-written"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for index in range(SIZES.write_mib):
            view = memoryview(chunks[index % 16])
            while view:
                view = view[os.write(fd, view):]
        written = time.perf_counter()
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    closed = time.perf_counter()
    size = SIZES.write_mib * MiB
    emit({"value": size / 1e6 / (closed - start), "unit": "MB/s", "write_phase_mbs": size / 1e6 / (written - start),
          "close_s": closed - written})


def rename(root: str) -> None:
    source = os.path.join(root, REN_PREFIX, "src")
    target = os.path.join(root, REN_PREFIX, "dst")
    start = time.perf_counter()
    os.rename(source, target)
    elapsed = time.perf_counter() - start
    count = len(os.listdir(target))
    if count != SIZES.n_ren:
        emit({"error": f"renamed directory lists {count} entries, expected {SIZES.n_ren}"})
        return
    emit({"value": elapsed, "unit": "s"})


WORKLOADS: dict[str, Callable[[str], None]] = {
    "seqread": seqread, "memread": memread, "randread": randread, "ls": ls, "find": find, "smallread": smallread,
    "smallcreate": smallcreate, "smallreadback": smallreadback, "write": write, "rename": rename,
}


def main(argv: list[str]) -> int:
    name, root = argv
    try:
        WORKLOADS[name](root)
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "")
        emit({"error": f"{code}: {exc.strerror}" if code else str(exc)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
