"""A tiny HTTP/1.1 server on the daemon's trio loop: the status page, `/metrics`, and two JSON documents.

One request per connection (`Connection: close`), GET and HEAD only, bounded request size and time: enough
for a browser, Prometheus and curl, and nothing a FUSE request ever waits on. A failure to bind (the port is
taken) is one warning; the mount goes on without the page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST

from s3fuse.metrics import Metrics
from s3fuse.web import page
from s3fuse.web.status import Status

log = logging.getLogger(__name__)

MAX_REQUEST = 16 << 10
REQUEST_TIMEOUT = 10.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes


@dataclass
class StatusApp:
    """Routes a request path to a response; `snapshot` builds the page's data from the daemon's layers."""

    snapshot: Callable[[], Status]
    metrics: Metrics
    uploads: Callable[[], list[dict[str, Any]]]

    def respond(self, path: str) -> Response:
        path = path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            return Response(200, "text/html; charset=utf-8", page.render(self.snapshot()).encode())
        if path == "/metrics":
            return Response(200, CONTENT_TYPE_LATEST, self.metrics.exposition())
        if path == "/api/status":
            return Response(200, "application/json", page.as_json(self.snapshot()))
        if path == "/api/uploads":
            return Response(200, "application/json", json.dumps(self.uploads()).encode())
        return Response(404, "text/plain; charset=utf-8", b"not found: try / or /metrics\n")

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One connection; never raises (a broken client must not take the daemon down)."""
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                request = await read_request(stream)
                if request is None:
                    return
                method, path = request
                if method not in ("GET", "HEAD"):
                    response = Response(405, "text/plain; charset=utf-8", b"GET or HEAD only\n")
                else:
                    try:
                        response = self.respond(path)
                    except Exception:
                        log.exception("status page: internal error answering %s", path)
                        response = Response(500, "text/plain; charset=utf-8", b"internal error; see the log\n")
                await stream.send_all(encode(response, head=method == "HEAD"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            log.exception("status page: connection failed")
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    await stream.aclose()


async def read_request(stream: trio.abc.Stream) -> tuple[str, str] | None:
    """(method, path) of the request line, once the whole header has arrived; None for garbage."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_REQUEST:
            return None
    parts = data.split(b"\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    return parts[0], parts[1]


def encode(response: Response, head: bool = False) -> bytes:
    header = (f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
              f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
    return header.encode() + (b"" if head else response.body)


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Listeners for the status server; none when the port is 0 (off) or cannot be bound (one warning)."""
    if port == 0:
        return []
    try:
        return await trio.open_tcp_listeners(port, host=host or "127.0.0.1")
    except OSError as exc:
        log.warning("status page: cannot listen on %s:%d (%s): going on without the status page and /metrics "
                    "(set alluxio.master.web.port to a free port, or 0 to turn it off)", host, port, exc.strerror)
        return []


def address(listeners: list[trio.SocketListener]) -> str:
    host, port = listeners[0].socket.getsockname()[:2]
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}/"


async def serve(app: StatusApp, listeners: list[trio.SocketListener]) -> None:
    log.info("status page at %s (metrics at %smetrics)", address(listeners), address(listeners))
    await trio.serve_listeners(app.handle, listeners)


def fetch_uploads(host: str, port: int, timeout: float = 3.0) -> list[dict[str, Any]] | None:
    """The multipart uploads a running daemon has in flight, asked over its status server; None when no
    daemon answers there."""
    if port == 0:
        return None
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/api/uploads"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            data = json.loads(reply.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return data if isinstance(data, list) else None
