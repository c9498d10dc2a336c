"""An embedded S3 server on loopback (moto in server mode) for the demo, the tests and the benchmarks.

moto is a development dependency (`pip install -e .[dev]`); nothing in the filesystem imports this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ACCESS_KEY = "s3fuse-access"
SECRET_KEY = "s3fuse-secret-key"
REGION = "us-east-1"

SAMPLE_FILES: Mapping[str, bytes] = {
    "README.txt": b"Sample data served by s3fuse from a local S3 server.\n",
    "data/numbers.csv": b"".join(f"{n},{n * n}\n".encode() for n in range(10_000)),
    "data/nested/deeper/leaf.txt": b"a leaf three levels down\n",
    "data/nested/blob.bin": bytes(range(256)) * 8192,  # 2 MiB, crosses no block: one ranged GET
    "logs/2026/11/26/app.log": b"".join(f"line {n}\n".encode() for n in range(50_000)),
    "with space/und ünïcode.txt": b"names with spaces and unicode round-trip\n",
    "empty-dir/": b"",  # a directory marker
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_aws_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment without the machine's AWS_* settings (a CA bundle for other hosts, keys),
    so a local server is reached with exactly the settings given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "REQUESTS_CA_BUNDLE"}
    env.update(extra or {})
    return env


@dataclass
class LocalS3:
    """A running S3 server the caller can reach."""

    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    name: str = "moto"

    def client(self) -> Any:
        """A plain boto3 client: the independent view tests and the demo compare the mount with."""
        import boto3
        from botocore.config import Config as BotoConfig

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region,
                            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def mount_options(self) -> list[str]:
        return [f"alluxio.underfs.s3.endpoint={self.endpoint}", "alluxio.underfs.s3.disable.dns.buckets=true",
                f"aws.accessKeyId={self.access_key}", f"aws.secretKey={self.secret_key}",
                f"alluxio.underfs.s3.endpoint.region={self.region}"]


def wait_for(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the S3 server exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no S3 server answered at {url} within {timeout:.0f}s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def moto_server(port: int | None = None, log_path: str | None = None,
                extra_env: Mapping[str, str] | None = None) -> Iterator[LocalS3]:
    """moto in server mode on 127.0.0.1, stopped (with its children) when the block ends."""
    port = port or free_port()
    executable = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log,
                               env=clean_aws_environment(extra_env), start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/", 30, process)
        yield LocalS3(f"http://127.0.0.1:{port}")
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server process, killing it if it does not exit within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def seed(server: LocalS3, bucket: str, files: Mapping[str, bytes] = SAMPLE_FILES) -> None:
    client = server.client()
    client.create_bucket(Bucket=bucket)
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
