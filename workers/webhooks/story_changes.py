"""Instagram `story_insights` webhooks into snapshots: the story's `webhook` version
(https://developers.facebook.com/docs/instagram-platform/webhooks).

Meta delivers at least once and retries with other bodies (another entry.time), so the
`webhook` slot of a story's snapshots is the natural key: a second body for the same story
adds nothing. The story's media row is created if the listing has not seen it yet, and what
a capture set on it is never touched.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models.accounts import Account
from models.snapshots import Media
from models.tables import table_of
from store.recording import BELOW_THRESHOLD, MetricRow, Subject, record_snapshot
from workers.webhooks.envelope import MAX_ID_CHARS, Change, identifier

STORY_INSIGHTS = "story_insights"
WEBHOOK_SLOT = "webhook"  # one webhook version per story, whichever body carried it
RECORDED, ALREADY = "recorded", "already recorded"
Result = tuple[str, str]  # (what happened, a note for the delivery's summary)


def story_metric_rows(value: dict[str, Any]) -> list[MetricRow]:
    """One row per numeric key but media_id; Meta's -1 means "fewer than 5", never a count.
    A key too long for a metric name is left in the snapshot's raw only."""
    rows = []
    for key, raw in value.items():
        if key == "media_id" or isinstance(raw, bool) or not isinstance(raw, int | float):
            continue
        if len(key) > MAX_ID_CHARS:
            continue
        if raw == -1:  # https://developers.facebook.com/docs/instagram-platform/webhooks
            rows.append(MetricRow(metric=key, value=None, flag=BELOW_THRESHOLD))
        else:
            rows.append(MetricRow(metric=key, value=float(raw)))
    return rows


def is_story_change(change: Change) -> bool:
    """An Instagram change this module acts on (`story_insights`)."""
    return change.object == "instagram" and change.field == STORY_INSIGHTS


def apply_story_change(session: Session, delivery_id: int, change: Change) -> Result:
    """The story's webhook version, once: RECORDED, ALREADY, "unrouted" or "skipped"."""
    media_id = identifier(change.value.get("media_id"))
    if media_id is None:
        return "skipped", "a story_insights change without media_id was skipped"
    account_id = session.exec(
        select(Account.id).where(col(Account.ig_user_id) == change.entry_id)
    ).first()
    if account_id is None:
        return "unrouted", f"no account with ig_user_id {change.entry_id}"
    _ensure_story(session, account_id, media_id)
    _, created = record_snapshot(
        session=session,
        subject=Subject(account_id, "instagram", "story", media_id),
        slot=WEBHOOK_SLOT,
        source="webhook",
        metrics=story_metric_rows(change.value),
        raw=change.value,
        delivery_id=delivery_id,
    )
    return (RECORDED if created else ALREADY), media_id


def _ensure_story(session: Session, account_id: int, media_id: str) -> None:
    """Insert the story's Media row unless it exists; never touch what a capture set."""
    row = Media(
        account_id=account_id, platform="instagram", subject_type="story", media_id=media_id
    )
    values = row.model_dump(exclude={"id"}, exclude_none=True)  # model defaults, e.g. now
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(table_of(Media))
        .values(values)
        .on_conflict_do_nothing(index_elements=["platform", "media_id"])
    )
    session.connection().execute(stmt)
