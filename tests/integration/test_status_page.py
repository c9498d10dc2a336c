"""The status page in a real headless Chromium (Debian's), `/metrics` scraped and parsed, and a taken port that
costs the page, never the mount."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from s3fuse.embedded import LocalS3, free_port
from tests.conftest import Mounted, MountFactory
from tests.support.proxy import Request

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("S3FUSE_ARTIFACTS", ROOT / "artifacts"))
MiB = 1 << 20
MOUNT_ROW_COLOR = (234, 245, 236)  # the background of a serving mount's row (web/page.py)


def fetch(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.headers.get("Content-Type", ""), reply.read().decode()


def failing_doomed_puts(request: Request) -> tuple[int, bytes] | None:
    if request.operation == "PutObject" and "doomed" in request.path:
        return 500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
    return None


def busy_mount(mount_factory: MountFactory, s3_server: LocalS3, bucket: str, port: int) -> Mounted:
    """A mount with some history: a file read twice, a file written, an upload that failed."""
    s3_server.client().put_object(Bucket=bucket, Key="reports/2026.csv", Body=os.urandom(2 * MiB))
    mounted = mount_factory(f"alluxio.master.web.port={port}", "alluxio.underfs.s3.max.error.retry=0",
                            "alluxio.user.client.cache.page.size=1MB", via_proxy=True)
    assert mounted.proxy is not None
    for _ in range(2):
        fd = os.open(mounted.path / "reports" / "2026.csv", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the second read must reach the daemon too
            while os.read(fd, 256 << 10):
                pass
        finally:
            os.close(fd)
    (mounted.path / "new.bin").write_bytes(os.urandom(MiB + 1))
    mounted.proxy.fault = failing_doomed_puts
    handle = open(mounted.path / "doomed.txt", "wb")
    handle.write(b"bytes that cannot be uploaded")
    with pytest.raises(OSError) as raised:
        handle.close()
    assert raised.value.errno == errno.EIO
    mounted.proxy.fault = None
    return mounted


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup installs it)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1200,900", *args],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})


def test_status_page_in_chromium(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    port = free_port()
    mounted = busy_mount(mount_factory, s3_server, bucket, port)
    url = f"http://127.0.0.1:{port}/"
    status, content_type, page = fetch(url)
    assert status == 200 and content_type.startswith("text/html")
    assert 'http-equiv="refresh"' in page  # it refreshes itself
    row = f'<tr class="mount"><td>{mounted.path}</td><td>s3://{bucket}/</td>'
    assert row in page
    assert "doomed.txt" in page  # the last errors
    # a real browser renders it: the DOM it built, and a screenshot
    dom = chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert row in dom.stdout and "<svg" in dom.stdout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"status-page-{s3_server.name}.png"
    shot.unlink(missing_ok=True)
    result = chromium(f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    check_screenshot(shot)


def check_screenshot(path: Path) -> None:
    """Not blank, and the mount row is drawn: a band of the row's colour with dark text on it."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    assert image.size == (1200, 900)
    assert len(image.getcolors(1 << 20) or []) > 50  # text, charts and panels, not an empty page
    width, height = image.size
    raw = image.tobytes()

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        at = (y * width + x) * 3
        return raw[at], raw[at + 1], raw[at + 2]

    rows = [y for y in range(height) if sum(pixel(x, y) == MOUNT_ROW_COLOR for x in range(0, width, 4)) > 100]
    assert rows, "no mount row in the screenshot"
    dark = sum(1 for y in range(rows[0], rows[-1] + 1) for x in range(width) if sum(pixel(x, y)) < 250)
    assert dark > 50, "the mount row has no text"


def test_metrics_scrape(mount_factory: MountFactory, s3_server: LocalS3, bucket: str) -> None:
    port = free_port()
    busy_mount(mount_factory, s3_server, bucket, port)
    status, content_type, text = fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("s3fuse_s3_requests_total", operation="GetObject", result="2xx") >= 2
    assert value("s3fuse_s3_request_seconds_count", operation="GetObject") >= 2
    assert value("s3fuse_s3_request_seconds_bucket", operation="GetObject", le="+Inf") >= 2
    assert value("s3fuse_s3_requests_total", operation="PutObject", result="5xx") >= 1
    assert value("s3fuse_cache_misses_total") >= 2
    assert value("s3fuse_cache_hits_total") >= 2  # the second read came from the cache
    assert value("s3fuse_upload_bytes_total") >= MiB + 1
    assert value("s3fuse_upload_failures_total") >= 1
    assert value("s3fuse_read_bytes_total") >= 4 * MiB
    assert value("s3fuse_written_bytes_total") >= MiB + 1
    assert value("s3fuse_log_messages_total", level="error") >= 1
    assert ("s3fuse_uploads_in_flight", ()) in samples
    _, _, uploads = fetch(f"http://127.0.0.1:{port}/api/uploads")
    assert uploads == "[]"


def test_a_taken_port_costs_the_page_not_the_mount(mount_factory: MountFactory, s3_server: LocalS3,
                                                    bucket: str) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="still.txt", Body=b"mounted anyway")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mounted = mount_factory(f"alluxio.master.web.port={port}")
        assert (mounted.path / "still.txt").read_bytes() == b"mounted anyway"
        assert mounted.log_text().count("status page: cannot listen on") == 1
    off = mount_factory("alluxio.master.web.port=0")
    assert (off.path / "still.txt").read_bytes() == b"mounted anyway"
    assert "status page at" not in off.log_text()
