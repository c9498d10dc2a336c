"""Sequential-read detection per open file: a reader that keeps reading where it stopped gets a window of
blocks fetched ahead of it, doubling up to a byte limit; a random reader fetches only the block it needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Prefetcher:
    block_size: int
    max_window_bytes: int
    next_offset: int = 0
    window: int = 0  # blocks ahead of the reader

    def advise(self, offset: int, length: int) -> range:
        """Blocks to fetch ahead after a read of [offset, offset+length)."""
        sequential = offset == self.next_offset
        self.next_offset = offset + length
        max_window = max(1, self.max_window_bytes // self.block_size)
        if not sequential:
            self.window = 0
            return range(0)
        self.window = min(max_window, max(1, self.window * 2))
        current = (offset + length - 1) // self.block_size if length else offset // self.block_size
        return range(current + 1, current + 1 + self.window)
