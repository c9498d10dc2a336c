"""A recording, fault-injecting HTTP proxy for tests: s3fuse talks to it as its endpoint (or as its HTTP proxy),
it forwards to the real server and remembers every request, so a test can count what s3fuse sent (no HEAD per
entry, no mutating call on a readonly mount) and inject faults between the two."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    @property
    def operation(self) -> str:
        """The S3 operation a path-style request stands for (enough for counting in tests)."""
        q = self.query
        parts = self.path.lstrip("/").split("/", 1)
        has_key = len(parts) == 2 and parts[1] != ""
        if self.method == "GET":
            if "list-type" in q:
                return "ListObjectsV2"
            if "acl" in q:
                return "GetObjectAcl" if has_key else "GetBucketAcl"
            if "uploads" in q:
                return "ListMultipartUploads"
            return "GetObject" if has_key else "ListObjects"
        if self.method == "HEAD":
            return "HeadObject" if has_key else "HeadBucket"
        if self.method == "PUT":
            if "partNumber" in q:
                return "UploadPartCopy" if "x-amz-copy-source" in self.headers else "UploadPart"
            return "CopyObject" if "x-amz-copy-source" in self.headers else "PutObject"
        if self.method == "POST":
            if "uploads" in q:
                return "CreateMultipartUpload"
            if "uploadId" in q:
                return "CompleteMultipartUpload"
            if "delete" in q:
                return "DeleteObjects"
        if self.method == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
        return f"{self.method}?"


@dataclass(frozen=True)
class Mangle:
    """Damage the real answer instead of replacing it: `truncate` sends the headers (full Content-Length) and
    half the body, then drops the connection; `stall` waits `seconds` before asking the server; `late` asks at
    once and delivers the answer `seconds` later (an answer older than changes made meanwhile); `reset` drops
    the connection without answering."""

    kind: str
    seconds: float = 0.0


# A fault decides, per request: (status, body) to answer in the server's place, a Mangle, or None to relay.
Fault = Callable[[Request], "tuple[int, bytes] | Mangle | None"]


def announced(operation: str, mangle: Mangle) -> tuple[Fault, threading.Event]:
    """A fault that mangles every `operation` request, and an event set when the first one arrives: the test
    acts while that request is held."""
    arrived = threading.Event()

    def fault(request: Request) -> Mangle | None:
        if request.operation != operation:
            return None
        arrived.set()
        return mangle

    return fault, arrived


@dataclass
class Proxy:
    upstream: str
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    fault: Fault | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, operation: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.operation == operation)

    def operations(self) -> list[str]:
        with self.lock:
            return [r.operation for r in self.requests]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()


def handler_for(proxy: Proxy) -> type[http.server.BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(proxy.upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def relay(self) -> None:
            target = urllib.parse.urlsplit(self.path)  # absolute URI when used as an HTTP proxy
            path_query = target.path + (f"?{target.query}" if target.query else "")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(self.command, target.path, urllib.parse.parse_qs(target.query, keep_blank_values=True),
                              {k.lower(): v for k, v in self.headers.items()})
            with proxy.lock:
                proxy.requests.append(request)
            answer = proxy.fault(request) if proxy.fault else None
            mangle = answer if isinstance(answer, Mangle) else None
            if mangle is not None and mangle.kind == "stall":
                time.sleep(mangle.seconds)
            if mangle is not None and mangle.kind == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if answer is not None and mangle is None:
                assert isinstance(answer, tuple)
                status, payload = answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Content-Type", "application/xml")
                self.end_headers()
                self.wfile.write(payload)
                return
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                connection.request(self.command, path_query, body=body, headers=headers)
                reply = connection.getresponse()
                payload = reply.read()
                if mangle is not None and mangle.kind == "late":
                    time.sleep(mangle.seconds)
                self.send_response(reply.status, reply.reason)
                for name, value in reply.getheaders():
                    if name.lower() not in HOP_HEADERS and name.lower() != "content-length":
                        self.send_header(name, value)
                # a HEAD reply has no body but tells the object's length
                self.send_header("Content-Length", reply.getheader("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(payload)))
                self.end_headers()
                if mangle is not None and mangle.kind == "truncate":
                    self.wfile.write(payload[:len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif self.command != "HEAD":
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay

    return Handler


@contextmanager
def running_proxy(upstream: str) -> Iterator[Proxy]:
    proxy = Proxy(upstream)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(proxy))
    server.daemon_threads = True
    proxy.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
