"""Archive-wide figures for `archiver status`, the dashboard and /metrics: counters the workers
increment in Redis (Meta calls by status, throttle pauses, failed jobs: the cross-process
record, kept since the archive began), the app-wide pauses, and gauges read from the database
at scrape time (captures, token expiry, overdue work, accounts with a problem). The key names
are the contract between the workers and their readers, which never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.engine import Connection, Engine

from models.accounts import Account
from models.notices import Notice
from models.partitions import month_of, next_month, partitions
from models.snapshots import Media
from models.tables import table_of
from models.types import utcnow
from reports.overdue import Overdue, overdue_work
from store.due_captures import LIVE, MISSED, TRACKED

CALLS_KEY = "archiver:stats:calls"  # field `<platform>|<status>`: HTTP status or `error`
PAUSES_KEY = "archiver:stats:pauses"  # field `<platform>|<reason>`
# Job runs that ended in an error (a retry scheduled or the job given up), field
# `<function>|<outcome>` (outcome: `retry` or `gave_up`), incremented by the workers.
JOB_FAILURES_KEY = "archiver:stats:job_failures"
# The app-wide pauses of workers.meta.pacing.Pacer (`archiver:pause:app`, `...:app:threads`).
APP_PAUSE_KEYS = {"instagram": "archiver:pause:app", "threads": "archiver:pause:app:threads"}
_media = table_of(Media)
COUNTED_STATES = (LIVE, TRACKED, MISSED)
_account = table_of(Account)
_notice = table_of(Notice)

Counts = dict[tuple[str, str], int]


def platform_of(key: str) -> str:
    """The pacer's key (`ig:<id>`, `threads:<id>`, `app`, `app:threads`) -> its platform."""
    return "threads" if key.startswith("threads") or key == "app:threads" else "instagram"


def stat_field(key: str, label: str) -> str:
    """The pacer's key and a status or reason -> `instagram|200`, `threads|throttled`."""
    return f"{platform_of(key)}|{label}"


@dataclass
class Counters:
    """From Redis: calls by (platform, status), pauses by (platform, reason), failed jobs by
    (function, outcome), and the seconds left on each platform's app-wide pause."""

    calls: Counts = field(default_factory=dict)
    pauses: Counts = field(default_factory=dict)
    job_failures: Counts = field(default_factory=dict)
    app_paused: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Expiry:
    """When one account's token (`what="token"`) or Facebook Login data access
    (`what="data_access"`) runs out, on one platform."""

    platform: str
    account_id: int
    account: str
    what: str
    at: datetime


@dataclass
class Gauges:
    """From the database, at scrape time."""

    captures: Counts = field(default_factory=dict)  # (subject_type, capture_state)
    expiries: list[Expiry] = field(default_factory=list)  # per account and token, when known
    tokens: Counts = field(default_factory=dict)  # (platform, dated | never | unknown)
    accounts: Counts = field(default_factory=dict)  # (platform, state)
    problems: dict[str, int] = field(default_factory=dict)  # platform -> accounts
    overdue: dict[str, Overdue] = field(default_factory=dict)  # kind -> count, oldest
    notices: Counts = field(default_factory=dict)  # (kind, pending | delivered | undeliverable)
    # PostgreSQL: whole months after this one that have their history partitions (None: SQLite)
    partition_months_ahead: int | None = None


