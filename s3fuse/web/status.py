"""What the status page shows: a snapshot the daemon builds from its layers, and a short history for the charts.

The web package only renders and serves these; it never reaches into the filesystem layers itself.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from s3fuse.metrics import LogRecordView, OperationStats


@dataclass(frozen=True)
class MountRow:
    mountpoint: str
    source: str  # s3://bucket/prefix
    endpoint: str
    readonly: bool
    open_files: int
    state: str  # "serving", "finishing uploads", ...


@dataclass(frozen=True)
class UploadRow:
    """A file whose bytes are not all in S3 yet, or a multipart upload in progress."""

    path: str  # s3://bucket/key
    size: int
    state: str


@dataclass(frozen=True)
class Sample:
    when: float  # time.time()
    cache_bytes: int
    read_bytes: float
    written_bytes: float
    uploaded_bytes: float
    downloaded_bytes: float


@dataclass
class History:
    """The last `keep` samples (one every few seconds): enough to draw the last minutes."""

    keep: int = 300
    samples: collections.deque[Sample] = field(default_factory=collections.deque)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        while len(self.samples) > self.keep:
            self.samples.popleft()


@dataclass(frozen=True)
class Status:
    version: str
    pid: int
    started: float
    now: float
    mounts: list[MountRow]
    cache_bytes: int
    cache_limit: int
    memory_bytes: int
    hits: int
    misses: int
    read_bytes: float
    written_bytes: float
    uploaded_bytes: float
    downloaded_bytes: float
    upload_failures: float
    operations: dict[str, OperationStats]
    uploads: list[UploadRow]
    errors: list[LogRecordView]
    history: list[Sample]

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None
