"""What one daemon counts, in its own Prometheus registry (served at `/metrics` by the status server).

S3 requests are observed from botocore's event hooks on the mount's client (no change to how requests are
made): a count by operation and HTTP result, a latency histogram by operation (retries included: the time
the caller waited), bytes up and down, failed uploads. The same hooks keep the registry of multipart uploads
this daemon has in flight, so a stale-upload cleanup never aborts one of them. Cache hits and misses, cache
use and uploads in flight are read from the layers when scraped.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from s3fuse.s3.client import S3Client

log = logging.getLogger(__name__)

UPLOAD_OPERATIONS = frozenset({"PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTEXT_KEY = "s3fuse.observer"


class ReadCounters(Collector):
    """Counters whose values live in another object (the block cache's hits and misses), read when scraped."""

    def __init__(self) -> None:
        self.readers: list[tuple[str, str, Callable[[], float]]] = []

    def collect(self) -> Iterator[Metric]:
        for name, documentation, read in self.readers:
            yield CounterMetricFamily(name, documentation, value=read())

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(name, documentation) for name, documentation, _ in self.readers]


class Metrics:
    """Every metric of one daemon; a registry per process, never the global default one."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twin of each series
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("s3fuse_s3_requests", "S3 requests by operation and result (2xx, 3xx, 4xx, 5xx, "
                                "or failed: no HTTP answer after retries)", ["operation", "result"], registry=r)
        self.latency = Histogram("s3fuse_s3_request_seconds", "S3 request latency by operation, retries included",
                                 ["operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.upload_bytes = Counter("s3fuse_upload_bytes", "Bytes uploaded to S3 (PutObject and UploadPart bodies "
                                    "that were stored)", registry=r)
        self.download_bytes = Counter("s3fuse_download_bytes", "Bytes downloaded from S3 (GetObject bodies)",
                                      registry=r)
        self.upload_failures = Counter("s3fuse_upload_failures", "Upload requests that failed after retries "
                                       "(PutObject, UploadPart, Create/CompleteMultipartUpload)", registry=r)
        self.read_bytes = Counter("s3fuse_read_bytes", "Bytes applications read through the mount", registry=r)
        self.written_bytes = Counter("s3fuse_written_bytes", "Bytes applications wrote through the mount",
                                     registry=r)
        self.log_messages = Counter("s3fuse_log_messages", "Warnings and errors logged by the daemon", ["level"],
                                    registry=r)
        self._read_counters = ReadCounters()
        r.register(self._read_counters)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read from the layers at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A counter kept by a layer (as a plain number), read at scrape time; `name` without `_total`."""
        self._read_counters.readers.append((name, documentation, read))

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def by_operation(self) -> dict[str, OperationStats]:
        """Per S3 operation: requests, 4xx answers, 5xx or no answer, and the mean latency."""
        stats: dict[str, OperationStats] = {}
        for metric in self.requests.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                entry = stats.setdefault(sample.labels["operation"], OperationStats())
                entry.count += int(sample.value)
                if sample.labels["result"] == "4xx":
                    entry.client_errors += int(sample.value)
                elif sample.labels["result"] in ("5xx", "failed"):
                    entry.server_errors += int(sample.value)
        for metric in self.latency.collect():
            for sample in metric.samples:
                if sample.name.endswith("_sum") and sample.labels["operation"] in stats:
                    stats[sample.labels["operation"]].seconds = sample.value
        return stats


@dataclass
class OperationStats:
    count: int = 0
    client_errors: int = 0  # 4xx: often expected (a HEAD of a name that does not exist)
    server_errors: int = 0  # 5xx, or no answer after retries
    seconds: float = 0.0

    @property
    def mean_ms(self) -> float:
        return 1000 * self.seconds / self.count if self.count else 0.0


@dataclass(frozen=True)
class MultipartUpload:
    """A multipart upload this daemon created and has not completed or aborted yet."""

    bucket: str
    key: str
    upload_id: str
    started: float  # time.time()


