"""A loopback reverse proxy that counts S3 requests by operation, so request counts come from the wire.

Why a proxy: it works for any backend (moto, RGW) and any client, and needs nothing from s3fuse's internals.
Requests are framed (headers, then Content-Length or chunked body) to count each one on a keep-alive
connection; bodies and every response are moved with splice(2) (socket -> pipe -> socket, no copy through
Python), so the hop costs little CPU next to the mount and the server on a 2-core box.

    python bench/countproxy.py LISTEN_PORT UPSTREAM_PORT
    curl http://127.0.0.1:LISTEN_PORT/__bench__/counts     -> {"ops": {"GET range": 12, ...}, "up": N, "down": N}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
from collections import Counter
from urllib.parse import parse_qs, urlsplit

CONTROL = "/__bench__/counts"
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: Counter[str] = Counter()
        self.up = 0     # request body bytes
        self.down = 0   # response bytes (headers included)

    def add(self, op: str) -> None:
        with self.lock:
            self.ops[op] += 1

    def moved(self, up: int = 0, down: int = 0) -> None:
        with self.lock:
            self.up += up
            self.down += down

    def snapshot(self) -> bytes:
        with self.lock:
            return json.dumps({"ops": dict(self.ops), "up": self.up, "down": self.down}).encode()


STATS = Stats()


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """The S3 operation of a request, named the way the report prints it."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    path = parts.path.strip("/")
    bucket_only = "/" not in path
    if method == "GET":
        if "list-type" in query or (bucket_only and not query):
            return "LIST"
        if bucket_only or "acl" in query or "location" in query:
            return "GET bucket-meta"
        if "uploads" in query:
            return "LIST uploads"
        return "GET range" if "range" in headers else "GET"
    if method == "HEAD":
        return "HEAD bucket" if bucket_only else "HEAD"
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return "COPY part" if "partNumber" in query else "COPY"
        if "partNumber" in query:
            return "PUT part"
        return "PUT bucket" if bucket_only else "PUT"
    if method == "POST":
        if "delete" in query:
            return "DELETE multi"
        if "uploads" in query:
            return "MPU create"
        if "uploadId" in query:
            return "MPU complete"
    if method == "DELETE":
        return "MPU abort" if "uploadId" in query else "DELETE"
    return method


def new_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # a smaller pipe only means more splice calls
        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


def pump(src: socket.socket, dst: socket.socket, pipe: tuple[int, int], limit: int | None, up: bool) -> int:
    """Move `limit` bytes (None: until EOF) from src to dst through the pipe, counting as they go (connections
    are kept alive, so a count taken at close would miss a snapshot); returns the bytes moved."""
    read_end, write_end = pipe
    moved = 0
    while limit is None or moved < limit:
        want = PIPE_SIZE if limit is None else min(PIPE_SIZE, limit - moved)
        got = os.splice(src.fileno(), write_end, want)
        if got == 0:
            break
        left = got
        while left:
            left -= os.splice(read_end, dst.fileno(), left)
        moved += got
        STATS.moved(up=got) if up else STATS.moved(down=got)
    return moved


class Connection:
    """One client connection and its upstream connection; two threads, one per direction."""

    def __init__(self, client: socket.socket, upstream_port: int) -> None:
        self.client = client
        self.upstream = socket.create_connection(("127.0.0.1", upstream_port))
        for sock in (self.client, self.upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()
        self.open_directions = 2

    def finished(self) -> None:
        """Close both sockets once both directions are done."""
        with self.lock:
            self.open_directions -= 1
            if self.open_directions:
                return
        self.client.close()
        self.upstream.close()

    def start(self) -> None:
        threading.Thread(target=self.responses, daemon=True).start()
        threading.Thread(target=self.requests, daemon=True).start()

    def responses(self) -> None:
        pipe = new_pipe()
        try:
            pump(self.upstream, self.client, pipe, None, up=False)
        except OSError:
            pass
        finally:
            os.close(pipe[0])
            os.close(pipe[1])
            with_shutdown(self.client)
            self.finished()

    def requests(self) -> None:
        pipe = new_pipe()
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    more = self.client.recv(65536)
                    if not more:
                        return
                    buffer += more
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = [*lines[0].split(" "), "", ""][:2]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if target.startswith(CONTROL):
                    body = STATS.snapshot()
                    self.client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                        + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                    return
                STATS.add(classify(method, target, headers))
                self.upstream.sendall(head + b"\r\n\r\n")
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    buffer = self.chunked(buffer)
                else:
                    length = int(headers.get("content-length", "0") or 0)
                    early = buffer[:length]
                    buffer = buffer[length:]
                    self.upstream.sendall(early)
                    STATS.moved(up=len(early))
                    if length > len(early):
                        pump(self.client, self.upstream, pipe, length - len(early), up=True)
        except OSError:
            pass
        finally:
            os.close(pipe[0])
            os.close(pipe[1])
            with_shutdown(self.upstream)
            self.finished()

    def chunked(self, buffer: bytes) -> bytes:
        """Forward a chunked body as it comes (rare: only bodies of unknown length); returns what follows."""
        def need(count: int) -> None:
            nonlocal buffer
            while len(buffer) < count:
                more = self.client.recv(65536)
                if not more:
                    raise OSError("client closed inside a chunked body")
                buffer += more

        while True:
            while b"\r\n" not in buffer:
                need(len(buffer) + 1)
            size_line, _, rest = buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            buffer = rest
            if size == 0:  # optional trailer lines, then an empty line
                while not (buffer.startswith(b"\r\n") or b"\r\n\r\n" in buffer):
                    need(len(buffer) + 1)
                end = 2 if buffer.startswith(b"\r\n") else buffer.index(b"\r\n\r\n") + 4
                self.upstream.sendall(size_line + b"\r\n" + buffer[:end])
                return buffer[end:]
            need(size + 2)
            self.upstream.sendall(size_line + b"\r\n" + buffer[:size + 2])
            STATS.moved(up=size)
            buffer = buffer[size + 2:]


def with_shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def serve(listen_port: int, upstream_port: int) -> None:
    server = socket.create_server(("127.0.0.1", listen_port), backlog=128)
    while True:
        client, _ = server.accept()
        try:
            Connection(client, upstream_port).start()
        except OSError:
            client.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
