"""`archiver status`: what is being captured, coverage, failures, token expiry.

The figures come from the database (models.status) and, for throttle pauses, from the Redis
hashes the workers' Pacer keeps (workers/pacing.py). Redis is optional here: status is what
an operator runs when something is wrong, so an unreachable Redis makes the pauses "unknown"
instead of failing the whole report. This module holds the command, the pauses and the
`--json` document; the text report is archiver/commands/status_text.py. Tokens are never
read, so never printed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from archiver.commands import add_command, open_database

if TYPE_CHECKING:
    from archiver.commands import SubParsers
    from models.config import Settings
    from models.status import AccountStatus, Deliveries, ThreadsStatus

# The workers' Pacer keys (workers/pacing.py, prefix "archiver", account key "ig:<id>");
# tests/test_status.py checks that the two agree.
PAUSE_COUNTS_KEY = "archiver:pauses:ig:{}"
PAUSE_KEY = "archiver:pause:ig:{}"
APP_PAUSE_KEY = "archiver:pause:app"
REDIS_TIMEOUT = 2.0
ERROR_CHARS = 200


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
    """Every account's pauses, or why they are unknown (no REDIS_URL, Redis unreachable)."""

    by_ig_user: dict[str, Pauses] | None
    app_paused_for_seconds: float | None = None
    unknown_because: str | None = None


def register(subparsers: SubParsers) -> None:
    status = add_command(
        subparsers,
        "status",
        help_text="what is being captured: coverage, failures, token expiry",
        description="Per account: state, token expiry (and last refresh for Instagram Login), "
        "last story poll, stories seen / captured before expiry / missed (by reason) / live, "
        "snapshots, throttle pauses (from REDIS_URL when reachable) and the last error; with "
        "a linked Threads profile also its link, token state and expiry, last and next poll, "
        "posts tracked / done / skipped, Threads snapshots and the metrics Meta refused; then "
        "totals and the webhook deliveries by status. Tokens are never shown.",
    )
    status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    status.set_defaults(handler=run_status)


def read_pauses(redis_url: str | None, ig_user_ids: list[str]) -> PauseReport:
    """The Pacer's counters and current pauses, in one pipelined round trip."""
    if not redis_url:
        return PauseReport(None, unknown_because="REDIS_URL unset")
    import redis
    from redis.exceptions import RedisError

    try:
        client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
    except ValueError:
        return PauseReport(None, unknown_because="REDIS_URL is not a Redis URL")
    try:
        with client.pipeline(transaction=False) as pipe:
            for ig_user_id in ig_user_ids:
                pipe.hgetall(PAUSE_COUNTS_KEY.format(ig_user_id))
                pipe.pttl(PAUSE_KEY.format(ig_user_id))
            pipe.pttl(APP_PAUSE_KEY)
            replies = pipe.execute()
    except RedisError:
        return PauseReport(None, unknown_because="Redis unreachable")
    finally:
        client.close()
    by_ig_user = {
        ig_user_id: Pauses({_text(k): int(v) for k, v in counts.items()}, max(int(ttl), 0) / 1000)
        for ig_user_id, counts, ttl in zip(ig_user_ids, replies[::2], replies[1::2], strict=False)
    }
    return PauseReport(by_ig_user, app_paused_for_seconds=max(int(replies[-1]), 0) / 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from archiver.commands.status_text import as_text
    from models.status import account_statuses, delivery_counts
    from models.types import utcnow

    engine = open_database(settings)
    try:
        accounts = account_statuses(engine)
        deliveries = delivery_counts(engine)
    finally:
        engine.dispose()
    pauses = read_pauses(settings.redis_url, [account.ig_user_id for account in accounts])
    now = utcnow()
    if args.json:
        report = as_json(accounts, deliveries, pauses, now)
        print(json.dumps(report, indent=2, default=datetime.isoformat))
    else:
        print(as_text(accounts, deliveries, pauses, now))
    return 0


def safe(text: str | None) -> str | None:
    """An error or reason fit for one line of output, with anything token-shaped masked."""
    from archiver.logs import redact

    if text is None:
        return None
    flat = redact(" ".join(text.split()))
    return flat if len(flat) <= ERROR_CHARS else flat[: ERROR_CHARS - 1] + "…"


def days_left(expires_at: datetime | None, now: datetime) -> int | None:
    """Whole days until the token expires (negative once it has); None when unknown."""
    if expires_at is None:
        return None
    return int((expires_at - now).total_seconds() // 86400)


def as_json(
    accounts: list[AccountStatus], deliveries: Deliveries, pauses: PauseReport, now: datetime
) -> dict[str, Any]:
    rows = []
    for account in accounts:
        row = asdict(account)
        row["state_reason"], row["last_error"] = (
            safe(account.state_reason),
            safe(account.last_error),
        )
        row["ig_token_check_error"] = safe(account.ig_token_check_error)
        row["token_days_left"] = days_left(account.ig_token_expires_at, now)
        row["threads"] = None if account.threads is None else threads_json(account.threads, now)
        row["snapshots"] = {
            "total": sum(account.snapshots.values()),
            "by_source": account.snapshots,
        }
        found = None if pauses.by_ig_user is None else pauses.by_ig_user.get(account.ig_user_id)
        row["throttle_pauses"] = None if found is None else {**asdict(found), "total": found.total}
        rows.append(row)
    return {
        "generated_at": now.isoformat(),
        "accounts": rows,
        "totals": totals(accounts, pauses),
        "throttle_pauses_unknown_because": pauses.unknown_because,
        "app_paused_for_seconds": pauses.app_paused_for_seconds,
        "deliveries": {
            "total": deliveries.total,
            "by_status": deliveries.by_status,
            "oldest_pending_at": deliveries.oldest_pending_at,
        },
    }


def threads_json(threads: ThreadsStatus, now: datetime) -> dict[str, Any]:
    """The Threads side of an account, reasons made safe to print."""
    row = asdict(threads)
    row["state_reason"] = safe(threads.state_reason)
    row["token_days_left"] = days_left(threads.token_expires_at, now)
    row["snapshots"] = {"total": sum(threads.snapshots.values()), "by_kind": threads.snapshots}
    for refused in row["refused"]:
        refused["reason"] = safe(refused["reason"])
    return row


def totals(accounts: list[AccountStatus], pauses: PauseReport) -> dict[str, int | None]:
    """Sums over the accounts; `snapshots` counts both platforms."""
    known = pauses.by_ig_user
    linked = [a.threads for a in accounts if a.threads is not None]
    threads_snapshots = sum(sum(t.snapshots.values()) for t in linked)
    return {
        "accounts": len(accounts),
        "stories_seen": sum(a.stories.seen for a in accounts),
        "final_captured": sum(a.stories.final_captured for a in accounts),
        "missed": sum(a.stories.missed for a in accounts),
        "live": sum(a.stories.live for a in accounts),
        "snapshots": sum(sum(a.snapshots.values()) for a in accounts) + threads_snapshots,
        "throttle_pauses": None if known is None else sum(p.total for p in known.values()),
        "threads_profiles": len(linked),
        "threads_posts": sum(t.posts.seen for t in linked),
        "threads_snapshots": threads_snapshots,
    }
