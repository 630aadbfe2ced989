"""Which long-lived tokens are due a refresh, and storing a refreshed one; which Facebook
Login tokens are due an expiry check, and storing what it found.

Instagram Login and Threads tokens live 60 days and can be refreshed once they are 24 hours
old (https://developers.facebook.com/docs/threads/get-started/long-lived-tokens): refreshing
every TOKEN_REFRESH_DAYS keeps them far from expiry whatever else runs. Facebook Login tokens
are not refreshed this way; their expiry and data-access expiry are read from debug_token
once a day instead (https://developers.facebook.com/docs/graph-api/reference/debug_token).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.accounts import Account
from models.tables import table_of
from models.types import utcnow

INSTAGRAM = "instagram"
THREADS = "threads"
MIN_AGE = timedelta(hours=24)  # Meta refuses to refresh a younger token
URGENT = timedelta(days=7)  # a token this close to expiry is refreshed as soon as allowed
_account = table_of(Account)


def _due(
    age_from: sa.ColumnElement[datetime],
    expires: sa.Column[datetime],
    *,
    now: datetime,
    every: timedelta,
) -> sa.ColumnElement[bool]:
    old_enough = age_from <= now - MIN_AGE
    return sa.and_(old_enough, sa.or_(age_from <= now - every, expires <= now + URGENT))


def due_refreshes(engine: Engine, *, now: datetime, every: timedelta) -> list[tuple[int, str]]:
    """(account id, `instagram` | `threads`) for each token due a refresh."""
    c = _account.c
    ig_age = sa.func.coalesce(c.ig_token_refreshed_at, c.created_at)
    th_age = sa.func.coalesce(c.threads_token_refreshed_at, c.threads_linked_at, c.created_at)
    ig = sa.select(c.id, sa.literal(INSTAGRAM)).where(
        c.login == INSTAGRAM,
        c.state == "active",
        _due(ig_age, c.ig_token_expires_at, now=now, every=every),
    )
    th = sa.select(c.id, sa.literal(THREADS)).where(
        c.threads_token.is_not(None),
        c.threads_state == "active",
        _due(th_age, c.threads_token_expires_at, now=now, every=every),
    )
    with engine.connect() as conn:
        return [(int(row[0]), str(row[1])) for row in conn.execute(sa.union_all(ig, th))]


def store_refreshed(
    engine: Engine, *, account_id: int, platform: str, token: str, expires_at: datetime
) -> None:
    prefix = "ig" if platform == INSTAGRAM else "threads"
    values = {
        f"{prefix}_token": token,
        f"{prefix}_token_expires_at": expires_at,
        f"{prefix}_token_refreshed_at": utcnow(),
        "updated_at": utcnow(),
    }
    with engine.begin() as conn:
        conn.execute(sa.update(_account).where(_account.c.id == account_id).values(values))


def due_token_checks(engine: Engine, *, now: datetime, every: timedelta, limit: int) -> list[int]:
    """Active Facebook Login accounts whose token expiry was not asked within `every`: the
    never asked first, then the longest ago, `limit` at most."""
    c = _account.c
    stmt = (
        sa.select(c.id)
        .where(
            c.login == "facebook",
            c.state == "active",
            sa.or_(c.ig_token_checked_at.is_(None), c.ig_token_checked_at <= now - every),
        )
        .order_by(c.ig_token_checked_at.is_not(None), c.ig_token_checked_at, c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [int(row[0]) for row in conn.execute(stmt)]


def store_token_check(
    engine: Engine,
    *,
    account_id: int,
    expires_at: datetime | None = None,
    data_access_expires_at: datetime | None = None,
    error: str | None = None,
) -> bool:
    """Record what debug_token said (expiries; None: never) or, with `error`, why it could not
    say, keeping the expiries known before. True when the error is new (log it once)."""
    c = _account.c
    now = utcnow()
    values: dict[str, object] = {"ig_token_checked_at": now, "updated_at": now}
    if error is None:
        values |= {
            "ig_token_expires_at": expires_at,
            "ig_data_access_expires_at": data_access_expires_at,
            "ig_token_check_error": None,
        }
    else:
        values["ig_token_check_error"] = error[:2000]
    with engine.begin() as conn:
        before = conn.execute(sa.select(c.ig_token_check_error).where(c.id == account_id))
        known = before.scalar()
        conn.execute(sa.update(_account).where(c.id == account_id).values(values))
    return error is not None and known != values["ig_token_check_error"]
