"""The engine behind bench/run: start a local S3 and a counting proxy, seed, run the direct-client baselines
and the same workloads through an s3fuse mount, optionally the peers' shared harness, then write the report.

Everything it starts is stopped in `finally` blocks (the bash wrapper's trap is only a safety net), and each
mount workload runs in a child process under a timeout so a hung mount cannot hang the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import direct
import report
from common import BUCKET, REN_PREFIX, SCRATCH, Sizes, warn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE = Path(os.environ.get("S3FUSE_SRC", str(REPO)))  # the s3fuse tree measured (bench/run puts it on PYTHONPATH)
SIZES = Sizes()
STEP_TIMEOUT = int(os.environ.get("STEP_TIMEOUT", "900"))
BACKEND = os.environ.get("BACKEND", "rgw")  # a real S3 server by default (issue 8); moto-fast on request
WORK = Path(os.environ["BENCH_WORK"])
RAM_DIR = os.environ.get("RAM_DIR", "/dev/shm")  # a tmpfs for the seq_warm_ram row's block cache
RESULTS = Path(os.environ.get("BENCH_RESULTS", str(HERE / "results")))
VENV_BIN = Path(sys.executable).parent
# the mount's workload groups (one mount each) and their rows; WORKLOADS=reads,metadata runs only those
GROUPS = {"reads": ["seq_cold", "seq_warm", "seq_warm_remount", "seq_warm_ram", "seq_cold_dio", "seq_warm_dio",
                   "rss"],
          "random": ["rand4k", "rand4k_warm"],
          "metadata": ["ls", "find", "small_read", "small_create", "small_readback", "write_default", "close_default"],
          "streaming": ["write_stream", "close_stream"], "rename": ["rename"]}
CHOSEN = [name for name in os.environ.get("WORKLOADS", ",".join(GROUPS)).split(",") if name in GROUPS]


def chosen(key: str) -> bool:
    """Whether a row is measured in this run: the limits go with the reads."""
    return any(key in GROUPS[name] for name in CHOSEN) or (key.startswith("lim_") and "reads" in CHOSEN)


# ------------------------------------------------------------------------------------------------ rows


@dataclass
class Row:
    """One workload: the s3fuse figure beside the direct client's, with the S3 requests each one sent."""

    key: str
    label: str
    unit: str
    lower_better: bool = False
    direct_label: str = ""
    s3fuse: float | None = None
    s3fuse_error: str = ""
    s3fuse_ops: dict[str, int] = field(default_factory=dict)
    s3fuse_bytes: int = 0
    direct: float | None = None
    direct_error: str = ""
    direct_ops: dict[str, int] = field(default_factory=dict)
    direct_bytes: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_rows(sizes: Sizes) -> dict[str, Row]:
    s = sizes
    rows = [
        Row("seq_cold", f"seq read {s.big_mib} MiB, cold", "MB/s", direct_label="GET, one stream"),
        Row("seq_warm", "seq read, warm (page cache dropped)", "MB/s", direct_label="GET, one stream"),
        Row("seq_warm_remount", "seq read, warm after remount", "MB/s", direct_label="GET, one stream"),
        Row("seq_warm_ram", "seq read, warm, block cache on tmpfs", "MB/s", direct_label="GET, one stream"),
        Row("seq_cold_dio", "seq read, cold, -o direct_io", "MB/s", direct_label="GET, one stream"),
        Row("seq_warm_dio", "seq read, warm, -o direct_io", "MB/s", direct_label="GET, one stream"),
        Row("rand4k", f"random 4 KiB reads, {s.rand_secs} s, cold cache", "IOPS",
            direct_label="4 KiB ranged GETs, one at a time"),
        Row("rand4k_warm", "  the same, file in the block cache", "IOPS",
            direct_label="4 KiB ranged GETs, one at a time"),
        Row("ls", f"ls -l on {s.n_ls} keys", "s", True, "ListObjectsV2 with delimiter"),
        Row("find", f"find over {s.n_dirs} dirs x {s.n_per_dir} files", "s", True, "ListObjectsV2 of the prefix"),
        Row("small_read", f"read {s.n_small} x 4 KiB files", "files/s", direct_label="GET each, one at a time"),
        Row("small_create", f"create {s.n_small} x 4 KiB files", "files/s", direct_label="PUT each, one at a time"),
        Row("small_readback", "  read them back, checked", "files/s", direct_label="GET each, one at a time"),
        Row("write_default", f"write {s.write_mib} MiB + close, default", "MB/s",
            direct_label="PUT, one request"),
        Row("close_default", "  of which close(), default", "s", True),
        Row("write_stream", f"write {s.write_mib} MiB + close, streaming", "MB/s",
            direct_label="multipart PUT, 8 MiB x 8 in flight"),
        Row("close_stream", "  of which close(), streaming", "s", True),
        Row("rename", f"rename a dir of {s.n_ren} files", "s", True,
            "LIST + COPY x N (16 in flight) + DeleteObjects"),
        Row("lim_burst", "limit: 8 x 8 MiB ranged GETs at once", "MB/s", direct_label="best of 3"),
        Row("lim_ranges", "limit: whole object as 8 MiB ranges", "MB/s", direct_label="8 in flight"),
        Row("lim_noproxy", "limit: GET, one stream, no proxy", "MB/s", direct_label="cost of the counting hop"),
        Row("lim_memfs", "limit: trivial in-memory pyfuse3 fs", "MB/s",
            direct_label="bench/memfs.py, read as above, best of 2"),
        Row("lim_disk", "limit: the block cache's files on disk", "MB/s",
            direct_label="read 8 at a time, page cache dropped"),
        Row("rss", "s3fuse peak RSS, cold + warm reads", "MiB", True),
    ]
    return {row.key: row for row in rows}


