"""The credential chain in Alluxio's order, and a log line naming the source that won (never the secret).

Mount option > `-D` > site file are already merged into `Config.access_key` by config.py; after them come the
environment (both spellings Alluxio accepts), the profile file, and the EC2 instance profile, which botocore
refreshes before expiry on its own.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from s3fuse.config import Config

log = logging.getLogger(__name__)

ENV_PAIRS = (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("AWS_ACCESS_KEY", "AWS_SECRET_KEY"))


def redact(secret: str) -> str:
    """Enough of a key id to tell keys apart in a log, never enough to use it."""
    return f"{secret[:4]}..." if len(secret) > 8 else "***"


def resolve(config: Config) -> dict[str, Any]:
    """Keyword arguments for create_client: explicit keys when a source above botocore's chain has them."""
    if config.access_key or config.secret_key:
        log.info("S3 credentials from the configuration (aws.accessKeyId=%s)", redact(config.access_key))
        return {"aws_access_key_id": config.access_key, "aws_secret_access_key": config.secret_key}
    for key_name, secret_name in ENV_PAIRS:
        if os.environ.get(key_name) and os.environ.get(secret_name):
            log.info("S3 credentials from the environment (%s=%s)", key_name, redact(os.environ[key_name]))
            return {"aws_access_key_id": os.environ[key_name], "aws_secret_access_key": os.environ[secret_name],
                    "aws_session_token": os.environ.get("AWS_SESSION_TOKEN") or None}
    log.info("S3 credentials from botocore's chain: the profile file (%s), then the instance profile",
             os.environ.get("AWS_PROFILE", "default"))
    return {}
