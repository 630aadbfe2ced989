"""What `archiver status` reports from the database: per-account coverage (Instagram stories
and, for a linked Threads profile, its polls and posts) and the deliveries.

Plain aggregate queries over the tables (no views), so the report works on any migrated
database and selects no token column (the Threads poll's due time only tests whether a token
is set): a token cannot leak from data it never loads.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from models.accounts import Account, MetricUnavailable
from models.deliveries import PENDING_STATES, WebhookDelivery
from models.snapshots import Media, Snapshot
from models.tables import table_of
from reports.overdue import overdue_seconds, story_poll_due, threads_poll_due
from reports.problems import MediaProblems, media_problems
from store.due_captures import DONE, SKIPPED, TRACKED

_account = table_of(Account)
_unavailable = table_of(MetricUnavailable)
_media = table_of(Media)
_snapshot = table_of(Snapshot)
_delivery = table_of(WebhookDelivery)

NO_REASON = "no reason recorded"
DELETED = "deleted"  # a Threads post Meta reported deleted (media.deleted_at is set)


@dataclass
class Stories:
    """An account's stories by capture_state, and the missed ones by missed_reason."""

    seen: int = 0
    final_captured: int = 0
    missed: int = 0
    live: int = 0
    missed_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class Refused:
    """A metric Meta will not give (THREADS_API__FEATURE_NOT_AVAILABLE), asked again at
    `retry_at`."""

    metric: str
    reason: str | None
    first_seen_at: datetime
    retry_at: datetime | None


@dataclass
class ThreadsPosts:
    """An account's Threads posts by capture_state (skipped: reposts, which have no insights;
    deleted: Meta's `delete` webhook stopped their captures)."""

    seen: int = 0
    tracked: int = 0
    done: int = 0
    skipped: int = 0
    deleted: int = 0


@dataclass
class ThreadsStatus:
    """The linked Threads profile: link, token, polling, posts, snapshots, refused metrics."""

    threads_user_id: str
    link_source: str | None
    linked_at: datetime | None
    state: str
    state_reason: str | None
    token_expires_at: datetime | None
    token_refreshed_at: datetime | None
    polled_at: datetime | None
    next_poll_at: datetime | None
    failures: int  # errors retrying cannot fix, in a row; `problem` says which
    problem: str | None
    poll_overdue_seconds: float | None = None  # None: no poll scheduled; 0: on time
    posts: ThreadsPosts = field(default_factory=ThreadsPosts)
    # by what was captured: user_insights, demographics, posts
    snapshots: dict[str, int] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)


@dataclass
class AccountStatus:
    id: int
    name: str
    ig_user_id: str
    login: str
    state: str
    state_reason: str | None
    ig_token_expires_at: datetime | None
    ig_token_refreshed_at: datetime | None
    ig_data_access_expires_at: datetime | None
    ig_token_checked_at: datetime | None  # debug_token asked (Facebook Login)
    ig_token_check_error: str | None  # why it did not answer then
    stories_polled_at: datetime | None
    next_story_poll_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    ig_failures: int  # errors retrying cannot fix, in a row; `ig_problem` says which
    ig_problem: str | None
    ig_insights_polled_at: datetime | None  # account insights (one run per closed Meta day)
    next_ig_insights_at: datetime | None
    ig_insights_failures: int
    ig_insights_problem: str | None
    media_failures: int = 0  # the same for the feed and Reels listing (`/media`)
    media_problem: str | None = None
    story_poll_overdue_seconds: float | None = None  # None: no listing scheduled; 0: on time
    media_problems: MediaProblems = field(default_factory=MediaProblems)
    stories: Stories = field(default_factory=Stories)
    snapshots: dict[str, int] = field(default_factory=dict)  # Instagram's, by source
    threads: ThreadsStatus | None = None  # None: no Threads profile linked

    @property
    def token_never_expires(self) -> bool:
        """Facebook Login's debug_token said `expires_at: 0` (reports.figures.never_expires)."""
        return (
            self.login == "facebook"
            and self.ig_token_expires_at is None
            and self.ig_token_checked_at is not None
            and self.ig_token_check_error is None
        )


# ThreadsStatus field -> account column; the Threads token itself is never selected.
THREADS_COLUMNS = {
    "threads_user_id": "threads_user_id",
    "link_source": "threads_link_source",
    "linked_at": "threads_linked_at",
    "state": "threads_state",
    "state_reason": "threads_state_reason",
    "token_expires_at": "threads_token_expires_at",
    "token_refreshed_at": "threads_token_refreshed_at",
    "polled_at": "threads_polled_at",
    "next_poll_at": "next_threads_poll_at",
    "failures": "threads_failures",
    "problem": "threads_problem",
}
# AccountStatus fields that are not account columns.
FILLED_IN = ("story_poll_overdue_seconds", "media_problems", "stories", "snapshots", "threads")
# (subject_type, kind) of a Threads snapshot -> the name it is counted under.
THREADS_SNAPSHOT_NAMES = {
    ("threads_user", "insights"): "user_insights",
    ("threads_user", "demographics"): "demographics",
    ("threads_post", "insights"): "posts",
}


