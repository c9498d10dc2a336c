"""Shared by the bench processes: sizes from the environment, the bucket layout and the test data.

The data is deterministic (a seeded random MiB, rotated per MiB and tagged with its index) so the workload
process can check what it read without holding or hashing the object, and so it costs no CPU in timed loops.
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

MiB = 1 << 20
BUCKET = "bench"

# bucket layout
BIG_KEY = "big"            # the sequential/random read object (BIG_MIB)
LS_PREFIX = "ls2000/"      # N_LS small objects in one directory (ls -l)
TREE_PREFIX = "tree/"      # N_DIRS x N_PER_DIR objects (find)
SMALL_PREFIX = "small/"    # N_SMALL 4 KiB objects read back through the mount
REN_PREFIX = "ren/"        # N_REN objects under ren/src/, renamed to ren/dst/ through the mount
SCRATCH = "w/"             # everything the mount writes (deleted after each write workload)
DIRECT = "direct/"         # everything the direct client writes


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; every one can be overridden from the environment (see bench/README.md)."""

    big_mib: int = field(default_factory=lambda: env_int("BIG_MIB", 1024))
    write_mib: int = field(default_factory=lambda: env_int("WRITE_MIB", 256))
    rand_secs: int = field(default_factory=lambda: env_int("RAND_SECS", 20))
    n_ls: int = field(default_factory=lambda: env_int("N_LS", 2000))
    n_dirs: int = field(default_factory=lambda: env_int("N_DIRS", 200))
    n_per_dir: int = field(default_factory=lambda: env_int("N_PER_DIR", 10))
    n_small: int = field(default_factory=lambda: env_int("N_SMALL", 500))
    n_ren: int = field(default_factory=lambda: env_int("N_REN", 200))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_BASE = random.Random(20261126).randbytes(MiB)


def mib_chunk(index: int) -> bytes:
    """MiB number `index` of the big object: the base MiB rotated by an index-dependent amount, tagged."""
    shift = (index * 7919) % MiB
    rotated = _BASE[shift:] + _BASE[:shift]
    return f"MiB{index:010d}".encode() + rotated[13:]


def expected(offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of the big object."""
    out = bytearray()
    while length > 0:
        index, within = divmod(offset, MiB)
        take = min(length, MiB - within)
        out += mib_chunk(index)[within:within + take]
        offset += take
        length -= take
    return bytes(out)


def busy_cpu_seconds() -> float:
    """CPU time spent by the whole machine so far (every process and the kernel, not idle, I/O wait or steal),
    from /proc/stat: the server, the proxy, the client or the mount and the reader share the same cores, so what
    a GiB costs all of them together decides how fast any of them can go."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, _steal = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_per_gib(busy_seconds: float, nbytes: int) -> float:
    return busy_seconds * (1 << 30) / max(1, nbytes)


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout: how a child process hands a measurement to the harness."""
    print(json.dumps(record), flush=True)


def warn(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
