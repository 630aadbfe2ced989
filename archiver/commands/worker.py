"""`archiver worker`: one arq worker process (start several for scale)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from models.errors import ConfigError

if TYPE_CHECKING:
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
    from workers.main import run_worker

    run_worker(settings)
    return 0
