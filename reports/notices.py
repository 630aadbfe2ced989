"""How the notices to operators stand, for `archiver status`: counts by state, and the latest
few not delivered (pending or undeliverable) with their last error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.notices import PENDING, UNDELIVERABLE, Notice
from models.tables import table_of

_notice = table_of(Notice)
SHOWN = 5


@dataclass(frozen=True)
class UnsentNotice:
    id: int
    kind: str
    state: str
    text: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class NoticeReport:
    by_state: dict[str, int]
    unsent: list[UnsentNotice]  # the latest SHOWN pending or undeliverable, newest first


def notice_report(engine: Engine, *, shown: int = SHOWN) -> NoticeReport:
    counts = sa.select(_notice.c.state, sa.func.count()).group_by(_notice.c.state)
    latest = (
        sa.select(
            _notice.c.id,
            _notice.c.kind,
            _notice.c.state,
            _notice.c.text,
            _notice.c.created_at,
            _notice.c.attempts,
            _notice.c.next_attempt_at,
            _notice.c.last_error,
        )
        .where(_notice.c.state.in_((PENDING, UNDELIVERABLE)))
        .order_by(_notice.c.created_at.desc(), _notice.c.id.desc())
        .limit(shown)
    )
    with engine.connect() as conn:
        by_state = {str(row[0]): int(row[1]) for row in conn.execute(counts)}
        unsent = [UnsentNotice(*row) for row in conn.execute(latest)]
    return NoticeReport(by_state, unsent)
