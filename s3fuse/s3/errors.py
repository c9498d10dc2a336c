"""One table from S3 failures to errno, so every layer above speaks POSIX and nothing invents its own mapping."""

from __future__ import annotations

import errno
import logging
import time

import aiohttp
import botocore.exceptions

log = logging.getLogger(__name__)


class S3Error(OSError):
    """An S3 request that failed, already translated to an errno (an OSError, like every failure the filesystem
    layers report), with the server's own error code kept for the callers that branch on it."""

    def __init__(self, code: int, message: str, s3_code: str = "") -> None:
        super().__init__(code, message)
        self.s3_code = s3_code


# What the Alluxio guide says to check after a 403 ("Why is 403 Access Denied Error Returned"); `{credentials}`
# becomes the source the credentials came from, so the operator knows which one to check.
ACCESS_HINT = ("check 1. the credentials ({credentials}) and 2. that this AWS user may access the bucket and its "
               "objects (IAM policy, bucket policy, bucket ACL)")

# S3 error code (or HTTP status as text) -> errno and what the operator should check.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "NoSuchKey": (errno.ENOENT, ""),
    "404": (errno.ENOENT, ""),
    "NotFound": (errno.ENOENT, ""),
    "NoSuchBucket": (errno.ENOENT, "check the bucket name in the S3 URI and that it exists at the endpoint"),
    "AccessDenied": (errno.EACCES, ACCESS_HINT),
    "403": (errno.EACCES, ACCESS_HINT),
    "Forbidden": (errno.EACCES, ACCESS_HINT),
    "InvalidAccessKeyId": (errno.EACCES, "the server does not know this access key: " + ACCESS_HINT),
    "InvalidClientTokenId": (errno.EACCES, "the server does not know this access key or token: " + ACCESS_HINT),
    "SignatureDoesNotMatch": (errno.EACCES, "the secret key does not match the access key (or the server wants "
                                            "another alluxio.underfs.s3.signer.algorithm): " + ACCESS_HINT),
    "ExpiredToken": (errno.EACCES, "the session token has expired: " + ACCESS_HINT),
    "AllAccessDisabled": (errno.EACCES, "the bucket denies all access"),
    "PreconditionFailed": (errno.ESTALE, "another writer replaced the object since it was opened; open it again"),
    "412": (errno.ESTALE, "another writer replaced the object since it was opened; open it again"),
    "VersionGone": (errno.ESTALE, "another writer deleted or renamed the object since it was opened; its bytes "
                                  "cannot be read any more: open the name again"),
    "InvalidRange": (errno.EINVAL, ""),
    "416": (errno.EINVAL, ""),
    "EntityTooLarge": (errno.EFBIG, "the object exceeds what the server accepts in one request"),
    "KeyTooLongError": (errno.ENAMETOOLONG, "S3 keys are limited to 1024 bytes"),
    "InvalidBucketName": (errno.EINVAL, "check the bucket name in the S3 URI"),
    "NotImplemented": (errno.ENOTSUP, "the server does not implement this request"),
    "MethodNotAllowed": (errno.ENOTSUP, "the server does not allow this request"),
    "SlowDown": (errno.EAGAIN, "the server throttles requests; raise alluxio.underfs.s3.max.error.retry"),
    "503": (errno.EAGAIN, "the server is unavailable; it was retried alluxio.underfs.s3.max.error.retry times"),
    "NoSuchUpload": (errno.EIO, "the multipart upload was aborted, perhaps by a cleanup"),
}

DEFAULT_CREDENTIALS = "aws.accessKeyId/aws.secretKey or the credential chain"
CONNECTION_HINT = ("check alluxio.underfs.s3.endpoint, the network and any proxy; timeouts are "
                   "alluxio.underfs.s3.request.timeout and alluxio.underfs.s3.socket.timeout")


REPEAT_WINDOW = 60.0  # seconds during which the same failure is not logged again
_logged: dict[str, float] = {}


def log_once(level: int, message: str) -> None:
    """One log line per failure, not per request: the kernel retries a failed read, readers retry, a prefetch
    window fails block by block; repeats within a minute go to debug."""
    now = time.monotonic()
    last = _logged.get(message)
    if last is not None and now - last < REPEAT_WINDOW:
        log.debug("again: %s", message)
        return
    if len(_logged) > 1000:
        _logged.clear()
    _logged[message] = now
    log.log(level, "%s", message)


def answer_error(code: str, status: str, text: str, operation: str, key: str, credentials: str = "") -> S3Error:
    """The S3Error for an error answer of the server (its error code, HTTP status and message)."""
    number, hint = ERROR_TABLE.get(code) or ERROR_TABLE.get(status) or (errno.EIO, "")
    if not hint and number == errno.EIO:
        hint = "the server answered an error; see its message"
    message = f"{operation} {key}: {code or status} {text}".strip()
    if hint:
        message = f"{message} -- {hint.format(credentials=credentials or DEFAULT_CREDENTIALS)}"
    if number != errno.ENOENT:
        log_once(logging.WARNING, message)
    return S3Error(number, message, code or status)


def no_answer(code: str, text: str, operation: str, key: str) -> S3Error:
    """The S3Error for a request that got no usable answer (refused, reset, timed out, cut short)."""
    message = f"{operation} {key}: {text} -- {CONNECTION_HINT}"
    log_once(logging.WARNING, message)
    return S3Error(errno.EIO, message, code)


def translate(exc: BaseException, operation: str, key: str, credentials: str = "") -> S3Error:
    """Turn any failure of one request into an S3Error, logging once what went wrong and what to do.
    `credentials` describes where the credentials came from (credentials.py), for the hint of a 403."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return answer_error(str(error.get("Code", "")), status, str(error.get("Message", "")), operation, key,
                            credentials)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        message = (f"{operation} {key}: no S3 credentials found: set aws.accessKeyId and aws.secretKey, "
                   "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or an instance profile")
        log_once(logging.ERROR, message)
        return S3Error(errno.EACCES, message, "NoCredentials")
    if isinstance(exc, botocore.exceptions.BotoCoreError | aiohttp.ClientError | TimeoutError | OSError):
        return no_answer(type(exc).__name__, f"{type(exc).__name__}: {exc}", operation, key)
    raise exc
