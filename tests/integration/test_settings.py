"""Connection settings through a real mount: endpoint and region, URL style, HTTP proxy, signer, SSE over https,
timeouts, concurrency bounds, and the request-level debug log. Each test observes the setting on the wire (a
recording proxy between s3fuse and the server) or at the server, and would fail without it."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s3fuse.embedded import LocalS3, free_port
from tests.conftest import MountFactory
from tests.support.forward_proxy import Action, Hold, RecordingProxy, Rule, Seen, Stall, Trickle, recording_proxy
from tests.support.tls import Certificates, make_certificates, tls_moto

MiB = 1 << 20
LOGGING_EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "logging.conf.example"


def host_port(endpoint: str) -> str:
    return endpoint.split("://", 1)[1]


def only_on_moto(server: LocalS3, why: str) -> None:
    if server.name != "moto":
        pytest.skip(why)


# ---------------------------------------------------------------------------------------------- endpoint, region


def test_endpoint_as_host_port_means_http(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="a.txt", Body=b"over plain http")
    mounted = mount_factory(f"alluxio.underfs.s3.endpoint={host_port(s3_server.endpoint)}")
    assert (mounted.path / "a.txt").read_bytes() == b"over plain http"


@pytest.mark.parametrize("name", ["alluxio.underfs.s3.endpoint.region", "alluxio.underfs.s3.region"])
def test_region_signs_every_request(mount_factory: MountFactory, s3_server: LocalS3, bucket: str,
                                    name: str) -> None:
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}", f"{name}=eu-central-1")
        (mounted.path / "f").write_bytes(b"signed for eu-central-1")
        assert (mounted.path / "f").read_bytes() == b"signed for eu-central-1"
        scopes = {re.sub(r".*Credential=[^/]+/\d+/([^/]+)/s3/aws4_request.*", r"\1", seen.headers["authorization"])
                  for seen in proxy.seen}
    assert scopes == {"eu-central-1"}


# ---------------------------------------------------------------------------------------------- URL style, proxy


def through_proxy(mount_factory: MountFactory, proxy: RecordingProxy, dead_port: int, *options: str) -> Path:
    """Mount with an endpoint nobody listens on (`localhost:dead_port`, or a subdomain of localhost that does not
    resolve) and the recording proxy as HTTP proxy: only requests that go through the proxy can succeed."""
    return mount_factory(f"alluxio.underfs.s3.endpoint=http://localhost:{dead_port}",
                         "alluxio.underfs.s3.proxy.host=127.0.0.1", f"alluxio.underfs.s3.proxy.port={proxy.port}",
                         *options).path


def exercise(root: Path) -> None:
    """Every kind of request a mount makes: list, read, write, copy (rename), delete."""
    assert "seeded.txt" in os.listdir(root)
    assert (root / "seeded.txt").read_bytes() == b"seed"
    (root / "new.txt").write_bytes(b"new")
    os.rename(root / "new.txt", root / "renamed.txt")
    os.unlink(root / "renamed.txt")


def test_every_request_goes_through_the_http_proxy_path_style(mount_factory: MountFactory, s3_server: LocalS3,
                                                               bucket: str) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="seeded.txt", Body=b"seed")
    dead = free_port()
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        root = through_proxy(mount_factory, proxy, dead, "alluxio.underfs.s3.disable.dns.buckets=true")
        exercise(root)
        seen = list(proxy.seen)
    assert {"HeadBucket", "GetBucketAcl", "ListObjectsV2", "GetObject", "PutObject", "CopyObject",
            "DeleteObject"} <= {s.operation for s in seen}
    for request in seen:  # absolute URLs: sent to a proxy; path style: the bucket is the first path segment
        assert request.target.startswith(f"http://localhost:{dead}/{bucket}"), request.target
        assert request.host == f"localhost:{dead}"
    # the control: the same endpoint without the proxy cannot be reached
    with pytest.raises(RuntimeError, match="s3fuse exited"):
        mount_factory(f"alluxio.underfs.s3.endpoint=http://localhost:{dead}", "alluxio.underfs.s3.max.error.retry=0")


def test_virtual_host_style_is_the_default(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="seeded.txt", Body=b"seed")
    dead = free_port()
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        # the test server's mount options ask for path style: take that back to the default
        root = through_proxy(mount_factory, proxy, dead, "alluxio.underfs.s3.disable.dns.buckets=false")
        exercise(root)
        seen = list(proxy.seen)
    assert "GetObject" in {s.operation for s in seen}
    for request in seen:  # the bucket is in the host name, never in the path
        assert request.target.startswith(f"http://{bucket}.localhost:{dead}/"), request.target
        assert request.host == f"{bucket}.localhost:{dead}"
        assert not request.path.startswith(f"/{bucket}")


def test_sigv2_signs_virtual_host_requests_too(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    """SigV2 signs the path-style path of a virtual-host request (the bucket is in the host); RGW checks it, for
    botocore's requests and for the block cache's own GETs alike."""
    s3_server.client().put_object(Bucket=bucket, Key="seeded.txt", Body=b"seed")
    dead = free_port()
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        root = through_proxy(mount_factory, proxy, dead, "alluxio.underfs.s3.disable.dns.buckets=false",
                             "alluxio.underfs.s3.signer.algorithm=S3SignerType")
        exercise(root)
        seen = list(proxy.seen)
    assert "GetObject" in {s.operation for s in seen}
    assert {request.headers["authorization"].split(" ", 1)[0] for request in seen} == {"AWS"}
    assert all(request.host == f"{bucket}.localhost:{dead}" for request in seen)


# ---------------------------------------------------------------------------------------------- signer


@pytest.mark.parametrize(("signer", "scheme"), [("S3SignerType", "AWS "), ("", "AWS4-HMAC-SHA256 ")])
def test_signer_algorithm(mount_factory: MountFactory, s3_server: LocalS3, bucket: str, signer: str,
                          scheme: str) -> None:
    """RGW checks the signatures, so there this is also proof that they are right."""
    s3_server.client().put_object(Bucket=bucket, Key="seeded.txt", Body=b"seed")
    options = [f"alluxio.underfs.s3.signer.algorithm={signer}"] if signer else []
    with recording_proxy(s3_server.endpoint, bucket) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}", *options)
        exercise(mounted.path)
        schemes = {seen.headers["authorization"].split(" ", 1)[0] + " " for seen in proxy.seen}
    assert schemes == {scheme}


# ---------------------------------------------------------------------------------------------- https, SSE

NO_TLS = "the test RGW serves plain http only (scripts/rgw-ceph.conf.in has no TLS frontend)"


@pytest.fixture
def tls_server(s3_server: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[LocalS3, Certificates]]:
    """moto on https with a certificate from a test CA; the test's own S3 client trusts that CA."""
    only_on_moto(s3_server, NO_TLS)
    certificates = make_certificates(tmp_path / "tls")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificates.ca))
    with tls_moto(certificates, tmp_path / "tls-moto.log") as server:
        yield server, certificates


