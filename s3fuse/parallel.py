"""Run coroutines concurrently on trio and fail like a sequential call would: with the first error itself,
not an ExceptionGroup, so an S3Error keeps its errno on the way up."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import trio

T = TypeVar("T")
R = TypeVar("R")


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf exception; cancellations only when nothing else failed."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    real = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    return (real or leaves)[0]


async def gather(*functions: Callable[[], Awaitable[object]]) -> None:
    """Await all, concurrently; the first failure cancels the rest and is raised as itself."""
    try:
        async with trio.open_nursery() as nursery:
            for function in functions:
                nursery.start_soon(function)
    except BaseExceptionGroup as group:
        raise first_error(group) from group


async def bounded_map(function: Callable[[T], Awaitable[R]], items: Iterable[T], limit: int) -> list[R]:
    """function(item) for every item, at most `limit` at a time, results in item order."""
    items = list(items)
    results: list[R | None] = [None] * len(items)
    limiter = trio.CapacityLimiter(max(1, limit))

    async def one(index: int) -> None:
        async with limiter:
            results[index] = await function(items[index])

    await gather(*(functools.partial(one, index) for index in range(len(items))))
    return results  # type: ignore[return-value]
