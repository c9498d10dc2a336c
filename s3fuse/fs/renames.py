"""Directory renames kept apart from the operations on names inside them.

S3 cannot rename a prefix: a directory rename lists its keys, copies them one by one and deletes them. A file
created, rewritten, removed or renamed inside the directory meanwhile would work on the old prefix after the
listing, and be lost with it or left behind; and the kernel does not hold a directory's contents still while it
renames the directory (only its parent). So the mount does: an operation that changes or opens a name waits
while a rename covers it (and then finds the name where the rename put it), and a rename waits for such
operations already under way below it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

import trio

Paths = Callable[[], tuple[str, ...]]  # computed again after each wait: a rename moves the inodes they come from


def within(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


class NameGuard:
    def __init__(self) -> None:
        self.renaming: list[str] = []  # both paths of each rename in progress
        self.changing: Counter[str] = Counter()  # paths of operations under way
        self.settled = trio.Event()  # set, and replaced, whenever one of them ends

    @contextlib.asynccontextmanager
    async def changing_names(self, paths: Paths) -> AsyncIterator[None]:
        """An operation on names: it waits while a rename covers one of them, and a rename waits for it."""
        current = await self._when(paths, self._renamed)
        self.changing.update(current)
        try:
            yield
        finally:
            self.changing.subtract(current)
            self.changing += Counter()  # drops the paths no operation holds any more
            self._settle()

    @contextlib.asynccontextmanager
    async def renaming_tree(self, paths: Paths) -> AsyncIterator[None]:
        """A rename: it waits for the renames overlapping its trees and the operations under way inside them (not
        above: a lookup or listing of the parent does not stop it), and holds them off."""
        current = await self._when(paths, self._busy)
        self.renaming.extend(current)
        try:
            yield
        finally:
            for path in current:
                self.renaming.remove(path)
            self._settle()

    async def _when(self, paths: Paths, blocked: Callable[[tuple[str, ...]], bool]) -> tuple[str, ...]:
        """The paths, once nothing blocks them (asked again after every change)."""
        while blocked(current := paths()):
            await self.settled.wait()
        return current

    def _renamed(self, paths: tuple[str, ...]) -> bool:
        return any(within(path, top) for path in paths for top in self.renaming)

    def _busy(self, paths: tuple[str, ...]) -> bool:
        return any(within(path, other) or within(other, path) for path in paths for other in self.renaming) \
            or any(within(name, path) for path in paths for name in self.changing)

    def _settle(self) -> None:
        self.settled.set()
        self.settled = trio.Event()