class S3Observer:
    """Hooks on one client's requests (botocore's events, and the client's own listeners for the requests it
    sends itself): metrics, and the multipart uploads in flight."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.multipart: dict[str, MultipartUpload] = {}
        self.creating: collections.Counter[tuple[str, str]] = collections.Counter()  # (bucket, key) being created

    def attach(self, client: S3Client) -> None:
        events = client.events
        events.register("provide-client-params.s3", self._params)
        events.register("before-call.s3", self._before)
        events.register("after-call.s3", self._after)
        events.register("after-call-error.s3", self._failed)
        client.listeners.append(self.record)

    def record(self, operation: str, result: str, seconds: float, body_bytes: int, last: bool) -> None:
        """An attempt sent without botocore (the block cache's ranged GETs, whole-object PUTs); `last`: no retry
        follows it."""
        self.metrics.requests.labels(operation, result).inc()
        self.metrics.latency.labels(operation).observe(seconds)
        if operation not in UPLOAD_OPERATIONS:
            self.metrics.download_bytes.inc(body_bytes)
        elif result == "2xx":
            self.metrics.upload_bytes.inc(body_bytes)
        elif last:
            self.metrics.upload_failures.inc()

    def in_flight(self, bucket: str, key: str, upload_id: str) -> bool:
        """Whether this daemon is still writing that upload (or is creating an upload of that key right now)."""
        return upload_id in self.multipart or self.creating[(bucket, key)] > 0

    # -- botocore event handlers (they run on the asyncio side of the bridge, on the same thread) -------------

    def _params(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        body = params.get("Body")
        state = {"operation": model.name, "bucket": str(params.get("Bucket", "")), "key": str(params.get("Key", "")),
                 "upload_id": str(params.get("UploadId", "")), "start": time.monotonic(),
                 "body": len(body) if isinstance(body, bytes | bytearray | memoryview) else 0}
        context[CONTEXT_KEY] = state
        if model.name == "CreateMultipartUpload":
            self.creating[(state["bucket"], state["key"])] += 1

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        state = context.get(CONTEXT_KEY)
        if state is not None:
            state["start"] = time.monotonic()

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        state = context.get(CONTEXT_KEY)
        if state is None:
            return
        status = int(getattr(http_response, "status_code", 0))
        self._finish(state, f"{status // 100}xx", parsed if status < 300 else None, http_response)

    def _failed(self, context: dict[str, Any], exception: BaseException | None = None, **_: Any) -> None:
        state = context.get(CONTEXT_KEY)
        if state is not None:
            self._finish(state, "failed", None, None)

    def _finish(self, state: dict[str, Any], result: str, parsed: dict[str, Any] | None, http_response: Any) -> None:
        operation: str = state["operation"]
        self.metrics.requests.labels(operation, result).inc()
        self.metrics.latency.labels(operation).observe(time.monotonic() - state["start"])
        ok = parsed is not None
        if operation in ("PutObject", "UploadPart") and ok:
            self.metrics.upload_bytes.inc(state["body"])
        elif operation == "GetObject" and ok:
            length = (getattr(http_response, "headers", None) or {}).get("content-length")
            if length and str(length).isdigit():
                self.metrics.download_bytes.inc(int(length))
        if operation in UPLOAD_OPERATIONS and not ok:
            self.metrics.upload_failures.inc()
        if operation == "CreateMultipartUpload":
            self.creating[(state["bucket"], state["key"])] -= 1
            if self.creating[(state["bucket"], state["key"])] <= 0:
                del self.creating[(state["bucket"], state["key"])]
            if parsed is not None and parsed.get("UploadId"):
                upload_id = str(parsed["UploadId"])
                self.multipart[upload_id] = MultipartUpload(state["bucket"], state["key"], upload_id, time.time())
        elif operation in ("CompleteMultipartUpload", "AbortMultipartUpload"):
            self.multipart.pop(state["upload_id"], None)


@dataclass(frozen=True)
class LogRecordView:
    when: float
    level: str
    logger: str
    message: str


class RecentErrors(logging.Handler):
    """The last warnings and errors of the daemon, for the status page, and their count for /metrics."""

    def __init__(self, metrics: Metrics, keep: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.metrics = metrics
        self.records: collections.deque[LogRecordView] = collections.deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        self.records.append(LogRecordView(record.created, record.levelname, record.name, message))
        self.metrics.log_messages.labels(record.levelname.lower()).inc()
