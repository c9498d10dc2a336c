"""A recording HTTP proxy for the connection and identity tests.

s3fuse uses it as its HTTP proxy (`alluxio.underfs.s3.proxy.host/port`: request lines carry absolute URLs) or as
its endpoint. Every request goes to one upstream server whatever host the URL names, so the endpoint can be a
name that resolves nowhere: a request that bypassed the proxy would fail. The Host header is kept, so signatures
stay valid. It records each request's URL shape and operation, counts how many requests of each operation are
in flight at once, and a rule can hold a request (to let concurrency build up), stall it, trickle its answer,
or answer it itself.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "transfer-encoding", "te",
               "trailer", "upgrade", "expect"}


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    target: str  # the request line's target: an absolute URL when the client used us as its proxy
    host: str  # the Host header
    path: str  # as sent (virtual-host style has no bucket in it)
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    operation: str


def operation_of(method: str, bucket_path: str, query: dict[str, list[str]], headers: dict[str, str]) -> str:
    """The S3 operation of a request, given its path in path style (`/bucket/key`)."""
    parts = bucket_path.lstrip("/").split("/", 1)
    bucket = parts[0]
    has_key = len(parts) == 2 and parts[1] != ""
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method} /"
    if method == "GET":
        if "acl" in query:
            return "GetObjectAcl" if has_key else "GetBucketAcl"
        if has_key:
            return "GetObject"
        if "list-type" in query:
            return "ListObjectsV2"
        return "ListMultipartUploads" if "uploads" in query else "ListObjects"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "PUT":
        if "acl" in query:
            return "PutObjectAcl" if has_key else "PutBucketAcl"
        if "partNumber" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if not has_key:
            return "CreateBucket"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "delete" in query:
            return "DeleteObjects"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "DeleteBucket"
    return f"{method}?"


# What a rule tells the proxy to do with one request (None: forward it at once).
@dataclass(frozen=True)
class Answer:
    """Answer locally, never reaching the upstream server."""

    status: int
    body: bytes = b""
    content_type: str = "application/xml"


@dataclass(frozen=True)
class Hold:
    """Forward after `seconds`: concurrent requests overlap in the proxy, so a limit shows as a peak."""

    seconds: float


@dataclass(frozen=True)
class Stall:
    """Read the request, never answer (until the proxy closes)."""


@dataclass(frozen=True)
class Trickle:
    """Forward, then send the answer's headers and its body one byte every `interval` seconds: the socket is
    never idle for long, so only a deadline on the whole request stops it."""

    interval: float


Action = Answer | Hold | Stall | Trickle
Rule = Callable[[Seen], "Action | None"]


@dataclass
class RecordingProxy:
    upstream: str
    bucket: str = ""  # to name operations of virtual-host-style requests
    rule: Rule | None = None
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    peak_total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    def operations(self) -> list[str]:
        with self.lock:
            return [seen.operation for seen in self.seen]

    def count(self, operation: str) -> int:
        return self.operations().count(operation)

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.peak.clear()
            self.peak_total = 0

    def classify(self, method: str, host: str, path: str, query: dict[str, list[str]],
                 headers: dict[str, str]) -> str:
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.bucket and hostname.startswith(f"{self.bucket}."):  # virtual-host style
            path = f"/{self.bucket}{path}"
        return operation_of(method, urllib.parse.unquote(path), query, headers)

    def enter(self, operation: str) -> None:
        with self.lock:
            self.in_flight[operation] += 1
            self.peak[operation] = max(self.peak[operation], self.in_flight[operation])
            self.peak_total = max(self.peak_total, sum(self.in_flight.values()))

    def leave(self, operation: str) -> None:
        with self.lock:
            self.in_flight[operation] -= 1


def handler_for(proxy: RecordingProxy) -> type[http.server.BaseHTTPRequestHandler]:
    upstream = urllib.parse.urlsplit(proxy.upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def relay(self) -> None:
            target = urllib.parse.urlsplit(self.path)
            path_query = target.path + (f"?{target.query}" if target.query else "")
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            host = headers.get("host", target.netloc)
            query = urllib.parse.parse_qs(target.query, keep_blank_values=True)
            seen = Seen(self.command, self.path, host, target.path, query, headers,
                        proxy.classify(self.command, host, target.path, query, headers))
            with proxy.lock:
                proxy.seen.append(seen)
            proxy.enter(seen.operation)
            try:
                self.answer(seen, path_query, body)
            finally:
                proxy.leave(seen.operation)

        def answer(self, seen: Seen, path_query: str, body: bytes) -> None:
            action = proxy.rule(seen) if proxy.rule else None
            if isinstance(action, Stall):
                proxy.closing.wait(600)
                self.close_connection = True
                return
            if isinstance(action, Answer):
                self.send_response(action.status)
                self.send_header("Content-Type", action.content_type)
                self.send_header("Content-Length", str(len(action.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(action.body)
                return
            if isinstance(action, Hold):
                proxy.closing.wait(action.seconds)
            status, reason, reply_headers, payload = self.forward(path_query, body)
            self.send_response(status, reason)
            for name, value in reply_headers:
                if name.lower() not in HOP_HEADERS and name.lower() != "content-length":
                    self.send_header(name, value)
            declared = dict((k.lower(), v) for k, v in reply_headers).get("content-length", "0")
            self.send_header("Content-Length", declared if self.command == "HEAD" else str(len(payload)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if isinstance(action, Trickle):
                for offset in range(len(payload)):
                    if proxy.closing.wait(action.interval):
                        self.close_connection = True
                        return
                    try:
                        self.wfile.write(payload[offset:offset + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up: what the test waits for
                        self.close_connection = True
                        return
            else:
                self.wfile.write(payload)

        def forward(self, path_query: str, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                connection.request(self.command, path_query, body=body, headers=headers)
                reply = connection.getresponse()
                payload = reply.read()
                return reply.status, reply.reason, reply.getheaders(), payload
            finally:
                connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay

    return Handler


@contextmanager
def recording_proxy(upstream: str, bucket: str = "", rule: Rule | None = None) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(upstream, bucket, rule)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(proxy))
    server.daemon_threads = True
    proxy.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.closing.set()
        server.shutdown()
        server.server_close()
