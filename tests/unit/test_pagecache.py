"""Handing a random reader's block or piece to the kernel's page cache (fs/pagecache.py), with a recording store
in place of FUSE's notify_store: what is stored, and what keeps a store from landing over newer bytes."""

from __future__ import annotations

import os
from typing import Any, cast

import trio
import trio.testing

from s3fuse.cache.blocks import BlockCache, Version
from s3fuse.cache.disk import PIECE
from s3fuse.fs.pagecache import Feeding, PageCacheFeed

BLOCK = 1 << 20


class Bucket:
    bucket = "b"  # all a Version asks of its client here


class RecordingStore:
    """Records each store; holds every store until `released` is set, when asked to."""

    def __init__(self, held: bool = False) -> None:
        self.stores: list[tuple[int, int, bytes]] = []
        self.released = trio.Event()
        if not held:
            self.released.set()
        self.token: trio.lowlevel.TrioToken | None = None

    def __call__(self, ino: int, offset: int, data: memoryview) -> None:  # on a worker thread
        assert self.token is not None
        trio.from_thread.run(self.released.wait, trio_token=self.token)
        self.stores.append((ino, offset, bytes(data)))


def held_block(data: bytes) -> tuple[BlockCache, Version]:
    cache = BlockCache(BLOCK, 4 * BLOCK, None)
    version = Version(cast(Any, Bucket()), "key", "etag", len(data))
    cache.adopt(version, data)  # block 0 in memory, as a read would leave it
    return cache, version


def test_a_random_read_stores_the_block_around_it_once_and_again_once_the_kernel_lost_it() -> None:
    data = os.urandom(BLOCK)
    cache, version = held_block(data)

    async def main() -> None:
        store = RecordingStore()
        store.token = trio.lowlevel.current_trio_token()
        feed, feeding = PageCacheFeed(cache, store), Feeding()
        async with trio.open_nursery() as nursery:
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 3 * PIECE + 100, lambda: True)
            feed.offer(feeding, 7, version, 5 * PIECE, lambda: True)  # the same block, its store under way: once
            feed.offer(feeding, 7, version, 2 * BLOCK, lambda: True)  # nothing in memory there: nothing to store
        assert store.stores == [(7, 0, data)]
        async with trio.open_nursery() as nursery:  # a read reached the daemon after the store: stored again
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 100, lambda: True)
        assert store.stores == [(7, 0, data)] * 2
        assert feed.stored_bytes == 2 * len(data)
    trio.run(main)


def test_a_file_that_changed_before_the_store_gets_none_and_can_be_offered_again() -> None:
    data = os.urandom(BLOCK)
    cache, version = held_block(data)

    async def main() -> None:
        store = RecordingStore()
        store.token = trio.lowlevel.current_trio_token()
        feed, feeding = PageCacheFeed(cache, store), Feeding()
        valid = False  # a writer joined, say
        async with trio.open_nursery() as nursery:
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 100, lambda: valid)
        assert store.stores == []
        valid = True
        async with trio.open_nursery() as nursery:
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 100, lambda: valid)
        assert store.stores == [(7, 0, data)]
    trio.run(main)


def test_a_change_of_the_file_waits_for_the_store_under_way_and_no_store_begins_within_it() -> None:
    data = os.urandom(BLOCK)
    cache, version = held_block(data)
    later = Version(cast(Any, Bucket()), "key", "etag2", len(data))  # another unit in memory, not offered yet
    cache.adopt(later, data)

    async def main() -> None:
        store = RecordingStore(held=True)
        store.token = trio.lowlevel.current_trio_token()
        feed, feeding = PageCacheFeed(cache, store), Feeding()
        changed = trio.Event()

        async def truncate() -> None:
            async with feeding.held():
                assert len(store.stores) == 1  # the store that had begun landed first
                feed.offer(feeding, 7, later, 100, lambda: True)  # within the change: not stored
                changed.set()

        async with trio.open_nursery() as nursery:
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 100, lambda: True)
            await trio.testing.wait_all_tasks_blocked()  # the store is under way, held
            nursery.start_soon(truncate)
            await trio.testing.wait_all_tasks_blocked()
            assert not changed.is_set()  # the change waits for it
            store.released.set()
            await changed.wait()
        assert [offset for _, offset, _ in store.stores] == [0]
        assert not feeding.pending
    trio.run(main)
