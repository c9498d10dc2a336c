"""NameGuard on its own: which operations and renames wait for which."""

from __future__ import annotations

import trio
import trio.testing

from s3fuse.fs.renames import NameGuard


def test_names_inside_a_renamed_directory_wait_and_a_rename_waits_for_them() -> None:
    async def main() -> None:
        guard = NameGuard()
        order: list[str] = []
        where = {"dir": "d"}  # an inode's path, as the rename moves it

        async def operation(name: str) -> None:
            async with guard.changing_names(lambda: (f"{where['dir']}/{name}",)):
                order.append(f"{name} in {where['dir']}")

        async with trio.open_nursery() as nursery:
            async with guard.renaming_tree(lambda: ("d", "e")):
                nursery.start_soon(operation, "new")
                await trio.testing.wait_all_tasks_blocked()
                assert order == []  # waits for the rename
                where["dir"] = "e"
            await trio.testing.wait_all_tasks_blocked()
        assert order == ["new in e"]  # and then finds its name where the rename put it

        async with trio.open_nursery() as nursery, guard.changing_names(lambda: ("d/x",)):
            async def rename() -> None:
                async with guard.renaming_tree(lambda: ("d", "f")):
                    order.append("renamed")
            nursery.start_soon(rename)
            await trio.testing.wait_all_tasks_blocked()
            assert order[-1] != "renamed"  # waits for the operation under way inside
        assert order[-1] == "renamed"

        async with trio.open_nursery() as nursery, guard.changing_names(lambda: ("d",)):  # the parent's listing
            async def rename_inside() -> None:
                async with guard.renaming_tree(lambda: ("d/a", "d/b")):
                    order.append("renamed inside")
            nursery.start_soon(rename_inside)
            await trio.testing.wait_all_tasks_blocked()
            assert order[-1] == "renamed inside"  # did not wait for it
    trio.run(main)
