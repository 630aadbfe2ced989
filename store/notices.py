"""The notice table's bookkeeping: record detected events once, pick the notices due a POST,
and record each attempt's outcome with exponential back-off (README: Notices).

Two kinds of event. A thing that happens once (a story missed its final, a token's expiry
date is near) has a natural key: `final_missed:<platform>:<media id>`,
`token_expiring:<account>:<subject>:<expires at>`. A condition that holds for a while (a side
needs re-authorisation, deliveries keep failing) is an episode: one notice when it starts,
`resolved_at` set when it is seen to end, and the next time it holds is episode n + 1
(`reauth:<account>:<side>:<n>`). Either way the unique key makes a repeat a no-op, even from
two control workers at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from models.notices import DELIVERED, DELIVERIES_FAILING, PENDING, REAUTH, UNDELIVERABLE, Notice
from models.tables import table_of

_notice = table_of(Notice)
EPISODES = (REAUTH, DELIVERIES_FAILING)
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)  # 30 s doubling, capped: ten attempts span about three hours


@dataclass(frozen=True)
class Event:
    """Something operators should hear about; `key` None: an episode of a condition."""

    kind: str
    account_id: int | None
    subject: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


@dataclass(frozen=True)
class Due:
    """A pending notice, as the sender needs it."""

    id: int
    kind: str
    account_id: int | None
    text: str
    details: dict[str, Any]
    attempts: int


def record_events(engine: Engine, events: Iterable[Event], *, now: datetime) -> int:
    """Insert the events not recorded before; close the episodes no longer reported (every
    episode kind is detected in full each time). Returns how many notices were added."""
    events = list(events)
    with engine.begin() as conn:
        open_rows = _open_episodes(conn)
        current = {(e.kind, e.account_id, e.subject) for e in events if e.key is None}
        ended = [row_id for row_id, subject in open_rows.items() if subject not in current]
        if ended:
            conn.execute(sa.update(_notice).where(_notice.c.id.in_(ended)).values(resolved_at=now))
        still_open = set(open_rows.values())
        known = _known_keys(conn, [e.key for e in events if e.key is not None])
        added = 0
        for event in events:
            if event.key in known or (
                event.key is None and (event.kind, event.account_id, event.subject) in still_open
            ):
                continue
            key = event.key or _episode_key(conn, event)
            added += _insert(conn, event, key, now)
    return added


def _known_keys(conn: Connection, keys: list[str]) -> set[str]:
    """Which of `keys` are recorded already (skipped: no INSERT, no sequence value spent)."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        stmt = sa.select(_notice.c.dedupe_key).where(_notice.c.dedupe_key.in_(chunk))
        found.update(str(key) for key in conn.execute(stmt).scalars())
    return found


def _open_episodes(conn: Connection) -> dict[int, tuple[str, int | None, str]]:
    stmt = sa.select(_notice.c.id, _notice.c.kind, _notice.c.account_id, _notice.c.subject).where(
        _notice.c.kind.in_(EPISODES), _notice.c.resolved_at.is_(None)
    )
    return {int(r[0]): (str(r[1]), r[2], str(r[3])) for r in conn.execute(stmt)}


def _episode_key(conn: Connection, event: Event) -> str:
    """`<kind>:<account or ->:<subject>:<n>`, n = 1 + this condition's ended episodes: two
    runs racing to record a new episode compute the same key whatever they see of each
    other's open one, so the unique key lets one of them in."""
    account = _notice.c.account_id
    same = account.is_(None) if event.account_id is None else account == event.account_id
    count = sa.select(sa.func.count()).where(
        _notice.c.kind == event.kind,
        _notice.c.subject == event.subject,
        same,
        _notice.c.resolved_at.is_not(None),
    )
    episode = int(conn.execute(count).scalar_one()) + 1
    return f"{event.kind}:{event.account_id or '-'}:{event.subject}:{episode}"