# ------------------------------------------------------------------------------------------------ processes


def record_pid(pid: int) -> None:
    """For bench/run's trap: every process we start, in case this one dies without its finally blocks."""
    with open(WORK / "pids", "a") as handle:
        handle.write(f"{pid}\n")


def pick_port() -> int:
    """A free port in 9600-9900 (clear of the shared harness's 9100 and s3fuse's 19999)."""
    candidates = list(range(9600, 9901))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 9600-9900")


def stop(process: subprocess.Popen[bytes]) -> None:
    from s3fuse.embedded import stop as stop_server  # late, like every s3fuse import here (S3FUSE_SRC)

    if process.poll() is None:
        stop_server(process)


@contextlib.contextmanager
def backend(logs: Path) -> Iterator[Any]:
    """The S3 server chosen by BACKEND, as an embedded.LocalS3."""
    if BACKEND == "moto-fast":
        from motofast import fast_moto_server

        with fast_moto_server(pick_port(), str(logs / "backend.log"), record_pid) as server:
            yield server
    elif BACKEND == "moto":
        from s3fuse.embedded import moto_server

        with moto_server(pick_port(), str(logs / "backend.log")) as server:
            yield server
    elif BACKEND == "rgw":
        from s3fuse.rgw import rgw_server  # type: ignore[import-not-found,unused-ignore]  # being written

        with rgw_server() as server:
            yield server
    else:
        raise SystemExit(f"bench: unknown BACKEND {BACKEND!r} (moto-fast, moto, rgw)")


@contextlib.contextmanager
def counting_proxy(upstream: str, logs: Path) -> Iterator[str]:
    """countproxy.py in front of the server; yields the proxy's endpoint."""
    from s3fuse.embedded import wait_for

    port = pick_port()
    upstream_port = int(upstream.rsplit(":", 1)[1].rstrip("/"))
    with open(logs / "proxy.log", "ab") as log:
        process = subprocess.Popen([sys.executable, str(HERE / "countproxy.py"), str(port), str(upstream_port)],
                                   stdout=log, stderr=log, start_new_session=True)
    record_pid(process.pid)
    try:
        wait_for(f"http://127.0.0.1:{port}/__bench__/counts", 30, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


class Counter:
    """Request counts read from the proxy; `delta` around a step gives the step's requests."""

    def __init__(self, endpoint: str) -> None:
        self.url = f"{endpoint}/__bench__/counts"

    def snapshot(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url, timeout=10) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, int], int]:
        ops = {op: n - before["ops"].get(op, 0) for op, n in after["ops"].items()
               if n - before["ops"].get(op, 0) > 0}
        moved = after["up"] + after["down"] - before["up"] - before["down"]
        return dict(sorted(ops.items(), key=lambda item: -item[1])), moved


