"""Threads `publish` and `delete` webhooks into work
(https://developers.facebook.com/docs/threads/webhooks).

- `publish` comes for posts and for the user's replies alike ("including replies to user's
  or other's posts"), and its documented value (id, media_type, permalink, timestamp,
  username) does not say which. Replies are not tracked as posts. A value that says it is a
  reply (`is_reply`, `replied_to` or another `root_post`, fields of the Threads media object)
  is left alone; one that says it is not (`is_reply` false) is tracked at once, its `first`
  slot due now. One that does not say brings the account's next Threads poll forward: its
  listing of /threads holds the user's posts and never their replies, so a post is found
  and captured within a tick or two and a reply is never tracked.
- `delete` stops the post's captures (`capture_state` 'deleted', `deleted_at` from the
  value) and keeps its snapshots. A post not seen yet is recorded as deleted, so a
  `publish` delivered after its `delete` (Meta keeps no order) cannot start its captures.
- Threads sends no insights by webhook; the other fields (replies, mentions) are archived
  and left alone, and so is any value these two cannot read.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from models.accounts import Account
from models.types import utcnow
from store.due_captures import schedule_capture
from store.threads_bookkeeping import (
    PLATFORM,
    FoundPost,
    add_posts,
    mark_post_deleted,
    poll_threads_soon,
)
from workers.meta.metric_sets import parse_time
from workers.webhooks.envelope import THREADS, Change, identifier

PUBLISH, DELETE = "publish", "delete"
POLL_GAP = timedelta(minutes=1)  # publish bursts bring the poll forward once a minute at most
MEDIA_TYPE_CHARS = 32  # the media_type column
Result = tuple[str, str]  # (what happened, a note for the delivery's summary)


def _text(value: dict[str, Any], name: str, limit: int | None = None) -> str | None:
    text = None if value.get(name) is None else str(value[name])
    return None if text is None or (limit is not None and len(text) > limit) else text


def post_of(change: Change) -> FoundPost | None:
    """The post a `publish` or `delete` change names, if it names one."""
    value: dict[str, Any] = change.value
    media_id = identifier(value.get("id") or value.get("media_id"))
    if media_id is None:
        return None
    return FoundPost(
        media_id=media_id,
        posted_at=parse_time(value.get("timestamp")) or change.sent_at or utcnow(),
        media_type=_text(value, "media_type", MEDIA_TYPE_CHARS),  # no Meta type is longer
        permalink=_text(value, "permalink"),
        text=_text(value, "text"),
        raw=value,
    )


def says_reply(value: dict[str, Any], media_id: str) -> bool | None:
    """True: the value says the media is a reply; False: it says it is not; None: silent."""
    root = value.get("root_post")
    root_id = identifier(root.get("id")) if isinstance(root, dict) else None
    if value.get("is_reply") is True or value.get("replied_to") or root_id not in (None, media_id):
        return True
    return False if value.get("is_reply") is False else None


def _account_id(session: Session, threads_user_id: str) -> int | None:
    stmt = select(Account.id).where(col(Account.threads_user_id) == threads_user_id)
    return session.exec(stmt).first()


def apply_publish(session: Session, change: Change) -> Result:
    """`published` (tracked), `left to the listing` (the poll brought forward), `reply`,
    `unrouted` or `skipped`."""
    post = post_of(change)
    if post is None:
        return "skipped", "a Threads publish change without a post id was skipped"
    account_id = _account_id(session, change.entry_id)
    if account_id is None:
        return "unrouted", f"no account with threads_user_id {change.entry_id}"
    reply = says_reply(change.value, post.media_id)
    if reply:
        return "reply", f"threads reply {post.media_id} is not tracked"
    if reply is None:
        poll_threads_soon(session, account_id=account_id, now=utcnow(), gap=POLL_GAP)
        return "left to the listing", post.media_id
    for fresh in add_posts(session, account_id=account_id, posts=[post]):
        schedule_capture(
            session, platform=PLATFORM, media_id=fresh.media_id, slot="first", due=utcnow()
        )
    return "published", post.media_id


def apply_delete(session: Session, change: Change) -> Result:
    """`deleted`, `unrouted` or `skipped`: the post's captures stop, its snapshots stay."""
    post = post_of(change)
    if post is None:
        return "skipped", "a Threads delete change without a post id was skipped"
    deleted_at = parse_time(change.value.get("deleted_at")) or change.sent_at or utcnow()
    owner = change.value.get("owner")
    owner_id = identifier(owner.get("owner_id")) if isinstance(owner, dict) else None
    account_id = _account_id(session, owner_id or change.entry_id)
    if mark_post_deleted(session, account_id=account_id, post=post, deleted_at=deleted_at):
        return "deleted", post.media_id
    return "unrouted", f"no account with threads_user_id {owner_id or change.entry_id}"


def is_post_change(change: Change) -> bool:
    """A Threads change this module acts on (`publish`, `delete`)."""
    return change.object == THREADS and change.field in (PUBLISH, DELETE)


def apply_post_change(session: Session, change: Change) -> Result:
    return (apply_publish if change.field == PUBLISH else apply_delete)(session, change)
