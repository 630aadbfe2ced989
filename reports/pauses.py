"""Throttle pauses and failed jobs as the workers leave them in Redis, read for `archiver
status`. Redis is optional here: status is what an operator runs when something is wrong, so an
unreachable Redis makes these "unknown" instead of failing the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError

# The workers' Pacer keys (workers/meta/pacing.py, prefix "archiver", account key "ig:<id>");
# tests/test_status.py checks that the two agree.
PAUSE_COUNTS_KEY = "archiver:pauses:ig:{}"
PAUSE_KEY = "archiver:pause:ig:{}"
APP_PAUSE_KEY = "archiver:pause:app"
THREADS_APP_PAUSE_KEY = "archiver:pause:app:threads"
REDIS_TIMEOUT = 2.0


@dataclass
class Pauses:
    """Throttle pauses of one account: counts by reason, and the time left of a current one."""

    counts: dict[str, int] = field(default_factory=dict)
    paused_for_seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class PauseReport:
    """What Redis knows: every account's pauses, the app-wide pauses (Instagram's app and
    Threads' own) and the workers' failed jobs by function and outcome; or why it is unknown
    (no REDIS_URL, Redis unreachable)."""

    by_ig_user: dict[str, Pauses] | None
    app_paused_for_seconds: float | None = None
    threads_app_paused_for_seconds: float | None = None
    job_failures: dict[str, dict[str, int]] | None = None
    unknown_because: str | None = None


def read_pauses(redis_url: str | None, ig_user_ids: list[str]) -> PauseReport:
    """The Pacer's counters and current pauses and the failed jobs, in one pipelined round
    trip."""
    if not redis_url:
        return PauseReport(None, unknown_because="REDIS_URL unset")
    from redis.exceptions import RedisError

    from jobqueue.redis_url import close_sync, parse_redis_url, sync_client

    try:
        target = parse_redis_url(redis_url)
    except ConfigError:
        return PauseReport(None, unknown_because="REDIS_URL is not a Redis URL")
    timeouts = {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT}
    client = sync_client(target, **timeouts)
    try:
        replies = _ask(client, ig_user_ids)
    except RedisError:
        return PauseReport(None, unknown_because="Redis unreachable")
    finally:
        close_sync(client)
    return _pause_report(ig_user_ids, replies)


def _ask(client: Any, ig_user_ids: list[str]) -> list[Any]:
    from reports.figures import JOB_FAILURES_KEY

    with client.pipeline(transaction=False) as pipe:
        for ig_user_id in ig_user_ids:
            pipe.hgetall(PAUSE_COUNTS_KEY.format(ig_user_id))
            pipe.pttl(PAUSE_KEY.format(ig_user_id))
        pipe.pttl(APP_PAUSE_KEY)
        pipe.pttl(THREADS_APP_PAUSE_KEY)
        pipe.hgetall(JOB_FAILURES_KEY)
        replies: list[Any] = pipe.execute()
    return replies


def _pause_report(ig_user_ids: list[str], replies: list[Any]) -> PauseReport:
    from reports.figures import split_fields

    *accounts, app, threads_app, failures = replies
    by_ig_user = {
        ig_user_id: Pauses({_text(k): int(v) for k, v in counts.items()}, _seconds(ttl))
        for ig_user_id, counts, ttl in zip(ig_user_ids, accounts[::2], accounts[1::2], strict=True)
    }
    job_failures: dict[str, dict[str, int]] = {}
    for (function, outcome), count in sorted(split_fields(failures).items()):
        job_failures.setdefault(function, {})[outcome] = count
    return PauseReport(by_ig_user, _seconds(app), _seconds(threads_app), job_failures)


def _seconds(pttl: Any) -> float:
    """A key's PTTL in seconds; 0 when the key is gone (-2) or has no expiry (-1)."""
    return max(int(pttl), 0) / 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