# ------------------------------------------------------------------------------------------------ the mount


class MountError(Exception):
    pass


class S3fuseMount:
    """mount.alluxio-s3 on one mount point, with the options a workload group asks for."""

    def __init__(self, server: Any, endpoint: str, logs: Path) -> None:
        self.server = server
        self.endpoint = endpoint
        self.point = WORK / "mnt" / "s3fuse"
        self.cache = WORK / "cache"
        self.logs = logs
        self.conf = WORK / "conf"  # empty: a site file in /etc/s3fuse must not change what is measured
        self.daemon_pid: int | None = None
        self.options: dict[str, str] = {}
        for path in (self.point, self.conf, WORK / "tmp"):
            path.mkdir(parents=True, exist_ok=True)

    def base_options(self) -> dict[str, str]:
        return {
            "alluxio.underfs.s3.endpoint": self.endpoint,
            "alluxio.underfs.s3.disable.dns.buckets": "true",
            "aws.accessKeyId": self.server.access_key,
            "aws.secretKey": self.server.secret_key,
            "alluxio.underfs.s3.endpoint.region": self.server.region,
            "alluxio.user.client.cache.dirs": str(self.cache),
            "alluxio.user.client.cache.size": os.environ.get("CACHE_SIZE", "4GB"),
            "alluxio.user.client.cache.page.size": os.environ.get("BLOCK_SIZE", "8MB"),
            "alluxio.tmp.dirs": str(WORK / "tmp"),
            "alluxio.master.web.port": "0",
        } | dict(item.split("=", 1) for item in os.environ.get("MOUNT_OPTIONS", "").split(",") if "=" in item)

    def command(self, extra: dict[str, str]) -> list[str]:
        self.options = self.base_options() | extra
        text = ",".join(f"{key}={value}" for key, value in self.options.items())
        return [str(VENV_BIN / "mount.alluxio-s3"), f"s3://{BUCKET}/", str(self.point), "-o", text]

    def mount(self, extra: dict[str, str] | None = None, empty_cache: bool = False) -> None:
        if self.mounted():
            self.unmount()
        if empty_cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        drop_caches()
        from s3fuse.embedded import clean_aws_environment

        env = clean_aws_environment({"S3FUSE_LOG_DIR": str(self.logs), "S3FUSE_CONF_DIR": str(self.conf)})
        try:
            done = subprocess.run(self.command(extra or {}), env=env, capture_output=True, timeout=90, check=False)
        except subprocess.TimeoutExpired:
            self.find_daemon()
            self.abort()
            raise MountError("mount.alluxio-s3 did not return within 90 s") from None
        self.find_daemon()
        if done.returncode != 0 or not self.mounted():
            message = (done.stderr.decode().strip() or f"exit {done.returncode}").splitlines()[-1]
            self.abort()
            raise MountError(f"mount failed: {self.last_log_line() or message}")

    def last_log_line(self) -> str:
        """The daemon log's last line (cli.default_log_file's naming): why a mount died, for the table."""
        name = re.sub(r"[^A-Za-z0-9._-]", "-", str(self.point).strip("/")) + ".log"
        with contextlib.suppress(OSError):
            lines = [line.strip() for line in (self.logs / name).read_text().splitlines() if line.strip()]
            return lines[-1].lstrip("| ")[:160] if lines else ""
        return ""

    def device(self) -> str | None:
        return mount_device(self.point)

    def mounted(self) -> bool:
        return self.device() is not None

    def peak_rss_mib(self) -> float | None:
        """The daemon's peak resident memory so far (VmHWM), in MiB."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.daemon_pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def find_daemon(self) -> None:
        """The daemon's pid (it forked away from the helper): the process whose argv holds our mount point."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(self.point).encode() in argv and any(b"mount.alluxio-s3" in arg for arg in argv[:2]):
                self.daemon_pid = int(entry.name)
                record_pid(self.daemon_pid)
                return

    def unmount(self) -> None:
        if self.mounted():
            done = subprocess.run(["fusermount3", "-u", str(self.point)], capture_output=True, timeout=60,
                                  check=False)
            if done.returncode != 0:
                warn(f"fusermount3 -u: {done.stderr.decode().strip()}; unmounting lazily")
                subprocess.run(["fusermount3", "-uz", str(self.point)], capture_output=True, check=False)
        self.reap()

    def reap(self) -> None:
        pid, self.daemon_pid = self.daemon_pid, None
        if pid is None:
            return
        for _ in range(100):  # the daemon exits by itself after the unmount
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        warn(f"s3fuse daemon {pid} still alive 10 s after unmount: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def abort(self) -> None:
        """A hung mount: abort its FUSE connection, lazily unmount, kill the daemon."""
        device = self.device()
        if device is not None:
            with contextlib.suppress(OSError):
                Path(f"/sys/fs/fuse/connections/{device.split(':')[1]}/abort").write_text("1")
        subprocess.run(["fusermount3", "-uz", str(self.point)], capture_output=True, check=False)
        if self.daemon_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.daemon_pid, signal.SIGKILL)
        self.daemon_pid = None


