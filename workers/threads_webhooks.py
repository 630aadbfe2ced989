"""Threads webhooks into work: a `publish` event starts the new post's captures at once
instead of at the next listing (https://developers.facebook.com/docs/threads/webhooks).

Threads sends no insights by webhook; every other field (replies, mentions, delete) is
archived and left alone. The post row gets its `first` slot due now, so the scheduler's next
tick (SCHEDULE_TICK_SECONDS) enqueues the capture.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from models.accounts import Account
from models.captures import schedule_capture
from models.threads import PLATFORM, FoundPost, add_posts
from models.types import utcnow
from workers.envelope import THREADS, Change
from workers.metric_sets import parse_time

PUBLISH = "publish"


def post_of(change: Change) -> FoundPost | None:
    """The published post in a `publish` change, if it names one."""
    value: dict[str, Any] = change.value
    media_id = value.get("id") or value.get("media_id")
    if not isinstance(media_id, str | int) or isinstance(media_id, bool) or not str(media_id):
        return None
    posted = parse_time(value.get("timestamp")) or change.sent_at or utcnow()
    text = value.get("text")
    return FoundPost(
        media_id=str(media_id),
        posted_at=posted,
        media_type=str(value["media_type"]) if value.get("media_type") else None,
        permalink=str(value["permalink"]) if value.get("permalink") else None,
        text=str(text) if text is not None else None,
        raw=value,
    )


def apply_publish(session: Session, change: Change) -> tuple[str, str]:
    """Track the published post: (`published` | `unrouted` | `skipped`, what happened)."""
    post = post_of(change)
    if post is None:
        return "skipped", "a Threads publish change without a post id was skipped"
    account_id = session.exec(
        select(Account.id).where(col(Account.threads_user_id) == change.entry_id)
    ).first()
    if account_id is None:
        return "unrouted", f"no account with threads_user_id {change.entry_id}"
    for fresh in add_posts(session, account_id=account_id, posts=[post]):
        schedule_capture(
            session, platform=PLATFORM, media_id=fresh.media_id, slot="first", due=utcnow()
        )
    return "published", post.media_id


def is_publish(change: Change) -> bool:
    return change.object == THREADS and change.field == PUBLISH
