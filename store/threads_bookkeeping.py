"""Threads bookkeeping in the database: which accounts are due a poll, what history is stored
already, metrics Meta will not give, newly listed posts and deleted ones (each poll's outcome
is kept by store.backoff).

What was stored is read back from the snapshots themselves (the last `views` day, the last
demographics capture), so there is no second copy of it to drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.accounts import Account, MetricUnavailable
from models.snapshots import Media, Snapshot, newest_capture_per_end, stored_values
from models.tables import table_of
from models.types import utcnow
from store.due_captures import SKIPPED, TRACKED, insert_media

PLATFORM = "threads"
USER = "threads_user"
POST = "threads_post"
ACTIVE = "active"
REAUTH_REQUIRED = "reauth_required"
REPOST_FACADE = "REPOST_FACADE"  # a repost: Meta gives no insights for it
DELETED = "deleted"  # a post its owner deleted (the `delete` webhook): captures stopped
_account = table_of(Account)
_media = table_of(Media)
_unavailable = table_of(MetricUnavailable)

_SLACK = timedelta(days=2)


@dataclass(frozen=True)
class FoundPost:
    """A post as /threads lists it (workers.meta.threads_api.ThreadsPost, without importing
    the worker)."""

    media_id: str
    posted_at: datetime | None
    media_type: str | None = None
    permalink: str | None = None
    text: str | None = None
    raw: dict[str, Any] | None = None


def due_threads_polls(engine: Engine, *, now: datetime, limit: int) -> list[tuple[int, datetime]]:
    """Accounts with a usable Threads token whose poll is due: (account id, due; now if never)."""
    due = sa.func.coalesce(_account.c.next_threads_poll_at, _account.c.created_at)
    stmt = (
        sa.select(_account.c.id, due)
        .where(
            _account.c.threads_user_id.is_not(None),
            _account.c.threads_token.is_not(None),
            _account.c.threads_state == ACTIVE,
            _account.c.state != "disabled",
            due <= now,
        )
        .order_by(due)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [(int(row[0]), row[1]) for row in rows]


def flag_threads_reauth(engine: Engine, *, account_id: int, reason: str) -> bool:
    """The Threads token is unusable; True only the first time (log it once)."""
    stmt = (
        sa.update(_account)
        .where(_account.c.id == account_id, _account.c.threads_state == ACTIVE)
        .values(
            threads_state=REAUTH_REQUIRED,
            threads_state_reason=reason,
            last_error=reason[:2000],
            last_error_at=utcnow(),
            updated_at=utcnow(),
        )
    )
    with engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount)


def _user_snapshots(threads_user_id: str) -> Any:
    return (
        col(Snapshot.platform) == PLATFORM,
        col(Snapshot.subject_type) == USER,
        col(Snapshot.subject_id) == threads_user_id,
    )


def last_views_day(engine: Engine, *, threads_user_id: str) -> datetime | None:
    """The newest `views` day stored for the user (the next poll overlaps it)."""
    where = (*_user_snapshots(threads_user_id), col(Snapshot.kind) == "insights")
    with engine.connect() as conn:
        values = stored_values(conn, *where)
    ends = [v.end_time for v in values if v.metric == "views" and v.end_time is not None]
    return max(ends, default=None)


def stored_windows(
    engine: Engine, *, threads_user_id: str, metrics: tuple[str, ...], since: datetime
) -> dict[datetime, datetime]:
    """For each window end (`end_time`) since `since` that holds a value of `metrics`, when
    the newest of those values was captured: which closed days are stored, and how fresh."""
    # A day's values are captured after it starts; two days of slack cover a partial day.
    where = (*_user_snapshots(threads_user_id), col(Snapshot.captured_at) >= since - _SLACK)
    with engine.connect() as conn:
        values = [v for v in stored_values(conn, *where) if v.metric in metrics]
    return newest_capture_per_end(values, since)


def stored_slots(engine: Engine, *, threads_user_id: str, prefix: str) -> set[str]:
    """The user's snapshot slots starting with `prefix` (e.g. the backfilled chunks)."""
    stmt = select(Snapshot.slot).where(
        *_user_snapshots(threads_user_id), col(Snapshot.slot).startswith(prefix)
    )
    with Session(engine) as session:
        return set(session.exec(stmt).all())


