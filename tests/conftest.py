"""Fixtures shared by the suites: S3 servers (started once per session), a fresh bucket per test, and real
FUSE mounts of s3fuse that are always unmounted, even when a test fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from s3fuse.embedded import LocalS3, clean_aws_environment, moto_server
from tests.support.proxy import Proxy, running_proxy

# The machine may export AWS_* (a CA bundle for other hosts, keys): tests set exactly what they rely on.
for name in [n for n in os.environ if n.startswith("AWS_")] + ["REQUESTS_CA_BUNDLE"]:
    os.environ.pop(name, None)

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with moto_server(log_path=str(log)) as server:
        yield server


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """Ceph RADOS Gateway, a real S3 implementation, started once per session (about 3 s)."""
    from s3fuse.rgw import rgw_server

    with rgw_server(str(tmp_path_factory.mktemp("rgw"))) as server:
        yield server


def external_server() -> LocalS3 | None:
    """A user's own S3 (AWS, MinIO, ...) from S3FUSE_TEST_ENDPOINT and friends, instead of the local servers."""
    endpoint = os.environ.get("S3FUSE_TEST_ENDPOINT")
    if not endpoint:
        return None
    return LocalS3(endpoint, os.environ["S3FUSE_TEST_ACCESS_KEY"], os.environ["S3FUSE_TEST_SECRET_KEY"],
                   os.environ.get("S3FUSE_TEST_REGION", "us-east-1"), name="external")


BACKENDS = ["external"] if os.environ.get("S3FUSE_TEST_ENDPOINT") else os.environ.get(
    "S3FUSE_TEST_BACKENDS", "moto,rgw").split(",")


@pytest.fixture(scope="session", params=BACKENDS)
def s3_server(request: pytest.FixtureRequest) -> LocalS3:
    """Every integration test runs against each backend: moto (a mock) and Ceph RGW (a real server)."""
    chosen = external_server() if request.param == "external" else request.getfixturevalue(request.param)
    assert isinstance(chosen, LocalS3)
    return chosen


@pytest.fixture
def bucket(s3_server: LocalS3) -> Iterator[str]:
    """A fresh bucket per test (on a user's own endpoint the credentials need s3:CreateBucket)."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    where = {} if s3_server.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": s3_server.region}}
    s3_server.client().create_bucket(Bucket=name, **where)
    yield name


@dataclass
class Mounted:
    """A live s3fuse mount: `path` to use it, `server`/`bucket` to check it with a direct client."""

    path: Path
    process: subprocess.Popen[bytes]
    log: Path
    server: LocalS3
    bucket: str
    options: list[str] = field(default_factory=list)
    proxy: Proxy | None = None  # when mounted through a recording proxy
    cache: Path | None = None
    staging: Path | None = None

    def client(self) -> Any:
        return self.server.client()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def unmount(self) -> int:
        """Unmount and return the daemon's exit status."""
        if self.process.poll() is not None:  # died (or was killed): a stale mount may be left
            subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        elif os.path.ismount(self.path):
            result = subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True, text=True)
            if result.returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9


MountFactory = Callable[..., Mounted]


def wait_mounted(path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.ismount(path):
        if process.poll() is not None:
            raise RuntimeError(f"s3fuse exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"s3fuse did not mount within {timeout}s:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    os.statvfs(path)  # answered by the daemon's loop (a stat may be the kernel's): its setup is done


@pytest.fixture(scope="session")
def public_dir() -> Iterator[Path]:
    """Mount points live here, not under pytest's 0700 temp root, so other local users can reach them."""
    path = Path(tempfile.mkdtemp(prefix="s3fuse-mnt-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mount_factory(tmp_path: Path, s3_server: LocalS3, bucket: str, public_dir: Path) -> Iterator[MountFactory]:
    """mount(options..., server=, bucket=, prefix=, args=) -> Mounted; runs `s3fuse mount -f` in a child."""
    mounts: list[Mounted] = []
    stack = contextlib.ExitStack()

    def mount(*options: str, server: LocalS3 | None = None, bucket_name: str | None = None, prefix: str = "",
              args: tuple[str, ...] = (), env: dict[str, str] | None = None, via_proxy: bool = False,
              cache_of: Mounted | None = None, at: Path | None = None) -> Mounted:
        """`cache_of`: reuse an earlier mount's cache and staging directories (block cache, metadata overlay,
        recovery folder); `at`: mount at this path (e.g. where a crashed mount was)."""
        server = server or s3_server
        name = bucket_name or bucket
        proxy = stack.enter_context(running_proxy(server.endpoint)) if via_proxy else None
        if proxy is not None:
            options = (f"alluxio.underfs.s3.endpoint={proxy.endpoint}", *options)
        index = len(mounts)
        path = at or Path(tempfile.mkdtemp(prefix=f"mnt{index}-", dir=public_dir))
        if at is None:
            path.chmod(0o755)
        cache = cache_of.cache if cache_of is not None else tmp_path / f"cache{index}"
        log = tmp_path / f"s3fuse{index}.log"
        staging = cache_of.staging if cache_of is not None else tmp_path / f"staging{index}"
        all_options = [*server.mount_options(), f"alluxio.user.client.cache.dirs={cache}",
                       f"alluxio.tmp.dirs={staging}", "alluxio.master.web.port=0", *options]
        command = [str(BIN / "s3fuse"), "mount", "-f", *args]
        for option in all_options:
            command += ["--option", option]
        command += [str(path), f"s3://{name}/{prefix}"]
        with log.open("wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                       env=clean_aws_environment({"S3FUSE_CONF_DIR": str(tmp_path / "noconf"),
                                                                  **(env or {})}))
        mounted = Mounted(path, process, log, server, name, list(all_options), proxy, cache, staging)
        mounts.append(mounted)
        wait_mounted(path, process, log)
        return mounted

    with stack:
        yield mount
        for mounted in mounts:
            mounted.unmount()


@pytest.fixture
def mounted(mount_factory: MountFactory) -> Mounted:
    return mount_factory()
