"""A directory's entries from ListObjectsV2 pages: objects are files, common prefixes and `dir/` markers are
directories, and keys that cannot be POSIX names are skipped with one log line instead of breaking a listing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from s3fuse.s3.client import ObjectInfo, S3Client

log = logging.getLogger(__name__)

NAME_MAX = 255
EPOCH = datetime.fromtimestamp(0).astimezone()


@dataclass(frozen=True)
class Entry:
    """One name in a directory, as the listing tells it."""

    name: str
    is_dir: bool
    size: int = 0
    etag: str = ""
    mtime: datetime = EPOCH


def name_problem(name: str) -> str:
    """Why `name` cannot be a POSIX file name, or "" when it can."""
    if name in ("", ".", ".."):
        return f"the path segment {name!r} is not a file name"
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        return f"a segment is longer than {NAME_MAX} bytes"
    if "\0" in name:
        return "it holds a NUL byte"
    return ""


_skipped: set[str] = set()


def skip(key: str, problem: str) -> None:
    """One log line per skipped key per process, however often it is listed."""
    if key not in _skipped:
        _skipped.add(key)
        log.warning("skipping key %r: %s", key, problem)


def page_entries(dir_prefix: str, objects: list[ObjectInfo], prefixes: list[str]) -> list[Entry]:
    """The entries one page adds to the directory `dir_prefix` (a key prefix ending in "/", or "")."""
    entries: list[Entry] = []
    for info in objects:
        name = info.key[len(dir_prefix):]
        if name == "":  # the directory's own marker
            continue
        if name.endswith("/"):  # "dir/" marker listed without a delimiter
            name = name[:-1]
            problem = name_problem(name)
            if problem:
                skip(info.key, problem)
            else:
                entries.append(Entry(name, True, mtime=info.mtime))
            continue
        problem = name_problem(name)
        if problem:
            skip(info.key, problem)
            continue
        entries.append(Entry(name, False, info.size, info.etag, info.mtime))
    for prefix in prefixes:
        name = prefix[len(dir_prefix):-1]
        problem = name_problem(name)
        if problem:
            skip(prefix, problem)
            continue
        entries.append(Entry(name, True))
    return entries


async def list_directory(client: S3Client, dir_prefix: str) -> AsyncIterator[list[Entry]]:
    """Every page of the directory, each as the entries it adds; one ListObjectsV2 per 1,000 keys."""
    token: str | None = None
    while True:
        page = await client.list_page(dir_prefix, token)
        yield page_entries(dir_prefix, page.objects, page.prefixes)
        if page.next_token is None:
            return
        token = page.next_token


def merge(entries: list[Entry]) -> dict[str, Entry]:
    """Name -> entry; a directory wins over a file of the same name (key `a` beside prefix `a/`), since a POSIX
    directory cannot hold both, and the directory is the one that leads to more data."""
    merged: dict[str, Entry] = {}
    for entry in entries:
        known = merged.get(entry.name)
        if known is None or (entry.is_dir and not known.is_dir):
            merged[entry.name] = entry
        elif known.is_dir and not entry.is_dir:
            skip(entry.name, "a directory of the same name hides this object")
    return merged


def tree_entries(dir_prefix: str, objects: list[ObjectInfo]) -> dict[str, list[Entry]]:
    """A recursive listing (no delimiter) of `dir_prefix` cut into the entries of every directory below it:
    relative directory path ("" for `dir_prefix` itself) -> its entries. Keys with a segment that cannot be a
    POSIX name are skipped from that segment on, as the delimiter listings of their directories skip them."""
    levels: dict[str, list[Entry]] = {"": []}
    seen_dirs: set[str] = set()
    for info in objects:
        relative = info.key[len(dir_prefix):]
        if relative == "":
            continue
        is_marker = relative.endswith("/")
        segments = relative[:-1].split("/") if is_marker else relative.split("/")
        for depth in range(len(segments)):
            parent = "/".join(segments[:depth])
            levels.setdefault(parent, [])
            name = segments[depth]
            problem = name_problem(name)
            if problem:  # the directories above the bad segment exist, as a delimiter listing shows them
                skip(info.key, problem)
                break
            path = join_path(parent, name)
            last = depth == len(segments) - 1
            if last and not is_marker:
                levels[parent].append(Entry(name, False, info.size, info.etag, info.mtime))
            elif path not in seen_dirs:
                seen_dirs.add(path)
                levels.setdefault(path, [])
                levels[parent].append(Entry(name, True, mtime=info.mtime if last else EPOCH))
    return levels


def join_path(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
