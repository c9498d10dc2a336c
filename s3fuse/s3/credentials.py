"""The credential chain in Alluxio's order, one log line naming the source that won (never the secret), and the
redaction that keeps secrets out of every log line, botocore's request-level debug logs included.

1-3. `aws.accessKeyId`/`aws.secretKey` from a mount option, `-D` or the site file: config.py merges them with
     that precedence and remembers where each came from, so the log line can name it;
4.   the environment: `AWS_ACCESS_KEY_ID` or `AWS_ACCESS_KEY` with `AWS_SECRET_KEY` or `AWS_SECRET_ACCESS_KEY`
     (the AWS SDK for Java reads them in this order, and Alluxio uses that SDK), plus `AWS_SESSION_TOKEN`;
5-6. botocore's own chain without its environment step (done above, with both spellings): the profile file
     (`~/.aws/credentials`, `AWS_PROFILE`, `AWS_SHARED_CREDENTIALS_FILE`) and the profile-based providers, then
     container credentials, then the EC2 instance profile over IMDSv2. Those credentials are handed to the
     client as botocore's refreshable object, so they are renewed before they expire.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from s3fuse.config import Config
from s3fuse.s3.errors import S3Error

log = logging.getLogger(__name__)

# (access key names, secret key names), each in the order the AWS SDK for Java reads them
ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY")
ENV_SECRETS = ("AWS_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
DEFAULT_IMDS = "http://169.254.169.254/"


@dataclass(frozen=True)
class Resolved:
    """What `create_client` gets (no keys: botocore's refreshable credentials from the session) and a description
    of the source for the log and for the hint of a 403."""

    client_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def redact(key_id: str) -> str:
    """Enough of a key id (not a secret, but kept short) to tell keys apart in a log."""
    return f"{key_id[:4]}...{key_id[-4:]}" if len(key_id) >= 12 else "***"


def describe_origin(origin: str) -> str:
    """config.py's origin of a property as words for the log: which of the first three sources it was."""
    if origin.startswith("option "):
        return f"the mount option {origin.removeprefix('option ')} (--option/-o)"
    if origin.startswith("-D "):
        return f"-D {origin.removeprefix('-D ')} on the command line"
    if origin in ("", "command line"):
        return "the command line"
    return f"the site file {origin}"


def origin_kind(origin: str) -> str:
    """Which of the three configuration sources an origin names: option, -D or site (file)."""
    if origin.startswith("option "):
        return "option"
    if origin.startswith("-D "):
        return "-D"
    return "site" if origin and origin != "command line" else "command line"


def from_config(config: Config) -> Resolved | None:
    if not (config.access_key and config.secret_key):
        return None
    key_origin, secret_origin = config.origin("aws.accessKeyId"), config.origin("aws.secretKey")
    source = describe_origin(key_origin)
    if origin_kind(key_origin) != origin_kind(secret_origin):
        source += f" (aws.secretKey from {describe_origin(secret_origin)})"
    remember(config.secret_key)
    return Resolved({"aws_access_key_id": config.access_key, "aws_secret_access_key": config.secret_key},
                    f"{source}, access key {redact(config.access_key)}")


def from_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> Resolved | None:
    key_name = next((name for name in ENV_KEYS if environ.get(name)), "")
    secret_name = next((name for name in ENV_SECRETS if environ.get(name)), "")
    if not key_name and not secret_name:
        return None
    if not (key_name and secret_name):
        have, want = (key_name, " or ".join(ENV_SECRETS)) if key_name else (secret_name, " or ".join(ENV_KEYS))
        log.warning("the environment has %s but not %s: skipping the environment in the credential chain",
                    have, want)
        return None
    token = environ.get("AWS_SESSION_TOKEN") or None
    remember(environ[secret_name], token or "")
    return Resolved({"aws_access_key_id": environ[key_name], "aws_secret_access_key": environ[secret_name],
                     "aws_session_token": token},
                    f"the environment ({key_name}/{secret_name}), access key {redact(environ[key_name])}")


def describe_method(method: str) -> str:
    """botocore's name of the provider that answered, as words for the log."""
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    if method == "shared-credentials-file":
        path = os.path.expanduser(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
        return f"the profile file {path} (profile {profile})"
    if method == "config-file":
        path = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
        return f"the config file {path} (profile {profile})"
    if method == "iam-role":
        endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_IMDS)
        return f"the EC2 instance profile (IMDSv2 at {endpoint}; renewed before it expires)"
    return f"botocore's {method} provider (profile {profile})"


async def resolve(config: Config, session: Any) -> Resolved:
    """The first source of the chain that has credentials; `session` is the aiobotocore session the client will
    be created from (for sources 5-6 it caches the credentials, which the client then uses and refreshes)."""
    install_redaction()
    resolved = from_config(config) or from_environment()
    if resolved is None:
        resolver = session.get_component("credential_provider")
        resolver.remove("env")  # done above, with Alluxio's spellings
        try:
            credentials = await session.get_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise S3Error(errno.EACCES, f"cannot load S3 credentials: {exc}", "NoCredentials") from exc
        if credentials is None:
            raise S3Error(errno.EACCES, "no S3 credentials found: set aws.accessKeyId and aws.secretKey (mount "
                          "option, -D or alluxio-site.properties), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a "
                          "profile in ~/.aws/credentials, or run on EC2 with an instance profile", "NoCredentials")
        frozen = await credentials.get_frozen_credentials()
        remember(frozen.secret_key, frozen.token or "")
        resolved = Resolved({}, f"{describe_method(credentials.method)}, access key {redact(frozen.access_key)}")
    log.info("S3 credentials from %s", resolved.source)
    return resolved


# ---------------------------------------------------------------------------------------------- redaction

REDACTED = "<redacted>"
_known: set[str] = set()
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # SigV4 signatures: Authorization header, botocore.auth's "Signature:" line, presigned URLs
    (re.compile(r"(Signature=)[0-9a-fA-F]{16,}"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(Signature:\s*)[0-9a-fA-F]{16,}"), rf"\g<1>{REDACTED}"),
    # SigV2: Authorization: AWS <key id>:<signature>
    (re.compile(r"(AWS [A-Za-z0-9_.+/=-]+:)[A-Za-z0-9+/]{8,}=*"), rf"\g<1>{REDACTED}"),
    # session tokens as headers (dict repr, canonical request) and query parameters
    (re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}&]+"), rf"\g<1>{REDACTED}"),
    # credentials as JSON (IMDS, STS), as XML, as key=value
    (re.compile(r"(\"(?:SecretAccessKey|Token|SessionToken)\"\s*:\s*\")[^\"]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(<(?:SecretAccessKey|SessionToken)>)[^<]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)((?:aws_secret_access_key|aws_session_token|aws\.secretKey|s3a\.secretKey)\s*[=:]\s*['\"]?)"
                r"[^'\"\s,}]+"), rf"\g<1>{REDACTED}"),
]


def remember(*secrets: str) -> None:
    """Secrets in use: any log line that contains one shows `<redacted>` instead."""
    _known.update(secret for secret in secrets if len(secret) >= 4)


def redact_text(text: str) -> str:
    for secret in _known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_installed = False


def install_redaction() -> None:
    """Redact every log record as it is made, whatever handlers `logging.conf` configures (fileConfig has no
    filters before Python 3.12, and a filter on one logger misses records of its children)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call is the logging module's to report, not ours
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
