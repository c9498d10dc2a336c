"""systemd's readiness protocol (sd_notify) without libsystemd: one datagram to `$NOTIFY_SOCKET`.

A `Type=notify` unit starts `s3fuse mount --foreground`; the daemon sends `READY=1` once the mount answers,
`STOPPING=1` when it starts a clean stop, and `STATUS=...` lines that `systemctl status` shows. Outside systemd
(no `$NOTIFY_SOCKET`) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*states: str) -> bool:
    """Send `states` (e.g. "READY=1", "STATUS=mounted") to the service manager; whether it was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True
