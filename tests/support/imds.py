"""A small EC2 instance metadata service (IMDSv2 only) for the instance-profile credential test.

botocore finds it through `AWS_EC2_METADATA_SERVICE_ENDPOINT`. Like the real one it hands out a session token on
`PUT /latest/api/token` and refuses every GET without one (so IMDSv1 would fail), names one role, and serves
that role's credentials with an expiry. `credentials` is served in order, the last one repeating, so a test can
hand out short-lived credentials first and see whether they are renewed.
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ROLE = "s3fuse-test-role"
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"


# How the real service writes an expiry. botocore extends an expiry closer than 17-25 minutes (it assumes the
# service is failing and keeps using what it has), so credentials that must be renewed at once are written with
# fractional seconds, still ISO 8601, which that extension does not parse and the renewal logic does.
EXPIRY = "%Y-%m-%dT%H:%M:%SZ"
EXPIRY_NOT_EXTENDED = "%Y-%m-%dT%H:%M:%S.000Z"


@dataclass(frozen=True)
class RoleCredentials:
    access_key: str
    secret_key: str
    token: str
    lifetime: timedelta
    expiry_format: str = EXPIRY

    def document(self) -> bytes:
        now = datetime.now(UTC)
        return json.dumps({
            "Code": "Success", "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "Type": "AWS-HMAC",
            "AccessKeyId": self.access_key, "SecretAccessKey": self.secret_key, "Token": self.token,
            "Expiration": (now + self.lifetime).strftime(self.expiry_format),
        }).encode()


@dataclass
class Imds:
    credentials: list[RoleCredentials]
    port: int = 0
    tokens: set[str] = field(default_factory=set)
    served: int = 0  # credential documents handed out
    refused: int = 0  # GETs without a valid session token
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def next_document(self) -> bytes:
        with self.lock:
            chosen = self.credentials[min(self.served, len(self.credentials) - 1)]
            self.served += 1
        return chosen.document()


def handler_for(imds: Imds) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def reply(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self.reply(400)
                return
            token = secrets.token_urlsafe(24)
            with imds.lock:
                imds.tokens.add(token)
            self.reply(200, token.encode())

        def do_GET(self) -> None:
            with imds.lock:
                valid = self.headers.get("X-aws-ec2-metadata-token") in imds.tokens
                if not valid:
                    imds.refused += 1
            if not valid:
                self.reply(401)
            elif self.path == CREDENTIALS_PATH:
                self.reply(200, ROLE.encode())
            elif self.path == CREDENTIALS_PATH + ROLE:
                self.reply(200, imds.next_document(), "application/json")
            else:
                self.reply(404)

    return Handler


@contextmanager
def metadata_service(credentials: list[RoleCredentials]) -> Iterator[Imds]:
    imds = Imds(credentials)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(imds))
    server.daemon_threads = True
    imds.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield imds
    finally:
        server.shutdown()
        server.server_close()
