"""The daemon's control socket: `s3fuse fs mount/unmount` talk to the daemon that owns a mount through a unix
socket only root can open (mode 0600 in a 0700 directory, and the peer's uid checked). One JSON request line,
one JSON answer line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger(__name__)

SOCKET_DIR = Path(os.environ.get("S3FUSE_RUN_DIR", "/run/s3fuse"))
MAX_REQUEST = 1 << 20

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(mountpoint: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.abspath(mountpoint).strip("/")) or "root"
    return SOCKET_DIR / f"{name}.sock"


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


async def serve(mountpoint: str, handler: Handler, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen until cancelled; the socket file is removed on the way out."""
    path = socket_path(mountpoint)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await listener.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(8)
    task_status.started(path)
    try:
        async with trio.open_nursery() as nursery:
            while True:
                connection, _ = await listener.accept()
                nursery.start_soon(answer, connection, handler)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def answer(connection: trio.socket.SocketType, handler: Handler) -> None:
    with connection:
        uid = peer_uid(connection)  # type: ignore[arg-type]
        if uid not in (0, os.getuid()):
            await send(connection, {"error": "only root may change the mount table"})
            return
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
            chunk = await connection.recv(65536)
            if not chunk:
                break
            data += chunk
        try:
            request = json.loads(data)
            reply = await handler(request)
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": f"bad request: {exc}"}
        except OSError as exc:
            reply = {"error": exc.strerror or str(exc)}
        await send(connection, reply)


async def send(connection: trio.socket.SocketType, reply: dict[str, Any]) -> None:
    payload = (json.dumps(reply) + "\n").encode()
    while payload:
        sent = await connection.send(payload)
        payload = payload[sent:]


def call(mountpoint: str, request: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """A blocking request to the daemon of `mountpoint` (for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path(mountpoint)))
        sock.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def running_mountpoints() -> list[str]:
    """Mount points of the s3fuse daemons that have a control socket, from /proc/mounts."""
    found = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "fuse.alluxio-s3":
                point = fields[1].encode().decode("unicode_escape")
                if socket_path(point).exists():
                    found.append(point)
    return found


def owning_mount(path: str) -> tuple[str, str]:
    """The s3fuse mount point that contains `path` (which need not exist yet), and `path` relative to it."""
    absolute = os.path.abspath(path)
    for point in sorted(running_mountpoints(), key=len, reverse=True):
        if absolute == point or absolute.startswith(point.rstrip("/") + "/"):
            return point, absolute[len(point):].strip("/")
    raise OSError(2, f"{path} is not inside a running s3fuse mount")
