"""The dashboard's read-only SQL. Each query is keyed so an index answers it on a large archive:

- a subject's versions: `ix_snapshot_subject` (subject_id, kind, version), each snapshot's
  values in its own row, so a story costs its own rows, whatever the archive holds;
- an account's recent stories and posts: `ix_media_account_expires` (account_id, ...);
- a Threads user's days: the `threads_user_daily` view filtered on its partition key, which
  PostgreSQL pushes below the window (SQLite scans that user's snapshots);
- failed deliveries: `ix_webhook_delivery_status` (status, id), newest first.
No token column is ever selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from models.accounts import Account
from models.deliveries import FAILED, WebhookDelivery
from models.snapshots import Media, Snapshot, StoredValue, stored_values
from models.tables import table_of

_media = table_of(Media)
_snapshot = table_of(Snapshot)
_delivery = table_of(WebhookDelivery)
_account = table_of(Account)
LIST_LIMIT = 50


def subject(conn: Connection, platform: str, media_id: str) -> Any:
    """The media row of a story or Threads post, with its account's name."""
    stmt = (
        sa.select(
            _media.c.media_id,
            _media.c.subject_type,
            _media.c.account_id,
            _account.c.name.label("account_name"),
            _media.c.posted_at,
            _media.c.expires_at,
            _media.c.capture_state,
            _media.c.missed_reason,
            _media.c.final_snapshot_id,
            _media.c.permalink,
            _media.c.caption,
        )
        .join(_account, _account.c.id == _media.c.account_id)
        .where(_media.c.platform == platform, _media.c.media_id == media_id)
    )
    return conn.execute(stmt).first()


def versions(
    conn: Connection, platform: str, subject_type: str, subject_id: str
) -> list[StoredValue]:
    """Every insights value of every version of a subject, oldest version first."""
    s = _snapshot.c
    where = (
        s.subject_id == subject_id,
        s.kind == "insights",
        s.platform == platform,
        s.subject_type == subject_type,
    )
    values = stored_values(conn, *where)
    return sorted(values, key=lambda v: (v.version, v.metric, v.breakdown or "", v.dimension or ""))


def recent_media(conn: Connection, account_id: int, subject_type: str) -> list[Row[Any]]:
    """An account's newest stories (or Threads posts), at most LIST_LIMIT."""
    m = _media.c
    stmt = (
        sa.select(m.media_id, m.posted_at, m.expires_at, m.capture_state, m.missed_reason)
        .where(m.account_id == account_id, m.subject_type == subject_type)
        .order_by(m.expires_at.desc(), m.posted_at.desc(), m.id.desc())
        .limit(LIST_LIMIT)
    )
    return list(conn.execute(stmt))


@dataclass(frozen=True)
class Day:
    """One row of the `threads_user_daily` view."""

    day: str
    metric: str
    breakdown: str | None
    dimension: str | None
    value: float | None
    flag: str | None


def threads_days(conn: Connection, threads_user_id: str) -> list[Day]:
    """A Threads profile's rows of the `threads_user_daily` view, by day (the view's values come
    back as Decimal on PostgreSQL: made float here)."""
    stmt = sa.text(
        "SELECT day, metric, breakdown, dimension, value, flag FROM threads_user_daily "
        "WHERE threads_user_id = :user ORDER BY day, metric, breakdown, dimension"
    )
    return [
        Day(
            str(r.day),
            r.metric,
            r.breakdown,
            r.dimension,
            None if r.value is None else float(r.value),
            r.flag,
        )
        for r in conn.execute(stmt, {"user": threads_user_id})
    ]


def threads_owner(conn: Connection, threads_user_id: str) -> str | None:
    """The name of the account this Threads profile is linked to."""
    stmt = sa.select(_account.c.name).where(_account.c.threads_user_id == threads_user_id)
    name = conn.execute(stmt).scalar_one_or_none()
    return None if name is None else str(name)


def failed_deliveries(conn: Connection) -> list[Row[Any]]:
    """The newest failed deliveries with their (stored scrubbed) error."""
    d = _delivery.c
    stmt = (
        sa.select(d.id, d.platform, d.received_at, d.attempts, d.summary, d.error)
        .where(d.status == FAILED)
        .order_by(d.id.desc())
        .limit(LIST_LIMIT)
    )
    return list(conn.execute(stmt))