def last_capture_at(engine: Engine, *, threads_user_id: str, kind: str) -> datetime | None:
    """When the user's last snapshot of `kind` was taken (demographics: once a day)."""
    stmt = select(sa.func.max(col(Snapshot.captured_at))).where(
        *_user_snapshots(threads_user_id), col(Snapshot.kind) == kind
    )
    with Session(engine) as session:
        return session.exec(stmt).one()


def newest_post_at(engine: Engine, *, account_id: int) -> datetime | None:
    stmt = select(sa.func.max(col(Media.posted_at))).where(
        col(Media.account_id) == account_id, col(Media.platform) == PLATFORM
    )
    with Session(engine) as session:
        return session.exec(stmt).one()


def add_posts(session: Session, *, account_id: int, posts: list[FoundPost]) -> list[FoundPost]:
    """Insert the posts not seen before; return those to capture (reposts are kept, skipped)."""
    if not posts:
        return []
    ids = [post.media_id for post in posts]
    known = set(
        session.exec(
            select(Media.media_id).where(
                col(Media.platform) == PLATFORM, col(Media.media_id).in_(ids)
            )
        )
    )
    fresh = []
    for post in posts:
        if post.media_id in known:
            continue
        repost = post.media_type == REPOST_FACADE
        why = "Meta gives no insights for reposts (REPOST_FACADE)" if repost else None
        state = SKIPPED if repost else TRACKED
        inserted = _insert_post(session, account_id, post, capture_state=state, missed_reason=why)
        if inserted and not repost:
            fresh.append(post)
    return fresh


def _insert_post(session: Session, account_id: int, post: FoundPost, **fields: Any) -> bool:
    """INSERT the post's media row unless its id is known; True when inserted."""
    row = Media(
        account_id=account_id,
        platform=PLATFORM,
        subject_type=POST,
        media_id=post.media_id,
        media_type=post.media_type,
        permalink=post.permalink,
        caption=post.text,
        posted_at=post.posted_at,
        raw=post.raw,
        **fields,
    )
    return insert_media(session, row)


def mark_post_deleted(
    session: Session, *, account_id: int | None, post: FoundPost, deleted_at: datetime
) -> bool:
    """The post was deleted: its captures stop (state `deleted`, nothing scheduled) and its
    snapshots stay. A post not seen yet is recorded as deleted (with `account_id`), so a
    `publish` arriving after the `delete` (Meta keeps no order) cannot start its captures.
    False when the post is unknown and no account was given."""
    values = {
        "capture_state": DELETED,
        "next_slot": None,
        "next_capture_at": None,
        "deleted_at": sa.func.coalesce(_media.c.deleted_at, deleted_at),
    }
    stmt = (
        sa.update(_media)
        .where(_media.c.platform == PLATFORM, _media.c.media_id == post.media_id)
        .values(values)
    )
    if session.connection().execute(stmt).rowcount:
        return True
    if account_id is None:
        return False
    inserted = _insert_post(session, account_id, post, capture_state=DELETED, deleted_at=deleted_at)
    # Not inserted: a concurrent publish added the row just now, so mark that one.
    return inserted or mark_post_deleted(session, account_id=None, post=post, deleted_at=deleted_at)


def poll_threads_soon(
    session: Session, *, account_id: int, now: datetime, gap: timedelta
) -> datetime | None:
    """Bring the account's next Threads poll forward to now, or to `gap` after the last
    poll if that is later, unless it is due sooner already or the Threads side is failing
    (then its back-off stands). Returns when the poll is due, None when left as it was."""
    c = _account.c
    found = (
        session.connection()
        .execute(
            sa.select(c.threads_polled_at, c.next_threads_poll_at).where(
                c.id == account_id, c.threads_state == ACTIVE, c.threads_failures == 0
            )
        )
        .first()
    )
    if found is None:
        return None
    polled: datetime | None = found[0]
    due: datetime | None = found[1]
    soon = now if polled is None else max(now, polled + gap)
    if due is not None and due <= soon:
        return due
    session.connection().execute(
        sa.update(_account).where(c.id == account_id).values(next_threads_poll_at=soon)
    )
    return soon
