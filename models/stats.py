"""Figures the workers leave for /metrics and `archiver status`: Meta calls by status and
throttle pauses (Redis hashes the workers increment), captures and token expiry (the database,
read at scrape time). The key names are the contract between workers and receiver, which never
import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.engine import Engine

from models.accounts import Account
from models.snapshots import Media
from models.types import utcnow

CALLS_KEY = "archiver:stats:calls"  # field `<platform>|<status>`: HTTP status or `error`
PAUSES_KEY = "archiver:stats:pauses"  # field `<platform>|<reason>`
# Job runs that ended in an error (a retry scheduled or the job given up), field
# `<function>|<outcome>` (outcome: `retry` or `gave_up`), incremented by the workers.
JOB_FAILURES_KEY = "archiver:stats:job_failures"
_media = Media.__table__  # type: ignore[attr-defined]
_account = Account.__table__  # type: ignore[attr-defined]


def stat_field(key: str, label: str) -> str:
    """The pacer's key (`ig:<id>`, `threads:<id>`, `app`, `app:threads`) and a status or
    reason -> `instagram|200`, `threads|throttled`."""
    platform = "threads" if key.startswith("threads") or key == "app:threads" else "instagram"
    return f"{platform}|{label}"


@dataclass
class WorkerStats:
    """What the scrape reads: counters from Redis, gauges from the database."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    pauses: dict[tuple[str, str], int] = field(default_factory=dict)
    captures: dict[tuple[str, str], int] = field(default_factory=dict)
    token_days: dict[str, float] = field(default_factory=dict)


async def read_counters(redis: Redis) -> tuple[dict[tuple[str, str], int], ...]:
    """(calls, pauses) keyed by (platform, status or reason)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(CALLS_KEY)
        pipe.hgetall(PAUSES_KEY)
        raw = await pipe.execute()
    return tuple(_split(found) for found in raw)


def _split(found: dict[bytes | str, bytes | str]) -> dict[tuple[str, str], int]:
    out = {}
    for key, value in found.items():
        text = key.decode() if isinstance(key, bytes) else key
        platform, _, label = text.partition("|")
        out[(platform, label)] = int(value)
    return out


def capture_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Media by (subject type, capture state): stories final_captured vs missed, and so on."""
    stmt = sa.select(_media.c.subject_type, _media.c.capture_state, sa.func.count()).group_by(
        _media.c.subject_type, _media.c.capture_state
    )
    with engine.connect() as conn:
        return {(str(kind), str(state)): int(n) for kind, state, n in conn.execute(stmt)}


def token_days_left(engine: Engine, *, now: datetime | None = None) -> dict[str, float]:
    """The fewest days left on any known token expiry, per platform (absent when unknown)."""
    now = now or utcnow()
    stmt = sa.select(
        sa.func.min(_account.c.ig_token_expires_at),
        sa.func.min(_account.c.threads_token_expires_at),
    )
    with engine.connect() as conn:
        ig, threads = conn.execute(stmt).one()
    days = {}
    for platform, expires in (("instagram", ig), ("threads", threads)):
        if expires is not None:
            days[platform] = round((expires - now).total_seconds() / 86400, 2)
    return days
