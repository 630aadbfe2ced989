"""`archiver run`: receiver, worker and scheduler in one process, for a single machine.

Migrations are applied first; without REDIS_URL an embedded redis-server (archiver.embedded)
is started on a unix socket and both halves are pointed at it through a settings copy. The
receiver (uvicorn) and the arq worker share one uvloop event loop; SIGINT/SIGTERM stop both
gracefully, then the embedded Redis, so nothing is left running and no file is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from archiver.commands import add_command
from archiver.commands.db import apply_migrations
from archiver.commands.serve import (
    Shutdown,
    add_address_arguments,
    run_async,
    stop_server,
    with_address,
)
from archiver.commands.worker import require_token_key, stop_worker
from archiver.embedded import EmbeddedRedis
from archiver.listeners import announce_when_started, make_servers, run_servers
from core.errors import ArchiverError

if TYPE_CHECKING:
    import uvicorn
    from arq.worker import Worker

    from archiver.commands import SubParsers
    from core.config import Settings

log = logging.getLogger(__name__)


def register(subparsers: SubParsers) -> None:
    run = add_command(
        subparsers,
        "run",
        help_text="everything in one process: receiver + worker + scheduler",
        description="Apply migrations, then receive webhooks and capture insights in one "
        "process. DATABASE_URL defaults to the SQLite file archiver.db; without REDIS_URL an "
        "embedded Redis is started (and removed on exit). Needs META_APP_SECRET and "
        "META_VERIFY_TOKEN.",
    )
    add_address_arguments(run)
    run.set_defaults(handler=run_all_command)


def run_all_command(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_address(settings, args)
    settings.require_receiver_secrets()
    print(apply_migrations(settings.database_url), flush=True)
    require_token_key(settings)
    with contextlib.ExitStack() as stack:
        if settings.redis_url is None:
            embedded = stack.enter_context(EmbeddedRedis())
            settings = settings.model_copy(update={"redis_url": embedded.url})
            print(
                f"embedded Redis at {embedded.url} (pid {embedded.pid}, removed on exit)",
                flush=True,
            )
        return run_async(run_all(settings))


async def run_all(settings: Settings) -> int:
    """Receiver and worker on one loop, their metrics in one registry served on the ops
    listener (METRICS_PORT; WORKER_METRICS_PORT is not used), the archive-wide gauges too."""
    from prometheus_client import CollectorRegistry

    from receiver.app import create_app
    from reports.worker_metrics import WorkerMetrics
    from workers.exporter import archive_collector
    from workers.main import build_workers

    registry = CollectorRegistry()
    servers = make_servers(create_app(settings, registry=registry), settings)
    workers = build_workers(settings, metrics=WorkerMetrics(registry), handle_signals=False)
    collector = archive_collector(settings)
    registry.register(collector)
    try:
        return await _serve_all(settings, servers, workers)
    finally:
        collector.close()


async def _serve_all(
    settings: Settings, servers: list[uvicorn.Server], workers: list[Worker]
) -> int:
    from workers.running import close_workers, run_lanes

    shutdown = Shutdown()
    shutdown.install()
    for server in servers:
        stop_server(server, shutdown)
    shutdown.on_stop(lambda: stop_worker(workers), lambda: stop_worker(workers))
    parts = [
        asyncio.create_task(run_servers(servers), name="receiver"),
        asyncio.create_task(run_lanes(workers), name="worker"),
    ]
    announce = asyncio.create_task(announce_when_started(servers, settings))
    try:
        await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        if shutdown.signal is None:  # one part ended by itself: the other must not run alone
            log.error("one part of `archiver run` stopped; stopping the other")
        for server in servers:  # all again even after a signal: stopping twice is harmless
            server.should_exit = True
        stop_worker(workers)
        outcomes = await asyncio.gather(*parts, return_exceptions=True)
    finally:
        announce.cancel()
        await close_workers(workers)
    _raise_failure(outcomes, stopped=shutdown.signal is not None)
    return shutdown.exit_code


def _raise_failure(outcomes: list[Any], *, stopped: bool) -> None:
    """Turn what the parts ended with into one ArchiverError, unless they were told to stop."""
    for name, outcome in zip(("receiver", "worker"), outcomes, strict=True):
        if isinstance(outcome, ArchiverError):
            raise outcome
        if isinstance(outcome, asyncio.CancelledError):
            continue
        if isinstance(outcome, BaseException):
            msg = f"the {name} failed: {type(outcome).__name__}: {outcome}"
            raise ArchiverError(msg) from outcome
    if not stopped:
        msg = "`archiver run` stopped unexpectedly (see the log above)"
        raise ArchiverError(msg)
