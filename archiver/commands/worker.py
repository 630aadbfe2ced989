"""`archiver worker`: one worker process, an arq worker per lane (start several for scale)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from archiver.commands.serve import Shutdown, run_async
from core.errors import ConfigError

if TYPE_CHECKING:
    from arq.worker import Worker

    from archiver.commands import SubParsers
    from core.config import Settings
    from reports.worker_metrics import WorkerMetrics


log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0  # seconds between attempts while Redis is away


def register(subparsers: SubParsers) -> None:
    worker = add_command(
        subparsers,
        "worker",
        help_text="run one worker process (an arq worker per lane)",
        description="Process deliveries, capture story insights, poll Threads and refresh "
        "tokens, taking jobs from REDIS_URL: deliveries in a lane of their own, so a burst "
        "never delays a capture. Start several for scale; they share the work, and a killed "
        "one's jobs are taken over within seconds. Refuses to start (exit 2) when a stored "
        "token does not decrypt with TOKEN_ENCRYPTION_KEY (or no key is set for encrypted "
        "tokens); with a key, encrypts the tokens still stored in plaintext.",
    )
    worker.set_defaults(handler=run_worker_command)


def require_redis(settings: Settings) -> str:
    if not settings.redis_url:
        msg = "REDIS_URL must be set for `archiver worker` (`archiver run` embeds a Redis)"
        raise ConfigError(msg)
    return settings.redis_url


def run_worker_command(_args: argparse.Namespace, settings: Settings) -> int:
    require_redis(settings)
    require_token_key(settings)  # an unmigrated database fails here too, in one line
    return run_async(work(settings))


def require_token_key(settings: Settings) -> None:
    """Refuse to start (ConfigError, exit 2) when a stored token does not decrypt with
    TOKEN_ENCRYPTION_KEY, or is encrypted and no key is set: every job would fail while the
    stories expire. With a key, encrypt the tokens stored in plaintext before it was set."""
    from store.token_keys import encrypt_plaintext, require_readable

    engine = open_database(settings)
    try:
        found = require_readable(engine, settings.token_key)
        if not found.plaintext:
            return
        if settings.token_key is None:
            log.warning(
                "%d token(s) stored in plaintext: set TOKEN_ENCRYPTION_KEY to encrypt them "
                "(make one with `archiver accounts new-key`)",
                found.plaintext,
            )
            return
        encrypted = encrypt_plaintext(engine, settings.token_key)
        log.info("encrypted %d plaintext token(s) under TOKEN_ENCRYPTION_KEY", encrypted)
    finally:
        engine.dispose()


def stop_worker(current: list[Worker]) -> None:
    """Stop taking jobs and cancel the running ones: their rows stay pending for the sweep."""
    from workers.running import stop_lanes

    stop_lanes(current, signal.SIGTERM)


async def work(settings: Settings) -> int:
    """Run one worker on this loop until SIGINT/SIGTERM; the exit status says which.

    Its metrics are served on WORKER_METRICS_PORT (unless 0) for the life of the process.
    """
    from prometheus_client import CollectorRegistry

    from reports.worker_metrics import WorkerMetrics
    from workers.exporter import start_exporter

    registry = CollectorRegistry()
    exporter = start_exporter(settings, registry)
    try:
        return await _work(settings, WorkerMetrics(registry))
    finally:
        if exporter is not None:
            exporter.close()


async def _work(settings: Settings, metrics: WorkerMetrics) -> int:
    """Redis going away does not end the process: the worker is closed and built again with a
    growing pause (up to MAX_BACKOFF), so it resumes by itself when Redis returns. The worker
    is built inside the running loop, because arq binds to the loop current at creation.
    """
    shutdown = Shutdown()
    shutdown.install()
    current: list[Worker] = []
    shutdown.on_stop(lambda: stop_worker(current), lambda: stop_worker(current))
    backoff = 1.0
    while shutdown.signal is None:
        if await _run_once(settings, metrics, current, shutdown):
            backoff = 1.0
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.event.wait(), backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
    return shutdown.exit_code


async def _run_once(
    settings: Settings, metrics: WorkerMetrics, current: list[Worker], shutdown: Shutdown
) -> bool:
    """One life of the worker's lanes; False when Redis failed them (the caller waits, then
    retries)."""
    from redis.exceptions import RedisError

    from workers.main import build_workers
    from workers.running import close_worker, run_lanes

    current[:] = build_workers(settings, metrics=metrics, handle_signals=False)
    try:
        await run_lanes(current)
    except asyncio.CancelledError:
        if shutdown.signal is None:
            raise
    except (RedisError, OSError) as exc:  # the builtin ConnectionError is an OSError
        log.warning("Redis unavailable at REDIS_URL (%s); the worker starts again", exc)
        return False
    finally:
        for worker in current:
            with contextlib.suppress(RedisError, OSError):  # closing talks to Redis too
                await close_worker(worker, cancel_jobs=True)
    if shutdown.signal is None:
        log.warning("the worker stopped unexpectedly; it starts again")
    return True
