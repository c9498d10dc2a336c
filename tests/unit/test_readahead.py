"""Which sibling files a directory reader gets fetched ahead."""

from __future__ import annotations

from s3fuse.fs.listing import Entry
from s3fuse.fs.readahead import AHEAD, LARGEST_DIRECTORY, SMALL_FILE, SiblingReadAhead


def listing() -> dict[str, Entry]:
    entries = {f"f{n:02d}": Entry(f"f{n:02d}", False, 100, f"etag{n}") for n in range(30)}
    entries["f05"] = Entry("f05", False, SMALL_FILE + 1, "big")
    entries["f06"] = Entry("f06", True)
    entries["f07"] = Entry("f07", False, 0, "empty")
    return entries


def test_the_second_file_in_order_fetches_the_next_small_ones() -> None:
    readahead, entries = SiblingReadAhead(), listing()
    assert readahead.next_files("d", entries, "f00") == []  # one open is no order yet
    ahead = [entry.name for entry in readahead.next_files("d", entries, "f01")]
    assert ahead == [f"f{n:02d}" for n in range(2, 2 + AHEAD) if n not in (5, 6, 7)]  # no large, dir or empty


def test_a_reader_that_jumps_around_gets_nothing_fetched() -> None:
    readahead, entries = SiblingReadAhead(), listing()
    assert readahead.next_files("d", entries, "f20") == []
    assert readahead.next_files("d", entries, "f03") == []  # backwards
    assert readahead.next_files("d", entries, "f03") == []  # the same file again
    assert readahead.next_files("d", entries, f"f{3 + AHEAD + 1:02d}") == []  # too far ahead


def test_directories_are_followed_apart() -> None:
    readahead, entries = SiblingReadAhead(), listing()
    readahead.next_files("a", entries, "f10")
    assert readahead.next_files("b", entries, "f11") == []
    assert [entry.name for entry in readahead.next_files("a", entries, "f11")][:1] == ["f12"]


def test_a_directory_too_large_to_sort_is_not_read_ahead() -> None:
    readahead = SiblingReadAhead()
    entries = {f"f{n:06d}": Entry(f"f{n:06d}", False, 100, "e") for n in range(LARGEST_DIRECTORY + 1)}
    readahead.next_files("d", entries, "f000000")
    assert readahead.next_files("d", entries, "f000001") == []
