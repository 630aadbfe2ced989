"""What is overdue: scheduled work whose due time passed more than a grace ago.

The scheduler enqueues due work every SCHEDULE_TICK_SECONDS, so a healthy service runs it at
most about a tick late; the grace is two ticks. The due expressions mirror the scheduler's own
queries (store.story_bookkeeping.due_polls, store.threads_bookkeeping.due_threads_polls,
store.due_captures.due_captures), so work the scheduler would not enqueue is never overdue: an
account waiting for re-authorisation, or backing off after an error retrying cannot fix (its
next_* is then in the future). Its state and problem say why instead. A token column is only
tested for being set, never selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from models.accounts import Account
from models.snapshots import Media
from models.tables import table_of
from models.types import UTCDateTime
from store.due_captures import OPEN_STATES
from store.story_bookkeeping import ACTIVE

STORY_POLL = "story_poll"
STORY_CAPTURE = "story_capture"
STORY_FINAL = "story_final"
THREADS_POLL = "threads_poll"
THREADS_CAPTURE = "threads_capture"
KINDS = (STORY_POLL, STORY_CAPTURE, STORY_FINAL, THREADS_POLL, THREADS_CAPTURE)
FINAL_SLOT = "final"  # workers.captures.slots.FINAL (models never import workers)
DISABLED = "disabled"
TICKS_OF_GRACE = 2

_account = table_of(Account)
_media = table_of(Media)


def overdue_grace(tick_seconds: float) -> timedelta:
    """How late work may run before it counts as overdue: two scheduler ticks."""
    return timedelta(seconds=TICKS_OF_GRACE * tick_seconds)


def overdue_seconds(due: datetime | None, *, now: datetime, grace: timedelta) -> float | None:
    """Seconds since `due` when that is more than `grace`, else 0; None when nothing is due."""
    if due is None:
        return None
    late = (now - due).total_seconds()
    return late if late > grace.total_seconds() else 0.0


def _due(condition: ColumnElement[bool], due: ColumnElement[Any]) -> ColumnElement[datetime]:
    return sa.type_coerce(sa.case((condition, due), else_=None), UTCDateTime)


def story_poll_due() -> ColumnElement[datetime]:
    """When the account's story listing is due (null: none is scheduled)."""
    a = _account.c
    return _due(a.state == ACTIVE, sa.func.coalesce(a.next_story_poll_at, a.created_at))


def threads_polled() -> ColumnElement[bool]:
    """The account's Threads profile is polled: linked, with a usable token."""
    a = _account.c
    return sa.and_(
        a.threads_user_id.is_not(None),
        a.threads_token.is_not(None),
        a.threads_state == ACTIVE,
        a.state != DISABLED,
    )


def threads_poll_due() -> ColumnElement[datetime]:
    """When the account's Threads poll is due (null: none is scheduled)."""
    a = _account.c
    return _due(threads_polled(), sa.func.coalesce(a.next_threads_poll_at, a.created_at))


def capture_side_active() -> ColumnElement[bool]:
    """The media's account may capture it: the Threads side for a post, else Instagram's."""
    m, a = _media.c, _account.c
    return sa.or_(
        sa.and_(m.platform == "threads", a.threads_state == ACTIVE, a.state != DISABLED),
        sa.and_(m.platform != "threads", a.state == ACTIVE),
    )


def capture_kind() -> ColumnElement[str]:
    m = _media.c
    return sa.case(
        (m.platform == "threads", THREADS_CAPTURE),
        (m.next_slot == FINAL_SLOT, STORY_FINAL),
        else_=STORY_CAPTURE,
    )


def media_with_account() -> sa.Join:
    join: sa.Join = _media.join(_account, _account.c.id == _media.c.account_id)
    return join


@dataclass(frozen=True)
class Overdue:
    """How many items of a kind are overdue, and by how long the oldest is (0: none)."""

    count: int = 0
    oldest_seconds: float = 0.0


def overdue_work(conn: Connection, *, now: datetime, grace: timedelta) -> dict[str, Overdue]:
    """Every kind, overdue or not: polls from the account table (thousands of rows), captures
    through the media(capture_state, next_capture_at) index, reading only the overdue rows."""
    cutoff = now - grace
    found = dict.fromkeys(KINDS, Overdue())
    for kind, due in ((STORY_POLL, story_poll_due()), (THREADS_POLL, threads_poll_due())):
        stmt = sa.select(sa.func.count(), sa.func.min(due)).where(due < cutoff)
        count, oldest = conn.execute(stmt).one()
        if count:
            found[kind] = Overdue(int(count), (now - oldest).total_seconds())
    by_kind = capture_kind().label("kind")
    captures = (
        sa.select(by_kind, sa.func.count(), sa.func.min(_media.c.next_capture_at))
        .select_from(media_with_account())
        .where(
            _media.c.capture_state.in_(OPEN_STATES),
            _media.c.next_capture_at < cutoff,
            capture_side_active(),
        )
        .group_by(by_kind)
    )
    for name, count, oldest in conn.execute(captures):
        found[str(name)] = Overdue(int(count), (now - oldest).total_seconds())
    return found