@dataclass
class Deliveries:
    """webhook_delivery rows by status, and when the oldest still pending one arrived."""

    by_status: dict[str, int] = field(default_factory=dict)
    oldest_pending_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def account_statuses(engine: Engine, *, now: datetime, grace: timedelta) -> list[AccountStatus]:
    """Every account, oldest first, with its story, snapshot and Threads figures filled in;
    work due more than `grace` before `now` is overdue."""
    names = [name for name in AccountStatus.__dataclass_fields__ if name not in FILLED_IN]
    columns: list[sa.ColumnElement[Any]] = [_account.c[name] for name in names]
    columns += [_account.c[column].label(f"t_{name}") for name, column in THREADS_COLUMNS.items()]
    columns += [story_poll_due().label("story_due"), threads_poll_due().label("threads_due")]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(_account.c.id)).all()
        stories = _story_counts(conn)
        snapshots = _snapshot_counts(conn)
        threads = _threads_figures(conn)
        problems = media_problems(conn, now=now, grace=grace)
    accounts = []
    for row in rows:
        found = row._mapping
        account = AccountStatus(**{name: found[name] for name in names})
        account.story_poll_overdue_seconds = overdue_seconds(
            found["story_due"], now=now, grace=grace
        )
        account.media_problems = problems.get(account.id, MediaProblems())
        account.stories = stories.get(account.id, Stories())
        account.snapshots = snapshots.get(account.id, {})
        if found["t_threads_user_id"] is not None:
            linked = {name: found[f"t_{name}"] for name in THREADS_COLUMNS}
            account.threads = ThreadsStatus(**linked)
            account.threads.poll_overdue_seconds = overdue_seconds(
                found["threads_due"], now=now, grace=grace
            )
            threads.fill(account.id, account.threads)
        accounts.append(account)
    return accounts


def _story_counts(conn: Connection) -> dict[int, Stories]:
    is_story = sa.and_(_media.c.platform == "instagram", _media.c.subject_type == "story")
    by_state = sa.select(
        _media.c.account_id, _media.c.capture_state, _media.c.missed_reason, sa.func.count()
    ).where(is_story)
    by_state = by_state.group_by(
        _media.c.account_id, _media.c.capture_state, _media.c.missed_reason
    )
    found: dict[int, Stories] = defaultdict(Stories)
    for account_id, state, reason, count in conn.execute(by_state):
        stories = found[account_id]
        stories.seen += count
        if state == "final_captured":
            stories.final_captured += count
        elif state == "live":
            stories.live += count
        elif state == "missed":
            stories.missed += count
            key = reason or NO_REASON
            stories.missed_reasons[key] = stories.missed_reasons.get(key, 0) + count
    return found


def _snapshot_counts(conn: Connection) -> dict[int, dict[str, int]]:
    stmt = (
        sa.select(_snapshot.c.account_id, _snapshot.c.source, sa.func.count())
        .where(_snapshot.c.platform == "instagram")
        .group_by(_snapshot.c.account_id, _snapshot.c.source)
    )
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for account_id, source, count in conn.execute(stmt):
        found[account_id][source] = count
    return found


@dataclass
class _ThreadsFigures:
    """Per account: Threads posts by state, snapshots by what they captured, refusals."""

    posts: dict[int, ThreadsPosts] = field(default_factory=lambda: defaultdict(ThreadsPosts))
    snapshots: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    refused: dict[int, list[Refused]] = field(default_factory=lambda: defaultdict(list))

    def fill(self, account_id: int, threads: ThreadsStatus) -> None:
        threads.posts = self.posts.get(account_id, ThreadsPosts())
        threads.snapshots = self.snapshots.get(account_id, {})
        threads.refused = self.refused.get(account_id, [])


def _threads_figures(conn: Connection) -> _ThreadsFigures:
    found = _ThreadsFigures()
    media = _media.c
    posts = sa.select(media.account_id, media.capture_state, sa.func.count())
    posts = posts.where(media.platform == "threads", media.subject_type == "threads_post")
    for account_id, state, count in conn.execute(
        posts.group_by(media.account_id, media.capture_state)
    ):
        counted = found.posts[account_id]
        counted.seen += count
        if state in (TRACKED, DONE, SKIPPED, DELETED):
            setattr(counted, state, getattr(counted, state) + count)
    snap = _snapshot.c
    snapshots = sa.select(snap.account_id, snap.subject_type, snap.kind, sa.func.count())
    snapshots = snapshots.where(snap.platform == "threads")
    for account_id, subject_type, kind, count in conn.execute(
        snapshots.group_by(snap.account_id, snap.subject_type, snap.kind)
    ):
        name = THREADS_SNAPSHOT_NAMES.get((subject_type, kind), f"{subject_type}:{kind}")
        by_name = found.snapshots[account_id]
        by_name[name] = by_name.get(name, 0) + count
    refused = sa.select(_unavailable).where(_unavailable.c.platform == "threads")
    for row in conn.execute(refused.order_by(_unavailable.c.metric)):
        found.refused[row.account_id].append(
            Refused(row.metric, row.reason, row.first_seen_at, row.retry_at)
        )
    return found


def delivery_counts(engine: Engine) -> Deliveries:
    """How the webhook deliveries stand: counts by status, and the oldest pending one."""
    by_status = sa.select(_delivery.c.status, sa.func.count()).group_by(_delivery.c.status)
    oldest = sa.select(sa.func.min(_delivery.c.received_at)).where(
        _delivery.c.status.in_(PENDING_STATES)
    )
    with engine.connect() as conn:
        counts = {str(row[0]): int(row[1]) for row in conn.execute(by_status)}
        oldest_pending = conn.execute(oldest).scalar_one()
    return Deliveries(by_status=counts, oldest_pending_at=oldest_pending)


def days_left(expires_at: datetime | None, now: datetime) -> int | None:
    """Whole days until the token expires (negative once it has); None when unknown."""
    if expires_at is None:
        return None
    return int((expires_at - now).total_seconds() // 86400)
