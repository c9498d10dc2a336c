"""A PUT carries exactly one hash of its body for S3 to check: SigV4's signed SHA-256 over http, Content-MD5 where
the signature does not cover the body."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.credentials
import pytest

from s3fuse.s3.client import signed_put_headers
from s3fuse.s3.ranged import FilePart

CREDENTIALS = botocore.credentials.Credentials("AKIDEXAMPLE", "SECRETEXAMPLE")
BODY = b"the bytes of a small file\n" * 100
HEADERS = {"Content-Type": "text/plain"}


def sigv4() -> Any:
    return botocore.auth.S3SigV4Auth(CREDENTIALS, "s3", "us-east-1")


def md5_of(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def header(headers: dict[str, str], name: str) -> str:
    """A header's value whatever the case of its name ("" when absent): an absence must not pass by a spelling."""
    return next((value for key, value in headers.items() if key.lower() == name.lower()), "")


def test_over_http_sigv4_signs_the_body_sha256_and_sends_no_md5() -> None:
    signed = signed_put_headers("http://127.0.0.1:9000/bucket/key", None, sigv4(), HEADERS, BODY)
    assert header(signed, "X-Amz-Content-SHA256") == hashlib.sha256(BODY).hexdigest()
    assert "x-amz-content-sha256" in header(signed, "Authorization")
    assert header(signed, "Content-MD5") == ""
    assert header(signed, "Content-Length") == str(len(BODY))
    assert header(signed, "Content-Type") == "text/plain"


def test_over_https_the_payload_is_unsigned_so_content_md5_carries_the_check() -> None:
    signed = signed_put_headers("https://s3.amazonaws.com/bucket/key", None, sigv4(), HEADERS, BODY)
    assert header(signed, "X-Amz-Content-SHA256") == "UNSIGNED-PAYLOAD"
    assert header(signed, "Content-MD5") == md5_of(BODY)
    assert "content-md5" in header(signed, "Authorization")  # signed, so it cannot be swapped


@pytest.mark.parametrize("signer", [botocore.auth.HmacV1Auth(CREDENTIALS), None], ids=["sigv2", "anonymous"])
def test_without_a_signed_payload_hash_content_md5_is_sent(signer: Any) -> None:
    signed = signed_put_headers("http://127.0.0.1:9000/bucket/key", "/bucket/key", signer, HEADERS, BODY)
    assert header(signed, "Content-MD5") == md5_of(BODY)
    assert header(signed, "X-Amz-Content-SHA256") == ""


def test_a_file_part_is_hashed_as_its_range(tmp_path: Path) -> None:
    path = tmp_path / "staged"
    content = bytes(range(256)) * 4096
    path.write_bytes(content)
    part = FilePart(str(path), 1000, 500_000)
    try:
        part.read()  # where an attempt's send leaves it: the next attempt still hashes the whole part
        over_http = signed_put_headers("http://127.0.0.1:9000/bucket/key", None, sigv4(), HEADERS, part)
        over_https = signed_put_headers("https://s3.amazonaws.com/bucket/key", None, sigv4(), HEADERS, part)
    finally:
        part.close()
    assert header(over_http, "X-Amz-Content-SHA256") == hashlib.sha256(content[1000:501_000]).hexdigest()
    assert header(over_https, "Content-MD5") == md5_of(content[1000:501_000])
