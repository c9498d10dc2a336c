"""S3 servers that check credentials, for the credential and identity tests.

moto accepts any key unless IAM enforcement is on (`INITIAL_NO_AUTH_ACTION_COUNT`), so for the moto backend this
starts a moto of its own that enforces it: an IAM user with an inline `s3:*` policy (denying GetObject under
`denied/`), its access key, and a role whose temporary credentials stand in for an instance profile's. Ceph RGW
checks credentials by itself, so for the RGW backend the session's server is used as it is. Either way a wrong key
pair is refused, which is what proves which credential source was used.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3

from s3fuse.embedded import LocalS3, moto_server
from tests.support.imds import RoleCredentials

FREE_ACTIONS = 50  # requests moto answers before enforcing: enough for the setup, the rest are used up
WRONG_KEY, WRONG_SECRET = "AKIAS3FUSEWRONGKEY00", "wrong-secret-key-0123456789"


@dataclass
class KeylessS3(LocalS3):
    """A server whose mount options carry no credentials, so a test chooses where they come from."""

    def mount_options(self) -> list[str]:
        return [option for option in super().mount_options()
                if not option.startswith(("aws.accessKeyId=", "aws.secretKey="))]


@dataclass
class AuthServer:
    """A server that refuses wrong credentials; `server` carries the one valid key pair."""

    server: LocalS3
    role: dict[str, Any] | None = None  # moto: the IAM role instance credentials are issued for

    @property
    def keyless(self) -> KeylessS3:
        return KeylessS3(self.server.endpoint, self.server.access_key, self.server.secret_key, self.server.region,
                         self.server.name)

    def new_bucket(self) -> str:
        """A fresh bucket whose objects under `denied/` the valid credentials may not read (moto: the IAM
        policy says so; RGW: a bucket policy, which RGW applies to the owner too)."""
        name = f"t-{uuid.uuid4().hex[:20]}"
        client = self.server.client()
        client.create_bucket(Bucket=name)
        if self.role is None:
            client.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                 "Resource": f"arn:aws:s3:::{name}/denied/*"}]}))
        return name

    def instance_credentials(self, lifetime: timedelta) -> RoleCredentials:
        """What an instance profile hands out: temporary role credentials with a session token on moto; RGW (no
        STS configured) only knows its static key pair, served with an empty token (botocore then signs
        without one)."""
        if self.role is None:
            return RoleCredentials(self.server.access_key, self.server.secret_key, "", lifetime)
        sts = boto3.client("sts", endpoint_url=self.server.endpoint, region_name=self.server.region,
                           aws_access_key_id=self.server.access_key, aws_secret_access_key=self.server.secret_key)
        issued = sts.assume_role(RoleArn=self.role["Arn"], RoleSessionName="s3fuse-instance")["Credentials"]
        return RoleCredentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"], lifetime)


def allow_s3(deny_prefix: str = "denied/") -> str:
    """s3:* (and sts:AssumeRole, so the test can issue role credentials) except reading under `deny_prefix`."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::*/{deny_prefix}*"},
    ]})


@contextlib.contextmanager
def iam_moto(log_path: Path) -> Iterator[AuthServer]:
    """moto enforcing IAM credentials, with one user (and one role) allowed s3:* except GetObject of denied/*."""
    with moto_server(log_path=str(log_path), extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": str(FREE_ACTIONS)}) as moto:
        iam = boto3.client("iam", endpoint_url=moto.endpoint, region_name=moto.region,
                           aws_access_key_id=moto.access_key, aws_secret_access_key=moto.secret_key)
        iam.create_user(UserName="s3fuse")
        iam.put_user_policy(UserName="s3fuse", PolicyName="s3", PolicyDocument=allow_s3())
        key = iam.create_access_key(UserName="s3fuse")["AccessKey"]
        trust = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
        role = iam.create_role(RoleName="s3fuse-instance", AssumeRolePolicyDocument=trust)["Role"]
        iam.put_role_policy(RoleName="s3fuse-instance", PolicyName="s3", PolicyDocument=allow_s3())
        for _ in range(FREE_ACTIONS):  # use up the unauthenticated requests: from here on keys are checked
            try:
                iam.list_users()
            except iam.exceptions.ClientError:
                break
        else:
            raise RuntimeError("moto did not start enforcing IAM credentials")
        yield AuthServer(LocalS3(moto.endpoint, key["AccessKeyId"], key["SecretAccessKey"], moto.region,
                                 name="moto-iam"), role)


@contextlib.contextmanager
def auth_server(backend: LocalS3, directory: Path) -> Iterator[AuthServer]:
    """The credential-checking counterpart of a test backend."""
    if backend.name == "moto":
        with iam_moto(directory / "moto-iam.log") as server:
            yield server
    else:
        yield AuthServer(backend)