def test_https_endpoint_verified_with_the_ca_bundle(mount_factory: MountFactory,
                                                    tls_server: tuple[LocalS3, Certificates]) -> None:
    server, certificates = tls_server
    server.client().create_bucket(Bucket="tls-bucket")
    server.client().put_object(Bucket="tls-bucket", Key="a.txt", Body=b"over https")
    port = server.endpoint.rsplit(":", 1)[1]
    trusted = f"aws.caBundle={certificates.ca}"
    by_url = mount_factory(f"alluxio.underfs.s3.endpoint=https://localhost:{port}", trusted, server=server,
                           bucket_name="tls-bucket")
    assert (by_url.path / "a.txt").read_bytes() == b"over https"
    by_flag = mount_factory(f"alluxio.underfs.s3.endpoint=127.0.0.1:{port}",
                            "alluxio.underfs.s3.secure.http.enabled=true", trusted, server=server,
                            bucket_name="tls-bucket")
    assert (by_flag.path / "a.txt").read_bytes() == b"over https"
    with pytest.raises(RuntimeError, match=r"(?i)certificate verify failed"):  # without the bundle: refused
        mount_factory(f"alluxio.underfs.s3.endpoint=https://localhost:{port}", server=server,
                      bucket_name="tls-bucket")


@pytest.fixture
def sse_server(s3_server: LocalS3, request: pytest.FixtureRequest) -> tuple[LocalS3, Certificates]:
    only_on_moto(s3_server, "RGW 16.2 has no SSE-S3 backend (it accepts AES256 and stores plaintext), and " + NO_TLS)
    found: tuple[LocalS3, Certificates] = request.getfixturevalue("tls_server")
    return found


