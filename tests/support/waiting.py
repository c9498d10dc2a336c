"""Waiting in tests for what a daemon or a background thread does by itself."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "condition") -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` once `timeout` seconds passed without it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def open_files(port: int) -> float:
    """The files a daemon has open, from its status page's metrics (`alluxio.master.web.port`): the kernel
    releases a file after close() returned, and until then the daemon still holds it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        found = re.search(r"^s3fuse_open_files (\S+)$", reply.read().decode(), re.MULTILINE)
    assert found is not None, "no s3fuse_open_files metric"
    return float(found.group(1))
