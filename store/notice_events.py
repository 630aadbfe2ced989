"""What operators should hear about, read from the database each time the notifier runs:
sides needing re-authorisation, tokens expiring soon, stories that missed their final
capture, webhook deliveries failing. Cheap, bounded queries; store.notices records each
event once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.accounts import Account
from models.deliveries import FAILED, WebhookDelivery
from models.notices import DELIVERIES_FAILING, FINAL_MISSED, REAUTH, TOKEN_EXPIRING, Notice
from models.snapshots import Media
from models.tables import table_of
from store.due_captures import MISSED
from store.notices import Event
from store.story_bookkeeping import ACTIVE, REAUTH_REQUIRED

_account = table_of(Account)
_media = table_of(Media)
_delivery = table_of(WebhookDelivery)
_notice = table_of(Notice)

# Stories that expired this long ago or less are told about: after an outage of the notifier
# they still are, and turning NOTIFY_WEBHOOK_URL on does not replay the whole archive.
MISSED_LOOKBACK = timedelta(hours=24)
MISSED_BATCH = 500  # per run; the rest at the next run
# "Deliveries keep failing": this many failed (processing raised) within the window.
FAILED_DELIVERIES = 5
FAILED_WINDOW = timedelta(hours=1)
_FIX = "replace its token with `archiver accounts update`"
_SIDES = {"instagram": "Instagram", "threads": "Threads"}
_EXPIRIES = ("ig_token_expires_at", "ig_data_access_expires_at", "threads_token_expires_at")
_ACCOUNT_COLUMNS = (
    "id",
    "name",
    "state",
    "state_reason",
    "threads_user_id",
    "threads_state",
    "threads_state_reason",
    *_EXPIRIES,
)


def detect_events(engine: Engine, *, now: datetime, token_days: float) -> list[Event]:
    """Every event that holds now (the recorded ones included: recording skips them)."""
    horizon = now + timedelta(days=token_days)
    columns = [_account.c[name] for name in _ACCOUNT_COLUMNS]  # never the tokens
    wanted = sa.or_(
        _account.c.state == REAUTH_REQUIRED,
        _account.c.threads_state == REAUTH_REQUIRED,
        *(_account.c[name] <= horizon for name in _EXPIRIES),
    )
    stmt = sa.select(*columns).where(_account.c.state != "disabled", wanted)
    with engine.connect() as conn:
        accounts = conn.execute(stmt).all()
        events = [e for row in accounts for e in _account_events(row._mapping, now, token_days)]
        events += missed_finals(conn, now=now)
        events += failing_deliveries(conn, now=now)
    return events


def _account_events(row: Any, now: datetime, token_days: float) -> list[Event]:
    name, account_id = row["name"], int(row["id"])
    sides = [("instagram", row["state"], row["state_reason"])]
    if row["threads_user_id"]:
        sides.append(("threads", row["threads_state"], row["threads_state_reason"]))
    events = [
        Event(
            REAUTH,
            account_id,
            side,
            f"Account {name}: {_SIDES[side]} needs re-authorisation ({reason or 'token'}); "
            f"{_FIX}. Until then nothing of it is captured.",
            {"account": name, "side": side, "reason": reason},
        )
        for side, state, reason in sides
        if state == REAUTH_REQUIRED
    ]
    active = {side for side, state, _ in sides if state == ACTIVE}
    expiries = [
        ("instagram", "Instagram token", row["ig_token_expires_at"]),
        ("instagram_data_access", "Instagram data access", row["ig_data_access_expires_at"]),
        ("threads", "Threads token", row["threads_token_expires_at"]),
    ]
    horizon = now + timedelta(days=token_days)
    for subject, label, expires in expiries:
        if expires is None or expires > horizon or subject.split("_")[0] not in active:
            continue
        when = "expired" if expires <= now else f"expires in {_left(expires - now)}"
        events.append(
            Event(
                TOKEN_EXPIRING,
                account_id,
                subject,
                f"Account {name}: {label} {when} ({expires:%Y-%m-%d %H:%M} UTC); {_FIX}.",
                {"account": name, "subject": subject, "expires_at": expires.isoformat()},
                key=f"{TOKEN_EXPIRING}:{account_id}:{subject}:{expires.isoformat()}",
            )
        )
    return events


def _left(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{max(hours, 1)} h"


def missed_finals(conn: sa.Connection, *, now: datetime) -> list[Event]:
    """Stories closed `missed` within MISSED_LOOKBACK that have no notice yet."""
    key = sa.literal(f"{FINAL_MISSED}:") + _media.c.platform + sa.literal(":") + _media.c.media_id
    told = sa.exists().where(_notice.c.dedupe_key == key)
    stmt = (
        sa.select(
            _media.c.account_id,
            _account.c.name,
            _media.c.platform,
            _media.c.media_id,
            _media.c.expires_at,
            _media.c.missed_reason,
            _media.c.permalink,
        )
        .join(_account, _account.c.id == _media.c.account_id)
        .where(
            _media.c.capture_state == MISSED,
            _media.c.expires_at >= now - MISSED_LOOKBACK,
            ~told,
        )
        .order_by(_media.c.expires_at)
        .limit(MISSED_BATCH)
    )
    events = []
    for account_id, name, platform, media_id, expires, reason, permalink in conn.execute(stmt):
        events.append(
            Event(
                FINAL_MISSED,
                int(account_id),
                f"{platform}:{media_id}",
                f"Account {name}: story {media_id} expired at {expires:%H:%M} UTC without its "
                f"final capture ({reason or 'no reason recorded'}).",
                {
                    "account": name,
                    "media_id": media_id,
                    "expires_at": expires.isoformat(),
                    "reason": reason,
                    "permalink": permalink,
                },
                key=f"{FINAL_MISSED}:{platform}:{media_id}",
            )
        )
    return events


def failing_deliveries(conn: sa.Connection, *, now: datetime) -> list[Event]:
    """One event while FAILED_DELIVERIES or more failed within FAILED_WINDOW."""
    recent = (_delivery.c.status == FAILED, _delivery.c.received_at >= now - FAILED_WINDOW)
    failed = int(conn.execute(sa.select(sa.func.count()).where(*recent)).scalar_one())
    if failed < FAILED_DELIVERIES:
        return []
    latest = conn.execute(
        sa.select(_delivery.c.error).where(*recent).order_by(_delivery.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    latest = " ".join((latest or "no error").split())[:200]
    text = (
        f"{failed} webhook deliveries failed in the last hour (latest: {latest}); "
        "see `archiver status` and `archiver replay`."
    )
    return [Event(DELIVERIES_FAILING, None, "deliveries", text, {"failed": failed})]
