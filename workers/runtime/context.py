"""The worker's own thread pool for blocking database work.

Jobs run their SQLAlchemy calls here rather than in the event loop's default executor, so
shutdown can wait for the calls of cancelled jobs to finish before the engine is disposed (a
connection handed back after that would be left open), and database concurrency per worker
stays within the engine's pool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
DB_THREADS = "db_threads"


def make_db_threads(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="worker-db")


async def in_thread(
    ctx: dict[str, Any], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """`fn(*args, **kwargs)` in the worker's database threads (the loop's default pool when
    the ctx has none, e.g. a job called directly)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(fn, *args, **kwargs)
    return await loop.run_in_executor(ctx.get(DB_THREADS), call)


async def close_db_threads(ctx: dict[str, Any]) -> None:
    """Wait for the calls already running (those of cancelled jobs too), then stop."""
    pool: ThreadPoolExecutor | None = ctx.pop(DB_THREADS, None)
    if pool is not None:
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
