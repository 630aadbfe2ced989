"""Running the lanes of one worker process together (workers.main builds them): they start
together, and when one ends, by a signal, a cancellation or a failure, all of them stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from arq.worker import Worker

from core.config import Settings
from workers.main import build_workers

log = logging.getLogger(__name__)


def stop_lanes(workers: Sequence[Worker], sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop taking jobs and cancel the running ones (arq queues them again for the next try)."""
    for worker in workers:
        if worker.main_task is not None and not worker.main_task.done():
            worker.handle_sig(sig)


async def run_lanes(workers: Sequence[Worker]) -> None:
    """Run every lane until one of them ends, then stop the others.

    Raises the first lane's failure (e.g. Redis gone), else CancelledError: the lanes run
    until stopped (`stop_lanes`) or until this coroutine is cancelled.
    """
    tasks = [asyncio.ensure_future(worker.async_run()) for worker in workers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_lanes(workers)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    errors = [o for o in failures if not isinstance(o, asyncio.CancelledError)]
    if errors:
        raise errors[0]
    if failures:
        raise failures[0]


async def close_worker(worker: Worker, *, cancel_jobs: bool = True) -> None:
    """Let cancelled jobs settle before arq's close(), which would re-raise their
    cancellation; arq re-queues a cancelled job, so another worker runs it again."""
    if cancel_jobs:
        for task in worker.tasks.values():
            task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    await worker.close()


async def close_workers(workers: Sequence[Worker], *, cancel_jobs: bool = True) -> None:
    for worker in workers:
        await close_worker(worker, cancel_jobs=cancel_jobs)


async def run_worker(settings: Settings, *, handle_signals: bool = True) -> None:
    """Run one worker process's lanes until SIGINT/SIGTERM (then return) or until cancelled
    (then raise).

    With `handle_signals=False` the caller owns the signals and stops the lanes by cancelling
    this coroutine; running jobs are cancelled and re-run by the next worker.
    """
    workers = build_workers(settings, handle_signals=False)
    signalled: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        signalled.append(sig)
        stop_lanes(workers, sig)

    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        await run_lanes(workers)
    except asyncio.CancelledError:
        if not signalled:
            raise
        log.info("worker stopped on %s", signalled[0].name)
    finally:
        await close_workers(workers, cancel_jobs=not signalled)
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
