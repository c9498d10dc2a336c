"""Waiting in tests for what a daemon or a background thread does by itself."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "condition") -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` once `timeout` seconds passed without it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)
