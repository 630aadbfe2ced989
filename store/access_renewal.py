"""New tokens for an account (`archiver accounts update`): what a lapsed token left behind is
cleared with it, so the next scheduler tick lists and polls the account again.

A side whose token is replaced forgets its re-authorisation flag, its failures in a row and
their problem, and what was known of the old token's expiry (the renewal jobs learn the new
one's); its next poll is due now, a fresh due time so the poll's job id is a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.accounts import Account
from models.tables import table_of
from models.types import utcnow

ACTIVE = "active"
REAUTH_REQUIRED = "reauth_required"
_account = table_of(Account)


@dataclass(frozen=True)
class NewAccess:
    """What to replace; None leaves that part as it is."""

    ig_token: str | None = None
    login: str | None = None
    threads_token: str | None = None


def _instagram(access: NewAccess, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {
        "state": sa.case((_account.c.state == REAUTH_REQUIRED, ACTIVE), else_=_account.c.state),
        "state_reason": None,
        "ig_failures": 0,
        "ig_problem": None,
        "next_story_poll_at": now,
        "ig_insights_failures": 0,
        "ig_insights_problem": None,
        "next_ig_insights_at": now,
        "ig_token_expires_at": None,
        "ig_token_refreshed_at": None,
        "ig_data_access_expires_at": None,
        "ig_token_checked_at": None,
        "ig_token_check_error": None,
    }
    if access.ig_token is not None:
        values["ig_token"] = access.ig_token
    if access.login is not None:
        values["login"] = access.login
    return values


def _threads(token: str, now: datetime) -> dict[str, Any]:
    return {
        "threads_token": token,
        "threads_state": ACTIVE,
        "threads_state_reason": None,
        "threads_failures": 0,
        "threads_problem": None,
        "next_threads_poll_at": now,
        "threads_token_expires_at": None,
        "threads_token_refreshed_at": None,
    }


def renew_access(engine: Engine, *, account_id: int, access: NewAccess) -> bool:
    """Store the new tokens and clear what the old ones left; False if the account is gone."""
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if access.ig_token is not None or access.login is not None:
        values |= _instagram(access, now)
    if access.threads_token is not None:
        values |= _threads(access.threads_token, now)
    stmt = sa.update(_account).where(_account.c.id == account_id).values(values)
    with engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount)
