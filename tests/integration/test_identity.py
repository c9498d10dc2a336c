"""Credentials, ownership and access through a real mount, against servers that check credentials.

The credential chain is proven level by level: the level under test holds one key pair and every level below
it the other. With the valid pair at the level under test the mount works; with the wrong pair there (and the
valid pair below) it fails. So the level under test was used, and it came before everything below it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest

from s3fuse.embedded import LocalS3, clean_aws_environment
from s3fuse.s3.client import CREDENTIALS_REUSE
from tests.conftest import Mounted, MountFactory
from tests.support.forward_proxy import Answer, Seen, recording_proxy
from tests.support.imds import EXPIRY_NOT_EXTENDED, metadata_service
from tests.support.servers import WRONG_KEY, WRONG_SECRET, AuthServer, auth_server

NOBODY = 65534
DAEMON_UID = 1  # another local user who is neither the owner nor root
SYSTEM_PYTHON = "/usr/bin/python3"
LOGGING_EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "logging.conf.example"


@pytest.fixture(scope="module")
def auth(s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    with auth_server(s3_server, tmp_path_factory.mktemp("auth")) as found:
        yield found


# ---------------------------------------------------------------------------------------------- the chain

LEVELS = ["option", "define", "site", "env", "env-alternate", "profile"]
EXPECTED_SOURCE = {
    "option": "S3 credentials from the mount option aws.accessKeyId (--option/-o)",
    "define": "S3 credentials from -D aws.accessKeyId on the command line",
    "site": "S3 credentials from the site file {conf}/alluxio-site.properties:1",
    "env": "S3 credentials from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
    "env-alternate": "S3 credentials from the environment (AWS_ACCESS_KEY/AWS_SECRET_KEY)",
    "profile": "S3 credentials from the profile file {home}/.aws/credentials (profile s3fuse-test)",
}


@dataclass
class Chain:
    """Where each level of the chain puts its key pair, as arguments of mount_factory."""

    home: Path
    conf: Path
    options: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def place(self, level: str, key: str, secret: str) -> None:
        if level == "option":
            self.options += [f"aws.accessKeyId={key}", f"aws.secretKey={secret}"]
        elif level == "define":
            self.args += ["-D", f"aws.accessKeyId={key}", "-D", f"aws.secretKey={secret}"]
        elif level == "site":
            (self.conf / "alluxio-site.properties").write_text(f"aws.accessKeyId={key}\naws.secretKey={secret}\n")
        elif level == "env":
            self.env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        elif level == "env-alternate":
            self.env.update(AWS_ACCESS_KEY=key, AWS_SECRET_KEY=secret)
        elif level == "profile":  # a named profile chosen by AWS_PROFILE; the default profile is never right
            (self.home / ".aws").mkdir(exist_ok=True)
            (self.home / ".aws" / "credentials").write_text(
                f"[default]\naws_access_key_id = {WRONG_KEY}\naws_secret_access_key = {WRONG_SECRET}\n\n"
                f"[s3fuse-test]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
            self.env["AWS_PROFILE"] = "s3fuse-test"

    def mount_env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "S3FUSE_CONF_DIR": str(self.conf), **self.env}


def chain_for(tmp_path: Path, level: str, at_level: tuple[str, str], below: tuple[str, str]) -> Chain:
    """`at_level` at `level`, `below` at every level after it; nothing above it."""
    chain = Chain(tmp_path / "home", tmp_path / "conf")
    chain.home.mkdir()
    chain.conf.mkdir()
    chain.place(level, *at_level)
    # the environment's two spellings are one level: only the one under test is set
    for lower in LEVELS[LEVELS.index(level) + 1:]:
        if not (level == "env" and lower == "env-alternate"):
            chain.place(lower, *below)
    return chain


def seed(auth: AuthServer, bucket: str) -> None:
    client = auth.server.client()
    client.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello through the chain\n")
    client.put_object(Bucket=bucket, Key="denied/secret.txt", Body=b"not for you\n")


@pytest.mark.parametrize("level", LEVELS)
def test_each_source_wins_over_every_source_below_it(mount_factory: MountFactory, auth: AuthServer,
                                                     tmp_path: Path, level: str) -> None:
    bucket = auth.new_bucket()
    seed(auth, bucket)
    right = (auth.server.access_key, auth.server.secret_key)
    with metadata_service([auth.instance_credentials(timedelta(hours=6))]) as imds:  # the lowest level: valid
        chain = chain_for(tmp_path, level, right, (WRONG_KEY, WRONG_SECRET))
        chain.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.endpoint
        mounted = mount_factory(*chain.options, server=auth.keyless, bucket_name=bucket, args=tuple(chain.args),
                                env=chain.mount_env())
        assert (mounted.path / "hello.txt").read_bytes() == b"hello through the chain\n"
        (mounted.path / "written.txt").write_bytes(b"w")
        assert auth.server.client().get_object(Bucket=bucket, Key="written.txt")["Body"].read() == b"w"
        assert imds.served == 0  # never consulted: a higher level had credentials
    log = mounted.log_text()
    assert EXPECTED_SOURCE[level].format(conf=chain.conf, home=chain.home) in log
    assert auth.server.secret_key not in log and WRONG_SECRET not in log


@pytest.mark.parametrize("level", LEVELS)
def test_a_wrong_key_at_a_level_is_not_rescued_by_the_levels_below(mount_factory: MountFactory, auth: AuthServer,
                                                                   tmp_path: Path, level: str) -> None:
    bucket = auth.new_bucket()
    right = (auth.server.access_key, auth.server.secret_key)
    with metadata_service([auth.instance_credentials(timedelta(hours=6))]) as imds:
        chain = chain_for(tmp_path, level, (WRONG_KEY, WRONG_SECRET), right)
        chain.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.endpoint
        with pytest.raises(RuntimeError, match="s3fuse exited") as failed:
            mount_factory(*chain.options, server=auth.keyless, bucket_name=bucket, args=tuple(chain.args),
                          env=chain.mount_env())
    message = str(failed.value)
    source = EXPECTED_SOURCE[level].format(conf=chain.conf, home=chain.home)
    assert source in message
    # the start error names the request, the bucket and what to check, with the source of the credentials
    assert f"cannot use bucket {bucket!r}" in message
    assert "check 1. the credentials (" + source.removeprefix("S3 credentials from ") in message
    assert WRONG_SECRET not in message and auth.server.secret_key not in message


def test_instance_profile_over_imdsv2_is_renewed_before_it_expires(mount_factory: MountFactory, auth: AuthServer,
                                                                   tmp_path: Path) -> None:
    """The metadata service first hands out credentials that expire in 5 minutes (inside botocore's 15-minute
    renewal window) and are not valid at the server, then valid ones, also short-lived. The mount works only if
    credentials are renewed before use rather than frozen when the mount starts, and renewal goes on."""
    bucket = auth.new_bucket()
    seed(auth, bucket)
    issued = auth.instance_credentials(timedelta(minutes=5))
    stale = replace(issued, access_key=WRONG_KEY, secret_key=WRONG_SECRET, expiry_format=EXPIRY_NOT_EXTENDED)
    fresh = replace(issued, expiry_format=EXPIRY_NOT_EXTENDED)
    home, conf = tmp_path / "home", tmp_path / "conf"
    home.mkdir()
    conf.mkdir()
    shutil.copy(LOGGING_EXAMPLE, conf / "logging.conf")  # request-level logs on: tokens must still not show
    with metadata_service([stale, fresh]) as imds:
        mounted = mount_factory(server=auth.keyless, bucket_name=bucket, env={
            "HOME": str(home), "S3FUSE_CONF_DIR": str(conf), "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint})
        assert (mounted.path / "hello.txt").read_bytes() == b"hello through the chain\n"
        served = imds.served
        assert served >= 2  # the stale credentials were replaced before the first request
        time.sleep(CREDENTIALS_REUSE)  # as long as s3fuse's own GETs and PUTs sign with the same credentials
        (mounted.path / "written.txt").write_bytes(b"w")
        assert auth.server.client().get_object(Bucket=bucket, Key="written.txt")["Body"].read() == b"w"
        assert imds.served > served  # and short-lived ones keep being renewed
        assert imds.refused == 0  # every metadata read carried an IMDSv2 session token
    log = mounted.log_text()
    assert f"S3 credentials from the EC2 instance profile (IMDSv2 at {imds.endpoint}" in log
    assert f"access key {issued.access_key[:4]}...{issued.access_key[-4:]}" in log  # the renewed, valid key
    assert "Sending http request" in log  # the debug logging was on
    for secret in (issued.secret_key, stale.secret_key, issued.token):
        assert not secret or secret not in log


def test_fstab_style_o_options_are_the_mount_option_level(auth: AuthServer, tmp_path: Path,
                                                          public_dir: Path) -> None:
    """`mount.alluxio-s3 ... -o aws.accessKeyId=...` (what an fstab line passes) wins over the site file and the
    environment, like `--option`."""
    bucket = auth.new_bucket()
    seed(auth, bucket)
    chain = chain_for(tmp_path, "site", (WRONG_KEY, WRONG_SECRET), (WRONG_KEY, WRONG_SECRET))
    options = [f"aws.accessKeyId={auth.server.access_key}", f"aws.secretKey={auth.server.secret_key}",
               *auth.keyless.mount_options(), f"alluxio.user.client.cache.dirs={tmp_path / 'cache'}",
               f"alluxio.tmp.dirs={tmp_path / 'staging'}"]
    mountpoint = Path(tempfile.mkdtemp(prefix="fstab-", dir=public_dir))
    logs = tmp_path / "logs"
    helper = Path(sys.executable).parent / "mount.alluxio-s3"
    result = subprocess.run([str(helper), f"s3://{bucket}/", str(mountpoint), "-o", "_netdev," + ",".join(options)],
                            capture_output=True, text=True, timeout=60,
                            env=clean_aws_environment({**chain.mount_env(), "S3FUSE_LOG_DIR": str(logs)}))
    try:
        assert result.returncode == 0, result.stderr
        assert (mountpoint / "hello.txt").read_bytes() == b"hello through the chain\n"
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
    log = "".join(path.read_text() for path in logs.glob("*.log"))
    assert EXPECTED_SOURCE["option"] in log


# ---------------------------------------------------------------------------------------------- 403


def test_a_403_is_eacces_with_one_log_line_saying_what_to_check(mount_factory: MountFactory,
                                                                auth: AuthServer) -> None:
    bucket = auth.new_bucket()
    seed(auth, bucket)
    mounted = mount_factory(server=auth.server, bucket_name=bucket)
    assert (mounted.path / "hello.txt").read_bytes() == b"hello through the chain\n"
    assert os.listdir(mounted.path / "denied") == ["secret.txt"]  # listing is allowed; it gives the attributes
    assert os.stat(mounted.path / "denied" / "secret.txt").st_size == len(b"not for you\n")
    with pytest.raises(PermissionError) as denied:
        (mounted.path / "denied" / "secret.txt").read_bytes()
    assert denied.value.errno == errno.EACCES
    lines = [line for line in mounted.log_text().splitlines() if "denied/secret.txt" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"GetObject s3://{bucket}/denied/secret.txt" in line
    assert "check 1. the credentials (the mount option aws.accessKeyId (--option/-o)" in line
    assert "2. that this AWS user may access the bucket and its objects" in line


# ---------------------------------------------------------------------------------------------- ownership


def bucket_owner(mounted: Mounted) -> dict[str, str]:
    owner: dict[str, str] = mounted.client().get_bucket_acl(Bucket=mounted.bucket)["Owner"]
    return owner


def seed_tree(server: LocalS3, bucket: str) -> None:
    """Objects made in S3, not through the mount: the mount's identity is all they show."""
    server.client().put_object(Bucket=bucket, Key="dir/file", Body=b"x")


