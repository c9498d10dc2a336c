"""Stale multipart uploads: `s3fuse cleanup` once on demand, and the daemon at start and every interval; the
uploads a daemon still has in flight are never aborted."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from s3fuse.embedded import LocalS3, clean_aws_environment, free_port
from tests.conftest import BIN, MountFactory
from tests.integration.test_service import held_open
from tests.support.waiting import wait_until

MiB = 1 << 20


def uploads(client: Any, bucket: str) -> set[tuple[str, str]]:
    return {(u["Key"], u["UploadId"]) for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def start_upload(client: Any, bucket: str, key: str) -> tuple[str, str]:
    """An upload someone started and never finished (one part sent)."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    return key, upload_id


def cleanup(server: LocalS3, uri: str, *options: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "s3fuse"), "cleanup"]
    for option in [*server.mount_options(), "alluxio.master.web.port=0", *options]:
        command += ["--option", option]
    return subprocess.run([*command, uri], capture_output=True, text=True, timeout=120,
                          env=clean_aws_environment({"S3FUSE_CONF_DIR": str(tmp_path / "noconf")}))


def test_cleanup_command_aborts_stale_uploads_under_the_prefix(s3_server: LocalS3, bucket: str,
                                                               tmp_path: Path) -> None:
    client = s3_server.client()
    inside = {start_upload(client, bucket, "dir/a.bin"), start_upload(client, bucket, "dir/sub/b.bin")}
    outside = start_upload(client, bucket, "other/c.bin")
    initiated = {u["Initiated"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]}
    if all(datetime.now(UTC) - moment < timedelta(hours=1) for moment in initiated):  # moto says 2010 for all
        young = cleanup(s3_server, f"s3://{bucket}/dir", tmp_path=tmp_path)  # default clean age: 3 days
        assert young.returncode == 0, young.stderr
        assert "0 stale multipart upload(s) aborted" in young.stdout
        assert uploads(client, bucket) == {*inside, outside}
    every = cleanup(s3_server, f"s3://{bucket}/dir", "alluxio.underfs.s3.intermediate.upload.clean.age=0sec",
                    tmp_path=tmp_path)
    assert every.returncode == 0, every.stderr
    assert "2 stale multipart upload(s) aborted" in every.stdout
    assert f"aborted s3://{bucket}/dir/a.bin" in every.stdout
    assert uploads(client, bucket) == {outside}  # another prefix is not this mount's business


def test_cleanup_command_reports_a_missing_bucket(s3_server: LocalS3, tmp_path: Path) -> None:
    result = cleanup(s3_server, "s3://no-such-bucket-here/dir", tmp_path=tmp_path)
    assert result.returncode == 1
    assert "s3fuse cleanup: bucket 'no-such-bucket-here' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_daemon_cleanup_keeps_its_own_uploads_in_flight(mount_factory: MountFactory, s3_server: LocalS3,
                                                        bucket: str, tmp_path: Path) -> None:
    client = s3_server.client()
    stale = start_upload(client, bucket, "dir/stale.bin")
    port = free_port()
    mounted = mount_factory("alluxio.underfs.cleanup.enabled=true", "alluxio.underfs.cleanup.interval=1sec",
                            "alluxio.underfs.s3.intermediate.upload.clean.age=0sec",
                            "alluxio.underfs.s3.streaming.upload.enabled=true",
                            "alluxio.underfs.s3.streaming.upload.partition.size=5MB",
                            f"alluxio.master.web.port={port}", prefix="dir")
    wait_until(lambda: stale not in uploads(client, bucket), 60, what="the stale upload aborted at start")
    data = random.Random(8).randbytes(6 * MiB + 5)
    with held_open(mounted.path / "live.bin", data, push=True):
        wait_until(lambda: any(key == "dir/live.bin" for key, _ in uploads(client, bucket)), 60,
                   what="the streaming upload started")
        [live] = [u for u in uploads(client, bucket) if u[0] == "dir/live.bin"]
        passes = mounted.log_text().count("stale upload cleanup of")
        wait_until(lambda: mounted.log_text().count("stale upload cleanup of") >= passes + 2, 60,
                   what="two more cleanup passes")
        assert live in uploads(client, bucket)  # clean age 0, but this daemon is still writing it
        assert "kept 1 multipart upload(s)" in mounted.log_text()
        # on demand, with a clean age of 0: the running daemon's upload in flight is kept, a stale one is not
        later = start_upload(client, bucket, "dir/later.bin")
        result = cleanup(s3_server, f"s3://{bucket}/dir", "alluxio.underfs.s3.intermediate.upload.clean.age=0sec",
                         f"alluxio.master.web.port={port}", tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "1 in flight kept" in result.stdout, result.stdout + result.stderr + mounted.log_text()
        assert later not in uploads(client, bucket)
        assert live in uploads(client, bucket)
    body = client.get_object(Bucket=bucket, Key="dir/live.bin")["Body"].read()
    assert body == data
    assert uploads(client, bucket) == set()
