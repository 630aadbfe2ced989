"""Scheduled captures of media (Instagram stories, feed posts and Reels, Threads posts): what
is due, and each capture's outcome, kept on the `media` row.

The database, not Redis, says what is due (`media.next_slot`/`next_capture_at`): the
scheduler re-enqueues from it every tick, so a Redis flush or a crashed worker costs at most
one tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from jobqueue.names import IG_MEDIA
from models.accounts import Account
from models.snapshots import Media
from models.tables import table_of
from models.types import utcnow

LIVE = "live"  # a story still being captured
TRACKED = "tracked"  # a Threads post, feed post or Reel still being captured
FINAL_CAPTURED = "final_captured"
MISSED = "missed"
DONE = "done"  # a Threads post whose schedule is over
SKIPPED = "skipped"  # a Threads post Meta gives no insights for (REPOST_FACADE)
OPEN_STATES = (LIVE, TRACKED)
_media = table_of(Media)


@dataclass(frozen=True)
class CaptureTarget:
    """A media row and its account, read in one short transaction; tokens hidden in repr."""

    media: Media
    account: Account

    @property
    def is_open(self) -> bool:
        return self.media.capture_state in OPEN_STATES

    def __repr__(self) -> str:
        return f"CaptureTarget({self.media.platform}:{self.media.media_id})"


@dataclass(frozen=True)
class DueCapture:
    platform: str
    media_id: str
    slot: str
    due: datetime
    subject_type: str = ""

    @property
    def job(self) -> str:
        """The capture key (workers.captures.jobs.JOBS): feed posts and Reels are `ig_media`."""
        return IG_MEDIA if self.subject_type in ("feed", "reel") else self.platform


def due_captures(
    engine: Engine,
    *,
    until: datetime,
    limit: int,
    tracked_limit: int | None = None,
    final_slot: str = "final",
) -> list[DueCapture]:
    """Open media whose next capture is due by `until`: live stories first, their finals
    before any other slot (at most `limit`), then the tracked posts, feed posts and Reels
    (at most `tracked_limit`, default `limit`), each soonest first.

    So a backlog (a backfill, an account's first listing of 50 media, thousands of stories'
    first captures) never pushes a story's final past the batch: a story's last chance
    beats anything's next point.
    """
    m = _media.c
    found: list[DueCapture] = []
    limits = {LIVE: limit, TRACKED: limit if tracked_limit is None else tracked_limit}
    with engine.connect() as conn:
        for state in OPEN_STATES:
            stmt = (
                sa.select(m.platform, m.media_id, m.next_slot, m.next_capture_at, m.subject_type)
                .where(
                    m.capture_state == state,
                    m.next_capture_at.is_not(None),
                    m.next_capture_at <= until,
                )
                .order_by(sa.case((m.next_slot == final_slot, 0), else_=1), m.next_capture_at)
                .limit(limits[state])
            )
            found += [
                DueCapture(p, mid, slot, due, kind)
                for p, mid, slot, due, kind in conn.execute(stmt)
                if slot and due
            ]
    return found


def promote_finals(
    engine: Engine, *, slot: str, now: datetime, margin: timedelta, limit: int
) -> list[DueCapture]:
    """Live stories whose final is due while an earlier slot is still pending (a capture
    stuck behind a backlog): their next slot becomes `slot` (the final), due at expiry minus
    `margin`, so the tick enqueues the final itself rather than wait for that capture."""
    pending_other = sa.or_(_media.c.next_slot.is_(None), _media.c.next_slot != slot)
    live_story = sa.and_(
        _media.c.platform == "instagram", _media.c.capture_state == LIVE, pending_other
    )
    stmt = (
        sa.select(_media.c.id, _media.c.media_id, _media.c.expires_at)
        .where(live_story, _media.c.expires_at > now, _media.c.expires_at <= now + margin)
        .order_by(_media.c.expires_at)
        .limit(limit)
    )
    update = (
        sa.update(_media)
        .where(_media.c.id == sa.bindparam("row_id"), live_story)
        .values(next_slot=slot, next_capture_at=sa.bindparam("due"))
    )
    with engine.begin() as conn:
        found = [
            (row_id, media_id, expires - margin) for row_id, media_id, expires in conn.execute(stmt)
        ]
        if found:
            conn.execute(update, [{"row_id": row_id, "due": due} for row_id, _, due in found])
    return [DueCapture("instagram", media_id, slot, due) for _, media_id, due in found]


def insert_media(session: Session, row: Media) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on (platform, media_id): two overlapping listings or
    a listing and a webhook insert a media once. True when this call inserted it."""
    values = row.model_dump(exclude={"id"}, exclude_none=True)
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(_media)
        .values(values)
        .on_conflict_do_nothing(index_elements=["platform", "media_id"])
        .returning(_media.c.id)
    )
    # Not rowcount: with the RETURNING SQLAlchemy adds on PostgreSQL, psycopg reports -1.
    return session.connection().execute(stmt).first() is not None


def capture_target(engine: Engine, platform: str, media_id: str) -> CaptureTarget | None:
    """The media row with its account; None for an unknown one."""
    stmt = (
        select(Media, Account)
        .join(Account, col(Account.id) == col(Media.account_id))
        .where(col(Media.platform) == platform, col(Media.media_id) == media_id)
    )
    with Session(engine, expire_on_commit=False) as session:
        found = session.exec(stmt).first()
        if found is None:
            return None
        session.expunge_all()
    return CaptureTarget(*found)


def _update(session: Session, platform: str, media_id: str, values: dict[str, Any]) -> None:
    stmt = (
        sa.update(_media)
        .where(_media.c.platform == platform, _media.c.media_id == media_id)
        .values(values)
    )
    session.connection().execute(stmt)


def schedule_capture(
    session: Session,
    *,
    platform: str,
    media_id: str,
    slot: str | None,
    due: datetime | None,
) -> None:
    """Set the next capture (None: nothing more is scheduled)."""
    _update(session, platform, media_id, {"next_slot": slot, "next_capture_at": due})


def close_capture(
    session: Session,
    *,
    platform: str,
    media_id: str,
    state: str,
    final_snapshot_id: int | None = None,
    reason: str | None = None,
) -> None:
    """Capturing is over: final_captured (with its snapshot), missed (why), done, skipped."""
    values: dict[str, Any] = {"capture_state": state, "next_slot": None, "next_capture_at": None}
    if final_snapshot_id is not None:
        values["final_snapshot_id"] = final_snapshot_id
    if reason is not None:
        values["missed_reason"] = reason
    _update(session, platform, media_id, values)


def note_capture_error(engine: Engine, *, platform: str, media_id: str, error: str) -> None:
    """The last error of a media's captures, and when (a missed story's reason comes from it)."""
    with Session(engine) as session:
        _update(
            session, platform, media_id, {"last_error": error[:2000], "last_error_at": utcnow()}
        )
        session.commit()
