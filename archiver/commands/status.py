"""`archiver status`: what is being captured, coverage, failures, token expiry.

The figures come from the database (models.status) and, for throttle pauses, from the Redis
hashes the workers' Pacer keeps (workers/pacing.py). Redis is optional here: status is what
an operator runs when something is wrong, so an unreachable Redis makes the pauses "unknown"
instead of failing the whole report. Tokens are never read, so never printed.
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
    from models.status import AccountStatus, Deliveries

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
        description="Per account: state, token expiry, last story poll, stories seen / "
        "captured before expiry / missed (by reason) / live, snapshots, throttle pauses "
        "(from REDIS_URL when reachable) and the last error; then totals and the webhook "
        "deliveries by status. Tokens are never shown.",
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
        row["token_days_left"] = days_left(account.ig_token_expires_at, now)
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


def totals(accounts: list[AccountStatus], pauses: PauseReport) -> dict[str, int | None]:
    known = pauses.by_ig_user
    return {
        "accounts": len(accounts),
        "stories_seen": sum(a.stories.seen for a in accounts),
        "final_captured": sum(a.stories.final_captured for a in accounts),
        "missed": sum(a.stories.missed for a in accounts),
        "live": sum(a.stories.live for a in accounts),
        "snapshots": sum(sum(a.snapshots.values()) for a in accounts),
        "throttle_pauses": None if known is None else sum(p.total for p in known.values()),
    }


def plural(count: int | None, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def ago(then: datetime | None, now: datetime) -> str:
    """`2026-12-01 09:45 UTC (15 min ago)`, or `never`."""
    if then is None:
        return "never"
    seconds = (now - then).total_seconds()
    amount = _duration(abs(seconds))
    relative = f"{amount} ago" if seconds >= 0 else f"in {amount}"
    return f"{then:%Y-%m-%d %H:%M} UTC ({relative})"


def _duration(seconds: float) -> str:
    for unit, size, up_to in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if seconds < up_to:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds // 86400)} days"


def token_line(expires_at: datetime | None, now: datetime) -> str:
    left = days_left(expires_at, now)
    if expires_at is None or left is None:
        return "expiry unknown"
    if left < 0:
        return f"EXPIRED {expires_at:%Y-%m-%d} ({-left} days ago)"
    return f"expires {expires_at:%Y-%m-%d} ({left} days left)"


def poll_line(account: AccountStatus, now: datetime) -> str:
    """When stories were last listed and when the next listing is due (a stuck one shows)."""
    line = ago(account.stories_polled_at, now)
    if account.next_story_poll_at is not None:
        line += f"; next due {ago(account.next_story_poll_at, now)}"
    return line


def pause_line(account: AccountStatus, pauses: PauseReport) -> str:
    if pauses.by_ig_user is None:
        return f"unknown ({pauses.unknown_because})"
    found = pauses.by_ig_user.get(account.ig_user_id, Pauses())
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(found.counts.items()))
    line = f"{found.total}" + (f" ({reasons})" if reasons else "")
    if found.paused_for_seconds > 0:
        line += f"; paused now, {_duration(found.paused_for_seconds)} left"
    return line


def account_lines(account: AccountStatus, pauses: PauseReport, now: datetime) -> list[str]:
    stories = account.stories
    state = account.state + (f": {safe(account.state_reason)}" if account.state_reason else "")
    snapshots = ", ".join(f"{source} {n}" for source, n in sorted(account.snapshots.items()))
    fields = [
        ("state", state),
        ("token", token_line(account.ig_token_expires_at, now)),
        ("last story poll", poll_line(account, now)),
        (
            "stories",
            f"{stories.seen} seen: {stories.final_captured} captured before expiry, "
            f"{stories.missed} missed, {stories.live} live now",
        ),
    ]
    if stories.missed_reasons:
        reasons = sorted(stories.missed_reasons.items(), key=lambda item: (-item[1], item[0]))
        fields.append(("missed because", "; ".join(f"{n} {safe(r)}" for r, n in reasons)))
    fields += [
        (
            "snapshots",
            f"{sum(account.snapshots.values())}" + (f" ({snapshots})" if snapshots else ""),
        ),
        ("throttle pauses", pause_line(account, pauses)),
        ("last error", safe(account.last_error) or "-"),
    ]
    header = (
        f"{account.name} (account {account.id}, IG {account.ig_user_id}, {account.login} login)"
    )
    width = max(len(name) for name, _ in fields)
    return [header, *(f"  {name.ljust(width)}  {value}" for name, value in fields)]


def as_text(
    accounts: list[AccountStatus], deliveries: Deliveries, pauses: PauseReport, now: datetime
) -> str:
    lines: list[str] = []
    for account in accounts:
        lines += [*account_lines(account, pauses, now), ""]
    if not accounts:
        lines += ["no accounts yet: add one with `archiver accounts add`", ""]
    total = totals(accounts, pauses)
    paused = "unknown" if total["throttle_pauses"] is None else total["throttle_pauses"]
    lines.append(
        f"totals      {plural(total['accounts'], 'account')}, "
        f"{plural(total['stories_seen'], 'story', 'stories')} seen "
        f"({total['final_captured']} captured before expiry, {total['missed']} missed, "
        f"{total['live']} live now), {plural(total['snapshots'], 'snapshot')}, "
        f"throttle pauses {paused}"
    )
    if pauses.app_paused_for_seconds:
        lines.append(f"app paused  {_duration(pauses.app_paused_for_seconds)} left (X-App-Usage)")
    by_status = ", ".join(f"{status} {n}" for status, n in sorted(deliveries.by_status.items()))
    delivery = f"deliveries  {deliveries.total}" + (f": {by_status}" if by_status else "")
    if deliveries.oldest_pending_at is not None:
        delivery += f"; oldest pending received {ago(deliveries.oldest_pending_at, now)}"
    lines.append(delivery)
    return "\n".join(lines)
