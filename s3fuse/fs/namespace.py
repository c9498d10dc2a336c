"""The mount table (Alluxio's unified namespace): the root mount, and other buckets or prefixes grafted at
paths inside it. Every path resolves to exactly one mount, the one grafted deepest above it."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from s3fuse.config import Config
from s3fuse.fs.overlay import Overlay
from s3fuse.s3.acl import Identity
from s3fuse.s3.client import S3Client


@dataclass
class Mount:
    """One S3 bucket or prefix grafted at `path` ("" is the root) of the filesystem."""

    config: Config
    client: S3Client
    prefix: str
    identity: Identity
    readonly: bool
    overlay: Overlay | None = None
    path: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.client.bucket}/{self.prefix}"

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def dir_prefix(self, relative: str) -> str:
        return f"{self.prefix}{relative}/" if relative else self.prefix


class Namespace:
    def __init__(self, root: Mount) -> None:
        self.mounts: dict[str, Mount] = {"": root}

    @property
    def root(self) -> Mount:
        return self.mounts[""]

    def resolve(self, path: str) -> tuple[Mount, str]:
        """The mount that holds `path`, and the path relative to that mount's root."""
        best = ""
        for point in self.mounts:
            if point and len(point) > len(best) and (path == point or path.startswith(point + "/")):
                best = point
        return self.mounts[best], path[len(best):].lstrip("/") if best else path

    def mount_of(self, path: str) -> Mount:
        return self.resolve(path)[0]

    def key(self, path: str) -> str:
        mount, relative = self.resolve(path)
        return mount.key(relative)

    def dir_prefix(self, path: str) -> str:
        mount, relative = self.resolve(path)
        return mount.dir_prefix(relative)

    def is_mount_point(self, path: str) -> bool:
        return bool(path) and path in self.mounts

    def shadowed(self, path: str) -> bool:
        """Whether `path` lies in or below a nested mount point that is not its own mount (so another mount's
        keys must not show there)."""
        return any(point and (path == point or path.startswith(point + "/")) for point in self.mounts)

    def points_in(self, directory: str) -> list[str]:
        """Names of the mount points directly inside `directory`."""
        return [point.rpartition("/")[2] for point in self.mounts
                if point and point.rpartition("/")[0] == directory]

    def graft(self, mount: Mount) -> None:
        if not mount.path:
            raise OSError(errno.EINVAL, "the root is mounted already")
        if mount.path in self.mounts:
            raise OSError(errno.EBUSY, f"/{mount.path} is a mount point already")
        self.mounts[mount.path] = mount

    def remove(self, path: str) -> Mount:
        if not self.is_mount_point(path):
            raise OSError(errno.EINVAL, f"/{path} is not a mount point")
        if any(point.startswith(path + "/") for point in self.mounts):
            raise OSError(errno.EBUSY, f"/{path} has mounts below it")
        return self.mounts.pop(path)
