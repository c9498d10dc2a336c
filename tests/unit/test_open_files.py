"""OpenFiles on its own: which open file a handle joins, and when it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing

from s3fuse.config import Config
from s3fuse.fs.handles import OpenFiles, Staging
from s3fuse.fs.inodes import Inode


def test_a_file_opened_again_while_its_last_close_waits_for_the_lock_lives_on(tmp_path: Path) -> None:
    """FUSE sends the release after close(2) returned, so an open can join the file while the release waits
    for its lock (held by a rename, say): the file must stay known, or renames no longer move it and its next
    upload goes to the old key."""
    async def main() -> None:
        files = OpenFiles(cast(Any, None), Staging(str(tmp_path)))
        inode = Inode(5, "d/f", False)
        file = files.open(inode, "d/f", cast(Any, None), Config())
        async with trio.open_nursery() as nursery, file.lock:
            nursery.start_soon(files.close, file)
            await trio.testing.wait_all_tasks_blocked()
            assert files.open(inode, "d/f", cast(Any, None), Config()) is file
        assert files.get(5) is file and file.handles == 1
        assert files.below(cast(Any, None), "d/") == [file]
        await files.close(file)
        assert files.get(5) is None
    trio.run(main)


def test_the_last_writers_release_uploads_what_a_truncate_left_to_it_while_a_reader_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """truncate(path) with a writer open leaves the upload to that writer; its release can come after the
    truncate (the kernel sends it after close returned), and then a reader may hold the file for hours."""
    async def main() -> None:
        files = OpenFiles(cast(Any, None), Staging(str(tmp_path)))
        inode = Inode(5, "d/f", False)
        file = files.open(inode, "d/f", cast(Any, None), Config(), writable=True)
        files.open(inode, "d/f", cast(Any, None), Config())  # a reader
        uploads: list[int] = []

        async def commit() -> None:
            uploads.append(file.handles)
            file.dirty = False
        monkeypatch.setattr(file, "commit", commit)
        file.dirty = True  # what the truncate left
        await files.close(file, writable=True)
        assert uploads == [1] and not file.dirty and files.get(5) is file
    trio.run(main)
