"""Owner and mode of a mount, derived from the bucket ACL the way Alluxio's S3 UFS does it.

Owner = the ACL owner's display name, else its canonical id, passed through
`alluxio.underfs.s3.owner.id.to.username.mapping`; group = owner. Mode = what the bucket grants that owner:
read only -> 0500, read and write (or FULL_CONTROL) -> 0700. Object ACLs are not consulted.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from dataclasses import dataclass
from typing import Any

from s3fuse.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """What every inode of one mount shows until the overlay says otherwise."""

    owner: str
    uid: int
    gid: int
    mode: int  # permission bits only

    def masked(self, readonly: bool, shared: bool) -> Identity:
        mode = 0o777 if shared else self.mode
        if readonly:
            mode &= ~0o222
        return Identity(self.owner, self.uid, self.gid, mode)


def local_ids(name: str) -> tuple[int, int]:
    """uid and gid of a local user (its group, or the group of the same name); unknown names map to the user
    running s3fuse, so the files stay reachable by whoever mounted them."""
    try:
        entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    try:
        return os.getuid(), grp.getgrnam(name).gr_gid
    except KeyError:
        log.info("S3 owner %r is not a local user: files show as uid %d; map it with "
                 "alluxio.underfs.s3.owner.id.to.username.mapping", name, os.getuid())
        return os.getuid(), os.getgid()


def mode_from_grants(owner_id: str, grants: list[dict[str, Any]]) -> int:
    permissions = {g.get("Permission") for g in grants if g.get("Grantee", {}).get("ID") == owner_id}
    if "FULL_CONTROL" in permissions or {"READ", "WRITE"} <= permissions:
        return 0o700
    if "READ" in permissions:
        return 0o500
    if "WRITE" in permissions:
        return 0o200
    return 0o000


def identity_from_acl(config: Config, acl: dict[str, Any]) -> Identity:
    owner = acl.get("Owner", {})
    owner_id = str(owner.get("ID", ""))
    mapping = dict(config.owner_mapping)
    name = mapping.get(owner_id) or str(owner.get("DisplayName") or owner_id)
    uid, gid = local_ids(name)
    return Identity(name, uid, gid, mode_from_grants(owner_id, list(acl.get("Grants", []))))


def default_identity(config: Config) -> Identity:
    """Used when `alluxio.underfs.s3.inherit.acl=false` or the ACL cannot be read."""
    user = pwd.getpwuid(os.getuid()).pw_name
    return Identity(user, os.getuid(), os.getgid(), config.default_mode)
