"""Instagram account insights bookkeeping: which accounts are due a run, which closed days are
stored already (read back from the snapshots, so there is no second copy to drift), metrics
Meta refused for an account, and a story final that the run should leave the budget to.

Snapshots are of subject_type `ig_account` (subject_id: the IG user id): kind `insights`
holds closed-day values (end_time: the day's end), kind `demographics` the daily audience
breakdowns.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.accounts import Account
from models.snapshots import Media, Snapshot, newest_capture_per_end, stored_values
from models.tables import table_of
from store.due_captures import LIVE

PLATFORM = "instagram"
SUBJECT = "ig_account"
INSIGHTS = "insights"
DEMOGRAPHICS = "demographics"
ACTIVE = "active"
_account = table_of(Account)


def due_account_insights(
    engine: Engine, *, now: datetime, limit: int
) -> list[tuple[int, datetime]]:
    """Active accounts whose insights run is due: (account id, due; when added if never)."""
    due = sa.func.coalesce(_account.c.next_ig_insights_at, _account.c.created_at)
    stmt = (
        sa.select(_account.c.id, due)
        .where(_account.c.state == ACTIVE, due <= now)
        .order_by(due)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [(int(row[0]), row[1]) for row in rows]


def _account_snapshots(ig_user_id: str, kind: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        col(Snapshot.platform) == PLATFORM,
        col(Snapshot.subject_type) == SUBJECT,
        col(Snapshot.subject_id) == ig_user_id,
        col(Snapshot.kind) == kind,
    )


def stored_days(engine: Engine, *, ig_user_id: str, since: datetime) -> dict[datetime, datetime]:
    """For each stored day's end (end_time) since `since`, when its newest values were
    captured: which closed days are stored, and how settled."""
    # A closed day is captured after it ends, so older snapshots hold no day since `since`.
    where = (*_account_snapshots(ig_user_id, INSIGHTS), col(Snapshot.captured_at) >= since)
    with engine.connect() as conn:
        values = stored_values(conn, *where)
    return newest_capture_per_end(values, since)


def last_demographics_at(engine: Engine, *, ig_user_id: str) -> datetime | None:
    stmt = select(sa.func.max(col(Snapshot.captured_at))).where(
        *_account_snapshots(ig_user_id, DEMOGRAPHICS)
    )
    with Session(engine) as session:
        return session.exec(stmt).one()


def next_final_due(
    engine: Engine, *, account_id: int, until: datetime, margin: timedelta
) -> datetime | None:
    """When the account's next story final is due (expiry less the final margin), if one is
    due by `until`: the run leaves the account's budget to it (a story's last chance beats a
    day that can wait). Read from the expiry, not `next_slot`: a story still has regular
    slots to take before its final becomes its next slot."""
    stmt = select(sa.func.min(col(Media.expires_at))).where(
        col(Media.account_id) == account_id,
        col(Media.platform) == PLATFORM,
        col(Media.capture_state) == LIVE,
        col(Media.expires_at) <= until + margin,
    )
    with Session(engine) as session:
        expires = session.exec(stmt).one()
    return None if expires is None else expires - margin


def postpone(engine: Engine, *, account_id: int, until: datetime) -> None:
    """Move the account's next insights run to `until` (no error: it waits its turn)."""
    stmt = sa.update(_account).where(_account.c.id == account_id)
    with engine.begin() as conn:
        conn.execute(stmt.values(next_ig_insights_at=until))