async def read_counters(redis: Redis) -> Counters:
    """The workers' counters and the app-wide pauses, in one pipelined round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in (CALLS_KEY, PAUSES_KEY, JOB_FAILURES_KEY):
            pipe.hgetall(key)
        for key in APP_PAUSE_KEYS.values():
            pipe.pttl(key)
        raw = await pipe.execute()
    paused = {p: max(int(ttl), 0) / 1000 for p, ttl in zip(APP_PAUSE_KEYS, raw[3:], strict=True)}
    calls, pauses, failures = (split_fields(found) for found in raw[:3])
    return Counters(calls, pauses, failures, app_paused=paused)


def split_fields(found: dict[bytes, bytes] | dict[str, str]) -> Counts:
    """A counter hash (`<a>|<b>` -> n) keyed by (a, b)."""
    out = {}
    for key, value in found.items():
        text = key.decode() if isinstance(key, bytes) else key
        first, _, second = text.partition("|")
        out[(first, second)] = int(value)
    return out


def read_gauges(engine: Engine, *, grace: timedelta, now: datetime | None = None) -> Gauges:
    """Blocking (run it in a thread): every database gauge, in one connection."""
    now = now or utcnow()
    with engine.connect() as conn:
        return Gauges(
            captures=_capture_counts(conn),
            expiries=_expiries(conn),
            tokens=_token_expiry_counts(conn),
            accounts=_account_states(conn),
            problems=_problem_counts(conn),
            overdue=overdue_work(conn, now=now, grace=grace),
            notices=_notice_counts(conn),
            partition_months_ahead=_partition_months_ahead(conn, now),
        )


def _partition_months_ahead(conn: Connection, now: datetime) -> int | None:
    """How many months after this one `snapshot` can take rows for: the tick keeps it at
    MONTHS_AHEAD; below 1, a capture next month would have to create its partition itself."""
    if conn.dialect.name != "postgresql":
        return None
    found = partitions(conn, "snapshot")
    month = next_month(month_of(now))
    ahead = 0
    while any(p.start <= month < p.end for p in found):
        ahead, month = ahead + 1, next_month(month)
    return ahead


def _capture_counts(conn: Connection) -> Counts:
    """Media being captured (live stories, tracked posts) and stories missed, by subject type.

    Not the finished states (final_captured, done, skipped): they grow with the archive, to
    hundreds of millions of rows at 100,000 accounts, and counting them at every scrape would
    cost a scan of `media` each time. These three are read through the capture_state index.
    """
    m = _media.c
    stmt = (
        sa.select(m.subject_type, m.capture_state, sa.func.count())
        .where(m.capture_state.in_(COUNTED_STATES))
        .group_by(m.subject_type, m.capture_state)
    )
    return {(str(kind), str(state)): int(n) for kind, state, n in conn.execute(stmt)}


def _expiries(conn: Connection) -> list[Expiry]:
    """Every known expiry: Instagram and Threads tokens, Facebook Login data access."""
    a = _account.c
    columns = (
        ("instagram", "token", a.ig_token_expires_at),
        ("threads", "token", a.threads_token_expires_at),
        ("instagram", "data_access", a.ig_data_access_expires_at),
    )
    found = []
    for platform, what, column in columns:
        stmt = sa.select(a.id, a.name, column).where(column.is_not(None)).order_by(a.id)
        found += [
            Expiry(platform, int(i), str(name), what, at) for i, name, at in conn.execute(stmt)
        ]
    return found


def never_expires() -> sa.ColumnElement[bool]:
    """A Facebook Login token whose debug_token said `expires_at: 0` (never): checked, with
    no error and no expiry stored; unchecked, its expiry is unknown.
    https://developers.facebook.com/docs/graph-api/reference/debug_token"""
    a = _account.c
    return sa.and_(
        a.login == "facebook",
        a.ig_token_expires_at.is_(None),
        a.ig_token_checked_at.is_not(None),
        a.ig_token_check_error.is_(None),
    )


def _token_expiry_counts(conn: Connection) -> Counts:
    """Tokens by what is known of their expiry: dated, never (Facebook Login), unknown."""
    a = _account.c
    ig = sa.case(
        (a.ig_token_expires_at.is_not(None), "dated"), (never_expires(), "never"), else_="unknown"
    )
    threads = sa.case((a.threads_token_expires_at.is_not(None), "dated"), else_="unknown")
    found: Counts = {}
    for platform, expiry, linked in (
        ("instagram", ig, None),
        ("threads", threads, a.threads_user_id),
    ):
        stmt = sa.select(expiry, sa.func.count()).group_by(expiry)
        if linked is not None:
            stmt = stmt.where(linked.is_not(None))
        found |= {(platform, str(kind)): int(n) for kind, n in conn.execute(stmt)}
    return found


def _account_states(conn: Connection) -> Counts:
    """Accounts by state per side; the Threads side of linked accounts only."""
    a = _account.c
    ig = sa.select(a.state, sa.func.count()).group_by(a.state)
    threads = sa.select(a.threads_state, sa.func.count()).where(a.threads_user_id.is_not(None))
    found = {("instagram", str(state)): int(n) for state, n in conn.execute(ig)}
    rows = conn.execute(threads.group_by(a.threads_state))
    return found | {("threads", str(state)): int(n) for state, n in rows}


def _problem_counts(conn: Connection) -> dict[str, int]:
    """Accounts flagged with an error retrying cannot fix, per side (0 when none); the
    Instagram side counts story listing, feed/Reels listing and account insights problems
    once per account."""
    a = _account.c
    problems = (a.ig_problem, a.ig_insights_problem, a.media_problem)
    instagram = sa.or_(*(column.is_not(None) for column in problems))
    stmt = sa.select(
        sa.func.count(sa.case((instagram, 1))),  # count() skips the nulls of an unmatched case
        sa.func.count(a.threads_problem),
    )
    ig, threads = conn.execute(stmt).one()
    return {"instagram": int(ig), "threads": int(threads)}


def _notice_counts(conn: Connection) -> Counts:
    """Notices to operators by (kind, state); none while NOTIFY_WEBHOOK_URL is unset."""
    stmt = sa.select(_notice.c.kind, _notice.c.state, sa.func.count()).group_by(
        _notice.c.kind, _notice.c.state
    )
    return {(str(kind), str(state)): int(n) for kind, state, n in conn.execute(stmt)}
