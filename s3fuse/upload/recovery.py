"""The recovery folder: bytes that could not be uploaded (a failed close, a stop that timed out) are kept here
with a note of where they belong, listed at the next start and by `s3fuse recover`, which can upload them.
Nothing here is ever deleted except after a successful upload."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

FOLDER = "s3fuse-recovery"
NOTE = ".json"


@dataclass(frozen=True)
class Kept:
    path: str
    bucket: str
    key: str
    size: int
    kept_at: float


def folder(tmp_dir: str) -> str:
    return os.path.join(tmp_dir, FOLDER)


def keep(directory: str, path: str, bucket: str, key: str) -> str:
    """Move `path` into the recovery folder beside a note naming its bucket and key; the new path."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{bucket}/{key}")[-150:]
    target = os.path.join(directory, f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{safe}")
    while os.path.exists(target):
        target += "_"
    os.replace(path, target)
    note = {"bucket": bucket, "key": key, "size": os.path.getsize(target), "kept_at": time.time()}
    try:
        with open(target + NOTE, "w", encoding="utf-8") as handle:
            json.dump(note, handle)
    except OSError as exc:  # a full disk: the bytes are kept all the same, the log line names their key
        log.error("no room for the note beside %s (s3://%s/%s): %s", target, bucket, key, exc)
    return target


def kept(directory: str) -> Iterator[Kept]:
    """Every kept file that has its note, oldest first."""
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        if not name.endswith(NOTE):
            continue
        path = os.path.join(directory, name[:-len(NOTE)])
        try:
            with open(path + NOTE, encoding="utf-8") as handle:
                note = json.load(handle)
            yield Kept(path, str(note["bucket"]), str(note["key"]), os.path.getsize(path), float(note["kept_at"]))
        except (OSError, ValueError, KeyError):
            continue


def forget(item: Kept) -> None:
    """After a successful upload only."""
    os.unlink(item.path)
    os.unlink(item.path + NOTE)
