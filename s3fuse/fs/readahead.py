"""Read-ahead across the small files of a directory.

Programs that read a directory's files one after another (`cat dir/*`, `grep -r`, `tar c`, `cp -r`, rsync out
of the mount) go in readdir order, which is name order here. Each small file costs a whole request's latency
(about 5 ms against RGW, far more than its bytes), so once a reader has opened two files in that order, the
next few small ones are fetched while it handles this one: one GET each, the same it would send itself, and no
request at all for a reader that jumps around.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass

from s3fuse.fs.listing import Entry

SMALL_FILE = 1 << 20  # files up to this size are fetched ahead (one GET each, their own size in memory)
AHEAD = 8  # files fetched ahead of the reader
DIRECTORIES = 64  # directories whose last opened name is remembered
LARGEST_DIRECTORY = 10_000  # entries; larger listings are not sorted on the event loop (10,000 names: 2 ms)


@dataclass
class Order:
    """A listing's names in order, kept while the listing is the same object with as many entries."""

    entries: dict[str, Entry]
    count: int
    names: list[str]


class SiblingReadAhead:
    def __init__(self) -> None:
        self.last_opened: OrderedDict[str, str] = OrderedDict()  # directory -> the name opened last in it
        self.orders: OrderedDict[str, Order] = OrderedDict()

    def next_files(self, directory: str, entries: dict[str, Entry], name: str) -> list[Entry]:
        """The small files to fetch now that `name` was opened for reading in `directory` (whose listing is
        `entries`): the next AHEAD names after it, when the name opened before it was among the AHEAD before."""
        if len(entries) > LARGEST_DIRECTORY:
            return []
        names = self._names(directory, entries)
        position = bisect.bisect_left(names, name)
        previous = self.last_opened.pop(directory, None)
        self.last_opened[directory] = name
        while len(self.last_opened) > DIRECTORIES:
            self.last_opened.popitem(last=False)
        if previous is None or not 0 < position - bisect.bisect_left(names, previous) <= AHEAD:
            return []
        ahead = (entries.get(following) for following in names[position + 1:position + 1 + AHEAD])
        return [entry for entry in ahead if entry is not None and not entry.is_dir and entry.etag
                and 0 < entry.size <= SMALL_FILE]

    def _names(self, directory: str, entries: dict[str, Entry]) -> list[str]:
        order = self.orders.get(directory)
        if order is None or order.entries is not entries or order.count != len(entries):
            order = Order(entries, len(entries), sorted(entries))
            self.orders[directory] = order
        self.orders.move_to_end(directory)
        while len(self.orders) > DIRECTORIES:
            self.orders.popitem(last=False)
        return order.names
