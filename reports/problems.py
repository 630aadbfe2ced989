"""Stories and Threads posts still being captured that have a problem: a last error, or a
capture overdue (reports.overdue). `archiver status` lists them per account, capped, so that a
report over thousands of accounts stays readable: one query ranks them per account with window
functions (PostgreSQL and SQLite alike) and returns only the first few of each, with the count.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.snapshots import Media
from models.tables import table_of
from reports.overdue import capture_side_active, media_with_account, overdue_seconds
from store.due_captures import OPEN_STATES

SHOWN_PER_ACCOUNT = 5
COLUMNS = (
    "account_id",
    "platform",
    "subject_type",
    "media_id",
    "next_slot",
    "next_capture_at",
    "last_error",
    "last_error_at",
)
_media = table_of(Media)


@dataclass
class MediaProblem:
    """One open story or post: the slot due next, its last error, and how overdue it is (None
    when its account is not capturing, e.g. waiting for re-authorisation)."""

    platform: str
    subject_type: str
    media_id: str
    slot: str | None
    due_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    overdue_seconds: float | None


@dataclass
class MediaProblems:
    """An account's open media with a problem: how many, and the first few (most overdue
    first, then those with an error)."""

    total: int = 0
    listed: list[MediaProblem] = field(default_factory=list)


def media_problems(
    conn: Connection, *, now: datetime, grace: timedelta, shown: int = SHOWN_PER_ACCOUNT
) -> dict[int, MediaProblems]:
    """Per account id, its open media with a last error or an overdue capture."""
    found: dict[int, MediaProblems] = defaultdict(MediaProblems)
    for row in conn.execute(_ranked(now - grace, shown)):
        problems = found[row.account_id]
        problems.total = int(row.total)
        due = row.next_capture_at if row.active else None
        problems.listed.append(
            MediaProblem(
                platform=row.platform,
                subject_type=row.subject_type,
                media_id=row.media_id,
                slot=row.next_slot,
                due_at=row.next_capture_at,
                last_error=row.last_error,
                last_error_at=row.last_error_at,
                overdue_seconds=overdue_seconds(due, now=now, grace=grace),
            )
        )
    return dict(found)


def _ranked(cutoff: datetime, shown: int) -> sa.Select[Any]:
    """The first `shown` problems of each account, with its total: overdue ones first (the
    oldest due first), then scheduled ones with an error, then unscheduled ones."""
    m = _media.c
    active = capture_side_active()
    overdue = sa.and_(active, m.next_capture_at < cutoff)
    order = (sa.case((overdue, 0), (m.next_capture_at.is_not(None), 1), else_=2), m.next_capture_at)
    rank = sa.func.row_number().over(partition_by=m.account_id, order_by=(*order, m.id))
    columns = [m[name] for name in COLUMNS]
    ranked = (
        sa.select(
            *columns,
            active.label("active"),
            rank.label("rank"),
            sa.func.count().over(partition_by=m.account_id).label("total"),
        )
        .select_from(media_with_account())
        .where(m.capture_state.in_(OPEN_STATES), sa.or_(m.last_error.is_not(None), overdue))
        .subquery()
    )
    return sa.select(ranked).where(ranked.c.rank <= shown).order_by(ranked.c.rank)