def test_sse_s3_on_put_multipart_and_copy_and_https_enforced(mount_factory: MountFactory,
                                                             sse_server: tuple[LocalS3, Certificates]) -> None:
    server, certificates = sse_server
    client = server.client()
    client.create_bucket(Bucket="sse-bucket")
    client.put_object(Bucket="sse-bucket", Key="plain.txt", Body=b"not through the mount")
    endpoint = f"alluxio.underfs.s3.endpoint={host_port(server.endpoint)}"  # no scheme: SSE must choose https
    mounted = mount_factory(endpoint, "alluxio.underfs.s3.server.side.encryption.enabled=true",
                            f"aws.caBundle={certificates.ca}", "alluxio.underfs.s3.multipart.upload.threshold=5MB",
                            "alluxio.underfs.s3.streaming.upload.partition.size=5MB", server=server,
                            bucket_name="sse-bucket")
    (mounted.path / "small.txt").write_bytes(b"small")
    big = os.urandom(11 * MiB)
    (mounted.path / "big.bin").write_bytes(big)
    os.mkdir(mounted.path / "dir")
    os.rename(mounted.path / "small.txt", mounted.path / "dir" / "moved.txt")
    encryption = {key: client.head_object(Bucket="sse-bucket", Key=key).get("ServerSideEncryption")
                  for key in ("big.bin", "dir/", "dir/moved.txt", "plain.txt")}
    assert encryption == {"big.bin": "AES256", "dir/": "AES256", "dir/moved.txt": "AES256", "plain.txt": None}
    assert client.head_object(Bucket="sse-bucket", Key="big.bin")["ETag"].endswith('-3"')  # it was multipart
    assert (mounted.path / "big.bin").read_bytes() == big
    # the control: without SSE (or secure.http) the same host:port means http, which this server does not speak
    with pytest.raises(RuntimeError, match="s3fuse exited"):
        mount_factory(endpoint, f"aws.caBundle={certificates.ca}", "alluxio.underfs.s3.max.error.retry=0",
                      server=server, bucket_name="sse-bucket")


def test_sse_refuses_an_http_endpoint(mount_factory: MountFactory, s3_server: LocalS3) -> None:
    with pytest.raises(RuntimeError, match="requires https"):
        mount_factory("alluxio.underfs.s3.server.side.encryption.enabled=true")  # the endpoint is http://...


# ---------------------------------------------------------------------------------------------- timeouts


def read_in_child(path: Path, limit: float = 40.0) -> tuple[int, float]:
    """Read a file in another process (a read stuck in FUSE cannot be abandoned by a thread); the errno (0 for
    success, -1 when it had to be killed) and how long it took."""
    script = ("import sys\ntry:\n    open(sys.argv[1], 'rb').read()\nexcept OSError as e:\n    sys.exit(e.errno)\n")
    start = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - start
    return result.returncode, time.monotonic() - start


def test_socket_timeout_ends_a_stalled_request(mount_factory: MountFactory, s3_server: LocalS3,
                                               bucket: str) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="stalled.bin", Body=b"s" * 64)
    s3_server.client().put_object(Bucket=bucket, Key="fine.bin", Body=b"f" * 64)

    def rule(seen: Seen) -> Action | None:
        return Stall() if seen.operation == "GetObject" and seen.path.endswith("/stalled.bin") else None

    with recording_proxy(s3_server.endpoint, bucket, rule) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}",
                                "alluxio.underfs.s3.socket.timeout=2sec", "alluxio.underfs.s3.request.timeout=0",
                                "alluxio.underfs.s3.max.error.retry=0")
        assert (mounted.path / "fine.bin").read_bytes() == b"f" * 64
        status, took = read_in_child(mounted.path / "stalled.bin")
    assert status == errno.EIO  # an error (default 50sec: still waiting when the child is killed)
    assert took < 20  # about 2 s; a generous bound, not a hang
    assert "ReadTimeoutError" in mounted.log_text() or "Timeout" in mounted.log_text()


def test_request_timeout_ends_a_request_that_trickles(mount_factory: MountFactory, s3_server: LocalS3,
                                                      bucket: str) -> None:
    """One byte every half second never trips the socket timeout; only the deadline on the request ends it."""
    s3_server.client().put_object(Bucket=bucket, Key="trickled.bin", Body=b"t" * 80)

    def rule(seen: Seen) -> Action | None:
        return Trickle(0.5) if seen.operation == "GetObject" and seen.path.endswith("/trickled.bin") else None

    with recording_proxy(s3_server.endpoint, bucket, rule) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}",
                                "alluxio.underfs.s3.request.timeout=2sec", "alluxio.underfs.s3.max.error.retry=0")
        status, took = read_in_child(mounted.path / "trickled.bin")
    assert status == errno.EIO  # without the deadline: 40 s of trickle, the child is killed first
    assert took < 20


# ---------------------------------------------------------------------------------------------- concurrency


def held(operation: str, armed: list[bool], seconds: float = 0.4) -> Rule:
    """A rule that holds every `operation` request once armed, so concurrent ones overlap in the proxy."""
    def rule(seen: Seen) -> Action | None:
        return Hold(seconds) if armed and seen.operation == operation else None
    return rule


def test_threads_max_bounds_all_requests(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    client = s3_server.client()
    for n in range(8):
        client.put_object(Bucket=bucket, Key=f"f{n}", Body=bytes([n]) * 65536)
    armed: list[bool] = []
    with recording_proxy(s3_server.endpoint, bucket, held("GetObject", armed)) as proxy:
        # admin + upload = 2 <= 3, so threads.max is not raised (Alluxio's rule, see test_config)
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}", "alluxio.underfs.s3.threads.max=3",
                                "alluxio.underfs.s3.admin.threads.max=1", "alluxio.underfs.s3.upload.threads.max=1")
        os.listdir(mounted.path)
        proxy.reset()
        armed.append(True)
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda n: (mounted.path / f"f{n}").read_bytes(), range(8)))
        assert bodies == [bytes([n]) * 65536 for n in range(8)]
        assert proxy.peak["GetObject"] == 3  # reached, never exceeded (the default, 40, would let 8 through)
        assert proxy.peak_total == 3