def modes(root: Path) -> set[int]:
    return {stat.S_IMODE(os.stat(path).st_mode) for path in (root, root / "dir", root / "dir" / "file")}


def remount(mount_factory: MountFactory, mounted: Mounted, *options: str, **kwargs: object) -> Mounted:
    mounted.unmount()
    return mount_factory(*options, **kwargs)


def test_owner_from_the_bucket_acl_mapped_to_a_local_user(mount_factory: MountFactory, s3_server: LocalS3,
                                                          bucket: str) -> None:
    seed_tree(s3_server, bucket)
    probe = mount_factory()
    owner = bucket_owner(probe)
    # the owner's display name ("webfile" on moto, "s3fuse tests" on RGW) is no local user: documented fallback
    assert modes(probe.path) == {0o700}  # the owner has FULL_CONTROL
    assert os.stat(probe.path / "dir" / "file").st_uid == os.getuid()
    assert f"S3 owner {owner['DisplayName']!r} is not a local user" in probe.log_text()
    mapped = remount(mount_factory, probe, f"alluxio.underfs.s3.owner.id.to.username.mapping=other=x;"
                                           f"{owner['ID']}=nobody")
    for path in (mapped.path, mapped.path / "dir", mapped.path / "dir" / "file"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)  # nobody's primary group: group = owner
    assert modes(mapped.path) == {0o700}


