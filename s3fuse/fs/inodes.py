"""The inode table: inode numbers <-> paths of one mount, attributes with a TTL, lookup counts, and the
directory listings that let `ls -l` answer every lookup without a HEAD per entry.

Inode numbers are derived from the path (a 63-bit hash), so the same path gets the same number for as long as
the mount lives, even after the kernel forgot it; a rename moves the number with the file. A path whose number
is not its hash (it came with a rename, or the hash was taken when the path was first seen) keeps it in a table
of the last KEPT_NUMBERS such paths, for when the kernel forgets that inode too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import math
import stat
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from s3fuse.fs.listing import EPOCH, Entry, list_directory, merge, name_problem, tree_entries
from s3fuse.fs.listing import join_path as join
from s3fuse.fs.namespace import Namespace
from s3fuse.parallel import gather
from s3fuse.s3.client import ObjectInfo, S3Client

if TYPE_CHECKING:
    from s3fuse.fs.changes import Copy

log = logging.getLogger(__name__)

ROOT_INO = 1
# a lookup's first try lists this many keys of the whole subtree (a small tree answers every lookup below it at
# once); a recursive page costs the server by the key (RGW: 0.2 s for 1,000), the delimiter page tried next
# does not
PROBE_KEYS = 200
Retag = tuple[int, str, str]  # an inode whose object our copy gave another ETag: number, old ETag, new one
RECURSIVE_LIMIT = 5000  # keys below subdirectories a recursive listing may read before it gives up
KEPT_NUMBERS = 100_000  # paths whose inode number is not their hash, remembered (about 150 bytes each)
DETACHED = "\0removed/"  # the path of an inode whose name was removed or renamed over: no lookup finds it


@dataclass
class Inode:
    """What the table knows about one path; `expires` is when S3 must be asked again."""

    ino: int
    path: str  # relative to the mount root: "" is the root, "a/b" a child of "a"
    is_dir: bool
    size: int = 0
    etag: str = ""
    mtime_ns: int = 0
    expires: float = 0.0
    lookups: int = 0
    metadata: dict[str, str] | None = None  # user metadata from a HEAD; None until one was made
    content_type: str = ""
    page_cache_etag: str = ""  # the version the kernel's page cache holds, for keep_cache
    generation: int = 0  # bumped when another writer replaced the object: the kernel then drops its inode
    kernel_generation: int = 0  # the generation the kernel last got with this inode (its size is that version's)

    def handed(self) -> None:
        """The kernel holds one more reference to the inode (an entry reply), and knows this version of it."""
        self.lookups += 1
        self.kernel_generation = self.generation

    @property
    def unsaved(self) -> bool:
        """S3 lacks the bytes this mount holds for the file: new and not uploaded yet, or being written (its
        attributes held as ours until `settled`). While it is open, its name stays whatever S3 says."""
        return not self.is_dir and (not self.etag or self.expires == float("inf"))

    @property
    def detached(self) -> bool:
        """Its name is gone (unlinked, or renamed over): only the kernel and open handles still hold it."""
        return self.path.startswith(DETACHED)

    @property
    def kind(self) -> int:
        """File type from S3: a directory, an s3fs-style symlink (x-amz-meta-mode), or a regular file."""
        if self.is_dir:
            return stat.S_IFDIR
        mode = (self.metadata or {}).get("mode", "")
        if mode.isdigit() and stat.S_ISLNK(int(mode)):
            return stat.S_IFLNK
        return stat.S_IFREG


@dataclass
class Listing:
    """A complete listing of one directory: name -> entry, trusted until `expires`."""

    entries: dict[str, Entry]
    expires: float


def still_named(inode: Inode) -> None:
    """A file whose name went away has no attributes in S3 to refresh: ESTALE has the VFS look the name up
    again (a kernel dentry can outlive the name when an open or stat races a rename over it)."""
    if inode.detached and not inode.is_dir:
        raise OSError(errno.ESTALE, "a removed or replaced file")


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def ns(moment: datetime) -> int:
    """An S3 time in whole seconds: a HEAD tells seconds, some servers' listings milliseconds (RGW), and one
    object must not show two times depending on which of them the mount asked last."""
    return math.floor(moment.timestamp()) * 1_000_000_000


class InodeTable:
    """Answers lookup/getattr/readdir questions from memory when it can and from S3 when it must."""

    def __init__(self, namespace: Namespace, ttl: float, max_listings: int) -> None:
        self.namespace = namespace
        self.ttl = ttl
        self.max_listings = max(1, max_listings)
        self.by_ino: dict[int, Inode] = {}
        self.by_path: dict[str, int] = {}
        self.kept_numbers: OrderedDict[str, int] = OrderedDict()  # path -> its number, where not its hash
        self.listings: OrderedDict[str, Listing] = OrderedDict()
        self.negative: dict[str, float] = {}
        self.large: dict[str, float] = {}  # directories too large to list for one lookup, until when
        self.pinned: dict[int, int] = {}  # ino -> open handles, which keep an inode after the kernel forgets it
        # Our own changes while listings are on their way: a LIST answered before a change and stored after it
        # must not bring back the old entry (or lose a new one). path -> (change number, entry; None: gone)
        self.changes: dict[str, tuple[int, Entry | None]] = {}
        self.change_number = 0
        self.listings_in_flight = 0
        self.mounted_ns = time.time_ns()  # directories have no mtime in S3: they show the mount's start
        root = Inode(ROOT_INO, "", True, expires=float("inf"), mtime_ns=self.mounted_ns)
        self._add(root)

    # -- keys ------------------------------------------------------------------------------------------------

    def key(self, path: str) -> str:
        return self.namespace.key(path)

    def dir_prefix(self, path: str) -> str:
        return self.namespace.dir_prefix(path)

    def client(self, path: str) -> S3Client:
        return self.namespace.mount_of(path).client

    # -- the table -------------------------------------------------------------------------------------------

    def _number(self, path: str) -> int:
        kept = self.kept_numbers.get(path)
        if kept is not None and kept not in self.by_ino:
            return kept
        hashed = ino = self._hashed(path)
        while ino <= ROOT_INO or (ino in self.by_ino and self.by_ino[ino].path != path):
            ino = (ino + 1) & 0x7FFF_FFFF_FFFF_FFFF
        if ino != hashed or kept is not None:
            self._keep_number(path, ino)
        return ino

    def _keep_number(self, path: str, ino: int) -> None:
        self.kept_numbers[path] = ino
        self.kept_numbers.move_to_end(path)
        while len(self.kept_numbers) > KEPT_NUMBERS:
            self.kept_numbers.popitem(last=False)

    @staticmethod
    def _hashed(path: str) -> int:
        digest = int.from_bytes(hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest())
        return digest & 0x7FFF_FFFF_FFFF_FFFF

    def _add(self, inode: Inode) -> Inode:
        self.by_ino[inode.ino] = inode
        self.by_path[inode.path] = inode.ino
        return inode

    def get(self, ino: int) -> Inode:
        inode = self.by_ino.get(ino)
        if inode is None:
            raise OSError(errno.ESTALE, f"inode {ino} is not known (forgotten or removed)")
        return inode

    def known(self, path: str) -> Inode | None:
        ino = self.by_path.get(path)
        return self.by_ino[ino] if ino is not None else None

    def now(self) -> float:
        return time.monotonic()

    def remember(self, path: str, entry: Entry | ObjectInfo | None, is_dir: bool) -> Inode:
        """Create or refresh the inode of `path` from what S3 said about it."""
        inode = self.known(path)
        if inode is None or inode.is_dir != is_dir:
            if inode is not None:
                self._drop(inode)
            inode = self._add(Inode(self._number(path), path, is_dir, mtime_ns=self.mounted_ns))
        inode.expires = self.now() + self.ttl
        self.negative.pop(path, None)
        if entry is not None and not is_dir:
            changed = inode.etag != entry.etag
            if changed and inode.etag:
                # Replaced by someone else (our own uploads set the ETag directly). With the writeback cache
                # the kernel trusts its own size over ours; a new generation makes it look the file up anew.
                inode.generation += 1
            inode.size, inode.etag, inode.mtime_ns = entry.size, entry.etag, ns(entry.mtime)
            if isinstance(entry, ObjectInfo) and entry.metadata is not None:
                inode.metadata = dict(entry.metadata)
                inode.content_type = entry.content_type
            elif changed:
                inode.metadata = None
        elif entry is not None and entry.mtime != EPOCH:  # a "dir/" marker carries a time
            inode.mtime_ns = ns(entry.mtime)
        return inode

    def _drop(self, inode: Inode) -> None:
        self.by_ino.pop(inode.ino, None)
        if self.by_path.get(inode.path) == inode.ino:
            del self.by_path[inode.path]

    def forget(self, ino: int, count: int) -> None:
        inode = self.by_ino.get(ino)
        if inode is None or ino == ROOT_INO:
            return
        inode.lookups = max(0, inode.lookups - count)
        if inode.lookups == 0 and not self.pinned.get(ino):
            self._drop(inode)

    def pin(self, ino: int) -> None:
        self.pinned[ino] = self.pinned.get(ino, 0) + 1

    def unpin(self, ino: int) -> None:
        left = self.pinned.get(ino, 0) - 1
        if left > 0:
            self.pinned[ino] = left
            return
        self.pinned.pop(ino, None)
        inode = self.by_ino.get(ino)
        if inode is not None and inode.lookups == 0 and ino != ROOT_INO:
            self._drop(inode)

    # -- listings --------------------------------------------------------------------------------------------

    def cached_listing(self, path: str) -> Listing | None:
        listing = self.listings.get(path)
        if listing is None or listing.expires < self.now():
            return None
        self.listings.move_to_end(path)
        return listing

    def holds_objects(self, path: str) -> bool:
        """Whether the unexpired listing of directory `path` names something S3 holds: a subdirectory, or a file
        with an ETag (one created here and not uploaded yet has none)."""
        listing = self.cached_listing(path)
        return listing is not None and any(entry.is_dir or entry.etag for entry in listing.entries.values())

    def subdirectories(self, path: str) -> int:
        """How many directories the cached listing of `path` holds (a directory's link count is 2 plus that,
        as POSIX file systems keep it); 0 while its listing is not known."""
        listing = self.listings.get(path)
        return sum(entry.is_dir for entry in listing.entries.values()) if listing is not None else 0

    async def list(self, directory: Inode) -> dict[str, Entry]:
        """The complete, merged listing of a directory (every page), cached for the TTL."""
        listing = self.cached_listing(directory.path)
        if listing is None:
            listing = await self.load(directory.path, max_pages=None)
        assert listing is not None
        return listing.entries

    @contextlib.contextmanager
    def listing_in_flight(self) -> Iterator[int]:
        """Around a LIST: yields the change number it starts at; our changes are kept while any is in flight."""
        self.listings_in_flight += 1
        try:
            yield self.change_number
        finally:
            self.listings_in_flight -= 1
            if not self.listings_in_flight:
                self.changes.clear()

    def note_change(self, path: str, entry: Entry | None) -> None:
        self.change_number += 1
        if self.listings_in_flight:
            self.changes[path] = (self.change_number, entry)

    async def load(self, path: str, max_pages: int | None, page_keys: int = 1000) -> Listing | None:
        with self.listing_in_flight() as started:
            return await self._load(path, max_pages, page_keys, started)

    async def _load(self, path: str, max_pages: int | None, page_keys: int, started: int) -> Listing | None:
        """List a directory from S3. A recursive listing comes first: while the keys below subdirectories stay
        few, one pass fills the listings of the whole subtree (a `find` then costs a few LISTs, not one per
        directory); past that it starts over with the delimiter. None when `max_pages` did not suffice."""
        prefix = self.dir_prefix(path)
        objects: list[ObjectInfo] = []
        below = pages = 0
        token: str | None = None
        while True:
            if max_pages is not None and pages >= max_pages:
                return None
            page = await self.client(path).list_page(prefix, token, delimiter="", max_keys=page_keys)
            pages += 1
            objects += page.objects
            below += sum(1 for info in page.objects if "/" in info.key[len(prefix):].rstrip("/"))
            if page.next_token is None:
                break
            if below > RECURSIVE_LIMIT:
                return await self._load_flat(path, None if max_pages is None else max_pages - pages, started)
            token = page.next_token
        levels = tree_entries(prefix, objects)
        mount = self.namespace.mount_of(path)
        for relative, entries in levels.items():
            directory = join(path, relative) if relative else path
            if self.namespace.mount_of(directory) is mount:  # keys under a nested mount point are hidden by it
                self.store_listing(directory, merge(entries), started)
        return self.listings[path]

    async def load_flat(self, path: str, max_pages: int | None) -> Listing | None:
        with self.listing_in_flight() as started:
            return await self._load_flat(path, max_pages, started)

    async def _load_flat(self, path: str, max_pages: int | None, started: int) -> Listing | None:
        collected: list[Entry] = []
        pages = 0
        async for page in list_directory(self.client(path), self.dir_prefix(path)):
            pages += 1
            collected += page
            if max_pages is not None and pages > max_pages:
                return None
        return self.store_listing(path, merge(collected), started)

    def store_listing(self, path: str, entries: dict[str, Entry], started: int) -> Listing:
        """Cache a fresh listing (of a LIST begun at change number `started`); our changes made since then win,
        files still being written here (not yet in S3) stay in it, and nested mount points show as the
        directories they are."""
        for changed, (number, entry) in self.changes.items():
            if number > started and parent_of(changed) == path and changed:
                name = changed.rpartition("/")[2]
                if entry is None:
                    entries.pop(name, None)
                else:
                    entries[name] = entry
        for name in self.namespace.points_in(path):
            entries[name] = Entry(name, True)
        for ino in self.pinned:
            pending = self.by_ino.get(ino)
            if pending is not None and pending.unsaved and parent_of(pending.path) == path and pending.path:
                name = pending.path.rpartition("/")[2]
                entries.setdefault(name, Entry(name, pending.is_dir, pending.size, pending.etag))
        for entry in entries.values():
            child = self.known(join(path, entry.name))
            if child is None or child.expires < self.now() or child.is_dir != entry.is_dir:
                self.remember(join(path, entry.name), entry, entry.is_dir)
        listing = Listing(entries, self.now() + self.ttl)
        self.listings[path] = listing
        self.listings.move_to_end(path)
        while len(self.listings) > self.max_listings:
            self.listings.popitem(last=False)
        return listing

    # -- lookup ----------------------------------------------------------------------------------------------

    async def lookup(self, parent: Inode, name: str) -> Inode:
        """The child `name` of `parent`, from the table, the parent's listing, or one HEAD + one LIST."""
        if not parent.is_dir:
            raise OSError(errno.ENOTDIR, parent.path)
        problem = name_problem(name)
        if problem:
            raise OSError(errno.ENAMETOOLONG if "longer" in problem else errno.ENOENT, problem)
        path = join(parent.path, name)
        inode = self.known(path)
        if inode is not None and inode.expires >= self.now():
            return inode
        if self.namespace.is_mount_point(path):
            return self.remember(path, None, True)
        if self.negative.get(path, 0.0) >= self.now():
            raise OSError(errno.ENOENT, path)
        listing = self.cached_listing(parent.path)
        if listing is None and self.ttl > 0 and self.large.get(parent.path, 0.0) < self.now():
            # one LIST of a small parent answers this lookup and all its siblings' (no HEAD + LIST each): its
            # whole subtree when that fits a page, else its own entries (a bucket root with big directories).
            # With a TTL of 0 no sibling could use it: a HEAD and a one-key LIST cost the same in any directory,
            # where listing it costs by the key (rm -rf of n files would send n listings of up to n keys).
            listing = await self.load(parent.path, max_pages=1, page_keys=PROBE_KEYS) \
                or await self.load_flat(parent.path, max_pages=1)
            if listing is None:
                self.large[parent.path] = self.now() + self.ttl
        if listing is not None:
            entry = listing.entries.get(name)
            if entry is None:
                raise OSError(errno.ENOENT, path)
            if inode is not None and inode.is_dir == entry.is_dir and not entry.is_dir and inode.etag == entry.etag:
                inode.expires = self.now() + self.ttl
                return inode
            if entry.is_dir or inode is None:
                return self.remember(path, entry, entry.is_dir)
        return await self.stat_path(path)

    async def stat_path(self, path: str) -> Inode:
        """Ask S3 what `path` is: a HEAD for the object and a one-key LIST for the prefix, concurrently. A file
        open through the mount that S3 does not have is what the table knows of it until its close, as in
        listings (a new file has no object before then)."""
        head: list[ObjectInfo | None] = [None]
        is_dir = [False]

        async def head_object() -> None:
            head[0] = await self.client(path).head(self.key(path))

        async def probe_prefix() -> None:
            page = await self.client(path).list_page(self.dir_prefix(path), max_keys=1, delimiter="")
            is_dir[0] = bool(page.objects or page.prefixes)

        await gather(head_object, probe_prefix)
        if is_dir[0]:
            return self.remember(path, None, True)
        if head[0] is not None:
            return self.remember(path, head[0], False)
        pending = self.known(path)
        if pending is not None and pending.unsaved and self.pinned.get(pending.ino):  # written here, not yet in S3
            pending.expires = self.now() + self.ttl
            return pending
        self.forget_path(path)
        self.negative[path] = self.now() + self.ttl
        raise OSError(errno.ENOENT, path)

    async def details(self, inode: Inode) -> Inode:
        """An inode with the object's user metadata and content type (one HEAD when the listing had none)."""
        if inode.is_dir or inode.metadata is not None:
            return inode
        inode.expires = 0.0
        return await self.refresh(inode)

    async def refresh(self, inode: Inode, now: bool = False) -> Inode:
        """Attributes that are at most one TTL old (`now`: fresh from S3); a file gone from S3 is ENOENT."""
        still_named(inode)
        if (inode.expires >= self.now() and not now) or inode.ino == ROOT_INO:
            return inode
        if inode.is_dir:
            inode.expires = self.now() + self.ttl
            return inode
        info = await self.client(inode.path).head(self.key(inode.path))
        still_named(inode)  # (not renamed over or removed while the HEAD was on its way)
        if info is None:
            self.forget_path(inode.path)
            raise OSError(errno.ENOENT, inode.path)
        inode = self.remember(inode.path, info, False)
        self.saved(inode)  # another writer's version: the listing must not bring the old one back after a forget
        return inode

    async def as_the_kernel_knows(self, inode: Inode) -> Inode:
        """`refresh` for a kernel request about an inode: the object must still be the version the kernel was
        given. A replaced one (another writer, or a rename over its name racing an open; learnt now or by another
        request) is ESTALE: the kernel keeps its own size for an inode, and ESTALE has the VFS look the name up
        again, which gives it the new version."""
        try:
            inode = await self.refresh(inode)
        except OSError as exc:  # gone from S3: the kernel's name is stale (an O_CREAT open then creates the file)
            if exc.errno == errno.ENOENT:
                raise OSError(errno.ESTALE, f"{inode.path} is gone from S3") from exc
            raise
        if inode.generation != inode.kernel_generation:
            raise OSError(errno.ESTALE, f"{inode.path} was replaced since the kernel looked it up")
        return inode

    # -- our own changes -------------------------------------------------------------------------------------

    def created(self, path: str, is_dir: bool) -> Inode:
        """A file or directory we just made: known at once, in its parent's listing too. An inode still known
        under the name is of an object gone from S3 (held by the kernel or a handle): the new file is another."""
        gone = self.known(path)
        if gone is not None and not gone.is_dir:
            self.removed(path)
        inode = self.remember(path, None, is_dir)
        inode.size, inode.etag, inode.mtime_ns = 0, "", time.time_ns()
        self.added(path, Entry(path.rpartition("/")[2], is_dir, mtime=datetime.now().astimezone()))
        if is_dir:
            self.listings[path] = Listing({}, self.now() + self.ttl)
        return inode

    def removed(self, path: str) -> None:
        """`path` is gone. Its inode lives on, detached, while the kernel or a handle still holds it."""
        self.forget_path(path)
        self.listings.pop(path, None)
        self.kept_numbers.pop(path, None)
        inode = self.known(path)
        if inode is None:
            return
        del self.by_path[path]
        inode.path = f"{DETACHED}{inode.ino}"
        if inode.lookups == 0 and not self.pinned.get(inode.ino):
            self.by_ino.pop(inode.ino, None)

    def moved(self, old: str, new: str) -> None:
        """A rename: the inode (and every known inode below a directory) keeps its number under the new path."""
        if self.known(new) is not None:
            self.removed(new)
        inode = self.known(old)
        entry = self.cached_entry(old)
        self.forget_path(old)
        if inode is not None:
            entry = entry or Entry(new.rpartition("/")[2], inode.is_dir, inode.size, inode.etag)
        if entry is not None:
            self.added(new, Entry(new.rpartition("/")[2], entry.is_dir, entry.size, entry.etag, entry.mtime))
        below = old + "/"
        for moving in [self.by_ino[i] for p, i in self.by_path.items() if p == old or p.startswith(below)]:
            del self.by_path[moving.path]
            self.kept_numbers.pop(moving.path, None)
            moving.path = new + moving.path[len(old):]
            self.by_path[moving.path] = moving.ino
            self._keep_number(moving.path, moving.ino)
        for listed in [p for p in self.listings if p == old or p.startswith(below)]:
            for name in self.listings[listed].entries:
                was = join(listed, name)
                now = new + was[len(old):]
                if now not in self.by_path:  # forgotten by the kernel: keep the number it was last shown with
                    self._keep_number(now, self.kept_numbers.pop(was, 0) or self._hashed(was))
            del self.listings[listed]

    def saved(self, inode: Inode) -> None:
        """S3 holds this version of the file now (we wrote it, or a HEAD found it): its parent's cached listing
        must say so, or a lookup after the kernel forgot the inode would bring back an older size and ETag."""
        listing = self.listings.get(parent_of(inode.path))
        name = inode.path.rpartition("/")[2]
        entry = Entry(name, False, inode.size, inode.etag, datetime.fromtimestamp(inode.mtime_ns / 1e9).astimezone())
        self.note_change(inode.path, entry)
        if listing is not None:  # also a name the listing lost (the file was removed, then written again)
            listing.entries[name] = entry

    def took_copies(self, new_path: str, is_dir: bool, copies: dict[str, Copy]) -> tuple[Retag, ...]:
        """A copy does not always keep its source's ETag (a multipart object's copy gets its own): the inodes
        moved to `new_path` (and below it, for a directory) and their listing entries take the copies' ETags
        (`copies`, by key). The inodes whose ETag changed: (number, old ETag, new ETag)."""
        below = new_path + "/"
        moved = [(path, ino) for path, ino in self.by_path.items() if path.startswith(below)] if is_dir \
            else [(new_path, self.by_path[new_path])] if new_path in self.by_path else []
        changed: list[Retag] = []
        for path, ino in moved:
            inode = self.by_ino[ino]
            copy = copies.get(self.key(path))
            etag = copy.etag if copy is not None else ""
            if etag and inode.etag and etag != inode.etag:
                changed.append((ino, inode.etag, etag))
                if inode.page_cache_etag == inode.etag:
                    inode.page_cache_etag = etag  # the same bytes: the kernel's pages stay good
                inode.etag = etag
                self.saved(inode)
        return tuple(changed)

    def settled(self, inode: Inode) -> None:
        """Our change of a file reached S3: its attributes, held as ours while it was written, are trusted for
        one TTL from now like any other (not extended at each close: a file reopened more often than the TTL
        would never see another writer's change)."""
        if inode.expires == float("inf") and inode.ino != ROOT_INO:
            inode.expires = self.now() + self.ttl

    def listed(self, path: str, seen: Entry) -> Inode | None:
        """The inode for a name a directory handle lists (`seen` at opendir). One the kernel forgot since is
        rebuilt from the parent's listing as it is now, which our own changes kept current; None when the name
        is gone from it. `seen` serves only when that listing is no longer cached."""
        inode = self.known(path)
        if inode is not None:
            return inode
        listing = self.listings.get(parent_of(path))
        entry = listing.entries.get(seen.name) if listing is not None else seen
        return self.remember(path, entry, entry.is_dir) if entry is not None else None

    def cached_entry(self, path: str) -> Entry | None:
        listing = self.listings.get(parent_of(path))
        return listing.entries.get(path.rpartition("/")[2]) if listing is not None else None

    def invalidate_listing(self, path: str) -> None:
        self.listings.pop(path, None)

    def forget_subtree(self, path: str) -> None:
        """Everything known at and below `path` is stale (a mount was grafted or removed there)."""
        below = path + "/"
        for listed in [p for p in self.listings if p == path or p.startswith(below)]:
            del self.listings[listed]
        for known in [p for p in self.by_path if p == path or p.startswith(below)]:
            self.removed(known)

    # -- invalidation after our own changes ------------------------------------------------------------------

    def forget_path(self, path: str) -> None:
        """Drop a path from its parent's listing (it no longer exists); its inode stays for open handles."""
        self.note_change(path, None)
        listing = self.listings.get(parent_of(path))
        if listing is not None:
            listing.entries.pop(path.rpartition("/")[2], None)

    def added(self, path: str, entry: Entry) -> None:
        """Record a child we created, so a cached listing of the parent stays complete."""
        self.negative.pop(path, None)
        self.note_change(path, entry)
        listing = self.listings.get(parent_of(path))
        if listing is not None:
            listing.entries[entry.name] = entry
