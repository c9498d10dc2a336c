"""Ranged GETs and PUTs on threads (s3/ranged.py) against a tiny HTTP server that answers as told."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from s3fuse.s3 import ranged

ERROR_XML = b"<?xml version='1.0'?><Error><Code>%s</Code><Message>%s</Message></Error>"


class Scripted(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[dict[str, str]]] = []
    hang_up: ClassVar[bool] = False  # close each connection after one answer, without saying so
    bodies: ClassVar[list[bytes]] = []  # what each PUT sent

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers.items()))
        status, headers, body = self.answers.pop(0)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = self.hang_up

    def do_PUT(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Scripted.answers, Scripted.seen, Scripted.hang_up, Scripted.bodies = [], [], False, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/bucket/key"
    httpd.shutdown()


def connections() -> ranged.Connections:
    return ranged.Connections(ranged.Transport(None, None, 5.0, 5.0, 10.0))


def test_a_range_arrives_in_the_buffer_and_the_connection_is_kept(server: str) -> None:
    pool = connections()
    Scripted.answers = [(206, {}, b"0123456789"), (206, {}, b"abc")]
    first, second = memoryview(bytearray(10)), memoryview(bytearray(3))
    ranged.get_range(pool, server, 100, 110, first, {"If-Match": '"e"'})
    ranged.get_range(pool, server, 0, 3, second)
    assert (bytes(first), bytes(second)) == (b"0123456789", b"abc")
    assert Scripted.seen[0]["Range"] == "bytes=100-109" and Scripted.seen[0]["If-Match"] == '"e"'
    assert sum(len(idle) for idle in pool.idle.values()) == 1  # one connection served both


@pytest.mark.parametrize(("status", "code", "retriable"), [(404, b"NoSuchKey", False), (403, b"AccessDenied", False),
                                                           (412, b"PreconditionFailed", False),
                                                           (503, b"SlowDown", True), (500, b"InternalError", True)])
def test_an_error_answer_carries_its_code(server: str, status: int, code: bytes, retriable: bool) -> None:
    Scripted.answers = [(status, {}, ERROR_XML % (code, b"told so"))]
    with pytest.raises(ranged.RangeFailure) as failure:
        ranged.get_range(connections(), server, 0, 10, memoryview(bytearray(10)))
    assert (failure.value.status, failure.value.code, failure.value.retriable) == (status, code.decode(), retriable)


def test_a_short_answer_is_a_failure_not_data(server: str) -> None:
    Scripted.answers = [(206, {}, b"only5")]
    with pytest.raises(ranged.RangeFailure) as failure:
        ranged.get_range(connections(), server, 0, 10, memoryview(bytearray(10)))
    assert failure.value.code == "Short" and failure.value.retriable


def test_a_server_that_ignores_the_range_is_refused(server: str) -> None:
    Scripted.answers = [(200, {}, b"the whole object, not the range asked")]
    with pytest.raises(ranged.RangeFailure) as failure:
        ranged.get_range(connections(), server, 5, 10, memoryview(bytearray(5)))
    assert failure.value.code == "NoRange" and not failure.value.retriable


def test_a_refused_connection_is_a_retriable_failure() -> None:
    with pytest.raises(ranged.RangeFailure) as failure:
        ranged.get_range(connections(), "http://127.0.0.1:9/bucket/key", 0, 10, memoryview(bytearray(10)))
    assert failure.value.status == 0 and failure.value.retriable


def test_a_kept_alive_connection_the_server_closed_is_replaced(server: str) -> None:
    pool = connections()
    Scripted.hang_up = True
    Scripted.answers = [(206, {}, b"first"), (206, {}, b"again")]
    first, second = memoryview(bytearray(5)), memoryview(bytearray(5))
    ranged.get_range(pool, server, 0, 5, first)
    ranged.get_range(pool, server, 0, 5, second)  # the pooled connection is dead: a new one, same attempt
    assert (bytes(first), bytes(second)) == (b"first", b"again")


def test_a_put_sends_its_body_and_headers_and_gives_the_etag(server: str) -> None:
    pool = connections()
    Scripted.answers = [(200, {"ETag": '"abc123"'}, b""), (200, {"ETag": '"def"'}, b"")]
    assert ranged.put_object(pool, server, b"payload", {"Content-Type": "text/plain", "x-amz-meta-mode": "33188"}) \
        == '"abc123"'
    assert ranged.put_object(pool, server, b"", {}) == '"def"'  # an empty object, on the same connection
    assert Scripted.bodies == [b"payload", b""]
    assert Scripted.seen[0]["Content-Type"] == "text/plain" and Scripted.seen[0]["x-amz-meta-mode"] == "33188"
    assert sum(len(idle) for idle in pool.idle.values()) == 1


def test_a_refused_put_carries_its_code(server: str) -> None:
    Scripted.answers = [(403, {}, ERROR_XML % (b"AccessDenied", b"no writes here"))]
    with pytest.raises(ranged.RangeFailure) as failure:
        ranged.put_object(connections(), server, b"payload", {})
    assert (failure.value.status, failure.value.code, failure.value.retriable) == (403, "AccessDenied", False)
    assert str(failure.value) == "no writes here"


def test_a_file_part_is_sent_as_its_range_of_the_file_and_again_on_a_fresh_connection(server: str,
                                                                                      tmp_path: Path) -> None:
    content = bytes(range(256)) * 20_000  # 5 MB: several of the chunks a streamed body is sent in
    (tmp_path / "staged").write_bytes(content)
    Scripted.answers = [(200, {"ETag": '"one"'}, b""), (200, {"ETag": '"two"'}, b"")]
    Scripted.hang_up = True  # the second PUT finds its kept-alive connection closed: sent again, whole
    pool = connections()
    with ranged.FilePart(str(tmp_path / "staged"), 1000, 3_000_000) as part:
        assert len(part) == 3_000_000
        assert part.md5() == hashlib.md5(content[1000:3_001_000]).digest()
        headers = {"Content-Length": str(len(part))}
        assert ranged.put_object(pool, server, part, headers) == '"one"'
        assert ranged.put_object(pool, server, part, headers) == '"two"'
    assert Scripted.bodies == [content[1000:3_001_000]] * 2


def test_a_file_part_whose_file_got_shorter_is_refused_not_sent_short(tmp_path: Path) -> None:
    (tmp_path / "staged").write_bytes(b"x" * 100)
    with ranged.FilePart(str(tmp_path / "staged"), 50, 100) as part, pytest.raises(OSError):
        part.read()
