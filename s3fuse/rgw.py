"""Ceph's RADOS Gateway on loopback: a real S3 implementation for the integration tests and benchmarks.

moto answers most calls, but only a real server shows real ETags, ACLs, multipart and ranged-read behaviour
and real speed. `scripts/rgw` does the work (installs Debian's packages, bootstraps a one-node cluster from
nothing in a directory of its own, starts the gateway, stops every daemon by pid); this module picks free
ports, runs it and hands back a `LocalS3` like `moto_server` does, so a fixture can parametrise over both.
Nothing in the filesystem imports this module.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from s3fuse.embedded import ACCESS_KEY, REGION, SECRET_KEY, LocalS3, clean_aws_environment

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "rgw"
# Below Linux's ephemeral range (32768-60999 by default): ports there can be taken by any outgoing
# connection between our check and the daemons binding them. Also clear of 9000-9100 and 19999.
PORT_LOW, PORT_HIGH = 20000, 32700
START_TIMEOUT = 600.0  # a first start may install packages; a start from nothing takes about 5 s
STOP_TIMEOUT = 120.0


def cluster_ports(base: int) -> list[int]:
    """The ports one server needs: the S3 endpoint, and base+10..base+19 for the monitor and the OSD."""
    return [base, *range(base + 10, base + 20)]


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(attempts: int = 200) -> int:
    """A base port whose whole range is free; random, so parallel test sessions rarely collide."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(PORT_LOW, PORT_HIGH - 20)
        if all(port_free(port) for port in cluster_ports(base)):
            return base
    raise RuntimeError(f"no free range of 20 ports between {PORT_LOW} and {PORT_HIGH}")


def run_script(*args: str, timeout: float, extra_env: Mapping[str, str] | None = None) -> str:
    """Runs scripts/rgw; returns its stdout, or raises with the tail of its stderr (where it explains).

    The script runs in a process group of its own, killed whole on a timeout or an interrupt: a `ceph`
    command still running would otherwise start a daemon after the caller's stop had run. The daemons
    themselves leave the group as they start, so only `scripts/rgw stop` ends those.
    """
    process = subprocess.Popen([str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=clean_aws_environment(extra_env), start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise TimeoutError(f"scripts/rgw {' '.join(args[:2])} did not finish within {timeout:g}s") from exc
        raise
    if process.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"scripts/rgw {' '.join(args[:2])} failed with exit {process.returncode}:\n{tail}")
    return stdout


@contextlib.contextmanager
def rgw_server(workdir: str | None = None, *, port: int | None = None, access_key: str = ACCESS_KEY,
               secret_key: str = SECRET_KEY, extra_env: Mapping[str, str] | None = None,
               timeout: float = START_TIMEOUT) -> Iterator[LocalS3]:
    """A fresh RGW on 127.0.0.1 with one S3 user, stopped (every daemon, by pid) when the block ends.

    `workdir` holds the cluster's data, configuration and logs (DIR/log) and is kept for inspection;
    without one a temporary directory is used and removed afterwards, unless the start failed (then the
    error names it). `extra_env` passes scripts/rgw's switches: OBJECTSTORE=bluestore, WITH_MGR=1.
    """
    directory = workdir or tempfile.mkdtemp(prefix="s3fuse-rgw-")
    port = port or free_base_port()
    started = ok = False
    try:
        try:
            output = run_script("start", directory, str(port), access_key, secret_key, timeout=timeout,
                                extra_env=extra_env)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n(logs in {directory}/log)") from exc
        started = True
        endpoint = output.strip().splitlines()[-1]
        yield LocalS3(endpoint, access_key, secret_key, region=REGION, name="rgw")
        ok = True
    finally:
        # also after a failed or timed-out start: whatever daemons it had started are stopped by pid.
        # A failure to stop is raised unless it would hide the error that ended the block.
        try:
            run_script("stop", directory, timeout=STOP_TIMEOUT)
        except (RuntimeError, TimeoutError):
            if ok:
                raise
        else:
            if workdir is None and started:
                shutil.rmtree(directory, ignore_errors=True)
