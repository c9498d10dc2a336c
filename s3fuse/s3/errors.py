"""One table from S3 failures to errno, so every layer above speaks POSIX and nothing invents its own mapping."""

from __future__ import annotations

import errno
import logging

import aiohttp
import botocore.exceptions

log = logging.getLogger(__name__)


class S3Error(OSError):
    """An S3 request that failed, already translated to an errno (an OSError, like every failure the filesystem
    layers report), with the server's own error code kept for the callers that branch on it."""

    def __init__(self, code: int, message: str, s3_code: str = "") -> None:
        super().__init__(code, message)
        self.s3_code = s3_code


# S3 error code (or HTTP status as text) -> errno and what the operator should check.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "NoSuchKey": (errno.ENOENT, ""),
    "404": (errno.ENOENT, ""),
    "NotFound": (errno.ENOENT, ""),
    "NoSuchBucket": (errno.ENOENT, "check the bucket name in the S3 URI and that it exists at the endpoint"),
    "AccessDenied": (errno.EACCES, "check the credentials (aws.accessKeyId/aws.secretKey or the credential "
                                   "chain) and the bucket/object permissions granted to them"),
    "403": (errno.EACCES, "check the credentials (aws.accessKeyId/aws.secretKey or the credential chain) and "
                          "the bucket/object permissions granted to them"),
    "Forbidden": (errno.EACCES, "check the credentials and the bucket/object permissions"),
    "InvalidAccessKeyId": (errno.EACCES, "the access key id is not known to the server: check aws.accessKeyId"),
    "SignatureDoesNotMatch": (errno.EACCES, "the secret key does not match the access key: check aws.secretKey"
                                            " (and alluxio.underfs.s3.signer.algorithm)"),
    "AllAccessDisabled": (errno.EACCES, "the bucket denies all access"),
    "PreconditionFailed": (errno.ESTALE, "the object changed while it was read; it is read again"),
    "412": (errno.ESTALE, "the object changed while it was read; it is read again"),
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

CONNECTION_HINT = ("check alluxio.underfs.s3.endpoint, the network and any proxy; timeouts are "
                   "alluxio.underfs.s3.request.timeout and alluxio.underfs.s3.socket.timeout")


def translate(exc: BaseException, operation: str, key: str) -> S3Error:
    """Turn any failure of one request into an S3Error, logging once what went wrong and what to do."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        number, hint = ERROR_TABLE.get(code) or ERROR_TABLE.get(status) or (errno.EIO, "")
        if not hint and number == errno.EIO:
            hint = "the server answered an error; see its message"
        message = f"{operation} {key}: {code or status} {error.get('Message', '')}".strip()
        if hint:
            message = f"{message} -- {hint}"
        if number != errno.ENOENT:
            log.warning("%s", message)
        return S3Error(number, message, code or status)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        message = (f"{operation} {key}: no S3 credentials found: set aws.accessKeyId and aws.secretKey, "
                   "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or an instance profile")
        log.error("%s", message)
        return S3Error(errno.EACCES, message, "NoCredentials")
    if isinstance(exc, botocore.exceptions.BotoCoreError | aiohttp.ClientError | TimeoutError | OSError):
        message = f"{operation} {key}: {type(exc).__name__}: {exc} -- {CONNECTION_HINT}"
        log.warning("%s", message)
        return S3Error(errno.EIO, message, type(exc).__name__)
    raise exc