def mount_device(point: Path) -> str | None:
    """major:minor of the mount on `point`, from mountinfo (a stat could hang on a dead mount)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(point):
            return fields[2]
    return None


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run_workload(workload: str, root: Path, on_timeout: Callable[[], None]) -> dict[str, Any]:
    """One fsload workload in a child process; its JSON result, or {"error": ...}. `on_timeout` unsticks the
    file system first (a child waiting on a hung FUSE request only dies once it is answered)."""
    env = dict(os.environ, PYTHONPATH=str(HERE))
    # own process group: fio and anything else the workload starts go with it on timeout or interruption
    child = subprocess.Popen([sys.executable, str(HERE / "fsload.py"), workload, str(root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = child.communicate(timeout=STEP_TIMEOUT)
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {
            "error": (err.decode().strip().splitlines() or [f"exit {child.returncode}"])[-1][:200]}
    except subprocess.TimeoutExpired:
        on_timeout()
        result = {"error": f"timeout after {STEP_TIMEOUT} s"}
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    return result


# ------------------------------------------------------------------------------------------------ steps


class Bench:
    def __init__(self, server: Any, endpoint: str, logs: Path) -> None:
        self.server = server
        self.endpoint = endpoint   # the proxy: what the mount and the measured direct client use
        self.counter = Counter(endpoint)
        self.logs = logs
        self.rows = make_rows(SIZES)
        self.mount = S3fuseMount(server, endpoint, logs)

    def client(self, via_proxy: bool) -> Any:
        url = self.endpoint if via_proxy else self.server.endpoint
        return direct.open_client(url, self.server.access_key, self.server.secret_key, self.server.region)

    def checker(self, job: Callable[[Any], Awaitable[Any]]) -> Any:
        """Seeding and verification: straight to the server, so they count nowhere."""
        async def run() -> Any:
            async with self.client(via_proxy=False) as client:
                return await job(client)
        return asyncio.run(run())

    # -- direct --------------------------------------------------------------------------------------------

    def run_direct(self) -> None:
        plan: list[tuple[str, Callable[[Any, Sizes], Awaitable[direct.Result]]]] = [
            ("seq_cold", direct.get_single), ("lim_burst", direct.ranged_burst),
            ("lim_ranges", direct.ranged_whole), ("rand4k", direct.rand4k), ("ls", direct.list_ls),
            ("find", direct.list_tree), ("small_read", direct.small_get), ("small_create", direct.small_put),
            ("small_readback", direct.small_get_back),
            ("write_default", direct.put_single), ("write_stream", direct.put_multipart),
            ("rename", direct.rename_dir),
        ]
        self.checker(lambda c: direct.seed_rename(c, f"{direct.DIRECT}{REN_PREFIX}", SIZES.n_ren))

        async def run() -> None:
            async with self.client(via_proxy=True) as client:
                for key, job in plan:
                    if not chosen(key):
                        continue
                    row = self.rows[key]
                    warn(f"direct: {row.label}")
                    before = self.counter.snapshot()
                    try:
                        value, _, extra = await job(client, SIZES)
                        row.direct = value
                        row.extra |= {f"direct_{k}": v for k, v in extra.items()}
                    except Exception as exc:
                        row.direct_error = f"{type(exc).__name__}: {exc}"[:200]
                    row.direct_ops, row.direct_bytes = Counter.delta(before, self.counter.snapshot())
            if chosen("lim_noproxy"):
                async with self.client(via_proxy=False) as client:
                    row = self.rows["lim_noproxy"]
                    row.direct = (await direct.get_single(client, SIZES))[0]
            for key in ("seq_warm", "seq_warm_remount", "seq_warm_ram", "seq_cold_dio", "seq_warm_dio"):
                self.rows[key].direct = self.rows["seq_cold"].direct
            self.rows["rand4k_warm"].direct = self.rows["rand4k"].direct

        asyncio.run(run())
        self.checker(lambda c: direct.delete_prefix(c, direct.DIRECT))

    def disk_limit(self) -> None:
        """How fast the disk gives back the block cache's files, read in parallel as the warm read does: the
        ceiling of a warm read once the page cache is dropped."""
        row = self.rows["lim_disk"]
        files = list(self.mount.cache.rglob("*.val"))
        drop_caches()

        def read_whole(path: Path) -> int:
            with open(path, "rb", buffering=0) as handle:
                return len(handle.read())

        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            total = sum(pool.map(read_whole, files))
        row.direct = total / 1e6 / (time.perf_counter() - start) if total else None

    def run_memfs(self) -> None:
        """The warm-read yardstick: bench/memfs.py serves a file of the same size from memory."""
        row = self.rows["lim_memfs"]
        warn(row.label)
        point = WORK / "mnt" / "memfs"
        point.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "memfs.log", "ab") as log:
            process = subprocess.Popen([sys.executable, str(HERE / "memfs.py"), str(point), str(SIZES.big_mib)],
                                       stdout=log, stderr=log, start_new_session=True)
        record_pid(process.pid)
        try:
            for _ in range(100):
                if mount_device(point) is not None or process.poll() is not None:
                    break
                time.sleep(0.1)
            device = mount_device(point)
            if device is None:
                row.direct_error = "bench/memfs.py did not mount (see logs/memfs.log)"
                return
            from s3fuse.daemon import READ_AHEAD_KB

            knob = Path(f"/sys/class/bdi/{device}/read_ahead_kb")
            for _ in range(50):  # memfs raises its read-ahead once the kernel's INIT is answered
                if knob.read_text().strip() == str(READ_AHEAD_KB):
                    break
                time.sleep(0.1)
            best: dict[str, Any] = {}
            for _ in range(2):
                drop_caches()
                result = run_workload("memread", point, lambda: None)
                if "error" in result:
                    row.direct_error = result["error"]
                    return
                best = max(best, result, key=lambda figures: figures.get("value", 0))
            row.direct = best["value"]
            row.extra["direct_cpu_s_per_gib"] = best["cpu_s_per_gib"]
        finally:
            subprocess.run(["fusermount3", "-u", str(point)], capture_output=True, check=False)
            stop(process)

    # -- s3fuse --------------------------------------------------------------------------------------------

    def fs_step(self, key: str, workload: str) -> dict[str, Any]:
        """Run one fsload workload on the mount, with its requests counted; errors land in the row."""
        row = self.rows[key]
        warn(f"s3fuse: {row.label}")
        if not self.mount.mounted():
            row.s3fuse_error = "mount gone"
            return {}
        before = self.counter.snapshot()
        result = run_workload(workload, self.mount.point, self.mount.abort)
        row.s3fuse_ops, row.s3fuse_bytes = Counter.delta(before, self.counter.snapshot())
        if "error" in result:
            row.s3fuse_error = result["error"]
        else:
            row.s3fuse = result["value"]
            row.extra |= {k: v for k, v in result.items() if k not in ("value", "unit")}
        return result

    def cached_step(self, key: str, workload: str) -> dict[str, Any]:
        """A workload on the big object once it is in the block cache: read through once (not measured), page
        cache dropped, then measured."""
        filled = run_workload("seqread", self.mount.point, self.mount.abort)
        drop_caches()
        if "error" in filled:
            self.rows[key].s3fuse_error = f"filling the cache: {filled['error']}"
            return filled
        return self.fs_step(key, workload)

    def group(self, keys: list[str], body: Callable[[], None]) -> None:
        """A run of steps on one mount; a failed mount (or harness step) marks the steps that did not run."""
        try:
            body()
        except Exception as exc:  # the report must still come out; the message says what failed
            message = str(exc) if isinstance(exc, MountError) else f"{type(exc).__name__}: {exc}"[:200]
            warn(message)
            for key in keys:
                if self.rows[key].s3fuse is None and not self.rows[key].s3fuse_error:
                    self.rows[key].s3fuse_error = message

    def write_step(self, key: str, close_key: str) -> None:
        result = self.fs_step(key, "write")
        row = self.rows[key]
        if "error" not in result:
            self.rows[close_key].s3fuse = result["close_s"]
            verdict = self.checker(lambda c: direct.verify_written(c, f"{SCRATCH}big-written", SIZES.write_mib))
            row.note = f"write phase {result['write_phase_mbs']:.0f} MB/s; in bucket after close: {verdict}"
        else:
            self.rows[close_key].s3fuse_error = row.s3fuse_error
        self.checker(lambda c: direct.delete_prefix(c, SCRATCH))

    def run_s3fuse(self) -> None:
        streaming = {"alluxio.underfs.s3.streaming.upload.enabled": "true"}

        def reads() -> None:
            self.mount.mount(empty_cache=True)
            self.fs_step("seq_cold", "seqread")
            drop_caches()
            self.fs_step("seq_warm", "seqread")
            self.rows["rss"].s3fuse = self.mount.peak_rss_mib()
            self.disk_limit()
            self.mount.mount()
            self.fs_step("seq_warm_remount", "seqread")
            # the same warm read with the block cache's files in RAM: what the software does when the cache's
            # storage is not the limit (this VM's disk gives its files back at lim_disk)
            ram = Path(tempfile.mkdtemp(prefix="s3fuse-bench-cache.", dir=RAM_DIR))
            try:
                self.mount.mount({"alluxio.user.client.cache.dirs": str(ram)})
                self.cached_step("seq_warm_ram", "seqread")
                self.mount.unmount()
            finally:
                shutil.rmtree(ram, ignore_errors=True)
            # the same reads past the page cache: on this VM a fresh page of it costs more than its bytes' GET
            self.mount.mount({"alluxio.fuse.direct.io.enabled": "true"}, empty_cache=True)
            self.fs_step("seq_cold_dio", "seqread")
            drop_caches()
            self.fs_step("seq_warm_dio", "seqread")

        def random_reads() -> None:
            self.mount.mount(empty_cache=True)
            self.fs_step("rand4k", "randread")
            self.cached_step("rand4k_warm", "randread")

        def metadata() -> None:
            self.mount.mount()
            self.fs_step("ls", "ls")
            self.fs_step("find", "find")
            self.fs_step("small_read", "smallread")
            if "error" not in self.fs_step("small_create", "smallcreate"):
                self.fs_step("small_readback", "smallreadback")
            else:
                self.rows["small_readback"].s3fuse_error = "nothing created"
            self.checker(lambda c: direct.delete_prefix(c, SCRATCH))
            self.write_step("write_default", "close_default")

        def streaming_write() -> None:
            self.mount.mount(streaming)
            self.write_step("write_stream", "close_stream")

        def rename() -> None:
            self.checker(lambda c: direct.seed_rename(c, REN_PREFIX, SIZES.n_ren))
            self.mount.mount()
            self.fs_step("rename", "rename")

        bodies = {"reads": reads, "random": random_reads, "metadata": metadata, "streaming": streaming_write,
                  "rename": rename}
        try:
            for name, keys in GROUPS.items():
                if name in CHOSEN:
                    self.group(keys, bodies[name])
        finally:
            self.mount.unmount()


# ------------------------------------------------------------------------------------------------ peers


def run_peers(logs: Path) -> dict[str, Any]:
    """../shared/bench/run.sh with our mount helper as its `project` target; returns its table and results."""
    shared = Path(os.environ.get("SHARED_BENCH", str(REPO.parent / "shared" / "bench")))
    base = Path(os.environ.get("PEERS_BASE", "/tmp/s3fuse-bench-peers"))
    base.mkdir(parents=True, exist_ok=True)
    cache = WORK / "peers-cache"
    options = ",".join([
        "alluxio.underfs.s3.endpoint={endpoint}", "alluxio.underfs.s3.disable.dns.buckets=true",
        "aws.accessKeyId={access_key}", "aws.secretKey={secret_key}",
        f"alluxio.user.client.cache.dirs={cache}", "alluxio.user.client.cache.size=4GB",
        f"alluxio.tmp.dirs={WORK / 'tmp'}", "alluxio.master.web.port=0"])
    # cold = empty block cache, as the shared harness wipes rclone's cache before each cold mount
    command = (f"rm -rf {cache}; S3FUSE_LOG_DIR={logs} S3FUSE_CONF_DIR={WORK / 'conf'} "
               f"{VENV_BIN / 'mount.alluxio-s3'} s3://{{bucket}}/ {{mnt}} -o {options}")
    for stale in ("last_table.txt", "last_results.jsonl"):
        (base / stale).unlink(missing_ok=True)
    env = dict(os.environ, BENCH_BASE=str(base), PROJECT_MOUNT_CMD=command, BACKEND=BACKEND,
               BIG_MIB=os.environ.get("PEERS_BIG_MIB", str(SIZES.big_mib)))
    # its RGW starts ceph-mgr unless told not to, and our setup installs Ceph without it (S3 needs none)
    env.setdefault("WITH_MGR", "1" if shutil.which("ceph-mgr") else "0")
    targets = os.environ.get("PEERS_TARGETS", "direct s3fs rclone-full project").split()
    warn(f"peers: {shared / 'run.sh'} {' '.join(targets)} (log: {logs / 'peers.log'})")
    with open(logs / "peers.log", "ab") as log:
        done = subprocess.run(["bash", str(shared / "run.sh"), *targets], env=env, stdout=log, stderr=log,
                              check=False)
    table = (base / "last_table.txt").read_text() if (base / "last_table.txt").exists() else ""
    results: dict[str, dict[str, Any]] = {}
    if (base / "last_results.jsonl").exists():
        for line in (base / "last_results.jsonl").read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                results.setdefault(record["metric"], {})[record["target"]] = record["value"]
    if not table:
        table = f"(the shared harness exited {done.returncode} without a table; see {logs / 'peers.log'})\n"
    return {"table": table, "results": results, "targets": targets, "exit": done.returncode}


# ------------------------------------------------------------------------------------------------ main


def describe_run(server: Any) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, check=False)
        return done.stdout.decode().strip()

    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "source": str(SOURCE),
        "commit": git("rev-parse", "--short", "HEAD") + (" (dirty)" if git("status", "--porcelain", "s3fuse") else ""),
        "backend": getattr(server, "name", BACKEND), "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0], "kernel": os.uname().release, "sizes": SIZES.as_dict(),
        "step_timeout": STEP_TIMEOUT,
    }


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    peers = "--peers" in sys.argv[1:]
    logs = RESULTS / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    started = time.perf_counter()
    with backend(logs) as server, counting_proxy(server.endpoint, logs) as endpoint:
        bench = Bench(server, endpoint, logs)
        meta = describe_run(server)
        warn(f"backend {meta['backend']} at {server.endpoint}, counting proxy at {endpoint}; seeding "
             f"{SIZES.big_mib} MiB + {SIZES.n_ls + SIZES.n_dirs * SIZES.n_per_dir + SIZES.n_small} small objects")
        seeded = time.perf_counter()
        bench.checker(lambda c: direct.seed(c, SIZES))
        meta["seed_s"] = round(time.perf_counter() - seeded, 1)
        if os.environ.get("ONLY") != "s3fuse":
            bench.run_direct()
            if chosen("lim_memfs"):
                bench.run_memfs()
        if os.environ.get("ONLY") != "direct":
            bench.run_s3fuse()
        meta["mount_options"] = {k: v for k, v in bench.mount.options.items() if "secret" not in k.lower()}
    peer_data = run_peers(logs) if peers else None
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    text = report.write(RESULTS, meta, [asdict(row) for row in bench.rows.values()], peer_data)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
