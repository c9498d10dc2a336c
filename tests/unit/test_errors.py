"""S3 failures -> errno in one table, one log line per failure that says what to check, and no secret in any
log line."""

from __future__ import annotations

import errno
import logging
from typing import Any

import aiohttp
import botocore.exceptions
import pytest

from s3fuse.s3 import credentials, errors
from s3fuse.s3.credentials import REDACTED, install_redaction, redact_text, remember
from s3fuse.s3.errors import S3Error, translate

SOURCE = "the mount option aws.accessKeyId (--option/-o), access key AKIA...WXYZ"


@pytest.fixture(autouse=True)
def fresh_log_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "_logged", {})


def client_error(code: str, status: int, message: str = "") -> botocore.exceptions.ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "Op")


@pytest.mark.parametrize(("code", "status", "number"), [
    ("NoSuchKey", 404, errno.ENOENT), ("404", 404, errno.ENOENT), ("NoSuchBucket", 404, errno.ENOENT),
    ("AccessDenied", 403, errno.EACCES), ("403", 403, errno.EACCES),  # a HEAD's 403 has no body, only a status
    ("InvalidAccessKeyId", 403, errno.EACCES), ("SignatureDoesNotMatch", 403, errno.EACCES),
    ("ExpiredToken", 400, errno.EACCES), ("PreconditionFailed", 412, errno.ESTALE),
    ("InvalidRange", 416, errno.EINVAL), ("SlowDown", 503, errno.EAGAIN), ("NotImplemented", 501, errno.ENOTSUP),
    ("EntityTooLarge", 400, errno.EFBIG), ("KeyTooLongError", 400, errno.ENAMETOOLONG),
    ("InternalError", 500, errno.EIO), ("", 500, errno.EIO),
])
def test_table(code: str, status: int, number: int) -> None:
    error = translate(client_error(code, status), "GetObject", "s3://b/k")
    assert isinstance(error, S3Error) and isinstance(error, OSError)
    assert (error.errno, error.s3_code) == (number, code or str(status))


def test_a_403_says_what_the_guide_says_to_check(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="s3fuse.s3.errors"):
        error = translate(client_error("AccessDenied", 403, "Access Denied"), "GetObject", "s3://b/dir/k", SOURCE)
    assert error.errno == errno.EACCES
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert line == str(error.strerror)
    assert line.startswith("GetObject s3://b/dir/k: AccessDenied Access Denied -- ")
    assert f"check 1. the credentials ({SOURCE})" in line
    assert "2. that this AWS user may access the bucket and its objects" in line


def test_the_same_failure_is_logged_once_not_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="s3fuse.s3.errors"):
        for _ in range(3):
            translate(client_error("AccessDenied", 403), "GetObject", "s3://b/k", SOURCE)
        translate(client_error("AccessDenied", 403), "GetObject", "s3://b/other", SOURCE)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "s3://b/k" in warnings[0] and "s3://b/other" in warnings[1]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


def test_not_found_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="s3fuse.s3.errors"):
        assert translate(client_error("NoSuchKey", 404), "HeadObject", "s3://b/k").errno == errno.ENOENT
    assert not caplog.records


@pytest.mark.parametrize("exc", [
    aiohttp.ServerTimeoutError("Timeout on reading data from socket"), TimeoutError(),
    botocore.exceptions.ReadTimeoutError(endpoint_url="http://h"), ConnectionResetError(),
    botocore.exceptions.EndpointConnectionError(endpoint_url="http://h"),
])
def test_connection_failures_and_timeouts_are_eio_naming_the_settings(exc: BaseException) -> None:
    error = translate(exc, "GetObject", "s3://b/k")
    assert error.errno == errno.EIO
    assert "alluxio.underfs.s3.request.timeout" in str(error) and "alluxio.underfs.s3.socket.timeout" in str(error)


def test_missing_credentials_are_eacces() -> None:
    error = translate(botocore.exceptions.NoCredentialsError(), "HeadBucket", "s3://b/")
    assert error.errno == errno.EACCES and "aws.accessKeyId" in str(error)


def test_a_bug_is_not_translated() -> None:
    with pytest.raises(KeyError):
        translate(KeyError("bug"), "GetObject", "s3://b/k")


# ---------------------------------------------------------------------------------------------- redaction

SIGNATURE = "e72d90d92cc2561c1de53d1f87a0f9a1eb0b8bd60b8d4a1932f09fa81981fcdf"


@pytest.mark.parametrize("text", [
    f"'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261126/us-east-1/s3/aws4_request, "
    f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}'",
    f"Signature:\n{SIGNATURE}",
    "'Authorization': b'AWS AKIAEXAMPLEKEY:bWFkZSB1cCBzaWduYXR1cmU='",  # SigV2
    "'X-Amz-Security-Token': b'FwoGZXIvYXdzEXAMPLETOKEN'",
    "x-amz-security-token:FwoGZXIvYXdzEXAMPLETOKEN",
    "GET /k?X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLETOKEN&X-Amz-Signature=" + SIGNATURE,
    '{"Code": "Success", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG", "Token": "FwoGZXIvYXdzEXAMPLETOKEN"}',
    "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG</SecretAccessKey><SessionToken>FwoGZXIvYXdzEXAMPLETOKEN</SessionToken>",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG",
    "option aws.secretKey=wJalrXUtnFEMI/K7MDENG",
])
def test_redaction_patterns(text: str) -> None:
    clean = redact_text(text)
    for secret in (SIGNATURE, "bWFkZSB1cCBzaWduYXR1cmU=", "FwoGZXIvYXdzEXAMPLETOKEN", "wJalrXUtnFEMI/K7MDENG"):
        assert secret not in clean
    assert REDACTED in clean


def test_known_secrets_are_redacted_anywhere_and_key_ids_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "_known", set())
    remember("my-very-secret-key", "")
    assert redact_text("odd place: my-very-secret-key!") == f"odd place: {REDACTED}!"
    assert redact_text("Credential=AKIAEXAMPLE/20261126") == "Credential=AKIAEXAMPLE/20261126"


def test_every_log_record_is_redacted_whatever_its_handler(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("botocore.endpoint").debug("Sending http request: %s",
                                                     {"Authorization": f"... Signature={SIGNATURE}"})
    assert SIGNATURE not in caplog.text and f"Signature={REDACTED}" in caplog.text
