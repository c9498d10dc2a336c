"""Bucket ACL -> owner, group and mode, as Alluxio's S3 UFS derives them (no server: the ACL is a dict as
botocore parses it; local users come from a stand-in for the passwd and group databases)."""

from __future__ import annotations

import grp
import logging
import os
import pwd
from types import SimpleNamespace
from typing import Any

import pytest

from s3fuse.config import load
from s3fuse.s3.acl import Identity, default_identity, identity_from_acl, mode_from_grants

OWNER = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def grant(permission: str, who: str = OWNER) -> dict[str, Any]:
    grantee = {"Type": "Group", "URI": who} if who.startswith("http") else {"Type": "CanonicalUser", "ID": who}
    return {"Grantee": grantee, "Permission": permission}


@pytest.fixture
def users(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local users john (1001, primary group 100, own group 2001) and presto (1002, primary 100, no own group)."""
    passwd = {"john": SimpleNamespace(pw_uid=1001, pw_gid=100), "presto": SimpleNamespace(pw_uid=1002, pw_gid=100)}
    groups = {"john": SimpleNamespace(gr_gid=2001)}

    def getpwnam(name: str) -> Any:
        if name not in passwd:
            raise KeyError(name)
        return passwd[name]

    def getgrnam(name: str) -> Any:
        if name not in groups:
            raise KeyError(name)
        return groups[name]

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(grp, "getgrnam", getgrnam)


@pytest.mark.parametrize(("grants", "mode"), [
    ([grant("FULL_CONTROL")], 0o700),
    ([grant("READ")], 0o500),  # the guide: read-only access -> 0500
    ([grant("WRITE")], 0o200),
    ([grant("READ"), grant("WRITE")], 0o700),
    ([grant("READ_ACP"), grant("WRITE_ACP")], 0o000),  # ACL permissions say nothing about the data
    ([grant("FULL_CONTROL", "someone-else")], 0o000),  # only grants for the owner count ...
    ([grant("READ", ALL_USERS)], 0o500),  # ... or for everyone, as Alluxio counts them
    ([grant("WRITE", AUTHENTICATED), grant("READ")], 0o700),
    ([], 0o000),
])
def test_mode_from_grants(grants: list[dict[str, Any]], mode: int) -> None:
    assert mode_from_grants(OWNER, grants) == mode


@pytest.mark.parametrize(("owner", "mapping", "name", "ids"), [
    ({"ID": OWNER, "DisplayName": "john"}, "", "john", (1001, 2001)),  # the display name; group = owner's group
    ({"ID": OWNER, "DisplayName": "presto"}, "", "presto", (1002, 100)),  # no group of that name: primary group
    ({"ID": OWNER}, f"{OWNER}=john", "john", (1001, 2001)),  # no display name: the mapping of the id
    ({"ID": OWNER, "DisplayName": "presto"}, f"other=x;{OWNER}=john", "john", (1001, 2001)),  # mapping wins
    ({"ID": OWNER}, "", OWNER, (os.getuid(), os.getgid())),  # the canonical id, unknown: the mounting user
    ({"ID": OWNER, "DisplayName": "webfile"}, "", "webfile", (os.getuid(), os.getgid())),
])
def test_owner_and_group(users: None, owner: dict[str, str], mapping: str, name: str,
                         ids: tuple[int, int]) -> None:
    config = load(None, options=[f"alluxio.underfs.s3.owner.id.to.username.mapping={mapping}"] if mapping else [])
    identity = identity_from_acl(config, {"Owner": owner, "Grants": [grant("FULL_CONTROL")]})
    assert identity == Identity(name, *ids, 0o700)


def test_an_unknown_owner_is_logged_with_what_to_do(users: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="s3fuse.s3.acl"):
        identity_from_acl(load(None), {"Owner": {"ID": OWNER, "DisplayName": "webfile"}, "Grants": []})
    text = caplog.text
    assert "S3 owner 'webfile' is not a local user" in text
    assert "alluxio.underfs.s3.owner.id.to.username.mapping" in text
    assert f"canonical id {OWNER}" in text


def test_default_identity_uses_default_mode() -> None:
    config = load(None, options=["alluxio.underfs.s3.inherit.acl=false", "alluxio.underfs.s3.default.mode=0750"])
    assert default_identity(config) == Identity(pwd.getpwuid(os.getuid()).pw_name, os.getuid(), os.getgid(), 0o750)
    assert default_identity(load(None)).mode == 0o700


@pytest.mark.parametrize(("readonly", "shared", "mode"), [(False, False, 0o700), (False, True, 0o777),
                                                          (True, False, 0o500), (True, True, 0o555)])
def test_shared_and_readonly_masks(readonly: bool, shared: bool, mode: int) -> None:
    assert Identity("john", 1, 1, 0o700).masked(readonly, shared).mode == mode
