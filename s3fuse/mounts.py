"""Mounts from configuration: a client whose bucket answered, the identity its ACL gives, its overlay; and the
nested mounts a running daemon grafts into its namespace on request (`s3fuse fs mount`)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from s3fuse import config as configuration
from s3fuse.config import Config
from s3fuse.fs.handles import OpenFiles
from s3fuse.fs.inodes import InodeTable, parent_of
from s3fuse.fs.listing import name_problem
from s3fuse.fs.namespace import Mount
from s3fuse.fs.operations import forget_kernel_entry
from s3fuse.fs.overlay import Overlay
from s3fuse.s3 import acl
from s3fuse.s3.client import S3Client, endpoint_url
from s3fuse.s3.errors import S3Error

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The mount cannot start; the message is for the person who ran the command."""


async def resolve_identity(config: Config, client: S3Client) -> acl.Identity:
    if not config.inherit_acl:
        return acl.default_identity(config)
    try:
        return acl.identity_from_acl(config, await client.bucket_acl())
    except S3Error as exc:
        log.warning("cannot read the bucket ACL (%s): using alluxio.underfs.s3.default.mode %o", exc,
                    config.default_mode)
        return acl.default_identity(config)


async def open_client(config: Config) -> S3Client:
    """A client whose bucket answered: a missing bucket, bad credentials or a dead endpoint stop here."""
    client = S3Client(config, config.bucket)
    await client.open()
    try:
        await client.check_bucket()
    except S3Error as exc:
        await client.close()
        where = endpoint_url(config) or "AWS S3"
        if exc.errno == errno.ENOENT:
            raise StartupError(f"bucket {config.bucket!r} does not exist at {where}: create it or fix the "
                               "S3 URI") from None
        raise StartupError(f"cannot use bucket {config.bucket!r} at {where}: {exc}") from None
    return client


async def build_mount(config: Config, client: S3Client, path: str = "") -> Mount:
    identity = (await resolve_identity(config, client)).masked(config.readonly, config.shared)
    overlay = Overlay.in_cache(config.cache_dirs[0], config.bucket)
    return Mount(config, client, config.prefix, identity, config.readonly, overlay, path)


def clean_path(text: str) -> str:
    """A mount point inside the filesystem, as a relative path; traversal and odd names are refused."""
    segments = [segment for segment in text.strip("/").split("/") if segment]
    if not segments:
        raise OSError(errno.EINVAL, "the root is mounted already: give a path inside the mount")
    for segment in segments:
        if name_problem(segment):
            raise OSError(errno.EINVAL, f"{text!r}: {name_problem(segment)}")
    return "/".join(segments)


@dataclass
class NestedMounts:
    """The daemon's side of `s3fuse fs mount/unmount`: graft a bucket or prefix at a path, or take it away."""

    table: InodeTable
    files: OpenFiles
    on_client: Callable[[S3Client], None]  # e.g. metrics watching the new client's requests

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        operation = request["op"]
        if operation == "list":
            return {"mounts": self.rows()}
        if operation == "mount":
            await self.graft(request["path"], request["uri"], request.get("conf"), request.get("options", []),
                             bool(request.get("readonly")), bool(request.get("shared")))
            return {"ok": True}
        if operation == "unmount":
            await self.ungraft(request["path"])
            return {"ok": True}
        raise KeyError(operation)

    def rows(self) -> list[dict[str, Any]]:
        return [{"path": f"/{mount.path}", "uri": mount.uri, "readonly": mount.readonly,
                 "shared": mount.config.shared, "endpoint": endpoint_url(mount.config) or "AWS S3"}
                for mount in self.table.namespace.mounts.values()]

    async def graft(self, where: str, uri: str, conf: str | None, options: list[str], readonly: bool,
                    shared: bool) -> None:
        path = clean_path(where)
        try:
            config = configuration.load(conf, (), options, root_ufs=uri, readonly=readonly, shared=shared)
        except configuration.ConfigError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None
        parent = await self.directory(parent_of(path))
        try:
            await self.table.lookup(parent, path.rpartition("/")[2])
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        else:
            raise OSError(errno.EEXIST, f"/{path} exists: a mount point must be a new path (as in Alluxio)")
        try:
            client = await open_client(config)
        except StartupError as exc:
            raise OSError(errno.EIO, str(exc)) from None
        mount = await build_mount(config, client, path)
        self.table.namespace.graft(mount)
        self.on_client(client)
        self.table.negative.pop(path, None)
        self.table.invalidate_listing(parent.path)
        forget_kernel_entry(parent.ino, path)
        log.info("mounted %s at /%s", mount.uri, path)

    async def graft_configured(self, config: Config) -> None:
        """The nested mounts the site file lists (alluxio.master.mount.table.NAME.*) come back at start; one
        that cannot be grafted is logged, and the rest of the filesystem still mounts."""
        for spec in config.nested_mounts:
            try:
                await self.graft(spec.path, spec.ufs, config.conf_dir or None, list(spec.options), spec.readonly,
                                 spec.shared)
            except OSError as exc:
                log.error("nested mount %r (%s at %s) not mounted: %s", spec.name, spec.ufs, spec.path,
                          exc.strerror or exc)

    async def ungraft(self, where: str) -> None:
        path = clean_path(where)
        namespace = self.table.namespace
        if not namespace.is_mount_point(path):
            raise OSError(errno.EINVAL, f"/{path} is not a mount point")
        busy = [f for f in self.files.every() if f.inode.path == path or f.inode.path.startswith(path + "/")]
        if busy:
            raise OSError(errno.EBUSY, f"/{path} has {len(busy)} open file(s)")
        mount = namespace.remove(path)
        self.table.forget_subtree(path)
        parent = self.table.known(parent_of(path))
        if parent is not None:
            self.table.invalidate_listing(parent.path)
            forget_kernel_entry(parent.ino, path)
        await mount.client.close()
        if mount.overlay is not None:
            mount.overlay.close()
        log.info("unmounted %s from /%s", mount.uri, path)

    async def directory(self, path: str) -> Any:
        """The inode of an existing directory, looked up segment by segment from the root."""
        node = self.table.get(1)
        for segment in [s for s in path.split("/") if s]:
            node = await self.table.lookup(node, segment)
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, f"/{path}")
        return node

