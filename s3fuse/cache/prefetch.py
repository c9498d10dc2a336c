"""Sequential-read detection per open file: a reader that keeps reading near where it stopped gets a window of
blocks fetched ahead of it, doubling up to a byte limit; a random reader fetches only the block it needs.

"Near" matters: the kernel's read-ahead sends several requests at once and they are answered concurrently,
so a sequential reader's requests can arrive slightly out of order.
"""

from __future__ import annotations

from dataclasses import dataclass

REORDER_SLACK = 4 << 20  # how far out of order a sequential reader's requests may arrive
STREAM_BYTES = 1 << 20  # read in sequence before whole blocks are fetched for a reader that started mid-file
RANDOM_RUN = 4  # reads in a row away from the last one that make a reader which never streamed a random one


@dataclass
class Prefetcher:
    """The state of one open file's reader."""

    block_size: int
    max_window_bytes: int
    next_offset: int = 0
    window: int = 0  # blocks ahead of the reader
    streak: int = 0  # bytes read in sequence so far
    streamed: bool = False  # has read STREAM_BYTES in sequence at some point
    random_run: int = 0  # reads in a row that did not continue the one before

    def advise(self, offset: int, length: int) -> range:
        """Blocks to fetch ahead for a read of [offset, offset+length); empty for a random read."""
        sequential = self.sequential(offset)
        self.streak = self.streak + length if sequential else length
        self.streamed = self.streamed or self.streak >= STREAM_BYTES
        self.random_run = 0 if sequential else self.random_run + 1
        self.next_offset = max(self.next_offset, offset + length) if sequential else offset + length
        if not sequential:
            self.window = 0
            return range(0)
        max_window = max(1, self.max_window_bytes // self.block_size)
        self.window = min(max_window, max(1, self.window * 2))
        current = max(0, self.next_offset - 1) // self.block_size
        return range(current + 1, current + 1 + self.window)

    def wants_blocks(self, offset: int) -> bool:
        """Whole blocks for a reader from the start of the file or one that has kept reading in sequence; a
        read elsewhere (random access, and the kernel's read-ahead right after it) gets just its range."""
        if offset == 0 and self.next_offset == 0:
            return True
        return self.sequential(offset) and self.streak >= STREAM_BYTES

    def random_reader(self) -> bool:
        """Only ever jumping about (fio, a database), not a sequential reader one of whose requests came out of
        order: a sequential reader's read-ahead skips what is in the page cache, so a whole block put there for
        it (fs/pagecache.py) would make its next request, 8 MiB on, look random too."""
        return not self.streamed and self.random_run >= RANDOM_RUN

    def sequential(self, offset: int) -> bool:
        """Whether a read at `offset` continues this reader's stream (the first read at 0 starts one)."""
        return abs(offset - self.next_offset) <= REORDER_SLACK