def _insert(conn: Connection, event: Event, key: str, now: datetime) -> int:
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(_notice)
        .values(
            dedupe_key=key[:255],
            kind=event.kind,
            account_id=event.account_id,
            subject=event.subject[:200],
            text=event.text,
            details=event.details,
            state=PENDING,
            created_at=now,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(_notice.c.id)
    )
    return len(conn.execute(stmt).all())


def claim_due(engine: Engine, *, now: datetime, limit: int, lease: timedelta) -> list[Due]:
    """Pending notices whose attempt is due, those waiting longest first, claimed for `lease`
    (their next attempt moved past it), so a second run beside this one, or after it crashed,
    sends none of them twice. Sent or failed, each gets its real next step from mark_*;
    `unclaim` gives back the ones a run did not get to."""
    when = sa.func.coalesce(_notice.c.next_attempt_at, _notice.c.created_at)
    due = sa.and_(_notice.c.state == PENDING, when <= now)
    columns = (_notice.c.kind, _notice.c.account_id, _notice.c.text, _notice.c.details)
    pick = (
        sa.select(_notice.c.id, *columns, _notice.c.attempts)
        .where(due)
        .order_by(when, _notice.c.id)
        .limit(limit)
    )
    with engine.begin() as conn:
        found = [
            Due(int(r[0]), r[1], r[2], r[3], dict(r[4]), int(r[5])) for r in conn.execute(pick)
        ]
        if not found:
            return []
        # Re-checked under the row locks: a concurrent run's claim wins, this one skips it.
        claim = (
            sa.update(_notice)
            .where(_notice.c.id.in_([d.id for d in found]), due)
            .values(next_attempt_at=now + lease)
            .returning(_notice.c.id)
        )
        claimed = {int(row[0]) for row in conn.execute(claim)}
    return [d for d in found if d.id in claimed]


def unclaim(engine: Engine, ids: Sequence[int], *, now: datetime) -> None:
    """Claimed notices a run did not send: due again at once."""
    stmt = (
        sa.update(_notice)
        .where(_notice.c.id.in_(ids), _notice.c.state == PENDING)
        .values(next_attempt_at=now)
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def retry_delay(attempts: int) -> timedelta:
    """The wait after `attempts` failed POSTs: 30 s, 1 min, 2 min ... at most an hour."""
    factor: int = 2 ** min(max(attempts - 1, 0), 20)
    return min(FIRST_RETRY * factor, LAST_RETRY)


def mark_delivered(engine: Engine, ids: Sequence[int], *, now: datetime) -> None:
    stmt = (
        sa.update(_notice)
        .where(_notice.c.id.in_(ids), _notice.c.state == PENDING)
        .values(state=DELIVERED, delivered_at=now, attempts=_notice.c.attempts + 1)
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def mark_failed(
    engine: Engine, ids: Sequence[int], *, error: str, now: datetime, max_attempts: int
) -> int:
    """One more failed attempt: retry later, or `undeliverable` (kept) once `max_attempts`
    are spent. `error` must already be scrubbed of the URL. Returns how many were given up."""
    attempts = _notice.c.attempts + 1
    base = sa.update(_notice).where(_notice.c.id.in_(ids), _notice.c.state == PENDING)
    with engine.begin() as conn:
        given_up = conn.execute(
            base.where(attempts >= max_attempts).values(
                state=UNDELIVERABLE, attempts=attempts, last_error=error, next_attempt_at=None
            )
        ).rowcount
        rows = conn.execute(
            sa.select(_notice.c.id, _notice.c.attempts).where(
                _notice.c.id.in_(ids), _notice.c.state == PENDING
            )
        ).all()
        for row_id, tried in rows:
            conn.execute(
                base.where(_notice.c.id == row_id).values(
                    attempts=tried + 1,
                    last_error=error,
                    next_attempt_at=now + retry_delay(int(tried) + 1),
                )
            )
    return int(given_up)
