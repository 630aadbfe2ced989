"""`archiver status`: what is being captured, coverage, failures, token expiry.

The figures come from the database (reports.coverage) and, for throttle pauses and failed jobs,
from the Redis keys the workers keep (workers/meta/pacing.py, reports.figures). Redis is
optional here:
status is what an operator runs when something is wrong, so an unreachable Redis makes those
"unknown" instead of failing the whole report. This module holds the command, the pauses and the
`--json` document; the text report is archiver/commands/status_text.py. Tokens are never
read, and the whole report goes through the one scrubber (core.redaction) before it is
printed, so a token Meta quoted in an error, even one stored before errors were scrubbed on
the way in, is never shown.
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
    from core.config import Settings
    from reports.coverage import AccountStatus, Deliveries, ThreadsStatus

# The workers' Pacer keys (workers/meta/pacing.py, prefix "archiver", account key "ig:<id>");
# tests/test_status.py checks that the two agree.
PAUSE_COUNTS_KEY = "archiver:pauses:ig:{}"
PAUSE_KEY = "archiver:pause:ig:{}"
APP_PAUSE_KEY = "archiver:pause:app"
THREADS_APP_PAUSE_KEY = "archiver:pause:app:threads"
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
    """What Redis knows: every account's pauses, the app-wide pauses (Instagram's app and
    Threads' own) and the workers' failed jobs by function and outcome; or why it is unknown
    (no REDIS_URL, Redis unreachable)."""

    by_ig_user: dict[str, Pauses] | None
    app_paused_for_seconds: float | None = None
    threads_app_paused_for_seconds: float | None = None
    job_failures: dict[str, dict[str, int]] | None = None
    unknown_because: str | None = None


def register(subparsers: SubParsers) -> None:
    status = add_command(
        subparsers,
        "status",
        help_text="what is being captured: coverage, failures, token expiry",
        description="Per account: state, token expiry (Facebook Login: `never` or a date, and "
        "the data-access expiry; Instagram Login: also the last refresh), last story poll and "
        "how long it is overdue, the problem and failure count of an error retrying cannot fix, "
        "stories seen / captured before expiry / missed (by reason) / live, snapshots, throttle "
        "pauses (from REDIS_URL when reachable), the last error and its age, and the stories or "
        "posts still being captured that are overdue or failed (the first few, with a count of "
        "the rest); with a linked Threads profile also its link, token state and expiry, polls "
        "(overdue, problem), posts tracked / done / skipped / deleted, Threads snapshots and the "
        "metrics Meta refused; then totals, problems over all accounts, app-wide pauses, failed "
        "jobs and the webhook deliveries by status. Tokens are never shown.",
    )
    status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    status.set_defaults(handler=run_status)


def read_pauses(redis_url: str | None, ig_user_ids: list[str]) -> PauseReport:
    """The Pacer's counters and current pauses and the failed jobs, in one pipelined round
    trip."""
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
        replies = _ask(client, ig_user_ids)
    except RedisError:
        return PauseReport(None, unknown_because="Redis unreachable")
    finally:
        client.close()
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


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from archiver.commands.status_text import as_text, plaintext_line
    from archiver.logs import known_secrets
    from core.redaction import scrub, scrub_json
    from models.types import utcnow
    from reports.coverage import account_statuses, delivery_counts
    from reports.overdue import overdue_grace
    from store.token_keys import plaintext_count

    now = utcnow()
    engine = open_database(settings)
    try:
        grace = overdue_grace(settings.schedule_tick_seconds)
        accounts = account_statuses(engine, now=now, grace=grace)
        deliveries = delivery_counts(engine)
        plaintext = plaintext_count(engine)
    finally:
        engine.dispose()
    pauses = read_pauses(settings.redis_url, [account.ig_user_id for account in accounts])
    secrets = known_secrets(settings)  # the whole report is scrubbed, rows from before too
    if args.json:
        report = as_json(accounts, deliveries, pauses, now)
        report["tokens"] = {"plaintext": plaintext, "key_set": settings.token_key is not None}
        print(json.dumps(scrub_json(report, secrets), indent=2, default=datetime.isoformat))
    else:
        print(scrub(as_text(accounts, deliveries, pauses, now), secrets))
        if plaintext:
            print(plaintext_line(plaintext, keyed=settings.token_key is not None))
    return 0


def safe(text: str | None) -> str | None:
    """An error or reason fit for one line of output, with anything token-shaped masked
    (before it is cut short, so a cut cannot leave half a token unrecognised)."""
    from core.redaction import scrub

    if text is None:
        return None
    flat = scrub(" ".join(text.split()))
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
        for name in ("state_reason", "last_error", "ig_problem", "ig_token_check_error"):
            row[name] = safe(row[name])
        for problem in row["media_problems"]["listed"]:
            problem["last_error"] = safe(problem["last_error"])
        row["token_days_left"] = days_left(account.ig_token_expires_at, now)
        row["token_never_expires"] = account.token_never_expires
        row["data_access_days_left"] = days_left(account.ig_data_access_expires_at, now)
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
        "threads_app_paused_for_seconds": pauses.threads_app_paused_for_seconds,
        "job_failures": pauses.job_failures,
        "deliveries": {
            "total": deliveries.total,
            "by_status": deliveries.by_status,
            "oldest_pending_at": deliveries.oldest_pending_at,
        },
    }


def threads_json(threads: ThreadsStatus, now: datetime) -> dict[str, Any]:
    """The Threads side of an account, reasons made safe to print."""
    row = asdict(threads)
    row["state_reason"], row["problem"] = safe(threads.state_reason), safe(threads.problem)
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
        **problem_totals(accounts),
    }


def problem_totals(accounts: list[AccountStatus]) -> dict[str, int]:
    """How many accounts have a problem, wait for re-authorisation (either side) or are overdue,
    and how many open media have a problem."""
    from store.story_listing import REAUTH_REQUIRED as REAUTH

    linked = [a.threads for a in accounts if a.threads is not None]
    return {
        "accounts_with_problem": sum(
            bool(a.ig_problem or (a.threads is not None and a.threads.problem)) for a in accounts
        ),
        "accounts_awaiting_reauth": sum(
            REAUTH in (a.state, a.threads.state if a.threads else None) for a in accounts
        ),
        "story_polls_overdue": sum(bool(a.story_poll_overdue_seconds) for a in accounts),
        "threads_polls_overdue": sum(bool(t.poll_overdue_seconds) for t in linked),
        "media_with_problem": sum(a.media_problems.total for a in accounts),
    }
