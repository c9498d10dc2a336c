"""Sequential detection: windows grow for sequential readers, random readers fetch nothing ahead."""

from __future__ import annotations

from s3fuse.cache.prefetch import Prefetcher

MiB = 1 << 20


def test_window_doubles_up_to_the_limit() -> None:
    prefetcher = Prefetcher(block_size=8 * MiB, max_window_bytes=32 * MiB)
    windows = []
    for offset in range(0, 64 * MiB, MiB):
        ahead = prefetcher.advise(offset, MiB)
        windows.append(len(ahead))
    assert windows[:3] == [1, 2, 4]
    assert max(windows) == 4  # 32 MiB / 8 MiB blocks


def test_prefetch_starts_after_the_block_being_read() -> None:
    prefetcher = Prefetcher(block_size=8 * MiB, max_window_bytes=64 * MiB)
    ahead = prefetcher.advise(0, MiB)
    assert ahead == range(1, 2)


def test_slightly_reordered_requests_stay_sequential() -> None:
    prefetcher = Prefetcher(block_size=MiB, max_window_bytes=16 * MiB)
    prefetcher.advise(0, 128 * 1024)
    prefetcher.advise(256 * 1024, 128 * 1024)  # arrived before the one at 128 KiB
    assert len(prefetcher.advise(128 * 1024, 128 * 1024)) == 4


def test_random_reads_fetch_nothing_ahead() -> None:
    prefetcher = Prefetcher(block_size=MiB, max_window_bytes=16 * MiB)
    for offset in (500 * MiB, 3 * MiB, 900 * MiB, 40 * MiB):
        assert len(prefetcher.advise(offset, 4096)) == 0


def test_blocks_only_for_readers_in_sequence() -> None:
    prefetcher = Prefetcher(block_size=8 * MiB, max_window_bytes=64 * MiB)
    assert prefetcher.wants_blocks(0)  # from the start: whole blocks at once
    reader = Prefetcher(block_size=8 * MiB, max_window_bytes=64 * MiB)
    assert not reader.wants_blocks(100 * MiB)  # mid-file: first its range only
    offset = 100 * MiB
    while not reader.wants_blocks(offset):
        reader.advise(offset, 128 * 1024)
        offset += 128 * 1024
    assert offset - 100 * MiB == MiB  # after 1 MiB read in sequence


def test_a_random_reader_gets_the_whole_block_a_sequential_one_a_mib() -> None:
    """A reader that only jumped about is a random one, whose block may go whole into the page cache; one that has
    read a MiB in sequence stays a sequential one, even when its requests then come out of order."""
    random_one, sequential_one = Prefetcher(8 << 20, 64 << 20), Prefetcher(8 << 20, 64 << 20)
    for offset in (500 << 20, 3 << 20, 900 << 20, 40 << 20):
        random_one.advise(offset, 4096)
    assert random_one.random_reader()
    for offset in range(0, 2 << 20, 1 << 20):
        sequential_one.advise(offset, 1 << 20)
    for offset in (500 << 20, 3 << 20, 900 << 20, 40 << 20, 70 << 20):
        sequential_one.advise(offset, 1 << 20)
    assert not sequential_one.random_reader()
    assert not Prefetcher(8 << 20, 64 << 20).random_reader()  # no read yet

