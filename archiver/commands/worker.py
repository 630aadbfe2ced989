"""`archiver worker`: one arq worker process (start several for scale)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from archiver.commands.serve import Shutdown, run_async
from models.errors import ArchiverError, ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from arq.worker import Worker

    from archiver.commands import SubParsers
    from models.config import Settings


def register(subparsers: SubParsers) -> None:
    worker = add_command(
        subparsers,
        "worker",
        help_text="run one arq worker",
        description="Process deliveries, capture story insights, poll Threads and refresh "
        "tokens, taking jobs from REDIS_URL. Start several for scale; they share the work.",
    )
    worker.set_defaults(handler=run_worker_command)


def require_redis(settings: Settings) -> str:
    if not settings.redis_url:
        msg = "REDIS_URL must be set for `archiver worker` (`archiver run` embeds a Redis)"
        raise ConfigError(msg)
    return settings.redis_url


def run_worker_command(_args: argparse.Namespace, settings: Settings) -> int:
    require_redis(settings)
    open_database(settings).dispose()  # an unmigrated database fails here, in one line
    return run_async(work(settings))


def stop_worker(worker: Worker) -> None:
    """Stop taking jobs and cancel the running ones: their rows stay pending for the sweep."""
    if worker.main_task is not None and not worker.main_task.done():
        worker.handle_sig(signal.SIGTERM)


async def close_worker(worker: Worker) -> None:
    """Close once cancelled jobs have settled: arq's close() gathers them and would re-raise
    their cancellation, ending the process with a traceback instead of a clean stop."""
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    await worker.close()


async def work(settings: Settings) -> int:
    """Run one worker on this loop until SIGINT/SIGTERM; the exit status says which.

    The worker is built here, inside the running loop, because arq binds to the loop that is
    current when a Worker is created; signals go through `Shutdown` as for `serve` and `run`.
    """
    from redis.exceptions import RedisError

    from workers.main import build_worker

    worker = build_worker(settings, handle_signals=False)
    shutdown = Shutdown()
    shutdown.install()
    shutdown.on_stop(lambda: stop_worker(worker), lambda: stop_worker(worker))
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        if shutdown.signal is None:
            raise
    except RedisError as exc:
        msg = f"Redis unavailable at REDIS_URL: {exc}"
        raise StoreUnavailable(msg) from exc
    finally:
        await close_worker(worker)
    if shutdown.signal is None:
        msg = "the worker stopped unexpectedly (see the log above)"
        raise ArchiverError(msg)
    return shutdown.exit_code
