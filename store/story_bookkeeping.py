"""Story bookkeeping in the database: which accounts are due a listing, new stories, and
stories that expired without a final capture (store.due_captures has the per-capture part).

`account.next_story_poll_at` says when an account is due, so the scheduler can re-enqueue
from the database after a Redis flush; store.backoff keeps it, with each listing's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.accounts import Account
from models.snapshots import Media
from models.tables import table_of
from models.types import utcnow
from store.due_captures import LIVE, MISSED, insert_media

ACTIVE = "active"
REAUTH_REQUIRED = "reauth_required"
# "Stories are only available for 24 hours": their insights go with them
# (https://developers.facebook.com/documentation/instagram-platform/reference/instagram-media/insights).
STORY_LIFETIME = timedelta(hours=24)
_media = table_of(Media)
_account = table_of(Account)


@dataclass(frozen=True)
class FoundStory:
    """A story as /stories lists it (workers.meta.graph_api.IgMedia, without the worker import)."""

    media_id: str
    posted_at: datetime
    media_type: str | None = None
    media_product_type: str | None = None
    permalink: str | None = None
    caption: str | None = None
    raw: dict[str, Any] | None = None


def due_polls(engine: Engine, *, now: datetime, limit: int) -> list[tuple[int, datetime]]:
    """Active accounts whose /stories listing is due: (account id, due time; when added if
    never), so the job id stays the same from tick to tick until the listing has run."""
    due = sa.func.coalesce(_account.c.next_story_poll_at, _account.c.created_at)
    stmt = (
        sa.select(_account.c.id, due)
        .where(_account.c.state == ACTIVE, due <= now)
        .order_by(due)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [(int(row[0]), row[1]) for row in rows]


def mark_expired(engine: Engine, *, now: datetime, grace: timedelta) -> int:
    """Close live stories that expired without a final capture; the reason says why."""
    reason = sa.func.coalesce(_media.c.last_error, "no final snapshot was taken before expiry")
    stmt = (
        sa.update(_media)
        .where(
            _media.c.capture_state == LIVE,
            _media.c.expires_at.is_not(None),
            _media.c.expires_at < now - grace,
        )
        .values(capture_state=MISSED, missed_reason=reason, next_slot=None, next_capture_at=None)
    )
    with engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)


def flag_reauth(engine: Engine, *, account_id: int, reason: str) -> bool:
    """Mark the account for re-authorisation; True only the first time (log it once)."""
    stmt = (
        sa.update(_account)
        .where(_account.c.id == account_id, _account.c.state == ACTIVE)
        .values(
            state=REAUTH_REQUIRED,
            state_reason=reason,
            last_error=reason,
            last_error_at=utcnow(),
            updated_at=utcnow(),
        )
    )
    with engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount)


def account_credentials(engine: Engine, account_id: int) -> Account | None:
    with Session(engine, expire_on_commit=False) as session:
        account = session.get(Account, account_id)
        if account is not None:
            session.expunge(account)
        return account


def add_stories(
    session: Session, *, account_id: int, stories: list[FoundStory], now: datetime
) -> list[FoundStory]:
    """Insert the stories not seen before (a webhook-made row gets its times filled in);
    return those whose capture must start now."""
    if not stories:
        return []
    ids = [story.media_id for story in stories]
    known = {
        media.media_id: media
        for media in session.exec(
            select(Media).where(col(Media.platform) == "instagram", col(Media.media_id).in_(ids))
        )
    }
    fresh = []
    for story in stories:
        media = known.get(story.media_id)
        if media is None:
            _insert_story(session, account_id, story)
            fresh.append(story)
        elif media.expires_at is None:  # first seen through the webhook: learn its times
            _fill_story(media, story)
            session.add(media)
            fresh.append(story)
    session.flush()
    return fresh


def _story_values(story: FoundStory) -> dict[str, Any]:
    return {
        "media_type": story.media_type,
        "media_product_type": story.media_product_type,
        "permalink": story.permalink,
        "caption": story.caption,
        "posted_at": story.posted_at,
        "expires_at": story.posted_at + STORY_LIFETIME,
        "raw": story.raw,
    }


def _insert_story(session: Session, account_id: int, story: FoundStory) -> None:
    """Two overlapping listings insert a story once (store.due_captures.insert_media)."""
    row = Media(
        account_id=account_id,
        platform="instagram",
        subject_type="story",
        media_id=story.media_id,
        **_story_values(story),
    )
    insert_media(session, row)


def _fill_story(media: Media, story: FoundStory) -> None:
    for key, value in _story_values(story).items():
        if getattr(media, key) is None:
            setattr(media, key, value)
