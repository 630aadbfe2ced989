"""Feed posts and Reels in the database: which accounts are due a /media listing, the newest
media known (the next listing stops there), and newly listed media.

Each media is a `media` row (platform `instagram`) with `subject_type` `feed` (FEED: images,
videos, carousels) or `reel` (REELS), tracked on its decaying schedule like a Threads post
(capture_state `tracked`, then `done`). A media of another product type (e.g. AD) has no
metric set: it is kept as `skipped` with the reason, never asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.accounts import Account
from models.snapshots import Media
from models.tables import table_of
from store.due_captures import SKIPPED, TRACKED

PLATFORM = "instagram"
FEED = "feed"
REEL = "reel"
SUBJECT_TYPES = {"FEED": FEED, "REELS": REEL}  # media_product_type -> subject_type
FIRST = "first"
_account = table_of(Account)
_media = table_of(Media)


@dataclass(frozen=True)
class FoundMedia:
    """A media as /media lists it (workers.meta.graph_api.IgMedia, without the worker)."""

    media_id: str
    posted_at: datetime | None
    product_type: str | None
    media_type: str | None = None
    permalink: str | None = None
    caption: str | None = None
    raw: dict[str, Any] | None = None


def due_media_listings(engine: Engine, *, now: datetime, limit: int) -> list[tuple[int, datetime]]:
    """Active accounts whose /media listing is due: (account id, due; created_at if never)."""
    due = sa.func.coalesce(_account.c.next_media_listing_at, _account.c.created_at)
    stmt = (
        sa.select(_account.c.id, due)
        .where(_account.c.state == "active", due <= now)
        .order_by(due)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(int(row[0]), row[1]) for row in conn.execute(stmt)]


def newest_media_at(engine: Engine, *, account_id: int) -> datetime | None:
    """The newest feed post or Reel known for the account (the next listing stops there)."""
    stmt = select(sa.func.max(col(Media.posted_at))).where(
        col(Media.account_id) == account_id,
        col(Media.platform) == PLATFORM,
        col(Media.subject_type).in_((FEED, REEL)),
    )
    with Session(engine) as session:
        return session.exec(stmt).one()


def add_media(
    session: Session, *, account_id: int, found: list[FoundMedia], now: datetime
) -> list[str]:
    """Insert the media not seen before, each due a `first` capture now, in one statement
    (an account's first listing brings 50 at once; a row at a time held a database thread
    for seconds); return the ids inserted. Media of a product type without a metric set are
    kept as skipped, with the reason."""
    rows = {media.media_id: _row(account_id, media, now) for media in found}
    if not rows:
        return []
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(_media)
        .values(list(rows.values()))
        .on_conflict_do_nothing(index_elements=["platform", "media_id"])
        .returning(_media.c.media_id, _media.c.capture_state)
    )
    inserted = session.connection().execute(stmt).all()
    added = {media_id for media_id, state in inserted if state == TRACKED}
    return [media_id for media_id in rows if media_id in added]


def _row(account_id: int, media: FoundMedia, now: datetime) -> dict[str, Any]:
    subject_type = SUBJECT_TYPES.get(media.product_type or "")
    why = None
    if subject_type is None:
        why = f"no insights are asked for media_product_type {media.product_type}"
    return {
        "account_id": account_id,
        "platform": PLATFORM,
        "subject_type": subject_type or FEED,
        "media_id": media.media_id,
        "media_type": media.media_type,
        "media_product_type": media.product_type,
        "permalink": media.permalink,
        "caption": media.caption,
        "posted_at": media.posted_at,
        "discovered_at": now,
        "raw": media.raw,
        "capture_state": SKIPPED if why else TRACKED,
        "missed_reason": why,
        "next_slot": None if why else FIRST,
        "next_capture_at": None if why else now,
    }


def store_media(
    engine: Engine, *, account_id: int, found: list[FoundMedia], now: datetime
) -> list[str]:
    """add_media in a transaction of its own."""
    with Session(engine) as session:
        added = add_media(session, account_id=account_id, found=found, now=now)
        session.commit()
    return added