def test_admin_threads_max_bounds_metadata_requests(mount_factory: MountFactory, s3_server: LocalS3,
                                                    bucket: str) -> None:
    """Unlinks in eight directories (the kernel serialises changes within one directory)."""
    client = s3_server.client()
    for n in range(8):
        client.put_object(Bucket=bucket, Key=f"d{n}/", Body=b"")  # a marker: the directory outlives its file
        client.put_object(Bucket=bucket, Key=f"d{n}/f", Body=b"x")
    armed: list[bool] = []
    with recording_proxy(s3_server.endpoint, bucket, held("DeleteObject", armed)) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}",
                                "alluxio.underfs.s3.admin.threads.max=2")
        assert [os.listdir(mounted.path / f"d{n}") for n in range(8)] == [["f"]] * 8
        proxy.reset()
        armed.append(True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: os.unlink(mounted.path / f"d{n}" / "f"), range(8)))
        assert proxy.count("DeleteObject") == 8
        assert proxy.peak["DeleteObject"] == 2  # the default, 20, would let 8 through
        assert proxy.peak_total == 2  # the unlinks' other requests (listings) are metadata requests too
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]) == [f"d{n}/" for n in range(8)]


def test_upload_threads_max_bounds_part_uploads(mount_factory: MountFactory, s3_server: LocalS3,
                                                bucket: str) -> None:
    armed = [True]
    with recording_proxy(s3_server.endpoint, bucket, held("UploadPart", armed)) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}",
                                "alluxio.underfs.s3.upload.threads.max=2",
                                "alluxio.underfs.s3.multipart.upload.threshold=5MB",
                                "alluxio.underfs.s3.streaming.upload.partition.size=5MB")
        data = os.urandom(20 * MiB)
        (mounted.path / "big.bin").write_bytes(data)
        assert proxy.count("UploadPart") == 4
        assert proxy.peak["UploadPart"] == 2  # the default, 20, would let all 4 through
    assert mounted.client().get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data


def test_service_threads_bound_the_copies_of_a_directory_rename(mount_factory: MountFactory, s3_server: LocalS3,
                                                                bucket: str) -> None:
    client = s3_server.client()
    for n in range(8):
        client.put_object(Bucket=bucket, Key=f"src/f{n}", Body=f"{n}".encode())
    armed: list[bool] = []
    with recording_proxy(s3_server.endpoint, bucket, held("CopyObject", armed)) as proxy:
        mounted = mount_factory(f"alluxio.underfs.s3.endpoint={proxy.endpoint}",
                                "alluxio.underfs.object.store.service.threads=2")
        assert len(os.listdir(mounted.path / "src")) == 8
        armed.append(True)
        os.rename(mounted.path / "src", mounted.path / "dst")
        assert proxy.count("CopyObject") == 8
        assert proxy.peak["CopyObject"] == 2  # the default, 20, would copy all 8 at once
    assert sorted(os.listdir(mounted.path / "dst")) == [f"f{n}" for n in range(8)]


# ---------------------------------------------------------------------------------------------- logging


def test_logging_conf_turns_on_request_logs_with_secrets_redacted(mount_factory: MountFactory, s3_server: LocalS3,
                                                                  bucket: str, tmp_path: Path) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="a.txt", Body=b"logged")
    quiet = mount_factory()
    assert (quiet.path / "a.txt").read_bytes() == b"logged"
    assert "Sending http request" not in quiet.log_text()  # the default: no request-level logs
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(LOGGING_EXAMPLE, conf / "logging.conf")
    loud = mount_factory(env={"S3FUSE_CONF_DIR": str(conf)})
    assert (loud.path / "a.txt").read_bytes() == b"logged"
    (loud.path / "b.txt").write_bytes(b"written")
    log = loud.log_text()
    # object data comes and goes through s3fuse's own GETs and PUTs (s3/ranged.py), which log each request
    assert re.search(r"s3fuse\.s3\.ranged: GET /\S*a\.txt bytes=0-5: 206 ", log)
    assert re.search(r"s3fuse\.s3\.ranged: PUT /\S*b\.txt: 200 OK, 7 bytes", log)
    assert "Sending http request" in log and "Response headers" in log
    assert s3_server.secret_key not in log
    assert not re.search(r"Signature=[0-9a-f]{16}", log)  # signatures would let a reader replay a request
    assert "Signature=<redacted>" in log
