"""The mount table: what the root of the filesystem is (bucket, prefix, client, identity, options)."""

from __future__ import annotations

from dataclasses import dataclass

from s3fuse.config import Config
from s3fuse.s3.acl import Identity
from s3fuse.s3.client import S3Client


@dataclass
class Mount:
    """One S3 bucket or prefix grafted at a path of the filesystem."""

    config: Config
    client: S3Client
    prefix: str
    identity: Identity
    readonly: bool

    @property
    def uri(self) -> str:
        return f"s3://{self.client.bucket}/{self.prefix}"
