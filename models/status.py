"""What `archiver status` reports from the database: per-account coverage and the deliveries.

Plain aggregate queries over the tables (no views), so the report works on any migrated
database and reads no token column at all: a token cannot leak from data it never loads.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from models.accounts import Account
from models.deliveries import PENDING_STATES, WebhookDelivery
from models.snapshots import Media, Snapshot

_account = Account.__table__  # type: ignore[attr-defined]
_media = Media.__table__  # type: ignore[attr-defined]
_snapshot = Snapshot.__table__  # type: ignore[attr-defined]
_delivery = WebhookDelivery.__table__  # type: ignore[attr-defined]

NO_REASON = "no reason recorded"


@dataclass
class Stories:
    """An account's stories by capture_state, and the missed ones by missed_reason."""

    seen: int = 0
    final_captured: int = 0
    missed: int = 0
    live: int = 0
    missed_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class AccountStatus:
    id: int
    name: str
    ig_user_id: str
    login: str
    state: str
    state_reason: str | None
    ig_token_expires_at: datetime | None
    stories_polled_at: datetime | None
    next_story_poll_at: datetime | None
    last_error: str | None
    stories: Stories = field(default_factory=Stories)
    snapshots: dict[str, int] = field(default_factory=dict)  # by source: api, webhook


@dataclass
class Deliveries:
    """webhook_delivery rows by status, and when the oldest still pending one arrived."""

    by_status: dict[str, int] = field(default_factory=dict)
    oldest_pending_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def account_statuses(engine: Engine) -> list[AccountStatus]:
    """Every account, oldest first, with its story and snapshot counts filled in."""
    columns = [
        _account.c[name]
        for name in AccountStatus.__dataclass_fields__
        if name not in ("stories", "snapshots")
    ]
    with engine.connect() as conn:
        accounts = [
            AccountStatus(**row._mapping)
            for row in conn.execute(sa.select(*columns).order_by(_account.c.id))
        ]
        stories = _story_counts(conn)
        snapshots = _snapshot_counts(conn)
    for account in accounts:
        account.stories = stories.get(account.id, Stories())
        account.snapshots = snapshots.get(account.id, {})
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
    stmt = sa.select(_snapshot.c.account_id, _snapshot.c.source, sa.func.count()).group_by(
        _snapshot.c.account_id, _snapshot.c.source
    )
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for account_id, source, count in conn.execute(stmt):
        found[account_id][source] = count
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
