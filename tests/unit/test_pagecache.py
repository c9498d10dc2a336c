"""Handing a random reader's block or piece to the kernel's page cache (fs/pagecache.py), with a recording store
in place of FUSE's notify_store: what is stored, and what keeps a store from landing over newer bytes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, cast

import trio
import trio.testing

from s3fuse.cache.blocks import BlockCache, Version
from s3fuse.cache.disk import PIECE
from s3fuse.fs.pagecache import SPAN, Feeding, PageCacheFeed

BLOCK = 1 << 20


class Bucket:
    bucket = "b"  # all a Version asks of its client here


class RecordingStore:
    """Records each store; holds every store until `released` is set, when asked to. Made within trio.run."""

    def __init__(self, held: bool = False) -> None:
        self.stores: list[tuple[int, int, bytes]] = []
        self.released = trio.Event()
        if not held:
            self.released.set()
        self.token = trio.lowlevel.current_trio_token()
        self.entered = threading.Event()  # a store has reached the kernel, as it were

    def __call__(self, ino: int, offset: int, data: memoryview) -> None:  # on a worker thread
        self.entered.set()
        trio.from_thread.run(self.released.wait, trio_token=self.token)
        self.stores.append((ino, offset, bytes(data)))


def held_block(data: bytes) -> tuple[BlockCache, Version]:
    cache = BlockCache(BLOCK, 4 * BLOCK, None)
    version = Version(cast(Any, Bucket()), "key", "etag", len(data))
    cache.adopt(version, data)  # block 0 in memory, as a read would leave it
    return cache, version


def recorded(cache: BlockCache, held: bool = False) -> tuple[RecordingStore, PageCacheFeed, Feeding]:
    """A feed whose stores are recorded (within trio.run)."""
    store = RecordingStore(held)
    return store, PageCacheFeed(cache, store), Feeding()


async def offered(feed: PageCacheFeed, feeding: Feeding, version: Version, *offsets: int,
                  still_valid: Callable[[], bool] = lambda: True) -> None:
    """Random reads at `offsets` offer what is around them; back once every store is done."""
    async with trio.open_nursery() as nursery:
        feed.nursery = nursery
        for offset in offsets:
            feed.offer(feeding, 7, version, offset, False, still_valid)


def test_a_random_read_stores_what_is_around_it_once_and_again_once_the_kernel_lost_it() -> None:
    data = os.urandom(4 * BLOCK)
    cache = BlockCache(4 * BLOCK, 8 * BLOCK, None)
    version = Version(cast(Any, Bucket()), "key", "etag", len(data))
    cache.adopt(version, data)  # one 4 MiB block in memory, as a read would leave it

    async def main() -> None:
        store, feed, feeding = recorded(cache)
        span = (7, 2 * SPAN, data[2 * SPAN:3 * SPAN])  # a MiB of the block, not all of it
        # the second read is in the same MiB, its store under way; nothing is in memory around the third
        await offered(feed, feeding, version, 2 * SPAN + 3 * PIECE + 100, 2 * SPAN + 5000, 5 * BLOCK)
        assert store.stores == [span]
        await offered(feed, feeding, version, 2 * SPAN)  # a read reached the daemon after the store: stored again
        assert store.stores == [span, span]
        assert feed.stored_bytes == 2 * SPAN
    trio.run(main)


def test_a_piece_in_memory_without_its_block_is_stored_alone() -> None:
    data = os.urandom(PIECE)
    cache = BlockCache(4 * BLOCK, 8 * BLOCK, None)
    version = Version(cast(Any, Bucket()), "key", "etag", 4 * BLOCK)
    cache._keep(version.block_key(PIECE, 9), bytearray(data), PIECE)  # as a random read's piece fetch leaves it

    async def main() -> None:
        store, feed, feeding = recorded(cache)
        await offered(feed, feeding, version, 9 * PIECE + 100)
        assert store.stores == [(7, 9 * PIECE, data)]
    trio.run(main)


def test_a_file_that_changed_before_the_store_gets_none_and_can_be_offered_again() -> None:
    data = os.urandom(BLOCK)
    cache, version = held_block(data)

    async def main() -> None:
        store, feed, feeding = recorded(cache)
        await offered(feed, feeding, version, 100, still_valid=lambda: False)  # a writer joined, say
        assert store.stores == []
        await offered(feed, feeding, version, 100)
        assert store.stores == [(7, 0, data)]
    trio.run(main)


def test_a_change_of_the_file_waits_for_the_store_under_way_and_no_store_begins_within_it() -> None:
    data = os.urandom(BLOCK)
    cache, version = held_block(data)
    later = Version(cast(Any, Bucket()), "key", "etag2", len(data))  # another unit in memory, not offered yet
    cache.adopt(later, data)

    async def main() -> None:
        store, feed, feeding = recorded(cache, held=True)
        changed = trio.Event()

        async def truncate() -> None:
            async with feeding.held():
                assert len(store.stores) == 1  # the store that had begun landed first
                feed.offer(feeding, 7, later, 100, False, lambda: True)  # within the change: not stored
                changed.set()

        async with trio.open_nursery() as nursery:
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 100, False, lambda: True)
            await trio.to_thread.run_sync(store.entered.wait)  # the store is under way, in the kernel, held
            nursery.start_soon(truncate)
            await trio.testing.wait_all_tasks_blocked()
            assert not changed.is_set()  # the change waits for it
            store.released.set()
            await changed.wait()
        assert [offset for _, offset, _ in store.stores] == [0]
        assert not feeding.pending
    trio.run(main)


def test_a_file_that_changed_while_the_store_waited_for_its_thread_gets_none() -> None:
    """Checked on the loop before the hop, and again on the worker thread just before the store: the thread may
    wait for the GIL while the loop learns of a new version."""
    data = os.urandom(BLOCK)
    cache, version = held_block(data)
    answers = iter([True, False])  # the loop's check, then the thread's

    async def main() -> None:
        store, feed, feeding = recorded(cache)
        await offered(feed, feeding, version, 100, still_valid=lambda: next(answers))
        assert store.stores == [] and feed.stored_bytes == 0
    trio.run(main)


def test_telling_the_kernel_of_a_version_waits_only_for_stores_of_another_one() -> None:
    data = os.urandom(BLOCK)
    cache, version = held_block(data)

    async def main() -> None:
        store, feed, feeding = recorded(cache, held=True)
        async with trio.open_nursery() as nursery:
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 100, False, lambda: True)
            await trio.to_thread.run_sync(store.entered.wait)
            await feeding.settled_for("etag")  # the store under way is of this version: no wait
            told = trio.Event()

            async def lookup_of_a_new_version() -> None:
                await feeding.settled_for("etag2")
                told.set()

            nursery.start_soon(lookup_of_a_new_version)
            await trio.testing.wait_all_tasks_blocked()
            assert not told.is_set()
            store.released.set()
            await told.wait()
        assert len(store.stores) == 1
    trio.run(main)


def test_a_change_waits_only_for_the_stores_that_began_before_it() -> None:
    """Readers that keep stores coming cannot hold an open or a truncate off."""
    data = os.urandom(BLOCK)
    cache, version = held_block(data)
    later = Version(cast(Any, Bucket()), "key", "etag2", len(data))
    cache.adopt(later, data)

    async def main() -> None:
        store, feed, feeding = recorded(cache, held=True)
        first = store.released
        async with trio.open_nursery() as nursery:
            feed.nursery = nursery
            feed.offer(feeding, 7, version, 100, False, lambda: True)
            await trio.to_thread.run_sync(store.entered.wait)
            settled = trio.Event()

            async def change() -> None:
                await feeding.settled()
                settled.set()

            nursery.start_soon(change)
            await trio.testing.wait_all_tasks_blocked()
            feed.offer(feeding, 7, later, 100, False, lambda: True)  # begins after the change started waiting
            store.released = trio.Event()  # the second store will be held in its turn
            first.set()
            with trio.fail_after(10):
                await settled.wait()  # while the second store is still under way
            assert len(store.stores) == 1 and len(feeding.pending) == 1
            store.released.set()
        assert len(store.stores) == 2
    trio.run(main)
