"""Bounded work for benchmarks: at most so many jobs at once, none started after a deadline, blocking calls in threads.

Every loop a benchmark runs is bounded twice: by a count and by a time budget. A job that has not started when
the budget is spent is not run, and the benchmark reports how many ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


async def bounded(
    jobs: Iterable[Callable[[], Awaitable[T]]], *, concurrency: int, deadline: float | None = None
) -> list[T]:
    """Run ``jobs`` at most ``concurrency`` at a time; skip those not started by ``deadline`` (perf_counter)."""
    gate = asyncio.Semaphore(concurrency)
    done: list[T] = []

    async def one(job: Callable[[], Awaitable[T]]) -> None:
        async with gate:
            if deadline is not None and time.perf_counter() > deadline:
                return
            done.append(await job())

    try:
        async with asyncio.TaskGroup() as group:  # one failing job cancels the rest
            for job in jobs:
                group.create_task(one(job))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return done


class Threads:
    """A pool for the synchronous clients benchmarks drive (BrokerClient, certify's raw MCP prober)."""

    def __init__(self, size: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(size, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(function, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
