"""Each account's polls, per side (story listings, feed/Reels listings, Threads polls): when
due again, the last error, and an exponential back-off for failures that retrying soon cannot
fix.

A permission Meta refuses or an account id it rejects fails the same way every minute until
someone fixes the token or the id; listing such an account every tick wastes calls (1,440 a
day) and hides the reason. Each failure in a row doubles the wait (1 min, 2, 4 ... 24 h) and
sets a readable `*_problem` for `archiver status`; the next success resets both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.accounts import Account
from models.tables import table_of
from models.types import utcnow

INSTAGRAM = "instagram"
THREADS = "threads"
IG_INSIGHTS = "ig_insights"  # the account insights runs (workers.captures.account_insights)
MEDIA = "media"  # the /media listing of feed posts and Reels
FIRST_WAIT = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=24)
_ERROR_CHARS = 2000
_account = table_of(Account)


@dataclass(frozen=True)
class Side:
    """The account columns of one side's polls."""

    failures: str
    problem: str
    next_at: str
    polled_at: str


SIDES = {
    INSTAGRAM: Side("ig_failures", "ig_problem", "next_story_poll_at", "stories_polled_at"),
    THREADS: Side(
        "threads_failures", "threads_problem", "next_threads_poll_at", "threads_polled_at"
    ),
    IG_INSIGHTS: Side(
        "ig_insights_failures",
        "ig_insights_problem",
        "next_ig_insights_at",
        "ig_insights_polled_at",
    ),
    MEDIA: Side("media_failures", "media_problem", "next_media_listing_at", "media_listed_at"),
}


def backoff(failures: int, *, cap: timedelta = LONGEST_WAIT) -> timedelta:
    """The wait after `failures` failures in a row: 1 min, doubled each time, at most `cap`."""
    wait: timedelta = FIRST_WAIT * 2 ** min(max(failures - 1, 0), 20)
    return min(cap, wait)


def human(delay: timedelta) -> str:
    """`45 s`, `4 min`, `2 h 8 min`: short enough for a status line."""
    seconds = round(delay.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _update(engine: Engine, account_id: int, values: dict[str, Any]) -> None:
    values = values | {"updated_at": utcnow()}
    with engine.begin() as conn:
        conn.execute(sa.update(_account).where(_account.c.id == account_id).values(values))


def record_success(engine: Engine, *, account_id: int, side: str, next_at: datetime) -> None:
    """A poll that worked: stamp it, set the next one, and forget past failures."""
    columns = SIDES[side]
    values = {columns.polled_at: utcnow(), columns.next_at: next_at}
    _update(engine, account_id, values | {columns.failures: 0, columns.problem: None})


def record_error(
    engine: Engine, *, account_id: int, side: str, error: str, next_at: datetime | None = None
) -> None:
    """Keep `error` as the account's last error (and when); move the next poll if given."""
    values: dict[str, Any] = {"last_error": error[:_ERROR_CHARS], "last_error_at": utcnow()}
    if next_at is not None:
        values[SIDES[side].next_at] = next_at
    _update(engine, account_id, values)


def record_failure(
    engine: Engine, *, account_id: int, side: str, error: str, reason: str, cap: timedelta
) -> timedelta:
    """One more failure in a row: the next poll waits `backoff(n, cap=cap)`, and the problem
    says why and when. Returns the wait."""
    columns = SIDES[side]
    table_failures = _account.c[columns.failures]
    now = utcnow()
    with engine.begin() as conn:
        failures = conn.execute(
            sa.update(_account)
            .where(_account.c.id == account_id)
            .values({columns.failures: table_failures + 1})
            .returning(table_failures)
        ).scalar_one_or_none()
        if failures is None:  # the account was removed meanwhile
            return timedelta(0)
        wait = backoff(int(failures), cap=cap)
        again = now + wait
        problem = (
            f"{reason} (failed {failures}x in a row; next try in {human(wait)}, "
            f"at {again:%Y-%m-%d %H:%M} UTC)"
        )
        values = {
            columns.problem: problem[:_ERROR_CHARS],
            columns.next_at: again,
            "last_error": error[:_ERROR_CHARS],
            "last_error_at": now,
            "updated_at": now,
        }
        conn.execute(sa.update(_account).where(_account.c.id == account_id).values(values))
    return wait