def test_a_read_only_grant_gives_0500(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    seed_tree(s3_server, bucket)
    mounted = mount_factory()
    assert modes(mounted.path) == {0o700}
    owner = bucket_owner(mounted)
    mounted.client().put_bucket_acl(Bucket=mounted.bucket, AccessControlPolicy={
        "Owner": owner, "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "READ"}]})
    read_only = remount(mount_factory, mounted)
    assert modes(read_only.path) == {0o500}


def crafted_acl(owner_id: str, display_name: str | None, grants: list[tuple[str, str]]) -> bytes:
    """A GetBucketAcl answer for owners neither server has (one without a display name)."""
    name = f"<DisplayName>{display_name}</DisplayName>" if display_name is not None else ""
    grant_xml = "".join(
        f'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="{kind}">'
        + (f"<ID>{who}</ID>" if kind == "CanonicalUser" else f"<URI>{who}</URI>")
        + f"</Grantee><Permission>{permission}</Permission></Grant>"
        for kind, who, permission in ((("CanonicalUser", g[0], g[1]) if not g[0].startswith("http")
                                       else ("Group", g[0], g[1])) for g in grants))
    return (f'<?xml version="1.0" encoding="UTF-8"?><AccessControlPolicy '
            f'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>{owner_id}</ID>{name}</Owner>'
            f"<AccessControlList>{grant_xml}</AccessControlList></AccessControlPolicy>").encode()


@pytest.mark.parametrize(("display_name", "mapping", "grants", "owner", "uid", "mode"), [
    # no display name: the canonical id is the owner's name; unknown locally: the documented fallback
    (None, "", [("c0ffee", "FULL_CONTROL")], "c0ffee", os.getuid(), 0o700),
    # ... and the mapping turns that id into a local user
    (None, "c0ffee=nobody", [("c0ffee", "READ")], "nobody", NOBODY, 0o500),
    # a display name that is a local user resolves to it; grants add up, AllUsers counts as the owner
    ("nobody", "", [("c0ffee", "WRITE"), ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")], "nobody",
     NOBODY, 0o700),
    # the mapping wins over the display name
    ("nobody", "c0ffee=root", [("someone-else", "FULL_CONTROL"), ("c0ffee", "READ")], "root", 0, 0o500),
])
def test_owner_name_and_mode_rules(mount_factory: MountFactory, s3_server: LocalS3, bucket: str,
                                   display_name: str | None, mapping: str, grants: list[tuple[str, str]],
                                   owner: str, uid: int, mode: int) -> None:
    acl = crafted_acl("c0ffee", display_name, grants)

    def answer_acl(seen: Seen) -> Answer | None:
        return Answer(200, acl) if seen.operation == "GetBucketAcl" else None

    with recording_proxy(s3_server.endpoint, bucket, answer_acl) as proxy:
        options = [f"alluxio.underfs.s3.endpoint={proxy.endpoint}"]
        if mapping:
            options.append(f"alluxio.underfs.s3.owner.id.to.username.mapping={mapping}")
        mounted = mount_factory(*options)
        st = os.stat(mounted.path)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, mode)
        (mounted.path / "f").write_bytes(b"x")
        assert os.stat(mounted.path / "f").st_size == 1
        assert proxy.count("GetBucketAcl") == 1
        assert proxy.count("GetObjectAcl") == 0  # object ACLs are ignored
    assert f"bucket ACL: owner {owner!r} (canonical id c0ffee)" in mounted.log_text()


def test_inherit_acl_false_sends_no_acl_request_and_uses_the_default_mode(mount_factory: MountFactory,
                                                                          s3_server: LocalS3, bucket: str) -> None:
    seed_tree(s3_server, bucket)
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        endpoint = f"alluxio.underfs.s3.endpoint={proxy.endpoint}"
        inherited = mount_factory(endpoint, "alluxio.underfs.s3.default.mode=0750")
        assert proxy.count("GetBucketAcl") == 1  # the control: inherit.acl=true reads it
        assert modes(inherited.path) == {0o700}  # and default.mode does not apply then
        proxy.reset()
        plain = remount(mount_factory, inherited, endpoint, "alluxio.underfs.s3.inherit.acl=false",
                        "alluxio.underfs.s3.default.mode=0750")
        assert modes(plain.path) == {0o750}
        assert os.stat(plain.path).st_uid == os.getuid()
        defaulted = remount(mount_factory, plain, endpoint, "alluxio.underfs.s3.inherit.acl=false")
        assert modes(defaulted.path) == {0o700}
        assert proxy.count("GetBucketAcl") == 0
        assert proxy.count("HeadBucket") == 2  # the two mounts did reach the server through the proxy


# ---------------------------------------------------------------------------------------------- other users


def as_user(uid: int, code: str) -> int:
    """Run `code` (Python, `os` imported) as another user; 0 on success, else the errno it raised."""
    script = f"import os, sys\ntry:\n    {code}\nexcept OSError as e:\n    sys.exit(e.errno)\n"
    result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", SYSTEM_PYTHON, "-c",
                             script], capture_output=True, text=True, timeout=60)
    return result.returncode


def access_as(uid: int, root: Path) -> tuple[int, int, int]:
    """(list the root, read a file, create a file) as `uid`: 0 or the errno of each."""
    name = f"new-{uuid.uuid4().hex[:8]}"
    return (as_user(uid, f"os.listdir({str(root)!r})"),
            as_user(uid, f"open({str(root / 'data.txt')!r}, 'rb').read()"),
            as_user(uid, f"open({str(root / name)!r}, 'wb').write(b'x')"))


def test_another_user_is_refused_a_0700_mount_and_let_into_a_shared_one(mount_factory: MountFactory,
                                                                        s3_server: LocalS3, bucket: str) -> None:
    """The guide's presto/john example, with the kernel enforcing the modes (default_permissions)."""
    s3_server.client().put_object(Bucket=bucket, Key="data.txt", Body=b"data")
    private = mount_factory(args=("--allow-other",))
    assert access_as(NOBODY, private.path) == (errno.EACCES, errno.EACCES, errno.EACCES)
    owner_id = bucket_owner(private)["ID"]
    # the owner mapped to a local user ("john"): that user gets in, another ("presto") still does not
    john = remount(mount_factory, private, f"alluxio.underfs.s3.owner.id.to.username.mapping={owner_id}=nobody",
                   args=("--allow-other",))
    assert access_as(NOBODY, john.path) == (0, 0, 0)
    assert access_as(DAEMON_UID, john.path) == (errno.EACCES, errno.EACCES, errno.EACCES)
    # shared by the property (allow_other comes with it) or by --shared: everyone gets rwx
    by_property = remount(mount_factory, john, "alluxio.master.mount.table.root.shared=true")
    assert stat.S_IMODE(os.stat(by_property.path).st_mode) == 0o777
    assert access_as(DAEMON_UID, by_property.path) == (0, 0, 0)
    by_flag = remount(mount_factory, by_property, args=("--shared",))
    assert access_as(NOBODY, by_flag.path) == (0, 0, 0)
    # the guide's second option: no ACL, a default mode that lets others read
    readable = remount(mount_factory, by_flag, "alluxio.underfs.s3.inherit.acl=false",
                       "alluxio.underfs.s3.default.mode=0755", args=("--allow-other",))
    assert access_as(NOBODY, readable.path) == (0, 0, errno.EACCES)
