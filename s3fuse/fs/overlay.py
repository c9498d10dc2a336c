"""Local POSIX metadata that S3 cannot hold: mode, owner, times, user xattrs and which keys are symlinks.

Kept in SQLite in the cache directory, so it survives a remount, and never written to S3 (Alluxio's rule:
chmod/chown do not propagate). Times are tied to the ETag they were set for: when another writer replaces the
object, S3's time wins again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY, mode INTEGER, uid INTEGER, gid INTEGER,
    atime INTEGER, mtime INTEGER, ctime INTEGER, etag TEXT);
CREATE TABLE IF NOT EXISTS xattr (key TEXT, name TEXT, value BLOB, PRIMARY KEY (key, name));
"""


@dataclass
class Meta:
    """What the overlay says about one key; None fields defer to S3 and the mount's identity."""

    mode: int | None = None  # full st_mode, type bits included
    uid: int | None = None
    gid: int | None = None
    atime: int | None = None
    mtime: int | None = None
    ctime: int | None = None
    etag: str | None = None  # the object version the times belong to


class Overlay:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            self.db = self._open(path)
        except sqlite3.DatabaseError as exc:
            broken = f"{path}.corrupt"
            log.warning("metadata overlay %s is unreadable (%s): moved to %s, starting empty", path, exc, broken)
            os.replace(path, broken)
            self.db = self._open(path)
        os.chmod(path, 0o600)
        self.cache: dict[str, Meta | None] = {}

    @classmethod
    def in_cache(cls, cache_dir: str, bucket: str) -> Overlay:
        """The overlay of one bucket, kept beside the block cache (one file per bucket, shared by its mounts)."""
        return cls(os.path.join(cache_dir, "overlay", f"{bucket}.sqlite"))

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        db.execute("PRAGMA quick_check").fetchone()
        return db

    def get(self, key: str) -> Meta | None:
        if key in self.cache:
            return self.cache[key]
        row = self.db.execute("SELECT mode, uid, gid, atime, mtime, ctime, etag FROM meta WHERE key = ?",
                              (key,)).fetchone()
        meta = Meta(*row) if row else None
        if len(self.cache) > 100_000:
            self.cache.clear()
        self.cache[key] = meta
        return meta

    def update(self, key: str, **changes: int | str | None) -> None:
        meta = dataclasses.replace(self.get(key) or Meta())  # the cached one changes only once this is stored
        for name, value in changes.items():
            setattr(meta, name, value)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, meta.mode, meta.uid, meta.gid, meta.atime, meta.mtime, meta.ctime, meta.etag))
        self.cache[key] = meta

    def retag(self, key: str, old_etag: str, new_etag: str) -> None:
        """This mount replaced version `old_etag` of the object by `new_etag` (its own upload or copy): times set
        for the old version, through this mount, are the new version's."""
        meta = self.get(key)
        if meta is not None and meta.etag == old_etag != new_etag:
            self.update(key, etag=new_etag)

    def copied(self, key: str, was: str, etag: str, mtime_ns: int) -> None:
        """A rename copied version `was` of an object to `key` as `etag`: times set through the mount follow
        the copy; without an mtime of its own it keeps its source's (`mtime_ns`), since a rename changes no
        file's mtime, while S3 gives the copy a new LastModified."""
        meta = self.get(key)
        if meta is not None and meta.etag not in (None, was):  # times of a version another writer replaced
            self.update(key, mtime=mtime_ns, atime=None, ctime=None, etag=etag)
        elif meta is not None and meta.mtime is not None:
            self.retag(key, was, etag)
        else:
            self.update(key, mtime=mtime_ns, etag=etag)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes in one transaction: a directory rename writes a row per key."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            self.cache.clear()
            raise
        self.db.execute("COMMIT")

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
        self.db.execute("DELETE FROM xattr WHERE key = ?", (key,))
        self.cache[key] = None

    def rename(self, old: str, new: str) -> None:
        """Move the rows of `old`, and of every key under `old/` when it is a directory, to `new`."""
        self.delete(new)
        for table in ("meta", "xattr"):
            self.db.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (new, old))
            self.db.execute(f"UPDATE OR REPLACE {table} SET key = ? || substr(key, ?) WHERE key >= ? AND key < ?",
                            (new + "/", len(old) + 2, old + "/", old + "0"))
        self.cache.clear()

    # -- user xattrs -----------------------------------------------------------------------------------------

    def xattrs(self, key: str) -> dict[str, bytes]:
        rows = self.db.execute("SELECT name, value FROM xattr WHERE key = ?", (key,)).fetchall()
        return {name: bytes(value) for name, value in rows}

    def set_xattr(self, key: str, name: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO xattr VALUES (?, ?, ?)", (key, name, value))

    def remove_xattr(self, key: str, name: str) -> bool:
        return self.db.execute("DELETE FROM xattr WHERE key = ? AND name = ?", (key, name)).rowcount > 0

    def close(self) -> None:
        self.db.close()
