"""Owner and mode of a mount, derived from the bucket ACL the way Alluxio's S3 UFS does it.

Owner = `alluxio.underfs.s3.owner.id.to.username.mapping` of the ACL owner's canonical id, else the owner's
display name, else the canonical id; group = owner (S3 has no groups). The name becomes a local uid/gid; a
name with no local user falls back to the user running s3fuse, so files stay reachable by whoever mounted
them and by no one else. Mode = what the bucket grants that owner (directly, or to AllUsers or
AuthenticatedUsers, as Alluxio counts them): READ -> 0500, WRITE -> 0200, FULL_CONTROL -> 0700, or-ed
together. Object ACLs are never consulted.
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

GROUPS_OF_EVERYONE = frozenset({"http://acs.amazonaws.com/groups/global/AllUsers",
                                "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"})
PERMISSION_BITS = {"READ": 0o500, "WRITE": 0o200, "FULL_CONTROL": 0o700}


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
    """uid of the local user `name`, gid of the local group `name` (group = owner), else of the user's primary
    group; a name unknown here maps to the user running s3fuse."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        log.warning("S3 owner %r is not a local user: files show as uid %d gid %d (the user running s3fuse); "
                    "map the owner's canonical id with alluxio.underfs.s3.owner.id.to.username.mapping",
                    name, os.getuid(), os.getgid())
        return os.getuid(), os.getgid()
    try:
        return entry.pw_uid, grp.getgrnam(name).gr_gid
    except KeyError:
        return entry.pw_uid, entry.pw_gid


def grantee_matches(grantee: dict[str, Any], owner_id: str) -> bool:
    return grantee.get("ID") == owner_id or grantee.get("URI") in GROUPS_OF_EVERYONE


def mode_from_grants(owner_id: str, grants: list[dict[str, Any]]) -> int:
    mode = 0
    for grant in grants:
        if grantee_matches(grant.get("Grantee", {}), owner_id):
            mode |= PERMISSION_BITS.get(str(grant.get("Permission")), 0)
    return mode


def owner_name(config: Config, owner: dict[str, Any]) -> str:
    owner_id = str(owner.get("ID", ""))
    return dict(config.owner_mapping).get(owner_id) or str(owner.get("DisplayName") or owner_id)


def identity_from_acl(config: Config, acl: dict[str, Any]) -> Identity:
    owner = acl.get("Owner", {})
    owner_id = str(owner.get("ID", ""))
    name = owner_name(config, owner)
    uid, gid = local_ids(name)
    identity = Identity(name, uid, gid, mode_from_grants(owner_id, list(acl.get("Grants", []))))
    log.info("bucket ACL: owner %r (canonical id %s) -> uid %d gid %d, mode %04o", name, owner_id, uid, gid,
             identity.mode)
    return identity


def default_identity(config: Config) -> Identity:
    """Used when `alluxio.underfs.s3.inherit.acl=false` or the ACL cannot be read."""
    user = pwd.getpwuid(os.getuid()).pw_name
    log.info("owner %s (the user running s3fuse), mode %04o from alluxio.underfs.s3.default.mode", user,
             config.default_mode)
    return Identity(user, os.getuid(), os.getgid(), config.default_mode)
