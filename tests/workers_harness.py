"""Real arq workers for tests: run on the test's event loop until the block ends, and a
bounded wait for a condition read from the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from arq.worker import Worker

from models.config import Settings
from workers.main import build_worker, close_worker


@asynccontextmanager
async def running_workers(settings: Settings, count: int = 1) -> AsyncIterator[list[Worker]]:
    """`count` real arq workers (cron included) on this loop until the block ends."""
    workers = [build_worker(settings, poll_delay=0.05, handle_signals=False) for _ in range(count)]
    tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    try:
        yield workers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            await close_worker(worker)


async def eventually(predicate: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    """Poll a (blocking, quick) predicate from the loop until truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(predicate)):
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s"
            raise TimeoutError(msg)
        await asyncio.sleep(0.1)
    return result
